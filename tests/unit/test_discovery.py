# -*- coding: utf-8 -*-
"""The discovery client (_discovery.Client) with the real fetcher against real HTTP(S) servers in threads.

Host names need no DNS: every request goes through the site's proxy (see discovery_site.py).
"""
import hashlib
import json
import os

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._discovery import (
    Client, DiscoveryError, NotFoundError, compile_ere)
from ansible_collections.oci.discovery.plugins.module_utils._fetch import FetchError, parse_origin, read_local_file
from ansible_collections.oci.discovery.plugins.module_utils._platforms import (
    PlatformError, parse_platform, platform_matches)
from ansible_collections.oci.discovery.plugins.module_utils import _resolve
from ansible_collections.oci.discovery.plugins.module_utils._urls import UrlFetcher

from discovery_site import IDX, MANIFEST, REF, Reply, doc_reply, redirect, write_json

from rig.spec import EXAMPLES
if not os.path.isdir(EXAMPLES):  # CI checkout: the examples are vendored next to the tests
    EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conformance", "examples")
WK = "/.well-known/oci-host-ref-engines"
E9 = "sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"


def example(name):
    with open(os.path.join(EXAMPLES, name), "rb") as handle:
        return handle.read()


def client(tls, **kwargs):
    fetch_kwargs = {"ca_path": tls.ca_path, "timeout": kwargs.pop("timeout", 5),
                    "protocols": kwargs.get("protocols", ("https",))}
    kwargs.setdefault("xdg", False)
    return Client(UrlFetcher(**fetch_kwargs), **kwargs)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(data, media_type=MANIFEST, **extra):
    d = {"mediaType": media_type, "digest": sha(data), "size": len(data)}
    d.update(extra)
    return d


def tagged(descriptor, tag, **extra):
    d = dict(descriptor, annotations={"org.opencontainers.image.ref.name": tag})
    d.update(extra)
    return d


def index_doc(*entries):
    return {"schemaVersion": 2, "mediaType": IDX, "manifests": list(entries)}


def manifest_bytes(label):
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha(label.encode()), "size": len(label)},
                       "layers": []}, sort_keys=True).encode()


CAS = {"protocol": "oci-cas-template-v1", "uri": "/oci-cas/{algorithm}/{encoded:2}/{encoded}"}


def serve_blob(site, host, data, content_type="application/octet-stream"):
    digest = sha(data)
    algorithm, encoded = digest.split(":")
    site.blob(host, "/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded), data, content_type)


def wellknown(template, cas=None):
    obj = {"refEngines": [{"protocol": "oci-index-template-v1", "uri": template}]}
    if cas:
        obj["casEngines"] = cas
    return obj


# ------------------------------------------------------------------ the specs' own examples

def test_spec_example_cas_bucket(site, tls):
    site.doc("example.test", WK, example("well-known-cas-bucket.json"))
    site.doc("example.test", "/oci-index/app", example("oci-index-app.json"))
    c = client(tls)
    roots = c.merkle_roots("example.test/app#1.0")
    entry = json.loads(example("oci-index-app.json"))["manifests"][0]
    assert roots == [{"mediaType": "application/vnd.oci.descriptor.v1+json", "root": entry,
                      "uri": "https://example.test/oci-index/app"}]
    (result,) = c.resolve("example.test/app#1.0")
    assert result["digest"] == E9 and result["mediaType"] == MANIFEST and result["size"] == 799
    assert result["verified"] is False


def test_spec_example_layouts_with_name_variables_in_cas_template(site, tls):
    # The well-known file's CAS template uses {path}: only works with DISCOVERY.md section 4's decision.
    wk = json.loads(example("well-known-layouts.json"))
    wk["casEngines"][0]["uri"] = wk["casEngines"][0]["uri"].replace("example.com", "example.test")
    site.doc("example.test", WK, wk)
    index = json.loads(example("oci-index-app.json"))
    del index["manifests"][0]["casEngines"]
    site.doc("example.test", "/oci-image/app/index.json", index)
    site.blob("example.test", "/oci-image/app/blobs/sha256/" + E9.split(":")[1], example("manifest-e9770a03.json"))
    c = client(tls)
    (result,) = c.resolve("example.test/app#1.0", verify=True)
    assert result["verified"] is True
    assert result["root"]["root"]["casEngines"] == wk["casEngines"]  # merged into the root
    assert result["root"]["uri"] == "https://example.test/oci-image/app/index.json"


# ------------------------------------------------------------------ discovery

def test_ancestor_walk_three_levels_and_relative_template(site, tls):
    site.add_host("a.b.example.test")       # exists, no well-known: 404
    # b.example.test does not exist at all (the proxy answers 502)
    site.doc("example.test", WK, wellknown("/oci-index/{+path}"))
    site.doc("example.test", "/oci-index/app", index_doc(tagged(desc(b"m"), "1.0")))
    c = client(tls)
    (result,) = c.resolve("a.b.example.test/app#1.0")
    assert result["digest"] == sha(b"m")
    assert result["root"]["uri"] == "https://example.test/oci-index/app"
    assert c.requests == ["https://a.b.example.test" + WK, "https://b.example.test" + WK,
                          "https://example.test" + WK, "https://example.test/oci-index/app"]


def test_walk_stops_at_first_host_that_yields_roots(site, tls):
    site.doc("a.b.example.test", WK, wellknown("/i/{+path}"))
    site.doc("a.b.example.test", "/i/app", index_doc(tagged(desc(b"near"), "1.0")))
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"far"), "1.0")))
    c = client(tls)
    assert [r["digest"] for r in c.resolve("a.b.example.test/app#1.0")] == [sha(b"near")]
    assert "https://example.test" + WK not in c.requests
    # a tag only the ancestor has: the walk goes on
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"far"), "2.0")))
    assert [r["digest"] for r in client(tls).resolve("a.b.example.test/app#2.0")] == [sha(b"far")]


def test_ip_and_single_label_hosts_have_no_ancestors(site, tls):
    c = client(tls)
    with pytest.raises(DiscoveryError):
        c.resolve("127.0.0.1/app")
    assert c.requests == ["https://127.0.0.1" + WK]


def test_https_only_by_default_and_http_opt_in(site, tls):
    site.doc("example.test", WK, wellknown("/oci-index/{+path}"), scheme="http")
    site.doc("example.test", "/oci-index/app", index_doc(tagged(desc(b"m"), "1.0")), scheme="http")
    site.add_host("example.test")
    with pytest.raises(NotFoundError) as info:
        client(tls).resolve("example.test/app#1.0")
    assert "http://" not in str(info.value)
    c = client(tls, protocols=("https", "http"))
    (result,) = c.resolve("example.test/app#1.0")
    assert result["root"]["uri"] == "http://example.test/oci-index/app"
    assert c.requests == ["https://example.test" + WK, "http://example.test" + WK,
                          "http://example.test/oci-index/app"]


def test_host_that_answered_over_https_is_not_asked_over_http(site, tls):
    site.doc("example.test", WK, wellknown("/oci-index/{+path}"), scheme="https")
    site.doc("example.test", "/oci-index/app", index_doc(tagged(desc(b"m"), "2.0")))
    c = client(tls, protocols=("https", "http"))
    with pytest.raises(NotFoundError):
        c.resolve("example.test/app#1.0")
    assert "http://example.test" + WK not in c.requests


def test_index_template_pointing_at_http_refused_by_default(site, tls):
    site.doc("example.test", WK, wellknown("http://example.test/oci-index/{+path}"))
    with pytest.raises(DiscoveryError, match=r"http://example.test/oci-index/app: refused: http is not an allowed"):
        client(tls).resolve("example.test/app#1.0")


def test_port_is_appended_to_every_well_known_host_not_to_host_variable(site, tls):
    site.add_host("a.example.test")
    site.doc("example.test", WK, wellknown("https://{host}/oci-index/{+path}"))
    site.doc("a.example.test", "/oci-index/app", index_doc(tagged(desc(b"m"), "1.0")))
    c = client(tls, port=8443)
    c.resolve("a.example.test/app#1.0")
    assert c.requests == ["https://a.example.test:8443" + WK, "https://example.test:8443" + WK,
                          "https://a.example.test/oci-index/app"]


def test_redirected_well_known_resolves_relative_templates_against_final_uri(site, tls):
    site.route("example.test", WK, redirect("https://other-site.test/config/engines.json", 301))
    site.doc("other-site.test", "/config/engines.json", wellknown("indexes/{+path}"), content_type=REF)
    site.doc("other-site.test", "/config/indexes/team/app", index_doc(tagged(desc(b"m"), "1.0")))
    (result,) = client(tls).resolve("example.test/team/app#1.0")
    assert result["root"]["uri"] == "https://other-site.test/config/indexes/team/app"


def test_redirected_index_root_uri_is_final_uri(site, tls):
    site.doc("example.test", WK, wellknown("/oci-index/{+path}"))
    site.route("example.test", "/oci-index/app", redirect("/v2/app.json"))
    site.doc("example.test", "/v2/app.json", index_doc(tagged(desc(b"m"), "1.0", casEngines=[CAS])))
    serve_blob(site, "example.test", b"m")
    (result,) = client(tls).resolve("example.test/app#1.0", verify=True)
    assert result["root"]["uri"] == "https://example.test/v2/app.json"
    assert result["verified"]


def test_nested_path_simple_and_reserved_expansion(site, tls):
    site.doc("example.test", WK, {"refEngines": [
        {"protocol": "oci-index-template-v1", "uri": "/simple/{path}"},
    ]})
    site.doc("example.test", "/simple/team%2Fapp", index_doc(tagged(desc(b"s"), "1.0")))
    (result,) = client(tls).resolve("example.test/team/app#1.0")
    assert result["root"]["uri"] == "https://example.test/simple/team%2Fapp"
    site.doc("example.test", WK, wellknown("/reserved/{+path}"))
    site.doc("example.test", "/reserved/team/app", index_doc(tagged(desc(b"r"), "1.0")))
    (result,) = client(tls).resolve("example.test/team/app#1.0")
    assert result["root"]["uri"] == "https://example.test/reserved/team/app"


def test_all_four_variables(site, tls):
    site.doc("example.test", WK, wellknown("/{host}/{+path}/{fragment}?n={name}"))
    site.doc("example.test", "/example.test/a/b/1.0%2Fx?n=example.test%2Fa%2Fb%231.0%2Fx",
             index_doc(tagged(desc(b"m"), "1.0/x")))
    (result,) = client(tls).resolve("example.test/a/b#1.0/x")
    assert result["digest"] == sha(b"m")


def test_empty_fragment_selects_every_entry_in_index_order(site, tls):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    entries = [tagged(desc(b"one"), "1.0"), desc(b"untagged"), tagged(desc(b"two"), "2.0")]
    site.doc("example.test", "/i/app", index_doc(*entries))
    results = client(tls).resolve("example.test/app")
    assert [r["digest"] for r in results] == [sha(b"one"), sha(b"untagged"), sha(b"two")]


def test_unknown_tag_is_not_found_and_lists_tags(site, tls):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"one"), "1.0"), tagged(desc(b"two"), "2.0")))
    with pytest.raises(NotFoundError) as info:
        client(tls).resolve("example.test/app#9.9")
    message = str(info.value)
    assert message.startswith("cannot resolve example.test/app#9.9: no matching image")
    assert "https://example.test/i/app: no entry tagged '9.9' (tags here: '1.0', '2.0')" in message


def test_several_entries_for_a_tag_all_returned_and_duplicates_dropped(site, tls):
    a, b = tagged(desc(b"a"), "1.0"), tagged(desc(b"b"), "1.0")
    site.doc("example.test", WK, {"refEngines": [
        {"protocol": "oci-index-template-v1", "uri": "/i/{+path}"},
        {"protocol": "oci-index-template-v1", "uri": "https://example.test/i/{+path}"},  # same index
        {"protocol": "some-future-protocol", "uri": "x"},                                # ignored
    ]})
    site.doc("example.test", "/i/app", index_doc(a, b))
    c = client(tls)
    assert [r["digest"] for r in c.resolve("example.test/app#1.0")] == [sha(b"a"), sha(b"b")]
    assert c.requests.count("https://example.test/i/app") == 1


def test_ref_engine_cas_engines_merged_into_each_root(site, tls):
    own = {"protocol": "oci-cas-template-v1", "uri": "https://example.test/own/{digest}"}
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS, own]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"a"), "1.0", casEngines=[own])))
    (root,) = client(tls).merkle_roots("example.test/app#1.0")
    # own first, then the ref-engines object's (relative ones made absolute), no duplicates
    assert root["root"]["casEngines"] == [
        own, {"protocol": "oci-cas-template-v1", "uri": "https://example.test/oci-cas/{algorithm}/{encoded:2}/{encoded}"}]


def test_no_index_template_engine(site, tls):
    site.doc("example.test", WK, {"refEngines": [{"protocol": "other-v9"}]})
    with pytest.raises(NotFoundError, match=r"no oci-index-template-v1 ref engine \(only: other-v9\)"):
        client(tls).resolve("example.test/app#1.0")


def test_invalid_name():
    with pytest.raises(DiscoveryError, match="invalid image name 'example.test:80/app'"):
        Client(fetcher=None).resolve("example.test:80/app")


# ------------------------------------------------------------------ XDG

def test_xdg_precedence_and_relative_uris(site, tls, tmp_path):
    home, dir1, dir2 = tmp_path / "home", tmp_path / "d1", tmp_path / "d2"
    index_dir = tmp_path / "indexes"
    write_json(str(index_dir / "app.json"), index_doc(tagged(desc(b"local"), "1.0")))
    write_json(str(home / "oci-discovery" / "ref-engine-discovery.json"), {
        # relative URI: resolved against this file's file:// URI
        r"example\.test/app#.*": wellknown("../../indexes/{+path}.json"),
    })
    write_json(str(dir1 / "oci-discovery" / "ref-engine-discovery.json"), {
        r"example\.test/app#.*": wellknown("https://example.test/loses/{+path}"),   # same key: home wins
        r"example\.test/app#2\.0": wellknown("https://example.test/longest/{+path}"),  # longer key first
        r"[^/]*example\.test/.*": wellknown("https://example.test/general/{+path}"),
    })
    write_json(str(dir2 / "oci-discovery" / "ref-engine-discovery.json"), {
        r"^$": wellknown("https://example.test/never/{+path}"),
    })
    environ = {"XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": "%s:relative/ignored:%s" % (dir1, dir2)}
    site.doc("example.test", "/longest/app", index_doc(tagged(desc(b"longest"), "2.0")))
    site.doc("example.test", "/general/other", index_doc(tagged(desc(b"general"), "1.0")))
    site.doc("example.test", WK, wellknown("/wk/{+path}"))
    c = client(tls, xdg=True, environ=environ)
    (r1,) = c.resolve("example.test/app#1.0")
    assert r1["digest"] == sha(b"local")
    assert r1["root"]["uri"] == "file://%s" % (index_dir / "app.json")
    (r2,) = c.resolve("example.test/app#2.0")
    assert r2["digest"] == sha(b"longest")
    (r3,) = c.resolve("sub.example.test/other#1.0")
    assert r3["digest"] == sha(b"general")
    # XDG answered: the well-known file was never fetched
    assert not [u for u in c.requests if u.endswith(WK)]
    assert not [u for u in c.requests if "/loses/" in u or "/never/" in u]


def test_xdg_keys_match_anywhere_as_regexec_unless_anchored(site, tls, tmp_path):
    # POSIX regexec (and both reference resolvers) search: an unanchored key matches part of the name.
    write_json(str(tmp_path / "oci-discovery" / "ref-engine-discovery.json"), {
        r"example\.test": wellknown("https://example.test/xdg/{+path}"),
        r"^other\.test/app$": wellknown("https://example.test/anchored/{+path}"),
    })
    site.doc("example.test", WK, wellknown("/wk/{+path}"))
    site.doc("example.test", "/wk/app", index_doc(tagged(desc(b"wk"), "1.0")))
    site.doc("example.test", "/xdg/app", index_doc(tagged(desc(b"xdg"), "1.0")))
    site.doc("example.test", "/anchored/app", index_doc(desc(b"anchored")))
    c = client(tls, xdg=True, environ={"XDG_CONFIG_HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "none")})
    assert c.resolve("example.test/app#1.0")[0]["digest"] == sha(b"xdg")
    assert c.resolve("other.test/app")[0]["digest"] == sha(b"anchored")
    with pytest.raises(DiscoveryError):   # '$' anchors: the key does not apply, other.test is not a host
        c.resolve("other.test/app#1.0")


def test_xdg_falls_back_to_well_known_when_it_yields_nothing(site, tls, tmp_path):
    write_json(str(tmp_path / "oci-discovery" / "ref-engine-discovery.json"), {
        r".*": wellknown("https://example.test/xdg/{+path}"),
    })
    site.doc("example.test", WK, wellknown("/wk/{+path}"))
    site.doc("example.test", "/wk/app", index_doc(tagged(desc(b"wk"), "1.0")))
    c = client(tls, xdg=True, environ={"XDG_CONFIG_HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "none")})
    assert c.resolve("example.test/app#1.0")[0]["digest"] == sha(b"wk")
    assert c.requests[0] == "https://example.test/xdg/app"


def test_xdg_bad_file_and_bad_regexp_are_reported(site, tls, tmp_path):
    (tmp_path / "h" / "oci-discovery").mkdir(parents=True)
    (tmp_path / "h" / "oci-discovery" / "ref-engine-discovery.json").write_text("{not json")
    write_json(str(tmp_path / "d" / "oci-discovery" / "ref-engine-discovery.json"), {"([": {}})
    site.add_host("example.test")
    c = client(tls, xdg=True, environ={"XDG_CONFIG_HOME": str(tmp_path / "h"), "XDG_CONFIG_DIRS": str(tmp_path / "d")})
    with pytest.raises(DiscoveryError) as info:
        c.resolve("example.test/app")
    assert "ref-engine-discovery.json: XDG ref-engine discovery file: invalid JSON" in str(info.value)
    assert "invalid regular expression '(['" in str(info.value)


def test_posix_bracket_classes_translated():
    assert compile_ere(r"[[:alpha:]]+\.test/[[:digit:]]+").fullmatch("example.test/42")
    assert not compile_ere(r"[[:digit:]]+").fullmatch("a1")


# ------------------------------------------------------------------ platforms, nesting, verification

def multi_platform_site(site, nested=False):
    amd = manifest_bytes("amd64")
    arm = manifest_bytes("arm64")
    armv7 = manifest_bytes("armv7")
    for blob in (amd, arm, armv7):
        serve_blob(site, "example.test", blob)
    inner = json.dumps(index_doc(
        desc(arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
        desc(armv7, platform={"os": "linux", "architecture": "arm", "variant": "v7"}))).encode()
    serve_blob(site, "example.test", inner)
    if nested:
        children = [desc(amd, platform={"os": "linux", "architecture": "amd64"}), desc(inner, IDX)]
    else:
        children = [desc(amd, platform={"os": "linux", "architecture": "amd64"})] + \
            json.loads(inner)["manifests"]
    top = json.dumps(index_doc(*children)).encode()
    serve_blob(site, "example.test", top)
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(top, IDX), "1.0")))
    return {"amd": sha(amd), "arm": sha(arm), "armv7": sha(armv7), "top": sha(top), "inner": sha(inner)}


@pytest.mark.parametrize("nested", [False, True])
def test_multi_platform_selection_at_any_depth(site, tls, nested):
    d = multi_platform_site(site, nested)
    c = client(tls)
    (r,) = c.resolve("example.test/app#1.0", platform="linux/arm64")
    assert r["digest"] == d["arm"] and r["platform"]["variant"] == "v8"
    assert r["root"]["root"]["digest"] == d["top"]            # the root stays the tagged entry
    (r,) = c.resolve("example.test/app#1.0", platform={"os": "linux", "architecture": "arm", "variant": "v7"})
    assert r["digest"] == d["armv7"]
    (r,) = c.resolve("example.test/app#1.0", platform="linux/x86_64")
    assert r["digest"] == d["amd"] and r["verified"] is False
    # without a platform: the index itself
    (r,) = c.resolve("example.test/app#1.0")
    assert r["digest"] == d["top"] and r["mediaType"] == IDX
    with pytest.raises(NotFoundError, match=r"no manifest for platform linux/s390x \(available: "
                                            r"linux/amd64, linux/arm64/v8, linux/arm/v7\)"):
        c.resolve("example.test/app#1.0", platform="linux/s390x")


def test_platform_narrows_several_tagged_entries(site, tls):
    a = tagged(desc(b"amd"), "1.0", platform={"os": "linux", "architecture": "amd64"})
    b = tagged(desc(b"ppc"), "1.0", platform={"os": "linux", "architecture": "ppc64le"})
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(a, b))
    c = client(tls)
    assert [r["digest"] for r in c.resolve("example.test/app#1.0", platform="linux/ppc64le")] == [sha(b"ppc")]
    assert len(c.resolve("example.test/app#1.0")) == 2


def test_platform_given_manifest_without_platform_is_kept(site, tls):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"plain"), "1.0")))
    assert client(tls).resolve("example.test/app#1.0", platform="linux/amd64")[0]["digest"] == sha(b"plain")


def test_verify_on_and_off(site, tls):
    good = manifest_bytes("good")
    serve_blob(site, "example.test", good)
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(good), "1.0")))
    c = client(tls)
    (r,) = c.resolve("example.test/app#1.0")
    assert r["verified"] is False and not [u for u in c.requests if "/oci-cas/" in u]
    (r,) = c.resolve("example.test/app#1.0", verify=True)
    assert r["verified"] is True and len([u for u in c.requests if "/oci-cas/" in u]) == 1


def test_verify_detects_digest_and_size_mismatch(site, tls):
    good = manifest_bytes("good")
    algorithm, encoded = sha(good).split(":")
    site.blob("example.test", "/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded), good.replace(b"layers", b"lAyers"))
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(good), "1.0")))
    with pytest.raises(DiscoveryError, match="digest mismatch: expected %s" % sha(good)):
        client(tls).resolve("example.test/app#1.0", verify=True)
    site.blob("example.test", "/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded), good + b" ")
    with pytest.raises(DiscoveryError, match="size mismatch: expected %d bytes, got more" % len(good)):
        client(tls).resolve("example.test/app#1.0", verify=True)


def test_cas_engines_tried_in_order_until_one_verifies(site, tls):
    good = manifest_bytes("good")
    serve_blob(site, "example.test", good)
    broken = {"protocol": "oci-cas-template-v1", "uri": "https://example.test/missing/{digest}"}
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(good), "1.0", casEngines=[broken])))
    (r,) = client(tls).resolve("example.test/app#1.0", verify=True)
    assert r["verified"]


def test_index_cycle_detected(site, tls):
    # an index cannot contain its own digest, but a descriptor can point at a blob that is
    # served with content that lists the parent's digest: the verifier stops that first.
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"{}", IDX), "1.0")))
    serve_blob(site, "example.test", b"{}")
    with pytest.raises(DiscoveryError, match='expected an object with a "manifests" array'):
        client(tls).resolve("example.test/app#1.0", platform="linux/amd64")


def test_platform_parsing():
    assert parse_platform("linux/arm64/v8") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert parse_platform(None) is None
    for bad in ("linux", "linux/", "a/b/c/d", 5, {"os": "linux"}, {"os": "l", "architecture": "a", "x": 1}):
        with pytest.raises(PlatformError):
            parse_platform(bad)
    assert platform_matches({"os": "linux", "architecture": "arm64", "variant": "v8"},
                            {"os": "linux", "architecture": "arm64"})
    assert not platform_matches({"os": "linux", "architecture": "arm", "variant": "v6"},
                                {"os": "linux", "architecture": "arm"})
    assert platform_matches({"os": "windows", "architecture": "amd64", "os.version": "10.0.1"},
                            {"os": "windows", "architecture": "amd64", "os.version": "10.0.1"})


# ------------------------------------------------------------------ caching

def test_one_request_per_document_for_many_names(site, tls):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    names = []
    for family in range(5):
        entries = [tagged(desc(("%d-%d" % (family, tag)).encode()), "t%d" % tag) for tag in range(20)]
        site.doc("example.test", "/i/f%d" % family, index_doc(*entries))
        names += ["example.test/f%d#t%d" % (family, tag) for tag in range(20)]
    c = client(tls)
    for name in names:
        assert len(c.resolve(name)) == 1
    assert len(names) == 100 and len(c.requests) == 6
    assert len([e for e in site.log if e[0] != "connect"]) == 6


def test_failures_are_cached_too(site, tls):
    site.add_host("a.example.test")
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"1"), "1.0"), tagged(desc(b"2"), "2.0")))
    c = client(tls)
    c.resolve("a.example.test/app#1.0")
    c.resolve("a.example.test/app#2.0")
    assert c.requests.count("https://a.example.test" + WK) == 1


# ------------------------------------------------------------------ hostile or broken servers

@pytest.mark.parametrize("reply, reason", [
    (doc_reply({"refEngines": []}, "application/json"),
     "served as application/json, expected application/vnd.oci.ref-engines.v1+json"),
    (Reply(200, {}, b"{}"), "no Content-Type header (expected application/vnd.oci.ref-engines.v1+json)"),
    (doc_reply(b"{not json", REF), "ref-engines object: invalid JSON"),
    (doc_reply(b"[]", REF), "ref-engines object: expected a JSON object, got an array"),
    (doc_reply(b"{}", REF, charset="x-unknown-charset"), "unknown charset 'x-unknown-charset'"),
    (Reply(500, {}, b""), "HTTP 500"),
])
def test_bad_well_known_documents(site, tls, reply, reason):
    site.route("example.test", WK, reply)
    with pytest.raises(DiscoveryError) as info:
        client(tls).resolve("example.test/app#1.0")
    assert "https://example.test%s: %s" % (WK, reason) in str(info.value)


@pytest.mark.parametrize("body, reason", [
    (b"[]", "expected a JSON object (image index), got an array"),
    (b'{"manifests": {}}', 'image index: "manifests" must be an array, got an object'),
    (b'{"manifests": [1]}', "image index: manifests[0] must be an object, got a number"),
    (b'{"manifests": [{"annotations": {"org.opencontainers.image.ref.name": "1.0"}}]}',
     "missing required field 'mediaType'"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"\xff\xfe", "image index: not UTF-8"),
])
def test_bad_indexes(site, tls, body, reason):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.route("example.test", "/i/app", doc_reply(body, IDX))
    with pytest.raises(DiscoveryError) as info:
        client(tls).resolve("example.test/app#1.0")
    assert reason in str(info.value)
    assert "https://example.test/i/app: " in str(info.value)


def test_media_type_parameters_and_case_are_lenient_charset_optional(site, tls):
    site.route("example.test", WK, Reply(200, {"Content-Type": "Application/VND.OCI.Ref-Engines.v1+JSON"},
                                         json.dumps(wellknown("/i/{+path}")).encode()))
    body = json.dumps(index_doc(tagged(desc(b"m"), "1.0"))).encode()
    site.route("example.test", "/i/app", Reply(200, {"Content-Type": IDX + '; profile="x"; charset=ISO-8859-1'}, body))
    assert client(tls).resolve("example.test/app#1.0")[0]["digest"] == sha(b"m")


def test_document_size_limit(site, tls):
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    big = index_doc(*[tagged(desc(str(i).encode()), str(i)) for i in range(200)])
    site.doc("example.test", "/i/app", big)
    with pytest.raises(DiscoveryError, match="larger than the limit of 10000 bytes"):
        client(tls, max_bytes=10000).resolve("example.test/app#1")


# ------------------------------------------------------------------ trust and bounds (docs/security.md)

def test_remote_index_cannot_name_local_files_but_the_xdg_file_can(site, tls, tmp_path):
    data = manifest_bytes("local")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / sha(data).split(":")[1]).write_bytes(data)
    local_cas = {"protocol": "oci-cas-template-v1", "uri": "file://%s/{encoded}" % blobs}
    site.doc("example.test", "/remote/app", index_doc(tagged(desc(data), "1.0", casEngines=[local_cas])))
    home = tmp_path / "home"
    write_json(str(home / "oci-discovery" / "ref-engine-discovery.json"), {
        r"^a\.example\.test/": wellknown("https://example.test/remote/{+path}"),
        r"^b\.example\.test/": wellknown("https://example.test/remote/{+path}", cas=[local_cas]),
    })
    c = client(tls, xdg=True, environ={"XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "none")})
    with pytest.raises(DiscoveryError, match="refused: a remote document names this local file"):
        c.resolve("a.example.test/app#1.0", verify=True)
    (r,) = c.resolve("b.example.test/app#1.0", verify=True)
    assert r["verified"] is True


def test_local_files_must_be_regular_and_are_bounded(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", str(tmp_path)):
        with pytest.raises(FetchError, match="is not a regular file"):
            read_local_file(path, 100)
    (tmp_path / "f").write_bytes(b"x" * 101)
    with pytest.raises(FetchError, match="file larger than the limit of 100 bytes"):
        read_local_file(str(tmp_path / "f"), 100)
    assert read_local_file(str(tmp_path / "f"), 101) == b"x" * 101
    with pytest.raises(FetchError) as info:
        read_local_file(str(tmp_path / "missing"), 100)
    assert info.value.kind == "absent"


def test_shared_nested_index_is_searched_once(site, tls):
    leaf = manifest_bytes("leaf")
    serve_blob(site, "example.test", leaf)
    child = desc(leaf, platform={"os": "linux", "architecture": "arm64"})
    for dummy in range(6):
        data = json.dumps(index_doc(*[child] * 20)).encode()
        serve_blob(site, "example.test", data)
        child = desc(data, IDX)
    site.doc("example.test", WK, wellknown("/i/{+path}", cas=[CAS]))
    site.doc("example.test", "/i/app", index_doc(dict(child, annotations={
        "org.opencontainers.image.ref.name": "1.0"})))
    c = client(tls)
    (r,) = c.resolve("example.test/app#1.0", platform="linux/arm64")
    assert r["digest"] == sha(leaf)
    assert len(c.requests) == 2 + 6


@pytest.mark.parametrize("budget, message", [
    ({"documents": 2}, "more than 2 documents fetched for one name (the max_documents budget ran out)"),
    ({"bytes": 100}, "more than 100 bytes read for one name (the max_total_size budget ran out)"),
    ({"engines": 1}, "more than 1 engines tried for one name (the max_engines budget ran out)"),
])
def test_budgets_stop_the_walk_and_name_themselves(site, tls, budget, message):
    site.doc("example.test", WK, {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "/i/{+path}"},
                                                 {"protocol": "oci-index-template-v1", "uri": "/j/{+path}"}]})
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"x" * 1000), "9")))
    site.doc("example.test", "/j/app", index_doc(tagged(desc(b"m"), "1.0")))
    c = client(tls, budget=budget)
    with pytest.raises(DiscoveryError) as info:
        c.resolve("example.test/app#1.0")
    assert not isinstance(info.value, NotFoundError)
    assert "cannot resolve example.test/app#1.0: stopped: " + message in str(info.value)
    # per name: the next name starts with a full budget (and the cache)
    assert len(client(tls).resolve("example.test/app#1.0")) == 1


def test_a_failure_on_the_way_is_not_reported_as_missing(site, tls):
    site.route("a.example.test", WK, Reply(500, {}, b""))
    site.doc("example.test", WK, wellknown("/i/{+path}"))
    site.doc("example.test", "/i/app", index_doc(tagged(desc(b"m"), "1.0")))
    with pytest.raises(DiscoveryError) as info:
        client(tls).resolve("a.example.test/app#9.9")
    assert not isinstance(info.value, NotFoundError)
    assert "https://a.example.test%s: HTTP 500" % WK in str(info.value)
    site.add_host("b.example.test")     # 404 on the host: absent, so "not found" it is
    with pytest.raises(NotFoundError):
        client(tls).resolve("b.example.test/app#9.9")


def test_headers_only_to_the_names_host_and_named_origins(site, tls):
    seen = []

    def capture(reply):
        def handler(request):
            seen.append((request.headers.get("Host"), request.path, request.headers.get("X-Token")))
            return reply
        return handler
    site.add_host("a.example.test")
    site.route("example.test", WK, capture(doc_reply(wellknown("https://other-site.test/i/{+path}"), REF)))
    site.route("other-site.test", "/i/app", capture(doc_reply(index_doc(tagged(desc(b"m"), "1.0")), IDX)))
    c = client(tls, headers={"X-Token": "own"}, origin_headers={"https://other-site.test/": {"X-Token": "other"}})
    c.resolve("example.test/app#1.0")
    # example.test is now an ancestor: asked again, without headers (with headers, the cache is per host)
    c.resolve("a.example.test/app#1.0")
    assert seen == [("example.test", WK, "own"), ("other-site.test", "/i/app", "other"),
                    ("example.test", WK, None), ("other-site.test", "/i/app", "other")]


def test_origins_are_parsed_strictly():
    assert parse_origin("https://Example.test") == ("https", "example.test", 443)
    assert parse_origin("http://[::1]:8080/") == ("http", "::1", 8080)
    for bad in ("example.test", "https://example.test/path", "ftp://example.test", "https://u@example.test",
                "https://example.test:99999"):
        with pytest.raises(ValueError, match="is not an origin"):
            parse_origin(bad)


def test_ip_literal_host_with_simple_host_expansion_is_a_clear_error(site, tls, tmp_path):
    write_json(str(tmp_path / "oci-discovery" / "ref-engine-discovery.json"), {
        r"^\[::1\]/": wellknown("https://{host}/i/{path}"),
    })
    c = client(tls, xdg=True, environ={"XDG_CONFIG_HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "none")})
    with pytest.raises(DiscoveryError, match=r"the template expands to https://%5B%3A%3A1%5D/i/app, whose host is "
                                             r"percent-encoded; the name's host \[::1\] is an IP literal"):
        c.resolve("[::1]/app#1.0")


def test_option_types_and_defaults_have_one_source():
    """resolve_info's argument spec comes from _resolve; the doc fragment must say the same."""
    import yaml
    from ansible_collections.oci.discovery.plugins.doc_fragments.resolve import ModuleDocFragment
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    plugins = yaml.safe_load(ModuleDocFragment.PLUGINS)["options"]
    spec = _resolve.argument_spec()
    assert sorted(documented) == sorted(spec) == sorted(plugins)
    for name, option in spec.items():
        doc = documented[name]
        for key in ("type", "default", "choices", "elements"):
            assert doc.get(key) == option.get(key), (name, key)
    assert spec["headers"]["no_log"] and spec["origin_headers"]["no_log"]
