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

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import time

from ansible_collections.oci.discovery.plugins.module_utils._digests import (
    VerificationError, copy_verified, parse_digest)

STATE_DIR = '.oci-discovery'
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


class WebRootStore(Store):
    """A site in a directory on this host (a web server's document root).

    Keys are paths relative to ``root``. New files get ``file_mode``
    (world-readable by default, as a web server's workers must read them),
    new directories ``dir_mode``; ``owner``/``group`` (names or ids) are
    applied to both when given. Existing directories are left as they are.

    Writes go to a private staging directory, ``root/.oci-discovery/tmp``, on
    the same file system, are fsynced and then renamed into place, so nothing
    partial ever appears under a served path, even if the process is killed.
    Inside ``batch()``, blobs wait in the staging directory and are made
    durable with one ``syncfs`` (Linux; elsewhere one fsync per file) before
    they are renamed, in order, and the renames are synced before anything
    else is written: a blob is never visible before its data is on disk, and
    never after the index that references it. A batch is flushed early when
    it holds BATCH_FILES files or BATCH_BYTES bytes.
    Each store object stages in its own run directory, locked with flock; a
    later run removes the run directories of dead processes. Indexes are
    read-modify-written under a per-document flock, and ``lock()`` is a
    site-wide flock (shared for publishers, exclusive for prune). Lock files
    live in ``root/.oci-discovery/locks`` and are never removed (removing a
    lock file breaks flock exclusion).
    """

    def __init__(self, root, file_mode=0o644, dir_mode=0o755, owner=None, group=None, fsync=True):
        self.root = os.path.abspath(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.uid, self.gid = _resolve_owner(owner, group)
        self.fsync = fsync
        self.state_dir = os.path.join(self.root, STATE_DIR)
        self._run_dir = None
        self._run_fd = None
        self._devices = {}
        self._pending = None     # [(temp, target, size)] inside batch()
        self._pending_bytes = 0

    # -- paths -------------------------------------------------------------

    def path(self, key):
        return os.path.join(self.root, *check_key(key).split('/'))

    def describe(self, key):
        return self.path(key)

    # -- reading -----------------------------------------------------------

    def stat(self, keys):
        sizes = {}
        for key in keys:
            try:
                st = os.stat(self.path(key))
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                continue
            except OSError as e:
                raise _os_error(self.path(key), e)
            if stat.S_ISREG(st.st_mode):
                sizes[key] = st.st_size
        return sizes

    def list(self, prefix):
        prefix = prefix.rstrip('/')
        top = self.path(prefix)
        if not os.path.isdir(top):
            return
        for dirpath, dirnames, filenames in os.walk(top, onerror=None):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, '/')
            for name in sorted(filenames):
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield rel + '/' + name, st.st_size, st.st_mtime

    def read(self, key, max_bytes):
        path = self.path(key)
        try:
            with open(path, 'rb') as f:
                data = f.read(max_bytes + 1)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise StoreError('%s cannot exist: %s is a file, not a directory' % (path, self._file_ancestor(key)))
        except IsADirectoryError:
            raise StoreError('%s: is a directory, expected a file' % path)
        except OSError as e:
            raise _os_error(path, e)
        if len(data) > max_bytes:
            raise StoreError('%s: larger than %d bytes' % (path, max_bytes))
        return data

    def _file_ancestor(self, key):
        parts = check_key(key).split('/')
        for i in range(1, len(parts)):
            candidate = os.path.join(self.root, *parts[:i])
            if os.path.lexists(candidate) and not os.path.isdir(candidate):
                return candidate
        return '(a parent directory)'

    # -- writing -----------------------------------------------------------

    def _makedirs(self, path):
        """Create ``path`` and missing parents with dir_mode/owner; existing ones are untouched."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for directory in reversed(missing):
            try:
                os.mkdir(directory, self.dir_mode)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise StoreError('%s: exists and is not a directory' % directory)
                continue
            except OSError as e:
                raise _os_error('cannot create directory %s' % directory, e)
            os.chmod(directory, self.dir_mode)  # mkdir's mode is filtered by the umask
            if self.uid != -1 or self.gid != -1:
                os.chown(directory, self.uid, self.gid)

    def _state_path(self, *parts):
        path = os.path.join(self.state_dir, *parts)
        if not os.path.isdir(path):
            # Private bookkeeping: not served, so not subject to dir_mode/owner.
            os.makedirs(path, 0o755, exist_ok=True)
        return path

    def _staging(self):
        """This store's run directory (created, locked and stale runs swept on first use)."""
        if self._run_dir is None:
            self._makedirs(self.root)
            tmp = self._state_path('tmp')
            _sweep_stale_runs(tmp)
            run_dir = tempfile.mkdtemp(prefix='run-', dir=tmp)
            fd = os.open(run_dir, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._run_dir, self._run_fd = run_dir, fd
        return self._run_dir

    def close(self):
        """Remove this store's staging directory (safe to call more than once)."""
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            os.close(self._run_fd)
            self._run_dir = self._run_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _temp_for(self, target):
        """An open temp file on the file system of ``target``'s directory: (fd, path)."""
        directory = os.path.dirname(target)
        self._makedirs(directory)
        staging = self._staging()
        if dev_of(self._devices, directory) != dev_of(self._devices, staging):
            # Another file system is mounted under the root: stage beside the target.
            staging = directory
        fd, path = tempfile.mkstemp(prefix='.oci-part-', dir=staging)
        return fd, path

    def _attributes(self, fd):
        os.fchmod(fd, self.file_mode)
        if self.uid != -1 or self.gid != -1:
            os.fchown(fd, self.uid, self.gid)

    def _finish(self, fd, temp, target):
        """fsync, set mode/owner, rename into place, fsync the directory."""
        try:
            if self.fsync:
                os.fsync(fd)
            self._attributes(fd)
        finally:
            os.close(fd)
        os.rename(temp, target)
        if self.fsync:
            _fsync_dir(os.path.dirname(target))

    def put_blob(self, key, fileobj, digest, size, media_type=None):
        target = self.path(key)
        fd, temp = self._temp_for(target)
        try:
            with os.fdopen(os.dup(fd), 'wb') as out:
                count = copy_verified(fileobj, out, digest, size, 'blob %s (for %s)' % (digest, target))
            if self._pending is not None:
                self._attributes(fd)
                os.close(fd)
                fd = None
                self._pending.append((temp, target, count))
                self._pending_bytes += count
                if len(self._pending) >= BATCH_FILES or self._pending_bytes >= BATCH_BYTES:
                    self._flush()
                return count
            self._finish(fd, temp, target)
            fd = None
        except BaseException:
            if fd is not None:
                os.close(fd)
            _unlink_quietly(temp)
            raise
        return count

    @contextlib.contextmanager
    def batch(self):
        if self._pending is not None:      # nested: the outer batch flushes
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            # Also on an error: what arrived before it was verified, so it is published
            # (and a re-run does not send it again). A killed process publishes nothing.
            try:
                self._flush()
            finally:
                for temp, dummy, dummy2 in self._pending:
                    _unlink_quietly(temp)
                self._pending = None

    def _flush(self):
        """Make the pending blobs durable, rename them into place in order, sync the renames."""
        pending, self._pending[:] = list(self._pending), []
        self._pending_bytes = 0
        if not pending:
            return
        if self.fsync and not _syncfs(self._staging()):
            for temp, dummy, dummy2 in pending:
                _fsync_path(temp)
        done = 0
        try:
            for temp, target, dummy in pending:
                os.rename(temp, target)
                done += 1
        finally:
            for temp, dummy, dummy2 in pending[done:]:
                _unlink_quietly(temp)
        if self.fsync and not _syncfs(self._staging()):
            for directory in sorted(set(os.path.dirname(target) for dummy, target, dummy2 in pending)):
                _fsync_dir(directory)

    def put_document(self, key, data, media_type=None):
        target = self.path(key)
        if os.path.isdir(target):
            raise StoreError('%s: is a directory, expected a file' % target)
        fd, temp = self._temp_for(target)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self._finish(fd, temp, target)
            fd = None
        except BaseException:
            if fd is not None:
                os.close(fd)
            _unlink_quietly(temp)
            raise

    @contextlib.contextmanager
    def _flock(self, name, exclusive):
        self._makedirs(self.root)
        path = os.path.join(self._state_path('locks'), name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _os_error('cannot remove %s' % self.path(key), e)

    def lock(self, exclusive=False):
        return self._flock('site.lock', exclusive)


def dev_of(cache, directory):
    """The device of ``directory``, cached in ``cache``."""
    dev = cache.get(directory)
    if dev is None:
        dev = cache[directory] = os.stat(directory).st_dev
    return dev


_SYNCFS = []


def _syncfs(path):
    """syncfs(2) on the file system holding ``path``; False where it is not available."""
    if not _SYNCFS:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            _SYNCFS.append(libc.syncfs)
        except (AttributeError, OSError, ImportError):
            _SYNCFS.append(None)
    syncfs = _SYNCFS[0]
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _sweep_stale_runs(tmp):
    """Remove run directories whose process died (unlocked and older than a minute)."""
    now = time.time()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        path = os.path.join(tmp, name)
        try:
            if now - os.lstat(path).st_mtime < STALE_RUN_SECONDS:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                continue  # a live run holds it
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
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
    returns a binary file object. Member names are the digests; nothing
    else about a member is used by the reader.
    """
    with tarfile.open(fileobj=fileobj, mode='w|', format=tarfile.PAX_FORMAT) as archive:
        for blob in blobs:
            info = tarfile.TarInfo(str(parse_digest(blob['digest'])))
            info.size = blob['size']
            info.mode = 0o644
            with open_blob(blob['digest']) as f:
                archive.addfile(info, f)


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
