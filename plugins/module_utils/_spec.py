# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Constants of the oci-discovery specifications and the limits this collection applies.

One home for the protocol names, the well-known path, the OCI image layout
version and the document size limits, so that publishing and resolving agree.
Media types live in ``_documents.py`` with the validators that use them.
See ``docs/resolving.md`` and ``docs/security.md`` for what they mean to users.

No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Ref-engine protocol: an URI template that expands to an OCI image index.
INDEX_PROTOCOL = 'oci-index-template-v1'
# CAS-engine protocol: an URI template that expands to a blob, given its digest.
CAS_PROTOCOL = 'oci-cas-template-v1'

# Where a host publishes its ref-engines object, relative to its web root or
# bucket (WELL_KNOWN_KEY) and as the path of a URL (WELL_KNOWN_PATH).
WELL_KNOWN_KEY = '.well-known/oci-host-ref-engines'
WELL_KNOWN_PATH = '/' + WELL_KNOWN_KEY

# imageLayoutVersion of the OCI image layouts this collection reads and writes.
LAYOUT_VERSION = '1.0.0'

# Size limits, in bytes: any JSON document (manifest, nested index, the XDG
# file), a family's image index, and a ref-engines object.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_REF_ENGINES_BYTES = 1024 * 1024
