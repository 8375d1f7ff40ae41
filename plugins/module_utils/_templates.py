# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""URI templates (RFC 6570) and relative URI resolution (RFC 3986 section 5).

Expansion goes through the ``uritemplate`` package, after this module has
checked the template's syntax (``uritemplate`` silently passes malformed
templates through) and percent-encoded non-ASCII literal characters as
RFC 6570 section 3.1 asks.  Known ``uritemplate`` deviation: with ``{+var}``
and ``{#var}``, a value that already holds a %XX escape is copied unchanged,
even characters that should be encoded; name variables from
``_names.parse_name`` and digests cannot hold such characters.  Before 4.2
(Debian 12 ships 4.1.1) ``uritemplate`` encodes the ``%`` of such an escape
again (``%20`` becomes ``%2520``); with those versions each ``{+...}`` and
``{#...}`` expression is expanded alone and that second encoding undone.

Resolution is RFC 3986 section 5.2 (strict parser, dot-segment removal)
implemented here, because ``urllib.parse.urljoin`` deviates from it.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import traceback

try:
    import uritemplate
except ImportError:
    HAS_URITEMPLATE = False
    URITEMPLATE_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_URITEMPLATE = True
    URITEMPLATE_IMPORT_ERROR = None


class TemplateError(ValueError):
    """A template or URI that cannot be expanded or resolved; the message quotes it."""


# RFC 6570 section 2: literals exclude CTL, SP, DQUOTE, "'", "<", ">", "\",
# "^", "`", "{", "|", "}" and any "%" not starting a pct-encoded triplet.
_LITERAL_EXCLUDED = frozenset(" \"'<>\\^`{|}")
_PCT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_OPERATORS = "+#./;?&"
_RESERVED_OPERATORS = "=,!@|"
_VARCHAR = r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
_VARSPEC = re.compile(r"%s(?:\.?%s)*(?::[1-9][0-9]{0,3}|\*)?\Z" % (_VARCHAR, _VARCHAR))
_EXPRESSION = re.compile(r"(\{[^{}]*\})")


def _literal(text, template):
    """Check a literal part of ``template``; return it with non-ASCII characters %-encoded."""
    out = []
    for index, char in enumerate(text):
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char in _LITERAL_EXCLUDED:
            what = "an unbalanced %r" % char if char in "{}" else "the character %r" % char
            raise TemplateError("invalid URI template %r: %s is not allowed outside an expression"
                                % (template, what))
        if char == "%" and not _PCT_ENCODED.match(text, index):
            raise TemplateError("invalid URI template %r: '%%' must start a %%XX escape" % template)
        out.append(char if ord(char) < 0x80 else "".join("%%%02X" % b for b in char.encode("utf-8")))
    return "".join(out)


def _check_expression(expression, template):
    """Check one ``{...}`` expression (level 4 syntax, no reserved operators)."""
    body = expression[1:-1]
    operator = body[:1]
    if operator and operator in _RESERVED_OPERATORS:
        raise TemplateError("invalid URI template %r: the operator %r in %s is reserved"
                            % (template, operator, expression))
    if operator and operator in _OPERATORS:
        body = body[1:]
    for varspec in body.split(","):
        if not _VARSPEC.match(varspec):
            raise TemplateError("invalid URI template %r: bad variable %r in %s"
                                % (template, varspec, expression))


def check_template(template):
    """Return ``template`` ready for ``uritemplate``, or raise TemplateError saying what is wrong."""
    if not isinstance(template, str):
        raise TemplateError("a URI template must be a string, not %s" % type(template).__name__)
    parts = _EXPRESSION.split(template)
    for index in range(1, len(parts), 2):
        _check_expression(parts[index], template)
    for index in range(0, len(parts), 2):
        parts[index] = _literal(parts[index], template)
    return "".join(parts)


def expand(template, variables):
    """Expand an RFC 6570 template; missing variables expand to nothing."""
    prepared = check_template(template)
    if not HAS_URITEMPLATE:
        raise TemplateError("expanding the URI template %r needs the Python package 'uritemplate' "
                            "(pip install uritemplate)" % template)
    variables = dict(variables)
    try:
        if _keeps_escapes():
            return uritemplate.URITemplate(prepared).expand(variables)
        parts = _EXPRESSION.split(prepared)
        for index in range(1, len(parts), 2):
            expanded = uritemplate.URITemplate(parts[index]).expand(variables)
            parts[index] = undo_escape_encoding(expanded) if parts[index][1:2] in "+#" else expanded
        return "".join(parts)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TemplateError("cannot expand the URI template %r: %s" % (template, exc))


_ENCODED_ESCAPE = re.compile(r"%25([0-9A-Fa-f]{2})")
_KEEPS_ESCAPES = []


def _keeps_escapes():
    """Whether the installed ``uritemplate`` keeps %XX escapes in ``{+var}`` (4.2 and later)."""
    if not _KEEPS_ESCAPES:
        _KEEPS_ESCAPES.append(uritemplate.URITemplate("{+v}").expand(v="%20") == "%20")
    return _KEEPS_ESCAPES[0]


def undo_escape_encoding(expanded):
    """Turn each ``%25XX`` of a reserved expansion by ``uritemplate`` < 4.2 back into ``%XX``.

    Exact: in a value, ``%`` followed by two hex digits is an escape that reserved expansion keeps,
    so the only ``%25XX`` such a version writes is an escape it encoded again."""
    return _ENCODED_ESCAPE.sub(r"%\1", expanded)


# RFC 3986 appendix B; groups: scheme, authority, path, query, fragment.
_URI_REFERENCE = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?\Z", re.DOTALL)


def remove_dot_segments(path):
    """RFC 3986 section 5.2.4: interpret and remove ``.`` and ``..`` segments."""
    output = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            end = len(path) if end < 0 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def _merge(base_authority, base_path, reference_path):
    """RFC 3986 section 5.2.3."""
    if base_authority is not None and base_path == "":
        return "/" + reference_path
    return base_path[:base_path.rfind("/") + 1] + reference_path


def _recompose(scheme, authority, path, query, fragment):
    """RFC 3986 section 5.3."""
    result = ""
    if scheme is not None:
        result += scheme + ":"
    if authority is not None:
        result += "//" + authority
    result += path
    if query is not None:
        result += "?" + query
    if fragment is not None:
        result += "#" + fragment
    return result


def resolve(base, reference):
    """Resolve a URI reference against an absolute base URI (RFC 3986 section 5.2.2, strict)."""
    for what, value in (("base URI", base), ("URI reference", reference)):
        if not isinstance(value, str):
            raise TemplateError("the %s must be a string, not %s" % (what, type(value).__name__))
    b_scheme, b_authority, b_path, b_query = _URI_REFERENCE.match(base).groups()[:4]
    if b_scheme is None:
        raise TemplateError("cannot resolve %r against the base URI %r: the base has no scheme"
                            % (reference, base))
    scheme, authority, path, query, fragment = _URI_REFERENCE.match(reference).groups()
    if scheme is not None:
        path = remove_dot_segments(path)
    else:
        scheme = b_scheme
        if authority is not None:
            path = remove_dot_segments(path)
        else:
            authority = b_authority
            if path == "":
                path = b_path
                query = b_query if query is None else query
            elif path.startswith("/"):
                path = remove_dot_segments(path)
            else:
                path = remove_dot_segments(_merge(b_authority, b_path, path))
    return _recompose(scheme, authority, path, query, fragment)


def expand_uri(template, variables, base=None):
    """Expand ``template``, then resolve the result against ``base`` when one is given."""
    uri = expand(template, variables)
    return uri if base is None else resolve(base, uri)


def _as_variables(value):
    return value.variables() if hasattr(value, "variables") else dict(value)


def cas_uri(template, digest_variables, name_variables=None, base=None):
    """Expand a CAS template for a blob (the oci-cas-template-v1 engine).

    The variables are the image name's (``name``, ``host``, ``path``,
    ``fragment``; when given) overlaid by the digest's (``digest``,
    ``algorithm``, ``encoded``).  Either may be a mapping or an object with a
    ``variables()`` method (``ImageName``, ``Digest``).
    """
    variables = _as_variables(name_variables) if name_variables is not None else {}
    variables.update(_as_variables(digest_variables))
    return expand_uri(template, variables, base)
