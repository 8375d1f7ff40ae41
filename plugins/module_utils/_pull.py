# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling: what names resolve to, fetched into an OCI image layout directory.

Publishing in reverse. The source is the DAG under each resolved Merkle root
(nested image indexes, manifests, configs, layers), reached through the CAS
engines that resolution found; the destination is an OCI image layout
directory used as a store (``_stores.WebRootStore`` with the layout directory
as its root), so every write is verified while streaming, written aside and
renamed, and ``index.json`` is read-modify-written last under a lock.

The steps:

1. ``check_dest(path)``: refuse a symlink, a file, or a directory with content
   that is not an OCI image layout, before anything is fetched or written.
2. ``Pull(client, store, stream).plan(requests)``: resolve every name, then walk
   each DAG once per digest, bounded (depth, number of blobs, document size,
   bytes in all). Manifests and indexes already in the layout are read from
   it and verified; the others are fetched into memory (they are small) and
   verified. Configs and layers only need to be known missing or present.
   Nothing is written; check mode stops here.
3. ``Pull.commit()``: fetch the missing configs and layers, a few at a time,
   each streamed through its size and digest check straight into the layout
   (a body is never read past the descriptor's size); then the manifests and
   indexes, children first; then ``oci-layout`` when missing; then the
   tags in ``index.json``, merged with what is there (``_plan.update_index``:
   other tags are kept). A failure stops before ``index.json``, so the layout
   keeps what it had plus at most complete, verified blobs, and a re-run
   fetches only what is still missing.

HTTP is not done here: ``stream(url, accept, max_bytes, consume, timeout,
headers_for)`` (``_urls.fetch_into`` bound to the discovery client's fetcher)
gives a body to ``consume(fileobj)`` as it arrives; ``headers_for`` is the
client's rule for the name (the caller's headers go only to the origins it
allows). No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import os
import re
import stat
import threading

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    CHUNK_SIZE, DigestError, VerificationError, Verifier, parse_digest)
from ansible_collections.oci.discovery.plugins.module_utils._discovery import (
    MAX_NESTING, DiscoveryError, check_expanded)
from ansible_collections.oci.discovery.plugins.module_utils._fetch import FetchError, file_path
from ansible_collections.oci.discovery.plugins.module_utils._platforms import PlatformError, parse_platform
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_LAYOUT_HEADER, DocumentError, canonical_json,
    load_json, validate_index, validate_manifest)
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout, LayoutError
from ansible_collections.oci.discovery.plugins.module_utils._names import InvalidName, parse_name, safe_tag
from ansible_collections.oci.discovery.plugins.module_utils._plan import LAYOUT_HEADER, tag_lines, update_index
from ansible_collections.oci.discovery.plugins.module_utils._site import PlanError
from ansible_collections.oci.discovery.plugins.module_utils._spec import CAS_PROTOCOL, MAX_INDEX_BYTES
from ansible_collections.oci.discovery.plugins.module_utils._stores import STATE_DIR, StoreError
from ansible_collections.oci.discovery.plugins.module_utils._templates import TemplateError, cas_uri

ALL = 'all'
PARALLEL = 4
MAX_BLOBS = 100000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024 * 1024
DEFAULT_BLOB_TIMEOUT = 600
MAX_HEADER_BYTES = 64 * 1024
# What a layout directory may hold before its first index.json (a first pull that was interrupted).
_PARTIAL_LAYOUT = frozenset(('blobs', STATE_DIR))
# Docker's schema 2 documents must name their own media type (OCI ones should).
_DOCKER_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
_TAG_FIELD = re.compile(r'\{([^{}]*)\}')


class PullError(ValueError):
    """A pull that cannot go ahead or failed; the message names the image, the blob, the URL or the file."""


# --------------------------------------------------------------------------- options

def check_dest(path):
    """Refuse a ``dest`` that is not (or cannot become) an OCI image layout; return ``'new'`` or ``'layout'``.

    Missing, empty, or holding only what an interrupted first pull leaves
    (``blobs/`` and the store's state directory): ``'new'``. With
    ``oci-layout`` or ``index.json``: it must open as a valid layout.
    """
    if not os.path.isabs(path):
        raise PullError('dest %r: give an absolute path' % (path,))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 'new'
    except OSError as exc:
        raise PullError('dest %s: %s' % (path, exc.strerror or exc))
    if stat.S_ISLNK(st.st_mode):
        raise PullError('dest %s is a symbolic link; give the layout directory itself' % path)
    if not stat.S_ISDIR(st.st_mode):
        raise PullError('dest %s exists and is not a directory' % path)
    entries = set(os.listdir(path))
    for name in ('blobs', 'oci-layout', 'index.json', STATE_DIR):
        if name in entries and os.path.islink(os.path.join(path, name)):
            raise PullError('dest %s: %s is a symbolic link; refusing to write through it' % (path, name))
    if 'oci-layout' in entries or 'index.json' in entries:
        try:
            Layout(path)
        except LayoutError as exc:
            raise PullError('dest %s is not a valid OCI image layout: %s' % (path, exc))
        return 'layout'
    if entries - _PARTIAL_LAYOUT:
        raise PullError('dest %s is a directory that is not an OCI image layout (it holds %s); '
                        'give a new or empty directory, or a layout' % (
                            path, ', '.join(sorted(entries - _PARTIAL_LAYOUT)[:5])))
    return 'new'


def expand_tag(template, name):
    """The tag to record for ``name`` (an ImageName): ``template`` with ``{fragment}``, ``{host}``,
    ``{path}``, ``{name}`` replaced; None takes the fragment."""
    if template is None:
        template = '{fragment}'
    if not isinstance(template, str):
        raise PullError('tag for %s: expected a string, got %r' % (name, template))
    variables = name.variables()

    def field(match):
        key = match.group(1)
        if key not in variables:
            raise PullError('tag %r for %s: unknown field {%s} (fields: {fragment}, {host}, {path}, {name})'
                            % (template, name, key))
        return variables[key]
    tag = _TAG_FIELD.sub(field, template)
    if not tag:
        raise PullError('%s has no fragment: give the tag to record it under (option tag)' % (name,))
    try:
        return safe_tag(tag)
    except InvalidName as exc:
        raise PullError('tag for %s: %s' % (name, exc))


def requests_of(names, platform=ALL, tags=None):
    """``[{'name': ImageName, 'platform': dict or None (all), 'tag': str}]`` from the module's options.

    ``names`` items are names or dicts with ``name`` and optional ``platform``
    and ``tag``; ``tags`` is one template for every name, or a list with one
    per name. Two names recorded under one tag are refused.
    """
    if isinstance(tags, list) and len(tags) != len(names):
        raise PullError('tag: a list of %d tags for %d names; give one per name, or one template'
                        % (len(tags), len(names)))
    requests, seen = [], {}
    for position, item in enumerate(names):
        template = tags[position] if isinstance(tags, list) else tags
        item_platform = platform
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(('name', 'platform', 'tag')))
            if unknown or not isinstance(item.get('name'), str):
                raise PullError('name[%d]: expected a name or a dict with name (and platform, tag), got %r'
                                % (position, item))
            template = item.get('tag', template)
            item_platform = item.get('platform', platform)
            text = item['name']
        elif isinstance(item, str):
            text = item
        else:
            raise PullError('name[%d]: expected an image name, got %r' % (position, item))
        try:
            name = parse_name(text)
        except InvalidName as exc:
            raise PullError('name[%d]: %s' % (position, exc))
        try:
            wanted = None if item_platform in (None, ALL) else parse_platform(item_platform)
        except PlatformError as exc:
            raise PullError('platform for %s: %s' % (text, exc))
        tag = expand_tag(template, name)
        if tag in seen:
            raise PullError('tag %r would be recorded for %s and for %s; give each name its own tag'
                            % (tag, seen[tag], name))
        seen[tag] = name
        requests.append({'name': name, 'platform': wanted, 'tag': tag})
    if not requests:
        raise PullError('name: give at least one image name')
    return requests


def blob_key(digest):
    parsed = parse_digest(digest)
    return 'blobs/%s/%s' % (parsed.algorithm, parsed.encoded)


def _entry(descriptor):
    """An index.json entry for a pulled root: the descriptor without the publisher's casEngines."""
    return dict((k, v) for k, v in descriptor.items() if k != 'casEngines')


# --------------------------------------------------------------------------- the pull

class Pull(object):
    """One pull into one layout directory.

    :arg client: a ``_discovery.Client`` (resolution and its document cache).
    :arg store: a ``WebRootStore`` rooted at the layout directory.
    :arg stream: ``stream(url, accept, max_bytes, consume, timeout, headers_for)`` (see the module docstring).
    :arg store_factory: makes another store on the same directory, one per parallel fetch.
    :arg max_bytes: limit of the bytes fetched by the whole pull.
    :arg parallel: configs and layers fetched at a time.
    :arg blob_timeout: deadline in seconds of each blob's request, body included.
    """

    def __init__(self, client, store, stream, store_factory, max_bytes=DEFAULT_MAX_BYTES, parallel=PARALLEL,
                 blob_timeout=DEFAULT_BLOB_TIMEOUT, max_blobs=MAX_BLOBS):
        for option, value in (('parallel', parallel), ('blob_timeout', blob_timeout), ('max_pull_size', max_bytes)):
            if value is None or value <= 0:
                raise PullError('%s: must be positive, got %r' % (option, value))
        self.client = client
        self.store = store
        self.stream = stream
        self.store_factory = store_factory
        self.max_bytes = max_bytes
        self.parallel = int(parallel)
        self.blob_timeout = blob_timeout
        self.max_blobs = max_blobs
        self.images = []
        self.documents = []      # [(descriptor, bytes, fetched)], children before parents
        self.missing = []        # [(name, root, descriptor)] configs and layers to fetch
        self.present = 0
        self.fetched = 0
        self.bytes_fetched = 0
        self.requests = 0
        self._sizes = {}
        self._lock = threading.Lock()
        self.index_before = None
        self.index_after = None
        self.changes = None
        self._ops = []
        self._headers = {}

    # -- resolution and walk ---------------------------------------------------

    def plan(self, requests):
        """Resolve and walk every request (nothing is written); return self."""
        for request in requests:
            name = request['name']
            selected = self._select(name, request['platform'])
            first = len(self._sizes)
            total = [0]
            for root, descriptor in selected:
                self._visit(name, root, descriptor, [], total)
            roots = [_entry(d) for dummy, d in selected]
            self.images.append({
                'name': name.name, 'tag': request['tag'], 'roots': roots,
                'blobs': len(self._sizes) - first, 'bytes': total[0]})
        self.index_before = self.store.read('index.json', MAX_INDEX_BYTES)
        ops = [{'op': 'set', 'tag': image['tag'], 'entries': image['roots']} for image in self.images]
        what = self.store.describe('index.json')
        try:
            self.index_after, self.changes = update_index(self.index_before, ops, what)
        except PlanError as exc:
            raise PullError(str(exc))
        self._ops = ops
        wanted = sum(d['size'] for dummy, dummy2, d in self.missing) + self.bytes_fetched
        if wanted > self.max_bytes:
            raise PullError('the pull needs %d bytes, more than the limit of %d (max_pull_size)'
                            % (wanted, self.max_bytes))
        return self

    def _headers_for(self, name):
        """The client's rule for ``name``: which of the caller's headers may go to a URL."""
        if name.name not in self._headers:
            self._headers[name.name] = self.client.headers_for(name)
        return self._headers[name.name]

    def _select(self, name, platform):
        """[(root, descriptor)]: the index entries of ``name``, or the manifests for ``platform``."""
        try:
            dummy, roots, dummy2 = self.client.roots(name.name)
            if platform is None:
                return [(root, root.entry) for root in roots]
            by_key = dict((canonical_json(root.merkle), root) for root in roots)
            return [(by_key[canonical_json(result['root'])], result['descriptor'])
                    for result in self.client.resolve(name.name, platform=platform)]
        except DiscoveryError as exc:
            raise PullError(str(exc))

    def _visit(self, name, root, descriptor, trail, total):
        digest, size, media_type = descriptor['digest'], descriptor['size'], descriptor['mediaType']
        if digest in trail:
            raise PullError('%s: image index %s refers to itself (%s)' % (
                name, digest, ' -> '.join(trail[trail.index(digest):] + [digest])))
        if digest in self._sizes:
            if self._sizes[digest] != size:
                raise PullError('%s: blob %s is referred to with sizes %d and %d'
                                % (name, digest, self._sizes[digest], size))
            return
        if len(self._sizes) >= self.max_blobs:
            raise PullError('%s: more than %d blobs; refusing to walk further' % (name, self.max_blobs))
        self._sizes[digest] = size
        total[0] += size
        key = blob_key(digest)
        if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
            if self.store.stat([key]).get(key) == size:
                self.present += 1
            else:
                self.missing.append((name, root, descriptor))
            return
        if len(trail) >= MAX_NESTING:
            raise PullError('%s: image indexes nested deeper than %d levels at %s' % (name, MAX_NESTING, digest))
        data, fetched, url = self._document(name, root, descriptor, key)
        what = '%s %s (from %s)' % ('image index' if media_type in INDEX_TYPES else 'manifest', digest, url)
        try:
            document = load_json(data, what)
            if media_type in INDEX_TYPES:
                validate_index(document, what)
                children = document['manifests']
            else:
                validate_manifest(document, what)
                children = [document['config']] + document['layers']
        except DocumentError as exc:
            raise PullError('%s: %s' % (name, exc))
        inner = document.get('mediaType')
        if inner is not None and inner != media_type:
            raise PullError('%s: %s: its mediaType %r differs from its descriptor\'s %r'
                            % (name, what, inner, media_type))
        if inner is None and media_type in _DOCKER_TYPES:
            raise PullError('%s: %s: it declares no mediaType, while its descriptor says %r (which requires one)'
                            % (name, what, media_type))
        for child in children:
            self._visit(name, root, child, trail + [digest], total)
        self.documents.append((descriptor, data, fetched))
        if fetched:
            self.fetched += 1
        else:
            self.present += 1

    def _document(self, name, root, descriptor, key):
        """(bytes, fetched, where): a manifest or index, from the layout when it is there and intact."""
        digest, size = descriptor['digest'], descriptor['size']
        if size > self.client.max_bytes:
            raise PullError('%s: %s (%s) is %d bytes, more than the document size limit of %d'
                            % (name, digest, descriptor['mediaType'], size, self.client.max_bytes))
        if self.store.stat([key]).get(key) == size:
            data = self.store.read(key, size)
            try:
                verifier = Verifier(digest, size, key)
                verifier.update(data)
                verifier.finish()
                return data, False, self.store.describe(key)
            except VerificationError:
                pass   # damaged in the layout: fetched again and replaced

        def collect(body):
            verifier = Verifier(digest, size, 'blob %s' % digest)
            chunks = []
            while True:
                chunk = body.read(CHUNK_SIZE)
                if not chunk:
                    break
                verifier.update(chunk)
                chunks.append(chunk)
            verifier.finish()
            return b''.join(chunks)
        data, url = self._fetch(name, root, descriptor, collect)
        with self._lock:
            self.bytes_fetched += size
        if self.bytes_fetched > self.max_bytes:
            raise PullError('%s: more than the limit of %d bytes (max_pull_size) fetched' % (name, self.max_bytes))
        return data, True, url

    def _fetch(self, name, root, descriptor, consume, timeout=None):
        """Give the blob's body to ``consume`` from the first CAS engine that serves it intact: (result, URL).

        ``timeout`` is the deadline of each request (None: the fetcher's, as for every document).
        """
        digest, size, media_type = descriptor['digest'], descriptor['size'], descriptor['mediaType']
        attempts, tried = [], set()
        for config, base, local_engine in root.cas_engines:
            if config.get('protocol') != CAS_PROTOCOL or not isinstance(config.get('uri'), str):
                continue
            try:
                url = check_expanded(cas_uri(config['uri'], parse_digest(digest), name, base), name)
            except (TemplateError, DigestError) as exc:
                attempts.append('%s: %s' % (config['uri'], exc))
                continue
            if (url, local_engine) in tried:
                continue
            tried.add((url, local_engine))
            local = []

            def guarded(body):
                try:
                    return consume(body)
                except (OSError, StoreError) as exc:   # a local write failed: not the server's fault
                    local.append(exc)
                    raise
            with self._lock:
                self.requests += 1
            try:
                if url.startswith('file:') and local_engine:
                    result = self._local_file(url, guarded)
                else:
                    response = self.stream(url, media_type, size, guarded, timeout, self._headers_for(name))
                    if response.status != 200:
                        attempts.append('%s: HTTP %d' % (url, response.status))
                        continue
                    result = response.body
            except FetchError as exc:
                if local:
                    raise PullError('%s: cannot write blob %s: %s' % (name, digest, local[0]))
                reason = exc.reason
                if 'larger than the limit' in reason:
                    reason = 'size mismatch: expected %d bytes, got more (%s)' % (size, reason)
                attempts.append('%s: %s' % (url, reason))
                continue
            except (OSError, StoreError, VerificationError) as exc:
                raise PullError('%s: cannot write blob %s: %s' % (name, digest, exc))
            return result, url
        if not tried and not attempts:
            attempts.append('the root has no %s CAS engine' % CAS_PROTOCOL)
        raise PullError('%s: cannot fetch blob %s (%s, %d bytes) through its CAS engines; nothing was recorded '
                        'in index.json:\n%s' % (name, digest, media_type, size,
                                                '\n'.join('  - ' + a for a in attempts)))

    @staticmethod
    def _local_file(url, consume):
        """A CAS URL of a trusted local (XDG) configuration: a file:// path."""
        path = file_path(url)
        try:
            with open(path, 'rb') as body:
                return consume(body)
        except VerificationError as exc:
            raise FetchError(str(exc))
        except FileNotFoundError:
            raise FetchError('%s: no such file' % path)

    # -- results ----------------------------------------------------------------

    @property
    def would_fetch(self):
        """Blobs and bytes to fetch (manifests and indexes fetched while walking included)."""
        return (self.fetched + len(self.missing),
                self.bytes_fetched + sum(d['size'] for dummy, dummy2, d in self.missing))

    @property
    def changed(self):
        return bool(self.missing) or any(fetched for dummy, dummy2, fetched in self.documents) \
            or self.index_after is not None

    def diff(self):
        """Before/after of the tags in index.json, one line per entry."""
        after = self.index_before if self.index_after is None else self.index_after
        return {'before_header': self.store.describe('index.json'), 'after_header': self.store.describe('index.json'),
                'before': tag_lines(self.index_before), 'after': tag_lines(after)}

    # -- commit -------------------------------------------------------------------

    def commit(self):
        """Fetch what is missing, then documents, oci-layout and index.json (see the module docstring)."""
        with self.store.lock(False):
            self._fetch_missing()
            with self.store.batch():
                for descriptor, data, fetched in self.documents:
                    if fetched:
                        self.store.put_blob(blob_key(descriptor['digest']), io.BytesIO(data), descriptor['digest'],
                                            descriptor['size'], descriptor['mediaType'])
            if self.store.read('oci-layout', MAX_HEADER_BYTES) is None:
                self.store.put_document('oci-layout', canonical_json(LAYOUT_HEADER), MT_LAYOUT_HEADER)
            what = self.store.describe('index.json')
            ops = self._ops

            def update(raw):
                return update_index(raw, ops, what)[0]
            try:
                self.index_before, self.index_after = self.store.update_document(
                    'index.json', update, MT_INDEX, MAX_INDEX_BYTES)
            except PlanError as exc:
                raise PullError(str(exc))
            if self.index_after is self.index_before:
                self.index_after = None
        return self

    def _fetch_missing(self):
        """Fetch the missing configs and layers, ``parallel`` at a time; the first failure stops the others."""
        pending = list(self.missing)
        failures = []
        stop = threading.Event()

        def work():
            store = self.store_factory()
            try:
                with store.batch():
                    while not stop.is_set():
                        with self._lock:
                            if not pending:
                                return
                            name, root, descriptor = pending.pop(0)
                        key = blob_key(descriptor['digest'])

                        def put(body):
                            return store.put_blob(key, body, descriptor['digest'], descriptor['size'],
                                                  descriptor['mediaType'])
                        self._fetch(name, root, descriptor, put, self.blob_timeout)
                        with self._lock:
                            self.fetched += 1
                            self.bytes_fetched += descriptor['size']
            except Exception as exc:  # pylint: disable=broad-except
                failures.append(exc)
                stop.set()
            finally:
                store.close()
        threads = [threading.Thread(target=work, name='oci-discovery-pull-%d' % i)
                   for i in range(min(self.parallel, len(pending)))]
        for thread in threads:
            thread.daemon = True
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            exc = failures[0]
            if isinstance(exc, PullError):
                raise exc
            raise PullError('%s: %s' % (type(exc).__name__, exc))


def image_results(pull):
    """One result per name: tag, digest(s), media type(s), platform, blobs and bytes of its DAG."""
    results = []
    for image in pull.images:
        roots = image['roots']
        results.append({
            'name': image['name'], 'tag': image['tag'],
            'digest': roots[0]['digest'] if len(roots) == 1 else None,
            'media_type': roots[0]['mediaType'] if len(roots) == 1 else None,
            'platform': roots[0].get('platform') if len(roots) == 1 else None,
            'digests': [r['digest'] for r in roots], 'media_types': [r['mediaType'] for r in roots],
            'blobs': image['blobs'], 'bytes': image['bytes'],
        })
    return results


__all__ = ['ALL', 'Pull', 'PullError', 'check_dest', 'expand_tag', 'image_results', 'requests_of']
