# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying out a plan in a store, in the safe order; removing blobs nothing references.

``execute(store, plan, source)`` commits what ``_plan.make_plan`` decided:

1. the blobs to send (``Store.put_blobs``: each verified on arrival, never
   visible before it is complete, ``Store.remember``-ed as verified), then the store's fixes of objects that
   are there (``Store.fix``: S3 headers);
2. the check that every blob the new entries reference is in the store with
   its size, or nothing else is written;
3. the documents (``oci-layout``), then the family's index, read-modify-
   written under the store's lock by replaying the operations on whatever
   index is there at that moment (concurrent publishers of other tags lose
   nothing), then the well-known document, merged the same way;
4. optionally prune: blobs no index references any more, under the
   exclusive site lock.

Everything before prune happens under the store's shared site lock.
``Store.finish`` ends the commit (S3: the metadata ledger).

Blob sources: ``LayoutBlobs`` reads the controller's OCI layout (random
access); ``StreamBlobs`` reads the archive the controller sent to a host
(one pass, in order).

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.oci.discovery.plugins.module_utils import _registry
from ansible_collections.oci.discovery.plugins.module_utils._digests import digest_bytes, parse_digest
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_REF_ENGINES, DocumentError, load_json, validate_index,
    validate_manifest)
from ansible_collections.oci.discovery.plugins.module_utils._plan import (
    FAMILY_ANNOTATION, _pruning, load_index, tag_changes, tag_lines, update_index)
from ansible_collections.oci.discovery.plugins.module_utils._site import (
    PlanError, SiteLayout, recorded_layout, update_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._spec import (
    MAX_DOCUMENT_BYTES, MAX_INDEX_BYTES, MAX_REF_ENGINES_BYTES, WELL_KNOWN_KEY)


class LayoutBlobs:
    """The blobs of an OCI image layout on this machine, as a source for ``Store.put_blobs``.

    ``open(blob)`` opens one (random access, for stores that upload in
    parallel); ``items(blobs)`` yields ``(blob, fileobj)`` in order.
    ``delivered`` counts the blobs handed out.
    """

    def __init__(self, layout):
        self.layout = layout
        self.delivered = set()

    def open(self, blob: dict):
        fileobj = self.layout.open_blob(blob['digest'])   # the file checked inside the layout, opened once
        self.delivered.add(blob['digest'])
        return fileobj

    def items(self, blobs):
        for blob in blobs:
            with self.open(blob) as fileobj:
                yield blob, fileobj


class StreamBlobs:
    """Blobs arriving as ``(digest, fileobj)`` pairs, in any order, as a source for ``Store.put_blobs``.

    One pass: the archive the controller sent to a host
    (``StreamBlobs(_stores.read_blob_archive(f, what))``). A blob that was
    not planned is refused.
    """

    def __init__(self, pairs):
        self.pairs = pairs
        self.delivered = set()

    def items(self, blobs):
        wanted = dict((b['digest'], b) for b in blobs)
        for digest, fileobj in self.pairs:
            blob = wanted.pop(digest, None)
            if blob is None:
                raise PlanError('blob %s arrived but was not planned to be sent' % digest)
            self.delivered.add(digest)
            yield blob, fileobj


def _put_document(store, key: str, data: bytes, media_type: str) -> bool:
    """Write ``data`` at ``key`` unless it is there already; whether it was written."""
    before, after = store.update_document(key, lambda raw: data if raw != data else None, media_type,
                                          MAX_DOCUMENT_BYTES)
    return after is not before


def execute(store, plan: dict, source=None) -> dict:
    """Carry out ``plan`` (``_plan.commit_request``) on ``store``; return what was done (see ``_report``).

    ``source`` provides the blobs of ``plan['send']`` (``LayoutBlobs``,
    ``StreamBlobs``); it may be None when nothing is to be sent.
    """
    site = SiteLayout.from_dict(plan['site']) if plan.get('site') else None
    sent_bytes = 0
    result = {'changes': None}
    index_changed = well_known_changed = False
    before = after = None
    documents = 0
    with store.lock(False):
        if plan['send']:
            if source is None:
                raise PlanError('%d blob(s) to send but no source to read them from' % len(plan['send']))
            sent_bytes = store.put_blobs(plan['send'], source)
            store.remember(plan['send'])
        store.fix(plan.get('fix') or [])
        delivered = source.delivered if source is not None else set()
        require = plan['require']
        sizes = store.stat([r['key'] for r in require])
        for r in require:
            if sizes.get(r['key']) != r['size']:
                found = 'missing' if r['key'] not in sizes else 'has %d bytes instead of %d' % (sizes[r['key']], r['size'])
                planned = any(b['digest'] == r['digest'] for b in plan['send'])
                raise PlanError('blob %s (%s) is %s, so the index was not written%s'
                                % (r['digest'], store.describe(r['key']), found,
                                   ' (it was to be sent but did not arrive)' if planned and r['digest'] not in delivered
                                   else ' (was it removed by a concurrent prune? run the publish again)'))
        view = _registry.commit(store, plan.get('registry'), 'before_index')
        for doc in plan['documents']:
            documents += _put_document(store, doc['key'], doc['data'].encode('utf-8'), doc['media_type'])
        if site is not None:
            what = store.describe(site.index_key)

            def update(raw):
                new, result['changes'] = update_index(raw, plan['ops'], what, plan['force'], site.name.family,
                                                      site.kind)
                return new

            before, after = store.update_document(site.index_key, update, MT_INDEX, MAX_INDEX_BYTES)
            index_changed = after is not before
            after_index = _registry.commit(store, plan.get('registry'), 'after_index', after)
            view = dict((k, n + after_index[k]) for k, n in view.items())
        well_known = plan.get('well_known')
        if well_known is not None:
            wk_what = store.describe(WELL_KNOWN_KEY)
            wk = {}

            def update_wk(raw):
                new, wk['before'], wk['after'] = update_ref_engines(
                    raw, well_known['managed'], wk_what, exclusive=well_known['exclusive'], force=plan['force'])
                return new

            wk_before, wk_after = store.update_document(WELL_KNOWN_KEY, update_wk, MT_REF_ENGINES,
                                                        MAX_REF_ENGINES_BYTES)
            well_known_changed = wk_after is not wk_before
    pruned = None
    if plan.get('prune') is not None:
        pruned = prune(store, site, min_age=plan.get('prune_min_age') or 0, view=plan.get('registry'))
    store.finish()
    sent = len(plan['send'])
    done = {
        'changed': bool(sent or documents or index_changed or well_known_changed or plan.get('fix')
                        or _pruning(pruned) or any(view.values())),
        'changes': result['changes'],
        'index_changed': index_changed,
        'sent': sent,
        'sent_bytes': sent_bytes,
        'documents': documents,
        'prune': pruned,
        'registry': view,
        'diff': {'before': tag_lines(before), 'after': tag_lines(after)},
        'tag_changes': tag_changes(before, after, result['changes']),
        'well_known': {'changed': well_known_changed, 'before': wk.get('before'), 'after': wk.get('after')}
        if well_known is not None else None,
    }
    return done


# -- prune ----------------------------------------------------------------------

def _children(document, media_type):
    if media_type in INDEX_TYPES:
        return document.get('manifests') or []
    return [document['config']] + list(document.get('layers') or [])


def _index_site(site: SiteLayout, index: dict, what: str) -> SiteLayout:
    """Where the manifests an index at ``oci-index/`` names are stored: ``site``, or its family's own layout.

    A cas_bucket site may hold families published in the registry site layout
    (same index prefix, their blobs under ``v2/<name>/blobs/``): their manifests
    are read there, and what they reach still counts as referenced.
    """
    kind = recorded_layout(index)
    if kind == site.kind or site.kind == 'directories':
        return site
    family = (index.get('annotations') or {}).get(FAMILY_ANNOTATION)
    if not family:
        raise PlanError('cannot tell which blobs are unused: %s records site_layout %s but not its family'
                        % (what, kind))
    try:
        return SiteLayout(kind, family, base_url=site.base_url)
    except PlanError as e:
        raise PlanError('cannot tell which blobs are unused: %s: %s' % (what, e))


def _reachable(store, site: SiteLayout, index_keys, overrides, known, seen):
    """Every digest reachable from the indexes ``index_keys`` (``known`` digests count without being read).

    ``seen`` caches the children of the manifests read (digest -> descriptors),
    so a second walk over the same store reads nothing twice.
    """
    reachable = set(known)
    stack = []
    for key in sorted(index_keys):
        raw = overrides[key] if key in overrides else store.read(key, MAX_INDEX_BYTES)
        if raw is None:
            continue
        what = store.describe(key)
        index = load_index(raw, what)
        where = _index_site(site, index, what)
        stack.extend((entry, key, where) for entry in index['manifests'])
    while stack:
        desc, parent, where = stack.pop()
        digest = desc['digest']
        if digest in reachable:
            continue
        reachable.add(digest)
        media_type = desc['mediaType']
        if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
            continue
        if digest not in seen:
            seen[digest] = _children(_read_manifest(store, where.blob_key(digest), desc, parent), media_type)
        stack.extend((child, digest, where) for child in seen[digest])
    return reachable


def _read_manifest(store, key, desc, parent):
    digest = desc['digest']
    what = store.describe(key)
    raw = store.read(key, MAX_DOCUMENT_BYTES)
    if raw is None:
        raise PlanError('cannot tell which blobs are unused: %s (%s), referenced from %s, is missing'
                        % (digest, what, parent))
    if digest_bytes(raw, parse_digest(digest).algorithm) != digest or len(raw) != desc['size']:
        raise PlanError('cannot tell which blobs are unused: %s does not match its digest %s' % (what, digest))
    try:
        document = load_json(raw, what)
        (validate_index if desc['mediaType'] in INDEX_TYPES else validate_manifest)(document, what)
    except DocumentError as e:
        raise PlanError('cannot tell which blobs are unused: %s' % e)
    return document


def unreferenced(store, site: SiteLayout, *, view=None, overrides=None, known=(), min_age=0, now=None):
    """What prune removes: ``(blobs, view_objects)``, each ``[(key, size)]``.

    Blobs: under the site layout's blob prefix, referenced by no index. The
    roots are every index under ``site.index_prefix`` (CAS bucket: all
    families share the blobs) or the family's own index (directories,
    registry); ``overrides`` replaces an index's bytes (a planned index),
    ``known`` digests count as referenced without being read. Manifests and
    nested indexes are read from the store and verified. Anything that makes
    the answer uncertain (an index or a referenced manifest missing, invalid
    or corrupt) is a PlanError, and nothing should be removed. Objects
    younger than ``min_age`` seconds are kept (for stores without a site lock).

    View objects (``view``: the plan's registry view): the manifests by
    digest (and, objects flavour, the blob copies) under ``v2/<name>/`` that
    the family's own index no longer reaches (tags are removed with their tag).
    """
    overrides = overrides or {}
    index_keys = set(overrides)
    if site.index_prefix:
        index_keys.update(key for key, dummy, dummy2 in store.list(site.index_prefix))
    else:
        index_keys.add(site.index_key)
    seen = {}
    reachable = _reachable(store, site, index_keys, overrides, known, seen)
    now = time.time() if now is None else now
    unused = []
    for key, size, mtime in store.list(site.blob_prefix):
        digest = site.digest_of_key(key)
        if digest is None or digest in reachable or now - mtime < min_age:
            continue
        unused.append((key, size))
    view_unused = []
    if view and view.get('name'):
        family = reachable if not site.index_prefix else \
            _reachable(store, site, [site.index_key], overrides, known, seen)
        removed = set(key for key, dummy in unused)
        for key, size, mtime in store.list(_registry.name_prefix(view['name'])):
            digest = _registry.digest_of_key(view['name'], key, view.get('flavour'))
            if digest is None or digest in family or key in removed or key.startswith(site.blob_prefix) \
                    or now - mtime < min_age:
                continue
            view_unused.append((key, size))
    return unused, view_unused


def unreferenced_blobs(store, site: SiteLayout, **kwargs) -> list:
    """The blobs of ``unreferenced`` alone: ``[(key, size)]``."""
    return unreferenced(store, site, **kwargs)[0]


def prune(store, site: SiteLayout, min_age: int = 0, view=None) -> dict:
    """Remove unreferenced blobs (and view objects) under the exclusive site lock.

    Returns ``{'blobs': n, 'bytes': n, 'registry_objects': n}``.
    """
    with store.lock(True):
        unused, view_unused = unreferenced(store, site, view=view, min_age=min_age)
        for key, dummy in unused + view_unused:
            store.delete(key)
    return {'blobs': len(unused), 'bytes': sum(size for dummy, size in unused), 'registry_objects': len(view_unused)}


__all__ = ['LayoutBlobs', 'StreamBlobs', 'execute', 'prune', 'unreferenced', 'unreferenced_blobs']
