# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The "raw boto3" anchor of the S3 benchmark: what a user writes in twenty lines.

    python benchmarks/_boto3_loop.py SRC BUCKET [--threads 16] [--checksums default|when_required]

One paginated LIST of the bucket, then one PUT per file of SRC whose key is missing or has
another size, from a pool of THREADS threads sharing one client. No Content-Type is set
(as in most hand-written loops). Endpoint, keys and CA bundle come from the environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ..., AWS_CA_BUNDLE), as for any boto3 program.
``--checksums default`` keeps boto3's default request checksums, which RGW refuses over
https (aws-chunked trailers); ``when_required`` is the usual work-around.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('src')
    parser.add_argument('bucket')
    parser.add_argument('--threads', type=int, default=16)
    parser.add_argument('--checksums', choices=('default', 'when_required'), default='default')
    args = parser.parse_args()

    import boto3
    from botocore.config import Config
    options = {'max_pool_connections': args.threads}
    if args.checksums == 'when_required':
        options.update(request_checksum_calculation='when_required', response_checksum_validation='when_required')
    client = boto3.session.Session().client('s3', config=Config(**options))

    existing = {}
    for page in client.get_paginator('list_objects_v2').paginate(Bucket=args.bucket):
        for item in page.get('Contents', []):
            existing[item['Key']] = item['Size']
    todo = []
    for directory, dummy, names in os.walk(args.src):
        for name in names:
            path = os.path.join(directory, name)
            key = os.path.relpath(path, args.src)
            if existing.get(key) != os.path.getsize(path):
                todo.append((path, key))

    def put(item):
        path, key = item
        with open(path, 'rb') as handle:
            client.put_object(Bucket=args.bucket, Key=key, Body=handle)

    with ThreadPoolExecutor(args.threads) as pool:
        for dummy in pool.map(put, todo):
            pass
    print(json.dumps({'listed': len(existing), 'uploaded': len(todo)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
