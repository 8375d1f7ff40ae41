# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publishing, whatever the store: read a layout, plan, commit in a safe order.

The steps, each a plain function over plain data (dicts and lists that
survive JSON, so a plan made on the controller can be carried out by a
module on a managed host):

1. ``Mapping(mode, name, base_url, ...)``: where things go. Two publishing
   modes (DISCOVERY.md section 7): ``cas_bucket`` (indexes at
   ``oci-index/{path}``, every family's blobs shared at
   ``oci-cas/{algorithm}/{encoded:2}/{encoded}``) and ``directories`` (one OCI
   layout per family at ``oci-image/{path}/``). The mapping turns digests and
   families into store keys and gives the casEngines entry written into
   every published index entry. ``Mapping.check_templates()`` refuses
   templates that would not point consumers at the keys written.
2. ``tag_pairs(option, layout_tags)`` and ``publication(layout, mapping,
   pairs)``: the validated layout's tags as index entries and the blobs they
   reach, children before parents (layers and configs, then manifests, then
   indexes).
3. ``probe_request(...)`` / ``probe(store, request)``: the little the plan
   needs to know about the store (which blobs exist with which size, the
   current index). Read-only.
4. ``make_plan(...)``: what to send, the index operations, what changes.
5. ``execute(store, plan, blobs)``: commit: blobs (verified on arrival),
   then documents (``oci-layout``), then the index, merged under the store's
   lock by replaying the operations on whatever index is there at that
   moment, so concurrent publishers of other tags lose nothing. Optionally
   prune blobs no index references any more.

Ref-engines documents (the well-known file) are planned here too
(``default_ref_engines``, ``update_ref_engines``) so every store writes them
the same way.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import copy
import time

from urllib.parse import quote, unquote, urlsplit

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    DigestError, digest_bytes, parse_digest)
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_LAYOUT_HEADER, MT_REF_ENGINES, REF_NAME,
    DocumentError, canonical_json, index_entries, index_remove_tag, index_set_tag, load_json,
    merge_ref_engines, new_index, validate_index, validate_manifest, validate_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._names import (
    ImageName, InvalidName, parse_name, safe_relpath, safe_tag)

MODES = ('cas_bucket', 'directories')
INDEX_PROTOCOL = 'oci-index-template-v1'
CAS_PROTOCOL = 'oci-cas-template-v1'
WELL_KNOWN_KEY = '.well-known/oci-host-ref-engines'
LAYOUT_HEADER = {'imageLayoutVersion': '1.0.0'}
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_REF_ENGINES_BYTES = 1024 * 1024
# Names that a family path may not use as a segment in the directories mode:
# they are the files and directories of the layout served for another family.
_LAYOUT_NAMES = ('blobs', 'index.json', 'oci-layout')
# Characters kept as they are when a name path is copied into a URL or a
# template literal: RFC 3986 pchar and "/" minus "'" (not allowed in RFC 6570 literals).
_PATH_SAFE = "/:@!$&()*+,;=-._~"
_BAD_BASE_CHARS = frozenset(' "\'<>\\^`{|}%')


class PlanError(ValueError):
    """Publishing cannot go ahead; the message names the tag, file, template or digest."""


# -- options ------------------------------------------------------------------

def tag_pairs(option, available=None):
    """The ``(source tag, published tag)`` pairs selected by a ``tags`` option.

    ``option`` is None (every tag of ``available``, the layout's tags) or a
    list whose items are a tag or ``{'src': tag, 'dest': tag}`` (publish
    ``src`` under the name ``dest``; ``dest`` defaults to ``src``).
    """
    if option is None:
        if available is None:
            raise PlanError('no tags given and no layout to take them from')
        if not available:
            raise PlanError('the layout has no tagged images (no org.opencontainers.image.ref.name in index.json)')
        return [(tag, tag) for tag in available]
    if isinstance(option, (str, bytes, dict)) or not isinstance(option, (list, tuple)):
        raise PlanError('tags must be a list of tags or {src, dest} mappings, got %r' % (option,))
    if not option:
        raise PlanError('tags is an empty list: name at least one tag, or leave tags out for all')
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
            raise PlanError('tags[%d] %r: expected a tag or a mapping with src and optional dest' % (i, item))
        try:
            safe_tag(src)
            safe_tag(dest)
        except InvalidName as e:
            raise PlanError('tags[%d]: %s' % (i, e))
        if dest in seen:
            raise PlanError('tag %r is published twice (from %r and from %r)' % (dest, seen[dest], src))
        seen[dest] = src
        pairs.append((src, dest))
    return pairs


def check_base_url(url):
    """Return the public base URL of a site without a trailing slash, or raise PlanError."""
    if not isinstance(url, str) or not url:
        raise PlanError('base_url must be a non-empty URL such as https://example.com, got %r' % (url,))
    bad = sorted(set(c for c in url if c in _BAD_BASE_CHARS or ord(c) < 0x21 or ord(c) == 0x7f))
    if bad:
        raise PlanError('base_url %r contains characters not allowed there: %s' % (url, ' '.join(repr(c) for c in bad)))
    parts = urlsplit(url)
    if parts.scheme not in ('https', 'http') or not parts.netloc:
        raise PlanError('base_url %r must be an absolute http(s) URL such as https://example.com' % url)
    if parts.query or parts.fragment or '?' in url or '#' in url:
        raise PlanError('base_url %r must not have a query or a fragment' % url)
    if '@' in parts.netloc:
        raise PlanError('base_url %r must not contain user information' % url)
    return url.rstrip('/')


def _url_path(text):
    return quote(text, safe=_PATH_SAFE)


def _same_url(a, b):
    """Equal once percent-escapes are decoded (web servers and S3 decode them before the lookup)."""
    return unquote(a) == unquote(b)


# -- mapping --------------------------------------------------------------------

class Mapping:
    """Where a family's documents and blobs go in a store, and the templates that find them.

    ``mode`` is ``cas_bucket`` or ``directories``; ``name`` an image family
    (``example.com/team/app``, no fragment); ``base_url`` the public URL of
    the store's root (default ``https://<host of name>``). ``cas_template``
    and ``index_template`` override the defaults written for consumers.
    """

    def __init__(self, mode, name, base_url=None, cas_template=None, index_template=None):
        if mode not in MODES:
            raise PlanError('unknown site layout %r (choose %s)' % (mode, ' or '.join(MODES)))
        self.mode = mode
        if not isinstance(name, ImageName):
            try:
                name = parse_name(name)
            except InvalidName as e:
                raise PlanError(str(e))
        if name.fragment or '#' in name.name:
            raise PlanError('name %r: give the image family without "#fragment" (for example %s) and '
                            'choose tags with the tags option' % (name.name, name.family))
        try:
            self.path = safe_relpath(name.path)
        except InvalidName as e:
            raise PlanError(str(e))
        if mode == 'directories':
            for segment in self.path.split('/'):
                if segment in _LAYOUT_NAMES:
                    raise PlanError('name %r: a path segment %r would collide with the files of a served '
                                    'layout in the directories site layout' % (name.name, segment))
        self.name = name
        self.base_url = check_base_url(base_url if base_url else 'https://%s' % name.host)
        self._custom = {'cas_template': cas_template, 'index_template': index_template}
        self.cas_template = cas_template or self._default_cas_template()
        self.index_template = index_template or self._default_index_template()
        for option in ('cas_template', 'index_template'):
            value = getattr(self, option)
            if not isinstance(value, str) or not value:
                raise PlanError('%s must be a non-empty URI template, got %r' % (option, value))

    def to_dict(self):
        """The arguments that rebuild this mapping (``Mapping.from_dict``)."""
        return {'mode': self.mode, 'name': self.name.family, 'base_url': self.base_url,
                'cas_template': self._custom['cas_template'], 'index_template': self._custom['index_template']}

    @classmethod
    def from_dict(cls, data):
        return cls(data['mode'], data['name'], data.get('base_url'), data.get('cas_template'),
                   data.get('index_template'))

    # keys -----------------------------------------------------------------

    @property
    def family_dir(self):
        """The key prefix of the family's layout (directories mode only)."""
        return 'oci-image/%s/' % self.path

    @property
    def index_key(self):
        if self.mode == 'cas_bucket':
            return 'oci-index/%s' % self.path
        return self.family_dir + 'index.json'

    @property
    def header_key(self):
        """The ``oci-layout`` file of a served layout, or None in the CAS-bucket mode."""
        return self.family_dir + 'oci-layout' if self.mode == 'directories' else None

    @property
    def blob_prefix(self):
        return 'oci-cas/' if self.mode == 'cas_bucket' else self.family_dir + 'blobs/'

    @property
    def index_prefix(self):
        """The key prefix of every index that may reference this mapping's blobs (None: only ours)."""
        return 'oci-index/' if self.mode == 'cas_bucket' else None

    def blob_key(self, digest):
        d = parse_digest(digest)
        if self.mode == 'cas_bucket':
            return 'oci-cas/%s/%s/%s' % (d.algorithm, d.encoded[:2], d.encoded)
        return '%s%s/%s' % (self.blob_prefix, d.algorithm, d.encoded)

    def digest_of_key(self, key):
        """The digest a blob key stands for, or None for anything else under the blob prefix."""
        if not key.startswith(self.blob_prefix):
            return None
        parts = key[len(self.blob_prefix):].split('/')
        if self.mode == 'cas_bucket':
            if len(parts) != 3 or parts[2][:2] != parts[1]:
                return None
            parts = [parts[0], parts[2]]
        if len(parts) != 2:
            return None
        try:
            return str(parse_digest('%s:%s' % tuple(parts)))
        except DigestError:
            return None

    # URLs and templates ---------------------------------------------------

    def url(self, key):
        return '%s/%s' % (self.base_url, _url_path(key))

    @property
    def index_url(self):
        return self.url(self.index_key)

    def _default_cas_template(self):
        if self.mode == 'cas_bucket':
            return self.base_url + '/oci-cas/{algorithm}/{encoded:2}/{encoded}'
        return '%s/%sblobs/{algorithm}/{encoded}' % (self.base_url, _url_path(self.family_dir))

    def _default_index_template(self):
        if self.mode == 'cas_bucket':
            return self.base_url + '/oci-index/{path}'
        return self.base_url + '/oci-image/{path}/index.json'

    def cas_engines(self):
        return [{'protocol': CAS_PROTOCOL, 'uri': self.cas_template}]

    def entry(self, descriptor):
        """A layout index.json entry as published: a copy with our casEngines added."""
        entry = copy.deepcopy(descriptor)
        engines = entry.get('casEngines')
        engines = list(engines) if isinstance(engines, list) else []
        for engine in self.cas_engines():
            if engine not in engines:
                engines.append(engine)
        entry['casEngines'] = engines
        return entry

    def check_templates(self, sample_digest=None):
        """Refuse templates that would not lead consumers to what is published.

        The index template is expanded for this family and resolved against
        the well-known document's URL; the CAS template for a blob and
        resolved against the index URL (DISCOVERY.md sections 3-4). Each must
        give the URL of the key written, under ``base_url``. Needs the
        ``uritemplate`` package (controller side).
        """
        from ansible_collections.oci.discovery.plugins.module_utils._templates import (
            TemplateError, expand_uri)
        digest = parse_digest(sample_digest or digest_bytes(b''))
        variables = self.name.variables()
        try:
            index_url = expand_uri(self.index_template, variables, base=self.url(WELL_KNOWN_KEY))
        except TemplateError as e:
            raise PlanError('index_template: %s' % e)
        if not _same_url(index_url, self.index_url):
            raise PlanError('index_template %r gives %s for %s, but the index is published at %s '
                            '(base_url %s): the template does not match the site'
                            % (self.index_template, index_url, self.name.family, self.index_url, self.base_url))
        variables.update(digest.variables())
        try:
            blob_url = expand_uri(self.cas_template, variables, base=self.index_url)
        except TemplateError as e:
            raise PlanError('cas_template: %s' % e)
        expected = self.url(self.blob_key(digest))
        if not _same_url(blob_url, expected):
            raise PlanError('cas_template %r gives %s for blob %s, but blobs are published at %s '
                            '(base_url %s): the template does not match the site'
                            % (self.cas_template, blob_url, digest, expected, self.base_url))


# -- what to publish ----------------------------------------------------------------

def publication(layout, mapping, pairs):
    """Validate the layout for the chosen tags and list what publishing them means.

    Returns ``{'entries': [[tag, [entry, ...]], ...], 'blobs': [blob, ...],
    'bytes': total}``: the published tag names with their index entries
    (casEngines added) and every reachable blob, children before parents,
    each as ``{'digest', 'size', 'mediaType', 'key'}``.
    """
    sources = []
    for src, dummy in pairs:
        if src not in sources:
            sources.append(src)
    layout.validate(sources)
    entries, roots = [], []
    for src, dest in pairs:
        descriptors = layout.descriptors(src)
        roots.extend(descriptors)
        entries.append([dest, [mapping.entry(d) for d in descriptors]])
    blobs = [{'digest': d['digest'], 'size': d['size'], 'mediaType': d['mediaType'],
              'key': mapping.blob_key(d['digest'])} for d in layout.walk(roots)]
    return {'entries': entries, 'blobs': blobs, 'bytes': sum(b['size'] for b in blobs)}


def index_ops(state, entries=None, tags=None):
    """The index operations: set each published tag's entries, or remove tags."""
    if state == 'present':
        return [{'op': 'set', 'tag': tag, 'entries': list(items)} for tag, items in entries]
    if state == 'absent':
        return [{'op': 'remove', 'tag': tag} for tag in tags]
    raise PlanError('unknown state %r' % (state,))


def _prune_spec(mapping, blobs=()):
    return {'known': sorted(set(b['digest'] for b in blobs))}


def probe_request(mapping, ops, blobs=(), prune=False, force=False):
    """What ``probe`` must look at: sizes of the blobs, the documents, prune candidates."""
    read = [mapping.index_key]
    if mapping.header_key:
        read.append(mapping.header_key)
    return {'mapping': mapping.to_dict(), 'stat': [b['key'] for b in blobs], 'read': read,
            'ops': ops, 'force': bool(force), 'prune': _prune_spec(mapping, blobs) if prune else None}


def probe(store, request):
    """Look at the store (read-only): ``{'sizes': {key: size}, 'documents': {key: base64 or None}}``.

    With a prune request, also ``'prune': {'blobs': n, 'bytes': n}`` (what
    prune would remove once the planned index is in place) or
    ``'prune_error'``.
    """
    sizes = store.stat(request['stat'])
    documents = {}
    for key in request['read']:
        data = store.read(key, MAX_INDEX_BYTES)
        documents[key] = None if data is None else base64.b64encode(data).decode('ascii')
    result = {'sizes': sizes, 'documents': documents}
    if request.get('prune') is not None:
        mapping = Mapping.from_dict(request['mapping'])
        raw = _decode(documents.get(mapping.index_key))
        try:
            new, dummy = update_index(raw, request['ops'], store.describe(mapping.index_key), request['force'])
            overrides = {mapping.index_key: new if new is not None else raw}
            candidates = unreferenced_blobs(store, mapping, overrides, request['prune']['known'])
        except PlanError as e:
            result['prune_error'] = str(e)
        else:
            result['prune'] = {'blobs': len(candidates), 'bytes': sum(size for key, size in candidates)}
    return result


def _decode(b64):
    return None if b64 is None else base64.b64decode(b64)


# -- index documents ------------------------------------------------------------------

def load_index(raw, what):
    """Parse and validate an image index; PlanError naming ``what`` when it is not one."""
    try:
        return validate_index(load_json(raw, what, max_bytes=MAX_INDEX_BYTES), what)
    except DocumentError as e:
        raise PlanError(str(e))


def _tag_digests(index, tag):
    return [entry.get('digest') for entry in index_entries(index, tag)]


def update_index(raw, ops, what, force=False):
    """Apply ``ops`` to the index document ``raw`` (bytes or None when there is none).

    Returns ``(new_bytes, changes)``; ``new_bytes`` is None when nothing has
    to be written. ``changes`` lists the tags ``added``, ``updated``,
    ``removed`` and ``unchanged`` (a removed tag that was not there is
    ``unchanged`` too), and ``replaced_invalid`` when an invalid existing
    document was replaced (only with ``force``; otherwise that is a
    PlanError naming ``what``). A pure function: the store may call it again
    after a concurrent change.
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
    return canonical_json(work), changes


def _tag_lines(raw):
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

def make_plan(mapping, ops, pub, probed, describe=None, force=False, prune=False):
    """Decide what a commit does, from what the probe saw.

    ``pub`` is the ``publication()`` (None when only removing tags),
    ``probed`` the ``probe()`` result, ``describe(key)`` names a key for
    messages. Returns a JSON-safe dict that ``execute`` carries out and that
    ``summary``/``diff`` report.
    """
    describe = describe or (lambda key: key)
    blobs = pub['blobs'] if pub else []
    sizes = probed['sizes']
    documents = probed['documents']
    raw_index = _decode(documents.get(mapping.index_key))
    new_index_bytes, changes = update_index(raw_index, ops, describe(mapping.index_key), force)
    send = [b for b in blobs if sizes.get(b['key']) != b['size']]
    docs = []
    if mapping.header_key and new_index_bytes is not None:
        raw_header = _decode(documents.get(mapping.header_key))
        if not _is_layout_header(raw_header):
            docs.append({'key': mapping.header_key, 'data': canonical_json(LAYOUT_HEADER).decode('utf-8'),
                         'media_type': MT_LAYOUT_HEADER})
    prune_estimate = None
    if prune:
        if 'prune_error' in probed:
            raise PlanError('prune: %s' % probed['prune_error'])
        prune_estimate = probed.get('prune') or {'blobs': 0, 'bytes': 0}
    plan = {
        'mapping': mapping.to_dict(),
        'ops': ops,
        'force': bool(force),
        'send': send,
        'send_bytes': sum(b['size'] for b in send),
        'require': [{'key': b['key'], 'digest': b['digest'], 'size': b['size']} for b in blobs],
        'documents': docs,
        'index_changed': new_index_bytes is not None,
        'changes': changes,
        'digests': dict((op['tag'], [e['digest'] for e in op['entries']]) for op in ops if op['op'] == 'set'),
        'prune': prune_estimate if prune else None,
        'diff': {'before': _tag_lines(raw_index),
                 'after': _tag_lines(new_index_bytes) if new_index_bytes is not None else _tag_lines(raw_index)},
    }
    plan['changed'] = bool(send or docs or plan['index_changed'] or (prune_estimate and prune_estimate['blobs']))
    return plan


def _is_layout_header(raw):
    if raw is None:
        return False
    try:
        return load_json(raw, 'oci-layout') == LAYOUT_HEADER
    except DocumentError:
        return False


# -- commit ---------------------------------------------------------------------

def execute(store, plan, blobs=(), prune_min_age=0):
    """Carry out ``plan`` on ``store``; return what was done (see ``summary``).

    ``blobs`` yields ``(digest, fileobj)`` for the blobs of ``plan['send']``
    (any order; the controller sends them children first). Each is verified
    while it is written. Then every blob the new entries reference must be
    in the store with its size, or nothing else is written. Then the
    documents, then the index, read-modify-written under the store's lock
    by replaying the operations on the index found at that moment.
    Everything happens under the store's shared site lock; prune takes it
    exclusively afterwards.
    """
    mapping = Mapping.from_dict(plan['mapping'])
    wanted = dict((b['digest'], b) for b in plan['send'])
    sent = sent_bytes = 0
    with store.lock(False):
        with store.batch():
            for digest, fileobj in blobs:
                blob = wanted.pop(digest, None)
                if blob is None:
                    raise PlanError('blob %s arrived but was not planned to be sent' % digest)
                sent_bytes += store.put_blob(blob['key'], fileobj, blob['digest'], blob['size'], blob['mediaType'])
                sent += 1
        require = plan['require']
        sizes = store.stat([r['key'] for r in require])
        for r in require:
            if sizes.get(r['key']) != r['size']:
                found = 'missing' if r['key'] not in sizes else 'has %d bytes instead of %d' % (sizes[r['key']], r['size'])
                raise PlanError('blob %s (%s) is %s, so the index was not written%s'
                                % (r['digest'], store.describe(r['key']), found,
                                   ' (it was to be sent but did not arrive)' if r['digest'] in wanted else
                                   ' (was it removed by a concurrent prune? run the publish again)'))
        documents = 0
        for doc in plan['documents']:
            data = doc['data'].encode('utf-8')
            if store.read(doc['key'], MAX_DOCUMENT_BYTES) != data:
                store.put_document(doc['key'], data, doc['media_type'])
                documents += 1
        result = {}
        what = store.describe(mapping.index_key)

        def update(raw):
            new, result['changes'] = update_index(raw, plan['ops'], what, plan['force'])
            return new

        before, after = store.update_document(mapping.index_key, update, MT_INDEX, MAX_INDEX_BYTES)
    pruned = None
    if plan.get('prune') is not None:
        pruned = prune(store, mapping, min_age=prune_min_age)
    changes = result['changes']
    index_changed = after is not before
    done = {
        'changed': bool(sent or documents or index_changed or (pruned and pruned['blobs'])),
        'changes': changes,
        'index_changed': index_changed,
        'sent': sent,
        'sent_bytes': sent_bytes,
        'documents': documents,
        'prune': pruned,
        'diff': {'before': _tag_lines(before), 'after': _tag_lines(after)},
    }
    return done


# -- prune ----------------------------------------------------------------------

def _children(document, media_type):
    if media_type in INDEX_TYPES:
        return document.get('manifests') or []
    return [document['config']] + list(document.get('layers') or [])


def unreferenced_blobs(store, mapping, overrides=None, known=(), min_age=0, now=None):
    """Blobs under the mapping's blob prefix that no index references: ``[(key, size)]``.

    The roots are every index under ``mapping.index_prefix`` (CAS bucket: all
    families share the blobs) or the family's own index (directories);
    ``overrides`` replaces an index's bytes (a planned index), ``known``
    digests count as referenced without being read. Manifests and nested
    indexes are read from the store and verified. Anything that makes the
    answer uncertain (an index or a referenced manifest missing, invalid or
    corrupt) is a PlanError, and nothing should be removed. Blobs younger
    than ``min_age`` seconds are kept (for stores without a site lock).
    """
    overrides = overrides or {}
    index_keys = set(overrides)
    if mapping.index_prefix:
        index_keys.update(key for key, dummy, dummy2 in store.list(mapping.index_prefix))
    else:
        index_keys.add(mapping.index_key)
    reachable = set(known)
    stack = []
    for key in sorted(index_keys):
        raw = overrides[key] if key in overrides else store.read(key, MAX_INDEX_BYTES)
        if raw is None:
            continue
        index = load_index(raw, store.describe(key))
        stack.extend((entry, key) for entry in index['manifests'])
    while stack:
        desc, parent = stack.pop()
        digest = desc['digest']
        if digest in reachable:
            continue
        reachable.add(digest)
        media_type = desc['mediaType']
        if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
            continue
        key = mapping.blob_key(digest)
        what = store.describe(key)
        raw = store.read(key, MAX_DOCUMENT_BYTES)
        if raw is None:
            raise PlanError('cannot tell which blobs are unused: %s (%s), referenced from %s, is missing'
                            % (digest, what, parent))
        if digest_bytes(raw, parse_digest(digest).algorithm) != digest or len(raw) != desc['size']:
            raise PlanError('cannot tell which blobs are unused: %s does not match its digest %s' % (what, digest))
        try:
            document = load_json(raw, what)
            (validate_index if media_type in INDEX_TYPES else validate_manifest)(document, what)
        except DocumentError as e:
            raise PlanError('cannot tell which blobs are unused: %s' % e)
        stack.extend((child, digest) for child in _children(document, media_type))
    now = time.time() if now is None else now
    unused = []
    for key, size, mtime in store.list(mapping.blob_prefix):
        digest = mapping.digest_of_key(key)
        if digest is None or digest in reachable or now - mtime < min_age:
            continue
        unused.append((key, size))
    return unused


def prune(store, mapping, min_age=0):
    """Remove unreferenced blobs under the exclusive site lock; return ``{'blobs': n, 'bytes': n}``."""
    with store.lock(True):
        unused = unreferenced_blobs(store, mapping, min_age=min_age)
        for key, dummy in unused:
            store.delete(key)
    return {'blobs': len(unused), 'bytes': sum(size for dummy, size in unused)}


# -- reporting ----------------------------------------------------------------------

def _size(n):
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return ('%d %s' % (n, unit)) if unit == 'bytes' else ('%.1f %s' % (n, unit))
        n /= 1024.0


def summary(mapping, plan, done=None):
    """The module result keys (compact: counts and tag lists) for a plan, or for what was done."""
    changes = (done or plan)['changes']
    result = {
        'changed': (done or plan)['changed'],
        'name': mapping.name.family,
        'index': mapping.index_key,
        'index_url': mapping.index_url,
        'cas_template': mapping.cas_template,
        'tags_added': changes['added'],
        'tags_updated': changes['updated'],
        'tags_removed': changes['removed'],
        'tags_unchanged': changes['unchanged'],
        'digests': plan['digests'],
        'blobs_sent': done['sent'] if done else len(plan['send']),
        'bytes_sent': done['sent_bytes'] if done else plan['send_bytes'],
        'blobs_present': len(plan['require']) - len(plan['send']),
    }
    pruned = done['prune'] if done else plan['prune']
    if pruned is not None:
        result['blobs_pruned'] = pruned['blobs']
        result['bytes_pruned'] = pruned['bytes']
    if changes.get('replaced_invalid'):
        result['replaced_invalid_index'] = changes['replaced_invalid']
    return result


def diff(mapping, plan, done=None):
    """An Ansible diff: the family's index as ``tag digest`` lines, and the blob counts."""
    source = (done or plan)['diff']
    sent = done['sent'] if done else len(plan['send'])
    sent_bytes = done['sent_bytes'] if done else plan['send_bytes']
    lines = ['%s: %d blob(s), %s %s' % (mapping.name.family, sent, _size(sent_bytes), 'sent' if done else 'to send'),
             '%d referenced blob(s) already present' % (len(plan['require']) - len(plan['send']))]
    pruned = done['prune'] if done else plan['prune']
    if pruned is not None:
        lines.append('%d unreferenced blob(s), %s %s'
                     % (pruned['blobs'], _size(pruned['bytes']), 'pruned' if done else 'to prune'))
    return [
        {'before_header': '%s (tags)' % mapping.index_url, 'after_header': '%s (tags)' % mapping.index_url,
         'before': source['before'], 'after': source['after']},
        {'prepared': '\n'.join(lines)},
    ]


# -- ref-engines documents ------------------------------------------------------------

def default_ref_engines(mode, base_url=None):
    """The well-known document matching a site layout (DISCOVERY.md section 7).

    Without ``base_url`` the templates use ``https://{host}`` as the seed
    does; with it, the base URL itself (needed when the site is not at the
    name's host on port 443).
    """
    if mode not in MODES:
        raise PlanError('unknown site layout %r (choose %s)' % (mode, ' or '.join(MODES)))
    base = check_base_url(base_url) if base_url else 'https://{host}'
    if mode == 'cas_bucket':
        return {'refEngines': [{'protocol': INDEX_PROTOCOL, 'uri': base + '/oci-index/{path}'}]}
    return {'refEngines': [{'protocol': INDEX_PROTOCOL, 'uri': base + '/oci-image/{path}/index.json'}],
            'casEngines': [{'protocol': CAS_PROTOCOL, 'uri': base + '/oci-image/{path}/blobs/{algorithm}/{encoded}'}]}


def managed_ref_engines(mode, base_url=None, ref_engines=None, cas_engines=None):
    """The engines a ref_engines task manages: those given, or the mode's defaults when none are."""
    from ansible_collections.oci.discovery.plugins.module_utils._documents import build_ref_engines
    if ref_engines is None and cas_engines is None:
        return default_ref_engines(mode, base_url)
    try:
        managed = build_ref_engines(ref_engines or (), cas_engines or ())
    except DocumentError as e:
        raise PlanError(str(e))
    _check_engine_templates(managed)
    return managed


def _check_engine_templates(obj):
    from ansible_collections.oci.discovery.plugins.module_utils._templates import TemplateError, check_template
    for key in ('refEngines', 'casEngines'):
        for i, engine in enumerate(obj.get(key) or []):
            if engine.get('protocol') in (INDEX_PROTOCOL, CAS_PROTOCOL):
                try:
                    check_template(engine['uri'])
                except TemplateError as e:
                    raise PlanError('%s[%d]: %s' % (key, i, e))


def update_ref_engines(raw, managed, what, exclusive=False, force=False):
    """Merge the managed engines into the document ``raw`` (bytes or None).

    Returns ``(new_bytes or None when unchanged, before_obj, after_obj)``.
    Engines written by others are kept unless ``exclusive``. An existing
    document that is not a valid ref-engines object is a PlanError naming
    ``what`` unless ``force`` (then it is replaced).
    """
    existing = None
    if raw is not None:
        try:
            existing = validate_ref_engines(load_json(raw, what, max_bytes=MAX_REF_ENGINES_BYTES), what)
        except DocumentError as e:
            if not force:
                raise PlanError('%s; refusing to overwrite it (force=true replaces it)' % e)
    try:
        after = merge_ref_engines(existing, managed, exclusive=exclusive)
    except DocumentError as e:
        raise PlanError(str(e))
    if existing is not None and after == existing:
        return None, existing, existing
    return canonical_json(after), existing, after


__all__ = ['CAS_PROTOCOL', 'INDEX_PROTOCOL', 'MODES', 'MT_REF_ENGINES', 'Mapping', 'PlanError', 'WELL_KNOWN_KEY',
           'check_base_url', 'default_ref_engines', 'diff', 'execute', 'index_ops', 'make_plan',
           'managed_ref_engines', 'probe', 'probe_request', 'prune', 'publication', 'summary', 'tag_pairs',
           'unreferenced_blobs', 'update_index', 'update_ref_engines']
