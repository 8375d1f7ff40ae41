# -*- coding: utf-8 -*-
"""Resolve what the nginx_publisher role publishes with the reference Python resolver (on demand).

The reference resolver (``python3 -m oci_discovery.ref_engine_discovery`` from the public
oci-discovery repository) is not on PyPI and not available in CI, so this check runs on demand:

    .venv/bin/python tests/conformance/publisher_reference.py /path/to/oci-discovery-checkout

It provisions two plain-http sites on one nginx instance through the
oci.discovery.provision_publisher playbook over ssh (the rig's sshd; the same set-up as
tests/integration/test_nginx_publisher.py), a CAS-bucket site ``localhost`` (families
localhost/app and localhost/team/app, the multi-platform layout) and a layouts-as-directories
site ``127.0.0.1`` (family 127.0.0.1/team/app), then resolves every published tag with the
reference resolver over http on the test port, with the ``uritemplate`` package ({path} ->
team%2Fapp) and without it (team/app), and compares the roots' digests with the layouts'.
Exit status 0 when every name resolves to exactly the layout's entries.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "integration"))

import conftest  # noqa: E402,F401  pylint: disable=unused-import
from rig import layouts as rl  # noqa: E402
from rig import procs  # noqa: E402
from rig.ansible import run_playbook  # noqa: E402
from rig.ca import TestCAs  # noqa: E402
from rig.sshd import Sshd  # noqa: E402
from test_nginx_publisher import Publisher  # noqa: E402

# Runs the resolver with `import uritemplate` failing, as on a Python without the package.
WITHOUT_URITEMPLATE = ("import runpy, sys; sys.modules['uritemplate'] = None; "
                       "runpy.run_module('oci_discovery.ref_engine_discovery', run_name='__main__')")


def main(checkout):
    procs.become_subreaper()
    sshd = Sshd().start()
    cas = TestCAs.create()
    failures = 0
    try:
        layouts = rl.cached_layouts()
        pub = Publisher(sshd, cas, run_playbook, "reference")
        base = "http://%s:" + str(pub.http_port)
        sites = [
            {"server_name": "localhost", "root": pub.root("localhost"), "base_url": base % "localhost",
             "images": [{"name": "localhost/app", "src": layouts.family},
                        {"name": "localhost/team/app", "src": layouts.multiplatform}]},
            {"server_name": "127.0.0.1", "name": "ip", "root": pub.root("ip"), "site_layout": "directories",
             "base_url": base % "127.0.0.1", "images": [{"name": "127.0.0.1/team/app", "src": layouts.family}]},
        ]
        try:
            result = pub.run(sites)
            if result.failed:
                print(result)
                return 1
            names = []
            for family, layout in (("localhost/app", "family"), ("localhost/team/app", "multiplatform"),
                                   ("127.0.0.1/team/app", "family")):
                info = layouts.info[layout]
                names += [("%s#%s" % (family, tag), [e["digest"] for e in info["tags"][tag]])
                          for tag in info["tag_list"]]
            for label, argv in (("with uritemplate", [sys.executable, "-m", "oci_discovery.ref_engine_discovery"]),
                                ("without uritemplate", [sys.executable, "-c", WITHOUT_URITEMPLATE])):
                for name, want in names:
                    proc = subprocess.run(argv + ["--protocol", "http", "--port", str(pub.http_port), name],
                                          cwd=checkout, capture_output=True, text=True, env=procs.service_env(),
                                          check=False)
                    roots = json.loads(proc.stdout or "{}").get(name, [])
                    got = [root["root"]["digest"] for root in roots]
                    ok = got == want
                    failures += not ok
                    print("%s  %-20s %s%s" % ("ok  " if ok else "FAIL", label, name,
                                              "" if ok else "  got %s, want %s" % (got, want)))
        finally:
            pub.stop()
    finally:
        sshd.stop()
        cas.remove()
        procs.stop_own()
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(os.path.join(sys.argv[1], "oci_discovery")):
        sys.exit("usage: %s /path/to/oci-discovery-checkout" % sys.argv[0])
    sys.exit(main(os.path.abspath(sys.argv[1])))
