# -*- coding: utf-8 -*-
"""oci.discovery.publish_layout and oci.discovery.ref_engines through ansible-playbook.

Real connections (ssh to the rig's sshd on loopback, and local), real layouts
(umoci-made, from the `layouts` fixture), sites served by real nginx with the
media types of DISCOVERY.md section 6; every published blob is fetched back
through the CAS template and checked against its digest.
"""
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import uritemplate
import yaml

from rig import layouts as rig_layouts
from rig import procs
from rig.ansible import ANSIBLE_PLAYBOOK, ansible_env, local_inventory
from rig.layouts import BROKEN_KINDS, MISSING_TAG, REF_NAME, reachable, read_index
from rig.nginx import server
from rig.published import site_config

MT_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
MT_REF_ENGINES = 'application/vnd.oci.ref-engines.v1+json'
DOCUMENT_TYPES = (MT_INDEX, 'application/vnd.docker.distribution.manifest.list.v2+json',
                  MT_MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json')
STATE_DIR = '.oci-discovery'


# An opener of our own: urllib's global one keeps whatever proxy the environment had when it
# was first used (other tests set one), and loopback servers must be reached directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url):
    with _OPENER.open(url, timeout=20) as resp:
        return resp.status, resp.headers, resp.read()


def fetch_json(url, media_type):
    status, headers, body = fetch(url)
    assert headers['Content-Type'] == media_type + '; charset=utf-8', url
    return json.loads(body.decode('utf-8'))


def name_variables(name, fragment=''):
    host, path = name.split('/', 1)
    return {'name': name + ('#' + fragment if fragment else ''), 'host': host, 'path': path, 'fragment': fragment}


def resolve_and_fetch_all(base_url, name, tag):
    """Discovery as a consumer does it (well-known -> index template -> entries -> CAS template),
    fetching every blob reachable from the tag and checking its size and digest.
    Returns {digest: bytes} of what was fetched."""
    well_known = fetch_json(base_url + '/.well-known/oci-host-ref-engines', MT_REF_ENGINES)
    engines = [e for e in well_known['refEngines'] if e['protocol'] == 'oci-index-template-v1']
    variables = name_variables(name, tag)
    index_url = uritemplate.expand(engines[0]['uri'], variables)
    index = fetch_json(index_url, MT_INDEX)
    roots = [e for e in index['manifests'] if (e.get('annotations') or {}).get(REF_NAME) == tag]
    assert roots, 'tag %r not in %s' % (tag, index_url)
    fetched = {}
    for root in roots:
        cas = [e['uri'] for e in root.get('casEngines', []) + well_known.get('casEngines', [])
               if e['protocol'] == 'oci-cas-template-v1']
        stack = [root]
        while stack:
            desc = stack.pop()
            if desc['digest'] in fetched:
                continue
            algorithm, encoded = desc['digest'].split(':', 1)
            variables = dict(name_variables(name, tag), digest=desc['digest'], algorithm=algorithm, encoded=encoded)
            url = uritemplate.expand(cas[0], variables)
            status, headers, body = fetch(url)
            assert headers['Content-Type'] == 'application/octet-stream'
            assert 'immutable' in headers['Cache-Control']
            assert len(body) == desc['size'] and hashlib.new(algorithm, body).hexdigest() == encoded, url
            fetched[desc['digest']] = body
            if desc['mediaType'] in DOCUMENT_TYPES:
                doc = json.loads(body)
                stack.extend(doc.get('manifests') or [doc['config']] + doc['layers'])
    return fetched


def tree_state(root):
    """{relative path: (mode, sha256 or 'dir')} of everything under root, private state included."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                content = 'dir'
            else:
                with open(path, 'rb') as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            state[os.path.relpath(path, root)] = (stat.S_IMODE(st.st_mode), st.st_uid, content)
    return state


def layout_tags(layout):
    tags = []
    for entry in read_index(layout)['manifests']:
        tag = (entry.get('annotations') or {}).get(REF_NAME)
        if tag is not None and tag not in tags:
            tags.append(tag)
    return tags


def _tag_roots(layout, tags):
    return [e for e in read_index(layout)['manifests'] if (e.get('annotations') or {}).get(REF_NAME) in tags]


def layout_blobs(layout, tags):
    return [{'digest': digest, 'size': size} for digest, size in sorted(reachable(layout, _tag_roots(layout, tags)).items())]


def view_manifest_files(layout, tags):
    """The registry view's file names by digest for the tags: every manifest and index they reach."""
    extensions = {MT_MANIFEST: 'oci-manifest', MT_INDEX: 'oci-index'}
    return set('%s.%s' % (digest, extensions[desc['mediaType']])
               for digest, desc in rig_layouts.reachable_descriptors(layout, _tag_roots(layout, tags)).items()
               if desc['mediaType'] in extensions)


def publish_task(task_name='publish', **args):
    return {'name': task_name, 'oci.discovery.publish_layout': args}


def play(*tasks):
    return [{'hosts': 'all', 'gather_facts': False, 'tasks': list(tasks)}]


@pytest.fixture(params=['ssh', 'local'])
def target(request, public_tmp_path):
    """(inventory, site root) over a real ssh connection or the local one."""
    if request.param == 'ssh':
        sshd = request.getfixturevalue('sshd')
        return sshd.inventory(), sshd.make_webroot()
    return local_inventory(), public_tmp_path


# --------------------------------------------------------------------------- the main path

@pytest.mark.parametrize('site_layout', ['cas_bucket', 'directories'])
def test_publish_serve_resolve_and_rerun(target, site_layout, layouts, nginx_factory, run_playbook):
    inventory, root = target
    ngx = nginx_factory([site_config(root)])
    base_url = ngx.url('/').rstrip('/')
    name = 'example.com/team/app'
    tags = layout_tags(layouts.family)
    blobs = layout_blobs(layouts.family, tags)
    args = dict(src=layouts.family, name=name, root=root, site_layout=site_layout, base_url=base_url)

    checked = run_playbook(play(publish_task(**args)), inventory=inventory, check=True, diff=True)
    assert not checked.failed, checked
    would = checked.result('publish')
    assert would['changed'] and would['tags_added'] == tags
    assert would['blobs_sent'] == len(blobs) and would['bytes_sent'] == sum(b['size'] for b in blobs)
    assert 'to send' in would['diff'][1]['prepared']
    assert all(('%s sha256:' % tag) in would['diff'][0]['after'] for tag in tags)
    assert os.listdir(root) == []          # check mode wrote nothing

    result = run_playbook(play(publish_task(**args),
                               {'name': 'well-known', 'oci.discovery.ref_engines': {
                                   'root': root, 'site_layout': site_layout, 'base_url': base_url}}),
                          inventory=inventory, diff=True)
    assert not result.failed, result
    done = result.result('publish')
    assert done['changed'] and done['tags_added'] == tags and done['blobs_sent'] == len(blobs)
    assert done['blobs_present'] == 0
    assert done['index_url'].startswith(base_url + '/')
    assert result.result('well-known')['changed']

    # Every file served is world-readable, every directory traversable (nginx runs as nobody).
    for dirpath, dirnames, filenames in os.walk(root):
        if STATE_DIR in dirnames:
            dirnames.remove(STATE_DIR)
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o755
        for f in filenames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o644

    # A consumer resolves every tag and fetches every blob through the CAS template.
    fetched = {}
    for tag in tags:
        fetched.update(resolve_and_fetch_all(base_url, name, tag))
        entries = [e for e in fetch_json(done['index_url'], MT_INDEX)['manifests']
                   if e['annotations'][REF_NAME] == tag]
        assert [e['digest'] for e in entries] == done['digests'][tag]
    assert sorted(fetched) == sorted(b['digest'] for b in blobs)
    # {path} expands to team%2Fapp with uritemplate; the literal form is served too.
    assert fetch(done['index_url'].replace('team/app', 'team%2Fapp'))[0] == 200
    # The private state is not served.
    with pytest.raises(urllib.error.HTTPError):
        fetch(base_url + '/' + STATE_DIR + '/locks/site.lock')

    before = tree_state(root)
    again = run_playbook(play(publish_task(**args)), inventory=inventory, diff=True)
    assert not again.failed, again
    second = again.result('publish')
    assert not second['changed'] and second['blobs_sent'] == 0 and second['bytes_sent'] == 0
    assert second['tags_unchanged'] == tags and second['blobs_present'] == len(blobs)
    after = tree_state(root)
    assert {k: v for k, v in after.items() if not k.startswith(STATE_DIR)} == \
        {k: v for k, v in before.items() if not k.startswith(STATE_DIR)}


def test_tags_families_absent_and_prune(sshd, layouts, nginx_factory, run_playbook):
    inventory, root = sshd.inventory(), sshd.make_webroot()
    ngx = nginx_factory([site_config(root)])
    base_url = ngx.url('/').rstrip('/')
    common = dict(root=root, base_url=base_url)
    result = run_playbook(play(
        publish_task('first', src=layouts.family, name='example.com/app', tags=['1.0'], **common),
        publish_task('second', src=layouts.family, name='example.com/app', tags=['1.1', {'src': '2.0', 'dest': 'stable'}],
                     **common),
        publish_task('other family', src=layouts.family, name='example.com/other', tags=['1.0'], **common),
        {'name': 'well-known', 'oci.discovery.ref_engines': {'root': root, 'base_url': base_url}},
    ), inventory=inventory)
    assert not result.failed, result
    assert result.result('first')['tags_added'] == ['1.0']
    second = result.result('second')
    assert second['tags_added'] == ['1.1', 'stable'] and second['blobs_present'] > 0   # the shared base layer
    other = result.result('other family')
    assert other['tags_added'] == ['1.0'] and other['blobs_sent'] == 0 and other['bytes_sent'] == 0
    index = fetch_json(base_url + '/oci-index/app', MT_INDEX)
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['1.0', '1.1', 'stable']
    for tag in ('1.0', '1.1', 'stable'):
        resolve_and_fetch_all(base_url, 'example.com/app', tag)
    resolve_and_fetch_all(base_url, 'example.com/other', '1.0')
    stable = layout_blobs(layouts.family, ['2.0'])
    kept = set(b['digest'] for b in layout_blobs(layouts.family, ['1.0', '1.1']))
    only_stable = [b for b in stable if b['digest'] not in kept]
    assert only_stable

    removed = run_playbook(play(
        publish_task('remove', name='example.com/app', tags=['stable', '1.0'], state='absent', prune=True, **common),
    ), inventory=inventory, diff=True)
    assert not removed.failed, removed
    r = removed.result('remove')
    assert r['tags_removed'] == ['stable', '1.0'] and r['changed']
    # 1.0 is still published by example.com/other: only what "stable" alone used is pruned
    assert r['blobs_pruned'] == len(only_stable) and r['bytes_pruned'] == sum(b['size'] for b in only_stable)
    index = fetch_json(base_url + '/oci-index/app', MT_INDEX)
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['1.1']
    resolve_and_fetch_all(base_url, 'example.com/app', '1.1')
    resolve_and_fetch_all(base_url, 'example.com/other', '1.0')
    for blob in only_stable:
        algorithm, encoded = blob['digest'].split(':')
        assert not os.path.exists(os.path.join(root, 'oci-cas', algorithm, encoded[:2], encoded))
    # The registry view of app keeps the manifest files by digest that its index still reaches: 1.1's alone.
    reached = view_manifest_files(layouts.family, ['1.1'])
    by_digest = set(n for n in os.listdir(os.path.join(root, 'v2', 'app', 'manifests')) if ':' in n)
    assert by_digest == reached and reached, by_digest
    assert r['registry_objects_pruned'] == len(view_manifest_files(layouts.family, ['1.0', '1.1', '2.0']) - reached), r

    unchanged = run_playbook(play(
        publish_task('remove again', name='example.com/app', tags=['stable'], state='absent', prune=True, **common),
    ), inventory=inventory)
    assert not unchanged.failed, unchanged
    assert not unchanged.result('remove again')['changed']


def test_multiplatform_nested_indexes_as_directories(sshd, layouts, nginx_factory, run_playbook):
    inventory, root = sshd.inventory(), sshd.make_webroot()
    ngx = nginx_factory([site_config(root)])
    base_url = ngx.url('/').rstrip('/')
    result = run_playbook(play(
        publish_task(src=layouts.multiplatform, name='example.com/multi', root=root, base_url=base_url,
                     site_layout='directories'),
        {'name': 'well-known',
         'oci.discovery.ref_engines': {'root': root, 'base_url': base_url, 'site_layout': 'directories'}},
    ), inventory=inventory)
    assert not result.failed, result
    tags = layout_tags(layouts.multiplatform)
    fetched = {}
    for tag in tags:
        fetched.update(resolve_and_fetch_all(base_url, 'example.com/multi', tag))
    assert sorted(fetched) == sorted(b['digest'] for b in layout_blobs(layouts.multiplatform, tags))
    served = os.path.join(root, 'oci-image', 'multi')
    assert json.load(open(os.path.join(served, 'oci-layout'))) == {'imageLayoutVersion': '1.0.0'}
    assert layout_tags(served) == tags


@pytest.mark.parametrize('site_layout', ['cas_bucket', 'directories'])
def test_lookup_resolves_what_was_published(site_layout, sshd, layouts, nginx_factory, ca, run_playbook, tmp_path):
    """The collection's resolve lookup, over https with the test CA, finds every published tag of
    a nested family and a multi-platform image, and verifies what it returns."""
    root = sshd.make_webroot()
    ngx = nginx_factory([server(site_config(root), tls=True)])
    base_url = 'https://localhost:%d' % ngx.tls_port
    common = dict(root=root, base_url=base_url, site_layout=site_layout)
    published = run_playbook(play(
        publish_task('family', src=layouts.family, name='localhost/team/app', **common),
        publish_task('multi', src=layouts.multiplatform, name='localhost/team/multi', **common),
        {'name': 'well-known', 'oci.discovery.ref_engines': dict(common)},
    ), inventory=sshd.inventory())
    assert not published.failed, published
    expected = {}
    for task, family in (('family', 'localhost/team/app'), ('multi', 'localhost/team/multi')):
        for tag, digests in published.result(task)['digests'].items():
            expected['%s#%s' % (family, tag)] = digests
    arm = layout_tags(layouts.multiplatform)
    arm_tag = [t for t in arm if 'arm64' in t][0]
    arm_digest = [e['digest'] for e in read_index(layouts.multiplatform)['manifests']
                  if e['annotations'].get(REF_NAME) == arm_tag][0]
    xdg = str(tmp_path / 'xdg')
    os.makedirs(xdg)
    options = "port=%d, ca_path='%s', verify=true" % (ngx.tls_port, ca.cert_path)
    tasks = []
    for i, name in enumerate(sorted(expected)):
        tasks.append({'name': 'resolve %d' % i, 'ansible.builtin.set_fact': {
            'found': "{{ query('oci.discovery.resolve', '%s', %s) }}" % (name, options)}})
    tasks.append({'name': 'platform', 'ansible.builtin.set_fact': {
        'found': "{{ query('oci.discovery.resolve', 'localhost/team/multi#1.0', platform='linux/arm64/v8', %s) }}"
                 % options}})
    resolved = run_playbook([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}],
                            env={'XDG_CONFIG_HOME': xdg, 'XDG_CONFIG_DIRS': xdg})
    assert not resolved.failed, resolved
    for i, name in enumerate(sorted(expected)):
        assert resolved.result('resolve %d' % i)['ansible_facts']['found'] == expected[name], name
    assert resolved.result('platform')['ansible_facts']['found'] == [arm_digest]


def test_become_an_unprivileged_user(sshd, layouts, run_playbook):
    """Local connection as root, become the site's owner: the archive must be readable by it,
    and every file written is the become user's."""
    root = sshd.make_webroot()       # owned by the test user, not writable by others
    task = dict(publish_task(src=layouts.family, name='example.com/app', root=root, tags=['1.0']),
                become=True, become_user=sshd.user, become_method='sudo')
    result = run_playbook(play(task), inventory=local_inventory(ansible_python_interpreter='/usr/bin/python3'))
    assert not result.failed, result
    assert result.result('publish')['blobs_sent'] == len(layout_blobs(layouts.family, ['1.0']))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            assert os.lstat(os.path.join(dirpath, name)).st_uid == sshd.uid, name
    again = run_playbook(play(task), inventory=local_inventory(ansible_python_interpreter='/usr/bin/python3'))
    assert not again.failed and not again.result('publish')['changed'], again


# --------------------------------------------------------------------------- how the target phases run

def served_state(root):
    return dict((path, state) for path, state in tree_state(root).items() if not path.startswith(STATE_DIR))


@pytest.mark.parametrize('connection', ['ssh', 'local'])
def test_direct_runs_and_module_runs_write_the_same_site(connection, layouts, request, public_tmp_path, run_playbook):
    """By default the target phases run directly (the target's Python fed on stdin); with
    ANSIBLE_KEEP_REMOTE_FILES (keep module files for debugging) they are module runs. Same site."""
    if connection == 'ssh':
        sshd = request.getfixturevalue('sshd')
        inventory, roots = sshd.inventory(), [sshd.make_webroot(), sshd.make_webroot()]
    else:
        inventory, roots = local_inventory(), [os.path.join(public_tmp_path, 'direct'), os.path.join(public_tmp_path, 'modules')]
    runs = {}
    for root, env, how in ((roots[0], None, 'direct'), (roots[1], {'ANSIBLE_KEEP_REMOTE_FILES': '1'}, 'module run')):
        task = publish_task(src=layouts.family, name='example.com/app', root=root, tags=['1.0', '2.0-rc/1'])
        first = run_playbook(play(task), inventory=inventory, env=env, verbosity=3)
        assert not first.failed, first
        assert 'probing the site (%s;' % how in first.stdout and 'committing (%s;' % how in first.stdout, first.stdout
        assert ('AnsiballZ_publish_layout' in first.stdout) == (how == 'module run')
        again = run_playbook(play(task), inventory=inventory, env=env)
        assert not again.failed and not again.result('publish')['changed'], again
        runs[how] = first.result('publish')
    for key in ('blobs_sent', 'bytes_sent', 'digests', 'tags_added'):
        assert runs['direct'][key] == runs['module run'][key], key
    assert runs['direct']['blobs_sent'] == len(layout_blobs(layouts.family, ['1.0', '2.0-rc/1']))
    assert served_state(roots[0]) == served_state(roots[1])


def test_sending_layers_through_ssh_compression_is_warned_about(sshd, layouts, run_playbook):
    """Ansible's default ssh_args have -C: a big first publish says how to avoid recompressing layers."""
    compressed = []
    for host_vars in ({}, {'ansible_ssh_args': '-o ControlMaster=auto -o ControlPersist=60s'}):
        task = publish_task(src=layouts.big, name='example.com/app', root=sshd.make_webroot())
        first = run_playbook(play(task), inventory=sshd.inventory(**host_vars))
        again = run_playbook(play(task), inventory=sshd.inventory(**host_vars))
        assert not first.failed and not again.failed, (first, again)
        assert first.result('publish')['bytes_sent'] > 16 * 1024 * 1024
        assert not again.result('publish').get('warnings')          # nothing sent, nothing to say
        compressed.append([w for w in first.result('publish').get('warnings') or [] if 'compression' in w])
    assert len(compressed[0]) == 1 and 'ansible_ssh_args without -C' in compressed[0][0], compressed
    assert compressed[1] == [], compressed


def test_direct_run_errors_are_named_and_interpreter_discovery_is_reported(sshd, layouts, run_playbook):
    """Without ansible_python_interpreter, the direct runs use the interpreter Ansible discovers
    (reported back as a fact, as a module run does); an error on the target names the file."""
    inventory = sshd.inventory()
    del inventory['all']['hosts']['managed']['ansible_python_interpreter']
    root = sshd.make_webroot()
    task = publish_task(src=layouts.family, name='example.com/app', root=root, tags=['1.0'])
    result = run_playbook(play(task), inventory=inventory)
    assert not result.failed, result
    assert result.result('publish')['ansible_facts']['discovered_interpreter_python'].startswith('/usr/bin/python')
    # A file where the site needs a directory: the commit fails on the target, naming it.
    blocked = sshd.make_webroot()
    with open(os.path.join(blocked, 'oci-cas'), 'w') as handle:
        handle.write('not a directory\n')
    os.chmod(os.path.join(blocked, 'oci-cas'), 0o644)
    before = tree_state(blocked)
    failed = run_playbook(play(dict(task, **{'oci.discovery.publish_layout': dict(
        task['oci.discovery.publish_layout'], root=blocked)})), inventory=sshd.inventory())
    outcome = failed.result('publish')
    assert outcome.get('failed'), failed
    assert os.path.join(blocked, 'oci-cas') in outcome['msg'], outcome['msg']
    assert 'Traceback' not in json.dumps(outcome)
    assert served_state(blocked) == dict((k, v) for k, v in before.items() if not k.startswith(STATE_DIR))
    # An interpreter that is not there: the failure names it, and the site is untouched.
    missing = run_playbook(play(dict(task, **{'oci.discovery.publish_layout': dict(
        task['oci.discovery.publish_layout'], root=blocked)})),
        inventory=sshd.inventory(ansible_python_interpreter='/nonexistent/python3'))
    outcome = missing.result('publish')
    assert outcome.get('failed') and '/nonexistent/python3' in outcome['msg'], outcome
    assert served_state(blocked) == dict((k, v) for k, v in before.items() if not k.startswith(STATE_DIR))


# --------------------------------------------------------------------------- bad input

def _with_ref_name(layout, tag):
    """The layout with its first index.json entry's ref name replaced by `tag`."""
    index = read_index(layout)
    index['manifests'][0]['annotations'][REF_NAME] = tag
    os.unlink(os.path.join(layout, 'index.json'))      # a copy may share the cached layout's inode
    with open(os.path.join(layout, 'index.json'), 'w') as f:
        json.dump(index, f)
    return layout


def test_bad_input_changes_nothing(sshd, layouts, broken_layout, layout_copy, run_playbook):
    inventory, root = sshd.inventory(), sshd.make_webroot()
    first = run_playbook(play(publish_task(src=layouts.family, name='example.com/app', root=root, tags=['1.0'])),
                         inventory=inventory)
    assert not first.failed, first
    os.makedirs(os.path.join(root, 'oci-index', 'team'))
    with open(os.path.join(root, 'oci-index', 'team', 'garbage'), 'wb') as f:
        f.write(b'<html>502 Bad Gateway</html>')
    os.chown(os.path.join(root, 'oci-index', 'team'), sshd.uid, sshd.gid)
    before = tree_state(root)

    cases = []    # (task name, task args, a substring the error must contain)
    for kind in sorted(BROKEN_KINDS):
        broken = broken_layout(kind)
        cases.append(('broken ' + kind, dict(src=broken['path'], name='example.com/app'), broken['expect']))
    cases += [
        ('missing tag', dict(src=layouts.family, name='example.com/app', tags=[MISSING_TAG]), MISSING_TAG),
        ('name escaping the root', dict(src=layouts.family, name='example.com/../../etc'), "'..' segment"),
        ('name with a dot segment', dict(src=layouts.family, name='example.com/a/./b'), "'.' segment"),
        ('tag with a control character', dict(src=layouts.family, name='example.com/app',
                                              tags=[{'src': '1.0', 'dest': 'bad\ntag'}]), 'control character'),
        ('invalid existing index', dict(src=layouts.family, name='example.com/team/garbage'),
         'oci-index/team/garbage'),
        ('template for another site', dict(src=layouts.family, name='example.com/app',
                                           cas_template='https://cdn.example.net/oci-cas/{algorithm}/{encoded:2}/{encoded}'),
         'does not match the site'),
        ('index template for another site', dict(src=layouts.family, name='example.com/app',
                                                 base_url='https://example.com:8443',
                                                 index_template='https://{host}/oci-index/{path}'),
         'does not match the site'),
        ('missing layout', dict(src='/nonexistent/layout', name='example.com/app'), '/nonexistent/layout'),
        ('unknown owner', dict(src=layouts.family, name='example.com/app', tags=['1.1'],
                               owner='no-such-user-anywhere'), 'no-such-user-anywhere'),
        ('absent without tags', dict(name='example.com/app', state='absent'), 'state=absent needs'),
        # issue 16: layout tags are checked like given ones; IP-literal hosts; one family per index key
        ('layout tag with a newline', dict(src=_with_ref_name(layout_copy('family'), '1.0\nX-Injected: 1'),
                                           name='example.com/app'), 'control character'),
        ('layout tag of 400 characters', dict(src=_with_ref_name(layout_copy('family'), 't' * 400),
                                              name='example.com/app'), 'longer than 255 characters'),
        ('IP-literal host without base_url', dict(src=layouts.family, name='[::1]/app'),
         "name '[::1]/app': the host is an IP literal"),
        ('another host, same index key', dict(src=layouts.family, name='other.example.com/app', tags=['1.1']),
         'oci-index/app is the index of example.com/app, not of other.example.com/app'),
        ('another host, removing tags', dict(name='other.example.com/app', tags=['1.0'], state='absent'),
         'oci-index/app is the index of example.com/app, not of other.example.com/app'),
        # issue 12: the registry site layout is for S3 buckets
        ('registry site layout in a web root', dict(src=layouts.family, name='example.com/app', site_layout='registry'),
         'site_layout registry is for S3 buckets'),
    ]
    tasks = []
    for task_name, args, dummy in cases:
        args = dict(args, root=root)
        tasks.append(dict(publish_task(task_name, **args), ignore_errors=True))
    result = run_playbook(play(*tasks), inventory=inventory, diff=True)
    for task_name, args, expect in cases:
        outcome = result.result(task_name)
        assert outcome.get('failed'), (task_name, outcome)
        assert expect in outcome['msg'], (task_name, expect, outcome['msg'])
        assert 'Traceback' not in outcome['msg'] and 'module_stderr' not in outcome, (task_name, outcome)
    assert tree_state(root) == before

    forced = run_playbook(play(publish_task(src=layouts.family, name='example.com/team/garbage', root=root,
                                            tags=['1.0'], force=True)), inventory=inventory)
    assert not forced.failed, forced
    assert 'oci-index/team/garbage' in forced.result('publish')['replaced_invalid_index']


# --------------------------------------------------------------------------- concurrency

def test_concurrent_publishes_of_one_family(sshd, layouts, run_playbook):
    inventory, root = sshd.inventory(), sshd.make_webroot()
    tags = layout_tags(layouts.family)
    results = {}

    def publish(tag):
        results[tag] = run_playbook(play(publish_task(src=layouts.family, name='example.com/app', root=root,
                                                      tags=[tag])), inventory=inventory)

    threads = [threading.Thread(target=publish, args=(tag,)) for tag in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag in tags:
        assert not results[tag].failed, results[tag]
        assert results[tag].result('publish')['tags_added'] == [tag]
    with open(os.path.join(root, 'oci-index', 'app'), 'rb') as f:
        index = json.load(f)
    assert sorted(e['annotations'][REF_NAME] for e in index['manifests']) == sorted(tags)
    assert os.listdir(os.path.join(root, STATE_DIR, 'tmp')) == []


# --------------------------------------------------------------------------- interruption

class ServedTreeWatcher(threading.Thread):
    """Polls a CAS-bucket site while a publish runs: every blob file visible under the served
    paths must be complete (its digest is its name), and every index entry must point at
    blobs that are already there, with their own children (blobs before manifests before
    indexes)."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.problems = []
        self.checked = {}
        self.rounds = 0

    def blob_path(self, digest):
        algorithm, encoded = digest.split(':')
        return os.path.join(self.root, 'oci-cas', algorithm, encoded[:2], encoded)

    def check_blob_file(self, path):
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key in self.checked:
            return
        algorithm = os.path.basename(os.path.dirname(os.path.dirname(path)))
        with open(path, 'rb') as f:
            actual = hashlib.new(algorithm, f.read()).hexdigest()
        if actual != os.path.basename(path):
            self.problems.append('partial or wrong blob visible: %s' % path)
        self.checked[key] = True

    def check(self):
        cas = os.path.join(self.root, 'oci-cas')
        for dirpath, dirnames, filenames in os.walk(cas):
            for name in filenames:
                try:
                    self.check_blob_file(os.path.join(dirpath, name))
                except FileNotFoundError:
                    pass
        index_path = os.path.join(self.root, 'oci-index', 'app')
        try:
            with open(index_path, 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            return
        try:
            index = json.loads(data)
        except ValueError:
            self.problems.append('partial index visible: %r' % data[:100])
            return
        stack = list(index['manifests'])
        while stack:
            desc = stack.pop()
            path = self.blob_path(desc['digest'])
            if not os.path.exists(path):
                self.problems.append('index refers to %s, not there yet' % desc['digest'])
                continue
            if desc['mediaType'] in DOCUMENT_TYPES:
                with open(path, 'rb') as f:
                    doc = json.load(f)
                stack.extend(doc.get('manifests') or [doc['config']] + doc['layers'])

    def run(self):
        while not self.stop.is_set():
            self.check()
            self.rounds += 1
            time.sleep(0.02)
        self.check()


def start_playbook(plays, inventory, workdir):
    """ansible-playbook in its own process group (so that the test can kill the whole group)."""
    path = os.path.join(workdir, 'playbook.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(plays, f, sort_keys=False)
    inventory_path = os.path.join(workdir, 'inventory.yml')
    with open(inventory_path, 'w') as f:
        yaml.safe_dump(inventory, f, sort_keys=False)
    proc = subprocess.Popen([ANSIBLE_PLAYBOOK, '-i', inventory_path, path], env=ansible_env(), cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    procs._KNOWN_CHILDREN.add(proc.pid)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize('connection', ['local', 'ssh'])
def test_killed_publish_leaves_no_partial_file(connection, layouts, request, tmp_path, run_playbook):
    if connection == 'ssh':
        sshd = request.getfixturevalue('sshd')
        inventory, root = sshd.inventory(), sshd.make_webroot()
    else:
        inventory, root = local_inventory(), request.getfixturevalue('public_tmp_path')
    task = publish_task(src=layouts.big, name='example.com/app', root=root)
    watcher = ServedTreeWatcher(root)
    watcher.start()
    rng = random.Random()
    delays = []
    try:
        for attempt in range(3):
            delay = rng.uniform(0.5, 4.0)
            delays.append(round(delay, 2))
            workdir = str(tmp_path / ('attempt%d' % attempt))
            os.makedirs(workdir)
            proc = start_playbook(play(task), inventory, workdir)
            try:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                proc.wait()
                procs._KNOWN_CHILDREN.discard(proc.pid)
        rerun = run_playbook(play(task), inventory=inventory)
    finally:
        watcher.stop.set()
        watcher.join(60)
    assert watcher.problems == [], (delays, watcher.problems[:5])
    assert watcher.rounds > 10
    assert not rerun.failed, rerun
    tags = layout_tags(layouts.big)
    with open(os.path.join(root, 'oci-index', 'app'), 'rb') as f:
        index = json.load(f)
    assert sorted(set(e['annotations'][REF_NAME] for e in index['manifests'])) == sorted(tags)
    for blob in layout_blobs(layouts.big, tags):
        watcher.check_blob_file(watcher.blob_path(blob['digest']))
    assert watcher.problems == []
    final = run_playbook(play(task), inventory=inventory)
    assert not final.failed and not final.result('publish')['changed'], final


def test_how_blobs_travel_stdin_files_and_archives_or_none_on_a_local_connection(
        sshd, layouts, layout_copy, public_tmp_path, run_playbook, tmp_path):
    """Over ssh, blobs of at most 32 MiB in all (the big layout: 30 MiB layer and 199 small blobs) go in one
    archive on the commit's standard input: nothing in the host's temp directory. More than that (an 8 MiB
    layer added) and each large blob is sent by itself from the layout's file, the rest in one archive. On a
    local connection nothing is transferred (the commit reads the layout). Same served tree; nothing is
    left in the controller's temp directory."""
    local_tmp = tmp_path / 'controller-tmp'
    local_tmp.mkdir()
    env = {'ANSIBLE_LOCAL_TEMP': str(local_tmp)}
    blobs = layout_blobs(layouts.big, layout_tags(layouts.big))
    assert sum(b['size'] for b in blobs) <= 32 * 1024 * 1024
    assert len([b for b in blobs if b['size'] >= 8 * 1024 * 1024]) == 1
    wider = layout_copy('big')
    huge = read_index(wider)['manifests'][0]
    manifest = rig_layouts.read_json_blob(wider, huge['digest'])
    manifest['layers'].append(rig_layouts.descriptor(wider, manifest['layers'][0]['mediaType'],
                                                     os.urandom(8 * 1024 * 1024)))
    rig_layouts.set_tag(wider, 'wider', rig_layouts.descriptor(wider, MT_MANIFEST, manifest))
    rig_layouts.make_world_readable(wider)
    roots, steps, made_tmp = {}, {}, {}
    for case, src, inventory, root in (
            ('ssh', layouts.big, sshd.inventory(), sshd.make_webroot()),
            ('ssh, more than 32 MiB', wider, sshd.inventory(), sshd.make_webroot()),
            ('local', layouts.big, local_inventory(), os.path.join(public_tmp_path, 'local'))):
        task = publish_task(src=src, name='example.com/app', root=root)
        first = run_playbook(play(task), inventory=inventory, env=env, verbosity=3)
        assert not first.failed, first
        assert first.result('publish')['blobs_sent'] == len(layout_blobs(src, layout_tags(src))), case
        steps[case] = [line for line in first.stdout.splitlines() if 'publish_layout: ' in line and (
            'transfer' in line or 'standard input' in line)]
        again = run_playbook(play(task), inventory=inventory, env=env)
        assert not again.failed and not again.result('publish')['changed'], again
        roots[case] = root
        made_tmp[case] = 'ansible-tmp-' in first.stdout      # -vvv shows the mkdir of a remote temp dir
    assert len(steps['ssh']) == 1 and ('%d blobs (%d bytes) go in one archive on the commit\'s standard input'
                                       % (len(blobs), sum(b['size'] for b in blobs))) in steps['ssh'][0], steps
    assert len(steps['ssh, more than 32 MiB']) == 1 and '2 files, 1 archives' in steps['ssh, more than 32 MiB'][0], steps
    assert 'a local connection reads the layout' in steps['local'][0], steps
    assert made_tmp == {'ssh': False, 'ssh, more than 32 MiB': True, 'local': False}
    trees = dict((case, dict((path, (mode, content)) for path, (mode, dummy_uid, content)
                             in served_state(root).items())) for case, root in roots.items())
    assert trees['ssh'] == trees['local']      # paths, modes, contents (the owners are the two users)
    assert set(trees['ssh']) < set(trees['ssh, more than 32 MiB'])
    large = [b for b in blobs if b['size'] >= 8 * 1024 * 1024][0]
    big_key = 'oci-cas/sha256/%s/%s' % (large['digest'][7:9], large['digest'][7:])
    assert served_state(roots['ssh'])[big_key][2] == large['digest'][7:]
    assert [name for name in os.listdir(str(local_tmp)) if not name.startswith('ansible-local-')] == []
    assert all(os.listdir(os.path.join(str(local_tmp), name)) == [] for name in os.listdir(str(local_tmp)))
