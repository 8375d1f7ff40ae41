# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""botocore errors, classified and translated into messages that name the object.

``AWS_ERRORS`` catches what botocore raises (and nothing when botocore is
missing); ``is_boto_error(codes, statuses)`` is amazon.aws's
``is_boto3_error_code`` pattern: an exception class for an ``except`` clause
that matches only the ClientErrors with one of the codes or HTTP statuses.
``translated(operation, where)`` turns anything else into an ``S3Error``
naming the bucket or object, the operation, the code and the status, with a
hint for the usual causes.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import sys

from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._stores import StoreError

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (ClientError, BotoCoreError)
except ImportError:  # the module reports the missing library
    BotoCoreError = ClientError = None
    AWS_ERRORS = ()


class S3Error(StoreError):
    """An S3 request that failed; the message names the bucket/key, the operation and the status."""

    def __init__(self, message, code=None, status=None):
        super(S3Error, self).__init__(message)
        self.code = code
        self.status = status


class _NeverRaised(Exception):
    """Matches nothing: what ``is_boto_error`` gives for an error it does not classify."""


def error_details(exc):
    """(code, HTTP status, message) of a botocore error; (None, None, str) otherwise."""
    response = getattr(exc, 'response', None) or {}
    error = response.get('Error') or {}
    status = (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')
    return error.get('Code'), status, error.get('Message') or str(exc)


def is_boto_error(codes=(), statuses=()):
    """For ``except``: ClientError when the error being handled has one of ``codes`` or ``statuses``."""
    exc = sys.exc_info()[1]
    if ClientError is not None and isinstance(exc, ClientError):
        code, status, dummy = error_details(exc)
        if code in codes or status in statuses:
            return ClientError
    return _NeverRaised


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


def s3_error(exc, operation, where):
    """An S3Error for ``exc`` naming ``where`` (an s3:// URL), the operation, the code and the status."""
    if isinstance(exc, StoreError):
        return exc
    code, status, message = error_details(exc)
    client_error = ClientError is not None and isinstance(exc, ClientError)
    if client_error and (not code or code == str(status)):
        detail = 'HTTP %s %s' % (status, message)   # a HEAD: no body, so no error code
    elif client_error:
        detail = '%s%s: %s' % (code, ' (HTTP %s)' % status if status else '', message)
    else:
        detail = message
    return S3Error('%s: %s failed: %s%s' % (where, operation, detail, _explain(code, status)),
                   code=code, status=status)


@contextlib.contextmanager
def translated(operation, where):
    """Raise botocore errors inside the block as ``S3Error`` (``s3_error``)."""
    try:
        yield
    except AWS_ERRORS as e:
        raise s3_error(e, operation, where)


def upload_error(exc, what, where):
    """The error to report for a failed upload of ``what`` (a blob) to ``where``: verification and
    store errors as they are."""
    if isinstance(exc, (VerificationError, StoreError)):
        return exc
    if isinstance(exc, AWS_ERRORS):
        return s3_error(exc, 'upload of %s' % what, where)
    if isinstance(exc, (OSError, ValueError)):
        return StoreError('%s (for %s): upload failed: %s' % (what, where, exc))
    return exc


def unsupported_condition(error):
    """Whether an S3Error says the store does not implement conditional writes."""
    if error.status == 501 or error.code == 'NotImplemented':
        return True
    text = str(error).lower()
    return error.status == 400 and ('if-match' in text or 'if-none-match' in text) and 'not' in text


__all__ = ['AWS_ERRORS', 'S3Error', 'error_details', 'is_boto_error', 's3_error', 'translated', 'unsupported_condition',
           'upload_error']
