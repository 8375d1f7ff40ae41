# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Blob uploads into S3: PutObject and UploadPart for verified bytes, and multipart uploads.

``putter(client, bucket)`` gives the object that sends a blob's bytes (``put_object``,
``upload_part``); ``upload_large(...)`` uploads big blobs in parts through it.

**The direct path.** botocore's client pipeline (parameter validation, serialisation, endpoint
rules, some 40 event handlers) costs more client CPU than an 8 KiB PUT itself (about 1.2 ms per
PUT here, against 0.5 ms for the same request signed and sent directly). ``DirectPuts`` sends
blob PUTs with the client's own parts instead of its pipeline:

* the URL, the User-Agent and the signing scope are learnt once from the pipeline itself: one
  PutObject is prepared and signed by the client but stopped before it is sent (a
  ``before-send`` handler answers it), so endpoint_url, addressing style, accelerate and
  dual-stack settings are the client's;
* each request is signed by botocore's ``S3SigV4Auth`` with the client's credentials (frozen
  per request: refreshable credentials are refreshed) and sent by the client's own HTTP session
  (its connection pool, proxies, TLS verification and CA bundle, timeouts);
* retries are decided by the client's retry handler (its ``needs-retry`` event: mode, maximum
  attempts and backoff as configured) and ``after-call`` is emitted as the pipeline does (it gives
  the retry quota back); errors are parsed by botocore's parser for the service
  and raised as the ``ClientError`` the client would raise, so they read the same.

The pipeline stays in use (``ClientPuts``) where the direct path cannot send exactly what the
client would: when the client would add anything else to the request (request checksums, i.e.
``request_checksum_calculation=when_supported``; SSE-C and similar headers), when it does not
sign with SigV4 (anonymous, SigV2, SigV4a, S3 Express), when its retry mode is ``adaptive``
(client-side rate limiting), or when the client is not a plain botocore client. ``reason`` says
which.

**Multipart.** ``upload_large`` runs ``concurrency`` workers over the big blobs, one blob after
another: a worker takes the next part under a lock (reads it from the file, feeds it to the
blob's verifier, in order), then uploads it; the part in memory is the one being sent, so memory
is about ``concurrency * part_size``. The uploads are completed only after every blob of the
batch was read and verified and every part sent; anything else aborts them all, so no
unverified object becomes visible, and one bad blob makes none of the batch visible (the caller
need not hash these blobs beforehand: ``S3Store.verifies_on_arrival``). Over https a part goes
with ``UNSIGNED-PAYLOAD``, botocore's own rule for streaming uploads that carry a checksum: TLS
carries the bytes and the blob's digest, checked over every byte sent before completing, is the
checksum (one SHA-256 less on each side, about 10% of a 1 GiB upload here); over http, or with
``s3.payload_signing_enabled`` in the client's config, each part is signed and the server checks it.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import threading
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import Verifier
from ansible_collections.oci.discovery.plugins.module_utils._s3_ledger import thread_pool

MIB = 1024 * 1024
MAX_PARTS = 10000
_PROBE_KEY = 'oci-discovery-probe/url'
# Headers the direct path sends (or botocore adds while signing or sending): a probe request with
# any other header means the client would send something the direct path would not.
_KNOWN_HEADERS = frozenset(h.lower() for h in (
    'Content-Type', 'Cache-Control', 'x-amz-acl', 'Content-Length', 'User-Agent', 'X-Amz-Date',
    'X-Amz-Content-SHA256', 'Authorization', 'X-Amz-Security-Token', 'amz-sdk-invocation-id',
    'amz-sdk-request', 'Expect', 'Host'))
_SCOPE = re.compile(r'^AWS4-HMAC-SHA256 Credential=[^/]*/\d{8}/([^/]+)/([^/]+)/aws4_request,')


class ClientPuts:
    """Blob PUTs through the client pipeline (the fallback of ``DirectPuts``; same interface)."""

    direct = False

    def __init__(self, client, bucket, reason=None):
        self.client = client
        self.bucket = bucket
        self.reason = reason

    def put_object(self, key, body, headers, sha256=None):
        """PutObject of ``body`` (bytes) at ``key`` with ``headers`` ({'ContentType', 'CacheControl', 'ACL'})."""
        return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **headers).get('ETag')

    def upload_part(self, key, upload_id, number, body):
        """UploadPart of ``body`` (bytes, or a memoryview: the client's validation takes bytes, so it is copied)."""
        return self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                       Body=bytes(body) if isinstance(body, memoryview) else body).get('ETag')


class _Answered:
    """What the probe's ``before-send`` handler answers instead of sending: an empty 200."""

    def stream(self, **kwargs):
        return iter(())


def _probe(client, bucket, headers):
    """The PutObject request the pipeline would send (prepared and signed, not sent)."""
    from botocore.awsrequest import AWSResponse
    seen = []

    def answer(request, **kwargs):
        if not seen and request.url.split('?', 1)[0].endswith('/' + _PROBE_KEY):
            seen.append(request)
            return AWSResponse(request.url, 200, {}, _Answered())
        return None
    unique_id = 'oci-discovery-probe-%d' % id(seen)
    event = 'before-send.%s.PutObject' % client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(event, answer, unique_id=unique_id)
    try:
        client.put_object(Bucket=bucket, Key=_PROBE_KEY, Body=b'probe', **headers)
    finally:
        client.meta.events.unregister(event, unique_id=unique_id)
    return seen[0] if seen else None


def putter(client, bucket, headers):
    """``DirectPuts`` for ``client`` when the direct path sends what the pipeline would, else ``ClientPuts``.

    ``headers`` are the headers of a typical blob PUT (Content-Type, Cache-Control, ACL): the
    probe's request is made with them.
    """
    try:
        return DirectPuts(client, bucket, headers)
    except _NotDirect as e:
        return ClientPuts(client, bucket, reason=str(e))


class _NotDirect(Exception):
    """Why the direct path cannot apply to a client."""


def _signer_class():
    """botocore's S3SigV4Auth, told the payload's SHA-256 when the caller knows it (no second hash, no second
    prepare), and not signing over https the payload of a part whose blob the caller verifies as a whole."""
    from botocore.auth import S3SigV4Auth

    class _S3SigV4Auth(S3SigV4Auth):
        def payload(self, request):
            known = request.context.get('payload_sha256')
            if known and not self._is_streaming_checksum_payload(request) and self._should_sha256_sign_payload(request):
                return known
            return super(_S3SigV4Auth, self).payload(request)

        def _should_sha256_sign_payload(self, request):
            # botocore's own rule for streaming uploads: over https, with a checksum, the payload goes
            # unsigned unless the client's s3 config says payload_signing_enabled. The checksum here is
            # the blob's digest, over every byte sent, checked before the upload is completed.
            if request.context.get('whole_blob_verified') and request.url.startswith('https:'):
                s3_config = getattr(request.context.get('client_config'), 's3', None) or {}
                if s3_config.get('payload_signing_enabled') is None:
                    return False
            return super(_S3SigV4Auth, self)._should_sha256_sign_payload(request)
    return _S3SigV4Auth


class DirectPuts:
    """PutObject and UploadPart signed and sent with the client's parts, without its pipeline (see above)."""

    direct = True
    reason = None

    def __init__(self, client, bucket, headers):
        from botocore.auth import _host_from_url
        from botocore.parsers import create_parser
        from botocore.utils import percent_encode
        self.client = client
        self.bucket = bucket
        signer = getattr(client, '_request_signer', None)
        session = getattr(getattr(client, '_endpoint', None), 'http_session', None)
        if signer is None or session is None or not hasattr(session, 'send'):
            raise _NotDirect('not a botocore client')
        config = client.meta.config
        if (getattr(config, 'retries', None) or {}).get('mode') == 'adaptive':
            raise _NotDirect('retry mode adaptive (client-side rate limiting)')
        request = _probe(client, bucket, headers)
        if request is None:
            raise _NotDirect('the client did not prepare a request (stubbed?)')
        url = request.url
        quoted = percent_encode(_PROBE_KEY, safe='/~')
        if '?' in url or not url.endswith('/' + quoted):
            raise _NotDirect('unexpected request URL %s' % url)
        others = sorted(name for name in request.headers if name.lower() not in _KNOWN_HEADERS)
        if others:
            raise _NotDirect('the client adds %s' % ', '.join(others))
        scope = _SCOPE.match(_text(request.headers.get('Authorization')))
        if scope is None:
            raise _NotDirect('the client does not sign with SigV4')
        self._base = url[:-len(quoted)]
        self._quote = percent_encode
        self._region, self._signing_name = scope.group(1), scope.group(2)
        self._auth = _signer_class()
        self._host = _host_from_url(url)
        self._signer = signer
        self._session = session
        self._config = config
        self._user_agent = _text(request.headers.get('User-Agent')) or None
        model = client.meta.service_model
        self._operations = dict((name, model.operation_model(name)) for name in ('PutObject', 'UploadPart'))
        self._parser = create_parser(model.protocol)
        self._events = client.meta.events
        self._service_id = model.service_id.hyphenize()

    def _credentials(self):
        credentials = getattr(self._signer, '_credentials', None)
        return credentials.get_frozen_credentials() if credentials is not None else None

    def put_object(self, key, body, headers, sha256=None):
        """PutObject of ``body``; ``sha256`` (hex), when known, spares hashing it again for the signature."""
        wire = {}
        if headers.get('ContentType'):
            wire['Content-Type'] = headers['ContentType']
        if headers.get('CacheControl'):
            wire['Cache-Control'] = headers['CacheControl']
        if headers.get('ACL'):
            wire['x-amz-acl'] = headers['ACL']
        return self._send('PutObject', self._base + self._quote(key, safe='/~'), wire, body, sha256)

    def upload_part(self, key, upload_id, number, body):
        url = '%s%s?partNumber=%d&uploadId=%s' % (self._base, self._quote(key, safe='/~'), number,
                                                  self._quote(upload_id, safe=''))
        # Over http the signer hashes the part to sign it (the server checks it); over https TLS carries
        # it intact and upload_large's verifier checks the blob it belongs to before completing the upload.
        return self._send('UploadPart', url, {}, body, whole_blob_verified=True)

    def _send(self, operation, url, headers, body, sha256=None, whole_blob_verified=False):
        """One request with the client's retries; the ETag, or the ClientError/BotoCoreError the client would raise."""
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import ClientError, HTTPClientError
        model = self._operations[operation]
        context = {'client_config': self._config, 'operation_name': operation, 'payload_sha256': sha256,
                   'whole_blob_verified': whole_blob_verified}
        attempts = 0
        while True:
            attempts += 1
            request = AWSRequest(method='PUT', url=url, data=body, headers=dict(headers, Host=self._host))
            if self._user_agent:
                request.headers['User-Agent'] = self._user_agent
            request.context = context
            self._auth(self._credentials(), self._signing_name, self._region).add_auth(request)
            response = parsed = caught = None
            try:
                response = self._session.send(request.prepare())
            except HTTPClientError as e:
                caught = e
            if response is not None:
                if response.status_code < 300:
                    self._after_call(model, context, response, {'ETag': response.headers.get('ETag')})
                    return response.headers.get('ETag')
                parsed = self._parser.parse({'headers': response.headers, 'status_code': response.status_code,
                                             'body': response.content, 'context': context}, model.output_shape)
            if not self._retry(model, context, attempts, (response, parsed) if response is not None else None, caught):
                if caught is not None:
                    raise caught
                self._after_call(model, context, response, parsed)
                raise ClientError(parsed, operation)

    def _after_call(self, model, context, response, parsed):
        """The client's ``after-call`` event, as the pipeline emits it: the standard retry mode gives back
        there the retry quota a retried request took (without it, every retry would spend the quota for good)."""
        self._events.emit('after-call.%s.%s' % (self._service_id, model.name), http_response=response,
                          parsed=parsed, model=model, context=context)

    def _retry(self, model, context, attempts, response, caught):
        """Ask the client's retry handler; sleep its delay and return True to try again."""
        responses = self._events.emit('needs-retry.%s.%s' % (self._service_id, model.name), response=response,
                                      endpoint=None, operation=model, attempts=attempts, caught_exception=caught,
                                      request_dict={'context': context})
        delay = next((r[1] for r in responses if r[1] is not None), None)
        if delay is None or delay is False:
            return False
        time.sleep(delay)
        return True


class _Large:
    """One big blob being uploaded: its file, verifier, multipart upload and parts."""

    def __init__(self, blob, fileobj, what, object_key, part_size):
        self.blob = blob
        self.file = fileobj
        self.verifier = Verifier(blob['digest'], blob['size'], what)
        self.key = object_key
        self.part_size = part_size
        self.upload_id = None
        self.next_number = 1
        self.read_all = False
        self.sending = 0
        self.etags = {}
        self.completed = False


class _Run:
    """The shared state of ``upload_large``: the blobs left, the one being read, the first error."""

    def __init__(self, blobs):
        self.lock = threading.Lock()
        self.blobs = iter(blobs)
        self.current = None
        self.uploads = []
        self.opening = None
        self.error = None
        self.failed_blob = None


def upload_large(client, puts, blobs, open_blob, object_key, describe, headers, part_size, concurrency, failed):
    """Upload ``blobs`` (plan dicts) in parts, verified on the way; returns the bytes sent.

    ``open_blob(blob)`` gives its binary file (read with ``readinto``), ``object_key(key)`` and
    ``describe(key)`` name it, ``headers(blob)`` gives its {'ContentType', 'CacheControl', 'ACL'}.
    None is completed until every blob was read, verified and sent. The first error stops the
    rest; every upload not completed is aborted, then ``failed(error, blob)`` is raised.
    """
    run = _Run(list(blobs))

    def next_part(buffer):
        """(upload, part number, part) of the next part to send, or None when nothing is left.

        The part is read into ``buffer`` (a one-item list holding the worker's bytearray, replaced
        by a bigger one when a blob needs bigger parts) and returned as a memoryview of it: each
        worker reuses its one buffer, so memory stays at ``concurrency`` parts however the
        allocator behaves.
        """
        with run.lock:
            while run.error is None:
                up = run.current
                if up is None or up.read_all:
                    blob = next(run.blobs, None)
                    if blob is None:
                        return None
                    run.opening = blob
                    what = 'blob %s (for %s)' % (blob['digest'], describe(blob['key']))
                    size = max(part_size, -(-blob['size'] // MAX_PARTS))
                    up = _Large(blob, open_blob(blob), what, object_key(blob['key']), size)
                    run.uploads.append(up)
                    run.current = up
                    up.upload_id = client.create_multipart_upload(Bucket=puts.bucket, Key=up.key,
                                                                  **headers(blob))['UploadId']
                amount = min(up.part_size, up.blob['size'] - up.verifier.count)
                if len(buffer[0]) < amount:
                    buffer[0] = bytearray(up.part_size)
                data = _read_into(up.file, buffer[0], amount)
                up.verifier.update(data)
                if up.verifier.count >= up.blob['size'] or not data:
                    if up.verifier.count == up.blob['size'] and up.file.read(1):
                        up.verifier.update(b'\0')      # one byte more than the size: raises "got more"
                    up.verifier.finish()
                    up.read_all = True
                    up.file.close()
                number = up.next_number
                up.next_number += 1
                up.sending += 1
                return up, number, data
            return None

    def work():
        up = None
        buffer = [bytearray()]
        try:
            while True:
                up = None
                got = next_part(buffer)
                if got is None:
                    return
                up, number, data = got
                etag = puts.upload_part(up.key, up.upload_id, number, data)
                with run.lock:
                    up.etags[number] = etag
                    up.sending -= 1
        except Exception as e:  # noqa: BLE001 (the first error is raised below)
            fail(e, up.blob if up is not None else run.opening)

    def fail(error, blob):
        with run.lock:
            if run.error is None:
                run.error = error
                run.failed_blob = blob

    def complete(up):
        try:
            parts = [{'PartNumber': n, 'ETag': up.etags[n]} for n in sorted(up.etags)]
            client.complete_multipart_upload(Bucket=puts.bucket, Key=up.key, UploadId=up.upload_id,
                                             MultipartUpload={'Parts': parts})
            up.completed = True
        except Exception as e:  # noqa: BLE001 (the first error is raised below)
            fail(e, up.blob)

    workers = max(1, concurrency)
    with thread_pool(workers) as pool:
        list(pool.map(lambda dummy: work(), range(workers)))
    if run.error is None:     # every blob read, verified and sent: now they become visible
        with thread_pool(workers) as pool:
            list(pool.map(complete, run.uploads))
    if run.error is not None:
        for up in run.uploads:
            if not up.read_all:
                up.file.close()
            if up.upload_id is not None and not up.completed:
                try:
                    client.abort_multipart_upload(Bucket=puts.bucket, Key=up.key, UploadId=up.upload_id)
                except Exception:  # noqa: BLE001 (the first error is what is reported)
                    pass
        raise failed(run.error, run.failed_blob)
    return sum(up.blob['size'] for up in run.uploads)


def _text(value):
    return value.decode('latin-1') if isinstance(value, bytes) else value or ''


def _read_into(fileobj, buffer, amount):
    """A memoryview of ``buffer`` holding the next ``amount`` bytes of ``fileobj`` (fewer only at EOF)."""
    view = memoryview(buffer)[:amount]
    got = 0
    while got < amount:
        count = fileobj.readinto(view[got:])
        if not count:
            break
        got += count
    return view[:got]


__all__ = ['ClientPuts', 'DirectPuts', 'putter', 'upload_large']
