# -*- coding: utf-8 -*-
"""oci.discovery.pull through ansible-playbook, from sites published by the collection (both site layouts)
and served by real nginx over https with the test CA; the pulled layouts checked with skopeo and umoci.

Host names: see discovery_hosts.py (private loopback address on ports 443/80, ansible-playbook in a mount
namespace with its own /etc/hosts).
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from discovery_hosts import NamedSites
from rig.layouts import reachable, read_index
from rig.procs import make_workdir, remove_workdir
from rig.published import describe_difference, snapshot_tree

REF_NAME = "org.opencontainers.image.ref.name"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
WK = "/.well-known/oci-host-ref-engines"
CAS_HOST = "pull.example.test"          # cas_bucket site
DIRS_HOST = "dirs.example.test"         # directories site
HOSTILE = ("corrupt", "truncated", "longer")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tag_digest(layout, tag):
    (entry,) = [e for e in read_index(layout)["manifests"] if (e.get("annotations") or {}).get(REF_NAME) == tag]
    return entry["digest"]


def blob_file(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":")[1])


def read_json_blob(layout, digest):
    with open(blob_file(layout, digest), "rb") as handle:
        return json.loads(handle.read())


def publish_tasks(src, name, root, site_layout, tags=None):
    args = {"src": src, "name": name, "root": root, "site_layout": site_layout}
    if tags:
        args["tags"] = tags
    return [{"name": "publish %s" % name, "oci.discovery.publish_layout": args},
            {"name": "well-known %s" % name, "oci.discovery.ref_engines": {
                "root": root, "base_url": "https://" + name.split("/")[0], "site_layout": site_layout}}]


def pull_task(task_name, ca, **args):
    args.setdefault("ca_path", ca.cert_path)
    return {"name": task_name, "register": task_name.replace(" ", "_"), "oci.discovery.pull": args}


def play(tasks):
    return [{"name": "pull", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def ok(result, name):
    res = result.result(name)
    assert res is not None and not res.get("failed"), "%s: %s\n%s" % (name, res and res.get("msg"), result)
    return res


def failed(result, name):
    res = result.result(name)
    assert res.get("failed"), "%s did not fail: %r" % (name, res)
    return res["msg"]


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          **kwargs)
    assert proc.returncode == 0, "%s: %s%s" % (" ".join(cmd), proc.stdout, proc.stderr)
    return proc.stdout


def rootfs_tree(layout, tag, work):
    """{path: (mode, size, sha256 or link target)} of the rootfs umoci unpacks from layout:tag."""
    bundle = os.path.join(work, "bundle-%d" % len(os.listdir(work)))
    run(["umoci", "unpack", "--image", "%s:%s" % (layout, tag), bundle])
    tree = {}
    rootfs = os.path.join(bundle, "rootfs")
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                content = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            else:
                content = None
            tree[os.path.relpath(path, rootfs)] = (st.st_mode, st.st_size if content else 0, content)
    assert tree, "umoci unpacked an empty rootfs from %s:%s" % (layout, tag)
    return tree


def layout_changes(before, after):
    """Check that only complete, verified blobs were added between two snapshots of a layout."""
    for path in sorted(set(before) | set(after)):
        if path.startswith(".oci-discovery"):
            continue
        if path not in after:
            raise AssertionError("removed: %s" % path)
        if path not in before:
            kind, content = after[path][0], after[path][-1]
            assert kind == "file" and path.startswith("blobs/sha256/") and content == os.path.basename(path), path
            continue
        if before[path] != after[path]:
            # a directory whose mtime moved because a verified blob was renamed into it
            assert before[path][0] == "dir" and path == "blobs/sha256", describe_difference(before, after)


def staged(dest):
    found = []
    for dirpath, dummy, filenames in os.walk(os.path.join(dest, ".oci-discovery", "tmp")):
        found += filenames
    return found


@pytest.fixture
def sites(nginx_factory, ca, public_tmp_path):
    return NamedSites(nginx_factory, ca, public_tmp_path)


def test_pull_single_platform_all_nested_and_several_names_then_rerun(sites, ca, layouts, public_tmp_path):
    family, multi = layouts.family, layouts.multiplatform
    for host in (CAS_HOST, DIRS_HOST):
        sites.host(host)
    sites.start()
    setup = []
    for host, site_layout in ((CAS_HOST, "cas_bucket"), (DIRS_HOST, "directories")):
        root = sites.docroot(host)
        setup += publish_tasks(family, host + "/app", root, site_layout)
        setup += publish_tasks(multi, host + "/team/multi", root, site_layout)
    images = os.path.join(public_tmp_path, "var", "lib", "images")   # created with its parents
    shared = os.path.join(public_tmp_path, "shared")
    fresh = os.path.join(public_tmp_path, "fresh")
    pulls = [
        pull_task("single", ca, name=CAS_HOST + "/app#1.0", dest=images, tag="app-{fragment}"),
        pull_task("arm64", ca, name=CAS_HOST + "/team/multi#1.0", platform="linux/arm64", dest=images, tag="arm64"),
        pull_task("all platforms", ca, name=DIRS_HOST + "/team/multi#1.0", dest=images, tag="multi"),
        pull_task("several", ca, name=[DIRS_HOST + "/app#1.0", DIRS_HOST + "/app#2.0",
                                       {"name": CAS_HOST + "/app#1.1", "tag": "cas-1.1"}], dest=shared),
    ]
    check = dict(pull_task("check", ca, name=CAS_HOST + "/app#2.0", dest=fresh), check_mode=True, diff=True)
    first = sites.run_playbook(play(setup + pulls + [check]))
    for task in ("single", "arm64", "all platforms", "several"):
        assert ok(first, task)["changed"] is True

    single = ok(first, "single")
    (image,) = single["images"]
    assert image["tag"] == "app-1.0" and image["digest"] == tag_digest(family, "1.0")
    assert image["media_type"] == MT_MANIFEST
    assert single["blobs_fetched"] == image["blobs"] and single["blobs_present"] == 0
    assert single["bytes_fetched"] == image["bytes"] > 0
    arm = ok(first, "arm64")["images"][0]
    assert arm["digest"] == tag_digest(multi, "1.0-linux-arm64-v8")
    assert arm["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    every = ok(first, "all platforms")
    assert every["images"][0]["digest"] == tag_digest(multi, "1.0") and every["images"][0]["media_type"] == MT_INDEX

    def dag(layout, *tags):
        return set(reachable(layout, [e for e in read_index(layout)["manifests"] if e["annotations"][REF_NAME] in tags]))
    # what the tags before brought (arm64's manifest, config and layer; a layer shared with the family)
    had = dag(family, "1.0") | dag(multi, "1.0-linux-arm64-v8")
    assert every["blobs_present"] == len(dag(multi, "1.0") & had) >= 3
    assert every["blobs_fetched"] == len(dag(multi, "1.0") - had)
    several = ok(first, "several")
    assert [i["digest"] for i in several["images"]] == [tag_digest(family, t) for t in ("1.0", "2.0", "1.1")]
    assert several["tags"]["added"] == ["1.0", "2.0", "cas-1.1"]
    checked = ok(first, "check")
    assert checked["changed"] is True and checked["blobs_fetched"] > 0 and not os.path.exists(fresh)
    assert "2.0 %s" % tag_digest(family, "2.0") in checked["diff"]["after"]

    # the layouts as image tools see them; the rootfs is the source's
    work = make_workdir("pull-unpack", mode=0o700)
    try:
        for dest, tag, src, src_tag in ((images, "app-1.0", family, "1.0"), (images, "arm64", multi, "1.0-linux-arm64-v8"),
                                        (shared, "2.0", family, "2.0"), (shared, "cas-1.1", family, "1.1")):
            assert json.loads(run(["skopeo", "inspect", "oci:%s:%s" % (dest, tag)]))["Digest"] == tag_digest(src, src_tag)
            assert rootfs_tree(dest, tag, work) == rootfs_tree(src, src_tag, work), (dest, tag)
        raw = json.loads(run(["skopeo", "inspect", "--raw", "oci:%s:multi" % images]))
        assert raw == read_json_blob(multi, tag_digest(multi, "1.0"))
        run(["skopeo", "copy", "oci:%s:multi" % images, "oci:%s:copy" % os.path.join(work, "copied"), "--all"])
        # the README's hand-over to podman's storage (a private vfs store here)
        storage = "containers-storage:[vfs@%s+%s]example.com/app:1.0" % (os.path.join(work, "root"),
                                                                         os.path.join(work, "runroot"))
        run(["skopeo", "copy", "oci:%s:app-1.0" % images, storage])
        assert json.loads(run(["skopeo", "inspect", storage]))["Digest"] == tag_digest(family, "1.0")
    finally:
        remove_workdir(work)
    assert [e["annotations"][REF_NAME] for e in read_index(images)["manifests"]] == ["app-1.0", "arm64", "multi"]
    assert staged(images) == [] and staged(shared) == []

    # a second run: nothing changes, and no blob is asked for except the index that chooses arm64
    served = len(sites.access_log())
    before = snapshot_tree(images)
    second = sites.run_playbook(play(pulls))
    for task in ("single", "arm64", "all platforms", "several"):
        res = ok(second, task)
        assert res["changed"] is False and res["blobs_fetched"] == 0 and res["bytes_fetched"] == 0, task
    assert ok(second, "several")["tags"]["unchanged"] == ["1.0", "2.0", "cas-1.1"]
    layout_changes(before, snapshot_tree(images))
    assert snapshot_tree(images)["index.json"] == before["index.json"]
    requests = [line.split('"')[1] for line in sites.access_log()[served:]]
    blob_requests = [r for r in requests if "/oci-cas/" in r or "/blobs/" in r]
    index_digest = tag_digest(multi, "1.0")
    assert blob_requests == ["GET /oci-cas/sha256/%s/%s HTTP/1.1" % (index_digest[7:9], index_digest[7:])], requests


class _DroppingHandler(BaseHTTPRequestHandler):
    """Serves a site's CAS from its directory; sends half of one blob, then closes the connection."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(self.server.docroot, self.path.lstrip("/"))
        if ".." in self.path or not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as handle:
            data = handle.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if os.path.basename(path) == self.server.drop:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)


@pytest.fixture
def dropping_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_hostile_sources_and_destinations_fail_clearly_leaving_dest_as_it_was(
        sites, ca, layouts, public_tmp_path, dropping_server):
    family = layouts.family
    for host in (CAS_HOST, "mt.example.test", "drop.example.test") + tuple(h + ".example.test" for h in HOSTILE):
        sites.host(host)
    sites.start()
    setup = publish_tasks(family, CAS_HOST + "/app", sites.docroot(CAS_HOST), "cas_bucket")
    for host in HOSTILE:
        setup += publish_tasks(family, "%s.example.test/app" % host, sites.docroot(host + ".example.test"),
                               "cas_bucket", tags=["1.1"])
    base = os.path.join(public_tmp_path, "base")
    setup.append(pull_task("base", ca, name=CAS_HOST + "/app#1.0", dest=base))
    ok(sites.run_playbook(play(setup)), "base")

    # 1.1 shares its base layer with 1.0: its own last layer is the one that goes wrong
    manifest_1_1 = read_json_blob(family, tag_digest(family, "1.1"))
    layer = manifest_1_1["layers"][-1]
    assert not os.path.exists(blob_file(base, layer["digest"]))
    cas_key = "oci-cas/sha256/%s/%s" % (layer["digest"][7:9], layer["digest"][7:])
    with open(os.path.join(sites.docroot(CAS_HOST), cas_key), "rb") as handle:
        data = handle.read()
    damaged = {"corrupt": bytes([data[0] ^ 0xff]) + data[1:], "truncated": data[:-10], "longer": data + b"\0" * 10}
    for host in HOSTILE:
        with open(os.path.join(sites.docroot(host + ".example.test"), cas_key), "wb") as handle:
            handle.write(damaged[host])
    # a manifest whose descriptor says Docker while the document says OCI
    published = json.load(open(os.path.join(sites.docroot(CAS_HOST), "oci-index", "app")))
    (entry,) = [e for e in published["manifests"] if e["annotations"][REF_NAME] == "1.1"]
    sites.write("mt.example.test", WK, {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "/oci-index/{+path}"}]})
    sites.write("mt.example.test", "/oci-index/app", {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        dict(entry, mediaType=DOCKER_MANIFEST)]})
    # a CAS server that drops the connection half-way through the layer (plain http on 127.0.0.1)
    dropping_server.docroot = sites.docroot(CAS_HOST)
    dropping_server.drop = layer["digest"][7:]
    drop_cas = "http://127.0.0.1:%d/oci-cas/{algorithm}/{encoded:2}/{encoded}" % dropping_server.server_address[1]
    sites.write("drop.example.test", WK, {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "/oci-index/{+path}"}],
                                          "casEngines": [{"protocol": "oci-cas-template-v1", "uri": drop_cas}]})
    sites.write("drop.example.test", "/oci-index/app", {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        dict((k, v) for k, v in entry.items() if k != "casEngines")]})
    # destinations: copies of the pulled layout, a symlink to it, a directory of something else
    dests = {}
    for case in HOSTILE + ("mt", "drop"):
        dests[case] = os.path.join(public_tmp_path, "dest-" + case)
        shutil.copytree(base, dests[case], symlinks=True)
    link = os.path.join(public_tmp_path, "link")
    os.symlink(base, link)
    other = os.path.join(public_tmp_path, "other")
    os.makedirs(other)
    with open(os.path.join(other, "notes.txt"), "w") as handle:
        handle.write("not a layout\n")
    snapshots = dict((case, snapshot_tree(path)) for case, path in dests.items())
    snapshots.update(link=snapshot_tree(base), other=snapshot_tree(other))

    tasks = [dict(pull_task(case, ca, name="%s.example.test/app#1.1" % case, dest=dests[case]), ignore_errors=True)
             for case in HOSTILE + ("mt",)]
    tasks.append(dict(pull_task("drop", ca, name="drop.example.test/app#1.1", dest=dests["drop"],
                                protocols=["https", "http"]), ignore_errors=True))
    tasks.append(dict(pull_task("link", ca, name=CAS_HOST + "/app#1.1", dest=link), ignore_errors=True))
    tasks.append(dict(pull_task("other", ca, name=CAS_HOST + "/app#1.1", dest=other), ignore_errors=True))
    result = sites.run_playbook(play(tasks))

    what = "cannot fetch blob %s (%s, %d bytes) through its CAS engines" % (
        layer["digest"], layer["mediaType"], layer["size"])
    reasons = {"corrupt": "digest mismatch: expected %s, got %s" % (layer["digest"], sha(damaged["corrupt"])),
               "truncated": "size mismatch: expected %d bytes, got %d" % (len(data), len(data) - 10),
               "longer": "size mismatch: expected %d bytes, got more"}
    for case in HOSTILE:
        message = failed(result, case)
        assert what in message and "https://%s.example.test/%s: " % (case, cas_key) in message, message
        assert (reasons[case] % len(data) if "%d" in reasons[case] else reasons[case]) in message, message
    message = failed(result, "drop")
    assert what in message and "http://127.0.0.1:%d/%s: the server closed the connection mid-body" % (
        dropping_server.server_address[1], cas_key) in message, message
    message = failed(result, "mt")
    assert "manifest %s (from https://%s/oci-cas/" % (entry["digest"], CAS_HOST) in message
    assert "mediaType" not in read_json_blob(family, entry["digest"])   # umoci leaves it out
    assert "it declares no mediaType, while its descriptor says %r (which requires one)" % DOCKER_MANIFEST in message
    assert "is a symbolic link" in failed(result, "link")
    assert "is a directory that is not an OCI image layout (it holds notes.txt)" in failed(result, "other")

    for case, path in dests.items():
        after = snapshot_tree(path)
        assert after["index.json"] == snapshots[case]["index.json"], case
        layout_changes(snapshots[case], after)
        assert not os.path.exists(blob_file(path, layer["digest"])) and staged(path) == [], case
    assert snapshot_tree(base) == snapshots["link"] and snapshot_tree(other) == snapshots["other"]

    # the publisher repairs the blob: the same pull completes
    with open(os.path.join(sites.docroot("corrupt.example.test"), cas_key), "wb") as handle:
        handle.write(data)
    again = sites.run_playbook(play([pull_task("corrupt", ca, name="corrupt.example.test/app#1.1",
                                               dest=dests["corrupt"])]))
    res = ok(again, "corrupt")
    assert res["changed"] is True and res["images"][0]["digest"] == tag_digest(family, "1.1")
    assert json.loads(run(["skopeo", "inspect", "oci:%s:1.1" % dests["corrupt"]]))["Digest"] == tag_digest(family, "1.1")


def test_mirror_a_family_from_a_web_root_into_an_rgw_bucket_and_a_web_root(
        sites, ca, layouts, rgw, rgw_bucket, public_tmp_path, tmp_path):
    """The mirror playbook: --check first, then the real run, then nothing changes; the bucket, behind an
    https front on its own host name, and another web root resolve and pull with the source's digests."""
    family, multi = layouts.family, layouts.multiplatform
    rgw_site = "http://127.0.0.1:%d/%s/site" % (rgw.port, rgw_bucket)
    sites.host("src.example.test")
    sites.host("web.example.test")
    sites.host("mirror.example.test", "location = %s { proxy_pass %s%s; }\nlocation ~ ^/(.*)$ { proxy_pass %s/$1; }"
               % (WK, rgw_site, WK, rgw_site))
    sites.start()
    setup = publish_tasks(family, "src.example.test/app", sites.docroot("src.example.test"), "cas_bucket")
    setup += publish_tasks(multi, "src.example.test/team/multi", sites.docroot("src.example.test"), "cas_bucket")
    assert not sites.run_playbook(play(setup)).failed
    wrapper = tmp_path / "mirror.yml"
    wrapper.write_text("- ansible.builtin.import_playbook: oci.discovery.mirror\n")
    extra = {"mirror_images": [{"src": "src.example.test/app", "dest": "mirror.example.test/app",
                                "tags": ["1.0", "2.0"]},
                               {"src": "src.example.test/team/multi", "dest": "mirror.example.test/multi",
                                "tags": ["1.0"]}],
             "mirror_target": "s3", "mirror_staging": os.path.join(public_tmp_path, "staging"),
             "mirror_bucket": rgw_bucket, "mirror_prefix": "site", "mirror_acl": "public-read",
             "mirror_base_url": "https://mirror.example.test", "mirror_aws": rgw.module_args(tls=True),
             "mirror_ca_path": ca.cert_path}

    check = sites.run_playbook(str(wrapper), extra_vars=extra, check=True, diff=True)
    assert not check.failed, str(check)
    published = check.result("Publish each family under its new name")
    assert all(r["changed"] for r in published["results"]), published
    assert rgw.client().list_objects_v2(Bucket=rgw_bucket).get("KeyCount") == 0

    first = sites.run_playbook(str(wrapper), extra_vars=extra)
    assert not first.failed, str(first)
    assert first.changed_count > 0
    second = sites.run_playbook(str(wrapper), extra_vars=extra)
    assert not second.failed and second.changed_count == 0, str(second)
    # the same families into a web root (directories site layout), over the host's connection
    web = dict(extra, mirror_target="webroot", mirror_root=sites.docroot("web.example.test"),
               mirror_site_layout="directories", mirror_base_url="https://web.example.test",
               mirror_images=[dict(i, dest=i["dest"].replace("mirror.", "web.")) for i in extra["mirror_images"]])
    for name in ("mirror_bucket", "mirror_prefix", "mirror_acl", "mirror_aws"):
        del web[name]
    first = sites.run_playbook(str(wrapper), extra_vars=web)
    assert not first.failed and first.changed_count > 0, str(first)
    assert os.path.isfile(os.path.join(sites.docroot("web.example.test"), "oci-image", "multi", "index.json"))
    second = sites.run_playbook(str(wrapper), extra_vars=web)
    assert not second.failed and second.changed_count == 0, str(second)

    dest = os.path.join(public_tmp_path, "from-mirror")
    pulled = sites.run_playbook(play([
        pull_task("from mirror", ca, name=["mirror.example.test/app#1.0", "mirror.example.test/app#2.0",
                                           "mirror.example.test/multi#1.0"], dest=dest, tag="{path}-{fragment}"),
        pull_task("from web", ca, name=["web.example.test/app#1.0", "web.example.test/app#2.0",
                                        "web.example.test/multi#1.0"], dest=dest + "-web", tag=["a1", "a2", "m1"])]))
    expected = [tag_digest(family, "1.0"), tag_digest(family, "2.0"), tag_digest(multi, "1.0")]
    assert [i["digest"] for i in ok(pulled, "from web")["images"]] == expected
    res = ok(pulled, "from mirror")
    assert [i["digest"] for i in res["images"]] == expected
    assert [e["annotations"][REF_NAME] for e in read_index(dest)["manifests"]] == ["app-1.0", "app-2.0", "multi-1.0"]
    for tag, src, src_tag in (("app-2.0", family, "2.0"), ("multi-1.0", multi, "1.0")):
        assert json.loads(run(["skopeo", "inspect", "--raw", "oci:%s:%s" % (dest, tag)])) == \
            read_json_blob(src, tag_digest(src, src_tag))
    keys = [o["Key"] for o in rgw.client().list_objects_v2(Bucket=rgw_bucket, Prefix="site/oci-index/")["Contents"]]
    assert sorted(keys) == ["site/oci-index/app", "site/oci-index/multi"]
    assert not os.listdir(sites.docroot("mirror.example.test"))     # all of it came from the bucket


def test_pull_on_a_managed_host_over_ssh(nginx_factory, sshd, ca, layouts, public_tmp_path, run_playbook):
    """The module on the managed host: its own Python (Debian's), its user, a dest it owns."""
    from rig.ansible import local_inventory
    from rig.published import site_config
    ngx = nginx_factory(servers=["server {\n    listen 127.0.0.1:@TLS_PORT@ ssl;\n    ssl_certificate @CERT@;\n"
                                 "    ssl_certificate_key @KEY@;\n    %s\n}" % site_config(public_tmp_path)])
    base_url = "https://127.0.0.1:%d" % ngx.tls_port
    publish = run_playbook(play([{"name": "publish", "oci.discovery.publish_layout": {
        "src": layouts.family, "name": "127.0.0.1/app", "root": public_tmp_path, "base_url": base_url,
        "tags": ["1.0"]}}, {"name": "well-known", "oci.discovery.ref_engines": {
            "root": public_tmp_path, "base_url": base_url}}]), inventory=local_inventory())
    assert not publish.failed, str(publish)
    dest = os.path.join(sshd.make_webroot("pulled"), "images")
    task = pull_task("pull", ca, name="127.0.0.1/app#1.0", dest=dest, port=ngx.tls_port)
    result = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": [task]}], inventory=sshd.inventory())
    res = ok(result, "pull")
    assert res["changed"] and res["images"][0]["digest"] == tag_digest(layouts.family, "1.0")
    assert os.stat(os.path.join(dest, "index.json")).st_uid == sshd.uid
    assert json.loads(run(["skopeo", "inspect", "oci:%s:1.0" % dest]))["Digest"] == tag_digest(layouts.family, "1.0")
