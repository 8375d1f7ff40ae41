# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The discovery client: host-based image name -> ref engines -> index -> Merkle roots.

Implements DISCOVERY.md sections 2 to 6 on the consumer side:

* ref-engine discovery from the XDG configuration (section 2.3), then from
  ``/.well-known/oci-host-ref-engines`` on the name's host and its DNS
  ancestors (2.1), https first and http only when the caller allows it;
* the ``oci-index-template-v1`` ref engine (3) and the ``oci-cas-template-v1``
  CAS engine (4, with the name's variables available too);
* platform narrowing and descent into image indexes at any depth, and
  verification (size and digest) of every manifest or index fetched.

Sources are tried in order (XDG keys, longest first; then each protocol, and
within it the host and its ancestors) and the first source that yields at
least one matching root wins; the others are not asked. A source that fails
or yields nothing is recorded with its reason and the next one is tried.

HTTP is not done here: the client takes a ``fetcher``, an object with a
``fetch(url, accept, max_bytes)`` method returning a ``Response`` (final URL
after redirects, status, content type, body) or raising ``FetchError``.
``_urls.py`` provides one built on ``ansible.module_utils.urls``. Every
document is fetched at most once per client (successes and failures are
cached by URL and Accept header).

No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import codecs
import copy
import json
import os
import re
from collections import namedtuple

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    VerificationError, Verifier, parse_digest)
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DocumentError, INDEX_TYPES, MT_DESCRIPTOR, MT_INDEX, MT_REF_ENGINES, REF_NAME,
    canonical_json, load_json, validate_descriptor, validate_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._names import (
    InvalidName, dns_ancestors, parse_name)
from ansible_collections.oci.discovery.plugins.module_utils._templates import (
    TemplateError, cas_uri, expand_uri, resolve as resolve_uri)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_PROTOCOLS = ('https',)
WELL_KNOWN_PATH = '/.well-known/oci-host-ref-engines'
INDEX_TEMPLATE = 'oci-index-template-v1'
CAS_TEMPLATE = 'oci-cas-template-v1'
XDG_FILE = os.path.join('oci-discovery', 'ref-engine-discovery.json')
MAX_NESTING = 8

# Failure kinds. ABSENT: the server says there is nothing there (HTTP 404/410,
# unknown host). Everything else is an ERROR.
ABSENT = 'absent'
ERROR = 'error'


class FetchError(Exception):
    """A request that produced no usable response; ``reason`` says why (no URL in it)."""

    def __init__(self, reason, kind=ERROR):
        super(FetchError, self).__init__(reason)
        self.reason = reason
        self.kind = kind


class Response(namedtuple('Response', 'url status content_type body')):
    """What a fetcher returns: final URL after redirects, HTTP status, Content-Type (or None), bytes."""

    __slots__ = ()


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
    or every host said there is nothing (404/410/unknown host)."""


class PlatformError(ValueError):
    """A platform option that is not ``os/arch[/variant]`` or a dict with os and architecture."""


# --------------------------------------------------------------------------- platforms

_ARCH_ALIASES = {'x86_64': 'amd64', 'x86-64': 'amd64', 'aarch64': 'arm64', 'armhf': 'arm',
                 'armel': 'arm', 'i386': '386', 'i686': '386'}
# Variants that an entry without one is taken to have (as containerd does).
_DEFAULT_VARIANTS = {'arm64': 'v8', 'arm': 'v7'}


def parse_platform(value):
    """``'linux/amd64'``, ``'linux/arm64/v8'`` or a dict -> a platform dict, or None for None/''."""
    if value is None or value == '' or value == {}:
        return None
    if isinstance(value, str):
        parts = value.split('/')
        if len(parts) not in (2, 3) or not all(parts):
            raise PlatformError('invalid platform %r: expected os/architecture[/variant], '
                                'for example linux/amd64 or linux/arm64/v8' % value)
        platform = {'os': parts[0], 'architecture': parts[1]}
        if len(parts) == 3:
            platform['variant'] = parts[2]
        return platform
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(('os', 'architecture', 'variant', 'os.version', 'os.features')))
        if unknown:
            raise PlatformError('invalid platform %r: unknown key(s) %s' % (value, ', '.join(unknown)))
        for key in ('os', 'architecture'):
            if not isinstance(value.get(key), str) or not value.get(key):
                raise PlatformError('invalid platform %r: %r is required (a string)' % (value, key))
        for key in ('variant', 'os.version'):
            if key in value and not isinstance(value[key], str):
                raise PlatformError('invalid platform %r: %r must be a string' % (value, key))
        features = value.get('os.features', [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise PlatformError('invalid platform %r: os.features must be a list of strings' % (value,))
        return dict((k, v) for k, v in value.items() if v not in (None, '', []))
    raise PlatformError('invalid platform %r: expected a string or a dict' % (value,))


def format_platform(platform):
    """``os/architecture[/variant]`` of a platform dict."""
    if not isinstance(platform, dict):
        return 'unknown platform'
    text = '%s/%s' % (platform.get('os'), platform.get('architecture'))
    if platform.get('variant'):
        text += '/' + platform['variant']
    return text


def _normal(platform):
    arch = _ARCH_ALIASES.get(platform.get('architecture'), platform.get('architecture'))
    return platform.get('os'), arch, platform.get('variant') or _DEFAULT_VARIANTS.get(arch)


def platform_matches(want, have):
    """Whether a descriptor's ``platform`` satisfies the wanted one.

    os and architecture must be equal (architecture aliases such as x86_64 ->
    amd64 applied); a wanted variant must equal the entry's (arm64 without a
    variant counts as v8, arm as v7); a wanted os.version must be equal and
    wanted os.features must all be present. Nothing wanted -> True.
    """
    if not want:
        return True
    if not isinstance(have, dict):
        return False
    w_os, w_arch, w_variant = _normal(want)
    h_os, h_arch, h_variant = _normal(have)
    if w_os != h_os or w_arch != h_arch:
        return False
    if want.get('variant') and w_variant != h_variant:
        return False
    if want.get('os.version') and want['os.version'] != have.get('os.version'):
        return False
    features = have.get('os.features') or []
    return all(f in features for f in want.get('os.features') or [])


# --------------------------------------------------------------------------- small helpers

def parse_content_type(value):
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


def file_uri(path):
    """The ``file://`` URI of an absolute local path (percent-encoded as RFC 8089 wants)."""
    from urllib.parse import quote  # local import: only XDG needs it
    return 'file://' + quote(os.path.abspath(path), safe="/!$&'()*+,;=:@-._~")


def _file_path(url):
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(url)
    if parts.netloc not in ('', 'localhost'):
        raise FetchError('file URI with a remote host %r is not supported' % parts.netloc)
    return unquote(parts.path)


_POSIX_CLASSES = {
    'alpha': 'a-zA-Z', 'digit': '0-9', 'alnum': 'a-zA-Z0-9', 'upper': 'A-Z', 'lower': 'a-z',
    'space': r' \t\n\r\f\v', 'blank': r' \t', 'xdigit': '0-9A-Fa-f', 'punct': re.escape(
        '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'), 'cntrl': r'\x00-\x1f\x7f', 'print': r' -~',
    'graph': r'!-~',
}


def compile_ere(pattern):
    """Compile an XDG key (a POSIX extended regular expression) with Python's ``re``.

    Differences between POSIX ERE and Python that matter here:

    * POSIX bracket classes (``[[:alpha:]]``) do not exist in Python; they are
      translated to ranges here (C locale).
    * ERE matching is leftmost-longest, Python's is leftmost-first. Keys are
      matched against the whole name with ``re.fullmatch``, which backtracks
      until the whole string matches if any way does, so the yes/no answer is
      the same.
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
    """A ref-engines object and where it came from (``uri`` is the base for relative URIs)."""

    __slots__ = ()


class _Root(object):
    """A Merkle root plus what is needed to fetch its content (CAS engines with their bases)."""

    def __init__(self, name, entry, index_uri, shared_cas, local):
        self.name = name
        self.entry = entry
        self.index_uri = index_uri
        # [(config, base URI)]: the entry's own CAS engines (relative to the index),
        # then those of the ref-engines object (relative to where it came from).
        self.cas_engines = [(c, index_uri) for c in _own_cas(entry)] + list(shared_cas)
        self.local = local
        merged = copy.deepcopy(entry)
        configs = _own_cas(entry)
        seen = set(canonical_json(c) for c in configs)
        for config, base in shared_cas:
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


class Client(object):
    """Resolves host-based image names; one instance shares one document cache.

    :arg fetcher: object with ``fetch(url, accept, max_bytes) -> Response``.
    :arg protocols: well-known discovery protocols in order (``https``, ``http``);
        documents are only fetched over these schemes.
    :arg port: port appended to every host in well-known URIs (``{host}`` in
        templates is never given a port).
    :arg xdg: read the XDG configuration (section 2.3).
    :arg environ: environment for ``XDG_CONFIG_HOME``/``XDG_CONFIG_DIRS``/``HOME``.
    :arg max_bytes: size limit of every JSON document.
    """

    def __init__(self, fetcher, protocols=DEFAULT_PROTOCOLS, port=None, xdg=True,
                 environ=None, max_bytes=DEFAULT_MAX_BYTES):
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
        self.requests = []          # URLs actually fetched (cache misses), in order
        self._cache = {}
        self._parsed = {}
        self._blobs = {}
        self._xdg_entries = None
        self._xdg_attempts = []

    # ------------------------------------------------------------------ fetching

    def fetch(self, url, accept, max_bytes=None, local=False):
        """Fetch ``url`` once per client (results and failures are cached)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        cached = _memoized(self._cache, (url, accept), lambda: self._fetch(url, accept, limit, local))
        if len(cached.body) > limit:
            raise FetchError('body larger than the limit of %d bytes' % limit)
        return cached

    def _fetch(self, url, accept, limit, local):
        scheme = _scheme(url)
        if scheme == 'file' and local:
            return self._read_file(url, limit)
        if scheme not in self.protocols:
            allowed = ' or '.join(self.protocols)
            if scheme in ('http', 'https'):
                raise FetchError('refused: %s is not an allowed protocol (protocols: %s)' % (scheme, allowed))
            raise FetchError('refused: unsupported URI scheme %r (protocols: %s)' % (scheme, allowed))
        self.requests.append(url)
        response = self.fetcher.fetch(url, accept, limit)
        if _scheme(response.url) not in self.protocols:
            raise FetchError('refused: redirected to %s, which is not an allowed protocol'
                             % response.url)
        return response

    def _read_file(self, url, limit):
        path = _file_path(url)
        self.requests.append(url)
        try:
            with open(path, 'rb') as handle:
                data = handle.read(limit + 1)
        except (IOError, OSError) as exc:
            kind = ABSENT if getattr(exc, 'errno', None) == 2 else ERROR
            raise FetchError('cannot read %s: %s' % (path, exc.strerror or exc), kind)
        if len(data) > limit:
            raise FetchError('file larger than the limit of %d bytes' % limit)
        return Response(url, 200, None, data)

    def _json(self, url, media_type, what, local=False):
        """GET a JSON document of ``media_type``; return (final URL, object). Raises FetchError.

        Parsed documents are cached too (callers do not modify them).
        """
        return _memoized(self._parsed, (url, media_type, what),
                         lambda: self._parse_json(url, media_type, what, local))

    def _parse_json(self, url, media_type, what, local):
        response = self.fetch(url, media_type, local=local)
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

    def xdg_paths(self):
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
                with open(path, 'rb') as handle:
                    data = handle.read(self.max_bytes + 1)
            except (IOError, OSError) as exc:
                if getattr(exc, 'errno', None) != 2:
                    attempts.append(Attempt(path, 'cannot read: %s' % (exc.strerror or exc), ERROR))
                continue
            try:
                if len(data) > self.max_bytes:
                    raise DocumentError('file larger than the limit of %d bytes' % self.max_bytes)
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

    def _sources(self, name, attempts):
        """Yield ref-engines objects for ``name`` lazily, most preferred first."""
        if self.xdg:
            entries = self._load_xdg()
            attempts.extend(self._xdg_attempts)
            for key, regexp, value, uri, path in entries:
                if regexp.fullmatch(name.name):
                    yield _Source('XDG key %r in %s' % (key, path), uri, value, True)
        answered = set()
        for protocol in self.protocols:
            for host in dns_ancestors(name.host):
                authority = host if self.port is None else '%s:%d' % (host, self.port)
                if authority in answered:
                    continue  # it answered over an earlier protocol: do not downgrade
                url = '%s://%s%s' % (protocol, authority, WELL_KNOWN_PATH)
                try:
                    final, obj = self._json(url, MT_REF_ENGINES, 'ref-engines object')
                except FetchError as exc:
                    attempts.append(Attempt(url, exc.reason, exc.kind))
                    continue
                answered.add(authority)
                via = '' if final == url else ' (redirected to %s)' % final
                attempts.append(Attempt(url + via, 'ok: ref-engines object', 'ok'))
                yield _Source('%s%s' % (url, via), final, obj, False)

    def _roots_from(self, name, source, attempts):
        try:
            obj = validate_ref_engines(source.obj, 'ref-engines object')
        except DocumentError as exc:
            attempts.append(Attempt(source.label, str(exc), ERROR))
            return []
        cas = [(c, source.uri) for c in obj.get('casEngines') or []]
        engines = [e for e in obj.get('refEngines') or [] if e.get('protocol') == INDEX_TEMPLATE]
        if not engines:
            protocols = sorted(set(e.get('protocol') for e in obj.get('refEngines') or []))
            attempts.append(Attempt(source.label, 'no %s ref engine%s' % (
                INDEX_TEMPLATE, ' (only: %s)' % ', '.join(protocols) if protocols else ''), ABSENT))
            return []
        roots = []
        seen = set()
        for engine in engines:
            try:
                url = expand_uri(engine['uri'], name.variables(), base=source.uri)
            except TemplateError as exc:
                attempts.append(Attempt(source.label, str(exc), ERROR))
                continue
            for root in self._index_roots(name, url, cas, source, attempts):
                key = canonical_json(root.merkle)
                if key not in seen:
                    seen.add(key)
                    roots.append(root)
        return roots

    def _index_roots(self, name, url, cas, source, attempts):
        label = url
        try:
            final, index = self._json(url, MT_INDEX, 'image index', local=source.local)
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
        roots = []
        for entry in matched:
            roots.append(_Root(name, entry, final, cas, source.local))
        return roots

    def roots(self, name):
        """The Merkle roots of ``name`` (text or ImageName) as internal ``_Root`` objects.

        Raises NotFoundError or DiscoveryError listing every attempt.
        """
        if isinstance(name, str):
            try:
                name = parse_name(name)
            except InvalidName as exc:
                raise DiscoveryError(name, str(exc))
        attempts = []
        for source in self._sources(name, attempts):
            roots = self._roots_from(name, source, attempts)
            if roots:
                return name, roots, attempts
        raise _failure(name.name, attempts)

    def merkle_roots(self, name):
        """The Merkle root objects of ``name`` (DISCOVERY.md section 3), duplicates dropped."""
        dummy, roots, dummy2 = self.roots(name)
        return [root.merkle for root in roots]

    # ------------------------------------------------------------------ CAS and descent

    def fetch_blob(self, root, descriptor, engines=None):
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
        engines = list(engines if engines is not None else root.cas_engines)
        usable = [(c, b) for c, b in engines if c.get('protocol') == CAS_TEMPLATE and isinstance(c.get('uri'), str)]
        if not usable:
            raise DiscoveryError(root.name.name, 'cannot fetch %s: the root has no %s CAS engine'
                                 % (what, CAS_TEMPLATE))
        tried = set()
        for config, base in usable:
            try:
                url = cas_uri(config['uri'], parse_digest(digest), root.name, base)
            except TemplateError as exc:
                attempts.append(Attempt(config['uri'], str(exc), ERROR))
                continue
            if url in tried:
                continue
            tried.add(url)
            try:
                response = self.fetch(url, descriptor['mediaType'], max_bytes=size, local=root.local)
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

    def _index_children(self, root, descriptor, trail):
        body = self.fetch_blob(root, descriptor)
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

    def _select(self, root, descriptor, platform, verify, trail):
        """Return (explicit, unknown, seen): descriptors matching ``platform`` under ``descriptor``.

        ``explicit`` match by their platform field; ``unknown`` are manifests
        that declare no platform; ``seen`` lists the platforms met (for errors).
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
            explicit, unknown, seen = [], [], []
            for child in self._index_children(root, descriptor, trail):
                e, u, s = self._select(root, child, platform, verify, trail + [digest])
                explicit += e
                unknown += u
                seen += s
            return explicit, unknown, seen
        if verify:
            self.fetch_blob(root, descriptor)
        if platform and 'platform' in descriptor:
            return [(descriptor, verify)], [], [descriptor['platform']]
        if platform:
            return [], [(descriptor, verify)], []
        return [(descriptor, verify)], [], []

    def resolve(self, name, platform=None, verify=False):
        """Resolve ``name``; return a list of result dicts (one per selected manifest).

        Each result: ``name``, ``digest``, ``mediaType``, ``size``,
        ``platform`` (or None), ``descriptor`` (the selected descriptor),
        ``root`` (the Merkle root object), ``verified``.
        """
        platform = parse_platform(platform)
        name, roots, attempts = self.roots(name)
        results = []
        seen_platforms = []
        explicit_all, unknown_all = [], []
        for root in roots:
            explicit, unknown, seen = self._select(root, root.entry, platform, verify, [])
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
            raise NotFoundError(name.name, 'no manifest for platform %s (available: %s)'
                                % (format_platform(platform), ', '.join(available) or 'none'), attempts)
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


def _failure(name, attempts):
    """NotFoundError when publishers answered "no such tag" or every host said "nothing here"."""
    kinds = set(a.kind for a in attempts) - set(('ok',))
    if 'nomatch' in kinds or (kinds and kinds <= set((ABSENT,))):
        return NotFoundError(name, 'no matching image', attempts)
    if not kinds:
        return NotFoundError(name, 'no ref-engine discovery source applies', attempts)
    return DiscoveryError(name, 'no ref engine returned a matching root', attempts)


def result_json(results):
    """Stable JSON text of results (for debugging and tests)."""
    return json.dumps(results, sort_keys=True, indent=2)
