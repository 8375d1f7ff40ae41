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
    args = {"bucket": bucket, "name": NAME, "endpoint_url": rgw.endpoint_url(tls), "region": rgw.region,
            "access_key": rgw.access_key, "secret_key": rgw.secret_key}
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


def expected_headers(layout_info_blobs, key):
    """(Content-Type, Cache-Control) the published object `key` must be served with."""
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


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_publish_serves_exact_headers_and_rerun_sends_nothing(rgw, bucket, layouts, run_playbook, tls):
    args = task_args(rgw, bucket, tls, src=layouts.family, well_known=True, acl="public-read")
    log = RequestLog(rgw).start()
    first = publish(run_playbook, args)
    log.stop()
    assert not first.get("failed"), first
    assert first["changed"] is True
    assert sorted(first["tags_added"]) == sorted(layouts.info["family"]["tag_list"])
    media_types = blob_media_types(layouts.family)
    assert first["blobs_sent"] == len(media_types)
    assert first["well_known_changed"] is True
    assert log.count("HEAD", "/oci-cas/") == 0   # nothing existed: nothing to HEAD

    published = [key for key, size in all_objects(rgw, bucket) if key != LEDGER]
    assert len(published) == len(media_types) + 2
    for key in published:
        status, headers, body = anonymous_get(rgw, bucket, key, tls)
        assert status == 200, (key, status)
        assert (headers["Content-Type"], headers["Cache-Control"]) == expected_headers(media_types, key), key
        if key.startswith("oci-cas/"):
            assert "sha256:" + hashlib.sha256(body).hexdigest() == "sha256:" + key.rsplit("/", 1)[1]
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
    assert log.count("HEAD", "/oci-cas/") == 0, log.requests
    assert log.list_pages(bucket) == 1, log.requests
    assert second["requests"]["list_pages"] == 1
