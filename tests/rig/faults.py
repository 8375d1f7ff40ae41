# -*- coding: utf-8 -*-
"""Faults and measurements for the reliability suite (tests/integration/test_reliability.py).

    proc = PlaybookProcess(plays, inventory)    # ansible-playbook in its own process group
    proc.kill(); proc.wait(60) -> rc; proc.result() -> rig.ansible.PlaybookResult

    kill_ssh_connections(sshd)   SIGKILL the per-connection sshd processes of one rig sshd:
                                 every ssh connection to it is cut; the commands they started
                                 (a module's Python) live on, as after a network cut
    kill_remote_side(sshd)       SIGKILL every process under that sshd (connections, shells,
                                 the module's Python): the target side of a publish dies
    remote_commands(sshd), wait_gone(processes)   what the connections run; wait for it to end
                                 (after a cut connection a module's Python may finish its work)
    kill_gateway(rgw)            SIGKILL radosgw (the S3 front end) of a rig RGW
    start_gateway(rgw)           start radosgw again on the same ports and wait until it answers;
                                 the objects live in the OSD's memstore, which keeps running, so
                                 nothing acknowledged is lost
    FaultyProxy(rgw.port, fail=, status=, match=, hold_after=)   a loopback HTTP proxy in front of
                                 RGW: fails the requests it matches (503 SlowDown or a cut) or
                                 holds them after the first N until release()

    run_measured(argv, env=..., timeout=...) -> Measured: rc, stdout, stderr, seconds,
        max_rss (bytes: the largest process of the tree, the kernel's own high-water mark via
        getrusage(RUSAGE_CHILDREN) in a wrapper process), peak_tree_pss (bytes: the sum of
        PSS over the process tree, sampled from /proc every 10 ms)

Everything here acts only on processes this test run started (descendants of a rig
service or of a process started here), never on processes found by name.
"""
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

import yaml

from . import procs
from .ansible import ANSIBLE_PLAYBOOK, PlaybookResult, ansible_env

_PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- ansible-playbook

class PlaybookProcess(object):
    """ansible-playbook started in its own session and process group, output to files."""

    def __init__(self, plays, inventory, env=None, args=()):
        self.workdir = procs.make_workdir("faulty-playbook", mode=0o755)
        path = os.path.join(self.workdir, "playbook.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(list(plays), handle, sort_keys=False)
        inventory_path = os.path.join(self.workdir, "inventory.yml")
        with open(inventory_path, "w") as handle:
            yaml.safe_dump(inventory, handle, sort_keys=False)
        self.argv = [ANSIBLE_PLAYBOOK, "-i", inventory_path] + list(args) + [path]
        self._out = open(os.path.join(self.workdir, "stdout"), "wb")
        self._err = open(os.path.join(self.workdir, "stderr"), "wb")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(self.argv, env=ansible_env(env), cwd=self.workdir,
                                      stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                      start_new_session=True)
        self.pid = self.popen.pid
        procs._KNOWN_CHILDREN.add(self.pid)  # pylint: disable=protected-access
        self.ended = None

    def running(self):
        return self.popen.poll() is None

    def kill(self):
        """SIGKILL the whole process group (ansible-playbook, its workers, local modules, ssh clients)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def wait(self, timeout=120):
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.popen.wait(10)
            raise procs.RigError("ansible-playbook did not end within %ss (killed); workdir %s"
                                 % (timeout, self.workdir))
        finally:
            if self.ended is None and self.popen.returncode is not None:
                self.ended = time.monotonic()
                procs._KNOWN_CHILDREN.discard(self.pid)  # pylint: disable=protected-access
                self._out.close()
                self._err.close()
                procs.reap_orphans()
        return rc

    @property
    def seconds(self):
        return (self.ended or time.monotonic()) - self.started

    def result(self):
        with open(os.path.join(self.workdir, "stdout"), "rb") as handle:
            stdout = handle.read().decode("utf-8", "replace")
        with open(os.path.join(self.workdir, "stderr"), "rb") as handle:
            stderr = handle.read().decode("utf-8", "replace")
        return PlaybookResult(self.argv, self.popen.returncode, stdout, stderr, self.workdir)


# --------------------------------------------------------------------------- ssh


def _sigkill(pids):
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    procs.reap_orphans(wait=0.2)
    return killed


def sshd_session_pids(sshd):
    """The per-connection sshd processes ("sshd: user [priv]", "sshd: user@notty") of a rig sshd."""
    return [pid for pid in procs.descendants(sshd.service.pid) if procs.cmdline(pid).startswith("sshd:")]


def kill_ssh_connections(sshd):
    """Cut every connection to this sshd (the listener stays); returns the PIDs killed."""
    return _sigkill(sshd_session_pids(sshd))


def remote_pids(sshd):
    """Every process under this sshd's listener: connections and what they run."""
    return procs.descendants(sshd.service.pid)


def _starttime(pid):
    """Start time of a running process (None when it is gone or a zombie)."""
    fields = procs.stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def remote_commands(sshd):
    """[(pid, start time)] of what the connections to this sshd run (shells, a module's Python)."""
    found = []
    for pid in remote_pids(sshd):
        if not procs.cmdline(pid).startswith("sshd:"):
            started = _starttime(pid)
            if started is not None:
                found.append((pid, started))
    return found


def wait_gone(processes, timeout=60):
    """Wait until none of `processes` ([(pid, start time)]) runs; returns those still running."""
    deadline = time.monotonic() + timeout
    while True:
        procs.reap_orphans()
        left = [(pid, started) for pid, started in processes if _starttime(pid) == started]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_remote_side(sshd):
    """SIGKILL everything under this sshd's listener (sessions first, so nothing new starts)."""
    killed = _sigkill(sshd_session_pids(sshd))
    for dummy in range(3):       # children may fork while we look
        more = _sigkill(remote_pids(sshd))
        killed += more
        if not more:
            break
    return killed


# --------------------------------------------------------------------------- RGW

def _gateway(rgw):
    found = [s for s in rgw.services if s.name == "radosgw"]
    if not found:
        raise procs.RigError("no radosgw in %r" % (rgw,))
    return found[0]


def kill_gateway(rgw):
    """SIGKILL radosgw (monitor and OSD keep running, with the objects)."""
    gateway = _gateway(rgw)
    gateway.stop(grace=0)
    return gateway


def start_gateway(rgw, timeout=60):
    """Start radosgw again, same configuration and ports, and wait until it answers S3."""
    old = _gateway(rgw)
    if old.alive():
        raise procs.RigError("radosgw is still running (pid %d)" % old.pid)
    ports = [rgw.port] + ([rgw.tls_port] if rgw.tls_port else [])
    procs.wait_until(lambda: all(procs.port_is_free(p) for p in ports), "radosgw ports free again",
                     timeout=timeout)
    gateway = procs.Service(old.name, old.argv, old.log_path, env=procs.service_env({"CEPH_CONF": rgw.conf}),
                            kill_signal=signal.SIGKILL, extra_logs=old.extra_logs)
    rgw.services[rgw.services.index(old)] = gateway
    others = [s for s in rgw.services if s is not gateway]
    for port in ports:
        procs.wait_until(lambda port=port: procs.port_open(port), "radosgw on 127.0.0.1:%d" % port,
                         [gateway] + others, timeout)
    client = rgw.client()
    procs.wait_until(lambda: client.list_buckets() is not None, "radosgw answering S3 again",
                     [gateway] + others, timeout)
    return gateway


# --------------------------------------------------------------------------- an HTTP proxy in front of RGW

SLOW_DOWN = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultyProxy(object):
    """A loopback HTTP proxy in front of RGW that fails or holds the requests ``match`` selects.

    Serves origin-form requests (as an endpoint_url: forwarded to ``upstream_port``) and
    absolute-form ones (as a forward proxy from the client's ``proxies``). The first ``fail``
    matching requests are answered here: ``status`` 503 sends S3's SlowDown error, ``status``
    None closes the connection without an answer. With ``hold_after`` N, the matching requests
    after the first N forwarded wait until ``release()`` (``holding`` counts them): a test can
    act at an exact point of an upload. One request per connection; when the upstream is down
    the connection is closed unanswered. ``seen`` lists (method, target) of every request.
    """

    def __init__(self, upstream_port, fail=0, status=503, match=lambda method, target: method == "PUT",
                 hold_after=None):
        self.upstream_port = upstream_port
        self.fail, self.status, self.match, self.hold_after = fail, status, match, hold_after
        self.seen = []
        self.failed = self.forwarded = self.holding = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                proxy._handle(self.rfile, self.wfile, self.connection)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, rfile, wfile, connection):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = rfile.readline()
            if not line:
                return
            head += line
        lines = head.split(b"\r\n")
        method, target, version = lines[0].decode().split(" ")
        length = 0
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, dummy, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            if name == b"expect":
                wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if name in (b"connection", b"expect"):
                continue
            headers.append(line)
        body = rfile.read(length) if length else b""
        with self.lock:
            self.seen.append((method, target))
            matched = self.match(method, target)
            failing = matched and self.failed < self.fail
            if failing:
                self.failed += 1
            held = matched and not failing and self.hold_after is not None and self.forwarded >= self.hold_after
            if matched and not failing:
                self.forwarded += 1
            if held:
                self.holding += 1
        if held:
            self.released.wait()
        if failing:
            if self.status is None:
                connection.shutdown(socket.SHUT_RDWR)
                return
            wfile.write(b"HTTP/1.1 %d Slow Down\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (self.status, len(SLOW_DOWN), SLOW_DOWN))
            return
        if target.startswith("http://"):
            target = "/" + target.split("/", 3)[3]
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:                                   # the upstream is down: no answer, as from it
            connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            upstream.sendall(b"%s %s %s\r\n" % (method.encode(), target.encode(), version.encode())
                             + b"\r\n".join(headers) + b"\r\nConnection: close\r\n\r\n" + body)
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                wfile.write(chunk)
        finally:
            upstream.close()

    def release(self):
        """Let the held requests (and every later one) through."""
        self.released.set()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- memory and time

def _pss(pid):
    """Proportional set size of a process in bytes (shared pages divided among their users), or its RSS."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/%d/statm" % pid) as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_pss(pid):
    """Sum of PSS in bytes over `pid` and its descendants: what the tree costs the machine (0 when gone)."""
    return sum(_pss(member) for member in [pid] + procs.descendants(pid))


# Runs argv[2:], then writes the largest RSS any waited-for descendant reached (kernel
# high-water mark, KiB on Linux) to argv[1]; exits with the command's status.
_MAXRSS_WRAPPER = """\
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as handle:
    handle.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


class Measured(object):
    def __init__(self, argv, rc, stdout, stderr, seconds, max_rss, peak_tree_pss, workdir):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.max_rss = max_rss
        self.peak_tree_pss = peak_tree_pss
        self.workdir = workdir

    def __repr__(self):
        return "<Measured rc=%s %.2fs max_rss=%.1fMB tree=%.1fMB>" % (
            self.rc, self.seconds, self.max_rss / 1e6, self.peak_tree_pss / 1e6)


def run_measured(argv, env=None, cwd=None, timeout=300, prefix=(), interval=0.01):
    """Run `prefix + [wrapper] + argv`; time it and measure its memory (see the module docstring).

    `prefix` is a command that execs its arguments (e.g. an `unshare ... sh -c 'exec "$@"'`
    wrapper); the measuring wrapper runs inside it, so only `argv`'s tree is measured.
    """
    workdir = cwd or procs.make_workdir("measured", mode=0o755)
    rss_file = os.path.join(workdir, "maxrss")
    full = list(prefix) + [sys.executable, "-c", _MAXRSS_WRAPPER, rss_file] + list(argv)
    peak = [0]
    started = time.monotonic()
    proc = subprocess.Popen(full, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    procs._KNOWN_CHILDREN.add(proc.pid)  # pylint: disable=protected-access
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            total = tree_pss(proc.pid)
            if total > peak[0]:
                peak[0] = total
            stop.wait(interval)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise procs.RigError("%s did not end within %ss" % (" ".join(argv[:3]), timeout))
    finally:
        seconds = time.monotonic() - started
        stop.set()
        sampler.join(5)
        procs._KNOWN_CHILDREN.discard(proc.pid)  # pylint: disable=protected-access
        procs.reap_orphans()
    try:
        with open(rss_file) as handle:
            max_rss = int(handle.read().strip()) * 1024
    except (OSError, ValueError):
        max_rss = 0
    return Measured(full, proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"),
                    seconds, max_rss, peak[0], workdir)
