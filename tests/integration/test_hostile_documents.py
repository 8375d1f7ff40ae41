# -*- coding: utf-8 -*-
"""The resolver against hostile remote documents, through ansible-playbook and real nginx over https.

What a remote document says is not trusted (docs/security.md): it cannot make the resolver read
local files, make it walk without end, turn a security failure into "not found", or receive the
credentials meant for another origin. Each group of checks runs in one playbook; every check here
fails on the code before the fix (a blocked read, a hang, a silent empty result, a leaked header or
an unclear message).

Host names: see discovery_hosts.py.
"""
import json
import os
import time

import pytest

from discovery_hosts import NamedSites
from test_resolve import desc, engines, error_of, fact, facts, index, lookup_play, manifest, put_blob, sha

CAS_T = "oci-cas-template-v1"
IDX = "application/vnd.oci.image.index.v1+json"
WK = "/.well-known/oci-host-ref-engines"
CAS_REL = {"protocol": CAS_T, "uri": "/oci-cas/{algorithm}/{encoded:2}/{encoded}"}
NAMES = ("sec.test", "*.sec.test", "*.creds.sec.test")
ARM = {"os": "linux", "architecture": "arm64"}
AMD = {"os": "linux", "architecture": "amd64"}


def blob_doc(sites, host, obj):
    """Serve a JSON document as a CAS blob; return its bytes."""
    data = json.dumps(obj, sort_keys=True).encode()
    put_blob(sites, host, data)
    return data


@pytest.fixture
def hostile(nginx_factory, ca, public_tmp_path):
    s = NamedSites(nginx_factory, ca, public_tmp_path, names=NAMES)
    # sec.test publishes app#1.0; every other name below walks up to it and finds no other tag.
    s.write("sec.test", WK, engines("/oci-index/{+path}", cas=[CAS_REL]))
    s.write("sec.test", "/oci-index/app", index(desc(manifest("sec-1.0"), "1.0")))
    return s


def xdg_home(tmp_path, keys):
    home = tmp_path / "xdg"
    (home / "oci-discovery").mkdir(parents=True)
    (home / "oci-discovery" / "ref-engine-discovery.json").write_text(json.dumps(keys))
    return {"XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "none")}


def test_remote_documents_cannot_make_the_resolver_read_local_files(hostile, ca, tmp_path):
    """Item 4: only URIs the local XDG file writes may be file:, and no local read blocks."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    secret = manifest("a local file")
    (secret_dir / sha(secret).split(":")[1]).write_bytes(secret)
    local_cas = {"protocol": CAS_T, "uri": "file://%s/{encoded}" % secret_dir}
    # A remote index whose entry names the local file as its CAS engine: a size and digest oracle.
    hostile.write("sec.test", "/oci-index/remote/app", index(desc(secret, "1.0", casEngines=[local_cas])))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for host in ("xdg.sec.test", "localcas.sec.test", "fifo.sec.test", "dev.sec.test"):
        hostile.host(host)
    env = xdg_home(tmp_path, {
        r"xdg\.sec\.test/.*": engines("https://sec.test/oci-index/remote/{+path}"),
        # the same remote index, with the same file: CAS engine written in the local file itself
        r"localcas\.sec\.test/.*": engines("https://sec.test/oci-index/remote/{+path}", cas=[local_cas]),
        r"fifo\.sec\.test/.*": engines("file://" + fifo),
        r"dev\.sec\.test/.*": engines("file:///dev/zero"),
    })
    env["OCI_DISCOVERY_CA_PATH"] = ca.cert_path
    hostile.start()
    q = "{{ query('oci.discovery.resolve', '%s', verify=true) }}"
    tasks = [fact("remote_file_cas", q % "xdg.sec.test/app#1.0", ignore_errors=True),
             fact("local_file_cas", q % "localcas.sec.test/app#1.0"),
             fact("fifo", q % "fifo.sec.test/app#fifo", ignore_errors=True),
             fact("device", q % "dev.sec.test/app#dev", ignore_errors=True)]
    started = time.monotonic()
    result = hostile.run_playbook(lookup_play(tasks), env=env, timeout=120)
    assert time.monotonic() - started < 60, "a local read blocked"

    message = error_of(result, "remote_file_cas")
    assert "cannot fetch %s" % sha(secret) in message
    assert "file://%s/%s: refused: a remote document names this local file" % (
        secret_dir, sha(secret).split(":")[1]) in message
    # written in the local XDG file: read and verified (after the entry's own engine was refused)
    assert facts(result, "local_file_cas") == [sha(secret)]
    assert "file://%s: refused: %s is not a regular file" % (fifo, fifo) in error_of(result, "fifo")
    assert "file:///dev/zero: refused: /dev/zero is not a regular file" in error_of(result, "device")


def chain(sites, depth, breadth, leaf):
    """Indexes, each listing the next one ``breadth`` times, the last ``leaf``: (top descriptor, digests)."""
    child, digests = desc(leaf, platform=ARM), []
    for dummy in range(depth):
        data = blob_doc(sites, "sec.test", index(*[child] * breadth))
        child = desc(data, media_type=IDX)
        digests.append(child["digest"])
    return child, digests


def test_nested_indexes_are_searched_once_and_walks_are_budgeted(hostile, ca):
    """Item 5: each digest once per name; documents, engines and bytes budgets name themselves."""
    leaf = manifest("arm64 leaf")
    put_blob(hostile, "sec.test", leaf)
    # 8 levels, each listing the next 30 times: 30^7 paths, 8 distinct documents.
    top, nested = chain(hostile, 8, 30, leaf)
    hostile.write("sec.test", "/oci-index/dag", index(dict(top, annotations={
        "org.opencontainers.image.ref.name": "1.0"})))
    # 30 distinct indexes under one: more documents than a budget of 10.
    wide = [desc(blob_doc(hostile, "sec.test", index(desc(manifest("amd %d" % i), platform=AMD))), media_type=IDX)
            for i in range(30)]
    top = blob_doc(hostile, "sec.test", index(*wide))
    hostile.write("sec.test", "/oci-index/wide", index(desc(top, "1.0", media_type=IDX)))
    # an entry with 50 CAS engines that all answer 404
    dead = [{"protocol": CAS_T, "uri": "/dead/%d/{encoded}" % i} for i in range(50)]
    hostile.write("sec.test", "/oci-index/dead", index(desc(manifest("dead"), "1.0", casEngines=dead)))
    hostile.start()
    q = "{{ query('oci.discovery.resolve', 'sec.test/%s#1.0', %s) }}"
    tasks = [fact("dag", q % ("dag", "platform='linux/arm64'")),
             fact("documents", q % ("wide", "platform='linux/arm64', max_documents=10"), ignore_errors=True),
             fact("engines", q % ("dead", "verify=true, max_engines=10"), ignore_errors=True),
             fact("bytes", q % ("wide", "platform='linux/arm64', max_total_size=3000"), ignore_errors=True)]
    result = hostile.run_playbook(lookup_play(tasks, ansible_oci_discovery_ca_path=ca.cert_path), timeout=120)
    assert facts(result, "dag") == [sha(leaf)]
    log = hostile.access_log()
    # each of the 8 nested indexes fetched once, the leaf not at all (no verify)
    for digest in nested + [sha(leaf)]:
        count = len([line for line in log if digest.split(":")[1] in line])
        assert count == (0 if digest == sha(leaf) else 1), (digest, "\n".join(log))
    message = error_of(result, "documents")
    assert "cannot resolve sec.test/wide#1.0: stopped: more than 10 documents fetched for one name " \
           "(the max_documents budget ran out)" in message
    message = error_of(result, "engines")
    assert "stopped: more than 10 engines tried for one name (the max_engines budget ran out)" in message
    message = error_of(result, "bytes")
    assert "stopped: more than 3000 bytes read for one name (the max_total_size budget ran out)" in message
    assert len([line for line in log if "/dead/" in line]) <= 10


def test_security_failures_are_never_reported_as_missing(hostile, ca, tmp_path):
    """Item 6: TLS, redirect-policy and temporary DNS failures fail whatever on_missing says.

    Each name's own host fails, and its ancestor sec.test answers with an index without the tag.
    """
    hostile.host("tlsfail.sec.test", cert=ca.wrong_host)
    hostile.host("downgrade.sec.test", "location = %s { return 301 http://downgrade.sec.test%s; }" % (WK, WK))
    hostile.host("dnsfail.sec.test")
    hostile.unresolvable.add("dnsfail.sec.test")
    hostile.host("absent.sec.test")
    hostile.start()
    # a resolver that does not answer: getaddrinfo says EAI_AGAIN, not "no such host"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.254.0.1\noptions timeout:1 attempts:1\n")
    os.chmod(str(resolv), 0o644)
    q = "{{ query('oci.discovery.resolve', '%s.sec.test/app#7.7', on_missing='empty') }}"
    tasks = [fact(key, q % key, ignore_errors=True) for key in ("tlsfail", "downgrade", "dnsfail", "absent")]
    result = hostile.run_playbook(lookup_play(tasks, ansible_oci_discovery_ca_path=ca.cert_path),
                                  resolv_conf=str(resolv), timeout=120)
    message = error_of(result, "tlsfail")
    assert "https://tlsfail.sec.test%s: TLS certificate verification failed" % WK in message
    assert "https://sec.test/oci-index/app: no entry tagged '7.7'" in message
    message = error_of(result, "downgrade")
    assert "refused a redirect to http://downgrade.sec.test%s" % WK in message
    message = error_of(result, "dnsfail")
    assert "https://dnsfail.sec.test%s: DNS lookup failed, not an answer about the host" % WK in message
    # a real "absent" (404 on the host, no such tag on its ancestor) is still "not found"
    assert facts(result, "absent") == []


def test_headers_go_only_to_the_origins_the_user_names(hostile, ca):
    """Item 7: not to ancestors, not to hosts a template names, not across redirects, never shown."""
    own, cdn, sub = "own-token-3f9a", "cdn-token-77c1", "sub-token-a1b2"
    blob = manifest("creds-1.0")
    hostile.log_headers("X-Secret")
    hostile.write("creds.sec.test", WK, engines("/oci-index/{+path}", cas=[
        {"protocol": CAS_T, "uri": "https://cdn.sec.test/oci-cas/{algorithm}/{encoded:2}/{encoded}"}]))
    # the name's own index redirects to another origin, whose index names a third host for blobs
    hostile.host("creds.sec.test", "location = /oci-index/app { return 302 https://mirror.sec.test/oci-index/app; }")
    hostile.write("mirror.sec.test", "/oci-index/app", index(desc(blob, "1.0", casEngines=[
        {"protocol": CAS_T, "uri": "https://evil.sec.test/oci-cas/{algorithm}/{encoded:2}/{encoded}"}])))
    hostile.host("evil.sec.test")
    put_blob(hostile, "cdn.sec.test", blob)
    hostile.host("a.creds.sec.test")
    hostile.start()
    play = [{"name": "headers", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "module", "register": "r", "oci.discovery.resolve_info": {
            "names": ["creds.sec.test/app#1.0"], "verify": True, "ca_path": ca.cert_path,
            "headers": {"X-Secret": own}, "origin_headers": {"https://cdn.sec.test": {"X-Secret": cdn}}}},
        fact("ancestor", "{{ lookup('oci.discovery.resolve', 'a.creds.sec.test/app#1.0', ca_path='%s', "
                         "headers={'X-Secret': '%s'}) }}" % (ca.cert_path, sub)),
    ]}]
    result = hostile.run_playbook(play, verbosity=3)
    r = result.result("module")
    assert not r.get("failed"), str(result)
    assert r["results"][0]["digest"] == sha(blob) and r["results"][0]["matches"][0]["verified"] is True
    assert facts(result, "ancestor") == sha(blob)
    for token in (own, cdn, sub):
        assert token not in result.stdout and token not in result.stderr, token
    sent = {}
    for host, uri, value in hostile.headers_log():
        sent.setdefault(host, set()).add(value)
    assert sent["creds.sec.test"] == {own, None}         # own for its name, nothing as an ancestor
    assert sent["a.creds.sec.test"] == {sub}
    assert sent["mirror.sec.test"] == {None}             # reached by a cross-origin redirect
    assert sent["evil.sec.test"] == {None}               # named by a remote index
    assert sent["cdn.sec.test"] == {cdn}                 # named by the user in origin_headers


def test_ip_literal_names_and_unanchored_xdg_keys(hostile, ca, tmp_path):
    """Item 8: {host} with [::1] is a clear error; item 10: XDG keys match anywhere, as regexec."""
    hostile.write("sec.test", "/oci-index/xdgsearch/app", index(desc(manifest("searched"), "1.0")))
    hostile.host("xdgsearch.sec.test")
    env = xdg_home(tmp_path, {
        r"\[::1\]/": engines("https://{host}/oci-index/{path}"),
        r"xdgsearch\.sec\.test": engines("https://sec.test/oci-index/xdgsearch/{+path}"),
    })
    env["OCI_DISCOVERY_CA_PATH"] = ca.cert_path
    hostile.start()
    tasks = [fact("ip_literal", "{{ query('oci.discovery.resolve', '[::1]/app#1.0', on_missing='empty') }}",
                  ignore_errors=True),
             fact("unanchored", "{{ lookup('oci.discovery.resolve', 'xdgsearch.sec.test/app#1.0') }}")]
    result = hostile.run_playbook(lookup_play(tasks), env=env)
    message = error_of(result, "ip_literal")
    assert "the template expands to https://%5B%3A%3A1%5D/oci-index/app, whose host is percent-encoded; " \
           "the name's host [::1] is an IP literal, which {host} percent-encodes" in message
    assert facts(result, "unanchored") == sha(manifest("searched"))
