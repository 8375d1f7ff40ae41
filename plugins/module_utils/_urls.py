# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The discovery client's HTTP fetcher, built on ``ansible.module_utils.urls``.

``UrlFetcher.fetch(url, accept, max_bytes)`` does one GET and follows
redirects itself, hop by hop (``follow_redirects='none'``), so that it can:

* count hops and stop at ``max_redirects``, and name a redirect loop;
* refuse a redirect to a scheme that is not allowed (https -> http when http
  is not in ``protocols``; anything that is not http or https);
* report the final URL, against which relative templates are resolved;
* choose the caller's extra headers anew for every hop (``headers_for(url)``),
  so that headers meant for one origin are dropped when a redirect leaves it,
  as curl and browsers do.

The size limit is enforced while reading: a Content-Length above it fails
before the body is read, otherwise the body is read in chunks and reading
stops at ``max_bytes + 1``. The whole request (connection, TLS, every
redirect, headers and body) must finish within ``timeout`` seconds: socket
timeouts alone bound each read, not their sum, so a server that drips one
byte a second would never time out. The request therefore runs in a worker
thread that checks the deadline between reads; when the deadline passes the
caller gets a FetchError at once and the worker's connection is shut down.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import http.client as http_client
import inspect
import socket
import ssl
import threading
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, SSLValidationError, make_context

from typing import Optional, Sequence

from ansible_collections.oci.discovery.plugins.module_utils._fetch import (
    ABSENT, ERROR, FetchError, HeadersFor, Response, read_bounded)

DEFAULT_TIMEOUT = 10
DEFAULT_MAX_REDIRECTS = 5
USER_AGENT = 'ansible-oci.discovery'
_REDIRECTS = (301, 302, 303, 307, 308)
# ansible-core 2.17 and later let a Request reuse one TLS context; 2.16 builds one per request.
_REQUEST_TAKES_CONTEXT = 'context' in inspect.signature(Request.__init__).parameters


# getaddrinfo answers that mean "no such host" (NXDOMAIN, no address); the others
# (EAI_AGAIN: no answer from the resolver, EAI_FAIL...) say nothing about the host.
_NO_SUCH_HOST = tuple(getattr(socket, code) for code in ('EAI_NONAME', 'EAI_NODATA') if hasattr(socket, code))


def _scheme(url):
    return url.split(':', 1)[0].lower() if ':' in url else ''


def describe_exception(exc: BaseException) -> str:
    """A short reason for a connection-level failure (TLS, DNS, refused, timeout...)."""
    if isinstance(exc, URLError) and not isinstance(exc, HTTPError):
        exc = exc.reason if not isinstance(exc.reason, str) else exc
        if isinstance(exc, URLError):
            return 'connection failed: %s' % exc.reason
    if isinstance(exc, ssl.SSLCertVerificationError):
        return 'TLS certificate verification failed: %s' % (exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return 'TLS error: %s' % (exc.reason or exc)
    if isinstance(exc, SSLValidationError):
        return 'TLS certificate verification failed: %s' % exc
    if isinstance(exc, socket.gaierror):
        if exc.errno in _NO_SUCH_HOST:
            return 'unknown host (%s)' % (exc.strerror or exc)
        return 'DNS lookup failed, not an answer about the host (%s)' % (exc.strerror or exc)
    if isinstance(exc, socket.timeout):
        return 'timed out'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, ConnectionResetError):
        return 'connection reset by the server'
    if isinstance(exc, http_client.RemoteDisconnected):
        return 'the server closed the connection without a response'
    if isinstance(exc, http_client.IncompleteRead):
        return 'the server closed the connection mid-body'
    if isinstance(exc, http_client.HTTPException):
        return 'invalid HTTP response: %s: %s' % (type(exc).__name__, exc)
    if isinstance(exc, OSError):
        return 'connection failed: %s' % (exc.strerror or exc)
    return '%s: %s' % (type(exc).__name__, exc)


def _kind_of(exc):
    """ABSENT only for a DNS answer that the host does not exist; everything else is an ERROR."""
    reason = getattr(exc, 'reason', None)
    for value in (exc, reason):
        if isinstance(value, socket.gaierror) and value.errno in _NO_SUCH_HOST:
            return ABSENT
    return ERROR


class _Cancelled(Exception):
    pass


class _Job(object):
    """State shared between the caller and the worker thread of one fetch."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.cancelled = False
        self.response = None     # the open response, so the caller can shut it down
        self.result = None
        self.error = None
        self.done = threading.Event()

    def remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0 or self.cancelled:
            raise _Cancelled()
        return left


class UrlFetcher(object):
    """Fetcher for ``_discovery.Client`` (see the module docstring).

    :arg protocols: schemes requests and redirects may use (``https``, ``http``).
    :arg validate_certs: verify TLS certificates (default True).
    :arg ca_path: PEM bundle of CAs to trust instead of the system store.
    :arg use_proxy: honour ``*_proxy`` environment variables.
    :arg timeout: overall deadline in seconds for each fetch, redirects included.
    :arg max_redirects: redirect hops allowed per fetch.
    """

    def __init__(self, protocols: Sequence[str] = ('https',), validate_certs: bool = True,
                 ca_path: Optional[str] = None, use_proxy: bool = True, timeout: float = DEFAULT_TIMEOUT,
                 max_redirects: int = DEFAULT_MAX_REDIRECTS, user_agent: str = USER_AGENT) -> None:
        self.protocols = tuple(p.lower() for p in protocols)
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self.timeout = float(timeout)
        self.max_redirects = max_redirects
        self.user_agent = user_agent

    def ssl_context(self):
        """The TLS context of every request, made once (``Request`` would load the CA store per request)."""
        if getattr(self, '_context', None) is None:
            self._context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
        return self._context

    def fetch(self, url: str, accept: str, max_bytes: int, headers_for: Optional[HeadersFor] = None) -> Response:
        """GET ``url``; return a Response or raise FetchError (within ``timeout`` seconds).

        ``headers_for(url)`` gives the extra headers of each hop (``Accept`` is
        always ``accept``); without it, none are sent.
        """
        job = _Job(time.monotonic() + self.timeout)
        worker = threading.Thread(target=self._run, args=(job, url, accept, max_bytes, headers_for),
                                  name='oci-discovery-fetch')
        worker.daemon = True
        worker.start()
        job.done.wait(self.timeout)
        if not job.done.is_set():
            job.cancelled = True
            self._abort(job)
            worker.join(1)
            raise FetchError('no complete response within the %g s timeout' % self.timeout)
        if job.error is not None:
            raise job.error
        return job.result

    @staticmethod
    def _abort(job):
        """Shut the worker's socket down so that a blocked read returns."""
        response = job.response
        if response is None:
            return
        try:
            raw = response.fp.raw if hasattr(response.fp, 'raw') else None
            sock = getattr(raw, '_sock', None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass

    def _run(self, job, url, accept, max_bytes, headers_for):
        try:
            job.result = self._follow(job, url, accept, max_bytes, headers_for)
        except _Cancelled:
            job.error = FetchError('no complete response within the %g s timeout' % self.timeout)
        except FetchError as exc:
            job.error = exc
        except Exception as exc:  # pylint: disable=broad-except
            if job.cancelled or time.monotonic() >= job.deadline - 0.05:
                # A socket timeout is the remaining time of the deadline: it may fire just before the
                # caller gives up waiting; report it as the deadline either way.
                job.error = FetchError('no complete response within the %g s timeout' % self.timeout)
            else:
                job.error = FetchError(describe_exception(exc), _kind_of(exc))
        finally:
            job.done.set()

    def _follow(self, job, url, accept, max_bytes, headers_for):
        seen = [url]
        tls = {'context': self.ssl_context()} if _REQUEST_TAKES_CONTEXT else {}
        request = Request(use_proxy=self.use_proxy, validate_certs=self.validate_certs,
                          ca_path=self.ca_path, follow_redirects='none', http_agent=self.user_agent,
                          decompress=False, use_netrc=False, **tls)
        while True:
            if _scheme(url) not in self.protocols:
                raise FetchError('refused: %s is not an allowed protocol (allowed: %s)'
                                 % (_scheme(url) or url, ', '.join(self.protocols)))
            headers = dict(headers_for(url)) if headers_for is not None else {}
            headers['Accept'] = accept
            try:
                response = request.open('GET', url, headers=headers, timeout=job.remaining())
            except HTTPError as exc:
                location = exc.headers.get('Location') if exc.headers is not None else None
                status = exc.code
                try:
                    exc.close()
                except Exception:
                    pass
                if status in _REDIRECTS and location:
                    # urllib has already resolved Location against the request URL.
                    target = exc.url
                    if target in seen:
                        raise FetchError('redirect loop: %s' % ' -> '.join(seen + [target]))
                    if len(seen) - 1 >= self.max_redirects:
                        raise FetchError('more than %d redirects: %s'
                                         % (self.max_redirects, ' -> '.join(seen + [target])))
                    if _scheme(target) not in self.protocols:
                        raise FetchError('refused a redirect to %s: %s is not an allowed protocol (allowed: %s)'
                                         % (target, _scheme(target) or 'its scheme', ', '.join(self.protocols)))
                    seen.append(target)
                    url = target
                    continue
                return Response(url, status, exc.headers.get('Content-Type') if exc.headers else None, b'')
            except (UrlsConnectionError, URLError, OSError, http_client.HTTPException, ssl.SSLError) as exc:
                if job.cancelled:
                    raise _Cancelled()
                reason = describe_exception(exc)
                if len(seen) > 1:
                    reason = '%s (after redirects: %s)' % (reason, ' -> '.join(seen))
                raise FetchError(reason, _kind_of(exc))
            job.response = response
            try:
                return self._read(job, response, max_bytes)
            finally:
                job.response = None
                response.close()

    def _read(self, job, response, max_bytes):
        status = response.status if hasattr(response, 'status') else response.getcode()
        content_type = response.headers.get('Content-Type')
        final = response.geturl()
        length = response.headers.get('Content-Length')
        if length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise FetchError('Content-Length %s is larger than the limit of %d bytes' % (length.strip(), max_bytes))
        read1 = getattr(response, 'read1', None) or response.read
        return Response(final, status, content_type, read_bounded(read1, max_bytes, job.remaining, 'body'))


# --------------------------------------------------------------------------- streaming bodies

_CHUNK = 64 * 1024


class _Body(object):
    """The body of an open response as a read-only file object for a consumer.

    Reads stop at ``limit + 1`` bytes (one more than allowed, so that a longer
    body is seen), and the fetch's deadline is checked before every read.
    """

    def __init__(self, job, response, limit):
        self._job = job
        self._response = response
        self._left = limit + 1
        self._count = 0

    def readinto(self, buffer):
        self._job.remaining()
        view = memoryview(buffer)[:self._left]
        if not len(view):
            return 0
        count = self._response.readinto(view) or 0
        self._left -= count
        self._count += count
        announced = getattr(self._response, 'length', None)
        if not count and announced:
            # http.client returns 0 here instead of raising IncompleteRead
            raise FetchError('the server closed the connection mid-body (after %d bytes, %d more announced)'
                             % (self._count, announced))
        return count

    def read(self, size=_CHUNK):
        buffer = bytearray(min(size, _CHUNK))
        count = self.readinto(buffer)
        return bytes(buffer[:count])


class _BodyTo(UrlFetcher):
    """A fetcher with the settings of another whose 200 bodies go to ``consume`` instead of memory."""

    def __init__(self, fetcher, consume, timeout):
        self.__dict__.update(fetcher.__dict__)
        self.ssl_context = fetcher.ssl_context    # one context for all, made by the fetcher
        self.timeout = float(timeout)
        self.consume = consume

    def _read(self, job, response, max_bytes):
        status = response.status if hasattr(response, 'status') else response.getcode()
        length = response.headers.get('Content-Length')
        if status == 200 and length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise FetchError('Content-Length %s is larger than the limit of %d bytes' % (length.strip(), max_bytes))
        result = b''
        if status == 200:
            try:
                result = self.consume(_Body(job, response, max_bytes))
            except ValueError as exc:   # the consumer's verdict on the content
                raise FetchError(str(exc))
        return Response(response.geturl(), status, response.headers.get('Content-Type'), result)


def fetch_into(fetcher, url, accept, max_bytes, consume, timeout=None, headers_for=None):
    """GET ``url`` with ``fetcher``'s settings and give a 200 body to ``consume(fileobj)`` as it arrives.

    The request follows the fetcher's rules (protocols, redirects, TLS, proxies,
    headers); the body is never held in memory here: ``consume`` reads it in
    chunks (at most ``max_bytes + 1`` bytes are read) and its return value is
    the Response's ``body``. A ValueError from ``consume`` (for example a failed
    verification) becomes a FetchError. ``timeout`` (default the fetcher's)
    is the deadline of the whole request, body included. For a status other
    than 200, ``consume`` is not called and ``body`` is empty. ``headers_for``
    is as for ``UrlFetcher.fetch``.
    """
    return _BodyTo(fetcher, consume, timeout or fetcher.timeout).fetch(url, accept, max_bytes, headers_for)
