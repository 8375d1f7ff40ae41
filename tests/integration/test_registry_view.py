# -*- coding: utf-8 -*-
"""The registry view: real registry clients (skopeo, podman, umoci) against sites the collection published.

One nginx_publisher instance over ssh (the rig's sshd, as in test_nginx_publisher.py) with two
https sites on the same port, published once by the role:

  localhost   cas_bucket:  localhost/app (family layout), localhost/team/multi (multi-platform)
  127.0.0.1   directories: 127.0.0.1/team/app (family layout), 127.0.0.1/multi (multi-platform)

and three S3 sites, s3_publish_layout into Ceph RGW buckets (public-read):

  s3          the default site layout (registry: blobs at v2/<name>/blobs/), served by an nginx that
              only proxies the host root to the bucket (no rewrite rule: the "plain front" of a CDN origin)
  s3-copies   site_layout cas_bucket (the view copies each blob), same plain front
  s3-website  the default site layout in a bucket with website hosting on, reached through RGW's
              website endpoint (Host <bucket>.s3-website.test), where GET /v2/ answers v2/index.html

Every client call then runs against these sites; digests are compared with the source layouts
and the trees umoci unpacks from the copies with those it unpacks from the sources.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from fixtures_layouts import layouts  # noqa: F401  pylint: disable=unused-import
from rig import layouts as rl
from rig import procs
from rig.nginx import server
from test_nginx_publisher import Publisher

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
PLATFORMS = [("amd64", None, "1.0-linux-amd64"), ("arm64", "v8", "1.0-linux-arm64-v8"),
             ("ppc64le", None, "1.0-linux-ppc64le")]


def _run(argv, check=True, timeout=300):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, HOME=os.environ.get("HOME", "/root")))
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc %d):\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


class Site(object):
    """A registry endpoint: host:port, how skopeo/podman reach it, how to GET from it."""

    def __init__(self, label, host, port, kind, tls_args, context=None):
        self.label, self.host, self.port, self.kind = label, host, port, kind
        self.tls_args = tls_args        # (skopeo inspect/podman flags, skopeo copy source flags)
        self.context = context

    @property
    def authority(self):
        return "%s:%d" % (self.host, self.port)

    def ref(self, name, tag):
        return "docker://%s/%s:%s" % (self.authority, name, tag)

    def request(self, path, method="GET"):
        scheme = "https" if self.context else "http"
        req = urllib.request.Request("%s://%s%s" % (scheme, self.authority, path), method=method)
        handlers = [urllib.request.HTTPSHandler(context=self.context)] if self.context else []
        try:
            with urllib.request.build_opener(*handlers).open(req, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def inspect(self, name, tag, *extra, check=True):
        return _run(["skopeo", "inspect", "--raw"] + self.tls_args[0] + list(extra) + [self.ref(name, tag)], check)

    def copy(self, name, tag, dest, *extra):
        return _run(["skopeo", "copy", "--quiet", "--preserve-digests"] + self.tls_args[1] + list(extra)
                    + [self.ref(name, tag), "oci:%s" % dest])


def _entry_digest(layout, tag):
    (entry,) = rl.tag_entries(layout, tag)
    return entry["digest"]


def _unpacked_tree(layout, tag, work):
    """{path: (kind, mode, content sha256 or link target)} of the rootfs umoci unpacks from layout:tag."""
    bundle = os.path.join(work, "bundle-%s" % hashlib.sha256(("%s:%s" % (layout, tag)).encode()).hexdigest()[:12])
    _run(["umoci", "unpack", "--image", "%s:%s" % (layout, tag), bundle])
    rootfs = os.path.join(bundle, "rootfs")
    tree = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, rootfs)
            if os.path.islink(path):
                tree[rel] = ("link", st.st_mode, os.readlink(path))
            elif os.path.isdir(path):
                tree[rel] = ("dir", st.st_mode, None)
            else:
                with open(path, "rb") as handle:
                    tree[rel] = ("file", st.st_mode, hashlib.sha256(handle.read()).hexdigest())
    shutil.rmtree(bundle)
    return tree


def _oci_tag_digest(layout, tag):
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    (entry,) = [e for e in index["manifests"] if (e.get("annotations") or {}).get(rl.REF_NAME) == tag]
    return entry["digest"]


# --------------------------------------------------------------------------- the sites (published once)

@pytest.fixture(scope="module")
def nginx_sites(sshd, ca, run_playbook, layouts):  # noqa: F811
    pub = Publisher(sshd, ca, run_playbook, "registry")
    pub.sites = [
        pub.site("localhost", redirect_http=False, images=[
            {"name": "localhost/app", "src": layouts.family},
            {"name": "localhost/team/multi", "src": layouts.multiplatform}]),
        pub.site("127.0.0.1", name="ip-site", site_layout="directories", redirect_http=False, images=[
            {"name": "127.0.0.1/team/app", "src": layouts.family},
            {"name": "127.0.0.1/multi", "src": layouts.multiplatform}]),
    ]
    certs = procs.make_workdir("registry-certs", mode=0o755)
    shutil.copy(ca.cert_path, os.path.join(certs, "ca.crt"))
    try:
        pub.first = pub.run(pub.sites)
        assert not pub.first.failed, str(pub.first)
        tls = (["--cert-dir", certs], ["--src-cert-dir", certs])
        pub.registry = {
            "cas_bucket": Site("cas_bucket", "localhost", pub.https_port, "nginx", tls, pub.context),
            "directories": Site("directories", "127.0.0.1", pub.https_port, "nginx", tls, pub.context),
        }
        pub.names = {"cas_bucket": ("app", "team/multi"), "directories": ("team/app", "multi")}
        pub.cert_dir = certs
        yield pub
    finally:
        pub.stop()
        procs.remove_workdir(certs)


def _s3_publish(rgw, run_playbook, layouts, bucket, **extra):  # noqa: F811
    client = rgw.client()
    client.create_bucket(Bucket=bucket)
    if extra.pop("website", False):
        client.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})
    tasks = [{"name": "publish %s" % name, "oci.discovery.s3_publish_layout": dict(
        rgw.module_args(), bucket=bucket, name="registry.test/%s" % name, src=src, acl="public-read",
        base_url="http://registry.test", **extra)}
        for name, src in (("app", layouts.family), ("team/multi", layouts.multiplatform))]
    result = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    assert not result.failed, str(result)
    return result


@pytest.fixture(scope="module")
def s3_site(rgw, run_playbook, layouts, nginx_factory_module):  # noqa: F811
    """The S3 site of the default layout (s3_site.others: the cas_bucket and the website sites)."""
    sites = []
    for label, bucket, extra in (("s3", "registry-view", {}), ("s3-copies", "registry-copies", {"site_layout": "cas_bucket"}),
                                 ("s3-website", "registry-website", {"website": True})):
        result = _s3_publish(rgw, run_playbook, layouts, bucket, **extra)
        if label == "s3-website":
            # RGW's website endpoint (rgw dns s3website name): the bucket is the Host's first label.
            location = "location / { proxy_pass %s/; proxy_set_header Host %s.%s; }" % (
                rgw.endpoint_url(), bucket, rgw.website_domain)
        else:
            # The plain front: the host root is the bucket, nothing else (no rewrite, no header added).
            location = "location / { proxy_pass %s/%s/; }" % (rgw.endpoint_url(), bucket)
        front = nginx_factory_module(servers=[server(location)])
        site = Site(label, "127.0.0.1", front.port, "s3", (["--tls-verify=false"], ["--src-tls-verify=false"]))
        site.publish = result
        site.bucket = bucket
        sites.append(site)
    sites[0].others = sites[1:]
    yield sites[0]


@pytest.fixture(scope="module")
def nginx_factory_module(ca):
    from rig.nginx import Nginx
    started = []

    def factory(servers=None, http=None):
        front = Nginx(cert=ca.server)
        started.append(front)
        return front.start(servers=servers, http=http)
    yield factory
    for front in started:
        front.remove()


def _all_sites(nginx_sites, s3_site):
    sites = [(nginx_sites.registry[k], nginx_sites.names[k]) for k in ("cas_bucket", "directories")]
    sites.extend((site, ("app", "team/multi")) for site in [s3_site] + s3_site.others)
    return sites


# --------------------------------------------------------------------------- the protocol, by hand

def test_api_root_answers_200_with_the_api_version(nginx_sites, s3_site):
    for site, dummy in _all_sites(nginx_sites, s3_site):
        for method in ("GET", "HEAD"):
            status, headers, dummy = site.request("/v2/", method)
            assert status == 200, (site.label, method)
            if site.kind == "nginx":
                assert headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_manifests_by_tag_and_digest_have_exact_type_length_and_digest(nginx_sites, s3_site, layouts):  # noqa: F811
    for site, (single, multi) in _all_sites(nginx_sites, s3_site):
        for name, layout, tag in ((single, layouts.family, "1.0"), (multi, layouts.multiplatform, "1.0"),
                                  (multi, layouts.multiplatform, "nested")):
            digest = _entry_digest(layout, tag)
            expected = rl.read_blob(layout, digest)
            for ref in (tag, digest):
                for method in ("GET", "HEAD"):
                    status, headers, body = site.request("/v2/%s/manifests/%s" % (name, ref), method)
                    assert status == 200, (site.label, name, ref, method, body)
                    (entry,) = rl.tag_entries(layout, tag)
                    media_type = entry["mediaType"]
                    assert headers["Content-Type"] == media_type, (site.label, name, ref)
                    assert int(headers["Content-Length"]) == len(expected)
                    if method == "GET":
                        assert body == expected
                    if site.kind == "nginx" and ref == digest:
                        assert headers["Docker-Content-Digest"] == digest
                    if site.kind == "nginx" and ref == tag:
                        assert "Docker-Content-Digest" not in headers    # documented: not for tags
        # Every child manifest of the multi-platform index (and the nested index's child), by digest.
        index = rl.read_json_blob(layouts.multiplatform, _entry_digest(layouts.multiplatform, "1.0"))
        for child in index["manifests"]:
            status, headers, body = site.request("/v2/%s/manifests/%s" % (multi, child["digest"]))
            assert status == 200 and hashlib.sha256(body).hexdigest() == child["digest"].split(":")[1]
            assert headers["Content-Type"] == child["mediaType"]
            manifest = json.loads(body)
            for blob in [manifest["config"]] + manifest["layers"]:
                for method in ("GET", "HEAD"):
                    status, headers, data = site.request("/v2/%s/blobs/%s" % (multi, blob["digest"]), method)
                    assert status == 200, (site.label, blob["digest"], method)
                    assert int(headers["Content-Length"]) == blob["size"]
                    if method == "GET":
                        assert hashlib.sha256(data).hexdigest() == blob["digest"].split(":")[1]
                    if site.kind == "nginx":
                        assert headers["Docker-Content-Digest"] == blob["digest"]


def test_unknown_names_tags_and_digests_answer_404_with_the_json_error(nginx_sites, s3_site, layouts):  # noqa: F811
    unknown = "sha256:" + "0" * 64
    known_blob = rl.read_json_blob(layouts.family, _entry_digest(layouts.family, "1.0"))["layers"][0]["digest"]
    for site, (single, dummy) in _all_sites(nginx_sites, s3_site):
        cases = [("/v2/%s/manifests/no-such-tag" % single, "MANIFEST_UNKNOWN"),
                 ("/v2/%s/manifests/%s" % (single, unknown), "MANIFEST_UNKNOWN"),
                 ("/v2/%s/blobs/%s" % (single, unknown), "BLOB_UNKNOWN"),
                 ("/v2/nobody/manifests/1.0", "NAME_UNKNOWN"),
                 ("/v2/nobody/blobs/%s" % known_blob, "NAME_UNKNOWN")]
        for path, code in cases:
            status, headers, body = site.request(path)
            if site.kind == "nginx":
                assert status == 404, (site.label, path, status)
                assert headers["Content-Type"] == "application/json"
                assert json.loads(body)["errors"][0]["code"] == code, (site.label, path, body)
            else:
                assert status in (403, 404), (site.label, path, status)   # S3's own error (documented)
        # The tag that is not a registry tag is not served, and not even as a file name.
        assert site.request("/v2/%s/manifests/2.0-rc%%2F1" % single)[0] in (400, 403, 404)


# --------------------------------------------------------------------------- real clients

def test_skopeo_inspect_and_copy_single_platform_same_digest_same_tree(nginx_sites, s3_site, layouts, public_tmp_path):  # noqa: F811
    source_tree = _unpacked_tree(layouts.family, "1.1", public_tmp_path)
    for site, (single, dummy) in _all_sites(nginx_sites, s3_site):
        info = json.loads(_run(["skopeo", "inspect"] + site.tls_args[0] + [site.ref(single, "1.1")]).stdout)
        assert info["Digest"] == _entry_digest(layouts.family, "1.1")
        assert info["RepoTags"] == ["1.0", "1.1", "2.0"], site.label       # tags/list; not "2.0-rc/1"
        raw = site.inspect(single, "1.1").stdout
        assert hashlib.sha256(raw.encode()).hexdigest() == _entry_digest(layouts.family, "1.1").split(":")[1]
        dest = os.path.join(public_tmp_path, "copy-%s" % site.label)
        site.copy(single, "1.1", dest + ":1.1")
        assert _oci_tag_digest(dest, "1.1") == _entry_digest(layouts.family, "1.1")
        assert _unpacked_tree(dest, "1.1", public_tmp_path) == source_tree, site.label


def test_skopeo_copy_each_platform_and_all_of_a_multi_platform_index(nginx_sites, s3_site, layouts, public_tmp_path):  # noqa: F811
    trees = dict((tag, _unpacked_tree(layouts.multiplatform, tag, public_tmp_path)) for dummy, dummy2, tag in PLATFORMS)
    for site, (dummy, multi) in _all_sites(nginx_sites, s3_site):
        for arch, variant, tag in PLATFORMS:
            dest = os.path.join(public_tmp_path, "multi-%s-%s" % (site.label, tag))
            extra = ["--override-os", "linux", "--override-arch", arch] + (["--override-variant", variant] if variant else [])
            site.copy(multi, "1.0", dest + ":" + tag, *extra)
            assert _oci_tag_digest(dest, tag) == _entry_digest(layouts.multiplatform, tag), (site.label, tag)
            assert _unpacked_tree(dest, tag, public_tmp_path) == trees[tag], (site.label, tag)
        dest = os.path.join(public_tmp_path, "multi-%s-all" % site.label)
        site.copy(multi, "1.0", dest + ":1.0", "--all")
        assert _oci_tag_digest(dest, "1.0") == _entry_digest(layouts.multiplatform, "1.0")
        _run(["skopeo", "inspect", "--raw", "oci:%s:1.0" % dest])


def test_podman_pulls_an_image(nginx_sites, s3_site, layouts, public_tmp_path):  # noqa: F811
    expected = _entry_digest(layouts.family, "2.0")
    for site, (single, dummy) in _all_sites(nginx_sites, s3_site)[::2]:   # the cas_bucket site, s3, s3-website
        root = tempfile.mkdtemp(prefix="podman-", dir="/tmp")     # podman: runroot paths under 50 characters
        tls = ["--cert-dir", nginx_sites.cert_dir] if site.kind == "nginx" else ["--tls-verify=false"]
        podman = ["podman", "--storage-driver", "vfs", "--root", root + "/root", "--runroot", root + "/run"]
        _run(podman + ["pull", "--quiet"] + tls + ["%s/%s:2.0" % (site.authority, single)])
        out = _run(podman + ["image", "inspect", "--format", "{{.Digest}}", "%s/%s:2.0" % (site.authority, single)])
        assert out.stdout.strip() == expected, site.label
        _run(podman + ["system", "reset", "--force"], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_an_unknown_tag_fails_cleanly(nginx_sites, s3_site):
    for site, (single, dummy) in _all_sites(nginx_sites, s3_site):
        proc = site.inspect(single, "no-such-tag", check=False)
        assert proc.returncode != 0
        assert "manifest unknown" in proc.stderr.lower() or "404" in proc.stderr or "403" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- the publish side

def test_invalid_tag_is_skipped_with_a_warning_and_discovery_keeps_it(nginx_sites, s3_site, run_playbook, ca):
    res = nginx_sites.first.result("oci.discovery.nginx_publisher : Publish the images")
    warnings = list(res.get("warnings") or []) + [w for item in res["results"] for w in item.get("warnings") or []]
    assert any("'2.0-rc/1'" in w and "registry" in w for w in warnings), warnings
    s3_warnings = [w for res in s3_site.publish.task("publish app").values() for w in res.get("warnings") or []]
    assert any("'2.0-rc/1'" in w for w in s3_warnings), s3_warnings
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "resolve", "ansible.builtin.debug": {
            "msg": "{{ query('oci.discovery.resolve', 'localhost/app#2.0-rc/1', port=port, ca_path=ca) }}"},
        "vars": {"port": nginx_sites.https_port, "ca": ca.cert_path}}]}]
    result = run_playbook(play)
    assert not result.failed and result.result("resolve")["msg"], str(result)


def test_second_run_changes_nothing_and_check_diff_cover_the_view(nginx_sites, layouts):  # noqa: F811
    again = nginx_sites.run(nginx_sites.sites)
    assert not again.failed and again.changed_count == 0, str(again)
    before = nginx_sites.tree()
    sites = [dict(site, images=site["images"] + [{"name": "localhost/extra", "src": layouts.family, "tags": ["1.0"]}])
             if site["server_name"] == "localhost" else site for site in nginx_sites.sites]
    check = nginx_sites.run(sites, check=True, diff=True)
    assert not check.failed, str(check)
    items = check.result("oci.discovery.nginx_publisher : Publish the images")["results"]
    (extra,) = [i for i in items if i["name"] == "localhost/extra"]
    assert extra["changed"] and extra["registry_objects_written"] == 3, extra   # manifest by digest, by tag, tags/list
    assert any("registry view extra: 3 manifest/tag file(s) to write" in d.get("prepared", "") for d in extra["diff"])
    assert nginx_sites.tree() == before


def test_s3_second_run_changes_nothing_and_check_diff_cover_the_view(s3_site, rgw, run_playbook, layouts):  # noqa: F811
    def play(name, src, check=False):
        task = {"name": "publish", "oci.discovery.s3_publish_layout": dict(
            rgw.module_args(), bucket=s3_site.bucket, name="registry.test/%s" % name, src=src, acl="public-read",
            base_url="http://registry.test")}
        return run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}], check=check, diff=check)
    again = play("app", layouts.family).result("publish")
    assert again["changed"] is False and again["registry_objects_written"] == 0, again
    assert again["requests"]["put"] == 0 and again["requests"]["copy"] == 0, again["requests"]
    check = play("other", layouts.family, check=True).result("publish")
    assert check["changed"] and check["registry_objects_written"] > 0, check
    assert check["site_layout"] == "registry" and check["registry_blobs_copied"] == 0, check   # blobs at v2/other/
    assert check["blobs_sent"] > 0, check
    assert any("registry view other:" in d.get("prepared", "") for d in check["diff"]), check["diff"]
    listed = rgw.client().list_objects_v2(Bucket=s3_site.bucket, Prefix="v2/other/")
    assert listed.get("KeyCount", 0) == 0


def test_withdrawn_tag_and_prune_keep_what_other_tags_reach(nginx_sites, layouts, public_tmp_path):  # noqa: F811
    site = nginx_sites.registry["cas_bucket"]
    sites = [dict(s, images=[dict(s["images"][0], tags=["1.0"], state="absent", prune=True)])
             if s["server_name"] == "localhost" else s for s in nginx_sites.sites]
    result = nginx_sites.run(sites)
    assert not result.failed, str(result)
    assert site.request("/v2/app/manifests/1.0")[0] == 404
    assert site.inspect("app", "1.0", check=False).returncode != 0
    dest = os.path.join(public_tmp_path, "after-prune")
    site.copy("app", "1.1", dest + ":1.1")        # 1.1 shares layers with 1.0: still all there
    assert _oci_tag_digest(dest, "1.1") == _entry_digest(layouts.family, "1.1")
