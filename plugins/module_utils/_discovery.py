# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The discovery client: host-based image name -> ref engines -> index -> Merkle roots.

The consumer side of the oci-discovery specifications (see ``docs/resolving.md``):

* ref-engine discovery from the XDG configuration, then from
  ``/.well-known/oci-host-ref-engines`` on the name's host and its DNS
  ancestors, https first and http only when the caller allows it;
* the ``oci-index-template-v1`` ref engine and the ``oci-cas-template-v1``
  CAS engine (with the name's variables available too);
* platform narrowing and descent into image indexes at any depth, and
  verification (size and digest) of every manifest or index fetched.

Sources are tried in order (XDG keys, longest first; then each protocol, and
within it the host and its ancestors) and the first source that yields at
least one matching root wins; the others are not asked. A source that fails
or yields nothing is recorded with its reason and the next one is tried.

Trust (``docs/security.md``): only the local XDG files, and local files they
name, may name ``file:`` URIs; everything a remote document names is fetched
over the allowed protocols only. Every resolution is bounded: each index
digest is searched once, and budgets (documents fetched, engines tried, bytes
read) stop a hostile walk with an error naming the budget. User headers go only
to the origins the caller names (``headers``: the name's own host), at every
redirect hop. Only a real "absent" (HTTP 404/410, unknown host, no such tag)
makes a NotFoundError; any other failure on the way makes a DiscoveryError.

Platforms are parsed and matched in ``_platforms.py``; what a fetch returns or
raises, and local file reads, are in ``_fetch.py``.

HTTP is not done here: the client takes a ``fetcher``, an object with a
``fetch(url, accept, max_bytes, headers_for)`` method returning a ``Response``
(final URL after redirects, status, content type, body) or raising
``FetchError``; ``headers_for(url)`` gives the extra headers for each hop.
``_urls.py`` provides one built on ``ansible.module_utils.urls``. Every
document is fetched at most once per client (successes and failures are
cached by URL, Accept header and the headers it may carry).

No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import codecs
import copy
import os
import re
from collections import namedtuple
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    VerificationError, Verifier, parse_digest)
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DocumentError, INDEX_TYPES, MT_DESCRIPTOR, MT_INDEX, MT_REF_ENGINES, REF_NAME,
    canonical_json, load_json, validate_descriptor, validate_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._fetch import (
    ABSENT, DEFAULT_PORTS, ERROR, FILE_TIMEOUT, FetchError, Response, file_path, file_uri, parse_origin,
    read_local_file, url_origin)
from ansible_collections.oci.discovery.plugins.module_utils._names import (
    ImageName, InvalidName, dns_ancestors, host_is_ip, parse_name)
from ansible_collections.oci.discovery.plugins.module_utils._platforms import (
    format_platform, parse_platform, platform_matches)
from ansible_collections.oci.discovery.plugins.module_utils._spec import (
    CAS_PROTOCOL, INDEX_PROTOCOL, MAX_DOCUMENT_BYTES, WELL_KNOWN_PATH)
from ansible_collections.oci.discovery.plugins.module_utils._templates import (
    TemplateError, cas_uri, expand_uri, resolve as resolve_uri)

DEFAULT_MAX_BYTES = MAX_DOCUMENT_BYTES
DEFAULT_PROTOCOLS = ('https',)
XDG_FILE = os.path.join('oci-discovery', 'ref-engine-discovery.json')
MAX_NESTING = 8
# Budgets of one resolution (one name): documents fetched (cache misses), engines
# tried (ref engines expanded, CAS URLs asked), bytes read. Option names in brackets.
BUDGETS = (('documents', 'max_documents', 1000, 'documents fetched'),
           ('engines', 'max_engines', 1000, 'engines tried'),
           ('bytes', 'max_total_size', 64 * 1024 * 1024, 'bytes read'))
DEFAULT_BUDGET = dict((key, default) for key, dummy, default, dummy2 in BUDGETS)


class Attempt(namedtuple('Attempt', 'url reason kind')):
    """One URL (or file) tried while resolving a name and what came of it."""

    __slots__ = ()

    def __str__(self):
        return '%s: %s' % (self.url, self.reason)


class DiscoveryError(ValueError):
    """Resolving a name failed. The message names the image and lists every URL tried and why."""

    def __init__(self, name, summary, attempts=()):
        self.name = name
        self.summary = summary
        self.attempts = list(attempts)
        lines = ['cannot resolve %s: %s' % (name, summary)]
        if self.attempts:
            lines.append('tried:')
            lines.extend('  - ' + str(attempt) for attempt in self.attempts)
        super(DiscoveryError, self).__init__('\n'.join(lines))


class NotFoundError(DiscoveryError):
    """Nothing matches the name: publishers answered but have no such tag or platform,
    or every host said there is nothing (404/410/unknown host), and nothing failed."""


class _OutOfBudget(Exception):
    """A budget of the current resolution ran out (turned into a DiscoveryError by the caller)."""


# --------------------------------------------------------------------------- platforms

# --------------------------------------------------------------------------- small helpers

def parse_content_type(value: Optional[str]) -> Tuple[Optional[str], Dict[str, str]]:
    """``'a/b; charset=UTF-8'`` -> ``('a/b', {'charset': 'UTF-8'})``; (None, {}) when missing.

    The type is lower-cased (media types are case-insensitive, RFC 6838 4.2).
    """
    if not value:
        return None, {}
    parts = value.split(';')
    media_type = parts[0].strip().lower() or None
    params = {}
    for part in parts[1:]:
        key, sep, val = part.partition('=')
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[key.strip().lower()] = val
    return media_type, params


def _memoized(cache, key, compute):
    """``compute()`` once per key: its result, or the FetchError it raised, is kept and given again."""
    if key not in cache:
        try:
            cache[key] = compute()
        except FetchError as exc:
            cache[key] = exc
    cached = cache[key]
    if isinstance(cached, FetchError):
        raise cached
    return cached


def _scheme(url):
    match = re.match(r'([A-Za-z][A-Za-z0-9+.-]*):', url)
    return match.group(1).lower() if match else None


def check_expanded(url: str, name: ImageName) -> str:
    """Refuse an expanded URL whose host is percent-encoded (no server has such a name); return it.

    It happens when a template has ``{host}`` and the name's host is an IP
    literal: simple expansion encodes ``[``, ``:`` and ``]``.
    """
    match = re.match(r'[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)', url)
    if match and '%' in match.group(1).rpartition('@')[2]:
        hint = ''
        if host_is_ip(name.host) and name.host.startswith('['):
            hint = ('; the name\'s host %s is an IP literal, which {host} percent-encodes: the template '
                    'must use {+host} or name the server itself' % name.host)
        raise TemplateError('the template expands to %s, whose host is percent-encoded%s' % (url, hint))
    return url


_POSIX_CLASSES = {
    'alpha': 'a-zA-Z', 'digit': '0-9', 'alnum': 'a-zA-Z0-9', 'upper': 'A-Z', 'lower': 'a-z',
    'space': r' \t\n\r\f\v', 'blank': r' \t', 'xdigit': '0-9A-Fa-f', 'punct': re.escape(
        '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'), 'cntrl': r'\x00-\x1f\x7f', 'print': r' -~',
    'graph': r'!-~',
}


def compile_ere(pattern: str) -> 're.Pattern':
    """Compile an XDG key (a POSIX extended regular expression) with Python's ``re``.

    Keys are matched as POSIX ``regexec`` does: the expression may match
    anywhere in the name (use ``.search``); ``^`` and ``$`` anchor it. The
    differences between POSIX ERE and Python that matter here:

    * POSIX bracket classes (``[[:alpha:]]``) do not exist in Python; they are
      translated to ranges here (C locale).
    * ERE matching is leftmost-longest, Python's is leftmost-first. Only
      whether a key matches is used, and a search finds a match whenever one
      exists, so the answer is the same. ``$`` also matches before a final
      newline in Python, but image names cannot contain one.
    * Python accepts more syntax than ERE (``\\d``, lazy quantifiers,
      lookarounds, ``(?i)``); such keys work here but are not portable ERE.
      Collating elements (``[[.a.]]``) and equivalence classes (``[[=a=]]``)
      are not supported and make the key invalid.
    * Back-references are undefined in ERE; Python's are honoured.
    """
    translated = re.sub(r'\[:([a-z]+):\]',
                        lambda m: _POSIX_CLASSES.get(m.group(1), m.group(0)), pattern)
    return re.compile(translated)


# --------------------------------------------------------------------------- sources and roots

class _Source(namedtuple('_Source', 'label uri obj local')):
    """A ref-engines object and where it came from (``uri`` is the base for relative URIs;
    ``local``: it was read from a local file, so the URIs it names may be ``file:``)."""

    __slots__ = ()


class _Root(object):
    """A Merkle root plus what is needed to fetch its content (CAS engines with their bases)."""

    def __init__(self, name, entry, index_uri, index_local, shared_cas):
        self.name = name
        self.entry = entry
        self.index_uri = index_uri
        # [(config, base URI, local)]: the entry's own CAS engines (relative to the index,
        # local only when the index was a local file), then those of the ref-engines object.
        self.cas_engines = [(c, index_uri, index_local) for c in _own_cas(entry)] + list(shared_cas)
        merged = copy.deepcopy(entry)
        configs = _own_cas(entry)
        seen = set(canonical_json(c) for c in configs)
        for config, base, dummy in shared_cas:
            config = dict(config)
            uri = config.get('uri')
            if isinstance(uri, str) and _scheme(uri) is None and base:
                try:
                    # Present relative templates absolute, since the merged root's base
                    # (the index URI) is not the ref-engines object's.
                    config['uri'] = resolve_uri(base, uri)
                except TemplateError:
                    pass
            key = canonical_json(config)
            if key not in seen:
                seen.add(key)
                configs.append(config)
        if configs:
            merged['casEngines'] = configs
        self.merkle = {'mediaType': MT_DESCRIPTOR, 'root': merged, 'uri': index_uri}


def _own_cas(entry):
    engines = entry.get('casEngines')
    if not isinstance(engines, list):
        return []
    return [e for e in engines if isinstance(e, dict)]


class _Run(object):
    """One resolution: the name, its attempts, the index digests searched and the budgets left."""

    def __init__(self, client, name):
        self.client = client
        self.name = name
        self.attempts = []
        self.searched = set()
        self.spent = dict((key, 0) for key in client.budget)
        # Who may receive the caller's ``headers``: the name's own host, over each protocol.
        host = name.host[1:-1] if name.host.startswith('[') else name.host
        self.own_origins = set((p, host.lower(), client.port or DEFAULT_PORTS[p]) for p in client.protocols)
        # Cache scope: documents fetched with the name-host headers are not shared with other hosts.
        self.scope = host.lower() if client.headers else None

    def spend(self, key, amount=1):
        self.spent[key] += amount
        limit = self.client.budget[key]
        if self.spent[key] > limit:
            option, what = [(o, w) for k, o, dummy, w in BUDGETS if k == key][0]
            raise _OutOfBudget('stopped: more than %d %s for one name (the %s budget ran out)'
                               % (limit, what, option))

    def headers_for(self, url):
        """The caller's headers that may go to ``url``: only to origins the caller named."""
        origin = url_origin(url)
        headers = {}
        if origin is not None:
            headers.update(self.client.origin_headers.get(origin, {}))
            if origin in self.own_origins:
                headers.update(self.client.headers)
        return headers


class Client(object):
    """Resolves host-based image names; one instance shares one document cache.

    :arg fetcher: object with ``fetch(url, accept, max_bytes, headers_for) -> Response``.
    :arg protocols: well-known discovery protocols in order (``https``, ``http``);
        documents are only fetched over these schemes.
    :arg port: port appended to every host in well-known URIs (``{host}`` in
        templates is never given a port).
    :arg xdg: read the XDG configuration.
    :arg environ: environment for ``XDG_CONFIG_HOME``/``XDG_CONFIG_DIRS``/``HOME``.
    :arg max_bytes: size limit of every JSON document.
    :arg headers: request headers sent only to the name's own host (any protocol,
        at ``port``), at every redirect hop that stays there.
    :arg origin_headers: ``{'https://host[:port]': {header: value}}``: headers for
        other origins the caller names.
    :arg budget: ``{'documents': N, 'engines': N, 'bytes': N}`` per name (see BUDGETS).
    """

    def __init__(self, fetcher: Any, protocols: Sequence[str] = DEFAULT_PROTOCOLS, port: Optional[int] = None,
                 xdg: bool = True, environ: Optional[Mapping[str, str]] = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 headers: Optional[Mapping[str, str]] = None,
                 origin_headers: Optional[Mapping[str, Mapping[str, str]]] = None,
                 budget: Optional[Mapping[str, int]] = None) -> None:
        protocols = [p.lower() for p in (protocols or ())]
        bad = [p for p in protocols if p not in ('https', 'http')]
        if bad or not protocols:
            raise ValueError('protocols must be a non-empty list of https and/or http, got %r'
                             % (list(protocols),))
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise ValueError('invalid port %r: expected 1-65535' % (port,))
        self.fetcher = fetcher
        self.protocols = tuple(protocols)
        self.port = port
        self.xdg = xdg
        self.environ = os.environ if environ is None else environ
        self.max_bytes = max_bytes
        self.headers = dict(headers or {})
        self.origin_headers = {}
        for text, values in (origin_headers or {}).items():
            self.origin_headers.setdefault(parse_origin(text), {}).update(values or {})
        self.budget = dict(DEFAULT_BUDGET, **dict(budget or {}))
        self.file_timeout = float(getattr(fetcher, 'timeout', FILE_TIMEOUT) or FILE_TIMEOUT)
        self.requests = []          # URLs actually fetched (cache misses), in order
        self._cache = {}
        self._parsed = {}
        self._blobs = {}
        self._xdg_entries = None
        self._xdg_attempts = []

    # ------------------------------------------------------------------ fetching

    def _get(self, run, url, accept, max_bytes=None, local=False):
        """Fetch ``url`` once per client (results and failures are cached).

        ``local``: the document naming ``url`` was itself read from a local file,
        so a ``file:`` URL may be read; otherwise only the allowed protocols are.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        scheme = _scheme(url)
        if scheme == 'file' and not local:
            raise FetchError('refused: a remote document names this local file; only the local XDG '
                             'configuration (and local files it names) may use file: URIs')
        if scheme != 'file' and scheme not in self.protocols:
            allowed = ' or '.join(self.protocols)
            if scheme in ('http', 'https'):
                raise FetchError('refused: %s is not an allowed protocol (protocols: %s)' % (scheme, allowed))
            raise FetchError('refused: unsupported URI scheme %r (protocols: %s)' % (scheme, allowed))
        cached = _memoized(self._cache, (url, accept, run.scope),
                           lambda: self._get_uncached(run, url, accept, limit))
        if len(cached.body) > limit:
            raise FetchError('body larger than the limit of %d bytes' % limit)
        return cached

    def _get_uncached(self, run, url, accept, limit):
        run.spend('documents')
        self.requests.append(url)
        if _scheme(url) == 'file':
            data = read_local_file(file_path(url), limit, self.file_timeout)
            run.spend('bytes', len(data))
            return Response(url, 200, None, data)
        response = self.fetcher.fetch(url, accept, limit, run.headers_for)
        run.spend('bytes', len(response.body))
        if _scheme(response.url) not in self.protocols:
            raise FetchError('refused: redirected to %s, which is not an allowed protocol'
                             % response.url)
        return response

    def _json(self, run, url, media_type, what, local=False):
        """GET a JSON document of ``media_type``; return (final URL, object). Raises FetchError.

        Parsed documents are cached too (callers do not modify them).
        """
        return _memoized(self._parsed, (url, media_type, what, run.scope, local),
                         lambda: self._parse_json(run, url, media_type, what, local))

    def _parse_json(self, run, url, media_type, what, local):
        response = self._get(run, url, media_type, local=local)
        if response.status in (404, 410):
            raise FetchError('HTTP %d (not found)' % response.status, ABSENT)
        if response.status != 200:
            raise FetchError('HTTP %d' % response.status)
        body = response.body
        if response.content_type is not None or _scheme(response.url) != 'file':
            got, params = parse_content_type(response.content_type)
            if got is None:
                raise FetchError('no Content-Type header (expected %s)' % media_type)
            if got != media_type:
                raise FetchError('served as %s, expected %s' % (got, media_type))
            charset = params.get('charset', 'utf-8').lower()
            if charset not in ('utf-8', 'utf8'):
                try:
                    codecs.lookup(charset)
                    body = body.decode(charset).encode('utf-8')
                except LookupError:
                    raise FetchError('unknown charset %r' % charset)
                except UnicodeError:
                    raise FetchError('body is not valid %s (the declared charset)' % charset)
        try:
            obj = load_json(body, what)
        except DocumentError as exc:
            raise FetchError(str(exc))
        return response.url, obj

    # ------------------------------------------------------------------ XDG

    def xdg_paths(self) -> List[str]:
        """Configuration files in order of decreasing preference (XDG Base Directory 0.8)."""
        env = self.environ
        home = env.get('XDG_CONFIG_HOME') or os.path.join(
            env.get('HOME') or os.path.expanduser('~'), '.config')
        dirs = env.get('XDG_CONFIG_DIRS') or '/etc/xdg'
        bases = [home] + dirs.split(':')
        # The XDG spec: relative paths are invalid and ignored.
        return [os.path.join(base, XDG_FILE) for base in bases if os.path.isabs(base)]

    def _load_xdg(self):
        """Merge the XDG files: on a key, the most preferred file wins. Once per client."""
        if self._xdg_entries is not None:
            return self._xdg_entries
        merged = {}
        attempts = []
        for path in self.xdg_paths():
            uri = file_uri(path)
            try:
                data = read_local_file(path, self.max_bytes, self.file_timeout)
            except FetchError as exc:
                if exc.kind != ABSENT:
                    attempts.append(Attempt(path, exc.reason, ERROR))
                continue
            try:
                config = load_json(data, 'XDG ref-engine discovery file')
                if not isinstance(config, dict):
                    raise DocumentError('expected a JSON object (regexp ref-engines object)')
            except DocumentError as exc:
                attempts.append(Attempt(path, str(exc), ERROR))
                continue
            for key, value in config.items():
                if key not in merged:
                    merged[key] = (value, uri, path)
        entries = []
        for key in sorted(merged, key=lambda k: (-len(k), k)):
            value, uri, path = merged[key]
            try:
                regexp = compile_ere(key)
            except re.error as exc:
                attempts.append(Attempt(path, 'invalid regular expression %r: %s' % (key, exc), ERROR))
                continue
            entries.append((key, regexp, value, uri, path))
        self._xdg_entries = entries
        self._xdg_attempts = attempts
        return entries

    # ------------------------------------------------------------------ discovery

    def _sources(self, run):
        """Yield ref-engines objects for the run's name lazily, most preferred first."""
        name, attempts = run.name, run.attempts
        if self.xdg:
            entries = self._load_xdg()
            attempts.extend(self._xdg_attempts)
            for key, regexp, value, uri, path in entries:
                if regexp.search(name.name):
                    yield _Source('XDG key %r in %s' % (key, path), uri, value, True)
        answered = set()
        for protocol in self.protocols:
            for host in dns_ancestors(name.host):
                authority = host if self.port is None else '%s:%d' % (host, self.port)
                if authority in answered:
                    continue  # it answered over an earlier protocol: do not downgrade
                url = '%s://%s%s' % (protocol, authority, WELL_KNOWN_PATH)
                try:
                    final, obj = self._json(run, url, MT_REF_ENGINES, 'ref-engines object')
                except FetchError as exc:
                    attempts.append(Attempt(url, exc.reason, exc.kind))
                    continue
                answered.add(authority)
                via = '' if final == url else ' (redirected to %s)' % final
                attempts.append(Attempt(url + via, 'ok: ref-engines object', 'ok'))
                yield _Source('%s%s' % (url, via), final, obj, False)

    def _roots_from(self, run, source):
        attempts = run.attempts
        try:
            obj = validate_ref_engines(source.obj, 'ref-engines object')
        except DocumentError as exc:
            attempts.append(Attempt(source.label, str(exc), ERROR))
            return []
        cas = [(c, source.uri, source.local) for c in obj.get('casEngines') or []]
        engines = [e for e in obj.get('refEngines') or [] if e.get('protocol') == INDEX_PROTOCOL]
        if not engines:
            protocols = sorted(set(e.get('protocol') for e in obj.get('refEngines') or []))
            attempts.append(Attempt(source.label, 'no %s ref engine%s' % (
                INDEX_PROTOCOL, ' (only: %s)' % ', '.join(protocols) if protocols else ''), ABSENT))
            return []
        roots = []
        seen = set()
        for engine in engines:
            run.spend('engines')
            try:
                url = check_expanded(expand_uri(engine['uri'], run.name.variables(), base=source.uri), run.name)
            except TemplateError as exc:
                attempts.append(Attempt(source.label, str(exc), ERROR))
                continue
            for root in self._index_roots(run, url, cas, source):
                key = canonical_json(root.merkle)
                if key not in seen:
                    seen.add(key)
                    roots.append(root)
        return roots

    def _index_roots(self, run, url, cas, source):
        name, attempts = run.name, run.attempts
        label = url
        try:
            final, index = self._json(run, url, MT_INDEX, 'image index', local=source.local)
            if final != url:
                label = '%s (redirected to %s)' % (url, final)
            if not isinstance(index, dict):
                raise FetchError('expected a JSON object (image index), got %s' % _kind(index))
            manifests = index.get('manifests', [])
            if not isinstance(manifests, list):
                raise FetchError('image index: "manifests" must be an array, got %s' % _kind(manifests))
            matched = []
            tags = []
            for position, entry in enumerate(manifests):
                what = 'image index: manifests[%d]' % position
                if not isinstance(entry, dict):
                    raise FetchError('%s must be an object, got %s' % (what, _kind(entry)))
                annotations = entry.get('annotations', {})
                if not isinstance(annotations, dict):
                    raise FetchError('%s: "annotations" must be an object' % what)
                tag = annotations.get(REF_NAME)
                if isinstance(tag, str) and tag not in tags:
                    tags.append(tag)
                if name.fragment == '' or tag == name.fragment:
                    try:
                        validate_descriptor(entry, what)
                    except DocumentError as exc:
                        raise FetchError(str(exc))
                    matched.append(entry)
        except FetchError as exc:
            attempts.append(Attempt(label, exc.reason, exc.kind))
            return []
        if not matched:
            if name.fragment:
                reason = 'no entry tagged %r (%s)' % (name.fragment, 'tags here: ' + ', '.join(
                    repr(t) for t in tags[:20]) if tags else 'no tagged entries')
            else:
                reason = 'the index has no entries'
            attempts.append(Attempt(label, reason, 'nomatch'))
            return []
        attempts.append(Attempt(label, 'ok: %d matching entr%s' % (
            len(matched), 'y' if len(matched) == 1 else 'ies'), 'ok'))
        # The entries' own CAS engines may name local files only if the index is a local file.
        index_local = source.local and _scheme(final) == 'file'
        return [_Root(name, entry, final, index_local, cas) for entry in matched]

    def _start(self, name):
        if isinstance(name, str):
            try:
                name = parse_name(name)
            except InvalidName as exc:
                raise DiscoveryError(name, str(exc))
        return _Run(self, name)

    def _roots(self, run):
        for source in self._sources(run):
            roots = self._roots_from(run, source)
            if roots:
                return roots
        raise _failure(run.name.name, run.attempts)

    def roots(self, name: Any) -> Tuple[ImageName, List[_Root], List[Attempt]]:
        """The Merkle roots of ``name`` (text or ImageName) as internal ``_Root`` objects.

        Raises NotFoundError or DiscoveryError listing every attempt.
        """
        run = self._start(name)
        try:
            return run.name, self._roots(run), run.attempts
        except _OutOfBudget as exc:
            raise DiscoveryError(run.name.name, str(exc), run.attempts)

    def headers_for(self, name: Any):
        """``headers_for(url)`` for other requests made on behalf of ``name`` (blobs of a pull).

        The same rule as resolution's: the caller's headers go only to the
        name's own host and to the origins named in ``origin_headers``.
        """
        return self._start(name).headers_for

    def merkle_roots(self, name: Any) -> List[Dict[str, Any]]:
        """The Merkle root objects of ``name``, duplicates dropped."""
        dummy, roots, dummy2 = self.roots(name)
        return [root.merkle for root in roots]

    # ------------------------------------------------------------------ CAS and descent

    def _fetch_blob(self, run, root, descriptor):
        """Fetch a blob through the root's CAS engines and verify size and digest; return bytes."""
        digest = str(parse_digest(descriptor['digest']))
        if digest in self._blobs:
            return self._blobs[digest]
        size = descriptor['size']
        what = '%s (%s)' % (digest, descriptor.get('mediaType'))
        if size > self.max_bytes:
            raise DiscoveryError(root.name.name, '%s is %d bytes, more than the document size limit '
                                 'of %d' % (what, size, self.max_bytes))
        attempts = []
        usable = [(c, b, local) for c, b, local in root.cas_engines
                  if c.get('protocol') == CAS_PROTOCOL and isinstance(c.get('uri'), str)]
        if not usable:
            raise DiscoveryError(root.name.name, 'cannot fetch %s: the root has no %s CAS engine'
                                 % (what, CAS_PROTOCOL))
        tried = set()
        for config, base, local in usable:
            run.spend('engines')
            try:
                url = check_expanded(cas_uri(config['uri'], parse_digest(digest), root.name, base), root.name)
            except TemplateError as exc:
                attempts.append(Attempt(config['uri'], str(exc), ERROR))
                continue
            if (url, local) in tried:
                continue
            tried.add((url, local))
            try:
                response = self._get(run, url, descriptor['mediaType'], max_bytes=size, local=local)
                if response.status != 200:
                    raise FetchError('HTTP %d' % response.status,
                                     ABSENT if response.status in (404, 410) else ERROR)
                verifier = Verifier(digest, size, what)
                verifier.update(response.body)
                verifier.finish()
            except FetchError as exc:
                reason = exc.reason
                if 'larger than the limit' in reason:
                    reason = 'size mismatch: expected %d bytes, got more (%s)' % (size, reason)
                attempts.append(Attempt(url, reason, exc.kind))
                continue
            except VerificationError as exc:
                reason = str(exc)
                if reason.startswith(what + ': '):
                    reason = reason[len(what) + 2:]
                attempts.append(Attempt(url, reason, ERROR))
                continue
            self._blobs[digest] = response.body
            return response.body
        raise DiscoveryError(root.name.name, 'cannot fetch %s through its CAS engines' % what, attempts)

    def _index_children(self, run, root, descriptor):
        body = self._fetch_blob(run, root, descriptor)
        what = 'image index %s' % descriptor['digest']
        try:
            index = load_json(body, what)
            if not isinstance(index, dict) or not isinstance(index.get('manifests'), list):
                raise DocumentError('%s: expected an object with a "manifests" array' % what)
            children = []
            for position, child in enumerate(index['manifests']):
                children.append(validate_descriptor(child, '%s: manifests[%d]' % (what, position)))
        except DocumentError as exc:
            raise DiscoveryError(root.name.name, str(exc))
        return children

    def _select(self, run, root, descriptor, platform, verify, trail):
        """Return (explicit, unknown, seen): descriptors matching ``platform`` under ``descriptor``.

        ``explicit`` match by their platform field; ``unknown`` are manifests
        that declare no platform; ``seen`` lists the platforms met (for errors).
        Each index digest is searched once per run: met again (a DAG), it adds nothing new.
        """
        if 'platform' in descriptor and platform and not platform_matches(platform, descriptor['platform']) \
                and descriptor.get('mediaType') not in INDEX_TYPES:
            return [], [], [descriptor['platform']]
        if platform and descriptor.get('mediaType') in INDEX_TYPES:
            digest = descriptor['digest']
            if digest in trail:
                raise DiscoveryError(root.name.name, 'image index %s contains itself' % digest)
            if len(trail) >= MAX_NESTING:
                raise DiscoveryError(root.name.name, 'image indexes nested deeper than %d levels at %s'
                                     % (MAX_NESTING, digest))
            if digest in run.searched:
                return [], [], []
            run.searched.add(digest)
            explicit, unknown, seen = [], [], []
            for child in self._index_children(run, root, descriptor):
                e, u, s = self._select(run, root, child, platform, verify, trail + [digest])
                explicit += e
                unknown += u
                seen += s
            return explicit, unknown, seen
        if verify:
            self._fetch_blob(run, root, descriptor)
        if platform and 'platform' in descriptor:
            return [(descriptor, verify)], [], [descriptor['platform']]
        if platform:
            return [], [(descriptor, verify)], []
        return [(descriptor, verify)], [], []

    def resolve(self, name: Any, platform: Any = None, verify: bool = False) -> List[Dict[str, Any]]:
        """Resolve ``name``; return a list of result dicts (one per selected manifest).

        Each result: ``name``, ``digest``, ``mediaType``, ``size``,
        ``platform`` (or None), ``descriptor`` (the selected descriptor),
        ``root`` (the Merkle root object), ``verified``.
        """
        platform = parse_platform(platform)
        run = self._start(name)
        try:
            return self._resolve(run, platform, verify)
        except _OutOfBudget as exc:
            raise DiscoveryError(run.name.name, str(exc), run.attempts)

    def _resolve(self, run, platform, verify):
        name, roots = run.name, self._roots(run)
        results = []
        seen_platforms = []
        explicit_all, unknown_all = [], []
        for root in roots:
            explicit, unknown, seen = self._select(run, root, root.entry, platform, verify, [])
            explicit_all += [(root, d, v) for d, v in explicit]
            unknown_all += [(root, d, v) for d, v in unknown]
            seen_platforms += seen
        chosen = explicit_all or unknown_all
        if not chosen:
            available = []
            for p in seen_platforms:
                text = format_platform(p)
                if text not in available:
                    available.append(text)
            cls = DiscoveryError if _failed(run.attempts) else NotFoundError
            raise cls(name.name, 'no manifest for platform %s (available: %s)'
                      % (format_platform(platform), ', '.join(available) or 'none'), run.attempts)
        seen = set()
        for root, descriptor, verified in chosen:
            key = (canonical_json(root.merkle), descriptor['digest'])
            if key in seen:
                continue
            seen.add(key)
            results.append({
                'name': name.name,
                'digest': descriptor['digest'],
                'mediaType': descriptor['mediaType'],
                'size': descriptor['size'],
                'platform': descriptor.get('platform'),
                'descriptor': copy.deepcopy(descriptor),
                'root': copy.deepcopy(root.merkle),
                'verified': bool(verified),
            })
        return results


def _kind(value):
    if isinstance(value, bool):
        return 'a boolean'
    return {dict: 'an object', list: 'an array', str: 'a string', int: 'a number',
            float: 'a number', type(None): 'null'}.get(type(value), type(value).__name__)


def _failed(attempts):
    """Whether an attempt failed for another reason than "absent" or "no such tag"."""
    return any(a.kind == ERROR for a in attempts)


def _failure(name, attempts):
    """NotFoundError when publishers answered "no such tag" or every host said "nothing here".

    Any other failure on the way (TLS, a refused redirect, a size limit, a
    timeout, a temporary DNS error, an invalid document) makes it a
    DiscoveryError, which ``on_missing`` does not hide.
    """
    if _failed(attempts):
        return DiscoveryError(name, 'no ref engine returned a matching root', attempts)
    if any(a.kind in ('nomatch', ABSENT) for a in attempts):
        return NotFoundError(name, 'no matching image', attempts)
    return NotFoundError(name, 'no ref-engine discovery source applies', attempts)
