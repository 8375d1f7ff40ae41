# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option adapter shared by the ``oci.discovery.resolve`` lookup and the ``resolve_info`` module.

Both declare the same options (doc fragment ``oci.discovery.resolve``); this
module turns them into a discovery client and turns results into what each
plugin returns.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.oci.discovery.plugins.module_utils._discovery import (
    DEFAULT_MAX_BYTES, Client, PlatformError, parse_platform)
from ansible_collections.oci.discovery.plugins.module_utils._urls import (
    DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT, UrlFetcher)

# option name -> default (None: no default)
CLIENT_OPTIONS = {
    'protocols': ['https'],
    'port': None,
    'validate_certs': True,
    'ca_path': None,
    'timeout': DEFAULT_TIMEOUT,
    'use_proxy': True,
    'headers': None,
    'xdg': True,
    'max_redirects': DEFAULT_MAX_REDIRECTS,
    'max_document_size': DEFAULT_MAX_BYTES,
}
RESOLVE_OPTIONS = ('platform', 'verify', 'on_missing')
OUTPUTS = ('digest', 'descriptor', 'root')
ON_MISSING = ('error', 'warn', 'empty')


class OptionError(ValueError):
    """An option value the plugins cannot use; the message names the option."""


def _value(options, key):
    value = options.get(key)
    return CLIENT_OPTIONS[key] if value is None else value


def client_key(options):
    """A hashable key of the options that shape a client (for caching clients)."""
    parts = []
    for key in sorted(CLIENT_OPTIONS):
        value = _value(options, key)
        if isinstance(value, dict):
            value = tuple(sorted((str(k), str(v)) for k, v in value.items()))
        elif isinstance(value, list):
            value = tuple(value)
        parts.append((key, value))
    return tuple(parts)


def build_client(options):
    """A discovery Client from plugin options (missing ones take their defaults)."""
    protocols = [str(p).lower() for p in _value(options, 'protocols')]
    for protocol in protocols:
        if protocol not in ('https', 'http'):
            raise OptionError('protocols: %r is not https or http' % protocol)
    if not protocols:
        raise OptionError('protocols: give at least one of https, http')
    headers = _value(options, 'headers') or {}
    if not isinstance(headers, dict):
        raise OptionError('headers: expected a dict, got %r' % (headers,))
    timeout = float(_value(options, 'timeout'))
    if timeout <= 0:
        raise OptionError('timeout: must be positive, got %r' % timeout)
    max_size = int(_value(options, 'max_document_size'))
    if max_size <= 0:
        raise OptionError('max_document_size: must be positive, got %r' % max_size)
    port = options.get('port')
    fetcher = UrlFetcher(protocols=protocols, validate_certs=bool(_value(options, 'validate_certs')),
                         ca_path=options.get('ca_path') or None, use_proxy=bool(_value(options, 'use_proxy')),
                         headers=dict((str(k), str(v)) for k, v in headers.items()), timeout=timeout,
                         max_redirects=int(_value(options, 'max_redirects')))
    try:
        return Client(fetcher, protocols=protocols, port=int(port) if port not in (None, '') else None,
                      xdg=bool(_value(options, 'xdg')), max_bytes=max_size)
    except ValueError as exc:
        raise OptionError(str(exc))


def parse_request(item, default_platform=None):
    """A lookup term or ``names`` item -> (name, platform dict or None).

    An item is a name string or a dict ``{name: ..., platform: ...}``.
    """
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(('name', 'platform')))
        if unknown or not isinstance(item.get('name'), str):
            raise OptionError('expected a name or a dict with "name" (and optional "platform"), got %r' % (item,))
        name, platform = item['name'], item.get('platform', default_platform)
    elif isinstance(item, str):
        name, platform = item, default_platform
    else:
        raise OptionError('expected an image name (string), got %r' % (item,))
    try:
        return name, parse_platform(platform)
    except PlatformError as exc:
        raise OptionError('platform for %s: %s' % (name, exc))


def output_of(result, output):
    """What the lookup returns for one result."""
    if output == 'digest':
        return result['digest']
    if output == 'descriptor':
        return result['descriptor']
    if output == 'root':
        return result['root']
    raise OptionError('output: %r is not one of %s' % (output, ', '.join(OUTPUTS)))


def module_match(result):
    """One entry of ``matches`` in the module's results (snake_case keys; documents keep theirs)."""
    return {
        'digest': result['digest'],
        'media_type': result['mediaType'],
        'size': result['size'],
        'platform': result['platform'],
        'descriptor': result['descriptor'],
        'root': result['root'],
        'verified': result['verified'],
    }
