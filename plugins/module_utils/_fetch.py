# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What fetching means for the discovery client, and the bounded reads both sources share.

A fetcher (``_urls.UrlFetcher``) returns a ``Response`` or raises ``FetchError``
with a kind: ABSENT for a real "nothing there", ERROR for everything else.
``read_bounded`` reads a body or a local file without ever holding more than
the limit plus one byte; ``read_local_file`` is the only way the client reads
a local file (never blocking, regular files only, within a deadline). Origins
(scheme, host, port) decide where the caller's headers may go.

No Ansible imports here.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import stat
import time
from collections import namedtuple
from typing import Any, Callable, Dict, Optional, Tuple

FILE_TIMEOUT = 10
_CHUNK = 64 * 1024
DEFAULT_PORTS = {'https': 443, 'http': 80}

# Failure kinds. ABSENT: the server says there is nothing there (HTTP 404/410,
# unknown host). Everything else is an ERROR.
ABSENT = 'absent'
ERROR = 'error'

HeadersFor = Callable[[str], Dict[str, str]]


class FetchError(Exception):
    """A request that produced no usable response; ``reason`` says why (no URL in it)."""

    def __init__(self, reason, kind=ERROR):
        super(FetchError, self).__init__(reason)
        self.reason = reason
        self.kind = kind


class Response(namedtuple('Response', 'url status content_type body')):
    """What a fetcher returns: final URL after redirects, HTTP status, Content-Type (or None), bytes."""

    __slots__ = ()


def url_origin(url: str) -> Optional[Tuple[str, str, int]]:
    """``(scheme, host, port)`` of an http(s) URL (host lower-cased, IPv6 without brackets), else None."""
    from urllib.parse import urlsplit  # local import, as in file_uri
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        return scheme, parts.hostname.lower(), parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # a bad port or IPv6 literal
        return None


def parse_origin(text: str) -> Tuple[str, str, int]:
    """An origin as users write it (``https://host[:port]``, optional trailing ``/``) -> url_origin()."""
    origin = url_origin(text) if isinstance(text, str) else None
    if origin is None or '@' in text or re.match(r'[A-Za-z]+://[^/?#]*/?\Z', text) is None:
        raise ValueError('%r is not an origin (expected scheme://host[:port], scheme https or http)' % (text,))
    return origin


def file_uri(path: str) -> str:
    """The ``file://`` URI of an absolute local path (percent-encoded as RFC 8089 wants)."""
    from urllib.parse import quote  # local import: only XDG needs it
    return 'file://' + quote(os.path.abspath(path), safe="/!$&'()*+,;=:@-._~")


def file_path(url: str) -> str:
    """The local path of a ``file:`` URI (no host, or ``localhost``); FetchError otherwise."""
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(url)
    if parts.netloc not in ('', 'localhost'):
        raise FetchError('file URI with a remote host %r is not supported' % parts.netloc)
    return unquote(parts.path)


def read_bounded(read: Callable[[int], bytes], limit: int, before_read: Callable[[], Any], what: str) -> bytes:
    """Read with ``read(n)`` until it returns nothing, calling ``before_read()`` before each read.

    Raises FetchError('WHAT larger than the limit of LIMIT bytes') as soon as
    more than ``limit`` bytes came, so at most ``limit + 1`` are ever read.
    """
    chunks, total = [], 0
    while True:
        before_read()
        chunk = read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise FetchError('%s larger than the limit of %d bytes' % (what, limit))


def read_local_file(path: str, limit: int, timeout: float = FILE_TIMEOUT) -> bytes:
    """Read at most ``limit`` bytes of a regular file within ``timeout`` seconds; raise FetchError.

    Opened with O_NONBLOCK and O_NOCTTY, so a FIFO, a terminal or a device never
    blocks; anything but a regular file is refused. A missing file is ABSENT.
    """
    flags = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0) | getattr(os, 'O_CLOEXEC', 0)
    deadline = time.monotonic() + timeout
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FetchError('cannot read %s: %s' % (path, exc.strerror or exc),
                         ABSENT if exc.errno == errno.ENOENT else ERROR)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FetchError('refused: %s is not a regular file' % path)

        def in_time():
            if time.monotonic() > deadline:
                raise FetchError('cannot read %s within the %g s timeout' % (path, timeout))
        return read_bounded(lambda size: os.read(fd, size), limit, in_time, 'file')
    except OSError as exc:
        raise FetchError('cannot read %s: %s' % (path, exc.strerror or exc))
    finally:
        os.close(fd)
