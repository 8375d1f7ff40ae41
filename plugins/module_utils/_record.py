# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Records of verified blobs: hash a file once, and again only when it changed.

A record maps a file's name (a layout's blob: its digest; a store's: its key)
to what ``fstat`` said of the file whose bytes were verified, and the digest
they were verified against: ``(device, inode, size, mtime_ns, ctime_ns,
digest)``, as git's index does for a work tree. A file whose ``fstat`` still says exactly
that is trusted without reading it; anything else (rewritten in place, even
with its size and mtime restored, since that changes its ctime; replaced by
another file, another inode) is hashed again. A record is a cache: losing
it costs time, never correctness, and it never overrides a check (a store
still verifies every blob it receives).

Where records live, and who may write them, is what makes them safe: an entry
that lies would make a file be trusted unread. A record is only read from a
directory and a file that belong to this process's user and that no one else
may write (no group or other write permission, no link on the way: the
file is opened relative to the directory's descriptor with ``O_NOFOLLOW``);
anything else is ignored and the blobs are hashed. Records are written aside
and renamed into place (a reader never sees half of one), read-modify-written
under an exclusive ``flock`` (concurrent writers lose nothing; a second
publisher of the same layout waits while the first hashes, then finds the
blobs recorded), and never fail the work they speed up: a record that cannot
be read, locked or written is skipped.

Two users: ``Layout.validate`` keeps one record per layout in the user's cache
directory (``layout_record``); ``WebRootStore`` keeps one for the blobs of its
web root in the root's private state directory.

A file changed within the granularity of its timestamps after it was hashed
could keep the timestamps recorded (git's "racily clean" entries). So a file
is only recorded when its mtime and ctime are at least SETTLE_NS older than
the moment its reading started (``settled``); a younger one is hashed on every
run until it is that old. Callers holding the lock leave young files to be
read after they release it (``verify(young=False)``), so that concurrent
publishers of a layout written a moment ago hash it side by side rather
than one after another.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import time

VERSION = 1
SETTLE_NS = 1000 * 1000 * 1000
MAX_RECORD_BYTES = 64 * 1024 * 1024
CACHE_DIR = os.path.join('oci-discovery', 'verified-blobs')
_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def _key(st, digest):
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest]


def _private(st, kind):
    """Whether ``st`` is a ``kind`` (stat.S_ISDIR / S_ISREG) of this user that no one else may write."""
    return kind(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class Record:
    """The entries of one record: ``trusts(name, digest, st)``, ``add(name, digest, st)``."""

    def __init__(self, entries=None, persistent=False):
        self.entries = dict(entries or {})
        self.persistent = persistent    # loaded from (and saved to) a file
        self.changed = False
        self.hashed = 0                 # files read since the record was opened

    def trusts(self, name, digest, st):
        """Whether the file ``name`` with this ``fstat`` was verified as ``digest`` and has not changed since."""
        return self.entries.get(name) == _key(st, digest)

    def add(self, name, digest, st, started_ns=None):
        """Record that the file ``name`` with this ``fstat`` holds ``digest``, verified from a read that began at
        ``started_ns`` (``time.time_ns()``); None: the bytes are known otherwise (this process wrote them).

        A file whose timestamps are not SETTLE_NS older than the read is not recorded (see the module
        docstring)."""
        if started_ns is not None and not settled(st, started_ns):
            return
        key = _key(st, digest)
        if self.entries.get(name) != key:
            self.entries[name] = key
            self.changed = True

    def verify(self, name, digest, fileobj, check, young=True):
        """Trust the open ``fileobj`` as ``digest`` if recorded unchanged, else ``check(fileobj)`` (which
        raises on a mismatch) and record it: ``'trusted'`` or ``'hashed'``. A file too young to be recorded
        (``settled``) is left unread with ``young=False``: ``'young'``, for the caller to check later."""
        st = os.fstat(fileobj.fileno())
        if self.trusts(name, digest, st):
            return 'trusted'
        if not young and not settled(st):
            return 'young'
        started = time.time_ns()
        check(fileobj)
        self.hashed += 1
        self.add(name, digest, st, started)
        return 'hashed'

    def forget(self, name):
        if self.entries.pop(name, None) is not None:
            self.changed = True


def entry_matches(st, entry):
    """Whether a record's ``entry`` still describes the file with this ``fstat`` (for ``still_valid``)."""
    return _key(st, entry[5]) == entry


def unchanged(before, after):
    """Whether two ``stat`` results of one name describe the same, unchanged file (the record's key)."""
    return _key(before, None) == _key(after, None)


def settled(st, now_ns=None):
    """Whether a file with this ``fstat`` is old enough to be recorded if read now."""
    return max(st.st_mtime_ns, st.st_ctime_ns) <= (time.time_ns() if now_ns is None else now_ns) - SETTLE_NS


def _load(dir_fd, name, identity):
    """The entries of the record ``name`` in ``dir_fd`` when it is this user's own and for ``identity``."""
    try:
        fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not _private(st, stat.S_ISREG) or st.st_size > MAX_RECORD_BYTES:
            return {}
        with os.fdopen(os.dup(fd), 'rb') as f:
            data = json.loads(f.read(MAX_RECORD_BYTES + 1).decode('utf-8'))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    if not isinstance(data, dict) or data.get('version') != VERSION or data.get('identity') != identity:
        return {}
    blobs = data.get('blobs')
    if not isinstance(blobs, dict):
        return {}
    return dict((name, key) for name, key in blobs.items()
                if isinstance(key, list) and len(key) == 6 and all(isinstance(n, int) for n in key[:5])
                and isinstance(key[5], str))


def _save(dir_fd, name, identity, entries):
    """Write the record aside (0600) and rename it over ``name``; False when that cannot be done."""
    temp = '.%s.%s' % (name, os.urandom(6).hex())
    data = json.dumps({'version': VERSION, 'identity': identity, 'blobs': entries},
                      sort_keys=True, separators=(',', ':')).encode('utf-8')
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True
    except OSError:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        return False


@contextlib.contextmanager
def recorded(dir_fd, name, identity, still_valid=None):
    """The ``Record`` kept as ``name`` in the directory ``dir_fd``, locked (``name.lock``, exclusive) for
    the block, saved when it changed; a record in memory only when ``dir_fd`` is None or not a private
    directory of this user (``private``). ``identity`` (JSON-safe) must match the stored one;
    ``still_valid(name, entry)``, when given, drops entries whose file is gone or changed when the record
    is saved, so a record does not grow forever. Nothing here raises for a record that cannot be used."""
    lock = None
    if dir_fd is not None and private(dir_fd):
        try:
            lock = os.open(name + '.lock', os.O_RDWR | os.O_CREAT | _FILE_FLAGS, 0o600, dir_fd=dir_fd)
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            if lock is not None:
                os.close(lock)
            lock = None
    try:
        record = Record(_load(dir_fd, name, identity) if lock is not None else {}, persistent=lock is not None)
        before = dict(record.entries)
        try:
            yield record
        finally:    # also after an error: what was verified before it stays recorded
            if lock is not None:
                if still_valid is not None:
                    for entry_name, key in before.items():
                        if record.entries.get(entry_name) == key and not still_valid(entry_name, key):
                            record.forget(entry_name)
                if record.changed:
                    _save(dir_fd, name, identity, record.entries)
    finally:
        if lock is not None:
            os.close(lock)


def private(dir_fd):
    """Whether the open directory is this user's and no one else may write in it."""
    try:
        return _private(os.fstat(dir_fd), stat.S_ISDIR)
    except OSError:
        return False


def private_dir(path, create=True):
    """A descriptor of the directory ``path`` if it is ``private`` (created 0700 with its missing parents
    when ``create``); None otherwise."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as e:
        if not create or e.errno != errno.ENOENT:
            return None
        try:
            os.makedirs(path, 0o700)
        except OSError:
            return None
        return private_dir(path, False)
    if private(fd):
        return fd
    os.close(fd)
    return None


def cache_dir():
    """``$XDG_CACHE_HOME/oci-discovery/verified-blobs`` (default ``~/.cache``)."""
    base = os.environ.get('XDG_CACHE_HOME') or ''
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, CACHE_DIR)


@contextlib.contextmanager
def layout_record(real_root):
    """The record of the layout at ``real_root`` (its resolved path), in this user's cache directory.

    Named after the layout's path, device and inode (a layout moved, or made anew at the same path, has
    a record of its own); a cache directory that is missing, not this user's or writable by others means
    an in-memory record (every blob hashed)."""
    try:
        st = os.stat(real_root)
    except OSError:
        st = None
    fd = private_dir(cache_dir()) if st is not None else None
    identity = {'layout': real_root, 'device': st.st_dev, 'inode': st.st_ino} if st is not None else None
    name = hashlib.sha256(json.dumps(identity, sort_keys=True).encode('utf-8')).hexdigest()[:40] + '.json'

    def still_valid(digest, key):
        algorithm, dummy, encoded = digest.partition(':')
        try:
            return entry_matches(os.stat(os.path.join(real_root, 'blobs', algorithm, encoded),
                                         follow_symlinks=False), key)
        except (OSError, ValueError):
            return False

    try:
        with recorded(fd, name, identity, still_valid) as record:
            yield record
    finally:
        if fd is not None:
            os.close(fd)


__all__ = ['Record', 'SETTLE_NS', 'cache_dir', 'entry_matches', 'layout_record', 'private', 'private_dir', 'recorded',
           'settled', 'unchanged']
