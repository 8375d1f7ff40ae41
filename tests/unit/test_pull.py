# -*- coding: utf-8 -*-
"""_pull (and _urls.fetch_into) with the real fetcher against real HTTP(S) servers in threads, into real
layout directories: whole DAGs, platforms, re-runs, hostile servers, limits, bad destinations."""
import hashlib
import json
import os
import tracemalloc

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._discovery import Client
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._pull import (
    Pull, PullError, check_dest, image_results, requests_of)
from ansible_collections.oci.discovery.plugins.module_utils._stores import WebRootStore
from ansible_collections.oci.discovery.plugins.module_utils._urls import UrlFetcher, fetch_into

from discovery_site import Reply, drip, huge
from layout_builder import MT_LAYER, LayoutBuilder

WK = "/.well-known/oci-host-ref-engines"
CAS = {"protocol": "oci-cas-template-v1", "uri": "/oci-cas/{algorithm}/{encoded:2}/{encoded}"}
REF_NAME = "org.opencontainers.image.ref.name"
MiB = 1024 * 1024


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cas_path(digest):
    hexa = digest.split(":")[1]
    return "/oci-cas/sha256/%s/%s" % (hexa[:2], hexa)


class Source(object):
    """A layout built by hand and served as a cas_bucket site on example.test by the thread site."""

    def __init__(self, site, root):
        self.site = site
        self.builder = LayoutBuilder(root)
        self.single = self.builder.image("1.0", layers=[b"first layer", b"second layer"])
        self.multi = self.builder.multi_platform("multi")
        self.builder.save()
        self.serve()

    def serve(self, cas=(CAS,)):
        site = self.site
        site.doc("example.test", WK, {"refEngines": [{"protocol": "oci-index-template-v1",
                                                      "uri": "/oci-index/{+path}"}], "casEngines": list(cas)})
        site.doc("example.test", "/oci-index/app", self.builder.index)
        blobs = os.path.join(self.builder.root, "blobs", "sha256")
        for name in os.listdir(blobs):
            with open(os.path.join(blobs, name), "rb") as handle:
                site.blob("example.test", cas_path("sha256:" + name), handle.read())

    def blob(self, desc):
        with open(self.builder.path(desc), "rb") as handle:
            return handle.read()

    def manifest_of(self, desc):
        return json.loads(self.blob(desc))


def run(tls, dest, names, platform="all", tags=None, commit=True, environ=None, headers=None, **kwargs):
    client = Client(UrlFetcher(ca_path=tls and tls.ca_path, timeout=5), xdg=environ is not None, environ=environ,
                    headers=headers)
    store = WebRootStore(str(dest))
    try:
        pull = Pull(client, store, lambda *a: fetch_into(client.fetcher, *a), lambda: WebRootStore(str(dest)),
                    **kwargs)
        pull.plan(requests_of(names, platform, tags))
        if commit and pull.changed:
            pull.commit()
        return pull
    finally:
        store.close()


def cas_requests(site):
    return [path for scheme, host, path, accept in site.requests("https") if path.startswith("/oci-cas/")]


def layout_files(dest):
    """{relative path: bytes} of the layout, the private state directory left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(dest)):
        if ".oci-discovery" in dirnames:
            dirnames.remove(".oci-discovery")
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, str(dest))] = handle.read()
    return found


def staged_files(dest):
    found = []
    for dirpath, dummy, filenames in os.walk(os.path.join(str(dest), ".oci-discovery", "tmp")):
        found += filenames
    return found


@pytest.fixture
def source(site, tmp_path):
    return Source(site, tmp_path / "source")


def test_pull_whole_dags_into_one_layout_then_rerun_fetches_no_blob(source, site, tls, tmp_path):
    dest = tmp_path / "new" / "images"
    pull = run(tls, dest, ["example.test/app#1.0", "example.test/app#multi"], tags="app-{fragment}")
    layout = Layout(str(dest))
    assert layout.tags() == ["app-1.0", "app-multi"]
    assert layout.descriptors("app-1.0")[0]["digest"] == source.single["digest"]
    assert layout.descriptors("app-multi")[0]["digest"] == source.multi["digest"]
    assert "casEngines" not in layout.descriptors("app-1.0")[0]
    # 1.0: manifest + config + 2 layers; multi: index + 2 x (manifest + config + layer), amd64's config shared
    assert layout.validate() == Layout(source.builder.root).validate() == {"blobs": 10, "bytes": pull.bytes_fetched}
    assert pull.fetched == 10 and pull.present == 0 and len(cas_requests(site)) == 10
    results = image_results(pull)
    assert [r["digest"] for r in results] == [source.single["digest"], source.multi["digest"]]
    assert results[1]["media_type"] == "application/vnd.oci.image.index.v1+json" and results[1]["blobs"] == 6
    assert staged_files(dest) == []

    before = layout_files(dest)
    again = run(tls, dest, ["example.test/app#1.0", "example.test/app#multi"], tags="app-{fragment}")
    assert not again.changed and again.fetched == 0 and again.present == 10
    assert len(cas_requests(site)) == 10          # no CAS request at all the second time
    assert layout_files(dest) == before


def test_one_platform_records_its_manifest_and_keeps_other_tags(source, site, tls, tmp_path):
    dest = tmp_path / "dest"
    run(tls, dest, ["example.test/app#1.0"])
    pull = run(tls, dest, [{"name": "example.test/app#multi", "platform": "linux/aarch64", "tag": "arm"}])
    arm = [d for d in json.loads(source.blob(source.multi))["manifests"] if d["platform"]["architecture"] == "arm64"]
    layout = Layout(str(dest))
    assert layout.tags() == ["1.0", "arm"]
    assert layout.descriptors("arm")[0]["digest"] == arm[0]["digest"]
    assert layout.descriptors("arm")[0]["platform"] == {"os": "linux", "architecture": "arm64"}
    assert pull.fetched == 3 and layout.validate()["blobs"] == 7
    # the index that chose the platform was verified but is not a blob of the layout
    assert not os.path.exists(os.path.join(str(dest), "blobs", "sha256", source.multi["digest"][7:]))


def test_check_mode_counts_and_writes_nothing(source, site, tls, tmp_path):
    dest = tmp_path / "dest"
    pull = run(tls, dest, ["example.test/app#1.0"], commit=False)
    manifest = source.manifest_of(source.single)
    sizes = [len(source.blob(source.single))] + [d["size"] for d in [manifest["config"]] + manifest["layers"]]
    assert pull.changed and pull.would_fetch == (4, sum(sizes))
    assert not dest.exists()
    assert "1.0 %s" % source.single["digest"] in pull.diff()["after"] and pull.diff()["before"] == ""


def corrupt(data):
    return bytes([data[0] ^ 1]) + data[1:]


def drop_mid_body(data):
    def stream(wfile):
        wfile.write(data[:len(data) // 2])
        wfile.flush()
    return Reply(200, {"Content-Length": str(len(data))}, stream=stream)


def longer_unannounced(data):
    def stream(wfile):
        wfile.write(data + b"x" * 100)
    return Reply(200, {}, stream=stream)


@pytest.mark.parametrize("kind,reply,reason", [
    ("corrupted", lambda d: Reply(200, {}, corrupt(d)), "digest mismatch"),
    ("truncated", lambda d: Reply(200, {}, d[:-3]), "size mismatch: expected %d bytes, got %d"),
    ("longer", lambda d: Reply(200, {}, d + b"!"), "size mismatch: expected %d bytes, got more"),
    ("longer without Content-Length", longer_unannounced, "size mismatch: expected %d bytes, got more"),
    ("dropped", drop_mid_body, "the server closed the connection mid-body"),
])
def test_hostile_layer_fails_naming_blob_and_url_and_a_rerun_completes(source, site, tls, tmp_path, kind, reply,
                                                                       reason):
    dest = tmp_path / "dest"
    run(tls, dest, ["example.test/app#multi"])
    before = layout_files(dest)
    layer = source.manifest_of(source.single)["layers"][1]
    data = source.blob(layer)
    site.route("example.test", cas_path(layer["digest"]), reply(data))
    with pytest.raises(PullError) as failed:
        run(tls, dest, ["example.test/app#1.0"])
    message = str(failed.value)
    assert "cannot fetch blob %s (%s, %d bytes)" % (layer["digest"], MT_LAYER, len(data)) in message
    assert "https://example.test%s: " % cas_path(layer["digest"]) in message
    assert (reason % (len(data), len(data) - 3)[:reason.count("%d")]) in message, message
    after = layout_files(dest)
    assert after["index.json"] == before["index.json"]
    for path, content in after.items():       # at most complete, verified blobs were added
        assert before.get(path, content) == content
        if path not in before:
            assert path.startswith("blobs/sha256/") and sha(content) == "sha256:" + os.path.basename(path)
    assert ("blobs/sha256/" + layer["digest"][7:]) not in after
    assert staged_files(dest) == []
    source.serve()
    run(tls, dest, ["example.test/app#1.0"])
    assert Layout(str(dest)).validate(["1.0"])["blobs"] == 4


def test_manifest_media_type_differs_from_descriptor(source, site, tls, tmp_path):
    entry = dict(source.builder.index["manifests"][0], mediaType="application/vnd.docker.distribution.manifest.v2+json")
    site.doc("example.test", "/oci-index/app", {"schemaVersion": 2, "manifests": [entry]})
    with pytest.raises(PullError) as failed:
        run(tls, tmp_path / "dest", ["example.test/app#1.0"])
    assert "manifest %s (from https://example.test%s): its mediaType 'application/vnd.oci.image.manifest.v1+json'" \
        " differs from its descriptor's 'application/vnd.docker.distribution.manifest.v2+json'" % (
            source.single["digest"], cas_path(source.single["digest"])) in str(failed.value)
    assert not (tmp_path / "dest").exists()


def test_second_cas_engine_serves_what_the_first_lacks(source, site, tls, tmp_path):
    source.serve(cas=({"protocol": "oci-cas-template-v1", "uri": "/missing/{encoded}"}, CAS))
    pull = run(tls, tmp_path / "dest", ["example.test/app#1.0"])
    assert pull.fetched == 4 and Layout(str(tmp_path / "dest")).validate()["blobs"] == 4


def test_limit_on_the_whole_pull_refuses_before_fetching_layers(source, site, tls, tmp_path):
    with pytest.raises(PullError) as failed:
        run(tls, tmp_path / "dest", ["example.test/app#1.0"], max_bytes=100)
    assert "more than the limit of 100" in str(failed.value)
    assert not (tmp_path / "dest").exists()


def test_layer_streams_in_bounded_memory(source, site, tls, tmp_path):
    size = 48 * MiB
    digest = hashlib.sha256()
    for dummy in range(size // 65536):
        digest.update(b" " * 65536)
    layer = {"mediaType": MT_LAYER, "digest": "sha256:" + digest.hexdigest(), "size": size}
    manifest = source.builder.json_blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                         "config": source.manifest_of(source.single)["config"], "layers": [layer]},
                                        "application/vnd.oci.image.manifest.v1+json")
    source.builder.tag("big", manifest)
    source.serve()
    site.route("example.test", cas_path(layer["digest"]), huge(size, "application/octet-stream"))
    tracemalloc.start()
    try:
        run(tls, tmp_path / "dest", ["example.test/app#big"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert os.path.getsize(os.path.join(str(tmp_path / "dest"), "blobs", "sha256", layer["digest"][7:])) == size
    assert peak < 8 * MiB, peak


def test_bad_destinations_are_refused(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(str(tmp_path / "real"), str(tmp_path / "link"))
    with pytest.raises(PullError, match="is a symbolic link"):
        check_dest(str(tmp_path / "link"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(PullError, match=r"not an OCI image layout \(it holds notes.txt\)"):
        check_dest(str(tmp_path / "other"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(PullError, match="is not a directory"):
        check_dest(str(tmp_path / "file"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{}")
    with pytest.raises(PullError, match="not a valid OCI image layout"):
        check_dest(str(tmp_path / "broken"))
    (tmp_path / "partial" / "blobs").mkdir(parents=True)
    assert check_dest(str(tmp_path / "partial")) == "new"
    assert check_dest(str(tmp_path / "missing")) == "new"


def test_requests_tags_and_platforms():
    first, second = requests_of(["example.test/app#1.0", {"name": "example.test/team/db#15", "tag": "db"}],
                                "linux/arm64", "{path}-{fragment}")
    assert first["tag"] == "app-1.0" and second["tag"] == "db"
    assert first["platform"] == {"os": "linux", "architecture": "arm64"}
    assert [r["tag"] for r in requests_of(["example.test/a#1", "example.test/b#1"], tags=["a", "b"])] == ["a", "b"]
    assert requests_of(["example.test/a#1"])[0]["platform"] is None
    with pytest.raises(PullError, match="tag '1' would be recorded for example.test/a#1 and for example.test/b#1"):
        requests_of(["example.test/a#1", "example.test/b#1"])
    with pytest.raises(PullError, match="has no fragment"):
        requests_of(["example.test/a"])
    with pytest.raises(PullError, match=r"unknown field \{tag\}"):
        requests_of(["example.test/a#1"], tags="{tag}")
    with pytest.raises(PullError, match="a list of 1 tags for 2 names"):
        requests_of(["example.test/a#1", "example.test/b#1"], tags=["x"])


def test_a_remote_cas_engine_cannot_make_the_pull_read_local_files(source, site, tls, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(source.blob(source.single))    # even a file holding the right bytes
    source.serve(cas=({"protocol": "oci-cas-template-v1", "uri": "file://%s{?digest}" % secret},))
    with pytest.raises(PullError) as failed:
        run(tls, tmp_path / "dest", ["example.test/app#1.0"])
    assert "file://%s?digest=" % secret in str(failed.value) and "not an allowed protocol" in str(failed.value)
    assert not (tmp_path / "dest").exists()


def test_option_values_are_checked(tls, tmp_path):
    with pytest.raises(PullError, match="parallel: must be positive, got 0"):
        run(tls, tmp_path / "dest", ["example.test/app#1.0"], parallel=0)


def test_a_local_xdg_configuration_may_name_a_local_layout(source, tmp_path):
    """XDG files are trusted: their file:// engines read a layout on disk (an air-gapped copy)."""
    layout = source.builder.root
    config = tmp_path / "xdg" / "oci-discovery" / "ref-engine-discovery.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"offline\\.test/.*": {
        "refEngines": [{"protocol": "oci-index-template-v1", "uri": "file://%s/index.json" % layout}],
        "casEngines": [{"protocol": "oci-cas-template-v1", "uri": "file://%s/blobs/{algorithm}/{encoded}" % layout}]}}))
    pull = run(None, tmp_path / "dest", ["offline.test/app#multi"],
               environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_DIRS": str(tmp_path / "none")})
    assert pull.fetched == 7 and Layout(str(tmp_path / "dest")).descriptors("multi")[0]["digest"] == source.multi["digest"]


def test_a_layer_that_drips_fails_at_the_blob_deadline(source, site, tls, tmp_path):
    layer = source.manifest_of(source.single)["layers"][0]
    site.route("example.test", cas_path(layer["digest"]), drip("application/octet-stream", layer["size"], 0.3))
    with pytest.raises(PullError) as failed:
        run(tls, tmp_path / "dest", ["example.test/app#1.0"], blob_timeout=1)
    assert "https://example.test%s: no complete response within the 1 s timeout" % cas_path(layer["digest"]) \
        in str(failed.value)
    assert not (tmp_path / "dest" / "index.json").exists()


def test_the_callers_headers_go_to_the_names_host_only(source, site, tls, tmp_path):
    """A CAS engine on another host gets the blobs' requests, never the caller's credentials."""
    seen = {}

    def recording(host, data):
        def reply(handler):
            seen.setdefault(host, []).append(handler.headers.get("Authorization"))
            return Reply(200, {"Content-Type": "application/octet-stream"}, data)
        return reply
    manifest = source.manifest_of(source.single)
    for desc in [manifest["config"]] + manifest["layers"]:
        site.route("other-site.test", cas_path(desc["digest"]), recording("other-site.test", source.blob(desc)))
    source.serve(cas=({"protocol": "oci-cas-template-v1", "uri": "/missing/{encoded}"},
                      {"protocol": "oci-cas-template-v1", "uri": "https://other-site.test/oci-cas/{algorithm}/"
                                                                 "{encoded:2}/{encoded}"}))
    site.route("example.test", cas_path(source.single["digest"]),
               recording("example.test", source.blob(source.single)))
    site.route("example.test", "/missing/" + source.single["digest"][7:],
               recording("example.test", source.blob(source.single)))
    run(tls, tmp_path / "dest", ["example.test/app#1.0"], headers={"Authorization": "Bearer s3cret"})
    assert seen["example.test"] == ["Bearer s3cret"]            # the manifest, from the name's host
    assert seen["other-site.test"] == [None, None, None]         # config and layers, from another host
