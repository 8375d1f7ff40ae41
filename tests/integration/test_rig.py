# -*- coding: utf-8 -*-
"""Smoke tests of the test rig itself: each service does what later tests rely on."""
import io
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid

import boto3.s3.transfer
import botocore.exceptions
import pytest

from rig import procs
from rig.nginx import Nginx, NginxConfigError
from rig.sshd import Sshd

OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json; charset=utf-8"
OCI_TYPES = "types {} default_type application/vnd.oci.image.index.v1+json; charset utf-8; charset_types *;"


def fetch(url, context=None):
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return resp.status, resp.headers, resp.read()


def write_public(root, relpath, data):
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o644)
    return path


# --------------------------------------------------------------------------- nginx

def test_nginx_serves_exact_oci_content_type_over_http_and_https(nginx_factory, public_tmp_path, ca):
    body = b'{"schemaVersion":2,"manifests":[]}'
    write_public(public_tmp_path, ".well-known/index.json", body)
    server = "root %s;\nlocation / { %s }" % (public_tmp_path, OCI_TYPES)
    ngx = nginx_factory(["server {\n    listen 127.0.0.1:@PORT@;\n    %s\n}" % server,
                         "server {\n    listen 127.0.0.1:@TLS_PORT@ ssl;\n    ssl_certificate @CERT@;\n"
                         "    ssl_certificate_key @KEY@;\n    %s\n}" % server])

    status, headers, data = fetch(ngx.url("/.well-known/index.json"))
    assert (status, headers["Content-Type"], data) == (200, OCI_INDEX_TYPE, body)

    status, headers, data = fetch(ngx.url("/.well-known/index.json", tls=True, host="localhost"),
                                  context=ca.ssl_context())
    assert (status, headers["Content-Type"], data) == (200, OCI_INDEX_TYPE, body)


def test_nginx_https_names_come_from_the_test_ca(nginx_factory, ca):
    ngx = nginx_factory(['return 200 "plain";'])
    wrong = nginx_factory(["server {\n listen 127.0.0.1:@TLS_PORT@ ssl;\n ssl_certificate @CERT@;\n"
                           " ssl_certificate_key @KEY@;\n return 200 'x';\n}"], cert=ca.wrong_host)
    assert fetch(ngx.url("/"))[2] == b"plain"
    with pytest.raises(urllib.error.URLError) as err:
        fetch(wrong.url("/", tls=True, host="localhost"), context=ca.ssl_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    assert "localhost" in str(err.value.reason)


def test_nginx_reload_validates_and_keeps_the_old_config(nginx_factory):
    ngx = nginx_factory(['location / { return 200 "one"; }'])
    assert fetch(ngx.url("/"))[2] == b"one"

    with pytest.raises(NginxConfigError) as err:
        ngx.reload(['location / { return 200 "two"; }', "bogus_directive on;"])
    assert 'unknown directive "bogus_directive"' in str(err.value)
    assert fetch(ngx.url("/"))[2] == b"one"

    ngx.reload(['location / { return 200 "two"; }'])
    assert fetch(ngx.url("/"))[2] == b"two"


def test_nginx_refuses_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        ngx = Nginx(port=busy.getsockname()[1])
        try:
            with pytest.raises(procs.RigError, match="already in use"):
                ngx.start(['return 200 "x";'])
        finally:
            ngx.remove()


def test_nginx_workers_cannot_read_private_files(nginx_factory, public_tmp_path):
    """Documented rig behaviour: workers run as nobody, so 0600 files (umoci blobs) get 403."""
    write_public(public_tmp_path, "public", b"ok")
    os.chmod(write_public(public_tmp_path, "private", b"secret"), 0o600)
    ngx = nginx_factory(["root %s;" % public_tmp_path])
    assert fetch(ngx.url("/public"))[2] == b"ok"
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(ngx.url("/private"))
    assert err.value.code == 403


# --------------------------------------------------------------------------- Ceph RGW

@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_rgw_stores_and_serves_exact_content_type(rgw, ca, tls):
    s3 = rgw.client(tls=tls)
    bucket = "rig-%s-%s" % ("https" if tls else "http", uuid.uuid4().hex[:8])
    s3.create_bucket(Bucket=bucket)
    body = b'{"schemaVersion":2,"manifests":[]}'
    s3.put_object(Bucket=bucket, Key="a/b/index.json", Body=body, ContentType=OCI_INDEX_TYPE,
                  ACL="public-read")
    assert s3.head_object(Bucket=bucket, Key="a/b/index.json")["ContentType"] == OCI_INDEX_TYPE

    status, headers, data = fetch(rgw.url(bucket, "a/b/index.json", tls=tls),
                                  context=ca.ssl_context() if tls else None)
    assert (status, headers["Content-Type"], data) == (200, OCI_INDEX_TYPE, body)

    anon = rgw.anonymous_client(tls=tls)
    assert anon.get_object(Bucket=bucket, Key="a/b/index.json")["Body"].read() == body

    # Multipart upload through s3transfer (UploadPart is what fails over https without the config).
    big = os.urandom(6 * 1024 * 1024)
    config = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                              multipart_chunksize=5 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(big), bucket, "big", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(big)
    assert head["ETag"].strip('"').endswith("-2")
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big


def test_rgw_private_objects_are_not_public(rgw):
    s3 = rgw.client()
    bucket = "rig-private-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(rgw.url(bucket, "k"))
    assert err.value.code == 403


def test_rgw_https_is_verified_against_the_test_ca(rgw, ca):
    untrusting = rgw.client(tls=True, verify=ca.other_ca.cert_path)
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_buckets()
    assert "Buckets" in rgw.client(tls=True).list_buckets()


# --------------------------------------------------------------------------- sshd + ansible

def test_playbook_over_ssh_as_the_test_user(sshd, run_playbook):
    result = run_playbook([{
        "hosts": "all", "gather_facts": False,
        "tasks": [
            {"name": "ping", "ansible.builtin.ping": {}},
            {"name": "who", "ansible.builtin.command": "id -un"},
            {"name": "python", "ansible.builtin.command": "/usr/bin/python3 -c 'import uritemplate'"},
        ]}], inventory=sshd.inventory("managed"))
    assert not result.failed, result
    assert result.result("ping")["ping"] == "pong"
    assert result.result("who", "managed")["stdout"] == sshd.user == "ocitest"
    assert result.result("python")["rc"] == 0
    assert result.changed_count == 2


def test_test_user_can_write_a_web_root(sshd, run_playbook):
    webroot = sshd.make_webroot()
    result = run_playbook(textwrap.dedent("""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: mkdir
              ansible.builtin.file: {path: "{{ webroot }}/sub", state: directory, mode: "0755"}
            - name: write
              ansible.builtin.copy: {content: "hello\\n", dest: "{{ webroot }}/sub/hello.txt", mode: "0644"}
        """), inventory=sshd.inventory(), extra_vars={"webroot": webroot})
    assert not result.failed, result
    path = os.path.join(webroot, "sub", "hello.txt")
    with open(path) as handle:
        assert handle.read() == "hello\n"
    assert os.stat(path).st_uid == sshd.uid


def test_playbook_local_connection(run_playbook, public_tmp_path):
    target = os.path.join(public_tmp_path, "local.txt")
    result = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "write", "ansible.builtin.copy": {"content": "x", "dest": target}},
        {"name": "interpreter", "ansible.builtin.command": "{{ ansible_playbook_python }} -c 'import boto3'"},
    ]}])
    assert not result.failed, result
    assert result.result("write", "localhost")["changed"] is True
    assert open(target).read() == "x"
    again = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "write", "ansible.builtin.copy": {"content": "x", "dest": target}}]}], check=True, diff=True)
    assert again.result("write")["changed"] is False and again.changed_count == 0


def test_failed_playbook_reports_the_task(run_playbook):
    result = run_playbook("- hosts: all\n  gather_facts: false\n  tasks:\n"
                          "    - name: boom\n      ansible.builtin.fail: {msg: expected failure}\n")
    assert result.failed and result.rc == 2
    assert result.failures() == [("boom", "localhost", "expected failure")]


# --------------------------------------------------------------------------- process hygiene

def _group_members(pgid):
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid and procs._alive(int(name)):
                    members.append(int(name))
            except ProcessLookupError:
                pass
    return members


def test_stopped_services_leave_no_process(run_playbook):
    ngx = Nginx()
    ngx.start(['return 200 "x";'])
    ssh = Sshd().start()
    try:
        # An Ansible run leaves a ControlPersist master and an sshd session behind.
        assert not run_playbook([{"hosts": "all", "gather_facts": False,
                                  "tasks": [{"ansible.builtin.ping": {}}]}], inventory=ssh.inventory()).failed
        watched = set(_group_members(ngx.service.pid)) | {ssh.service.pid} | set(procs.descendants(ssh.service.pid))
        assert len(watched) >= 4  # nginx master + worker, sshd listener + its session
    finally:
        ngx.remove()
        ssh.stop()
    procs.reap_orphans(wait=2.0)
    alive = [pid for pid in watched if procs._alive(pid)]
    assert alive == []
    assert not [e for e in procs.registry_entries() if e.get("pid") in watched]


def test_cleanup_kills_what_a_crashed_run_left(tmp_path):
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=tests_dir)
    # A "test run" that starts a service and dies without stopping it.
    crashed = subprocess.run(
        [sys.executable, "-c", "import os, sys; from rig import procs; "
         "s = procs.Service('sleeper', ['sleep', '600'], sys.argv[1]); print(s.pid); sys.stdout.flush(); os._exit(1)",
         str(tmp_path / "sleeper.log")], env=env, capture_output=True, text=True, timeout=30, check=False)
    pid = int(crashed.stdout.strip())
    assert procs._alive(pid)
    out = subprocess.run([sys.executable, "-m", "rig.cleanup"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "killed sleeper (pid %d)" % pid in out.stdout
    procs.reap_orphans(wait=1.0)
    assert not procs._alive(pid)
