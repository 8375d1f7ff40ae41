# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by the oci.discovery.resolve lookup and the oci.discovery.resolve_info module.
    DOCUMENTATION = r'''
options:
  protocols:
    description:
      - Protocols for ref-engine discovery and for every document fetched, in the order they are tried.
      - Discovery asks C(/.well-known/oci-host-ref-engines) on the host of the name and on its DNS ancestors
        (V(a.b.example.com), V(b.example.com), V(example.com)) with the first protocol, then all of them again
        with the next one; a host that answered over V(https) is not asked again over V(http).
      - Plain V(http) is off by default because anyone on the path could then choose the image.
        Without it, templates that expand to C(http://) URLs and redirects from https to http are refused.
    type: list
    elements: str
    choices: [https, http]
    default: [https]
  port:
    description:
      - Port appended to every host in well-known URIs, for servers on non-standard ports (as the reference
        client's C(--port)).
      - The C({host}) template variable never includes it; templates on such servers should be relative
        or name the port.
    type: int
  validate_certs:
    description:
      - Verify TLS certificates. Only turn this off for testing.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of certificate authorities to trust instead of the system store.
    type: path
  timeout:
    description:
      - Deadline in seconds for each HTTP request as a whole (connection, TLS, redirects, headers and body).
        A server that sends slowly fails when it runs out, not only one that stops.
    type: float
    default: 10
  use_proxy:
    description:
      - Use the proxy from the C(http_proxy), C(https_proxy) and C(no_proxy) environment variables.
    type: bool
    default: true
  headers:
    description:
      - Extra HTTP request headers (for example C(Authorization)), sent only to the name's own host
        (V(https://HOST) and, when O(protocols) allows it, V(http://HOST), at O(port) when set), never to its
        DNS ancestors or to other hosts that templates or redirects lead to. A redirect to another origin
        drops them, as curl and browsers do; a redirect back to the host sends them again.
      - Their values are never shown (C(no_log)). C(Accept) is always set to the media type each request asks
        for.
      - See O(origin_headers) for other hosts, such as a CDN that serves the blobs.
    type: dict
  origin_headers:
    description:
      - Extra HTTP request headers per origin, a dict of V(https://host[:port]) (or V(http://...)) to a dict of
        headers, for origins other than the name's own host (or in addition to O(headers) there).
      - A request, and each redirect hop, gets the headers of its own origin only; the port is part of the
        origin (V(https://cdn.example.com) means port 443).
      - Their values are never shown (C(no_log)).
    type: dict
  xdg:
    description:
      - Read C($XDG_CONFIG_HOME/oci-discovery/ref-engine-discovery.json) (default C(~/.config)) and the same
        file in each directory of C($XDG_CONFIG_DIRS) (default C(/etc/xdg)) before asking hosts.
      - Keys are POSIX extended regular expressions matched as C(regexec) does, that is anywhere in the image
        name (C(example\.com) matches V(example.com/app#1.0)); write C(^...$) to match the whole name. POSIX
        classes such as C([[:alpha:]]) are translated. The longest matching key is tried first, ties in sort
        order; on the same key the file earlier in that list wins.
      - These files are trusted. Relative URIs in a file resolve against the file's C(file://) URI, and only
        URIs written in these files (or in local files they name) may be C(file://); a remote document that
        names a C(file://) URI is refused. Local files must be regular files (a FIFO or device is refused)
        and are read within O(timeout) and O(max_document_size).
      - When a matching key yields a root, hosts are not asked.
    type: bool
    default: true
  platform:
    description:
      - Select manifests for this platform, as V(linux/amd64), V(linux/arm64/v8) or a dict with C(os),
        C(architecture) and optional C(variant), C(os.version), C(os.features).
      - When several index entries match the name, only those for the platform are kept. When a match is an
        image index (a multi-platform image), it is fetched through its CAS engines, verified, and searched
        for the platform at any depth; the result is then the platform's manifest.
      - Architecture aliases (V(x86_64), V(aarch64)) are understood; V(arm64) without a variant counts as V(v8).
        A manifest that declares no platform is kept only when nothing declares the platform.
      - Not set means no narrowing; a multi-platform image then resolves to its index.
    type: raw
  verify:
    description:
      - Fetch each selected manifest (or index) through its CAS engines and check its size and digest
        before returning it.
      - Indexes fetched to find a O(platform) are always verified.
    type: bool
    default: false
  on_missing:
    description:
      - What to do when a name matches nothing, that is when publishers answered but have no such tag or
        platform, or every host said there is nothing (HTTP 404/410, unknown host), and nothing else failed.
      - V(error) fails, V(warn) warns and returns nothing for the name, V(empty) returns nothing silently.
      - Any other failure on the way (TLS, a refused redirect, a size limit or budget, a timeout, a temporary
        DNS failure, a wrong media type, an invalid document, a failed verification) always fails, even when
        another host then answers without the tag.
    type: str
    choices: [error, warn, empty]
    default: error
  max_redirects:
    description:
      - Redirects followed per request. Loops are detected and named.
    type: int
    default: 5
  max_document_size:
    description:
      - Size limit in bytes of every document (ref-engines object, index, manifest), enforced while reading.
    type: int
    default: 4194304
  max_documents:
    description:
      - Budget of one name's resolution; documents fetched (well-known files, indexes, blobs; a document
        already fetched by the same client costs nothing). When it runs out the name fails, naming the budget.
      - With O(max_engines) and O(max_total_size) it bounds the work a hostile publisher can cause (each
        index digest is searched once per name anyway).
    type: int
    default: 1000
  max_engines:
    description:
      - Budget of one name's resolution; ref engines expanded and CAS engines tried.
    type: int
    default: 1000
  max_total_size:
    description:
      - Budget of one name's resolution; bytes read, all documents together.
    type: int
    default: 67108864
notes:
  - Errors name the image and list every URL tried with the reason it did not help (HTTP status, TLS,
    media type, size, JSON, missing tag).
  - Within one client, each document is fetched once; see the plugin's notes for how long a client lives.
requirements:
  - uritemplate >= 4.1.1 (Python package, on the host that resolves)
'''

    # The same options, also settable from variables, the environment and ansible.cfg (lookup plugins).
    PLUGINS = r'''
options:
  protocols:
    env:
      - name: OCI_DISCOVERY_PROTOCOLS
    ini:
      - section: oci_discovery
        key: protocols
    vars:
      - name: ansible_oci_discovery_protocols
  port:
    env:
      - name: OCI_DISCOVERY_PORT
    ini:
      - section: oci_discovery
        key: port
    vars:
      - name: ansible_oci_discovery_port
  validate_certs:
    env:
      - name: OCI_DISCOVERY_VALIDATE_CERTS
    ini:
      - section: oci_discovery
        key: validate_certs
    vars:
      - name: ansible_oci_discovery_validate_certs
  ca_path:
    env:
      - name: OCI_DISCOVERY_CA_PATH
    ini:
      - section: oci_discovery
        key: ca_path
    vars:
      - name: ansible_oci_discovery_ca_path
  timeout:
    env:
      - name: OCI_DISCOVERY_TIMEOUT
    ini:
      - section: oci_discovery
        key: timeout
    vars:
      - name: ansible_oci_discovery_timeout
  use_proxy:
    env:
      - name: OCI_DISCOVERY_USE_PROXY
    ini:
      - section: oci_discovery
        key: use_proxy
    vars:
      - name: ansible_oci_discovery_use_proxy
  headers:
    # a dict: not from the environment or ansible.cfg, which only give strings
    vars:
      - name: ansible_oci_discovery_headers
  origin_headers:
    vars:
      - name: ansible_oci_discovery_origin_headers
  xdg:
    env:
      - name: OCI_DISCOVERY_XDG
    ini:
      - section: oci_discovery
        key: xdg
    vars:
      - name: ansible_oci_discovery_xdg
  platform:
    env:
      - name: OCI_DISCOVERY_PLATFORM
    ini:
      - section: oci_discovery
        key: platform
    vars:
      - name: ansible_oci_discovery_platform
  verify:
    env:
      - name: OCI_DISCOVERY_VERIFY
    ini:
      - section: oci_discovery
        key: verify
    vars:
      - name: ansible_oci_discovery_verify
  on_missing:
    env:
      - name: OCI_DISCOVERY_ON_MISSING
    ini:
      - section: oci_discovery
        key: on_missing
    vars:
      - name: ansible_oci_discovery_on_missing
  max_redirects:
    env:
      - name: OCI_DISCOVERY_MAX_REDIRECTS
    ini:
      - section: oci_discovery
        key: max_redirects
    vars:
      - name: ansible_oci_discovery_max_redirects
  max_document_size:
    env:
      - name: OCI_DISCOVERY_MAX_DOCUMENT_SIZE
    ini:
      - section: oci_discovery
        key: max_document_size
    vars:
      - name: ansible_oci_discovery_max_document_size
  max_documents:
    env:
      - name: OCI_DISCOVERY_MAX_DOCUMENTS
    ini:
      - section: oci_discovery
        key: max_documents
    vars:
      - name: ansible_oci_discovery_max_documents
  max_engines:
    env:
      - name: OCI_DISCOVERY_MAX_ENGINES
    ini:
      - section: oci_discovery
        key: max_engines
    vars:
      - name: ansible_oci_discovery_max_engines
  max_total_size:
    env:
      - name: OCI_DISCOVERY_MAX_TOTAL_SIZE
    ini:
      - section: oci_discovery
        key: max_total_size
    vars:
      - name: ansible_oci_discovery_max_total_size
'''
