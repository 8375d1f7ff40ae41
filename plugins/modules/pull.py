#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pull
short_description: Pull images by host-based name into an OCI image layout directory on a managed host
version_added: 0.1.0
description:
  - Resolves host-based image names such as V(example.com/app#1.0) from the managed host, the same way as
    M(oci.discovery.resolve_info) does, then fetches everything the result refers to (nested image indexes,
    manifests, configs, layers) through the CAS engines the resolution found, into an OCI image layout
    directory that podman, skopeo, containerd or umoci can read (C(oci:DEST:TAG)).
  - Every blob is verified, size and digest, while it streams to disk, written aside and renamed into place;
    no body is read past the size its descriptor gives, and memory use does not grow with layer size.
    Configs and layers are fetched a few at a time (O(parallel)).
  - Blobs already in O(dest) are not fetched again; manifests and indexes already there are read from it
    and verified, so a second run with nothing new fetches only the discovery documents (the well-known
    document and the family's index, and with O(platform) the image indexes that choose the platform)
    and reports no change.
  - C(index.json) is written last, under a lock, merged with what is there; entries of other tags are kept.
    A failure (a blob that fails verification, a server that dies mid-pull) leaves O(dest) as it was plus at
    most complete, verified blobs, and names the blob and the URL; running again completes the pull.
  - The layout keeps lock files and a staging area in C(.oci-discovery/) under O(dest); image tools ignore it.
options:
  name:
    description:
      - Image names (V(host/path#fragment)), one or a list, or dicts with C(name) and optional C(platform) and
        C(tag) that override O(platform) and O(tag) for that name.
      - A name without a fragment pulls every entry of the family's index; give O(tag) then.
    type: list
    elements: raw
    required: true
    aliases: [names]
  dest:
    description:
      - The OCI image layout directory on the managed host (with C(oci-layout), C(index.json) and
        C(blobs/)), shared by any number of names. Created, with its parents, when missing.
      - Refused before anything is fetched when it is a symbolic link, not a directory, or a directory
        with other content that is not an OCI image layout.
    type: path
    required: true
  tag:
    description:
      - The tag (C(org.opencontainers.image.ref.name) in C(index.json)) to record each name under.
      - A string is a template for every name, where C({fragment}), C({host}), C({path}) and C({name}) are
        replaced with the parts of each image name, for example V(app-{fragment}); or a list with one tag per
        name, in order.
      - Default is the name's fragment. Two names recorded under the same tag are refused.
    type: raw
  platform:
    description:
      - V(all) (the default) pulls each image as published, a multi-platform image with every platform; its
        tag then names the image index.
      - A platform, as V(linux/amd64), V(linux/arm64/v8) or a dict with C(os), C(architecture) and optional
        C(variant), pulls only that platform's manifest (found in nested indexes at any depth, as
        O(oci.discovery.resolve_info#module:platform) does); its tag then names the manifest.
        V(linux/{{ ansible_facts.architecture }}) is the managed host's own platform (aliases such as
        V(x86_64) and V(aarch64) are understood).
    type: raw
    default: all
  parallel:
    description:
      - Configs and layers fetched at the same time.
    type: int
    default: 4
  blob_timeout:
    description:
      - Deadline in seconds for each config or layer as a whole (connection, redirects and body). A server
        that sends too slowly fails when it runs out, and the next CAS engine is tried.
      - Manifests and indexes, like every document, have O(timeout).
    type: float
    default: 600
  max_pull_size:
    description:
      - Limit in bytes of what one run fetches, all names together; a pull that needs more is refused before
        any blob is fetched (manifests and indexes count as they are read).
    type: int
    default: 68719476736
extends_documentation_fragment:
  - oci.discovery.resolve
attributes:
  check_mode:
    support: full
    description: Resolves and reads the manifests and indexes to report how many blobs and bytes would be
      fetched and whether C(index.json) would change; writes nothing (O(dest) is not created).
  diff_mode:
    support: full
    description: The tags of C(index.json), one C(tag digest [platform]) line per entry, before and after.
notes:
  - O(verify) and O(on_missing) of the shared options do not change anything here; every blob is verified
    and a name that matches nothing fails.
seealso:
  - module: oci.discovery.resolve_info
  - module: oci.discovery.publish_layout
author:
  - oci.discovery contributors (@oci-discovery)
'''

EXAMPLES = r'''
- name: Pull the app onto the host, then copy it into podman's storage
  oci.discovery.pull:
    name: example.com/app#1.0
    dest: /var/lib/images
    tag: app-{fragment}
    platform: linux/{{ ansible_facts.architecture }}
  register: pulled

- name: Give it to podman (skopeo copy oci:/var/lib/images:app-1.0 containers-storage:example.com/app:1.0)
  ansible.builtin.command: skopeo copy oci:/var/lib/images:app-1.0 containers-storage:example.com/app:1.0
  when: pulled is changed

- name: Several names, all platforms, into one layout, through a proxy that needs a header
  oci.discovery.pull:
    name:
      - example.com/app#1.0
      - name: example.com/team/db#15
        tag: db-15
    dest: /srv/mirror/layout
    headers:
      Proxy-Authorization: "{{ proxy_auth }}"
'''

RETURN = r'''
images:
  description: One entry per name, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as resolved.
      type: str
      sample: example.com/app#1.0
    tag:
      description: The tag it is recorded under in C(index.json).
      type: str
      sample: app-1.0
    digest:
      description: The digest of the manifest or index recorded, when there is one (else see RV(images[].digests)).
      type: str
      sample: sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3
    media_type:
      description: Its media type.
      type: str
      sample: application/vnd.oci.image.manifest.v1+json
    platform:
      description: The platform its descriptor declares, or null.
      type: dict
    digests:
      description: Every digest recorded under the tag (several for a name without a fragment).
      type: list
      elements: str
    media_types:
      description: Their media types.
      type: list
      elements: str
    blobs:
      description: Blobs in the image's graph (those already counted for an earlier name excluded).
      type: int
    bytes:
      description: Their total size in bytes.
      type: int
blobs_fetched:
  description: Blobs fetched (in check mode, that would be fetched), manifests and indexes included.
  returned: always
  type: int
  sample: 4
blobs_present:
  description: Blobs that were in O(dest) already and were not fetched.
  returned: always
  type: int
bytes_fetched:
  description: Bytes fetched (in check mode, that would be fetched).
  returned: always
  type: int
tags:
  description: The tags of C(index.json) C(added), C(updated) (another digest) and C(unchanged).
  returned: always
  type: dict
  sample: {"added": ["app-1.0"], "updated": [], "unchanged": []}
requests:
  description: HTTP requests made for discovery documents and blobs (each once).
  returned: always
  type: int
dest:
  description: The layout directory.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.oci.discovery.plugins.module_utils._pull import (
    Pull, PullError, check_dest, image_results, requests_of)
from ansible_collections.oci.discovery.plugins.module_utils._resolve import (
    OptionError, argument_spec, build_client)
from ansible_collections.oci.discovery.plugins.module_utils._stores import StoreError, WebRootStore
from ansible_collections.oci.discovery.plugins.module_utils._templates import HAS_URITEMPLATE, URITEMPLATE_IMPORT_ERROR
from ansible_collections.oci.discovery.plugins.module_utils._urls import fetch_into


def _stream(client):
    def stream(url, accept, max_bytes, consume, timeout, headers_for):
        return fetch_into(client.fetcher, url, accept, max_bytes, consume, timeout, headers_for)
    return stream


def main():
    spec = argument_spec()
    spec.update(
        name=dict(type='list', elements='raw', required=True, aliases=['names']),
        dest=dict(type='path', required=True),
        tag=dict(type='raw'),
        platform=dict(type='raw', default='all'),
        parallel=dict(type='int', default=4),
        blob_timeout=dict(type='float', default=600),
        max_pull_size=dict(type='int', default=68719476736),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if not HAS_URITEMPLATE:
        module.fail_json(msg=missing_required_lib('uritemplate'), exception=URITEMPLATE_IMPORT_ERROR)
    params = module.params
    dest = params['dest']
    result = dict(changed=False, dest=dest, images=[], blobs_fetched=0, blobs_present=0, bytes_fetched=0,
                  tags={}, requests=0)
    pull = store = None
    try:
        client = build_client(params)
        requests = requests_of(params['name'], params['platform'], params['tag'])
        check_dest(dest)
        store = WebRootStore(dest)
        pull = Pull(client, store, _stream(client), lambda: WebRootStore(dest), max_bytes=params['max_pull_size'],
                    parallel=params['parallel'], blob_timeout=params['blob_timeout'])
        pull.plan(requests)
        if not module.check_mode and pull.changed:
            pull.commit()
    except (OptionError, PullError, StoreError) as exc:
        if pull is not None:
            result.update(requests=len(client.requests) + pull.requests, blobs_fetched=pull.fetched,
                          bytes_fetched=pull.bytes_fetched)
        module.fail_json(msg=str(exc), **result)
    finally:
        if store is not None:
            store.close()
    blobs, size = pull.would_fetch if module.check_mode else (pull.fetched, pull.bytes_fetched)
    result.update(changed=pull.changed, images=image_results(pull), blobs_fetched=blobs, blobs_present=pull.present,
                  bytes_fetched=size, requests=len(client.requests) + pull.requests,
                  tags=dict((k, pull.changes[k]) for k in ('added', 'updated', 'unchanged')))
    if module._diff:
        result['diff'] = pull.diff()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
