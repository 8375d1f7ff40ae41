# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a site's documents and blobs go, and the templates that lead consumers to them.

A *site layout* is how one site (a web root or a bucket prefix) is
organised. The first two are the two publishing layouts of the
oci-discovery specifications (see ``docs/specification.md``):

``cas_bucket``
    one image index per image family at ``oci-index/{path}``, every family's
    blobs shared at ``oci-cas/{algorithm}/{encoded:2}/{encoded}``;
``directories``
    one OCI image layout per family at ``oci-image/{path}/`` (``oci-layout``,
    ``index.json``, ``blobs/{algorithm}/{encoded}``);
``registry`` (S3 buckets only)
    the index at ``oci-index/{path}`` as in ``cas_bucket`` (same well-known
    document), but each family's blobs at the registry API's own path,
    ``v2/{path}/blobs/{algorithm}:{encoded}``: the CAS *is* the registry
    view's blob store, so a bucket behind a front without rewrite rules
    serves ``/v2/<name>/blobs/<digest>`` without a copy. Blobs are stored
    once per family (not shared between families). The index records the
    layout (``LAYOUT_ANNOTATION``), so a family is never half-moved from one
    layout to another (``check_index_layout``).

``SiteLayout`` turns a family and digests into store keys (relative POSIX
paths) and URLs, gives the casEngines entry written into every published
index entry, and refuses templates that would not lead consumers to the keys
written. The well-known ref-engines document of a site is planned here too
(``default_ref_engines``, ``managed_ref_engines``, ``update_ref_engines``).

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

from urllib.parse import quote, unquote, urlsplit

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    DigestError, digest_bytes, parse_digest)
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    DocumentError, build_ref_engines, canonical_json, load_json, merge_ref_engines, validate_ref_engines)
from ansible_collections.oci.discovery.plugins.module_utils._names import (
    ImageName, InvalidName, parse_name, safe_relpath)
from ansible_collections.oci.discovery.plugins.module_utils._spec import (
    CAS_PROTOCOL, INDEX_PROTOCOL, MAX_REF_ENGINES_BYTES, WELL_KNOWN_KEY)

SITE_LAYOUTS = ('cas_bucket', 'directories', 'registry')
# The site layouts a web root can have (the nginx_publisher role rewrites /v2/ blob URLs to their CAS).
WEB_ROOT_LAYOUTS = ('cas_bucket', 'directories')
# The top-level annotation of a family index published in a site layout other than cas_bucket and directories
# (whose index keys differ: a cas_bucket index never has it).
LAYOUT_ANNOTATION = 'io.github.oci-discovery.site-layout'
# Names that a family path may not use as a segment in the directories layout:
# they are the files and directories of the layout served for another family.
_LAYOUT_NAMES = ('blobs', 'index.json', 'oci-layout')
# Characters kept as they are when a name path is copied into a URL or a
# template literal: RFC 3986 pchar and "/" minus "'" (not allowed in RFC 6570 literals).
_PATH_SAFE = "/:@!$&()*+,;=-._~"
_BAD_BASE_CHARS = frozenset(' "\'<>\\^`{|}%')


class PlanError(ValueError):
    """Publishing cannot go ahead; the message names the tag, file, template or digest."""


def check_base_url(url: str) -> str:
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


def check_kind(kind: str) -> str:
    """A site layout's name, or PlanError naming the choices."""
    if kind not in SITE_LAYOUTS:
        raise PlanError('unknown site layout %r (choose %s)' % (kind, ' or '.join(SITE_LAYOUTS)))
    return kind


def check_web_root_kind(kind: str) -> str:
    """A site layout a web root can have, or PlanError saying why ``registry`` is for S3 only."""
    if kind == 'registry':
        raise PlanError('site_layout registry is for S3 buckets (s3_publish_layout), where a front without rewrite '
                        'rules needs the blobs at the registry paths v2/<name>/blobs/; in a web root the '
                        'nginx_publisher role serves /v2/<name>/blobs/ from the CAS of cas_bucket or directories '
                        'without a copy: choose one of those')
    return check_kind(kind)


def recorded_layout(index) -> str:
    """The site layout a parsed family index at ``oci-index/`` was published with (``cas_bucket`` unless recorded)."""
    annotations = index.get('annotations') if isinstance(index, dict) else None
    kind = annotations.get(LAYOUT_ANNOTATION) if isinstance(annotations, dict) else None
    return kind if kind in SITE_LAYOUTS else 'cas_bucket'


def check_index_layout(index, kind: str, what: str) -> None:
    """Refuse to publish in site layout ``kind`` into an index that has entries published in another one.

    The entries of an index point at one CAS (their casEngines); mixing two
    would leave blobs where prune of one layout cannot see them. An index
    without entries is adopted by the new layout.
    """
    if index is None or not index.get('manifests'):
        return
    recorded = recorded_layout(index)
    if kind in ('cas_bucket', 'registry') and recorded != kind:
        raise PlanError('%s was published with site_layout %s, not %s: its blobs are at %s; publish with '
                        'site_layout %s (or leave site_layout unset), or withdraw every tag (state: absent, '
                        'prune: true) before publishing the family in another layout'
                        % (what, recorded, kind, 'v2/<name>/blobs/' if recorded == 'registry' else 'oci-cas/',
                           recorded))


def default_layout(index_raw, registry_view: bool, path: str) -> str:
    """The site layout of an S3 family when ``site_layout`` is not given.

    ``index_raw`` is the family's index at ``oci-index/{path}`` (None: not
    published yet). A published family keeps the layout its index records;
    a new one gets ``registry`` when the registry view is on and its path is a
    registry repository name (no blob copies), else ``cas_bucket``.
    """
    if index_raw is not None:
        try:
            return recorded_layout(load_json(index_raw, 'index'))
        except DocumentError:
            return 'cas_bucket'       # the publish refuses the invalid index, naming it
    from ansible_collections.oci.discovery.plugins.module_utils._registry import valid_name
    return 'registry' if registry_view and valid_name(path) else 'cas_bucket'


# -- site layouts --------------------------------------------------------------

class SiteLayout:
    """Where a family's documents and blobs go in a store, and the templates that find them.

    ``kind`` is ``cas_bucket``, ``directories`` or ``registry`` (``SITE_LAYOUTS``); ``name`` an image family
    (``example.com/team/app``, no fragment); ``base_url`` the public URL of
    the store's root (default ``https://<host of name>``). ``cas_template``
    and ``index_template`` override the defaults written for consumers.
    """

    def __init__(self, kind: str, name, base_url: str = None, cas_template: str = None,
                 index_template: str = None):
        check_kind(kind)
        self.kind = kind
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
        if kind == 'directories':
            for segment in self.path.split('/'):
                if segment in _LAYOUT_NAMES:
                    raise PlanError('name %r: a path segment %r would collide with the files of a served '
                                    'layout in the directories site layout' % (name.name, segment))
        if kind == 'registry':
            from ansible_collections.oci.discovery.plugins.module_utils._registry import NAME_HELP, valid_name
            if not valid_name(self.path):
                raise PlanError('name %r: site_layout registry stores blobs at v2/<name>/blobs/, but the path %r is '
                                'not a registry repository name (%s): use site_layout cas_bucket'
                                % (name.name, self.path, NAME_HELP))
        if not base_url and name.host.startswith('['):
            raise PlanError('name %r: the host is an IP literal, and the default templates (https://{host}/...) '
                            'cannot name it (RFC 6570 percent-encodes "[" and "]"): give base_url, for example '
                            'https://%s' % (name.name, name.host))
        self.name = name
        self.base_url = check_base_url(base_url if base_url else 'https://%s' % name.host)
        self._custom = {'cas_template': cas_template, 'index_template': index_template}
        self.cas_template = cas_template or self._default_cas_template()
        self.index_template = index_template or self._default_index_template()
        for option in ('cas_template', 'index_template'):
            value = getattr(self, option)
            if not isinstance(value, str) or not value:
                raise PlanError('%s must be a non-empty URI template, got %r' % (option, value))

    def to_dict(self) -> dict:
        """The arguments that rebuild this site layout (``SiteLayout.from_dict``); JSON-safe."""
        return {'kind': self.kind, 'name': self.name.family, 'base_url': self.base_url,
                'cas_template': self._custom['cas_template'], 'index_template': self._custom['index_template']}

    @classmethod
    def from_dict(cls, data: dict) -> 'SiteLayout':
        return cls(data['kind'], data['name'], base_url=data.get('base_url'),
                   cas_template=data.get('cas_template'), index_template=data.get('index_template'))

    # keys -----------------------------------------------------------------

    @property
    def family_dir(self):
        """The key prefix of the family's layout (directories site layout only)."""
        return 'oci-image/%s/' % self.path

    @property
    def index_key(self):
        if self.kind in ('cas_bucket', 'registry'):
            return 'oci-index/%s' % self.path
        return self.family_dir + 'index.json'

    @property
    def header_key(self):
        """The ``oci-layout`` file of a served layout, or None in the CAS-bucket site layout."""
        return self.family_dir + 'oci-layout' if self.kind == 'directories' else None

    @property
    def blob_prefix(self):
        if self.kind == 'registry':
            return 'v2/%s/blobs/' % self.path
        return 'oci-cas/' if self.kind == 'cas_bucket' else self.family_dir + 'blobs/'

    @property
    def index_prefix(self):
        """The key prefix of every index that may reference this site layout's blobs (None: only ours)."""
        return 'oci-index/' if self.kind == 'cas_bucket' else None

    def blob_key(self, digest: str) -> str:
        d = parse_digest(digest)
        if self.kind == 'cas_bucket':
            return 'oci-cas/%s/%s/%s' % (d.algorithm, d.encoded[:2], d.encoded)
        if self.kind == 'registry':
            return '%s%s:%s' % (self.blob_prefix, d.algorithm, d.encoded)
        return '%s%s/%s' % (self.blob_prefix, d.algorithm, d.encoded)

    def digest_of_key(self, key: str):
        """The digest a blob key stands for, or None for anything else under the blob prefix."""
        if not key.startswith(self.blob_prefix):
            return None
        parts = key[len(self.blob_prefix):].split('/')
        if self.kind == 'registry':
            # v2/<name>/blobs/<digest>; deeper keys belong to a nested name (v2/<name>/blobs/manifests/...)
            parts = parts[0].split(':', 1) if len(parts) == 1 else []
        elif self.kind == 'cas_bucket':
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

    def url(self, key: str) -> str:
        return '%s/%s' % (self.base_url, _url_path(key))

    @property
    def index_url(self):
        return self.url(self.index_key)

    def _default_cas_template(self):
        if self.kind == 'cas_bucket':
            return self.base_url + '/oci-cas/{algorithm}/{encoded:2}/{encoded}'
        if self.kind == 'registry':
            return '%s/%s{algorithm}:{encoded}' % (self.base_url, _url_path(self.blob_prefix))
        return '%s/%sblobs/{algorithm}/{encoded}' % (self.base_url, _url_path(self.family_dir))

    def _default_index_template(self):
        if self.kind in ('cas_bucket', 'registry'):
            return self.base_url + '/oci-index/{path}'
        return self.base_url + '/oci-image/{path}/index.json'

    def cas_engines(self):
        return [{'protocol': CAS_PROTOCOL, 'uri': self.cas_template}]

    def entry(self, descriptor: dict) -> dict:
        """A layout index.json entry as published: a copy with our casEngines added."""
        entry = copy.deepcopy(descriptor)
        engines = entry.get('casEngines')
        engines = list(engines) if isinstance(engines, list) else []
        for engine in self.cas_engines():
            if engine not in engines:
                engines.append(engine)
        entry['casEngines'] = engines
        return entry

    def check_templates(self, sample_digest: str = None) -> None:
        """Refuse templates that would not lead consumers to what is published.

        The index template is expanded for this family and resolved against
        the well-known document's URL; the CAS template for a blob and
        resolved against the index URL, as consumers do. Each must give the
        URL of the key written, under ``base_url``. Needs the ``uritemplate``
        package (controller side).
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


# -- ref-engines documents ------------------------------------------------------------

def default_ref_engines(kind: str, base_url: str = None) -> dict:
    """The well-known document matching a site layout.

    Without ``base_url`` the templates use ``https://{host}`` as the seed
    does; with it, the base URL itself (needed when the site is not at the
    name's host on port 443).
    """
    check_kind(kind)
    base = check_base_url(base_url) if base_url else 'https://{host}'
    if kind in ('cas_bucket', 'registry'):   # the registry layout's casEngines are in every index entry
        return {'refEngines': [{'protocol': INDEX_PROTOCOL, 'uri': base + '/oci-index/{path}'}]}
    return {'refEngines': [{'protocol': INDEX_PROTOCOL, 'uri': base + '/oci-image/{path}/index.json'}],
            'casEngines': [{'protocol': CAS_PROTOCOL, 'uri': base + '/oci-image/{path}/blobs/{algorithm}/{encoded}'}]}


def managed_ref_engines(kind: str, base_url: str = None, ref_engines: list = None, cas_engines: list = None) -> dict:
    """The engines a task manages: those given, or the site layout's defaults when none are."""
    if ref_engines is None and cas_engines is None:
        return default_ref_engines(kind, base_url)
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


def update_ref_engines(raw: bytes, managed: dict, what: str, exclusive: bool = False, force: bool = False):
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


__all__ = ['LAYOUT_ANNOTATION', 'SITE_LAYOUTS', 'WEB_ROOT_LAYOUTS', 'PlanError', 'SiteLayout', 'check_base_url',
           'check_index_layout', 'check_kind', 'check_web_root_kind', 'default_layout', 'default_ref_engines',
           'managed_ref_engines',
           'recorded_layout', 'update_ref_engines']
