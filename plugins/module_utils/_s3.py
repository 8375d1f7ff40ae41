# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A store in an S3 bucket (any S3-compatible endpoint), behind ``_stores.Store``.

Keys are the store keys of ``_stores`` (``oci-cas/sha256/e3/e3b0...``,
``oci-index/team/app``) under an optional key prefix. The boto3 S3 client is
passed in; nothing here imports Ansible.

What this store does that a plain upload loop does not:

* **Planning costs one LIST.** ``stat()`` and ``list()`` answer from one
  paginated ``ListObjectsV2`` of the smallest prefix that covers the keys asked
  for (one page per 1,000 objects), cached for the life of the store. Never a
  HEAD per blob.
* **Every object gets its headers.** A blob gets its descriptor's
  ``mediaType`` as Content-Type and a long immutable Cache-Control; documents
  (indexes, the well-known document) get ``<media type>; charset=utf-8`` and a
  short Cache-Control. An optional canned ACL is applied to every published
  object (or rely on a bucket policy).
* **Metadata drift is found without a HEAD per blob** (see "The metadata
  ledger" below) and fixed by copying the object onto itself with
  ``MetadataDirective=REPLACE``: no re-upload.
* **Uploads are parallel, bounded, streamed and verified on the way.**
  ``put_blobs()`` runs one s3transfer ``TransferManager`` (bounded request
  threads, multipart above a threshold) over a window of open files; each file
  is read once, sequentially, through ``_VerifyingReader``, which raises as
  soon as the content disagrees with the descriptor. A multipart upload that
  fails is aborted by s3transfer; a single PUT is only sent after its body was
  read and verified. Readers never see an unverified object.
* **Documents are read-modify-written with conditional PUTs**: ``If-Match`` on
  the ETag read, ``If-None-Match: *`` when creating; on ``412 Precondition
  Failed`` the update is re-read and re-merged (up to ``max_merge_attempts``).
  Fallback for stores without conditional writes (``conditional_writes``):
  ``auto`` (default) switches to the fallback when the store answers 501 or
  says it does not implement the header; ``never`` always uses it. The fallback
  writes unconditionally, reads the document back and re-applies the update if
  a concurrent writer's PUT replaced it; this narrows the window in which two
  publishers of one family can lose an entry but cannot close it on a store
  that cannot compare-and-swap: publish one family from one place at a time
  there. (Ceph RGW, AWS S3 and MinIO implement both conditions.)

The metadata ledger
-------------------
LIST gives key, size, ETag and LastModified, but not Content-Type or
Cache-Control; only HEAD (or GET) does. S3 cannot change an object's metadata
in place: any change (a PUT, or a copy onto itself as ``aws s3 cp
--metadata-directive REPLACE`` does) writes a new object with a new
LastModified. So the store keeps a private *ledger* object,
``<prefix>.oci-discovery/s3-ledger.json``, recording for each CAS object the
ETag, size and LastModified at which its Content-Type, Cache-Control and
Content-Encoding were last seen to be right (from this store's own writes or a
HEAD). When checking blobs that already exist:

* ledger entry matches the LIST (same ETag, size and LastModified) and records
  the expected headers: nothing to do, no request;
* ledger entry matches but records other headers (the expected ones changed,
  e.g. a new ``cache_control`` option): drifted, no request;
* no entry, or the LIST shows a newer write: one HEAD for that object.

A re-run over an unchanged bucket therefore does one GET (the ledger), the LIST
pages and no HEAD and no PUT; a Content-Type changed behind the module's back
shows up as a new LastModified and costs one HEAD. The ledger is a cache:
losing it, or a concurrent writer's entries, only costs HEADs, never a wrong
answer; an unreadable ledger is ignored (and rewritten). It is written, with
the same conditional PUT as documents, only when entries were learnt. Limit:
on stores whose LIST gives LastModified in whole seconds (AWS S3), a metadata
change made within the same second as the store's own last write of that
object is not noticed; Ceph RGW and MinIO list milliseconds.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json
import threading
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError, Verifier
from ansible_collections.oci.discovery.plugins.module_utils._stores import (
    STATE_DIR, Store, StoreError, check_key)

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # the module reports the missing library
    BotoCoreError = ClientError = None

MIB = 1024 * 1024
CHARSET = '; charset=utf-8'
BLOB_CACHE_CONTROL = 'public, max-age=31536000, immutable'
DOCUMENT_CACHE_CONTROL = 'public, max-age=60'
LEDGER_KEY = STATE_DIR + '/s3-ledger.json'
LEDGER_FORMAT = 'oci.discovery/s3-ledger/v1'
MAX_LEDGER_BYTES = 256 * MIB
LIST_PAGE = 1000
CONDITIONAL_MODES = ('auto', 'always', 'never')


class S3Error(StoreError):
    """An S3 request that failed; the message names the bucket/key, the operation and the status."""

    def __init__(self, message, code=None, status=None):
        super(S3Error, self).__init__(message)
        self.code = code
        self.status = status


def error_details(exc):
    """(code, HTTP status, message) of a botocore error; (None, None, str) otherwise."""
    response = getattr(exc, 'response', None) or {}
    error = response.get('Error') or {}
    status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
    code = error.get('Code')
    message = error.get('Message')
    return code, status, message or str(exc)


def _is_client_error(exc):
    return ClientError is not None and isinstance(exc, ClientError)


def _is_aws_error(exc):
    return (ClientError is not None and isinstance(exc, (ClientError, BotoCoreError)))


def _explain(code, status):
    if code in ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken',
                'ExpiredToken') or status == 403:
        return ' (check access_key/secret_key/session_token/profile and the bucket policy)'
    if code == 'NoSuchBucket':
        return ' (the bucket does not exist; create it first, e.g. with the s3_publisher role)'
    if code == 'MissingContentLength' or status == 411:
        return (' (the store rejects aws-chunked request checksums: set aws_config '
                'request_checksum_calculation=when_required)')
    return ''


class _CancelUploads(Exception):
    """Raised inside the transfer manager's block to cancel the uploads still in flight."""


class _Uploading:
    """The state of one ``put_blobs`` run: a window of open files, the first error."""

    def __init__(self, window):
        self.slots = threading.Semaphore(window)
        self.lock = threading.Lock()
        self.error = None

    def fail(self, error):
        with self.lock:
            if self.error is None:
                self.error = error


class _VerifyingReader:
    """A non-seekable reader over a blob file that verifies what is read.

    s3transfer reads a non-seekable object exactly once, in order (one part
    after another, or the whole body of a single PUT before sending it), so
    every byte passes through the Verifier once. Reading past ``size`` bytes,
    a short file or a digest mismatch raise VerificationError from ``read``,
    which fails the transfer before anything becomes visible.
    """

    def __init__(self, fileobj, digest, size, what):
        self._file = fileobj
        self._verifier = Verifier(digest, size, what)
        self._size = size
        self._done = False

    def readable(self):
        return True

    def seekable(self):
        return False

    def read(self, amount=-1):
        if self._done:
            return b''
        remaining = self._size - self._verifier.count
        if amount is None or amount < 0 or amount > remaining:
            amount = remaining
        chunks, got, eof = [], 0, False
        while got < amount:
            chunk = self._file.read(amount - got)
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b''.join(chunks) if len(chunks) != 1 else chunks[0]
        self._verifier.update(data)
        if eof or not amount or self._verifier.count == self._size:
            # At the declared end (or EOF): the file must end here too.
            if self._verifier.count == self._size and self._file.read(1):
                self._verifier.update(b'\0' * (self._size + 1))  # raises "got more"
            self._verifier.finish()
            self._done = True
        return data

    def close(self):
        self._file.close()


def _subscriber(on_queued=None, on_done=None):
    """An s3transfer subscriber (imported lazily: s3transfer comes with boto3)."""
    from s3transfer.subscribers import BaseSubscriber

    class _Subscriber(BaseSubscriber):
        def on_queued(self, future, **kwargs):
            if on_queued is not None:
                on_queued(future)

        def on_done(self, future, **kwargs):
            if on_done is not None:
                on_done(future)
    return _Subscriber()


def _timestamp(value):
    """A LastModified from LIST as text (what the ledger compares)."""
    try:
        return '%.3f' % value.timestamp()
    except AttributeError:
        return str(value)


class S3Store(Store):
    """A site in an S3 bucket under ``prefix`` (the interface of ``_stores.Store``, plus batch operations).

    ``client`` is a boto3 S3 client (thread-safe; shared by the worker
    threads). ``acl`` is a canned ACL for published objects (None: rely on the
    bucket policy). ``max_concurrency`` bounds the request threads;
    objects of ``multipart_threshold`` bytes or more are uploaded in parts of
    ``multipart_chunksize`` bytes (memory use is about
    ``(max_concurrency // 2 + 4) * multipart_chunksize`` at most: see
    ``_transfer_manager``).
    """

    def __init__(self, client, bucket, prefix='', acl=None, blob_cache_control=BLOB_CACHE_CONTROL,
                 document_cache_control=DOCUMENT_CACHE_CONTROL, max_concurrency=8,
                 multipart_threshold=16 * MIB, multipart_chunksize=8 * MIB, conditional_writes='auto',
                 max_merge_attempts=10, use_ledger=True):
        if conditional_writes not in CONDITIONAL_MODES:
            raise StoreError('conditional_writes must be one of %s, got %r'
                             % (', '.join(CONDITIONAL_MODES), conditional_writes))
        self.client = client
        self.bucket = bucket
        prefix = (prefix or '').strip('/')
        if prefix:
            check_key(prefix)
            prefix += '/'
        self.prefix = prefix
        self.acl = acl or None
        self.blob_cache_control = blob_cache_control
        self.document_cache_control = document_cache_control
        self.max_concurrency = max(1, int(max_concurrency))
        self.multipart_threshold = max(5 * MIB, int(multipart_threshold))
        self.multipart_chunksize = max(5 * MIB, int(multipart_chunksize))
        self.conditional_writes = conditional_writes
        self.max_merge_attempts = max(1, int(max_merge_attempts))
        self.use_ledger = use_ledger
        self.warnings = []
        self.requests = dict.fromkeys(
            ('list_pages', 'head', 'get', 'put', 'upload', 'copy', 'delete'), 0)
        self.fixed = []          # keys whose metadata this store fixed (content unchanged)
        self._counter_lock = threading.Lock()
        self._listings = {}      # full list prefix -> {store key: (size, etag, last_modified)}
        self._ledger = None      # {key: [etag, size, last_modified, content_type, cache_control]}
        self._ledger_loaded = False
        self._learnt = {}        # key -> (content_type, cache_control) known right, to record
        self._written = set()    # keys written (uploaded/copied) by this store: relist to record
        self._documents = {}     # key -> (bytes or None, etag, headers) as last read by read()
        self._quote_etags = False  # If-Match form: bare ETag (RGW needs it, AWS accepts it) or quoted
        self._etag_flips = 0
        self._conflict_etag = None

    # -- names ---------------------------------------------------------------

    def object_key(self, key):
        return self.prefix + check_key(key)

    def describe(self, key):
        return 's3://%s/%s' % (self.bucket, self.object_key(key))

    def _count(self, what, n=1):
        with self._counter_lock:
            self.requests[what] += n

    def _error(self, exc, operation, key=None, what=None):
        """An S3Error naming the object (or bucket), the operation, the code and the status."""
        if isinstance(exc, StoreError):
            return exc
        where = what or (self.describe(key) if key is not None else 's3://%s/%s' % (self.bucket, self.prefix))
        code, status, message = error_details(exc)
        if _is_client_error(exc) and (not code or code == str(status)):
            detail = 'HTTP %s %s' % (status, message)   # a HEAD: no body, so no error code
        elif _is_client_error(exc):
            detail = '%s%s: %s' % (code, ' (HTTP %s)' % status if status else '', message)
        else:
            detail = message
        return S3Error('%s: %s failed: %s%s' % (where, operation, detail, _explain(code, status)),
                       code=code, status=status)

    # -- reading ---------------------------------------------------------------

    def check_bucket(self):
        """Fail early and clearly when the bucket is missing or the credentials are wrong."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:  # noqa: BLE001 (botocore or transport errors, reported by name)
            if not _is_aws_error(e):
                raise
            code, status, dummy = error_details(e)
            if status == 404 or code in ('NoSuchBucket', '404', 'NotFound'):
                raise S3Error('s3://%s: the bucket does not exist (create it first, e.g. with the '
                              's3_publisher role)' % self.bucket, code='NoSuchBucket', status=404)
            raise self._error(e, 'HeadBucket', what='s3://%s' % self.bucket)

    def _list_prefix(self, key_prefix):
        """Every object under ``prefix + key_prefix``: {store key: (size, etag, last_modified)}."""
        full = self.prefix + key_prefix
        for listed, objects in self._listings.items():
            if full.startswith(listed):
                return dict((k, v) for k, v in objects.items() if (self.prefix + k).startswith(full))
        objects = {}
        token = None
        start = len(self.prefix)
        while True:
            params = dict(Bucket=self.bucket, Prefix=full, MaxKeys=LIST_PAGE)
            if token:
                params['ContinuationToken'] = token
            try:
                page = self.client.list_objects_v2(**params)
            except Exception as e:  # noqa: BLE001
                if not _is_aws_error(e):
                    raise
                raise self._error(e, 'ListObjectsV2', what='s3://%s/%s' % (self.bucket, full))
            self._count('list_pages')
            for obj in page.get('Contents') or ():
                objects[obj['Key'][start:]] = (obj['Size'], obj.get('ETag'), _timestamp(obj.get('LastModified')))
            if not page.get('IsTruncated'):
                break
            token = page.get('NextContinuationToken')
            if not token:
                raise S3Error('s3://%s/%s: ListObjectsV2 says the listing is truncated but gives no '
                              'continuation token' % (self.bucket, full))
        self._listings[full] = objects
        return objects

    def listing(self, keys):
        """LIST once the smallest directory prefix covering ``keys``; {key: (size, etag, last_modified)}."""
        keys = [check_key(k) for k in keys]
        if not keys:
            return {}
        first, last = min(keys), max(keys)
        common = 0
        while common < min(len(first), len(last)) and first[common] == last[common]:
            common += 1
        key_prefix = first[:common]
        key_prefix = key_prefix[:key_prefix.rfind('/') + 1]
        return self._list_prefix(key_prefix)

    def stat(self, keys):
        keys = list(keys)
        objects = self.listing(keys)
        return dict((k, objects[k][0]) for k in keys if k in objects)

    def list(self, prefix):
        prefix = prefix if not prefix or prefix.endswith('/') else prefix + '/'
        for key, (size, dummy, last_modified) in sorted(self._list_prefix(prefix).items()):
            yield key, size, float(last_modified) if _is_number(last_modified) else 0.0

    def _get(self, key, max_bytes):
        """(bytes, etag, headers) of an object, or (None, None, None) when it does not exist."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:  # noqa: BLE001
            if not _is_aws_error(e):
                raise
            code, status, dummy = error_details(e)
            if code in ('NoSuchKey', '404') or status == 404:
                if code == 'NoSuchBucket':
                    raise self._error(e, 'GetObject', key)
                self._count('get')
                return None, None, None
            raise self._error(e, 'GetObject', key)
        self._count('get')
        body = response['Body']
        try:
            length = response.get('ContentLength')
            if length is not None and length > max_bytes:
                raise StoreError('%s: %d bytes, larger than the limit of %d' % (self.describe(key), length, max_bytes))
            data = body.read(max_bytes + 1)
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001 (connection dropped while reading)
            if not _is_aws_error(e):
                raise
            raise self._error(e, 'GetObject (reading the body)', key)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise StoreError('%s: larger than %d bytes' % (self.describe(key), max_bytes))
        headers = {'content_type': response.get('ContentType'), 'cache_control': response.get('CacheControl'),
                   'content_encoding': response.get('ContentEncoding')}
        return data, response.get('ETag'), headers

    def read(self, key, max_bytes):
        """The object's bytes or None; remembered (with its ETag) for ``update_document``."""
        got = self._get(key, max_bytes)
        self._documents[key] = got
        return got[0]

    def document_drifted(self, key, media_type):
        """Whether a document last read by ``read`` is served with the wrong headers."""
        data, dummy, headers = self._documents.get(key, (None, None, None))
        return data is not None and _drifted(headers, *self.document_headers(media_type))

    def _remember_written(self, key, size):
        """Keep cached listings true after a write (the stat after the uploads needs no new LIST)."""
        full = self.object_key(key)
        for listed, objects in self._listings.items():
            if full.startswith(listed):
                objects[key] = (size, None, '%.3f' % time.time())
        self._written.add(key)

    # -- writing ---------------------------------------------------------------

    def _extra(self, content_type, cache_control):
        extra = {'ContentType': content_type, 'CacheControl': cache_control}
        if self.acl:
            extra['ACL'] = self.acl
        return extra

    def blob_headers(self, media_type):
        """(Content-Type, Cache-Control) a blob of ``media_type`` is published with."""
        return media_type or 'application/octet-stream', self.blob_cache_control

    def document_headers(self, media_type):
        """(Content-Type, Cache-Control) a document of ``media_type`` is published with."""
        return media_type + CHARSET, self.document_cache_control

    def _transfer_manager(self):
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        config = TransferConfig(multipart_threshold=self.multipart_threshold,
                                multipart_chunksize=self.multipart_chunksize,
                                max_concurrency=self.max_concurrency, use_threads=True,
                                preferred_transfer_client='classic')
        # Parts read from a non-seekable stream (ours: verified on the way) wait in memory. s3transfer
        # bounds them by max_in_memory_upload_chunks but holds about 3 more (the part being read, parts
        # being sent): peak RSS publishing a 1 GiB layer (8 MiB parts, max_concurrency 8) was 140-170 MB
        # with max_concurrency + 2, about 110 MB with 4, at the same speed (benchmarks/memory.py).
        # Small blobs do not go through here (put_blobs), so this does not limit their concurrency.
        config.max_in_memory_upload_chunks = max(2, self.max_concurrency // 2)
        return create_transfer_manager(self.client, config)

    def put_blobs(self, blobs, open_blob):
        """Upload blobs in parallel; ``blobs`` are the plan's dicts (key, digest, size, mediaType).

        ``open_blob(blob)`` returns a binary file object (opened only when a
        slot in the bounded window is free, so at most about twice
        ``max_concurrency`` files are open). Each upload is verified on the way;
        the first failure cancels the rest and is raised naming the blob.
        Returns the number of bytes sent.

        Blobs below ``multipart_threshold`` (configs, manifests, most layers)
        are read, verified and sent with one PutObject each from a pool of
        ``max_concurrency`` threads: s3transfer's per-transfer machinery costs
        more CPU than such a request itself (benchmarks/: 1,000 blobs of 8 KiB
        take about 0.75 s less CPU). Larger blobs go through s3transfer
        (multipart, a bounded number of parts in memory).
        """
        blobs = list(blobs)
        small = [b for b in blobs if b['size'] < self.multipart_threshold]
        large = [b for b in blobs if b['size'] >= self.multipart_threshold]
        return self._put_small_blobs(small, open_blob) + self._put_large_blobs(large, open_blob)

    def _put_small_blobs(self, blobs, open_blob):
        """One verified PutObject per blob, ``max_concurrency`` at a time; the first failure stops the rest."""
        if not blobs:
            return 0
        state = _Uploading(0)

        def put(blob):
            if state.error is not None:
                return
            key = blob['key']
            what = 'blob %s (for %s)' % (blob['digest'], self.describe(key))
            try:
                fileobj = open_blob(blob)
                try:
                    data = _VerifyingReader(fileobj, blob['digest'], blob['size'], what).read()
                finally:
                    fileobj.close()
                content_type, cache_control = self.blob_headers(blob.get('mediaType'))
                self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                                       **self._extra(content_type, cache_control))
            except Exception as e:  # noqa: BLE001 (reported below, once)
                state.fail(_upload_error(self, e, key, 'blob %s' % blob['digest']))

        with _pool(self.max_concurrency) as pool:
            for dummy in pool.map(put, blobs):
                pass
        if state.error is not None:
            raise state.error
        for blob in blobs:
            self._count('upload')
            self._learnt[blob['key']] = self.blob_headers(blob.get('mediaType'))
            self._remember_written(blob['key'], blob['size'])
        return sum(b['size'] for b in blobs)

    def _put_large_blobs(self, blobs, open_blob):
        """Blobs at or above the multipart threshold, through one s3transfer TransferManager."""
        if not blobs:
            return 0
        state = _Uploading(self.max_concurrency * 2)
        total = 0
        with contextlib.ExitStack() as stack:
            # Entered first, left last: swallows _CancelUploads once the manager has cancelled.
            stack.enter_context(contextlib.suppress(_CancelUploads))
            manager = stack.enter_context(self._transfer_manager())
            futures = []
            for blob in blobs:
                state.slots.acquire()
                if state.error is not None:
                    state.slots.release()
                    break
                key = blob['key']
                what = 'blob %s (for %s)' % (blob['digest'], self.describe(key))
                try:
                    fileobj = open_blob(blob)
                except Exception:
                    state.slots.release()
                    raise
                reader = _VerifyingReader(fileobj, blob['digest'], blob['size'], what)
                content_type, cache_control = self.blob_headers(blob.get('mediaType'))
                size = blob['size']

                def done(future, reader=reader, key=key, digest=blob['digest']):
                    reader.close()
                    state.slots.release()
                    try:
                        future.result()
                    except Exception as e:  # noqa: BLE001 (reported below, once)
                        state.fail(_upload_error(self, e, key, 'blob %s' % digest))

                future = manager.upload(
                    reader, self.bucket, self.object_key(key),
                    extra_args=self._extra(content_type, cache_control),
                    subscribers=[_subscriber(on_queued=lambda f, size=size: f.meta.provide_transfer_size(size),
                                             on_done=done)])
                futures.append((blob, future))
                total += size
            # Leaving the manager waits for every transfer; on an error, cancel what is left by
            # leaving it with an exception (TransferManager.shutdown(cancel=True) passes its message
            # as the exception type and fails with "'str' object is not callable": boto/s3transfer#143).
            while any(not f.done() for dummy, f in futures):
                if state.error is not None:
                    raise _CancelUploads('another upload failed')
                time.sleep(0.01)
        if state.error is not None:
            raise state.error
        for blob, future in futures:
            try:
                future.result()
            except Exception as e:  # noqa: BLE001
                raise _upload_error(self, e, blob['key'], 'blob %s' % blob['digest'])
            self._count('upload')
            self._learnt[blob['key']] = self.blob_headers(blob.get('mediaType'))
            self._remember_written(blob['key'], blob['size'])
        return total

    def put_blob(self, key, fileobj, digest, size, media_type=None):
        blob = {'key': key, 'digest': digest, 'size': size, 'mediaType': media_type}
        return self.put_blobs([blob], lambda b: fileobj)

    def put_document(self, key, data, media_type):
        content_type, cache_control = self.document_headers(media_type)
        self._put(key, data, content_type, cache_control)
        self._documents.pop(key, None)

    def _put(self, key, data, content_type, cache_control, condition=None, acl=True):
        params = dict(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                      ContentType=content_type, CacheControl=cache_control)
        if acl and self.acl:
            params['ACL'] = self.acl
        if condition:
            params.update(condition)
        try:
            response = self.client.put_object(**params)
        except Exception as e:  # noqa: BLE001
            if not _is_aws_error(e):
                raise
            raise self._error(e, 'PutObject', key)
        finally:
            self._count('put')
        return response.get('ETag')

    def _conditional_put(self, key, data, content_type, cache_control, etag, acl=True):
        """PUT only if the object is still the one read (etag; None: still absent).

        Returns True when written, False on a conflict (412, or 409 when the
        store reports a concurrent conditional write). Falls back to an
        unconditional PUT when conditional writes are off or unsupported.
        """
        if self.conditional_writes != 'never':
            if etag:
                bare = etag.strip('"')
                condition = {'IfMatch': '"%s"' % bare if self._quote_etags else bare}
            else:
                condition = {'IfNoneMatch': '*'}
            try:
                self._put(key, data, content_type, cache_control, condition, acl)
                self._conflict_etag = None
                return True
            except S3Error as e:
                if e.status == 412 or e.code in ('PreconditionFailed', 'ConditionalRequestConflict') \
                        or e.status == 409 and e.code == 'ConditionalRequestConflict':
                    self._conflict_etag = etag
                    return False
                if self.conditional_writes == 'auto' and _unsupported_condition(e):
                    self.conditional_writes = 'never'
                    self.warnings.append(
                        '%s: the store does not support conditional writes (%s); falling back to '
                        'read-back verification: concurrent publishers of one family can lose an '
                        'index entry on this store' % (self.describe(key), e.code or e.status))
                else:
                    raise
        self._put(key, data, content_type, cache_control, None, acl)
        return True

    def update_document(self, key, update, media_type, max_bytes=16 * MIB):
        """Read-modify-write ``key`` with conditional PUTs (see the module docstring).

        Also fixes the document's headers when its content is right but its
        Content-Type or Cache-Control is not (the key is added to ``fixed``).
        """
        content_type, cache_control = self.document_headers(media_type)
        before, after = self._read_modify_write(key, update, content_type, cache_control, max_bytes)
        return before, after

    def _read_modify_write(self, key, update, content_type, cache_control, max_bytes, acl=True, fix_headers=True):
        """The loop behind ``update_document`` (also used for the ledger); returns ``(before, after)``."""
        first_before = None
        for attempt in range(self.max_merge_attempts + 2):
            # The first attempt reuses what planning read: a conditional PUT fails if it is stale.
            got = self._documents.pop(key, None) if attempt == 0 else None
            before, etag, headers = got if got is not None else self._get(key, max_bytes)
            if attempt == 0:
                first_before = before
            elif etag is not None and etag == self._conflict_etag:
                self._etag_mismatch(key)
            after = update(before)
            if after is None or after == before:
                if before is None or not fix_headers or not _drifted(headers, content_type, cache_control):
                    return first_before, first_before
                if self._conditional_put(key, before, content_type, cache_control, etag, acl):
                    self.fixed.append(key)
                    return first_before, first_before
                continue
            if not self._conditional_put(key, after, content_type, cache_control, etag, acl):
                continue
            if self.conditional_writes == 'never':
                # Fallback: read back; a concurrent unconditional writer may have replaced it.
                current = self._get(key, max_bytes)[0]
                if current != after and update(current) not in (None, current):
                    continue
            return first_before, after
        raise S3Error('%s: still changed by another writer after %d attempts to update it'
                      % (self.describe(key), self.max_merge_attempts))

    def _etag_mismatch(self, key):
        """A 412 although the object still has the ETag sent: the store wants the other If-Match form.

        Ceph RGW (16.2) compares If-Match on PUT with the bare ETag and
        answers 412 to the quoted form HTTP specifies; AWS S3 accepts the bare
        form. Try the other form once; if neither works, conditional writes
        are unusable here: fall back (with a warning).
        """
        self._etag_flips += 1
        if self._etag_flips == 1:
            self._quote_etags = not self._quote_etags
            return
        self.conditional_writes = 'never'
        self.warnings.append('%s: the store answers 412 to If-Match with the current ETag in either form; '
                             'falling back to unconditional writes with read-back verification' % self.describe(key))

    def delete(self, key):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:  # noqa: BLE001
            if not _is_aws_error(e):
                raise
            raise self._error(e, 'DeleteObject', key)
        self._count('delete')
        for objects in self._listings.values():
            objects.pop(key, None)
        self._written.discard(key)
        self._learnt.pop(key, None)

    # -- metadata drift ------------------------------------------------------------

    def _load_ledger(self):
        if self._ledger_loaded:
            return self._ledger
        self._ledger_loaded = True
        self._ledger, self._ledger_etag, self._ledger_raw = {}, None, None
        if not self.use_ledger:
            return self._ledger
        data, etag, dummy = self._get(LEDGER_KEY, MAX_LEDGER_BYTES)
        self._ledger_etag, self._ledger_raw = etag, data
        if data is not None:
            self._ledger = _parse_ledger(data)
            if self._ledger is None:
                self._ledger = {}
                self.warnings.append('%s: unreadable metadata ledger ignored (it is rebuilt; this run '
                                     'checks existing objects with HEAD)' % self.describe(LEDGER_KEY))
        return self._ledger

    def _head(self, key):
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:  # noqa: BLE001
            if not _is_aws_error(e):
                raise
            raise self._error(e, 'HeadObject', key)
        finally:
            self._count('head')
        return {'content_type': response.get('ContentType'), 'cache_control': response.get('CacheControl'),
                'content_encoding': response.get('ContentEncoding'), 'metadata': response.get('Metadata') or {},
                'etag': response.get('ETag'), 'size': response.get('ContentLength')}

    def check_metadata(self, blobs):
        """Which existing blobs have the wrong headers. ``blobs``: the plan's dicts (key, mediaType).

        Uses the LIST already made by ``stat`` and the ledger; HEADs only
        objects the ledger cannot vouch for, in parallel. Returns a list of
        dicts (key, size, etag, current and expected content_type and
        cache_control), in the order given.
        """
        blobs = list(blobs)
        if not blobs:
            return []
        objects = self.listing([b['key'] for b in blobs])
        ledger = self._load_ledger()
        drifted, to_head = [], []
        for blob in blobs:
            key = blob['key']
            if key not in objects:
                continue
            size, etag, last_modified = objects[key]
            expected = self.blob_headers(blob.get('mediaType'))
            entry = ledger.get(key)
            if entry and entry[0] == etag and entry[1] == size and entry[2] == last_modified:
                if (entry[3], entry[4]) != expected:
                    drifted.append(_drift(key, size, etag, entry[3], entry[4], expected))
                continue
            to_head.append((blob, expected, size, etag))
        if to_head:
            with _pool(self.max_concurrency) as pool:
                heads = list(pool.map(lambda item: self._head(item[0]['key']), to_head))
            for (blob, expected, size, etag), head in zip(to_head, heads):
                key = blob['key']
                current = (head['content_type'], head['cache_control'])
                if current != expected or head['content_encoding']:
                    d = _drift(key, size, etag, current[0], current[1], expected)
                    d['metadata'] = head['metadata']
                    d['content_encoding'] = head['content_encoding']
                    drifted.append(d)
                else:
                    self._learnt[key] = expected
        order = dict((b['key'], i) for i, b in enumerate(blobs))
        drifted.sort(key=lambda d: order[d['key']])
        return drifted

    def fix_metadata(self, drifted):
        """Copy each drifted object onto itself with the expected headers (no re-upload)."""
        if not drifted:
            return
        errors = []
        with self._transfer_manager() as manager:
            futures = []
            for d in drifted:
                extra = self._extra(d['expected_content_type'], d['expected_cache_control'])
                extra['MetadataDirective'] = 'REPLACE'
                if d.get('metadata'):
                    extra['Metadata'] = d['metadata']

                def queued(future, d=d):
                    future.meta.provide_transfer_size(d['size'])
                    if d.get('etag'):
                        future.meta.provide_object_etag(d['etag'])
                source = {'Bucket': self.bucket, 'Key': self.object_key(d['key'])}
                futures.append((d, manager.copy(source, self.bucket, self.object_key(d['key']), extra_args=extra,
                                                subscribers=[_subscriber(on_queued=queued)])))
            for d, future in futures:
                try:
                    future.result()
                except Exception as e:  # noqa: BLE001
                    errors.append(self._error(e, 'CopyObject (fixing Content-Type/Cache-Control)', d['key']))
                    continue
                self._count('copy')
                self.fixed.append(d['key'])
                self._learnt[d['key']] = (d['expected_content_type'], d['expected_cache_control'])
                self._remember_written(d['key'], d['size'])
        if errors:
            raise errors[0]

    def save_ledger(self):
        """Record what this store learnt about objects' headers (a conditional PUT; no-op when nothing new).

        Objects written in this run are listed again to learn their new ETag
        and LastModified: one LIST per object when few, else the whole prefix.
        Returns whether the ledger was written.
        """
        if not self.use_ledger or not self._learnt:
            return False
        ledger = dict(self._load_ledger())
        objects = {}
        for listed in self._listings.values():
            objects.update(listed)
        written = sorted(self._written)
        pages = max(1, (len(objects) + LIST_PAGE - 1) // LIST_PAGE)
        if written and len(written) <= pages:
            for key in written:
                objects.update(self._list_one(key))
        elif written:
            self._listings.clear()
            objects = self.listing(written)
            objects.update(self.listing(list(self._learnt)))
        new = {}
        for key, (content_type, cache_control) in self._learnt.items():
            size, etag, last_modified = objects.get(key, (None, None, None))
            if etag is not None:
                new[key] = [etag, size, last_modified, content_type, cache_control]
        if all(ledger.get(k) == v for k, v in new.items()):
            return False
        # Entries of objects that a listing of this run shows are gone (pruned, deleted) are dropped.
        gone = {}
        for listed, listing in self._listings.items():
            for key, entry in ledger.items():
                if (self.prefix + key).startswith(listed) and key not in listing and key not in new:
                    gone[key] = entry
        self._documents[LEDGER_KEY] = (self._ledger_raw, self._ledger_etag, None)

        def update(raw):
            current = (_parse_ledger(raw) if raw is not None else None) or {}
            merged = dict((k, v) for k, v in current.items() if gone.get(k) != v)
            merged.update(new)
            return _dump_ledger(merged) if merged != current or raw is None else None
        try:
            self._read_modify_write(LEDGER_KEY, update, 'application/json', 'no-store', MAX_LEDGER_BYTES, acl=False,
                                    fix_headers=False)
        except S3Error as e:
            self.warnings.append('%s: not updated (%s); the next run checks the new objects with HEAD'
                                 % (self.describe(LEDGER_KEY), e))
            return False
        self._learnt = {}
        return True

    def _list_one(self, key):
        full = self.object_key(key)
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        except Exception as e:  # noqa: BLE001
            if not _is_aws_error(e):
                raise
            raise self._error(e, 'ListObjectsV2', key)
        self._count('list_pages')
        found = {}
        for obj in page.get('Contents') or ():
            if obj['Key'] == full:
                found[key] = (obj['Size'], obj.get('ETag'), _timestamp(obj.get('LastModified')))
        return found


def _is_number(text):
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _drift(key, size, etag, content_type, cache_control, expected):
    return {'key': key, 'size': size, 'etag': etag, 'content_type': content_type, 'cache_control': cache_control,
            'expected_content_type': expected[0], 'expected_cache_control': expected[1]}


def _drifted(headers, content_type, cache_control):
    return bool(headers) and (headers.get('content_type') != content_type
                              or headers.get('cache_control') != cache_control
                              or bool(headers.get('content_encoding')))


def _unsupported_condition(error):
    if error.status == 501 or error.code == 'NotImplemented':
        return True
    text = str(error).lower()
    return error.status == 400 and ('if-match' in text or 'if-none-match' in text) and 'not' in text


def _upload_error(store, exc, key, what):
    if isinstance(exc, (VerificationError, StoreError)):
        return exc
    if _is_aws_error(exc):
        return store._error(exc, 'upload of %s' % what, key)
    if isinstance(exc, (OSError, ValueError)):
        return StoreError('%s (for %s): upload failed: %s' % (what, store.describe(key), exc))
    return exc


def _parse_ledger(data):
    """The ledger's entries, or None when the object is not a ledger this code can read."""
    try:
        obj = json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or obj.get('format') != LEDGER_FORMAT or not isinstance(obj.get('objects'), dict):
        return None
    entries = {}
    for key, entry in obj['objects'].items():
        if isinstance(entry, list) and len(entry) == 5:
            entries[key] = entry
    return entries


def _dump_ledger(entries):
    return json.dumps({'format': LEDGER_FORMAT, 'objects': entries}, sort_keys=True,
                      separators=(',', ':')).encode('utf-8')


@contextlib.contextmanager
def _pool(workers):
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


# -- publishing: the one algorithm of _plan, with S3's parallel uploads and header fixes ----------

def _open_blob(layout):
    def open_blob(blob):
        return open(layout.blob_path(blob['digest']), 'rb')
    return open_blob


def publish(store, mapping, layout=None, pairs=(), state='present', force=False, check_mode=False,
            ref_engines=None, exclusive_ref_engines=False, prune=False, prune_min_age=86400):
    """Publish (``state=present``) or remove (``absent``) tags in an S3 store; return ``(result, diff)``.

    Everything that is not S3-specific is ``_plan``'s: the publication (the
    layout validated for the chosen tags before anything is written), the
    probe, the plan, and ``execute`` (the check that every referenced blob is
    there, then the index merged by replaying the operations). This adds what
    S3 needs: the missing blobs are uploaded in parallel before ``execute``
    runs (so ``execute`` gets an empty send list), and existing objects whose
    headers drifted are fixed by a copy onto themselves.

    ``ref_engines`` is the managed ref-engines object to merge into the
    well-known document, last (the code path ``oci.discovery.ref_engines``
    uses for web roots: ``_plan.update_ref_engines`` through the store's
    ``update_document``), or None to leave it alone. With ``mapping`` None
    only the well-known document is published. Bad input and unreadable
    documents fail before the first write.
    """
    from ansible_collections.oci.discovery.plugins.module_utils._documents import (
        MT_INDEX, MT_LAYOUT_HEADER, MT_REF_ENGINES)
    from ansible_collections.oci.discovery.plugins.module_utils._plan import (
        MAX_REF_ENGINES_BYTES, WELL_KNOWN_KEY, diff, execute, index_ops, make_plan, probe, probe_request,
        publication, summary, update_ref_engines)

    store.check_bucket()
    # -- plan (read-only) --
    plan, blobs, drifted, documents = None, [], [], []
    if mapping is not None:
        pub = None
        if state == 'present':
            pub = publication(layout, mapping, pairs)
            ops = index_ops('present', pub['entries'])
        else:
            ops = index_ops('absent', tags=[dest for dummy, dest in pairs])
        blobs = pub['blobs'] if pub else []
        plan = make_plan(mapping, ops, pub, probe(store, probe_request(mapping, ops, blobs, prune=prune, force=force)),
                         store.describe, force, prune)
        sending = set(b['key'] for b in plan['send'])
        drifted = store.check_metadata([b for b in blobs if b['key'] not in sending])
        documents.append((mapping.index_key, MT_INDEX))
        if mapping.header_key:
            documents.append((mapping.header_key, MT_LAYOUT_HEADER))
    well_known = None
    if ref_engines is not None:
        what = store.describe(WELL_KNOWN_KEY)
        raw = store.read(WELL_KNOWN_KEY, MAX_REF_ENGINES_BYTES)
        new, before_obj, after_obj = update_ref_engines(raw, ref_engines, what, exclusive_ref_engines, force)
        well_known = {'changed': new is not None, 'before': before_obj, 'after': after_obj}
        documents.append((WELL_KNOWN_KEY, MT_REF_ENGINES))
    drifted_documents = [key for key, media_type in documents if store.document_drifted(key, media_type)]

    # -- commit: blobs, header fixes, (execute:) the referenced-blobs check, documents, index; then well-known --
    done = None
    if not check_mode:
        if plan is not None:
            sent_bytes = store.put_blobs(plan['send'], _open_blob(layout))
            store.fix_metadata(drifted)
            done = execute(store, dict(plan, send=[]), (), prune_min_age)
            done['sent'], done['sent_bytes'] = len(plan['send']), sent_bytes
            done['changed'] = done['changed'] or bool(plan['send'])
            header = mapping.header_key
            if header in drifted_documents and not done['documents']:
                data = store.read(header, 64 * 1024)
                if data is not None and store.document_drifted(header, MT_LAYOUT_HEADER):
                    store.put_document(header, data, MT_LAYOUT_HEADER)
                    store.fixed.append(header)
        if ref_engines is not None:
            before, after = store.update_document(
                WELL_KNOWN_KEY, lambda raw: update_ref_engines(raw, ref_engines, what, exclusive_ref_engines, force)[0],
                MT_REF_ENGINES, MAX_REF_ENGINES_BYTES)
            well_known['changed'] = after is not before
        store.save_ledger()
        fixed = list(store.fixed)
    else:
        fixed = [d['key'] for d in drifted] + drifted_documents

    # -- report --
    result = summary(mapping, plan, done) if plan is not None else {'changed': False}
    result['objects_fixed'] = len(fixed)
    result['fixed_keys'] = [store.object_key(k) for k in fixed]
    result['bucket'] = store.bucket
    result['prefix'] = store.prefix
    if well_known is not None:
        result['well_known_changed'] = well_known['changed']
        result['well_known'] = well_known['after']
    result['changed'] = bool(result['changed'] or fixed or (well_known and well_known['changed']))
    result['requests'] = dict(store.requests)
    differences = diff(mapping, plan, done) if plan is not None else []
    if fixed:
        differences.append({'prepared': '%d object(s) with wrong Content-Type/Cache-Control %s:\n%s' % (
            len(fixed), 'fixed' if done or not check_mode else 'to fix',
            '\n'.join('  ' + store.describe(k) for k in fixed))})
    if well_known is not None and well_known['changed']:
        differences.append({'before_header': store.describe(WELL_KNOWN_KEY), 'after_header': store.describe(WELL_KNOWN_KEY),
                            'before': json.dumps(well_known['before'], indent=2, sort_keys=True) + '\n'
                            if well_known['before'] is not None else '',
                            'after': json.dumps(well_known['after'], indent=2, sort_keys=True) + '\n'})
    return result, differences
