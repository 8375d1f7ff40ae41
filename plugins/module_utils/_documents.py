# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI JSON documents: strict loading, canonical form, validation and editing.

Covers descriptors, image manifests and image indexes (OCI image spec; the
Docker v2 manifest and manifest list count as manifest and index), editing of
image-index entries by tag, and ref-engines objects (oci-discovery). Validation
checks what the specs require and keeps unknown fields untouched.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json
import math
import re

from ansible_collections.oci.discovery.plugins.module_utils._digests import DigestError, parse_digest
from ansible_collections.oci.discovery.plugins.module_utils._spec import CAS_PROTOCOL, INDEX_PROTOCOL

REF_NAME = 'org.opencontainers.image.ref.name'
MT_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
MT_REF_ENGINES = 'application/vnd.oci.ref-engines.v1+json'
MT_DESCRIPTOR = 'application/vnd.oci.descriptor.v1+json'
MT_LAYOUT_HEADER = 'application/vnd.oci.layout.header.v1+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
INDEX_TYPES = (MT_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (MT_MANIFEST, DOCKER_MANIFEST)
MAX_DEPTH = 64

# RFC 6838 section 4.2 type/subtype names (as in the image spec's JSON schema).
_MEDIA_TYPE = re.compile(r'[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z')
# Protocols this collection uses; their configs must carry a string "uri".
_URI_PROTOCOLS = (INDEX_PROTOCOL, CAS_PROTOCOL)


class DocumentError(ValueError):
    """A document that is not valid JSON or lacks what its specification requires."""


class _Duplicate(Exception):
    pass


def _pairs(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, dummy in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return obj


def _no_constant(name):
    raise DocumentError('%s is not allowed' % name)


def _finite(text):
    value = float(text)
    if math.isinf(value):
        raise DocumentError('number %s is out of range' % text)
    return value


def _check_tree(obj, what):
    """Reject nesting deeper than MAX_DEPTH and strings that are not valid Unicode."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise DocumentError('%s: JSON nested deeper than %d levels' % (what, MAX_DEPTH))
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, what)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value, what)


def _check_text(text, what):
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        raise DocumentError('%s: JSON string %r is not valid Unicode (lone surrogate)' % (what, text[:40]))


def load_json(data: bytes, what: str, max_bytes: int = None):
    """Parse ``data`` (UTF-8 bytes) strictly; raise DocumentError naming ``what``.

    Rejected: more than ``max_bytes`` bytes, invalid UTF-8 (or a BOM), duplicate
    object keys, NaN/Infinity and out-of-range numbers, lone surrogates, nesting
    deeper than 64 levels.
    """
    if isinstance(data, str):
        data = data.encode('utf-8', 'surrogatepass')
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentError('%s: document is %d bytes, more than the limit of %d'
                            % (what, len(data), max_bytes))
    try:
        text = bytes(data).decode('utf-8')
    except UnicodeDecodeError as e:
        raise DocumentError('%s: not UTF-8 (byte %d)' % (what, e.start))
    try:
        obj = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant, parse_float=_finite)
    except _Duplicate as e:
        raise DocumentError('%s: duplicate key %r in a JSON object' % (what, e.args[0]))
    except RecursionError:
        raise DocumentError('%s: JSON nested deeper than %d levels' % (what, MAX_DEPTH))
    except ValueError as e:  # JSONDecodeError, DocumentError, int digit limits
        raise DocumentError('%s: invalid JSON: %s' % (what, e))
    _check_tree(obj, what)
    return obj


def canonical_json(obj) -> bytes:
    """Return ``obj`` as canonical JSON bytes: sorted keys, compact, UTF-8, no newline."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=False,
                      allow_nan=False).encode('utf-8')


# -- validation -------------------------------------------------------------

def _object(obj, what):
    if not isinstance(obj, dict):
        raise DocumentError('%s: expected a JSON object, got %s' % (what, _kind(obj)))
    return obj


def _kind(value):
    if isinstance(value, bool):
        return 'a boolean'
    return {dict: 'an object', list: 'an array', str: 'a string', int: 'a number',
            float: 'a number', type(None): 'null'}.get(type(value), type(value).__name__)


def _field(obj, key, kind, what, required=True):
    """Return obj[key] after checking its type; None when optional and absent."""
    if key not in obj:
        if required:
            raise DocumentError('%s: missing required field %r' % (what, key))
        return None
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        expected = {str: 'a string', int: 'an integer', list: 'an array', dict: 'an object'}[kind]
        raise DocumentError('%s: field %r must be %s, got %s' % (what, key, expected, _kind(value)))
    return value


def _string_list(obj, key, what):
    for i, item in enumerate(_field(obj, key, list, what, required=False) or ()):
        if not isinstance(item, str):
            raise DocumentError('%s: %s[%d] must be a string' % (what, key, i))


def _annotations(obj, what):
    annotations = _field(obj, 'annotations', dict, what, required=False) or {}
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise DocumentError('%s: annotation %r must be a string, got %s' % (what, key, _kind(value)))


def _schema_version(obj, what, media_types):
    if _field(obj, 'schemaVersion', int, what) != 2:
        raise DocumentError('%s: schemaVersion must be 2, got %r' % (what, obj['schemaVersion']))
    media_type = _field(obj, 'mediaType', str, what, required=False)
    if media_type is not None and media_type not in media_types:
        raise DocumentError('%s: mediaType %r is not one of %s' % (what, media_type, ', '.join(media_types)))


def _platform(desc, what):
    platform = _field(desc, 'platform', dict, what, required=False)
    if platform is None:
        return
    what = '%s: platform' % what
    _field(platform, 'architecture', str, what)
    _field(platform, 'os', str, what)
    _field(platform, 'os.version', str, what, required=False)
    _field(platform, 'variant', str, what, required=False)
    _string_list(platform, 'os.features', what)
    _string_list(platform, 'features', what)


def validate_descriptor(obj, what: str) -> dict:
    """Check an OCI content descriptor (mediaType, digest, size, optional fields); return it."""
    _object(obj, what)
    media_type = _field(obj, 'mediaType', str, what)
    if not _MEDIA_TYPE.match(media_type):
        raise DocumentError('%s: invalid mediaType %r' % (what, media_type))
    try:
        parse_digest(_field(obj, 'digest', str, what))
    except DigestError as e:
        raise DocumentError('%s: %s' % (what, e))
    if _field(obj, 'size', int, what) < 0:
        raise DocumentError('%s: size must not be negative, got %d' % (what, obj['size']))
    _string_list(obj, 'urls', what)
    _annotations(obj, what)
    _field(obj, 'data', str, what, required=False)
    _field(obj, 'artifactType', str, what, required=False)
    _platform(obj, what)
    return obj


def _descriptors(obj, key, what):
    for i, item in enumerate(_field(obj, key, list, what)):
        validate_descriptor(item, '%s: %s[%d]' % (what, key, i))


def validate_manifest(obj, what: str) -> dict:
    """Check an image manifest (schemaVersion 2, config, layers); return it."""
    _object(obj, what)
    _schema_version(obj, what, MANIFEST_TYPES)
    validate_descriptor(_field(obj, 'config', dict, what), '%s: config' % what)
    _descriptors(obj, 'layers', what)
    if 'subject' in obj:
        validate_descriptor(obj['subject'], '%s: subject' % what)
    _annotations(obj, what)
    return obj


def validate_index(obj, what: str) -> dict:
    """Check an image index (schemaVersion 2, manifests); return it."""
    _object(obj, what)
    _schema_version(obj, what, INDEX_TYPES)
    _descriptors(obj, 'manifests', what)
    if 'subject' in obj:
        validate_descriptor(obj['subject'], '%s: subject' % what)
    _annotations(obj, what)
    return obj


# -- image-index entries ----------------------------------------------------

def new_index() -> dict:
    """An empty OCI image index."""
    return {'schemaVersion': 2, 'mediaType': MT_INDEX, 'manifests': []}


def _tag_of(entry):
    annotations = entry.get('annotations') if isinstance(entry, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def _check_tag(tag):
    if not isinstance(tag, str) or not tag:
        raise DocumentError('invalid tag %r: a tag is a non-empty string' % (tag,))


def index_entries(index: dict, tag: str) -> list:
    """The ``manifests`` entries whose ref name is ``tag``; every entry when ``tag`` is ''."""
    entries = index.get('manifests') or []
    if not tag:
        return list(entries)
    return [entry for entry in entries if _tag_of(entry) == tag]


def index_set_tag(index: dict, tag: str, descriptors: list) -> bool:
    """Make ``descriptors`` the entries of ``tag``; return whether the index changed.

    Each descriptor is copied with ``annotations[REF_NAME] = tag``. The new
    entries take the place of the tag's first old entry, or are appended; other
    entries and unknown fields are left untouched.
    """
    _check_tag(tag)
    new = []
    for i, desc in enumerate(descriptors):
        desc = copy.deepcopy(validate_descriptor(desc, 'descriptor %d for tag %r' % (i, tag)))
        desc.setdefault('annotations', {})[REF_NAME] = tag
        new.append(desc)
    old = index.get('manifests') or []
    result, placed = [], False
    for entry in old:
        if _tag_of(entry) != tag:
            result.append(entry)
        elif not placed:
            result.extend(new)
            placed = True
    if not placed:
        result.extend(new)
    if result == old:
        return False
    index['manifests'] = result
    return True


def index_remove_tag(index: dict, tag: str) -> bool:
    """Remove every entry of ``tag``; return whether the index changed."""
    _check_tag(tag)
    old = index.get('manifests') or []
    result = [entry for entry in old if _tag_of(entry) != tag]
    if len(result) == len(old):
        return False
    index['manifests'] = result
    return True


# -- ref-engines objects ----------------------------------------------------

_ENGINE_KEYS = ('refEngines', 'casEngines')


def _engines(obj, key, what):
    engines = _field(obj, key, list, what, required=False) or []
    for i, engine in enumerate(engines):
        where = '%s: %s[%d]' % (what, key, i)
        _object(engine, where)
        if _field(engine, 'protocol', str, where) in _URI_PROTOCOLS:
            _field(engine, 'uri', str, where)
    return engines


def validate_ref_engines(obj, what: str) -> dict:
    """Check a ref-engines object (``application/vnd.oci.ref-engines.v1+json``); return it.

    An object with optional ``refEngines`` and ``casEngines`` arrays of objects
    that each have a string ``protocol``; the protocols this collection speaks
    also need a string ``uri``. Unknown protocols and fields are kept.
    """
    _object(obj, what)
    for key in _ENGINE_KEYS:
        _engines(obj, key, what)
    return obj


def _dedup(engines):
    seen, result = set(), []
    for engine in engines:
        key = canonical_json(engine)
        if key not in seen:
            seen.add(key)
            result.append(engine)
    return result


def build_ref_engines(ref_engines=(), cas_engines=()) -> dict:
    """A ref-engines object with the given engine configs (empty lists left out, duplicates dropped)."""
    obj = {}
    for key, engines in zip(_ENGINE_KEYS, (ref_engines, cas_engines)):
        if engines:
            obj[key] = _dedup(copy.deepcopy(list(engines)))
    return validate_ref_engines(obj, 'ref-engines object')


def merge_ref_engines(existing: dict, managed: dict, exclusive: bool = False) -> dict:
    """Merge the ``managed`` ref-engines object into ``existing`` (which may be None).

    Engines others wrote are kept, in their order, and the managed ones not
    already there are appended (compared by canonical JSON). With
    ``exclusive`` the result is the managed object alone. Inputs are not
    modified.
    """
    managed = validate_ref_engines(copy.deepcopy(managed), 'managed ref-engines object')
    if exclusive or existing is None:
        result = managed
    else:
        result = copy.deepcopy(validate_ref_engines(existing, 'existing ref-engines object'))
    for key in _ENGINE_KEYS:
        engines = _dedup((result.get(key) or []) + (managed.get(key) or []))
        if engines or key in result:
            result[key] = engines
    return result
