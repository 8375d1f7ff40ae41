# -*- coding: utf-8 -*-
"""The reliability suite (issue 7): faults and hostile input against every store, with figures.

Stores: a web root published over the local connection, a web root published over ssh (the
rig's sshd), and an S3 bucket on Ceph RGW. Web roots are read back through nginx, buckets
through S3 GETs, the way consumers read them (rig.published.SiteReader).

* hostile web roots: every kind of HOSTILE_ROOTS (symbolic links planted in the web root, leading
  to a victim directory outside it, and a FIFO for the index) against a web root published over
  the local connection and over ssh: each publish fails naming the link, the victim directory and
  the site are identical afterwards.
* broken layouts: every kind of rig.layouts.BROKEN_KINDS against every store already holding
  a published family: each publish fails naming the problem, and the store is identical
  afterwards (every file: content, mode, owner, inode, mtime; every object: bytes, ETag,
  LastModified, headers, ACL).
* kills: ten publishes per store killed at random points (stratified over the run's timeline,
  or just after the commit started): the publisher's process group (local), the ssh
  connection, the whole remote side or the controller (ssh), the S3 gateway or the publisher
  (S3). radosgw is stateless (the objects live in the OSD's memstore), so killing it and
  starting it again is a real store crash without an artificial loss of data. A reader polls
  the store throughout and must never see an index entry whose blobs are not all there and
  complete; the re-run must complete with everything present.
* four publishers of the four tags of one family at once, per store and site layout, with a
  reader polling: no tag lost.
* hostile discovery servers, each resolution measured: time within the client's own timeout
  (times a margin), memory (largest process, and the whole process tree) no more than a normal
  resolution's plus a margin, an error naming the URL and the reason.
* secrets: s3_publish_layout and the s3_publisher role at -vvv, succeeding and failing in
  every way we could provoke: no secret key or session token anywhere in stdout or stderr;
  the access key ID only where amazon.aws modules show it in their `invocation`.

Figures are printed at the end of the session ("reliability figures") and written to
.tmp/reliability-figures.json.
"""
import collections
from datetime import datetime
import gzip
import hashlib
import json
import os
import random
import re
import socket
import threading
import time
import uuid

import pytest
import yaml

from discovery_hosts import NamedSites
from rig import faults, procs
from rig.ansible import ANSIBLE_PLAYBOOK, PlaybookResult, ansible_env, local_inventory
from rig.ceph import RGW
from rig.layouts import BROKEN_KINDS, reachable, read_index
from rig.published import (SiteReader, WELL_KNOWN, describe_difference, http_getter, s3_getter, site_config,
                           snapshot_bucket, snapshot_tree)

FAMILY = "example.test/team/app"
FAMILY_PATH = "team/app"
STORES = ["local", "ssh", "s3"]
STORE_LABELS = {"local": "web root, local connection", "ssh": "web root over ssh", "s3": "S3 bucket on RGW"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIGURES_FILE = os.path.join(REPO, ".tmp", "reliability-figures.json")


# --------------------------------------------------------------------------- figures

class _Figures(object):
    """Collects figures during the session; a pytest plugin printing them in the terminal summary."""

    def __init__(self):
        self.sections = collections.OrderedDict()

    def add(self, section, line):
        self.sections.setdefault(section, []).append(line)

    def pytest_terminal_summary(self, terminalreporter):
        if not self.sections:
            return
        terminalreporter.section("reliability figures")
        for section, lines in self.sections.items():
            terminalreporter.write_line(section)
            for line in lines:
                terminalreporter.write_line("  " + line)
        os.makedirs(os.path.dirname(FIGURES_FILE), exist_ok=True)
        with open(FIGURES_FILE, "w") as handle:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "figures": self.sections}, handle, indent=1)


@pytest.fixture(scope="session")
def figures(request):
    plugin = request.config.pluginmanager.get_plugin("oci-discovery-reliability-figures")
    if plugin is None:
        plugin = _Figures()
        request.config.pluginmanager.register(plugin, "oci-discovery-reliability-figures")
    return plugin


# --------------------------------------------------------------------------- stores

def expected_digests(layouts):
    """{tag: digest of its (single) index.json entry} of the family layout."""
    return dict((tag, entries[0]["digest"]) for tag, entries in layouts.info["family"]["tags"].items())


class WebRootSite(object):
    """One fresh site root, published over the local connection or ssh, served by nginx."""

    def __init__(self, stores, root):
        self.stores = stores
        self.root = root
        self.base_url = stores.nginx.url("/").rstrip("/")
        self.inventory = stores.inventory
        self.getter = http_getter(self.base_url)

    def tasks(self, src, tags=None, site_layout="cas_bucket", ignore_errors=False):
        args = dict(src=src, name=FAMILY, root=self.root, base_url=self.base_url, site_layout=site_layout)
        if tags is not None:
            args["tags"] = tags
        publish = {"name": "publish", "oci.discovery.publish_layout": args}
        if ignore_errors:
            publish["ignore_errors"] = True
        well_known = {"name": "well-known", "oci.discovery.ref_engines": {
            "root": self.root, "base_url": self.base_url, "site_layout": site_layout}}
        return [publish, well_known]

    def plays(self, src, tags=None, site_layout="cas_bucket"):
        return [{"hosts": "all", "gather_facts": False, "tasks": self.tasks(src, tags, site_layout)}]

    def snapshot(self):
        return snapshot_tree(self.root)

    def progress(self):
        """What a publish has done so far, read from the disk: staged, blobs (visible), index, well_known."""
        staging = os.path.join(self.root, ".oci-discovery", "tmp")
        try:
            staged = any(os.listdir(os.path.join(staging, run)) for run in os.listdir(staging))
        except OSError:
            staged = False
        blobs = 0
        for top in ("oci-cas", os.path.join("oci-image", FAMILY_PATH, "blobs")):
            for dummy, dummy2, filenames in os.walk(os.path.join(self.root, top)):
                blobs += len([n for n in filenames if not n.startswith(".")])
        index = os.path.exists(os.path.join(self.root, "oci-index", FAMILY_PATH)) or \
            os.path.exists(os.path.join(self.root, "oci-image", FAMILY_PATH, "index.json"))
        return {"staged": staged, "blobs": blobs, "index": index,
                "well_known": os.path.exists(os.path.join(self.root, WELL_KNOWN))}

    def leftovers(self):
        """Temporary files visible under the served paths (there must be none)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if ".oci-discovery" in dirnames:
                dirnames.remove(".oci-discovery")
            found += [os.path.join(dirpath, n) for n in filenames if n.startswith(".oci-part-")]
        return found

    def staged(self):
        """Files still in the private staging area (none once every publisher has ended)."""
        found = []
        for dirpath, dummy, filenames in os.walk(os.path.join(self.root, ".oci-discovery", "tmp")):
            found += [os.path.join(dirpath, n) for n in filenames]
        return found


class WebRootStores(object):
    """Fresh web roots on this machine, reached over `connection` ('local' or 'ssh')."""

    def __init__(self, connection, nginx_factory, sshd=None):
        self.connection = connection
        self.sshd = sshd
        self.nginx_factory = nginx_factory
        self.nginx = None
        self.dirs = []
        # Ansible's remote temporary directories (killed runs leave theirs) in a directory of ours.
        if sshd is not None:
            remote_tmp = sshd.make_webroot("remote-tmp")
            self.inventory = sshd.inventory(ansible_remote_tmp=remote_tmp)
        else:
            remote_tmp = procs.make_workdir("remote-tmp", mode=0o700)
            self.inventory = local_inventory(ansible_remote_tmp=remote_tmp)
        self.dirs.append(remote_tmp)

    def new_site(self):
        root = self.sshd.make_webroot("site") if self.sshd else procs.make_workdir("site", mode=0o755)
        self.dirs.append(root)
        if self.nginx is None:
            self.nginx = self.nginx_factory([site_config(root)])
        else:
            self.nginx.reload([site_config(root)])
        return WebRootSite(self, root)

    def close(self):
        for path in self.dirs:
            procs.remove_workdir(path)


class S3Site(object):
    """One fresh bucket."""

    def __init__(self, stores, bucket):
        self.stores = stores
        self.rgw = stores.rgw
        self.bucket = bucket
        self.inventory = local_inventory()
        reader_client = self.rgw.client(config=_quick_config())
        self.getter = s3_getter(reader_client, bucket)
        self._progress_client = reader_client

    def module_args(self, **extra):
        args = dict(bucket=self.bucket, name=FAMILY, well_known=True, endpoint_url=self.rgw.endpoint,
                    access_key=self.rgw.access_key, secret_key=self.rgw.secret_key, region=self.rgw.region)
        args.update(extra)
        return args

    def tasks(self, src, tags=None, site_layout="cas_bucket", ignore_errors=False):
        args = self.module_args(src=src, site_layout=site_layout)
        if tags is not None:
            args["tags"] = tags
        task = {"name": "publish", "oci.discovery.s3_publish_layout": args}
        if ignore_errors:
            task["ignore_errors"] = True
        return [task]

    def plays(self, src, tags=None, site_layout="cas_bucket"):
        return [{"hosts": "all", "gather_facts": False, "tasks": self.tasks(src, tags, site_layout)}]

    def snapshot(self):
        return snapshot_bucket(self.rgw.client(), self.bucket)

    def progress(self):
        """What a publish has done so far, from one LIST: blobs, index, well_known (staged: never visible)."""
        keys = [o["Key"] for o in self._progress_client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]
        index = ("oci-index/%s" % FAMILY_PATH) in keys or ("oci-image/%s/index.json" % FAMILY_PATH) in keys
        return {"staged": False, "blobs": len([k for k in keys if k.startswith("oci-cas/") or "/blobs/" in k]),
                "index": index, "well_known": WELL_KNOWN in keys}

    def leftovers(self):
        uploads = self.rgw.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [u["Key"] for u in uploads]

    def staged(self):
        return []


def _quick_config():
    from botocore.config import Config
    from rig.ceph import s3_config
    return s3_config().merge(Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1,
                                    read_timeout=3))


class S3Stores(object):
    """Fresh buckets on one RGW."""

    def __init__(self, rgw):
        self.rgw = rgw
        self.connection = "s3"
        self.ready = []

    def prepare(self, count):
        """Create `count` buckets now: after radosgw was killed, creating a bucket waits ~25 s for the
        dead instance's watch on the metadata to time out (object writes do not)."""
        for dummy in range(count):
            self.ready.append(self._create())

    def _create(self):
        bucket = "t-%s" % uuid.uuid4().hex[:16]
        self.rgw.client().create_bucket(Bucket=bucket)
        return bucket

    def new_site(self):
        return S3Site(self, self.ready.pop(0) if self.ready else self._create())

    def close(self):
        pass


@pytest.fixture
def make_stores(request, nginx_factory):
    made = []

    def make(kind, rgw=None):
        if kind == "s3":
            stores = S3Stores(rgw or request.getfixturevalue("rgw"))
        elif kind == "ssh":
            stores = WebRootStores("ssh", nginx_factory, request.getfixturevalue("sshd"))
        else:
            stores = WebRootStores("local", nginx_factory)
        made.append(stores)
        return stores
    yield make
    for stores in made:
        stores.close()


# --------------------------------------------------------------------------- broken layouts

@pytest.mark.parametrize("kind", STORES)
def test_broken_layouts_fail_named_and_leave_the_store_identical(kind, make_stores, layouts, broken_layout,
                                                                 run_playbook, figures):
    site = make_stores(kind).new_site()
    first = run_playbook(site.plays(layouts.family, tags=["1.0", "1.1"]), inventory=site.inventory)
    assert not first.failed, first
    cases = [dict(broken_layout(name), kind=name) for name in sorted(BROKEN_KINDS)]
    task = site.tasks("{{ item.path }}", ignore_errors=True)[0]
    task.update(loop=cases, loop_control={"label": "{{ item.kind }}"})
    before = site.snapshot()
    result = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": [task]}], inventory=site.inventory,
                          diff=True)
    after = site.snapshot()
    items = result.result("publish")["results"]
    assert len(items) == len(cases), result
    named = 0
    for case, item in zip(cases, items):
        assert item.get("failed"), (case["kind"], item)
        assert case["expect"] in item["msg"], (case["kind"], case["expect"], item["msg"])
        assert "Traceback" not in item["msg"] and "module_stderr" not in item, (case["kind"], item)
        named += 1
    assert after == before, describe_difference(before, after)
    what = "objects" if kind == "s3" else "files and directories"
    figures.add("broken layouts: every kind refused, the store identical afterwards",
                "%-27s %2d/%d kinds refused with the problem named; %d %s identical (content, metadata%s)"
                % (STORE_LABELS[kind], named, len(cases), len(before), what,
                   ", ACL" if kind == "s3" else ", inode, mtime"))


# --------------------------------------------------------------------------- hostile web roots

def _plant_state_dir(root, victim, blob):
    os.symlink(victim, os.path.join(root, ".oci-discovery"))
    return os.path.join(root, ".oci-discovery") + ": is a symbolic link"


def _plant_index_dir(root, victim, blob):
    os.symlink(os.path.join(victim, "outside"), os.path.join(root, "oci-index"))
    return os.path.join(root, "oci-index") + ": is a symbolic link"


def _plant_site_lock(root, victim, blob):
    locks = os.path.join(root, ".oci-discovery", "locks")
    os.makedirs(locks)
    os.symlink(os.path.join(victim, "nologin"), os.path.join(locks, "site.lock"))
    return os.path.join(locks, "site.lock") + ": is a symbolic link"


def _plant_blob_dir(root, victim, blob):
    algorithm, encoded = blob.split(":")
    parent = os.path.join(root, "oci-cas", algorithm)
    os.makedirs(parent)
    os.symlink(os.path.join(victim, "blobs"), os.path.join(parent, encoded[:2]))
    return os.path.join(parent, encoded[:2]) + ": is a symbolic link"


def _plant_blob(root, victim, blob):
    algorithm, encoded = blob.split(":")
    parent = os.path.join(root, "oci-cas", algorithm, encoded[:2])
    os.makedirs(parent)
    os.symlink(os.path.join(victim, "file"), os.path.join(parent, encoded))
    return os.path.join(parent, encoded) + ": is a symbolic link"


def _plant_index_file(root, victim, blob):
    os.makedirs(os.path.join(root, "oci-index", "team"))
    os.symlink(os.path.join(victim, "file"), os.path.join(root, "oci-index", FAMILY_PATH))
    return os.path.join(root, "oci-index", FAMILY_PATH) + ": is a symbolic link"


def _plant_index_fifo(root, victim, blob):
    os.makedirs(os.path.join(root, "oci-index", "team"))
    os.mkfifo(os.path.join(root, "oci-index", FAMILY_PATH), 0o644)
    return os.path.join(root, "oci-index", FAMILY_PATH) + ": not a regular file"


# What someone who can write into a web root plants there (issue 16): kind -> plant(root, victim, blob
# digest) -> what the error must say. The victim is a directory outside the root holding an old
# tmp/old (what the stale-run sweep removed through a linked state directory), a file, empty
# directories; nologin is where a dangling lock link pointed (root created it).
HOSTILE_ROOTS = collections.OrderedDict([
    ("state directory linked out", _plant_state_dir),
    ("index directory linked out", _plant_index_dir),
    ("dangling site lock link", _plant_site_lock),
    ("blob directory linked out", _plant_blob_dir),
    ("blob linked out", _plant_blob),
    ("index linked out", _plant_index_file),
    ("index is a FIFO", _plant_index_fifo),
])


def _victim(owner):
    """A directory outside every web root, as a victim: old contents, a file, empty directories."""
    victim = procs.make_workdir("victim", mode=0o755)
    for sub in ("tmp/old", "outside", "blobs"):
        os.makedirs(os.path.join(victim, sub))
    with open(os.path.join(victim, "tmp", "old", "precious"), "wb") as handle:
        handle.write(b"keep me")
    with open(os.path.join(victim, "file"), "wb") as handle:
        handle.write(b"outside the root")
    old = time.time() - 3600
    for dirpath, dirnames, filenames in os.walk(victim):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), *owner)   # writable by the publisher: only the code protects it
            os.utime(os.path.join(dirpath, name), (old, old))
    return victim


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_hostile_web_roots_are_refused_and_nothing_outside_is_touched(kind, make_stores, layouts, run_playbook,
                                                                      figures):
    stores = make_stores(kind)
    owner = (stores.sshd.uid, stores.sshd.gid) if stores.sshd else (0, 0)
    victim = _victim(owner)
    stores.dirs.append(victim)
    blob = sorted(reachable(layouts.family, read_index(layouts.family)["manifests"]))[0]
    cases, tasks = [], []
    for name, plant in HOSTILE_ROOTS.items():
        site = stores.new_site()
        expect = plant(site.root, victim, blob)
        for dirpath, dirnames, filenames in os.walk(site.root):
            for entry in dirnames + filenames:
                os.lchown(os.path.join(dirpath, entry), *owner)
        task = dict(site.tasks(layouts.family, ignore_errors=True)[0], name=name, timeout=120)
        cases.append((name, site, expect, site.snapshot()))
        tasks.append(task)
    before = snapshot_tree(victim)
    result = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": tasks}], inventory=stores.inventory)
    after = snapshot_tree(victim)
    assert after == before, describe_difference(before, after)
    assert not os.path.lexists(os.path.join(victim, "nologin"))
    for name, site, expect, site_before in cases:
        item = result.result(name)
        assert item.get("failed"), (name, item)
        assert expect in item["msg"], (name, expect, item["msg"])
        assert "Traceback" not in item["msg"] and "module_stderr" not in item, (name, item)
        site_after = site.snapshot()
        assert site_after == site_before, (name, describe_difference(site_before, site_after))
    figures.add("hostile web roots: every kind refused naming the link, nothing outside the root touched",
                "%-27s %d/%d kinds refused (%s); the victim directory (%d entries) and the %d sites identical"
                % (STORE_LABELS[kind], len(cases), len(HOSTILE_ROOTS), ", ".join(HOSTILE_ROOTS), len(before),
                   len(cases)))


# --------------------------------------------------------------------------- concurrent publishers

# One site layout per store (each run costs four playbooks at once); test_publish_layout.py has
# four publishers over ssh into a CAS-bucket site; S3 sites of both layouts use the same conditional writes.
CONCURRENT_LAYOUTS = {"local": ["cas_bucket"], "ssh": ["directories"], "s3": ["cas_bucket"]}


@pytest.mark.parametrize("kind", STORES)
def test_four_concurrent_publishers_of_one_family_lose_no_tag(kind, make_stores, layouts, run_playbook, figures):
    stores = make_stores(kind)
    expected = expected_digests(layouts)
    tags = sorted(expected)
    assert len(tags) == 4
    line = []
    for site_layout in CONCURRENT_LAYOUTS[kind]:
        site = stores.new_site()
        reader = SiteReader(site.getter, FAMILY_PATH, site_layout, expected).poll_in_background()
        barrier = threading.Barrier(len(tags))
        results, spans = {}, {}

        def publish(tag):
            barrier.wait()
            started = time.monotonic()
            results[tag] = run_playbook(site.plays(layouts.family, tags=[tag], site_layout=site_layout),
                                        inventory=site.inventory)
            spans[tag] = (started, time.monotonic())
        threads = [threading.Thread(target=publish, args=(tag,)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        missing = reader.complete()
        reader.stop()
        for tag in tags:
            assert not results[tag].failed, results[tag]
            assert results[tag].result("publish")["tags_added"] == [tag], results[tag]
        assert reader.problems == [], reader.problems[:5]
        assert missing == [], "tags lost: %s" % missing
        listed = reader.check()
        assert sorted(listed) == tags, listed       # each tag exactly once
        assert site.leftovers() == [] and site.staged() == []
        overlap = min(end for start, end in spans.values()) - max(start for start, end in spans.values())
        line.append("%s: 0 of 4 tags lost, runs overlapped %.1f s, reader %d looks (%d with an index), "
                    "0 inconsistent" % (site_layout, overlap, reader.rounds, reader.rounds_with_index))
    figures.add("4 concurrent publishers of the 4 tags of one family",
                "%-27s %s" % (STORE_LABELS[kind], "; ".join(line)))


# --------------------------------------------------------------------------- kills

# Every (what is killed, when) pair of a store, each pair at least twice in all when a store has few.
MIN_KILLS = 6
# What is killed, per store (taken in turn). "publisher": the ansible-playbook process group
# (controller, workers and a local module: the whole publish dies at once). "ssh connection":
# the sshd processes serving the connection (a cut network: the module's Python on the target
# may finish its step). "remote side": everything the sshd runs (the target side dies).
# "controller": the ansible-playbook process group while the target works on. "gateway":
# radosgw, started again after an outage of 0.3 to 3 s while the publisher retries.
KILLS = {"local": ["publisher"], "ssh": ["ssh connection", "remote side", "controller"],
         "s3": ["gateway", "publisher"]}
# When: a random time before the commit is expected to start; a random time after the first
# blob became visible (or was staged), within the time the commit takes to reach the index; a
# random time after the index became visible, before the well-known document is expected.
TIMINGS = ("before the commit", "during the commit", "after the index")


def kill_plan(kind):
    """[(action, timing)]: the product of the store's actions and TIMINGS, repeated up to MIN_KILLS."""
    pairs = [(action, timing) for timing in TIMINGS for action in KILLS[kind]]
    return pairs * max(1, -(-MIN_KILLS // len(pairs)))


LEFT = ("nothing visible", "some blobs, no index", "all blobs, no index", "index, no well-known", "everything")


@pytest.fixture(scope="module")
def crash_rgw():
    """An RGW of its own for the tests that kill its gateway (the session's `rgw` stays untouched)."""
    gateway = RGW(name="ceph-crash")
    gateway.start()
    yield gateway
    gateway.stop()


def watch(site, proc, marks, until=None, timeout=120):
    """Poll site.progress() while `proc` runs, until `until(state)` is true; record in `marks`
    {event: seconds since the start} when the commit started, the index and the well-known appeared."""
    deadline = time.monotonic() + timeout
    while proc.running() and time.monotonic() < deadline:
        try:
            state = site.progress()
        except Exception:  # noqa: BLE001 - a store that does not answer right now
            state = None
        if state is not None:
            now = proc.seconds
            if state["staged"] or state["blobs"]:
                marks.setdefault("commit", now)
            if state["index"]:
                marks.setdefault("index", now)
            if state["well_known"]:
                marks.setdefault("well_known", now)
            if until is not None and until(state):
                return True
        time.sleep(0.004)
    return False


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def left_by(site, reader, blobs_total):
    state = site.progress()
    tags = reader.check()
    if state["index"] or tags:
        return LEFT[4] if state["well_known"] else LEFT[3]
    if not state["blobs"]:
        return LEFT[0]
    return LEFT[2] if state["blobs"] >= blobs_total else LEFT[1]


@pytest.mark.parametrize("kind", STORES)
def test_killed_publishes_never_show_missing_blobs_and_rerun_completes(kind, make_stores, layouts, run_playbook,
                                                                       figures, request):
    rgw = request.getfixturevalue("crash_rgw") if kind == "s3" else None
    stores = make_stores(kind, rgw=rgw)
    expected = expected_digests(layouts)
    blobs_total = layouts.info["family"]["blobs"]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)

    plan = kill_plan(kind)
    if kind == "s3":
        stores.prepare(1 + len(plan))
    # A publish, not killed, to learn when the commit starts, the index and the well-known appear
    # (every attempt adds what it saw before its kill).
    seen = collections.defaultdict(list)
    site = stores.new_site()
    reader = SiteReader(site.getter, FAMILY_PATH, "cas_bucket", expected).poll_in_background()
    proc = faults.PlaybookProcess(site.plays(layouts.family), site.inventory)
    marks = {}
    watch(site, proc, marks)
    assert proc.wait() == 0, proc.result()
    state = site.progress()       # what appeared after the last look, if anything
    for event, there in (("commit", state["blobs"]), ("index", state["index"]), ("well_known", state["well_known"])):
        if there:
            marks.setdefault(event, proc.seconds)
    missing = reader.complete()
    reader.stop()
    assert reader.problems == [] and missing == [], (reader.problems[:5], missing)
    assert {"commit", "index", "well_known"} <= set(marks), marks
    for event, at in marks.items():
        seen[event].append(at)
    seen["end"].append(proc.seconds)

    records = []
    for attempt, (action, timing) in enumerate(plan):
        site = stores.new_site()
        reader = SiteReader(site.getter, FAMILY_PATH, "cas_bucket", expected).poll_in_background()
        proc = faults.PlaybookProcess(site.plays(layouts.family), site.inventory)
        marks = {}
        commit, index, well_known = median(seen["commit"]), median(seen["index"]), median(seen["well_known"])
        if timing == TIMINGS[0]:
            at = rng.uniform(0.3, 1.0) * commit
            watch(site, proc, marks, until=lambda state: proc.seconds >= at)
        elif timing == TIMINGS[1]:
            watch(site, proc, marks, until=lambda state: state["staged"] or state["blobs"])
            time.sleep(rng.uniform(0, max(0.02, index - commit)))
        else:
            watch(site, proc, marks, until=lambda state: state["index"])
            time.sleep(rng.uniform(0, max(0.05, well_known - index)))
        for event, at in marks.items():
            seen[event].append(at)
        struck_at, struck = proc.seconds, proc.running()
        errors, outage, remote = [], None, []
        if struck:
            if kind == "ssh":
                remote = faults.remote_commands(stores.sshd)
            if action in ("publisher", "controller"):
                proc.kill()
            elif action == "ssh connection":
                faults.kill_ssh_connections(stores.sshd)
            elif action == "remote side":
                faults.kill_remote_side(stores.sshd)
            elif action == "gateway":
                faults.kill_gateway(rgw)
                down = rng.uniform(0.3, 3.0)

                def restart(down=down):
                    try:
                        time.sleep(down)
                        faults.start_gateway(rgw)
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append(e)
                outage = threading.Thread(target=restart)
                outage.start()
        rc = proc.wait(180)
        if outage is not None:
            outage.join(120)
        assert errors == [], errors
        if kind == "ssh":
            # After a cut connection or a killed controller, the target may finish its step.
            assert faults.wait_gone(remote + faults.remote_commands(stores.sshd)) == []
        left = left_by(site, reader, blobs_total)
        rerun = run_playbook(site.plays(layouts.family), inventory=site.inventory)
        missing = reader.complete()
        reader.stop()
        note = "seed %d, attempt %d: %s killed at %.2f s (%s), left %s" % (
            seed, attempt, action, struck_at, timing, left)
        assert reader.problems == [], "%s\n%s" % (note, "\n".join(reader.problems[:5]))
        assert not rerun.failed, "%s\n%s" % (note, rerun)
        assert missing == [], "%s: tags missing after the re-run: %s" % (note, missing)
        assert site.leftovers() == [], note
        if struck and action == "gateway" and rc != 0:
            # The publisher outlived its retries: it must say which store failed, not crash.
            failure = " ".join(str(f[2]) for f in proc.result().failures())
            assert site.bucket in failure and "Traceback" not in failure, (note, failure)
        records.append({"action": action, "timing": timing, "at": struck_at, "struck": struck, "rc": rc,
                        "left": left, "rounds": reader.rounds, "with_index": reader.rounds_with_index})

    struck = [r for r in records if r["struck"]]
    left = collections.Counter(r["left"] for r in struck)
    actions = collections.Counter(r["action"] for r in struck)
    timings = collections.Counter(r["timing"] for r in struck)
    retried = [r for r in struck if r["action"] == "gateway"]
    figures.add("publishes killed at random points (reader polling throughout, then a re-run)",
                "%-27s %d/%d publishes killed (%s; %s; %.1f-%.1f s after the start, a publish takes ~%.1f s); state left: %s; "
                "reader: %d looks, %d with an index, 0 with a missing blob; %d/%d re-runs complete%s (seed %d)"
                % (STORE_LABELS[kind], len(struck), len(records),
                   ", ".join("%s %d" % item for item in sorted(actions.items())),
                   ", ".join("%s %d" % (name, timings[name]) for name in TIMINGS if timings[name]),
                   min(r["at"] for r in records), max(r["at"] for r in records), median(seen["end"]),
                   ", ".join("%s %d" % (name, left[name]) for name in LEFT if left[name]),
                   sum(r["rounds"] for r in records), sum(r["with_index"] for r in records),
                   len(records), len(records),
                   "; through the gateway outages %d publishes completed by retrying, %d failed naming the bucket"
                   % (len([r for r in retried if r["rc"] == 0]), len([r for r in retried if r["rc"] != 0]))
                   if retried else "", seed))


def test_s3_one_failed_upload_among_many_in_flight_is_reported_by_name(rgw, rgw_bucket):
    """One blob changed after validation, among forty uploading four at a time: the publish fails naming
    that blob (cancelling the uploads in flight once tripped over boto/s3transfer#143 and reported
    "'str' object is not callable"), and nothing unverified becomes visible."""
    import io
    from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
    from ansible_collections.oci.discovery.plugins.module_utils._s3 import S3Store
    store = S3Store(rgw.client(), rgw_bucket, max_concurrency=4)
    blobs, bodies = [], {}
    for i in range(40):
        body = os.urandom(256 * 1024)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        blobs.append({"key": "oci-cas/sha256/%s/%s" % (digest[7:9], digest[7:]), "digest": digest, "size": len(body),
                      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"})
        bodies[digest] = body if i != 1 else body[:-1] + bytes([body[-1] ^ 1])

    class Bodies:
        """The blob source (Store.put_blobs): each blob's body from memory."""
        open = staticmethod(lambda blob: io.BytesIO(bodies[blob["digest"]]))

    with pytest.raises(VerificationError) as caught:
        store.put_blobs(blobs, Bodies)
    assert blobs[1]["digest"] in str(caught.value)
    client = rgw.client()
    for obj in client.list_objects_v2(Bucket=rgw_bucket).get("Contents", []):
        body = client.get_object(Bucket=rgw_bucket, Key=obj["Key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj["Key"].rsplit("/", 1)[1], obj["Key"]
    assert client.list_multipart_uploads(Bucket=rgw_bucket).get("Uploads", []) == []


# --------------------------------------------------------------------------- hostile discovery servers

HOSTILE = "hostile.example.test"
TIMEOUT = 3                      # the client's own timeout (the lookup's and the module's `timeout`)
MIB = 1024 * 1024
GIB = 1024 * MIB
JSON_TYPE = "    types {}\n    default_type %s;\n    charset utf-8;\n    charset_types *;"


class Tarpit(object):
    """A TCP listener that accepts connections and never sends a byte (TLS handshakes hang)."""

    def __init__(self, address):
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def gzip_bomb(path, size=GIB):
    """A valid gzip stream of `size` zero bytes in about a thousandth of that (concatenated members)."""
    member = gzip.compress(b"\0" * (16 * MIB), compresslevel=9)
    with open(path, "wb") as handle:
        for dummy in range(size // (16 * MIB)):
            handle.write(member)
    os.chmod(path, 0o644)
    return os.path.getsize(path)


def hostile_sites(nginx_factory, ca, root):
    """NamedSites with a good index and every kind of hostile answer (see the cases below)."""
    sites = NamedSites(nginx_factory, ca, root)
    engines = {"refEngines": [{"protocol": "oci-index-template-v1", "uri": "/oci-index/{+path}"}]}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}).encode()
    good = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest),
         "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
         "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]}
    sites.write(HOSTILE, "/.well-known/oci-host-ref-engines", engines)
    sites.write(HOSTILE, "/oci-index/good", good)
    sites.write(HOSTILE, "/oci-index/invalid", b'{"manifests": [')
    sites.write(HOSTILE, "/oci-index/array", b"[]")
    sites.write(HOSTILE, "/oci-index/deep", b"[" * (2 * MIB))
    sites.write(HOSTILE, "/oci-index/wrongtype", good)
    sites.host(HOSTILE, "location = /oci-index/wrongtype {\n    types {}\n    default_type application/json;\n}")
    os.truncate(sites.write(HOSTILE, "/oci-index/big", b""), GIB)           # sparse; Content-Length: 1 GiB
    os.truncate(sites.write(HOSTILE, "/oci-index/bigchunked", b""), GIB)    # sub_filter: chunked, no length
    sites.host(HOSTILE, "location = /oci-index/bigchunked {\n%s\n    sub_filter 'x' 'y';\n    sub_filter_types *;\n}"
               % JSON_TYPE % "application/vnd.oci.image.index.v1+json")
    sites.host(HOSTILE, "location = /oci-index/bomb {\n%s\n    add_header Content-Encoding gzip;\n}"
               % JSON_TYPE % "application/vnd.oci.image.index.v1+json")
    gzip_bomb(sites.write(HOSTILE, "/oci-index/bomb", b""))
    sites.write(HOSTILE, "/oci-index/drip", json.dumps(good).encode() + b" " * 300)
    sites.host(HOSTILE, "location = /oci-index/drip {\n%s\n    limit_rate 1;\n}"
               % JSON_TYPE % "application/vnd.oci.image.index.v1+json")
    sites.host(HOSTILE, "location = /oci-index/loop { return 302 /oci-index/loop2; }\n"
                        "location = /oci-index/loop2 { return 302 /oci-index/loop; }")
    sites.host(HOSTILE, "location /oci-index/chain { return 302 $uri/x; }")     # distinct URLs, no end
    sites.host(HOSTILE, "location = /oci-index/downgrade { return 301 http://%s/oci-index/good; }" % HOSTILE)
    sites.host("wrongcert.test", cert=ca.wrong_host)
    sites.write("wrongcert.test", "/.well-known/oci-host-ref-engines", engines)
    sites.host("tarpit.test")
    return sites


def run_in_sites(sites, plays, env=None):
    """ansible-playbook as NamedSites.run_playbook runs it (its /etc/hosts), timed and measured."""
    workdir = procs.make_workdir("measured-playbook", mode=0o755)
    playbook = os.path.join(workdir, "playbook.yml")
    with open(playbook, "w") as handle:
        yaml.safe_dump(plays, handle, sort_keys=False)
    inventory = os.path.join(workdir, "inventory.yml")
    with open(inventory, "w") as handle:
        yaml.safe_dump(local_inventory(), handle)
    argv = [ANSIBLE_PLAYBOOK, "-i", inventory, playbook]
    prefix = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
              'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", sites.hosts_file(workdir)]
    measured = faults.run_measured(argv, env=ansible_env(env), cwd=workdir, prefix=prefix, timeout=600)
    return measured, PlaybookResult(argv, measured.rc, measured.stdout, measured.stderr, workdir)


def task_seconds(result):
    """{task name: seconds} from the JSON callback's task durations."""
    seconds = {}
    for play in result.plays:
        for task in play["tasks"]:
            duration = task["task"]["duration"]
            start, end = (datetime.fromisoformat(duration[k].rstrip("Z")) for k in ("start", "end"))
            seconds[task["task"]["name"]] = (end - start).total_seconds()
    return seconds


# name (hostile.example.test/<case> unless it has a host), lookup options, what the error must say
HOSTILE_CASES = [
    ("loop", "", "redirect loop: https://%s/oci-index/loop -> " % HOSTILE),
    ("chain", "", "more than 5 redirects: https://%s/oci-index/chain -> " % HOSTILE),
    ("big", "", "Content-Length 1073741824 is larger than the limit of 4194304 bytes"),
    ("bigchunked", "", "body larger than the limit of 4194304 bytes"),
    ("bomb", "", "not UTF-8"),
    ("drip", "", "no complete response within the 3 s timeout"),
    ("tarpit.test/app", "port=@TARPIT@", "https://tarpit.test:@TARPIT@/.well-known/oci-host-ref-engines: "
                                         "no complete response within the 3 s timeout"),
    ("wrongtype", "", "served as application/json, expected application/vnd.oci.image.index.v1+json"),
    ("downgrade", "", "refused a redirect to http://%s/oci-index/good: http is not an allowed protocol" % HOSTILE),
    ("wrongcert.test/app", "", "https://wrongcert.test/.well-known/oci-host-ref-engines: TLS certificate "
                               "verification failed"),
    ("invalid", "", "image index: invalid JSON"),
    ("array", "", "expected a JSON object (image index), got an array"),
    ("deep", "", "JSON nested deeper than 64 levels"),
]
# The same client on a managed host (resolve_info), for the cases that cost time or memory.
MODULE_CASES = ["big", "bigchunked", "bomb", "drip", "deep"]


def _hostile_label(case):
    return case.partition("/")[0]


def _hostile_name(case):
    return (case if "/" in case else "%s/%s" % (HOSTILE, case)) + "#1.0"


def test_hostile_discovery_servers_cost_bounded_time_and_memory(nginx_factory, ca, public_tmp_path, figures):
    sites = hostile_sites(nginx_factory, ca, public_tmp_path)
    tarpit = Tarpit(sites.addr)
    try:
        sites.start()

        def plays(names):
            tasks = []
            for label, name, options in names:
                options = ", " + options if options else ""
                tasks.append({"name": label, "ignore_errors": True, "ansible.builtin.set_fact": {
                    "found": "{{ lookup('oci.discovery.resolve', '%s', timeout=%d%s) }}" % (name, TIMEOUT, options)}})
            for label, name, dummy in names:
                if label in MODULE_CASES:
                    tasks.append({"name": "module " + label, "ignore_errors": True, "oci.discovery.resolve_info": {
                        "names": [name], "timeout": TIMEOUT, "ca_path": ca.cert_path}})
            return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks,
                     "vars": {"ansible_oci_discovery_ca_path": ca.cert_path}}]

        cases = [(_hostile_label(case), _hostile_name(case), options.replace("@TARPIT@", str(tarpit.port)))
                 for case, options, dummy in HOSTILE_CASES]
        # The same playbook shape resolving a good name: what a normal resolution costs here.
        normal, normal_result = run_in_sites(sites, plays([(label, _hostile_name("good"), "")
                                                           for label, dummy, dummy2 in cases]))
        assert not normal_result.failed, normal_result
        hostile, result = run_in_sites(sites, plays(cases))
    finally:
        tarpit.close()
    assert result.json is not None, result
    seconds = task_seconds(result)
    normal_seconds = task_seconds(normal_result)
    slowest = []
    for (label, name, dummy), (case, dummy2, reason) in zip(cases, HOSTILE_CASES):
        reason = reason.replace("@TARPIT@", str(tarpit.port))
        for task in [label] + (["module " + label] if label in MODULE_CASES else []):
            outcome = result.result(task)
            assert outcome.get("failed"), (task, outcome)
            message = outcome["msg"] if task == label else json.dumps(outcome)
            assert "cannot resolve %s" % name in message and reason in message, (task, reason, message)
            assert "Traceback" not in message, (task, message)
            # Within the client's own timeout, with a generous margin for Ansible's own work.
            assert seconds[task] <= 2 * TIMEOUT + 10, (task, seconds[task])
            slowest.append((seconds[task], task))
    # Memory: no process of the run (workers, the module) grew much beyond a normal resolution.
    assert hostile.max_rss <= normal.max_rss + 64 * MIB, (hostile, normal)
    assert hostile.peak_tree_pss <= normal.peak_tree_pss + 128 * MIB, (hostile, normal)
    slowest.sort(reverse=True)
    figures.add("hostile discovery servers (client timeout %d s, size limit 4 MiB)" % TIMEOUT,
                "%d hostile answers (%s) refused with the URL and the reason named, through the lookup and (%d) "
                "resolve_info" % (len(HOSTILE_CASES), ", ".join(_hostile_label(c[0]).replace(".test", "")
                                                                for c in HOSTILE_CASES), len(MODULE_CASES)))
    figures.add("hostile discovery servers (client timeout %d s, size limit 4 MiB)" % TIMEOUT,
                "time per resolution: %s (a normal one: %.1f s); whole run %.1f s (normal %.1f s)"
                % (", ".join("%s %.1f s" % (task, s) for s, task in slowest[:4]),
                   max(normal_seconds.values()), hostile.seconds, normal.seconds))
    figures.add("hostile discovery servers (client timeout %d s, size limit 4 MiB)" % TIMEOUT,
                "memory: largest process %.0f MB (normal %.0f MB), process tree peak %.0f MB (normal %.0f MB); "
                "1 GiB bodies, a 1 GiB gzip bomb and 2 MiB of nesting included"
                % (hostile.max_rss / 1e6, normal.max_rss / 1e6, hostile.peak_tree_pss / 1e6,
                   normal.peak_tree_pss / 1e6))


# --------------------------------------------------------------------------- secrets

WRONG_SECRET = "wrong-secret-0ci-d1scovery-must-not-show"
WRONG_ACCESS_KEY = "OCIWRONGACCESSKEY999"
SESSION_TOKEN = "session-token-0ci-d1scovery-must-not-show"
MODULE = "oci.discovery.s3_publish_layout"
OWN_MODULES = ("oci.discovery.",)


def secret_tasks(rgw, bucket, layouts, broken):
    """s3_publish_layout succeeding and failing in every way we can provoke (all ignore_errors, diff)."""
    creds = dict(endpoint_url=rgw.endpoint, region=rgw.region, access_key=rgw.access_key, secret_key=rgw.secret_key)
    common = dict(creds, bucket=bucket, name=FAMILY, src=layouts.family)
    cases = [
        ("success, with a warning", dict(common, well_known=True, acl="public-read")),
        ("success over https", dict(common, endpoint_url=rgw.tls_endpoint, aws_ca_bundle=rgw.ca_path)),
        ("check mode", dict(common, tags=[{"src": "1.0", "dest": "stable"}])),
        ("credentials from the environment", dict((k, v) for k, v in common.items()
                                                  if k not in ("access_key", "secret_key"))),
        ("wrong secret key", dict(common, secret_key=WRONG_SECRET)),
        ("unknown access key", dict(common, access_key=WRONG_ACCESS_KEY)),
        ("session token", dict(common, session_token=SESSION_TOKEN)),
        ("unreachable endpoint", dict(common, endpoint_url="http://127.0.0.1:%d" % procs.free_port())),
        ("missing bucket", dict(common, bucket=bucket + "-missing")),
        ("missing bucket, credentials from the environment",
         dict((k, v) for k, v in common.items() if k not in ("access_key", "secret_key")), ),
        ("untrusted certificate", dict(common, endpoint_url=rgw.tls_endpoint)),
        ("broken layout", dict(common, src=broken["path"])),
    ]
    tasks = []
    for name, args in cases:
        if name == "missing bucket, credentials from the environment":
            args = dict(args, bucket=bucket + "-missing")
        task = {"name": name, MODULE: args, "ignore_errors": True, "diff": True}
        if name == "check mode":
            task["check_mode"] = True
        tasks.append(task)
    return tasks


def role_plays(rgw, bucket, layouts):
    site = {"s3_publisher_bucket": bucket, "s3_publisher_create_bucket": True, "s3_publisher_ceph": True,
            "s3_publisher_endpoint_url": rgw.endpoint, "s3_publisher_region": rgw.region,
            "s3_publisher_access_key": rgw.access_key, "s3_publisher_secret_key": rgw.secret_key,
            "s3_publisher_images": [{"name": FAMILY, "src": layouts.family}]}
    failing = dict(site, s3_publisher_secret_key=WRONG_SECRET, s3_publisher_create_bucket=False)
    return [
        {"name": "role", "hosts": "localhost", "gather_facts": False, "vars": site,
         "tasks": [{"name": "role succeeds", "ansible.builtin.include_role": {"name": "oci.discovery.s3_publisher"}}]},
        {"name": "role failing", "hosts": "localhost", "gather_facts": False, "vars": failing,
         "tasks": [{"block": [{"name": "role with a wrong secret key",
                               "ansible.builtin.include_role": {"name": "oci.discovery.s3_publisher"}}],
                    "rescue": [{"name": "role failed", "ansible.builtin.debug": {"msg": "the role failed"}}]}]},
    ]


def _occurrences(obj, needle, path=()):
    """Paths (tuples of keys) of the strings in a JSON document that contain `needle`."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if needle in str(key):
                found.append(path + (key,))
            found += _occurrences(value, needle, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _occurrences(value, needle, path + (i,))
    elif isinstance(obj, str) and needle in obj:
        found.append(path)
    return found


def test_s3_secrets_never_appear_even_with_vvv(rgw, rgw_bucket, layouts, broken_layout, run_playbook, figures):
    # An unreadable metadata ledger makes the module warn: warnings are checked too.
    rgw.client().put_object(Bucket=rgw_bucket, Key=".oci-discovery/s3-ledger.json", Body=b"not a ledger")
    broken = broken_layout("digest_mismatch")
    role_bucket = "t-%s" % uuid.uuid4().hex[:16]
    plays = [{"name": "module", "hosts": "localhost", "gather_facts": False,
              "tasks": secret_tasks(rgw, rgw_bucket, layouts, broken)}] + role_plays(rgw, role_bucket, layouts)
    # Credentials in the environment too (used by the tasks that give none). The JSON callback: its
    # output holds every result field that the default callback renders, plus -vvv's display lines.
    env = dict(rgw.aws_env(), AWS_ENDPOINT_URL=None)
    result = run_playbook(plays, verbosity=3, env=env, diff=True)
    assert result.json is not None, result
    outcome = dict((name, result.result(name)) for name in (t["name"] for t in plays[0]["tasks"]))
    for name in ("success, with a warning", "success over https", "check mode", "credentials from the environment"):
        assert not outcome[name].get("failed"), (name, outcome[name])
    assert any("unreadable metadata ledger" in w for w in outcome["success, with a warning"].get("warnings", []))
    # RGW without STS ignores a session token: that case may succeed; it must not show the token either way.
    assert "Traceback" not in json.dumps(outcome["session token"])
    failures = {"wrong secret key": "403", "unknown access key": "403",
                "unreachable endpoint": "127.0.0.1", "missing bucket": "does not exist",
                "missing bucket, credentials from the environment": "does not exist",
                "untrusted certificate": "certificate", "broken layout": broken["expect"]}
    for name, expect in failures.items():
        assert outcome[name].get("failed") and expect in outcome[name]["msg"], (name, expect, outcome[name])
    assert not result.result("role succeeds").get("failed"), result
    assert "role failed" in result.task_names(), result.task_names()

    # The secrets: nowhere, in any output of either callback.
    secrets = {"secret key": rgw.secret_key, "wrong secret key": WRONG_SECRET, "session token": SESSION_TOKEN}
    text = result.stdout + result.stderr
    for what, secret in secrets.items():
        assert secret not in text, "%s shown:\n%s" % (what, _around(text, secret))
    # The access key ID: never in what oci.discovery modules return, nor in any message; amazon.aws modules
    # (in the role) show it in their `invocation`, deliberately (amazon.aws sets no_log=False for it).
    modules = task_modules(plays)
    allowed = []
    for key_id in (rgw.access_key, WRONG_ACCESS_KEY):
        for play in result.json["plays"]:
            for task in play["tasks"]:
                name = task["task"]["name"]
                for dummy, res in task["hosts"].items():
                    for path in _occurrences(res, key_id):
                        module = res.get("action") or modules.get(name, "?")
                        assert path[-3:] == ("invocation", "module_args", "access_key") and \
                            not module.startswith(OWN_MODULES), ("access key ID shown", name, module, path)
                        allowed.append(name)
        for line in text.splitlines():
            if key_id in line:
                assert re.match(r'^\s*"access_key": "%s",?$' % key_id, line), line
    figures.add("secrets at -vvv (s3_publish_layout: %d cases; the s3_publisher role: success and failure)"
                % len(plays[0]["tasks"]),
                "%d lines of output: secret key, session token, wrong secret key: 0 occurrences; access key ID: "
                "0 in oci.discovery output, %d in amazon.aws modules' invocation (no_log=False there by design)"
                % (text.count("\n"), len(allowed)))


def task_modules(plays):
    """{task name: module} for the tasks of `plays` and of the s3_publisher role's task files."""
    found = {}

    def walk(tasks):
        for task in tasks or ():
            for key in ("block", "rescue", "always"):
                walk(task.get(key))
            modules = [k for k in task if "." in k and k not in ("ansible.builtin.include_role",)]
            if "name" in task and modules:
                found[task["name"]] = modules[0]
    for play in plays:
        walk(play.get("tasks"))
    tasks_dir = os.path.join(REPO, "roles", "s3_publisher", "tasks")
    for name in sorted(os.listdir(tasks_dir)):
        with open(os.path.join(tasks_dir, name)) as handle:
            walk(yaml.safe_load(handle))
    return found


def _around(text, needle, width=300):
    at = text.find(needle)
    return text[max(0, at - width):at + width]
