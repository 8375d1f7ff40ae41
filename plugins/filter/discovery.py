# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: oci.discovery.image_name and oci.discovery.cas_url (documented in image_name.yml, cas_url.yml)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.oci.discovery.plugins.module_utils._digests import DigestError, parse_digest
from ansible_collections.oci.discovery.plugins.module_utils._names import InvalidName, parse_name
from ansible_collections.oci.discovery.plugins.module_utils._spec import CAS_PROTOCOL
from ansible_collections.oci.discovery.plugins.module_utils._templates import TemplateError, cas_uri


def image_name(value):
    """Parse a host-based image name into name, family, host, path and fragment."""
    try:
        name = parse_name(value)
    except InvalidName as exc:
        raise AnsibleFilterError(to_native(exc))
    return {'name': name.name, 'family': name.family, 'host': name.host, 'path': name.path,
            'fragment': name.fragment}


def cas_url(value, template, name=None, base=None):
    """Expand a CAS template (or a casEngines entry) for a digest (or a descriptor)."""
    digest = value.get('digest') if isinstance(value, dict) else value
    if isinstance(template, dict):
        if template.get('protocol') != CAS_PROTOCOL or not isinstance(template.get('uri'), str):
            raise AnsibleFilterError('cas_url: the CAS engine %r is not an oci-cas-template-v1 engine with a uri'
                                     % (template,))
        template = template['uri']
    try:
        parsed = parse_digest(digest)
        name_vars = parse_name(name) if name else None
        return cas_uri(template, parsed, name_vars, base)
    except (DigestError, InvalidName, TemplateError) as exc:
        raise AnsibleFilterError('cas_url: %s' % to_native(exc))


class FilterModule(object):

    def filters(self):
        return {'image_name': image_name, 'cas_url': cas_url}
