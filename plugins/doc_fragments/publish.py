# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by oci.discovery.publish_layout and oci.discovery.s3_publish_layout
    # (their argument spec: _publish.PUBLISH_OPTIONS).
    DOCUMENTATION = r'''
options:
  tags:
    description:
      - The tags (C(org.opencontainers.image.ref.name) values of the layout's C(index.json)) to publish
        or, with O(state=absent), to remove.
      - Each item is a tag, or a mapping with C(src) (the tag in the layout) and C(dest) (the tag to
        publish it as) to publish a tag under another name.
      - Default is every tag of the layout. Tags are checked the same way whether they are given here or
        taken from the layout.
    type: list
    elements: raw
  site_layout:
    description:
      - How the site is organised; the two publishing layouts of the oci-discovery specifications, described in
        L(the collection's account of the specifications,
        https://github.com/oci-discovery/ansible-collection-oci-discovery/blob/main/docs/specification.md).
      - V(cas_bucket) writes one image index per family at C(oci-index/{path}) and every family's blobs, shared,
        at C(oci-cas/{algorithm}/{encoded:2}/{encoded}). A family and another nested under it
        (V(example.com/a) and V(example.com/a/b)) cannot both be published this way, as C(oci-index/a) would
        have to be a file and a directory; that is refused before anything is written.
      - V(directories) writes an OCI image layout per family at C(oci-image/{path}/) (C(oci-layout),
        C(index.json), C(blobs/{algorithm}/{encoded})).
      - V(registry) is for S3 buckets (M(oci.discovery.s3_publish_layout) documents it); a web root refuses it,
        saying why (its Nginx serves the registry view's blobs from the CAS of the other two without a copy).
    type: str
    choices: [cas_bucket, directories, registry]
    default: cas_bucket
  base_url:
    description:
      - The public URL of the site root, as consumers reach it, for example V(https://example.com),
        V(https://example.com:8443/mirror), or a CDN or website endpoint in front of a bucket.
      - Default is V(https://) followed by the host of O(name).
      - The CAS template written into the index entries starts with it.
    type: str
  cas_template:
    description:
      - The CAS template (protocol C(oci-cas-template-v1)) written into each published index entry.
      - Default is O(base_url) followed by C(/oci-cas/{algorithm}/{encoded:2}/{encoded}), for
        O(site_layout=directories) by C(/oci-image/<path>/blobs/{algorithm}/{encoded}), for
        O(site_layout=registry) by C(/v2/<path>/blobs/{algorithm}:{encoded}).
      - It is refused unless it expands, for a blob of this family, to that blob's URL under
        O(base_url). A relative template is resolved against the index URL.
    type: str
  index_template:
    description:
      - The index template (protocol C(oci-index-template-v1)) consumers use to find this family's
        index, as written in the well-known document.
      - Only checked here, like O(cas_template), and used to report RV(index_url). Default is
        O(base_url) followed by C(/oci-index/{path}) (V(cas_bucket), V(registry)), or
        C(/oci-image/{path}/index.json).
    type: str
  state:
    description:
      - V(present) publishes the tags; V(absent) removes their entries from the family's index (only
        those tags; blobs stay unless O(prune) is set).
    type: str
    choices: [present, absent]
    default: present
'''
