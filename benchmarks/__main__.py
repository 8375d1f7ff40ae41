# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the benchmarks of oci.discovery against the tools users would otherwise pick.

    make bench        (= .venv/bin/python -m benchmarks)
    .venv/bin/python -m benchmarks --scenarios s3,ssh --runs 5
    .venv/bin/python -m benchmarks --scenarios s3 --schemes https --sets small --runs 1 --no-write

Scenarios (all by default): s3 (benchmarks/s3.py), ssh (benchmarks/ssh.py), resolve
(benchmarks/resolve_requests.py, with the reference resolver when /work/notes/ref or
--reference holds it), memory (benchmarks/memory.py), pull (benchmarks/pull.py, beside
skopeo copy from Debian's docker-registry; also runs alone: python -m benchmarks.pull), fleet (benchmarks/fleet.py:
one layout to 4 sshd hosts; also runs alone: python -m benchmarks.fleet). Services come from the test rig
(tests/rig: Ceph RGW, sshd, nginx) and are stopped at the end whatever happens.

Results go to benchmarks/results/RESULTS.md, ratios.png (the chart) and results.json
(unless --no-write). Timings are reported, never asserted: the exit status is 0 when every
scenario ran, whatever the figures. The default (3 runs, copy once on the big layout)
takes about 10 minutes on a 2-core machine.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import signal
import sys
import time

from benchmarks import _common
from benchmarks._common import REPO, procs

SCENARIOS = ('s3', 'ssh', 'resolve', 'memory', 'pull', 'fleet')
RESULTS_DIR = os.path.join(REPO, 'benchmarks', 'results')
DEFAULT_REFERENCE = '/work/notes/ref'


def _csv(choices):
    def parse(text):
        items = [item.strip() for item in text.split(',') if item.strip()]
        bad = [item for item in items if item not in choices]
        if bad:
            raise argparse.ArgumentTypeError('unknown: %s (choose from %s)' % (', '.join(bad), ', '.join(choices)))
        return items
    return parse


def parse_args(argv=None):
    from benchmarks import s3, ssh
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--scenarios', type=_csv(SCENARIOS), default=list(SCENARIOS),
                        help='comma-separated, from %s (default: all)' % ','.join(SCENARIOS))
    parser.add_argument('--runs', type=int, default=3, help='runs of each timed command; medians are reported (default 3)')
    parser.add_argument('--sets', type=_csv(_common.DATASETS), default=list(_common.DATASETS),
                        help='data sets: big (200 blobs, one 30 MiB layer), small (1,000 blobs of 8 KiB)')
    parser.add_argument('--schemes', type=_csv(s3.SCHEMES), default=list(s3.SCHEMES), help='S3 endpoints: http,https')
    parser.add_argument('--s3-tools', type=_csv(s3.TOOLS), default=list(s3.TOOLS), help='S3 tools to measure')
    parser.add_argument('--s3-extras', type=_csv(s3.EXTRAS), default=list(s3.EXTRAS),
                        help='more S3 measurements: large (a 1 GiB layer vs aws s3 sync and rclone), put_cpu (client '
                        'CPU per small-blob PUT); default both')
    parser.add_argument('--ssh-tools', type=_csv(ssh.TOOLS + ssh.OPTIONAL_TOOLS), default=list(ssh.TOOLS),
                        help='SSH tools to measure (also: %s)' % ','.join(ssh.OPTIONAL_TOOLS))
    parser.add_argument('--copy-runs', type=int, default=1,
                        help='runs of ansible.builtin.copy (about 90 s each for 200 files; default 1)')
    parser.add_argument('--copy-small', action='store_true',
                        help='also run ansible.builtin.copy on the 1,000-blob data set (about 8 minutes per run)')
    parser.add_argument('--large-mib', type=int, default=1024, help='layer size of the S3 "large" measurement (default 1024)')
    parser.add_argument('--memory-mib', type=int, default=1024, help='layer size of the memory scenario (default 1024)')
    parser.add_argument('--reference', default=os.environ.get('OCI_DISCOVERY_REFERENCE', DEFAULT_REFERENCE),
                        help='a checkout of the oci-discovery repository (reference resolver); default %s'
                        % DEFAULT_REFERENCE)
    parser.add_argument('--no-write', action='store_true', help='print only; do not write benchmarks/results/')
    parser.add_argument('--results', default=RESULTS_DIR, help='where to write the results (default benchmarks/results)')
    args = parser.parse_args(argv)
    if args.runs < 1 or args.copy_runs < 0:
        parser.error('--runs must be at least 1 and --copy-runs at least 0')
    return args


class Services(object):
    """The rig's services, started on first use and all stopped by stop()."""

    def __init__(self):
        self._cas = self._rgw = self._sshd = None

    @property
    def cas(self):
        if self._cas is None:
            from rig.ca import TestCAs
            self._cas = TestCAs.create()
        return self._cas

    @property
    def rgw(self):
        if self._rgw is None:
            from rig.ceph import RGW
            # Room for the 1 GiB layer of the S3 and memory scenarios (buckets are emptied between tools).
            self._rgw = RGW(cert=self.cas.server, ca_path=self.cas.cert_path, memstore_bytes=3 * 1024 ** 3)
            self._rgw.start()
            print('bench: Ceph RGW up in %.1f s (http %s, https %s)'
                  % (self._rgw.startup_seconds, self._rgw.endpoint, self._rgw.tls_endpoint))
        return self._rgw

    @property
    def sshd(self):
        if self._sshd is None:
            from rig.sshd import Sshd
            self._sshd = Sshd()
            self._sshd.start()
            print('bench: sshd up on 127.0.0.1:%d (user %s)' % (self._sshd.port, self._sshd.user))
        return self._sshd

    def stop(self):
        for service in (self._sshd, self._rgw):
            if service is not None:
                try:
                    service.stop()
                except Exception as e:  # pylint: disable=broad-except
                    print('bench: stopping %r failed: %s' % (service, e))
        if self._cas is not None:
            self._cas.remove()
        self._cas = self._rgw = self._sshd = None


def run_resolve(reference):
    """benchmarks/resolve_requests.py in a child process; its report lines."""
    argv = [sys.executable, '-m', 'benchmarks.resolve_requests']
    if reference and os.path.isdir(os.path.join(reference, 'oci_discovery')):
        argv += ['--reference', reference]
    outcome = _common.timed(argv, env=dict(os.environ), cwd=REPO)
    lines = [line for line in outcome.stdout.splitlines() if line.strip()]
    if not reference or not os.path.isdir(os.path.join(reference, 'oci_discovery')):
        lines.append('  reference resolver not available')
    if not outcome.ok:
        lines.append('resolve_requests.py exited with status %d: %s' % (outcome.rc, outcome.reason()))
    return {'lines': lines, 'rc': outcome.rc}


def _keep_earlier(results, path):
    """Scenarios not run this time keep their figures from the earlier results.json (with its date)."""
    try:
        with open(path) as handle:
            earlier = json.load(handle)
    except (OSError, ValueError):
        return
    kept = {}
    for area in SCENARIOS:
        if area not in results and area in earlier:
            results[area] = earlier[area]
            kept[area] = (earlier.get('meta', {}).get('kept') or {}).get(area) or earlier.get('meta', {}).get('date')
    results['meta']['kept'] = kept
    for area, figures in earlier.items():     # written by the benchmarks run on their own (large, registry_view)
        if area not in SCENARIOS and area != 'meta' and area not in results:
            results[area] = figures


def _own_sections(path):
    """[(text, begin, end)] of the marked sections of RESULTS.md that other benchmarks write (kept as they are)."""
    import re
    try:
        with open(path) as handle:
            old = handle.read()
    except OSError:
        return []
    return [(m.group(0), '<!-- %s -->' % m.group(1), '<!-- /%s -->' % m.group(1))
            for m in re.finditer(r'<!-- (\w+) -->.*?<!-- /\1 -->\n?', old, re.S)]


def main(argv=None):
    args = parse_args(argv)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def _terminate(signum, frame):
            raise KeyboardInterrupt('SIGTERM')
        signal.signal(signal.SIGTERM, _terminate)
    procs.cleanup()            # what a crashed earlier run left (only runs whose owner is gone)
    procs.become_subreaper()   # adopt and reap ssh/sshd orphans
    chart_ok = _common.ensure_bench_requirements() if not args.no_write else False
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    results = {}
    services = Services()
    workdir = procs.make_workdir('bench', mode=0o755)
    failures = []
    try:
        data = _common.datasets(workdir) if {'s3', 'ssh'} & set(args.scenarios) else {}
        if 's3' in args.scenarios:
            from benchmarks import s3
            print('== S3: %s; %s; %d run(s)' % (', '.join(args.schemes), ', '.join(args.sets), args.runs))
            results['s3'] = s3.run(services.rgw, data, workdir, runs=args.runs, schemes=args.schemes, sets=args.sets,
                                   tools=args.s3_tools, extras=args.s3_extras,
                                   large_mib=args.large_mib)
        if 'ssh' in args.scenarios:
            from benchmarks import ssh
            print('== SSH: %s; %d run(s)' % (', '.join(args.sets), args.runs))
            copy_sets = [s for s in args.sets if s == 'big' or args.copy_small]
            results['ssh'] = ssh.run(services.sshd, data, workdir, runs=args.runs, sets=args.sets, tools=args.ssh_tools,
                                     copy_runs=args.copy_runs, copy_sets=copy_sets)
        if 'resolve' in args.scenarios:
            print('== Resolution')
            results['resolve'] = run_resolve(args.reference)
            print('\n'.join(results['resolve']['lines']))
            if results['resolve']['rc'] not in (0, 1):
                failures.append('resolve')
        if 'memory' in args.scenarios:
            from benchmarks import memory
            print('== Memory: a layout with a %d MiB layer' % args.memory_mib)
            results['memory'] = memory.run(services.rgw, services.sshd, workdir, size_mib=args.memory_mib)
        if 'pull' in args.scenarios:
            from benchmarks import pull
            print('== Pull: the big data set, oci.discovery.pull and skopeo copy; %d run(s)' % args.runs)
            results['pull'] = pull.run(workdir, runs=args.runs)
        if 'fleet' in args.scenarios:
            from benchmarks import fleet
            print('== Fleet: the big data set to %d hosts, forks %d; %d run(s)' % (fleet.HOSTS, fleet.HOSTS, args.runs))
            results['fleet'] = fleet.run(workdir, runs=args.runs)
    except KeyboardInterrupt:
        print('bench: interrupted; stopping the services')
        raise
    finally:
        services.stop()
        procs.remove_workdir(workdir)
        procs.stop_own()
        procs.reap_orphans(kill=True, wait=2.0)

    results['meta'] = {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'args': ' '.join(argv if argv is not None else sys.argv[1:]).strip(),
        'minutes': (time.monotonic() - started) / 60.0,
        'machine': _common.machine(), 'versions': _common.versions(),
        'load_start': load_start, 'load_end': os.getloadavg()[0],
    }
    from benchmarks import report
    print()
    for area, target, measured, ok in report.targets(results):
        print('%-12s %-62s %-44s %s' % (area, target, measured, {True: 'met', False: 'MISSED', None: '-'}[ok]))
    if not args.no_write:
        _keep_earlier(results, os.path.join(args.results, 'results.json'))
        os.makedirs(args.results, exist_ok=True)
        if chart_ok and report.chart(results, os.path.join(args.results, 'ratios.png')):
            print('bench: chart written to %s' % os.path.join(args.results, 'ratios.png'))
        path = os.path.join(args.results, 'RESULTS.md')
        kept = _own_sections(path)
        with open(path, 'w') as handle:
            handle.write(report.markdown(results))
        for text, begin, end in kept:          # the sections benchmarks.large and .registry_view write
            _common.write_section(text, begin, end, path)
        with open(os.path.join(args.results, 'results.json'), 'w') as handle:
            json.dump(results, handle, indent=1, sort_keys=True, default=str)
        print('bench: results written to %s' % os.path.join(args.results, 'RESULTS.md'))
    left = procs.leftovers()
    if left:
        print('bench: processes still running: %r' % left)
        return 1
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
