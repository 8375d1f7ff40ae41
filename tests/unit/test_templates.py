# -*- coding: utf-8 -*-
"""URI templates (RFC 6570, DISCOVERY.md sections 3-5) and RFC 3986 section 5 resolution."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._names import parse_name
from ansible_collections.oci.discovery.plugins.module_utils._templates import (
    HAS_URITEMPLATE, URITEMPLATE_IMPORT_ERROR, TemplateError, cas_uri, check_template, expand,
    expand_uri, remove_dot_segments, resolve, undo_escape_encoding,
)

NAME = parse_name("example.com/team/app#1.0").variables()
DIGEST = {
    "digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "algorithm": "sha256",
    "encoded": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
}


def test_uritemplate_is_installed_here():
    assert HAS_URITEMPLATE and URITEMPLATE_IMPORT_ERROR is None


@pytest.mark.parametrize("template, expected", [
    # DISCOVERY.md section 5: {path} is a simple expansion, {+path} keeps "/".
    ("{path}", "team%2Fapp"),
    ("{+path}", "team/app"),
    ("https://{host}/oci-index/{path}", "https://example.com/oci-index/team%2Fapp"),
    ("https://{host}/oci-index/{+path}", "https://example.com/oci-index/team/app"),
    ("https://{host}/oci-image/{+path}/index.json", "https://example.com/oci-image/team/app/index.json"),
    ("{name}", "example.com%2Fteam%2Fapp%231.0"),
    ("{fragment}", "1.0"),
])
def test_name_variables(template, expected):
    assert expand(template, NAME) == expected


@pytest.mark.parametrize("fragment, simple, reserved", [
    ("a/b", "a%2Fb", "a/b"),
    ("a?b", "a%3Fb", "a?b"),
    ("a:b", "a%3Ab", "a:b"),
    ("a@b", "a%40b", "a@b"),
    ("!$&'()*+,;=", "%21%24%26%27%28%29%2A%2B%2C%3B%3D", "!$&'()*+,;="),
    ("v%201", "v%25201", "v%201"),  # an escape in the name stays one with {+...}
])
def test_fragment_encoding(fragment, simple, reserved):
    variables = parse_name("example.com/app#" + fragment).variables()
    assert expand("{fragment}", variables) == simple
    assert expand("{+fragment}", variables) == reserved


@pytest.mark.parametrize("template, expected", [
    ("{encoded:2}", "e3"),
    ("{algorithm}/{encoded:2}/{encoded}", "sha256/e3/" + DIGEST["encoded"]),
    ("{digest}", "sha256%3A" + DIGEST["encoded"]),
    ("{+digest}", DIGEST["digest"]),
])
def test_digest_variables(template, expected):
    assert expand(template, DIGEST) == expected


# RFC 6570 section 1.2, levels 1 to 4 (a selection).
RFC6570_VARIABLES = {
    "var": "value", "hello": "Hello World!", "path": "/foo/bar", "empty": "", "x": "1024", "y": "768",
    "list": ["red", "green", "blue"], "keys": [("semi", ";"), ("dot", "."), ("comma", ",")],
}


@pytest.mark.parametrize("template, expected", [
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("X{#var}", "X#value"),
    ("X{#hello}", "X#Hello%20World!"),
    ("map?{x,y}", "map?1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("X{.x,y}", "X.1024.768"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("O{undef}X", "OX"),
])
def test_rfc6570_examples(template, expected):
    assert expand(template, RFC6570_VARIABLES) == expected


def test_non_ascii_literals_are_percent_encoded():
    assert expand(u"https://example.com/caf\u00e9/{x}", {"x": "1"}) == "https://example.com/caf%C3%A9/1"
    assert check_template(u"caf\u00e9%41{x}") == "caf%C3%A9%41{x}"


@pytest.mark.parametrize("template, reason", [
    ("{", "an unbalanced '{'"),
    ("}", "an unbalanced '}'"),
    ("a{b", "an unbalanced '{'"),
    ("{path", "an unbalanced '{'"),
    ("x}y", "an unbalanced '}'"),
    ("{{x}}", "an unbalanced '{'"),
    ("{}", "bad variable '' in {}"),
    ("{b c}", "bad variable 'b c'"),
    ("{x,}", "bad variable ''"),
    ("{.}", "bad variable ''"),
    ("{a..b}", "bad variable 'a..b'"),
    ("{var:0}", "bad variable 'var:0'"),
    ("{var:10000}", "bad variable 'var:10000'"),
    ("{var:3*}", "bad variable 'var:3*'"),
    ("{=x}", "the operator '=' in {=x} is reserved"),
    ("{|x}", "the operator '|' in {|x} is reserved"),
    ("https://example.com/a b/{x}", "the character ' ' is not allowed"),
    ("https://example.com/<{x}>", "the character '<' is not allowed"),
    ("https://example.com/\n{x}", "the character '\\n' is not allowed"),
    ("100%{x}", "'%' must start a %XX escape"),
    ("100%4{x}", "'%' must start a %XX escape"),
])
def test_invalid_templates(template, reason):
    with pytest.raises(TemplateError) as error:
        expand(template, {"x": "1"})
    assert str(error.value).startswith("invalid URI template %r: " % template)
    assert reason in str(error.value)


def test_template_must_be_a_string():
    with pytest.raises(TemplateError, match="must be a string"):
        expand(None, {})


def test_missing_uritemplate_fails_at_call_time():
    """Without the package the module imports, says so, and expansion names the package."""
    script = textwrap.dedent("""
        import sys
        sys.modules["uritemplate"] = None  # makes "import uritemplate" fail
        sys.path.insert(0, sys.argv[1])
        from ansible_collections.oci.discovery.plugins.module_utils import _templates
        assert not _templates.HAS_URITEMPLATE
        assert "uritemplate" in _templates.URITEMPLATE_IMPORT_ERROR
        assert _templates.resolve("https://a/b", "c") == "https://a/c"
        try:
            _templates.expand("{x}", {"x": "1"})
        except _templates.TemplateError as error:
            print(error)
    """)
    collections = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".tmp", "collections")
    result = subprocess.run([sys.executable, "-c", script, collections],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == (
        "expanding the URI template '{x}' needs the Python package 'uritemplate' (pip install uritemplate)")


@pytest.mark.parametrize("value, expanded_by_4_1, expected", [
    ("v%201", "v%25201", "v%201"),
    ("%2541", "%252541", "%2541"),        # the escape %25 followed by "41"
    ("%%41", "%25%2541", "%25%41"),       # a bare "%" (encoded) before the escape %41
    ("%zz/a", "%25zz/a", "%25zz/a"),      # a bare "%": encoded once, as it must be
    ("caf\u00e9", "caf%C3%A9", "caf%C3%A9"),
])
def test_undo_escape_encoding(value, expanded_by_4_1, expected):
    assert undo_escape_encoding(expanded_by_4_1) == expected


DEBIAN_PYTHON = "/usr/bin/python3"   # with python3-uritemplate (4.1.1 on Debian 12), as on managed hosts


def test_expansion_with_the_uritemplate_of_managed_hosts():
    """The same expansions through the system Python's uritemplate package (Debian's
    python3-uritemplate, which scripts/bootstrap installs: 4.1.1 on Debian 12, which encodes the
    escapes of {+var} again), as resolve_info and pull run them on a Debian managed host."""
    script = textwrap.dedent("""
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import uritemplate
        from ansible_collections.oci.discovery.plugins.module_utils._templates import expand
        cases = json.loads(sys.argv[2])
        print(json.dumps([uritemplate.__version__] + [expand(t, v) for t, v in cases]))
    """)
    cases = [("{fragment}", {"fragment": "v%201"}), ("{+fragment}", {"fragment": "v%201"}),
             ("{#fragment}", {"fragment": "v%201"}), ("/x/{+path}/{fragment}", {"path": "a/%41", "fragment": "%41"}),
             ("{+a,b}", {"a": "%2541", "b": "%zz"})]
    collections = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".tmp", "collections")
    result = subprocess.run([DEBIAN_PYTHON, "-c", script, collections, json.dumps(cases)],
                            capture_output=True, text=True, check=True)
    version, *expanded = json.loads(result.stdout)
    assert expanded == ["v%25201", "v%201", "#v%201", "/x/a/%41/%2541", "%2541,%25zz"], version
    assert expanded == [expand(t, v) for t, v in cases]     # and the same as this Python's


# RFC 3986 section 5.4: base URI and the normal and abnormal examples.
RFC3986_BASE = "http://a/b/c/d;p?q"
RFC3986_NORMAL = [
    ("g:h", "g:h"),
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q#s"),
    ("g#s", "http://a/b/c/g#s"),
    ("g?y#s", "http://a/b/c/g?y#s"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("g;x?y#s", "http://a/b/c/g;x?y#s"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../", "http://a/"),
    ("../../g", "http://a/g"),
]
RFC3986_ABNORMAL = [
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g?y/../x", "http://a/b/c/g?y/../x"),
    ("g#s/./x", "http://a/b/c/g#s/./x"),
    ("g#s/../x", "http://a/b/c/g#s/../x"),
    ("http:g", "http:g"),  # strict parser
]


@pytest.mark.parametrize("reference, expected", RFC3986_NORMAL + RFC3986_ABNORMAL)
def test_rfc3986_examples(reference, expected):
    assert resolve(RFC3986_BASE, reference) == expected


@pytest.mark.parametrize("path, expected", [
    ("/a/b/c/./../../g", "/a/g"),      # RFC 3986 section 5.2.4
    ("mid/content=5/../6", "mid/6"),   # RFC 3986 section 5.2.4
    ("/..", "/"), ("/.", "/"), ("..", ""), (".", ""), ("", ""), ("a//b/../c", "a//c"),
])
def test_remove_dot_segments(path, expected):
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize("base, reference, expected", [
    ("http://a", "g", "http://a/g"),                 # empty base path with an authority
    ("http://a/b#f", "", "http://a/b"),              # the base's fragment never carries over
    ("http://a/b?q#f", "#g", "http://a/b?q#g"),
    ("file:///etc/xdg/oci-discovery/ref-engine-discovery.json", "../../oci-index/x",
     "file:///etc/oci-index/x"),                     # XDG files resolve against their file:// URI
    ("urn:a", "b", "urn:b"),
    ("https://example.com/oci-index/app", "https://other.example/x", "https://other.example/x"),
    ("https://example.com/oci-index/c%2Fd", "../oci-cas/x", "https://example.com/oci-cas/x"),
])
def test_resolve_more(base, reference, expected):
    assert resolve(base, reference) == expected


@pytest.mark.parametrize("base", ["", "/a/b", "//host/a", "a/b"])
def test_resolve_needs_an_absolute_base(base):
    with pytest.raises(TemplateError, match="the base has no scheme"):
        resolve(base, "g")


def test_resolve_needs_strings():
    with pytest.raises(TemplateError, match="the URI reference must be a string"):
        resolve("http://a/", None)


WELL_KNOWN = "https://b.example.com/.well-known/oci-host-ref-engines"  # after a redirect from a.example.com


@pytest.mark.parametrize("template, expected", [
    ("../oci-index/{path}", "https://b.example.com/oci-index/team%2Fapp"),
    ("/oci-index/{+path}", "https://b.example.com/oci-index/team/app"),
    ("oci-index/{+path}", "https://b.example.com/.well-known/oci-index/team/app"),
    ("//{host}/oci-index/{+path}", "https://example.com/oci-index/team/app"),
    ("https://{host}/oci-index/{path}", "https://example.com/oci-index/team%2Fapp"),
])
def test_relative_template_resolves_against_the_redirected_base(template, expected):
    assert expand_uri(template, NAME, base=WELL_KNOWN) == expected


def test_expand_uri_without_base_returns_the_expansion():
    assert expand_uri("../oci-index/{path}", NAME) == "../oci-index/team%2Fapp"


def test_colon_in_a_first_segment_reads_as_a_scheme():
    """RFC 3986 section 4.2: a template must not start with a value that may hold ':'."""
    variables = parse_name("example.com/a:b").variables()
    base = "https://example.com/oci-image/"
    assert expand_uri("{+path}/index.json", variables, base) == "a:b/index.json"
    assert expand_uri("./{+path}/index.json", variables, base) == "https://example.com/oci-image/a:b/index.json"


class _Digest(object):
    """Stands in for _digests.Digest: anything with variables() works."""

    def variables(self):
        return dict(DIGEST)


@pytest.mark.parametrize("template, name_variables, expected", [
    ("https://example.com/oci-cas/{algorithm}/{encoded:2}/{encoded}", None,
     "https://example.com/oci-cas/sha256/e3/" + DIGEST["encoded"]),
    # Layout B needs the name's variables in the CAS template (DISCOVERY.md section 4 Decision).
    ("https://example.com/oci-image/{+path}/blobs/{algorithm}/{encoded}", NAME,
     "https://example.com/oci-image/team/app/blobs/sha256/" + DIGEST["encoded"]),
    ("https://example.com/oci-image/{path}/blobs/{algorithm}/{encoded}", parse_name("example.com/team/app"),
     "https://example.com/oci-image/team%2Fapp/blobs/sha256/" + DIGEST["encoded"]),
    # Digest variables win over name variables of the same name.
    ("{encoded:4}", {"encoded": "ffff", "path": "x"}, "e3b0"),
])
def test_cas_uri(template, name_variables, expected):
    assert cas_uri(template, DIGEST, name_variables) == expected
    assert cas_uri(template, _Digest(), name_variables) == expected


def test_cas_uri_relative_to_its_source():
    assert cas_uri("../oci-cas/{algorithm}/{encoded:2}/{encoded}", DIGEST,
                   base="https://example.com/oci-index/app") == (
        "https://example.com/oci-cas/sha256/e3/" + DIGEST["encoded"])


def test_cas_uri_does_not_change_its_arguments():
    name_variables = dict(NAME)
    cas_uri("{encoded}", DIGEST, name_variables)
    assert name_variables == NAME
