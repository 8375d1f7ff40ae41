# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 store's metadata ledger: finding objects with the wrong headers without a HEAD each.

The metadata ledger
-------------------
LIST gives key, size, ETag and LastModified, but not Content-Type or
Cache-Control; only HEAD (or GET) does. S3 cannot change an object's metadata
in place: any change (a PUT, or a copy onto itself as ``aws s3 cp
--metadata-directive REPLACE`` does) writes a new object with a new
LastModified. So the store keeps a private *ledger* object,
``<prefix>.oci-discovery/s3-ledger.json``, recording for each CAS object the
ETag, size and LastModified at which its Content-Type, Cache-Control and
Content-Encoding were last seen to be right (the registry view's objects under
``v2/<name>/`` too, checked against their exact headers) (from this store's own writes or a
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

``MetadataLedger`` is the part of ``_s3.S3Store`` that keeps the ledger; it
uses the store's client, listings and conditional writes.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json

from ansible_collections.oci.discovery.plugins.module_utils._s3_errors import AWS_ERRORS, S3Error, s3_error
from ansible_collections.oci.discovery.plugins.module_utils._stores import STATE_DIR

MIB = 1024 * 1024
LEDGER_KEY = STATE_DIR + '/s3-ledger.json'
LEDGER_FORMAT = 'oci.discovery/s3-ledger/v1'
MAX_LEDGER_BYTES = 256 * MIB
LIST_PAGE = 1000


def listed_time(value):
    """A LastModified from LIST as text (what the ledger compares)."""
    try:
        return '%.3f' % value.timestamp()
    except AttributeError:
        return str(value)


@contextlib.contextmanager
def thread_pool(workers):
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


class MetadataLedger:
    """Ledger bookkeeping of ``S3Store`` (see the module docstring)."""

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

    def check_metadata(self, blobs):
        """Which existing blobs have the wrong headers. ``blobs``: the plan's dicts (key, mediaType).

        An item with ``headers`` (Content-Type, Cache-Control) is checked against
        those instead of a blob's (the registry view's objects).

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
            expected = tuple(blob['headers']) if blob.get('headers') else self.blob_headers(blob.get('mediaType'))
            entry = ledger.get(key)
            if entry and entry[0] == etag and entry[1] == size and entry[2] == last_modified:
                if (entry[3], entry[4]) != expected:
                    drifted.append(_drift(key, size, etag, (entry[3], entry[4]), expected))
                continue
            to_head.append((blob, expected, size, etag))
        if to_head:
            with thread_pool(self.max_concurrency) as pool:
                heads = list(pool.map(lambda item: self._head(item[0]['key']), to_head))
            for (blob, expected, size, etag), head in zip(to_head, heads):
                key = blob['key']
                current = (head['content_type'], head['cache_control'])
                if current != expected or head['content_encoding']:
                    d = _drift(key, size, etag, current, expected)
                    d['metadata'] = head['metadata']
                    d['content_encoding'] = head['content_encoding']
                    drifted.append(d)
                else:
                    self._learnt[key] = expected
        order = dict((b['key'], i) for i, b in enumerate(blobs))
        drifted.sort(key=lambda d: order[d['key']])
        return drifted

    def save_ledger(self):
        """Record what this store learnt about objects' headers (a conditional PUT; no-op when nothing new).

        Objects written in this run are listed again to learn their new ETag
        and LastModified: one LIST per object when few, else the prefixes this
        run listed that hold them (``oci-cas/``, ``v2/<name>/``), each once.
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
            objects.update(self._relist(written))
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
            self._read_modify_write(LEDGER_KEY, update, ('application/json', 'no-store'), MAX_LEDGER_BYTES, acl=False,
                                    fix_headers=False)
        except S3Error as e:
            self.warnings.append('%s: not updated (%s); the next run checks the new objects with HEAD'
                                 % (self.describe(LEDGER_KEY), e))
            return False
        self._learnt = {}
        return True

    def _relist(self, keys):
        """LIST again the smallest set of this run's listed prefixes holding ``keys`` (others one LIST each)."""
        full = dict((key, self.object_key(key)) for key in keys)
        covering = set()
        for key in keys:
            holders = [p for p in self._listings if full[key].startswith(p)]
            if holders:
                covering.add(min(holders, key=len))
        covering = set(p for p in covering if not any(p != q and p.startswith(q) for q in covering))
        for listed in covering:
            for other in [p for p in self._listings if p.startswith(listed)]:
                del self._listings[other]
        objects = {}
        for listed in sorted(covering):
            objects.update(self._list_prefix(listed[len(self.prefix):]))
        for key in keys:
            if not any(full[key].startswith(p) for p in covering):
                objects.update(self._list_one(key))
        return objects

    def _list_one(self, key):
        full = self.object_key(key)
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        except AWS_ERRORS as e:
            raise s3_error(e, 'ListObjectsV2', self.describe(key))
        self._count('list_pages')
        found = {}
        for obj in page.get('Contents') or ():
            if obj['Key'] == full:
                found[key] = (obj['Size'], obj.get('ETag'), listed_time(obj.get('LastModified')))
        return found


def _drift(key, size, etag, current, expected):
    content_type, cache_control = current
    return {'key': key, 'size': size, 'etag': etag, 'content_type': content_type, 'cache_control': cache_control,
            'expected_content_type': expected[0], 'expected_cache_control': expected[1]}


def drifted_headers(headers, content_type, cache_control):
    return bool(headers) and (headers.get('content_type') != content_type
                              or headers.get('cache_control') != cache_control
                              or bool(headers.get('content_encoding')))


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


__all__ = ['LEDGER_FORMAT', 'LEDGER_KEY', 'LIST_PAGE', 'MAX_LEDGER_BYTES', 'MetadataLedger', 'drifted_headers',
           'listed_time', 'thread_pool']
