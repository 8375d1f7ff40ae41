# -*- coding: utf-8 -*-
"""Build small OCI image layouts by hand for tests.

    b = LayoutBuilder(tmp_path / 'layout')
    manifest = b.image('1.0')                 # config + one layer, tagged 1.0
    index = b.multi_platform('multi')         # nested index: amd64 + arm64 manifests
    b.save()                                  # writes index.json

Blobs are written under blobs/sha256/ with correct digests; every helper
returns the descriptor it made. Tests then break the layout on purpose
(``b.path(desc)`` is a blob's file).
"""
import hashlib
import json
import os

MT_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
MT_CONFIG = 'application/vnd.oci.image.config.v1+json'
MT_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'
REF_NAME = 'org.opencontainers.image.ref.name'


def to_json(obj):
    """Compact JSON bytes (sorted keys) as tools write them."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':')).encode('utf-8')


class LayoutBuilder:
    """Writes an OCI image layout at ``root`` (created; oci-layout written at once)."""

    def __init__(self, root, version='1.0.0'):
        self.root = str(root)
        self.index = {'schemaVersion': 2, 'mediaType': MT_INDEX, 'manifests': []}
        os.makedirs(os.path.join(self.root, 'blobs', 'sha256'), exist_ok=True)
        with open(os.path.join(self.root, 'oci-layout'), 'wb') as f:
            f.write(to_json({'imageLayoutVersion': version}))

    def blob(self, data, media_type=MT_LAYER):
        """Write ``data`` as a blob; return its descriptor."""
        digest = 'sha256:' + hashlib.sha256(data).hexdigest()
        with open(self.path(digest), 'wb') as f:
            f.write(data)
        return {'mediaType': media_type, 'digest': digest, 'size': len(data)}

    def json_blob(self, obj, media_type):
        """Write ``obj`` as a compact JSON blob; return its descriptor."""
        return self.blob(obj if isinstance(obj, bytes) else to_json(obj), media_type)

    def path(self, desc_or_digest):
        """The file of a blob, from its descriptor or digest."""
        digest = desc_or_digest['digest'] if isinstance(desc_or_digest, dict) else desc_or_digest
        algorithm, encoded = digest.split(':', 1)
        return os.path.join(self.root, 'blobs', algorithm, encoded)

    def manifest(self, layers=(b'layer',), config=None, platform=None):
        """Write a config, layers and the manifest joining them; return the manifest descriptor."""
        config = config or {'architecture': (platform or {}).get('architecture', 'amd64'),
                            'os': 'linux', 'rootfs': {'type': 'layers', 'diff_ids': []}}
        manifest = {'schemaVersion': 2, 'mediaType': MT_MANIFEST,
                    'config': self.json_blob(config, MT_CONFIG),
                    'layers': [self.blob(data) for data in layers]}
        desc = self.json_blob(manifest, MT_MANIFEST)
        if platform:
            desc['platform'] = dict(platform)
        return desc

    def nested_index(self, children):
        """Write an image index over ``children`` descriptors; return its descriptor."""
        return self.json_blob({'schemaVersion': 2, 'mediaType': MT_INDEX, 'manifests': list(children)},
                              MT_INDEX)

    def tag(self, tag, desc):
        """Add ``desc`` to index.json under ``tag`` (None: untagged); return the entry."""
        entry = dict(desc)
        if tag is not None:
            entry['annotations'] = dict(entry.get('annotations') or {}, **{REF_NAME: tag})
        self.index['manifests'].append(entry)
        return entry

    def image(self, tag, layers=(b'layer',), platform=None):
        """A single-platform image tagged ``tag``; return its manifest descriptor."""
        desc = self.manifest(layers=layers, platform=platform)
        self.tag(tag, desc)
        return desc

    def multi_platform(self, tag, platforms=(('linux', 'amd64'), ('linux', 'arm64'))):
        """A multi-platform image: an index of one manifest per (os, architecture); return the index descriptor."""
        children = [self.manifest(layers=[('layer-%s-%s' % p).encode()], platform={'os': p[0], 'architecture': p[1]})
                    for p in platforms]
        desc = self.nested_index(children)
        self.tag(tag, desc)
        return desc

    def save(self, index=None):
        """Write index.json (``index`` overrides the built one; bytes are written as is)."""
        data = index if isinstance(index, bytes) else to_json(self.index if index is None else index)
        with open(os.path.join(self.root, 'index.json'), 'wb') as f:
            f.write(data)
        return self.root


def sample_layout(root):
    """A saved layout with tags '1.0' (one manifest) and 'multi' (nested multi-platform index)."""
    builder = LayoutBuilder(root)
    builder.image('1.0', layers=[b'first layer', b'second layer'])
    builder.multi_platform('multi')
    builder.save()
    return builder
