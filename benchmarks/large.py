# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large-layer benchmark: one 1 GiB layer and 20 small blobs published into a web root, against a verified copy.

One layout: a layer of --mib MiB of random bytes, 19 small layers (16 KiB) and the config, one
manifest tagged "large" (22 blobs). Each run, interleaved:

  local    (ansible_connection=local, web root on the controller's disk)
    ping         ansible-playbook running ansible.builtin.ping: Ansible's floor
    floor_copy   `sha256sum` of every blob, `cp -a` of the layout, `sync`: a verified, durable copy
    oci          ansible-playbook running oci.discovery.publish_layout: first publish into an empty web
                 root, then the no-change re-run
  ssh      (the benchmark's sshd on loopback; Ansible's ssh without -C, its own warm ControlMaster)
    ping         ansible.builtin.ping over that connection
    floor_copy   `rsync -a -e ssh` of the layout (no -C), then over ssh `sha256sum` of the sent blobs
                 and `sync`
    oci          publish_layout first publish and no-change re-run

For every publish: the wall time, the peak RSS of each process of the tree (ansible-playbook, its
workers, the target phases; over ssh also what runs under the sshd) and the peak disk use of the
controller's temporary directories (ANSIBLE_LOCAL_TEMP, and on the local connection also
ANSIBLE_REMOTE_TEMP, which is then on the controller too), polled every 20 ms.

    .venv/bin/python -m benchmarks.large [--mib 128] [--runs 3] [--no-write]

Written into benchmarks/results/RESULTS.md between the markers ``<!-- large -->`` and
``<!-- /large -->`` (the rest of the file is left as it is) and into results.json under "large".
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import hashlib
import json
import os
import shutil
import threading
import time

from benchmarks import _common
from benchmarks._common import Playbook, fmt_s, fmt_x, median, procs, table, timed

NAME = 'example.test/bench/large'
SMALL_LAYERS = 19
SMALL_BYTES = 16 * 1024
SSH_ARGS_NO_COMPRESSION = '-o ControlMaster=auto -o ControlPersist=60s'
# The targets of issue 14.
FIRST_VS_FLOOR = 1.3
NOOP_BEYOND_PING_S = 0.3
RSS_MB = 150
TEMP_MIB = 64
MIB = 1024 * 1024
RESULTS_DIR = os.path.join(_common.REPO, 'benchmarks', 'results')
BEGIN, END = '<!-- large -->', '<!-- /large -->'


def build_layout(root, size_mib):
    """The layout described in the module docstring, the big layer streamed to disk; its path."""
    from rig import layouts
    layouts.init_layout(root)
    blobs = os.path.join(root, 'blobs', 'sha256')
    part = os.path.join(blobs, '.part')
    digest = hashlib.sha256()
    with open(part, 'wb') as handle:
        for dummy in range(size_mib):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            handle.write(chunk)
    os.rename(part, os.path.join(blobs, digest.hexdigest()))
    layers = [{'mediaType': layouts.MT_LAYER_GZIP, 'digest': 'sha256:' + digest.hexdigest(), 'size': size_mib * MIB}]
    layers += [layouts.descriptor(root, layouts.MT_LAYER_GZIP, os.urandom(SMALL_BYTES)) for dummy in range(SMALL_LAYERS)]
    return _common.tag_image(root, 'large', layers)


def _dir_bytes(path):
    total = 0
    for dirpath, dummy, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


class _TempWatch(object):
    """Poll the disk use of directories every 20 ms; ``peak`` is the highest total seen (bytes)."""

    def __init__(self, paths, interval=0.02):
        self.paths = paths
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name='temp-watch')
        self._thread.daemon = True

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_dir_bytes(p) for p in self.paths))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _measured(book, extra_vars, temp_dirs, roots=()):
    """Run a playbook with its peak RSS and temp space watched: (Outcome, {peak_mb, top, temp_bytes})."""
    argv = book.argv(extra_vars)
    with _TempWatch(temp_dirs) as watch:
        outcome, peak = _common.run_with_peak(argv, env=book.env, cwd=book.dir, roots=roots)
    outcome.result = _common.PlaybookResult(argv, outcome.rc, outcome.stdout, outcome.stderr, book.dir)
    if outcome.result.failed and outcome.rc == 0:
        outcome.rc = 2
    top = peak.top(3)
    return outcome, {'peak_mb': top[0][0] if top else None, 'top': [(mb, cmd[:80]) for mb, cmd in top],
                     'temp_bytes': watch.peak}


class _Where(object):
    """One place to publish into: local or over ssh; the playbooks and the floor of that place."""

    def __init__(self, kind, layout, workdir, sshd=None):
        self.kind = kind
        self.layout = layout
        self.sshd = sshd
        self.workdir = workdir
        self.local_tmp = os.path.join(workdir, kind + '-local-tmp')
        self.remote_tmp = os.path.join(workdir, kind + '-remote-tmp')
        os.makedirs(self.local_tmp, exist_ok=True)
        env = {'ANSIBLE_LOCAL_TEMP': self.local_tmp}
        if kind == 'local':
            from rig.ansible import local_inventory
            os.makedirs(self.remote_tmp, exist_ok=True)
            env['ANSIBLE_REMOTE_TEMP'] = self.remote_tmp
            inventory = local_inventory()
            self.temp_dirs = [self.local_tmp, self.remote_tmp]
            self.roots = ()
        else:
            control = os.path.join(workdir, 'cp-large')
            os.makedirs(control, exist_ok=True)
            env['ANSIBLE_SSH_CONTROL_PATH_DIR'] = control
            inventory = sshd.inventory('web', ansible_ssh_args=SSH_ARGS_NO_COMPRESSION)
            self.temp_dirs = [self.local_tmp]
            self.roots = (sshd.service.pid,)
        task = {'name': 'run', 'oci.discovery.publish_layout': {'src': layout, 'name': NAME, 'root': '{{ root }}'}}
        self.publish = Playbook([{'hosts': 'all', 'gather_facts': False, 'tasks': [task]}], inventory, workdir,
                                name='large-%s-publish' % kind, env=env)
        self.ping = Playbook([{'hosts': 'all', 'gather_facts': False, 'tasks': [{'name': 'run', 'ansible.builtin.ping': {}}]}],
                             inventory, workdir, name='large-%s-ping' % kind, env=env)

    def webroot(self):
        if self.kind == 'local':
            return procs.make_workdir('large-webroot', mode=0o755)
        return self.sshd.make_webroot('large-webroot')

    def floor_copy(self):
        """The verified durable copy of the layout into a new directory: the Outcome (seconds summed)."""
        dest = self.webroot()
        try:
            if self.kind == 'local':
                return timed(['sh', '-c', 'sha256sum "$1"/blobs/sha256/* >/dev/null && cp -a "$1" "$2/layout" && sync',
                              'sh', self.layout, dest])
            from rig.sshd import SSH_COMMON_ARGS
            ssh = 'ssh -p %d -i %s -o BatchMode=yes -o LogLevel=ERROR %s' % (
                self.sshd.port, self.sshd.key_path, SSH_COMMON_ARGS)
            sent = timed(['rsync', '-a', '-e', ssh, self.layout + '/', '%s@127.0.0.1:%s/' % (self.sshd.user, dest)],
                         env=procs.service_env())
            if not sent.ok:
                return sent
            checked = timed(self.sshd.ssh_argv('sha256sum %s/blobs/sha256/* >/dev/null && sync' % dest))
            checked.seconds += sent.seconds
            return checked
        finally:
            procs.remove_workdir(dest)


def run(sshd, workdir, size_mib=1024, runs=3, places=('local', 'ssh'), log=print):
    out = {'size_mib': size_mib, 'runs': runs, 'places': list(places), 'cells': {},
           'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
           'load_start': os.getloadavg()[0], 'machine': _common.machine()}
    layout = build_layout(os.path.join(workdir, 'large-layout'), size_mib)
    out['blobs'] = 1 + SMALL_LAYERS + 2
    out['bytes'] = sum(os.path.getsize(os.path.join(layout, 'blobs', 'sha256', n))
                       for n in os.listdir(os.path.join(layout, 'blobs', 'sha256')))
    log('  layout: one %d MiB layer, %d small layers, config, manifest: %d bytes' % (size_mib, SMALL_LAYERS, out['bytes']))
    out['hash_seconds'] = _hash_seconds(layout)
    log('  hashing the layout: sha256sum %.2f s, Python hashlib %.2f s' % (
        out['hash_seconds']['sha256sum'], out['hash_seconds']['hashlib']))
    wheres = dict((kind, _Where(kind, layout, workdir, sshd if kind == 'ssh' else None)) for kind in places)
    for where in wheres.values():
        where.ping.run()     # the first run opens the ssh master connection (and warms Ansible's caches)
    for run_number in range(runs):
        for kind, where in wheres.items():
            cell = out['cells'].setdefault(kind, {'ping': [], 'floor_copy': [], 'first': [], 'noop': [],
                                                  'peak_mb': [], 'temp_bytes': [], 'top': None, 'failed': None})
            ping = where.ping.run()
            if not ping.ok:
                raise _common.BenchError('ping (%s) failed: %s' % (kind, ping.reason()))
            cell['ping'].append(ping.seconds)
            floor = where.floor_copy()
            if not floor.ok:
                raise _common.BenchError('the verified copy (%s) failed: %s' % (kind, floor.reason()))
            cell['floor_copy'].append(floor.seconds)
            root = where.webroot()
            try:
                first, measured = _measured(where.publish, {'root': root}, where.temp_dirs, where.roots)
                noop = where.publish.run({'root': root})
                if not first.ok or not noop.ok:
                    cell['failed'] = (first if not first.ok else noop).reason()
                    log('  run %d %-5s FAILED: %s' % (run_number + 1, kind, cell['failed']))
                    continue
                result = _common.task_result(first, 'run')
                if result.get('blobs_sent') != out['blobs'] or _common.task_result(noop, 'run').get('changed'):
                    raise _common.BenchError('%s: the first publish sent %r blobs (expected %d), the re-run changed %r'
                                             % (kind, result.get('blobs_sent'), out['blobs'],
                                                _common.task_result(noop, 'run').get('changed')))
                _check_tree(layout, root)
            finally:
                procs.remove_workdir(root)
            cell['first'].append(first.seconds)
            cell['noop'].append(noop.seconds)
            cell['peak_mb'].append(measured['peak_mb'])
            cell['temp_bytes'].append(measured['temp_bytes'])
            cell['top'] = measured['top']
            log('  run %d %-5s ping %s  verified copy %s  publish first %s  no-op %s  peak RSS %.1f MB  '
                'temp %.1f MiB' % (run_number + 1, kind, fmt_s(ping.seconds), fmt_s(floor.seconds), fmt_s(first.seconds),
                                   fmt_s(noop.seconds), measured['peak_mb'] or 0, measured['temp_bytes'] / float(MIB)))
    out['load_end'] = os.getloadavg()[0]
    return summarise(out)


def _hash_seconds(layout):
    """Seconds to hash every blob of the layout (page cache warm) with GNU sha256sum and with Python's
    hashlib (OpenSSL: what the collection uses): the floor's hasher and the publish's are not the same."""
    blobs = os.path.join(layout, 'blobs', 'sha256')
    names = sorted(os.listdir(blobs))
    found = {'sha256sum': timed(['sha256sum'] + [os.path.join(blobs, n) for n in names]).seconds}
    start = time.monotonic()
    for name in names:
        digest = hashlib.sha256()
        with open(os.path.join(blobs, name), 'rb') as handle:
            for chunk in iter(lambda: handle.read(MIB), b''):
                digest.update(chunk)
    found['hashlib'] = time.monotonic() - start
    return found


def _check_tree(layout, root):
    """Every blob of the layout is published under the CAS with its bytes (size and digest)."""
    for name in os.listdir(os.path.join(layout, 'blobs', 'sha256')):
        published = os.path.join(root, 'oci-cas', 'sha256', name[:2], name)
        if os.path.getsize(published) != os.path.getsize(os.path.join(layout, 'blobs', 'sha256', name)):
            raise _common.BenchError('%s: wrong size' % published)
        digest = hashlib.sha256()
        with open(published, 'rb') as handle:
            for chunk in iter(lambda: handle.read(MIB), b''):
                digest.update(chunk)
        if digest.hexdigest() != name:
            raise _common.BenchError('%s: wrong digest' % published)


def summarise(out):
    for kind, cell in out['cells'].items():
        for key in ('ping', 'floor_copy', 'first', 'noop', 'peak_mb', 'temp_bytes'):
            cell[key + '_median'] = median([v for v in cell[key] if v is not None])
        cell['first_vs_floor'] = _common.ratio(cell['first_median'], cell['floor_copy_median'])
        cell['noop_beyond_ping'] = None if cell['noop_median'] is None or cell['ping_median'] is None else \
            cell['noop_median'] - cell['ping_median']
        cell['peak_mb_max'] = max([v for v in cell['peak_mb'] if v is not None] or [None]) \
            if any(v is not None for v in cell['peak_mb']) else None
        cell['temp_bytes_max'] = max(cell['temp_bytes']) if cell['temp_bytes'] else None
    return out


LABELS = {'local': 'local web root', 'ssh': 'over ssh (no -C)'}
FLOORS = {'local': '`sha256sum` + `cp -a` + `sync`', 'ssh': '`rsync -a -e ssh` + remote `sha256sum` + `sync`'}


def _measured_cells(out):
    return [(kind, out['cells'][kind]) for kind in out['places'] if out['cells'].get(kind)]


def targets(out):
    """[(area, target, measured, ok)] of issue 14's large-layer targets."""
    rows = []
    for kind, cell in _measured_cells(out):
        area = 'large %s' % kind
        value = cell['first_vs_floor']
        rows.append((area, 'first publish <= %.1fx %s' % (FIRST_VS_FLOOR, FLOORS[kind]), fmt_x(value),
                     None if value is None else value <= FIRST_VS_FLOOR))
        if kind == 'local':
            beyond = cell['noop_beyond_ping']
            rows.append((area, 'no-change re-run <= Ansible floor + %.1f s' % NOOP_BEYOND_PING_S,
                         '-' if beyond is None else '%+.2f s' % beyond, None if beyond is None else beyond <= NOOP_BEYOND_PING_S))
        peak = cell['peak_mb_max']
        rows.append((area, 'peak RSS < %d MB' % RSS_MB, '-' if peak is None else '%.1f MB' % peak,
                     None if peak is None else peak < RSS_MB))
        temp = cell['temp_bytes_max']
        rows.append((area, 'controller temp space < %d MiB' % TEMP_MIB, '-' if temp is None else '%.1f MiB' % (temp / float(MIB)),
                     None if temp is None else temp < TEMP_MIB * MIB))
    return rows


def markdown_section(out):
    """The "Large layers" section of RESULTS.md."""
    rows = []
    for kind, cell in _measured_cells(out):
        rows.append([LABELS[kind], fmt_s(cell['ping_median']), fmt_s(cell['floor_copy_median']), fmt_s(cell['first_median']),
                     fmt_x(cell['first_vs_floor']), fmt_s(cell['noop_median']),
                     '-' if cell['noop_beyond_ping'] is None else '%+.2f' % cell['noop_beyond_ping'],
                     '-' if cell['peak_mb_max'] is None else '%.1f' % cell['peak_mb_max'],
                     '-' if cell['temp_bytes_max'] is None else '%.2f' % (cell['temp_bytes_max'] / float(MIB))])
    tops = ['* %s: %s' % (LABELS[kind], ', '.join('%.1f MB `%s`' % (mb, cmd) for mb, cmd in cell['top'] or []))
            for kind, cell in _measured_cells(out)]
    machine = out.get('machine') or {}
    target_rows = [[a, t, m, {True: 'met', False: '**missed**', None: 'not measured'}[ok]] for a, t, m, ok in targets(out)]
    return [BEGIN, '## Large layers (issue 14)', '',
            'benchmarks/large.py on %s, %d run(s), medians (peaks: the highest of the runs): one layout of a %d MiB '
            'layer of random bytes, %d small layers of %d KiB, the config and the manifest (%d blobs, %d bytes), '
            'published by oci.discovery.publish_layout into an empty web root, then again (no change). The floors, '
            'in the same runs, interleaved: a verified durable copy (%s locally; %s over ssh, to the benchmark\'s '
            'sshd on loopback) and ansible.builtin.ping over the same connection. 2 cores '
            '(%s, kernel %s; load average (1 min) at start / end: %.2f / %.2f; above 1, the absolute times are '
            'inflated and the ratios fairer).'
            % (out['date'], out['runs'], out['size_mib'], SMALL_LAYERS, SMALL_BYTES // 1024, out['blobs'],
               out['bytes'], FLOORS['local'], FLOORS['ssh'], machine.get('cpu', '?'), machine.get('kernel', '?'),
               out.get('load_start', 0), out.get('load_end', 0)), '',
            table(['where', 'target', 'measured', ''], target_rows), '',
            table(['where', 'ping (s)', 'verified copy (s)', 'first publish (s)', 'first / copy', 'no-op (s)',
                   'no-op - ping (s)', 'peak RSS (MB)', 'controller temp (MiB)'], rows), '',
            'Peak RSS: every process of the tree (ansible-playbook, its workers, the target phases; over ssh also '
            'the processes under the sshd: sftp-server, the target\'s Python), VmHWM polled every 20 ms. Controller '
            'temp: the disk use of ANSIBLE_LOCAL_TEMP (and, on the local connection, of ANSIBLE_REMOTE_TEMP, which '
            'is on the controller then), polled every 20 ms. The largest processes of the last run:', ''] + tops + [
        '', _hashing_note(out), END, '']


def _hashing_note(out):
    if not out.get('hash_seconds'):
        return ''
    return ('Hashing every blob of the layout once, page cache warm, in this run: GNU `sha256sum` %s s, Python\'s '
            'hashlib (OpenSSL, what the collection uses) %s s. The floors hash with `sha256sum`, so they are slower '
            'than a copy verified with OpenSSL would be. A first publish hashes each byte once, on the host as it '
            'arrives (the controller hashes only the blobs the host has), and the controller records what the host '
            'verified. A no-change re-run hashes nothing: the record of verified blobs vouches for every file that '
            'did not change (device, inode, size, mtime, ctime).'
            % (fmt_s(out['hash_seconds']['sha256sum']), fmt_s(out['hash_seconds']['hashlib'])))


def write(out, results_dir=RESULTS_DIR):
    """The section into RESULTS.md, the figures into results.json (under "large"; the rest kept)."""
    _common.write_section('\n'.join(markdown_section(out)), BEGIN, END, os.path.join(results_dir, 'RESULTS.md'))
    path = os.path.join(results_dir, 'results.json')
    try:
        with open(path) as handle:
            results = json.load(handle)
    except (OSError, ValueError):
        results = {}
    results['large'] = out
    with open(path, 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True, default=str)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog='python -m benchmarks.large', description=__doc__.split('\n', 1)[0])
    parser.add_argument('--mib', type=int, default=1024, help='the large layer in MiB (default 1024)')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--places', default='local,ssh')
    parser.add_argument('--no-write', action='store_true', help='print only; do not write benchmarks/results/')
    args = parser.parse_args(argv)
    procs.become_subreaper()
    workdir = procs.make_workdir('bench-large', mode=0o755)
    sshd = None
    try:
        places = args.places.split(',')
        if 'ssh' in places:
            from rig.sshd import Sshd
            sshd = Sshd()
            sshd.start()
        out = run(sshd, workdir, size_mib=args.mib, runs=args.runs, places=places)
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        procs.reap_orphans(kill=True, wait=2.0)
    print('\n'.join(markdown_section(out)))
    if not args.no_write:
        write(out)


if __name__ == '__main__':
    main()
