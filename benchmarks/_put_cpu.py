# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client CPU per small-blob PUT, in a fresh process (part of the S3 benchmark).

    python -m benchmarks._put_cpu SRC BUCKET --mode direct|pipeline|put_object [--threads 8]

SRC is an OCI image layout; every blob reachable from its index.json is uploaded into
BUCKET (which must be empty), and the process's own CPU time (user + system) over the
uploads alone is printed as JSON, per blob. Endpoint, keys and CA bundle come from the
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ..., AWS_CA_BUNDLE).

  direct      S3Store.put_blobs with the direct path (what s3_publish_layout does)
  pipeline    S3Store.put_blobs through the client pipeline (direct_puts=False)
  put_object  a bare loop of client.put_object on the same bytes (no verification), one thread
  signed      a bare loop of PUTs signed by botocore's S3SigV4Auth and sent over one urllib3 pool
              (no verification, no retries, no error parsing), one thread: the floor issue 14
              measured at 0.5 ms against put_object's 1.2 ms
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import resource
import sys
import time

# The import makes the collection importable.
from benchmarks import _common  # noqa: F401  pylint: disable=unused-import


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('src')
    parser.add_argument('bucket')
    parser.add_argument('--mode', choices=('direct', 'pipeline', 'put_object', 'signed'), required=True)
    parser.add_argument('--threads', type=int, default=8)
    args = parser.parse_args()

    import boto3
    from botocore.config import Config
    from ansible_collections.oci.discovery.plugins.modules.s3_publish_layout import BOTOCORE_DEFAULTS
    from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
    from ansible_collections.oci.discovery.plugins.module_utils._s3 import S3Store

    client = boto3.session.Session().client('s3', config=Config(**BOTOCORE_DEFAULTS))
    layout = Layout(args.src)
    blobs = [dict(d, key='oci-cas/%s/%s/%s' % (d['digest'].split(':')[0], d['digest'][7:9], d['digest'][7:]))
             for d in layout.walk(layout.index['manifests'])]
    blobs = list(dict((b['digest'], b) for b in blobs).values())
    store = S3Store(client, args.bucket, max_concurrency=args.threads, direct_puts=args.mode == 'direct')

    class Source:
        @staticmethod
        def open(blob):
            return layout.open_blob(blob['digest'])

    start, wall = _cpu(), time.monotonic()
    if args.mode == 'put_object':
        for blob in blobs:
            with Source.open(blob) as handle:
                data = handle.read()
            client.put_object(Bucket=args.bucket, Key=blob['key'], Body=data, ContentType=blob['mediaType'],
                              CacheControl=store.blob_cache_control)
    elif args.mode == 'signed':
        _signed_loop(client, args.bucket, blobs, Source, store.blob_cache_control)
    else:
        store.put_blobs(blobs, Source)
    cpu, wall = _cpu() - start, time.monotonic() - wall
    print(json.dumps({'blobs': len(blobs), 'cpu_ms_per_blob': 1000.0 * cpu / len(blobs),
                      'wall_ms_per_blob': 1000.0 * wall / len(blobs),
                      'direct': bool(store.blob_puts().direct) if args.mode != 'put_object' else False,
                      'fallback_reason': store.blob_puts().reason if args.mode == 'direct' else None}))
    return 0


def _signed_loop(client, bucket, blobs, source, cache_control):
    """PUT each blob signed with S3SigV4Auth over a urllib3 pool: the lower bound of a botocore-signed PUT."""
    import urllib3
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    endpoint = client.meta.endpoint_url.rstrip('/')
    region = client.meta.region_name
    credentials = client._request_signer._credentials.get_frozen_credentials()
    ca = client._endpoint.http_session._verify
    pool = urllib3.PoolManager(maxsize=1, cert_reqs='CERT_REQUIRED' if ca else 'CERT_NONE',
                               ca_certs=ca if isinstance(ca, str) else None)
    for blob in blobs:
        with source.open(blob) as handle:
            data = handle.read()
        request = AWSRequest(method='PUT', url='%s/%s/%s' % (endpoint, bucket, blob['key']), data=data,
                             headers={'Content-Type': blob['mediaType'], 'Cache-Control': cache_control})
        S3SigV4Auth(credentials, 's3', region).add_auth(request)
        response = pool.request('PUT', request.url, body=data, headers=dict(request.headers.items()))
        if response.status >= 300:
            raise RuntimeError('PUT %s: HTTP %d' % (request.url, response.status))


if __name__ == '__main__':
    sys.exit(main())
