# -*- coding: utf-8 -*-
"""Where the oci-discovery specifications' example documents are.

They are the project's shared material (``shared/spec/examples`` beside the repository, as
laid out for developers and CI); OCI_DISCOVERY_SPEC_EXAMPLES overrides the location.
"""
import os

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.environ.get("OCI_DISCOVERY_SPEC_EXAMPLES") or os.path.join(
    os.path.dirname(_REPO), "shared", "spec", "examples")

if not os.path.isfile(os.path.join(EXAMPLES, "oci-index-app.json")):
    raise RuntimeError(
        "the specs' example documents are not at %s: lay out shared/ beside the repository "
        "or set OCI_DISCOVERY_SPEC_EXAMPLES" % EXAMPLES)
