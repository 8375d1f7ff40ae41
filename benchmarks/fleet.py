# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark: one layout published to 4 hosts in one play (forks 4) against 1 host.

Four sshd listeners on loopback (tests/rig/sshd.py), each for a user of its own (ocifleet1..4)
with a web root of its own; ssh without -C. Per run, each case publishes the big data set into
new web roots (first publish) and runs again (no-change re-run), timed as whole ansible-playbook
processes:

  one          1 host
  four         4 hosts, forks 4 (the layout hashed once for the fleet: the record of verified
               blobs, with a cache directory new for each first publish)
  four_nocache 4 hosts, forks 4, the record unusable (XDG_CACHE_HOME leads through a file): every
               host's run hashes the layout, the behaviour before the record

After the first publish of "four" the four served trees are compared by hash. Then, once, the
sshd of web4 is stopped and the four-host play is run into new roots: the three others must
complete and the play must name web4.

Also (--local-mib, 0 to skip) the no-change re-run of a layout with one large layer into a local
web root (local connection), with the record and without, beside Ansible's ping floor.

    .venv/bin/python -m benchmarks.fleet [--runs 3] [--local-mib 1024] [--no-write]
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import os
import shutil
import sys

from benchmarks import _common
from benchmarks._common import Playbook, fmt_s, fmt_x, median, procs, ratio, table

HOSTS = 4
NAME = 'example.test/fleet/app'
SSH_ARGS = '-o ControlMaster=auto -o ControlPersist=60s'
CASES = (('one', '1 host'), ('four', '4 hosts, forks 4'), ('four_nocache', '4 hosts, forks 4, no record'))


class Fleet(object):
    def __init__(self, workdir, layout):
        from rig.sshd import Sshd
        self.workdir = workdir
        self.layout = layout
        self.sshds = []
        for i in range(HOSTS):
            self.sshds.append(Sshd(user='ocifleet%d' % (i + 1), name='bench-sshd-fleet%d' % (i + 1)).start())
        self.hosts = ['web%d' % (i + 1) for i in range(HOSTS)]
        control = os.path.join(workdir, 'fleet-cp')
        os.makedirs(control, exist_ok=True)
        self.env = {'ANSIBLE_FORKS': str(HOSTS), 'ANSIBLE_SSH_CONTROL_PATH_DIR': control}
        self.books = {}
        for key, count in (('one', 1), ('four', HOSTS)):
            inventory = {'all': {'hosts': dict((host, sshd.host_vars(ansible_ssh_args=SSH_ARGS))
                                               for host, sshd in zip(self.hosts[:count], self.sshds[:count]))}}
            self.books[key] = Playbook(
                [{'hosts': 'all', 'gather_facts': False, 'tasks': [{'name': 'run', 'oci.discovery.publish_layout': {
                    'src': layout, 'name': NAME, 'root': '{{ roots[inventory_hostname] }}'}}]}],
                inventory, workdir, name='fleet-' + key, env=self.env)
            self.books['ping-' + key] = Playbook(
                [{'hosts': 'all', 'gather_facts': False, 'tasks': [{'name': 'run', 'ansible.builtin.ping': {}}]}],
                inventory, workdir, name='fleet-ping-' + key, env=self.env)

    def roots(self, count):
        return dict((host, sshd.make_webroot('bench-fleet-root'))
                    for host, sshd in zip(self.hosts[:count], self.sshds[:count]))

    def publish(self, key, roots, cache):
        book = self.books['one' if key == 'one' else 'four']
        book.env['XDG_CACHE_HOME'] = cache
        return book.run({'roots': roots})

    def stop(self):
        for sshd in self.sshds:
            try:
                sshd.stop()
            except Exception as e:  # pylint: disable=broad-except
                print('bench: stopping %r failed: %s' % (sshd, e))


def _cache(workdir, key, number):
    """A new cache directory, or (no record) a path through a regular file, where nothing can be created."""
    if key.endswith('nocache'):
        blocker = os.path.join(workdir, 'not-a-directory')
        if not os.path.exists(blocker):
            open(blocker, 'w').close()
        return os.path.join(blocker, 'cache')
    path = os.path.join(workdir, 'cache-%s-%d' % (key, number))
    os.makedirs(path)
    return path


def _results(outcome):
    try:
        return outcome.result.task('run')
    except KeyError:
        return {}


def run(workdir, runs=3, local_mib=1024, log=print):
    from rig import layouts
    from rig.published import served_tree
    layout = layouts.cached_layouts(('big',)).big
    out = {'runs': runs, 'hosts': HOSTS, 'cells': dict((key, {'first': [], 'noop': []}) for key, dummy in CASES),
           'floor': [], 'floor_four': [], 'identical_trees': None, 'load_start': os.getloadavg()[0]}
    fleet = Fleet(workdir, layout)
    try:
        for key in ('ping-one', 'ping-four'):
            fleet.books[key].run()      # opens the ssh master connections (ControlPersist)
        for number in range(runs):
            for key, label in CASES:
                fleet.books['ping-four'].run()      # every master warm, as for the floor
                count = 1 if key == 'one' else HOSTS
                roots = fleet.roots(count)
                cache = _cache(workdir, key, number)
                first = fleet.publish(key, roots, cache)
                noop = fleet.publish(key, roots, cache)
                for phase, outcome in (('first', first), ('noop', noop)):
                    if not outcome.ok:
                        raise _common.BenchError('%s, %s: %s' % (label, phase, outcome.reason()))
                results = _results(noop)
                if any(r.get('changed') for r in results.values()):
                    out['cells'][key]['noop_changed'] = True
                out['cells'][key]['first'].append(first.seconds)
                out['cells'][key]['noop'].append(noop.seconds)
                if key == 'four' and number == 0:
                    trees = [served_tree(root) for root in roots.values()]
                    out['identical_trees'] = bool(trees[0]) and all(tree == trees[0] for tree in trees)
                    out['files_per_host'] = len(trees[0])
                for root in roots.values():
                    procs.remove_workdir(root)
                if not key.endswith('nocache'):
                    shutil.rmtree(cache, ignore_errors=True)
                log('  run %d %-28s first %s  no-op %s' % (number + 1, label, fmt_s(first.seconds), fmt_s(noop.seconds)))
            out['floor'].append(fleet.books['ping-one'].run().seconds)
            out['floor_four'].append(fleet.books['ping-four'].run().seconds)
        out['down'] = _one_host_down(fleet, workdir, log)
    finally:
        fleet.stop()
    if local_mib:
        out['local'] = _local(workdir, runs, local_mib, log)
    for cell in out['cells'].values():
        cell['first_median'] = median(cell['first'])
        cell['noop_median'] = median(cell['noop'])
    out['floor_median'] = median(out['floor'])
    out['floor_four_median'] = median(out['floor_four'])
    cells = out['cells']
    out['ratios'] = {
        'first_four_vs_one': ratio(cells['four']['first_median'], cells['one']['first_median']),
        'noop_four_vs_one': ratio(cells['four']['noop_median'], cells['one']['noop_median']),
        'first_nocache_vs_one': ratio(cells['four_nocache']['first_median'], cells['one']['first_median']),
        'noop_nocache_vs_one': ratio(cells['four_nocache']['noop_median'], cells['one']['noop_median']),
    }
    out['load_end'] = os.getloadavg()[0]
    out['date'] = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    return out


def _one_host_down(fleet, workdir, log):
    """web4's sshd stopped: the four-host play into new roots; who completed, who was named."""
    from rig.published import served_tree
    down = fleet.sshds[-1]
    down.stop()
    roots = fleet.roots(HOSTS - 1)
    roots[fleet.hosts[-1]] = '/nonexistent/never-reached'
    cache = _cache(workdir, 'down', 0)
    outcome = fleet.publish('four', roots, cache)
    results = _results(outcome)
    stats = outcome.result.stats
    found = {
        'seconds': outcome.seconds,
        'rc': outcome.rc,
        'completed': sorted(h for h, r in results.items() if r.get('changed') and not r.get('failed')
                            and not r.get('unreachable')),
        'unreachable': sorted(h for h, s in stats.items() if s.get('unreachable')),
        'named_in_output': fleet.hosts[-1] in outcome.stdout,
    }
    trees = [served_tree(root) for host, root in sorted(roots.items()) if host != fleet.hosts[-1]]
    found['identical_trees'] = bool(trees[0]) and all(tree == trees[0] for tree in trees)
    for host, root in roots.items():
        if host != fleet.hosts[-1]:
            procs.remove_workdir(root)
    shutil.rmtree(cache, ignore_errors=True)
    log('  web4 down: %.2f s, completed %s, unreachable %s'
        % (found['seconds'], ', '.join(found['completed']), ', '.join(found['unreachable'])))
    return found


def _local(workdir, runs, size_mib, log):
    """The no-change re-run of a layout with one ``size_mib`` MiB layer into a local web root, record on and off."""
    from benchmarks import validate_memory
    from rig.ansible import local_inventory
    layout = os.path.join(workdir, 'local-layout')
    validate_memory.build_layout(layout, size_mib)
    book = Playbook([{'hosts': 'all', 'gather_facts': False, 'tasks': [{'name': 'run', 'oci.discovery.publish_layout': {
        'src': layout, 'name': NAME, 'root': '{{ root }}'}}]}], local_inventory(), workdir, name='fleet-local')
    ping = Playbook([{'hosts': 'all', 'gather_facts': False, 'tasks': [{'name': 'run', 'ansible.builtin.ping': {}}]}],
                    local_inventory(), workdir, name='fleet-local-ping')
    root = os.path.join(workdir, 'local-root')
    cache = _cache(workdir, 'local', 0)
    out = {'size_mib': size_mib, 'record': [], 'no_record': [], 'floor': []}
    book.env['XDG_CACHE_HOME'] = cache
    first = book.run({'root': root})
    if not first.ok:
        raise _common.BenchError('local first publish: %s' % first.reason())
    out['first'] = first.seconds
    ping.run()
    for number in range(runs):
        for key, where in (('record', cache), ('no_record', _cache(workdir, 'local_nocache', number))):
            book.env['XDG_CACHE_HOME'] = where
            outcome = book.run({'root': root})
            if not outcome.ok:
                raise _common.BenchError('local no-op (%s): %s' % (key, outcome.reason()))
            out[key].append(outcome.seconds)
        out['floor'].append(ping.run().seconds)
        log('  local %d MiB layer, no-op: record %s, no record %s, ping %s' % (
            size_mib, fmt_s(out['record'][-1]), fmt_s(out['no_record'][-1]), fmt_s(out['floor'][-1])))
    for key in ('record', 'no_record', 'floor'):
        out[key + '_median'] = median(out[key])
    shutil.rmtree(layout, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return out


def targets(out):
    """[(area, target, measured, ok)] of the fleet targets (issue 14)."""
    ratios = out['ratios']
    down = out.get('down') or {}
    rows = [
        ('Fleet', 'first publish, 4 hosts <= 1.6x 1 host', fmt_x(ratios['first_four_vs_one']),
         None if ratios['first_four_vs_one'] is None else ratios['first_four_vs_one'] <= 1.6),
        ('Fleet', 'no-change re-run, 4 hosts <= 1.3x 1 host', fmt_x(ratios['noop_four_vs_one']),
         None if ratios['noop_four_vs_one'] is None else ratios['noop_four_vs_one'] <= 1.3),
        ('Fleet', 'identical trees on the 4 hosts (by hash)', str(out['identical_trees']), out['identical_trees']),
    ]
    if down:
        ok = down['completed'] == ['web1', 'web2', 'web3'] and down['unreachable'] == ['web4'] and down['named_in_output']
        rows.append(('Fleet', 'web4 sshd stopped: the 3 others complete, web4 named',
                     'completed %s; unreachable %s' % (', '.join(down['completed']) or 'none',
                                                       ', '.join(down['unreachable']) or 'none'), ok))
    local = out.get('local')
    if local:
        beyond = local['record_median'] - local['floor_median']
        rows.append(('Local %d MiB' % local['size_mib'], 'no-change re-run <= Ansible floor + 0.3 s',
                     '%s s beyond the floor' % fmt_s(beyond), beyond <= 0.3))
    return rows


def markdown_section(out):
    cells = out['cells']
    rows = [[label, fmt_s(cells[key]['first_median']), fmt_s(cells[key]['noop_median']),
             fmt_x(ratio(cells[key]['first_median'], cells['one']['first_median'])),
             fmt_x(ratio(cells[key]['noop_median'], cells['one']['noop_median']))] for key, label in CASES]
    lines = ['## Fleet (one layout to 4 hosts)', '',
             'benchmarks/fleet.py on %s, %d run(s), medians; the big data set (200 blobs, one 30 MiB layer) over ssh '
             'without -C to %d sshd listeners on loopback, one user and one web root each; forks %d. Ansible\'s ping '
             'over ssh: %s s. The machine has 2 cores, shared with other work during the run (load average, 1 min, '
             'at start / end: %.2f / %.2f): the ratios, measured interleaved, are fairer than the absolute times; '
             'the 4 hosts also share those 2 cores with the controller.' % (
                 out['date'], out['runs'], out['hosts'], out['hosts'], fmt_s(out['floor_median']),
                 out.get('load_start', 0), out.get('load_end', 0)),
             '',
             table(['case', 'first publish (s)', 'no-change re-run (s)', 'first vs 1 host', 'no-op vs 1 host'], rows),
             '', 'Ansible\'s own fleet cost, in the same run: ansible.builtin.ping to the 4 hosts (forks 4) took %s s, '
             '%s its time to 1 host.' % (fmt_s(out.get('floor_four_median')),
                                         fmt_x(ratio(out.get('floor_four_median'), out['floor_median']))),
             '', '"no record": XDG_CACHE_HOME leads through a file, so every host\'s run hashes the layout on the '
             'controller, as before the record of verified blobs. Identical trees on the 4 hosts (sha256 of every '
             'served file): %s (%s files each).' % (out['identical_trees'], out.get('files_per_host', '-')), '']
    down = out.get('down')
    if down:
        lines += ['With web4\'s sshd stopped, the 4-host play (new roots) took %s s and exited %d; completed: %s; '
                  'unreachable: %s; web4 named in the output: %s; the completed trees identical: %s.' % (
                      fmt_s(down['seconds']), down['rc'], ', '.join(down['completed']) or 'none',
                      ', '.join(down['unreachable']) or 'none', down['named_in_output'], down['identical_trees']), '']
    local = out.get('local')
    if local:
        lines += ['Local web root (local connection), a layout with one %d MiB layer: first publish %s s; no-change '
                  're-run %s s with the record, %s s without (every blob hashed, the behaviour before); Ansible\'s '
                  'ping %s s.' % (local['size_mib'], fmt_s(local['first']), fmt_s(local['record_median']),
                                  fmt_s(local['no_record_median']), fmt_s(local['floor_median'])), '']
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.fleet', description=__doc__.split('\n', 1)[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--local-mib', type=int, default=1024, help='layer of the local no-op case (0: skip it)')
    parser.add_argument('--no-write', action='store_true', help='print only; do not update benchmarks/results/')
    args = parser.parse_args(argv)
    procs.cleanup()
    procs.become_subreaper()
    workdir = procs.make_workdir('bench-fleet', mode=0o755)
    try:
        out = run(workdir, runs=args.runs, local_mib=args.local_mib)
    finally:
        procs.remove_workdir(workdir)
        procs.stop_own()
        procs.reap_orphans(kill=True, wait=2.0)
    print('\n'.join(markdown_section(out)))
    for area, target, measured, ok in targets(out):
        print('%-12s %-56s %-44s %s' % (area, target, measured, {True: 'met', False: 'MISSED', None: '-'}[ok]))
    if not args.no_write:
        from benchmarks import report
        print('bench: fleet results merged into %s and RESULTS.md' % report.merge('fleet', out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
