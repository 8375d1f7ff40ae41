# -*- coding: utf-8 -*-
"""OpenSSH server on loopback so that Ansible reaches a "remote" host for real.

    ssh = Sshd().start()
    ssh.host_vars()          -> inventory variables for a host reached through this sshd
    ssh.inventory("web")     -> {"all": {"hosts": {"web": {...host vars...}}}}
    ssh.run("id -un")        -> output of a command run as the test user over ssh
    ssh.make_webroot()       -> a new directory the test user owns (world-readable: nginx can serve it)
    ssh.grant_write(path)    -> make an existing directory tree the test user's
    ssh.stop()

`/usr/sbin/sshd -D -e -f CONFIG -p PORT` with its own ed25519 host key in a temporary
directory, `ListenAddress 127.0.0.1`, public-key login only, for one dedicated test
user (`ocitest`, created once with useradd if missing and unlocked with
`usermod -p '*'`: sshd refuses key logins for locked accounts).  Logging in as root
is avoided on purpose (see SERVICES.md: root's shell start-up is slow and may pick
another Python).

StrictModes stays on.  The per-run authorized key goes to
~ocitest/.ssh/authorized_keys.rig-<port> (owned by the user, 0600, removed at stop),
so its directory chain is the user's home and passes sshd's ownership checks
wherever the repository lives.  Host key and the controller's private key stay in
the rig's work directory (root, 0600).

The managed host's Python is /usr/bin/python3 (Debian's).  The collection's modules
that expand URI templates need `uritemplate` there: Debian package
python3-uritemplate (installed by scripts/bootstrap).  boto3 is NOT installed for
/usr/bin/python3: S3 modules are meant to run on the controller (delegate_to:
localhost); `python_modules` tells what the managed host has.
"""
import grp
import json
import os
import pwd

from .procs import (RIG_DIR, RigError, Service, ensure_ports_free, free_port, locked, make_workdir, port_open,
                    register_path, remove_workdir, run, service_env, unregister_path, wait_until)

SSHD = "/usr/sbin/sshd"
TEST_USER = "ocitest"
REMOTE_PYTHON = "/usr/bin/python3"
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes"

CONFIG_TEMPLATE = """\
# written by tests/rig/sshd.py
ListenAddress 127.0.0.1
HostKey {d}/ssh_host_ed25519_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes yes
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 100
# Connections kept open by ssh ControlPersist masters end by themselves when idle.
UnusedConnectionTimeout 60s
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def ensure_test_user(user=TEST_USER):
    """Create the test user once (home directory, unlocked for key logins). Returns its pwd entry."""
    with locked(os.path.join(RIG_DIR, "users.lock")):     # runs going on at once create it once
        return _ensure_test_user(user)


def _ensure_test_user(user):
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if os.geteuid() != 0:
            raise RigError("test user %r does not exist and the rig is not root: create it with "
                           "`useradd -m -s /bin/bash %s && usermod -p '*' %s`" % (user, user, user))
        run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
             "--comment", "oci.discovery tests", user], what="useradd")
        entry = pwd.getpwnam(user)
    if os.geteuid() == 0:
        with open("/etc/shadow") as handle:
            for line in handle:
                fields = line.split(":")
                if fields[0] == user and (fields[1].startswith("!") or fields[1] == ""):
                    run(["usermod", "-p", "*", user], what="usermod (unlock %s)" % user)
        if not os.path.isdir(entry.pw_dir):
            os.makedirs(entry.pw_dir, mode=0o755)
            os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    ssh_dir = os.path.join(entry.pw_dir, ".ssh")
    if not os.path.isdir(ssh_dir):
        os.makedirs(ssh_dir, mode=0o700)
        os.chown(ssh_dir, entry.pw_uid, entry.pw_gid)
    return entry


class Sshd:
    """One sshd listener on 127.0.0.1 for the test user."""

    def __init__(self, user=TEST_USER, port=None, name="sshd"):
        self.name = name
        self.user = user
        self.port = port or free_port()
        self.dir = None
        self.service = None
        self.key_path = None
        self.authorized_keys = None
        self.python_modules = {}

    def start(self, timeout=20):
        ensure_ports_free(self.port, what="sshd")
        account = ensure_test_user(self.user)
        self._account = account
        if not os.path.isdir("/run/sshd"):  # privilege separation directory sshd insists on
            os.makedirs("/run/sshd", mode=0o755)
        self.dir = d = make_workdir(self.name)
        try:
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rig host key",
                 "-f", os.path.join(d, "ssh_host_ed25519_key")], what="ssh-keygen (host key)")
            self.key_path = os.path.join(d, "id_ed25519")
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rig client key",
                 "-f", self.key_path], what="ssh-keygen (client key)")
            self.authorized_keys = os.path.join(account.pw_dir, ".ssh", "authorized_keys.rig-%d" % self.port)
            register_path(self.authorized_keys, "authorized_keys")
            with open(self.key_path + ".pub") as handle:
                public = handle.read()
            with open(self.authorized_keys, "w") as handle:
                handle.write(public)
            os.chmod(self.authorized_keys, 0o600)
            os.chown(self.authorized_keys, account.pw_uid, account.pw_gid)
            config = os.path.join(d, "sshd_config")
            with open(config, "w") as handle:
                handle.write(CONFIG_TEMPLATE.format(d=d, authorized_keys=self.authorized_keys, user=self.user))
            run([SSHD, "-t", "-f", config], what="sshd -t")
            self.service = Service(self.name, [SSHD, "-D", "-e", "-f", config, "-p", str(self.port)],
                                   os.path.join(d, "sshd.log"), env=service_env())
            wait_until(lambda: port_open(self.port), "sshd on 127.0.0.1:%d" % self.port, [self.service], timeout)
            # A real login proves the key, the user and StrictModes; also look at the managed host's Python.
            probe = ("import importlib.util, json, sys; print(json.dumps({m: bool(importlib.util.find_spec(m)) "
                     "for m in ('uritemplate', 'boto3', 'botocore')}))")
            out = wait_until(lambda: self.run("%s -c \"%s\"" % (REMOTE_PYTHON, probe), timeout=10),
                             "ssh login as %s" % self.user, [self.service], timeout)
            self.python_modules = json.loads(out.strip().splitlines()[-1])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self.authorized_keys:
            try:
                os.unlink(self.authorized_keys)
            except FileNotFoundError:
                pass
            unregister_path(self.authorized_keys)
            self.authorized_keys = None
        if self.dir:
            remove_workdir(self.dir)
            self.dir = None

    # -- for tests
    def ssh_argv(self, command):
        return (["ssh", "-p", str(self.port), "-i", self.key_path, "-o", "BatchMode=yes",
                 "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"] + SSH_COMMON_ARGS.split()
                + ["%s@127.0.0.1" % self.user, command])

    def run(self, command, timeout=30):
        """Run a shell command as the test user over ssh; its output (RigError on failure)."""
        return run(self.ssh_argv(command), what="ssh %s@127.0.0.1:%d" % (self.user, self.port),
                   timeout=timeout)

    def host_vars(self, **extra):
        hv = {"ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": self.user,
              "ansible_connection": "ssh",
              "ansible_ssh_private_key_file": self.key_path,
              "ansible_python_interpreter": REMOTE_PYTHON,
              "ansible_ssh_common_args": SSH_COMMON_ARGS}
        hv.update(extra)
        return hv

    def inventory(self, host="managed", **extra):
        return {"all": {"hosts": {host: self.host_vars(**extra)}}}

    @property
    def uid(self):
        return pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self):
        return pwd.getpwnam(self.user).pw_gid

    @property
    def home(self):
        return pwd.getpwnam(self.user).pw_dir

    def grant_write(self, path):
        """Give the test user ownership of `path` (recursively); modes are left as they are.

        Every parent of `path` must be traversable by the user (RigError otherwise).
        """
        _check_traversable(path, self.user)
        uid, gid = self.uid, self.gid
        os.chown(path, uid, gid)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)
        return path

    def make_webroot(self, name="webroot"):
        """A new, empty, world-readable directory owned by the test user (removed at session end)."""
        path = make_workdir(name, mode=0o755)
        os.chown(path, self.uid, self.gid)
        return path

    def __repr__(self):
        return "<Sshd 127.0.0.1:%d user=%s>" % (self.port, self.user)


def _check_traversable(path, user):
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    account = pwd.getpwnam(user)
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    while parent != os.path.dirname(parent):
        st = os.stat(parent)
        if st.st_uid == account.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in groups:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            raise RigError("%s cannot reach %s: %s is not traversable by it (mode %o); create test "
                           "directories with rig.procs.make_workdir() or Sshd.make_webroot()"
                           % (user, path, parent, st.st_mode & 0o7777))
        parent = os.path.dirname(parent)
