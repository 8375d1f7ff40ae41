#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ref_engines
short_description: Write the well-known ref-engines document of a site
version_added: 0.1.0
description:
  - Writes C(.well-known/oci-host-ref-engines) in a site directory (a web root) on the target host.
    It is the document an oci-discovery consumer fetches first, to learn where the host's image
    indexes (ref engines) and blobs (CAS engines) are.
  - The engines come from O(ref_engines) and O(cas_engines), or, when neither is given, are the
    defaults matching O(site_layout), the way M(oci.discovery.publish_layout) lays out the site.
  - Engines already in the document that this task does not manage are kept, unless
    O(exclusive=true). The document is validated, then replaced atomically (written aside and
    renamed) under a lock, so concurrent writers lose nothing.
  - An existing document that is not a valid ref-engines object is refused, naming the file, unless
    O(force=true).
options:
  root:
    description:
      - The site root on the target host, the directory served as the root of the host's https site.
        Created when missing.
    type: path
    required: true
  site_layout:
    description:
      - The site layout whose default engines are written when neither O(ref_engines) nor
        O(cas_engines) is given.
      - V(cas_bucket) writes the index template C(<base>/oci-index/{path}).
      - V(directories) writes the index template C(<base>/oci-image/{path}/index.json) and the CAS
        template C(<base>/oci-image/{path}/blobs/{algorithm}/{encoded}).
      - C(<base>) is O(base_url), or C(https://{host}) without it.
    type: str
    choices: [cas_bucket, directories]
    default: cas_bucket
  base_url:
    description:
      - The public URL of the site root used in the default templates, for example
        V(https://example.com:8443). Needed when the site is not reached at C(https://<host>/).
    type: str
  ref_engines:
    description:
      - Ref-engine configurations to write, each a mapping with at least C(protocol), for example
        C(protocol) V(oci-index-template-v1) with C(uri) V(https://{host}/oci-index/{path}).
    type: list
    elements: dict
  cas_engines:
    description:
      - CAS-engine configurations to write, each a mapping with at least C(protocol), for example
        C(protocol) V(oci-cas-template-v1) with C(uri)
        V(https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}).
    type: list
    elements: dict
  exclusive:
    description:
      - Write only the managed engines, dropping any others the document holds.
    type: bool
    default: false
  force:
    description:
      - Replace an existing document that is not a valid ref-engines object.
    type: bool
    default: false
  owner:
    description:
      - Owner (name or id) of the document and of the directories created.
    type: str
  group:
    description:
      - Group (name or id) of the document and of the directories created.
    type: str
  mode:
    description:
      - Permissions of the document, octal. Web servers' workers must be able to read it.
    type: raw
    default: '0644'
  directory_mode:
    description:
      - Permissions of the directories created, octal.
    type: raw
    default: '0755'
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Serve the document with the media type C(application/vnd.oci.ref-engines.v1+json; charset=utf-8).
  - The site keeps private state (lock files) in C(.oci-discovery/) under O(root); do not serve it.
seealso:
  - module: oci.discovery.publish_layout
author:
  - oci.discovery contributors (@oci-discovery)
'''

EXAMPLES = r'''
- name: Make the names of example.com discoverable (CAS-bucket site, the default)
  oci.discovery.ref_engines:
    root: /srv/www/example.com

- name: A site served on another port, layouts as directories
  oci.discovery.ref_engines:
    root: /srv/www/example.com
    site_layout: directories
    base_url: https://example.com:8443

- name: Exactly these engines, nothing else
  oci.discovery.ref_engines:
    root: /srv/www/example.com
    ref_engines:
      - protocol: oci-index-template-v1
        uri: "https://{host}/oci-index/{path}"
    cas_engines:
      - protocol: oci-cas-template-v1
        uri: "https://cdn.example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}"
    exclusive: true
'''

RETURN = r'''
path:
  description: The document's path on the target.
  returned: always
  type: str
  sample: /srv/www/example.com/.well-known/oci-host-ref-engines
document:
  description: The ref-engines object as it is now (as it would be, in check mode).
  returned: always
  type: dict
  sample: {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "https://{host}/oci-index/{path}"}]}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oci.discovery.plugins.module_utils import _publish
from ansible_collections.oci.discovery.plugins.module_utils._report import pretty_json
from ansible_collections.oci.discovery.plugins.module_utils._site import WEB_ROOT_LAYOUTS, managed_ref_engines
from ansible_collections.oci.discovery.plugins.module_utils._spec import WELL_KNOWN_KEY
from ansible_collections.oci.discovery.plugins.module_utils._stores import WEB_ROOT_OPTIONS, web_root_store


def main():
    module = AnsibleModule(
        argument_spec=dict(
            WEB_ROOT_OPTIONS,
            site_layout=dict(type='str', choices=list(WEB_ROOT_LAYOUTS), default='cas_bucket'),
            base_url=dict(type='str'),
            ref_engines=dict(type='list', elements='dict'),
            cas_engines=dict(type='list', elements='dict'),
            exclusive=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        managed = managed_ref_engines(p['site_layout'], p['base_url'], p['ref_engines'], p['cas_engines'])
        request = _publish.Request(None, force=p['force'], well_known=managed, exclusive_well_known=p['exclusive'])
        with web_root_store(p) as store:
            path = store.describe(WELL_KNOWN_KEY)
            outcome = _publish.run(_publish.StoreTarget(store), request, check_mode=module.check_mode)
    except (ValueError, OSError) as e:
        module.fail_json(msg=str(e))
    result = dict(changed=outcome.result['well_known_changed'], path=path, document=outcome.result['well_known'])
    if module._diff:
        well_known = (outcome.done or outcome.plan)['well_known']
        result['diff'] = {'before_header': path, 'after_header': path,
                          'before': pretty_json(well_known['before']), 'after': pretty_json(well_known['after'])}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
