# -*- coding: utf-8 -*-
"""Host-based image names (DISCOVERY.md section 1), DNS ancestors (2.1), safe publishing paths and tags."""
import ipaddress

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._names import (
    ImageName, InvalidName, UnsafeName, dns_ancestors, host_is_ip, is_valid_fragment,
    parse_name, safe_relpath, safe_tag,
)


@pytest.mark.parametrize("text, host, path, fragment", [
    # The spec's own examples.
    ("example.com/app#1.0", "example.com", "app", "1.0"),
    ("a.b.example.com/c/d#1.0", "a.b.example.com", "c/d", "1.0"),
    ("example.com/app", "example.com", "app", ""),
    ("example.com/a/", "example.com", "a/", ""),
    # The reference implementations' vectors.
    ("example.com/a", "example.com", "a", ""),
    ("example.com/a/b", "example.com", "a/b", ""),
    ("example.com/a/b#c", "example.com", "a/b", "c"),
    ("localhost/a", "localhost", "a", ""),
    ("127.0.0.1/a", "127.0.0.1", "a", ""),
    ("[::1]/a", "[::1]", "a", ""),
    # Nested paths, other hosts.
    ("example.com/team/app#1.0", "example.com", "team/app", "1.0"),
    ("example.com/a/b/c/d/", "example.com", "a/b/c/d/", ""),
    ("example.com/a//b", "example.com", "a//b", ""),
    ("[2001:db8::7]/app#1", "[2001:db8::7]", "app", "1"),
    ("[::ffff:192.0.2.1]/a", "[::ffff:192.0.2.1]", "a", ""),
    ("[v7.fe80::1+eth0]/a", "[v7.fe80::1+eth0]", "a", ""),
    ("[V1a.x]/a", "[V1a.x]", "a", ""),
    ("256.1.1.1/a", "256.1.1.1", "a", ""),  # not IPv4: a reg-name
    ("ex%41mple.com/a", "ex%41mple.com", "a", ""),
    ("Under_Score.Example.COM/App", "Under_Score.Example.COM", "App", ""),
    ("x!$&'()*+,;=.com/a", "x!$&'()*+,;=.com", "a", ""),
    # Every pchar in the path, escapes included.
    ("example.com/a:b@c;d=e,f+g!h$i&j'k(l)m*n~o-p_q.r", "example.com",
     "a:b@c;d=e,f+g!h$i&j'k(l)m*n~o-p_q.r", ""),
    ("example.com/a%2Fb%2e", "example.com", "a%2Fb%2e", ""),
    ("example.com/./..", "example.com", "./..", ""),  # valid name, unsafe to publish
    # Fragments hold / ? : @ and sub-delims.
    ("example.com/a#b/c?d:e@f", "example.com", "a", "b/c?d:e@f"),
    ("example.com/a#!$&'()*+,;=", "example.com", "a", "!$&'()*+,;="),
    ("example.com/a#v%201", "example.com", "a", "v%201"),
    ("example.com/a#", "example.com", "a", ""),  # empty fragment: same as none
])
def test_parse_valid(text, host, path, fragment):
    assert parse_name(text) == ImageName(host, path, fragment)


@pytest.mark.parametrize("text, reason", [
    # The spec's (and the reference implementations') invalid names.
    ("example.com", "it has no path"),
    ("example.com/", "the path after the host is empty"),
    ("/", "the host is empty"),
    ("example.com/#", "the path after the host is empty"),
    ("example.com/#1.0", "the path after the host is empty"),
    ("example.com:80/a", "a port is not allowed"),
    ("[::1]:80/a", "a port is not allowed"),
    # More.
    ("example.com:/a", "a port is not allowed"),
    ("localhost:5000/a#b", "a port is not allowed"),
    ("", "it is empty"),
    ("/a", "the host is empty"),
    ("example.com//a", "must not start with '/'"),
    ("example.com/a?b", "a query ('?') is not allowed"),
    ("example.com/a b", "the path has a space"),
    ("example.com/a\\b", "the path has the character '\\\\'"),
    ("example.com/a\x00", "the path has the character U+0000"),
    ("example.com/caf\u00e9", "the path has the character '\u00e9' (U+00E9)"),
    ("example.com/a%zz", "bad percent-escape '%zz'"),
    ("example.com/a%4", "bad percent-escape '%4'"),
    ("user@example.com/a", "user information"),
    ("a:b/c", "the host 'a:b' has a ':'"),
    ("exa mple.com/a", "the host has a space"),
    ("exa<mple.com/a", "the host has the character '<'"),
    ("example.com%/a", "bad percent-escape '%'"),
    ("[::1/a", "has no closing ']'"),
    ("[::g]/a", "the host '[::g]' is not a valid IPv6 or IPvFuture literal"),
    ("[1.2.3.4]/a", "not a valid IPv6 or IPvFuture literal"),
    ("[fe80::1%eth0]/a", "not a valid IPv6 or IPvFuture literal"),
    ("[v1.]/a", "not a valid IPv6 or IPvFuture literal"),
    ("[vx.y]/a", "not a valid IPv6 or IPvFuture literal"),
    ("[::1]a/b", "unexpected 'a' after the IP literal host"),
    ("[::1]", "it has no path"),
    ("example.com/a#b#c", "the fragment has a second '#'"),
    ("example.com/a#b c", "the fragment has a space"),
    ("example.com/a#b[1]", "the fragment has the character '['"),
])
def test_parse_invalid(text, reason):
    with pytest.raises(InvalidName) as error:
        parse_name(text)
    assert str(error.value).startswith("invalid image name %r: " % text)
    assert reason in str(error.value)


@pytest.mark.parametrize("value", [None, b"example.com/a", 42])
def test_parse_not_a_string(value):
    with pytest.raises(InvalidName, match="must be a string"):
        parse_name(value)


IPV6_VECTORS = [
    "::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1::2:3:4:5:6:7", "1:2:3:4:5:6:1.2.3.4", "::ffff:1.2.3.4", "1::1.2.3.4", "2001:DB8::7",
    "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", "12345::", "1:2:3:4:5:6:7", "g::", "::1.2.3",
    "::256.1.1.1", "1:2:3:4:5:6:7:1.2.3.4", ":1::", "1:::2", "::01.2.3.4", "::1.2.3.4:5",
]


@pytest.mark.parametrize("address", IPV6_VECTORS)
def test_ipv6_literals_agree_with_ipaddress(address):
    """The RFC 3986 IPv6address grammar accepts exactly what the standard library does (no zone ids)."""
    try:
        ipaddress.IPv6Address(address)
        expected = True
    except ValueError:
        expected = False
    try:
        parse_name("[%s]/a" % address)
        accepted = True
    except InvalidName:
        accepted = False
    assert accepted is expected


def test_image_name_properties():
    name = parse_name("a.b.example.com/c/d#1.0")
    assert name.name == str(name) == "a.b.example.com/c/d#1.0"
    assert name.family == "a.b.example.com/c/d"
    assert name.variables() == {"name": "a.b.example.com/c/d#1.0", "host": "a.b.example.com",
                                "path": "c/d", "fragment": "1.0"}


@pytest.mark.parametrize("text, name", [
    ("example.com/app", "example.com/app"),
    ("example.com/app#", "example.com/app"),
    ("example.com/a/#x", "example.com/a/#x"),
])
def test_name_spelling(text, name):
    parsed = parse_name(text)
    assert parsed.name == name
    assert parsed.variables()["name"] == name
    assert parse_name(parsed.name) == parsed


@pytest.mark.parametrize("host, ancestors", [
    ("a.b.example.com", ["a.b.example.com", "b.example.com", "example.com"]),
    ("a.example.com", ["a.example.com", "example.com"]),
    ("example.com", ["example.com"]),
    ("a.b.c.example.co.uk", ["a.b.c.example.co.uk", "b.c.example.co.uk", "c.example.co.uk",
                             "example.co.uk", "co.uk"]),  # the spec knows no public suffixes
    ("a.b.example.com.", ["a.b.example.com.", "b.example.com.", "example.com."]),
    ("localhost", ["localhost"]),
    ("127.0.0.1", ["127.0.0.1"]),
    ("0.0.0.0", ["0.0.0.0"]),
    ("[::1]", ["[::1]"]),
    ("[v1.x.y]", ["[v1.x.y]"]),
    ("1.2.3", ["1.2.3"]),          # numeric last label: not a DNS name
    ("256.1.1.1", ["256.1.1.1"]),
    ("a..example.com", ["a..example.com"]),
])
def test_dns_ancestors(host, ancestors):
    assert dns_ancestors(host) == ancestors


def test_dns_ancestors_of_a_parsed_name():
    assert dns_ancestors(parse_name("a.b.example.com/c/d#1.0").host) == [
        "a.b.example.com", "b.example.com", "example.com"]


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("[::1]", True), ("[v1.x]", True),
    ("256.0.0.0", False), ("1.2.3", False), ("example.com", False), ("localhost", False),
])
def test_host_is_ip(host, expected):
    assert host_is_ip(host) is expected


@pytest.mark.parametrize("path", [
    "app", "team/app", "c/d", "a/b/c/d/e",
    "a:b@c;d=e,f+g!h$i&j'k(l)m*n~o-p_q.r",
    "..a", "a..", "...", ".well-known",
    "a" * 255, "/".join(["a" * 250] * 4) + "/" + "b" * 20,  # longest segment, longest path
])
def test_safe_relpath_accepts(path):
    assert safe_relpath(path) == path


@pytest.mark.parametrize("path, reason", [
    ("", "it is empty"),
    ("a/../b", "it has a '..' segment"),
    ("..", "it has a '..' segment"),
    ("../a", "it has a '..' segment"),
    ("a/..", "it has a '..' segment"),
    (".", "it has a '.' segment"),
    ("./a", "it has a '.' segment"),
    ("a/./b", "it has a '.' segment"),
    ("a/.", "it has a '.' segment"),
    ("a\x00b", "it contains a NUL character"),
    ("a\nb", "it contains a control character"),
    ("a\x7fb", "it contains a control character"),
    ("a\x85b", "it contains a control character"),
    ("a\\b", "it contains a backslash"),
    ("..\\a", "it contains a backslash"),
    ("a%2Fb", "it contains '%'"),
    ("%2e%2e/a", "it contains '%'"),
    ("/a", "it starts with '/'"),
    ("/", "it starts with '/'"),
    ("a/", "it ends with '/'"),
    ("a//b", "it has an empty segment"),
    ("a b", "it contains a space"),
    ("a?b", "it contains the character '?'"),
    ("a#b", "it contains the character '#'"),
    ("caf\u00e9", "it contains the character '\u00e9'"),
    ("a" * 256, "is longer than 255 bytes"),
    ("/".join(["a" * 250] * 4) + "/" + "b" * 21, "it is longer than 1024 bytes"),
])
def test_safe_relpath_rejects(path, reason):
    with pytest.raises(UnsafeName) as error:
        safe_relpath(path)
    assert str(error.value).startswith("unsafe image path %r" % path[:100])
    assert reason in str(error.value)


def test_long_texts_are_cut_in_messages():
    with pytest.raises(UnsafeName) as error:
        safe_relpath("a" * 2000)
    assert len(str(error.value)) < 250
    with pytest.raises(InvalidName) as error:
        parse_name("example.com/" + "a" * 2000 + " ")
    assert len(str(error.value)) < 250


def test_unsafe_name_is_an_invalid_name():
    with pytest.raises(InvalidName):
        safe_relpath("a/../b")
    with pytest.raises(UnsafeName, match="must be a string"):
        safe_relpath(None)


def test_every_clean_parsed_path_is_safe():
    for text in ("example.com/app#1.0", "a.b.example.com/c/d#1.0", "example.com/team/app"):
        assert safe_relpath(parse_name(text).path) == parse_name(text).path
    with pytest.raises(UnsafeName, match="ends with '/'"):
        safe_relpath(parse_name("example.com/a/").path)


@pytest.mark.parametrize("tag", [
    "1.0", "latest", "v1.0-rc.1+build.5", "a/b?c:d@e", "!$&'()*+,;=", "caf\u00e9", "x" * 255,
])
def test_safe_tag_accepts(tag):
    assert safe_tag(tag) == tag


@pytest.mark.parametrize("tag, reason", [
    ("", "must not be empty"),
    ("a\x00", "control character"),
    ("a\nb", "control character"),
    ("a\x7f", "control character"),
    ("x" * 256, "longer than 255 characters"),
    (None, "must be a string"),
    (1, "must be a string"),
])
def test_safe_tag_rejects(tag, reason):
    with pytest.raises(UnsafeName, match=reason):
        safe_tag(tag)


@pytest.mark.parametrize("text, expected", [
    ("1.0", True), ("a/b?c:d@e", True), ("", True), ("v%201", True),
    ("a b", False), ("a#b", False), ("%zz", False), ("caf\u00e9", False), (None, False),
])
def test_is_valid_fragment(text, expected):
    assert is_valid_fragment(text) is expected
