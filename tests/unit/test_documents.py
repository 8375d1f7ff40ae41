# -*- coding: utf-8 -*-
"""Strict JSON, canonical JSON, OCI document validation, index editing, ref-engines objects."""
import copy
import json
import os

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MT_INDEX, MT_MANIFEST, REF_NAME, DocumentError,
    build_ref_engines, canonical_json, index_entries, index_remove_tag, index_set_tag, load_json,
    merge_ref_engines, new_index, validate_descriptor, validate_index, validate_manifest,
    validate_ref_engines)

from rig.spec import EXAMPLES
D1 = 'sha256:' + '1' * 64
D2 = 'sha256:' + '2' * 64
D3 = 'sha256:' + '3' * 64


def example(name):
    with open(os.path.join(EXAMPLES, name), 'rb') as f:
        return load_json(f.read(), name)


def desc(digest=D1, media_type=MT_MANIFEST, size=10, **extra):
    return dict({'mediaType': media_type, 'digest': digest, 'size': size}, **extra)


def tagged(tag, digest=D1, **extra):
    return desc(digest, annotations={REF_NAME: tag}, **extra)


# -- strict JSON ------------------------------------------------------------

def test_load_json_plain():
    assert load_json(b'{"a": [1, 2.5, "\xc3\xa9", null, true]}', 'doc') == {'a': [1, 2.5, u'\xe9', None, True]}
    assert load_json(u'{"a": 1}', 'doc') == {'a': 1}
    assert load_json(bytearray(b'[]'), 'doc') == []


@pytest.mark.parametrize('data, reason', [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"x": {"b": 1, "b": 1}}', "duplicate key 'b'"),
    (b'{"a": NaN}', 'NaN is not allowed'),
    (b'[Infinity]', 'Infinity is not allowed'),
    (b'[-Infinity]', 'Infinity is not allowed'),
    (b'[1e999]', 'out of range'),
    (b'[' + b'1' * 5000 + b']', 'invalid JSON'),
    (b'{"a": "\xff"}', 'not UTF-8'),
    (b'{"a": "\xed\xa0\x80"}', 'not UTF-8'),       # UTF-8-encoded surrogate
    (b'\xfe\xff\x00{\x00}', 'not UTF-8'),            # UTF-16
    (b'\xef\xbb\xbf{}', 'invalid JSON'),             # BOM
    (b'{"a": "\\ud800"}', 'lone surrogate'),
    (b'{"\\udfff": 1}', 'lone surrogate'),
    (b'', 'invalid JSON'),
    (b'{"a": 1} x', 'invalid JSON'),
    (b"{'a': 1}", 'invalid JSON'),
    (b'{"a": 1,}', 'invalid JSON'),
    (b'[' * 65 + b']' * 65, 'nested deeper than 64'),
    (b'[' * 100000 + b']' * 100000, 'nested deeper than 64'),
    (b'{"a":' * 65 + b'1' + b'}' * 65, 'nested deeper than 64'),
])
def test_load_json_rejects_hostile(data, reason):
    with pytest.raises(DocumentError) as e:
        load_json(data, 'evil.json')
    assert str(e.value).startswith('evil.json: ')
    assert reason in str(e.value)


def test_load_json_depth_64_is_fine():
    assert load_json(b'[' * 64 + b']' * 64, 'doc') is not None


def test_load_json_size_limit():
    assert load_json(b'[1]', 'doc', max_bytes=3) == [1]
    with pytest.raises(DocumentError, match='big.json: document is 4 bytes, more than the limit of 3'):
        load_json(b'[10]', 'big.json', max_bytes=3)


def test_canonical_json():
    obj = {'b': [1, {'z': None, 'a': u'\xe9'}], 'a': 'x'}
    assert canonical_json(obj) == u'{"a":"x","b":[1,{"a":"\xe9","z":null}]}'.encode('utf-8')
    assert load_json(canonical_json(obj), 'again') == obj
    with pytest.raises(ValueError):
        canonical_json({'a': float('nan')})


# -- descriptors, manifests, indexes ----------------------------------------

def test_spec_examples_validate():
    validate_manifest(example('manifest-e9770a03.json'), 'manifest')
    index = validate_index(example('oci-index-app.json'), 'index')
    assert index['manifests'][0]['casEngines']  # unknown fields kept


def test_descriptor_keeps_unknown_fields():
    d = desc(urls=['https://x/y'], platform={'os': 'linux', 'architecture': 'arm', 'variant': 'v7',
                                             'os.features': ['a'], 'future': 1},
             artifactType='application/x', data='', somethingNew={'x': 1})
    assert validate_descriptor(d, 'd') is d
    assert d['somethingNew'] == {'x': 1}


@pytest.mark.parametrize('mutate, reason', [
    (lambda d: d.pop('mediaType'), "missing required field 'mediaType'"),
    (lambda d: d.update(mediaType=1), "field 'mediaType' must be a string"),
    (lambda d: d.update(mediaType='nonsense'), "invalid mediaType 'nonsense'"),
    (lambda d: d.pop('digest'), "missing required field 'digest'"),
    (lambda d: d.update(digest='md5:abc'), "unsupported algorithm 'md5'"),
    (lambda d: d.update(digest='sha256:XYZ'), "malformed digest 'sha256:XYZ'"),
    (lambda d: d.pop('size'), "missing required field 'size'"),
    (lambda d: d.update(size=-1), 'size must not be negative'),
    (lambda d: d.update(size='10'), "field 'size' must be an integer, got a string"),
    (lambda d: d.update(size=10.0), "field 'size' must be an integer, got a number"),
    (lambda d: d.update(size=True), "field 'size' must be an integer, got a boolean"),
    (lambda d: d.update(annotations={'a': 1}), "annotation 'a' must be a string"),
    (lambda d: d.update(annotations=['a']), "field 'annotations' must be an object"),
    (lambda d: d.update(urls='http://x'), "field 'urls' must be an array"),
    (lambda d: d.update(urls=[1]), 'urls[0] must be a string'),
    (lambda d: d.update(platform={'os': 'linux'}), "platform: missing required field 'architecture'"),
])
def test_descriptor_errors_name_the_field(mutate, reason):
    d = desc()
    mutate(d)
    with pytest.raises(DocumentError) as e:
        validate_descriptor(d, 'entry')
    assert str(e.value).startswith('entry')
    assert reason in str(e.value)


def test_descriptor_must_be_object():
    with pytest.raises(DocumentError, match='entry: expected a JSON object, got an array'):
        validate_descriptor([], 'entry')


def manifest(**extra):
    return dict({'schemaVersion': 2, 'mediaType': MT_MANIFEST,
                 'config': desc(D1, 'application/vnd.oci.image.config.v1+json'),
                 'layers': [desc(D2, 'application/vnd.oci.image.layer.v1.tar+gzip')]}, **extra)


def test_manifest_valid_and_docker():
    assert validate_manifest(manifest(), 'm')
    assert validate_manifest(manifest(mediaType=DOCKER_MANIFEST), 'm')
    m = manifest(layers=[], future={'x': 1})
    m.pop('mediaType')
    assert validate_manifest(m, 'm')['future'] == {'x': 1}


@pytest.mark.parametrize('mutate, reason', [
    (lambda m: m.pop('schemaVersion'), "missing required field 'schemaVersion'"),
    (lambda m: m.update(schemaVersion=1), 'schemaVersion must be 2, got 1'),
    (lambda m: m.update(schemaVersion='2'), "field 'schemaVersion' must be an integer"),
    (lambda m: m.update(mediaType=MT_INDEX), "mediaType '%s' is not one of" % MT_INDEX),
    (lambda m: m.pop('config'), "missing required field 'config'"),
    (lambda m: m['config'].pop('digest'), "config: missing required field 'digest'"),
    (lambda m: m.pop('layers'), "missing required field 'layers'"),
    (lambda m: m.update(layers={}), "field 'layers' must be an array"),
    (lambda m: m['layers'].append({'mediaType': 'a/b'}), "layers[1]: missing required field 'digest'"),
    (lambda m: m.update(subject={}), "subject: missing required field 'mediaType'"),
    (lambda m: m.update(annotations={'k': None}), "annotation 'k' must be a string, got null"),
])
def test_manifest_errors(mutate, reason):
    m = manifest()
    mutate(m)
    with pytest.raises(DocumentError) as e:
        validate_manifest(m, 'blob X')
    assert str(e.value).startswith('blob X: ')
    assert reason in str(e.value)


def test_index_valid_and_docker():
    assert validate_index(new_index(), 'i') == {'schemaVersion': 2, 'mediaType': MT_INDEX, 'manifests': []}
    assert validate_index({'schemaVersion': 2, 'mediaType': DOCKER_MANIFEST_LIST, 'manifests': [desc()]}, 'i')


@pytest.mark.parametrize('index, reason', [
    ({'manifests': []}, "missing required field 'schemaVersion'"),
    ({'schemaVersion': 2}, "missing required field 'manifests'"),
    ({'schemaVersion': 2, 'manifests': [desc(size=-3)]}, 'manifests[0]: size must not be negative'),
    ({'schemaVersion': 2, 'mediaType': MT_MANIFEST, 'manifests': []}, 'is not one of'),
    ([], 'expected a JSON object'),
])
def test_index_errors(index, reason):
    with pytest.raises(DocumentError) as e:
        validate_index(index, 'index.json')
    assert str(e.value).startswith('index.json')
    assert reason in str(e.value)


# -- index entries ----------------------------------------------------------

def test_index_entries():
    index = {'schemaVersion': 2, 'manifests': [tagged('1.0', D1), desc(D2), tagged('2.0', D3), tagged('1.0', D2)]}
    assert [e['digest'] for e in index_entries(index, '1.0')] == [D1, D2]
    assert index_entries(index, 'nope') == []
    assert len(index_entries(index, '')) == 4


def test_set_tag_appends_new_tag_and_keeps_everything_else():
    index = example('oci-index-app.json')
    index['future'] = 'kept'
    before = copy.deepcopy(index)
    new = desc(D2, platform={'os': 'linux', 'architecture': 'amd64'})
    assert index_set_tag(index, '2.0', [new]) is True
    assert index['manifests'][0] == before['manifests'][0]
    assert index['manifests'][1] == dict(new, annotations={REF_NAME: '2.0'})
    assert 'annotations' not in new  # caller's descriptor not modified
    assert index['future'] == 'kept'


def test_set_tag_replaces_in_place_and_collapses_old_entries():
    index = {'schemaVersion': 2, 'manifests': [tagged('a', D1), tagged('b', D2), tagged('a', D3), tagged('c', D1)]}
    assert index_set_tag(index, 'a', [desc(D3), desc(D2)]) is True
    assert [(e['annotations'][REF_NAME], e['digest']) for e in index['manifests']] == [
        ('a', D3), ('a', D2), ('b', D2), ('c', D1)]


def test_set_tag_unchanged_returns_false():
    index = {'schemaVersion': 2, 'manifests': [desc(D1, annotations={REF_NAME: 'a', 'x': 'y'})]}
    before = copy.deepcopy(index)
    assert index_set_tag(index, 'a', [desc(D1, annotations={'x': 'y'})]) is False
    assert index == before


def test_set_tag_validates():
    with pytest.raises(DocumentError, match="descriptor 0 for tag 'a'"):
        index_set_tag(new_index(), 'a', [{'digest': D1}])
    with pytest.raises(DocumentError, match='invalid tag'):
        index_set_tag(new_index(), '', [desc()])


def test_remove_tag():
    index = {'schemaVersion': 2, 'manifests': [tagged('a', D1), desc(D2), tagged('a', D3), tagged('b', D1)]}
    assert index_remove_tag(index, 'a') is True
    assert index['manifests'] == [desc(D2), tagged('b', D1)]
    assert index_remove_tag(index, 'a') is False
    with pytest.raises(DocumentError):
        index_remove_tag(index, '')


# -- ref-engines ------------------------------------------------------------

INDEX_ENGINE = {'protocol': 'oci-index-template-v1', 'uri': 'https://{host}/oci-index/{path}'}
CAS_ENGINE = {'protocol': 'oci-cas-template-v1', 'uri': 'https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}'}
OTHER_ENGINE = {'protocol': 'docker', 'registry': 'r.example.com'}


def test_ref_engines_examples():
    assert validate_ref_engines(example('well-known-cas-bucket.json'), 'wk') == {'refEngines': [INDEX_ENGINE]}
    validate_ref_engines(example('well-known-layouts.json'), 'wk')
    assert validate_ref_engines({}, 'wk') == {}
    assert validate_ref_engines({'refEngines': [OTHER_ENGINE], 'x': 1}, 'wk')['x'] == 1


@pytest.mark.parametrize('obj, reason', [
    ([], 'expected a JSON object'),
    ({'refEngines': {}}, "field 'refEngines' must be an array"),
    ({'casEngines': ['x']}, 'casEngines[0]: expected a JSON object'),
    ({'refEngines': [{}]}, "refEngines[0]: missing required field 'protocol'"),
    ({'refEngines': [{'protocol': 1}]}, "field 'protocol' must be a string"),
    ({'refEngines': [{'protocol': 'oci-index-template-v1'}]}, "missing required field 'uri'"),
    ({'casEngines': [{'protocol': 'oci-cas-template-v1', 'uri': 5}]}, "field 'uri' must be a string"),
])
def test_ref_engines_errors(obj, reason):
    with pytest.raises(DocumentError) as e:
        validate_ref_engines(obj, 'well-known')
    assert str(e.value).startswith('well-known')
    assert reason in str(e.value)


def test_build_ref_engines():
    assert build_ref_engines() == {}
    assert build_ref_engines([INDEX_ENGINE, dict(INDEX_ENGINE)], [CAS_ENGINE]) == {
        'refEngines': [INDEX_ENGINE], 'casEngines': [CAS_ENGINE]}
    with pytest.raises(DocumentError):
        build_ref_engines([{'uri': 'x'}])


def test_merge_keeps_engines_others_wrote():
    existing = {'refEngines': [OTHER_ENGINE], 'casEngines': [CAS_ENGINE], 'extra': True}
    before = copy.deepcopy(existing)
    managed = build_ref_engines([INDEX_ENGINE], [json.loads(json.dumps(CAS_ENGINE))])
    merged = merge_ref_engines(existing, managed)
    assert merged == {'refEngines': [OTHER_ENGINE, INDEX_ENGINE], 'casEngines': [CAS_ENGINE], 'extra': True}
    assert existing == before
    assert merge_ref_engines(merged, managed) == merged  # idempotent


def test_merge_dedups_existing_and_handles_none():
    existing = {'refEngines': [INDEX_ENGINE, dict(reversed(list(INDEX_ENGINE.items())))]}
    assert merge_ref_engines(existing, {'refEngines': [INDEX_ENGINE]}) == {'refEngines': [INDEX_ENGINE]}
    assert merge_ref_engines(None, {'casEngines': [CAS_ENGINE]}) == {'casEngines': [CAS_ENGINE]}


def test_merge_exclusive_replaces():
    existing = {'refEngines': [OTHER_ENGINE], 'extra': True}
    assert merge_ref_engines(existing, {'refEngines': [INDEX_ENGINE]}, exclusive=True) == {'refEngines': [INDEX_ENGINE]}


def test_merge_rejects_invalid():
    with pytest.raises(DocumentError, match='existing ref-engines object'):
        merge_ref_engines({'refEngines': 'x'}, {})
    with pytest.raises(DocumentError, match='managed ref-engines object'):
        merge_ref_engines({}, {'casEngines': [{}]})
