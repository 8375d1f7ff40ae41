# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the benchmarks: paths, timed commands, medians, tools, versions, peak RSS.

Nothing here is part of the collection or of the test suite.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(REPO, 'tests', 'integration'), os.path.join(REPO, 'tests')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import conftest  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position
from rig import procs  # noqa: E402  pylint: disable=wrong-import-position
from rig.ansible import ANSIBLE_PLAYBOOK, PlaybookResult, ansible_env  # noqa: E402  pylint: disable=wrong-import-position

BENCH_TMP = os.path.join(REPO, '.tmp', 'bench')
VENV_PYTHON = os.path.join(REPO, '.venv', 'bin', 'python')
AWSCLI_VENV = os.path.join(BENCH_TMP, 'awscli-venv')
AWSCLI_REQUIREMENTS = os.path.join(REPO, 'benchmarks', 'requirements-awscli.txt')
BENCH_REQUIREMENTS = os.path.join(REPO, 'requirements-bench.txt')
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """A benchmark could not run (a tool is missing, a service did not start, a step failed)."""


# --------------------------------------------------------------------------- numbers

def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2.0


def add_medians(out):
    """The floor's median (time and CPU) and each cell's medians (``<phase>_median``, ``<phase>_cpu_median``).

    ``out`` is a benchmark's results: ``floor`` and ``floor_cpu`` lists, and ``cells`` whose
    ``first`` and ``noop`` (and ``*_cpu``) lists hold one figure per run. Returns the floor's median.
    """
    out['floor_median'] = median(out['floor'])
    out['floor_cpu_median'] = median(out['floor_cpu'])
    for cell in out['cells'].values():
        for phase in ('first', 'noop'):
            cell[phase + '_median'] = median(cell[phase])
            cell[phase + '_cpu_median'] = median(cell[phase + '_cpu'])
    return out['floor_median']


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt_s(seconds):
    return '-' if seconds is None else '%.2f' % seconds


def fmt_x(value):
    return '-' if value is None else '%.2fx' % value


def table(headers, rows):
    """A Markdown table (also readable on a terminal)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    lines = ['| ' + ' | '.join(str(h).ljust(w) for h, w in zip(headers, widths)) + ' |',
             '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(str(c).ljust(w) for c, w in zip(row, widths)) + ' |')
    return '\n'.join(lines)


# --------------------------------------------------------------------------- commands

class Outcome(object):
    """One timed command: wall seconds, exit status, output."""

    def __init__(self, argv, seconds, rc, stdout, stderr, cpu=None):
        self.argv = argv
        self.seconds = seconds
        self.cpu = cpu
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.rc == 0

    def reason(self, limit=160):
        """The most telling line of the output of a failed command."""
        text = (self.stderr or '') + '\n' + (self.stdout or '')
        for pattern in (r'(An error occurred \([^)]*\)[^"\n]*)', r'(MissingContentLength[^"\n]*)',
                        r'upload failed: \S+ to \S+ ([^\n]*)',
                        r'"msg": "([^"]*)"', r'(ERROR[^\n]*)', r'(error[^\n]*)'):
            found = re.search(pattern, text)
            if found:
                return found.group(1).strip()[:limit]
        lines = [line for line in text.splitlines() if line.strip()]
        return (lines[-1] if lines else 'exit status %s' % self.rc)[:limit]


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv, env=None, cwd=None, timeout=1800):
    """Run argv to completion; its wall time from fork to exit (not a shell around it).

    `cpu` is the user+system time of the process and of the descendants it waited for
    (processes on the far side of an ssh connection are not included).
    """
    cpu = _children_cpu()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        raise BenchError('%s timed out after %d s' % (' '.join(argv), timeout))
    seconds = time.monotonic() - start
    procs.reap_orphans()
    return Outcome(argv, seconds, proc.returncode, stdout.decode('utf-8', 'replace'),
                   stderr.decode('utf-8', 'replace'), _children_cpu() - cpu)


class Playbook(object):
    """A playbook and inventory written once, run (and timed) as often as needed."""

    def __init__(self, plays, inventory, workdir, name='playbook', env=None):
        import yaml
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, 'playbook.yml')
        self.inventory = os.path.join(self.dir, 'inventory.yml')
        with open(self.path, 'w') as handle:
            yaml.safe_dump(plays, handle, sort_keys=False)
        with open(self.inventory, 'w') as handle:
            yaml.safe_dump(inventory, handle, sort_keys=False)
        # Bytecode is written, as it is for an installed collection (the test rig turns it off to keep
        # the tree clean): into a cache of the benchmark's own, so that the tree stays clean too.
        self.env = ansible_env(dict({'PYTHONDONTWRITEBYTECODE': None,
                                     'PYTHONPYCACHEPREFIX': os.path.join(BENCH_TMP, 'pycache')}, **(env or {})))

    def argv(self, extra_vars=None, verbosity=0):
        argv = [ANSIBLE_PLAYBOOK, '-i', self.inventory]
        if extra_vars:
            argv += ['-e', json.dumps(extra_vars)]
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        return argv + [self.path]

    def run(self, extra_vars=None, verbosity=0):
        argv = self.argv(extra_vars, verbosity)
        outcome = timed(argv, env=self.env, cwd=self.dir)
        outcome.result = PlaybookResult(argv, outcome.rc, outcome.stdout, outcome.stderr, self.dir)
        if outcome.result.failed and outcome.rc == 0:
            outcome.rc = 2
        return outcome


def task_result(outcome, name):
    """The one host's result of task `name` in a Playbook outcome ({} when it did not run)."""
    try:
        return outcome.result.result(name)
    except KeyError:
        return {}


# --------------------------------------------------------------------------- tools

def _pip(python, *args):
    return subprocess.run([python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check'] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def ensure_bench_requirements():
    """matplotlib (for the chart) in .venv, from requirements-bench.txt; False when it cannot be installed."""
    try:
        import matplotlib  # noqa: F401  pylint: disable=unused-import
        return True
    except ImportError:
        pass
    print('bench: installing %s into .venv' % os.path.basename(BENCH_REQUIREMENTS))
    proc = _pip(sys.executable, '-r', BENCH_REQUIREMENTS)
    if proc.returncode != 0:
        print('bench: could not install the chart requirements:\n%s' % proc.stdout.decode('utf-8', 'replace')[-2000:])
        return False
    return True


def ensure_awscli():
    """The `aws` command of a private venv (.tmp/bench/awscli-venv) with the pinned awscli.

    awscli 1.x pins docutils < 0.20, which would downgrade what antsibull-docs needs in .venv;
    hence its own venv, created on first use (about 20 s).
    """
    aws = os.path.join(AWSCLI_VENV, 'bin', 'aws')
    stamp = os.path.join(AWSCLI_VENV, '.requirements')
    with open(AWSCLI_REQUIREMENTS) as handle:
        wanted = handle.read()
    if os.path.exists(aws) and os.path.exists(stamp):
        with open(stamp) as handle:
            if handle.read() == wanted:
                return aws
    print('bench: creating %s (awscli from %s)' % (AWSCLI_VENV, os.path.relpath(AWSCLI_REQUIREMENTS, REPO)))
    os.makedirs(BENCH_TMP, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'venv', '--clear', AWSCLI_VENV], check=True)
    proc = _pip(os.path.join(AWSCLI_VENV, 'bin', 'python'), '-r', AWSCLI_REQUIREMENTS)
    if proc.returncode != 0:
        raise BenchError('could not install awscli: %s' % proc.stdout.decode('utf-8', 'replace')[-2000:])
    with open(stamp, 'w') as handle:
        handle.write(wanted)
    return aws


def which(command):
    for directory in os.environ.get('PATH', '/usr/bin:/bin').split(os.pathsep) + ['/usr/sbin', '/usr/bin']:
        path = os.path.join(directory, command)
        if os.access(path, os.X_OK):
            return path
    return None


def _first_line(argv, pattern=None):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 'not available'
    text = proc.stdout.decode('utf-8', 'replace')
    if pattern:
        found = re.search(pattern, text)
        return found.group(1) if found else text.strip().splitlines()[0] if text.strip() else '?'
    return text.strip().splitlines()[0] if text.strip() else '?'


def versions():
    """Versions of everything measured, as {name: text}."""
    import boto3
    import botocore
    from ansible.release import __version__ as core_version
    found = {
        'ansible-core': core_version,
        'ansible (package)': _pip_version('ansible'),
        'Python': platform.python_version(),
        'boto3': boto3.__version__,
        'botocore': botocore.__version__,
        'rclone': _first_line(['rclone', 'version'], r'rclone (v\S+)'),
        'nginx': _first_line(['nginx', '-v'], r'nginx/(\S+)'),
        'Ceph (radosgw)': _first_line(['radosgw', '--version'], r'ceph version (\S+)'),
        'OpenSSH': _first_line(['ssh', '-V'], r'OpenSSH_([^\s,]+)'),
        'rsync': _first_line(['rsync', '--version'], r'version (\S+)'),
    }
    aws = os.path.join(AWSCLI_VENV, 'bin', 'aws')
    found['awscli'] = _first_line([aws, '--version'], r'aws-cli/(\S+)') if os.path.exists(aws) else 'not installed'
    for collection in ('amazon.aws', 'community.aws', 'ansible.posix'):
        found[collection] = _collection_version(collection)
    return found


def _pip_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # pylint: disable=broad-except
        return '?'


def _collection_version(fqcn):
    namespace, name = fqcn.split('.')
    try:
        module = __import__('ansible_collections.%s.%s' % (namespace, name), fromlist=['__path__'])
        for path in module.__path__:
            manifest = os.path.join(path, 'MANIFEST.json')
            if os.path.exists(manifest):
                with open(manifest) as handle:
                    return json.load(handle)['collection_info']['version']
    except (ImportError, OSError, ValueError, KeyError):
        pass
    return '?'


def machine():
    """{name: text} about this machine."""
    found = {'nproc': str(os.cpu_count()), 'kernel': platform.release()}
    try:
        with open('/proc/meminfo') as handle:
            total = int(handle.readline().split()[1])
        found['memory'] = '%.1f GiB' % (total / 1024.0 / 1024.0)
    except (OSError, ValueError, IndexError):
        found['memory'] = '?'
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    found['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open('/etc/os-release') as handle:
            for line in handle:
                if line.startswith('PRETTY_NAME='):
                    found['os'] = line.split('=', 1)[1].strip().strip('"')
    except OSError:
        pass
    return found


def write_section(text, begin, end, path):
    """Put ``text`` (a section starting with ``begin`` and ending with ``end``) into the Markdown file at
    ``path`` in place of the one between those markers, or at its end; the rest is left as it is."""
    old = open(path).read() if os.path.exists(path) else ''
    pattern = re.compile(re.escape(begin) + '.*?' + re.escape(end) + '\n?', re.S)
    new = pattern.sub(lambda m: text, old) if pattern.search(old) else old.rstrip('\n') + '\n\n' + text
    with open(path, 'w') as handle:
        handle.write(new)


# --------------------------------------------------------------------------- peak memory

def _status(pid):
    fields = {}
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                key, dummy, value = line.partition(':')
                fields[key] = value.strip()
    except OSError:
        return None
    return fields


class PeakRss(object):
    """Poll the peak RSS (VmHWM) of every process of a tree, and of other trees.

    `watch(pid)` follows the process and its descendants; `roots` adds the descendants of
    other processes (our sshd listener: over ssh the module runs under sshd, not under
    ansible-playbook). VmHWM is a high-water mark, so polling every 20 ms misses at most a
    process's last moments.
    """

    def __init__(self, roots=(), interval=0.02):
        self.roots = list(roots)
        self.interval = interval
        self.peaks = {}        # pid -> (kib, command line)
        self._stop = threading.Event()
        self._thread = None
        self._root = None

    def watch(self, pid):
        self._root = pid
        self._thread = threading.Thread(target=self._poll, name='peak-rss')
        self._thread.daemon = True
        self._thread.start()

    def _candidates(self):
        found = set(procs.descendants(self._root)) | {self._root}
        for root in self.roots:
            found.update(procs.descendants(root))
        return found

    def _poll(self):
        while not self._stop.is_set():
            for pid in self._candidates():
                status = _status(pid)
                if not status or 'VmHWM' not in status:
                    continue
                kib = int(status['VmHWM'].split()[0])
                if kib > self.peaks.get(pid, (0, ''))[0]:
                    self.peaks[pid] = (kib, self.peaks.get(pid, (0, ''))[1] or procs.cmdline(pid)[:200])
            time.sleep(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def top(self, count=3):
        """[(MB, command line)] of the processes with the highest peaks."""
        ranked = sorted(self.peaks.values(), reverse=True)[:count]
        return [(kib / 1024.0, cmd) for kib, cmd in ranked]


def run_with_peak(argv, env=None, cwd=None, roots=(), timeout=1800):
    """Run argv like timed(), polling the peak RSS of its process tree; (Outcome, PeakRss)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    peak = PeakRss(roots=roots)
    peak.watch(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        peak.stop()
    seconds = time.monotonic() - start
    procs.reap_orphans()
    return Outcome(argv, seconds, proc.returncode, stdout.decode('utf-8', 'replace'),
                   stderr.decode('utf-8', 'replace')), peak


# --------------------------------------------------------------------------- data sets

DATASETS = ('big', 'small')
DATASET_LABELS = {'big': 'big layout (200 blobs, one 30 MiB layer)', 'small': '1,000 blobs of 8 KiB'}


def build_small_layout(root, count=1000, size=8192):
    """A layout whose one manifest (tag "small") references `count` layers of `size` random bytes.

    The layers are opaque to every tool measured (only hashed), so plain random bytes do;
    they are labelled as gzip layers, as most real layers are. World-readable like the
    rig's layouts. Returns root.
    """
    from rig import layouts
    import random
    rng = random.Random(8192)
    layouts.init_layout(root)
    descriptors = []
    for dummy in range(count):
        data = rng.randbytes(size)
        descriptors.append(layouts.descriptor(root, layouts.MT_LAYER_GZIP, data))
    return tag_image(root, 'small', descriptors)


def tag_image(root, tag, layers):
    """Write a config and a manifest of ``layers`` (descriptors of blobs in the layout at ``root``), tag it,
    make the layout world-readable; returns root."""
    from rig import layouts
    config = layouts.descriptor(root, layouts.MT_CONFIG, {
        'architecture': 'amd64', 'os': 'linux', 'created': layouts.CREATED,
        'rootfs': {'type': 'layers', 'diff_ids': [d['digest'] for d in layers]}})
    manifest = layouts.descriptor(root, layouts.MT_MANIFEST, {
        'schemaVersion': 2, 'mediaType': layouts.MT_MANIFEST, 'config': config, 'layers': layers})
    layouts.set_tag(root, tag, manifest)
    layouts.make_world_readable(root)
    return root


def datasets(workdir):
    """{'big': path, 'small': path}: the rig's cached big layout, and a new 1,000-blob layout."""
    from rig import layouts
    big = layouts.cached_layouts(('big',)).big
    small = build_small_layout(os.path.join(workdir, 'small-layout'))
    return {'big': big, 'small': small}


def blob_media_types(root):
    """{encoded digest: media type} of every blob reachable from the layout's index.json, and
    {('tag', tag): media type} of what each tag of the index names."""
    from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
    layout = Layout(root)
    types = dict((d['digest'].split(':', 1)[1], d['mediaType']) for d in layout.walk(layout.index['manifests']))
    for entry in layout.index['manifests']:
        tag = (entry.get('annotations') or {}).get('org.opencontainers.image.ref.name')
        if tag:
            types[('tag', tag)] = entry['mediaType']
    return types
