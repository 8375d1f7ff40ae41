# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Platforms of OCI descriptors: parsing the ``platform`` option and matching index entries.

No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Any, Dict, Mapping, Optional


class PlatformError(ValueError):
    """A platform option that is not ``os/arch[/variant]`` or a dict with os and architecture."""


_ARCH_ALIASES = {'x86_64': 'amd64', 'x86-64': 'amd64', 'aarch64': 'arm64', 'armhf': 'arm',
                 'armel': 'arm', 'i386': '386', 'i686': '386'}
# Variants that an entry without one is taken to have (as containerd does).
_DEFAULT_VARIANTS = {'arm64': 'v8', 'arm': 'v7'}


def parse_platform(value: Any) -> Optional[Dict[str, Any]]:
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


def format_platform(platform: Any) -> str:
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


def platform_matches(want: Optional[Mapping[str, Any]], have: Any) -> bool:
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
