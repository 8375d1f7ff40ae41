# -*- coding: utf-8 -*-
"""Throwaway certificate authorities for TLS tests (trustme).

    cas = TestCAs.create()            # files under a registered work directory
    cas.ca.cert_path                  # PEM of the trusted test CA (world-readable)
    cas.server                        # cert for localhost, 127.0.0.1, example.test, *.example.test
    cas.wrong_host                    # cert from the trusted CA, valid only for other.test
    cas.untrusted                     # cert for the default names from a CA nobody trusts
    cas.ca.issue("a.test", "b.test")  # more certificates
    cas.ca.ssl_context()              # client SSLContext trusting only the test CA

Certificates and CA files are 0644 (the ssh test user may need the CA on a "managed
host"); private keys are 0600 (read by root-run nginx masters and radosgw).
"""
import os
import ssl

import trustme

from .procs import make_workdir, remove_workdir

DEFAULT_NAMES = ("localhost", "127.0.0.1", "example.test", "*.example.test")
WRONG_HOST_NAMES = ("other.test",)


class ServerCert:
    """A server certificate and its key written to files."""

    def __init__(self, names, cert_path, key_path, ca):
        self.names = tuple(names)
        self.cert_path = cert_path   # leaf certificate (PEM) followed by nothing else
        self.key_path = key_path     # private key (PEM, 0600)
        self.ca = ca                 # the CA object that issued it

    def __repr__(self):
        return "<ServerCert %s from %s>" % (",".join(self.names), self.ca.name)


class CA:
    """One throwaway CA writing its files into `directory`."""

    def __init__(self, directory, name):
        self.directory = directory
        self.name = name
        self._ca = trustme.CA(organization_name="oci.discovery tests", organization_unit_name=name)
        self.cert_path = os.path.join(directory, "%s-ca.pem" % name)
        self._ca.cert_pem.write_to_path(self.cert_path)
        os.chmod(self.cert_path, 0o644)
        self._count = 0

    def issue(self, *names, basename=None):
        """Issue a server certificate for `names` (DNS names, wildcards, IP addresses)."""
        names = names or DEFAULT_NAMES
        self._count += 1
        base = os.path.join(self.directory, "%s-%s" % (self.name, basename or "server%d" % self._count))
        leaf = self._ca.issue_cert(*names)
        cert_path, key_path = base + ".crt", base + ".key"
        leaf.cert_chain_pems[0].write_to_path(cert_path)
        os.chmod(cert_path, 0o644)
        leaf.private_key_pem.write_to_path(key_path)
        os.chmod(key_path, 0o600)
        return ServerCert(names, cert_path, key_path, self)

    def ssl_context(self):
        """A client context that trusts this CA only (verification and host names checked)."""
        ctx = ssl.create_default_context(cafile=self.cert_path)
        return ctx

    def __repr__(self):
        return "<CA %s %s>" % (self.name, self.cert_path)


class TestCAs:
    """The session's trusted CA with its usual certificates, plus a CA nobody trusts."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory):
        self.directory = directory
        self.ca = CA(directory, "trusted")
        self.server = self.ca.issue(*DEFAULT_NAMES, basename="server")
        self.wrong_host = self.ca.issue(*WRONG_HOST_NAMES, basename="wrong-host")
        self.other_ca = CA(directory, "untrusted")
        self.untrusted = self.other_ca.issue(*DEFAULT_NAMES, basename="server")

    @classmethod
    def create(cls):
        return cls(make_workdir("ca"))

    # Convenience pass-throughs so `ca.cert_path` / `ca.issue()` work on the fixture itself.
    @property
    def cert_path(self):
        return self.ca.cert_path

    def issue(self, *names, basename=None):
        return self.ca.issue(*names, basename=basename)

    def ssl_context(self):
        return self.ca.ssl_context()

    def remove(self):
        remove_workdir(self.directory)
