# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry view benchmark: what publishing with ``registry_view: true`` costs over ``false``.

    .venv/bin/python -m benchmarks.registry_view [--runs 3] [--sets big,small] [--no-write]

For each data set (the rig's big layout: 200 blobs with one 30 MiB layer; 1,000 blobs of 8 KiB)
and each run, interleaved (view off, then on), with the services of the test rig:

  S3    oci.discovery.s3_publish_layout into a new Ceph RGW bucket (http), first publish and
        no-change re-run, requests counted from RGW's access log (benchmarks/s3.py RequestLog)
  SSH   oci.discovery.publish_layout over ssh (rig sshd) into a new web root, first publish and
        no-change re-run

Reported: the medians, and the ratio view on / view off of time and requests (the target:
at most 1.10). Written into benchmarks/results/RESULTS.md between the markers
``<!-- registry_view -->`` and ``<!-- /registry_view -->`` (the rest of the file is left as
``make bench`` wrote it) unless --no-write. Timings are reported, never asserted.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import os

from benchmarks import _common
from benchmarks._common import DATASETS, Playbook, median, procs, task_result

NAME = 'example.test/bench/app'
RESULTS = os.path.join(_common.REPO, 'benchmarks', 'results', 'RESULTS.md')
BEGIN, END = '<!-- registry_view -->', '<!-- /registry_view -->'
TARGET = 1.10


def _books(rgw, sshd, data, workdir):
    """{(store, dataset, view): callable(place) -> Outcome}."""
    from rig.ansible import local_inventory
    connection = {'endpoint_url': rgw.endpoint_url(False), 'region': rgw.region,
                  'access_key': rgw.access_key, 'secret_key': rgw.secret_key}
    books = {}
    for dataset, src in data.items():
        for view in (False, True):
            s3 = Playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{
                'name': 'run', 'oci.discovery.s3_publish_layout': dict(
                    connection, src=src, name=NAME, bucket='{{ place }}', registry_view=view)}]}],
                local_inventory(), workdir, name='rv-s3-%s-%s' % (dataset, view))
            ssh = Playbook([{'hosts': 'web', 'gather_facts': False, 'tasks': [{
                'name': 'run', 'oci.discovery.publish_layout': {
                    'src': src, 'name': NAME, 'root': '{{ place }}', 'registry_view': view}}]}],
                sshd.inventory('web'), workdir, name='rv-ssh-%s-%s' % (dataset, view))
            books[('s3', dataset, view)] = lambda place, book=s3: book.run({'place': place})
            books[('ssh', dataset, view)] = lambda place, book=ssh: book.run({'place': place})
    return books


def _check(outcome, what):
    if not outcome.ok:
        raise _common.BenchError('%s failed: %s' % (what, outcome.reason()))
    return outcome


def run(rgw, sshd, data, workdir, runs=3, sets=DATASETS, log=print):
    from benchmarks.s3 import RequestLog, new_bucket, remove_bucket
    books = _books(rgw, sshd, dict((k, data[k]) for k in sets), workdir)
    cells = {}
    ping = Playbook([{'hosts': 'web', 'gather_facts': False, 'tasks': [{'name': 'run', 'ansible.builtin.ping': {}}]}],
                    sshd.inventory('web'), workdir, name='rv-ping')
    ping.run()     # opens Ansible's ssh master connection
    for run_number in range(runs):
        for dataset in sets:
            for view in (False, True):
                cell = cells.setdefault('%s/%s' % (dataset, view), {
                    's3_first': [], 's3_noop': [], 'ssh_first': [], 'ssh_noop': [],
                    's3_first_requests': [], 's3_noop_requests': []})
                bucket = new_bucket(rgw, 'rv')
                try:
                    for phase in ('first', 'noop'):
                        log_ = RequestLog(rgw).start()
                        outcome = _check(books[('s3', dataset, view)](bucket), 's3 %s %s view=%s' % (phase, dataset, view))
                        counts = log_.stop()
                        cell['s3_%s' % phase].append(outcome.seconds)
                        cell['s3_%s_requests' % phase].append(counts['total'])
                        if phase == 'noop' and task_result(outcome, 'run').get('changed'):
                            raise _common.BenchError('s3 re-run changed something (%s, view=%s)' % (dataset, view))
                finally:
                    remove_bucket(rgw, bucket)
                root = sshd.make_webroot('rv-webroot')
                try:
                    for phase in ('first', 'noop'):
                        outcome = _check(books[('ssh', dataset, view)](root), 'ssh %s %s view=%s' % (phase, dataset, view))
                        cell['ssh_%s' % phase].append(outcome.seconds)
                        if phase == 'noop' and task_result(outcome, 'run').get('changed'):
                            raise _common.BenchError('ssh re-run changed something (%s, view=%s)' % (dataset, view))
                finally:
                    procs.remove_workdir(root)
                log('  run %d %-5s view %-5s S3 first %s (%d requests), no-op %s (%d); SSH first %s, no-op %s' % (
                    run_number + 1, dataset, 'on' if view else 'off', _common.fmt_s(cell['s3_first'][-1]),
                    cell['s3_first_requests'][-1], _common.fmt_s(cell['s3_noop'][-1]), cell['s3_noop_requests'][-1],
                    _common.fmt_s(cell['ssh_first'][-1]), _common.fmt_s(cell['ssh_noop'][-1])))
    return {'runs': runs, 'sets': list(sets), 'cells': cells}


_MEASURES = (('s3_first', 'S3 first publish, time'), ('s3_first_requests', 'S3 first publish, requests'),
             ('s3_noop', 'S3 no-change re-run, time'), ('s3_noop_requests', 'S3 no-change re-run, requests'),
             ('ssh_first', 'SSH first publish, time'), ('ssh_noop', 'SSH no-change re-run, time'))


def rows(results):
    """[(data set, measure, off, on, ratio, met)] of the medians."""
    out = []
    for dataset in results['sets']:
        off, on = results['cells']['%s/False' % dataset], results['cells']['%s/True' % dataset]
        for key, label in _MEASURES:
            a, b = median(off[key]), median(on[key])
            ratio = _common.ratio(b, a)
            out.append((dataset, label, a, b, ratio, ratio is not None and ratio <= TARGET))
    return out


def markdown(results, date):
    def fmt(key, value):
        return '%d' % value if key.endswith('requests') else _common.fmt_s(value)
    lines = [BEGIN, '## Registry view (issue 12)', '',
             'Written by `.venv/bin/python -m benchmarks.registry_view` on %s: medians of %d run(s), view off '
             'and on interleaved. Target: publishing with `registry_view: true` costs at most %.0f%% more time '
             'and requests than with `false`.' % (date, results['runs'], (TARGET - 1) * 100), '']
    table = []
    for (dataset, label, a, b, ratio, met), (key, dummy) in zip(rows(results), _MEASURES * len(results['sets'])):
        table.append([_common.DATASET_LABELS[dataset], label, fmt(key, a), fmt(key, b), _common.fmt_x(ratio),
                      'met' if met else '**missed**'])
    lines.append(_common.table(['data set', 'measure', 'view off', 'view on', 'on / off', 'target <= 1.10x'], table))
    lines += ['', 'What the view adds per family (see the `registry_view` option of the modules): on a web root, '
              'one small file per manifest or index and per tag and the `tags/list` file (blobs are the CAS '
              'files: Nginx maps `/v2/<name>/blobs/<digest>` to them); on S3 the same objects plus one '
              'server-side CopyObject per config and layer (a front that only maps the host root to the bucket '
              'cannot be pointed at the CAS keys), which is why S3 first publishes of many small blobs cost '
              'about one request more per blob.', END]
    return '\n'.join(lines) + '\n'


def write(text, path=RESULTS):
    _common.write_section(text, BEGIN, END, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.registry_view', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--sets', default=','.join(DATASETS))
    parser.add_argument('--no-write', action='store_true')
    args = parser.parse_args(argv)
    sets = [s for s in args.sets.split(',') if s]
    from benchmarks.__main__ import Services
    procs.cleanup()
    procs.become_subreaper()
    services = Services()
    workdir = procs.make_workdir('bench-rv', mode=0o755)
    try:
        data = _common.datasets(workdir)
        results = run(services.rgw, services.sshd, data, workdir, runs=args.runs, sets=sets)
    finally:
        services.stop()
        procs.remove_workdir(workdir)
        procs.stop_own()
        procs.reap_orphans(kill=True, wait=2.0)
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    text = markdown(results, date)
    print(text)
    if not args.no_write:
        write(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
