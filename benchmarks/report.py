# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's results: targets checked, a Markdown report (RESULTS.md) and a chart of the ratios."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from benchmarks import s3, ssh
from benchmarks._common import DATASET_LABELS, fmt_s, fmt_x, table

# --------------------------------------------------------------------------- targets


def _verdict(value, limit, higher_is_better=False):
    if value is None:
        return None
    return value >= limit if higher_is_better else value <= limit


def targets(results):
    """[(area, target, measured, ok)] for every target of issue 7 that was measured (ok None: not measured)."""
    rows = []
    s3_out = results.get('s3')
    if s3_out:
        for key, entry in sorted(s3_out['ratios'].items()):
            for phase, label in (('first', 'first publish'), ('noop', 'no-change re-run')):
                value = entry['beyond_floor_vs_rclone_' + phase]
                rows.append(('S3 %s' % key, 'time beyond Ansible floor <= 1.0x rclone, %s' % label,
                             _beyond(value, entry['beyond_floor_' + phase]), _verdict(value, 1.0)))
            value = entry['s3_sync_vs_oci_total']
            rows.append(('S3 %s' % key, '>= 3x faster than s3_sync in total', fmt_x(value), _verdict(value, 3.0, True)))
        for key, cell in sorted(s3_out['cells'].items()):
            if not key.endswith('/oci'):
                continue
            where = 'S3 %s' % key.rsplit('/', 1)[0]
            noop = cell.get('requests_noop')
            if noop is not None:
                puts = noop.get('PUT', 0) + noop.get('PUT part', 0) + noop.get('POST', 0)
                rows.append((where, 'no PUT on a no-change re-run', '%d PUT/POST (%s)' % (puts, s3.format_counts(noop)),
                             puts == 0))
            wrong = cell.get('wrong_content_type')
            if wrong is not None:
                rows.append((where, '0 wrong Content-Types', '%d of %d' % (wrong[0], wrong[1]), wrong[0] == 0))
            if key.split('/')[0] == 'https':
                rows.append((where, 'https works', 'failed: %s' % cell['failed'] if cell['failed'] else 'works',
                             not cell['failed']))
        large = s3_out.get('large')
        for scheme in (large or {}).get('schemes', ()):
            oci = large['cells'].get('%s/oci' % scheme, {})
            for tool in large['tools']:
                if tool == 'oci':
                    continue
                other = large['cells'].get('%s/%s' % (scheme, tool), {})
                value = other.get('oci_vs')
                rows.append(('S3 %s/%d MiB layer' % (scheme, large['mib']), 'MB/s >= 1.0x %s (issue 14)' % s3.TOOL_LABELS[tool],
                             '%s (%s vs %s MB/s)' % (fmt_x(value), _mbs(oci.get('mb_s')), _mbs(other.get('mb_s'))),
                             _verdict(value, 1.0, True)))
                value = other.get('oci_beyond_floor_vs')
                rows.append(('S3 %s/%d MiB layer' % (scheme, large['mib']),
                             'MB/s beyond the Ansible floor >= 1.0x %s (issue 14)' % s3.TOOL_LABELS[tool],
                             '%s (%s vs %s MB/s)' % (fmt_x(value), _mbs(oci.get('mb_s_beyond_floor')),
                                                     _mbs(other.get('mb_s'))),
                             _verdict(value, 1.0, True)))
        put_cpu = s3_out.get('put_cpu')
        for scheme in (put_cpu or {}).get('schemes', ()):
            cell = put_cpu['cells'].get('%s/direct' % scheme, {})
            value = cell.get('cpu_ms_median')
            pipeline = put_cpu['cells'].get('%s/pipeline' % scheme, {}).get('cpu_ms_median')
            rows.append(('S3 %s/small' % scheme, 'client CPU <= %.1f ms per small blob (issue 14)' % put_cpu['target_ms'],
                         '%s ms (client pipeline: %s ms)' % (_ms(value), _ms(pipeline)),
                         _verdict(value, put_cpu['target_ms'])))
            signed = put_cpu['cells'].get('%s/signed' % scheme, {}).get('cpu_ms_median')
            if signed:
                limit = put_cpu.get('target_vs_signed', 1.2)
                rows.append(('S3 %s/small' % scheme,
                             'client CPU per small blob <= %.1fx a bare S3SigV4Auth + urllib3 PUT (issue 14: %.1f vs %.1f ms)'
                             % (limit, put_cpu['target_ms'], put_cpu.get('signed_reference_ms', 0.5)),
                             '%s (%s vs %s ms)' % (fmt_x(value / signed if value else None), _ms(value), _ms(signed)),
                             _verdict(value / signed if value else None, limit)))
    ssh_out = results.get('ssh')
    if ssh_out:
        for dataset, entry in sorted(ssh_out['ratios'].items()):
            for variant in ssh_out['variants']:
                note = ssh.VARIANT_NOTES.get(variant, variant)
                label = 'SSH %s%s' % (dataset, ' (%s)' % note if note else '')
                for phase, text in (('first', 'first publish'), ('noop', 'no-change re-run')):
                    value = entry['%s_vs_synchronize_%s' % (variant, phase)]
                    rows.append((label, 'total time <= 1.0x synchronize, %s' % text, fmt_x(value), _verdict(value, 1.0)))
                for phase, text in (('first', 'first publish'), ('noop', 'no-change re-run')):
                    if variant != 'oci':
                        break
                    value = entry['%s_copy_vs_%s' % (phase, variant)]
                    rows.append((label, '>= 30x faster than copy, %s' % text,
                                 fmt_x(value) if value is not None else 'copy not run on this data set',
                                 _verdict(value, 30.0, True)))
                for phase, text in (('first', 'first publish'), ('noop', 'no-change re-run')):
                    value = entry['%s_beyond_floor_vs_rsync_%s' % (variant, phase)]
                    rows.append((label, 'time beyond the floor <= 1.5x rsync, %s' % text,
                                 _beyond(value, entry['%s_beyond_floor_%s' % (variant, phase)]), _verdict(value, 1.5)))
    memory = results.get('memory')
    if memory:
        rows.append(('memory', 'validating a %d MiB layer: peak RSS < 150 MB' % memory['size_mib'],
                     '%.1f MB' % memory['validate']['peak_mb'],
                     memory['validate']['peak_mb'] < memory['target_mb']))
        for store in ('s3', 'ssh'):
            found = memory.get(store)
            if found:
                ok = found['ok'] and found['peak_mb'] is not None and found['peak_mb'] < memory['target_mb']
                measured = ('%.1f MB (%s)' % (found['top'][0][0], found['top'][0][1])) if found['ok'] and found['top'] \
                    else 'failed: %s' % found['reason']
                rows.append(('memory', 'publishing it (%s): every process < 150 MB' % store, measured, ok))
    if results.get('fleet'):
        from benchmarks import fleet
        rows += fleet.targets(results['fleet'])
    return rows


def _mbs(value):
    return '-' if value is None else '%.0f' % value


def _ms(value):
    return '-' if value is None else '%.2f' % value


def _beyond(value, seconds):
    """A ratio of times beyond the floor, or how far below the floor a run stayed."""
    if seconds is not None and seconds < 0:
        return 'below the floor (%s s)' % fmt_s(seconds)
    return '%s (%s s beyond the floor)' % (fmt_x(value), fmt_s(seconds))


def _mark(ok):
    return {True: 'met', False: '**missed**', None: 'not measured'}[ok]


# --------------------------------------------------------------------------- text

def _s3_section(out):
    lines = ['## S3 (Ceph RGW on loopback)', '',
             'Medians of %d runs, whole processes, seconds (CPU: user+system of the process tree on this machine). '
             'Requests: counted in RGW\'s access log, first run. Wrong Content-Type: objects checked with HEAD after the '
             'first publish (blobs must carry their media type, indexes the image-index type).' % out['runs'], '',
             'Ansible floor (ansible.builtin.ping playbook, local): **%s s** (CPU %s s).'
             % (fmt_s(out.get('floor_median')), fmt_s(out.get('floor_cpu_median'))), '']
    if out.get('https_defaults'):
        lines += ['Over https, each tool once with its defaults (big layout):', '',
                  table(['tool', 'https with defaults'], [[s3.TOOL_LABELS[t], v] for t, v in out['https_defaults'].items()]),
                  '', 'The timed https runs below use the usual work-around where a tool needs it '
                  '(checksums only when required: `aws_config` for s3_sync, `AWS_REQUEST_CHECKSUM_CALCULATION` for '
                  'aws, a botocore `Config` for boto3); oci.discovery.s3_publish_layout and rclone need none.', '']
    for scheme in out['schemes']:
        for dataset in out['sets']:
            rows = []
            for tool in out['tools']:
                cell = out['cells'].get('%s/%s/%s' % (scheme, dataset, tool))
                if cell is None:
                    continue
                wrong = cell.get('wrong_content_type')
                rows.append([s3.TOOL_LABELS[tool], fmt_s(cell.get('first_median')), fmt_s(cell.get('noop_median')),
                             '%s / %s' % (fmt_s(cell.get('first_cpu_median')), fmt_s(cell.get('noop_cpu_median'))),
                             s3.format_counts(cell.get('requests_first')), s3.format_counts(cell.get('requests_noop')),
                             '%d of %d' % (wrong[0], wrong[1]) if wrong else '-',
                             ('FAILED: %s' % cell['failed']) if cell['failed'] else ''])
            lines += ['### %s, %s' % (scheme, DATASET_LABELS[dataset]), '',
                      table(['tool', 'first (s)', 'no-op (s)', 'CPU first / no-op (s)', 'requests, first',
                             'requests, no-op', 'wrong Content-Type', ''], rows), '']
            entry = out['ratios'].get('%s/%s' % (scheme, dataset), {})
            lines += ['oci.discovery beyond the floor: first %s s (%s rclone), no-op %s s (%s rclone); '
                      's3_sync / oci in total: %s.' % (
                          fmt_s(entry.get('beyond_floor_first')), fmt_x(entry.get('beyond_floor_vs_rclone_first')),
                          fmt_s(entry.get('beyond_floor_noop')), fmt_x(entry.get('beyond_floor_vs_rclone_noop')),
                          fmt_x(entry.get('s3_sync_vs_oci_total'))), '']
            s3_sync_total, floor = entry.get('total_s3_sync'), out.get('floor_median')
            if s3_sync_total and floor:
                lines += ['3x faster than s3_sync in total means at most %s s for the first publish and the no-op '
                          'together; two runs of the Ansible floor alone take %s s.'
                          % (fmt_s(s3_sync_total / 3.0), fmt_s(2 * floor)), '']
    return lines + _s3_large_lines(out.get('large')) + _s3_put_cpu_lines(out.get('put_cpu'))


def _s3_large_lines(large):
    if not large:
        return []
    lines = ['### A %d MiB layer (issue 14)' % large['mib'], '',
             'A layout with one %d MiB layer of random bytes (%d bytes in all), first publish into an empty bucket; '
             'medians of %d runs, whole processes; MB/s = layout bytes / seconds. The bucket is emptied and RGW\'s '
             'garbage collected after each tool, and the tools take turns going first from run to run. '
             'oci.discovery\'s time includes the Ansible floor (%s s here: the cost of any Ansible task); the layer '
             'is hashed once, as its parts are read for the upload (the controller validates the other blobs). '
             '"beyond floor" divides the bytes by oci.discovery\'s time less the floor; the other tools\' times are '
             'whole processes, their own start-up included.'
             % (large['mib'], large['bytes'], len(large['floor']), fmt_s(large.get('floor_median'))), '']
    rows = []
    for scheme in large['schemes']:
        for tool in large['tools']:
            cell = large['cells'].get('%s/%s' % (scheme, tool), {})
            rows.append([scheme, s3.TOOL_LABELS[tool], fmt_s(cell.get('median')), _mbs(cell.get('mb_s')),
                         _mbs(cell.get('mb_s_beyond_floor')) if tool == 'oci' else '',
                         fmt_s(cell.get('cpu_median')), fmt_x(cell.get('oci_vs')) if tool != 'oci' else '',
                         fmt_x(cell.get('oci_beyond_floor_vs')) if tool != 'oci' else '',
                         ('FAILED: %s' % cell['failed']) if cell.get('failed') else ''])
    lines += [table(['scheme', 'tool', 'seconds', 'MB/s', 'MB/s beyond floor', 'CPU (s)', 'oci MB/s / tool MB/s',
                     'beyond floor', ''], rows), '']
    return lines


def _s3_put_cpu_lines(put_cpu):
    if not put_cpu:
        return []
    lines = ['### Client CPU per small blob (issue 14)', '',
             'The 1,000-blob set (8 KiB each) uploaded into an empty bucket by a fresh Python process that measures '
             'its own CPU (user + system) over the uploads alone (benchmarks/_put_cpu.py): reading and verifying each '
             'blob, signing, sending, parsing the answer. 8 threads, except the bare loops. Target: at most %.1f ms '
             'per blob on the direct path, where issue 14 measured %.1f ms for the bare S3SigV4Auth + urllib3 loop '
             '(and 1.2 ms for client.put_object): on another machine, the same-run ratio to that bare loop is the '
             'fair reading (%.1fx).' % (put_cpu['target_ms'], put_cpu.get('signed_reference_ms', 0.5),
                                        put_cpu.get('target_vs_signed', 1.2)), '']
    rows = []
    for scheme in put_cpu['schemes']:
        for mode in put_cpu['modes']:
            cell = put_cpu['cells'].get('%s/%s' % (scheme, mode), {})
            rows.append([scheme, s3.PUT_LABELS[mode], _ms(cell.get('cpu_ms_median')), _ms(cell.get('wall_ms_median')),
                         ('FAILED: %s' % cell['failed']) if cell.get('failed') else
                         ('fell back: %s' % cell['fallback_reason']) if cell.get('fallback_reason') else ''])
    lines += [table(['scheme', 'how', 'CPU ms per blob', 'wall ms per blob', ''], rows), '']
    return lines


def _ssh_section(out):
    lines = ['## SSH (sshd on loopback, web root)', '',
             'Medians of %d runs (ansible.builtin.copy: %d run%s, data sets: %s), whole processes on the controller, '
             'seconds; CPU counts the controller side only.'
             % (out['runs'], out['copy_runs'], '' if out['copy_runs'] == 1 else 's', ', '.join(out['copy_sets']) or 'none'),
             '', 'Ansible floor over ssh (ansible.builtin.ping playbook, warm ControlPersist connection): **%s s** (CPU %s s).'
             % (fmt_s(out.get('floor_median')), fmt_s(out.get('floor_cpu_median'))), '']
    for dataset in out['sets']:
        rows = []
        for tool in out['tools']:
            cell = out['cells'].get('%s/%s' % (dataset, tool))
            if cell is None:
                if tool == 'copy':
                    rows.append([ssh.TOOL_LABELS[tool], 'not run', 'not run', '-', '-',
                                 'not run by default on this data set (about 0.45 s per file and run: --copy-small)'])
                continue
            notes = []
            if cell.get('failed'):
                notes.append('FAILED: %s' % cell['failed'])
            if cell.get('noop_changed'):
                notes.append('re-run reported changes')
            if tool == 'copy':
                notes.append('%d run%s' % (len(cell['first']), '' if len(cell['first']) == 1 else 's'))
            rows.append([ssh.TOOL_LABELS[tool], fmt_s(cell.get('first_median')), fmt_s(cell.get('noop_median')),
                         '%s / %s' % (fmt_s(cell.get('first_cpu_median')), fmt_s(cell.get('noop_cpu_median'))),
                         str(cell.get('files', '-')), '; '.join(notes)])
        lines += ['### %s' % DATASET_LABELS[dataset], '',
                  table(['tool', 'first (s)', 'no-op (s)', 'CPU first / no-op (s)', 'files in web root', ''], rows), '']
    return lines


def _memory_section(out):
    v = out['validate']
    lines = ['## Memory (a layout with a %d MiB layer)' % out['size_mib'], '',
             table(['what', 'peak RSS', 'time', 'notes'], [
                 ['validate (Layout.validate in a fresh Python)', '%.1f MB' % v['peak_mb'], '%s s' % fmt_s(v['seconds']),
                  'bytes read / layout size %.3f; sha256sum of the layer: %s s, %.1f MB'
                  % (v['bytes_read_ratio'], fmt_s(v['sha256sum_seconds']), v['sha256sum_mb'])],
             ] + [
                 ['publish, %s' % label, ('%.1f MB' % found['peak_mb']) if found.get('peak_mb') else '-',
                  '%s s' % fmt_s(found['seconds']),
                  ', '.join('%s %.1f MB' % (name, mb) for mb, name in found['top']) if found['ok']
                  else 'FAILED: %s' % found['reason']]
                 for label, found in (('S3 (RGW, http)', out.get('s3')), ('web root over ssh', out.get('ssh'))) if found
             ]), '',
             'Publishing: every process of the tree polled for VmHWM every 20 ms (over ssh also the processes under '
             'the benchmark\'s sshd, where the module runs); the highest peaks are listed. Over ssh with Ansible\'s '
             'default -C, most of the time goes into compressing 1 GiB of incompressible data.', '']
    return lines


def merge(key, out):
    """Put one scenario's results (a scenario run alone) into results.json and rewrite RESULTS.md; the json's path."""
    import json
    from benchmarks.__main__ import RESULTS_DIR
    path = os.path.join(RESULTS_DIR, 'results.json')
    with open(path) as handle:
        results = json.load(handle)
    results[key] = out
    with open(path, 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True, default=str)
    with open(os.path.join(RESULTS_DIR, 'RESULTS.md'), 'w') as handle:
        handle.write(markdown(results))
    return path


def markdown(results, chart_name='ratios.png'):
    meta = results['meta']
    lines = ['# oci.discovery benchmarks', '',
             'Written by `make bench` (`%s`) on %s, in %.1f min. Not part of the test suite: numbers, not pass/fail.'
             % (' '.join(['.venv/bin/python -m benchmarks'] + ([meta['args']] if meta['args'] else [])), meta['date'],
                meta['minutes']), '',
             '![ratios against the targets](%s)' % chart_name, '',
             '## Machine and versions', '',
             table(['', ''], [[k, v] for k, v in meta['machine'].items()] +
                   [['load average (1 min) at start / end', '%.2f / %.2f' % (meta['load_start'], meta['load_end'])]]), '',
             table(['software', 'version'], [[k, v] for k, v in meta['versions'].items()]), '']
    if meta.get('load_start', 0) > 1.0 or meta.get('load_end', 0) > 1.0:
        lines += ['Note: the machine was not idle during this run (load average above 1 on %s cores): '
                  'absolute times are inflated; the tools were measured interleaved, run by run, so the ratios '
                  'are fairer than the absolute figures.' % meta['machine'].get('nproc', '?'), '']
    for area, date in sorted((meta.get('kept') or {}).items()):
        lines += ['The %s figures below are from an earlier run (%s): this run did not measure them.' % (area, date), '']
    rows = targets(results)
    if rows:
        rows = [[a, t, m, _mark(ok)] for a, t, m, ok in rows]
        lines += ['## Targets (issue 7, and issue 14 where marked)', '', table(['where', 'target', 'measured', ''], rows), '']
    if results.get('s3'):
        lines += _s3_section(results['s3'])
    if results.get('ssh'):
        lines += _ssh_section(results['ssh'])
    if results.get('resolve'):
        lines += ['## Resolution', '', 'benchmarks/resolve_requests.py (100 names of 5 families on one https site, nginx):',
                  '', '```'] + results['resolve']['lines'] + ['```', '']
    if results.get('memory'):
        lines += _memory_section(results['memory'])
    if results.get('pull'):
        from benchmarks import pull
        lines += pull.markdown_section(results['pull'])
    if results.get('fleet'):
        from benchmarks import fleet
        lines += fleet.markdown_section(results['fleet'])
    lines += ['## How it is measured', ''] + ['* ' + item for item in METHOD] + ['']
    if results.get('registry_view'):      # benchmarks/registry_view.py's section (its markers) stays last
        from benchmarks import registry_view
        lines.append(registry_view.markdown(results['registry_view'], results['registry_view']['date']))
    return '\n'.join(lines)


METHOD = [
    'Every tool runs as a whole process (ansible-playbook, aws, rclone, rsync, a Python script), from fork to exit, '
    'interleaved run by run, so that load from elsewhere hits all of them alike; medians of the runs.',
    'S3 requests are counted from Ceph RGW\'s own access log (one line per request with method, path and query), '
    'between two marker requests that bracket each measured command: exact, no proxy in the data path. '
    'A copy onto itself (how metadata is fixed) shows there as a PUT.',
    'First publish: into an empty bucket or web root created for that run; no-op: the same command again. '
    'Buckets and web roots are deleted after each run.',
    'The 1,000-blob data set is one manifest with 1,000 layers of 8 KiB random bytes (plus its config); the big '
    'layout is the test rig\'s (tests/rig/layouts.py): 200 blobs, one of them a 30 MiB layer.',
    'Anchors copy the layout directory as is (blobs/sha256/..., index.json, oci-layout); oci.discovery writes its site '
    'layout (oci-cas/..., oci-index/...). oci.discovery validates the layout (hashes every blob) on every run.',
    'Ansible runs use a local connection (S3) or ssh with Ansible\'s defaults (ControlPersist 60 s: warm '
    'connections after the first run); rsync opens a new ssh connection per run.',
    'awscli runs from its own venv (benchmarks/requirements-awscli.txt); the chart needs matplotlib '
    '(requirements-bench.txt), both installed by the benchmark itself.',
]


# --------------------------------------------------------------------------- chart

def chart(results, path):
    """A PNG of the ratios against their targets; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = []
    s3_out = results.get('s3')
    if s3_out:
        keys = sorted(s3_out['ratios'])
        panels.append(('S3: (oci - Ansible floor) / rclone\nlower is better, target <= 1.0', 1.0, False, [
            ('%s\n%s' % (k.replace('/', ' '), phase), s3_out['ratios'][k]['beyond_floor_vs_rclone_' + phase])
            for k in keys for phase in ('first', 'noop')]))
        panels.append(('S3: s3_sync / oci, total time\nhigher is better, target >= 3', 3.0, True, [
            (k.replace('/', '\n'), s3_out['ratios'][k]['s3_sync_vs_oci_total']) for k in keys]))
    ssh_out = results.get('ssh')
    if ssh_out:
        keys = sorted(ssh_out['ratios'])
        variants = ssh_out['variants']

        def label(k, phase, v):
            note = ssh.VARIANT_NOTES.get(v, v)
            return '%s\n%s%s' % (k, phase, '\n' + note.replace(', ', '\n') if note else '')
        panels.append(('SSH: oci / synchronize\nlower is better, target <= 1.0', 1.0, False, [
            (label(k, phase, v), ssh_out['ratios'][k]['%s_vs_synchronize_%s' % (v, phase)])
            for k in keys for v in variants for phase in ('first', 'noop')]))
        panels.append(('SSH: (oci - floor) / rsync\nlower is better, target <= 1.5', 1.5, False, [
            (label(k, phase, v), ssh_out['ratios'][k]['%s_beyond_floor_vs_rsync_%s' % (v, phase)])
            for k in keys for v in variants for phase in ('first', 'noop')]))
        copy_bars = [('%s\n%s' % (k, phase), ssh_out['ratios'][k]['%s_copy_vs_oci' % phase])
                     for k in keys for phase in ('first', 'noop')]
        if any(v is not None for dummy, v in copy_bars):
            panels.append(('SSH: copy / oci\nhigher is better, target >= 30', 30.0, True, copy_bars))
    memory = results.get('memory')
    if memory:
        bars = [('validate', memory['validate']['peak_mb'])]
        for store in ('s3', 'ssh'):
            if memory.get(store) and memory[store].get('peak_mb'):
                bars.append(('publish\n%s' % store, memory[store]['peak_mb']))
        panels.append(('Peak RSS (MB), %d MiB layer\nlower is better, target < 150' % memory['size_mib'], 150.0, False, bars))
    if not panels:
        return False
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 4.2 * rows), squeeze=False)
    for ax, (title, target, higher, bars) in zip([a for row in axes for a in row], panels):
        labels = [label for label, dummy in bars]
        values = [value if value is not None else 0.0 for dummy, value in bars]
        colours = []
        for dummy, value in bars:
            if value is None:
                colours.append('#bbbbbb')
            elif (value >= target) if higher else (value <= target if 'target <=' in title else value < target):
                colours.append('#4c9a2a')
            else:
                colours.append('#c0392b')
        ax.bar(range(len(values)), values, color=colours)
        ax.axhline(target, color='#333333', linestyle='--', linewidth=1)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        for i, (dummy, value) in enumerate(bars):
            ax.annotate('n/a' if value is None else '%.2f' % value, (i, values[i]), ha='center', va='bottom', fontsize=7)
    for ax in [a for row in axes for a in row][len(panels):]:
        ax.axis('off')
    figure.suptitle('oci.discovery benchmarks, %s (green: target met, red: missed)' % results['meta']['date'], fontsize=11)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
