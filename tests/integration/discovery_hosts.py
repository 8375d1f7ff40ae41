# -*- coding: utf-8 -*-
"""Named test sites on real nginx, and ansible-playbook runs that can resolve their host names.

No DNS here, and the machine's /etc/hosts must not be edited. So:

* nginx (the rig's) listens on a private loopback address 127.X.Y.Z, on the standard ports
  443 and 80 (so templates such as ``https://{host}/oci-index/{path}`` from the specs work
  unchanged) and on the rig's random ports (for the ``port`` option); one server block per
  host name, chosen by SNI / Host.
* ansible-playbook runs inside ``unshare --mount`` with a private /etc/hosts bind-mounted
  over the real one, mapping the test names to 127.X.Y.Z. Nothing outside that process
  tree sees the change; no product code knows about it.

    sites = NamedSites(nginx_factory, ca, public_tmp_path)
    sites.write("example.test", "/oci-index/app", {...})     # JSON or bytes
    sites.start()                                             # nginx -t, start, wait
    result = sites.run_playbook([...plays...], env={...})     # rig.ansible.PlaybookResult

``sites.log_headers("X-Secret")`` logs that request header of every request to
``sites.headers_log()`` (host, URI, value); ``run_playbook(resolv_conf=PATH)`` also binds
PATH over /etc/resolv.conf, so names outside the hosts file meet that resolver.
"""
import json
import os
import random
import socket
import time

from rig.ansible import run_playbook
from rig.procs import RigError, make_workdir, remove_workdir

REF = "application/vnd.oci.ref-engines.v1+json"
IDX = "application/vnd.oci.image.index.v1+json"

JSON_TYPE = """    types {{}}
    default_type {type};
    charset utf-8;
    charset_types *;"""


def _free_loopback_address():
    """A 127.X.Y.Z address whose ports 443 and 80 are free (not 127.0.0.1: other tests use it)."""
    rng = random.Random()
    for dummy in range(50):
        addr = "127.%d.%d.%d" % (rng.randint(1, 254), rng.randint(0, 254), rng.randint(2, 254))
        ok = True
        for port in (443, 80):
            with socket.socket() as sock:
                try:
                    sock.bind((addr, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return addr
    raise RigError("no free loopback address with ports 443 and 80 available")


class NamedSites(object):
    def __init__(self, nginx_factory, ca, root, names=("example.test", "*.example.test", "*.b.example.test",
                                                       "example.com", "*.example.com")):
        self.nginx_factory = nginx_factory
        self.ca = ca
        self.root = root
        self.addr = _free_loopback_address()
        self.cert = ca.issue(*names, basename="named-%s" % self.addr)
        self.hosts = {}       # host -> {"extra": [...], "cert": cert}
        self.unresolvable = set()
        self.logged_header = None
        self.nginx = None

    # -- content
    def host(self, host, extra="", cert=None):
        """Declare a host (it then resolves and has a server block); ``extra`` adds nginx directives."""
        entry = self.hosts.setdefault(host, {"extra": [], "cert": cert or self.cert})
        if extra:
            entry["extra"].append(extra)
        if cert is not None:
            entry["cert"] = cert
        os.makedirs(self.docroot(host), exist_ok=True)
        return self

    def docroot(self, host):
        return os.path.join(self.root, host)

    def write(self, host, path, content):
        self.host(host)
        target = os.path.join(self.docroot(host), path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        data = content if isinstance(content, bytes) else json.dumps(content, indent=1).encode("utf-8")
        with open(target, "wb") as handle:
            handle.write(data)
        os.chmod(target, 0o644)
        return target

    # -- nginx
    def log_headers(self, header):
        """Log ``header`` of every request (see headers_log())."""
        self.logged_header = header
        return self

    def headers_log(self):
        """[(host, uri, header value or None)] of every request, with log_headers() on."""
        with open(os.path.join(self.nginx.prefix, "headers.log")) as handle:
            rows = [line.rstrip("\n").split("\t") for line in handle]
        return [(host, uri, None if value == "-" else value) for host, uri, value in rows]

    def _server(self, host, entry):
        listens = ["listen %s:443 ssl;" % self.addr, "listen %s:80;" % self.addr,
                   "listen %s:@TLS_PORT@ ssl;" % self.addr, "listen %s:@PORT@;" % self.addr]
        body = listens + [
            "server_name %s;" % host,
            "ssl_certificate %s;" % entry["cert"].cert_path,
            "ssl_certificate_key %s;" % entry["cert"].key_path,
            "root %s;" % self.docroot(host),
        ]
        if not any("location = /.well-known/oci-host-ref-engines " in extra for extra in entry["extra"]):
            body.append("location = /.well-known/oci-host-ref-engines {\n%s\n}" % JSON_TYPE.format(type=REF))
        body += [
            "location /oci-index/ {\n%s\n}" % JSON_TYPE.format(type=IDX),
            "location /oci-cas/ {\n    types {}\n    default_type application/octet-stream;\n"
            "    add_header Cache-Control \"public, max-age=31536000, immutable\";\n}",
            "location /oci-image/ {\n    types {}\n    default_type application/octet-stream;\n"
            "    location ~ /index\\.json$ {\n%s\n    }\n}" % JSON_TYPE.format(type=IDX).replace("\n", "\n    "),
        ] + entry["extra"]
        if self.logged_header:
            body += ["access_log @PREFIX@access.log;", "access_log @PREFIX@headers.log oci_headers;"]
        return "server {\n    %s\n}" % "\n".join(body).replace("\n", "\n    ")

    def start(self):
        http = "server_names_hash_bucket_size 128;\n"
        if self.logged_header:
            http += "log_format oci_headers '$host\\t$request_uri\\t$http_%s';\n" % (
                self.logged_header.lower().replace("-", "_"))
        http += "\n".join(
            self._server(host, entry) for host, entry in sorted(self.hosts.items()))
        self.nginx = self.nginx_factory(http=http)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((self.addr, 443), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RigError("nginx does not listen on %s:443\n%s" % (self.addr, self.nginx.error_log_tail()))
                time.sleep(0.05)
        return self

    @property
    def port(self):
        return self.nginx.port

    @property
    def tls_port(self):
        return self.nginx.tls_port

    def access_log(self):
        with open(self.nginx.access_log) as handle:
            return handle.read().splitlines()

    # -- ansible-playbook in a mount namespace with our /etc/hosts
    def hosts_file(self, workdir):
        path = os.path.join(workdir, "hosts")
        names = sorted(h for h in self.hosts if h not in self.unresolvable)
        with open(path, "w") as handle:
            handle.write("127.0.0.1 localhost\n::1 localhost\n")
            for name in names:
                handle.write("%s %s\n" % (self.addr, name))
        os.chmod(path, 0o644)
        return path

    def run_playbook(self, plays, extra_vars=None, check=False, diff=False, env=None, timeout=600, args=(),
                     verbosity=0, resolv_conf=None):
        """rig.ansible.run_playbook (local connection) inside a mount namespace with our /etc/hosts."""
        hosts_dir = make_workdir("resolve-hosts", mode=0o755)
        try:
            mounts = 'mount --bind "$1" /etc/hosts && '
            if resolv_conf:
                mounts += 'mount --bind "$2" /etc/resolv.conf && shift && '
            prefix = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                      mounts + 'shift && exec "$@"', "sh", self.hosts_file(hosts_dir)]
            if resolv_conf:
                prefix.append(resolv_conf)
            return run_playbook(plays, extra_vars=extra_vars, check=check, diff=diff, env=env,
                                timeout=timeout, args=args, prefix=prefix, verbosity=verbosity)
        finally:
            remove_workdir(hosts_dir)
