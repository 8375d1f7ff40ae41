# -*- coding: utf-8 -*-
"""The test layouts are real: skopeo and umoci read them, the collection's Layout validates
them, and every broken kind fails in exactly the way it claims (other tags stay valid)."""
import json
import os
import stat
import subprocess

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout, LayoutError
from rig import layouts as rl
# The fixtures (until tests/conftest.py registers fixtures_layouts as a plugin):
from fixtures_layouts import broken_layout, layout_copy, layouts  # noqa: F401  pylint: disable=unused-import


def skopeo_inspect(path, tag, *options):
    proc = subprocess.run(["skopeo", "inspect"] + list(options) + ["oci:%s:%s" % (path, tag)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, "skopeo inspect %s oci:%s:%s: %s" % (
        " ".join(options), path, tag, proc.stderr.decode())
    return json.loads(proc.stdout.decode())


def umoci(*argv):
    proc = subprocess.run(("umoci",) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, "umoci %s: %s" % (" ".join(argv), proc.stderr.decode())
    return proc.stdout.decode()


def manifest_tags(info):
    return [t for t in info["tag_list"] if info["tags"][t][0]["mediaType"] == rl.MT_MANIFEST]


def test_expected_tags(layouts):
    assert layouts.info["family"]["tag_list"] == ["1.0", "1.1", "2.0", "2.0-rc/1"]
    assert layouts.info["multiplatform"]["tag_list"] == [
        "1.0-linux-amd64", "1.0-linux-arm64-v8", "1.0-linux-ppc64le", "1.0", "nested"]
    assert layouts.info["multiplatform"]["platforms"]["1.0"] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "ppc64le"}]
    big = layouts.info["big"]
    assert big["blobs"] == 200
    assert big["largest_blob"]["size"] >= 30 * 1024 * 1024


@pytest.mark.parametrize("name", rl.TEST_LAYOUTS)
def test_skopeo_and_umoci_read_every_manifest_tag(layouts, name):
    info = layouts.info[name]
    path = layouts.path(name)
    assert umoci("ls", "--layout", path).split("\n")[:-1] == info["tag_list"]
    for tag in manifest_tags(info):
        inspected = skopeo_inspect(path, tag)
        assert inspected["Digest"] == info["tags"][tag][0]["digest"]
        assert "LAYER" in umoci("stat", "--image", "%s:%s" % (path, tag))


def test_skopeo_selects_each_platform_of_the_index(layouts):
    path, info = layouts.multiplatform, layouts.info["multiplatform"]
    index = rl.read_json_blob(path, info["tags"]["1.0"][0]["digest"])
    for tag in ("1.0", "nested"):       # nested: an index whose entry is that index
        raw = skopeo_inspect(path, tag, "--raw")
        assert raw["mediaType"] == rl.MT_INDEX
        for entry in index["manifests"]:
            p = entry["platform"]
            options = ["--override-os", p["os"], "--override-arch", p["architecture"]]
            if "variant" in p:
                options += ["--override-variant", p["variant"]]
            chosen = skopeo_inspect(path, tag, *options)
            assert chosen["Architecture"] == p["architecture"]
            platform_tag = "1.0-" + "-".join(v for v in (p["os"], p["architecture"], p.get("variant")) if v)
            assert info["tags"][platform_tag][0]["digest"] == entry["digest"]
    nested = rl.read_json_blob(path, info["tags"]["nested"][0]["digest"])
    assert [(m["mediaType"], m["digest"]) for m in nested["manifests"]] == [
        (rl.MT_INDEX, info["tags"]["1.0"][0]["digest"])]


def test_blobs_are_shared(layouts):
    family = layouts.family
    layer_sets = [set(l["digest"] for l in rl.read_json_blob(family, e[0]["digest"])["layers"])
                  for e in layouts.info["family"]["tags"].values()]
    assert set.intersection(*layer_sets)           # the base layer is in every tag
    multi, tags = layouts.multiplatform, layouts.info["multiplatform"]["tags"]
    layer_sets = [set(l["digest"] for l in rl.read_json_blob(multi, tags[t][0]["digest"])["layers"])
                  for t in ("1.0-linux-amd64", "1.0-linux-arm64-v8", "1.0-linux-ppc64le")]
    assert len(set.intersection(*layer_sets)) == 1  # the noarch layer


@pytest.mark.parametrize("name", rl.TEST_LAYOUTS)
def test_world_readable(layouts, name):
    for dirpath, dirnames, filenames in os.walk(layouts.path(name)):
        for entry in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            mode = os.stat(entry).st_mode
            assert mode & stat.S_IROTH, entry
            if stat.S_ISDIR(mode):
                assert mode & stat.S_IXOTH, entry


@pytest.mark.parametrize("name", rl.TEST_LAYOUTS)
def test_layout_validates(layouts, name):
    info = layouts.info[name]
    layout = Layout(layouts.path(name))
    assert layout.tags() == info["tag_list"]
    assert layout.validate() == {"blobs": info["blobs"], "bytes": info["bytes"]}


def test_missing_tag(layouts):
    with pytest.raises(LayoutError) as err:
        Layout(layouts.family).descriptors(rl.MISSING_TAG)
    assert rl.MISSING_TAG in str(err.value)


@pytest.mark.parametrize("base", ["family", "multiplatform"])
@pytest.mark.parametrize("kind", sorted(rl.BROKEN_KINDS))
def test_broken_kinds(layouts, broken_layout, kind, base):  # noqa: F811
    broken = broken_layout(kind, base=base)
    with pytest.raises(LayoutError) as err:
        Layout(broken["path"]).validate()
    assert broken["expect"] in str(err.value), broken["what"]
    if broken["scope"] == "layout":
        return
    # Exactly one thing is broken: the other tags are intact.
    all_tags = rl.describe(layouts.path(base))["tag_list"] + [rl.SELF_TAG]
    assert broken["tags_broken"]
    for tag in all_tags:
        if tag in broken["tags_broken"]:
            with pytest.raises(LayoutError) as err:
                Layout(broken["path"]).validate([tag])
            assert broken["expect"] in str(err.value), (tag, broken["what"])
        elif tag != rl.SELF_TAG:
            Layout(broken["path"]).validate([tag])


def test_layout_copy_is_private(layouts, layout_copy):  # noqa: F811
    copy = layout_copy("family")
    assert copy != layouts.family
    os.unlink(os.path.join(copy, "index.json"))
    assert os.path.exists(os.path.join(layouts.family, "index.json"))


EXAMPLES = os.path.join(rl.REPO, "examples", "layouts")


@pytest.mark.parametrize("name", rl.EXAMPLE_LAYOUTS)
def test_example_layouts_are_valid_and_up_to_date(tmp_path, name):
    committed = os.path.join(EXAMPLES, name)
    info = rl.describe(committed)
    expected_tags = {"app": ["1.0", "2.0"], "multiarch": ["1.0"]}[name]
    assert info["tag_list"] == expected_tags
    assert Layout(committed).validate() == {"blobs": info["blobs"], "bytes": info["bytes"]}
    for tag in expected_tags:
        skopeo_inspect(committed, tag)
    if name == "multiarch":
        assert info["platforms"]["1.0"] == [
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"}]
        chosen = skopeo_inspect(committed, "1.0", "--override-arch", "arm64", "--override-variant", "v8")
        assert chosen["Architecture"] == "arm64"
    # scripts/make-example-layouts reproduces exactly what is committed
    fresh = rl.build(name, str(tmp_path / name))
    assert rl.describe(fresh)["files"] == info["files"], "run scripts/make-example-layouts"
    for rel in ("index.json", "oci-layout"):
        with open(os.path.join(fresh, rel), "rb") as a, open(os.path.join(committed, rel), "rb") as b:
            assert a.read() == b.read(), "%s differs: run scripts/make-example-layouts" % rel
    assert sum(info["files"].values()) < 100 * 1024
