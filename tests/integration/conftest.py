# -*- coding: utf-8 -*-
"""Fixtures for integration tests: real services from the rig (tests/rig/).

Session fixtures start lazily, the first time a test asks for them, and stop at
the end of the session:
  ca              rig.ca.TestCAs: .cert_path (trusted CA PEM), .server (cert+key for
                  localhost, 127.0.0.1, example.test, *.example.test), .wrong_host
                  (other.test only), .untrusted (from a CA nobody trusts), .issue(*names),
                  .ssl_context()
  rgw             rig.ceph.RGW (http + https): .endpoint, .tls_endpoint, .access_key,
                  .secret_key, .region, .client(tls=False), .anonymous_client(tls),
                  .aws_env(tls), .module_args(tls), .url(bucket, key, tls), .ca_path
  sshd            rig.sshd.Sshd: .inventory(host), .host_vars(), .run(cmd), .make_webroot(),
                  .grant_write(path), .user, .python_modules
  layouts         real OCI layouts (tests/integration/fixtures_layouts.py; also layout_copy,
                  broken_layout)
  run_playbook    rig.ansible.run_playbook(playbook, inventory=None, extra_vars=None,
                  check=False, diff=False, env=None, verbosity=0, timeout=600) -> PlaybookResult
Function scope:
  rgw_bucket      name of a new empty private bucket on `rgw`
  nginx_factory   nginx_factory(servers=None, http=None, cert=None) -> started rig.nginx.Nginx
                  (https on .tls_port with `ca.server` unless cert= is given), stopped after
                  the test; see rig/nginx.py for the configuration placeholders
  public_tmp_path a fresh directory that nginx workers (`nobody`) and the ssh test user can
                  read (0755, under .tmp/rig/run), removed after the test

Whatever happens, every process the rig started in this session is killed at the end
(fixture finalizers, then the PID registry, then an atexit hook), and services left by
an earlier crashed session are killed at the start.  The session's Python process is
made a child subreaper so that orphaned ssh/sshd processes are reaped (PID 1 of this
machine kind does not reap zombies).
"""
import atexit
import signal
import uuid

import pytest

from rig import procs
from rig.ansible import run_playbook as _run_playbook
from rig.ca import TestCAs
from rig.ceph import RGW
from rig.nginx import Nginx
from rig.sshd import Sshd
# Real OCI layouts (owner: helper "layouts"): layouts, layout_copy, broken_layout.
from fixtures_layouts import broken_layout, layout_copy, layouts  # noqa: F401  pylint: disable=unused-import

# Module import happens once per session, before any test uses a fixture.
procs.cleanup()
procs.become_subreaper()
atexit.register(procs.stop_own)
if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    # A terminated test run stops like one interrupted with Ctrl-C: pytest ends the
    # session and runs the finalizers (and the atexit hook runs after).
    def _terminate(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _terminate)

_TIMINGS = {}


@pytest.fixture(scope="session", autouse=True)
def _rig_session():
    """Autouse: at session end, kill everything this session registered, whatever failed; a service
    that outlives that is an error (of the last test, so that a pytest-xdist worker reports it too)."""
    yield
    procs.stop_own()
    procs.reap_orphans(kill=True, wait=2.0)
    left = procs.leftovers()
    if left:
        pytest.fail("rig: processes still running after the session: %r" % left)


@pytest.fixture(scope="session")
def ca():
    cas = TestCAs.create()
    yield cas
    cas.remove()


@pytest.fixture(scope="session")
def rgw(ca):
    gateway = RGW(cert=ca.server, ca_path=ca.cert_path)
    gateway.start()
    _TIMINGS["RGW start-up (s)"] = round(gateway.startup_seconds, 2)
    yield gateway
    gateway.stop()


@pytest.fixture
def rgw_bucket(rgw):
    """Name of a new, empty, private bucket on the session's RGW (unique per test)."""
    name = "t-%s" % uuid.uuid4().hex[:16]
    rgw.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def sshd():
    server = Sshd()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def run_playbook():
    return _run_playbook


@pytest.fixture
def public_tmp_path():
    path = procs.make_workdir("public", mode=0o755)
    yield path
    procs.remove_workdir(path)


@pytest.fixture
def nginx_factory(request):
    started = []

    def factory(servers=None, http=None, cert=None):
        if cert is None:
            cert = request.getfixturevalue("ca").server
        server = Nginx(cert=cert)
        started.append(server)
        return server.start(servers=servers, http=http)

    yield factory
    for server in started:
        server.remove()


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.write_line("rig: " + ", ".join("%s %s" % item for item in sorted(_TIMINGS.items())))
