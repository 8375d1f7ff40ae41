# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: HTTP requests and time per name when resolving many names on one host.

Run from the repository root as root (not part of the test suite)::

    .venv/bin/python -m benchmarks.resolve_requests [--families 5] [--tags 20]

It publishes FAMILIES image families of TAGS tags each on ``example.test`` (real nginx from
the test rig, https with a throwaway CA, on a private loopback address; names resolve through
a private /etc/hosts in a mount namespace, see tests/integration/discovery_hosts.py), then:

1. runs one play whose single task resolves all names with one ``oci.discovery.resolve``
   lookup call, counts the requests in nginx's access log (target: at most 1 well-known +
   FAMILIES indexes) and reports the task's time per name (ansible.posix.json durations);
2. the same with a ``loop`` over the names (one lookup per item, same worker process);
3. the core client alone in this process, cold and warm cache, without and with ``verify``;
4. with ``--reference DIR`` (a checkout of the public oci-discovery repository, whose Python
   resolver is not on PyPI), the reference resolver on the same names and site, in one process
   (``python -m oci_discovery.ref_engine_discovery --protocol https NAME...``): its requests and
   its time per name (the whole process, as the command module reports it), and whether it
   found a root for every name.

Exit status 1 when the request target is missed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import hashlib
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
sys.path.insert(0, os.path.join(REPO, 'tests'))

import conftest  # noqa: E402,F401  pylint: disable=unused-import
from rig import procs  # noqa: E402
from rig.ca import TestCAs  # noqa: E402
from rig.nginx import Nginx  # noqa: E402
from discovery_hosts import NamedSites  # noqa: E402

MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
IDX = 'application/vnd.oci.image.index.v1+json'


def sha(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def publish(sites, families, tags):
    sites.write('example.test', '/.well-known/oci-host-ref-engines', {
        'refEngines': [{'protocol': 'oci-index-template-v1', 'uri': '/oci-index/{+path}'}],
        'casEngines': [{'protocol': 'oci-cas-template-v1', 'uri': '/oci-cas/{algorithm}/{encoded:2}/{encoded}'}]})
    names = []
    for f in range(families):
        entries = []
        for t in range(tags):
            blob = json.dumps({'schemaVersion': 2, 'mediaType': MANIFEST, 'family': f, 'tag': t,
                               'config': {}, 'layers': []}).encode()
            algorithm, encoded = sha(blob).split(':')
            sites.write('example.test', '/oci-cas/%s/%s/%s' % (algorithm, encoded[:2], encoded), blob)
            entries.append({'mediaType': MANIFEST, 'digest': sha(blob), 'size': len(blob),
                            'annotations': {'org.opencontainers.image.ref.name': '%d.0' % t}})
            names.append('example.test/family%d#%d.0' % (f, t))
        sites.write('example.test', '/oci-index/family%d' % f, {'schemaVersion': 2, 'manifests': entries})
    return names


def _seconds(duration):
    parse = datetime.datetime.fromisoformat
    return (parse(duration['end'].replace('Z', '+00:00')) - parse(duration['start'].replace('Z', '+00:00'))
            ).total_seconds()


def requests_since(sites, start):
    return [line for line in sites.access_log()[start:] if '"GET ' in line]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--families', type=int, default=5)
    parser.add_argument('--tags', type=int, default=20)
    parser.add_argument('--reference', metavar='DIR',
                        help='a checkout of the oci-discovery repository: compare with its Python resolver')
    args = parser.parse_args()
    target = 1 + args.families

    cas = TestCAs.create()
    root = procs.make_workdir('bench-resolve', mode=0o755)
    servers = []

    def nginx_factory(http=None):
        server = Nginx(cert=cas.server)
        servers.append(server)
        return server.start(http=http)

    ok = True
    try:
        sites = NamedSites(nginx_factory, cas, root)
        names = publish(sites, args.families, args.tags)
        sites.start()
        count = len(names)
        print('resolving %d names of %d families on one host (example.test, https)' % (count, args.families))

        plays = {
            'one lookup call': {'name': 'all', 'ansible.builtin.set_fact': {
                'digests': "{{ query('oci.discovery.resolve', *names) }}"}},
            'loop, one lookup per item': {'name': 'all', 'loop': '{{ names }}', 'ansible.builtin.set_fact': {
                'digest': "{{ lookup('oci.discovery.resolve', item) }}"}},
        }
        for label, task in plays.items():
            start = len(sites.access_log())
            result = sites.run_playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [task],
                                          'vars': {'names': names,
                                                   'ansible_oci_discovery_ca_path': cas.cert_path}}])
            if result.failed:
                print(str(result))
                return 2
            seconds = _seconds(result.plays[0]['tasks'][0]['task']['duration'])
            made = len(requests_since(sites, start))
            ok = ok and made <= target
            print('  ansible-playbook, %-26s %3d HTTP requests (target <= %d: %s), task %.3f s, %.2f ms per name'
                  % (label + ':', made, target, 'ok' if made <= target else 'MISSED', seconds,
                     1000.0 * seconds / count))

        # The core client alone, without Ansible: in a child process started from the play, so that it
        # runs inside the mount namespace where the test names resolve.
        child = sites.run_playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'core', 'ansible.builtin.command': {'argv': [
                sys.executable, os.path.join(REPO, 'benchmarks', 'resolve_requests.py'), '--core-child',
                cas.cert_path, json.dumps(names)]}, 'register': 'core'}]}])
        if child.failed:
            print(str(child))
            return 2
        print(child.result('core')['stdout'])
        if args.reference:
            reference(sites, cas, names, os.path.abspath(args.reference), root)
    finally:
        for server in servers:
            server.remove()
        procs.remove_workdir(root)
        cas.remove()
        procs.stop_own()   # the playbooks' work directories and anything else registered by this process
    return 0 if ok else 1


def reference(sites, cas, names, checkout, root):
    """The reference resolver on the same names, in one process started from a play (names resolve there)."""
    if not os.path.isdir(os.path.join(checkout, 'oci_discovery')):
        print('  reference resolver not available (%s has no oci_discovery package)' % checkout)
        return
    empty_xdg = os.path.join(root, 'empty-xdg')
    os.makedirs(empty_xdg, exist_ok=True)
    start = len(sites.access_log())
    result = sites.run_playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'reference', 'register': 'reference', 'ansible.builtin.command': {
            'chdir': checkout,
            'argv': [sys.executable, '-m', 'oci_discovery.ref_engine_discovery', '--protocol', 'https'] + names},
         'environment': {'SSL_CERT_FILE': cas.cert_path, 'XDG_CONFIG_HOME': empty_xdg, 'XDG_CONFIG_DIRS': empty_xdg}}]}])
    if result.failed:
        print('  reference resolver failed: %s' % result)
        return
    task = result.result('reference')
    hours, minutes, seconds = task['delta'].split(':')
    seconds = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    found = json.loads(task['stdout'])
    resolved = sum(1 for name in names if found.get(name))
    made = len(requests_since(sites, start))
    print('  reference resolver (one process):  %3d HTTP requests, %.3f s, %.2f ms per name; roots found for %d of %d names'
          % (made, seconds, 1000.0 * seconds / len(names), resolved, len(names)))


def core_child(ca_path, names):
    from ansible_collections.oci.discovery.plugins.module_utils._discovery import Client
    from ansible_collections.oci.discovery.plugins.module_utils._urls import UrlFetcher
    for verify in (False, True):
        client = Client(UrlFetcher(ca_path=ca_path), xdg=False)
        for label in ('cold cache', 'warm cache'):
            before = len(client.requests)
            start = time.monotonic()
            for name in names:
                client.resolve(name, verify=verify)
            seconds = time.monotonic() - start
            print('  core client, verify=%-5s %-10s %3d HTTP requests, %.3f s, %.2f ms per name'
                  % (verify, label + ':', len(client.requests) - before, seconds, 1000.0 * seconds / len(names)))


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--core-child':
        core_child(sys.argv[2], json.loads(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
