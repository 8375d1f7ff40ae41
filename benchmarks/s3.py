# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 benchmark: oci.discovery.s3_publish_layout against the tools users would otherwise pick.

Into Ceph RGW on loopback (tests/rig/ceph.py), over http and https, for two data sets (the
rig's big layout: 200 blobs with one 30 MiB layer; 1,000 blobs of 8 KiB), each tool does a
first publish into an empty bucket and a no-change re-run, timed as whole processes:

  oci       ansible-playbook running oci.discovery.s3_publish_layout (defaults)
  s3_sync   ansible-playbook running community.aws.s3_sync (mode push)
  aws       `aws s3 sync` (awscli v1, its own venv)
  rclone    `rclone sync --transfers 16`
  boto3     a raw loop: one LIST, then PUTs of what is missing from 16 threads
  ping      ansible-playbook running ansible.builtin.ping: Ansible's fixed floor

Requests are counted from RGW's own access log (the beast front end logs one line per
request: method, path and query, status), between two marker requests that bracket each
measured command: exact, whatever client made them, and no proxy in the data path to slow
anything down. A copy onto itself (how metadata is fixed) shows there as a PUT; none is
expected here. After each tool's first run, every object it left is checked with a HEAD:
a blob must carry its descriptor's media type as Content-Type, an index the image-index
media type (oci-layout files and the module's private ledger are not checked).

Over https RGW refuses boto3's default request checksums (aws-chunked trailers). Each tool
is first tried once with its defaults over https (reported as "https, defaults"); the timed
https runs then use the usual work-around (checksums only when required) where needed.

Two more measurements (``extras``), in the same run:

  large     a layout with one 1 GiB layer, first publish into an empty bucket by oci, aws s3 sync
            and rclone (whole processes; MB/s = layout bytes / seconds); the bucket is emptied and
            RGW's garbage collected before the next tool (memstore holds everything in RAM)
  put_cpu   client CPU per small blob (the 1,000-blob set), in a fresh process that measures only
            its uploads (benchmarks/_put_cpu.py): S3Store.put_blobs on the direct path, the same
            through the client pipeline, and a bare client.put_object loop
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from benchmarks import _common
from benchmarks._common import DATASETS, Playbook, procs, ratio, task_result, timed

TOOLS = ('oci', 's3_sync', 'aws', 'rclone', 'boto3')
EXTRAS = ('large', 'put_cpu')
LARGE_TOOLS = ('oci', 'aws', 'rclone')
LARGE_MIB = 1024
PUT_MODES = ('direct', 'pipeline', 'put_object', 'signed')
PUT_LABELS = {'direct': 'S3Store.put_blobs, direct path (the module)',
              'pipeline': 'S3Store.put_blobs, client pipeline',
              'put_object': 'bare client.put_object loop, 1 thread',
              'signed': 'bare S3SigV4Auth + urllib3 loop, 1 thread'}
PUT_CPU_TARGET_MS = 0.6
PUT_SIGNED_REFERENCE_MS = 0.5     # issue 14's bare S3SigV4Auth + urllib3 PUT, on its machine
TOOL_LABELS = {
    'oci': 'oci.discovery.s3_publish_layout',
    's3_sync': 'community.aws.s3_sync',
    'aws': 'aws s3 sync',
    'rclone': 'rclone sync --transfers 16',
    'boto3': 'boto3, 16 threads',
}
SCHEMES = ('http', 'https')
NAME = 'example.test/bench/app'
MT_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_REF_ENGINES = 'application/vnd.oci.ref-engines.v1+json'
LEDGER = '.oci-discovery/s3-ledger.json'
WHEN_REQUIRED = {'request_checksum_calculation': 'when_required', 'response_checksum_validation': 'when_required'}
CHECKSUM_ENV = ('AWS_REQUEST_CHECKSUM_CALCULATION', 'AWS_RESPONSE_CHECKSUM_VALIDATION')

_BEAST = re.compile(r'beast: \S+: \S+ - (\S+) \[[^\]]*\] "(\w+) (\S+) HTTP/[0-9.]+" (\d+)')


# --------------------------------------------------------------------------- request counting

def classify(method, path):
    """The kind of an S3 request from its method and path ('/bucket/key?query')."""
    target, dummy, query = path.partition('?')
    has_key = '/' in target.lstrip('/')
    params = set(p.split('=', 1)[0] for p in query.split('&') if p)
    if method == 'GET' and not has_key:
        return 'LIST' if ('list-type' in params or not params or 'prefix' in params or 'marker' in params) else 'bucket'
    if method == 'PUT' and has_key:
        return 'PUT part' if 'partNumber' in params else 'PUT'
    if method == 'POST':
        return 'DELETE' if 'delete' in params else 'POST'
    if not has_key:
        return 'bucket'
    return method


class RequestLog(object):
    """The requests RGW served between two marker requests, read from its access log."""

    def __init__(self, rgw):
        self.rgw = rgw
        self.path = os.path.join(rgw.dir, 'log', 'client.rgw.a.log')
        self._start = None
        self.requests = []

    def _marker(self):
        token = 'marker-%s' % uuid.uuid4().hex
        try:
            urllib.request.urlopen('%s/%s' % (self.rgw.endpoint, token), timeout=10).read()
        except urllib.error.HTTPError:
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.path, 'rb') as handle:
                data = handle.read()
            at = data.find(token.encode())
            if at != -1:
                return data.find(b'\n', at) + 1
            time.sleep(0.05)
        raise _common.BenchError('marker %s never appeared in %s' % (token, self.path))

    def start(self):
        self._start = self._marker()
        return self

    def stop(self):
        end = self._marker()
        with open(self.path, 'rb') as handle:
            handle.seek(self._start)
            text = handle.read(end - self._start).decode('utf-8', 'replace')
        self.requests = []
        for line in text.splitlines():
            match = _BEAST.search(line)
            if match and 'marker-' not in match.group(3):
                self.requests.append((match.group(2), match.group(3), int(match.group(4))))
        return self.counts()

    def counts(self):
        found = {}
        for method, path, dummy in self.requests:
            kind = classify(method, path)
            found[kind] = found.get(kind, 0) + 1
        found['total'] = len(self.requests)
        return found


def format_counts(counts):
    if not counts:
        return '-'
    order = ('LIST', 'HEAD', 'GET', 'PUT', 'PUT part', 'POST', 'DELETE', 'bucket')
    parts = ['%s %d' % (kind, counts[kind]) for kind in order if counts.get(kind)]
    return '%d (%s)' % (counts.get('total', 0), ', '.join(parts)) if parts else '0'


# --------------------------------------------------------------------------- buckets

def new_bucket(rgw, label):
    name = ('b-%s-%s' % (label, uuid.uuid4().hex[:8])).lower().replace('_', '-')[:63]
    rgw.client().create_bucket(Bucket=name)
    return name


def all_keys(client, bucket):
    keys = []
    for page in client.get_paginator('list_objects_v2').paginate(Bucket=bucket):
        keys.extend(item['Key'] for item in page.get('Contents', []))
    return keys


def remove_bucket(rgw, bucket):
    """Delete every object, unfinished multipart upload and the bucket (memstore holds it in RAM)."""
    client = rgw.client()
    keys = all_keys(client, bucket)
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={'Objects': [{'Key': k} for k in keys[start:start + 1000]],
                                                     'Quiet': True})
    for upload in client.list_multipart_uploads(Bucket=bucket).get('Uploads', []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload['Key'], UploadId=upload['UploadId'])
    client.delete_bucket(Bucket=bucket)
    collect_garbage(rgw)


def collect_garbage(rgw):
    """Free deleted objects' data now: RGW frees tails (>4 MiB) only after hours, and memstore is 2 GiB of RAM."""
    procs.run(['radosgw-admin', '-c', rgw.conf, 'gc', 'process', '--include-all'], what='radosgw-admin gc process',
              timeout=120)


def expected_type(key, media_types):
    """The Content-Type `key` must be served with (None: not checked).

    `media_types` maps encoded digests to media types and, under ('tag', t), tags to the media type
    of what they name. Keys of both S3 site layouts are known: the `cas_bucket` CAS
    (`oci-cas/...`) and the `registry` layout's Distribution API paths (`v2/<name>/blobs/<digest>`,
    `v2/<name>/manifests/<digest or tag>`, `v2/<name>/tags/list`, the `v2/` root).
    """
    if key == LEDGER or key.endswith('/oci-layout') or key == 'oci-layout':
        return None
    last = key.rsplit('/', 1)[-1]
    if key.startswith('v2/'):
        parts = key.split('/')
        if len(parts) == 2 or key.endswith('/tags/list'):
            return 'application/json'
        if len(parts) > 3 and parts[-2] == 'manifests':
            if ':' in last:
                return media_types.get(last.split(':', 1)[1], '?')
            return media_types.get(('tag', last), '?')
    if key.startswith('oci-cas/') or key.startswith('blobs/') or '/blobs/' in key:
        return media_types.get(last.split(':', 1)[-1], '?')
    if key.startswith('oci-index/') or key == 'index.json' or key.endswith('/index.json'):
        return MT_INDEX
    if key == '.well-known/oci-host-ref-engines':
        return MT_REF_ENGINES
    return '?'


def wrong_content_types(rgw, bucket, media_types):
    """(wrong, checked, {served type: count} of the wrong ones) for every object in the bucket."""
    client = rgw.client()
    keys = [k for k in all_keys(client, bucket) if expected_type(k, media_types) is not None]

    def head(key):
        served = client.head_object(Bucket=bucket, Key=key).get('ContentType', '')
        want = expected_type(key, media_types)
        # Parameters (charset) are allowed; the media type itself must match exactly.
        return None if served.split(';')[0].strip() == want else served

    with ThreadPoolExecutor(16) as pool:
        served = [s for s in pool.map(head, keys) if s is not None]
    kinds = {}
    for item in served:
        kinds[item] = kinds.get(item, 0) + 1
    return len(served), len(keys), kinds


# --------------------------------------------------------------------------- the tools

class Tools(object):
    """Builds, for a tool, a scheme and a data set, a callable bucket -> Outcome."""

    def __init__(self, rgw, data, workdir, aws=None):
        self.rgw = rgw
        self.data = data
        self.workdir = workdir
        self.aws = aws
        self._playbooks = {}
        self.rclone_config = os.path.join(workdir, 'rclone.conf')
        with open(self.rclone_config, 'w') as handle:
            handle.write('# empty: the remote is configured through RCLONE_CONFIG_BENCH_* variables\n')

    def _playbook(self, key, module, args):
        if key not in self._playbooks:
            plays = [{'hosts': 'localhost', 'gather_facts': False,
                      'tasks': [{'name': 'run', module: args}]}]
            from rig.ansible import local_inventory
            self._playbooks[key] = Playbook(plays, local_inventory(), self.workdir, name=key.replace('/', '-'))
        return self._playbooks[key]

    def ping(self):
        book = self._playbook('ping', 'ansible.builtin.ping', {})
        return book.run

    def _aws_env(self, tls, defaults):
        env = dict(self.rgw.aws_env(tls))
        if defaults:
            for name in CHECKSUM_ENV:
                env[name] = None
        # No ~/.aws files: only what is given here.
        env.update(AWS_CONFIG_FILE=os.path.join(self.workdir, 'no-aws-config'),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.workdir, 'no-aws-credentials'))
        return procs.service_env(env)

    def runner(self, tool, scheme, dataset, defaults=False):
        """callable(bucket) -> Outcome. `defaults`: no checksum work-around over https."""
        tls = scheme == 'https'
        src = self.data[dataset]
        rgw = self.rgw
        connection = {'endpoint_url': rgw.endpoint_url(tls), 'region': rgw.region,
                      'access_key': rgw.access_key, 'secret_key': rgw.secret_key}
        if tls:
            connection['aws_ca_bundle'] = rgw.ca_path
        key = '%s/%s/%s/%s' % (tool, scheme, dataset, 'defaults' if defaults else 'run')
        if tool == 'oci':
            args = dict(connection, src=src, name=NAME, bucket='{{ bucket }}')
            book = self._playbook(key, 'oci.discovery.s3_publish_layout', args)
            return lambda bucket: book.run({'bucket': bucket})
        if tool == 's3_sync':
            args = dict(connection, mode='push', file_root=src, bucket='{{ bucket }}')
            if tls and not defaults:
                args['aws_config'] = dict(WHEN_REQUIRED)
            book = self._playbook(key, 'community.aws.s3_sync', args)
            return lambda bucket: book.run({'bucket': bucket})
        if tool == 'aws':
            env = self._aws_env(tls, defaults or not tls)
            return lambda bucket: timed([self.aws, 's3', 'sync', '--no-progress', '--only-show-errors',
                                         src, 's3://%s/' % bucket], env=env)
        if tool == 'boto3':
            env = self._aws_env(tls, True)
            script = os.path.join(_common.REPO, 'benchmarks', '_boto3_loop.py')
            checksums = 'when_required' if tls and not defaults else 'default'
            return lambda bucket: timed([_common.VENV_PYTHON, script, src, bucket, '--threads', '16',
                                         '--checksums', checksums], env=env)
        if tool == 'rclone':
            env = procs.service_env({
                'RCLONE_CONFIG': self.rclone_config,
                'RCLONE_CONFIG_BENCH_TYPE': 's3', 'RCLONE_CONFIG_BENCH_PROVIDER': 'Ceph',
                'RCLONE_CONFIG_BENCH_ACCESS_KEY_ID': rgw.access_key,
                'RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY': rgw.secret_key,
                'RCLONE_CONFIG_BENCH_ENDPOINT': rgw.endpoint_url(tls),
                'RCLONE_CONFIG_BENCH_REGION': rgw.region})
            extra = ['--ca-cert', rgw.ca_path] if tls else []
            return lambda bucket: timed(['rclone', 'sync', '--transfers', '16'] + extra + [src, 'bench:%s' % bucket],
                                        env=env)
        raise ValueError('unknown tool %r' % tool)


# --------------------------------------------------------------------------- the benchmark

def run(rgw, data, workdir, runs=3, schemes=SCHEMES, sets=DATASETS, tools=TOOLS, extras=EXTRAS, large_mib=LARGE_MIB,
        log=print):
    """Measure everything; returns a dict (see report.py for how it is shown)."""
    aws = _common.ensure_awscli() if 'aws' in tools else None
    maker = Tools(rgw, data, workdir, aws)
    media_types = dict((name, _common.blob_media_types(path)) for name, path in data.items())
    ping = maker.ping()
    out = {'runs': runs, 'floor': [], 'floor_cpu': [], 'cells': {}, 'https_defaults': {}, 'tools': list(tools),
           'schemes': list(schemes), 'sets': list(sets)}

    # Each tool once over https with its defaults (big layout): does it work at all?
    if 'https' in schemes:
        for tool in tools:
            bucket = new_bucket(rgw, 'dflt-' + tool)
            try:
                outcome = maker.runner(tool, 'https', 'big', defaults=True)(bucket)
                out['https_defaults'][tool] = 'works' if outcome.ok else 'fails: ' + outcome.reason()
            finally:
                remove_bucket(rgw, bucket)
            log('  https with defaults: %-34s %s' % (TOOL_LABELS[tool], out['https_defaults'][tool]))

    for run_number in range(runs):
        for scheme in schemes:
            for dataset in sets:
                floor = ping()
                if not floor.ok:
                    raise _common.BenchError('ping playbook failed: %s' % floor.reason())
                out['floor'].append(floor.seconds)
                out['floor_cpu'].append(floor.cpu)
                for tool in tools:
                    cell = out['cells'].setdefault('%s/%s/%s' % (scheme, dataset, tool), {
                        'first': [], 'noop': [], 'first_cpu': [], 'noop_cpu': [], 'failed': None})
                    _measure(rgw, maker.runner(tool, scheme, dataset), tool, cell, run_number == 0,
                             media_types[dataset], '%s-%s' % (tool, scheme))
                    log('  run %d %-5s %-5s %-34s first %s  no-op %s%s'
                        % (run_number + 1, scheme, dataset, TOOL_LABELS[tool], _common.fmt_s(_last(cell['first'])),
                           _common.fmt_s(_last(cell['noop'])), ('  FAILED: ' + cell['failed']) if cell['failed'] else ''))
    summarise(out)
    if 'large' in extras:
        out['large'] = run_large(rgw, maker, workdir, runs, schemes, [t for t in LARGE_TOOLS if t in tools or t == 'oci'],
                                 large_mib, log)
    if 'put_cpu' in extras and 'small' in data:
        out['put_cpu'] = run_put_cpu(rgw, data['small'], runs, schemes, log)
    return out


def run_large(rgw, maker, workdir, runs, schemes, tools, mib=LARGE_MIB, log=print):
    """First publish of a layout with a ``mib`` MiB layer by each tool: seconds, CPU, MB/s (medians)."""
    from benchmarks import validate_memory
    from rig import layouts
    root = os.path.join(workdir, 'large-layout')
    validate_memory.build_layout(root, mib)
    layouts.make_world_readable(root)
    maker.data['large'] = root
    size = validate_memory.layout_bytes(root)
    maker.aws = maker.aws or _common.ensure_awscli()
    out = {'bytes': size, 'mib': mib, 'tools': list(tools), 'schemes': list(schemes), 'cells': {}, 'floor': []}
    ping = maker.ping()
    for run_number in range(runs):
        out['floor'].append(ping().seconds)
        turn = tools[run_number % len(tools):] + tools[:run_number % len(tools)]   # each tool goes first in turn
        for scheme in schemes:
            for tool in turn:
                cell = out['cells'].setdefault('%s/%s' % (scheme, tool), {'seconds': [], 'cpu': [], 'failed': None})
                bucket = new_bucket(rgw, 'large-%s-%s' % (tool, scheme))
                try:
                    outcome = maker.runner(tool, scheme, 'large')(bucket)
                finally:
                    remove_bucket(rgw, bucket)
                if outcome.ok:
                    cell['seconds'].append(outcome.seconds)
                    cell['cpu'].append(outcome.cpu)
                else:
                    cell['failed'] = outcome.reason()
                log('  run %d %-5s %d MiB layer %-34s %s s (%s MB/s)%s'
                    % (run_number + 1, scheme, mib, TOOL_LABELS[tool], _common.fmt_s(outcome.seconds),
                       '%.0f' % (size / outcome.seconds / 1e6), '' if outcome.ok else '  FAILED: ' + cell['failed']))
    out['floor_median'] = _common.median(out['floor'])
    for key, cell in out['cells'].items():
        cell['median'] = _common.median(cell['seconds'])
        cell['cpu_median'] = _common.median(cell['cpu'])
        cell['mb_s'] = size / cell['median'] / 1e6 if cell['median'] else None
        if key.endswith('/oci') and cell['median'] and cell['median'] > out['floor_median']:
            cell['mb_s_beyond_floor'] = size / (cell['median'] - out['floor_median']) / 1e6
    for scheme in schemes:
        oci = out['cells'].get('%s/oci' % scheme, {})
        for tool in tools:
            if tool != 'oci':
                other = out['cells']['%s/%s' % (scheme, tool)]
                other['oci_vs'] = ratio(oci.get('mb_s'), other['mb_s'])
                other['oci_beyond_floor_vs'] = ratio(oci.get('mb_s_beyond_floor'), other['mb_s'])
    return out


def run_put_cpu(rgw, src, runs, schemes, log=print):
    """Client CPU per small blob (ms), each mode in a fresh process (benchmarks/_put_cpu.py); medians."""
    import json
    out = {'modes': list(PUT_MODES), 'schemes': list(schemes), 'cells': {}, 'target_ms': PUT_CPU_TARGET_MS,
           'signed_reference_ms': PUT_SIGNED_REFERENCE_MS, 'target_vs_signed': PUT_CPU_TARGET_MS / PUT_SIGNED_REFERENCE_MS}
    for run_number in range(runs):
        for scheme in schemes:
            env = procs.service_env(dict(rgw.aws_env(scheme == 'https'), AWS_CONFIG_FILE='/nonexistent',
                                         AWS_SHARED_CREDENTIALS_FILE='/nonexistent'))
            for mode in PUT_MODES:
                cell = out['cells'].setdefault('%s/%s' % (scheme, mode), {'cpu_ms': [], 'wall_ms': [], 'failed': None})
                bucket = new_bucket(rgw, 'cpu-%s-%s' % (mode.replace('_', '-'), scheme))
                try:
                    outcome = timed([_common.VENV_PYTHON, '-m', 'benchmarks._put_cpu', src, bucket, '--mode', mode],
                                    env=env, cwd=_common.REPO)
                finally:
                    remove_bucket(rgw, bucket)
                if not outcome.ok:
                    cell['failed'] = outcome.reason()
                    log('  run %d %-5s put CPU %-10s FAILED: %s' % (run_number + 1, scheme, mode, cell['failed']))
                    continue
                found = json.loads(outcome.stdout.strip().splitlines()[-1])
                cell['cpu_ms'].append(found['cpu_ms_per_blob'])
                cell['wall_ms'].append(found['wall_ms_per_blob'])
                cell['direct'] = found['direct']
                cell['fallback_reason'] = found['fallback_reason']
                log('  run %d %-5s put CPU %-10s %.3f ms per blob (wall %.3f ms)%s'
                    % (run_number + 1, scheme, mode, found['cpu_ms_per_blob'], found['wall_ms_per_blob'],
                       '  (fell back: %s)' % found['fallback_reason'] if found['fallback_reason'] else ''))
    for cell in out['cells'].values():
        cell['cpu_ms_median'] = _common.median(cell['cpu_ms'])
        cell['wall_ms_median'] = _common.median(cell['wall_ms'])
    return out


def _last(values):
    return values[-1] if values else None


def _measure(rgw, runner, tool, cell, first_run, media_types, label):
    bucket = new_bucket(rgw, label)
    try:
        count = RequestLog(rgw).start() if first_run else None
        first = runner(bucket)
        if count:
            cell['requests_first'] = count.stop()
        if not first.ok:
            cell['failed'] = first.reason()
            return
        if tool == 'oci':
            cell['module_first'] = task_result(first, 'run').get('requests')
        count = RequestLog(rgw).start() if first_run else None
        noop = runner(bucket)
        if count:
            cell['requests_noop'] = count.stop()
        if not noop.ok:
            cell['failed'] = 'no-op re-run: ' + noop.reason()
            return
        if tool == 'oci':
            cell['module_noop'] = task_result(noop, 'run').get('requests')
            if task_result(noop, 'run').get('changed'):
                cell['noop_changed'] = True
        cell['first'].append(first.seconds)
        cell['noop'].append(noop.seconds)
        cell['first_cpu'].append(first.cpu)
        cell['noop_cpu'].append(noop.cpu)
        if first_run:
            cell['wrong_content_type'] = wrong_content_types(rgw, bucket, media_types)
    finally:
        remove_bucket(rgw, bucket)


def summarise(out):
    """Medians and the ratios the targets are about, added to `out`."""
    floor = _common.add_medians(out)
    out['ratios'] = {}
    for scheme in out['schemes']:
        for dataset in out['sets']:
            def get(tool, phase, scheme=scheme, dataset=dataset):
                return out['cells'].get('%s/%s/%s' % (scheme, dataset, tool), {}).get(phase + '_median')
            oci = dict((phase, get('oci', phase)) for phase in ('first', 'noop'))
            entry = {}
            for phase in ('first', 'noop'):
                beyond = None if oci[phase] is None or floor is None else oci[phase] - floor
                entry['beyond_floor_' + phase] = beyond
                entry['beyond_floor_vs_rclone_' + phase] = ratio(beyond, get('rclone', phase))
            total = dict((tool, None if get(tool, 'first') is None or get(tool, 'noop') is None
                          else get(tool, 'first') + get(tool, 'noop')) for tool in out['tools'])
            entry['s3_sync_vs_oci_total'] = ratio(total.get('s3_sync'), total.get('oci'))
            for tool in out['tools']:
                entry['total_' + tool] = total.get(tool)
            out['ratios']['%s/%s' % (scheme, dataset)] = entry
    return out
