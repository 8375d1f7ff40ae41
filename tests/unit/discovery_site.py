# -*- coding: utf-8 -*-
"""Real HTTP(S) test sites for the discovery client, served from threads in the test process.

    site = Site(ca)                       # http port, https port, proxy port on 127.0.0.1
    site.doc("example.test", "/.well-known/oci-host-ref-engines", {...})   # JSON, proper type
    site.route("b.example.test", "/x", redirect("https://example.test/y"))
    with site.proxied(monkeypatch): ...   # http_proxy/https_proxy -> the site's proxy

Host names need no DNS: clients send every request through the site's proxy
(``http_proxy``/``https_proxy``, which ``ansible.module_utils.urls`` honours).
The proxy serves absolute-form http requests itself and tunnels ``CONNECT host:port``
to the site's TLS port, whatever the port, so ``https://{host}/...`` templates work
and TLS host names are checked against the real names. A host with no route at all
makes the proxy answer 502 (as a proxy does for an unknown host).

Special responses: ``redirect()``, ``drip()`` (one byte a second), ``huge()`` (a
body of N bytes streamed from a generator, never allocated), ``raw()``.
"""
import json
import os
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TEST_NAMES = ("localhost", "127.0.0.1", "example.test", "*.example.test", "*.b.example.test",
              "other-site.test", "*.other-site.test")

IDX = "application/vnd.oci.image.index.v1+json"
REF = "application/vnd.oci.ref-engines.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Reply(object):
    def __init__(self, status=200, headers=None, body=b"", stream=None):
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.stream = stream  # callable(wfile) writing the body itself


def doc_reply(obj, content_type, charset="utf-8"):
    body = obj if isinstance(obj, bytes) else json.dumps(obj, indent=1).encode("utf-8")
    ctype = content_type + ("; charset=%s" % charset if charset else "") if content_type else None
    headers = {"Content-Type": ctype} if ctype else {}
    return Reply(200, headers, body)


def redirect(location, status=302):
    return Reply(status, {"Location": location}, b"")


def drip(content_type=IDX, length=1000, interval=1.0):
    def stream(wfile):
        for dummy in range(length):
            wfile.write(b" ")
            wfile.flush()
            time.sleep(interval)
    return Reply(200, {"Content-Type": content_type, "Content-Length": str(length)}, stream=stream)


def huge(size, content_type=IDX, declare_length=True):
    """A body of ``size`` bytes generated chunk by chunk (the test never holds it in memory)."""
    chunk = b" " * 65536

    def stream(wfile):
        sent = 0
        while sent < size:
            part = chunk[:min(len(chunk), size - sent)]
            wfile.write(part)
            sent += len(part)
    headers = {"Content-Type": content_type}
    if declare_length:
        headers["Content-Length"] = str(size)
    return Reply(200, headers, stream=stream)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _target(self):
        if self.path.startswith("http://") or self.path.startswith("https://"):
            parts = urlsplit(self.path)
            host = parts.hostname
            path = parts.path + ("?" + parts.query if parts.query else "")
            scheme = parts.scheme
        else:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0] if not (
                self.headers.get("Host") or "").startswith("[") else self.headers.get("Host")
            path = self.path
            scheme = "https" if self.server.tls else "http"
        return scheme, host, path

    def do_GET(self):
        site = self.server.site
        scheme, host, path = self._target()
        site.log.append((scheme, host, path, self.headers.get("Accept")))
        if host not in site.hosts():
            return self._send(Reply(502, {"Content-Type": "text/plain"}, b"unknown host"))
        reply = site.lookup(scheme, host, path)
        if reply is None:
            reply = Reply(404, {"Content-Type": "text/plain"}, b"not found")
        if callable(reply):
            reply = reply(self)
        self._send(reply)

    def _send(self, reply):
        try:
            self.send_response(reply.status)
            headers = dict(reply.headers)
            if reply.stream is None:
                headers.setdefault("Content-Length", str(len(reply.body)))
            else:
                self.close_connection = True
            for key, value in headers.items():
                if value is not None:
                    self.send_header(key, value)
            self.end_headers()
            if reply.stream is not None:
                reply.stream(self.wfile)
            else:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def do_CONNECT(self):
        site = self.server.site
        host = self.path.rsplit(":", 1)[0]
        site.log.append(("connect", host, self.path, None))
        if host not in site.hosts():
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = socket.create_connection(("127.0.0.1", site.tls_port))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        conns = [self.connection, upstream]
        try:
            while True:
                readable, dummy, dummy2 = select.select(conns, [], [], 30)
                if not readable:
                    break
                done = False
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        done = True
                        break
                    (upstream if sock is self.connection else self.connection).sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            upstream.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, site, tls_context=None):
        self.site = site
        self.tls = tls_context is not None
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _Handler)
        if tls_context is not None:
            self.socket = tls_context.wrap_socket(self.socket, server_side=True,
                                                  do_handshake_on_connect=False)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls:
            sock.settimeout(10)
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError):
                sock.close()
                raise OSError("handshake failed")
            sock.settimeout(None)
        return sock, addr

    def handle_error(self, request, client_address):
        pass


class Site(object):
    """An http server, an https server and a proxy, all on 127.0.0.1, sharing one route table."""

    def __init__(self, cert_pem_path=None, key_pem_path=None):
        self.routes = {}
        self.log = []
        self._servers = []
        self.http = _Server(self)
        context = None
        if cert_pem_path:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_pem_path, key_pem_path)
        self.https = _Server(self, context) if context else None
        self.proxy = _Server(self)
        for server in (self.http, self.https, self.proxy):
            if server is not None:
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
                thread.daemon = True
                thread.start()
                self._servers.append(server)
        self.port = self.http.server_address[1]
        self.tls_port = self.https.server_address[1] if self.https else None
        self.proxy_port = self.proxy.server_address[1]
        self.extra_hosts = set()

    def close(self):
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # -- routes
    def hosts(self):
        return set(host for dummy, host, dummy2 in self.routes) | self.extra_hosts

    def add_host(self, host):
        """A host that exists (answers 404 for everything not routed)."""
        self.extra_hosts.add(host)

    def route(self, host, path, reply, scheme="*"):
        self.routes[(scheme, host, path)] = reply

    def doc(self, host, path, obj, content_type=None, charset="utf-8", scheme="*"):
        if content_type is None:
            content_type = REF if path.endswith("oci-host-ref-engines") else IDX
        self.route(host, path, doc_reply(obj, content_type, charset), scheme)

    def blob(self, host, path, data, content_type="application/octet-stream"):
        self.route(host, path, Reply(200, {"Content-Type": content_type}, data))

    def lookup(self, scheme, host, path):
        for key in ((scheme, host, path), ("*", host, path)):
            if key in self.routes:
                return self.routes[key]
        return None

    def requests(self, kind=None):
        return [entry for entry in self.log if kind is None or entry[0] == kind]

    def env(self):
        proxy = "http://127.0.0.1:%d" % self.proxy_port
        return {"http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
                "no_proxy": "", "NO_PROXY": ""}

    def proxied(self, monkeypatch):
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        return self


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(obj, handle)
