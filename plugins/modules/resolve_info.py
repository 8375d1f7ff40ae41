#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: resolve_info
short_description: Resolve host-based OCI image names to digests from a managed host
version_added: 0.1.0
description:
  - Resolves host-based image names such as V(example.com/app#1.0) following the oci-discovery
    specifications, from the managed host (its network, its proxies, its trust store and its XDG
    configuration), the same way as the P(oci.discovery.resolve#lookup) lookup does on the controller.
  - All names are resolved with one client, so each document (well-known file, index) is fetched once.
  - Read-only; never changes anything.
options:
  names:
    description:
      - Image names (V(host/path#fragment)), or dicts with C(name) and an optional C(platform) that overrides
        O(platform) for that name.
    type: list
    elements: raw
    required: true
extends_documentation_fragment:
  - oci.discovery.resolve
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
seealso:
  - plugin: oci.discovery.resolve
    plugin_type: lookup
author:
  - oci.discovery contributors (@oci-discovery)
'''

EXAMPLES = r'''
- name: Resolve the images the host will run
  oci.discovery.resolve_info:
    names:
      - example.com/app#1.0
      - name: example.com/db#15
        platform: linux/arm64
    verify: true
  register: images

- name: Use the digest
  ansible.builtin.debug:
    msg: "app is {{ images.results[0].digest }}"
'''

RETURN = r'''
results:
  description: One entry per requested name, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as requested.
      type: str
      sample: example.com/app#1.0
    platform:
      description: The platform requested for this name (a dict), or null.
      type: dict
    found:
      description: Whether anything matched (false only with O(on_missing=warn) or O(on_missing=empty)).
      type: bool
    digest:
      description: The digest when exactly one manifest (or index) matched, else null.
      type: str
      sample: sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3
    media_type:
      description: Its media type when exactly one matched, else null.
      type: str
      sample: application/vnd.oci.image.manifest.v1+json
    size:
      description: Its size in bytes when exactly one matched, else null.
      type: int
    matches:
      description: Every match, in index order.
      type: list
      elements: dict
      contains:
        digest:
          description: Digest of the selected manifest or index.
          type: str
        media_type:
          description: Its media type.
          type: str
        size:
          description: Its size in bytes.
          type: int
        platform:
          description: The platform its descriptor declares, or null.
          type: dict
        descriptor:
          description: Its OCI descriptor as the publisher wrote it.
          type: dict
        root:
          description: >-
            The Merkle root object (C(mediaType), C(root), C(uri)); with O(platform) on a multi-platform image
            this is the tagged index entry.
          type: dict
        verified:
          description: Whether its size and digest were checked against content fetched through CAS engines.
          type: bool
requests:
  description: Number of HTTP requests (and local files) fetched to resolve all names.
  returned: always
  type: int
  sample: 3
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.oci.discovery.plugins.module_utils._discovery import DiscoveryError, NotFoundError
from ansible_collections.oci.discovery.plugins.module_utils._resolve import (
    OptionError, argument_spec, build_client, module_match, parse_request)
from ansible_collections.oci.discovery.plugins.module_utils._templates import HAS_URITEMPLATE, URITEMPLATE_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(names=dict(type='list', elements='raw', required=True), **argument_spec()),
        supports_check_mode=True,
    )
    if not HAS_URITEMPLATE:
        module.fail_json(msg=missing_required_lib('uritemplate'), exception=URITEMPLATE_IMPORT_ERROR)
    params = module.params
    try:
        client = build_client(params)
        requests = [parse_request(item, params['platform']) for item in params['names']]
    except OptionError as exc:
        module.fail_json(msg=str(exc))

    results = []
    for name, platform in requests:
        entry = dict(name=name, platform=platform, found=False, digest=None, media_type=None, size=None, matches=[])
        try:
            matches = [module_match(r) for r in client.resolve(name, platform=platform, verify=params['verify'])]
        except NotFoundError as exc:
            if params['on_missing'] == 'error':
                module.fail_json(msg=str(exc), results=results, requests=len(client.requests))
            if params['on_missing'] == 'warn':
                module.warn(str(exc))
            matches = []
        except DiscoveryError as exc:
            module.fail_json(msg=str(exc), results=results, requests=len(client.requests))
        entry.update(found=bool(matches), matches=matches)
        if len(matches) == 1:
            entry.update(digest=matches[0]['digest'], media_type=matches[0]['media_type'], size=matches[0]['size'])
        results.append(entry)
    module.exit_json(changed=False, results=results, requests=len(client.requests))


if __name__ == '__main__':
    main()
