# -*- coding: utf-8 -*-
"""Compare the roots of the oci.discovery.resolve lookup with the reference Python resolver.

The reference resolver is the Python package in the public oci-discovery repository
(xiekeyang/oci-discovery, ``python3 -m oci_discovery.ref_engine_discovery``). It is not on
PyPI and not available in CI, so this comparison runs on demand:

    .venv/bin/python tests/conformance/compare_reference.py /path/to/oci-discovery-checkout

It serves test sites over https from this process (tests/unit/discovery_site.py: real
http.server threads, a throwaway CA, a proxy that makes the test host names reachable
without DNS), runs the reference resolver twice -- with the ``uritemplate`` package (this
venv's Python: ``{path}`` becomes ``team%2Fapp``) and without it (a Python that lacks it:
``team/app``) -- and runs the lookup through ``ansible-playbook`` (``output=root``). The
sites answer both spellings of nested paths, as nginx does by decoding ``%2F``.

The two outputs differ in form, not in content, so both are normalised before comparing:
the reference lists the ref-engines object's ``casEngines`` beside each root as
``{"config": ..., "uri": BASE}``; the lookup merges them into ``root.casEngines`` with
relative templates made absolute. Each root becomes (mediaType, uri, the entry without
casEngines, the set of absolute CAS templates).

Scenarios avoid what the two clients do differently on purpose: the lookup stops at the
first source that yields a root, the reference returns the union of every source; the
lookup matches XDG keys against the whole name, the reference searches them.

Exit status 0 when every scenario agrees; the report lists each one.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, os.path.join(TESTS, "unit"))
sys.path.insert(0, TESTS)

import conftest  # noqa: E402,F401  pylint: disable=unused-import
import trustme  # noqa: E402

from discovery_site import TEST_NAMES, Site  # noqa: E402
from rig.ansible import run_playbook  # noqa: E402
from ansible_collections.oci.discovery.plugins.module_utils._templates import resolve  # noqa: E402

from rig.spec import EXAMPLES  # noqa: E402
if not os.path.isdir(EXAMPLES):
    EXAMPLES = os.path.join(HERE, "examples")
WK = "/.well-known/oci-host-ref-engines"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IDX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def entry(digest_char, tag=None, **extra):
    d = {"mediaType": MANIFEST, "digest": "sha256:" + digest_char * 64, "size": 100 + ord(digest_char)}
    if tag is not None:
        d["annotations"] = {REF_NAME: tag}
    d.update(extra)
    return d


def index(*entries):
    return {"schemaVersion": 2, "manifests": list(entries)}


def engines(*templates, **kw):
    obj = {"refEngines": [{"protocol": "oci-index-template-v1", "uri": t} for t in templates]}
    if kw.get("cas"):
        obj["casEngines"] = kw["cas"]
    return obj


def example(name):
    with open(os.path.join(EXAMPLES, name)) as handle:
        return json.load(handle)


def build_sites(site):
    """Publish every scenario; return {scenario: [names]}."""
    scenarios = {}
    # 1. The specs' own CAS-bucket example, unchanged.
    site.doc("example.com", WK, example("well-known-cas-bucket.json"))
    site.doc("example.com", "/oci-index/app", example("oci-index-app.json"))
    scenarios["spec example: CAS bucket"] = ["example.com/app#1.0"]
    # 2. The specs' layouts-as-directories example (ref-engines casEngines).
    site.doc("layouts.example.com", WK, example("well-known-layouts.json"))
    layout_index = example("oci-index-app.json")
    del layout_index["manifests"][0]["casEngines"]
    site.doc("layouts.example.com", "/oci-image/app/index.json", layout_index)
    scenarios["spec example: layouts"] = ["layouts.example.com/app#1.0"]
    # Hosts under other-site.test below keep example.test (which answers) out of their ancestor
    # walk: the reference would add its roots (it returns the union of every source).
    # 3. Ancestor walk over three levels with a relative template.
    site.add_host("a.b.example.test")
    site.doc("example.test", WK, engines("/oci-index/{+path}",
                                         cas=[{"protocol": "oci-cas-template-v1", "uri": "/cas/{digest}"}]))
    site.doc("example.test", "/oci-index/app", index(entry("a", "1.0"), entry("b", "2.0"), entry("c"),
                                                     entry("d", "1.0", casEngines=[
                                                         {"protocol": "oci-cas-template-v1",
                                                          "uri": "own/{encoded}"}])))
    scenarios["ancestor walk, relative template, casEngines merged"] = ["a.b.example.test/app#1.0"]
    scenarios["empty fragment"] = ["a.b.example.test/app"]
    scenarios["unknown tag"] = ["a.b.example.test/app#9.9"]
    # 4. Nested paths: {path} (simple) and {+path} (reserved); both spellings served.
    site.doc("nested.other-site.test", WK,
             engines("https://nested.other-site.test/simple/{path}", "/reserved/{+path}"))
    for path in ("/simple/team%2Fapp", "/simple/team/app"):
        site.doc("nested.other-site.test", path, index(entry("e", "1.0")))
    site.doc("nested.other-site.test", "/reserved/team/app", index(entry("f", "1.0")))
    scenarios["nested path, {path} and {+path}"] = ["nested.other-site.test/team/app#1.0"]
    site.doc("simple.other-site.test", WK, engines("https://{host}/simple/{path}"))
    for path in ("/simple/team%2Fapp", "/simple/team/app"):
        site.doc("simple.other-site.test", path, index(entry("5", "1.0"), entry("6", "2.0")))
    scenarios["nested path, {path} only"] = ["simple.other-site.test/team/app#1.0"]
    # 5. Redirected well-known file; relative template against the final URI.
    site.route("redirect.other-site.test", WK, _redirect("https://other-site.test/config/engines.json"))
    site.doc("other-site.test", "/config/engines.json", engines("indexes/{+path}"),
             content_type="application/vnd.oci.ref-engines.v1+json")
    site.doc("other-site.test", "/config/indexes/app", index(entry("9", "1.0")))
    scenarios["redirected well-known"] = ["redirect.other-site.test/app#1.0"]
    # 6. Duplicate ref engines (same index twice): duplicate roots dropped.
    site.doc("dup.other-site.test", WK, engines("/i/{+path}", "https://dup.other-site.test/i/{+path}"))
    site.doc("dup.other-site.test", "/i/app", index(entry("1", "1.0"), entry("2", "1.0")))
    scenarios["duplicate roots, several entries per tag"] = ["dup.other-site.test/app#1.0"]
    # 7. All four variables in a template, fragment with reserved characters.
    site.doc("vars.other-site.test", WK, engines("/{host}/{+path}/{fragment}"))
    site.doc("vars.other-site.test", "/vars.other-site.test/app/1.0%2Fx", index(entry("3", "1.0/x")))
    site.doc("vars.other-site.test", "/vars.other-site.test/app/1.0/x", index(entry("3", "1.0/x")))
    scenarios["four variables, fragment with '/'"] = ["vars.other-site.test/app#1.0/x"]
    return scenarios


# Scenarios whose templates use only level-1 expressions ({var}): the reference's fallback
# without the uritemplate package (str.format) cannot expand {+var} and returns nothing.
LEVEL1 = ("spec example: CAS bucket", "spec example: layouts", "unknown tag", "nested path, {path} only")


def _redirect(location):
    from discovery_site import redirect
    return redirect(location, 301)


def _absolute(template, base):
    if template is None or base is None:
        return template
    try:
        return resolve(base, template)
    except ValueError:
        return template


def normalise_reference(roots):
    out = []
    for root in roots:
        item = copy.deepcopy(root.get("root"))
        cas = set()
        for engine in (item or {}).pop("casEngines", []) or []:
            cas.add((engine.get("protocol"), _absolute(engine.get("uri"), root.get("uri"))))
        for engine in root.get("casEngines", []) or []:
            config = engine.get("config", {})
            cas.add((config.get("protocol"), _absolute(config.get("uri"), engine.get("uri"))))
        out.append((root.get("mediaType"), root.get("uri"), json.dumps(item, sort_keys=True), tuple(sorted(cas))))
    return sorted(set(out))


def normalise_lookup(roots):
    out = []
    for root in roots:
        item = copy.deepcopy(root.get("root"))
        cas = set()
        for engine in (item or {}).pop("casEngines", []) or []:
            cas.add((engine.get("protocol"), _absolute(engine.get("uri"), root.get("uri"))))
        out.append((root.get("mediaType"), root.get("uri"), json.dumps(item, sort_keys=True), tuple(sorted(cas))))
    return sorted(set(out))


def run_reference(checkout, python, names, env):
    proc = subprocess.run([python, "-m", "oci_discovery.ref_engine_discovery", "--protocol", "https",
                           "-l", "debug"] + names, cwd=checkout, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError("reference resolver failed (%d): %s" % (proc.returncode, proc.stderr.decode()[-2000:]))
    return json.loads(proc.stdout.decode()), proc.stderr.decode()


def python_without_uritemplate():
    for candidate in ("/usr/bin/python3", "python3"):
        try:
            proc = subprocess.run([candidate, "-c", "import uritemplate"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False)
        except OSError:
            continue
        if proc.returncode != 0:
            return candidate
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("checkout", help="a checkout of the oci-discovery repository (with oci_discovery/)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    checkout = os.path.abspath(args.checkout)
    if not os.path.isdir(os.path.join(checkout, "oci_discovery")):
        parser.error("%s has no oci_discovery package" % checkout)

    work = tempfile.mkdtemp(prefix="compare-reference-")
    ca = trustme.CA()
    ca_path = os.path.join(work, "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    leaf = os.path.join(work, "leaf.pem")
    ca.issue_cert(*(TEST_NAMES + ("example.com", "*.example.com"))).private_key_and_cert_chain_pem.write_to_path(leaf)
    site = Site(leaf, leaf)
    try:
        scenarios = build_sites(site)
        names = [name for group in scenarios.values() for name in group]
        empty_xdg = os.path.join(work, "xdg")
        os.makedirs(empty_xdg)
        env = dict(os.environ, **site.env())
        env.update({"SSL_CERT_FILE": ca_path, "XDG_CONFIG_HOME": empty_xdg, "XDG_CONFIG_DIRS": empty_xdg})
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE", "SSL_CERT_DIR"):
            env.pop(var, None)

        references = {"with uritemplate": sys.executable}
        bare = python_without_uritemplate()
        if bare:
            references["without uritemplate"] = bare
        ref_outputs = {}
        for label, python in references.items():
            ref_outputs[label], log = run_reference(checkout, python, names, env)
            if args.verbose:
                print("---- reference (%s) log\n%s" % (label, log[-4000:]))

        tasks = [{"name": "n%d" % i, "ansible.builtin.set_fact": {"n%d" % i: "{{ query('oci.discovery.resolve', "
                 "%s, output='root', on_missing='empty', ca_path=%s) }}" % (json.dumps(name), json.dumps(ca_path))}}
                 for i, name in enumerate(names)]
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
        result = run_playbook(play, env=dict(site.env(), XDG_CONFIG_HOME=empty_xdg, XDG_CONFIG_DIRS=empty_xdg))
        if result.failed:
            print(str(result))
            return 2
        ours = {name: result.result("n%d" % i)["ansible_facts"]["n%d" % i] for i, name in enumerate(names)}

        failures = 0
        print("Comparing oci.discovery.resolve (lookup, output=root) with the reference resolver at %s" % checkout)
        for scenario, group in scenarios.items():
            for name in group:
                mine = normalise_lookup(ours[name])
                verdicts = []
                for label, output in ref_outputs.items():
                    if label == "without uritemplate" and scenario not in LEVEL1:
                        verdicts.append("%s: n/a ({+var} needs uritemplate)" % label)
                        continue
                    theirs = normalise_reference(output.get(name, []))
                    if label == "without uritemplate":
                        # its str.format fallback expands {path} as team/app, not team%2Fapp: the same
                        # resource for the servers here (nginx decodes %2F); compare the decoded URIs
                        theirs = [(r[0], r[1].replace("%2F", "/")) + r[2:] for r in theirs]
                        mine_here = [(r[0], r[1].replace("%2F", "/")) + r[2:] for r in mine]
                    else:
                        mine_here = mine
                    same = theirs == mine_here
                    verdicts.append("%s: %s" % (label, "same" if same else "DIFFERENT"))
                    if not same:
                        failures += 1
                        print("  reference (%s) for %s:\n    %s" % (label, name, json.dumps(theirs, indent=1)))
                        print("  lookup for %s:\n    %s" % (name, json.dumps(mine, indent=1)))
                print("%-55s %-35s %d root(s); %s" % (scenario, name, len(mine), "; ".join(verdicts)))
        print("%s: %d scenario(s), %d reference run(s), %d difference(s)"
              % ("OK" if not failures else "FAILED", sum(len(g) for g in scenarios.values()),
                 len(ref_outputs), failures))
        return 1 if failures else 0
    finally:
        site.close()


if __name__ == "__main__":
    sys.exit(main())
