# -*- coding: utf-8 -*-
"""Unprivileged-style nginx from a temporary prefix directory.

    ngx = Nginx(cert=cas.server)            # picks two free loopback ports
    ngx.start(["location / { root /some/dir; }"])
    ngx.url("/a")  -> "http://127.0.0.1:PORT/a";  ngx.url("/a", tls=True) -> https://127.0.0.1:TLS_PORT/a
    ngx.reload([...])                       # `nginx -t` first; NginxConfigError keeps the old config
    ngx.stop()

Configuration: `nginx -p DIR/ -c nginx.conf -e DIR/error.log` with `daemon off`,
`pid`, `error_log`, `access_log` and every `*_temp_path` inside DIR.  The rig writes
the main context and the `http {}` frame; you give either

* `servers`: a list of strings.  A string that does not start with `server` is the
  *body* of a server block and is wrapped as `server { listen 127.0.0.1:@PORT@; BODY }`
  (see `server()` for TLS, server_name, default_server).  A string starting with
  `server` is a complete server block, used as is.
* `http`: the whole body of the `http {}` block (then `servers` is not used).

Placeholders replaced everywhere: @PORT@ (plain http port), @TLS_PORT@ (https port),
@CERT@ / @KEY@ (the server certificate and key given to the constructor), @PREFIX@
(the prefix directory, with a trailing slash).

As root, nginx workers run as `nobody`: every file served and every directory on the
way to it must be world-readable/traversable (umoci writes blobs 0600 -> 403).  The
rig's own directories (see rig.procs.make_workdir) are 0755.
"""
import os
import signal

from .procs import (RigError, Service, cmdline, ensure_ports_free, free_port, make_workdir, remove_workdir,
                    run, service_env, wait_port, wait_until)

NGINX = "/usr/sbin/nginx"


class NginxConfigError(RigError):
    """`nginx -t` rejected a configuration; the message is nginx's own output."""


MAIN_TEMPLATE = """\
# written by tests/rig/nginx.py
daemon off;
master_process on;
worker_processes 1;
pid @PREFIX@nginx.pid;
error_log @PREFIX@error.log notice;
events { worker_connections 256; }
http {
    access_log @PREFIX@access.log;
    client_body_temp_path @PREFIX@client_body_temp;
    proxy_temp_path @PREFIX@proxy_temp;
    fastcgi_temp_path @PREFIX@fastcgi_temp;
    uwsgi_temp_path @PREFIX@uwsgi_temp;
    scgi_temp_path @PREFIX@scgi_temp;
@HTTP@
}
"""


def server(body, tls=False, server_name=None, default=False):
    """A complete server block: listen on the http (or https) port, optional names.

    body: the directives inside the block.  tls=True listens on @TLS_PORT@ with the
    certificate and key given to Nginx(cert=...).
    """
    flags = (" ssl" if tls else "") + (" default_server" if default else "")
    lines = ["server {",
             "    listen 127.0.0.1:%s%s;" % ("@TLS_PORT@" if tls else "@PORT@", flags)]
    if tls:
        lines += ["    ssl_certificate @CERT@;", "    ssl_certificate_key @KEY@;"]
    if server_name:
        names = server_name if isinstance(server_name, str) else " ".join(server_name)
        lines.append("    server_name %s;" % names)
    lines += ["    " + line for line in body.strip("\n").splitlines()]
    lines.append("}")
    return "\n".join(lines)


class Nginx:
    """One nginx master (plus workers) serving from its own prefix directory."""

    def __init__(self, cert=None, port=None, tls_port=None, name="nginx"):
        self.name = name
        self.cert = cert
        self.port = port or free_port()
        self.tls_port = tls_port or free_port()
        self.prefix = make_workdir(name)
        self.conf_path = os.path.join(self.prefix, "nginx.conf")
        self.error_log = os.path.join(self.prefix, "error.log")
        self.access_log = os.path.join(self.prefix, "access.log")
        self.service = None
        self.config_text = None

    # -- configuration
    def render(self, servers=None, http=None):
        if http is None:
            blocks = []
            for item in servers or ():
                text = item.strip()
                blocks.append(text if text.startswith("server") else server(text))
            http = "\n".join(blocks)
        text = MAIN_TEMPLATE.replace("@HTTP@", http)
        replacements = {"@PREFIX@": self.prefix + "/", "@PORT@": str(self.port),
                        "@TLS_PORT@": str(self.tls_port)}
        if self.cert is not None:
            replacements["@CERT@"] = self.cert.cert_path
            replacements["@KEY@"] = self.cert.key_path
        elif "@CERT@" in text or "@KEY@" in text:
            raise RigError("nginx config uses @CERT@/@KEY@ but Nginx() was given no cert")
        for key, value in replacements.items():
            text = text.replace(key, value)
        return text

    def _test(self, path):
        """`nginx -t` on a candidate file; NginxConfigError with nginx's message when bad."""
        argv = [NGINX, "-t", "-q", "-p", self.prefix + "/", "-c", path, "-e", self.error_log]
        try:
            run(argv, what="nginx -t", timeout=30)
        except RigError as exc:
            message = str(exc).split("\n", 1)[1] if "\n" in str(exc) else str(exc)
            raise NginxConfigError("nginx rejected the configuration:\n%s" % message.strip())

    def _write_candidate(self, servers, http):
        text = self.render(servers, http)
        candidate = os.path.join(self.prefix, "nginx.conf.candidate")
        with open(candidate, "w") as handle:
            handle.write(text)
        self._test(candidate)
        return candidate, text

    # -- life cycle
    def start(self, servers=None, http=None, timeout=15):
        if self.service is not None:
            raise RigError("nginx %s already started" % self.prefix)
        candidate, text = self._write_candidate(servers, http)
        os.replace(candidate, self.conf_path)
        self.config_text = text
        ensure_ports_free(self.port, self.tls_port, what="nginx")
        argv = [NGINX, "-p", self.prefix + "/", "-c", self.conf_path, "-e", self.error_log]
        self.service = Service(self.name, argv, os.path.join(self.prefix, "stdout.log"),
                               env=service_env(), extra_logs=[self.error_log])
        listening = [p for p in (self.port, self.tls_port) if ("127.0.0.1:%d" % p) in text]
        for port in listening:
            wait_port(port, "nginx on 127.0.0.1:%d" % port, [self.service], timeout)
        # Workers accept the connections: wait until at least one is there.
        wait_until(self._workers, "nginx workers", [self.service], timeout)
        return self

    def reload(self, servers=None, http=None, timeout=15):
        """Validate with `nginx -t`, then SIGHUP and wait until the new workers replaced the old.

        On a bad configuration raise NginxConfigError (nginx's message) and keep the
        running configuration untouched.
        """
        if self.service is None:
            raise RigError("nginx not started")
        candidate, text = self._write_candidate(servers, http)
        old_workers = set(self._workers())
        os.replace(candidate, self.conf_path)
        self.config_text = text
        os.kill(self.service.pid, signal.SIGHUP)

        def switched():
            workers = self._workers()
            new = [pid for pid in workers if pid not in old_workers]
            if not new:
                return False
            lingering = [pid for pid in workers if pid in old_workers and not self._shutting_down(pid)]
            return not lingering
        try:
            wait_until(switched, "nginx reload", [self.service], timeout)
        except RigError as exc:
            raise RigError("nginx did not apply the new configuration (see error.log):\n%s" % exc)
        return self

    def stop(self):
        if self.service is not None:
            self.service.stop()
            self.service = None

    def remove(self):
        self.stop()
        remove_workdir(self.prefix)

    # -- helpers
    def _workers(self):
        """PIDs of the master's worker processes."""
        if self.service is None:
            return []
        try:
            with open("/proc/%d/task/%d/children" % (self.service.pid, self.service.pid)) as handle:
                pids = [int(p) for p in handle.read().split()]
        except OSError:
            return []
        return [p for p in pids if "worker process" in cmdline(p)]

    @staticmethod
    def _shutting_down(pid):
        return "shutting down" in cmdline(pid) or not cmdline(pid)

    def url(self, path="/", tls=False, host="127.0.0.1"):
        if not path.startswith("/"):
            path = "/" + path
        if tls:
            return "https://%s:%d%s" % (host, self.tls_port, path)
        return "http://%s:%d%s" % (host, self.port, path)

    @property
    def base_url(self):
        return self.url("/")

    def error_log_tail(self, lines=30):
        return self.service.tail(lines) if self.service else ""

    def __repr__(self):
        return "<Nginx %s http=%d https=%d>" % (self.prefix, self.port, self.tls_port)
