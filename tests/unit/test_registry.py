# -*- coding: utf-8 -*-
"""The registry view (_registry) alone and inside the publish sequence, on a real web root store."""
import hashlib
import io
import json
import os

import pytest

from ansible_collections.oci.discovery.plugins.module_utils import _commit, _plan, _registry, _report
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout as Mapping
from ansible_collections.oci.discovery.plugins.module_utils._stores import WebRootStore
from layout_builder import MT_INDEX, MT_MANIFEST, LayoutBuilder


@pytest.mark.parametrize('name', ['app', 'team/app', 'a/b/c', 'my-app', 'my--app', 'my_app', 'my__app', 'a.b',
                                  'x0/y1-z2'])
def test_valid_names(name):
    assert _registry.valid_name(name)


@pytest.mark.parametrize('name', ['App', 'team/App', 'a//b', '/a', 'a/', '-a', 'a-', 'a___b', 'a..b', 'a b',
                                  '', 'a' * 256, None])
def test_invalid_names(name):
    assert not _registry.valid_name(name)


@pytest.mark.parametrize('tag', ['1.0', 'latest', '_x', 'A-b_c.d', 'a' * 128])
def test_valid_tags(tag):
    assert _registry.valid_tag(tag)


@pytest.mark.parametrize('tag', ['2.0-rc/1', '.hidden', '-x', 'a:b', 'a' * 129, '', 'é', None])
def test_invalid_tags(tag):
    assert not _registry.valid_tag(tag)


def _layout(tmp_path):
    b = LayoutBuilder(tmp_path / 'layout')
    single = b.image('1.0', layers=(b'one', b'shared'))
    b.image('2.0', layers=(b'two', b'shared'))
    multi = b.multi_platform('multi')
    b.tag('rc/1', single)                           # not a registry tag
    b.tag('pair', single)
    b.tag('pair', b.image('pair-2', layers=(b'other',)))   # two entries under one tag
    b.save()
    return b, single, multi


def _view(layout_root, name='example.com/team/app', flavour='files', mode='cas_bucket', tags=None):
    mapping = Mapping(mode, name)
    layout = Layout(layout_root)
    pub = _plan.publication(layout, mapping, _plan.tag_pairs(tags, layout.tags()))
    ops = _plan.index_ops('present', pub['entries'])
    return mapping, layout, pub, ops, _registry.for_ops(mapping, flavour, ops, pub, layout)


def test_view_lists_every_manifest_by_digest_and_each_registry_tag(tmp_path):
    b, single, multi = _layout(tmp_path)
    mapping, layout, pub, dummy, view = _view(b.root)
    assert view['name'] == 'team/app'
    manifests = [d for d in pub['blobs'] if d['mediaType'] in (MT_MANIFEST, MT_INDEX)]
    assert sorted(d['key'] for d in view['documents']) == sorted(
        'v2/team/app/manifests/%s.%s' % (d['digest'], 'oci-index' if d['mediaType'] == MT_INDEX else 'oci-manifest')
        for d in manifests)
    index = json.loads(open(b.path(multi), 'rb').read())
    children = set(c['digest'] for c in index['manifests'])
    assert children <= set(d['digest'] for d in view['documents'])        # every child by digest
    for doc in view['documents']:
        assert hashlib.sha256(doc['data'].encode('utf-8')).hexdigest() == doc['digest'].split(':')[1]
    tags = dict((t['tag'], t) for t in view['tags'])
    assert sorted(tags) == ['1.0', '2.0', 'multi', 'pair-2']
    assert tags['multi']['key'] == 'v2/team/app/manifests/multi.oci-index'
    assert tags['multi']['digest'] == multi['digest'] and tags['multi']['media_type'] == MT_INDEX
    assert tags['1.0']['key'] == 'v2/team/app/manifests/1.0.oci-manifest'
    assert 'v2/team/app/manifests/1.0.oci-index' in view['stale']
    assert sorted(view['skipped_tags']) == ['pair', 'rc/1']
    assert any("'rc/1'" in w and 'not a registry tag' in w for w in view['warnings'])
    assert any("'pair'" in w and '2 index entries' in w for w in view['warnings'])
    assert view['copies'] == []                     # web roots: the server maps blobs to the CAS


def test_objects_flavour_copies_configs_and_layers_and_names_keys_without_extensions(tmp_path):
    b, single, multi = _layout(tmp_path)
    mapping, layout, pub, dummy, view = _view(b.root, flavour='objects')
    leaves = [d for d in pub['blobs'] if d['mediaType'] not in (MT_MANIFEST, MT_INDEX)]
    assert sorted(view['copies'], key=lambda c: c['key']) == sorted(
        ({'src': d['key'], 'key': 'v2/team/app/blobs/%s' % d['digest'], 'size': d['size'],
          'media_type': d['mediaType']} for d in leaves),
        key=lambda c: c['key'])
    assert dict((t['tag'], t['key']) for t in view['tags'])['1.0'] == 'v2/team/app/manifests/1.0'
    assert view['stale'] == []
    # Content-addressed keys compare by size, tags by the ETag of a single PUT (an MD5).
    tag = [t for t in view['tags'] if t['tag'] == '1.0'][0]
    md5 = hashlib.md5(tag['data'].encode('utf-8')).hexdigest()
    probed = dict((d['key'], [len(d['data'].encode('utf-8')), 'x']) for d in view['documents'])
    probed.update((c['key'], [c['size'], 'x']) for c in view['copies'])
    probed[tag['key']] = [len(tag['data']), md5]
    settled = _registry.settle(view, probed)
    assert settled['documents'] == [] and settled['copies'] == []
    assert [t['tag'] for t in settled['tags']] == sorted(t['tag'] for t in view['tags'] if t['tag'] != '1.0')
    assert settled['root'] == ['v2/', 'v2/index.html']     # the view changes: the API root objects are rewritten
    # Everything there already: nothing to write, and the API root is not looked at.
    probed.update((t['key'], [len(t['data']), hashlib.md5(t['data'].encode('utf-8')).hexdigest()]) for t in view['tags'])
    tags_list = _registry.tags_document('team/app', None)
    probed[_registry.tags_list_key('team/app')] = [len(tags_list), hashlib.md5(tags_list).hexdigest()]
    settled = _registry.settle(view, probed)
    assert settled['root'] == [] and not _registry.changed(settled)


def test_registry_site_layout_stores_blobs_at_the_view_paths_and_copies_nothing(tmp_path):
    b, single, multi = _layout(tmp_path)
    mapping, layout, pub, dummy, view = _view(b.root, flavour='objects', mode='registry')
    assert view['copies'] == []
    assert all(blob['key'] == 'v2/team/app/blobs/%s' % blob['digest'] for blob in pub['blobs'])
    assert mapping.cas_template == 'https://example.com/v2/team/app/blobs/{algorithm}:{encoded}'
    assert mapping.index_key == 'oci-index/team/app'
    mapping.check_templates(pub['blobs'][0]['digest'])
    digest = pub['blobs'][0]['digest']
    assert mapping.digest_of_key(mapping.blob_key(digest)) == digest
    assert mapping.digest_of_key('v2/team/app/blobs/manifests/%s' % digest) is None    # a nested name's key
    assert _registry.digest_of_key('team/app', 'v2/team/app/manifests/%s' % digest) == digest
    assert _registry.digest_of_key('team/app', 'v2/team/app/manifests/1.0') is None
    assert _registry.digest_of_key('team/app', 'v2/team/app/sub/blobs/%s' % digest) is None


def test_manifest_files_by_digest_are_known_by_their_key_in_the_files_flavour():
    digest = 'sha256:' + 'ab' * 32
    for media_type, extension in _registry.EXTENSIONS:
        key = _registry.manifest_key('files', 'team/app', digest, media_type)
        assert key == 'v2/team/app/manifests/%s.%s' % (digest, extension)
        assert _registry.digest_of_key('team/app', key, 'files') == digest
    for other in ('v2/team/app/manifests/1.0.oci-manifest',           # a tag file
                  'v2/team/app/manifests/%s' % digest,                  # no extension
                  'v2/team/app/manifests/%s.json' % digest,             # not an extension of the view
                  'v2/team/app/blobs/%s' % digest,                      # no blob files in this flavour
                  'v2/team/app/tags/list',
                  'v2/team/app/sub/manifests/%s.oci-manifest' % digest):
        assert _registry.digest_of_key('team/app', other, 'files') is None, other


def test_a_name_that_is_not_a_repository_name_is_left_out_with_a_warning(tmp_path):
    b, dummy, dummy2 = _layout(tmp_path)
    mapping, layout, pub, ops, view = _view(b.root, name='example.com/Team/App')
    assert view['name'] is None and view['documents'] == [] and view['tags'] == []
    assert "'Team/App' is not a registry repository name" in view['warnings'][0]
    assert _registry.settle(view, None) == {'warnings': view['warnings']}
    assert not _registry.changed(_registry.settle(view, None))


class Recording(WebRootStore):
    """The real web root store, recording the order of the writes the publish sequence makes."""

    def __init__(self, *args, **kwargs):
        super(Recording, self).__init__(*args, **kwargs)
        self.calls = []

    def put_document(self, key, data, media_type=None):
        self.calls.append(('put', key))
        return super(Recording, self).put_document(key, data, media_type)

    def update_document(self, key, update, media_type, max_bytes):
        self.calls.append(('index', key))
        return super(Recording, self).update_document(key, update, media_type, max_bytes)

    def delete(self, key):
        self.calls.append(('delete', key))
        return super(Recording, self).delete(key)


def _publish(layout_root, site, name='example.com/team/app', mode='cas_bucket', tags=None, state='present',
             prune=False, check=False):
    mapping = Mapping(mode, name)
    pub = layout = None
    if state == 'present':
        layout = Layout(layout_root)
        pub = _plan.publication(layout, mapping, _plan.tag_pairs(tags, layout.tags()))
        ops = _plan.index_ops('present', pub['entries'])
    else:
        ops = _plan.index_ops('absent', tags=tags)
    view = _registry.for_ops(mapping, 'files', ops, pub, layout)
    with Recording(str(site)) as store:
        probed = _plan.probe(store, _plan.probe_request(mapping, ops, pub['blobs'] if pub else (), prune=prune,
                                                        view=view))
        plan = json.loads(json.dumps(_plan.make_plan(mapping, ops, pub, json.loads(json.dumps(probed)),
                                                     describe=store.describe, prune=prune, view=view)))
        if check:
            return _report.summary(mapping, plan), plan, store.calls
        blobs = []
        for blob in plan['send']:
            with open(layout.blob_path(blob['digest']), 'rb') as f:
                blobs.append((blob['digest'], io.BytesIO(f.read())))
        done = _commit.execute(store, _plan.commit_request(plan), _commit.StreamBlobs(blobs))
    return _report.summary(mapping, plan, done), plan, store.calls


def _files(site):
    out = {}
    top = os.path.join(str(site), 'v2')
    for dirpath, dummy, filenames in os.walk(top):
        for name in filenames:
            with open(os.path.join(dirpath, name), 'rb') as f:
                out[os.path.relpath(os.path.join(dirpath, name), str(site))] = f.read()
    return out


@pytest.mark.parametrize('mode', ['cas_bucket', 'directories'])
def test_publish_writes_manifests_before_the_index_and_tags_after_it(tmp_path, mode):
    b, single, multi = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    check, dummy, calls = _publish(b.root, site, mode=mode, check=True)
    assert check['changed'] and check['registry_objects_written'] > 0 and calls == [] and not (site / 'v2').exists()
    result, plan, calls = _publish(b.root, site, mode=mode)
    assert result['registry_name'] == 'team/app' and sorted(result['registry_tags']) == ['1.0', '2.0', 'multi', 'pair-2']
    assert any("'rc/1'" in w for w in result['warnings'])
    index_at = calls.index(('index', Mapping(mode, 'example.com/team/app').index_key))
    for what, key in calls[:index_at]:
        assert '/manifests/sha256:' in key or not key.startswith('v2/'), calls
    tags_written = [key for what, key in calls[index_at + 1:] if key.startswith('v2/')]
    assert all(what == 'put' for what, key in calls[index_at + 1:])
    assert sorted(tags_written) == sorted(['v2/team/app/manifests/%s' % t
                                           for t in ('1.0.oci-manifest', '2.0.oci-manifest', 'multi.oci-index',
                                                     'pair-2.oci-manifest')] + ['v2/team/app/tags/list'])
    listed = json.loads(_files(site)['v2/team/app/tags/list'])
    assert listed == {'name': 'team/app', 'tags': ['1.0', '2.0', 'multi', 'pair-2']}
    files = _files(site)
    assert files['v2/team/app/manifests/multi.oci-index'] == open(b.path(multi), 'rb').read()
    assert files['v2/team/app/manifests/%s.oci-manifest' % single['digest']] == open(b.path(single), 'rb').read()
    again, plan, calls = _publish(b.root, site, mode=mode)
    assert not again['changed'] and calls == [('index', Mapping(mode, 'example.com/team/app').index_key)]
    assert again['registry_objects_written'] == 0


def test_a_tag_that_changes_media_type_leaves_no_stale_file(tmp_path):
    b, single, multi = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    _publish(b.root, site, tags=['1.0'])
    b2 = LayoutBuilder(tmp_path / 'layout2')
    b2.multi_platform('1.0')
    b2.save()
    result, plan, calls = _publish(b2.root, site, tags=['1.0'])
    assert result['registry_objects_removed'] == 1
    names = sorted(k for k in _files(site) if '/manifests/1.0.' in k)
    assert names == ['v2/team/app/manifests/1.0.oci-index']
    # written before the stale file goes: a reader always finds one of them
    assert calls.index(('put', 'v2/team/app/manifests/1.0.oci-index')) < \
        calls.index(('delete', 'v2/team/app/manifests/1.0.oci-manifest'))


def test_absent_removes_tag_files_first_and_prune_keeps_what_other_tags_reach(tmp_path):
    b, single, multi = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    _publish(b.root, site)
    result, plan, calls = _publish(None, site, tags=['1.0', 'rc/1', 'pair'], state='absent', prune=True)
    assert result['tags_removed'] == ['1.0', 'rc/1', 'pair'] and result['registry_objects_removed'] == 1
    assert json.loads(_files(site)['v2/team/app/tags/list'])['tags'] == ['2.0', 'multi', 'pair-2']
    assert calls.index(('delete', 'v2/team/app/manifests/1.0.oci-manifest')) < \
        calls.index(('index', 'oci-index/team/app'))
    assert result['blobs_pruned'] >= 2                  # 1.0's manifest and its own layer ('one'); 'shared' stays
    files = _files(site)
    assert 'v2/team/app/manifests/1.0.oci-manifest' not in files
    # Every tag still in the view reaches only blobs that are there.
    with WebRootStore(str(site)) as store:
        for key, data in files.items():
            if '/manifests/sha256:' in key or '/manifests/' not in key:
                continue
            stack = [json.loads(data)]
            while stack:
                doc = stack.pop()
                children = doc.get('manifests') or [doc['config']] + doc['layers']
                for child in children:
                    raw = store.read('oci-cas/sha256/%s/%s' % (child['digest'][7:9], child['digest'][7:]), 1 << 20)
                    assert raw is not None, (key, child['digest'])
                    if child['mediaType'] in (MT_MANIFEST, MT_INDEX):
                        stack.append(json.loads(raw))


def test_registry_view_off_writes_nothing_under_v2(tmp_path):
    b, dummy, dummy2 = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    mapping = Mapping('cas_bucket', 'example.com/team/app')
    layout = Layout(b.root)
    pub = _plan.publication(layout, mapping, _plan.tag_pairs(None, layout.tags()))
    ops = _plan.index_ops('present', pub['entries'])
    with WebRootStore(str(site)) as store:
        probed = _plan.probe(store, _plan.probe_request(mapping, ops, pub['blobs']))
        plan = _plan.make_plan(mapping, ops, pub, probed)
        assert plan['registry'] is None
        _commit.execute(store, _plan.commit_request(plan), _commit.LayoutBlobs(layout))
    assert not (site / 'v2').exists()
    assert 'registry_name' not in _report.summary(mapping, plan)


# -- the registry site layout ------------------------------------------------------------------------

def test_default_layout_keeps_a_published_family_and_gives_new_ones_the_registry_layout():
    from ansible_collections.oci.discovery.plugins.module_utils._site import LAYOUT_ANNOTATION, default_layout
    cas_index = json.dumps({'schemaVersion': 2, 'manifests': []}).encode()
    registry_index = json.dumps({'schemaVersion': 2, 'manifests': [],
                                 'annotations': {LAYOUT_ANNOTATION: 'registry'}}).encode()
    assert default_layout(None, True, 'team/app') == 'registry'
    assert default_layout(None, False, 'team/app') == 'cas_bucket'
    assert default_layout(None, True, 'Team/App') == 'cas_bucket'          # not a registry name
    assert default_layout(cas_index, True, 'team/app') == 'cas_bucket'
    assert default_layout(registry_index, False, 'team/app') == 'registry'
    assert default_layout(b'not json', True, 'team/app') == 'cas_bucket'   # refused later, naming the index


def test_registry_layout_needs_a_registry_name_and_web_roots_refuse_it():
    from ansible_collections.oci.discovery.plugins.module_utils._site import PlanError, check_web_root_kind
    with pytest.raises(PlanError, match=r"site_layout registry stores blobs at v2/<name>/blobs/, but the path "
                                        r"'Team/App' is not a registry repository name"):
        Mapping('registry', 'example.com/Team/App')
    with pytest.raises(PlanError, match='site_layout registry is for S3 buckets .*choose one of those'):
        check_web_root_kind('registry')
    assert check_web_root_kind('directories') == 'directories'


@pytest.mark.parametrize('first,then', [('cas_bucket', 'registry'), ('registry', 'cas_bucket')])
def test_a_family_is_never_moved_to_another_layout_while_its_index_has_entries(tmp_path, first, then):
    b, single, multi = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    _publish(b.root, site, mode=first, tags=['1.0'])
    before = _files(site), sorted(os.listdir(str(site)))
    for state in ('present', 'absent'):
        with pytest.raises(ValueError, match='was published with site_layout %s, not %s' % (first, then)):
            _publish(b.root, site, mode=then, tags=['1.0'], state=state)
        assert (_files(site), sorted(os.listdir(str(site)))) == before
    # Once every tag is withdrawn the empty index is adopted by the other layout.
    _publish(b.root, site, mode=first, tags=['1.0'], state='absent')
    result, dummy, dummy2 = _publish(b.root, site, mode=then, tags=['2.0'])
    assert result['tags_added'] == ['2.0']
    with open(os.path.join(str(site), 'oci-index/team/app'), 'rb') as f:
        recorded = (json.loads(f.read()).get('annotations') or {}).get('io.github.oci-discovery.site-layout')
    assert recorded == ('registry' if then == 'registry' else None)


def test_prune_of_a_cas_bucket_site_keeps_what_a_registry_family_reaches_and_view_objects_it_reaches(tmp_path):
    b, single, multi = _layout(tmp_path)
    site = tmp_path / 'site'
    site.mkdir()
    _publish(b.root, site, mode='cas_bucket', tags=['1.0', '2.0'])
    _publish(b.root, site, name='example.com/other', mode='registry', tags=['1.0', 'multi'])
    with WebRootStore(str(site)) as store:
        cas = Mapping('cas_bucket', 'example.com/team/app')
        # the registry family's index is read (its manifests under v2/other/blobs/): nothing is uncertain
        assert _commit.unreferenced_blobs(store, cas) == []
        registry = Mapping('registry', 'example.com/other')
        assert _commit.unreferenced(store, registry, view={'name': 'other', 'flavour': 'objects'}) == ([], [])
    _publish(b.root, site, name='example.com/other', mode='registry', tags=['multi'], state='absent')
    with WebRootStore(str(site)) as store:
        blobs, view_objects = _commit.unreferenced(store, registry, view={'name': 'other', 'flavour': 'objects'})
        digests = set(registry.digest_of_key(key) for key, dummy in blobs)
        layout = Layout(b.root)
        multi_only = set(d['digest'] for d in layout.walk(layout.descriptors('multi'))) - \
            set(d['digest'] for d in layout.walk(layout.descriptors('1.0')))
        assert digests == multi_only
        # the view objects by digest are files with an extension on a web root: not the objects flavour's
        assert view_objects == []
        # the cas_bucket family's blobs are not the registry family's to prune
        assert not any(key.startswith('oci-cas/') for key, dummy in blobs)
