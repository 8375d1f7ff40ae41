# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI content digests: parsing and streaming verification.

The grammar is the OCI image spec's (descriptor.md, "Digests")::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

Only the registered algorithms sha256 and sha512 are supported; their encoded
part is lowercase hex of a fixed length. Verification streams in bounded
memory and reads every byte once; ``copy_range_verified`` lets the kernel copy a
file and verifies the copy.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import io
import os
import re
from collections import namedtuple

ALGORITHMS = {'sha256': 64, 'sha512': 128}
CHUNK_SIZE = 1024 * 1024

_GRAMMAR = re.compile(r'[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z')
_HEX = re.compile(r'[a-f0-9]+\Z')


class DigestError(ValueError):
    """A digest that is malformed or uses an unsupported algorithm."""


class VerificationError(ValueError):
    """Content whose size or digest differs from what its descriptor says."""


class Digest(namedtuple('Digest', 'algorithm encoded')):
    """A parsed digest; ``str()`` gives back ``algorithm:encoded``."""

    __slots__ = ()

    def __str__(self):
        return '%s:%s' % (self.algorithm, self.encoded)

    def variables(self) -> dict:
        """The CAS template variables for this digest."""
        return {'digest': str(self), 'algorithm': self.algorithm, 'encoded': self.encoded}

    def hasher(self):
        """A fresh hashlib object for this digest's algorithm."""
        return hashlib.new(self.algorithm)


def parse_digest(text: str) -> 'Digest':
    """Parse ``text`` (or pass a Digest through); raise DigestError naming it."""
    if isinstance(text, Digest):
        return text
    if not isinstance(text, str):
        raise DigestError('malformed digest %r: not a string' % (text,))
    if not _GRAMMAR.match(text):
        raise DigestError('malformed digest %r: expected algorithm:encoded' % text)
    algorithm, encoded = text.split(':', 1)
    if algorithm not in ALGORITHMS:
        raise DigestError('unsupported algorithm %r in digest %r (supported: %s)'
                          % (algorithm, text, ', '.join(sorted(ALGORITHMS))))
    length = ALGORITHMS[algorithm]
    if len(encoded) != length or not _HEX.match(encoded):
        raise DigestError('malformed digest %r: a %s digest is %d lowercase hex characters'
                          % (text, algorithm, length))
    return Digest(algorithm, encoded)


def digest_bytes(data: bytes, algorithm: str = 'sha256') -> str:
    """Return the digest string (``algorithm:hex``) of ``data``."""
    if algorithm not in ALGORITHMS:
        raise DigestError('unsupported algorithm %r (supported: %s)'
                          % (algorithm, ', '.join(sorted(ALGORITHMS))))
    return '%s:%s' % (algorithm, hashlib.new(algorithm, data).hexdigest())


def _check_size(size, what):
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise VerificationError('%s: invalid expected size %r' % (what, size))
    return size


class Verifier:
    """Check content fed in chunks against an expected digest and size.

    ``update()`` fails as soon as more than ``size`` bytes arrive; ``finish()``
    fails on short content or a digest mismatch. Messages name ``what``.
    """

    def __init__(self, digest, size, what):
        self.what = what
        self.digest = parse_digest(digest)
        self.size = _check_size(size, what)
        self.count = 0
        self._hash = self.digest.hasher()

    def update(self, chunk: bytes) -> None:
        """Feed the next chunk (bytes, bytearray or memoryview)."""
        self.count += len(chunk)
        if self.count > self.size:
            raise VerificationError('%s: size mismatch: expected %d bytes, got more'
                                    % (self.what, self.size))
        self._hash.update(chunk)

    def finish(self):
        """Raise unless exactly ``size`` bytes with the right digest were fed; return the count."""
        if self.count != self.size:
            raise VerificationError('%s: size mismatch: expected %d bytes, got %d'
                                    % (self.what, self.size, self.count))
        actual = '%s:%s' % (self.digest.algorithm, self._hash.hexdigest())
        if actual != str(self.digest):
            raise VerificationError('%s: digest mismatch: expected %s, got %s'
                                    % (self.what, self.digest, actual))
        return self.count


def _chunks(fileobj, chunk_size):
    """Yield memoryviews of successive chunks, reusing one buffer when readinto exists."""
    readinto = getattr(fileobj, 'readinto', None)
    if readinto is None:
        while True:
            data = fileobj.read(chunk_size)
            if not data:
                return
            yield memoryview(data)
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    while True:
        n = readinto(view)
        if not n:
            return
        yield view[:n]


def verify_file(path: str, digest: str, size: int, chunk_size: int = CHUNK_SIZE, what: str = None):
    """Stream the file at ``path`` through a Verifier (bounded memory, each byte read once)."""
    try:
        with open(path, 'rb', buffering=0) as f:
            verify_fileobj(f, digest, size, chunk_size, what or path)
    except OSError as e:
        raise VerificationError('%s: cannot read: %s' % (what or path, e.strerror or e))


def verify_fileobj(fileobj, digest, size, chunk_size=CHUNK_SIZE, what=None):
    """Read an open file to its end through a Verifier; VerificationError naming ``what``."""
    verifier = Verifier(digest, size, what or 'file')
    try:
        for chunk in _chunks(fileobj, chunk_size):
            verifier.update(chunk)
    except OSError as e:
        raise VerificationError('%s: cannot read: %s' % (what, e.strerror or e))
    return verifier.finish()


def copy_verified(src_fileobj, dst_fileobj, digest: str, size: int, what: str, chunk_size: int = CHUNK_SIZE) -> int:
    """Copy ``src_fileobj`` to ``dst_fileobj`` while verifying it; return the byte count.

    Nothing beyond ``size`` bytes is written. The caller discards the
    destination when this raises.
    """
    verifier = Verifier(digest, size, what)
    for chunk in _chunks(src_fileobj, chunk_size):
        verifier.update(chunk)
        dst_fileobj.write(chunk)
    return verifier.finish()


# copy_file_range(2) moves this much per call (the kernel copies, nothing passes through Python).
RANGE_CHUNK = 64 * 1024 * 1024
# Where copy_file_range is missing or refuses this pair of files (another file system, an old kernel):
# the caller copies through a buffer instead.
_NO_RANGE_COPY = frozenset(getattr(errno, name) for name in ('EXDEV', 'ENOSYS', 'EINVAL', 'EOPNOTSUPP', 'EBADF')
                           if hasattr(errno, name))


def copy_range_verified(src_fd, dst_fd, digest: str, size: int, what: str, chunk_size: int = CHUNK_SIZE):
    """Copy the regular file ``src_fd`` (from its position) into the empty file ``dst_fd`` with
    ``copy_file_range`` (the kernel copies, or shares the extents where the file system can), then
    verify what was written by reading ``dst_fd`` back; the byte count.

    None when the kernel cannot copy between these two files (nothing was written: copy through a
    buffer with ``copy_verified`` instead). At most ``size + 1`` bytes are copied, so a longer
    source is a size mismatch. The caller discards the destination when this raises.
    """
    copy = getattr(os, 'copy_file_range', None)
    if copy is None:
        return None
    copied = 0
    while copied <= size:
        try:
            n = copy(src_fd, dst_fd, min(RANGE_CHUNK, size + 1 - copied))
        except OSError as e:
            if copied == 0 and e.errno in _NO_RANGE_COPY:
                return None
            raise
        if not n:
            break
        copied += n
    os.lseek(dst_fd, 0, os.SEEK_SET)
    with io.FileIO(dst_fd, 'r', closefd=False) as written:
        return verify_fileobj(written, digest, size, chunk_size, what)
