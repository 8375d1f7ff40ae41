# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pull benchmark: oci.discovery.pull beside skopeo copy, the same bytes from two kinds of source.

    .venv/bin/python -m benchmarks.pull [--runs 3] [--no-write]    (or: python -m benchmarks --scenarios pull)

Data: the big data set (tests/rig/layouts.py: 10 tags, 200 blobs, one 30 MiB layer). Sources,
both plain http on 127.0.0.1:

  oci.discovery  the layout published with oci.discovery.publish_layout (cas_bucket site), served by
                 nginx; names 127.0.0.1/bench/big#TAG (protocols http, the nginx port)
  registry       Debian's docker-registry (Distribution 2.8), filled with
                 ``skopeo copy oci:L:TAG docker://127.0.0.1:PORT/bench/big:TAG``

Measured, each as a whole process, interleaved run by run (medians of the runs):

  pull, 10 tags      ansible-playbook running oci.discovery.pull once for the 10 names, into a new layout
  pull, no change    the same again (only the discovery documents are fetched)
  skopeo, 10 tags    skopeo copy docker://...:TAG oci:DEST:TAG for each tag in turn, into a new layout
  pull / skopeo, 1 tag   the "huge" tag alone (its 30 MiB layer and a few small blobs)
  Ansible floor      ansible-playbook running ansible.builtin.ping (local connection)

Peak memory: VmHWM of every process of the tree (ansible-playbook, its workers, the module; or
skopeo), polled every 20 ms; for the 10 skopeo runs, the highest. Every pulled layout is checked
(skopeo inspect of each tag gives the source's digest) before its figures count.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

from benchmarks import _common
from benchmarks._common import Playbook, fmt_s, median, procs, run_with_peak, table

NAME = '127.0.0.1/bench/big'
REPOSITORY = 'bench/big'
CELLS = (('pull_all', 'oci.discovery.pull, 10 tags'), ('pull_noop', 'oci.discovery.pull, no change'),
         ('skopeo_all', 'skopeo copy, 10 tags (10 runs)'), ('pull_huge', 'oci.discovery.pull, 1 tag (30 MiB layer)'),
         ('skopeo_huge', 'skopeo copy, 1 tag (30 MiB layer)'), ('floor', 'Ansible floor (ping)'))
REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: 127.0.0.1:%d
"""


class Sources(object):
    """The big layout published to an nginx site and pushed to a docker-registry, both on loopback."""

    def __init__(self, workdir, layout, tags, log=print):
        from rig.ansible import local_inventory
        from rig.nginx import Nginx
        from rig.published import site_config
        self.workdir = workdir
        self.tags = tags
        root = os.path.join(workdir, 'site')
        os.makedirs(root, mode=0o755)
        self.nginx = Nginx(name='bench-pull-nginx')
        self.nginx.start(servers=[site_config(root)])
        base_url = self.nginx.url('/').rstrip('/')
        book = Playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'publish', 'oci.discovery.publish_layout': {'src': layout, 'name': NAME, 'root': root,
                                                                 'base_url': base_url}},
            {'name': 'well-known', 'oci.discovery.ref_engines': {'root': root, 'base_url': base_url}}]}],
            local_inventory(), workdir, name='pull-publish')
        outcome = book.run()
        if not outcome.ok:
            raise _common.BenchError('publishing the big layout failed: %s' % outcome.reason())
        registry = _common.which('docker-registry')
        if registry is None:
            raise _common.BenchError('docker-registry is not installed (scripts/bootstrap installs it)')
        self.registry_port = procs.free_port()
        config = os.path.join(workdir, 'registry.yml')
        with open(config, 'w') as handle:
            handle.write(REGISTRY_CONFIG % (os.path.join(workdir, 'registry-data'), self.registry_port))
        self.registry = procs.Service('docker-registry', [registry, 'serve', config],
                                      os.path.join(workdir, 'registry.log'))
        procs.wait_http('http://127.0.0.1:%d/v2/' % self.registry_port, 'docker-registry', [self.registry])
        for tag in tags:
            procs.run(['skopeo', 'copy', '--dest-tls-verify=false', 'oci:%s:%s' % (layout, tag),
                       'docker://127.0.0.1:%d/%s:%s' % (self.registry_port, REPOSITORY, tag)],
                      what='skopeo copy into the registry', timeout=300)
        log('  sources: nginx %s, docker-registry 127.0.0.1:%d' % (base_url, self.registry_port))

    def stop(self):
        self.registry.stop()
        self.nginx.remove()


def _pull_book(sources, workdir, tags, name):
    from rig.ansible import local_inventory
    args = {'name': ['%s#%s' % (NAME, tag) for tag in tags], 'dest': '{{ dest }}', 'protocols': ['http'],
            'port': sources.nginx.port}
    return Playbook([{'hosts': 'localhost', 'gather_facts': False,
                      'tasks': [{'name': 'pull', 'oci.discovery.pull': args}]}], local_inventory(), workdir, name=name)


def _skopeo(sources, tag, dest):
    return ['skopeo', 'copy', '--src-tls-verify=false',
            'docker://127.0.0.1:%d/%s:%s' % (sources.registry_port, REPOSITORY, tag), 'oci:%s:%s' % (dest, tag)]


def _peak_mb(peak):
    """The highest peak of the tree, and that of the module process (None when there is none)."""
    top = peak.top(len(peak.peaks) or 1)
    module = [mb for mb, cmd in top if 'AnsiballZ_' in cmd]
    return (top[0][0] if top else None), (module[0] if module else None)


def _record(cell, outcome, peak):
    cell['seconds'].append(outcome.seconds)
    highest, module = _peak_mb(peak)
    cell['peak_mb'].append(highest)
    cell['module_mb'].append(module)


def _check(dest, layout, tags):
    """skopeo inspect of every tag of the pulled layout gives the source's digest."""
    from rig.layouts import read_index
    source = dict(((e.get('annotations') or {}).get('org.opencontainers.image.ref.name'), e['digest'])
                  for e in read_index(layout)['manifests'])
    for tag in tags:
        proc = subprocess.run(['skopeo', 'inspect', 'oci:%s:%s' % (dest, tag)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        got = json.loads(proc.stdout or b'{}')
        if got.get('Digest') != source[tag]:
            raise _common.BenchError('%s:%s has digest %s, the source %s' % (dest, tag, got.get('Digest'), source[tag]))


def run(workdir, runs=3, log=print):
    from rig import layouts
    from rig.ansible import local_inventory
    layout = layouts.cached_layouts(('big',)).big
    tags = layouts.describe(layout)['tag_list']
    out = {'runs': runs, 'tags': len(tags),
           'cells': dict((key, {'seconds': [], 'peak_mb': [], 'module_mb': []}) for key, dummy in CELLS)}
    sources = Sources(workdir, layout, tags, log)
    out['load_start'] = os.getloadavg()[0]
    try:
        books = {'all': _pull_book(sources, workdir, tags, 'pull-all'),
                 'huge': _pull_book(sources, workdir, ['huge'], 'pull-huge')}
        floor = Playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{'ansible.builtin.ping': {}}]}],
                         local_inventory(), workdir, name='pull-floor')
        floor.run()   # warm caches (bytecode, collections) for everyone
        for number in range(runs):
            cells = out['cells']
            for key, book, tag_list in (('all', books['all'], tags), ('huge', books['huge'], ['huge'])):
                dest = os.path.join(workdir, 'dest-%s-%d' % (key, number))
                outcome, peak = run_with_peak(book.argv({'dest': dest}), env=book.env, cwd=book.dir)
                if outcome.rc != 0:
                    raise _common.BenchError('oci.discovery.pull failed: %s' % outcome.reason())
                _check(dest, layout, tag_list)
                _record(cells['pull_' + key], outcome, peak)
                if key == 'all':
                    outcome, peak = run_with_peak(book.argv({'dest': dest}), env=book.env, cwd=book.dir)
                    if outcome.rc != 0 or '"changed": true' in outcome.stdout:
                        raise _common.BenchError('the no-change pull failed or changed something: %s' % outcome.reason())
                    _record(cells['pull_noop'], outcome, peak)
                shutil.rmtree(dest)
                dest = os.path.join(workdir, 'skopeo-%s-%d' % (key, number))
                seconds, peaks = 0.0, []
                for tag in tag_list:
                    outcome, peak = run_with_peak(_skopeo(sources, tag, dest), env=procs.service_env())
                    if outcome.rc != 0:
                        raise _common.BenchError('skopeo copy failed: %s' % outcome.reason())
                    seconds += outcome.seconds
                    peaks.append(_peak_mb(peak)[0])
                _check(dest, layout, tag_list)
                cells['skopeo_' + key]['seconds'].append(seconds)
                cells['skopeo_' + key]['peak_mb'].append(max(p for p in peaks if p is not None))
                shutil.rmtree(dest)
            outcome, peak = run_with_peak(floor.argv(), env=floor.env, cwd=floor.dir)
            _record(cells['floor'], outcome, peak)
            figures = ['%s %s s' % (key, fmt_s(cells[key]['seconds'][-1])) for key, dummy in CELLS]
            log('  run %d: %s' % (number + 1, ', '.join(figures)))
    finally:
        sources.stop()
    for cell in out['cells'].values():
        cell['seconds_median'] = median(cell['seconds'])
        cell['peak_mb_median'] = median(cell['peak_mb'])
        cell['module_mb_median'] = median(cell['module_mb'])
    out['load_end'] = os.getloadavg()[0]
    out['date'] = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    out['versions'] = {'skopeo': _common._first_line(['skopeo', '--version'], r'version (\S+)'),
                       'docker-registry': _common._first_line(['docker-registry', '--version'], r'(v?\d[\d.]+\S*)')}
    return out


def _mb(value):
    return '-' if value is None else '%.1f MB' % value


def markdown_section(out):
    """The "Pull" section of RESULTS.md."""
    cells = out['cells']
    floor = cells['floor']['seconds_median']
    rows = []
    for key, label in CELLS:
        cell = cells[key]
        beyond = '-' if key == 'floor' or not key.startswith('pull') or floor is None else \
            fmt_s(cell['seconds_median'] - floor)
        rows.append([label, fmt_s(cell['seconds_median']), beyond, _mb(cell.get('peak_mb_median')),
                     _mb(cell.get('module_mb_median'))])
    return ['## Pull (oci.discovery.pull beside skopeo copy)', '',
            'benchmarks/pull.py on %s, %d run(s), medians; the big data set (%d tags, 200 blobs, one 30 MiB layer) '
            'over plain http on loopback: oci.discovery.pull from a site published by the collection (nginx), '
            'skopeo %s from Debian\'s docker-registry %s holding the same bytes. Every pulled layout is checked '
            '(skopeo inspect gives the source\'s digests). Load average (1 min) at start / end: %.2f / %.2f.' % (
                out['date'], out['runs'], out['tags'], out['versions']['skopeo'], out['versions']['docker-registry'],
                out.get('load_start', 0), out.get('load_end', 0)),
            '',
            table(['what', 'time (s)', 'beyond the Ansible floor (s)', 'peak RSS, largest process',
                   'peak RSS, module'], rows), '',
            'skopeo copies one image per run: the 10 tags are 10 processes (times added, the largest peak shown); '
            'oci.discovery.pull takes the 10 names in one task (one resolution client, one index.json update). '
            'The no-change run fetches only the well-known document and the family index. The largest process of '
            'an Ansible run is ansible-playbook on the controller; the module (the pull itself, on the managed host) '
            'is shown apart.', '']


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.pull', description=__doc__.split('\n', 1)[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--no-write', action='store_true', help='print only; do not update benchmarks/results/')
    args = parser.parse_args(argv)
    procs.cleanup()
    workdir = procs.make_workdir('bench-pull', mode=0o755)
    try:
        out = run(workdir, runs=args.runs)
    finally:
        procs.remove_workdir(workdir)
        procs.stop_own()
    print('\n'.join(markdown_section(out)))
    if not args.no_write:
        from benchmarks import report
        print('bench: pull results merged into %s and RESULTS.md' % report.merge('pull', out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
