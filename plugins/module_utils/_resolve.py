# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option adapter shared by the ``oci.discovery.resolve`` lookup and the ``resolve_info`` module.

Both declare the same options (doc fragment ``oci.discovery.resolve``). Their
types and defaults live here once: ``resolve_info`` builds its argument spec
from ``argument_spec()`` and the lookup reads the ``CLIENT_OPTIONS`` names (a
unit test checks the doc fragment against them). This module turns the
options into a discovery client and turns results into what each plugin returns.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
from typing import Any, Dict, Mapping, Optional, Tuple

from ansible_collections.oci.discovery.plugins.module_utils._discovery import (
    BUDGETS, DEFAULT_MAX_BYTES, Client)
from ansible_collections.oci.discovery.plugins.module_utils._platforms import PlatformError, parse_platform
from ansible_collections.oci.discovery.plugins.module_utils._urls import (
    DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT, UrlFetcher)

# Options that shape a client: option name -> Ansible argument spec.
CLIENT_OPTIONS = {
    'protocols': dict(type='list', elements='str', choices=['https', 'http'], default=['https']),
    'port': dict(type='int'),
    'validate_certs': dict(type='bool', default=True),
    'ca_path': dict(type='path'),
    'timeout': dict(type='float', default=DEFAULT_TIMEOUT),
    'use_proxy': dict(type='bool', default=True),
    'headers': dict(type='dict', no_log=True),
    'origin_headers': dict(type='dict', no_log=True),
    'xdg': dict(type='bool', default=True),
    'max_redirects': dict(type='int', default=DEFAULT_MAX_REDIRECTS),
    'max_document_size': dict(type='int', default=DEFAULT_MAX_BYTES),
}
CLIENT_OPTIONS.update((option, dict(type='int', default=default)) for dummy, option, default, dummy2 in BUDGETS)
# Options of each resolution.
REQUEST_OPTIONS = {
    'platform': dict(type='raw'),
    'verify': dict(type='bool', default=False),
    'on_missing': dict(type='str', choices=['error', 'warn', 'empty'], default='error'),
}
OUTPUTS = ('digest', 'descriptor', 'root')


class OptionError(ValueError):
    """An option value the plugins cannot use; the message names the option."""


def argument_spec() -> Dict[str, Dict[str, Any]]:
    """The argument spec of every shared option (a fresh copy)."""
    spec = copy.deepcopy(CLIENT_OPTIONS)
    spec.update(copy.deepcopy(REQUEST_OPTIONS))
    return spec


def _value(options, key):
    value = options.get(key)
    return CLIENT_OPTIONS[key].get('default') if value is None else value


def _frozen(value):
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def client_key(options: Mapping[str, Any]) -> Tuple[Any, ...]:
    """A hashable key of the options that shape a client (for caching clients)."""
    return tuple((key, _frozen(_value(options, key))) for key in sorted(CLIENT_OPTIONS))


def _headers(value, option):
    """A dict of header name -> value (strings), or OptionError naming the option (not the values)."""
    if not isinstance(value, dict):
        raise OptionError('%s: expected a dict of header names to values' % option)
    return dict((str(k), str(v)) for k, v in value.items())


def _positive(options, key, convert):
    value = convert(_value(options, key))
    if value <= 0:
        raise OptionError('%s: must be positive, got %r' % (key, value))
    return value


def build_client(options: Mapping[str, Any]) -> Client:
    """A discovery Client from plugin options (missing ones take their defaults)."""
    protocols = [str(p).lower() for p in _value(options, 'protocols')]
    for protocol in protocols:
        if protocol not in ('https', 'http'):
            raise OptionError('protocols: %r is not https or http' % protocol)
    if not protocols:
        raise OptionError('protocols: give at least one of https, http')
    headers = _headers(_value(options, 'headers') or {}, 'headers')
    origin_headers = _value(options, 'origin_headers') or {}
    if not isinstance(origin_headers, dict):
        raise OptionError('origin_headers: expected a dict of origins (https://host[:port]) to dicts of headers')
    origin_headers = dict((str(origin), _headers(values, 'origin_headers[%s]' % origin))
                          for origin, values in origin_headers.items())
    timeout = _positive(options, 'timeout', float)
    budget = dict((key, _positive(options, option, int)) for key, option, dummy, dummy2 in BUDGETS)
    port = options.get('port')
    fetcher = UrlFetcher(protocols=protocols, validate_certs=bool(_value(options, 'validate_certs')),
                         ca_path=options.get('ca_path') or None, use_proxy=bool(_value(options, 'use_proxy')),
                         timeout=timeout, max_redirects=int(_value(options, 'max_redirects')))
    try:
        return Client(fetcher, protocols=protocols, port=int(port) if port not in (None, '') else None,
                      xdg=bool(_value(options, 'xdg')), max_bytes=_positive(options, 'max_document_size', int),
                      headers=headers, origin_headers=origin_headers, budget=budget)
    except ValueError as exc:
        if 'not an origin' in str(exc):
            raise OptionError('origin_headers: %s' % exc)
        raise OptionError(str(exc))


def parse_request(item: Any, default_platform: Any = None) -> Tuple[str, Optional[Dict[str, Any]]]:
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


def output_of(result: Mapping[str, Any], output: str) -> Any:
    """What the lookup returns for one result."""
    if output == 'digest':
        return result['digest']
    if output == 'descriptor':
        return result['descriptor']
    if output == 'root':
        return result['root']
    raise OptionError('output: %r is not one of %s' % (output, ', '.join(OUTPUTS)))


def module_match(result: Mapping[str, Any]) -> Dict[str, Any]:
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
