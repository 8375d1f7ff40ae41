# -*- coding: utf-8 -*-
"""A throwaway single-node Ceph cluster with a RADOS Gateway: real S3 on loopback.

    rgw = RGW(cert=cas.server, ca_path=cas.cert_path).start()
    rgw.endpoint        -> "http://127.0.0.1:PORT"
    rgw.tls_endpoint    -> "https://localhost:TLS_PORT" (the cert names localhost and 127.0.0.1)
    rgw.access_key, rgw.secret_key, rgw.region ("us-east-1")
    rgw.client(tls=False)  -> boto3 S3 client (https: verify against the test CA)
    rgw.aws_env(tls=False) -> environment variables for tools/modules (AWS_*; see below)
    rgw.stop()          -> SIGKILL the recorded PIDs and delete the temporary directory

One monitor, one memstore OSD and radosgw, every path inside one temporary directory,
configured as measured in shared/testing/SERVICES.md (paxos propose interval 0.05,
osd crush/class update on start = false, auth none, msgr v1 on 127.0.0.1 only).
Start-up takes about 2 s.  Stop is SIGKILL: radosgw needs ~6 s for SIGTERM and the
data lives in memory anyway.

Environment: boto3 clients from `client()` get `verify=` explicitly (the test CA for
https), which overrides the machine-wide AWS_CA_BUNDLE.  `aws_env()` sets
AWS_CA_BUNDLE to the test CA for https (and removes it for http); the ceph
processes themselves run without the CA bundle variables (rig.procs.service_env).
"""
import json
import os
import signal
import time
import uuid

from .procs import (RigError, Service, ensure_ports_free, free_port, make_workdir, port_open,
                    remove_workdir, run, service_env, wait_until)

ACCESS_KEY = "OCIDISCOVERYTESTKEY0"
SECRET_KEY = "oci-discovery-test-secret-key-0000000000"
REGION = "us-east-1"
# Requests whose Host is <bucket>.WEBSITE_DOMAIN go to RGW's static website endpoint. With a website
# domain set, RGW reads an unknown Host as a bucket name (CNAME style): "rgw dns name = localhost" keeps
# path-style REST requests to localhost (the https endpoint) working; 127.0.0.1 is an address, never a bucket.
WEBSITE_DOMAIN = "s3-website.test"
# The OSD keeps every object in RAM, up to this much: size it for what a run stores at once.
MEMSTORE_BYTES = 2 * 1024 ** 3

CONF_TEMPLATE = """\
# written by tests/rig/ceph.py
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mon data = {d}/$name
osd data = {d}/$name
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
paxos propose interval = 0.05
osd crush update on start = false
osd class update on start = false

[client.rgw.a]
rgw frontends = {frontends}
rgw enable static website = true
rgw dns name = localhost
rgw dns s3website name = %s
""" % WEBSITE_DOMAIN


def s3_config():
    """botocore Config for RGW: checksums only when required (aws-chunked trailers fail over https)."""
    from botocore.config import Config
    return Config(request_checksum_calculation="when_required",
                  response_checksum_validation="when_required",
                  retries={"max_attempts": 2, "mode": "standard"})


class RGW:
    """One single-node Ceph cluster with radosgw listening on http and (with cert) https."""

    def __init__(self, cert=None, ca_path=None, name="ceph", memstore_bytes=MEMSTORE_BYTES):
        self.name = name
        self.memstore_bytes = int(memstore_bytes)
        self.cert = cert
        self.ca_path = ca_path if ca_path is not None else (cert.ca.cert_path if cert is not None else None)
        self.mon_port = free_port()
        self.port = free_port()
        self.tls_port = free_port() if cert is not None else None
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.website_domain = WEBSITE_DOMAIN
        self.dir = None
        self.services = []
        self.startup_seconds = None

    # -- endpoints
    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def tls_endpoint(self):
        if self.tls_port is None:
            raise RigError("this RGW was started without a certificate: no https endpoint")
        return "https://localhost:%d" % self.tls_port

    def endpoint_url(self, tls=False):
        return self.tls_endpoint if tls else self.endpoint

    # -- life cycle
    def _ceph(self, *args, what=None, timeout=60):
        return run(["ceph", "-c", self.conf, "--connect-timeout", "20"] + list(args),
                   what=what or "ceph " + " ".join(args), timeout=timeout)

    def start(self, timeout=60, attempts=3):
        """Start the cluster; a start that fails is torn down and tried again on fresh ports.

        A loaded 2-core machine occasionally gets a monitor that refuses its first commands
        (EPERM "problem getting command descriptions") or an OSD that exits at start-up: one
        retry costs ~2 s, a failed session fixture costs every S3 test.
        """
        attempt = 1
        while True:
            try:
                return self._start(timeout)
            except RigError as exc:
                if attempt >= attempts:
                    raise RigError("RGW did not start in %d attempts; last failure: %s" % (attempts, exc))
            attempt += 1
            self.mon_port, self.port = free_port(), free_port()
            self.tls_port = free_port() if self.cert is not None else None

    def _start(self, timeout):
        t0 = time.monotonic()
        ports = [self.mon_port, self.port] + ([self.tls_port] if self.tls_port else [])
        ensure_ports_free(*ports, what="ceph")
        self.dir = d = make_workdir(self.name, mode=0o700)
        for sub in ("run", "log", "mon.a", "osd.0"):
            os.makedirs(os.path.join(d, sub))
        frontends = "beast endpoint=127.0.0.1:%d" % self.port
        if self.cert is not None:
            frontends += " ssl_endpoint=127.0.0.1:%d ssl_certificate=%s ssl_private_key=%s" % (
                self.tls_port, self.cert.cert_path, self.cert.key_path)
        fsid = str(uuid.uuid4())
        self.conf = os.path.join(d, "ceph.conf")
        with open(self.conf, "w") as handle:
            handle.write(CONF_TEMPLATE.format(fsid=fsid, mon_port=self.mon_port, d=d, frontends=frontends,
                                              memstore_bytes=self.memstore_bytes))
        env = service_env({"CEPH_CONF": self.conf})
        try:
            # Monitor.
            monmap = os.path.join(d, "monmap")
            run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                 "[v1:127.0.0.1:%d]" % self.mon_port, monmap], what="monmaptool")
            run(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap], what="ceph-mon --mkfs")
            mon = self._spawn("ceph-mon", ["ceph-mon", "-c", self.conf, "-f", "-i", "a"], env)
            wait_until(lambda: port_open(self.mon_port), "ceph-mon on 127.0.0.1:%d" % self.mon_port,
                       [mon], timeout)
            # The port answers before the monitor serves commands: wait for its quorum.
            wait_until(lambda: self._ceph("quorum_status", timeout=20), "ceph-mon in quorum", [mon], timeout)
            # OSD.
            osd_uuid = str(uuid.uuid4())
            osd_id = self._ceph("osd", "new", osd_uuid, what="ceph osd new").strip()
            if osd_id != "0":
                raise RigError("ceph osd new returned %r, expected 0" % osd_id)
            self._ceph("osd", "crush", "add", "osd.0", "1.0", "root=default")
            run(["ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
                what="ceph-osd --mkfs")
            osd = self._spawn("ceph-osd", ["ceph-osd", "-c", self.conf, "-f", "-i", "0"], env)

            def osd_up():
                stat = json.loads(self._ceph("osd", "stat", "-f", "json", timeout=20))
                return stat.get("num_up_osds", stat.get("osdmap", {}).get("num_up_osds")) == 1
            wait_until(osd_up, "ceph-osd up", [mon, osd], timeout)
            # Gateway and its user.
            run(["radosgw-admin", "-c", self.conf, "user", "create", "--uid", "tester",
                 "--display-name", "oci.discovery tests", "--access-key", self.access_key,
                 "--secret-key", self.secret_key], what="radosgw-admin user create", timeout=timeout)
            rgw = self._spawn("radosgw", ["radosgw", "-c", self.conf, "-f", "-n", "client.rgw.a"], env)
            for port in ports[1:]:
                wait_until(lambda port=port: port_open(port), "radosgw on 127.0.0.1:%d" % port,
                           [mon, osd, rgw], timeout)
            client = self.client(tls=False)
            wait_until(lambda: client.list_buckets() is not None, "RGW answering S3 (list_buckets)",
                       [mon, osd, rgw], timeout)
            if self.tls_port:
                tls_client = self.client(tls=True)
                wait_until(lambda: tls_client.list_buckets() is not None, "RGW answering S3 over https",
                           [mon, osd, rgw], timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _spawn(self, name, argv, env):
        service = Service(name, argv, os.path.join(self.dir, "log", "%s.stdout" % name), env=env,
                          kill_signal=signal.SIGKILL,
                          extra_logs=[os.path.join(self.dir, "log", self._log_name(name))])
        self.services.append(service)
        return service

    @staticmethod
    def _log_name(name):
        return {"ceph-mon": "mon.a.log", "ceph-osd": "osd.0.log", "radosgw": "client.rgw.a.log"}[name]

    def stop(self):
        for service in reversed(self.services):
            service.stop()
        self.services = []
        if self.dir:
            remove_workdir(self.dir)
            self.dir = None

    def alive(self):
        return bool(self.services) and all(s.alive() for s in self.services)

    # -- clients
    def client(self, tls=False, service="s3", **kwargs):
        """A boto3 client for this gateway (https verified against the test CA)."""
        import boto3
        params = dict(endpoint_url=self.endpoint_url(tls), aws_access_key_id=self.access_key,
                      aws_secret_access_key=self.secret_key, region_name=self.region,
                      config=s3_config(), verify=self.ca_path if tls else False)
        params.update(kwargs)
        return boto3.session.Session().client(service, **params)

    def anonymous_client(self, tls=False):
        from botocore import UNSIGNED
        from botocore.config import Config
        return self.client(tls=tls, config=s3_config().merge(Config(signature_version=UNSIGNED)))

    def aws_env(self, tls=False):
        """AWS_* variables pointing tools (aws cli, boto3, amazon.aws modules) at this gateway."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
               "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
               "AWS_ENDPOINT_URL": self.endpoint_url(tls),
               "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
               "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
        env["AWS_CA_BUNDLE"] = self.ca_path if tls else None
        return env

    def module_args(self, tls=False):
        """amazon.aws-style connection options for modules (e.g. under module_defaults)."""
        args = {"endpoint_url": self.endpoint_url(tls), "access_key": self.access_key,
                "secret_key": self.secret_key, "region": self.region}
        if tls:
            args["aws_ca_bundle"] = self.ca_path
        return args

    def url(self, bucket, key="", tls=False):
        """Path-style URL of an object (for anonymous HTTP GETs)."""
        return "%s/%s/%s" % (self.endpoint_url(tls), bucket, key)

    def __repr__(self):
        return "<RGW http=%s https=%s dir=%s>" % (self.port, self.tls_port, self.dir)
