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


# scripts/run-tests runs the suite in pytest-xdist workers, a test file per worker at a time, handed out
# in collection order: the longest files go first, so that none of them starts last and runs alone while
# the other workers are idle. Measured in one serial run (2026-12-02, seconds): s3_publish_layout 386,
# reliability 312, nginx_publisher 264, publish_layout 163, registry_view 118, pull_module 114, fleet 90,
# readme 77; all others under 60. A file missing here only runs later; nothing depends on the order.
_LONGEST_FIRST = ("test_s3_publish_layout.py", "test_reliability.py", "test_nginx_publisher.py",
                  "test_publish_layout.py", "test_registry_view.py", "test_pull_module.py", "test_fleet.py",
                  "test_readme.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)
    items.sort(key=rank)    # stable: the order within a file is kept
