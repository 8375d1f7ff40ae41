# -*- coding: utf-8 -*-
"""The pure parts of the S3 store: the verifying reader, the ledger format, header checks, errors.

Everything that talks to S3 is tested against Ceph RGW in tests/integration/test_s3_publish_layout.py.
"""
import hashlib
import io

import pytest
from botocore.exceptions import ClientError

from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._s3 import (
    BLOB_CACHE_CONTROL, DOCUMENT_CACHE_CONTROL, S3Store, _VerifyingReader)
from ansible_collections.oci.discovery.plugins.module_utils._s3_errors import (
    S3Error, _explain, error_details, unsupported_condition as _unsupported_condition)
from ansible_collections.oci.discovery.plugins.module_utils._s3_ledger import (
    LEDGER_FORMAT, _dump_ledger, _parse_ledger, drifted_headers as _drifted)
from ansible_collections.oci.discovery.plugins.module_utils._stores import StoreError

DATA = bytes(range(256)) * 40   # 10240 bytes
DIGEST = 'sha256:' + hashlib.sha256(DATA).hexdigest()


def read_all(reader, amount):
    chunks = []
    while True:
        chunk = reader.read(amount)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize('amount', [1, 7, 1000, 10240, 10241, 1 << 20, -1, None])
def test_reader_passes_good_content_in_any_chunking(amount):
    reader = _VerifyingReader(io.BytesIO(DATA), DIGEST, len(DATA), 'blob')
    assert read_all(reader, amount) == DATA
    assert reader.read(10) == b''


class Trickle(io.RawIOBase):
    """A file that returns at most 3 bytes per read (short reads are legal)."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, n=-1):
        return self.data.read(min(3, n) if n is not None and n >= 0 else 3)


def test_reader_completes_short_reads_of_the_underlying_file():
    # s3transfer reads a single-PUT body with one read(): it must get every byte.
    reader = _VerifyingReader(Trickle(DATA), DIGEST, len(DATA), 'blob')
    assert reader.read() == DATA


@pytest.mark.parametrize('content, message', [
    (DATA[:-1], 'expected 10240 bytes, got 10239'),
    (DATA + b'x', 'expected 10240 bytes, got more'),
    (b'\xff' + DATA[1:], 'digest mismatch'),
    (b'', 'got 0'),
])
@pytest.mark.parametrize('amount', [-1, 4096])
def test_reader_refuses_wrong_content_before_the_end(content, message, amount):
    reader = _VerifyingReader(io.BytesIO(content), DIGEST, len(DATA), 'blob sha256:x (for s3://b/k)')
    with pytest.raises(VerificationError) as caught:
        read_all(reader, amount)
    assert message in str(caught.value)
    assert 'blob sha256:x (for s3://b/k)' in str(caught.value)


def test_reader_is_not_seekable_so_s3transfer_reads_it_once_in_order():
    reader = _VerifyingReader(io.BytesIO(DATA), DIGEST, len(DATA), 'blob')
    assert reader.readable() and not reader.seekable()
    assert not hasattr(reader, 'seek')


def test_ledger_round_trip_and_unreadable_ledgers():
    entries = {'oci-cas/sha256/ab/abc': ['"etag"', 12, '1700000000.123', 'application/x', BLOB_CACHE_CONTROL]}
    assert _parse_ledger(_dump_ledger(entries)) == entries
    assert _parse_ledger(b'not json') is None
    assert _parse_ledger(b'\xff\xfe') is None
    assert _parse_ledger(b'{"format": "other", "objects": {}}') is None
    assert _parse_ledger(b'[]') is None
    # Malformed entries are dropped, the rest kept.
    raw = ('{"format": "%s", "objects": {"a": [1, 2], "b": ["e", 1, "t", "c", "cc"]}}' % LEDGER_FORMAT).encode()
    assert _parse_ledger(raw) == {'b': ['e', 1, 't', 'c', 'cc']}


def test_header_drift():
    ct = 'application/vnd.oci.image.index.v1+json; charset=utf-8'
    good = {'content_type': ct, 'cache_control': DOCUMENT_CACHE_CONTROL, 'content_encoding': None}
    assert not _drifted(good, ct, DOCUMENT_CACHE_CONTROL)
    assert _drifted(dict(good, content_type='application/vnd.oci.image.index.v1+json'), ct, DOCUMENT_CACHE_CONTROL)
    assert _drifted(dict(good, cache_control=None), ct, DOCUMENT_CACHE_CONTROL)
    # A Content-Encoding would make clients decompress a gzip layer and break its digest.
    assert _drifted(dict(good, content_encoding='gzip'), ct, DOCUMENT_CACHE_CONTROL)
    assert not _drifted(None, ct, DOCUMENT_CACHE_CONTROL)


def client_error(code, status, message=None):
    return ClientError({'Error': {'Code': code, 'Message': message or code},
                        'ResponseMetadata': {'HTTPStatusCode': status}}, 'PutObject')


def test_error_details_and_hints():
    assert error_details(client_error('PreconditionFailed', 412)) == ('PreconditionFailed', 412, 'PreconditionFailed')
    assert 'secret_key' in _explain('SignatureDoesNotMatch', 403)
    assert 'secret_key' in _explain('403', 403)
    assert 'when_required' in _explain('MissingContentLength', 411)
    assert 'create it' in _explain('NoSuchBucket', 404)
    assert _explain('InternalError', 500) == ''


def test_unsupported_conditional_writes_are_recognised():
    assert _unsupported_condition(S3Error('x', code='NotImplemented', status=501))
    assert _unsupported_condition(S3Error('the If-Match header is not supported', code='InvalidArgument', status=400))
    assert not _unsupported_condition(S3Error('x', code='PreconditionFailed', status=412))
    assert not _unsupported_condition(S3Error('x', code='AccessDenied', status=403))


def test_store_names_objects_under_its_prefix():
    store = S3Store(None, 'site', prefix='/sites/example.com/')
    assert store.prefix == 'sites/example.com/'
    assert store.object_key('oci-index/app') == 'sites/example.com/oci-index/app'
    assert store.describe('oci-index/app') == 's3://site/sites/example.com/oci-index/app'
    assert S3Store(None, 'site').object_key('a/b') == 'a/b'
    assert store.blob_headers('application/vnd.oci.image.layer.v1.tar+gzip') == \
        ('application/vnd.oci.image.layer.v1.tar+gzip', BLOB_CACHE_CONTROL)
    assert store.document_headers('application/vnd.oci.ref-engines.v1+json') == \
        ('application/vnd.oci.ref-engines.v1+json; charset=utf-8', DOCUMENT_CACHE_CONTROL)
    with pytest.raises(StoreError):
        store.object_key('../escape')
    with pytest.raises(StoreError):
        S3Store(None, 'site', prefix='a/../b')
    with pytest.raises(StoreError):
        S3Store(None, 'site', conditional_writes='sometimes')
