# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stores: the places a site lives in, behind one small interface.

The publish sequence (``_publish``, ``_plan``, ``_commit``) knows nothing
about files or buckets. It talks to a ``Store`` in *keys*: relative POSIX
paths such as ``oci-cas/sha256/e3/e3b0...`` or ``oci-index/team/app``,
produced by the site layout (``_site.SiteLayout``). A store maps a key to a
file under a web root, or to an object under a bucket prefix.

The interface (``_plan`` and ``_commit`` use every method; nothing else):

``check()``
    Fail early and clearly when the store cannot be used at all (S3: the
    bucket is missing or the credentials are wrong). Read-only.
``stat(keys)``
    ``{key: size}`` for the keys that exist as complete objects; missing keys
    are left out. Read-only.
``list(prefix)``
    Iterate ``(key, size, mtime)`` of every object whose key starts with
    ``prefix`` (a key prefix ending in ``/``). Read-only. Order unspecified.
``read(key, max_bytes)``
    The object's bytes, or None when it does not exist. Raises StoreError
    when it is larger than ``max_bytes``. Read-only.
``inspect(blobs, documents)``
    What is wrong with objects that are there with the right content: a
    JSON-safe list of dicts, each with the ``key`` it concerns, that
    ``fix`` repairs (S3: wrong Content-Type or Cache-Control). ``blobs`` are
    the planned blob dicts present in the store, ``documents`` maps the
    document keys read to their media types. Read-only. Default: nothing.
``corrupt(blobs)``
    The keys of the blob dicts (``key``, ``digest``, ``size``), present with
    the right size, whose content is not their digest: the plan sends them
    again, and ``put_blobs`` replaces them. Default: none (a store that
    cannot look, as S3 without reading every object back).
``remember(blobs)``
    Note that the blob dicts were just put by ``put_blobs`` (verified on the
    way in), so that ``corrupt`` need not read them back. Default: nothing.
``put_blobs(blobs, source)``
    Put the planned blob dicts (``key``, ``digest``, ``size``,
    ``mediaType``) from ``source`` (``_commit.LayoutBlobs``: ``open(blob)``
    and ``items(blobs)``; ``_commit.StreamBlobs``: ``items(blobs)`` only), each
    verified (size and digest, ``_digests.Verifier``) on the way: readers
    never see a partial or unverified object; on a mismatch nothing becomes
    visible and ``VerificationError`` is raised. Returns the bytes written.
    Blobs are immutable (long cache lifetime where the store sets one). The
    default puts ``items`` one by one with ``put_blob`` inside ``batch()``.
``fix(items)``
    Repair what ``inspect`` found. Default: nothing to repair.
``put_document(key, data, media_type)``
    Replace the object ``key`` with ``data`` atomically (short cache
    lifetime where the store sets one). ``media_type`` is the bare type;
    stores that set Content-Type add ``; charset=utf-8``.
``update_document(key, update, media_type, max_bytes)``
    Read-modify-write without losing a concurrent writer's change:
    ``update(current_bytes_or_None)`` returns the new bytes, or None to leave
    the object as it is. It may be called more than once (an optimistic
    store retries on a conflict), so it must be a pure function of its
    argument. Returns ``(before, after)`` bytes (``after is before`` when
    nothing was written).
``delete(key)``
    Remove an object; a missing object is not an error.
``lock(exclusive)``
    A context manager for the site-wide publish lock: publishers hold it
    shared while they commit (blobs, documents, index), prune holds it
    exclusive so it never removes a blob a publisher is about to reference.
    A store that cannot lock returns a no-op context manager and documents
    the consequence (prune then relies on ``min_age``).
``finish()``
    The end of a publish, committed or not (S3: save the metadata ledger).
``describe(key)``
    A human name for a key in error messages (a file path, an s3:// URL).

``WebRootStore`` (below) adds ``put_blob`` and ``batch()``: a series of
``put_blob`` calls inside ``batch()`` may become visible together when it
ends (still each one complete and verified, in the order they were put),
which lets it pay for durability once instead of once per blob. When the
block raises, the blobs put before the error are still published; when the
process is killed, the blobs of its unfinished batch never become visible.

``WebRootStore`` implements it for a directory on a host's disk (Nginx or
any static web server serves it). The S3 store lives in ``_s3``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import collections
import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tarfile
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    VerificationError, Verifier, copy_range_verified, copy_verified, parse_digest, verify_fileobj)
from ansible_collections.oci.discovery.plugins.module_utils._record import entry_matches, recorded

STATE_DIR = '.oci-discovery'
RECORD = 'verified-blobs.json'     # in STATE_DIR: the record of the blobs verified there (``_record``)
STALE_RUN_SECONDS = 60
BATCH_FILES = 1000
BATCH_BYTES = 512 * 1024 * 1024


class StoreError(ValueError):
    """A store operation that failed; the message names the file or object."""


def check_key(key):
    """Refuse a key that is not a clean relative POSIX path (defence in depth)."""
    if not isinstance(key, str) or not key or key.startswith('/') or key.endswith('/') \
            or '\\' in key or '\0' in key:
        raise StoreError('invalid store key %r' % (key,))
    for segment in key.split('/'):
        if segment in ('', '.', '..'):
            raise StoreError('invalid store key %r' % (key,))
    return key


class Store:
    """The interface documented in this module's docstring."""

    def check(self):
        return None

    def stat(self, keys):
        raise NotImplementedError

    def list(self, prefix):
        raise NotImplementedError

    def read(self, key, max_bytes):
        raise NotImplementedError

    def inspect(self, blobs, documents):
        return []

    def corrupt(self, blobs):
        return []

    def remember(self, blobs):
        return None

    def put_blob(self, key, fileobj, digest, size, media_type):
        raise NotImplementedError

    def put_blobs(self, blobs, source):
        total = 0
        with self.batch():
            for blob, fileobj in source.items(blobs):
                total += self.put_blob(blob['key'], fileobj, digest=blob['digest'], size=blob['size'],
                                       media_type=blob['mediaType'])
        return total

    def fix(self, items):
        return None

    def put_document(self, key, data, media_type):
        raise NotImplementedError

    def update_document(self, key, update, media_type, max_bytes):
        raise NotImplementedError

    def delete(self, key):
        raise NotImplementedError

    def lock(self, exclusive=False):
        return contextlib.nullcontext()

    def batch(self):
        return contextlib.nullcontext()

    def finish(self):
        return None

    def describe(self, key):
        return key


def parse_mode(value, option='mode'):
    """Octal permissions (an int, or a string such as '0644') as an int; StoreError naming ``option``."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and value.strip():
        try:
            mode = int(value.strip(), 8)
        except ValueError:
            raise StoreError('%s %r: give octal permissions such as 0644 (symbolic modes are not supported)'
                             % (option, value))
    else:
        raise StoreError('%s %r: give octal permissions such as 0644' % (option, value))
    if not 0 <= mode <= 0o7777:
        raise StoreError('%s %r: not a permission value' % (option, value))
    return mode


def _os_error(what, e):
    return StoreError('%s: %s' % (what, e.strerror or e))


def _resolve_owner(owner, group):
    """Numeric uid/gid (-1 for unchanged) from names or numbers."""
    import grp
    import pwd
    return (_numeric_id(owner, 'owner', 'user', lambda name: pwd.getpwnam(name).pw_uid),
            _numeric_id(group, 'group', 'group', lambda name: grp.getgrnam(name).gr_gid))


def _numeric_id(value, option, kind, by_name):
    """A user or group id from a number or a name (-1, unchanged, when not given)."""
    if value in (None, ''):
        return -1
    try:
        return int(value)
    except ValueError:
        try:
            return by_name(value)
        except KeyError:
            raise StoreError('%s %r: no such %s on this host' % (option, value, kind))


class _NotADirectory(StoreError):
    """A key's parent path runs into a file (the key cannot exist)."""


_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
# Every directory below the root is opened with these: never through a symbolic link.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# Files below the root: never through a link, and never blocking on a FIFO planted there.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
# Directory descriptors a store keeps open (least recently used closed first): a CAS site has
# at most 256 directories per digest algorithm, so a publish of any size walks each path once.
MAX_OPEN_DIRS = 384


class WebRootStore(Store):
    """A site in a directory on this host (a web server's document root).

    Keys are paths relative to ``root``. New files get ``file_mode``
    (world-readable by default, as a web server's workers must read them),
    new directories ``dir_mode``; ``owner``/``group`` (names or ids) are
    applied to both when given. Existing directories are left as they are.

    The contents of the root are not trusted (a deploy user or ``owner`` may
    write there): every path below it is walked from a descriptor of the
    root, one component at a time, with ``O_NOFOLLOW``, and files are
    created, renamed, read, removed and given their mode and owner through
    descriptors. A symbolic link anywhere below the root (a directory, a
    file, a lock file, the state directory) is refused with a StoreError
    naming it, and a FIFO or device is not a file. The root's own path is
    the administrator's: it may be or pass through a link (``/srv/www ->
    /data/www``), resolved once when the store first opens it. Nothing
    outside the root is created, written, chowned or removed. Directory
    descriptors are kept open (up to MAX_OPEN_DIRS) for the store's life,
    so a run walks each directory once.

    Writes go to a private staging directory, ``root/.oci-discovery/tmp``, on
    the same file system, are fsynced and then renamed into place, so nothing
    partial ever appears under a served path, even if the process is killed.
    Inside ``batch()``, blobs wait in the staging directory and are made
    durable with one ``syncfs`` (Linux; elsewhere one fsync per file) before
    they are renamed, in order, and the renames are synced before anything
    else is written: a blob is never visible before its data is on disk, and
    never after the index that references it. A batch is flushed early when
    it holds BATCH_FILES files or BATCH_BYTES bytes, except ``put_blobs``'s:
    all its blobs are staged and verified before the first is renamed, and
    none is renamed when one fails. A blob from a regular file is copied by
    the kernel (``copy_file_range``: no pass through Python, extents shared
    where the file system can) and the staged copy read back to verify it.
    Each store object stages in its own run directory, locked with flock; a
    later run removes the run directories of dead processes. Indexes are
    read-modify-written under a per-document flock, and ``lock()`` is a
    site-wide flock (shared for publishers, exclusive for prune). Lock files
    live in ``root/.oci-discovery/locks`` and are never removed (removing a
    lock file breaks flock exclusion).

    Blobs that are there are checked (``corrupt``): each is hashed unless the
    record of verified blobs in the state directory (``_record``, read only
    when the directory and the record are this user's and no one else's to
    write) says the very file (device, inode, size, mtime, ctime) was verified
    or written by a publish; a blob changed since, in place or replaced, is
    hashed again, and sent again when it does not match.
    """

    def __init__(self, root, file_mode=0o644, dir_mode=0o755, owner=None, group=None, fsync=True):
        self.root = os.path.abspath(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.uid, self.gid = _resolve_owner(owner, group)
        self.fsync = fsync
        self.state_dir = os.path.join(self.root, STATE_DIR)
        self._dirs = collections.OrderedDict()   # (component, ...) below the root -> open descriptor
        self._devices = {}
        self._run = None         # (name, locked descriptor) of this store's run directory
        self._run_dir = None     # its path, for messages
        self._pending = None     # [(staged in, temp name, directory, name, size)] inside batch()
        self._pending_bytes = 0
        self._atomic = False     # inside batch(atomic=True): nothing is flushed before the block ends

    # -- paths -------------------------------------------------------------

    def path(self, key):
        return os.path.join(self.root, *check_key(key).split('/'))

    def describe(self, key):
        return self.path(key)

    def _where(self, parts):
        return os.path.join(self.root, *parts)

    def _refusal(self, parent, parts, e):
        """The StoreError for a component that could not be opened as a directory or file."""
        where = self._where(parts)
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                mode = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
            except OSError:
                mode = None
            if mode is not None and stat.S_ISLNK(mode):
                return StoreError('%s: is a symbolic link; nothing below the web root %s is reached through '
                                  'a link (remove it, or publish into the directory it points at as a root '
                                  'of its own)' % (where, self.root))
            if e.errno == errno.ENOTDIR:
                return _NotADirectory('%s is a file, not a directory' % where)
        return _os_error(where, e)

    # -- directory descriptors ----------------------------------------------

    def _open_root(self, create):
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            self._make_root()
            return self._open_root(False)
        except OSError as e:
            raise _os_error(self.root, e)
        self._dirs[()] = fd
        return fd

    def _make_root(self):
        """Create the root and its missing parents (the administrator's path) with dir_mode/owner."""
        missing, path = [], self.root
        while not os.path.lexists(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            try:
                os.mkdir(directory, self.dir_mode)
            except FileExistsError:
                continue
            except OSError as e:
                raise _os_error('cannot create directory %s' % directory, e)
            fd = os.open(directory, _DIR_FLAGS)
            try:
                self._new_directory(fd)
            finally:
                os.close(fd)

    def _new_directory(self, fd):
        os.fchmod(fd, self.dir_mode)  # mkdir's mode is filtered by the umask
        if self.uid != -1 or self.gid != -1:
            os.fchown(fd, self.uid, self.gid)

    def _dir(self, parts, create=False, served=True):
        """A descriptor of the directory ``root/parts`` (a tuple), or None when it is missing.

        Walked component by component without following links (StoreError
        naming a link; _NotADirectory when a component is a file). With
        ``create``, missing directories are made: served ones with
        dir_mode/owner, the private state directories (``served=False``)
        0755 without an owner.
        """
        fd = self._dirs.get(parts)
        if fd is not None:
            self._dirs.move_to_end(parts)
            return fd
        if not parts:
            return self._open_root(create)
        parent = self._dir(parts[:-1], create, served)
        if parent is None:
            return None
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            fd = self._mkdir(parent, parts, served)
        except OSError as e:
            raise self._refusal(parent, parts, e)
        self._dirs[parts] = fd
        while len(self._dirs) > MAX_OPEN_DIRS:
            oldest = next(key for key in self._dirs if key)
            os.close(self._dirs.pop(oldest))
        return fd

    def _mkdir(self, parent, parts, served):
        name = parts[-1]
        created = True
        try:
            os.mkdir(name, self.dir_mode if served else 0o755, dir_fd=parent)
        except FileExistsError:
            created = False
        except OSError as e:
            raise _os_error('cannot create directory %s' % self._where(parts), e)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            raise self._refusal(parent, parts, e)
        if created and served:
            try:
                self._new_directory(fd)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _split(self, key):
        """``(directory parts, name)`` of a key."""
        parts = tuple(check_key(key).split('/'))
        return parts[:-1], parts[-1]

    def _parent(self, key, create=False):
        """``(descriptor or None, name)`` of a key's directory; a parent that is a file counts as missing."""
        directory, name = self._split(key)
        return self._dir(directory, create), name

    def _open_file(self, parent, directory, name, flags, mode=0o644):
        """A descriptor of the regular file ``name`` in ``parent``; StoreError for a link, FIFO, directory..."""
        try:
            fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=parent)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise
            if e.errno == errno.EISDIR:
                raise StoreError('%s: is a directory, expected a file' % self._where(directory + (name,)))
            raise self._refusal(parent, directory + (name,), e)
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            os.close(fd)
            raise StoreError('%s: %s' % (self._where(directory + (name,)), 'is a directory, expected a file'
                                         if kind == stat.S_IFDIR else 'not a regular file'))
        return fd

    # -- reading -----------------------------------------------------------

    def stat(self, keys):
        sizes = {}
        for key in keys:
            directory, name = self._split(key)
            try:
                parent = self._dir(directory)
            except _NotADirectory:
                continue
            if parent is None:
                continue
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise _os_error(self.path(key), e)
            if stat.S_ISREG(st.st_mode):
                sizes[key] = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                raise self._refusal(parent, directory + (name,), OSError(errno.ELOOP, 'link'))
        return sizes

    def list(self, prefix):
        parts = tuple(check_key(prefix.rstrip('/')).split('/'))
        try:
            top = self._dir(parts)
        except _NotADirectory:
            return
        if top is None:
            return
        yield from _walk(top, '/'.join(parts))

    def read(self, key, max_bytes):
        directory, name = self._split(key)
        path = self.path(key)
        try:
            parent = self._dir(directory)
        except _NotADirectory as e:
            raise StoreError('%s cannot exist: %s' % (path, e))
        if parent is None:
            return None
        try:
            fd = self._open_file(parent, directory, name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, 'rb') as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise _os_error(path, e)
        if len(data) > max_bytes:
            raise StoreError('%s: larger than %d bytes' % (path, max_bytes))
        return data

    # -- writing -----------------------------------------------------------

    def _staging(self):
        """The descriptor of this store's run directory (created, locked and stale runs swept on first use)."""
        if self._run is None:
            tmp = self._dir((STATE_DIR, 'tmp'), create=True, served=False)
            _sweep_stale_runs(tmp)
            while True:
                name = 'run-' + _random_name()
                try:
                    os.mkdir(name, 0o700, dir_fd=tmp)
                    break
                except FileExistsError:
                    continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=tmp)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._run = (name, fd)
            self._run_dir = os.path.join(self.state_dir, 'tmp', name)
        return self._run[1]

    def close(self):
        """Remove this store's staging directory and close its descriptors (safe to call more than once)."""
        try:
            if self._run is not None:
                name, fd = self._run
                self._run = self._run_dir = None
                try:
                    _remove_tree(self._dir((STATE_DIR, 'tmp')), name)
                except (OSError, StoreError):
                    pass
                finally:
                    os.close(fd)
        finally:
            while self._dirs:
                os.close(self._dirs.popitem()[1])
            self._devices.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _at(self, staged_in):
        """The descriptor of where a temp file is: the run directory (None) or a directory's parts."""
        return self._staging() if staged_in is None else self._dir(staged_in)

    def _temp_for(self, directory):
        """An open temp file on the file system of ``directory`` (parts): (fd, staged in, name)."""
        target = self._dir(directory, create=True)
        staging = self._staging()
        staged_in = None
        if self._device(directory, target) != self._device(None, staging):
            # Another file system is mounted under the root: stage beside the target.
            staging, staged_in = target, directory
        name = '.oci-part-' + _random_name()
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=staging)
        return fd, staged_in, name

    def _device(self, parts, fd):
        dev = self._devices.get(parts)
        if dev is None:
            dev = self._devices[parts] = os.fstat(fd).st_dev
        return dev

    def _attributes(self, fd):
        os.fchmod(fd, self.file_mode)
        if self.uid != -1 or self.gid != -1:
            os.fchown(fd, self.uid, self.gid)

    def _rename(self, staged_in, temp, directory, name):
        os.rename(temp, name, src_dir_fd=self._at(staged_in), dst_dir_fd=self._dir(directory))

    def _finish(self, fd, staged_in, temp, directory, name):
        """fsync, set mode/owner, rename into place, fsync the directory."""
        try:
            if self.fsync:
                os.fsync(fd)
            self._attributes(fd)
        finally:
            os.close(fd)
        self._rename(staged_in, temp, directory, name)
        if self.fsync:
            _fsync_quietly(self._dir(directory))

    def _discard(self, staged_in, temp):
        try:
            os.unlink(temp, dir_fd=self._at(staged_in))
        except (OSError, StoreError):
            pass

    def verifies_on_arrival(self, blob):
        """Every blob: ``put_blobs`` hashes each as it is written and makes none visible unless all match."""
        return True

    def put_blobs(self, blobs, source):
        """All or nothing: every blob is staged and verified before the first is renamed into place; when
        one does not match its digest (or anything else fails), none becomes visible."""
        total = 0
        with self.batch(atomic=True):
            for blob, fileobj in source.items(blobs):
                total += self.put_blob(blob['key'], fileobj, digest=blob['digest'], size=blob['size'],
                                       media_type=blob['mediaType'])
        return total

    def put_blob(self, key, fileobj, digest, size, media_type=None):
        directory, name = self._split(key)
        with self._staged(directory) as staged:
            fd, staged_in, temp = staged
            what = 'blob %s (for %s)' % (digest, self.path(key))
            count = _copy_in(fileobj, fd, digest, size, what)
            if self._pending is None:
                staged[0] = None            # _finish closes it, whatever happens
                self._finish(fd, staged_in, temp, directory, name)
                return count
            self._attributes(fd)
            os.close(fd)
            staged[0] = None
            self._pending.append((staged_in, temp, directory, name, count))
        self._pending_bytes += count
        if not self._atomic and (len(self._pending) >= BATCH_FILES or self._pending_bytes >= BATCH_BYTES):
            self._flush()
        return count

    @contextlib.contextmanager
    def _staged(self, directory):
        """A temp file staged for ``directory``: ``[fd, staged in, name]``; the block sets the fd to
        None once it is closed or handed over. On an error the fd is closed and the file removed."""
        staged = list(self._temp_for(directory))
        try:
            yield staged
        except BaseException:
            if staged[0] is not None:
                os.close(staged[0])
            self._discard(staged[1], staged[2])
            raise

    @contextlib.contextmanager
    def batch(self, atomic=False):
        """Blobs put inside become visible together at the end (see the class docstring). With ``atomic``
        none is renamed before the block ends, and none at all when it raises."""
        if self._pending is not None:      # nested: the outer batch flushes
            yield
            return
        self._pending = []
        self._atomic = atomic
        completed = False
        try:
            yield
            completed = True
        finally:
            # Not atomic, also on an error: what arrived before it was verified, so it is
            # published (and a re-run does not send it again). A killed process publishes nothing.
            try:
                if completed or not atomic:
                    self._flush()
            finally:
                for item in self._pending:
                    self._discard(item[0], item[1])
                self._pending = None
                self._atomic = False

    def _flush(self):
        """Make the pending blobs durable, rename them into place in order, sync the renames."""
        pending, self._pending[:] = list(self._pending), []
        self._pending_bytes = 0
        if not pending:
            return
        if self.fsync and not _syncfs(self._staging()):
            for staged_in, temp, dummy, dummy2, dummy3 in pending:
                fd = os.open(temp, os.O_RDONLY | _FILE_FLAGS, dir_fd=self._at(staged_in))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        done = 0
        try:
            for staged_in, temp, directory, name, dummy in pending:
                self._rename(staged_in, temp, directory, name)
                done += 1
        finally:
            for item in pending[done:]:
                self._discard(item[0], item[1])
        if self.fsync and not _syncfs(self._staging()):
            for directory in sorted(set(item[2] for item in pending)):
                _fsync_quietly(self._dir(directory))

    def put_document(self, key, data, media_type=None):
        directory, name = self._split(key)
        target = self._dir(directory, create=True)
        try:
            mode = os.stat(name, dir_fd=target, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise StoreError('%s: is a directory, expected a file' % self.path(key))
        if mode is not None and stat.S_ISLNK(mode):
            raise self._refusal(target, directory + (name,), OSError(errno.ELOOP, 'link'))
        with self._staged(directory) as staged:
            fd, staged_in, temp = staged
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            staged[0] = None                # _finish closes it, whatever happens
            self._finish(fd, staged_in, temp, directory, name)

    @contextlib.contextmanager
    def _flock(self, name, exclusive):
        locks = (STATE_DIR, 'locks')
        fd = self._open_file(self._dir(locks, create=True, served=False), locks, name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def update_document(self, key, update, media_type=None, max_bytes=16 * 1024 * 1024):
        name = 'doc-%s.lock' % hashlib.sha256(check_key(key).encode('utf-8')).hexdigest()[:32]
        with self._flock(name, True):
            before = self.read(key, max_bytes)
            after = update(before)
            if after is None or after == before:
                return before, before
            self.put_document(key, after, media_type)
            return before, after

    def delete(self, key):
        try:
            parent, name = self._parent(key)
        except _NotADirectory:
            return
        if parent is None:
            return
        try:
            os.unlink(name, dir_fd=parent)    # a link is removed itself, never what it points at
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _os_error('cannot remove %s' % self.path(key), e)

    def lock(self, exclusive=False):
        return self._flock('site.lock', exclusive)

    # -- the record of verified blobs ---------------------------------------

    def _recorded(self):
        """The record of this root's verified blobs (in memory only while there is no state directory)."""
        try:
            state = self._dir((STATE_DIR,))
        except _NotADirectory:
            state = None
        return recorded(state, RECORD, {'web root': 'blobs'}, self._still_recorded)

    def _still_recorded(self, key, entry):
        try:
            parent, name = self._parent(key)
            return parent is not None and entry_matches(os.stat(name, dir_fd=parent, follow_symlinks=False), entry)
        except (OSError, StoreError):
            return False

    def corrupt(self, blobs):
        bad = []
        if not blobs:
            return bad
        with self._recorded() as record:
            for blob in blobs:
                key, digest = blob['key'], blob['digest']
                directory, name = self._split(key)
                try:
                    fd = self._open_file(self._dir(directory), directory, name, os.O_RDONLY)
                except FileNotFoundError:
                    continue      # gone since the probe's stat: sent again anyway
                what = 'blob %s (%s)' % (digest, self.path(key))
                try:
                    with os.fdopen(fd, 'rb', buffering=0) as f:
                        record.verify(key, digest, f, lambda fileobj: verify_fileobj(
                            fileobj, digest, blob['size'], what=what))
                except VerificationError:
                    record.forget(key)
                    bad.append(key)
        return bad

    def remember(self, blobs):
        if not blobs:
            return
        with self._recorded() as record:
            for blob in blobs:
                try:
                    parent, name = self._parent(blob['key'])
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False) if parent is not None else None
                except (OSError, StoreError):
                    continue
                if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == blob['size']:
                    record.add(blob['key'], blob['digest'], st)


def _copy_in(fileobj, fd, digest, size, what):
    """Copy a blob from ``fileobj`` into the new staged file ``fd``, verified; the byte count.

    From a regular file (the layout's own file on a local connection, a file sent to the host)
    the kernel copies (``copy_file_range``) and the staged copy is read back to verify it; from
    anything else (an archive member), or where the kernel cannot, one pass through a buffer.
    """
    try:
        src = fileobj.fileno()
        regular = stat.S_ISREG(os.fstat(src).st_mode)
    except (AttributeError, OSError, ValueError):
        regular = False
    if regular:
        count = copy_range_verified(src, fd, digest, size, what)
        if count is not None:
            return count
    with os.fdopen(os.dup(fd), 'wb') as out:
        return copy_verified(fileobj, out, digest, size, what)


def _random_name():
    return binascii.hexlify(os.urandom(8)).decode('ascii')


def _walk(fd, rel):
    """``(key, size, mtime)`` of the regular files below the directory ``fd`` (``rel``), links not followed."""
    for entry in sorted(os.scandir(fd), key=lambda e: e.name):
        try:
            if entry.is_dir(follow_symlinks=False):
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                try:
                    yield from _walk(sub, rel + '/' + entry.name)
                finally:
                    os.close(sub)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                yield rel + '/' + entry.name, st.st_size, st.st_mtime
        except FileNotFoundError:
            continue


_SYNCFS = []


def _syncfs(fd):
    """syncfs(2) on the file system holding the open directory ``fd``; False where it is not available."""
    if not _SYNCFS:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            _SYNCFS.append(libc.syncfs)
        except (AttributeError, OSError, ImportError):
            _SYNCFS.append(None)
    syncfs = _SYNCFS[0]
    return syncfs is not None and syncfs(fd) == 0


def _fsync_quietly(fd):
    try:
        os.fsync(fd)
    except OSError:
        pass


def _remove_tree(parent, name):
    """Remove ``name`` in the directory ``parent`` and everything below it, never following a link."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            os.unlink(name, dir_fd=parent)     # a link or a file: removed itself
        return
    try:
        for entry in os.listdir(fd):
            try:
                os.unlink(entry, dir_fd=fd)
            except IsADirectoryError:
                _remove_tree(fd, entry)
            except OSError as e:
                if e.errno != errno.EPERM:    # EPERM: Linux's unlink of a directory
                    raise
                _remove_tree(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _sweep_stale_runs(tmp):
    """Remove the run directories (in the directory ``tmp``) whose process died: unlocked, older than a minute."""
    now = time.time()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        try:
            st = os.stat(name, dir_fd=tmp, follow_symlinks=False)
            if now - st.st_mtime < STALE_RUN_SECONDS:
                continue
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=tmp)   # not ours (a planted link, say): removed, never followed
                continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=tmp)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            _remove_tree(tmp, name)
        except OSError:
            pass
        finally:
            os.close(fd)


# The options of a module that writes into a web root (publish_layout, ref_engines), and the store they make.
WEB_ROOT_OPTIONS = dict(
    root=dict(type='path', required=True),
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw', default='0644'),
    directory_mode=dict(type='raw', default='0755'),
)


def web_root_store(params):
    """The ``WebRootStore`` of a task's ``WEB_ROOT_OPTIONS``."""
    return WebRootStore(params['root'], file_mode=parse_mode(params['mode'], 'mode'),
                        dir_mode=parse_mode(params['directory_mode'], 'directory_mode'),
                        owner=params['owner'], group=params['group'])


# -- blob archives: how the controller ships missing blobs to a host ------------

def write_blob_archive(fileobj, blobs, open_blob):
    """Write an uncompressed tar of blobs to ``fileobj`` (layers are compressed already).

    ``blobs`` are dicts with ``digest`` and ``size``; ``open_blob(digest)``
    returns a binary file object (``Layout.open_blob``). Each blob is hashed
    while it is copied from that one file object, and a blob that does not
    match its size and digest is a VerificationError: what goes into the
    archive is exactly what was verified. Member names are the digests;
    nothing else about a member is used by the reader.
    """
    with tarfile.open(fileobj=fileobj, mode='w|', format=tarfile.PAX_FORMAT) as archive:
        for blob in blobs:
            digest = parse_digest(blob['digest'])
            info = tarfile.TarInfo(str(digest))
            info.size = blob['size']
            info.mode = 0o644
            verifier = Verifier(blob['digest'], blob['size'], 'blob %s (sent to the host)' % info.name)
            with open_blob(blob['digest']) as f:
                archive.addfile(info, _VerifyingReader(f, verifier))   # exactly size bytes are read
            verifier.finish()


class _VerifyingReader:
    """A file object's ``read`` feeding a Verifier on the way."""

    def __init__(self, fileobj, verifier):
        self._fileobj = fileobj
        self._verifier = verifier

    def read(self, size=-1):
        data = self._fileobj.read(size)
        self._verifier.update(data)
        return data


def read_blob_archive(fileobj, what):
    """Iterate ``(digest, member_fileobj)`` over a blob archive, streaming (each member once)."""
    try:
        with tarfile.open(fileobj=fileobj, mode='r|') as archive:
            for member in archive:
                if not member.isfile():
                    raise StoreError('%s: member %r is not a regular file' % (what, member.name))
                yield member.name, archive.extractfile(member)
    except tarfile.TarError as e:
        raise StoreError('%s: broken blob archive: %s' % (what, e))


__all__ = ['STATE_DIR', 'Store', 'StoreError', 'VerificationError', 'WEB_ROOT_OPTIONS', 'WebRootStore', 'check_key', 'parse_mode',
           'read_blob_archive', 'web_root_store', 'write_blob_archive']
