# -*- coding: utf-8 -*-
"""Real OCI image layouts for the tests and the repository's examples.

Builders (each writes a complete layout into an empty or missing directory and
returns nothing; facts about a built layout come from `describe()`):

  build_family(dst)         tags 1.0, 1.1, 2.0, 2.0-rc/1; umoci-made, real gzip
                            layers, one base layer shared by every tag
  build_multiplatform(dst)  per-platform manifests made with umoci (tags
                            1.0-linux-amd64, 1.0-linux-arm64-v8, 1.0-linux-ppc64le),
                            an image index over them tagged "1.0", and an index
                            whose only entry is that index tagged "nested"
  build_big(dst)            200 blobs (10 manifests, 10 configs, 180 gzip layers),
                            one layer ~30 MiB of incompressible data (tag "huge");
                            written directly in Python (umoci would take minutes)
  build_app(dst), build_multiarch(dst)   the small example layouts of examples/layouts/

Broken layouts: BROKEN_KINDS maps a kind to `maker(src_dir, dst_dir) -> dict`; the
maker copies the good layout `src_dir` (family or multiplatform) to `dst_dir` and
breaks the copy in exactly one way. The dict has:
  'expect'       a substring the error message must contain (a file name or a digest's hex)
  'what'         one line describing the damage
  'scope'        "layout" (the layout cannot be opened) or "tags" (only some tags are broken)
  'tags_broken'  for scope "tags": the tags that fail to validate; all others stay valid
  'digest'       the digest involved, where there is one (plus kind-specific extras)
A missing tag is not a kind: ask any layout for MISSING_TAG.

Caching: `cached_layouts()` builds family, multiplatform and big once under
.tmp/layout-cache/<BUILDER_VERSION>/ (the version is derived from this file's
content, so editing a builder invalidates the cache) and reuses them across runs.
A layout is rebuilt when its completion record is missing or a recorded file is
missing or has another size. Cached layouts are shared: tests that change a layout
must work on a copy (`LayoutSet.copy`).

Every file is world-readable (nginx workers run as nobody; umoci writes 0600).

Command line (used by scripts/make-example-layouts):
  PYTHONPATH=tests python -m rig.layouts examples DIR    write DIR/app and DIR/multiarch
  PYTHONPATH=tests python -m rig.layouts build NAME DIR  build one layout (family, multiplatform, big, app, multiarch)
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

from .procs import locked

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_ROOT = os.path.join(REPO, ".tmp", "layout-cache")

with open(os.path.abspath(__file__), "rb") as _self:
    BUILDER_VERSION = "v1-" + hashlib.sha256(_self.read()).hexdigest()[:12]

REF_NAME = "org.opencontainers.image.ref.name"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# Fixed times make the builds reproducible (same digests on every run).
CREATED = "2020-01-01T00:00:00Z"
MTIME = 1577836800

MISSING_TAG = "no-such-tag"


class BuildError(RuntimeError):
    """A layout could not be built (a tool failed or produced something unexpected)."""


# ---------------------------------------------------------------------------
# small layout primitives (no validation beyond what the builders need)

def _run(*argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise BuildError("%s failed (rc=%d): %s" % (
            " ".join(argv), proc.returncode, proc.stderr.decode("utf-8", "replace").strip()))
    return proc.stdout.decode("utf-8", "replace")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _split(digest):
    algorithm, _sep, encoded = digest.partition(":")
    return algorithm, encoded


def blob_path(root, digest):
    algorithm, encoded = _split(digest)
    return os.path.join(root, "blobs", algorithm, encoded)


def read_blob(root, digest):
    with open(blob_path(root, digest), "rb") as f:
        return f.read()


def read_json_blob(root, digest):
    return json.loads(read_blob(root, digest).decode("utf-8"))


def put_blob(root, data, algorithm="sha256"):
    """Store bytes as a blob; returns (digest, size)."""
    digest = "%s:%s" % (algorithm, hashlib.new(algorithm, data).hexdigest())
    path = blob_path(root, digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return digest, len(data)


def descriptor(root, media_type, obj_or_bytes, **extra):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else _dumps(obj_or_bytes)
    digest, size = put_blob(root, data)
    desc = {"mediaType": media_type, "digest": digest, "size": size}
    desc.update(extra)
    return desc


def read_index(root):
    with open(os.path.join(root, "index.json"), "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def write_index(root, index):
    path = os.path.join(root, "index.json")
    with open(path + ".tmp", "wb") as f:
        f.write(_dumps(index))
    os.rename(path + ".tmp", path)


def init_layout(root):
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "wb") as f:
        f.write(_dumps({"imageLayoutVersion": "1.0.0"}))
    write_index(root, {"schemaVersion": 2, "manifests": []})


def tag_entries(root, tag):
    return [m for m in read_index(root)["manifests"]
            if (m.get("annotations") or {}).get(REF_NAME) == tag]


def set_tag(root, tag, desc):
    """Point `tag` at `desc` in index.json (replacing its entries in place, else appending)."""
    index = read_index(root)
    entry = dict(desc)
    annotations = dict(entry.get("annotations") or {})
    annotations[REF_NAME] = tag
    entry["annotations"] = annotations
    out, placed = [], False
    for m in index["manifests"]:
        if (m.get("annotations") or {}).get(REF_NAME) == tag:
            if not placed:
                out.append(entry)
                placed = True
        else:
            out.append(m)
    if not placed:
        out.append(entry)
    index["manifests"] = out
    write_index(root, index)


def remove_tags(root, tags):
    index = read_index(root)
    index["manifests"] = [m for m in index["manifests"]
                          if (m.get("annotations") or {}).get(REF_NAME) not in tags]
    write_index(root, index)


def make_world_readable(root):
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def _tree(base, files):
    """Write {relative path: bytes} under base with fixed mtimes (reproducible layers)."""
    for rel, data in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME))
        os.utime(dirpath, (MTIME, MTIME))


def _tar_gz(files, level=1):
    """A gzip tar layer from {path: bytes}; returns (gz bytes, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for rel in files:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for rel in sorted(files):
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, MTIME
            tar.addfile(info, io.BytesIO(files[rel]))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return gzip.compress(tar_bytes, compresslevel=level, mtime=0), diff_id


# ---------------------------------------------------------------------------
# umoci-made images

class _Umoci(object):
    def __init__(self, root, work):
        self.root = root
        self.work = work
        self._n = 0
        _run("umoci", "init", "--layout", root)
        # `umoci new` stamps the current time; restamp it so builds are reproducible.
        _run("umoci", "new", "--image", root + ":tmp-new")
        _run("umoci", "config", "--image", root + ":tmp-new", "--tag", "tmp-empty",
             "--created", CREATED, "--no-history")

    def config(self, src, tag, *options):
        _run("umoci", "config", "--image", "%s:%s" % (self.root, src), "--tag", tag,
             "--created", CREATED, "--no-history", *options)

    def insert(self, src, tag, target, files, comment):
        """New tag `tag` = image `src` + one layer holding `files` at `target`."""
        self._n += 1
        base = os.path.join(self.work, "tree%d" % self._n)
        _tree(base, files)
        _run("umoci", "insert", "--image", "%s:%s" % (self.root, src), "--tag", tag,
             "--history.created", CREATED, "--history.created_by", comment,
             "--history.author", "oci.discovery tests", base, target)

    def finish(self, drop_tags):
        remove_tags(self.root, set(drop_tags) | {"tmp-new", "tmp-empty"})
        _run("umoci", "gc", "--layout", self.root)


def _work_dir(dst):
    work = dst.rstrip("/") + ".work"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return work


def _text(s):
    return s.encode("utf-8")


def build_family(dst):
    """tags 1.0, 1.1, 2.0 and "2.0-rc/1": different contents over one shared base layer.

    1.0 = base + app 1.0; 1.1 = 1.0 + a patch layer (shares two layers with 1.0);
    2.0 = base + app 2.0; 2.0-rc/1 = base + app 2.0-rc1.
    """
    work = _work_dir(dst)
    try:
        u = _Umoci(dst, work)
        u.insert("tmp-empty", "tmp-base", "/etc", {
            "os-release": _text('NAME="oci.discovery test base"\nID=ocitest\n'),
            "motd": _text("shared base layer\n"),
        }, "base layer")
        u.insert("tmp-base", "1.0", "/opt/app", {
            "VERSION": _text("1.0\n"), "bin/app": _text("#!/bin/sh\necho app 1.0\n")}, "app 1.0")
        u.insert("1.0", "1.1", "/opt/app", {
            "VERSION": _text("1.1\n"), "PATCHES": _text("fix-1\n")}, "app 1.1 patch")
        u.insert("tmp-base", "2.0", "/opt/app", {
            "VERSION": _text("2.0\n"), "bin/app": _text("#!/bin/sh\necho app 2.0\n"),
            "share/data.txt": _text("2.0 data\n" * 50)}, "app 2.0")
        u.insert("tmp-base", "2.0-rc/1", "/opt/app", {
            "VERSION": _text("2.0-rc/1\n"), "bin/app": _text("#!/bin/sh\necho app 2.0-rc1\n")},
            "app 2.0-rc/1")
        u.finish({"tmp-base"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    make_world_readable(dst)


PLATFORMS = (
    # (os, architecture, variant, tag suffix)
    ("linux", "amd64", None, "linux-amd64"),
    ("linux", "arm64", "v8", "linux-arm64-v8"),
    ("linux", "ppc64le", None, "linux-ppc64le"),
)


def _set_config_variant(root, tag, variant):
    """umoci config has no --variant: rewrite config and manifest of `tag` in Python."""
    (entry,) = tag_entries(root, tag)
    manifest = read_json_blob(root, entry["digest"])
    config = read_json_blob(root, manifest["config"]["digest"])
    config["variant"] = variant
    manifest["config"] = descriptor(root, manifest["config"]["mediaType"], config)
    set_tag(root, tag, descriptor(root, entry["mediaType"], manifest))


def _platform_image_index(root, tags_platforms, annotations=None):
    """An image index blob over the manifests of the given tags; returns its descriptor."""
    manifests = []
    for tag, (os_name, arch, variant) in tags_platforms:
        (entry,) = tag_entries(root, tag)
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant
        manifests.append({"mediaType": entry["mediaType"], "digest": entry["digest"],
                          "size": entry["size"], "platform": platform})
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
    if annotations:
        index["annotations"] = annotations
    return descriptor(root, MT_INDEX, index)


def _build_platform_images(root, work, platforms, tag_prefix, app_version):
    """One umoci image per platform, sharing a noarch layer; returns [(tag, (os, arch, variant))]."""
    u = _Umoci(root, work)
    out = []
    for os_name, arch, variant, suffix in platforms:
        tag = "%s-%s" % (tag_prefix, suffix)
        u.config("tmp-empty", "tmp-p", "--os", os_name, "--architecture", arch)
        # The same bytes on every platform: one shared blob.
        u.insert("tmp-p", "tmp-p", "/usr/share/doc/app", {
            "README": _text("app %s, all platforms\n" % app_version)}, "noarch docs")
        u.insert("tmp-p", tag, "/opt/app/bin", {
            "app": _text("#!/bin/sh\necho app %s for %s/%s%s\n" % (
                app_version, os_name, arch, "/" + variant if variant else ""))},
            "%s binary" % suffix)
        out.append((tag, (os_name, arch, variant)))
    u.finish({"tmp-p"})
    for tag, (_os, _arch, variant) in out:
        if variant:
            _set_config_variant(root, tag, variant)
    _run("umoci", "gc", "--layout", root)
    return out


def build_multiplatform(dst):
    """Per-platform tags 1.0-<os>-<arch>[-<variant>], index tag "1.0", nested index tag "nested"."""
    work = _work_dir(dst)
    try:
        tags = _build_platform_images(dst, work, PLATFORMS, "1.0", "1.0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    inner = _platform_image_index(dst, tags)
    set_tag(dst, "1.0", inner)
    outer = descriptor(dst, MT_INDEX, {
        "schemaVersion": 2, "mediaType": MT_INDEX,
        "manifests": [dict(inner, annotations={"org.opencontainers.image.title": "inner index"})],
    })
    set_tag(dst, "nested", outer)
    make_world_readable(dst)


BIG_LAYER_BYTES = 30 * 1024 * 1024
BIG_MANIFESTS = 10
BIG_LAYERS = 180          # 180 layers + 10 configs + 10 manifests = 200 blobs


def build_big(dst):
    """200 blobs; tag "huge" carries a ~30 MiB incompressible layer; tags many-01..many-09."""
    init_layout(dst)
    # Incompressible and reproducible: SHAKE-128 output.
    noise = hashlib.shake_128(b"oci.discovery big layer").digest(BIG_LAYER_BYTES)
    layers = []
    gz, diff_id = _tar_gz({"data/noise.bin": noise})
    layers.append((descriptor(dst, MT_LAYER_GZIP, gz), diff_id))
    del noise, gz
    for i in range(1, BIG_LAYERS):
        gz, diff_id = _tar_gz({"data/layer-%03d.txt" % i: _text("layer %d\n" % i * (1 + i % 7))})
        layers.append((descriptor(dst, MT_LAYER_GZIP, gz), diff_id))
    per = BIG_LAYERS // BIG_MANIFESTS
    for m in range(BIG_MANIFESTS):
        chunk = layers[m * per:(m + 1) * per]
        config = {
            "created": CREATED, "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.version": str(m)}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _desc, diff_id in chunk]},
            "history": [{"created": CREATED, "created_by": "layer %d" % (m * per + j)}
                        for j in range(len(chunk))],
        }
        manifest = {
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": descriptor(dst, MT_CONFIG, config),
            "layers": [desc for desc, _diff_id in chunk],
        }
        set_tag(dst, "huge" if m == 0 else "many-%02d" % m, descriptor(dst, MT_MANIFEST, manifest))
    make_world_readable(dst)


# Example layouts (examples/layouts/): tiny, reproducible.

def build_app(dst):
    """Single-platform image, tags 1.0 and 2.0 sharing a base layer."""
    work = _work_dir(dst)
    try:
        u = _Umoci(dst, work)
        u.insert("tmp-empty", "tmp-base", "/etc", {"motd": _text("Hello from an example image.\n")},
                 "base layer")
        u.insert("tmp-base", "1.0", "/opt/app", {"VERSION": _text("1.0\n")}, "app 1.0")
        u.insert("tmp-base", "2.0", "/opt/app", {
            "VERSION": _text("2.0\n"), "CHANGES": _text("2.0: new release\n")}, "app 2.0")
        u.finish({"tmp-base"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    make_world_readable(dst)


def build_multiarch(dst):
    """Tag 1.0 only: an image index over linux/amd64 and linux/arm64/v8."""
    work = _work_dir(dst)
    try:
        tags = _build_platform_images(dst, work, PLATFORMS[:2], "1.0", "1.0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    set_tag(dst, "1.0", _platform_image_index(dst, tags))
    remove_tags(dst, {tag for tag, _platform in tags})
    make_world_readable(dst)


BUILDERS = {
    "family": build_family,
    "multiplatform": build_multiplatform,
    "big": build_big,
    "app": build_app,
    "multiarch": build_multiarch,
}
TEST_LAYOUTS = ("family", "multiplatform", "big")
EXAMPLE_LAYOUTS = ("app", "multiarch")


def build(name, dst):
    """Build layout `name` into `dst` (which must not exist or be empty)."""
    if os.path.exists(dst) and os.listdir(dst):
        raise BuildError("%s: refusing to build into a non-empty directory" % dst)
    BUILDERS[name](dst)
    return dst


# ---------------------------------------------------------------------------
# describing a layout (what the tests need to know, read back from the files)

def _children(doc):
    out = list(doc.get("manifests") or [])
    if "config" in doc:
        out.append(doc["config"])
    out.extend(doc.get("layers") or [])
    return out


def reachable_descriptors(root, descriptors):
    """{digest: descriptor} of every blob reachable from the descriptors (manifests and indexes
    followed; other media types are leaves)."""
    seen = {}
    stack = list(descriptors)
    while stack:
        desc = stack.pop()
        if desc["digest"] in seen:
            continue
        seen[desc["digest"]] = desc
        if desc["mediaType"] in (MT_INDEX, MT_MANIFEST):
            stack.extend(_children(read_json_blob(root, desc["digest"])))
    return seen


def reachable(root, descriptors):
    """{digest: size} of every blob reachable from the descriptors (``reachable_descriptors``)."""
    return {digest: desc["size"] for digest, desc in reachable_descriptors(root, descriptors).items()}


def tags_reaching(root, digest):
    """Tags of index.json from which the blob `digest` is reachable, in index order."""
    out = []
    for m in read_index(root)["manifests"]:
        tag = (m.get("annotations") or {}).get(REF_NAME)
        if tag is not None and tag not in out and digest in reachable(root, [m]):
            out.append(tag)
    return out


def describe(root):
    """Facts read from a layout: tags (index.json entries), reachable blobs, sizes, platforms.

    {'path', 'tags': {tag: [entry, ...]}, 'tag_list': [...], 'blobs': n, 'bytes': n,
     'files': {relative path: size}, 'platforms': {tag: [{'os','architecture','variant'?}, ...]},
     'largest_blob': {'digest', 'size'}}
    """
    index = read_index(root)
    tags, tag_list = {}, []
    for m in index["manifests"]:
        tag = (m.get("annotations") or {}).get(REF_NAME)
        if tag is None:
            continue
        if tag not in tags:
            tags[tag] = []
            tag_list.append(tag)
        tags[tag].append(m)
    seen = reachable(root, index["manifests"])
    platforms = {}
    for tag, entries in tags.items():
        plats = []
        for e in entries:
            if e["mediaType"] == MT_INDEX:
                for m in read_json_blob(root, e["digest"])["manifests"]:
                    if "platform" in m:
                        plats.append(m["platform"])
        if plats:
            platforms[tag] = plats
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            files[os.path.relpath(path, root)] = os.lstat(path).st_size
    largest = max(seen.items(), key=lambda kv: kv[1])
    return {
        "path": root, "tags": tags, "tag_list": tag_list,
        "blobs": len(seen), "bytes": sum(seen.values()), "files": files,
        "platforms": platforms, "largest_blob": {"digest": largest[0], "size": largest[1]},
    }


# ---------------------------------------------------------------------------
# the session cache

def _cache_complete(vdir, name):
    record = os.path.join(vdir, name + ".json")
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        info = json.load(f)
    root = os.path.join(vdir, name)
    for rel, size in info["files"].items():
        try:
            if os.lstat(os.path.join(root, rel)).st_size != size:
                return None
        except OSError:
            return None
    return info


class LayoutSet(object):
    """The cached test layouts: .family, .multiplatform, .big are paths; .info[name] = describe()."""

    def __init__(self, root, info, timings):
        self.root = root
        self.info = info
        self.timings = timings      # {name: seconds spent building in this process (0.0 = cached)}

    def path(self, name):
        return self.info[name]["path"]

    family = property(lambda self: self.path("family"))
    multiplatform = property(lambda self: self.path("multiplatform"))
    big = property(lambda self: self.path("big"))

    def copy(self, name, dst):
        """A private copy of layout `name` at dst (a test may change it freely); returns dst."""
        shutil.copytree(self.path(name), dst, symlinks=True)
        return dst

    def broken(self, kind, dst, base="family"):
        """A copy of layout `base` broken in the way `kind` names; returns the maker's dict + 'path'."""
        result = BROKEN_KINDS[kind](self.path(base), dst)
        result.setdefault("path", dst)
        return result


def cached_layouts(names=TEST_LAYOUTS, cache_root=None):
    """Build (once, then reuse) the named layouts; returns a LayoutSet."""
    cache_root = cache_root or CACHE_ROOT
    vdir = os.path.join(cache_root, BUILDER_VERSION)
    os.makedirs(vdir, exist_ok=True)
    info, timings = {}, {}
    with locked(os.path.join(cache_root, ".lock")):
        for other in os.listdir(cache_root):    # builds of older builder versions
            if other != BUILDER_VERSION and other.startswith("v") and \
                    os.path.isdir(os.path.join(cache_root, other)):
                shutil.rmtree(os.path.join(cache_root, other), ignore_errors=True)
        for name in names:
            found = _cache_complete(vdir, name)
            if found is not None:
                info[name], timings[name] = found, 0.0
                continue
            root = os.path.join(vdir, name)
            record = os.path.join(vdir, name + ".json")
            for stale in (record, root, root + ".building"):
                if os.path.isdir(stale):
                    shutil.rmtree(stale)
                elif os.path.exists(stale):
                    os.unlink(stale)
            started = time.monotonic()
            build(name, root + ".building")
            os.rename(root + ".building", root)
            timings[name] = time.monotonic() - started
            found = describe(root)
            with open(record + ".tmp", "w") as f:
                json.dump(found, f, indent=1, sort_keys=True)
            os.chmod(record + ".tmp", 0o644)
            os.rename(record + ".tmp", record)
            info[name] = found
    for d in (cache_root, vdir):
        os.chmod(d, 0o755)
    return LayoutSet(vdir, info, timings)


# ---------------------------------------------------------------------------
# broken layouts: each maker copies src to dst and breaks the copy in exactly one way.
# Each returns {'expect', 'what', 'scope', 'tags_broken', ...}: scope "layout" means the
# layout cannot be opened at all; scope "tags" means only the tags in tags_broken fail
# to validate and every other tag of the layout is still valid.

def _copy(src, dst):
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)


def _first(dst):
    """(tag, index.json entry, manifest descriptor, manifest) of the first manifest reachable
    from the first tagged entry of index.json (through image indexes)."""
    for entry in read_index(dst)["manifests"]:
        tag = (entry.get("annotations") or {}).get(REF_NAME)
        if tag is None:
            continue
        desc = entry
        while desc["mediaType"] == MT_INDEX:
            desc = read_json_blob(dst, desc["digest"])["manifests"][0]
        return tag, entry, desc, read_json_blob(dst, desc["digest"])
    raise BuildError("%s: no tagged entry in index.json" % dst)


def _layout_scope(expect, what, **extra):
    result = {"expect": expect, "what": what, "scope": "layout", "tags_broken": None}
    result.update(extra)
    return result


def _tag_scope(expect, what, tags_broken, **extra):
    result = {"expect": expect, "what": what, "scope": "tags", "tags_broken": tags_broken}
    result.update(extra)
    return result


def _replace_top_manifest(dst, change):
    """Apply change(manifest) to the manifest of the first tag (a manifest, not an index)
    and point the index.json entries that referred to it at the new blob (indexes that
    list it keep the intact old blob); returns (tags rewritten, new descriptor)."""
    tag, entry, _desc, manifest = _first(dst)
    if entry["mediaType"] != MT_MANIFEST:
        raise BuildError("%s: first tag %r is not a manifest" % (dst, tag))
    change(manifest)
    new_digest, new_size = put_blob(dst, _dumps(manifest))
    index = read_index(dst)
    tags = []
    for m in index["manifests"]:
        if m["digest"] == entry["digest"]:
            m["digest"], m["size"] = new_digest, new_size
            tag = (m.get("annotations") or {}).get(REF_NAME)
            if tag is not None and tag not in tags:
                tags.append(tag)
    write_index(dst, index)
    make_world_readable(dst)
    return tags, {"mediaType": MT_MANIFEST, "digest": new_digest, "size": new_size}


def _last_layer(dst):
    _tag, _entry, _desc, manifest = _first(dst)
    return manifest["layers"][-1]


def broken_missing_oci_layout(src, dst):
    _copy(src, dst)
    os.unlink(os.path.join(dst, "oci-layout"))
    return _layout_scope("oci-layout", "the oci-layout file is missing")


def broken_layout_version(src, dst):
    _copy(src, dst)
    with open(os.path.join(dst, "oci-layout"), "wb") as f:
        f.write(_dumps({"imageLayoutVersion": "2.0.0"}))
    return _layout_scope("oci-layout", 'oci-layout says imageLayoutVersion "2.0.0"',
                         version="2.0.0")


def broken_missing_index(src, dst):
    _copy(src, dst)
    os.unlink(os.path.join(dst, "index.json"))
    return _layout_scope("index.json", "index.json is missing")


def broken_invalid_index(src, dst):
    _copy(src, dst)
    path = os.path.join(dst, "index.json")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])      # truncated: not JSON
    return _layout_scope("index.json", "index.json is truncated (invalid JSON)")


def broken_missing_blob(src, dst):
    _copy(src, dst)
    layer = _last_layer(dst)
    tags = tags_reaching(dst, layer["digest"])
    os.unlink(blob_path(dst, layer["digest"]))
    return _tag_scope(_split(layer["digest"])[1], "a layer blob (%s) is missing" % layer["digest"],
                      tags, digest=layer["digest"])


def broken_size_mismatch(src, dst):
    _copy(src, dst)
    holder = {}

    def change(manifest):
        layer = manifest["layers"][-1]
        holder["layer"] = dict(layer)
        layer["size"] += 1      # the blob itself is intact

    tags, new = _replace_top_manifest(dst, change)
    layer = holder["layer"]
    return _tag_scope(_split(layer["digest"])[1],
                      "a manifest declares a layer one byte longer than its blob", tags,
                      digest=layer["digest"], manifest=new["digest"],
                      actual_size=layer["size"], declared_size=layer["size"] + 1)


def broken_digest_mismatch(src, dst):
    _copy(src, dst)
    layer = _last_layer(dst)
    tags = tags_reaching(dst, layer["digest"])
    path = blob_path(dst, layer["digest"])
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))        # same size, other content
    return _tag_scope(_split(layer["digest"])[1],
                      "a layer blob (%s) has one byte changed, same size" % layer["digest"],
                      tags, digest=layer["digest"])


def broken_unknown_algorithm(src, dst):
    """A manifest names a layer by its sha384 digest: a real hash, the blob is stored under
    blobs/sha384/ and matches, but OCI registers only sha256 and sha512."""
    _copy(src, dst)
    holder = {}

    def change(manifest):
        layer = manifest["layers"][-1]
        digest, _size = put_blob(dst, read_blob(dst, layer["digest"]), algorithm="sha384")
        layer["digest"] = holder["digest"] = digest

    tags, new = _replace_top_manifest(dst, change)
    return _tag_scope("sha384", "a manifest refers to a layer by a sha384 digest", tags,
                      digest=holder["digest"], manifest=new["digest"])


def broken_malformed_digest(src, dst):
    """A layer descriptor's digest has upper-case hex (sha256 requires [a-f0-9]{64})."""
    _copy(src, dst)
    holder = {}

    def change(manifest):
        layer = manifest["layers"][-1]
        algorithm, encoded = _split(layer["digest"])
        layer["digest"] = holder["digest"] = "%s:%s" % (algorithm, encoded.upper())

    tags, new = _replace_top_manifest(dst, change)
    return _tag_scope(_split(holder["digest"])[1],
                      "a manifest has a layer digest in upper-case hex", tags,
                      digest=holder["digest"], manifest=new["digest"])


def broken_blob_symlink(src, dst):
    """A layer blob is a symlink to an identical file outside the layout."""
    _copy(src, dst)
    layer = _last_layer(dst)
    tags = tags_reaching(dst, layer["digest"])
    path = blob_path(dst, layer["digest"])
    outside = os.path.abspath(dst).rstrip("/") + ".outside"
    os.makedirs(outside, exist_ok=True)
    target = os.path.join(outside, os.path.basename(path))
    shutil.move(path, target)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)
    return _tag_scope(_split(layer["digest"])[1],
                      "a layer blob (%s) is a symlink leaving the layout" % layer["digest"],
                      tags, digest=layer["digest"], outside=target)


def broken_manifest_fields(src, dst):
    """A manifest without "config" (valid JSON, correct digest and size)."""
    _copy(src, dst)
    tags, new = _replace_top_manifest(dst, lambda manifest: manifest.pop("config"))
    return _tag_scope(_split(new["digest"])[1], "a manifest lacks its config descriptor", tags,
                      digest=new["digest"], missing="config")


SELF_TAG = "self-ref"


def broken_index_self_reference(src, dst):
    """A new tag "self-ref": an index blob whose only entry is itself. A digest cannot cover
    itself, so the blob is stored under a digest that is not its own: a reader detects
    either the cycle or the digest mismatch; both name that digest."""
    _copy(src, dst)
    digest = "sha256:" + hashlib.sha256(b"oci.discovery self-referring index").hexdigest()
    size = 0
    for _attempt in range(5):      # the size field is part of the document: find the fixed point
        data = _dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                       "manifests": [{"mediaType": MT_INDEX, "digest": digest, "size": size}]})
        if len(data) == size:
            break
        size = len(data)
    path = blob_path(dst, digest)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    set_tag(dst, SELF_TAG, {"mediaType": MT_INDEX, "digest": digest, "size": size})
    return _tag_scope(_split(digest)[1], "an index whose only entry is itself", [SELF_TAG],
                      digest=digest)


BROKEN_KINDS = {
    "missing_oci_layout": broken_missing_oci_layout,
    "unsupported_layout_version": broken_layout_version,
    "missing_index": broken_missing_index,
    "invalid_index": broken_invalid_index,
    "missing_blob": broken_missing_blob,
    "size_mismatch": broken_size_mismatch,
    "digest_mismatch": broken_digest_mismatch,
    "unknown_algorithm": broken_unknown_algorithm,
    "malformed_digest": broken_malformed_digest,
    "blob_symlink_outside": broken_blob_symlink,
    "manifest_missing_fields": broken_manifest_fields,
    "index_self_reference": broken_index_self_reference,
}


def _main(argv):
    if len(argv) == 3 and argv[1] == "examples":
        out = argv[2]
        os.makedirs(out, exist_ok=True)
        for name in EXAMPLE_LAYOUTS:
            dst = os.path.join(out, name)
            shutil.rmtree(dst, ignore_errors=True)
            build(name, dst)
            info = describe(dst)
            print("%s: tags %s, %d blobs, %d bytes" % (dst, ", ".join(info["tag_list"]),
                                                       info["blobs"], info["bytes"]))
        return 0
    if len(argv) == 4 and argv[1] == "build" and argv[2] in BUILDERS:
        build(argv[2], argv[3])
        return 0
    print(__doc__.split("Command line")[1])
    return 2


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv))
