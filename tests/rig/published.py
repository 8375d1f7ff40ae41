# -*- coding: utf-8 -*-
"""Published sites, seen from outside: serving them, snapshotting them, reading them as a consumer.

    site_config(root)              nginx server body serving a web root published by the collection
                                   (both site layouts), with the media types of DISCOVERY.md section 6
    snapshot_tree(root)            {relative path: (type, mode, uid, gid, size, mtime_ns, inode, sha256 or
                                   link target)} of everything under root, private state included:
                                   equal snapshots mean nothing was written, renamed or touched
    snapshot_bucket(client, bucket)  {key: (size, ETag, LastModified, sha256 of the body, Content-Type,
                                   Cache-Control, Content-Encoding, metadata, ACL grants)} from a LIST and
                                   a GET (+ GetObjectAcl) of every object, plus the multipart uploads
                                   in progress

    reader = SiteReader(http_getter(base_url) or s3_getter(client, bucket), family_path, site_layout,
                        expected={tag: digest})
    reader.check()                 one consumer's look at the site (see SiteReader)
    reader.poll_in_background(); ...; reader.stop()
"""
import hashlib
import json
import os
import stat
import threading
import time
import urllib.error
import urllib.request

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_REF_ENGINES = "application/vnd.oci.ref-engines.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
WELL_KNOWN = ".well-known/oci-host-ref-engines"
INDEX_TYPES = (MT_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = (MT_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")


# --------------------------------------------------------------------------- nginx

def _json_type(media_type, cache):
    return ('types {} default_type %s; charset utf-8; charset_types *; add_header Cache-Control "%s";'
            % (media_type, cache))


BLOB_TYPE = 'types {} default_type application/octet-stream; ' \
            'add_header Cache-Control "public, max-age=31536000, immutable";'


def site_config(root):
    """nginx server body serving a site root published by the collection (both site layouts).

    Only the published paths are served (the private .oci-discovery/ is not):
    the well-known document and indexes with their exact media types and
    charset=utf-8, blobs as application/octet-stream with an immutable cache
    lifetime; layouts as directories need a regex location for index.json.
    """
    return "\n".join([
        "root %s;" % root,
        "location / { return 404; }",
        "location = /.well-known/oci-host-ref-engines { %s }" % _json_type(MT_REF_ENGINES, 'max-age=300'),
        "location /oci-index/ { %s }" % _json_type(MT_INDEX, 'max-age=60'),
        "location /oci-cas/ { %s }" % BLOB_TYPE,
        "location /oci-image/ { %s location ~ /index\\.json$ { %s } }"
        % (BLOB_TYPE, _json_type(MT_INDEX, 'max-age=60')),
    ])


# --------------------------------------------------------------------------- snapshots

def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_tree(root):
    """Everything under `root` (see the module docstring); directories' mtimes included."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames if dirpath == root else dirnames + filenames:
            path = os.path.join(dirpath, name) if name else root
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                kind, content = "dir", None
            elif stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif not stat.S_ISREG(st.st_mode):
                kind, content = "special", stat.S_IFMT(st.st_mode)    # a FIFO: reading it would block
            else:
                kind, content = "file", _sha256_file(path)
            state[os.path.relpath(path, root)] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                                                  st.st_mtime_ns, st.st_ino, content)
    return state


def served_tree(root, state_dir=".oci-discovery"):
    """{relative path: sha256} of the files a web server serves from `root` (the store's private state left out)."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and state_dir in dirnames:
            dirnames.remove(state_dir)
        for name in filenames:
            path = os.path.join(dirpath, name)
            tree[os.path.relpath(path, root)] = _sha256_file(path)
    return tree


def snapshot_bucket(client, bucket):
    """Every object of `bucket` with its bytes' hash, headers and ACL; plus multipart uploads."""
    state = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            got = client.get_object(Bucket=bucket, Key=key)
            body = got["Body"].read()
            acl = client.get_object_acl(Bucket=bucket, Key=key)
            grants = sorted(json.dumps(g, sort_keys=True) for g in acl.get("Grants", []))
            state[key] = (obj["Size"], obj["ETag"], obj["LastModified"].isoformat(), hashlib.sha256(body).hexdigest(),
                          got.get("ContentType"), got.get("CacheControl"), got.get("ContentEncoding"),
                          tuple(sorted((got.get("Metadata") or {}).items())), tuple(grants))
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    state["<multipart uploads>"] = tuple(sorted(u["Key"] for u in uploads))
    return state


def describe_difference(before, after):
    """A short text naming what differs between two snapshots."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append("removed: %s" % key)
        elif key not in before:
            lines.append("added: %s" % key)
        elif before[key] != after[key]:
            lines.append("changed: %s %r -> %r" % (key, before[key], after[key]))
    return "\n".join(lines[:20]) + ("\n..." if len(lines) > 20 else "")


# --------------------------------------------------------------------------- a consumer

class Unavailable(Exception):
    """The store did not answer (connection refused, reset, timeout): not a finding."""


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_getter(base_url, timeout=5):
    """get(key) -> bytes, or None for 404, through a web server (no proxy)."""
    base = base_url.rstrip("/")

    def get(key):
        try:
            with _OPENER.open("%s/%s" % (base, key), timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise AssertionError("GET %s/%s: HTTP %d" % (base, key, e.code))
        except (urllib.error.URLError, OSError) as e:
            raise Unavailable("%s/%s: %s" % (base, key, e))
    return get


def s3_getter(client, bucket):
    """get(key) -> bytes, or None when the object does not exist, through S3 GetObject."""
    from botocore.exceptions import BotoCoreError, ClientError

    def get(key):
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            if status is not None and status >= 500:
                raise Unavailable("s3://%s/%s: %s" % (bucket, key, e))
            raise AssertionError("GET s3://%s/%s: %s" % (bucket, key, e))
        except (BotoCoreError, OSError) as e:
            raise Unavailable("s3://%s/%s: %s" % (bucket, key, e))
    return get


class SiteReader(object):
    """A consumer polling one family of a published site.

    Each `check()` reads the family index; every entry must lead to blobs that are all
    there and complete (each fetched blob is hashed: its digest must match; manifests and
    indexes are followed to their config, layers and children). A missing or corrupt
    blob, an index that is not JSON, an entry whose tag points at a digest other than
    `expected[tag]`, or (layouts as directories) an index.json served before the layout's
    oci-layout file is a *problem*. A store that does not answer is not (counted as
    `unavailable`). Blobs once verified are not fetched again (content-addressed).
    """

    def __init__(self, get, family_path, site_layout="cas_bucket", expected=None, algorithm="sha256"):
        self.get = get
        self.site_layout = site_layout
        self.family_path = family_path
        self.expected = dict(expected or {})
        if site_layout == "cas_bucket":
            self.index_key = "oci-index/%s" % family_path
            self.header_key = None
        else:
            self.index_key = "oci-image/%s/index.json" % family_path
            self.header_key = "oci-image/%s/oci-layout" % family_path
        self.verified = set()
        self.problems = []
        self.rounds = 0
        self.rounds_with_index = 0
        self.unavailable = 0
        self.max_tags_seen = 0
        self.tags_seen = set()
        self.well_known_seen = False
        self._stop = threading.Event()
        self._thread = None

    def blob_key(self, digest):
        algorithm, encoded = digest.split(":", 1)
        if self.site_layout == "cas_bucket":
            return "oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded)
        return "oci-image/%s/blobs/%s/%s" % (self.family_path, algorithm, encoded)

    def _problem(self, text):
        if text not in self.problems:
            self.problems.append(text)

    def _verify(self, descriptor, via):
        """Fetch and verify the blob of `descriptor` and, recursively, what it references."""
        digest = descriptor.get("digest", "")
        if digest in self.verified:
            return
        data = self.get(self.blob_key(digest))
        if data is None:
            self._problem("%s refers to %s, which is not there" % (via, digest))
            return
        algorithm, encoded = digest.split(":", 1)
        if hashlib.new(algorithm, data).hexdigest() != encoded or len(data) != descriptor.get("size"):
            self._problem("%s refers to %s, served with other content (%d bytes)" % (via, digest, len(data)))
            return
        children = []
        media_type = descriptor.get("mediaType")
        if media_type in INDEX_TYPES or media_type in MANIFEST_TYPES:
            document = json.loads(data.decode("utf-8"))
            if media_type in INDEX_TYPES:
                children = document.get("manifests", [])
            else:
                children = [document["config"]] + list(document.get("layers", []))
        for child in children:
            self._verify(child, "%s -> %s" % (via, digest[:19]))
        self.verified.add(digest)

    def check(self):
        """One look; returns the tags the index lists (None when there is no index yet)."""
        try:
            data = self.get(self.index_key)
            if data is None:
                return None
            try:
                index = json.loads(data.decode("utf-8"))
                entries = index["manifests"]
            except (ValueError, KeyError, TypeError) as e:
                self._problem("%s is not a complete image index (%s): %r" % (self.index_key, e, data[:80]))
                return None
            if self.header_key is not None and self.get(self.header_key) is None:
                self._problem("%s is served, %s is not" % (self.index_key, self.header_key))
            tags = []
            for entry in entries:
                tag = (entry.get("annotations") or {}).get(REF_NAME)
                tags.append(tag)
                if tag in self.expected and entry.get("digest") != self.expected[tag]:
                    self._problem("tag %s points at %s, expected %s" % (tag, entry.get("digest"), self.expected[tag]))
                self._verify(entry, "index entry %r" % tag)
            well_known = self.get(WELL_KNOWN)
            if well_known is not None:
                try:
                    if not isinstance(json.loads(well_known.decode("utf-8")).get("refEngines"), list):
                        raise ValueError("no refEngines array")
                except (ValueError, AttributeError) as e:
                    self._problem("%s is not a complete ref-engines object (%s)" % (WELL_KNOWN, e))
                self.well_known_seen = True
        except Unavailable:
            self.unavailable += 1
            return None
        self.rounds_with_index += 1
        self.tags_seen.update(t for t in tags if t is not None)
        self.max_tags_seen = max(self.max_tags_seen, len(tags))
        return tags

    # -- in the background
    def _run(self, interval):
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - a reader crash is a finding, reported
                self._problem("reader error: %r" % (e,))
            self.rounds += 1
            self._stop.wait(interval)

    def poll_in_background(self, interval=0.01):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        return self

    def complete(self):
        """After a successful publish: every expected tag listed, pointing at its digest, all blobs there."""
        deadline = time.monotonic() + 10
        while True:
            tags = self.check()
            missing = sorted(set(self.expected) - set(tags or ()))
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)     # only a store that did not answer makes this loop
        return missing
