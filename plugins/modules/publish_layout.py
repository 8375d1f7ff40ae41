#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: publish_layout
short_description: Publish tags of an OCI image layout into a web server's site directory
version_added: 0.1.0
description:
  - Makes images of an OCI image layout on the controller discoverable through the oci-discovery
    protocols, by writing them into a site directory (a web root) on the target host, served by Nginx
    or any static web server.
  - Two site layouts. V(cas_bucket) (the default) writes one image index per image family at
    C(oci-index/{path}) and every family's blobs, shared, at C(oci-cas/{algorithm}/{encoded:2}/{encoded}).
    V(directories) serves each family as an OCI image layout at C(oci-image/{path}/).
    Either way, every published index entry carries a C(casEngines) entry with the CAS template, so
    consumers find the blobs.
  - Only the blobs the target lacks are sent, in one transfer over the host's connection (ssh,
    local, ...), then put in place on the target. A blob that exists with the right size and the right
    content is never sent again; one with the wrong content (changed since it was published, or put
    there by someone else) is replaced, with a warning naming it. The content is checked by hashing,
    skipped for files a publish verified or wrote whose device, inode, size, mtime and ctime have not
    changed since (a record kept in the root's private C(.oci-discovery) directory).
  - On the target, the work (looking at the site, then putting blobs and documents in place) is done
    by the Python modules would use (C(ansible_python_interpreter) or the discovered one), fed its
    program on standard input, where the connection and the become method allow it (the conditions
    of Ansible's pipelining, whether pipelining is switched on or not). Elsewhere, or with
    E(ANSIBLE_KEEP_REMOTE_FILES) set, it is done by runs of this module. Same code, same results.
  - Layers are compressed already. Ansible's default C(ssh_args) include C(-C), which compresses them
    again; setting C(ansible_ssh_args) without C(-C) for publisher hosts makes first publishes of
    large layers much quicker on fast networks. A publish that sends 16 MiB or more through ssh with
    C(-C) says so in a warning.
  - Each blob is verified (size and digest) on arrival before it becomes visible; every file is
    written aside, outside the served paths, and renamed into place; blobs come before manifests,
    manifests before the index. The family index is merged under a lock, so publishers of other
    tags of the same family at the same time lose nothing. A publish that is interrupted leaves no
    partial file under the served paths and can simply be run again.
  - The layout is validated (every blob reachable from the chosen tags is hashed) before anything is
    committed (the blobs the host has on the controller, the ones it lacks on the host as they arrive,
    each once); none is renamed into place unless all match. A blob that a previous run verified is not
    hashed again while its file's device, inode, size, mtime and ctime are unchanged (a record per
    layout in C($XDG_CACHE_HOME/oci-discovery/), default C(~/.cache), used only when it is the
    controller user's own and no one else can write it), so a re-run costs what changed, and one play
    publishing a layout to many hosts hashes it once. Bad input (a broken layout, a name that would
    escape the site root, an existing index that is not a valid image index, a template that does not
    lead to the site) changes nothing on the target.
  - Write the well-known document that makes the host's names discoverable with
    M(oci.discovery.ref_engines).
  - The site keeps private state in C(.oci-discovery/) under O(root) (lock files, staging area);
    do not serve it.
options:
  src:
    description:
      - The OCI image layout to publish, a directory on the controller (with C(oci-layout),
        C(index.json) and C(blobs/)).
      - A relative path is looked up like M(ansible.builtin.copy) does (the role's or playbook's
        C(files/) directory).
      - Required when O(state=present). With O(state=absent) it only supplies the tags when O(tags)
        is not given.
    type: path
  name:
    description:
      - The image family the tags are published under, a host-based image name without a fragment,
        for example V(example.com/app) or V(example.com/team/app).
      - Its path must be safe as a relative path (no V(.) or V(..) segment, no V(%), no backslash).
      - A name whose host is an IP literal (V([::1]/app)) needs O(base_url).
      - Index keys leave out the host, so families that differ only in their host (V(a.example.com/app),
        V(b.example.com/app)) cannot share a site root; the index records its family and a publish of
        another family into it is refused.
    type: str
    required: true
  root:
    description:
      - The site root on the target host, the directory the web server serves as the root of
        O(base_url). Created when missing.
      - Its own path may be or pass through a symbolic link (V(/srv/www) -> V(/data/www)). Below it,
        nothing is reached through a link; a symbolic link there (in C(.oci-discovery/), C(oci-index/),
        C(oci-cas/), ...) is refused with an error naming it, and nothing outside the root is written,
        changed or removed. See C(docs/security.md).
    type: path
    required: true
  owner:
    description:
      - Owner (name or id) of the files and directories created. Default is the user the module runs as.
    type: str
  group:
    description:
      - Group (name or id) of the files and directories created.
    type: str
  mode:
    description:
      - Permissions of the files created, octal (V('0644')). Web servers' workers must be able to read them.
    type: raw
    default: '0644'
  directory_mode:
    description:
      - Permissions of the directories created, octal. Existing directories are left as they are.
    type: raw
    default: '0755'
  prune:
    description:
      - After publishing, remove the blobs that no index of the site references any more (for
        O(site_layout=cas_bucket) every index under C(oci-index/), for O(site_layout=directories) the
        family's own index). Prune waits for publishers that are committing and refuses to run
        (changing nothing) when an index or a referenced manifest cannot be read.
    type: bool
    default: false
  force:
    description:
      - Replace an existing index that is not a valid image index. Without it, such a file is
        refused, naming it, and nothing is written.
    type: bool
    default: false
  registry_view:
    description:
      - Also make the published tags pullable by registry clients (skopeo, podman, docker,
        containerd) through the pull subset of the OCI Distribution API, from the same bytes, so
        that C(example.com/team/app#1.0) (discovery) and C(example.com/team/app:1.0) (registry) are
        one digest. The registry name is the image name's path (C(team/app)).
      - For each manifest and image index reachable from the published tags (every child of a
        multi-platform index included) a copy named after its digest is written at
        C(v2/<name>/manifests/<digest>.<extension>) with the other documents, before the index; for
        each tag a copy at C(v2/<name>/manifests/<tag>.<extension>) after the index, so a tag never
        names a manifest that is not there. The extension stands for the media type
        (C(oci-manifest), C(oci-index), C(docker-manifest), C(docker-list)). Blobs are not
        copied. With O(state=absent) the tag files are removed before the index changes.
      - The web server answers C(/v2/) and maps these files and the blobs (C(/v2/<name>/blobs/<digest>)
        to the CAS); the C(oci.discovery.nginx_publisher) role configures Nginx so.
      - Tags that are not registry tags (C([A-Za-z0-9_][A-Za-z0-9._-]{0,127})), tags with several
        index entries, and names whose path is not a registry repository name (lowercase components
        joined by C(/)) are left out of the view with a warning naming them; discovery keeps them.
      - Manifest files by digest stay when their tag is removed, until O(prune), which removes those the
        family's index no longer reaches together with the unreferenced blobs; prune never removes a
        manifest or blob a published tag still reaches.
    type: bool
    default: true
  _phase:
    description: Internal use only (set by the action plugin).
    type: str
    choices: [probe, commit]
  _request:
    description: Internal use only (set by the action plugin).
    type: raw
  _deliver:
    description: Internal use only (set by the action plugin).
    type: dict
extends_documentation_fragment:
  - oci.discovery.publish
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The target is read (which blobs exist, the current index) to report what would change.
  diff_mode:
    support: full
    details: The family's index as one C(tag digest) line per entry, and counts of blobs and bytes.
  platform:
    platforms: posix
notes:
  - Python on the target needs only its standard library.
  - On a local connection (C(ansible_connection=local)) nothing is transferred; the target copies the
    blobs straight from the layout (the kernel's C(copy_file_range) where the file systems allow it), so
    the user it runs as (with become, the become user) must be able to read the layout. Elsewhere, when
    the blobs the host lacks come to at most 32 MiB, they travel in one uncompressed tar archive on the
    standard input of the commit on the host (where the connection can feed one, as for pipelining), with no
    temporary directory on the host, no file transfer. Otherwise each blob of 8 MiB or more is sent by
    itself through the connection's file transfer, and smaller ones in uncompressed tar archives of at
    most 32 MiB, one at a time in the controller's local temporary directory, so memory and temporary
    space on the controller do not grow with the layer sizes.
  - Serve the index with the media type C(application/vnd.oci.image.index.v1+json; charset=utf-8);
    the C(oci.discovery.nginx_publisher) role writes an Nginx configuration that does.
  - The host variable C(oci_discovery_direct_phases=false) turns the direct runs on the target off (module
    runs instead, same results). They are also off, by themselves, with an ansible-core whose private
    interfaces they use (C(ActionBase._configure_module), C(_low_level_execute_command), the shell's
    C(build_module_command), ...) are not as expected; C(-vvv) says which.
seealso:
  - module: oci.discovery.ref_engines
author:
  - oci.discovery contributors (@oci-discovery)
'''

EXAMPLES = r'''
- name: Publish every tag of a layout built on the controller
  oci.discovery.publish_layout:
    src: build/app-layout
    name: example.com/app
    root: /srv/www/example.com

- name: Publish one tag, and the same image as "stable", to a site on a non-default port
  oci.discovery.publish_layout:
    src: /home/builder/layouts/app
    name: example.com/team/app
    tags:
      - "1.2"
      - src: "1.2"
        dest: stable
    root: /srv/www/example.com
    base_url: https://example.com:8443
    owner: www-data
    group: www-data
  become: true

- name: Serve layouts as directories
  oci.discovery.publish_layout:
    src: build/app-layout
    name: example.com/app
    root: /srv/www/example.com
    site_layout: directories

- name: Withdraw a tag and remove the blobs nothing uses any more
  oci.discovery.publish_layout:
    name: example.com/app
    tags: ["1.0"]
    state: absent
    prune: true
    root: /srv/www/example.com
'''

RETURN = r'''
name:
  description: The image family.
  returned: always
  type: str
  sample: example.com/app
index:
  description: The family index, relative to O(root).
  returned: always
  type: str
  sample: oci-index/app
index_url:
  description: The public URL of the family index.
  returned: always
  type: str
  sample: https://example.com/oci-index/app
cas_template:
  description: The CAS template written into the index entries.
  returned: always
  type: str
  sample: https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}
tags_added:
  description: Tags that were not in the index before (would be added, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["1.0"]
tags_updated:
  description: Tags whose entries changed (another image, or other descriptor fields).
  returned: always
  type: list
  elements: str
  sample: ["latest"]
tags_removed:
  description: Tags removed from the index (O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: []
tags_unchanged:
  description: Tags already as requested (with O(state=absent), tags that were not there).
  returned: always
  type: list
  elements: str
  sample: []
tag_changes:
  description:
    - For each tag added, updated or removed (that would be, in check mode), the digests of its index entries
      before and after (an empty list where there were none, or are none any more).
  returned: always
  type: dict
  sample: {"1.0": {"before": [], "after": ["sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"]}}
digests:
  description: For each published tag, the digests of its index entries (several for a tag with several entries).
  returned: always
  type: dict
  sample: {"1.0": ["sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"]}
blobs_sent:
  description: Blobs sent to the target (that would be sent, in check mode).
  returned: always
  type: int
  sample: 3
bytes_sent:
  description: Size of the blobs sent (that would be sent, in check mode).
  returned: always
  type: int
  sample: 122486
blobs_present:
  description: Blobs of the published tags that the target already had.
  returned: always
  type: int
  sample: 0
blobs_pruned:
  description: Unreferenced blobs removed (that would be removed, in check mode).
  returned: when O(prune=true)
  type: int
  sample: 2
bytes_pruned:
  description: Size of the blobs removed.
  returned: when O(prune=true)
  type: int
  sample: 4096
replaced_invalid_index:
  description: Why the existing index was replaced (only with O(force=true)).
  returned: when an invalid index was replaced
  type: str
  sample: "/srv/www/oci-index/app: invalid JSON: Expecting value: line 1 column 1 (char 0)"
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
  description: Registry view manifest files by digest that the family's index no longer reaches, deleted by
    O(prune) (that would be deleted, in check mode).
  returned: when O(prune=true) and O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 0
registry_blobs_copied:
  description: Blob copies made for the registry view (S3 only; 0 for web roots, whose server maps blobs to the CAS).
  returned: when O(registry_view=true) and the name's path is a registry repository name
  type: int
  sample: 0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oci.discovery.plugins.module_utils._publish import PUBLISH_OPTIONS
from ansible_collections.oci.discovery.plugins.module_utils._stores import WEB_ROOT_OPTIONS
from ansible_collections.oci.discovery.plugins.module_utils._target import PHASES, run_phase


def argument_spec():
    """The options; the action plugin validates the task with the same spec."""
    return dict(
        PUBLISH_OPTIONS,
        **WEB_ROOT_OPTIONS,
        src=dict(type='path'),
        name=dict(type='str', required=True),
        prune=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        registry_view=dict(type='bool', default=True),
        _phase=dict(type='str', choices=list(PHASES)),
        _request=dict(type='raw'),
        _deliver=dict(type='dict'),
    )


REQUIRED_IF = [('state', 'present', ['src'])]


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    if module.params['_phase'] is None:
        module.fail_json(msg='oci.discovery.publish_layout runs through its action plugin, which reads the '
                             'layout on the controller; it cannot run on its own')
    try:
        result = run_phase(module.params, module.check_mode)
    except (ValueError, OSError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
