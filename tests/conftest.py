# -*- coding: utf-8 -*-
"""Test-suite wide set-up: make the collection importable as ansible_collections.oci.discovery,
the test rig (tests/rig) importable as `rig`, and keep urllib's global state per test."""
import os
import sys
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
_LINK = os.path.join(COLLECTIONS, "ansible_collections", "oci", "discovery")

if not os.path.exists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink(REPO, _LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(autouse=True)
def _fresh_urllib_opener():
    """ansible.module_utils.urls installs its last opener as urllib's global one, with the
    proxy settings of the moment baked in; tests that route requests through a test proxy
    would otherwise leave it behind for every later plain urlopen()."""
    yield
    urllib.request.install_opener(None)
