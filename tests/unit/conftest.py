# -*- coding: utf-8 -*-
"""Fixtures for the discovery client's unit tests: a throwaway CA and real in-process sites."""
import os
import sys

import pytest
import trustme

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from discovery_site import TEST_NAMES, Site  # noqa: E402


class TLSFiles(object):
    def __init__(self, directory):
        self.ca = trustme.CA()
        self.ca_path = os.path.join(directory, "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self.server_pem = os.path.join(directory, "server.pem")
        self.ca.issue_cert(*TEST_NAMES).private_key_and_cert_chain_pem.write_to_path(self.server_pem)
        self.wrong_pem = os.path.join(directory, "wrong.pem")
        self.ca.issue_cert("other.test").private_key_and_cert_chain_pem.write_to_path(self.wrong_pem)
        untrusted = trustme.CA()
        self.untrusted_pem = os.path.join(directory, "untrusted.pem")
        untrusted.issue_cert(*TEST_NAMES).private_key_and_cert_chain_pem.write_to_path(self.untrusted_pem)


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """A cache directory of each test's own (the records of verified blobs live there)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    return TLSFiles(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def site(tls, monkeypatch):
    """A fresh site (http, https with a cert for the test names, proxy); the process uses its proxy."""
    s = Site(tls.server_pem, tls.server_pem)
    s.proxied(monkeypatch)
    for var in ("XDG_CONFIG_HOME", "XDG_CONFIG_DIRS"):
        monkeypatch.delenv(var, raising=False)
    yield s
    s.close()


@pytest.fixture
def make_site(tls, monkeypatch):
    """Factory for sites with another certificate (wrong host, untrusted CA)."""
    made = []

    def factory(pem):
        s = Site(pem, pem)
        made.append(s)
        return s
    yield factory
    for s in made:
        s.close()
