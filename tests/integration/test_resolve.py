# -*- coding: utf-8 -*-
"""oci.discovery.resolve (lookup), resolve_info (module) and the resolve playbook through
ansible-playbook against real nginx over https (throwaway CA) and http.

Host names: see discovery_hosts.py (private loopback address on ports 443/80, ansible-playbook
in a mount namespace with its own /etc/hosts).
"""
import hashlib
import json
import os
import shutil

import pytest

from discovery_hosts import NamedSites
from fixtures_layouts import layouts  # noqa: F401  pylint: disable=unused-import

from rig.spec import EXAMPLES
if not os.path.isdir(EXAMPLES):
    EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conformance", "examples")
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IDX = "application/vnd.oci.image.index.v1+json"
WK = "/.well-known/oci-host-ref-engines"
E9 = "sha256:e9770a03fbdccdd4632895151a93f9af58bbe2c91fdfaaf73160648d250e6ec3"
INDEX_T = "oci-index-template-v1"
CAS_T = "oci-cas-template-v1"
CAS_REL = {"protocol": CAS_T, "uri": "/oci-cas/{algorithm}/{encoded:2}/{encoded}"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(label):
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha(label.encode()), "size": len(label)},
                       "layers": []}, sort_keys=True).encode()


def desc(data, tag=None, media_type=MANIFEST, **extra):
    d = {"mediaType": media_type, "digest": sha(data), "size": len(data)}
    if tag is not None:
        d["annotations"] = {REF_NAME: tag}
    d.update(extra)
    return d


def index(*entries):
    return {"schemaVersion": 2, "mediaType": IDX, "manifests": list(entries)}


def engines(template, cas=None):
    obj = {"refEngines": [{"protocol": INDEX_T, "uri": template}]}
    if cas:
        obj["casEngines"] = cas
    return obj


def put_blob(sites, host, data):
    algorithm, encoded = sha(data).split(":")
    sites.write(host, "/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded), data)


def example(name):
    with open(os.path.join(EXAMPLES, name), "rb") as handle:
        return handle.read()


M = {label: manifest(label) for label in ("app-1.0", "app-2.0", "team-1.0", "abs-1.0", "redir-1.0", "xdg-1.0",
                                          "xdg-2.0", "lost")}


@pytest.fixture
def sites(nginx_factory, ca, public_tmp_path, layouts):
    s = NamedSites(nginx_factory, ca, public_tmp_path)
    # example.test: relative templates, CAS bucket layout, tags 1.0 and 2.0, nested path team/app.
    s.write("example.test", WK, engines("/oci-index/{+path}", cas=[CAS_REL]))
    s.write("example.test", "/oci-index/app", index(desc(M["app-1.0"], "1.0"), desc(M["app-2.0"], "2.0"),
                                                    desc(b"tampered", "bad")))
    s.write("example.test", "/oci-index/team/app", index(desc(M["team-1.0"], "1.0")))
    for key in ("app-1.0", "app-2.0", "team-1.0"):
        put_blob(s, "example.test", M[key])
    algorithm, encoded = sha(b"tampered").split(":")
    s.write("example.test", "/oci-cas/%s/%s/%s" % (algorithm, encoded[:2], encoded), b"tampereD")
    # a.b.example.test exists but publishes nothing; b.example.test does not resolve at all.
    s.host("a.b.example.test")
    # abs.example.test: absolute template, simple {path} expansion (team/app -> team%2Fapp, nginx decodes it).
    s.write("abs.example.test", WK, engines("https://{host}/oci-index/{path}"))
    s.write("abs.example.test", "/oci-index/team/app", index(desc(M["abs-1.0"], "1.0")))
    # redirect.example.test: the well-known file redirects to another host; relative template.
    s.host("redirect.example.test", "location = %s { return 301 https://example.test/moved/engines.json; }" % WK)
    s.host("example.test", "location = /moved/engines.json {\n    types {}\n    default_type "
                           "application/vnd.oci.ref-engines.v1+json;\n    charset utf-8;\n    charset_types *;\n}")
    s.write("example.test", "/moved/engines.json", engines("../oci-index/moved/{+path}"))
    s.write("example.test", "/oci-index/moved/app", index(desc(M["redir-1.0"], "1.0")))
    # mp.example.test: the real multi-platform umoci layout served as a directory (layout B).
    shutil.copytree(layouts.multiplatform, os.path.join(s.docroot("mp.example.test"), "oci-image", "app"))
    s.write("mp.example.test", WK, engines("/oci-image/{+path}/index.json", cas=[
        {"protocol": CAS_T, "uri": "/oci-image/{+path}/blobs/{algorithm}/{encoded}"}]))
    for dirpath, dirnames, filenames in os.walk(s.docroot("mp.example.test")):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    # the specs' own example documents, unchanged, on example.com (standard port 443).
    s.write("example.com", WK, example("well-known-cas-bucket.json"))
    s.write("example.com", "/oci-index/app", example("oci-index-app.json"))
    s.write("example.com", "/oci-cas/sha256/e9/" + E9.split(":")[1], example("manifest-e9770a03.json"))
    s.write("layouts.example.com", WK, example("well-known-layouts.json"))
    layout_index = json.loads(example("oci-index-app.json"))
    del layout_index["manifests"][0]["casEngines"]
    s.write("layouts.example.com", "/oci-image/app/index.json", layout_index)
    s.write("example.com", "/oci-image/app/blobs/sha256/" + E9.split(":")[1], example("manifest-e9770a03.json"))
    return s


def lookup_play(tasks, **play_vars):
    return [{"name": "resolve", "hosts": "localhost", "gather_facts": False, "vars": play_vars, "tasks": tasks}]


def fact(name, expression, **task):
    t = {"name": name, "ansible.builtin.set_fact": {name: expression}}
    t.update(task)
    return t


def facts(result, name):
    res = result.result(name)
    assert not res.get("failed"), "%s failed: %s\n%s" % (name, res.get("msg"), result)
    return res["ansible_facts"][name]


def error_of(result, name):
    res = result.result(name)
    assert res.get("failed"), "%s did not fail: %r" % (name, res)
    return res["msg"]


NESTED_PPC = ("{'name': 'mp.example.test/app#nested', 'platform': {'os': 'linux', 'architecture': 'ppc64le'}}, "
              "output='descriptor'")


def test_lookup_discovery_scenarios(sites, ca):
    sites.start()
    mp_info = None
    q = "query('oci.discovery.resolve', %s)"
    tasks = [
        fact("walk", "{{ lookup('oci.discovery.resolve', 'a.b.example.test/app#1.0') }}"),
        fact("relative_nested", "{{ lookup('oci.discovery.resolve', 'example.test/team/app#1.0') }}"),
        fact("absolute_simple", "{{ lookup('oci.discovery.resolve', 'abs.example.test/team/app#1.0') }}"),
        fact("redirected", "{{ %s }}" % (q % "'redirect.example.test/app#1.0', output='root'")),
        fact("empty_fragment", "{{ %s }}" % (q % "'example.test/app'")),
        fact("unknown_tag", "{{ lookup('oci.discovery.resolve', 'example.test/app#9.9') }}", ignore_errors=True),
        fact("unknown_tag_empty", "{{ %s }}" % (q % "'example.test/app#9.9', on_missing='empty'")),
        fact("verify_off", "{{ %s }}" % (q % "'example.test/app#bad', output='descriptor'")),
        fact("verify_on", "{{ %s }}" % (q % "'example.test/app#1.0', verify=true")),
        fact("verify_bad", "{{ lookup('oci.discovery.resolve', 'example.test/app#bad', verify=true) }}",
             ignore_errors=True),
        fact("spec_cas_bucket", "{{ %s }}" % (q % "'example.com/app#1.0', output='root', verify=true")),
        fact("spec_layouts", "{{ %s }}" % (q % "'layouts.example.com/app#1.0', output='root', verify=true")),
        fact("mp_index", "{{ %s }}" % (q % "'mp.example.test/app#1.0', output='descriptor'")),
        fact("mp_arm64", "{{ %s }}" % (q % "'mp.example.test/app#1.0', platform='linux/arm64', output='descriptor'")),
        fact("mp_nested_ppc", "{{ %s }}" % (q % NESTED_PPC)),
        fact("mp_missing", "{{ lookup('oci.discovery.resolve', 'mp.example.test/app#1.0', platform='linux/s390x') }}",
             ignore_errors=True),
        fact("port_option", "{{ %s }}" % (q % "'example.test/app#2.0', port=%d" % sites.tls_port)),
        # options from ansible_oci_discovery_* variables that are templates themselves
        fact("port_variable", "{{ %s }}" % (q % "'example.test/app#2.0'"),
             vars={"ansible_oci_discovery_port": "{{ tls_port }}"}),
        fact("http_refused", "{{ lookup('oci.discovery.resolve', 'example.test/app#1.0', port=%d) }}" % sites.port,
             ignore_errors=True),
        fact("http_allowed", "{{ %s }}" % (q % "'example.test/app#1.0', protocols=['http'], port=%d" % sites.port)),
    ]
    result = sites.run_playbook(lookup_play(tasks, ansible_oci_discovery_ca_path=ca.cert_path, tls_port=sites.tls_port))
    assert result.json is not None, str(result)

    assert facts(result, "walk") == sha(M["app-1.0"])
    assert facts(result, "relative_nested") == sha(M["team-1.0"])
    assert facts(result, "absolute_simple") == sha(M["abs-1.0"])
    (root,) = facts(result, "redirected")
    assert root["uri"] == "https://example.test/oci-index/moved/app"
    assert root["root"]["digest"] == sha(M["redir-1.0"])
    assert facts(result, "empty_fragment") == [sha(M["app-1.0"]), sha(M["app-2.0"]), sha(b"tampered")]

    message = error_of(result, "unknown_tag")
    assert "cannot resolve example.test/app#9.9: no matching image" in message
    assert "https://example.test/oci-index/app: no entry tagged '9.9' (tags here: '1.0', '2.0', 'bad')" in message
    assert facts(result, "unknown_tag_empty") == []

    assert facts(result, "verify_off")[0]["digest"] == sha(b"tampered")
    assert facts(result, "verify_on") == [sha(M["app-1.0"])]
    message = error_of(result, "verify_bad")
    assert "digest mismatch: expected %s" % sha(b"tampered") in message

    (root,) = facts(result, "spec_cas_bucket")
    assert root == {"mediaType": "application/vnd.oci.descriptor.v1+json",
                    "root": json.loads(example("oci-index-app.json"))["manifests"][0],
                    "uri": "https://example.com/oci-index/app"}
    (root,) = facts(result, "spec_layouts")
    assert root["uri"] == "https://layouts.example.com/oci-image/app/index.json"
    assert root["root"]["casEngines"] == json.loads(example("well-known-layouts.json"))["casEngines"]

    (top,) = facts(result, "mp_index")
    assert top["mediaType"] == IDX
    (arm,) = facts(result, "mp_arm64")
    assert arm["platform"]["architecture"] == "arm64" and arm["mediaType"] == MANIFEST
    (ppc,) = facts(result, "mp_nested_ppc")
    assert ppc["platform"]["architecture"] == "ppc64le"
    message = error_of(result, "mp_missing")
    assert "no manifest for platform linux/s390x (available: linux/amd64, linux/arm64/v8, linux/ppc64le)" in message

    assert facts(result, "port_option") == [sha(M["app-2.0"])]
    assert facts(result, "port_variable") == [sha(M["app-2.0"])]
    message = error_of(result, "http_refused")
    assert "https://example.test:%d%s" % (sites.port, WK) in message  # https to the http port: a TLS error
    assert "http://" not in message
    assert facts(result, "http_allowed") == [sha(M["app-1.0"])]
    del mp_info


def test_lookup_xdg_precedence(sites, ca, tmp_path):
    sites.write("example.test", "/oci-index/xdg/home/app", index(desc(M["xdg-1.0"], "1.0")))
    sites.write("example.test", "/oci-index/xdg/long/app", index(desc(M["xdg-2.0"], "2.0")))
    home, dirs = tmp_path / "home", tmp_path / "dirs"
    (home / "oci-discovery").mkdir(parents=True)
    (dirs / "oci-discovery").mkdir(parents=True)
    (home / "oci-discovery" / "ref-engine-discovery.json").write_text(json.dumps({
        r"xdg\.example\.test/.*": engines("https://example.test/oci-index/xdg/home/{+path}"),
    }))
    (dirs / "oci-discovery" / "ref-engine-discovery.json").write_text(json.dumps({
        r"xdg\.example\.test/.*": engines("https://example.test/oci-index/xdg/loses/{+path}"),
        r"xdg\.example\.test/app#2\.0": engines("https://example.test/oci-index/xdg/long/{+path}"),
    }))
    sites.start()
    tasks = [fact("home_wins", "{{ lookup('oci.discovery.resolve', 'xdg.example.test/app#1.0') }}"),
             fact("longest_key", "{{ lookup('oci.discovery.resolve', 'xdg.example.test/app#2.0') }}"),
             fact("xdg_off", "{{ lookup('oci.discovery.resolve', 'xdg.example.test/app#1.0', xdg=false) }}",
                  ignore_errors=True)]
    result = sites.run_playbook(lookup_play(tasks), env={
        "XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": str(dirs), "OCI_DISCOVERY_CA_PATH": ca.cert_path})
    assert facts(result, "home_wins") == sha(M["xdg-1.0"])
    assert facts(result, "longest_key") == sha(M["xdg-2.0"])
    # without XDG, the well-known walk reaches example.test, whose index has another 1.0
    assert facts(result, "xdg_off") == sha(M["app-1.0"])
    assert not [line for line in sites.access_log() if "/xdg/loses/" in line]


def test_hostile_servers_fail_clearly_within_the_timeout(sites, ca):
    host = "hostile.example.test"
    sites.write(host, WK, engines("/oci-index/{+path}"))
    sites.host(host, "location = /oci-index/wrongtype {\n    types {}\n    default_type application/json;\n}")
    sites.write(host, "/oci-index/wrongtype", index())
    sites.write(host, "/oci-index/invalid", b'{"manifests": [')
    sites.write(host, "/oci-index/array", b"[]")
    sites.write(host, "/oci-index/notalist", b'{"manifests": {"a": 1}}')
    big = sites.write(host, "/oci-index/big", b"")
    os.truncate(big, 1024 ** 3)                      # 1 GiB, sparse: Content-Length 1073741824
    chunked = sites.write(host, "/oci-index/bigchunked", b"")
    os.truncate(chunked, 1024 ** 3)
    sites.host(host, "location = /oci-index/bigchunked {\n%s\n    sub_filter 'x' 'y';\n    sub_filter_types *;\n}"
               % "    types {}\n    default_type application/vnd.oci.image.index.v1+json;")
    sites.write(host, "/oci-index/drip", json.dumps(index()).encode() + b" " * 200)
    sites.host(host, "location = /oci-index/drip {\n    types {}\n    default_type "
                     "application/vnd.oci.image.index.v1+json;\n    limit_rate 1;\n}")
    sites.host(host, "location = /oci-index/loop { return 302 /oci-index/loop2; }\n"
                     "location = /oci-index/loop2 { return 302 /oci-index/loop; }")
    sites.host(host, "location = /oci-index/downgrade { return 301 http://%s/oci-index/app; }" % host)
    sites.host("wrongcert.test", cert=ca.wrong_host)
    sites.write("wrongcert.test", WK, engines("/oci-index/{+path}"))
    sites.start()
    cases = {
        "wrongtype": "served as application/json, expected application/vnd.oci.image.index.v1+json",
        "invalid": "image index: invalid JSON",
        "array": "expected a JSON object (image index), got an array",
        "notalist": 'image index: "manifests" must be an array, got an object',
        "big": "Content-Length 1073741824 is larger than the limit of 4194304 bytes",
        "bigchunked": "body larger than the limit of 4194304 bytes",
        "drip": "no complete response within the 3 s timeout",
        "loop": "redirect loop: https://%s/oci-index/loop -> https://%s/oci-index/loop2 -> "
                "https://%s/oci-index/loop" % (host, host, host),
        "downgrade": "refused a redirect to http://%s/oci-index/app: http is not an allowed protocol" % host,
    }
    tasks = [fact(key, "{{ lookup('oci.discovery.resolve', '%s/%s#1.0', timeout=3) }}" % (host, key),
                  ignore_errors=True) for key in cases]
    tasks.append(fact("wrongcert", "{{ lookup('oci.discovery.resolve', 'wrongcert.test/app#1.0') }}",
                      ignore_errors=True))
    result = sites.run_playbook(lookup_play(tasks, ansible_oci_discovery_ca_path=ca.cert_path), timeout=300)
    for key, reason in cases.items():
        message = error_of(result, key)
        assert "cannot resolve %s/%s#1.0" % (host, key) in message
        assert "https://%s/oci-index/%s: %s" % (host, key, reason) in message, message
    message = error_of(result, "wrongcert")
    assert "https://wrongcert.test%s: TLS certificate verification failed" % WK in message
    assert "Hostname mismatch" in message or "hostname" in message.lower()


def test_module_resolve_info_and_check_mode(sites, ca):
    sites.start()
    play = [{"name": "module", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "resolve", "register": "r", "oci.discovery.resolve_info": {
            "names": ["example.test/app#1.0", {"name": "mp.example.test/app#1.0", "platform": "linux/amd64"},
                      "example.test/app"],
            "ca_path": ca.cert_path}},
        {"name": "verified", "register": "v", "oci.discovery.resolve_info": {
            "names": ["example.test/app#1.0"], "ca_path": ca.cert_path, "verify": True}},
        {"name": "missing", "register": "m", "oci.discovery.resolve_info": {
            "names": ["example.test/app#9.9"], "ca_path": ca.cert_path, "on_missing": "warn"}},
        {"name": "failing", "ignore_errors": True, "oci.discovery.resolve_info": {
            "names": ["example.test/app#9.9"], "ca_path": ca.cert_path}},
    ]}]
    for check in (False, True):
        result = sites.run_playbook(play, check=check)
        r = result.result("resolve")
        assert r["changed"] is False and not r.get("failed"), str(result)
        one, amd, every = r["results"]
        assert one["digest"] == sha(M["app-1.0"]) and one["found"] and not one["matches"][0]["verified"]
        assert one["media_type"] == MANIFEST and one["size"] == len(M["app-1.0"])
        assert amd["platform"] == {"os": "linux", "architecture": "amd64"}
        assert amd["matches"][0]["platform"]["architecture"] == "amd64"
        assert every["digest"] is None and len(every["matches"]) == 3
        assert r["requests"] <= 8
        assert result.result("verified")["results"][0]["matches"][0]["verified"] is True
        m = result.result("missing")
        assert m["results"][0]["found"] is False and "no entry tagged '9.9'" in m["warnings"][0]
        assert "no entry tagged '9.9'" in error_of(result, "failing")


def test_resolve_playbook_writes_lock_file_idempotently(sites, ca, tmp_path):
    sites.start()
    lock = tmp_path / "lock.json"
    wrapper = tmp_path / "run.yml"
    wrapper.write_text("- ansible.builtin.import_playbook: oci.discovery.resolve\n")
    extra = {"names": ["example.test/app#1.0", {"name": "mp.example.test/app#1.0", "platform": "linux/arm64"}],
             "lock_file": str(lock), "ca_path": ca.cert_path}
    first = sites.run_playbook(str(wrapper), extra_vars=extra)
    assert not first.failed, str(first)
    assert first.result("Write the lock file")["changed"] is True
    data = json.loads(lock.read_text())
    assert data["example.test/app#1.0"] == {"digest": sha(M["app-1.0"]), "mediaType": MANIFEST}
    arm = data["mp.example.test/app#1.0"]
    assert arm["platform"] == {"os": "linux", "architecture": "arm64"} and arm["mediaType"] == MANIFEST
    again = sites.run_playbook(str(wrapper), extra_vars=extra)
    assert not again.failed and again.changed_count == 0, str(again)
    # the publisher moves the tag: --check reports the change and does not write it
    sites.write("example.test", "/oci-index/app", index(desc(M["app-2.0"], "1.0")))
    before = lock.read_text()
    check = sites.run_playbook(str(wrapper), extra_vars=extra, check=True, diff=True)
    assert not check.failed, str(check)
    written = check.result("Write the lock file")
    assert written["changed"] is True and lock.read_text() == before
    assert sha(M["app-2.0"]) in json.dumps(written.get("diff"))
    # several entries for one name without a platform: refused with a clear message
    ambiguous = sites.run_playbook(str(wrapper), extra_vars=dict(extra, names=["mp.example.test/app"]))
    assert ambiguous.failed and "Several manifests match mp.example.test/app" in str(ambiguous.failures())
    # the resolver's budgets reach the module: one document is not enough for a well-known file and an index
    starved = sites.run_playbook(str(wrapper), extra_vars=dict(extra, max_documents=1))
    assert starved.failed and "max_documents" in str(starved.failures()), str(starved)


def test_many_names_cost_one_request_per_document(sites, ca):
    families = ["f%d" % i for i in range(5)]
    names = []
    for family in families:
        entries = [desc(manifest("%s-%d" % (family, i)), "t%d" % i) for i in range(20)]
        sites.write("example.test", "/oci-index/%s" % family, index(*entries))
        names += ["example.test/%s#t%d" % (family, i) for i in range(20)]
    sites.start()
    tasks = [fact("digests", "{{ query('oci.discovery.resolve', *names) }}"),
             {"name": "loop", "ansible.builtin.set_fact": {"last": "{{ lookup('oci.discovery.resolve', item) }}"},
              "loop": "{{ names }}"}]
    result = sites.run_playbook(lookup_play(tasks, names=names, ansible_oci_discovery_ca_path=ca.cert_path))
    assert len(facts(result, "digests")) == 100
    assert not result.failed, str(result)
    requests = [line for line in sites.access_log() if '"GET ' in line]
    # one lookup call with 100 names: 1 well-known + 5 indexes; the loop (one worker): the same again
    assert len(requests) == 12, "\n".join(requests)


def test_module_on_a_managed_host_over_ssh(nginx_factory, sshd, ca, public_tmp_path, run_playbook):
    """resolve_info runs on the managed host (its Python, its user); an IP name needs no DNS there."""
    root = public_tmp_path
    blob = manifest("ssh-1.0")
    for path, content in ((WK, engines("/oci-index/{+path}", cas=[CAS_REL])),
                          ("/oci-index/app", index(desc(blob, "1.0"))),
                          ("/oci-cas/sha256/%s/%s" % (sha(blob)[7:9], sha(blob)[7:]), blob)):
        target = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(content if isinstance(content, bytes) else json.dumps(content).encode())
        os.chmod(target, 0o644)
    for dirpath, dirnames, dummy in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    ngx = nginx_factory(http="""
server {
    listen 127.0.0.1:@TLS_PORT@ ssl;
    ssl_certificate @CERT@;
    ssl_certificate_key @KEY@;
    root %s;
    location = %s { types {} default_type application/vnd.oci.ref-engines.v1+json; charset utf-8; charset_types *; }
    location /oci-index/ { types {} default_type application/vnd.oci.image.index.v1+json; charset utf-8;
                           charset_types *; }
    location /oci-cas/ { types {} default_type application/octet-stream; }
}""" % (root, WK))
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "resolve", "oci.discovery.resolve_info": {
            "names": ["127.0.0.1/app#1.0"], "port": ngx.tls_port, "ca_path": ca.cert_path, "verify": True}}]}]
    result = run_playbook(play, inventory=sshd.inventory())
    r = result.result("resolve")
    assert not r.get("failed"), str(result)
    assert r["results"][0]["digest"] == sha(blob) and r["results"][0]["matches"][0]["verified"] is True
    assert r["requests"] == 3
