# -*- coding: utf-8 -*-
"""Process management for the test rig.

Every service is started with subprocess.Popen in its own session (process group),
its output goes to a log file, and its PID is recorded in a registry file under
.tmp/rig/pids/ together with the PID of the Python process that owns it.  Stopping
is by PID: SIGTERM then SIGKILL after a short grace, or SIGKILL directly for
services that are slow to honour SIGTERM (Ceph).  `python -m rig.cleanup` (and the
start of every pytest session) kills whatever an earlier run that crashed left
behind, using the registry; a recorded process is only killed if its start time
still matches, so a recycled PID is never touched.

Environment: this machine kind exports AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE,
SSL_CERT_FILE and CURL_CA_BUNDLE globally.  `service_env()` removes them from the
environment of every process the rig starts (tools then use their own defaults,
which is the system trust store), so that a test that wants a CA sets it
explicitly and a test that wants no CA is not silently given one.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
RIG_DIR = os.path.join(REPO, ".tmp", "rig")
PIDS_DIR = os.path.join(RIG_DIR, "pids")
RUN_DIR = os.path.join(RIG_DIR, "run")

CA_ENV_VARS = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")

_TERM_GRACE = 3.0


class RigError(RuntimeError):
    """A service of the rig could not be started, reached or stopped."""


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive flock on ``path`` (created if missing): test runs going on at once
    (pytest-xdist workers, two checkouts' runs) take turns at what they share."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- environment

def service_env(extra=None, unset=CA_ENV_VARS):
    """os.environ without the machine-wide CA bundle variables, plus `extra`.

    A value of None in `extra` removes that variable.
    """
    env = dict(os.environ)
    for name in unset:
        env.pop(name, None)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


# --------------------------------------------------------------------------- ports

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (picked by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ensure_ports_free(*ports, what="service"):
    """Refuse to start when a port is taken: the readiness probe would talk to someone else."""
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise RigError("cannot start %s: port(s) %s on 127.0.0.1 already in use"
                       % (what, ", ".join(str(p) for p in busy)))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- directories

def _world_traversable(path):
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path) and not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def run_base():
    """Directory that holds the rig's per-service temporary directories.

    It is .tmp/rig/run in the repository when every parent directory is
    traversable by other users (nginx workers run as `nobody`, the ssh test user
    must reach web roots); otherwise /var/tmp/oci-discovery-rig.
    """
    base = RUN_DIR if _world_traversable(os.path.dirname(RUN_DIR)) else "/var/tmp/oci-discovery-rig"
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o755)
    return base


def make_workdir(name, mode=0o755):
    """A fresh temporary directory for one service or test, registered for cleanup."""
    path = tempfile.mkdtemp(prefix=name + "-", dir=run_base())
    os.chmod(path, mode)
    _register({"kind": "dir", "path": path, "name": name})
    return path


def remove_workdir(path):
    _remove_path(path)
    _unregister_dir(path)


def register_path(path, name="file"):
    """Record a file or directory outside the rig's work directories for removal by cleanup."""
    _register({"kind": "dir", "path": path, "name": name})


def unregister_path(path):
    _unregister_dir(path)


def _remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
        return True
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- registry

def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (the state first), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def _proc_starttime(pid):
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def _alive(pid, starttime=None):
    current = _proc_starttime(pid)
    if current is None:
        return False
    if starttime is not None and current != starttime:
        return False  # the PID was recycled
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            state = handle.read().decode("ascii", "replace")
        state = state[state.rindex(")") + 2:].split()[0]
    except OSError:
        return False
    return state != "Z"


_OWNER = {"pid": os.getpid(), "starttime": _proc_starttime(os.getpid())}


def _entry_path(entry):
    if entry["kind"] == "proc":
        return os.path.join(PIDS_DIR, "proc-%d.json" % entry["pid"])
    digest = hashlib.sha1(entry["path"].encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return os.path.join(PIDS_DIR, "path-%s-%s.json" % (os.path.basename(entry["path"])[:60], digest))


def _register(entry):
    os.makedirs(PIDS_DIR, exist_ok=True)
    entry = dict(entry, owner=_OWNER["pid"], owner_starttime=_OWNER["starttime"])
    path = _entry_path(entry)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(entry, handle)
    os.replace(tmp, path)
    return path


def _unregister_dir(path):
    try:
        os.unlink(_entry_path({"kind": "dir", "path": path}))
    except FileNotFoundError:
        pass


def registry_entries():
    entries = []
    if not os.path.isdir(PIDS_DIR):
        return entries
    for name in sorted(os.listdir(PIDS_DIR)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(PIDS_DIR, name)
        try:
            with open(path) as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        entry["_file"] = path
        entries.append(entry)
    return entries


def _kill_entry(entry, sig):
    """Signal a registered process group; True if something was signalled.

    The group is signalled when its leader is still the recorded process, or when no
    process has the leader's PID any more (orphaned members, e.g. nginx workers whose
    master was killed, keep the group ID alive and the kernel does not reuse it).
    """
    pid = entry["pid"]
    pgid = entry.get("pgid", pid)
    current = _proc_starttime(pid)
    if current is not None and current != entry.get("starttime"):
        return False  # the PID now belongs to another process: leave it alone
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _ppids():
    """{pid: ppid} for every process on the machine."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                data = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        table[int(name)] = int(data[data.rindex(")") + 2:].split()[1])
    return table


def descendants(pid):
    """PIDs of every live descendant of `pid` (children, grandchildren, ...)."""
    table = _ppids()
    children = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _group_alive(pgid):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getpgid(int(name)) == pgid and _alive(int(name)):
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _reap(entries, verbose=False):
    """Kill registered processes (SIGKILL, whole group) and delete registered directories."""
    entries = sorted(entries, key=lambda e: e["kind"] != "proc")  # processes before directories
    for entry in entries:
        if entry["kind"] == "proc":
            if _kill_entry(entry, signal.SIGKILL):
                deadline = time.monotonic() + 5
                while _group_alive(entry.get("pgid", entry["pid"])) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if verbose:
                    print("killed %s (pid %d)" % (entry.get("name"), entry["pid"]))
        else:
            if _remove_path(entry["path"]) and verbose:
                print("removed %s" % entry["path"])
        try:
            os.unlink(entry["_file"])
        except FileNotFoundError:
            pass
    return entries


def _is_own(entry):
    return entry.get("owner") == _OWNER["pid"] and entry.get("owner_starttime") == _OWNER["starttime"]


def cleanup(all_owners=False, verbose=False):
    """Kill what earlier runs left: registered processes/directories whose owner is gone.

    With all_owners=True, also those of live owners (only when no other test run is going on).
    Returns the entries acted on.
    """
    stale = [e for e in registry_entries()
             if all_owners or not _alive(e.get("owner", 0), e.get("owner_starttime"))]
    return _reap(stale, verbose)


def stop_own(verbose=False):
    """Kill every process and delete every directory that this Python process registered."""
    return _reap([e for e in registry_entries() if _is_own(e)], verbose)


def own_processes_alive():
    """Registered processes of this Python process that are still running (for final checks)."""
    return [e for e in registry_entries()
            if e["kind"] == "proc" and _is_own(e) and _group_alive(e.get("pgid", e["pid"]))]


# --------------------------------------------------------------------------- orphans

_KNOWN_CHILDREN = set()  # PIDs of Services' Popen objects: never reaped behind subprocess's back
_STARTED = []            # every Service this Python process started (for the final check)


def leftovers():
    """Services this process started whose process (or a member of its group) still runs."""
    found = []
    for service in _STARTED:
        if service.popen.poll() is None or _group_alive(service.pid):
            found.append(service)
    return found


def become_subreaper():
    """Make this process adopt orphaned descendants (prctl PR_SET_CHILD_SUBREAPER).

    PID 1 of this machine kind reaps zombies only now and then: sshd's per-connection
    processes and ssh ControlPersist masters linger as <defunct> children of PID 1 and
    muddle "is anything left?" checks.  As a subreaper, the test run adopts them and
    `reap_orphans()` collects them at once.
    """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def cmdline(pid):
    """The command line of a process as one string ('' when it is gone or not readable)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def adopted_orphans():
    """Children of this process that it did not start itself: (pid, state) pairs.

    Only children in another session than ours count (the rig starts everything with
    start_new_session, and adopted orphans come from other sessions), so a test's own
    subprocess.Popen children are never touched.
    """
    me = os.getpid()
    my_sid = os.getsid(0)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in _KNOWN_CHILDREN:
            continue
        try:
            fields = stat_fields(pid)
        except ValueError:
            continue
        if fields is None:
            continue
        if int(fields[1]) == me and int(fields[3]) != my_sid:
            found.append((pid, fields[0]))
    return found


def reap_orphans(kill=False, wait=0.0):
    """Reap adopted orphans that exited; with kill=True, SIGKILL the live ones first.

    `wait` seconds are given to live orphans to exit by themselves before killing.
    Returns the number reaped.
    """
    reaped = 0
    deadline = time.monotonic() + wait
    while True:
        orphans = adopted_orphans()
        for pid, state in orphans:
            if state == "Z":
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        reaped += 1
                except ChildProcessError:
                    pass
        live = [pid for pid, state in orphans if state != "Z"]
        if not live:
            return reaped
        if time.monotonic() >= deadline:
            if not kill:
                return reaped
            for pid in live:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kill = False
            deadline = time.monotonic() + 2
        time.sleep(0.02)


# --------------------------------------------------------------------------- one-shot commands

def run(argv, env=None, timeout=60, cwd=None, what=None, check=True, input=None):
    """Run a command to completion; raise RigError with its output when it fails."""
    try:
        proc = subprocess.run(argv, env=env if env is not None else service_env(), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              input=input, start_new_session=True, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RigError("%s timed out after %ss: %s\n%s" % (what or argv[0], timeout, " ".join(argv),
                                                           _text(exc.output)[-4000:]))
    out = _text(proc.stdout)
    if check and proc.returncode != 0:
        raise RigError("%s failed (exit %d): %s\n%s" % (what or argv[0], proc.returncode,
                                                        " ".join(argv), out[-4000:]))
    return out


def _text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def log_tail(path, lines=30):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return "(no log: %s)" % exc
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- long-running services

class Service:
    """One process started by the rig (its own process group), registered by PID."""

    def __init__(self, name, argv, log_path, env=None, cwd=None, kill_signal=signal.SIGTERM,
                 extra_logs=()):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.extra_logs = list(extra_logs)
        self.kill_signal = kill_signal
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env if env is not None else service_env(), cwd=cwd, start_new_session=True,
                close_fds=True)
        self.pid = self.popen.pid
        _KNOWN_CHILDREN.add(self.pid)
        _STARTED.append(self)
        self.entry = {"kind": "proc", "pid": self.pid, "pgid": self.pid,
                      "starttime": _proc_starttime(self.pid), "name": name, "argv": self.argv,
                      "log": log_path, "kill": "KILL" if kill_signal == signal.SIGKILL else "TERM"}
        self._entry_file = _register(self.entry)

    def __repr__(self):
        return "<Service %s pid=%d>" % (self.name, self.pid)

    def alive(self):
        return self.popen.poll() is None

    def tail(self, lines=30):
        parts = ["--- %s (%s)" % (self.log_path, self.name), log_tail(self.log_path, lines)]
        for path in self.extra_logs:
            if os.path.exists(path):
                parts += ["--- %s" % path, log_tail(path, lines)]
        return "\n".join(parts)

    def stop(self, grace=_TERM_GRACE):
        """Stop the process group: kill_signal (SIGTERM by default), SIGKILL after `grace` s.

        Descendants that left the group (sshd's per-connection processes call setsid)
        are collected first and killed too.
        """
        strays = [(pid, _proc_starttime(pid)) for pid in descendants(self.pid)]
        if self.popen.poll() is None:
            self._signal(self.kill_signal)
            try:
                self.popen.wait(grace if self.kill_signal != signal.SIGKILL else 10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(10)
        # Children left in the group (e.g. nginx workers) go too.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid, starttime in strays:
            if _alive(pid, starttime):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        _KNOWN_CHILDREN.discard(self.pid)
        reap_orphans(wait=0.5 if strays else 0.0)
        try:
            os.unlink(self._entry_file)
        except FileNotFoundError:
            pass

    def _signal(self, sig):
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass


def wait_until(check, what, services=(), timeout=30.0, interval=0.05):
    """Poll `check()` until it returns a true value; return that value.

    Fails fast (RigError with the tail of each service's log) when one of `services`
    exits, and after `timeout` seconds.  Exceptions raised by `check` count as "not yet"
    and the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - reported below
            last_exc = exc
        for service in services:
            if not service.alive():
                raise RigError("%s: %s exited with status %s while waiting\n%s"
                               % (what, service.name, service.popen.returncode, service.tail()))
        if time.monotonic() >= deadline:
            detail = "" if last_exc is None else "\nlast error: %r" % (last_exc,)
            tails = "\n".join(s.tail() for s in services)
            raise RigError("%s: not ready after %.1fs%s\n%s" % (what, timeout, detail, tails))
        time.sleep(interval)


def wait_port(port, what, services=(), timeout=30.0):
    return wait_until(lambda: port_open(port), what, services, timeout)


def wait_http(url, what, services=(), timeout=30.0, context=None):
    """Wait until `url` answers with any HTTP status (a connection is enough)."""
    def check():
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                return resp.status or True
        except urllib.error.HTTPError as exc:
            return exc.code
    return wait_until(check, what, services, timeout)
