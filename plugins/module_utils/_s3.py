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
  ``put_blobs()`` sends each blob below the multipart threshold with one
  PutObject from a pool of ``max_concurrency`` threads, after its body was read
  whole and verified through ``_VerifyingReader``; larger blobs go through
  ``_s3_put.upload_large`` (parts read and verified in order, sent by
  ``max_concurrency`` workers, the upload completed only after the last part
  was verified, aborted otherwise). Readers never see an unverified object.
  The requests go through ``blob_puts()``: ``_s3_put``'s direct path (the
  client's signer, HTTP session and retries, not its pipeline) where it sends
  what the client would, else the client.
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

The ledger that finds objects with drifted headers without a HEAD each is in
``_s3_ledger``; blob PUTs and multipart uploads are in ``_s3_put``; botocore errors are classified and translated in
``_s3_errors``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import Verifier
from ansible_collections.oci.discovery.plugins.module_utils._s3_errors import (
    S3Error, error_details, is_boto_error, s3_error, translated, unsupported_condition, upload_error)
from ansible_collections.oci.discovery.plugins.module_utils._s3_put import ClientPuts, putter, upload_large
from ansible_collections.oci.discovery.plugins.module_utils._s3_ledger import (
    LIST_PAGE, MetadataLedger, drifted_headers, listed_time, thread_pool)
from ansible_collections.oci.discovery.plugins.module_utils._spec import MAX_INDEX_BYTES
from ansible_collections.oci.discovery.plugins.module_utils._stores import Store, StoreError, check_key

MIB = 1024 * 1024
CHARSET = '; charset=utf-8'
BLOB_CACHE_CONTROL = 'public, max-age=31536000, immutable'
DOCUMENT_CACHE_CONTROL = 'public, max-age=60'
CONDITIONAL_MODES = ('auto', 'always', 'never')
MAX_COPY_OBJECT_BYTES = 5 * 1024 * MIB     # above this, CopyObject refuses: multipart copy


class _FirstError:
    """The first error of a batch of uploads run by a thread pool."""

    def __init__(self):
        self.lock = threading.Lock()
        self.error = None

    def fail(self, error):
        with self.lock:
            if self.error is None:
                self.error = error


class _VerifyingReader:
    """A non-seekable reader over a blob file that verifies what is read.

    Read once, in order (a small blob's whole body before its PUT is sent), so
    every byte passes through the Verifier once. Reading past ``size`` bytes,
    a short file or a digest mismatch raise VerificationError from ``read``,
    which fails the upload before anything becomes visible.
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


class S3Store(MetadataLedger, Store):
    """A site in an S3 bucket under ``prefix`` (the interface of ``_stores.Store``, plus batch operations).

    ``client`` is a boto3 S3 client (thread-safe; shared by the worker
    threads). ``acl`` is a canned ACL for published objects (None: rely on the
    bucket policy). ``max_concurrency`` bounds the request threads;
    objects of ``multipart_threshold`` bytes or more are uploaded in parts of
    ``multipart_chunksize`` bytes (memory use is about
    ``max_concurrency * multipart_chunksize`` at most: one part per worker of
    ``_s3_put.upload_large``). ``direct_puts`` (default) lets blob PUTs take
    ``_s3_put``'s direct path where it applies.
    """

    def __init__(self, client, bucket, prefix='', acl=None, blob_cache_control=BLOB_CACHE_CONTROL,
                 document_cache_control=DOCUMENT_CACHE_CONTROL, max_concurrency=8,
                 multipart_threshold=16 * MIB, multipart_chunksize=8 * MIB, conditional_writes='auto',
                 max_merge_attempts=10, use_ledger=True, direct_puts=True):
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
        self.direct_puts = direct_puts
        self._puts = None        # what sends blob bytes (blob_puts)
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
        self._peeked = {}        # key -> what _get returned ahead of the probe (peek), for its read()
        self._bucket_checked = False
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

    # -- reading ---------------------------------------------------------------

    def check_bucket(self):
        """Fail early and clearly when the bucket is missing or the credentials are wrong."""
        with translated('HeadBucket', 's3://%s' % self.bucket):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except is_boto_error(codes=('NoSuchBucket', '404', 'NotFound'), statuses=(404,)):
                raise S3Error('s3://%s: the bucket does not exist (create it first, e.g. with the '
                              's3_publisher role)' % self.bucket, code='NoSuchBucket', status=404)

    def check(self):
        if not self._bucket_checked:     # once per store: peek() may have checked it before the probe
            self.check_bucket()
            self._bucket_checked = True

    def inspect(self, blobs, documents):
        """Blobs and documents served with the wrong headers (``check_metadata``, ``document_drifted``)."""
        items = self.check_metadata(blobs)
        items.extend({'key': key, 'document': media_type} for key, media_type in sorted(documents.items())
                     if self.document_drifted(key, media_type))
        return items

    def fix(self, items):
        """Copy drifted blobs onto themselves; rewrite drifted documents as they are (a conditional PUT)."""
        self.fix_metadata([item for item in items if 'document' not in item])
        for item in items:
            if 'document' in item:
                self.update_document(item['key'], lambda raw: None, item['document'], MAX_INDEX_BYTES)

    def finish(self):
        self.save_ledger()

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
            with translated('ListObjectsV2', 's3://%s/%s' % (self.bucket, full)):
                page = self.client.list_objects_v2(**params)
            self._count('list_pages')
            for obj in page.get('Contents') or ():
                objects[obj['Key'][start:]] = (obj['Size'], obj.get('ETag'), listed_time(obj.get('LastModified')))
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
        with translated('GetObject', self.describe(key)):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            except is_boto_error(codes=('NoSuchKey', '404'), statuses=(404,)) as e:
                if error_details(e)[0] == 'NoSuchBucket':
                    raise
                self._count('get')
                return None, None, None
        self._count('get')
        body = response['Body']
        try:
            length = response.get('ContentLength')
            if length is not None and length > max_bytes:
                raise StoreError('%s: %d bytes, larger than the limit of %d' % (self.describe(key), length, max_bytes))
            with translated('GetObject (reading the body)', self.describe(key)):   # the connection dropped
                data = body.read(max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise StoreError('%s: larger than %d bytes' % (self.describe(key), max_bytes))
        headers = {'content_type': response.get('ContentType'), 'cache_control': response.get('CacheControl'),
                   'content_encoding': response.get('ContentEncoding')}
        return data, response.get('ETag'), headers

    def read(self, key, max_bytes):
        """The object's bytes or None; remembered (with its ETag) for ``update_document``."""
        got = self._peeked.pop(key, None) or self._get(key, max_bytes)
        self._documents[key] = got
        return got[0]

    def peek(self, key, max_bytes):
        """``read`` ahead of the probe (to choose the site layout); the probe's ``read`` of ``key`` costs no request."""
        self.check()
        self._peeked[key] = self._get(key, max_bytes)
        return self._peeked[key][0]

    def document_drifted(self, key, media_type):
        """Whether a document last read by ``read`` is served with the wrong headers."""
        data, dummy, headers = self._documents.get(key, (None, None, None))
        return data is not None and drifted_headers(headers, *self.document_headers(media_type))

    def _remember_written(self, key, size, ledger=True):
        """Keep cached listings true after a write (the stat after the uploads needs no new LIST).

        ``ledger``: the ledger is to record the object's headers (blobs), so it is listed again.
        """
        full = self.object_key(key)
        for listed, objects in self._listings.items():
            if full.startswith(listed):
                objects[key] = (size, None, '%.3f' % time.time())
        if ledger:
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
        return create_transfer_manager(self.client, config)

    def put_blobs(self, blobs, source):
        """Upload blobs in parallel; ``blobs`` are the plan's dicts (key, digest, size, mediaType).

        ``source.open(blob)`` returns a binary file object (at most
        ``max_concurrency`` small blobs and one large blob are open at a
        time). Each upload is verified on the way; the first failure stops the
        rest and is raised naming the blob. Returns the number of bytes sent.

        Blobs at or above ``multipart_threshold`` go first: uploaded in parts
        by ``_s3_put.upload_large`` (one after another, their parts in
        parallel), hashed as they are read, and completed (made visible) only
        when all of them matched: they are the blobs this store
        ``verifies_on_arrival``. Then the smaller ones (configs, manifests,
        most layers) are read, verified and sent with one PutObject each from
        a pool of ``max_concurrency`` threads.
        """
        blobs = list(blobs)
        small = [b for b in blobs if not self.verifies_on_arrival(b)]
        large = [b for b in blobs if self.verifies_on_arrival(b)]
        return self._put_large_blobs(large, source.open) + self._put_small_blobs(small, source.open)

    def verifies_on_arrival(self, blob):
        """Whether ``put_blobs`` hashes ``blob`` as it sends it and makes none of those visible unless all
        match, before anything else is sent (so the caller need not hash it first: ``_publish.run``).

        The blobs uploaded in parts: a multipart upload is invisible until it is completed.
        """
        return blob['size'] >= self.multipart_threshold

    def _put_small_blobs(self, blobs, open_blob):
        """One verified PutObject per blob, ``max_concurrency`` at a time; the first failure stops the rest."""
        if not blobs:
            return 0
        state = _FirstError()
        puts = self.blob_puts()

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
                puts.put_object(self.object_key(key), data, self._extra(*self.blob_headers(blob.get('mediaType'))),
                                sha256=blob['digest'][7:] if blob['digest'].startswith('sha256:') else None)
            except Exception as e:  # noqa: BLE001 (reported below, once)
                state.fail(upload_error(e, 'blob %s' % blob['digest'], self.describe(key)))

        with thread_pool(self.max_concurrency) as pool:
            for dummy in pool.map(put, blobs):
                pass
        if state.error is not None:
            raise state.error
        self._uploaded(blobs)
        return sum(b['size'] for b in blobs)

    def _put_large_blobs(self, blobs, open_blob):
        """Blobs at or above the multipart threshold: multipart uploads, verified on the way (``_s3_put``)."""
        if not blobs:
            return 0
        total = upload_large(self.client, self.blob_puts(), blobs, open_blob, self.object_key, self.describe,
                             lambda blob: self._extra(*self.blob_headers(blob.get('mediaType'))),
                             self.multipart_chunksize, self.max_concurrency,
                             lambda e, blob: upload_error(e, 'blob %s' % blob['digest'], self.describe(blob['key'])))
        self._uploaded(blobs)
        return total

    def blob_puts(self):
        """What sends blob bytes: ``_s3_put.DirectPuts`` when it can, else the client pipeline (made once)."""
        if self._puts is None:
            self._puts = putter(self.client, self.bucket, self._extra(*self.blob_headers(None))) \
                if self.direct_puts else ClientPuts(self.client, self.bucket, reason='direct_puts is off')
        return self._puts

    def _uploaded(self, blobs):
        for blob in blobs:
            self._count('upload')
            self._learnt[blob['key']] = self.blob_headers(blob.get('mediaType'))
            self._remember_written(blob['key'], blob['size'])

    def put_document(self, key, data, media_type):
        self._put(key, data, self.document_headers(media_type))
        self._documents.pop(key, None)

    def view_headers(self, content_type, immutable=False):
        """(Content-Type, Cache-Control) of a registry view object: the type as it is (no charset)."""
        return content_type, self.blob_cache_control if immutable else self.document_cache_control

    def put_exact(self, key, data, content_type, immutable=False, ledger=True):
        """PUT a registry view object with ``view_headers``; recorded in the metadata ledger unless not ``ledger``.

        ``key`` may be the view's root, ``v2/`` (an object whose key ends in a slash; never in the ledger).
        """
        content_type, cache_control = self.view_headers(content_type, immutable)
        if key == 'v2/':
            where = 's3://%s/%s%s' % (self.bucket, self.prefix, key)
            try:
                with translated('PutObject', where):
                    self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data,
                                           **self._extra(content_type, cache_control))
            finally:
                self._count('put')
            return
        self._put(key, data, (content_type, cache_control))
        if ledger:
            self._learnt[key] = (content_type, cache_control)
        self._remember_written(key, len(data), ledger=ledger)

    def copy_objects(self, copies):
        """Server-side copies ``[{'src', 'key', 'size'}]`` (headers kept): one CopyObject each, no bytes uploaded.

        ``max_concurrency`` at a time; objects above CopyObject's 5 GiB limit go through
        s3transfer's multipart copy (one HEAD, then UploadPartCopy requests).
        """
        errors = []
        extra = {'ACL': self.acl} if self.acl else {}

        def copy(c):
            if errors:
                return
            try:
                with translated('CopyObject (from %s)' % self.describe(c['src']), self.describe(c['key'])):
                    if c['size'] <= MAX_COPY_OBJECT_BYTES:
                        self.client.copy_object(Bucket=self.bucket, Key=self.object_key(c['key']), CopySource={
                            'Bucket': self.bucket, 'Key': self.object_key(c['src'])}, **extra)
                    else:
                        self.client.copy({'Bucket': self.bucket, 'Key': self.object_key(c['src'])}, self.bucket,
                                         self.object_key(c['key']), ExtraArgs=extra or None)
            except Exception as e:  # noqa: BLE001 (reported below, once)
                errors.append(e)
        with thread_pool(self.max_concurrency) as pool:
            for dummy in pool.map(copy, copies):
                pass
        if errors:
            raise errors[0]
        for c in copies:
            self._count('copy')
            if c.get('media_type'):       # the copy keeps the source's headers: a blob's
                self._learnt[c['key']] = self.blob_headers(c['media_type'])
            self._remember_written(c['key'], c['size'])

    def _put(self, key, data, headers, condition=None, acl=True):
        """One PutObject; ``headers`` is (Content-Type, Cache-Control)."""
        content_type, cache_control = headers
        params = dict(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                      ContentType=content_type, CacheControl=cache_control)
        if acl and self.acl:
            params['ACL'] = self.acl
        if condition:
            params.update(condition)
        try:
            with translated('PutObject', self.describe(key)):
                response = self.client.put_object(**params)
        finally:
            self._count('put')
        return response.get('ETag')

    def _conditional_put(self, key, data, headers, etag, acl=True):
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
                self._put(key, data, headers, condition=condition, acl=acl)
                self._conflict_etag = None
                return True
            except S3Error as e:
                if e.status == 412 or e.code in ('PreconditionFailed', 'ConditionalRequestConflict') \
                        or e.status == 409 and e.code == 'ConditionalRequestConflict':
                    self._conflict_etag = etag
                    return False
                if self.conditional_writes == 'auto' and unsupported_condition(e):
                    self.conditional_writes = 'never'
                    self.warnings.append(
                        '%s: the store does not support conditional writes (%s); falling back to '
                        'read-back verification: concurrent publishers of one family can lose an '
                        'index entry on this store' % (self.describe(key), e.code or e.status))
                else:
                    raise
        self._put(key, data, headers, acl=acl)
        return True

    def update_document(self, key, update, media_type, max_bytes=16 * MIB):
        """Read-modify-write ``key`` with conditional PUTs (see the module docstring).

        Also fixes the document's headers when its content is right but its
        Content-Type or Cache-Control is not (the key is added to ``fixed``).
        """
        before, after = self._read_modify_write(key, update, self.document_headers(media_type), max_bytes)
        return before, after

    def _read_modify_write(self, key, update, wanted, max_bytes, acl=True, fix_headers=True):
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
                if before is None or not fix_headers or not drifted_headers(headers, *wanted):
                    return first_before, first_before
                if self._conditional_put(key, before, wanted, etag, acl=acl):
                    self.fixed.append(key)
                    return first_before, first_before
                continue
            if not self._conditional_put(key, after, wanted, etag, acl=acl):
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
        with translated('DeleteObject', self.describe(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        self._count('delete')
        for objects in self._listings.values():
            objects.pop(key, None)
        self._written.discard(key)
        self._learnt.pop(key, None)

    # -- metadata drift ------------------------------------------------------------

    def _head(self, key):
        try:
            with translated('HeadObject', self.describe(key)):
                response = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        finally:
            self._count('head')
        return {'content_type': response.get('ContentType'), 'cache_control': response.get('CacheControl'),
                'content_encoding': response.get('ContentEncoding'), 'metadata': response.get('Metadata') or {},
                'etag': response.get('ETag'), 'size': response.get('ContentLength')}

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
                except Exception as e:  # noqa: BLE001 (any transfer error, reported by name)
                    errors.append(s3_error(e, 'CopyObject (fixing Content-Type/Cache-Control)', self.describe(d['key'])))
                    continue
                self._count('copy')
                self.fixed.append(d['key'])
                self._learnt[d['key']] = (d['expected_content_type'], d['expected_cache_control'])
                self._remember_written(d['key'], d['size'])
        if errors:
            raise errors[0]


def _is_number(text):
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False
