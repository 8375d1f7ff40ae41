# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSH benchmark: oci.discovery.publish_layout into a web root, against the usual ways of copying files.

The "remote" host is sshd on loopback (tests/rig/sshd.py, user ocitest, Debian's Python).
For both data sets, each tool does a first publish into an empty web root and a no-change
re-run, timed as whole processes:

  oci          ansible-playbook running oci.discovery.publish_layout (Ansible's ssh defaults:
               compression on (-C), ControlMaster/ControlPersist 60 s)
  oci_nocomp   the same with ansible_ssh_args without -C (layers are gzip already); its own
               ControlPath directory, so that no master started with -C is reused
  oci_pipelining  (not by default: --ssh-tools) the same with ANSIBLE_PIPELINING=True (module
               runs without the sftp upload of the module and its chmod), ssh without -C
  copy         ansible-playbook running ansible.builtin.copy of the layout directory (one module
               run per file: about 90 s per run for 200 files, so 1 run and only the big
               layout by default)
  synchronize  ansible-playbook running ansible.posix.synchronize (rsync, its defaults)
  rsync        `rsync -a -e ssh` (a new ssh connection per run, no compression)
  ping         ansible-playbook running ansible.builtin.ping over ssh: Ansible's floor over ssh

Ansible keeps an ssh master connection for 60 s (ControlPersist). The floor and every Ansible
tool run over a warm master (a ping over the same connection settings comes first, untimed);
rsync, and the rsync that synchronize starts, pay their ssh handshake on every run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from benchmarks import _common
from benchmarks._common import DATASETS, Playbook, procs, ratio, task_result, timed

TOOLS = ('oci', 'oci_nocomp', 'copy', 'synchronize', 'rsync')
OPTIONAL_TOOLS = ('oci_pipelining',)
TOOL_LABELS = {
    'oci': 'oci.discovery.publish_layout',
    'oci_nocomp': 'publish_layout, ssh without -C',
    'oci_pipelining': 'publish_layout, no -C, pipelining',
    'copy': 'ansible.builtin.copy',
    'synchronize': 'ansible.posix.synchronize',
    'rsync': 'rsync -a -e ssh',
}
NAME = 'example.test/bench/app'
SSH_ARGS_NO_COMPRESSION = '-o ControlMaster=auto -o ControlPersist=60s'
VARIANT_NOTES = {'oci': '', 'oci_nocomp': 'no -C', 'oci_pipelining': 'no -C, pipelining'}


class Tools(object):
    def __init__(self, sshd, data, workdir):
        self.sshd = sshd
        self.data = data
        self.workdir = workdir
        self._books = {}

    def _playbook(self, key, module, args, host_vars=None, env=None):
        if key not in self._books:
            plays = [{'hosts': 'web', 'gather_facts': False, 'tasks': [{'name': 'run', module: args}]}]
            self._books[key] = Playbook(plays, self.sshd.inventory('web', **(host_vars or {})), self.workdir,
                                        name='ssh-' + key.replace('/', '-'), env=env)
        return self._books[key]

    def _connection(self, tool):
        """(host vars, environment) of an oci variant: its ssh arguments and its own ControlPath directory."""
        if tool == 'oci' or not tool.startswith('oci'):
            return None, None
        control = os.path.join(self.workdir, 'cp-' + tool)
        os.makedirs(control, exist_ok=True)
        env = {'ANSIBLE_SSH_CONTROL_PATH_DIR': control}
        if tool == 'oci_pipelining':
            env['ANSIBLE_PIPELINING'] = 'True'
        return {'ansible_ssh_args': SSH_ARGS_NO_COMPRESSION}, env

    def ping(self, tool='oci'):
        """The floor (ping over ssh); with an oci variant, over that variant's connection (to warm it)."""
        host_vars, env = self._connection(tool)
        return self._playbook('ping/' + tool, 'ansible.builtin.ping', {}, host_vars, env).run

    def runner(self, tool, dataset):
        """callable(web root) -> Outcome."""
        src = self.data[dataset]
        key = '%s/%s' % (tool, dataset)
        if tool.startswith('oci'):
            host_vars, env = self._connection(tool)
            book = self._playbook(key, 'oci.discovery.publish_layout',
                                  {'src': src, 'name': NAME, 'root': '{{ root }}'}, host_vars, env)
            return lambda root: book.run({'root': root})
        if tool == 'copy':
            book = self._playbook(key, 'ansible.builtin.copy', {'src': src + '/', 'dest': '{{ root }}/'})
            return lambda root: book.run({'root': root})
        if tool == 'synchronize':
            book = self._playbook(key, 'ansible.posix.synchronize', {'src': src + '/', 'dest': '{{ root }}/'})
            return lambda root: book.run({'root': root})
        if tool == 'rsync':
            from rig.sshd import SSH_COMMON_ARGS
            ssh = 'ssh -p %d -i %s -o BatchMode=yes -o LogLevel=ERROR %s' % (
                self.sshd.port, self.sshd.key_path, SSH_COMMON_ARGS)
            env = procs.service_env()
            return lambda root: timed(['rsync', '-a', '-e', ssh, src + '/', '%s@127.0.0.1:%s/' % (self.sshd.user, root)],
                                      env=env)
        raise ValueError('unknown tool %r' % tool)


def file_count(root):
    return sum(len(names) for dummy, dummy, names in os.walk(root))


def run(sshd, data, workdir, runs=3, sets=DATASETS, tools=TOOLS, copy_runs=1, copy_sets=('big',), log=print):
    maker = Tools(sshd, data, workdir)
    ping = maker.ping()
    out = {'runs': runs, 'floor': [], 'floor_cpu': [], 'cells': {}, 'tools': list(tools), 'sets': list(sets),
           'copy_runs': copy_runs, 'copy_sets': list(copy_sets)}
    ping()  # the first run opens Ansible's ssh master connection: not a fair floor
    for run_number in range(runs):
        for dataset in sets:
            floor = ping()
            if not floor.ok:
                raise _common.BenchError('ping over ssh failed: %s' % floor.reason())
            out['floor'].append(floor.seconds)
            out['floor_cpu'].append(floor.cpu)
            for tool in tools:
                if tool == 'copy' and (run_number >= copy_runs or dataset not in copy_sets):
                    continue
                cell = out['cells'].setdefault('%s/%s' % (dataset, tool), {
                    'first': [], 'noop': [], 'first_cpu': [], 'noop_cpu': [], 'failed': None})
                if tool.startswith('oci_'):
                    maker.ping(tool)()  # its ssh master connection is warm, like the floor's
                _measure(sshd, maker.runner(tool, dataset), tool, cell, run_number == 0)
                log('  run %d %-5s %-32s first %s  no-op %s%s'
                    % (run_number + 1, dataset, TOOL_LABELS[tool], _common.fmt_s(_last(cell['first'])),
                       _common.fmt_s(_last(cell['noop'])), ('  FAILED: ' + cell['failed']) if cell['failed'] else ''))
    summarise(out)
    return out


def _last(values):
    return values[-1] if values else None


def _measure(sshd, runner, tool, cell, first_run):
    root = sshd.make_webroot('bench-webroot')
    try:
        first = runner(root)
        if not first.ok:
            cell['failed'] = first.reason()
            return
        noop = runner(root)
        if not noop.ok:
            cell['failed'] = 'no-op re-run: ' + noop.reason()
            return
        if tool.startswith('oci'):
            result = task_result(noop, 'run')
            if result.get('changed') or result.get('blobs_sent'):
                cell['noop_changed'] = True
            cell['blobs_sent_first'] = task_result(first, 'run').get('blobs_sent')
        elif tool in ('copy', 'synchronize') and task_result(noop, 'run').get('changed'):
            cell['noop_changed'] = True
        if first_run:
            cell['files'] = file_count(root)
        for phase, outcome in (('first', first), ('noop', noop)):
            cell[phase].append(outcome.seconds)
            cell[phase + '_cpu'].append(outcome.cpu)
    finally:
        procs.remove_workdir(root)


def summarise(out):
    floor = _common.add_medians(out)
    out['ratios'] = {}
    out['variants'] = [tool for tool in out['tools'] if tool.startswith('oci')]
    for dataset in out['sets']:
        def get(tool, phase, dataset=dataset):
            return out['cells'].get('%s/%s' % (dataset, tool), {}).get(phase + '_median')
        entry = {}
        for variant in out['variants']:
            for phase in ('first', 'noop'):
                mine = get(variant, phase)
                beyond = None if mine is None or floor is None else mine - floor
                entry['%s_vs_synchronize_%s' % (variant, phase)] = ratio(mine, get('synchronize', phase))
                entry['%s_copy_vs_%s' % (phase, variant)] = ratio(get('copy', phase), mine)
                entry['%s_beyond_floor_%s' % (variant, phase)] = beyond
                entry['%s_beyond_floor_vs_rsync_%s' % (variant, phase)] = ratio(beyond, get('rsync', phase))
        out['ratios'][dataset] = entry
    return out
