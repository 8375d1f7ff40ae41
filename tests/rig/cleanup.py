# -*- coding: utf-8 -*-
"""Kill what crashed test runs left behind: `PYTHONPATH=tests python -m rig.cleanup [--all]`.

Without --all, only processes and directories whose owning test run (Python process)
is gone; with --all, everything in the registry (.tmp/rig/pids/), for when no test run
is going on.
"""
import argparse
import sys

from .procs import PIDS_DIR, cleanup, registry_entries


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rig.cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help="also kill services of test runs that are still going")
    parser.add_argument("--list", action="store_true", help="only list the registry")
    args = parser.parse_args(argv)
    if args.list:
        for entry in registry_entries():
            print("%-4s %-10s %s owner=%s"
                  % (entry["kind"], entry.get("name"), entry.get("pid", entry.get("path")), entry.get("owner")))
        return 0
    done = cleanup(all_owners=args.all, verbose=True)
    print("rig.cleanup: %d entr%s cleaned from %s" % (len(done), "y" if len(done) == 1 else "ies", PIDS_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
