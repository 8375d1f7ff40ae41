# -*- coding: utf-8 -*-
"""The oci.discovery.nginx_publisher role through the oci.discovery.provision_publisher playbook.

The playbook runs over real SSH (rig sshd, as the unprivileged test user) against this
machine. The role runs its own nginx instance (nginx_publisher_prefix) on two free loopback
ports as that user, with a certificate from the throwaway CA for localhost and 127.0.0.1, and
serves two sites on the same ports:

  localhost   cas_bucket layout:  localhost/app (family layout), localhost/team/app (multi-platform)
  127.0.0.1   directories layout: 127.0.0.1/team/app (family layout), CORS on, no http redirect

Package installation is skipped (nginx_publisher_install=false: nginx comes from
scripts/bootstrap and the test user has no root).
"""
import hashlib
import json
import os
import shutil
import signal
import ssl
import time
import urllib.error
import urllib.request

import pytest

from fixtures_layouts import layouts  # noqa: F401  pylint: disable=unused-import
from rig import procs

PLAYBOOK = "- ansible.builtin.import_playbook: oci.discovery.provision_publisher\n"
WELL_KNOWN = "/.well-known/oci-host-ref-engines"
MT_REF_ENGINES = "application/vnd.oci.ref-engines.v1+json; charset=utf-8"
MT_INDEX = "application/vnd.oci.image.index.v1+json; charset=utf-8"
SHORT = "public, max-age=60"
LONG = "public, max-age=31536000, immutable"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Publisher(object):
    """One nginx instance provisioned by the role over ssh, and what the tests need to reach it."""

    def __init__(self, sshd, ca, run_playbook, label):
        self.sshd = sshd
        self.ca = ca
        self._run_playbook = run_playbook
        self.prefix = sshd.make_webroot("nginx-publisher-%s" % label)
        self.http_port = procs.free_port()
        self.https_port = procs.free_port()
        cert = ca.issue("localhost", "127.0.0.1", basename="publisher-%s" % label)
        tls = os.path.join(self.prefix, "given-tls")
        os.makedirs(tls)
        self.cert = shutil.copy(cert.cert_path, os.path.join(tls, "server.crt"))
        self.key = shutil.copy(cert.key_path, os.path.join(tls, "server.key"))
        os.chmod(self.key, 0o600)
        sshd.grant_write(tls)
        self.roots = {}
        self.context = ca.ssl_context()
        self.pid_file = os.path.join(self.prefix, "nginx", "logs", "nginx.pid")

    # -- the playbook
    def root(self, name):
        if name not in self.roots:
            self.roots[name] = self.sshd.make_webroot("site-%s" % name)
        return self.roots[name]

    def site(self, server_name, **settings):
        site = {"server_name": server_name, "root": self.root(settings.pop("root_name", server_name)),
                "tls_certificate": self.cert, "tls_certificate_key": self.key}
        site.update(settings)
        return site

    def extra_vars(self, sites, **extra):
        values = {
            "provision_publisher_hosts": "all",
            "provision_publisher_become": False,
            "nginx_publisher_install": False,
            "nginx_publisher_prefix": os.path.join(self.prefix, "nginx"),
            "nginx_publisher_listen_http": ["127.0.0.1:%d" % self.http_port],
            "nginx_publisher_listen_https": ["127.0.0.1:%d" % self.https_port],
            "nginx_publisher_sites": sites,
        }
        values.update(extra)
        return values

    def run(self, sites, check=False, diff=False, args=(), **extra):
        return self._run_playbook(PLAYBOOK, inventory=self.sshd.inventory("publisher"),
                                  extra_vars=self.extra_vars(sites, **extra), check=check, diff=diff, args=args)

    # -- the running server
    def master_pid(self):
        with open(self.pid_file) as handle:
            return int(handle.read().strip())

    def stop(self):
        try:
            pid = self.master_pid()
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while procs._alive(pid) and time.monotonic() < deadline:  # pylint: disable=protected-access
            time.sleep(0.05)
        procs.reap_orphans()

    def url(self, path, tls=True, host="localhost"):
        return "%s://%s:%d%s" % ("https" if tls else "http", host, self.https_port if tls else self.http_port, path)

    def get(self, path, tls=True, host="localhost", method="GET", follow=True):
        """(status, headers, body) of one request."""
        request = urllib.request.Request(self.url(path, tls, host), method=method)
        handlers = [urllib.request.HTTPSHandler(context=self.context)]
        if not follow:
            handlers.append(_NoRedirect())
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def tree(self):
        """{path: sha256} of every file under the instance directory and the site roots."""
        found = {}
        for top in [self.prefix] + sorted(self.roots.values()):
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if d != "temp"]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    if path.endswith((".log", ".pid")):
                        continue
                    with open(path, "rb") as handle:
                        found[path] = hashlib.sha256(handle.read()).hexdigest()
        return found


def _images(layouts):  # noqa: F811
    return {
        "localhost": [{"name": "localhost/app", "src": layouts.family},
                      {"name": "localhost/team/app", "src": layouts.multiplatform}],
        "127.0.0.1": [{"name": "127.0.0.1/team/app", "src": layouts.family}],
    }


def _sites(pub, layouts):  # noqa: F811
    images = _images(layouts)
    return [
        pub.site("localhost", images=images["localhost"]),
        pub.site("127.0.0.1", name="ip-site", site_layout="directories", redirect_http=False, cors=True,
                 images=images["127.0.0.1"]),
    ]


@pytest.fixture(scope="module")
def publisher(sshd, ca, run_playbook, layouts):  # noqa: F811
    pub = Publisher(sshd, ca, run_playbook, "main")
    pub.sites = _sites(pub, layouts)
    try:
        pub.first = pub.run(pub.sites)
        assert not pub.first.failed, str(pub.first)
        yield pub
    finally:
        pub.stop()


def _messages(result):
    """Every failure message of a run, loop items included."""
    found = []
    for unused_play, unused_name, hosts in result.tasks:
        for res in hosts.values():
            for item in [res] + list(res.get("results") or ()):
                if isinstance(item, dict) and item.get("failed") and not item.get("ignored"):
                    found.append(str(item.get("msg") or item.get("stderr") or item))
    return "\n".join(found)


def _wait_for(predicate, what, timeout=10):
    """The role waits for nginx's new workers; this only guards against a slow machine."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, what
            return value
        time.sleep(0.1)


# --------------------------------------------------------------------------- headers

def test_well_known_documents_have_exact_type_charset_and_short_cache(publisher):
    for host in ("localhost", "127.0.0.1"):
        status, headers, body = publisher.get(WELL_KNOWN, host=host)
        assert status == 200, (host, status, body)
        assert headers["Content-Type"] == MT_REF_ENGINES
        assert headers["Cache-Control"] == SHORT
        document = json.loads(body)
        assert document["refEngines"][0]["protocol"] == "oci-index-template-v1"
    cas = json.loads(publisher.get(WELL_KNOWN)[2])
    assert cas["refEngines"][0]["uri"] == "https://localhost:%d/oci-index/{path}" % publisher.https_port
    layouts_doc = json.loads(publisher.get(WELL_KNOWN, host="127.0.0.1")[2])
    assert layouts_doc["refEngines"][0]["uri"] == \
        "https://127.0.0.1:%d/oci-image/{path}/index.json" % publisher.https_port


def test_cas_bucket_site_serves_indexes_and_blobs(publisher, layouts):  # noqa: F811
    for path in ("/oci-index/app", "/oci-index/team/app", "/oci-index/team%2Fapp"):
        status, headers, body = publisher.get(path)
        assert status == 200, (path, status)
        assert headers["Content-Type"] == MT_INDEX, path
        assert headers["Cache-Control"] == SHORT, path
        assert json.loads(body)["manifests"], path
    digest = layouts.info["family"]["largest_blob"]["digest"]
    algorithm, encoded = digest.split(":")
    status, headers, body = publisher.get("/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded))
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Cache-Control"] == LONG
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    # A missing blob is not cached as immutable, and the site's private state is not served.
    status, headers, unused_body = publisher.get("/oci-cas/%s/%s/%s" % (algorithm, "00", "00" * 32))
    assert status == 404 and "Cache-Control" not in headers
    assert publisher.get("/.oci-discovery/")[0] == 404
    assert publisher.get("/")[0] == 404


def test_directories_site_serves_layouts_with_index_type(publisher, layouts):  # noqa: F811
    for path in ("/oci-image/team/app/index.json", "/oci-image/team%2Fapp/index.json"):
        status, headers, body = publisher.get(path, host="127.0.0.1")
        assert status == 200, (path, status)
        assert headers["Content-Type"] == MT_INDEX, path
        assert headers["Cache-Control"] == SHORT, path
        assert headers["Access-Control-Allow-Origin"] == "*"
        entries = json.loads(body)["manifests"]
        assert {e["annotations"]["org.opencontainers.image.ref.name"] for e in entries} == \
            set(layouts.info["family"]["tag_list"])
    digest = layouts.info["family"]["largest_blob"]["digest"]
    status, headers, body = publisher.get("/oci-image/team%%2Fapp/blobs/%s" % digest.replace(":", "/"),
                                          host="127.0.0.1")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Cache-Control"] == LONG
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    status, headers, unused_body = publisher.get("/oci-image/team/app/oci-layout", host="127.0.0.1")
    assert status == 200 and headers["Cache-Control"] == SHORT


def test_http_redirects_to_https_or_serves_when_asked(publisher):
    status, headers, unused_body = publisher.get("/oci-index/app?x=1", tls=False, follow=False)
    assert status == 301
    assert headers["Location"] == "https://localhost:%d/oci-index/app?x=1" % publisher.https_port
    status, headers, unused_body = publisher.get(WELL_KNOWN, tls=False, host="127.0.0.1")
    assert status == 200 and headers["Content-Type"] == MT_REF_ENGINES


def test_cors_preflight_on_the_site_that_asks_for_it(publisher):
    status, headers, unused_body = publisher.get("/oci-image/team/app/index.json", host="127.0.0.1", method="OPTIONS")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in headers["Access-Control-Allow-Methods"]
    status, headers, unused_body = publisher.get(WELL_KNOWN)
    assert "Access-Control-Allow-Origin" not in headers


# --------------------------------------------------------------------------- resolution

def test_lookup_resolves_every_published_tag_over_https(publisher, run_playbook, layouts, ca):  # noqa: F811
    expected = {}
    for tag in layouts.info["family"]["tag_list"]:
        digests = [e["digest"] for e in layouts.info["family"]["tags"][tag]]
        expected["localhost/app#" + tag] = digests
        expected["127.0.0.1/team/app#" + tag] = digests
    for tag in layouts.info["multiplatform"]["tag_list"]:
        expected["localhost/team/app#" + tag] = [e["digest"] for e in layouts.info["multiplatform"]["tags"][tag]]
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "resolve",
        "ansible.builtin.debug": {"msg": "{{ query('oci.discovery.resolve', item, port=port, ca_path=ca) }}"},
        "loop": sorted(expected),
        "vars": {"port": publisher.https_port, "ca": ca.cert_path},
    }]}]
    result = run_playbook(play)
    assert not result.failed, str(result)
    got = {item["item"]: item["msg"] for item in result.result("resolve")["results"]}
    assert got == expected


# --------------------------------------------------------------------------- idempotence, check mode

def test_second_run_changes_nothing(publisher):
    assert publisher.first.changed_count > 0
    pid = publisher.master_pid()
    again = publisher.run(publisher.sites)
    assert not again.failed, str(again)
    assert again.changed_count == 0, [
        (name, host) for unused_play, name, hosts in again.tasks for host, res in hosts.items() if res.get("changed")]
    assert publisher.master_pid() == pid


def test_tags_run_their_part_of_the_role(publisher, layouts):  # noqa: F811
    """--tags publish publishes without touching nginx; --tags config configures without publishing."""
    sites = [dict(site) for site in publisher.sites]
    sites[0]["images"] = sites[0]["images"] + [{"name": "localhost/tagged", "src": layouts.family}]
    published = publisher.run(sites, args=("--tags", "publish"))
    assert not published.failed, str(published)
    names = published.task_names()
    assert any(n.endswith("Publish the images") for n in names), names
    assert not [n for n in names if "nginx -T" in n or "Install" in n], names
    assert publisher.get("/oci-index/tagged")[0] == 200
    configured = publisher.run(publisher.sites, args=("--tags", "config"))
    assert not configured.failed, str(configured)
    names = configured.task_names()
    assert any("nginx -T" in n for n in names) and not any(n.endswith("Publish the images") for n in names), names


def test_check_diff_shows_the_change_and_changes_nothing(publisher):
    before = publisher.tree()
    sites = [dict(site, documents_max_age=30) for site in publisher.sites]
    result = publisher.run(sites, check=True, diff=True)
    assert not result.failed, str(result)
    candidates = result.result("oci.discovery.nginx_publisher : Write the candidate site configurations")
    assert candidates["changed"]
    for item in candidates["results"]:
        (diff,) = item["diff"]
        assert 'add_header Cache-Control "public, max-age=60";' in diff["before"]
        assert 'add_header Cache-Control "public, max-age=30";' in diff["after"]
        assert 'max-age=60"' not in diff["after"]
    assert publisher.tree() == before
    assert publisher.get(WELL_KNOWN)[1]["Cache-Control"] == SHORT


# --------------------------------------------------------------------------- a configuration nginx rejects

def test_rejected_configuration_fails_with_nginx_message_and_keeps_serving(publisher):
    before = publisher.tree()
    pid = publisher.master_pid()
    bad = [dict(publisher.sites[0], extra_directives=["no_such_directive on;"]), publisher.sites[1]]
    result = publisher.run(bad)
    assert result.failed
    messages = _messages(result)
    assert 'unknown directive "no_such_directive"' in messages, messages
    assert "nothing was applied" in messages
    # Nothing live changed: the files, the process, what it serves.
    assert publisher.tree() == before
    assert publisher.master_pid() == pid
    status, headers, unused_body = publisher.get("/oci-index/app")
    assert status == 200 and headers["Content-Type"] == MT_INDEX and headers["Cache-Control"] == SHORT
    # The next good run applies its change (same master, new workers) from a clean slate ...
    good = [dict(publisher.sites[0], documents_max_age=45), publisher.sites[1]]
    result = publisher.run(good)
    assert not result.failed, str(result)
    assert publisher.master_pid() == pid
    _wait_for(lambda: publisher.get("/oci-index/app")[1]["Cache-Control"] == "public, max-age=45",
              "the new cache lifetime is served")
    assert publisher.get(WELL_KNOWN, host="127.0.0.1")[1]["Cache-Control"] == SHORT
    # ... and going back is one more change.
    restored = publisher.run(publisher.sites)
    assert not restored.failed and restored.changed_count > 0, str(restored)
    _wait_for(lambda: publisher.get("/oci-index/app")[1]["Cache-Control"] == SHORT, "the old lifetime again")


# --------------------------------------------------------------------------- removal, bad input

def test_absent_removes_one_site_and_keeps_the_other(sshd, ca, run_playbook):
    pub = Publisher(sshd, ca, run_playbook, "removal")
    try:
        # https only (no plain-http listener), self-signed: what `make demo` provisions.
        other = pub.site("127.0.0.1", name="other", tls_self_signed=True, listen_http=[])
        del other["tls_certificate"], other["tls_certificate_key"]
        sites = [pub.site("localhost"), other]
        first = pub.run(sites)
        assert not first.failed, str(first)
        conf = os.path.join(pub.prefix, "nginx", "conf", "oci-discovery")
        assert sorted(os.listdir(os.path.join(conf, "sites"))) == ["localhost.conf", "other.conf"]
        assert os.path.exists(os.path.join(conf, "tls", "other.key"))
        # The self-signed site answers (not trusted by the test CA: check it without verification).
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (pub.https_port, WELL_KNOWN), context=insecure,
                                    timeout=10) as response:
            assert response.headers["Content-Type"] == MT_REF_ENGINES
            assert "oci-index" in json.loads(response.read())["refEngines"][0]["uri"]
        removed = pub.run([sites[0], dict(sites[1], state="absent")])
        assert not removed.failed, str(removed)
        assert sorted(os.listdir(os.path.join(conf, "sites"))) == ["localhost.conf"]
        assert sorted(os.listdir(os.path.join(conf, "check", "oci-discovery", "sites"))) == ["localhost.conf"]
        assert not os.path.exists(os.path.join(conf, "tls", "other.key"))
        # The removed site's files stay; the other site is untouched and still served.
        assert os.path.exists(os.path.join(pub.roots["127.0.0.1"], ".well-known", "oci-host-ref-engines"))
        status, headers, body = pub.get(WELL_KNOWN)
        assert status == 200 and headers["Content-Type"] == MT_REF_ENGINES
        assert json.loads(body)["refEngines"][0]["uri"].startswith("https://localhost:")
        again = pub.run([sites[0], dict(sites[1], state="absent")])
        assert not again.failed and again.changed_count == 0, str(again)
    finally:
        pub.stop()


@pytest.mark.parametrize("change, expect", [
    ({"site_layout": "flat"}, "site_layout"),
    ({"listen_https": ["127.0.0.1:https"]}, 'listen value "127.0.0.1:https"'),
    ({"tls_certificate_key": None}, "tls_certificate and tls_certificate_key go together"),
    ({"images": [{"name": "localhost/app", "src": "relative/layout"}]}, "absolute path of the OCI layout"),
    # A trailing newline passes a pattern ending in $ and would reach the configuration (issue 16).
    ({"cors": True, "cors_origin": "*\n"}, 'cors_origin "*\\n"'),
    ({"root": "/srv/www\n"}, 'root "/srv/www\\n"'),
    ({"listen_https": ["127.0.0.1:8443\nssl"]}, 'listen value "127.0.0.1:8443\\nssl"'),
])
def test_bad_settings_fail_before_anything_is_written(sshd, ca, run_playbook, change, expect):
    pub = Publisher(sshd, ca, run_playbook, "bad")
    site = pub.site("localhost")
    site.update(change)
    site = {k: v for k, v in site.items() if v is not None}
    result = pub.run([site])
    assert result.failed
    messages = _messages(result)
    assert expect in messages, messages
    assert not os.path.exists(os.path.join(pub.prefix, "nginx"))


SYSTEM_MAIN_CONF = """\
# Like a distribution's /etc/nginx/nginx.conf (written by the test; the role does not edit it)
pid {d}/run/nginx.pid;
error_log {d}/log/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/log/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/etc/nginx/conf.d/*.conf;
}}
"""


def test_system_nginx_layout_hooks_into_an_existing_main_configuration(sshd, ca, run_playbook):
    """Without nginx_publisher_prefix the role leaves the main configuration alone: it adds a
    file to the include directory, keeps its sites next to the main configuration, and refuses
    (changing nothing live) when the main configuration does not include that directory."""
    pub = Publisher(sshd, ca, run_playbook, "system")
    d = os.path.join(pub.prefix, "system")
    for sub in ("etc/nginx/conf.d", "etc/nginx/unused.d", "run", "log", "tmp"):
        os.makedirs(os.path.join(d, sub))
    main_conf = os.path.join(d, "etc", "nginx", "nginx.conf")
    with open(main_conf, "w") as handle:
        handle.write(SYSTEM_MAIN_CONF.format(d=d))
    sshd.grant_write(d)
    pub.pid_file = os.path.join(d, "run", "nginx.pid")
    system = {"nginx_publisher_prefix": "", "nginx_publisher_conf_file": main_conf,
              "nginx_publisher_include_dir": os.path.join(d, "etc", "nginx", "conf.d"),
              "nginx_publisher_pid_file": pub.pid_file, "nginx_publisher_service_method": "process"}
    sites_dir = os.path.join(d, "etc", "nginx", "oci-discovery", "sites")
    try:
        # An include directory the main configuration does not read: refused, no site goes live.
        wrong = dict(system)
        wrong["nginx_publisher_include_dir"] = os.path.join(d, "etc", "nginx", "unused.d")
        result = pub.run([pub.site("localhost")], **wrong)
        assert result.failed
        messages = _messages(result)
        assert "does not include" in messages and "unused.d/oci-discovery.conf" in messages, messages
        assert os.listdir(sites_dir) == []
        with pytest.raises((OSError, ValueError)):  # no nginx started (nginx -t may leave an empty pid file)
            pub.master_pid()

        first = pub.run([pub.site("localhost")], **system)
        assert not first.failed, str(first)
        with open(os.path.join(d, "etc", "nginx", "conf.d", "oci-discovery.conf")) as handle:
            assert "include oci-discovery/sites/*.conf;" in handle.read()
        assert os.listdir(sites_dir) == ["localhost.conf"]
        with open(main_conf) as handle:
            assert handle.read() == SYSTEM_MAIN_CONF.format(d=d)
        status, headers, unused_body = pub.get(WELL_KNOWN)
        assert status == 200 and headers["Content-Type"] == MT_REF_ENGINES
        again = pub.run([pub.site("localhost")], **system)
        assert not again.failed and again.changed_count == 0, str(again)
    finally:
        pub.stop()
