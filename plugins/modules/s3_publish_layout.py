#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: s3_publish_layout
short_description: Publish tags of an OCI image layout into an S3 bucket
version_added: 0.1.0
description:
  - Makes images of an OCI image layout discoverable through the oci-discovery protocols by
    writing them into an S3 bucket (AWS S3 or any S3-compatible store such as Ceph RGW or MinIO),
    typically served by a CDN or a website endpoint at the root of O(base_url).
  - Same publish algorithm as M(oci.discovery.publish_layout), with one more site layout for
    buckets, V(registry), the default for new families (see O(site_layout)).
  - Every object is served right without any server configuration. A blob gets its descriptor's
    media type as Content-Type (manifests, indexes, configs and layers alike) and a long, immutable
    Cache-Control; indexes and the well-known document get their media type with C(; charset=utf-8)
    and a short Cache-Control.
  - Planning is cheap. One paginated LIST of the blob prefix (one request per 1,000 objects; never
    a HEAD per blob) and one GET per document. Only missing blobs are uploaded, in parallel with a
    bounded pool of O(max_concurrency) requests, multipart above O(multipart_chunksize), streamed
    from disk and verified (size and digest) on the way; a blob that fails verification never
    becomes visible. Blob PUTs are signed and sent with the client's own credentials, HTTP
    session (proxies, O(aws_ca_bundle), O(validate_certs)) and retry settings, without the
    per-request cost of the boto3 client pipeline, except where the client would send something
    more (request checksums set through O(aws_config), signing other than SigV4, adaptive retries);
    then every request goes through the client.
  - Existing objects with a wrong Content-Type or Cache-Control (for example changed by another
    tool) are fixed in place by copying them onto themselves, without a re-upload, and reported as
    changed. To notice this without a HEAD per object, the module keeps a private ledger object,
    C(.oci-discovery/s3-ledger.json) under O(prefix), recording the ETag and LastModified at which
    each blob's headers were last seen to be right. An object rewritten since (any metadata change
    rewrites an S3 object) is checked with one HEAD. Losing the ledger only costs HEADs.
  - Commit order is blobs, then manifests and indexes (blobs too), then the family index, then the
    well-known document, so a reader never finds an index entry whose blobs are missing. The family
    index (and the well-known document) is read-modify-written with a conditional PUT (C(If-Match)
    on the ETag read, C(If-None-Match) when creating) and merged again on a conflict, so two
    publishers of different tags of one family at the same time both get their tags in. See
    O(conditional_writes) for stores without conditional writes.
  - The layout is validated (every blob reachable from the chosen tags is hashed, except blobs a
    previous run verified whose file's device, inode, size, mtime and ctime are unchanged, thanks to a record
    per layout in C($XDG_CACHE_HOME/oci-discovery/), as for M(oci.discovery.publish_layout)) and every
    document read and checked before anything is written. Missing blobs of O(multipart_chunksize) or more
    are the exception. They are hashed once, as their parts are read for the upload, and uploaded first;
    no multipart upload is completed (made visible) unless all of them matched their digests, and nothing
    else is sent before, so a bad large blob still writes nothing. Once uploaded they are recorded as
    verified, so the next run does not hash them either. Small blobs are signed with their digest as
    the payload hash (the server checks it; nothing hashes them twice); the parts of large ones are
    signed (hashed) over http, and over https sent with C(UNSIGNED-PAYLOAD), as botocore does for
    streaming uploads with a checksum (TLS carries them, the blob's digest is the checksum), unless
    O(aws_config) sets C(s3.payload_signing_enabled). Bad input (a broken layout, a name that
    would escape the prefix, an existing index or well-known document that is not valid, a missing
    bucket, wrong credentials) fails with a message naming the file, object or tag, and writes
    nothing.
  - The well-known document goes through the same code as M(oci.discovery.ref_engines) writes it
    into a web root (merged, engines written by others kept), with O(well_known=true).
  - Run it where the layout is, usually the controller (C(delegate_to=localhost)).
options:
  site_layout:
    description:
      - How the site is organised. V(cas_bucket) writes one image index per family at C(oci-index/{path})
        and every family's blobs, shared between families, at C(oci-cas/{algorithm}/{encoded:2}/{encoded}).
        V(directories) writes an OCI image layout per family at C(oci-image/{path}/). V(registry) writes the
        index at C(oci-index/{path}) as V(cas_bucket) does (the same well-known document finds both), but each
        family's blobs at the registry API's own path C(v2/{path}/blobs/{algorithm}:{encoded}), so the
        registry view (O(registry_view)) needs no copy of them; blobs are then stored once per family, not
        shared between families.
      - Default (not set) is the layout the family's index records when the family is published already
        (V(registry) or V(cas_bucket); one GET, the one the publish makes anyway), else V(registry) when
        O(registry_view=true) and the name's path is a registry repository name, else V(cas_bucket).
        Families of one bucket may use different layouts.
      - A family is never moved from one layout to another. Publishing or removing tags with another
        O(site_layout) than the index records is refused, naming both, and writes nothing (withdraw every
        tag with O(prune) first, or publish under another prefix).
      - "What each costs with O(registry_view=true), for a first publish of B blobs (M of them manifests or
        indexes) and T tags: V(registry) uploads the B blobs once and writes M + T + 1 small objects (about
        a KiB each) and the two API root objects: B + M + T + 3 PUTs, the bytes of the layout once.
        V(cas_bucket) and V(directories) upload the B blobs and make B - M server-side copies (CopyObject,
        no upload bytes, but the stored bytes of configs and layers are doubled), then the same M + T + 3
        PUTs: about twice the requests. A re-run that changes nothing costs the same requests as without
        the registry view in V(registry) (the blobs and the view share one LIST of C(v2/<name>/)), one LIST
        page more per 1,000 objects in the others."
    type: str
    choices: [cas_bucket, directories, registry]
    default: null
  src:
    description:
      - The OCI image layout to publish, a directory on the host the module runs on (with
        C(oci-layout), C(index.json) and C(blobs/)).
      - Required when O(state=present). With O(state=absent) it only supplies the tags when O(tags)
        is not given.
    type: path
  name:
    description:
      - The image family the tags are published under, a host-based image name without a fragment,
        for example V(example.com/app) or V(example.com/team/app).
      - Its path must be safe as a relative key (no V(.) or V(..) segment, no V(%), no backslash).
      - A name whose host is an IP literal (V([::1]/app)) needs O(base_url).
      - Index keys leave out the host, so families that differ only in their host (V(a.example.com/app),
        V(b.example.com/app)) cannot share a bucket and prefix; the index records its family and a
        publish of another family into it is refused.
      - Leave it out, with O(well_known=true), to publish only the well-known document.
    type: str
  bucket:
    description:
      - The bucket. It must exist (the M(amazon.aws.s3_bucket) module or the
        C(oci.discovery.s3_publisher) role creates it).
    type: str
    required: true
  prefix:
    description:
      - A key prefix in the bucket that is the root of the site (the origin path of a CDN), for
        example V(sites/example.com). Default is the bucket's root.
      - It must not contain C(*) or C(?). S3 bucket policies read them as wildcards, so a policy
        granting the prefix (as the C(oci.discovery.s3_publisher) role writes) would grant other keys.
    type: str
    default: ''
  force:
    description:
      - Replace an existing index or well-known document that is not valid. Without it, such an
        object is refused, naming it, and nothing is written.
    type: bool
    default: false
  prune:
    description:
      - After publishing, delete the blobs under the blob prefix that no index of the site references
        any more and that are older than O(prune_min_age).
      - S3 has no locks, so a blob uploaded by a publisher that has not written its index yet is only
        protected by its age; keep O(prune_min_age) longer than any publish takes.
    type: bool
    default: false
  prune_min_age:
    description:
      - With O(prune), blobs younger than this many seconds are kept.
    type: int
    default: 86400
  registry_view:
    description:
      - Also make the published tags pullable by registry clients (skopeo, podman, docker,
        containerd) through the pull subset of the OCI Distribution API, from a front (a CDN origin,
        a plain reverse proxy) that only maps the host root to the bucket, without rewrite rules.
        The registry name is the image name's path (C(team/app)).
      - Objects written, in the commit order of the rest (blobs, manifests, index, then tags).
        C(v2/<name>/blobs/<digest>) are the blobs themselves in O(site_layout=registry); in the other
        layouts a server-side copy (CopyObject) of each config and layer (the C(/v2/.../blobs/) path
        cannot be mapped onto the CAS without rewrite rules, and website redirects only work on website
        endpoints). C(v2/<name>/manifests/<digest>) for each manifest and image index reachable from the
        tags (every child of a multi-platform index included), then C(v2/<name>/manifests/<tag>) and
        C(v2/<name>/tags/list) after the index, each with the exact media type as Content-Type. C(v2/) and
        C(v2/<website_index_suffix>) (C({}), C(application/json)) answer the API root C(GET /v2/), on a
        plain front and on a website endpoint (see O(website_index_suffix)); they are rewritten by every
        run that changes the family's view (a run that changes nothing does not look at them).
      - The costs are under O(site_layout). Header drift of the view's objects is found and fixed like
        that of blobs (the metadata ledger; no HEAD per object on a re-run).
      - S3 cannot send C(Docker-Distribution-API-Version) or C(Docker-Content-Digest); skopeo, podman
        and containerd do not need them (they compute the digest from the bytes). Unknown tags and
        digests answer S3's own 404 C(NoSuchKey) (an XML body), or 403 where anonymous readers may not
        list the bucket.
      - Tags that are not registry tags, tags with several index entries, and names whose path is
        not a registry repository name are left out of the view with a warning naming them;
        discovery keeps them. With O(state=absent) the tag objects are removed before the index
        changes; blob copies and manifests by digest stay until O(prune), which removes those the
        family's index no longer reaches (older than O(prune_min_age)), never one it still reaches.
    type: bool
    default: true
  website_index_suffix:
    description:
      - The index document suffix of the bucket's website configuration. With O(registry_view=true) the
        object answering the API root is also written as C(v2/<suffix>), because a website endpoint answers
        C(GET /v2/) with the object C(v2/<suffix>) (AWS S3 and Ceph RGW alike), where a plain front asks for
        the object C(v2/). The C(oci.discovery.s3_publisher) role passes its C(s3_publisher_website_suffix).
      - Empty writes only C(v2/). It must not contain C(/).
    type: str
    default: index.html
  well_known:
    description:
      - Also merge the ref engines of this site into the well-known document
        C(.well-known/oci-host-ref-engines) (after the index). Engines others wrote are kept unless
        O(well_known_exclusive).
      - The engines are O(well_known_ref_engines) and O(well_known_cas_engines) when given, else the
        default for O(site_layout) (an index template under O(base_url), or C(https://{host}) when
        O(base_url) is not set).
    type: bool
    default: false
  well_known_ref_engines:
    description:
      - Ref-engine configurations for the well-known document, each a mapping with at least
        C(protocol) (for example V(oci-index-template-v1) with a C(uri) template).
    type: list
    elements: dict
  well_known_cas_engines:
    description:
      - CAS-engine configurations for the well-known document.
    type: list
    elements: dict
  well_known_exclusive:
    description:
      - Replace the well-known document's engines with the managed ones instead of merging.
    type: bool
    default: false
  acl:
    description:
      - A canned ACL for every published object, for example V(public-read). Default is to send none
        and rely on a bucket policy (the C(oci.discovery.s3_publisher) role writes one); buckets with
        object ownership enforced refuse ACLs.
    type: str
    choices: [private, public-read, public-read-write, authenticated-read, aws-exec-read, bucket-owner-read,
              bucket-owner-full-control]
  blob_cache_control:
    description:
      - Cache-Control of blobs. They never change.
    type: str
    default: public, max-age=31536000, immutable
  document_cache_control:
    description:
      - Cache-Control of indexes and of the well-known document. They change on every publish.
    type: str
    default: public, max-age=60
  max_concurrency:
    description:
      - The most S3 requests in flight at once (uploads, parts, copies, HEADs).
    type: int
    default: 8
  multipart_chunksize:
    description:
      - Blobs of this many bytes or more are uploaded in parts of this size (at least 5 MiB; S3 allows
        10,000 parts, so larger parts are used for larger blobs). Memory use is about
        O(max_concurrency) parts.
    type: int
    default: 8388608
  conditional_writes:
    description:
      - How documents are read-modify-written.
      - V(auto) sends C(If-Match)/C(If-None-Match) and falls back, with a warning, when the store
        answers that it does not implement them. V(always) never falls back. V(never) writes
        unconditionally and reads the document back to re-apply the change if a concurrent writer
        replaced it; on such stores publish one family from one place at a time.
    type: str
    choices: [auto, always, never]
    default: auto
extends_documentation_fragment:
  - oci.discovery.publish
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The bucket is read (LIST, documents, the ledger, HEADs of objects it cannot vouch for) to report
      what would change. A bucket that does not exist yet (created by the real run, as the
      C(oci.discovery.s3_publisher) role does with C(s3_publisher_create_bucket=true)) is reported as empty,
      with a warning and RV(bucket_exists=false).
  diff_mode:
    support: full
    details: The family's index as one C(tag digest) line per entry, the blobs and bytes to send, the objects whose
      headers are fixed, and the well-known document.
  platform:
    platforms: posix
requirements:
  - python >= 3.8 (boto3 1.36 needs it)
  - boto3 >= 1.36.0
  - botocore >= 1.36.0 (checked at start; older versions lack the C(request_checksum_calculation) setting and
    conditional writes)
notes:
  - The module sets the botocore options C(request_checksum_calculation) and C(response_checksum_validation)
    to V(when_required) by default, because since botocore 1.36 the default is V(when_supported),
    and many S3-compatible stores (Ceph RGW over https among them) reject the aws-chunked request
    checksums boto3 then sends. Blobs are verified by their digests either way. Override them in
    O(aws_config).
  - "C(module_defaults): the group C(group/oci.discovery.aws) sets the AWS options of this module and of
    every amazon.aws module at once. The group C(group/amazon.aws.aws) (or C(group/aws)) does not
    reach this module."
  - "Permissions needed: C(s3:ListBucket) (for ListObjectsV2 and HeadBucket; no C(s3:ListAllMyBuckets)),
    C(s3:GetObject), C(s3:PutObject) (C(s3:PutObjectAcl) with O(acl)), and C(s3:DeleteObject) with
    O(prune)."
seealso:
  - module: oci.discovery.publish_layout
  - module: amazon.aws.s3_bucket
author:
  - oci.discovery contributors (@oci-discovery)
'''

EXAMPLES = r'''
- name: Publish every tag of a layout into a bucket served at https://example.com
  oci.discovery.s3_publish_layout:
    src: build/app-layout
    name: example.com/app
    bucket: example-com-site
    well_known: true
  delegate_to: localhost

- name: Publish one tag into a Ceph RGW bucket over https, with a canned ACL
  oci.discovery.s3_publish_layout:
    src: /srv/layouts/app
    name: example.com/team/app
    tags: ["1.2", {src: "1.2", dest: stable}]
    bucket: images
    prefix: sites/example.com
    acl: public-read
    endpoint_url: https://rgw.internal:7480
    aws_ca_bundle: /etc/ssl/internal-ca.pem
    access_key: "{{ rgw_access_key }}"
    secret_key: "{{ rgw_secret_key }}"

- name: Withdraw a tag and delete blobs nothing references (older than a day)
  oci.discovery.s3_publish_layout:
    name: example.com/app
    tags: ["1.0"]
    state: absent
    prune: true
    bucket: example-com-site
'''

RETURN = r'''
name:
  description: The image family.
  returned: when O(name) is given
  type: str
  sample: example.com/app
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: example-com-site
prefix:
  description: The key prefix of the site in the bucket (empty, or ending with C(/)).
  returned: always
  type: str
  sample: sites/example.com/
index:
  description: The key of the family index, relative to O(prefix).
  returned: when O(name) is given
  type: str
  sample: oci-index/app
index_url:
  description: The public URL of the family index.
  returned: when O(name) is given
  type: str
  sample: https://example.com/oci-index/app
cas_template:
  description: The CAS template written into the index entries.
  returned: when O(name) is given
  type: str
  sample: https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}
tags_added:
  description: Tags that were not in the index before (would be added, in check mode).
  returned: when O(name) is given
  type: list
  elements: str
  sample: ["1.0"]
tags_updated:
  description: Tags whose entries changed.
  returned: when O(name) is given
  type: list
  elements: str
  sample: []
tags_removed:
  description: Tags removed from the index (O(state=absent)).
  returned: when O(name) is given
  type: list
  elements: str
  sample: []
tags_unchanged:
  description: Tags already as requested.
  returned: when O(name) is given
  type: list
  elements: str
  sample: []
tag_changes:
  description:
    - For each tag added, updated or removed (that would be, in check mode), the digests of its index entries
      before and after (an empty list where there were none, or are none any more).
  returned: when O(name) is given
  type: dict
  sample: {"1.0": {"before": [], "after": ["sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"]}}
digests:
  description: For each published tag, the digests of its index entries.
  returned: when O(name) is given
  type: dict
  sample: {"1.0": ["sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"]}
blobs_sent:
  description: Blobs uploaded (that would be uploaded, in check mode).
  returned: when O(name) is given
  type: int
  sample: 3
bytes_sent:
  description: Size of the blobs uploaded (that would be uploaded, in check mode).
  returned: when O(name) is given
  type: int
  sample: 122486
blobs_present:
  description: Blobs of the published tags that the bucket already had.
  returned: when O(name) is given
  type: int
  sample: 0
objects_fixed:
  description: Existing objects whose Content-Type or Cache-Control was wrong and was fixed (would be, in check mode).
  returned: always
  type: int
  sample: 1
fixed_keys:
  description: The keys of those objects.
  returned: always
  type: list
  elements: str
  sample: ["oci-cas/sha256/e9/e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"]
well_known_changed:
  description: Whether the well-known document changed (would change, in check mode).
  returned: when O(well_known=true)
  type: bool
  sample: true
well_known:
  description: The well-known document as published (as it would be, in check mode).
  returned: when O(well_known=true)
  type: dict
  sample: {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "https://{host}/oci-index/{path}"}]}
blobs_pruned:
  description: Unreferenced blobs deleted (that would be deleted, in check mode).
  returned: when O(prune=true)
  type: int
  sample: 2
bytes_pruned:
  description: Size of the blobs deleted.
  returned: when O(prune=true)
  type: int
  sample: 4096
replaced_invalid_index:
  description: Why the existing index was replaced (only with O(force=true)).
  returned: when an invalid index was replaced
  type: str
  sample: "s3://site/oci-index/app: invalid JSON: Expecting value: line 1 column 1 (char 0)"
bucket_exists:
  description: Whether the bucket exists. V(false) only in check mode, for a bucket a real run would first have to create.
  returned: always
  type: bool
  sample: true
registry_name:
  description: The repository name of the family in the registry view.
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: str
  sample: team/app
registry_tags:
  description: The published tags that are in the registry view.
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: list
  elements: str
  sample: ["1.0"]
registry_objects_written:
  description: Registry view manifests and tags written (that would be written, in check mode).
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 2
registry_objects_removed:
  description: Registry view tag files or objects removed (that would be removed, in check mode).
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 0
registry_objects_pruned:
  description: Registry view manifests by digest and blob copies that the family's index no longer reaches, deleted
    by O(prune) (that would be deleted, in check mode).
  returned: when O(prune=true) and O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 0
site_layout:
  description: The site layout used (the one chosen when O(site_layout) is not set).
  returned: when O(name) is given
  type: str
  sample: registry
registry_blobs_copied:
  description: Blob copies made for the registry view (0 with O(site_layout=registry), whose blobs are at the view's
    paths).
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 0
requests:
  description:
    - S3 operations made, by kind (C(list_pages), C(head), C(get), C(put) for documents, C(upload) for
      blobs, C(copy) for header fixes, C(delete)). A run that changes nothing makes no C(put),
      C(upload) or C(copy).
  returned: always
  type: dict
  sample: {"list_pages": 1, "head": 0, "get": 3, "put": 0, "upload": 0, "copy": 0, "delete": 0}
'''

import re

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing library

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule, aws_argument_spec

from ansible_collections.oci.discovery.plugins.module_utils import _publish
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._registry import ROOT_KEY
from ansible_collections.oci.discovery.plugins.module_utils._s3 import BLOB_CACHE_CONTROL, DOCUMENT_CACHE_CONTROL, S3Store
from ansible_collections.oci.discovery.plugins.module_utils._site import SITE_LAYOUTS, SiteLayout, default_layout, managed_ref_engines
from ansible_collections.oci.discovery.plugins.module_utils._spec import MAX_INDEX_BYTES

CANNED_ACLS = ['private', 'public-read', 'public-read-write', 'authenticated-read', 'aws-exec-read',
               'bucket-owner-read', 'bucket-owner-full-control']
# The oldest botocore the module works with (checked at start, with a message naming it).
BOTOCORE_FLOOR = '1.36.0'
# Defaults that make S3-compatible stores work out of the box; aws_config overrides them.
BOTOCORE_DEFAULTS = {'request_checksum_calculation': 'when_required',
                     'response_checksum_validation': 'when_required',
                     'retries': {'mode': 'standard', 'max_attempts': 5}}


def argument_spec():
    # amazon.aws treats the access key ID as not secret (no_log=False), so -vvv and every result's
    # invocation would show it; here it is masked like the secret key (same aliases and fallbacks).
    access_key = dict(aws_argument_spec()['access_key'], no_log=True)
    return dict(
        _publish.PUBLISH_OPTIONS,
        access_key=access_key,
        site_layout=dict(type='str', choices=list(SITE_LAYOUTS)),
        src=dict(type='path'),
        name=dict(type='str'),
        bucket=dict(type='str', required=True),
        prefix=dict(type='str', default=''),
        force=dict(type='bool', default=False),
        prune=dict(type='bool', default=False),
        prune_min_age=dict(type='int', default=86400),
        registry_view=dict(type='bool', default=True),
        website_index_suffix=dict(type='str', default='index.html'),
        well_known=dict(type='bool', default=False),
        well_known_ref_engines=dict(type='list', elements='dict'),
        well_known_cas_engines=dict(type='list', elements='dict'),
        well_known_exclusive=dict(type='bool', default=False),
        acl=dict(type='str', choices=CANNED_ACLS),
        blob_cache_control=dict(type='str', default=BLOB_CACHE_CONTROL),
        document_cache_control=dict(type='str', default=DOCUMENT_CACHE_CONTROL),
        max_concurrency=dict(type='int', default=8),
        multipart_chunksize=dict(type='int', default=8 * 1024 * 1024),
        conditional_writes=dict(type='str', choices=['auto', 'always', 'never'], default='auto'),
    )


def choose_layout(p, store):
    """The site layout: O(site_layout), else ``_site.default_layout`` from the family's index (read once)."""
    if p['site_layout']:
        return p['site_layout']
    if p['name'] is None:
        return 'cas_bucket'
    probe = SiteLayout('cas_bucket', p['name'], base_url=p['base_url'])    # the index key of cas_bucket and registry
    return default_layout(store.peek(probe.index_key, MAX_INDEX_BYTES), p['registry_view'], probe.path)


def registry_roots(suffix):
    """The keys of the objects answering ``GET /v2/``: ``v2/``, and ``v2/<suffix>`` for website endpoints."""
    if suffix and '/' in suffix:
        raise ValueError('website_index_suffix %r must not contain "/" (S3 website configurations refuse it)'
                         % suffix)
    return (ROOT_KEY,) + ((ROOT_KEY + suffix,) if suffix else ())


def run(module, client):
    """Options -> ``_publish.run`` with the bucket as the target; returns (result, diff)."""
    p = module.params
    store = S3Store(client, p['bucket'], p['prefix'], acl=p['acl'], blob_cache_control=p['blob_cache_control'],
                    document_cache_control=p['document_cache_control'], max_concurrency=p['max_concurrency'],
                    multipart_threshold=p['multipart_chunksize'], multipart_chunksize=p['multipart_chunksize'],
                    conditional_writes=p['conditional_writes'])
    kind = choose_layout(p, store)
    site = None
    if p['name'] is not None:
        site = SiteLayout(kind, p['name'], base_url=p['base_url'], cas_template=p['cas_template'],
                          index_template=p['index_template'])
    well_known = None
    if p['well_known']:
        well_known = managed_ref_engines(kind, p['base_url'], p['well_known_ref_engines'],
                                         p['well_known_cas_engines'])
    request = _publish.Request(site, state=p['state'], tags=p['tags'], force=p['force'], prune=p['prune'],
                               prune_min_age=p['prune_min_age'], well_known=well_known,
                               exclusive_well_known=p['well_known_exclusive'],
                               registry_view='objects' if p['registry_view'] else None,
                               registry_roots=registry_roots(p['website_index_suffix']))
    layout = Layout(p['src']) if _publish.needs_layout(request, bool(p['src'])) else None
    outcome = _publish.run(_publish.StoreTarget(store), request, layout, check_mode=module.check_mode)
    for warning in store.warnings:
        module.warn(warning)
    fixed = list(store.fixed) if outcome.done else [item['key'] for item in outcome.plan['fix']]
    result = dict(outcome.result, objects_fixed=len(fixed), fixed_keys=[store.object_key(k) for k in fixed],
                  bucket=store.bucket, prefix=store.prefix, requests=dict(store.requests))
    if site is not None:
        result['site_layout'] = kind
    result['changed'] = bool(result['changed'] or fixed)
    differences = list(outcome.diff)
    if fixed:
        differences.append({'prepared': '%d object(s) with wrong Content-Type/Cache-Control %s:\n%s' % (
            len(fixed), 'to fix' if module.check_mode else 'fixed', '\n'.join('  ' + store.describe(k) for k in fixed))})
    return result, differences


def version_below(version, floor):
    """Whether a version string such as ``1.35.99`` is below ``floor`` (its numeric release parts compared)."""
    def release(text):
        match = re.match(r'(\d+(?:\.\d+)*)', text.strip())
        return tuple(int(part) for part in match.group(1).split('.')) if match else ()
    return release(version) < release(floor)


class _BucketToBe(object):
    """The client seen through a bucket that does not exist yet, in check mode: it is empty.

    HeadBucket is asked for real; when it answers 404 (the role creates the
    bucket on the real run), every listing is empty and every object missing,
    so check mode reports what a first publish would write. Nothing else is
    called in check mode.
    """

    def __init__(self, client):
        self._client = client
        self.missing = False

    def head_bucket(self, **kwargs):
        try:
            return self._client.head_bucket(**kwargs)
        except ClientError as e:
            if e.response.get('ResponseMetadata', {}).get('HTTPStatusCode') != 404:
                raise
            self.missing = True
            return {}

    def list_objects_v2(self, **kwargs):
        if self.missing:
            return {'Contents': [], 'IsTruncated': False, 'KeyCount': 0}
        return self._client.list_objects_v2(**kwargs)

    def _object(self, operation, kwargs):
        if self.missing:
            raise ClientError({'Error': {'Code': 'NoSuchKey', 'Message': 'the bucket does not exist yet'},
                               'ResponseMetadata': {'HTTPStatusCode': 404}}, operation)
        return getattr(self._client, operation)(**kwargs)

    def get_object(self, **kwargs):
        return self._object('get_object', kwargs)

    def head_object(self, **kwargs):
        return self._object('head_object', kwargs)


def main():
    module = AnsibleAWSModule(argument_spec=argument_spec(), supports_check_mode=True)
    # request_checksum_calculation (and IfMatch on PutObject) came with botocore 1.36. Checked here, not
    # with require_botocore_at_least: amazon.aws lets every version pass when `packaging` is missing.
    import botocore
    if version_below(botocore.__version__, BOTOCORE_FLOOR):
        module.fail_json(msg='%s (found botocore %s)' % (missing_required_lib(
            'botocore>=%s' % BOTOCORE_FLOOR, reason='for the request_checksum_calculation setting and conditional '
            'writes (IfMatch)'), botocore.__version__), botocore_version=botocore.__version__)
    p = module.params
    if p['name'] is None and not p['well_known']:
        module.fail_json(msg='give name (and src) to publish images, or well_known=true to publish only the '
                             'well-known document')
    if p['name'] is not None and p['state'] == 'present' and not p['src']:
        module.fail_json(msg='state is present but src (the OCI image layout to publish) is missing')
    if set('*?') & set(p['prefix']):
        module.fail_json(msg='prefix %r contains %s: S3 policies read * and ? as wildcards, so a bucket policy '
                             'granting the prefix would grant other keys too; choose a prefix without them'
                             % (p['prefix'], ' and '.join(repr(c) for c in '*?' if c in p['prefix'])))
    from botocore.config import Config
    client = module.client('s3', config=Config(**BOTOCORE_DEFAULTS))
    if module.check_mode:
        client = _BucketToBe(client)
    try:
        result, differences = run(module, client)
    except (ValueError, OSError) as e:  # the core's errors name the file, object, tag or digest
        module.fail_json(msg=str(e))
    except (BotoCoreError, ClientError) as e:  # not expected: the store names what failed
        module.fail_json_aws(e, msg='S3 request failed')
    result['bucket_exists'] = not getattr(client, 'missing', False)
    if not result['bucket_exists']:
        module.warn('the bucket %s does not exist: check mode reports what a publish into it would write once '
                    'it is created (a real run fails unless it is created first)' % p['bucket'])
    if module._diff:
        result['diff'] = differences
    module.exit_json(**result)


if __name__ == '__main__':
    main()
