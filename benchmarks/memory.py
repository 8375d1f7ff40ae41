# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory benchmark: peak RSS of validating and of publishing a layout with a 1 GiB layer.

* validating: benchmarks/validate_memory.py's child (``Layout(root).validate()`` in a fresh
  Python), with ``sha256sum`` of the layer as the baseline;
* publishing into S3 (RGW over http): ansible-playbook running oci.discovery.s3_publish_layout
  (multipart upload, the module's default concurrency and part size);
* publishing into a web root over ssh: ansible-playbook running oci.discovery.publish_layout.

For the two publishes, every process of the tree (ansible-playbook, its workers, the module;
over ssh also the processes under the rig's sshd, where the module runs) is polled for VmHWM every
20 ms; the table shows the highest peaks and which process had them. Target: every process
under 150 MB.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys

from benchmarks import validate_memory
from benchmarks._common import Playbook, procs, run_with_peak

TARGET_MB = 150
NAME = 'example.test/bench/huge'


def _short(cmdline):
    """A readable name for a process from its command line."""
    words = cmdline.split()
    if not words:
        return '?'
    for word in words:
        if 'AnsiballZ_' in word:
            return 'module %s' % os.path.basename(word).replace('AnsiballZ_', '').replace('.py', '')
    if 'ansible-playbook' in cmdline:
        return 'ansible-playbook (controller)'
    if 'sftp-server' in cmdline or 'scp' in words[0]:
        return 'sftp-server (remote)'
    return os.path.basename(words[0])


def run(rgw, sshd, workdir, size_mib=1024, log=print):
    out = {'size_mib': size_mib, 'target_mb': TARGET_MB}
    root = os.path.join(workdir, 'gib-layout')
    layer = validate_memory.build_layout(root, size_mib)
    from rig import layouts
    layouts.make_world_readable(root)
    total = validate_memory.layout_bytes(root)
    log('  layout with a %d MiB layer: %d bytes' % (size_mib, total))

    # Validating (validate_memory's own child and measurement).
    collections = validate_memory._collections_path()  # pylint: disable=protected-access
    child = [sys.executable, '-c', validate_memory.CHILD, root, collections]
    dummy, base_seconds, base_rss = validate_memory.run_child(['sha256sum', layer])
    report_out, seconds, rss = validate_memory.run_child(child + ['validate'])
    report = json.loads(report_out)
    out['validate'] = {'peak_mb': report['hwm_kib'] / 1024.0, 'polled_mb': rss, 'seconds': seconds,
                       'validate_seconds': report['seconds'], 'bytes_read_ratio': report['rchar'] / float(total),
                       'sha256sum_seconds': base_seconds, 'sha256sum_mb': base_rss}
    log('  validate: peak %.1f MB, %.2f s (sha256sum %.2f s, %.1f MB); bytes read / size %.3f'
        % (out['validate']['peak_mb'], seconds, base_seconds, base_rss, out['validate']['bytes_read_ratio']))

    # Publishing into S3.
    if rgw is not None:
        from benchmarks import s3
        bucket = s3.new_bucket(rgw, 'memory')
        try:
            from rig.ansible import local_inventory
            args = {'src': root, 'name': NAME, 'bucket': bucket, 'endpoint_url': rgw.endpoint,
                    'region': rgw.region, 'access_key': rgw.access_key, 'secret_key': rgw.secret_key}
            book = Playbook([{'hosts': 'localhost', 'gather_facts': False,
                              'tasks': [{'name': 'run', 'oci.discovery.s3_publish_layout': args}]}],
                            local_inventory(), workdir, name='memory-s3')
            outcome, peak = run_with_peak(book.argv(), env=book.env, cwd=book.dir)
            out['s3'] = _peaks(outcome, peak)
        finally:
            s3.remove_bucket(rgw, bucket)
        log('  publish to S3: %s' % _describe(out['s3']))

    # Publishing into a web root over ssh.
    if sshd is not None:
        webroot = sshd.make_webroot('bench-memory')
        try:
            book = Playbook([{'hosts': 'web', 'gather_facts': False, 'tasks': [
                {'name': 'run', 'oci.discovery.publish_layout': {'src': root, 'name': NAME, 'root': webroot}}]}],
                sshd.inventory('web'), workdir, name='memory-ssh')
            outcome, peak = run_with_peak(book.argv(), env=book.env, cwd=book.dir, roots=[sshd.service.pid])
            out['ssh'] = _peaks(outcome, peak)
        finally:
            procs.remove_workdir(webroot)
        log('  publish over ssh: %s' % _describe(out['ssh']))
    return out


def _peaks(outcome, peak):
    top = [(mb, _short(cmd)) for mb, cmd in peak.top(4)]
    return {'ok': outcome.ok, 'reason': None if outcome.ok else outcome.reason(), 'seconds': outcome.seconds,
            'top': top, 'peak_mb': top[0][0] if top else None}


def _describe(found):
    if not found['ok']:
        return 'FAILED: %s' % found['reason']
    return '%.1f s; peaks: %s' % (found['seconds'], ', '.join('%s %.1f MB' % (name, mb) for mb, name in found['top']))
