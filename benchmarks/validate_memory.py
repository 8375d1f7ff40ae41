# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: validating a layout with a 1 GiB layer, against `sha256sum` of that layer.

Run from the repository root (not part of the test suite)::

    .venv/bin/python -m benchmarks.validate_memory [--size-mib 1024] [--runs 2]

It writes a layout with one layer of random data in a temporary directory,
then, in child processes, runs ``sha256sum`` on the layer (the baseline) and
``Layout(root).validate()``. It reports the validating child's peak RSS
(target < 100 MB), the bytes it read (``rchar`` of /proc/self/io around
``validate()``) divided by the layout's size (target 1.00: every byte read
once), and its time relative to ``sha256sum``. Both read from the page cache:
the file was just written. Exit status 1 when a target is missed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, '.tmp', 'collections')
MIB = 1024 * 1024
RSS_TARGET_MB = 100

# Runs in the child: open and validate the layout, report rchar and time around it.
CHILD = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout

def proc_self(name, key):
    # One read() of /proc/self/<name>; return (value of key, bytes that read() added to rchar).
    fd = os.open('/proc/self/' + name, os.O_RDONLY)
    try:
        text = os.read(fd, 65536).decode()
    finally:
        os.close(fd)
    fields = dict(line.split(':', 1) for line in text.splitlines())
    return int(fields[key].split()[0]), len(text)

report = {}
if sys.argv[3] == 'validate':
    (before, own), start = proc_self('io', 'rchar'), time.monotonic()
    report['result'] = Layout(sys.argv[1]).validate()
    report['seconds'] = time.monotonic() - start
    report['rchar'] = proc_self('io', 'rchar')[0] - before - own
report['hwm_kib'] = proc_self('status', 'VmHWM')[0]
print(json.dumps(report))
'''


def _collections_path():
    """Make the repository importable as ansible_collections.oci.discovery (as tests/conftest.py does)."""
    link = os.path.join(COLLECTIONS, 'ansible_collections', 'oci', 'discovery')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return COLLECTIONS


def _write_blob(root, chunks):
    """Stream ``chunks`` into a blob of the layout; return (descriptor fields digest, size, path)."""
    directory = os.path.join(root, 'blobs', 'sha256')
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, '.tmp')
    sha, size = hashlib.sha256(), 0
    with open(tmp, 'wb') as f:
        for chunk in chunks:
            sha.update(chunk)
            f.write(chunk)
            size += len(chunk)
    path = os.path.join(directory, sha.hexdigest())
    os.rename(tmp, path)
    return 'sha256:' + sha.hexdigest(), size, path


def _json_blob(root, obj, media_type):
    digest, size, dummy = _write_blob(root, [json.dumps(obj, separators=(',', ':')).encode()])
    return {'mediaType': media_type, 'digest': digest, 'size': size}


def build_layout(root, size_mib):
    """Write a layout whose one image has a layer of ``size_mib`` MiB of random data; return the layer path."""
    def random_chunks():
        for dummy in range(size_mib):
            yield os.urandom(MIB)
    digest, size, layer_path = _write_blob(root, random_chunks())
    layer = {'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': digest, 'size': size}
    config = _json_blob(root, {'architecture': 'amd64', 'os': 'linux',
                               'rootfs': {'type': 'layers', 'diff_ids': [digest]}},
                        'application/vnd.oci.image.config.v1+json')
    manifest = _json_blob(root, {'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                                 'config': config, 'layers': [layer]},
                          'application/vnd.oci.image.manifest.v1+json')
    manifest['annotations'] = {'org.opencontainers.image.ref.name': 'big'}
    with open(os.path.join(root, 'oci-layout'), 'w') as f:
        json.dump({'imageLayoutVersion': '1.0.0'}, f)
    with open(os.path.join(root, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json',
                   'manifests': [manifest]}, f)
    return layer_path


def layout_bytes(root):
    """Total size of every file in the layout."""
    return sum(os.path.getsize(os.path.join(d, name)) for d, dummy, names in os.walk(root) for name in names)


def _vm_hwm_kib(pid):
    """VmHWM of a running process, in KiB (0 once it has exited)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(argv):
    """Run ``argv``; return (stdout, wall seconds, peak RSS in MB polled from /proc/<pid>/status).

    ru_maxrss from wait4() is no use here: it keeps the forking Python
    parent's RSS from before exec(). VmHWM belongs to the exec'd image alone;
    it is a high-water mark, so polling it misses at most the last moments.
    """
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    hwm = 0
    while proc.poll() is None:
        hwm = max(hwm, _vm_hwm_kib(proc.pid))
        time.sleep(0.01)
    seconds = time.monotonic() - start
    out = proc.stdout.read()
    proc.stdout.close()
    if proc.returncode:
        raise SystemExit('%s failed with status %d' % (argv[0], proc.returncode))
    return out, seconds, hwm / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size-mib', type=int, default=1024, help='layer size in MiB (default 1024)')
    parser.add_argument('--runs', type=int, default=2, help='runs of each child; the best time is kept')
    parser.add_argument('--dir', default=None, help='where to create the temporary layout')
    args = parser.parse_args()

    collections = _collections_path()
    tmp = tempfile.mkdtemp(prefix='oci-bench-', dir=args.dir)
    try:
        root = os.path.join(tmp, 'layout')
        start = time.monotonic()
        layer_path = build_layout(root, args.size_mib)
        total = layout_bytes(root)
        print('layout: %s, %d bytes (one layer of %d MiB random data), written in %.1f s'
              % (root, total, args.size_mib, time.monotonic() - start))

        validate = [sys.executable, '-c', CHILD, root, collections]
        idle_rss = json.loads(run_child(validate + ['idle'])[0])['hwm_kib'] / 1024.0
        base_times, base_rss, val_times, val_walls, val_rss = [], [], [], [], []
        for dummy in range(args.runs):
            dummy, seconds, rss = run_child(['sha256sum', layer_path])
            base_times.append(seconds)
            base_rss.append(rss)
            out, wall, dummy = run_child(validate + ['validate'])
            report = json.loads(out)
            val_times.append(report['seconds'])
            val_walls.append(wall)
            val_rss.append(report['hwm_kib'] / 1024.0)
    finally:
        shutil.rmtree(tmp)

    base_time, val_time, val_wall = min(base_times), min(val_times), min(val_walls)
    base_rss, val_rss = max(base_rss), max(val_rss)
    ratio = report['rchar'] / float(total)
    print('result: %s; best of %d runs each' % (report['result'], args.runs))
    print('%-30s %12s %10s' % ('', 'peak RSS', 'time'))
    print('%-30s %9.1f MB %8.2f s' % ('sha256sum (baseline)', base_rss, base_time))
    print('%-30s %9.1f MB %8.2f s  (validate() alone: %.2f s)'
          % ('python: Layout(...).validate()', val_rss, val_wall, val_time))
    print('%-30s %9.1f MB' % ('python: same imports, idle', idle_rss))
    ok_rss, ok_read = val_rss < RSS_TARGET_MB, round(ratio, 2) == 1.0
    print('peak RSS: %.1f MB (target < %d MB) %s' % (val_rss, RSS_TARGET_MB, 'ok' if ok_rss else 'MISSED'))
    print('bytes read / layout bytes: %d / %d = %.4f (target 1.00) %s'
          % (report['rchar'], total, ratio, 'ok' if ok_read else 'MISSED'))
    print('time vs sha256sum: %.2fx (validate() alone), %.2fx (whole process)'
          % (val_time / base_time, val_wall / base_time))
    return 0 if ok_rss and ok_read else 1


if __name__ == '__main__':
    sys.exit(main())
