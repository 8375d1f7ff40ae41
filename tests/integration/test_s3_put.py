# -*- coding: utf-8 -*-
"""Blob uploads (plugins/module_utils/_s3_put.py) against a real Ceph RGW on loopback.

The direct path (blob PUTs signed by botocore's S3SigV4Auth and sent by the client's HTTP
session, without the client pipeline) must behave as the pipeline does: exact headers,
retries on 503 and on connection errors, the same error messages, refreshed credentials,
the client's proxies. A tiny loopback proxy (``rig.faults.FaultyProxy``) stands between the client and
RGW where a test needs failures or needs to see the requests.
"""
import hashlib
import json
import os
import time
import urllib.request
import uuid

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._s3 import BLOB_CACHE_CONTROL, S3Store
from ansible_collections.oci.discovery.plugins.module_utils._s3_errors import S3Error
from ansible_collections.oci.discovery.plugins.module_utils._s3_put import ClientPuts, DirectPuts, putter
from rig.faults import FaultyProxy
from rig.procs import free_port

MIB = 1024 * 1024
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def bucket(rgw):
    name = "t-%s" % uuid.uuid4().hex[:12]
    rgw.client().create_bucket(Bucket=name)
    return name


class Blobs:
    """Blob files in a directory, as plan dicts; ``open`` is the source of ``put_blobs``."""

    def __init__(self, root):
        self.root = root
        self.paths = {}

    def add(self, data, media_type=LAYER, actual=None):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = os.path.join(str(self.root), digest[7:])
        with open(path, "wb") as handle:
            handle.write(data if actual is None else actual)
        blob = {"key": "oci-cas/sha256/%s/%s" % (digest[7:9], digest[7:]), "digest": digest, "size": len(data),
                "mediaType": media_type}
        self.paths[blob["key"]] = path
        return blob

    def open(self, blob):
        return open(self.paths[blob["key"]], "rb")


@pytest.fixture
def proxies():
    started = []

    def start(rgw, **kwargs):
        proxy = FaultyProxy(rgw.port, **kwargs)
        started.append(proxy)
        return proxy
    yield start
    for proxy in started:
        proxy.close()


def anonymous_get(rgw, bucket, key, tls=False):
    import ssl
    context = ssl.create_default_context(cafile=rgw.ca_path) if tls else None
    with urllib.request.urlopen(rgw.url(bucket, key, tls=tls), timeout=20, context=context) as response:
        return response.headers, response.read()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_direct_puts_serve_exact_headers_single_and_multipart(rgw, bucket, tmp_path, tls):
    blobs = Blobs(tmp_path)
    small = blobs.add(os.urandom(8192))
    typed = blobs.add(b'{"a": 1}', media_type="application/vnd.oci.image.config.v1+json; charset=utf-8")
    untyped = blobs.add(b"raw bytes", media_type=None)
    large = blobs.add(os.urandom(11 * MIB + 17))      # three parts of 5 MiB, the last short
    store = S3Store(rgw.client(tls=tls), bucket, acl="public-read", blob_cache_control="public, max-age=7",
                    multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    assert store.put_blobs([small, typed, untyped, large], blobs) == sum(b["size"] for b in (small, typed, untyped, large))
    assert isinstance(store.blob_puts(), DirectPuts), store.blob_puts().reason
    for blob, content_type in ((small, LAYER), (typed, typed["mediaType"]), (untyped, "application/octet-stream"),
                               (large, LAYER)):
        headers, body = anonymous_get(rgw, bucket, blob["key"], tls=tls)       # public-read applied
        assert headers["Content-Type"] == content_type
        assert headers["Cache-Control"] == "public, max-age=7"
        assert hashlib.sha256(body).hexdigest() == blob["digest"][7:]
    head = rgw.client().head_object(Bucket=bucket, Key=large["key"])
    assert head["ETag"].strip('"').endswith("-3")                              # multipart, 3 parts
    assert rgw.client().head_object(Bucket=bucket, Key=small["key"])["ETag"].strip('"') == \
        hashlib.md5(open(blobs.paths[small["key"]], "rb").read()).hexdigest()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_direct_puts_refuse_bytes_that_do_not_match_and_leave_nothing(rgw, bucket, tmp_path, tls):
    """Over https the parts go unsigned: the whole-blob verification alone must refuse them."""
    blobs = Blobs(tmp_path)
    good, big = os.urandom(4096), os.urandom(12 * MIB)
    store = S3Store(rgw.client(tls=tls), bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    for declared, actual in ((good, good[:-1] + b"?"), (big, big[:6 * MIB] + b"?" + big[6 * MIB + 1:]),
                             (big, big + b"tail"), (big, big[:-1])):
        blob = blobs.add(declared, actual=actual)
        with pytest.raises(VerificationError, match=blob["digest"]):
            store.put_blobs([blob], blobs)
        assert isinstance(store.blob_puts(), DirectPuts)
        assert rgw.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        assert rgw.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _payload_hashes(store):
    """Spy on the client's HTTP session: {"object" or "part": [X-Amz-Content-SHA256 of each PUT]}."""
    puts = store.blob_puts()
    assert isinstance(puts, DirectPuts), puts.reason
    seen, send = {}, puts._session.send

    def spy(request):
        if request.method == "PUT":         # not the client's own CreateMultipartUpload and Complete (POST)
            value = request.headers["X-Amz-Content-SHA256"]
            kind = "part" if "partNumber=" in request.url else "object"
            seen.setdefault(kind, []).append(value.decode("ascii") if isinstance(value, bytes) else value)
        return send(request)
    puts._session.send = spy
    return seen


@pytest.mark.parametrize("scheme,signing,parts_signed", [
    ("http", None, True), ("https", None, False), ("https", True, True)])
def test_parts_go_unsigned_only_over_https_and_unless_the_config_asks(rgw, bucket, tmp_path, scheme, signing,
                                                                      parts_signed):
    """A part's payload is signed over http (the server checks it); over https TLS carries it and the
    blob's digest is checked before completing, as botocore does for streaming uploads with a checksum,
    unless the client's s3 config sets payload_signing_enabled. Small blobs are signed with their digest."""
    from botocore.config import Config
    from rig.ceph import s3_config
    blobs = Blobs(tmp_path)
    data = os.urandom(7 * MIB)
    small, large = blobs.add(os.urandom(3000)), blobs.add(data)
    config = s3_config() if signing is None else s3_config().merge(Config(s3={"payload_signing_enabled": signing}))
    store = S3Store(rgw.client(tls=scheme == "https", config=config), bucket, multipart_threshold=5 * MIB,
                    multipart_chunksize=5 * MIB)
    seen = _payload_hashes(store)
    store.put_blobs([small, large], blobs)
    assert seen["object"] == [small["digest"][7:]]
    expected = [hashlib.sha256(data[:5 * MIB]).hexdigest(), hashlib.sha256(data[5 * MIB:]).hexdigest()]
    assert sorted(seen["part"]) == (sorted(expected) if parts_signed else ["UNSIGNED-PAYLOAD"] * 2)
    body = rgw.client().get_object(Bucket=bucket, Key=large["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == large["digest"][7:]


def test_a_503_from_the_server_is_retried_with_the_clients_retries(rgw, bucket, tmp_path, proxies):
    blobs = Blobs(tmp_path)
    small, large = blobs.add(os.urandom(1000)), blobs.add(os.urandom(6 * MIB))
    # The first PutObject and the first UploadPart each get a 503 SlowDown.
    proxy = proxies(rgw, fail=2, match=lambda method, target: method == "PUT")
    client = rgw.client(endpoint_url=proxy.url)            # the rig's retries: standard, 2 attempts
    store = S3Store(client, bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    assert store.put_blobs([small, large], blobs) == small["size"] + large["size"]
    assert isinstance(store.blob_puts(), DirectPuts)
    assert proxy.failed == 2
    puts = [target for method, target in proxy.seen if method == "PUT"]
    assert len(puts) == 2 + 1 + 2                           # small twice, two parts (one twice)
    for blob in (small, large):
        body = rgw.client().get_object(Bucket=bucket, Key=blob["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == blob["digest"][7:]


def failure(store, blobs, blob):
    with pytest.raises(S3Error) as caught:
        store.put_blobs([blob], blobs)
    return str(caught.value)


def test_errors_read_as_the_client_pipelines_do(rgw, bucket, tmp_path, proxies):
    """503 until the attempts run out, a connection refused, a wrong secret key: the same messages."""
    blobs = Blobs(tmp_path)
    blob = blobs.add(os.urandom(100))
    proxy = proxies(rgw, fail=1000)
    refused = free_port()
    cases = {
        "503": dict(endpoint_url=proxy.url),
        "refused": dict(endpoint_url="http://127.0.0.1:%d" % refused),
        "credentials": dict(aws_secret_access_key="not-the-secret-key"),
    }
    for name, options in cases.items():
        direct = S3Store(rgw.client(**options), bucket)
        pipeline = S3Store(rgw.client(**options), bucket, direct_puts=False)
        message = failure(direct, blobs, blob)
        assert isinstance(direct.blob_puts(), DirectPuts) and isinstance(pipeline.blob_puts(), ClientPuts)
        assert message == failure(pipeline, blobs, blob), name
        assert blob["digest"] in message and "s3://%s/%s" % (bucket, blob["key"]) in message
    assert "SlowDown (HTTP 503)" in failure(S3Store(rgw.client(**cases["503"]), bucket), blobs, blob)
    assert "Could not connect to the endpoint URL" in failure(S3Store(rgw.client(**cases["refused"]), bucket), blobs, blob)
    message = failure(S3Store(rgw.client(**cases["credentials"]), bucket), blobs, blob)
    assert "SignatureDoesNotMatch (HTTP 403)" in message
    assert "(check access_key/secret_key/session_token/profile and the bucket policy)" in message
    assert rgw.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_dropped_connection_is_retried(rgw, bucket, tmp_path, proxies):
    blobs = Blobs(tmp_path)
    blob = blobs.add(os.urandom(5000))
    proxy = proxies(rgw, fail=1, status=None)
    store = S3Store(rgw.client(endpoint_url=proxy.url), bucket)
    store.put_blobs([blob], blobs)
    assert proxy.failed == 1 and [m for m, t in proxy.seen].count("PUT") == 2
    assert rgw.client().head_object(Bucket=bucket, Key=blob["key"])["ContentLength"] == 5000


def test_the_clients_proxies_carry_the_direct_puts(rgw, bucket, tmp_path, proxies):
    from botocore.config import Config
    from rig.ceph import s3_config
    blobs = Blobs(tmp_path)
    blob = blobs.add(os.urandom(300))
    proxy = proxies(rgw)
    client = rgw.client(config=s3_config().merge(Config(proxies={"http": proxy.url})))
    store = S3Store(client, bucket)
    store.put_blobs([blob], blobs)
    assert isinstance(store.blob_puts(), DirectPuts)
    assert ("PUT", "%s/%s/%s" % (rgw.endpoint, bucket, blob["key"])) in proxy.seen     # absolute-form: a proxy


def test_refreshable_credentials_are_refreshed(rgw, bucket, tmp_path):
    """The client's credentials are about to expire and were wrong: the direct path signs with the refreshed ones."""
    import boto3
    import botocore.session
    from botocore.credentials import RefreshableCredentials
    from rig.ceph import s3_config
    refreshed = []

    def refresh():
        refreshed.append(1)
        return {"access_key": rgw.access_key, "secret_key": rgw.secret_key, "token": None,
                "expiry_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))}
    core = botocore.session.get_session()
    core._credentials = RefreshableCredentials.create_from_metadata(   # pylint: disable=protected-access
        {"access_key": rgw.access_key, "secret_key": "expired", "token": None,
         "expiry_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))}, refresh, "test")
    client = boto3.session.Session(botocore_session=core).client(
        "s3", endpoint_url=rgw.endpoint, region_name=rgw.region, config=s3_config())
    blobs = Blobs(tmp_path)
    blob = blobs.add(os.urandom(64))
    store = S3Store(client, bucket)
    store.put_blobs([blob], blobs)
    assert isinstance(store.blob_puts(), DirectPuts) and refreshed
    assert rgw.client().head_object(Bucket=bucket, Key=blob["key"])["ContentLength"] == 64


def test_the_pipeline_is_kept_where_the_direct_path_would_send_something_else(rgw, bucket, tmp_path):
    from botocore import UNSIGNED
    from botocore.config import Config
    from rig.ceph import s3_config
    checksums = rgw.client(config=s3_config().merge(Config(request_checksum_calculation="when_supported")))
    got = putter(checksums, bucket, {"ContentType": LAYER, "CacheControl": BLOB_CACHE_CONTROL})
    assert isinstance(got, ClientPuts) and "checksum" in got.reason.lower()
    adaptive = rgw.client(config=s3_config().merge(Config(retries={"mode": "adaptive"})))
    assert "adaptive" in putter(adaptive, bucket, {}).reason
    anonymous = rgw.client(config=s3_config().merge(Config(signature_version=UNSIGNED)))
    assert "SigV4" in putter(anonymous, bucket, {}).reason
    # The fallback uploads as before (checksums work over http), with the same headers.
    blobs = Blobs(tmp_path)
    blob = blobs.add(os.urandom(2048))
    store = S3Store(checksums, bucket)
    store.put_blobs([blob], blobs)
    assert isinstance(store.blob_puts(), ClientPuts)
    head = rgw.client().head_object(Bucket=bucket, Key=blob["key"])
    assert (head["ContentType"], head["CacheControl"]) == (LAYER, BLOB_CACHE_CONTROL)


def test_one_bad_big_blob_makes_none_of_the_batch_visible(rgw, bucket, tmp_path):
    """Big blobs go first and are completed only when all verified; small ones are sent after."""
    blobs = Blobs(tmp_path)
    small = blobs.add(os.urandom(4096))
    first = blobs.add(os.urandom(6 * MIB))
    data = os.urandom(11 * MIB)
    bad = blobs.add(data, actual=data[:9 * MIB] + b"?" + data[9 * MIB + 1:])
    store = S3Store(rgw.client(), bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB,
                    max_concurrency=3)
    assert [store.verifies_on_arrival(b) for b in (small, first, bad)] == [False, True, True]
    with pytest.raises(VerificationError, match=bad["digest"]):
        store.put_blobs([small, first, bad], blobs)
    assert rgw.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0      # not even the good big one
    assert rgw.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert store.put_blobs([small, first], blobs) == small["size"] + first["size"]
    assert sorted(o["Key"] for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"]) == \
        sorted([small["key"], first["key"]])


def _layout_with_a_big_layer(root, layer):
    from rig import layouts
    layouts.init_layout(root)
    config = layouts.descriptor(root, "application/vnd.oci.image.config.v1+json",
                                {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
                "layers": [layouts.descriptor(root, LAYER, layer), layouts.descriptor(root, LAYER, b"small layer")]}
    layouts.set_tag(root, "1.0", layouts.descriptor(root, "application/vnd.oci.image.manifest.v1+json", manifest))


def test_the_controller_leaves_big_blobs_to_the_upload_and_records_them(rgw, bucket, tmp_path, monkeypatch):
    """Each byte of a big layer is hashed once on a first publish (by the upload), none on the next run."""
    from ansible_collections.oci.discovery.plugins.module_utils import _publish, _record
    from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
    from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = str(tmp_path / "layout")
    layer = os.urandom(7 * MIB)
    _layout_with_a_big_layer(root, layer)
    time.sleep(_record.SETTLE_NS / 1e9 + 0.05)          # settled: the record may vouch for the files

    def publish(source=root):
        layout = Layout(source)
        store = S3Store(rgw.client(), bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
        outcome = _publish.run(_publish.StoreTarget(store), _publish.Request(SiteLayout("cas_bucket", "example.com/app")),
                               layout)
        return layout, outcome

    layout, outcome = publish()
    assert outcome.result["blobs_sent"] == 4         # config, two layers, manifest
    assert layout.hashed == 2                            # the config and the small layer; the big one at upload
    keys = [o["Key"] for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"]
            if o["Key"].endswith(hashlib.sha256(layer).hexdigest())]
    assert len(keys) == 1, keys
    body = rgw.client().get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(layer).hexdigest()
    layout, outcome = publish()
    assert outcome.result["changed"] is False and layout.hashed == 0    # the upload's verification recorded

    # A big layer that does not match its digest: refused by the upload, the bucket as it was.
    other = str(tmp_path / "other")
    _layout_with_a_big_layer(other, os.urandom(6 * MIB))
    from rig.layouts import blob_path
    big = [d for d in json.loads(open(blob_path(other, read_manifest_digest(other)), "rb").read())["layers"]
           if d["size"] > MIB][0]
    with open(blob_path(other, big["digest"]), "r+b") as handle:
        handle.seek(3 * MIB)
        handle.write(b"?")
    before = sorted((o["Key"], o["ETag"]) for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"])
    with pytest.raises(VerificationError, match=big["digest"]):
        publish(other)
    assert sorted((o["Key"], o["ETag"]) for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"]) == before
    assert rgw.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def read_manifest_digest(root):
    from rig.layouts import read_index
    return read_index(root)["manifests"][0]["digest"]


def test_retried_puts_give_the_retry_quota_back(rgw, bucket, tmp_path, proxies):
    """Standard retries spend a quota (500; 14 per retry after a dropped connection) that a success gives
    back in the client's after-call event: 50 PUTs each dropped once all succeed (35 retries would
    exhaust a quota that is never given back, and the 36th would fail)."""
    from concurrent.futures import ThreadPoolExecutor
    from botocore.config import Config
    from rig.ceph import s3_config
    tried = set()

    def first_attempt(method, target):
        if method != "PUT" or target in tried:
            return False
        tried.add(target)
        return True
    proxy = proxies(rgw, fail=10 ** 6, status=None, match=first_attempt)
    client = rgw.client(endpoint_url=proxy.url, config=s3_config().merge(Config(retries={"mode": "standard",
                                                                                         "max_attempts": 3})))
    puts = putter(client, bucket, {"ContentType": LAYER})
    assert isinstance(puts, DirectPuts), puts.reason
    keys = ["quota/%02d" % n for n in range(50)]
    with ThreadPoolExecutor(8) as pool:
        etags = list(pool.map(lambda key: puts.put_object(key, b"x" * 100, {"ContentType": LAYER}), keys))
    assert all(etags) and proxy.failed == 50
    assert rgw.client().list_objects_v2(Bucket=bucket, Prefix="quota/")["KeyCount"] == 50
