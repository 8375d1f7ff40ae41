# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of a publish: what the chosen tags mean, what the store has, what to do.

Plain functions over plain data (dicts and lists that survive JSON, so a
plan made on the controller can be carried out on a managed host):

* ``tag_pairs(option, layout_tags)``: the ``(source tag, published tag)``
  pairs a ``tags`` option selects, each tag validated;
* ``publication(layout, site, pairs)``: the validated layout's tags as index
  entries and the blobs they reach, children before parents;
* ``index_ops(...)`` / ``update_index(raw, ops, ...)``: the edits to a
  family's index, as a pure function replayed under the store's lock;
* ``probe_request(...)`` / ``probe(store, request)``: the little the plan
  needs to know about the store (read-only);
* ``make_plan(...)``: what to send, which documents to write, what changes.

``_commit.execute`` carries a plan out; ``_publish.run`` is the sequence
that calls these in order, for every store.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import copy

from ansible_collections.oci.discovery.plugins.module_utils import _registry
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    MT_INDEX, MT_LAYOUT_HEADER, MT_REF_ENGINES, REF_NAME, DocumentError, canonical_json, index_entries,
    index_remove_tag, index_set_tag, load_json, new_index, validate_index)
from ansible_collections.oci.discovery.plugins.module_utils._names import InvalidName, safe_tag
from ansible_collections.oci.discovery.plugins.module_utils._site import (
    LAYOUT_ANNOTATION, PlanError, SiteLayout, check_index_layout, update_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._spec import (
    LAYOUT_VERSION, MAX_DOCUMENT_BYTES, MAX_INDEX_BYTES, MAX_REF_ENGINES_BYTES, WELL_KNOWN_KEY)

LAYOUT_HEADER = {'imageLayoutVersion': LAYOUT_VERSION}
# The top-level annotation of a published index naming the family (host/path) it belongs to.
FAMILY_ANNOTATION = 'io.github.oci-discovery.family'


# -- options ------------------------------------------------------------------

# -- options ------------------------------------------------------------------

def tag_pairs(option, available=None) -> list:
    """The ``(source tag, published tag)`` pairs selected by a ``tags`` option.

    ``option`` is None (every tag of ``available``, the layout's tags) or a
    list whose items are a tag or ``{'src': tag, 'dest': tag}`` (publish
    ``src`` under the name ``dest``; ``dest`` defaults to ``src``). Tags taken
    from the layout are checked exactly like tags given in the option.
    """
    if option is None:
        if available is None:
            raise PlanError('no tags given and no layout to take them from')
        if not available:
            raise PlanError('the layout has no tagged images (no org.opencontainers.image.ref.name in index.json)')
        option, label = list(available), 'the layout\'s tag %d (index.json; the tags option chooses others)'
    elif isinstance(option, (str, bytes, dict)) or not isinstance(option, (list, tuple)):
        raise PlanError('tags must be a list of tags or {src, dest} mappings, got %r' % (option,))
    elif not option:
        raise PlanError('tags is an empty list: name at least one tag, or leave tags out for all')
    else:
        label = 'tags[%d]'
    pairs, seen = [], {}
    for i, item in enumerate(option):
        if isinstance(item, str):
            src = dest = item
        elif isinstance(item, dict):
            unknown = sorted(set(item) - set(('src', 'dest')))
            if unknown or 'src' not in item:
                raise PlanError('tags[%d] %r: expected a tag or a mapping with src and optional dest' % (i, item))
            src = item['src']
            dest = item.get('dest')
            if dest is None:
                dest = src
        else:
            raise PlanError('%s %r: expected a tag or a mapping with src and optional dest' % (label % i, item))
        try:
            safe_tag(src)
            safe_tag(dest)
        except InvalidName as e:
            raise PlanError('%s: %s' % (label % i, e))
        if dest in seen:
            raise PlanError('tag %r is published twice (from %r and from %r)' % (dest, seen[dest], src))
        seen[dest] = src
        pairs.append((src, dest))
    return pairs


# -- what to publish ----------------------------------------------------------------

def publication(layout, site: SiteLayout, pairs, verify: bool = True) -> dict:
    """Validate the layout for the chosen tags and list what publishing them means.

    Returns ``{'entries': [[tag, [entry, ...]], ...], 'blobs': [blob, ...],
    'bytes': total, 'sources': [layout tag, ...]}``: the published tag names
    with their index entries (casEngines added) and every reachable blob,
    children before parents, each as ``{'digest', 'size', 'mediaType', 'key'}``.
    Without ``verify`` only the manifests and indexes are verified (the walk
    reads them); the caller verifies the other blobs later
    (``Layout.validate(pub['sources'], skip=...)``).
    """
    sources = []
    for src, dummy in pairs:
        if src not in sources:
            sources.append(src)
    if verify:
        layout.validate(sources)
    entries, roots = [], []
    for src, dest in pairs:
        descriptors = layout.descriptors(src)
        roots.extend(descriptors)
        entries.append([dest, [site.entry(d) for d in descriptors]])
    blobs = [{'digest': d['digest'], 'size': d['size'], 'mediaType': d['mediaType'],
              'key': site.blob_key(d['digest'])} for d in layout.walk(roots)]
    return {'entries': entries, 'blobs': blobs, 'bytes': sum(b['size'] for b in blobs), 'sources': sources}


def index_ops(state: str, entries=None, tags=None) -> list:
    """The index operations: set each published tag's entries, or remove tags."""
    if state == 'present':
        return [{'op': 'set', 'tag': tag, 'entries': list(items)} for tag, items in entries]
    if state == 'absent':
        return [{'op': 'remove', 'tag': tag} for tag in tags]
    raise PlanError('unknown state %r' % (state,))


def probe_request(site: SiteLayout, ops: list, blobs=(), *, prune: bool = False, force: bool = False,
                  well_known: bool = False, view: dict = None) -> dict:
    """What ``probe`` must look at: sizes of the blobs, the documents, prune candidates, the registry ``view``.

    ``site`` is None when only the well-known document is published.
    """
    read = []
    if site is not None:
        read.append(site.index_key)
        if site.header_key:
            read.append(site.header_key)
    if well_known:
        read.append(WELL_KNOWN_KEY)
    return {'site': site.to_dict() if site is not None else None,
            'blobs': [{'key': b['key'], 'digest': b['digest'], 'size': b['size']} for b in blobs],
            'read': read, 'ops': ops, 'force': bool(force),
            'prune': {'known': sorted(set(b['digest'] for b in blobs))} if prune else None,
            'registry': _registry.probe_request(view)}


def _document_types(site, read):
    """The media type of each document a probe reads (what a store serves it as)."""
    types = {WELL_KNOWN_KEY: MT_REF_ENGINES}
    if site is not None:
        types[site.index_key] = MT_INDEX
        if site.header_key:
            types[site.header_key] = MT_LAYOUT_HEADER
    return dict((key, types[key]) for key in read if key in types)


def probe(store, request: dict, blobs=None) -> dict:
    """Look at the store (read-only): ``{'sizes': {key: size}, 'documents': {key: base64 or None}}``.

    Also ``'corrupt'``: the keys of blobs that are there with the right size but
    not the right content (``Store.corrupt``), to be sent again.

    Also ``'fix'``: what the store finds wrong with objects that are there
    (``Store.inspect``; S3: blobs and documents served with the wrong
    headers), given ``blobs``, the planned blob dicts (the request has only
    their keys, digests and sizes: enough for stores that inspect nothing). With a prune request, also ``'prune':
    {'blobs': n, 'bytes': n}`` (what prune would remove once the planned
    index is in place) or ``'prune_error'``.
    """
    from ansible_collections.oci.discovery.plugins.module_utils._commit import unreferenced
    store.check()
    site = SiteLayout.from_dict(request['site']) if request.get('site') else None
    planned = request['blobs'] if blobs is None else blobs
    view = request.get('registry')
    stat = [b['key'] for b in request['blobs']]
    if view and site is not None and site.blob_prefix.startswith(_registry.name_prefix(view['name'])):
        stat = stat + view['keys'] + view['copies']     # registry site layout: one LIST of v2/<name>/ for both
    sizes = store.stat(stat)
    documents = {}
    for key in request['read']:
        data = store.read(key, MAX_REF_ENGINES_BYTES if key == WELL_KNOWN_KEY else MAX_INDEX_BYTES)
        documents[key] = None if data is None else base64.b64encode(data).decode('ascii')
    present = [b for b in planned if sizes.get(b['key']) == b['size']]
    result = {'sizes': sizes, 'documents': documents}
    corrupt = store.corrupt(present)
    if corrupt:
        result['corrupt'] = corrupt
        present = [b for b in present if b['key'] not in corrupt]
    if request.get('registry'):
        result['registry'] = _registry.probe(store, request['registry'], MAX_DOCUMENT_BYTES)
    fix = store.inspect(present, _document_types(site, request['read'])) + _registry.inspect(store, view)
    if fix:
        result['fix'] = fix
    if request.get('prune') is not None:
        raw = _decode(documents.get(site.index_key))
        try:
            new, dummy = update_index(raw, request['ops'], store.describe(site.index_key), request['force'],
                                      site.name.family, site.kind)
            overrides = {site.index_key: new if new is not None else raw}
            candidates, view_candidates = unreferenced(store, site, view=request.get('registry'), overrides=overrides,
                                                       known=request['prune']['known'])
        except PlanError as e:
            result['prune_error'] = str(e)
        else:
            result['prune'] = {'blobs': len(candidates), 'bytes': sum(size for key, size in candidates),
                               'registry_objects': len(view_candidates)}
    return result


def _decode(b64):
    return None if b64 is None else base64.b64decode(b64)


# -- index documents ------------------------------------------------------------------

def load_index(raw: bytes, what: str) -> dict:
    """Parse and validate an image index; PlanError naming ``what`` when it is not one."""
    try:
        return validate_index(load_json(raw, what, max_bytes=MAX_INDEX_BYTES), what)
    except DocumentError as e:
        raise PlanError(str(e))


def update_index(raw: bytes, ops: list, what: str, force: bool = False, family: str = None, kind: str = None):
    """Apply ``ops`` to the index document ``raw`` (bytes or None when there is none).

    Returns ``(new_bytes, changes)``; ``new_bytes`` is None when nothing has
    to be written. ``changes`` lists the tags ``added``, ``updated``,
    ``removed`` and ``unchanged`` (a removed tag that was not there is
    ``unchanged`` too), and ``replaced_invalid`` when an invalid existing
    document was replaced (only with ``force``; otherwise that is a
    PlanError naming ``what``). A pure function: the store may call it again
    after a concurrent change.

    ``family`` (``host/path``) is recorded in the index's top-level
    FAMILY_ANNOTATION whenever the index is written. Index keys leave out the
    host (``a.example.com/app`` and ``b.example.com/app`` both have
    ``oci-index/app``), so an index recorded for another family is a
    PlanError naming both; an index without the record is adopted. The check
    runs where the store calls this function, under its index lock, so it
    is atomic with the write.

    ``kind`` (the site layout) is checked the same way against the layout the
    index records (``_site.check_index_layout``) and recorded
    (LAYOUT_ANNOTATION) when it is ``registry``.
    """
    changes = {'added': [], 'updated': [], 'removed': [], 'unchanged': [], 'replaced_invalid': None}
    index = None
    if raw is not None:
        try:
            index = load_index(raw, what)
        except PlanError as e:
            if not force:
                raise PlanError('%s; refusing to overwrite it (force=true replaces it)' % e)
            changes['replaced_invalid'] = str(e)
    owner = _family_of(index)
    if family is not None and owner is not None and owner != family:
        raise PlanError('%s is the index of %s, not of %s: index keys leave out the host, so the two names '
                        'would share it; publish %s into a web root or bucket of its own'
                        % (what, owner, family, family))
    if kind is not None:
        check_index_layout(index, kind, what)
    work = copy.deepcopy(index) if index is not None else new_index()
    for op in ops:
        tag = op['tag']
        if op['op'] == 'set':
            existed = bool(index_entries(work, tag))
            try:
                changed = index_set_tag(work, tag, op['entries'])
            except DocumentError as e:
                raise PlanError(str(e))
            key = 'unchanged' if not changed else ('updated' if existed else 'added')
        elif op['op'] == 'remove':
            key = 'removed' if index_remove_tag(work, tag) else 'unchanged'
        else:
            raise PlanError('unknown index operation %r' % (op['op'],))
        changes[key].append(tag)
    if index is not None and work == index:
        return None, changes
    if index is None and raw is None and not (changes['added'] or changes['updated']):
        return None, changes  # removing tags from an index that does not exist
    if family is not None:
        annotations = work.get('annotations')
        if not isinstance(annotations, dict):
            annotations = work['annotations'] = {}
        annotations[FAMILY_ANNOTATION] = family
    if kind == 'registry':
        work.setdefault('annotations', {})[LAYOUT_ANNOTATION] = kind
    elif kind is not None and isinstance(work.get('annotations'), dict):
        work['annotations'].pop(LAYOUT_ANNOTATION, None)      # an empty index adopted by another layout
    return canonical_json(work), changes


def _family_of(index):
    """The family an index was published for (FAMILY_ANNOTATION), or None."""
    annotations = index.get('annotations') if isinstance(index, dict) else None
    return annotations.get(FAMILY_ANNOTATION) if isinstance(annotations, dict) else None


def tag_changes(before: bytes, after: bytes, changes: dict) -> dict:
    """``{tag: {'before': [digest, ...], 'after': [digest, ...]}}`` for the tags added, updated or removed."""
    def digests(raw, tag):
        if raw is None:
            return []
        try:
            index = load_json(raw, 'index')
            return [e.get('digest') for e in index_entries(index, tag)]
        except (DocumentError, AttributeError, TypeError):
            return []
    tags = (changes or {}).get('added', []) + (changes or {}).get('updated', []) + (changes or {}).get('removed', [])
    return dict((tag, {'before': digests(before, tag), 'after': digests(after, tag)}) for tag in tags)


def tag_lines(raw: bytes) -> str:
    """One line per index entry, for diffs: ``tag digest [platform]``."""
    if raw is None:
        return ''
    try:
        index = load_json(raw, 'index')
        entries = index.get('manifests') or []
    except (DocumentError, AttributeError):
        return '(not a valid image index)\n'
    lines = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        tag = (entry.get('annotations') or {}).get(REF_NAME, '(untagged)')
        line = '%s %s' % (tag, entry.get('digest'))
        platform = entry.get('platform')
        if isinstance(platform, dict):
            line += ' %s/%s%s' % (platform.get('os'), platform.get('architecture'),
                                  '/' + platform['variant'] if platform.get('variant') else '')
        lines.append(line + '\n')
    return ''.join(lines)


# -- the plan -----------------------------------------------------------------

def make_plan(site: SiteLayout, ops: list, pub: dict, probed: dict, *, describe=None, force: bool = False,
              prune: bool = False, prune_min_age: int = 0, well_known: dict = None, view: dict = None) -> dict:
    """Decide what a commit does, from what the probe saw.

    ``site`` is None when only the well-known document is published; ``pub``
    is the ``publication()`` (None when only removing tags), ``probed`` the
    ``probe()`` result, ``describe(key)`` names a key for messages.
    ``well_known`` is ``{'managed': ref-engines object, 'exclusive': bool}``
    to merge into the well-known document last, or None; ``view`` the registry
    view (``_registry.for_ops``) or None. Returns a JSON-safe
    dict that ``_commit.execute`` carries out and ``_report`` reports.
    """
    describe = describe or (lambda key: key)
    blobs = pub['blobs'] if pub else []
    sizes = probed['sizes']
    documents = probed['documents']
    corrupt = set(probed.get('corrupt') or ())
    send = [b for b in blobs if sizes.get(b['key']) != b['size'] or b['key'] in corrupt]
    plan = {
        'site': site.to_dict() if site is not None else None,
        'ops': ops,
        'force': bool(force),
        'send': send,
        'send_bytes': sum(b['size'] for b in send),
        'corrupt': sorted(describe(key) for key in corrupt),    # for the report
        'require': [{'key': b['key'], 'digest': b['digest'], 'size': b['size']} for b in blobs],
        'documents': [],
        'fix': probed.get('fix') or [],
        'index_changed': False,
        'changes': {'added': [], 'updated': [], 'removed': [], 'unchanged': [], 'replaced_invalid': None},
        'digests': dict((op['tag'], [e['digest'] for e in op['entries']]) for op in ops if op['op'] == 'set'),
        'prune': None,
        'prune_min_age': prune_min_age,
        'diff': {'before': '', 'after': ''},
        'tag_changes': {},
        'well_known': None,
        'registry': None,
    }
    if site is not None:
        raw_index = _decode(documents.get(site.index_key))
        new_index_bytes, plan['changes'] = update_index(raw_index, ops, describe(site.index_key), force,
                                                        site.name.family, site.kind)
        plan['index_changed'] = new_index_bytes is not None
        plan['diff'] = {'before': tag_lines(raw_index),
                        'after': tag_lines(new_index_bytes if new_index_bytes is not None else raw_index)}
        plan['tag_changes'] = tag_changes(raw_index, new_index_bytes if new_index_bytes is not None else raw_index,
                                          plan['changes'])
        plan['registry'] = _registry.settle(view, probed.get('registry'),
                                            new_index_bytes if new_index_bytes is not None else raw_index)
        if site.header_key and new_index_bytes is not None \
                and not _is_layout_header(_decode(documents.get(site.header_key))):
            plan['documents'].append({'key': site.header_key, 'data': canonical_json(LAYOUT_HEADER).decode('utf-8'),
                                      'media_type': MT_LAYOUT_HEADER})
    if prune:
        if 'prune_error' in probed:
            raise PlanError('prune: %s' % probed['prune_error'])
        plan['prune'] = probed.get('prune') or {'blobs': 0, 'bytes': 0, 'registry_objects': 0}
    wk_changed = False
    if well_known is not None:
        new, before, after = update_ref_engines(_decode(documents.get(WELL_KNOWN_KEY)), well_known['managed'],
                                                describe(WELL_KNOWN_KEY), exclusive=well_known['exclusive'], force=force)
        wk_changed = new is not None
        plan['well_known'] = dict(well_known, changed=wk_changed, before=before, after=after)
    plan['changed'] = bool(send or plan['documents'] or plan['index_changed'] or plan['fix'] or wk_changed
                           or _pruning(plan['prune']) or _registry.changed(plan['registry']))
    return plan


# What a commit needs of a plan (the rest is for reporting where the plan was made).
COMMIT_KEYS = ('site', 'ops', 'force', 'send', 'require', 'documents', 'fix', 'prune', 'prune_min_age', 'well_known',
               'registry')


def commit_request(plan: dict) -> dict:
    """The part of ``plan`` that ``_commit.execute`` reads (what crosses the wire to a host)."""
    request = dict((k, plan[k]) for k in COMMIT_KEYS)
    if request['well_known'] is not None:
        request['well_known'] = {'managed': plan['well_known']['managed'],
                                 'exclusive': plan['well_known']['exclusive']}
    return request


def _pruning(pruned):
    """Whether a prune (planned or done) removes anything."""
    return bool(pruned and (pruned['blobs'] or pruned.get('registry_objects')))


def _is_layout_header(raw):
    if raw is None:
        return False
    try:
        return load_json(raw, 'oci-layout') == LAYOUT_HEADER
    except DocumentError:
        return False


__all__ = ['COMMIT_KEYS', 'FAMILY_ANNOTATION', 'LAYOUT_HEADER', 'PlanError', 'commit_request', 'index_ops', 'load_index',
           'make_plan', 'probe', 'probe_request', 'publication', 'tag_changes', 'tag_lines', 'tag_pairs', 'update_index']
