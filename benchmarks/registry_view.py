# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry view benchmark: what publishing with ``registry_view: true`` costs over ``false``.

    .venv/bin/python -m benchmarks.registry_view [--runs 3] [--sets big,small] [--no-write]

For each data set (the rig's big layout: 200 blobs with one 30 MiB layer; 1,000 blobs of 8 KiB)
and each run, interleaved (view off, then on), with the services of the test rig:

  S3    oci.discovery.s3_publish_layout into a new Ceph RGW bucket (http), first publish and
        no-change re-run, requests counted from RGW's access log (benchmarks/s3.py RequestLog);
        with the module's defaults, i.e. view off: site layout cas_bucket, view on: site layout
        registry (a new family with the view gets it); and, view on, the cas_bucket layout given
        explicitly (the view then copies every config and layer: what an existing family costs)
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
import json
import os

from benchmarks import _common
from benchmarks._common import DATASETS, Playbook, median, procs, task_result

NAME = 'example.test/bench/app'
RESULTS = os.path.join(_common.REPO, 'benchmarks', 'results', 'RESULTS.md')
RESULTS_JSON = os.path.join(_common.REPO, 'benchmarks', 'results', 'results.json')
BEGIN, END = '<!-- registry_view -->', '<!-- /registry_view -->'
TARGET = 1.10
COPIES = 'copies'                # view on with site_layout cas_bucket given (S3 only)
VIEWS = (False, True, COPIES)


def _books(rgw, sshd, data, workdir):
    """{(store, dataset, view): callable(place) -> Outcome}."""
    from rig.ansible import local_inventory
    connection = {'endpoint_url': rgw.endpoint_url(False), 'region': rgw.region,
                  'access_key': rgw.access_key, 'secret_key': rgw.secret_key}
    books = {}
    for dataset, src in data.items():
        for view in VIEWS:
            extra = {'site_layout': 'cas_bucket'} if view == COPIES else {}
            s3 = Playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{
                'name': 'run', 'oci.discovery.s3_publish_layout': dict(
                    connection, src=src, name=NAME, bucket='{{ place }}', registry_view=bool(view), **extra)}]}],
                local_inventory(), workdir, name='rv-s3-%s-%s' % (dataset, view))
            books[('s3', dataset, view)] = lambda place, book=s3: book.run({'place': place})
            if view == COPIES:
                continue
            ssh = Playbook([{'hosts': 'web', 'gather_facts': False, 'tasks': [{
                'name': 'run', 'oci.discovery.publish_layout': {
                    'src': src, 'name': NAME, 'root': '{{ place }}', 'registry_view': view}}]}],
                sshd.inventory('web'), workdir, name='rv-ssh-%s-%s' % (dataset, view))
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
            for view in VIEWS:
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
                if view == COPIES:
                    log('  run %d %-5s view on, cas_bucket: S3 first %s (%d requests), no-op %s (%d)' % (
                        run_number + 1, dataset, _common.fmt_s(cell['s3_first'][-1]), cell['s3_first_requests'][-1],
                        _common.fmt_s(cell['s3_noop'][-1]), cell['s3_noop_requests'][-1]))
                    continue
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
    """[(data set, measure, off, on, ratio, met, key)] of the medians (the copies rows: S3 only, not a target)."""
    out = []
    for dataset in results['sets']:
        off = results['cells']['%s/False' % dataset]
        for view, measures in ((True, _MEASURES), (COPIES, [m for m in _MEASURES if m[0].startswith('s3')])):
            on = results['cells'].get('%s/%s' % (dataset, view))
            if on is None:
                continue
            for key, label in measures:
                a, b = median(off[key]), median(on[key])
                ratio = _common.ratio(b, a)
                if view == COPIES:
                    label = label.replace('S3 ', 'S3 with site_layout cas_bucket (copies), ')
                out.append((dataset, label, a, b, ratio, None if view == COPIES else
                            (ratio is not None and ratio <= TARGET), key))
    return out


def markdown(results, date):
    def fmt(key, value):
        return '%d' % value if key.endswith('requests') else _common.fmt_s(value)
    lines = [BEGIN, '## Registry view (issue 12)', '',
             'Written by `.venv/bin/python -m benchmarks.registry_view` on %s: medians of %d run(s), view off '
             'and on interleaved. Target: publishing with `registry_view: true` costs at most %.0f%% more time '
             'and requests than with `false`. Load average (1 min) at start / end: %.2f / %.2f.'
             % (date, results['runs'], (TARGET - 1) * 100, results.get('load_start', 0), results.get('load_end', 0)), '']
    table = []
    for dataset, label, a, b, ratio, met, key in rows(results):
        table.append([_common.DATASET_LABELS[dataset], label, fmt(key, a), fmt(key, b), _common.fmt_x(ratio),
                      '-' if met is None else 'met' if met else '**missed**'])
    lines.append(_common.table(['data set', 'measure', 'view off', 'view on', 'on / off', 'target <= 1.10x'], table))
    lines += ['', 'S3 with the module\'s defaults: view off is the `cas_bucket` site layout, view on the `registry` '
              'site layout a new family gets with the view (its blobs are at `v2/<name>/blobs/`, the view adds one '
              'object per manifest or index and per tag, `tags/list` and the two API root objects). The rows '
              '"with site_layout cas_bucket (copies)" are the view on a family kept in `cas_bucket` (published '
              'before): one server-side CopyObject more per config and layer, not a target. On a web root the '
              'view adds the small files alone (Nginx maps `/v2/<name>/blobs/<digest>` to the CAS files). '
              'Other helpers were loading the 2 cores during the run (see the load average), so time ratios '
              'carry noise of a few percent; request counts are exact.', END]
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
    load_start = os.getloadavg()[0]
    try:
        data = _common.datasets(workdir)
        results = run(services.rgw, services.sshd, data, workdir, runs=args.runs, sets=sets)
        results.update(load_start=load_start, load_end=os.getloadavg()[0])
    finally:
        services.stop()
        procs.remove_workdir(workdir)
        procs.stop_own()
        procs.reap_orphans(kill=True, wait=2.0)
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    results['date'] = date
    text = markdown(results, date)
    print(text)
    if not args.no_write:
        write(text)
        with open(RESULTS_JSON) as handle:
            merged = json.load(handle)
        merged['registry_view'] = dict(results, rows=rows(results))
        with open(RESULTS_JSON, 'w') as handle:
            json.dump(merged, handle, indent=1, sort_keys=True, default=str)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
