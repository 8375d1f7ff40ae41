# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry view: the pull subset of the OCI Distribution API over the same published bytes.

A site published by this collection answers the oci-discovery protocols
(``/.well-known/oci-host-ref-engines``, the family index, the CAS). The
registry view makes the same site answer ``GET``/``HEAD`` of
``/v2/<name>/manifests/<tag|digest>`` and ``/v2/<name>/blobs/<digest>`` for
the same images, so ``example.com/team/app#1.0`` (discovery) and
``example.com/team/app:1.0`` (registry) are one digest. The registry name is
the image name's path (``team/app``).

Two flavours of store keys, one per kind of store:

``files`` (a web root served by Nginx)
    ``v2/<name>/manifests/<reference>.<extension>``: a copy of each manifest
    and index (small documents), one per digest and one per tag; the
    extension stands for the media type (``EXTENSIONS``), which the site's
    Nginx configuration maps back (``types``) after finding the file with
    ``try_files`` over the extensions. Blobs are not copied: Nginx rewrites
    ``/v2/<name>/blobs/<digest>`` to the CAS.
``objects`` (an S3 bucket behind a front that maps the host root to it)
    ``v2/<name>/manifests/<reference>`` with the exact media type as
    Content-Type; ``v2/<name>/blobs/<digest>``, the blobs themselves in the
    ``registry`` site layout, else a server-side copy of each config and
    layer (no rewrite rules exist there); and the ``ROOT_KEYS`` objects that
    answer the API root (``v2/`` on a plain front, ``v2/<index suffix>`` on a
    website endpoint), rewritten whenever the family's view changes.

Commit classes, in the publish sequence: manifests by digest (and blob
copies) are written with the other documents, before the family index; tag
keys after it (a tag never names a manifest that is not there); with
``state: absent`` the tag keys are removed before the index changes.

Tags that are not registry tags and names that are not registry repository
names are left out of the view with a warning naming them; discovery keeps
them. Nothing here imports Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import re

from ansible_collections.oci.discovery.plugins.module_utils._digests import digest_bytes, parse_digest
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_MANIFEST, REF_NAME,
    DocumentError, canonical_json, load_json)

FLAVOURS = ('files', 'objects')
PREFIX = 'v2/'
ROOT_KEY = 'v2/'                 # the object answering GET /v2/ (objects flavour)
ROOT_KEYS = (ROOT_KEY, ROOT_KEY + 'index.html')   # and on a website endpoint (index document suffix index.html)
ROOT_BODY = b'{}'
ROOT_TYPE = 'application/json'
TAGS_TYPE = 'application/json'
API_VERSION = 'registry/2.0'
# File name extensions of the files flavour (nginx ``types`` maps them back), in try_files order.
EXTENSIONS = (
    (MT_MANIFEST, 'oci-manifest'),
    (MT_INDEX, 'oci-index'),
    (DOCKER_MANIFEST, 'docker-manifest'),
    (DOCKER_MANIFEST_LIST, 'docker-list'),
)
_EXTENSION = dict(EXTENSIONS)
# The Distribution Specification's grammar (repository name components; tags).
_COMPONENT = r'[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*'
NAME_RE = re.compile(r'^%s(?:/%s)*$' % (_COMPONENT, _COMPONENT))
TAG_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$')
MAX_NAME_CHARS = 255
NAME_HELP = 'lowercase components [a-z0-9] joined by "/", separated by ".", "_", "__" or "-"'


def valid_name(name):
    """Whether ``name`` is a repository name of the Distribution API (``team/app``)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and NAME_RE.match(name) is not None


def valid_tag(tag):
    """Whether ``tag`` is a tag of the Distribution API."""
    return isinstance(tag, str) and TAG_RE.match(tag) is not None


def manifest_key(flavour, name, reference, media_type):
    """The store key answering ``/v2/<name>/manifests/<reference>`` of a document of ``media_type``."""
    key = '%s%s/manifests/%s' % (PREFIX, name, reference)
    return key + '.' + _EXTENSION[media_type] if flavour == 'files' else key


def tag_keys(flavour, name, tag):
    """Every key a tag may occupy (one per media type in the files flavour)."""
    if flavour == 'files':
        return [manifest_key(flavour, name, tag, media_type) for media_type, dummy in EXTENSIONS]
    return [manifest_key(flavour, name, tag, None)]


def tags_list_key(name):
    """The key answering ``/v2/<name>/tags/list`` (both flavours)."""
    return '%s%s/tags/list' % (PREFIX, name)


def tags_document(name, index_bytes):
    """The ``tags/list`` answer for a family index (bytes or None): its registry tags with one entry each."""
    counts = {}
    if index_bytes is not None:
        try:
            entries = load_json(index_bytes, 'index').get('manifests') or []
        except (DocumentError, AttributeError):
            entries = []
        for entry in entries:
            tag = ((entry.get('annotations') if isinstance(entry, dict) else None) or {}).get(REF_NAME)
            if valid_tag(tag) and entry.get('mediaType') in _EXTENSION:
                counts[tag] = counts.get(tag, 0) + 1
    return canonical_json({'name': name, 'tags': sorted(t for t, n in counts.items() if n == 1)})


def blob_key(name, digest):
    """The key of a blob copy (objects flavour); the CAS key itself in the registry site layout."""
    return '%s%s/blobs/%s' % (PREFIX, name, digest)


def name_prefix(name):
    """The key prefix of everything the view holds for ``name`` (and for names nested under it)."""
    return '%s%s/' % (PREFIX, name)


def digest_of_key(name, key, flavour='objects'):
    """The digest of a manifest-by-digest key of ``name`` (in the objects flavour also of a blob copy), or None
    (tags, the tags list, other names)."""
    rest = key[len(name_prefix(name)):] if key.startswith(name_prefix(name)) else ''
    parts = rest.split('/')
    if len(parts) != 2 or parts[0] not in ('manifests', 'blobs') or ':' not in parts[1]:
        return None
    reference = parts[1]
    if flavour == 'files':
        if parts[0] != 'manifests':
            return None
        reference, dot, extension = reference.rpartition('.')
        if not dot or extension not in _EXTENSION.values():
            return None
    try:
        return str(parse_digest(reference))
    except ValueError:
        return None


def _check_flavour(flavour):
    if flavour not in FLAVOURS:
        raise ValueError('unknown registry view flavour %r (choose %s)' % (flavour, ' or '.join(FLAVOURS)))


def _name_of(mapping, warnings):
    name = mapping.path
    if not valid_name(name):
        warnings.append('registry view: %s is left out: its path %r is not a registry repository name '
                        '(%s); discovery still finds it' % (mapping.name.family, name, NAME_HELP))
        return None
    return name


def view(mapping, flavour, pub=None, read=None, removed=(), roots=ROOT_KEYS):
    """What the view of one family needs: ``{'name', 'documents', 'copies', 'tags', 'stale', 'remove', 'warnings'}``.

    ``pub`` is ``_plan.publication()`` (``state: present``) and ``read(digest)``
    returns a manifest's or index's bytes from the layout; ``removed`` the
    tags withdrawn (``state: absent``). Documents are dicts ``{'key', 'data'
    (text), 'media_type', 'digest'}``; tags the same plus ``'tag'``; ``stale``
    and ``remove`` candidate keys (what ``settle`` keeps of them depends on the
    store). ``roots`` are the keys of the objects answering ``GET /v2/``
    (objects flavour). JSON-safe, so the plan carries it to the target.
    """
    _check_flavour(flavour)
    warnings = []
    out = {'flavour': flavour, 'name': None, 'documents': [], 'copies': [], 'tags': [], 'stale': [],
           'remove': [], 'warnings': warnings, 'skipped_tags': [], 'roots': list(roots) if flavour == 'objects' else []}
    name = _name_of(mapping, warnings)
    if name is None:
        return out
    out['name'] = name
    for tag in removed:
        if valid_tag(tag):
            out['remove'].extend(tag_keys(flavour, name, tag))
    if pub is None:
        return out
    data = {}
    for blob in pub['blobs']:
        media_type = blob['mediaType']
        if media_type in INDEX_TYPES or media_type in MANIFEST_TYPES:
            raw = read(blob['digest'])
            if digest_bytes(raw, parse_digest(blob['digest']).algorithm) != blob['digest']:
                raise ValueError('registry view: manifest %s changed in the layout while publishing' % blob['digest'])
            data[blob['digest']] = raw.decode('utf-8')
            out['documents'].append({'key': manifest_key(flavour, name, blob['digest'], media_type),
                                     'data': data[blob['digest']], 'media_type': media_type,
                                     'digest': blob['digest']})
        elif flavour == 'objects' and blob['key'] != blob_key(name, blob['digest']):   # registry layout: no copy
            out['copies'].append({'src': blob['key'], 'key': blob_key(name, blob['digest']),
                                  'size': blob['size'], 'media_type': media_type})
    for tag, entries in pub['entries']:
        why = None
        if not valid_tag(tag):
            why = 'is not a registry tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})'
        elif len(entries) != 1:
            why = 'has %d index entries; a registry tag names one manifest or index' % len(entries)
        elif entries[0]['mediaType'] not in _EXTENSION:
            why = 'names a %s, not a manifest or an image index' % entries[0]['mediaType']
        if why:
            out['skipped_tags'].append(tag)
            warnings.append('registry view of %s: tag %r is left out: it %s; discovery still finds it'
                            % (mapping.name.family, tag, why))
            continue
        entry = entries[0]
        key = manifest_key(flavour, name, tag, entry['mediaType'])
        out['tags'].append({'key': key, 'data': data[entry['digest']], 'media_type': entry['mediaType'],
                            'digest': entry['digest'], 'tag': tag})
        out['stale'].extend(k for k in tag_keys(flavour, name, tag) if k != key)
    return out


def for_ops(mapping, flavour, ops, pub=None, layout=None, roots=ROOT_KEYS):
    """The view for a publish's index operations (the one call the publish sequences make)."""
    def read(digest):
        with open(layout.blob_path(digest), 'rb') as f:
            return f.read()
    return view(mapping, flavour, pub, read, [op['tag'] for op in ops if op['op'] == 'remove'], roots)


def probe_request(plan_view):
    """What the probe must look at for the view (None when there is no view)."""
    if not plan_view or not plan_view['name']:
        return None
    keys = [d['key'] for d in plan_view['documents'] + plan_view['tags']] + plan_view['stale'] + plan_view['remove']
    keys.append(tags_list_key(plan_view['name']))
    request = {'flavour': plan_view['flavour'], 'name': plan_view['name'], 'keys': sorted(set(keys)),
               'copies': [c['key'] for c in plan_view['copies']]}
    if plan_view['flavour'] == 'objects':
        # (Content-Type, immutable) each object is served with, for the metadata check (``inspect``)
        headers = dict((d['key'], [d['media_type'], True]) for d in plan_view['documents'])
        headers.update((d['key'], [d['media_type'], False]) for d in plan_view['tags'])
        headers.update((c['key'], [c['media_type'], True]) for c in plan_view['copies'])
        headers[tags_list_key(plan_view['name'])] = [TAGS_TYPE, False]
        request['headers'] = headers
    return request


def fingerprint(data):
    """What a web root's file is compared by (SHA-256 hex); S3 objects compare their ETag with an MD5."""
    return hashlib.sha256(data).hexdigest()


def probe(store, request, max_bytes):
    """Look at the view's keys (read-only): ``{key: [size, fingerprint]}`` for those that exist.

    A web root (files) is read; an S3 bucket (objects) answers from one
    LIST (``S3Store.listing``: size and ETag; in the registry site layout the
    LIST the blobs needed), so a re-run costs no GET.
    """
    if request is None:
        return None
    found = {}
    if request['flavour'] == 'files':
        for key in request['keys']:
            data = store.read(key, max_bytes)
            if data is not None:
                found[key] = [len(data), fingerprint(data)]
        return found
    listed = store.listing(request['keys'] + request['copies'])
    for key in request['keys'] + request['copies']:
        if key in listed:
            size, etag, dummy = listed[key]
            found[key] = [size, (etag or '').strip('"')]
    return found


def inspect(store, request):
    """The view's S3 objects that are there with the wrong headers (the store's metadata ledger, no HEAD each).

    Items in the form of ``S3Store.check_metadata``, fixed with the store's
    other fixes (a copy onto itself), before anything of the view is written.
    """
    if request is None or request['flavour'] != 'objects':
        return []
    return store.check_metadata([{'key': key, 'headers': store.view_headers(media_type, immutable)}
                                 for key, (media_type, immutable) in sorted(request['headers'].items())])


def _same(flavour, found, doc):
    if not found:
        return False
    data = doc['data'].encode('utf-8')
    if flavour == 'files':
        return found == [len(data), fingerprint(data)]
    if doc.get('digest') and doc['key'].rsplit('/', 1)[-1] == doc['digest']:
        return found[0] == len(data)        # content-addressed: the size is enough
    return found[1] == hashlib.md5(data).hexdigest()   # nosec: compared with S3's ETag, not for security


def settle(plan_view, probed, index_bytes=None):
    """The view part of a plan: only what must change, given the probe's answer (None: no view).

    ``index_bytes`` is the family index as the plan leaves it: the ``tags/list`` document is
    rewritten when it would differ (from the index actually written, after it).
    """
    if not plan_view or not plan_view['name']:
        return {'warnings': plan_view['warnings']} if plan_view and plan_view['warnings'] else None
    flavour = plan_view['flavour']
    probed = probed or {}
    keep = set(d['key'] for d in plan_view['tags'])
    tags_doc = {'key': tags_list_key(plan_view['name']),
                'data': tags_document(plan_view['name'], index_bytes).decode('utf-8')}
    result = {
        'flavour': flavour,
        'name': plan_view['name'],
        'documents': [d for d in plan_view['documents'] if not _same(flavour, probed.get(d['key']), d)],
        'copies': [c for c in plan_view['copies'] if (probed.get(c['key']) or [None])[0] != c['size']],
        'tags': [d for d in plan_view['tags'] if not _same(flavour, probed.get(d['key']), d)],
        'stale': [k for k in plan_view['stale'] if k in probed and k not in keep],
        'remove': [k for k in plan_view['remove'] if k in probed],
        'tags_list': not _same(flavour, probed.get(tags_doc['key']), tags_doc),
        'warnings': plan_view['warnings'],
        'skipped_tags': plan_view['skipped_tags'],
        'published_tags': [d['tag'] for d in plan_view['tags']],
    }
    # The API root objects are (re)written whenever the family's view gets something new: a re-run that
    # changes nothing does not look at them (no request), a first publish or a new tag restores them.
    writes = result['documents'] or result['copies'] or result['tags'] or result['tags_list']
    result['root'] = list(plan_view.get('roots') or []) if writes and plan_view['tags'] else []
    return result


def changed(planned):
    """Whether the view part of a plan writes or removes anything."""
    return bool(planned and planned.get('name') and (
        planned['documents'] or planned['copies'] or planned['root'] or planned['tags']
        or planned['stale'] or planned['remove'] or planned['tags_list']))


def _put(store, flavour, key, data, media_type, immutable):
    """Web roots: the file (its name gives the type); S3: the object with the exact Content-Type."""
    if flavour == 'files':
        store.put_document(key, data, media_type)
    else:
        store.put_exact(key, data, media_type, immutable)


def commit(store, planned, stage, index_bytes=None):
    """Carry out one stage of the view: ``'before_index'`` or ``'after_index'``; returns counts.

    Before the index: tag keys being withdrawn are removed, blob copies and
    manifests by digest written (and the ``v2/`` root object). After the
    index (``index_bytes``, as written): the tag keys written, then keys a
    tag left (another media type) removed, then the ``tags/list`` document.
    """
    counts = {'documents': 0, 'copies': 0, 'tags': 0, 'removed': 0}
    if not planned or not planned.get('name'):
        return counts
    flavour = planned['flavour']
    if stage == 'before_index':
        for key in planned['remove']:
            store.delete(key)
            counts['removed'] += 1
        if planned['copies']:
            store.copy_objects(planned['copies'])
            counts['copies'] = len(planned['copies'])
        for doc in planned['documents']:
            _put(store, flavour, doc['key'], doc['data'].encode('utf-8'), doc['media_type'], True)
            counts['documents'] += 1
        for key in planned['root']:     # rewritten whenever the view changes: not worth a ledger entry
            store.put_exact(key, ROOT_BODY, ROOT_TYPE, False, ledger=False)
            counts['documents'] += 1
    elif stage == 'after_index':
        for doc in planned['tags']:
            _put(store, flavour, doc['key'], doc['data'].encode('utf-8'), doc['media_type'], False)
            counts['tags'] += 1
        for key in planned['stale']:
            store.delete(key)
            counts['removed'] += 1
        if planned['tags_list']:
            key = tags_list_key(planned['name'])
            _put(store, flavour, key, tags_document(planned['name'], index_bytes), TAGS_TYPE, False)
            counts['tags'] += 1
    else:
        raise ValueError('unknown registry view stage %r' % (stage,))
    return counts


def summary(planned, done=None):
    """Result keys for the module: ``registry_name``, ``registry_tags`` and the counts (compact)."""
    if not planned or not planned.get('name'):
        return {}
    if done is None:
        written = len(planned['documents']) + len(planned['tags']) + len(planned['root']) + int(planned['tags_list'])
        removed = len(planned['stale']) + len(planned['remove'])
        copies = len(planned['copies'])
    else:
        written, removed, copies = done['documents'] + done['tags'], done['removed'], done['copies']
    return {'registry_name': planned['name'], 'registry_tags': planned['published_tags'],
            'registry_objects_written': written, 'registry_objects_removed': removed,
            'registry_blobs_copied': copies}


def diff_lines(planned, done=None):
    """One line for the prepared diff."""
    result = summary(planned, done)
    if not result:
        return []
    return ['registry view %s: %d manifest/tag file(s) %s, %d %s, %d blob cop%s %s' % (
        result['registry_name'], result['registry_objects_written'], 'written' if done else 'to write',
        result['registry_objects_removed'], 'removed' if done else 'to remove',
        result['registry_blobs_copied'], 'y' if result['registry_blobs_copied'] == 1 else 'ies',
        'made' if done else 'to make')]


__all__ = ['API_VERSION', 'EXTENSIONS', 'FLAVOURS', 'NAME_HELP', 'ROOT_KEY', 'ROOT_KEYS', 'blob_key', 'changed', 'commit',
           'diff_lines', 'digest_of_key', 'for_ops', 'inspect', 'manifest_key', 'name_prefix', 'probe', 'probe_request',
           'settle', 'summary', 'tag_keys', 'tags_document', 'tags_list_key', 'valid_name', 'valid_tag', 'view']
