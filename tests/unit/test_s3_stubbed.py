# -*- coding: utf-8 -*-
"""S3Store branches that only an S3 server reaches otherwise, against botocore's own Stubber.

Ceph RGW exercises these in tests/integration/test_s3_publish_layout.py (when a race happens);
here each branch is driven deterministically: a conditional PUT that loses (412) and merges
again, a 412 although the ETag is unchanged (the If-Match form the store wants), the fallback
for a store without conditional writes, and the ledger saved after a HEAD.
"""
import io
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ansible_collections.oci.discovery.plugins.module_utils._documents import MT_INDEX
from ansible_collections.oci.discovery.plugins.module_utils._s3 import BLOB_CACHE_CONTROL, DOCUMENT_CACHE_CONTROL, S3Store
from ansible_collections.oci.discovery.plugins.module_utils._s3_errors import S3Error
from ansible_collections.oci.discovery.plugins.module_utils._s3_ledger import LEDGER_FORMAT, LEDGER_KEY

BUCKET = 'site'
KEY = 'oci-index/app'
DOC_TYPE = MT_INDEX + '; charset=utf-8'


@pytest.fixture
def stubbed():
    client = boto3.client('s3', region_name='us-east-1', aws_access_key_id='AK', aws_secret_access_key='SK',
                          endpoint_url='http://127.0.0.1:9')
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def get_response(body, etag, content_type=DOC_TYPE, cache_control=DOCUMENT_CACHE_CONTROL):
    return {'Body': io.BytesIO(body), 'ETag': etag, 'ContentLength': len(body), 'ContentType': content_type,
            'CacheControl': cache_control}


def put_params(condition, key=KEY):
    params = {'Bucket': BUCKET, 'Key': key, 'Body': ANY, 'ContentType': DOC_TYPE,
              'CacheControl': DOCUMENT_CACHE_CONTROL}
    params.update(condition)
    return params


def append(tag):
    def update(raw):
        return (raw or b'') + tag
    return update


def planned_read_then_412(stubber, second_body, second_etag):
    """The planning GET (v1, ETag e1), a conditional PUT that loses, and the GET that follows it."""
    stubber.add_response('get_object', get_response(b'v1', '"e1"'), {'Bucket': BUCKET, 'Key': KEY})
    stubber.add_client_error('put_object', 'PreconditionFailed', http_status_code=412,
                             expected_params=put_params({'IfMatch': 'e1'}))
    stubber.add_response('get_object', get_response(second_body, second_etag), {'Bucket': BUCKET, 'Key': KEY})


def test_a_lost_conditional_put_is_read_again_and_merged(stubbed):
    client, stubber = stubbed
    planned_read_then_412(stubber, b'v2', '"e2"')
    stubber.add_response('put_object', {'ETag': '"e3"'}, put_params({'IfMatch': 'e2'}))
    store = S3Store(client, BUCKET)
    store.read(KEY, 1024)                                 # planning read v1
    before, after = store.update_document(KEY, append(b'+mine'), MT_INDEX, 1024)
    assert (before, after) == (b'v1', b'v2+mine')        # the concurrent writer's v2 is kept
    assert store.requests['get'] == 2 and store.requests['put'] == 2


def test_a_412_with_the_etag_unchanged_switches_the_if_match_form(stubbed):
    client, stubber = stubbed
    planned_read_then_412(stubber, b'v1', '"e1"')
    stubber.add_response('put_object', {'ETag': '"e2"'}, put_params({'IfMatch': '"e1"'}))
    store = S3Store(client, BUCKET)
    store.read(KEY, 1024)
    assert store.update_document(KEY, append(b'+mine'), MT_INDEX, 1024) == (b'v1', b'v1+mine')
    assert store.conditional_writes == 'auto' and not store.warnings


def test_a_store_without_conditional_writes_falls_back_and_reads_back(stubbed):
    client, stubber = stubbed
    stubber.add_client_error('get_object', 'NoSuchKey', http_status_code=404, expected_params={'Bucket': BUCKET, 'Key': KEY})
    stubber.add_client_error('put_object', 'NotImplemented', http_status_code=501,
                             expected_params=put_params({'IfNoneMatch': '*'}))
    stubber.add_response('put_object', {'ETag': '"e1"'}, put_params({}))
    stubber.add_response('get_object', get_response(b'+mine', '"e1"'), {'Bucket': BUCKET, 'Key': KEY})
    store = S3Store(client, BUCKET)
    assert store.read(KEY, 1024) is None
    assert store.update_document(KEY, append(b'+mine'), MT_INDEX, 1024) == (None, b'+mine')
    assert store.conditional_writes == 'never'
    assert 'does not support conditional writes' in store.warnings[0] and 'NotImplemented' in store.warnings[0]


def test_always_never_falls_back(stubbed):
    client, stubber = stubbed
    stubber.add_client_error('get_object', 'NoSuchKey', http_status_code=404, expected_params={'Bucket': BUCKET, 'Key': KEY})
    stubber.add_client_error('put_object', 'NotImplemented', http_status_code=501,
                             expected_params=put_params({'IfNoneMatch': '*'}))
    store = S3Store(client, BUCKET, conditional_writes='always')
    store.read(KEY, 1024)
    with pytest.raises(S3Error, match=r's3://site/oci-index/app: PutObject failed: NotImplemented \(HTTP 501\)'):
        store.update_document(KEY, append(b'+mine'), MT_INDEX, 1024)


def test_the_ledger_records_what_a_head_learnt(stubbed):
    client, stubber = stubbed
    blob = {'key': 'oci-cas/sha256/ab/abcd', 'digest': 'sha256:' + 'ab' * 32, 'size': 5,
            'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip'}
    listing = {'IsTruncated': False, 'Contents': [{'Key': blob['key'], 'Size': 5, 'ETag': '"b1"',
                                                   'LastModified': '2026-12-01T00:00:00Z'}]}
    stubber.add_response('list_objects_v2', listing, {'Bucket': BUCKET, 'Prefix': 'oci-cas/sha256/ab/', 'MaxKeys': 1000})
    stubber.add_client_error('get_object', 'NoSuchKey', http_status_code=404,
                             expected_params={'Bucket': BUCKET, 'Key': LEDGER_KEY})
    stubber.add_response('head_object', {'ContentType': blob['mediaType'], 'CacheControl': BLOB_CACHE_CONTROL,
                                         'ETag': '"b1"', 'ContentLength': 5}, {'Bucket': BUCKET, 'Key': blob['key']})
    saved = {}
    stubber.add_response('put_object', {'ETag': '"l1"'},
                         {'Bucket': BUCKET, 'Key': LEDGER_KEY, 'Body': ANY, 'ContentType': 'application/json',
                          'CacheControl': 'no-store', 'IfNoneMatch': '*'})
    client.meta.events.register('before-parameter-build.s3.PutObject', lambda params, **kw: saved.update(body=params['Body']))
    store = S3Store(client, BUCKET)
    assert store.stat([blob['key']]) == {blob['key']: 5}
    assert store.inspect([blob], {}) == []                 # right headers: nothing to fix
    assert store.requests['head'] == 1
    store.finish()                                         # the ledger is saved
    ledger = json.loads(saved['body'])
    assert ledger['format'] == LEDGER_FORMAT
    entry = ledger['objects'][blob['key']]
    assert entry[0] == '"b1"' and entry[1] == 5 and entry[3:] == [blob['mediaType'], BLOB_CACHE_CONTROL]
    store.finish()                                         # nothing new learnt: no second PUT
