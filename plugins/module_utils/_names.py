# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-based image names (``host/path#fragment``) and their safe file paths.

A host-based image name is ``host "/" path-rootless [ "#" fragment ]`` in
RFC 3986 terms:

* ``host`` is a reg-name, an IPv4 address or a bracketed IP literal
  (IPv6 or IPvFuture).  There is no port and no user information.
* ``path`` is path-rootless: non-empty, its first segment non-empty, made of
  pchar (unreserved, sub-delims, ``:``, ``@`` and %XX escapes) and ``/``.
  A trailing slash is kept: ``example.com/a/`` has the path ``a/``.
* ``fragment`` is optional and made of pchar, ``/`` and ``?``.

Choices where the grammar or the spec is loose:

* ``example.com/a#`` is a name: the RFC 3986 fragment may be empty.  It means
  the same as ``example.com/a`` (a missing fragment is the empty string), and
  ``ImageName.name`` spells it without the ``#``.
* An empty host (``/a``) is rejected: RFC 3986 allows an empty reg-name, but
  it names no host to ask.
* Hosts are kept as written (no case folding, no IDNA): only ASCII is valid.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import unicodedata
from collections import namedtuple


class InvalidName(ValueError):
    """The text is not a host-based image name; the message quotes it."""


class UnsafeName(InvalidName):
    """A valid name part that must not be published as a file, key or tag."""


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_REG_NAME_CHARS = frozenset(_UNRESERVED + _SUB_DELIMS)
_PCHARS = frozenset(_UNRESERVED + _SUB_DELIMS + ":@")
_PATH_CHARS = _PCHARS | frozenset("/")
_FRAGMENT_CHARS = _PCHARS | frozenset("/?")
_HEX = frozenset("0123456789ABCDEFabcdef")


def _ip_patterns():
    """Compile IPv4address and IP-literal exactly as RFC 3986 section 3.2.2 writes them."""
    dec_octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
    ipv4 = r"%s(?:\.%s){3}" % (dec_octet, dec_octet)
    h16 = "[0-9A-Fa-f]{1,4}"
    ls32 = "(?:%s:%s|%s)" % (h16, h16, ipv4)
    # The nine IPv6address alternatives: after "::" come 4, 3, 2, 1 "h16:"
    # then ls32, then ls32 alone, h16 alone, nothing; before "::" at most
    # 0 .. 6 "h16:" followed by one h16, all optional.
    tails = ["(?:%s:){4}%s" % (h16, ls32), "(?:%s:){3}%s" % (h16, ls32),
             "(?:%s:){2}%s" % (h16, ls32), "%s:%s" % (h16, ls32), ls32, h16, ""]
    alternatives = ["(?:%s:){6}%s" % (h16, ls32), "::(?:%s:){5}%s" % (h16, ls32)]
    for most, tail in enumerate(tails):
        alternatives.append("(?:(?:%s:){0,%d}%s)?::%s" % (h16, most, h16, tail))
    ipv6 = "(?:%s)" % "|".join(alternatives)
    ipv_future = r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+"
    return re.compile(ipv4 + r"\Z"), re.compile(r"\[(?:%s|%s)\]\Z" % (ipv6, ipv_future))


_IPV4, _IP_LITERAL = _ip_patterns()


class ImageName(namedtuple("ImageName", ("host", "path", "fragment"))):
    """A parsed name; ``fragment`` is ``""`` when the name has none."""

    __slots__ = ()

    @property
    def family(self):
        """``host/path``: the name without its fragment (one index per family)."""
        return "%s/%s" % (self.host, self.path)

    @property
    def name(self):
        """The full name, ``host/path#fragment``, without ``#`` when the fragment is empty."""
        return self.family + ("#" + self.fragment if self.fragment else "")

    def variables(self):
        """The URI template variables of a name: name, host, path, fragment."""
        return {"name": self.name, "host": self.host, "path": self.path, "fragment": self.fragment}

    def __str__(self):
        return self.name


def _shown(text, limit=100):
    """``repr(text)`` for messages, cut after ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _describe(char):
    """Name a character for a message."""
    if char == " ":
        return "a space"
    if unicodedata.category(char) == "Cc" or not char.isprintable():
        return "the character U+%04X" % ord(char)
    return "the character %r (U+%04X)" % (char, ord(char))


def _char_error(text, allowed, part):
    """Why ``text`` is not made of ``allowed`` characters and %XX escapes, or None."""
    for index, char in enumerate(text):
        if char == "%":
            escape = text[index + 1:index + 3]
            if len(escape) != 2 or not set(escape) <= _HEX:
                return ("%s has a bad percent-escape %r (expected '%%' and two hex digits)"
                        % (part, text[index:index + 3]))
        elif char not in allowed:
            return "%s has %s, which is not allowed there" % (part, _describe(char))
    return None


def _check_chars(text, allowed, part, fail):
    """Call ``fail`` with the reason when ``text`` has a character outside ``allowed``."""
    reason = _char_error(text, allowed, part)
    if reason:
        fail(reason)


def _split_host(text, fail):
    """Split ``host/path`` into host and the rest (starting with ``/``, or ``''``)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            fail("the IP literal host has no closing ']'")
        host, rest = text[:end + 1], text[end + 1:]
        if not _IP_LITERAL.match(host):
            fail("the host %r is not a valid IPv6 or IPvFuture literal" % host)
        if rest.startswith(":"):
            fail("a port is not allowed (host-based image names have no port)")
        if rest and not rest.startswith("/"):
            fail("unexpected %r after the IP literal host" % rest.split("/")[0])
        return host, rest
    host, slash, rest = text.partition("/")
    if "@" in host:
        fail("user information ('...@') is not allowed before the host")
    if ":" in host:
        after_colon = host.rpartition(":")[2]
        if not after_colon or after_colon.isdigit():
            fail("a port is not allowed (host-based image names have no port)")
        fail("the host %r has a ':', which is only allowed inside [...] IP literals" % host)
    if not host:
        fail("the host is empty")
    _check_chars(host, _REG_NAME_CHARS, "the host", fail)
    return host, slash + rest


def parse_name(text):
    """Parse a host-based image name (``host "/" path-rootless ["#" fragment]``) into an ImageName.

    Raises InvalidName, quoting the name and saying what is wrong.
    """
    if not isinstance(text, str):
        raise InvalidName("an image name must be a string, not %s" % type(text).__name__)

    def fail(reason):
        raise InvalidName("invalid image name %s: %s" % (_shown(text), reason))

    if not text:
        fail("it is empty (expected host/path[#fragment])")
    rest, _hash, fragment = text.partition("#")
    host, slash_path = _split_host(rest, fail)
    if not slash_path:
        fail("it has no path (expected host/path[#fragment])")
    path = slash_path[1:]
    if not path:
        fail("the path after the host is empty")
    if path.startswith("/"):
        fail("the path must not start with '/' (its first segment is empty)")
    if "?" in path:
        fail("a query ('?') is not allowed in the path")
    _check_chars(path, _PATH_CHARS, "the path", fail)
    if "#" in fragment:
        fail("the fragment has a second '#'")
    _check_chars(fragment, _FRAGMENT_CHARS, "the fragment", fail)
    return ImageName(host, path, fragment)


def is_valid_fragment(text):
    """Whether ``text`` is an RFC 3986 fragment, i.e. a tag a host-based name can select."""
    return isinstance(text, str) and "#" not in text and not _char_error(text, _FRAGMENT_CHARS, "")


def host_is_ip(host):
    """Whether ``host`` is an IPv4 address or a bracketed IP literal (RFC 3986 rules)."""
    return host.startswith("[") or bool(_IPV4.match(host))


def dns_ancestors(host):
    """The host, then its DNS ancestors, stopping before the last label.

    ``a.b.example.com`` -> ``[a.b.example.com, b.example.com, example.com]``.
    These have no ancestors (the result is ``[host]``): IP addresses and IP
    literals, single-label hosts, hosts with an empty label (``a..b``), and
    hosts whose last label is all digits (``1.2.3``: not a DNS name, and
    resolvers read it as an IPv4 address).  A trailing dot (fully qualified
    ``example.com.``) is kept on every ancestor.
    """
    if host_is_ip(host):
        return [host]
    dot = "." if host.endswith(".") else ""
    labels = host[:len(host) - len(dot)].split(".")
    if len(labels) < 2 or "" in labels or labels[-1].isdigit():
        return [host]
    return [".".join(labels[start:]) + dot for start in range(len(labels) - 1)]


MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_TAG_CHARS = 255


def safe_relpath(path):
    """Return a name's path if it is safe as a relative file path or S3 key.

    It must be a clean relative path of name characters: no ``.`` or ``..``
    segment, no empty segment, no leading or trailing ``/``, no NUL, control
    character or backslash, and no ``%`` (web servers and S3 decode escapes,
    so the file would not be the one the URL names).  Segments are limited to
    255 bytes, the whole path to 1024.  Raises UnsafeName naming the path.
    """
    if not isinstance(path, str):
        raise UnsafeName("an image path must be a string, not %s" % type(path).__name__)

    def fail(reason):
        raise UnsafeName("unsafe image path %s for publishing: %s" % (_shown(path), reason))

    if not path:
        fail("it is empty")
    if "\0" in path:
        fail("it contains a NUL character")
    if any(unicodedata.category(char) == "Cc" for char in path):
        fail("it contains a control character")
    if "\\" in path:
        fail("it contains a backslash")
    if "%" in path:
        fail("it contains '%' (servers decode percent-escapes, so the file would not match the URL)")
    for char in path:
        if char not in _PATH_CHARS:
            fail("it contains %s, which is not allowed in an image name path" % _describe(char))
    if path.startswith("/"):
        fail("it starts with '/' (it must be relative)")
    if path.endswith("/"):
        fail("it ends with '/'")
    segments = path.split("/")
    if "" in segments:
        fail("it has an empty segment ('//')")
    for dots in ("..", "."):
        if dots in segments:
            fail("it has a %r segment" % dots)
    for segment in segments:
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            fail("the segment %s is longer than %d bytes" % (_shown(segment, 20), MAX_SEGMENT_BYTES))
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        fail("it is longer than %d bytes" % MAX_PATH_BYTES)
    return path


def safe_tag(tag):
    """Return ``tag`` if it can be published as an index ref name.

    Tags are only written as ``org.opencontainers.image.ref.name``
    annotations, never as file names, so ``/``, ``?``, ``:`` and ``@`` are
    fine.  Rejected: a non-string, the empty string, control characters
    (NUL included) and more than 255 characters.  Raises UnsafeName.
    """
    if not isinstance(tag, str):
        raise UnsafeName("a tag must be a string, not %s" % type(tag).__name__)
    if not tag:
        raise UnsafeName("a tag must not be empty")
    if any(unicodedata.category(char) == "Cc" for char in tag):
        raise UnsafeName("unsafe tag %s: it contains a control character" % _shown(tag))
    if len(tag) > MAX_TAG_CHARS:
        raise UnsafeName("unsafe tag %s: it is longer than %d characters" % (_shown(tag, 40), MAX_TAG_CHARS))
    return tag
