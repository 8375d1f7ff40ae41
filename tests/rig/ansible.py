# -*- coding: utf-8 -*-
"""Run ansible-playbook and parse its results (JSON stdout callback).

    result = run_playbook([{"hosts": "all", "tasks": [{"name": "p", "ansible.builtin.ping": {}}]}],
                          inventory=sshd.inventory())
    result.rc, result.stdout, result.stderr, result.json
    result.task("p")          -> {host: result dict} of the first task named "p"
    result.result("p")        -> the one host's result dict (host= when several)
    result.changed_count      -> sum of "changed" over the play recap
    result.failed             -> rc != 0 or any failed/unreachable host
    result.failures()         -> [(task name, host, msg)]
    str(result)               -> a short report for assertion messages

playbook: a path to a file, YAML text, or a Python list of plays.
inventory: None (localhost, local connection, the venv's Python), a full YAML-style
inventory dict ({"all": {"hosts": {...}}}), or a plain {host: vars} dict.

Environment of ansible-playbook: the caller's environment minus the machine-wide CA
bundle variables (AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, CURL_CA_BUNDLE:
pass them in `env` when a test wants them), plus
  ANSIBLE_COLLECTIONS_PATH=.tmp/collections, ANSIBLE_STDOUT_CALLBACK=ansible.posix.json
  (ansible-core 2.19 has no ansible.builtin.json; ansible.posix ships in the `ansible`
  package), ANSIBLE_CONFIG=an empty file (no stray ansible.cfg applies),
  ANSIBLE_HOST_KEY_CHECKING=False, ANSIBLE_NOCOLOR=1, ANSIBLE_RETRY_FILES_ENABLED=False,
  ANSIBLE_LOCAL_TEMP and ANSIBLE_SSH_CONTROL_PATH_DIR in the rig's work directory,
  ANSIBLE_REMOTE_TEMP=~/.ansible/tmp (per remote user), PATH with the venv's bin first.
`env` entries override these (None removes a variable).
"""
import json
import os
import signal
import subprocess
import sys

import yaml

from .procs import _KNOWN_CHILDREN, REPO, RigError, make_workdir, reap_orphans, remove_workdir, service_env

# The Ansible of the venv that runs the tests (.venv, or another one such as scripts/run-tests'
# .tmp/venv-oldest with the oldest versions the collection claims).
VENV_BIN = os.path.dirname(sys.executable)
if not os.path.exists(os.path.join(VENV_BIN, "ansible-playbook")):
    VENV_BIN = os.path.join(REPO, ".venv", "bin")
ANSIBLE_PLAYBOOK = os.path.join(VENV_BIN, "ansible-playbook")
VENV_PYTHON = os.path.join(VENV_BIN, "python")
COLLECTIONS_PATH = os.path.join(REPO, ".tmp", "collections")
STDOUT_CALLBACK = "ansible.posix.json"

_SESSION = {}


def _session_dir():
    """One directory per Python process for local temp files and ssh control sockets."""
    path = _SESSION.get("dir")
    if path is None or not os.path.isdir(path):
        path = make_workdir("ansible", mode=0o700)
        for sub in ("local_tmp", "cp"):
            os.makedirs(os.path.join(path, sub))
        with open(os.path.join(path, "ansible.cfg"), "w") as handle:
            handle.write("# empty on purpose: tests configure Ansible through the environment\n")
        _SESSION["dir"] = path
    return path


def local_inventory(**extra):
    hv = {"ansible_connection": "local", "ansible_python_interpreter": VENV_PYTHON}
    hv.update(extra)
    return {"all": {"hosts": {"localhost": hv}}}


def _normalise_inventory(inventory):
    if inventory is None:
        return local_inventory()
    if not isinstance(inventory, dict):
        raise TypeError("inventory must be a dict, not %r" % type(inventory).__name__)
    top = inventory.get("all")
    if isinstance(top, dict) and ({"hosts", "children", "vars"} & set(top)):
        return inventory
    if all(isinstance(v, dict) and ({"hosts", "children"} & set(v)) for v in inventory.values()) and inventory:
        return inventory  # groups at top level
    return {"all": {"hosts": {host: (hv or {}) for host, hv in inventory.items()}}}


def ansible_env(env=None):
    session = _session_dir()
    base = service_env({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH,
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "true",
        "ANSIBLE_CONFIG": os.path.join(session, "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": STDOUT_CALLBACK,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCAL_TEMP": os.path.join(session, "local_tmp"),
        "ANSIBLE_REMOTE_TEMP": "~/.ansible/tmp",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(session, "cp"),
        "XDG_CACHE_HOME": os.path.join(session, "cache"),   # records of verified blobs
        "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    for key, value in (env or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = str(value)
    return base


class PlaybookResult:
    """Outcome of one ansible-playbook run."""

    def __init__(self, argv, rc, stdout, stderr, workdir):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.workdir = workdir
        self.json = None
        self.parse_error = None
        # The JSON document is normally all of stdout; with -v, display lines may surround it.
        decoder = json.JSONDecoder()
        start = stdout.find("{")
        while start != -1:
            try:
                obj = decoder.raw_decode(stdout, start)[0]
            except ValueError as exc:
                self.parse_error = str(exc)
            else:
                if isinstance(obj, dict) and "plays" in obj:
                    self.json, self.parse_error = obj, None
                    break
            start = stdout.find("\n{", start + 1)
            start = start + 1 if start != -1 else -1
        if self.json is None and self.parse_error is None:
            self.parse_error = "no JSON document with 'plays' in stdout"
        self.plays = (self.json or {}).get("plays", [])
        self.stats = (self.json or {}).get("stats", {})

    # -- tasks
    @property
    def tasks(self):
        """[(play name, task name, {host: result})] in execution order."""
        found = []
        for play in self.plays:
            for task in play.get("tasks", []):
                found.append((play.get("play", {}).get("name", ""), task.get("task", {}).get("name", ""),
                              task.get("hosts", {})))
        return found

    def task_names(self):
        return [task[1] for task in self.tasks]

    def task(self, name):
        """{host: result} of the first task called `name` (KeyError listing the names otherwise)."""
        for unused_play, task_name, hosts in self.tasks:
            if task_name == name:
                return hosts
        raise KeyError("no task named %r ran; tasks: %r\n%s" % (name, self.task_names(), self))

    def tasks_named(self, name):
        return [task[2] for task in self.tasks if task[1] == name]

    def result(self, name, host=None):
        """The result dict of task `name` on `host` (host may be omitted when only one ran it)."""
        hosts = self.task(name)
        if host is None:
            if len(hosts) != 1:
                raise KeyError("task %r ran on %d hosts (%s): give host=" % (name, len(hosts), sorted(hosts)))
            return next(iter(hosts.values()))
        return hosts[host]

    # -- summary
    @property
    def changed_count(self):
        return sum(s.get("changed", 0) for s in self.stats.values())

    @property
    def failed(self):
        return self.rc != 0 or any(s.get("failures", 0) or s.get("unreachable", 0) for s in self.stats.values())

    def failures(self):
        out = []
        for unused_play, name, hosts in self.tasks:
            for host, res in hosts.items():
                if res.get("failed") or res.get("unreachable"):
                    if not res.get("failed_when_result", True) or res.get("ignored"):
                        continue
                    out.append((name, host, res.get("msg") or res.get("stderr") or res))
        return out

    def __str__(self):
        lines = ["ansible-playbook rc=%s changed=%s (workdir %s)" % (self.rc, self.changed_count, self.workdir)]
        for name, host, msg in self.failures():
            lines.append("  FAILED %s on %s: %s" % (name, host, msg))
        if self.json is None:
            lines.append("  stdout (not JSON: %s):\n%s" % (self.parse_error, self.stdout[-3000:]))
        if self.stderr.strip():
            lines.append("  stderr:\n%s" % self.stderr[-3000:])
        return "\n".join(lines)

    __repr__ = __str__


def _write_playbook(playbook, workdir):
    if isinstance(playbook, (list, tuple)):
        path = os.path.join(workdir, "playbook.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(list(playbook), handle, sort_keys=False)
        return path
    if isinstance(playbook, str) and "\n" not in playbook and os.path.isfile(playbook):
        return os.path.abspath(playbook)
    if isinstance(playbook, str):
        path = os.path.join(workdir, "playbook.yml")
        with open(path, "w") as handle:
            handle.write(playbook)
        return path
    raise TypeError("playbook must be a path, YAML text or a list of plays, not %r" % type(playbook).__name__)


def _killpg(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_playbook(playbook, inventory=None, extra_vars=None, check=False, diff=False, env=None,
                 verbosity=0, timeout=600, args=(), keep=False, prefix=()):
    """Run ansible-playbook; return a PlaybookResult (never raises on a failing play).

    `prefix` is a command put in front of ansible-playbook (e.g. `unshare ...` to give it a
    private /etc/hosts); it must exec its last arguments.
    """
    workdir = make_workdir("playbook", mode=0o755)
    path = _write_playbook(playbook, workdir)
    inventory_path = os.path.join(workdir, "inventory.yml")
    with open(inventory_path, "w") as handle:
        yaml.safe_dump(_normalise_inventory(inventory), handle, sort_keys=False)
    argv = [ANSIBLE_PLAYBOOK, "-i", inventory_path]
    if extra_vars:
        vars_path = os.path.join(workdir, "extra_vars.json")
        with open(vars_path, "w") as handle:
            json.dump(extra_vars, handle)
        argv += ["-e", "@" + vars_path]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    argv += list(args) + [path]
    proc = subprocess.Popen(list(prefix) + argv, env=ansible_env(env), cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _KNOWN_CHILDREN.add(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        stdout, stderr = proc.communicate()
        raise RigError("ansible-playbook timed out after %ss (workdir %s)\nstdout:\n%s\nstderr:\n%s"
                       % (timeout, workdir, stdout[-3000:].decode("utf-8", "replace"),
                          stderr[-3000:].decode("utf-8", "replace")))
    except BaseException:
        _killpg(proc.pid)
        proc.wait()
        raise
    finally:
        _KNOWN_CHILDREN.discard(proc.pid)
        reap_orphans()
    result = PlaybookResult(argv, proc.returncode, stdout.decode("utf-8", "replace"),
                            stderr.decode("utf-8", "replace"), workdir)
    if not keep and not result.failed:
        remove_workdir(workdir)
    return result
