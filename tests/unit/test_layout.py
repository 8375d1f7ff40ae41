# -*- coding: utf-8 -*-
"""Reading, walking and validating OCI image layouts, and every way a layout can be broken."""
import json
import os

import pytest

from layout_builder import MT_INDEX, MT_LAYER, MT_MANIFEST, REF_NAME, LayoutBuilder, sample_layout, to_json

from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout, LayoutError


@pytest.fixture
def builder(tmp_path):
    return sample_layout(tmp_path / 'layout')


def broken(builder, *fragments):
    """Validate the layout; assert it fails with a message containing every fragment."""
    with pytest.raises(LayoutError) as e:
        Layout(builder.root).validate()
    message = str(e.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def manifest_of(builder, tag):
    return Layout(builder.root).descriptors(tag)[0]


# -- a good layout ----------------------------------------------------------

def test_tags_and_descriptors(builder):
    layout = Layout(builder.root)
    assert layout.root == os.path.abspath(builder.root)
    assert layout.tags() == ['1.0', 'multi']
    [entry] = layout.descriptors('1.0')
    assert entry['mediaType'] == MT_MANIFEST
    assert len(layout.descriptors('')) == 2


def test_validate_counts_every_blob_once(builder):
    # 1.0: manifest, config, 2 layers; multi: index, 2 x (manifest, config, layer);
    # the amd64 config is the same blob in both images: 10 blobs, all in the layout.
    result = Layout(builder.root).validate()
    sizes = {}
    for name in os.listdir(os.path.join(builder.root, 'blobs', 'sha256')):
        sizes[name] = os.path.getsize(os.path.join(builder.root, 'blobs', 'sha256', name))
    assert len(sizes) == 10
    assert result == {'blobs': len(sizes), 'bytes': sum(sizes.values())}


def test_validate_by_tag(builder):
    assert Layout(builder.root).validate(['1.0'])['blobs'] == 4
    assert Layout(builder.root).validate('multi')['blobs'] == 7


def test_walk_is_post_order_with_roots_last(builder):
    layout = Layout(builder.root)
    roots = layout.descriptors('multi')
    order = layout.walk(roots)
    assert order[-1] == roots[0]
    index = layout.read_document(roots[0])
    position = {d['digest']: i for i, d in enumerate(order)}
    for child in index['manifests']:
        assert position[child['digest']] < position[roots[0]['digest']]
        manifest = layout.read_document(child)
        for leaf in [manifest['config']] + manifest['layers']:
            assert position[leaf['digest']] < position[child['digest']]
    assert len(position) == len(order)


def test_walk_dedups_shared_blobs(tmp_path):
    b = LayoutBuilder(tmp_path)
    b.image('a', layers=[b'shared'])
    b.image('b', layers=[b'shared', b'own'])
    b.save()
    order = Layout(b.root).walk(Layout(b.root).descriptors(''))
    assert len(order) == len({d['digest'] for d in order}) == 5  # 2 manifests, 1 config, 2 layers


def test_deeply_nested_indexes(tmp_path):
    b = LayoutBuilder(tmp_path)
    desc = b.manifest()
    for dummy in range(50):
        desc = b.nested_index([desc])
    b.tag('deep', desc)
    b.save()
    assert Layout(b.root).validate()['blobs'] == 53


def test_unknown_media_types_are_opaque(tmp_path):
    b = LayoutBuilder(tmp_path)
    blob = b.blob(b'{"not": "a manifest"}', 'application/vnd.example.thing+json')
    b.tag('thing', b.nested_index([blob]))
    b.save()
    assert Layout(b.root).validate()['blobs'] == 2


def test_docker_media_types(tmp_path):
    b = LayoutBuilder(tmp_path)
    config = b.blob(b'{}', 'application/vnd.docker.container.image.v1+json')
    layer = b.blob(b'layer', 'application/vnd.docker.image.rootfs.diff.tar.gzip')
    manifest = b.json_blob({'schemaVersion': 2, 'mediaType': 'application/vnd.docker.distribution.manifest.v2+json',
                            'config': config, 'layers': [layer]},
                           'application/vnd.docker.distribution.manifest.v2+json')
    lst = b.json_blob({'schemaVersion': 2, 'mediaType': 'application/vnd.docker.distribution.manifest.list.v2+json',
                       'manifests': [manifest]}, 'application/vnd.docker.distribution.manifest.list.v2+json')
    b.tag('docker', lst)
    b.save()
    assert Layout(b.root).validate() == {'blobs': 4, 'bytes': sum(d['size'] for d in (config, layer, manifest, lst))}


def test_blob_symlink_inside_the_layout_is_fine(builder):
    layer = manifest_of(builder, '1.0')
    doc = Layout(builder.root).read_document(layer)
    path = builder.path(doc['layers'][0])
    os.rename(path, os.path.join(builder.root, 'moved'))
    os.symlink('../../moved', path)
    assert Layout(builder.root).validate()['blobs'] == 10


def test_layout_root_may_be_a_symlink(builder, tmp_path):
    os.symlink(builder.root, str(tmp_path / 'link'))
    assert Layout(str(tmp_path / 'link')).validate()


# -- broken layouts: each message names the thing ---------------------------

def test_not_a_directory(tmp_path):
    with pytest.raises(LayoutError, match='%s: not a directory' % (tmp_path / 'nothing')):
        Layout(str(tmp_path / 'nothing'))


def test_missing_oci_layout(builder):
    os.unlink(os.path.join(builder.root, 'oci-layout'))
    broken(builder, os.path.join(builder.root, 'oci-layout'), 'missing', 'not an OCI image layout')


@pytest.mark.parametrize('content, fragment', [
    (b'{"imageLayoutVersion": "2.0.0"}', "unsupported imageLayoutVersion '2.0.0'"),
    (b'{}', 'unsupported imageLayoutVersion None'),
    (b'[]', 'expected a JSON object'),
    (b'{"imageLayoutVersion": "1.0.0", "imageLayoutVersion": "2.0.0"}', 'duplicate key'),
    (b'not json', 'invalid JSON'),
])
def test_bad_oci_layout(builder, content, fragment):
    with open(os.path.join(builder.root, 'oci-layout'), 'wb') as f:
        f.write(content)
    broken(builder, os.path.join(builder.root, 'oci-layout'), fragment)


def test_missing_index_json(builder):
    os.unlink(os.path.join(builder.root, 'index.json'))
    broken(builder, os.path.join(builder.root, 'index.json'), 'missing')


@pytest.mark.parametrize('content, fragment', [
    (b'{"schemaVersion": 2, "manifests": [', 'invalid JSON'),
    (b'{"schemaVersion": 2, "manifests": [], "manifests": []}', "duplicate key 'manifests'"),
    (b'{"schemaVersion": 1, "manifests": []}', 'schemaVersion must be 2'),
    (b'{"schemaVersion": 2}', "missing required field 'manifests'"),
    (b'{"schemaVersion": 2, "manifests": [{"mediaType": "a/b", "size": 1}]}',
     "manifests[0]: missing required field 'digest'"),
    (b'\xff', 'not UTF-8'),
    (b'[' * 1000 + b']' * 1000, 'nested deeper than 64'),
])
def test_invalid_index_json(builder, content, fragment):
    builder.save(content)
    broken(builder, os.path.join(builder.root, 'index.json'), fragment)


def test_index_json_symlink_out_of_layout(builder, tmp_path):
    outside = tmp_path / 'outside.json'
    outside.write_bytes(to_json(builder.index))
    os.unlink(os.path.join(builder.root, 'index.json'))
    os.symlink(str(outside), os.path.join(builder.root, 'index.json'))
    broken(builder, 'index.json', 'leads out of the layout')


def test_missing_blob(builder):
    desc = manifest_of(builder, '1.0')
    layer = Layout(builder.root).read_document(desc)['layers'][1]
    os.unlink(builder.path(layer))
    broken(builder, 'blob %s' % layer['digest'], builder.path(layer), 'missing')


def test_missing_nested_manifest(builder):
    index = Layout(builder.root).read_document(manifest_of(builder, 'multi'))
    arm = index['manifests'][1]
    os.unlink(builder.path(arm))
    broken(builder, arm['digest'], 'missing')


def test_size_mismatch_longer(builder):
    desc = manifest_of(builder, '1.0')
    layer = Layout(builder.root).read_document(desc)['layers'][0]
    with open(builder.path(layer), 'ab') as f:
        f.write(b'!')
    broken(builder, layer['digest'], builder.path(layer), 'size mismatch', 'expected %d bytes' % layer['size'])


def test_size_mismatch_shorter(builder):
    desc = manifest_of(builder, '1.0')
    with open(builder.path(desc), 'rb+') as f:
        f.truncate(desc['size'] - 1)
    broken(builder, desc['digest'], 'size mismatch', 'got %d' % (desc['size'] - 1))


def test_digest_mismatch(builder):
    desc = manifest_of(builder, '1.0')
    layer = Layout(builder.root).read_document(desc)['layers'][0]
    with open(builder.path(layer), 'rb+') as f:
        f.write(b'X')
    broken(builder, layer['digest'], 'digest mismatch', 'expected %s' % layer['digest'])


def test_digest_mismatch_in_index_entry(builder):
    entry = builder.index['manifests'][0]
    entry['digest'] = builder.index['manifests'][1]['digest']
    builder.save()
    broken(builder, entry['digest'])


def test_unknown_algorithm(builder):
    builder.index['manifests'][0]['digest'] = 'md5:d41d8cd98f00b204e9800998ecf8427e'
    builder.save()
    broken(builder, 'index.json', "unsupported algorithm 'md5'", 'md5:d41d8cd98f00b204e9800998ecf8427e')


def test_unknown_algorithm_in_manifest(tmp_path):
    b = LayoutBuilder(tmp_path)
    bogus = {'mediaType': MT_LAYER, 'digest': 'sha384:' + 'a' * 96, 'size': 1}
    config = b.blob(b'{}', 'application/vnd.oci.image.config.v1+json')
    manifest = b.json_blob({'schemaVersion': 2, 'config': config, 'layers': [bogus]}, MT_MANIFEST)
    b.tag('x', manifest)
    b.save()
    broken(b, 'blob %s' % manifest['digest'], 'layers[0]', "unsupported algorithm 'sha384'")


@pytest.mark.parametrize('digest', ['sha256:' + 'A' * 64, 'sha256:abc', 'sha256/../../etc', 'sha256'])
def test_malformed_digest(builder, digest):
    builder.index['manifests'][0]['digest'] = digest
    builder.save()
    broken(builder, 'index.json', 'malformed digest', digest)


def test_blob_symlink_out_of_layout(builder, tmp_path):
    desc = manifest_of(builder, '1.0')
    layer = Layout(builder.root).read_document(desc)['layers'][0]
    path = builder.path(layer)
    outside = tmp_path / 'secret'
    os.rename(path, str(outside))
    os.symlink(str(outside), path)
    message = broken(builder, layer['digest'], path, 'leads out of the layout')
    with pytest.raises(LayoutError, match='leads out of the layout'):
        Layout(builder.root).blob_path(layer['digest'])
    assert str(outside) in message


def test_blobs_directory_symlink_out_of_layout(builder, tmp_path):
    blobs = os.path.join(builder.root, 'blobs')
    os.rename(blobs, str(tmp_path / 'elsewhere'))
    os.symlink(str(tmp_path / 'elsewhere'), blobs)
    broken(builder, 'leads out of the layout')


def test_blob_that_is_not_a_regular_file(builder):
    desc = manifest_of(builder, '1.0')
    layer = Layout(builder.root).read_document(desc)['layers'][0]
    os.unlink(builder.path(layer))
    os.mkdir(builder.path(layer))
    broken(builder, layer['digest'], 'not a regular file')


def test_blob_path(builder):
    layout = Layout(builder.root)
    desc = manifest_of(builder, '1.0')
    assert layout.blob_path(desc['digest']) == builder.path(desc)
    with pytest.raises(LayoutError, match="malformed digest '../x'"):
        layout.blob_path('../x')


def test_tag_that_does_not_exist(builder):
    with pytest.raises(LayoutError) as e:
        Layout(builder.root).descriptors('2.0')
    assert "tag '2.0' not found" in str(e.value)
    assert "available tags: '1.0', 'multi'" in str(e.value)
    assert builder.root in str(e.value)
    with pytest.raises(LayoutError, match="tag 'nope' not found"):
        Layout(builder.root).validate(['1.0', 'nope'])


def test_empty_layout(tmp_path):
    b = LayoutBuilder(tmp_path)
    b.save()
    layout = Layout(b.root)
    assert layout.tags() == []
    assert layout.validate() == {'blobs': 0, 'bytes': 0}
    with pytest.raises(LayoutError, match="tag 'x' not found; available tags: none"):
        layout.descriptors('x')
    with pytest.raises(LayoutError, match='index.json lists no images'):
        layout.descriptors('')


@pytest.mark.parametrize('drop, fragment', [
    ('config', "missing required field 'config'"),
    ('layers', "missing required field 'layers'"),
    ('schemaVersion', "missing required field 'schemaVersion'"),
])
def test_manifest_missing_required_fields(tmp_path, drop, fragment):
    b = LayoutBuilder(tmp_path)
    manifest = {'schemaVersion': 2, 'mediaType': MT_MANIFEST,
                'config': b.blob(b'{}', 'application/vnd.oci.image.config.v1+json'), 'layers': []}
    del manifest[drop]
    desc = b.json_blob(manifest, MT_MANIFEST)
    b.tag('bad', desc)
    b.save()
    broken(b, 'blob %s' % desc['digest'], b.path(desc), fragment)


def test_manifest_media_type_disagrees_with_descriptor(tmp_path):
    b = LayoutBuilder(tmp_path)
    desc = b.json_blob({'schemaVersion': 2, 'mediaType': MT_INDEX, 'manifests': []}, MT_INDEX)
    desc['mediaType'] = MT_MANIFEST
    b.tag('bad', desc)
    b.save()
    broken(b, desc['digest'], "mediaType '%s' is not one of" % MT_INDEX)


def test_hostile_manifest_json(tmp_path):
    b = LayoutBuilder(tmp_path)
    desc = b.blob(b'{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}', MT_MANIFEST)
    b.tag('dup', desc)
    b.save()
    broken(b, desc['digest'], "duplicate key 'schemaVersion'")


def test_oversized_manifest_is_not_read(tmp_path):
    b = LayoutBuilder(tmp_path)
    desc = b.blob(b' ' * (4 * 1024 * 1024 + 1) + b'{}', MT_MANIFEST)
    b.tag('huge', desc)
    b.save()
    broken(b, desc['digest'], 'larger than the limit')


def test_index_on_disk_that_refers_to_itself(tmp_path):
    """A real self-reference needs a hash fixed point, so on disk it is always a
    lie that verification catches first, naming the digest."""
    b = LayoutBuilder(tmp_path)
    fake = 'sha256:' + 'a' * 64
    data = to_json({'schemaVersion': 2, 'manifests': [{'mediaType': MT_INDEX, 'digest': fake, 'size': 0}]})
    with open(b.path(fake), 'wb') as f:
        f.write(data)
    b.tag('loop', {'mediaType': MT_INDEX, 'digest': fake, 'size': len(data)})
    b.save()
    broken(b, 'blob %s' % fake, 'digest mismatch')


class StoredDocuments(Layout):
    """A layout whose manifests and indexes come from a dict (no content addressing to stop cycles)."""

    def __init__(self, root, documents):
        Layout.__init__(self, root)
        self.documents = documents

    def read_document(self, descriptor):
        return self.documents[descriptor['digest']]


def test_walk_detects_an_index_that_refers_to_itself(tmp_path):
    b = LayoutBuilder(tmp_path)
    b.save()
    desc_a = {'mediaType': MT_INDEX, 'digest': 'sha256:' + 'a' * 64, 'size': 1}
    layout = StoredDocuments(b.root, {desc_a['digest']: {'schemaVersion': 2, 'manifests': [desc_a]}})
    with pytest.raises(LayoutError, match='index %s refers to itself' % desc_a['digest']):
        layout.walk([desc_a])


def test_walk_detects_a_cycle(tmp_path):
    b = LayoutBuilder(tmp_path)
    b.save()
    desc_a = {'mediaType': MT_INDEX, 'digest': 'sha256:' + 'a' * 64, 'size': 1}
    desc_b = {'mediaType': MT_INDEX, 'digest': 'sha256:' + 'b' * 64, 'size': 1}
    layout = StoredDocuments(b.root, {desc_a['digest']: {'schemaVersion': 2, 'manifests': [desc_b]},
                                      desc_b['digest']: {'schemaVersion': 2, 'manifests': [desc_a]}})
    with pytest.raises(LayoutError) as e:
        layout.walk([desc_a])
    assert 'index %s refers to itself' % desc_a['digest'] in str(e.value)
    assert '%s -> %s -> %s' % (desc_a['digest'], desc_b['digest'], desc_a['digest']) in str(e.value)


def test_same_blob_with_two_sizes(builder):
    entry = dict(builder.index['manifests'][0])
    entry['size'] += 1
    entry['annotations'] = {REF_NAME: 'other'}
    builder.index['manifests'].append(entry)
    builder.save()
    broken(builder, entry['digest'], 'sizes')


def test_validate_reads_documents_once(builder, monkeypatch):
    """Documents read during the walk are not hashed again by validate()."""
    import ansible_collections.oci.discovery.plugins.module_utils._layout as layout_module
    verified = []
    real = layout_module.verify_fileobj

    def counting(fileobj, digest, size, **kwargs):
        verified.append(digest)
        return real(fileobj, digest, size, **kwargs)

    monkeypatch.setattr(layout_module, 'verify_fileobj', counting)
    layout = Layout(builder.root)
    result = layout.validate()
    documents = set(layout._documents)
    assert not documents & set(verified)
    assert len(verified) + len(documents) == result['blobs']
    assert json.dumps(result)


# -- issue 16, item 3: the blob read (and sent) is the file checked -------------------------------

def _swap_after_the_check(monkeypatch, path, outside):
    """The attacker's move, injected right after the name is resolved: the blob becomes a link out.

    Before issue 16 the name was checked (realpath, stat), then opened again to be sent: this is
    the window, and the outside file went into the archive."""
    real_realpath = os.path.realpath

    def realpath(p, *args, **kwargs):
        result = real_realpath(p, *args, **kwargs)
        if p == path and not os.path.islink(path):
            os.rename(path, path + '.moved')
            os.symlink(outside, path)
        return result
    monkeypatch.setattr(os.path, 'realpath', realpath)


def test_a_blob_swapped_after_its_check_is_not_read(builder, tmp_path, monkeypatch):
    from ansible_collections.oci.discovery.plugins.module_utils._stores import write_blob_archive
    layout = Layout(builder.root)
    layer = layout.read_document(manifest_of(builder, '1.0'))['layers'][0]
    path = builder.path(layer)
    outside = str(tmp_path / 'secret')
    with open(outside, 'wb') as f:
        f.write(b'a secret of the controller')
    _swap_after_the_check(monkeypatch, path, outside)
    archive = tmp_path / 'archive.tar'
    with pytest.raises(LayoutError, match=r'%s.*: not a regular file' % layer['digest']):
        with open(str(archive), 'wb') as f:
            write_blob_archive(f, [layer], layout.open_blob)
    assert b'a secret' not in archive.read_bytes()


def test_the_archive_holds_only_verified_bytes(builder, tmp_path):
    """A blob changed after validation is refused while the archive is written, before anything is sent."""
    from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
    from ansible_collections.oci.discovery.plugins.module_utils._stores import write_blob_archive
    layout = Layout(builder.root)
    layout.validate()
    layer = layout.read_document(manifest_of(builder, '1.0'))['layers'][0]
    with open(builder.path(layer), 'r+b') as f:
        f.write(b'X')
    with pytest.raises(VerificationError, match='digest mismatch'):
        with open(str(tmp_path / 'archive.tar'), 'wb') as f:
            write_blob_archive(f, [layer], layout.open_blob)


def test_open_blob_follows_links_inside_the_layout(builder):
    layout = Layout(builder.root)
    layer = layout.read_document(manifest_of(builder, '1.0'))['layers'][0]
    path = builder.path(layer)
    with open(path, 'rb') as f:
        data = f.read()
    os.rename(path, os.path.join(builder.root, 'moved'))
    os.symlink('../../moved', path)
    with layout.open_blob(layer['digest']) as f:
        assert f.read() == data
