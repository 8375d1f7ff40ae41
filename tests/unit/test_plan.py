# -*- coding: utf-8 -*-
"""The store-agnostic publish algorithm, carried out on a real web-root store."""
import io
import json
import os

import pytest

from ansible_collections.oci.discovery.plugins.module_utils import _commit, _plan, _report, _site
from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._documents import REF_NAME
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout, LayoutError
from ansible_collections.oci.discovery.plugins.module_utils._site import PlanError, SiteLayout as Mapping
from ansible_collections.oci.discovery.plugins.module_utils._stores import STATE_DIR, WebRootStore
from layout_builder import MT_INDEX, MT_MANIFEST, LayoutBuilder, sample_layout

# The index annotation recording its family (literal here: the tests must not follow the code).
FAMILY_ANNOTATION = "io.github.oci-discovery.family"
SEED_EXAMPLES = '/work/shared/spec/examples'


def tree(root):
    """{relative path: bytes} of every served file (the store's private state left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and STATE_DIR in dirnames:
            dirnames.remove(STATE_DIR)
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def publish(layout_root, site, name='example.com/app', mode='cas_bucket', tags=None, state='present',
            prune=False, force=False, base_url=None, break_stream=None):
    """The whole algorithm as the module and action plugin run it; returns (summary, plan)."""
    mapping = Mapping(mode, name, base_url=base_url)
    mapping.check_templates()
    pub = None
    if state == 'present':
        layout = Layout(layout_root)
        pub = _plan.publication(layout, mapping, _plan.tag_pairs(tags, layout.tags()))
        ops = _plan.index_ops('present', pub['entries'])
    else:
        ops = _plan.index_ops('absent', tags=[dest for src, dest in _plan.tag_pairs(tags)])
    with WebRootStore(site) as store:
        probed = _plan.probe(store, _plan.probe_request(mapping, ops, pub['blobs'] if pub else (), prune=prune,
                                                        force=force))
        plan = _plan.make_plan(mapping, ops, pub, json.loads(json.dumps(probed)), describe=store.describe, force=force,
                               prune=prune)
        plan = json.loads(json.dumps(plan))    # what crosses the wire to the module
        blobs = []
        for blob in plan['send']:
            with open(layout.blob_path(blob['digest']), 'rb') as f:
                data = f.read()
            if break_stream and blob['digest'] == break_stream:
                data = data[:-1] + b'!'
            blobs.append((blob['digest'], io.BytesIO(data)))
        done = _commit.execute(store, plan, _commit.StreamBlobs(blobs))
    return _report.summary(mapping, plan, done), plan


# -- options -------------------------------------------------------------------------

def test_tag_pairs():
    assert _plan.tag_pairs(None, ['1.0', 'latest']) == [('1.0', '1.0'), ('latest', 'latest')]
    assert _plan.tag_pairs(['1.0', {'src': '1.0', 'dest': 'stable'}, {'src': 'x'}]) == \
        [('1.0', '1.0'), ('1.0', 'stable'), ('x', 'x')]


@pytest.mark.parametrize('option, message', [
    ([], 'empty list'),
    ('1.0', 'must be a list'),
    ([1], r'tags\[0\] 1'),
    ([{'dest': 'x'}], r'tags\[0\]'),
    ([{'src': 'a', 'other': 1}], r'tags\[0\]'),
    (['a', {'src': 'b', 'dest': 'a'}], "tag 'a' is published twice"),
    (['bad\ntag'], 'control character'),
    ([''], 'must not be empty'),
])
def test_tag_pairs_errors(option, message):
    with pytest.raises(PlanError, match=message):
        _plan.tag_pairs(option, ['a'])


def test_tag_pairs_layout_without_tags():
    with pytest.raises(PlanError, match='no tagged images'):
        _plan.tag_pairs(None, [])


def test_mapping_keys_cas_bucket():
    m = Mapping('cas_bucket', 'example.com/team/app')
    digest = 'sha256:' + 'ab' * 32
    assert m.index_key == 'oci-index/team/app'
    assert m.blob_key(digest) == 'oci-cas/sha256/ab/' + 'ab' * 32
    assert m.digest_of_key(m.blob_key(digest)) == digest
    assert m.header_key is None
    assert m.index_url == 'https://example.com/oci-index/team/app'
    assert m.cas_template == 'https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}'
    for junk in ('oci-cas/sha256/ac/' + 'ab' * 32, 'oci-cas/sha256/' + 'ab' * 32, 'oci-cas/sha256/ab/zz',
                 'oci-cas/md5/ab/abcd', 'other/x'):
        assert m.digest_of_key(junk) is None


def test_mapping_keys_directories():
    m = Mapping('directories', 'example.com/team/app', base_url='https://cdn.example.net:8443/site/')
    digest = 'sha512:' + 'cd' * 64
    assert m.index_key == 'oci-image/team/app/index.json'
    assert m.header_key == 'oci-image/team/app/oci-layout'
    assert m.blob_key(digest) == 'oci-image/team/app/blobs/sha512/' + 'cd' * 64
    assert m.digest_of_key(m.blob_key(digest)) == digest
    assert m.index_url == 'https://cdn.example.net:8443/site/oci-image/team/app/index.json'
    assert m.cas_template == 'https://cdn.example.net:8443/site/oci-image/team/app/blobs/{algorithm}/{encoded}'
    m.check_templates()


@pytest.mark.parametrize('name, mode, message', [
    ('example.com/a/../b', 'cas_bucket', "'..' segment"),
    ('example.com/a/./b', 'cas_bucket', "'.' segment"),
    ('example.com/app#1.0', 'cas_bucket', 'without "#fragment"'),
    ('not a name', 'cas_bucket', 'not a name'),
    ('example.com/app/blobs', 'directories', "segment 'blobs' would collide"),
    ('example.com/index.json/x', 'directories', "segment 'index.json'"),
    ('example.com/app', 'zip', "unknown site layout 'zip'"),
])
def test_mapping_refuses(name, mode, message):
    with pytest.raises(PlanError, match=message):
        Mapping(mode, name)


@pytest.mark.parametrize('base_url', ['ftp://example.com', 'example.com', 'https://', 'https://a/{x}',
                                      'https://a/?q', 'https://u@a/', 'https://a b/'])
def test_base_url_refused(base_url):
    with pytest.raises(PlanError, match='base_url'):
        Mapping('cas_bucket', 'example.com/app', base_url=base_url)


@pytest.mark.parametrize('mode, option, template', [
    ('cas_bucket', 'cas_template', '/oci-cas/{algorithm}/{encoded:2}/{encoded}'),   # relative to the index
    ('cas_bucket', 'cas_template', '../../oci-cas/{algorithm}/{encoded:2}/{encoded}'),  # from oci-index/team/
    ('cas_bucket', 'index_template', 'https://{host}/oci-index/{path}'),
    ('cas_bucket', 'index_template', 'https://example.com/oci-index/{+path}'),
    ('cas_bucket', 'index_template', '/oci-index/{path}'),
    ('directories', 'cas_template', 'https://{host}/oci-image/{path}/blobs/{algorithm}/{encoded}'),
    ('directories', 'index_template', 'https://{host}/oci-image/{path}/index.json'),
])
def test_matching_templates_accepted(mode, option, template):
    Mapping(mode, 'example.com/team/app', **{option: template}).check_templates()


@pytest.mark.parametrize('option, template, message', [
    ('cas_template', 'https://other.example/oci-cas/{algorithm}/{encoded:2}/{encoded}', 'does not match the site'),
    ('cas_template', 'https://example.com/blobs/{digest}', 'does not match the site'),
    ('index_template', 'https://example.com/indexes/{path}', 'does not match the site'),
    ('index_template', 'https://{host}/oci-index/{path}', 'does not match the site'),   # the site has a port
    ('index_template', 'https://example.com/{bad', 'index_template'),
])
def test_mismatching_templates_refused(option, template, message):
    m = Mapping('cas_bucket', 'example.com/team/app', base_url='https://example.com:8443', **{option: template})
    with pytest.raises(PlanError, match=message) as info:
        m.check_templates()
    assert option in str(info.value)


# -- publication ---------------------------------------------------------------------

def test_publication_post_order_and_entries(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    layout = Layout(b.root)
    m = Mapping('cas_bucket', 'example.com/app')
    pub = _plan.publication(layout, m, [('1.0', '1.0'), ('multi', 'stable')])
    order = [blob['digest'] for blob in pub['blobs']]
    assert len(order) == len(set(order))
    position = dict((d, i) for i, d in enumerate(order))
    for blob in pub['blobs']:
        if blob['mediaType'] in (MT_MANIFEST, MT_INDEX):
            with open(b.path(blob['digest']), 'rb') as f:
                doc = json.load(f)
            children = doc.get('manifests') or [doc['config']] + doc['layers']
            for child in children:
                assert position[child['digest']] < position[blob['digest']], 'children first'
        assert blob['key'] == m.blob_key(blob['digest'])
    assert pub['bytes'] == sum(blob['size'] for blob in pub['blobs'])
    assert [tag for tag, entries in pub['entries']] == ['1.0', 'stable']
    for tag, entries in pub['entries']:
        for entry in entries:
            assert entry['casEngines'] == [{'protocol': 'oci-cas-template-v1', 'uri': m.cas_template}]
    # the layout's own entries are not modified
    assert all('casEngines' not in e for e in layout.index['manifests'])


def test_publication_refuses_a_broken_layout(tmp_path):
    b = LayoutBuilder(str(tmp_path / 'layout'))
    desc = b.image('1.0', layers=[b'content'])
    b.save()
    with open(b.path(json.load(open(b.path(desc)))['layers'][0]), 'wb') as f:
        f.write(b'tampered')
    with pytest.raises(LayoutError, match='mismatch'):
        _plan.publication(Layout(b.root), Mapping('cas_bucket', 'example.com/app'), [('1.0', '1.0')])
    with pytest.raises(LayoutError, match="tag 'nope' not found"):
        _plan.publication(Layout(b.root), Mapping('cas_bucket', 'example.com/app'), [('nope', 'nope')])


# -- index merging ------------------------------------------------------------------

def _entry(tag, digest_char='a', **extra):
    entry = {'mediaType': MT_MANIFEST, 'digest': 'sha256:' + digest_char * 64, 'size': 10,
             'annotations': {REF_NAME: tag}}
    entry.update(extra)
    return entry


def test_update_index_keeps_other_tags_and_unknown_fields():
    existing = {'schemaVersion': 2, 'manifests': [_entry('old', 'b', platform={'os': 'linux', 'architecture': 'x'}),
                                                  _entry('1.0', 'c')],
                'annotations': {'kept': 'yes'}, 'x-unknown': [1, 2]}
    raw = json.dumps(existing).encode()
    ops = [{'op': 'set', 'tag': '1.0', 'entries': [_entry('ignored', 'd')]},
           {'op': 'set', 'tag': 'new', 'entries': [_entry('x', 'e')]},
           {'op': 'set', 'tag': 'old', 'entries': [existing['manifests'][0]]}]
    new, changes = _plan.update_index(raw, ops, 'idx')
    doc = json.loads(new)
    assert doc['x-unknown'] == [1, 2] and doc['annotations'] == {'kept': 'yes'}
    assert [(e['annotations'][REF_NAME], e['digest'][7]) for e in doc['manifests']] == \
        [('old', 'b'), ('1.0', 'd'), ('new', 'e')]
    assert changes['added'] == ['new'] and changes['updated'] == ['1.0'] and changes['unchanged'] == ['old']
    again, changes = _plan.update_index(new, ops, 'idx')
    assert again is None and changes['unchanged'] == ['1.0', 'new', 'old']
    removed, changes = _plan.update_index(new, [{'op': 'remove', 'tag': '1.0'}, {'op': 'remove', 'tag': 'zz'}], 'idx')
    assert [e['annotations'][REF_NAME] for e in json.loads(removed)['manifests']] == ['old', 'new']
    assert changes['removed'] == ['1.0'] and changes['unchanged'] == ['zz']


def test_update_index_without_index():
    assert _plan.update_index(None, [{'op': 'remove', 'tag': 'a'}], 'idx') == \
        (None, {'added': [], 'updated': [], 'removed': [], 'unchanged': ['a'], 'replaced_invalid': None})
    new, changes = _plan.update_index(None, [{'op': 'set', 'tag': 'a', 'entries': [_entry('a')]}], 'idx')
    assert json.loads(new)['mediaType'] == MT_INDEX and changes['added'] == ['a']


@pytest.mark.parametrize('raw', [b'{not json', b'[]', b'{"schemaVersion": 1, "manifests": []}', b'\xff'])
def test_update_index_refuses_invalid_unless_forced(raw):
    ops = [{'op': 'set', 'tag': 'a', 'entries': [_entry('a')]}]
    with pytest.raises(PlanError, match=r'/srv/www/oci-index/app.*force=true'):
        _plan.update_index(raw, ops, '/srv/www/oci-index/app')
    new, changes = _plan.update_index(raw, ops, '/srv/www/oci-index/app', force=True)
    assert json.loads(new)['manifests'][0]['annotations'][REF_NAME] == 'a'
    assert '/srv/www/oci-index/app' in changes['replaced_invalid']


# -- end to end on a web root -----------------------------------------------------------

@pytest.mark.parametrize('mode', _site.SITE_LAYOUTS)
def test_publish_then_nothing_to_do(tmp_path, mode):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    result, plan = publish(b.root, site, 'example.com/team/app', mode)
    assert result['changed'] and result['tags_added'] == ['1.0', 'multi']
    assert result['blobs_sent'] == len(plan['require']) and result['blobs_present'] == 0
    files = tree(site)
    m = Mapping(mode, 'example.com/team/app')
    index = json.loads(files[m.index_key])
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['1.0', 'multi']
    for entry in index['manifests']:
        assert entry['casEngines'][0]['uri'] == m.cas_template
    for blob in plan['require']:
        with open(b.path(blob['digest']), 'rb') as f:
            assert files[blob['key']] == f.read()
    if mode == 'directories':
        assert json.loads(files[m.header_key]) == {'imageLayoutVersion': '1.0.0'}
        # the served directory is itself a valid layout
        served = Layout(os.path.join(site, 'oci-image', 'team', 'app')).validate()
        assert (served['blobs'], served['bytes']) == (len(plan['require']), sum(r['size'] for r in plan['require']))
    again, plan2 = publish(b.root, site, 'example.com/team/app', mode)
    assert not again['changed'] and again['blobs_sent'] == 0 and again['bytes_sent'] == 0
    assert again['tags_unchanged'] == ['1.0', 'multi']
    assert tree(site) == files


def test_seed_index_example_shape(tmp_path):
    """A published CAS-bucket index entry looks like the seed's oci-index-app.json entry."""
    with open(os.path.join(SEED_EXAMPLES, 'oci-index-app.json')) as f:
        seed = json.load(f)['manifests'][0]
    b = LayoutBuilder(str(tmp_path / 'layout'))
    b.image('1.0', platform={'architecture': 'ppc64le', 'os': 'linux'})
    b.save()
    publish(b.root, str(tmp_path / 'site'))
    entry = json.loads(tree(str(tmp_path / 'site'))['oci-index/app'])['manifests'][0]
    assert sorted(entry) == sorted(seed)
    assert entry['casEngines'] == seed['casEngines']
    assert entry['annotations'] == seed['annotations'] and entry['platform'] == seed['platform']


def test_second_tag_keeps_first_and_families_share_blobs(tmp_path):
    b = LayoutBuilder(str(tmp_path / 'layout'))
    b.image('1.0', layers=[b'shared layer', b'one'])
    b.image('2.0', layers=[b'shared layer', b'two'])
    b.save()
    site = str(tmp_path / 'site')
    publish(b.root, site, tags=['1.0'])
    second, plan = publish(b.root, site, tags=['2.0'])
    assert second['tags_added'] == ['2.0'] and second['blobs_present'] == 2    # shared layer and config
    index = json.loads(tree(site)['oci-index/app'])
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['1.0', '2.0']
    other, plan = publish(b.root, site, name='example.com/other', tags=[{'src': '1.0', 'dest': 'v1'}])
    assert other['tags_added'] == ['v1'] and other['blobs_sent'] == 0 and other['bytes_sent'] == 0
    assert json.loads(tree(site)['oci-index/other'])['manifests'][0]['annotations'][REF_NAME] == 'v1'


def test_absent_removes_only_named_tags_and_prune(tmp_path):
    b = LayoutBuilder(str(tmp_path / 'layout'))
    b.image('1.0', layers=[b'shared', b'one'])
    b.image('2.0', layers=[b'shared', b'two'])
    b.multi_platform('multi')
    b.save()
    site = str(tmp_path / 'site')
    first, plan = publish(b.root, site)
    publish(b.root, site, name='example.com/other', tags=['2.0'])
    with open(os.path.join(site, 'oci-cas', 'sha256', 'README'), 'wb') as f:
        f.write(b'not a blob: prune leaves what it does not understand')
    before = tree(site)
    removed, plan = publish(None, site, state='absent', tags=['1.0', 'multi', 'never-there'], prune=True)
    assert removed['tags_removed'] == ['1.0', 'multi'] and removed['tags_unchanged'] == ['never-there']
    after = tree(site)
    index = json.loads(after['oci-index/app'])
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['2.0']
    # pruned: what only 1.0 and multi used; kept: everything 2.0 (referenced twice) needs
    layout = Layout(b.root)
    kept = set(d['digest'] for d in layout.walk(layout.descriptors('2.0')))
    gone = set(d['digest'] for d in layout.walk(layout.descriptors('1.0') + layout.descriptors('multi'))) - kept
    m = Mapping('cas_bucket', 'example.com/app')
    assert all(m.blob_key(d) in after for d in kept)
    assert not any(m.blob_key(d) in after for d in gone)
    assert removed['blobs_pruned'] == len(gone)
    assert removed['bytes_pruned'] == sum(len(before[m.blob_key(d)]) for d in gone)
    # nothing else went, the junk file included
    assert set(before) - set(after) == set(m.blob_key(d) for d in gone)
    assert 'oci-cas/sha256/README' in after


def test_check_mode_prune_estimate_matches(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site)
    m = Mapping('cas_bucket', 'example.com/app')
    ops = _plan.index_ops('absent', tags=['multi'])
    with WebRootStore(site) as store:
        probed = _plan.probe(store, _plan.probe_request(m, ops, (), prune=True))
        plan = _plan.make_plan(m, ops, None, probed, describe=store.describe, prune=True)
    estimate = _report.summary(m, plan)
    assert estimate['changed'] and estimate['tags_removed'] == ['multi']
    done, dummy = publish(None, site, state='absent', tags=['multi'], prune=True)
    assert (estimate['blobs_pruned'], estimate['bytes_pruned']) == (done['blobs_pruned'], done['bytes_pruned'])
    # the nested index, two manifests, two layers and the arm64 config (the amd64 config is 1.0's too)
    assert done['blobs_pruned'] == 6
    diff = _report.diff(m, plan)
    assert 'multi sha256:' in diff[0]['before'] and 'multi' not in diff[0]['after']
    assert 'to prune' in diff[1]['prepared']


def test_prune_refuses_when_an_index_is_invalid(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site)
    with open(os.path.join(site, 'oci-index', 'broken'), 'wb') as f:
        f.write(b'{oops')
    before = tree(site)
    with pytest.raises(PlanError, match=r'prune: .*oci-index/broken'):
        publish(None, site, state='absent', tags=['1.0'], prune=True)
    assert tree(site) == before


def test_invalid_existing_index_changes_nothing(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    os.makedirs(os.path.join(site, 'oci-index'))
    with open(os.path.join(site, 'oci-index', 'app'), 'wb') as f:
        f.write(b'<html>not an index</html>')
    with pytest.raises(PlanError, match=r'oci-index/app: invalid JSON.*force=true'):
        publish(b.root, site)
    assert tree(site) == {'oci-index/app': b'<html>not an index</html>'}
    assert not os.path.exists(os.path.join(site, STATE_DIR))
    result, plan = publish(b.root, site, force=True)
    assert result['changed'] and 'invalid JSON' in result['replaced_invalid_index']


def test_corrupt_stream_writes_no_index(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    layout = Layout(b.root)
    manifest = layout.descriptors('1.0')[0]['digest']
    with pytest.raises(VerificationError, match=manifest):
        publish(b.root, site, break_stream=manifest)
    # Nothing committed: the blobs verified before the broken one were staged, never renamed into place.
    assert tree(site) == {}
    result, plan = publish(b.root, site)     # a re-run completes
    assert result['blobs_present'] == 0 and result['tags_added'] == ['1.0', 'multi']


def test_commit_replays_ops_on_a_concurrently_changed_index(tmp_path):
    b = LayoutBuilder(str(tmp_path / 'layout'))
    b.image('a', layers=[b'a'])
    b.image('b', layers=[b'b'])
    b.save()
    site = str(tmp_path / 'site')
    m = Mapping('cas_bucket', 'example.com/app')
    layout = Layout(b.root)
    plans = []
    with WebRootStore(site) as store:
        for tag in ('a', 'b'):    # both probe before either commits
            pub = _plan.publication(layout, m, [(tag, tag)])
            ops = _plan.index_ops('present', pub['entries'])
            probed = _plan.probe(store, _plan.probe_request(m, ops, pub['blobs']))
            plans.append(_plan.make_plan(m, ops, pub, probed, describe=store.describe))
        for plan in plans:
            _commit.execute(store, plan, _commit.LayoutBlobs(layout))
    index = json.loads(tree(site)['oci-index/app'])
    assert [e['annotations'][REF_NAME] for e in index['manifests']] == ['a', 'b']


def test_commit_refuses_when_a_required_blob_vanished(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site, tags=['1.0'])
    m = Mapping('cas_bucket', 'example.com/app')
    layout = Layout(b.root)
    pub = _plan.publication(layout, m, [('1.0', 'again')])
    ops = _plan.index_ops('present', pub['entries'])
    with WebRootStore(site) as store:
        plan = _plan.make_plan(m, ops, pub, _plan.probe(store, _plan.probe_request(m, ops, pub['blobs'])))
        assert plan['send'] == []
        victim = pub['blobs'][0]
        os.unlink(os.path.join(site, victim['key']))     # a concurrent prune, say
        before = tree(site)
        with pytest.raises(PlanError, match='%s .*missing, so the index was not written' % victim['digest']):
            _commit.execute(store, plan)
    assert tree(site) == before


def test_unplanned_blob_refused(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    m = Mapping('cas_bucket', 'example.com/app')
    layout = Layout(b.root)
    pub = _plan.publication(layout, m, [('1.0', '1.0')])
    ops = _plan.index_ops('present', pub['entries'])
    with WebRootStore(str(tmp_path / 'site')) as store:
        plan = _plan.make_plan(m, ops, pub, _plan.probe(store, _plan.probe_request(m, ops, pub['blobs'])))
        with pytest.raises(PlanError, match='not planned'):
            _commit.execute(store, plan, _commit.StreamBlobs([('sha256:' + '0' * 64, io.BytesIO(b''))]))


def test_plan_is_json_and_diff_is_compact(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    m = Mapping('cas_bucket', 'example.com/app')
    layout = Layout(b.root)
    pub = _plan.publication(layout, m, _plan.tag_pairs(None, layout.tags()))
    ops = _plan.index_ops('present', pub['entries'])
    with WebRootStore(str(tmp_path / 'site')) as store:
        plan = _plan.make_plan(m, ops, pub, _plan.probe(store, _plan.probe_request(m, ops, pub['blobs'])))
    assert json.loads(json.dumps(plan)) == plan
    diff = _report.diff(m, plan)
    assert diff[0]['before'] == '' and diff[0]['after'].count('\n') == 2
    assert diff[1]['prepared'].startswith('example.com/app: %d blob(s)' % len(pub['blobs']))
    assert not os.path.exists(str(tmp_path / 'site'))    # planning wrote nothing


# -- ref-engines documents ------------------------------------------------------------------

def test_default_ref_engines_match_the_seed():
    with open(os.path.join(SEED_EXAMPLES, 'well-known-cas-bucket.json')) as f:
        assert _site.default_ref_engines('cas_bucket') == json.load(f)
    layouts = _site.default_ref_engines('directories', 'https://example.com')
    with open(os.path.join(SEED_EXAMPLES, 'well-known-layouts.json')) as f:
        seed = json.load(f)
    assert layouts['casEngines'] == seed['casEngines']
    assert layouts['refEngines'][0]['uri'] == 'https://example.com/oci-image/{path}/index.json'


def test_update_ref_engines():
    managed = _site.managed_ref_engines('cas_bucket', 'https://example.com:8443')
    new, before, after = _site.update_ref_engines(None, managed, 'wk')
    assert before is None and json.loads(new) == managed
    assert _site.update_ref_engines(new, managed, 'wk')[0] is None
    theirs = {'refEngines': [{'protocol': 'docker-registry', 'uri': 'x'}], 'casEngines': [{'protocol': 'p'}]}
    merged, before, after = _site.update_ref_engines(json.dumps(theirs).encode(), managed, 'wk')
    assert after['refEngines'] == theirs['refEngines'] + managed['refEngines']
    assert after['casEngines'] == theirs['casEngines']
    exclusive, before, after = _site.update_ref_engines(merged, managed, 'wk', exclusive=True)
    assert after == managed
    with pytest.raises(PlanError, match='wk: invalid JSON.*force=true'):
        _site.update_ref_engines(b'{', managed, 'wk')
    assert json.loads(_site.update_ref_engines(b'{', managed, 'wk', force=True)[0]) == managed


def test_managed_ref_engines_from_options():
    given = _site.managed_ref_engines('cas_bucket', ref_engines=[{'protocol': 'oci-index-template-v1',
                                                                  'uri': 'https://x/{path}'}])
    assert given == {'refEngines': [{'protocol': 'oci-index-template-v1', 'uri': 'https://x/{path}'}]}
    with pytest.raises(PlanError, match=r'refEngines\[0\]'):
        _site.managed_ref_engines('cas_bucket', ref_engines=[{'protocol': 'oci-index-template-v1',
                                                              'uri': 'https://x/{path'}])
    with pytest.raises(PlanError, match='protocol'):
        _site.managed_ref_engines('cas_bucket', cas_engines=[{'uri': 'x'}])


def test_prune_in_directories_mode_is_per_family(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site, mode='directories')
    publish(b.root, site, name='example.com/other', mode='directories')
    before = tree(site)
    m = Mapping('directories', 'example.com/app')
    removed, plan = publish(None, site, mode='directories', state='absent', tags=['multi'], prune=True)
    after = tree(site)
    gone = set(before) - set(after)
    assert removed['blobs_pruned'] == len(gone) == 6
    assert all(key.startswith(m.blob_prefix) for key in gone)
    assert Layout(os.path.join(site, 'oci-image', 'app')).validate()['blobs'] == 4    # 1.0 is whole
    assert Layout(os.path.join(site, 'oci-image', 'other')).tags() == ['1.0', 'multi']


def test_cas_bucket_family_collisions_fail_before_writing(tmp_path):
    """oci-index/app cannot be both the index of example.com/app and the directory of example.com/app/sub."""
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site, name='example.com/app', tags=['1.0'])
    before = tree(site)
    with pytest.raises(ValueError, match=r'oci-index/app/sub cannot exist: .*oci-index/app is a file'):
        publish(b.root, site, name='example.com/app/sub', tags=['multi'])
    assert tree(site) == before
    other = str(tmp_path / 'other')
    publish(b.root, other, name='example.com/app/sub', tags=['1.0'])
    before = tree(other)
    with pytest.raises(ValueError, match=r'oci-index/app: is a directory'):
        publish(b.root, other, name='example.com/app', tags=['multi'])
    assert tree(other) == before
    # the directories site layout has no such collision
    publish(b.root, site, name='example.com/app', mode='directories')
    publish(b.root, site, name='example.com/app/sub', mode='directories')


# -- issue 16: tags from the layout, IP-literal hosts, families sharing an index key ------------------

@pytest.mark.parametrize('bad, reason', [('1.0\nX-Injected: yes', 'control character'),
                                         ('t' * 400, 'longer than 255 characters')])
def test_layout_tags_are_checked_like_explicit_tags(tmp_path, bad, reason):
    """tags left out publishes every ref name of index.json: each is checked as if it had been given."""
    b = LayoutBuilder(str(tmp_path / 'layout'))
    b.image('good', layers=[b'a'])
    b.image(bad, layers=[b'b'])
    b.save()
    layout = Layout(b.root)
    with pytest.raises(PlanError, match=reason):
        _plan.tag_pairs([bad], layout.tags())
    with pytest.raises(PlanError, match=r"the layout's tag 1 \(index.json.*%s" % reason):
        _plan.tag_pairs(None, layout.tags())
    site = str(tmp_path / 'site')
    with pytest.raises(PlanError, match=reason):
        publish(b.root, site)
    assert not os.path.exists(site)
    assert _plan.tag_pairs(['good'], layout.tags()) == [('good', 'good')]


def test_ip_literal_host_needs_base_url():
    with pytest.raises(PlanError, match=r"name '\[::1\]/app': the host is an IP literal.*give base_url, for "
                                        r"example https://\[::1\]"):
        Mapping('cas_bucket', '[::1]/app')
    mapping = Mapping('cas_bucket', '[::1]/app', base_url='https://[::1]:8443')
    mapping.check_templates()
    assert mapping.index_url == 'https://[::1]:8443/oci-index/app'
    assert Mapping('cas_bucket', '127.0.0.1/app').index_url == 'https://127.0.0.1/oci-index/app'


@pytest.mark.parametrize('mode', _site.SITE_LAYOUTS)
def test_families_differing_only_in_host_do_not_share_an_index(tmp_path, mode):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site, name='a.example.com/app', mode=mode, tags=['1.0'])
    index_key = Mapping(mode, 'a.example.com/app').index_key
    with open(os.path.join(site, index_key), 'rb') as f:
        index = json.loads(f.read())
    recorded = {_site.LAYOUT_ANNOTATION: 'registry'} if mode == 'registry' else {}
    assert index['annotations'] == dict(recorded, **{FAMILY_ANNOTATION: 'a.example.com/app'})
    before = tree(site)
    for state in ('present', 'absent'):
        with pytest.raises(PlanError, match=r'%s is the index of a.example.com/app, not of b.example.com/app'
                                            % os.path.join(site, index_key)):
            publish(b.root, site, name='b.example.com/app', mode=mode, tags=['multi'], state=state)
        assert tree(site) == before
    summary, dummy = publish(b.root, site, name='a.example.com/app', mode=mode, tags=['multi'])
    assert summary['tags_added'] == ['multi']


def test_index_without_a_family_is_adopted_and_checked_under_the_lock(tmp_path):
    b = sample_layout(str(tmp_path / 'layout'))
    site = str(tmp_path / 'site')
    publish(b.root, site, name='a.example.com/app', tags=['1.0'])
    path = os.path.join(site, 'oci-index', 'app')
    with open(path, 'rb') as f:
        index = json.loads(f.read())
    del index['annotations']
    with open(path, 'wb') as f:       # as written before the annotation existed
        f.write(json.dumps(index).encode())
    summary, dummy = publish(b.root, site, name='a.example.com/app', tags=['1.0'])
    assert not summary['changed']     # a no-change run writes nothing, not even the annotation
    publish(b.root, site, name='b.example.com/app', tags=['multi'])   # adopted by its next writer
    with open(path, 'rb') as f:
        raw = f.read()
    assert json.loads(raw)['annotations'] == {FAMILY_ANNOTATION: 'b.example.com/app'}
    # The record is checked in update_index itself, the function the store runs under the index lock.
    with pytest.raises(PlanError, match='is the index of b.example.com/app, not of a.example.com/app'):
        _plan.update_index(raw, [{'op': 'remove', 'tag': 'multi'}], path, family='a.example.com/app')
