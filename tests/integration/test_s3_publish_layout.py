# -*- coding: utf-8 -*-
"""oci.discovery.s3_publish_layout against a real Ceph RGW on loopback (http and https).

Requests are counted from RGW's own access log: radosgw's beast front end logs one line
per request ('"PUT /bucket/key HTTP/1.1" 200 ...') at the default debug level. A marker
request (an anonymous GET of a unique key) brackets each measured run, so the count is
exactly the requests RGW served in between, whatever client made them.
"""
import hashlib
import json
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest


MODULE = "oci.discovery.s3_publish_layout"
NAME = "example.test/team/app"
BLOB_CC = "public, max-age=31536000, immutable"
DOC_CC = "public, max-age=60"
CHARSET = "; charset=utf-8"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_REF_ENGINES = "application/vnd.oci.ref-engines.v1+json"
LEDGER = ".oci-discovery/s3-ledger.json"
LAYOUT_ANNOTATION = "io.github.oci-discovery.site-layout"

_BEAST = re.compile(r'beast: \S+: \S+ - (\S+) \[[^\]]*\] "(\w+) (\S+) HTTP/[0-9.]+" (\d+)')


class RequestLog:
    """The requests RGW served between two markers, read from its access log."""

    def __init__(self, rgw):
        self.rgw = rgw
        self.path = os.path.join(rgw.dir, "log", "client.rgw.a.log")

    def _marker(self):
        token = "marker-%s" % uuid.uuid4().hex
        try:
            urllib.request.urlopen("%s/%s" % (self.rgw.endpoint, token), timeout=10).read()
        except urllib.error.HTTPError:
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(self.path, "rb") as handle:
                data = handle.read()
            at = data.find(token.encode())
            if at != -1:
                return data.find(b"\n", at) + 1
            time.sleep(0.05)
        raise AssertionError("marker %s never appeared in %s" % (token, self.path))

    def start(self):
        self._start = self._marker()
        return self

    def stop(self):
        end = self._marker()
        with open(self.path, "rb") as handle:
            handle.seek(self._start)
            text = handle.read(end - self._start).decode("utf-8", "replace")
        self.requests = []
        for line in text.splitlines():
            match = _BEAST.search(line)
            if match and "marker-" not in match.group(3):
                self.requests.append({"user": match.group(1), "method": match.group(2), "path": match.group(3),
                                      "status": int(match.group(4))})
        return self.requests

    def count(self, method=None, path_contains=None):
        return sum(1 for r in self.requests if (method is None or r["method"] == method)
                   and (path_contains is None or path_contains in r["path"]))

    def list_pages(self, bucket):
        return sum(1 for r in self.requests if r["method"] == "GET" and r["path"].startswith("/%s?" % bucket)
                   and "list-type=2" in r["path"])


@pytest.fixture
def bucket(rgw):
    name = "t-%s" % uuid.uuid4().hex[:12]
    rgw.client().create_bucket(Bucket=name)
    return name


def all_objects(rgw, bucket):
    client = rgw.client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return keys


def task_args(rgw, bucket, tls=False, **extra):
    """The module's options; site_layout cas_bucket unless given (the default, registry, has tests of its own)."""
    args = {"bucket": bucket, "name": NAME, "endpoint_url": rgw.endpoint_url(tls), "region": rgw.region,
            "access_key": rgw.access_key, "secret_key": rgw.secret_key, "site_layout": "cas_bucket"}
    if tls:
        args["aws_ca_bundle"] = rgw.ca_path
    args.update(extra)
    return args


def publish(run_playbook, args, check=False, diff=False, env=None):
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "publish", MODULE: args, "ignore_errors": True}]}]
    result = run_playbook(play, check=check, diff=diff, env=env)
    assert result.json is not None, str(result)
    return result.result("publish")


def anonymous_get(rgw, bucket, key, tls=False):
    """An anonymous HTTP GET of an object (path-style URL): (status, headers, body)."""
    url = rgw.url(bucket, urllib.request.quote(key), tls=tls)
    context = ssl.create_default_context(cafile=rgw.ca_path) if tls else None
    try:
        with urllib.request.urlopen(url, timeout=20, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def expected_headers(layout_info_blobs, key, body=None):
    """(Content-Type, Cache-Control) the published object `key` (with `body`) must be served with."""
    if key in ("v2/", "v2/index.html") or key.startswith("v2/") and key.endswith("/tags/list"):  # the registry view
        return "application/json", DOC_CC
    if key.startswith("v2/") and "/blobs/sha256:" in key:
        return layout_info_blobs[key.rsplit(":", 1)[1]], BLOB_CC
    if key.startswith("v2/") and "/manifests/sha256:" in key:
        return layout_info_blobs[key.rsplit(":", 1)[1]], BLOB_CC
    if key.startswith("v2/") and "/manifests/" in key:
        return layout_info_blobs[hashlib.sha256(body).hexdigest()], DOC_CC
    if key.startswith("oci-cas/"):
        return layout_info_blobs[key.rsplit("/", 1)[1]], BLOB_CC
    if key.startswith("oci-index/"):
        return MT_INDEX + CHARSET, DOC_CC
    if key == ".well-known/oci-host-ref-engines":
        return MT_REF_ENGINES + CHARSET, DOC_CC
    raise AssertionError("unexpected published key %s" % key)


def blob_media_types(layout_path):
    """{encoded digest: media type} of every blob reachable from the layout's index.json."""
    from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
    layout = Layout(layout_path)
    return dict((d["digest"].split(":", 1)[1], d["mediaType"]) for d in layout.walk(layout.index["manifests"]))


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls,site_layout", [(False, "cas_bucket"), (True, "cas_bucket"), (False, None), (True, None)],
                         ids=["http", "https", "http-default-layout", "https-default-layout"])
def test_publish_serves_exact_headers_and_rerun_sends_nothing(rgw, bucket, layouts, run_playbook, tls, site_layout):
    args = task_args(rgw, bucket, tls, src=layouts.family, well_known=True, acl="public-read", site_layout=site_layout)
    if site_layout is None:
        del args["site_layout"]       # the default: registry for a new family with the registry view on
    log = RequestLog(rgw).start()
    first = publish(run_playbook, args)
    log.stop()
    assert not first.get("failed"), first
    assert first["changed"] is True
    assert sorted(first["tags_added"]) == sorted(layouts.info["family"]["tag_list"])
    media_types = blob_media_types(layouts.family)
    assert first["blobs_sent"] == len(media_types)
    assert first["well_known_changed"] is True
    assert log.count("HEAD", "/%s/" % bucket) == 0   # nothing existed: no object to HEAD
    assert first["site_layout"] == (site_layout or "registry")

    published = [key for key, size in all_objects(rgw, bucket) if key != LEDGER]
    if site_layout is None:       # the blobs are the view's: nothing copied, nothing under oci-cas/
        assert len([k for k in published if not k.startswith("v2/")]) == 2
        assert first["registry_blobs_copied"] == 0
        assert len([k for k in published if "/blobs/sha256:" in k]) == len(media_types)
    else:
        assert len([k for k in published if not k.startswith("v2/")]) == len(media_types) + 2
    for key in published:
        status, headers, body = anonymous_get(rgw, bucket, key, tls)
        assert status == 200, (key, status)
        assert (headers["Content-Type"], headers["Cache-Control"]) == expected_headers(media_types, key, body), key
        if key.startswith("oci-cas/") or "/blobs/sha256:" in key:
            assert "sha256:" + hashlib.sha256(body).hexdigest() == "sha256:" + key.rsplit("/", 1)[1].split(":")[-1]
    status, dummy, body = anonymous_get(rgw, bucket, LEDGER, tls)
    assert status == 403, "the ledger is private"
    index = json.loads(anonymous_get(rgw, bucket, "oci-index/team/app", tls)[2])
    assert sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]) == \
        sorted(layouts.info["family"]["tag_list"])

    log = RequestLog(rgw).start()
    second = publish(run_playbook, args)
    log.stop()
    assert not second.get("failed"), second
    assert second["changed"] is False, second
    assert second["blobs_sent"] == 0 and second["objects_fixed"] == 0
    assert log.count("PUT") == 0 and log.count("POST") == 0 and log.count("DELETE") == 0, log.requests
    assert log.count("HEAD", "/%s/" % bucket) == 0, log.requests   # the view's objects too: the ledger vouches
    assert log.count("GET") - log.list_pages(bucket) == 3, log.requests  # the index, the well-known doc, the ledger
    # cas_bucket: oci-cas/, and the registry view's v2/team/app/; registry: v2/team/app/ for both
    pages = 2 if site_layout else 1
    assert log.list_pages(bucket) == pages, log.requests
    assert second["requests"]["list_pages"] == pages


def copy_with_headers(rgw, bucket, key, content_type=None, cache_control=None):
    """Change an object's headers behind the module's back, as `aws s3 cp --metadata-directive REPLACE` does."""
    client = rgw.client()
    head = client.head_object(Bucket=bucket, Key=key)
    client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                       MetadataDirective="REPLACE", ACL="public-read",
                       ContentType=content_type or head["ContentType"],
                       CacheControl=cache_control or head.get("CacheControl", ""))


def test_drifted_headers_are_fixed_in_place_and_reported(rgw, bucket, layouts, run_playbook):
    args = task_args(rgw, bucket, src=layouts.family, acl="public-read")
    assert publish(run_playbook, args)["changed"] is True
    media_types = blob_media_types(layouts.family)
    blob = sorted(k for k, s in all_objects(rgw, bucket) if k.startswith("oci-cas/"))[0]
    size_before = dict(all_objects(rgw, bucket))[blob]
    copy_with_headers(rgw, bucket, blob, content_type="binary/octet-stream")
    copy_with_headers(rgw, bucket, "oci-index/team/app", cache_control="max-age=86400")
    assert anonymous_get(rgw, bucket, blob)[1]["Content-Type"] == "binary/octet-stream"

    check = publish(run_playbook, args, check=True, diff=True)
    assert check["changed"] is True and check["objects_fixed"] == 2, check
    assert anonymous_get(rgw, bucket, blob)[1]["Content-Type"] == "binary/octet-stream", "check mode wrote"

    log = RequestLog(rgw).start()
    fixed = publish(run_playbook, args)
    log.stop()
    assert fixed["changed"] is True, fixed
    assert sorted(fixed["fixed_keys"]) == sorted([blob, "oci-index/team/app"])
    assert fixed["blobs_sent"] == 0 and fixed["requests"]["upload"] == 0 and fixed["requests"]["copy"] == 1
    # one HEAD: the blob rewritten behind the module's back; none for the others (the ledger vouches)
    assert log.count("HEAD", "/oci-cas/") == 1, log.requests
    for key in (blob, "oci-index/team/app"):
        status, headers, body = anonymous_get(rgw, bucket, key)
        assert (headers["Content-Type"], headers["Cache-Control"]) == expected_headers(media_types, key)
    assert dict(all_objects(rgw, bucket))[blob] == size_before

    log = RequestLog(rgw).start()
    again = publish(run_playbook, args)
    log.stop()
    assert again["changed"] is False and again["objects_fixed"] == 0, again
    assert log.count("PUT") == 0 and log.count("HEAD", "/oci-cas/") == 0, log.requests


def test_check_mode_writes_nothing_and_diff_shows_what_would_change(rgw, bucket, layouts, run_playbook):
    args = task_args(rgw, bucket, src=layouts.family, tags=["1.0", {"src": "1.0", "dest": "stable"}],
                     well_known=True)
    log = RequestLog(rgw).start()
    result = publish(run_playbook, args, check=True, diff=True)
    log.stop()
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert sorted(result["tags_added"]) == ["1.0", "stable"]
    assert result["blobs_sent"] > 0 and result["bytes_sent"] > 0
    assert result["well_known_changed"] is True
    assert all_objects(rgw, bucket) == []
    assert log.count("PUT") == 0 and log.count("POST") == 0, log.requests
    text = json.dumps(result["diff"])
    assert "1.0 sha256:" in text and "stable sha256:" in text and "to send" in text
    assert "oci-index-template-v1" in text


def broken_kinds():
    from rig.layouts import BROKEN_KINDS
    return sorted(BROKEN_KINDS)


def test_bad_input_fails_clearly_and_writes_nothing(rgw, bucket, layouts, broken_layout, run_playbook):
    # Every broken-layout kind, in one playbook (a loop), into an empty bucket.
    cases = [dict(broken_layout(kind), kind=kind) for kind in broken_kinds()]
    args = task_args(rgw, bucket, src="{{ item.path }}", well_known=True)
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "publish", MODULE: args, "loop": cases, "loop_control": {"label": "{{ item.kind }}"},
         "ignore_errors": True}]}]
    result = run_playbook(play)
    items = result.result("publish")["results"]
    assert len(items) == len(cases)
    for case, item in zip(cases, items):
        assert item.get("failed"), (case["kind"], item)
        assert case["expect"] in item["msg"], (case["kind"], case["expect"], item["msg"])
        assert "Traceback" not in item["msg"]
    assert all_objects(rgw, bucket) == []

    # Wrong credentials, a missing bucket.
    wrong = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, secret_key="not-the-secret"))
    assert wrong.get("failed") and "s3://%s" % bucket in wrong["msg"] and "403" in wrong["msg"], wrong
    assert "secret_key" in wrong["msg"]
    missing = publish(run_playbook, task_args(rgw, bucket + "-missing", src=layouts.family))
    assert missing.get("failed") and "does not exist" in missing["msg"] and bucket + "-missing" in missing["msg"]
    assert all_objects(rgw, bucket) == []

    # An existing index that is not JSON: named, refused, nothing else written.
    rgw.client().put_object(Bucket=bucket, Key="oci-index/team/app", Body=b"<html>not an index</html>")
    bad = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, well_known=True))
    assert bad.get("failed"), bad
    assert "s3://%s/oci-index/team/app" % bucket in bad["msg"] and "JSON" in bad["msg"], bad["msg"]
    assert [k for k, s in all_objects(rgw, bucket)] == ["oci-index/team/app"]
    # ... and force replaces it.
    forced = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, force=True))
    assert forced["changed"] is True and forced["replaced_invalid_index"], forced


def test_two_publishers_of_one_family_at_once_keep_both_tags(rgw, bucket, layouts, run_playbook):
    results = {}

    def run(tags):
        results[tuple(tags)] = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, tags=tags))
    threads = [threading.Thread(target=run, args=(tags,)) for tags in (["1.0", "1.1"], ["2.0"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tags, result in results.items():
        assert not result.get("failed"), result
        assert sorted(result["tags_added"]) == sorted(tags)
    index = json.loads(rgw.client().get_object(Bucket=bucket, Key="oci-index/team/app")["Body"].read())
    assert sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]) == \
        ["1.0", "1.1", "2.0"]


def test_a_conflicting_index_write_is_merged_not_lost(rgw, bucket, layouts):
    """Deterministic interleaving: A reads the index, B publishes, A's conditional PUT gets 412 and merges."""
    from ansible_collections.oci.discovery.plugins.module_utils import _plan, _publish
    from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
    from ansible_collections.oci.discovery.plugins.module_utils._s3 import S3Store
    from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout

    def s3_publish(store, site, layout, tags):
        _publish.run(_publish.StoreTarget(store), _publish.Request(site, tags=tags), layout)

    layout = Layout(layouts.family)
    mapping = SiteLayout("cas_bucket", NAME)
    s3_publish(S3Store(rgw.client(), bucket), mapping, layout, ["1.0"])

    a = S3Store(rgw.client(), bucket)
    a.read(mapping.index_key, _plan.MAX_INDEX_BYTES)          # A plans against the index with 1.0
    s3_publish(S3Store(rgw.client(), bucket), mapping, layout, ["2.0"])   # B commits 2.0
    pub = _plan.publication(layout, mapping, [("1.1", "1.1")])
    ops = _plan.index_ops("present", pub["entries"])
    log = RequestLog(rgw).start()
    before, after = a.update_document(
        mapping.index_key, lambda raw: _plan.update_index(raw, ops, a.describe(mapping.index_key))[0],
        _plan.MT_INDEX if hasattr(_plan, "MT_INDEX") else "application/vnd.oci.image.index.v1+json",
        _plan.MAX_INDEX_BYTES)
    log.stop()
    assert [r["status"] for r in log.requests if r["method"] == "PUT"] == [412, 200], log.requests
    index = json.loads(after)
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]] == ["1.0", "2.0", "1.1"]
    assert json.loads(rgw.client().get_object(Bucket=bucket, Key=mapping.index_key)["Body"].read()) == index


def test_big_layout_multipart_and_one_list_page_per_thousand_objects(rgw, bucket, layouts, run_playbook):
    info = layouts.info["big"]
    # Other families' blobs already in the CAS prefix: 2,300 objects, so the listing has 3 pages.
    client = rgw.client()
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key="oci-cas/sha256/00/00%062x" % i, Body=b"x"),
                      range(2300)))
    args = task_args(rgw, bucket, src=layouts.big, multipart_chunksize=5 * 1024 * 1024, max_concurrency=4)
    first = publish(run_playbook, args)
    assert not first.get("failed"), first
    assert first["blobs_sent"] == info["blobs"] and first["bytes_sent"] == info["bytes"]
    objects = dict((k, size) for k, size in all_objects(rgw, bucket) if not k.startswith("v2/"))
    # The ~30 MiB layer went up in parts (a multipart ETag ends in -N) and reads back intact.
    huge = max((size, key) for key, size in objects.items())[1]
    head = client.head_object(Bucket=bucket, Key=huge)
    assert head["ETag"].strip('"').endswith("-%d" % -(-head["ContentLength"] // (5 * 1024 * 1024)))
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=huge)["Body"]
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(chunk)
    assert digest.hexdigest() == huge.rsplit("/", 1)[1]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    total = len([k for k in objects if k.startswith("oci-cas/")])
    assert total == 2300 + info["blobs"]
    log = RequestLog(rgw).start()
    second = publish(run_playbook, args)
    log.stop()
    assert second["changed"] is False, second
    assert log.count("PUT") == 0 and log.count("HEAD", "/oci-cas/") == 0, log.requests
    # The CAS prefix in 3 pages, and one page of the registry view's v2/<name>/ (about 200 objects).
    assert log.list_pages(bucket) == -(-total // 1000) + 1 == 4, log.requests


def test_uploads_are_verified_on_the_way_and_nothing_unverified_becomes_visible(rgw, bucket, tmp_path):
    """The layout changed between validation and upload: single PUT and multipart both refuse it."""
    from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
    from ansible_collections.oci.discovery.plugins.module_utils._s3 import S3Store
    store = S3Store(rgw.client(), bucket, multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)

    class OneFile:
        """A blob source (Store.put_blobs) that opens the same file for every blob."""
        open = staticmethod(lambda blob: open(str(path), "rb"))

    good = os.urandom(1024)
    big = os.urandom(12 * 1024 * 1024)
    cases = [
        ("small, other content", good, b"x" * 1024),
        ("small, longer", good, good + b"!"),
        ("small, shorter", good, good[:-1]),
        ("multipart, last part changed", big, big[:-1] + (b"\0" if big[-1:] != b"\0" else b"\1")),
        ("multipart, longer", big, big + b"tail"),
        ("multipart, shorter", big, big[:-100]),
    ]
    for what, declared, actual in cases:
        path = tmp_path / "blob"
        path.write_bytes(actual)
        digest = "sha256:" + hashlib.sha256(declared).hexdigest()
        blob = {"key": "oci-cas/sha256/%s/%s" % (digest[7:9], digest[7:]), "digest": digest, "size": len(declared),
                "mediaType": "application/octet-stream"}
        with pytest.raises(VerificationError) as caught:
            store.put_blobs([blob], OneFile)
        assert digest in str(caught.value), what
        assert all_objects(rgw, bucket) == [], what
        assert rgw.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], what
    # And the right content goes up, with its media type.
    path.write_bytes(big)
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    blob = {"key": "oci-cas/sha256/%s/%s" % (digest[7:9], digest[7:]), "digest": digest, "size": len(big),
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
    assert store.put_blobs([blob], OneFile) == len(big)
    head = rgw.client().head_object(Bucket=bucket, Key=blob["key"])
    assert head["ContentType"] == "application/vnd.oci.image.layer.v1.tar+gzip" and head["ContentLength"] == len(big)


def test_sync_s3_playbook_creates_the_bucket_policy_website_and_publishes(rgw, layouts, run_playbook):
    bucket = "t-%s" % uuid.uuid4().hex[:12]
    site = {
        "s3_publisher_bucket": bucket, "s3_publisher_create_bucket": True, "s3_publisher_ceph": True,
        "s3_publisher_website": True, "s3_publisher_prefix": "sites/example.test",
        "s3_publisher_endpoint_url": rgw.tls_endpoint, "s3_publisher_aws_ca_bundle": rgw.ca_path,
        "s3_publisher_region": rgw.region, "s3_publisher_access_key": rgw.access_key,
        "s3_publisher_secret_key": rgw.secret_key,
        "s3_publisher_images": [{"name": NAME, "src": layouts.family},
                                {"name": "example.test/multi", "src": layouts.multiplatform, "tags": ["1.0"]}],
    }
    play = [{"ansible.builtin.import_playbook": "oci.discovery.sync_s3"}]
    first = run_playbook(play, extra_vars=site)
    assert not first.failed, str(first)
    assert rgw.client().get_bucket_website(Bucket=bucket)["IndexDocument"] == {"Suffix": "index.html"}
    policy = json.loads(rgw.client().get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Resource"][0] == \
        "arn:aws:s3:::%s/sites/example.test/.well-known/oci-host-ref-engines" % bucket

    # No ACLs were sent: the policy alone makes exactly the published objects readable.
    media_types = blob_media_types(layouts.family)
    media_types.update(blob_media_types(layouts.multiplatform))
    keys = [k for k, s in all_objects(rgw, bucket)]
    assert "sites/example.test/%s" % LEDGER in keys
    for key in keys:
        status, headers, body = anonymous_get(rgw, bucket, key, tls=True)
        if key.endswith(LEDGER):
            assert status == 403
            continue
        assert status == 200, key
        assert (headers["Content-Type"], headers["Cache-Control"]) == \
            expected_headers(media_types, key[len("sites/example.test/"):], body), key
    well_known = json.loads(anonymous_get(rgw, bucket, "sites/example.test/.well-known/oci-host-ref-engines")[2])
    assert well_known == {"refEngines": [{"protocol": "oci-index-template-v1",
                                          "uri": "https://{host}/oci-index/{path}"}]}

    second = run_playbook(play, extra_vars=site)
    assert not second.failed and second.changed_count == 0, str(second)


@pytest.mark.parametrize("site_layout", ["cas_bucket", "registry"])
def test_a_front_at_the_host_root_lets_the_lookup_resolve_every_tag(rgw, bucket, layouts, nginx_factory, ca,
                                                                    run_playbook, site_layout):
    """Nginx as a CDN would be: https://localhost:PORT/ proxies to the bucket's prefix on RGW."""
    front = nginx_factory(servers=["server {\n    listen 127.0.0.1:@TLS_PORT@ ssl;\n    server_name localhost;\n"
                                   "    ssl_certificate @CERT@;\n    ssl_certificate_key @KEY@;\n"
                                   "    location / {\n        proxy_pass http://127.0.0.1:%d/%s/site/;\n    }\n}"
                                   % (rgw.port, bucket)])
    base = "https://localhost:%d" % front.tls_port
    images = [("localhost/team/app", layouts.family, "family"),
              ("localhost/multi", layouts.multiplatform, "multiplatform")]
    for name, src, dummy in images:
        result = publish(run_playbook, task_args(rgw, bucket, src=src, name=name, prefix="site", base_url=base,
                                                 acl="public-read", well_known=True, site_layout=site_layout))
        assert not result.get("failed") and result["site_layout"] == site_layout, result
    expected = {}
    for name, dummy, info_name in images:
        info = layouts.info[info_name]
        for tag in info["tag_list"]:
            expected["%s#%s" % (name, tag)] = [e["digest"] for e in info["tags"][tag]]
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "resolve",
        "ansible.builtin.debug": {"msg": "{{ query('oci.discovery.resolve', item, port=port, ca_path=ca) }}"},
        "loop": sorted(expected), "vars": {"port": front.tls_port, "ca": ca.cert_path}}]}]
    result = run_playbook(play)
    assert not result.failed, str(result)
    assert dict((item["item"], item["msg"]) for item in result.result("resolve")["results"]) == expected

    # Every blob, fetched through the front with the CAS template of the index entries, matches its digest.
    from ansible_collections.oci.discovery.plugins.module_utils._templates import expand
    context = ssl.create_default_context(cafile=ca.cert_path)
    index = json.loads(urllib.request.urlopen(base + "/oci-index/team%2Fapp", context=context).read())
    template = index["manifests"][0]["casEngines"][0]["uri"]
    for encoded, media_type in sorted(blob_media_types(layouts.family).items()):
        url = expand(template, {"digest": "sha256:" + encoded, "algorithm": "sha256", "encoded": encoded})
        with urllib.request.urlopen(url, context=context) as response:
            assert response.headers["Content-Type"] == media_type
            assert hashlib.sha256(response.read()).hexdigest() == encoded


class IndexReader(threading.Thread):
    """Polls every family index and checks that each entry's blobs (through nested indexes) all exist."""

    def __init__(self, client, bucket):
        super(IndexReader, self).__init__(daemon=True)
        self.client, self.bucket = client, bucket
        self.stopping = threading.Event()
        self.violations, self.checks, self.errors = [], 0, 0

    def _get(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _keys(self, prefix):
        keys = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.update(o["Key"] for o in page.get("Contents", []))
        return keys

    def check_once(self):
        # Indexes first, blobs after: a blob that existed when an index was read still exists later.
        indexes = dict((key, json.loads(self._get(key))) for key in sorted(self._keys("oci-index/")))
        present = self._keys("oci-cas/") | self._keys("v2/")
        for index_key, index in indexes.items():
            stack = list(index["manifests"])
            registry = (index.get("annotations") or {}).get(LAYOUT_ANNOTATION) == "registry"
            while stack:
                desc = stack.pop()
                encoded = desc["digest"].split(":", 1)[1]
                key = "oci-cas/sha256/%s/%s" % (encoded[:2], encoded) if not registry else \
                    "v2/%s/blobs/%s" % (index_key[len("oci-index/"):], desc["digest"])
                if key not in present:
                    self.violations.append((index_key, desc["digest"]))
                    continue
                if desc["mediaType"].endswith("index.v1+json"):
                    stack.extend(json.loads(self._get(key))["manifests"])
                elif desc["mediaType"].endswith("manifest.v1+json"):
                    manifest = json.loads(self._get(key))
                    stack.extend([manifest["config"]] + manifest["layers"])
        self.checks += 1

    def run(self):
        while not self.stopping.is_set():
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 (the gateway is down for a while: that is the point)
                self.errors += 1
                time.sleep(0.05)


def test_gateway_killed_mid_publish_never_exposes_missing_blobs_and_a_rerun_completes(layouts, run_playbook):
    """A private RGW: its gateway is SIGKILLed while blobs upload, then started again.

    The publish goes through a proxy that holds the sixth single-PUT blob upload, so the kill
    lands at a known point (the large blob and five small ones stored, the rest not), however
    fast or loaded the machine is; the rerun goes to the gateway directly.
    """
    from rig.ceph import RGW
    from rig.faults import FaultyProxy, kill_gateway, start_gateway
    from rig.procs import wait_until
    gateway = RGW(name="ceph-kill").start()
    proxy = None
    try:
        client = gateway.client()
        bucket = "killed"
        client.create_bucket(Bucket=bucket)
        args = task_args(gateway, bucket, src=layouts.family, tags=["1.0"], acl="public-read")
        assert publish(run_playbook, args)["changed"] is True

        def stored_blobs():
            return len([k for k, s in all_objects(gateway, bucket) if k.startswith("oci-cas/")])
        before = stored_blobs()
        reader = IndexReader(gateway.client(), bucket)
        reader.start()

        proxy = FaultyProxy(gateway.port, hold_after=5,
                            match=lambda method, target: method == "PUT" and "/oci-cas/" in target and "?" not in target)
        args = task_args(gateway, bucket, src=layouts.big, max_concurrency=1, multipart_chunksize=5 * 1024 * 1024,
                         acl="public-read")
        outcome = {}
        publisher = threading.Thread(target=lambda: outcome.update(
            first=publish(run_playbook, dict(args, endpoint_url=proxy.url))))
        publisher.start()
        wait_until(lambda: proxy.holding, "the sixth small blob's PUT held at the proxy", timeout=180)
        kill_gateway(gateway)                         # SIGKILL, mid-upload
        proxy.release()
        publisher.join(300)
        first = outcome["first"]
        assert first.get("failed"), "the publish finished although the gateway was killed: %r" % first
        assert "s3://%s" % bucket in first["msg"] and "Traceback" not in first["msg"], first["msg"]
        print("failure while the gateway was down: %s" % first["msg"])

        start_gateway(gateway)
        index = json.loads(client.get_object(Bucket=bucket, Key="oci-index/team/app")["Body"].read())
        assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]] == ["1.0"]
        arrived = stored_blobs() - before
        assert 6 <= arrived < layouts.info["big"]["blobs"], arrived       # the large blob and 5 small ones

        again = publish(run_playbook, args)
        assert not again.get("failed") and again["changed"] is True, again
        assert again["blobs_sent"] == layouts.info["big"]["blobs"] - arrived, again   # what arrived stays
        checks = reader.checks
        wait_until(lambda: reader.checks > checks + 1, "the reader", timeout=60)
        reader.stopping.set()
        reader.join(30)
        assert reader.violations == [], reader.violations
        print("reader: %d complete checks, %d failed while the gateway was down" % (reader.checks, reader.errors))
        index = json.loads(client.get_object(Bucket=bucket, Key="oci-index/team/app")["Body"].read())
        assert sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]) == \
            sorted(["1.0"] + layouts.info["big"]["tag_list"])
    finally:
        if proxy is not None:
            proxy.close()
        gateway.stop()


def test_removing_a_tag_with_prune_deletes_only_unreferenced_blobs(rgw, bucket, layouts, run_playbook):
    assert publish(run_playbook, task_args(rgw, bucket, src=layouts.family))["changed"] is True
    other = publish(run_playbook, task_args(rgw, bucket, src=layouts.multiplatform, name="example.test/multi"))
    assert other["changed"] is True
    before = set(k for k, s in all_objects(rgw, bucket) if k.startswith("oci-cas/"))
    args = task_args(rgw, bucket, tags=["2.0", "2.0-rc/1"], state="absent", prune=True, prune_min_age=0)
    check = publish(run_playbook, args, check=True)
    assert check["changed"] is True and check["tags_removed"] == ["2.0", "2.0-rc/1"] and check["blobs_pruned"] > 0
    assert set(k for k, s in all_objects(rgw, bucket) if k.startswith("oci-cas/")) == before
    result = publish(run_playbook, args)
    assert not result.get("failed") and result["blobs_pruned"] == check["blobs_pruned"], result
    after = set(k for k, s in all_objects(rgw, bucket) if k.startswith("oci-cas/"))
    assert len(before - after) == result["blobs_pruned"]
    reader = IndexReader(rgw.client(), bucket)
    reader.check_once()          # every remaining entry of both families still has all its blobs
    assert reader.violations == []
    again = publish(run_playbook, args)
    assert again["changed"] is False and again["blobs_pruned"] == 0, again


# -- the registry site layout (the default for new families with the registry view) and the view's objects


def keys(rgw, bucket, prefix):
    return set(k for k, s in all_objects(rgw, bucket) if k.startswith(prefix))


def test_a_family_keeps_its_layout_a_change_is_refused_and_prune_sees_both_layouts(rgw, bucket, layouts, run_playbook):
    old = publish(run_playbook, task_args(rgw, bucket, src=layouts.family))              # cas_bucket, as before
    assert old["changed"] and old["site_layout"] == "cas_bucket", old
    default = dict(task_args(rgw, bucket, src=layouts.family))
    del default["site_layout"]
    kept = publish(run_playbook, default)
    assert kept["changed"] is False and kept["site_layout"] == "cas_bucket", kept        # its index says cas_bucket
    objects = dict(all_objects(rgw, bucket))
    moved = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, site_layout="registry"))
    assert moved.get("failed") and "was published with site_layout cas_bucket, not registry" in moved["msg"], moved
    assert dict(all_objects(rgw, bucket)) == objects, "a refused change of layout wrote something"

    multi = dict(task_args(rgw, bucket, src=layouts.multiplatform, name="example.test/multi"))
    del multi["site_layout"]
    new = publish(run_playbook, multi)
    assert new["changed"] and new["site_layout"] == "registry" and new["registry_blobs_copied"] == 0, new
    assert keys(rgw, bucket, "oci-cas/") == set(k for k in objects if k.startswith("oci-cas/"))  # nothing shared
    reader = IndexReader(rgw.client(), bucket)
    reader.check_once()
    assert reader.violations == []

    # Prune of the cas_bucket family walks every index under oci-index/, the registry family's too.
    args = task_args(rgw, bucket, tags=["2.0", "2.0-rc/1"], state="absent", prune=True, prune_min_age=0)
    view_before = keys(rgw, bucket, "v2/team/app/")
    pruned = publish(run_playbook, args)
    assert not pruned.get("failed") and pruned["blobs_pruned"] > 0, pruned
    assert pruned["registry_objects_pruned"] > 0, pruned      # copies and manifests 2.0 alone reached
    view_after = keys(rgw, bucket, "v2/team/app/")
    assert len(view_before - view_after) == pruned["registry_objects_pruned"] + 1   # + the tag object 2.0
    reader.check_once()
    assert reader.violations == []
    # What the view still names is all there: every remaining tag's manifest, config and layers.
    client = rgw.client()
    for tag in ("1.0", "1.1"):
        manifest = json.loads(client.get_object(Bucket=bucket, Key="v2/team/app/manifests/%s" % tag)["Body"].read())
        for blob in [manifest["config"]] + manifest["layers"]:
            assert "v2/team/app/blobs/%s" % blob["digest"] in view_after, (tag, blob)

    # Prune of the registry family: its own blobs and manifests by digest under v2/multi/.
    multi_before = keys(rgw, bucket, "v2/multi/")
    args = dict(multi, tags=["nested"], state="absent", prune=True, prune_min_age=0)
    del args["src"]
    gone = publish(run_playbook, args)
    assert not gone.get("failed") and gone["site_layout"] == "registry", gone
    removed = multi_before - keys(rgw, bucket, "v2/multi/")
    assert len(removed) == gone["blobs_pruned"] + gone["registry_objects_pruned"] + 1, (removed, gone)
    reader.check_once()
    assert reader.violations == []
    again = publish(run_playbook, args)
    assert again["changed"] is False and again["blobs_pruned"] == 0 and again["registry_objects_pruned"] == 0, again


def test_drifted_headers_of_view_objects_are_fixed_and_a_rerun_makes_no_head(rgw, bucket, layouts, run_playbook):
    args = task_args(rgw, bucket, src=layouts.family, acl="public-read")
    assert publish(run_playbook, args)["changed"] is True
    media_types = blob_media_types(layouts.family)
    copy = sorted(keys(rgw, bucket, "v2/team/app/blobs/"))[0]
    for key, content_type in ((copy, "binary/octet-stream"), ("v2/team/app/manifests/1.0", "text/plain"),
                              ("v2/team/app/tags/list", "text/plain")):
        copy_with_headers(rgw, bucket, key, content_type=content_type)
    log = RequestLog(rgw).start()
    fixed = publish(run_playbook, args)
    log.stop()
    assert fixed["changed"] is True and fixed["objects_fixed"] == 3, fixed
    assert log.count("HEAD", "/%s/" % bucket) == 3, log.requests   # the three rewritten behind its back, no others
    assert fixed["requests"]["upload"] == 0 and fixed["requests"]["put"] <= 1, fixed["requests"]   # the ledger
    for key in (copy, "v2/team/app/manifests/1.0", "v2/team/app/tags/list"):
        status, headers, body = anonymous_get(rgw, bucket, key)
        assert (headers["Content-Type"], headers["Cache-Control"]) == expected_headers(media_types, key, body), key
    log = RequestLog(rgw).start()
    again = publish(run_playbook, args)
    log.stop()
    assert again["changed"] is False and again["objects_fixed"] == 0, again
    assert log.count("PUT") == 0 and log.count("HEAD", "/%s/" % bucket) == 0, log.requests


def test_web_root_and_bucket_refuse_the_same_bad_requests_with_the_same_words(
        rgw, bucket, layouts, run_playbook, public_tmp_path):
    """One publish sequence: publish_layout and s3_publish_layout refuse alike, and write nothing."""
    from ansible_collections.oci.discovery.plugins.module_utils._digests import digest_bytes
    root = os.path.join(public_tmp_path, "site")
    empty = digest_bytes(b"").split(":", 1)[1]
    # A CAS template that only leads to the blob of empty content: a check with a sample digest of
    # empty input (as s3_publish_layout used to do) lets it through; a blob of the layout does not.
    bad_template = "https://example.test/oci-cas/sha256/%s/%s" % (empty[:2], empty)
    cases = {"absent without tags or src": {"state": "absent"},
             "template for another blob": {"src": layouts.family, "cas_template": bad_template}}
    tasks = []
    for label, extra in cases.items():
        tasks.append({"name": "web root: " + label, "oci.discovery.publish_layout": dict(name=NAME, root=root, **extra),
                      "ignore_errors": True})
        tasks.append({"name": "bucket: " + label, MODULE: task_args(rgw, bucket, **extra), "ignore_errors": True})
    result = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    for label in cases:
        web, s3 = result.result("web root: " + label), result.result("bucket: " + label)
        assert web.get("failed") and s3.get("failed"), (web, s3)
        assert web["msg"] == s3["msg"], (label, web["msg"], s3["msg"])
    assert "state=absent needs the tags to remove" in result.result("web root: absent without tags or src")["msg"]
    assert "does not match the site" in result.result("web root: template for another blob")["msg"]
    assert not os.path.exists(root)
    assert rgw.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# --------------------------------------------------------------------------- real AWS defaults (issue 15)

SYNC_S3 = [{"ansible.builtin.import_playbook": "oci.discovery.sync_s3"}]
ALL_BLOCKED = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
               "RestrictPublicBuckets": True}


def role_site(rgw, bucket, layouts, **extra):
    site = {"s3_publisher_bucket": bucket, "s3_publisher_ceph": True,
            "s3_publisher_endpoint_url": rgw.tls_endpoint, "s3_publisher_aws_ca_bundle": rgw.ca_path,
            "s3_publisher_region": rgw.region, "s3_publisher_access_key": rgw.access_key,
            "s3_publisher_secret_key": rgw.secret_key,
            "s3_publisher_images": [{"name": NAME, "src": layouts.family}]}
    site.update(extra)
    return site


def bucket_exists(rgw, bucket):
    import botocore.exceptions
    try:
        rgw.client().head_bucket(Bucket=bucket)
        return True
    except botocore.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e
        return False


def test_first_run_check_with_bucket_creation_reports_what_it_would_write(rgw, layouts, run_playbook):
    """The README's `--check --diff first`: nothing exists yet, nothing is created, the blobs are counted."""
    bucket = "t-%s" % uuid.uuid4().hex[:12]
    site = role_site(rgw, bucket, layouts, s3_publisher_create_bucket=True)
    result = run_playbook(SYNC_S3, extra_vars=site, check=True, diff=True)
    assert not result.failed, str(result)
    published = result.result("oci.discovery.s3_publisher : Publish the images")["results"][0]
    media_types = blob_media_types(layouts.family)
    assert published["bucket_exists"] is False and published["changed"] is True
    assert published["blobs_sent"] == len(media_types) and published["bytes_sent"] > 0
    assert sorted(published["tags_added"]) == sorted(layouts.info["family"]["tag_list"])
    task = result.result("oci.discovery.s3_publisher : Publish the images")
    warnings = task.get("warnings", []) + published.get("warnings", [])
    assert any("bucket %s does not exist" % bucket in w for w in warnings), task
    assert result.result("oci.discovery.s3_publisher : Publish the well-known document")["well_known_changed"] is True
    assert not bucket_exists(rgw, bucket)


def test_a_bucket_with_the_public_access_block_on_gets_its_policy_and_no_list_buckets(rgw, layouts, run_playbook):
    """A bucket as AWS creates them (all four public-access settings on) refuses a public policy:
    the role turns off exactly what the policy needs, and finds the bucket with HeadBucket, not
    ListBuckets (s3:ListAllMyBuckets is not needed). RGW 16.2 implements PutPublicAccessBlock and
    refuses the policy while BlockPublicPolicy is on, as AWS does."""
    bucket = "t-%s" % uuid.uuid4().hex[:12]
    client = rgw.client(tls=True)
    client.create_bucket(Bucket=bucket)
    client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=ALL_BLOCKED)
    log = RequestLog(rgw).start()
    result = run_playbook(SYNC_S3, extra_vars=role_site(rgw, bucket, layouts))
    log.stop()
    assert not result.failed, str(result)
    assert [r for r in log.requests if r["method"] == "GET" and r["path"] in ("/", "/?x-id=ListBuckets")] == [], \
        log.requests
    assert client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
    status, headers, body = anonymous_get(rgw, bucket, ".well-known/oci-host-ref-engines", tls=True)
    assert status == 200 and json.loads(body)["refEngines"], (status, body)
    again = run_playbook(SYNC_S3, extra_vars=role_site(rgw, bucket, layouts))
    assert not again.failed and again.changed_count == 0, str(again)

    # Kept as the user sets it: the block on, no public policy, the play says what refused it.
    other = "t-%s" % uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=other)
    keep = dict((k, True) for k in ("block_public_acls", "ignore_public_acls", "block_public_policy",
                                    "restrict_public_buckets"))
    refused = run_playbook(SYNC_S3, extra_vars=role_site(rgw, other, layouts, s3_publisher_public_access_block=keep))
    assert refused.failed
    assert any("AccessDenied" in msg for dummy, dummy, msg in refused.failures()), str(refused)
    assert client.get_public_access_block(Bucket=other)["PublicAccessBlockConfiguration"] == ALL_BLOCKED
    assert all_objects(rgw, other) == []


@pytest.mark.parametrize("prefix", ["sites/*", "a?b"])
def test_a_prefix_with_wildcards_is_refused_before_anything_is_written(rgw, bucket, layouts, run_playbook, prefix):
    """`*` and `?` in the prefix would widen the public-read policy to other keys."""
    result = run_playbook(SYNC_S3, extra_vars=role_site(rgw, bucket, layouts, s3_publisher_prefix=prefix))
    assert result.failed
    assert any("contains '*' or '?'" in msg for dummy, dummy, msg in result.failures()), str(result)
    direct = publish(run_playbook, task_args(rgw, bucket, src=layouts.family, prefix=prefix))
    assert direct["failed"] and "S3 policies read * and ? as wildcards" in direct["msg"], direct
    assert all_objects(rgw, bucket) == []
    import botocore.exceptions
    with pytest.raises(botocore.exceptions.ClientError):
        rgw.client().get_bucket_policy(Bucket=bucket)


@pytest.mark.parametrize("name", ["images*", "images\n", "a/b"])
def test_a_bucket_name_that_would_widen_the_policy_is_refused(rgw, layouts, run_playbook, name):
    result = run_playbook(SYNC_S3, extra_vars=role_site(rgw, name, layouts, s3_publisher_create_bucket=True))
    assert result.failed
    assert any("is not a bucket name" in msg for dummy, dummy, msg in result.failures()), str(result)
    assert [t for t in result.task_names() if "Create the bucket" in t] == []


def test_play_module_defaults_reach_the_role_and_group_aws_does_not_reach_the_module(
        rgw, bucket, layouts, run_playbook):
    """group/oci.discovery.aws carries the connection to every task of the role (the role passes
    only what it was given, so validate_certs and the rest stay the play's); group/aws is
    amazon.aws's group, which does not list this collection's module."""
    site = role_site(rgw, bucket, layouts)
    for key in ("s3_publisher_endpoint_url", "s3_publisher_aws_ca_bundle", "s3_publisher_region",
                "s3_publisher_access_key", "s3_publisher_secret_key"):
        del site[key]
    play = [{"hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/oci.discovery.aws": rgw.module_args(tls=True)},
             "roles": [{"role": "oci.discovery.s3_publisher"}]}]
    env = {"AWS_CA_BUNDLE": None, "AWS_ENDPOINT_URL": None}
    result = run_playbook(play, extra_vars=site, env=env)
    assert not result.failed, str(result)
    assert result.result("oci.discovery.s3_publisher : Publish the images")["results"][0]["blobs_sent"] == len(blob_media_types(layouts.family))

    # The secret key comes only from the group's defaults: the module signs its requests (and
    # publishes) only when the group reaches it. Every request goes to the RGW on loopback.
    connection = rgw.module_args(tls=True)
    args = dict(connection, bucket=bucket, name=NAME, src=layouts.family, tags=["1.0"])
    del args["secret_key"]
    env = dict(env, AWS_SECRET_ACCESS_KEY=None, AWS_SECRET_KEY=None, AWS_PROFILE=None, AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    outcomes = {}
    for group in ("group/oci.discovery.aws", "group/aws", "group/amazon.aws.aws"):
        play = [{"hosts": "localhost", "gather_facts": False,
                 "module_defaults": {group: {"secret_key": connection["secret_key"]}},
                 "tasks": [{"name": "publish", MODULE: args, "ignore_errors": True}]}]
        outcomes[group] = run_playbook(play, env=env).result("publish")
    assert not outcomes["group/oci.discovery.aws"].get("failed"), outcomes
    assert outcomes["group/aws"].get("failed") and outcomes["group/amazon.aws.aws"].get("failed"), outcomes


@pytest.fixture(scope="module")
def old_botocore_python():
    """The Python of a small venv (under .tmp, from PyPI) with boto3/botocore 1.35, below the floor."""
    import subprocess
    import sys
    from rig.procs import REPO
    venv = os.path.join(REPO, ".tmp", "venv-botocore-1.35")
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".installed")
    if not os.path.exists(marker):
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "boto3==1.35.99", "botocore==1.35.99"], check=True)
        open(marker, "w").close()
    return python


def test_botocore_below_the_floor_fails_with_a_message_naming_it(rgw, bucket, layouts, run_playbook,
                                                                 old_botocore_python):
    """botocore 1.35 has no request_checksum_calculation: the module says what it needs instead of a
    TypeError traceback, and writes nothing."""
    from rig.ansible import local_inventory
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "publish", MODULE: task_args(rgw, bucket, src=layouts.family), "ignore_errors": True}]}]
    outcome = run_playbook(play, inventory=local_inventory(ansible_python_interpreter=old_botocore_python)
                           ).result("publish")
    assert outcome.get("failed"), outcome
    assert "botocore" in outcome["msg"] and "1.36.0" in outcome["msg"] and "1.35.99" in outcome["msg"], outcome
    assert "Traceback" not in json.dumps(outcome) and "TypeError" not in json.dumps(outcome), outcome
    assert all_objects(rgw, bucket) == []
