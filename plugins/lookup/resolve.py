# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: resolve
short_description: Resolve host-based OCI image names to digests, descriptors or Merkle roots
version_added: 0.1.0
description:
  - Resolves host-based image names such as V(example.com/app#1.0) following the oci-discovery
    specifications, on the controller, to pin deployments to digests.
  - Ref engines are discovered from the XDG configuration, then from C(/.well-known/oci-host-ref-engines) on
    the name's host and its DNS ancestors. The C(oci-index-template-v1) ref engine gives an image index whose
    entries tagged with the name's fragment (C(org.opencontainers.image.ref.name)) are the matches; an empty
    fragment matches every entry. C(casEngines) of the ref-engines object are merged into each root.
  - The first source that yields a match wins; the others are not asked.
  - Each term gives zero or more results (several when an index has several entries for the tag and no
    O(platform) narrows them); they are all returned, in index order. Use C(query) or C(lookup(..., wantlist=true))
    to get a list.
  - A term is a name, or a dict with C(name) and an optional C(platform) that overrides O(platform).
options:
  _terms:
    description: Image names (V(host/path#fragment)), or dicts with C(name) and optional C(platform).
    required: true
    type: list
    elements: raw
  output:
    description:
      - V(digest) returns the digest of each selected manifest (or index).
      - V(descriptor) returns its OCI descriptor (a dict with C(mediaType), C(digest), C(size), and whatever
        else the index entry has, such as C(platform), C(annotations), C(casEngines)).
      - V(root) returns the Merkle root object of the specifications (C(mediaType)
        V(application/vnd.oci.descriptor.v1+json), C(root), C(uri)); with O(platform) on a multi-platform
        image, the root is the tagged index entry, not the platform's manifest.
    type: str
    choices: [digest, descriptor, root]
    default: digest
    env:
      - name: OCI_DISCOVERY_OUTPUT
    ini:
      - section: oci_discovery
        key: output
    vars:
      - name: ansible_oci_discovery_output
extends_documentation_fragment:
  - oci.discovery.resolve
  - oci.discovery.resolve.plugins
notes:
  - >-
    Caching: documents are cached per client, and a client lives as long as the Ansible worker process that
    runs the lookup. All terms of one lookup call, and all items of a loop in one task on one host, share
    one cache, so resolving many names on one host costs one well-known request and one request per index.
    Ansible runs every task (per host) in a new forked worker, so the next task starts with an empty cache
    and sees freshly published content. To resolve many names with few requests, pass them all to one
    lookup call (or loop in one task), for example once in a C(set_fact) with C(run_once).
seealso:
  - module: oci.discovery.resolve_info
  - plugin: oci.discovery.image_name
    plugin_type: filter
  - plugin: oci.discovery.cas_url
    plugin_type: filter
'''

EXAMPLES = r'''
- name: Pin a deployment to the digest of example.com/app#1.0
  ansible.builtin.set_fact:
    app_digest: "{{ lookup('oci.discovery.resolve', 'example.com/app#1.0') }}"

- name: The linux/arm64 manifest of a multi-platform image, verified
  ansible.builtin.debug:
    msg: "{{ lookup('oci.discovery.resolve', 'example.com/app#1.0', platform='linux/arm64', verify=true) }}"

- name: Several names in one call share one cache
  ansible.builtin.set_fact:
    digests: "{{ query('oci.discovery.resolve', 'example.com/app#1.0', 'example.com/db#15', 'example.com/web#2') }}"
  run_once: true

- name: Per-name platforms, whole descriptors
  ansible.builtin.debug:
    msg: "{{ query('oci.discovery.resolve', {'name': 'example.com/app#1.0', 'platform': 'linux/amd64'},
                   {'name': 'example.com/app#1.0', 'platform': 'linux/arm64/v8'}, output='descriptor') }}"

- name: Every entry of an index (empty fragment), with an internal CA, nothing found is not an error
  ansible.builtin.debug:
    msg: "{{ query('oci.discovery.resolve', 'registry.internal.example/team/app', ca_path='/etc/pki/internal-ca.pem',
                   on_missing='empty') }}"

- name: A test server on a non-standard port over plain http
  ansible.builtin.debug:
    msg: "{{ lookup('oci.discovery.resolve', 'localhost/app#1.0', protocols=['http'], port=8080) }}"
  vars:
    ansible_oci_discovery_timeout: 3
'''

RETURN = r'''
_raw:
  description:
    - One item per selected manifest (or index) of each term, in order.
    - Digest strings (O(output=digest)), descriptor dicts (O(output=descriptor)) or Merkle root dicts (O(output=root)).
  type: list
  elements: raw
'''

import os

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.oci.discovery.plugins.module_utils._discovery import DiscoveryError, NotFoundError
from ansible_collections.oci.discovery.plugins.module_utils._resolve import (
    CLIENT_OPTIONS, OptionError, build_client, client_key, output_of, parse_request)
from ansible_collections.oci.discovery.plugins.module_utils._templates import HAS_URITEMPLATE

display = Display()

# Clients of this worker process, by options: a loop in one task reuses the cache. The PID in
# the key keeps a client made in the controller's main process out of forked workers.
_CLIENTS = {}


class LookupModule(LookupBase):

    def _client(self):
        options = dict((key, self.get_option(key)) for key in CLIENT_OPTIONS)
        key = (os.getpid(), client_key(options))
        client = _CLIENTS.get(key)
        if client is None:
            client = build_client(options)
            _CLIENTS.clear()  # one client per worker at a time
            _CLIENTS[key] = client
        return client

    def run(self, terms, variables=None, **kwargs):
        # Options may come from ansible_oci_discovery_* variables, which can themselves be
        # templates ("{{ port }}"): render the ones this plugin reads before using them.
        var_options = dict(
            (key, self._templar.template(value)) for key, value in (variables or {}).items()
            if key.startswith('ansible_oci_discovery_'))
        self.set_options(var_options=var_options, direct=kwargs)
        if not HAS_URITEMPLATE:
            raise AnsibleLookupError("oci.discovery.resolve needs the Python package 'uritemplate' on the controller")
        output = self.get_option('output')
        on_missing = self.get_option('on_missing')
        verify = self.get_option('verify')
        try:
            client = self._client()
            requests = [parse_request(term, self.get_option('platform')) for term in terms]
        except OptionError as exc:
            raise AnsibleLookupError('oci.discovery.resolve: %s' % to_native(exc))
        results = []
        for name, platform in requests:
            try:
                found = client.resolve(name, platform=platform, verify=verify)
            except NotFoundError as exc:
                if on_missing == 'error':
                    raise AnsibleLookupError(to_native(exc))
                if on_missing == 'warn':
                    display.warning(to_native(exc))
                continue
            except DiscoveryError as exc:
                raise AnsibleLookupError(to_native(exc))
            results.extend(output_of(result, output) for result in found)
        return results
