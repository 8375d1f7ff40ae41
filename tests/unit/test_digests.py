# -*- coding: utf-8 -*-
"""Digest parsing (OCI grammar, registered algorithms) and streaming verification."""
import hashlib
import io

import pytest

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    ALGORITHMS, Digest, DigestError, VerificationError, Verifier, copy_verified, digest_bytes,
    parse_digest, verify_file)

EMPTY256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
HELLO = b'hello world\n'
HELLO256 = 'sha256:' + hashlib.sha256(HELLO).hexdigest()
HELLO512 = 'sha512:' + hashlib.sha512(HELLO).hexdigest()


def test_parse_sha256():
    d = parse_digest(EMPTY256)
    assert d == Digest('sha256', EMPTY256[7:])
    assert str(d) == EMPTY256
    assert d.variables() == {'digest': EMPTY256, 'algorithm': 'sha256', 'encoded': EMPTY256[7:]}
    assert parse_digest(d) is d


def test_parse_sha512():
    assert str(parse_digest(HELLO512)) == HELLO512
    assert ALGORITHMS == {'sha256': 64, 'sha512': 128}


@pytest.mark.parametrize('text', [
    'multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8',
    'sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564',
    'blake3:' + 'a' * 64,
    'sha384:' + 'a' * 96,
    'sha-256:' + 'a' * 64,
])
def test_wellformed_but_unsupported(text):
    with pytest.raises(DigestError, match="unsupported algorithm '%s'" % text.split(':')[0].replace('+', r'\+')):
        parse_digest(text)


@pytest.mark.parametrize('text', [
    '', 'sha256', 'sha256:', ':abc', 'SHA256:' + 'a' * 64, 'sha256::' + 'a' * 64,
    'sha256:' + 'a' * 64 + '\n', ' sha256:' + 'a' * 64, 'sha256:a b', 'sha256:abc/def',
    'sha+:' + 'a' * 64, '+sha:abc', 'sha..256:abc', 'sha256:' + 'a' * 63 + '%',
])
def test_malformed(text):
    with pytest.raises(DigestError, match='malformed digest'):
        parse_digest(text)


@pytest.mark.parametrize('text', [
    'sha256:' + 'a' * 63, 'sha256:' + 'a' * 65, 'sha256:' + 'A' * 64, 'sha256:' + 'g' * 64,
    'sha512:' + 'a' * 64, 'sha256:' + 'a' * 62 + '==',
])
def test_registered_algorithm_needs_lowercase_hex_of_right_length(text):
    with pytest.raises(DigestError) as e:
        parse_digest(text)
    assert text in str(e.value)


@pytest.mark.parametrize('value', [None, 42, b'sha256:' + b'a' * 64])
def test_not_a_string(value):
    with pytest.raises(DigestError, match='malformed'):
        parse_digest(value)


def test_digest_bytes():
    assert digest_bytes(b'') == EMPTY256
    assert digest_bytes(HELLO, 'sha512') == HELLO512
    with pytest.raises(DigestError, match="unsupported algorithm 'md5'"):
        digest_bytes(b'', 'md5')


def test_verifier_accepts_exact_content_in_chunks():
    v = Verifier(HELLO256, len(HELLO), 'greeting')
    for i in range(len(HELLO)):
        v.update(HELLO[i:i + 1])
    assert v.finish() == len(HELLO)


def test_verifier_fails_as_soon_as_too_long():
    v = Verifier(HELLO256, 5, 'greeting')
    v.update(b'hello')
    with pytest.raises(VerificationError, match='greeting: size mismatch: expected 5 bytes, got more'):
        v.update(b'!')


def test_verifier_short_content():
    v = Verifier(HELLO256, len(HELLO), 'greeting')
    v.update(b'hello')
    with pytest.raises(VerificationError, match='greeting: size mismatch: expected 12 bytes, got 5'):
        v.finish()


def test_verifier_digest_mismatch_names_both():
    v = Verifier(HELLO256, len(HELLO), 'greeting')
    v.update(b'HELLO WORLD\n')
    with pytest.raises(VerificationError) as e:
        v.finish()
    message = str(e.value)
    assert message.startswith('greeting: digest mismatch')
    assert HELLO256 in message and digest_bytes(b'HELLO WORLD\n') in message


@pytest.mark.parametrize('size', [-1, True, 1.0, '12'])
def test_verifier_rejects_bad_size(size):
    with pytest.raises(VerificationError, match='greeting: invalid expected size'):
        Verifier(HELLO256, size, 'greeting')


def test_verifier_rejects_bad_digest():
    with pytest.raises(DigestError):
        Verifier('md5:abc', 1, 'greeting')


def test_verify_file(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / 'blob'
    path.write_bytes(data)
    verify_file(str(path), digest_bytes(data), len(data), chunk_size=4096)
    verify_file(str(path), digest_bytes(data, 'sha512'), len(data))
    with pytest.raises(VerificationError, match='%s: size mismatch' % path):
        verify_file(str(path), digest_bytes(data), len(data) - 1, chunk_size=4096)
    with pytest.raises(VerificationError, match='%s: digest mismatch' % path):
        verify_file(str(path), EMPTY256, len(data))
    with pytest.raises(VerificationError, match='my blob: cannot read'):
        verify_file(str(tmp_path / 'absent'), EMPTY256, 0, what='my blob')


def test_verify_empty_file(tmp_path):
    path = tmp_path / 'empty'
    path.write_bytes(b'')
    verify_file(str(path), EMPTY256, 0)


class NoReadinto:
    """A file object that only has read(), like some HTTP bodies."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, n=-1):
        return self._f.read(n)


@pytest.mark.parametrize('wrap', [io.BytesIO, NoReadinto])
def test_copy_verified(wrap):
    data = b'x' * 3000 + b'y'
    dst = io.BytesIO()
    assert copy_verified(wrap(data), dst, digest_bytes(data), len(data), 'upload', chunk_size=1000) == len(data)
    assert dst.getvalue() == data


def test_copy_verified_writes_nothing_past_the_size():
    dst = io.BytesIO()
    with pytest.raises(VerificationError, match='upload: size mismatch'):
        copy_verified(io.BytesIO(b'a' * 2500), dst, digest_bytes(b'a' * 2000), 2000, 'upload', chunk_size=1000)
    assert dst.getvalue() == b'a' * 2000


def test_copy_verified_digest_mismatch():
    with pytest.raises(VerificationError, match='upload: digest mismatch'):
        copy_verified(io.BytesIO(b'abc'), io.BytesIO(), EMPTY256, 3, 'upload')
