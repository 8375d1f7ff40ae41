# -*- coding: utf-8 -*-
"""One layout published to several hosts in one play (forks): real sshd listeners on loopback, each
with a user and a web root of its own.

The controller hashes each blob once for the whole fleet (the layout's record of verified blobs,
locked while the first fork hashes); every host that can be reached ends with the same tree; a
host that fails (its sshd stopped, its disk full) is named in the play's results while the others
complete.
"""
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from rig.procs import free_port
from rig.published import served_tree
from rig.sshd import Sshd

USERS = ('ocifleet1', 'ocifleet2', 'ocifleet3')
NAME = 'example.com/fleet/app'


@pytest.fixture(scope='module')
def fleet():
    listeners = []
    try:
        for i, user in enumerate(USERS):
            listeners.append(Sshd(user=user, name='sshd-fleet%d' % (i + 1)).start())
        yield listeners
    finally:
        for listener in listeners:
            listener.stop()


def inventory(fleet, roots):
    return {'all': {'hosts': dict(('web%d' % (i + 1), dict(sshd.host_vars(), web_root=root))
                                  for i, (sshd, root) in enumerate(zip(fleet, roots)))}}


PLAY = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
    {'name': 'publish', 'oci.discovery.publish_layout': {'src': '{{ layout }}', 'name': NAME, 'root': '{{ web_root }}'}},
]}]


def hashed_counts(result):
    return [int(n) for n in re.findall(r'validating the layout and the options \((\d+) blob\(s\) hashed', result.stdout)]


@pytest.mark.slow
def test_one_layout_to_three_hosts_one_down_one_full(fleet, layout_copy, run_playbook):
    layout = layout_copy('big')
    time.sleep(1.1)         # the copy's files are new: a record takes them once they are a second old
    roots = [sshd.make_webroot('fleet-root') for sshd in fleet]
    full = roots[2]
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs', full], check=True)
    try:
        os.chown(full, fleet[2].uid, fleet[2].gid)
        fleet[1].stop()                                   # web2: its sshd is down
        env = {'ANSIBLE_FORKS': '3'}
        first = run_playbook(PLAY, inventory=inventory(fleet, roots), extra_vars={'layout': layout}, env=env,
                             verbosity=3)
        assert first.rc != 0
        results = first.task('publish')
        assert results['web1']['changed'] and not results['web1'].get('failed'), first
        assert results['web2'].get('unreachable'), first
        assert results['web3'].get('failed') and 'No space left on device' in results['web3']['msg'], first
        assert first.stats['web1']['failures'] == first.stats['web1']['unreachable'] == 0
        assert first.stats['web2']['unreachable'] == 1 and first.stats['web3']['failures'] == 1
        assert 'web2' in first.stdout and 'web3' in first.stdout
        # No host had a blob: each verifies what it receives, so the controller hashed nothing (web2's task
        # validated the layout too, then met its sshd down at the probe); web1's verified blobs are recorded
        # for the next run.
        blobs = results['web1']['blobs_sent']
        assert hashed_counts(first) == [0, 0, 0], hashed_counts(first)
        # web3's commit stopped at the full disk: nothing of the family's index is visible there.
        assert not os.path.exists(os.path.join(full, 'oci-index'))
    finally:
        subprocess.run(['umount', full], check=True)
    # web2 back, web3 with room: the next run completes the fleet, and the trees are identical.
    fleet[1].start()
    again = run_playbook(PLAY, inventory=inventory(fleet, roots), extra_vars={'layout': layout},
                         env={'ANSIBLE_FORKS': '3'}, verbosity=3)
    assert not again.failed, again
    results = again.task('publish')
    assert not results['web1']['changed']
    assert results['web2']['blobs_sent'] == results['web3']['blobs_sent'] == blobs
    assert hashed_counts(again) == [0, 0, 0]
    trees = [served_tree(root) for root in roots]
    assert trees[0] and trees[0] == trees[1] == trees[2]
    for sshd, root in zip(fleet, roots):
        assert all(os.stat(os.path.join(dirpath, name)).st_uid == sshd.uid
                   for dirpath, dummy, names in os.walk(root) for name in names)


def _stop_nginx(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_rolling_publish_with_the_role_one_host_at_a_time(fleet, layouts, run_playbook):
    hosts = fleet[:2]
    for sshd in hosts:
        if sshd.service is None:
            sshd.start()
    inventory = {'all': {'hosts': {}}}
    pid_files, ports = [], []
    for i, sshd in enumerate(hosts):
        prefix = os.path.join(sshd.make_webroot('fleet-nginx'), 'nginx')
        port = free_port()
        ports.append(port)
        pid_files.append(os.path.join(prefix, 'logs', 'nginx.pid'))
        inventory['all']['hosts']['web%d' % (i + 1)] = dict(
            sshd.host_vars(), nginx_publisher_prefix=prefix, nginx_publisher_listen_http=['127.0.0.1:%d' % port],
            nginx_publisher_listen_https=[],
            nginx_publisher_sites=[{'server_name': 'localhost', 'root': sshd.make_webroot('fleet-site'),
                                    'images': [{'name': 'localhost/app', 'src': layouts.family}]}])
    extra = {'provision_publisher_hosts': 'all', 'provision_publisher_become': False,
             'nginx_publisher_install': False, 'provision_publisher_serial': 1}
    try:
        result = run_playbook("- ansible.builtin.import_playbook: oci.discovery.provision_publisher\n",
                              inventory=inventory, extra_vars=extra)
        assert not result.failed, result
        batches = [sorted(set(host for task in play['tasks'] for host in task['hosts'])) for play in result.plays]
        assert batches == [['web1'], ['web2']]          # one host at a time
        bodies = []
        for port in ports:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    'http://127.0.0.1:%d/oci-index/app' % port, timeout=10) as response:
                assert response.status == 200
                bodies.append(response.read())
        # the same entries (their casEngines name each host's own port)
        digests = [[entry['digest'] for entry in json.loads(body)['manifests']] for body in bodies]
        assert digests[0] and digests[0] == digests[1]
        again = run_playbook("- ansible.builtin.import_playbook: oci.discovery.provision_publisher\n",
                             inventory=inventory, extra_vars=extra)
        assert not again.failed and again.changed_count == 0, again
    finally:
        for pid_file in pid_files:
            _stop_nginx(pid_file)
