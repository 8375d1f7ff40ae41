# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and validate an OCI image layout on disk.

``Layout(root)`` checks ``oci-layout`` and ``index.json`` when opened. Blobs
are only read through ``open_blob``, which refuses anything that is not a
regular file inside the layout (a symlink leading out of it, for example),
and checks the descriptor it opened, not just the name: the file read is the
file checked. The layout is trusted, so links inside it are followed.
``walk`` follows nested indexes and manifests; ``validate`` verifies the size
and digest of every reachable blob, reading each byte once, and only the
blobs that changed since a previous run verified them (``_record``: a record
per layout in the user's cache directory, keyed like git's index).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    CHUNK_SIZE, DigestError, VerificationError, Verifier, parse_digest, verify_fileobj)
from ansible_collections.oci.discovery.plugins.module_utils._documents import (
    INDEX_TYPES, MANIFEST_TYPES, REF_NAME, DocumentError, index_entries, load_json,
    validate_descriptor, validate_index, validate_manifest)
from ansible_collections.oci.discovery.plugins.module_utils._record import layout_record, unchanged
from ansible_collections.oci.discovery.plugins.module_utils._spec import (
    LAYOUT_VERSION, MAX_DOCUMENT_BYTES, MAX_INDEX_BYTES)

MAX_HEADER_BYTES = 64 * 1024            # oci-layout


class LayoutError(ValueError):
    """A layout that cannot be used; the message names the file, digest or tag."""


def _read_limited(path, limit, what):
    """Read a small file, refusing one larger than ``limit`` bytes."""
    try:
        with open(path, 'rb') as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise LayoutError('%s: missing' % what)
    except OSError as e:
        raise LayoutError('%s: cannot read: %s' % (what, e.strerror or e))
    if len(data) > limit:
        raise LayoutError('%s: larger than %d bytes' % (what, limit))
    return data


def _read_verified(f, digest, size, what):
    """Read a whole blob from the open file ``f`` while verifying its size and digest (each byte read once)."""
    verifier = Verifier(digest, size, what)
    buf = bytearray(size + 1)
    view = memoryview(buf)
    count = 0
    while True:
        n = f.readinto(view[count:count + CHUNK_SIZE])
        if not n:
            break
        verifier.update(view[count:count + n])
        count += n
    verifier.finish()
    return bytes(view[:count])


class Layout:
    """An OCI image layout directory (image-layout spec 1.0.0).

    ``root`` is the layout directory; ``index`` is its parsed, validated
    ``index.json``. Errors are LayoutError with a message naming the file,
    digest or tag.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self._real_root = os.path.realpath(self.root)
        self._documents = {}    # digest -> parsed manifest/index, verified when read
        self._verified = set()  # digests whose blob was verified
        self.hashed = 0         # blobs validate read and hashed (the others were recorded unchanged)
        if not os.path.isdir(self.root):
            raise LayoutError('%s: not a directory, so not an OCI image layout' % self.root)
        self._check_header()
        self.index = self._load(os.path.join(self.root, 'index.json'), MAX_INDEX_BYTES, validate_index)

    def _check_header(self):
        path = os.path.join(self.root, 'oci-layout')
        if not os.path.lexists(path):
            raise LayoutError('%s: missing, so %s is not an OCI image layout' % (path, self.root))
        header = self._load(path, MAX_HEADER_BYTES, None)
        if not isinstance(header, dict):
            raise LayoutError('%s: expected a JSON object' % path)
        version = header.get('imageLayoutVersion')
        if version != LAYOUT_VERSION:
            raise LayoutError('%s: unsupported imageLayoutVersion %r (supported: %s)'
                              % (path, version, LAYOUT_VERSION))

    def _load(self, path, limit, validator):
        """Load a JSON file of the layout itself (not a blob)."""
        self._inside(path, path)
        obj = _load_json(_read_limited(path, limit, path), path)
        try:
            return validator(obj, path) if validator else obj
        except DocumentError as e:
            raise LayoutError(str(e))

    def _inside(self, path, what):
        """Refuse a path that resolves outside the layout or is not a regular file; the file's os.lstat result."""
        real = os.path.realpath(path)
        if os.path.commonpath([self._real_root, real]) != self._real_root:
            raise LayoutError('%s: leads out of the layout %s (to %s)' % (what, self.root, real))
        try:
            st = os.lstat(real)     # links are resolved: one here is a change since (refused)
        except FileNotFoundError:
            raise LayoutError('%s: missing' % what)
        except OSError as e:
            raise LayoutError('%s: cannot stat: %s' % (what, e.strerror or e))
        if not stat.S_ISREG(st.st_mode):
            raise LayoutError('%s: not a regular file' % what)
        return st

    # -- tags ---------------------------------------------------------------

    def tags(self):
        """The distinct ref names of index.json, in index order."""
        tags = []
        for entry in self.index['manifests']:
            tag = (entry.get('annotations') or {}).get(REF_NAME)
            if tag is not None and tag not in tags:
                tags.append(tag)
        return tags

    def descriptors(self, tag):
        """The index.json entries of ``tag`` (every entry for ''); LayoutError when none."""
        entries = index_entries(self.index, tag)
        if not entries:
            if not tag:
                raise LayoutError('%s: index.json lists no images' % self.root)
            raise LayoutError('%s: tag %r not found; available tags: %s'
                              % (self.root, tag, ', '.join(repr(t) for t in self.tags()) or 'none'))
        return entries

    # -- blobs --------------------------------------------------------------

    def blob_path(self, digest):
        """The path of a blob, ``blobs/<alg>/<encoded>``, once checked to be a regular file inside the layout.

        The check is on the name only: to read the blob, use ``open_blob``.
        """
        return self._checked_blob(digest)[0]

    def _location(self, digest):
        """``(path, what)``: where a blob is, and how messages name it."""
        try:
            parsed = parse_digest(digest)
        except DigestError as e:
            raise LayoutError('%s: %s' % (self.root, e))
        path = os.path.join(self.root, 'blobs', parsed.algorithm, parsed.encoded)
        return path, 'blob %s (%s)' % (parsed, path)

    def _checked_blob(self, digest):
        """``(path, what, os.stat result)`` of a blob checked to be a regular file inside the layout."""
        path, what = self._location(digest)
        if not os.path.lexists(path):
            raise LayoutError('%s: missing from the layout' % what)
        return path, what, self._inside(path, what)

    def open_blob(self, digest):
        """A blob as a binary file open for reading, the very file checked to be inside the layout.

        The blob is opened once, and then its name is checked (it resolves
        inside the layout to a regular file) and must still lead to the open
        file (same device and inode): a blob swapped for a link out of the
        layout around the open is refused. Read, hash and send from the one
        file object this returns.
        """
        path, what = self._location(digest)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_CLOEXEC', 0))
        except OSError as e:
            self._checked_blob(digest)     # the precise refusal (missing, leads out of the layout...)
            raise LayoutError('%s: cannot open: %s' % (what, e.strerror or e))
        try:
            checked = self._checked_blob(digest)[2]
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
                raise LayoutError('%s: changed while it was opened (the file opened is not the one its name '
                                  'leads to now)' % what)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, 'rb', buffering=0)

    def read_document(self, descriptor):
        """Read, verify and parse the manifest or index that ``descriptor`` points at."""
        try:
            validate_descriptor(descriptor, 'descriptor')
        except DocumentError as e:
            raise LayoutError('%s: %s' % (self.root, e))
        digest, size, media_type = descriptor['digest'], descriptor['size'], descriptor['mediaType']
        if digest in self._documents:
            return self._documents[digest]
        if media_type in INDEX_TYPES:
            validator = validate_index
        elif media_type in MANIFEST_TYPES:
            validator = validate_manifest
        else:
            raise LayoutError('blob %s: media type %r is not a manifest or an index' % (digest, media_type))
        path = self.blob_path(digest)
        what = 'blob %s (%s)' % (digest, path)
        if size > MAX_DOCUMENT_BYTES:
            raise LayoutError('%s: a %s of %d bytes is larger than the limit of %d'
                              % (what, media_type, size, MAX_DOCUMENT_BYTES))
        try:
            with self.open_blob(digest) as f:
                data = _read_verified(f, digest, size, what)
        except VerificationError as e:
            raise LayoutError(str(e))
        except OSError as e:
            raise LayoutError('%s: cannot read: %s' % (what, e.strerror or e))
        self._verified.add(digest)
        document = _load_json(data, what)
        try:
            validator(document, what)
        except DocumentError as e:
            raise LayoutError(str(e))
        inner = document.get('mediaType')
        if inner is not None and inner != media_type:
            raise LayoutError('%s: document mediaType %r differs from its descriptor\'s %r'
                              % (what, inner, media_type))
        self._documents[digest] = document
        return document

    def _children(self, descriptor):
        """The descriptors a manifest or index refers to; none for other blobs."""
        media_type = descriptor['mediaType']
        if media_type in INDEX_TYPES:
            return self.read_document(descriptor)['manifests']
        if media_type in MANIFEST_TYPES:
            document = self.read_document(descriptor)
            return [document['config']] + document['layers']
        return []

    def walk(self, descriptors):
        """Every descriptor reachable from ``descriptors``, children before parents.

        Nested indexes are followed at any depth, manifests lead to their config
        and layers, other media types are leaves. Each digest appears once; a
        cycle (an index that refers to itself) is a LayoutError.
        """
        descriptors = list(descriptors)
        for i, desc in enumerate(descriptors):
            try:
                validate_descriptor(desc, 'descriptor %d' % i)
            except DocumentError as e:
                raise LayoutError('%s: %s' % (self.root, e))
        order, sizes, path = [], {}, []
        stack = [(desc, False) for desc in reversed(descriptors)]
        while stack:
            desc, expanded = stack.pop()
            digest = desc['digest']
            if expanded:
                path.pop()
                order.append(desc)
                continue
            if digest in path:
                cycle = path[path.index(digest):] + [digest]
                raise LayoutError('%s: index %s refers to itself (%s)' % (self.root, digest, ' -> '.join(cycle)))
            if digest in sizes:
                if sizes[digest] != desc['size']:
                    raise LayoutError('%s: blob %s is referred to with sizes %d and %d'
                                      % (self.root, digest, sizes[digest], desc['size']))
                continue
            sizes[digest] = desc['size']
            path.append(digest)
            stack.append((desc, True))
            stack.extend((child, False) for child in reversed(self._children(desc)))
        return order

    def validate(self, tags=None, skip=()):
        """Verify every blob reachable from ``tags`` (default: all of index.json).

        Returns ``{'blobs': count, 'bytes': total size}``. Each blob is hashed
        at most once; a blob already verified by this object, or recorded as
        verified with the ``fstat`` its file still has (``_record``), is not
        read again (``hashed`` counts the blobs read). The digests in ``skip``
        are not hashed here (the caller has them verified elsewhere: as they
        arrive at the target); manifests and indexes are verified all the same,
        as the walk reads them. The record is held locked meanwhile: concurrent
        validations of one layout (a play's forks) wait for the first and then
        find its blobs recorded (blobs written less than a second ago are not
        recorded, and read after the lock is released).
        """
        if tags is None:
            roots = list(self.index['manifests'])
        else:
            if isinstance(tags, str):
                tags = [tags]
            roots = [desc for tag in tags for desc in self.descriptors(tag)]
        blobs = self.walk(roots)
        young = []
        with layout_record(self._real_root) as record:
            for desc in blobs:
                if desc['digest'] in skip:
                    continue
                if self._verify_blob(desc, record, young=False) == 'young':
                    young.append(desc)
        for desc in young:      # written a moment ago: not recorded; read outside the lock
            self._verify_blob(desc, record)
        self.hashed += record.hashed
        return {'blobs': len(blobs), 'bytes': sum(desc['size'] for desc in blobs)}

    def stat_blobs(self, digests):
        """``(time_ns, {digest: os.stat})`` of blob files about to be read by a target that verifies them.

        Give it to ``record_arrived`` once the target has verified them all.
        """
        taken = time.time_ns()
        stats = {}
        for digest in digests:
            try:
                stats[digest] = os.stat(self._location(digest)[0])
            except (OSError, LayoutError):
                pass
        return taken, stats

    def record_arrived(self, taken):
        """Record as verified the blobs of ``stat_blobs`` that a target verified on arrival.

        Their bytes were checked there, so the files are recorded (``_record``) if they have not
        changed since ``stat_blobs`` (same device, inode, size, mtime and ctime) and were settled
        then: the next run does not hash them on the controller.
        """
        started, stats = taken
        with layout_record(self._real_root) as record:
            for digest, before in stats.items():
                try:
                    now = os.stat(self._location(digest)[0])
                except OSError:
                    continue
                if unchanged(before, now):
                    record.add(digest, digest, now, started)

    def _verify_blob(self, desc, record, young=True):
        """``Record.verify`` of one blob, unless this object verified it already (``'trusted'``)."""
        digest = desc['digest']
        if digest in self._verified:
            return 'trusted'
        what = self._location(digest)[1]
        try:
            with self.open_blob(digest) as f:
                outcome = record.verify(digest, digest, f, lambda fileobj: verify_fileobj(
                    fileobj, digest, desc['size'], what=what), young=young)
        except VerificationError as e:
            record.forget(digest)
            raise LayoutError(str(e))
        if outcome != 'young':
            self._verified.add(digest)
        return outcome


def _load_json(data, what):
    try:
        return load_json(data, what)
    except DocumentError as e:
        raise LayoutError(str(e))
