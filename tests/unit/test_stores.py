# -*- coding: utf-8 -*-
"""WebRootStore: verified atomic blob writes, atomic documents, locked read-modify-write."""
import hashlib
import io
import json
import multiprocessing
import os
import signal
import stat
import tarfile
import time

import pytest
from rig.published import snapshot_tree

from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._stores import (
    STATE_DIR, StoreError, WebRootStore, check_key, read_blob_archive, write_blob_archive)


def digest_of(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def served_files(root):
    """Every file under root except the store's private state directory."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and STATE_DIR in dirnames:
            dirnames.remove(STATE_DIR)
        found.extend(os.path.relpath(os.path.join(dirpath, n), root) for n in filenames)
    return sorted(found)


@pytest.fixture
def umask077():
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_put_blob_is_visible_world_readable_and_verified(tmp_path, umask077):
    data = b'layer bytes' * 100
    with WebRootStore(str(tmp_path / 'site')) as store:
        written = store.put_blob('oci-cas/sha256/ab/blob', io.BytesIO(data), digest_of(data), len(data), 'x/y')
    path = tmp_path / 'site' / 'oci-cas' / 'sha256' / 'ab' / 'blob'
    assert written == len(data)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    for directory in (tmp_path / 'site', path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert served_files(str(tmp_path / 'site')) == ['oci-cas/sha256/ab/blob']
    # the staging run directory is gone once the store is closed
    assert os.listdir(str(tmp_path / 'site' / STATE_DIR / 'tmp')) == []


@pytest.mark.parametrize('content, message', [
    (b'other', 'digest mismatch'),
    (b'short', 'size mismatch'),
    (b'much too long content', 'size mismatch'),
])
def test_put_blob_mismatch_leaves_nothing_visible(tmp_path, content, message):
    expected = b'exact'
    store = WebRootStore(str(tmp_path / 'site'))
    size = len(expected) if content != b'short' else len(expected) + 3
    with pytest.raises(VerificationError, match=message) as info:
        store.put_blob('oci-cas/sha256/ab/blob', io.BytesIO(content), digest_of(expected), size, None)
    assert digest_of(expected) in str(info.value)
    assert served_files(str(tmp_path / 'site')) == []
    run_dir = store._run_dir
    assert os.listdir(run_dir) == []
    store.close()
    assert not os.path.exists(run_dir)


def test_put_blob_replaces_a_corrupt_file(tmp_path):
    data = b'good'
    target = tmp_path / 'site' / 'blob'
    target.parent.mkdir()
    target.write_bytes(b'bad!!')
    store = WebRootStore(str(tmp_path / 'site'))
    store.put_blob('blob', io.BytesIO(data), digest_of(data), len(data))
    assert target.read_bytes() == data


def test_modes_and_owner(tmp_path):
    store = WebRootStore(str(tmp_path / 'site'), file_mode=0o640, dir_mode=0o750, owner='1', group='1')
    store.put_document('a/b/doc', b'{}', 'application/json')
    doc = tmp_path / 'site' / 'a' / 'b' / 'doc'
    assert stat.S_IMODE(doc.stat().st_mode) == 0o640
    assert (doc.stat().st_uid, doc.stat().st_gid) == (1, 1)
    assert stat.S_IMODE(doc.parent.stat().st_mode) == 0o750
    assert doc.parent.stat().st_uid == 1
    with pytest.raises(StoreError, match="owner 'no-such-user-here'"):
        WebRootStore(str(tmp_path), owner='no-such-user-here')


def test_existing_directories_are_left_alone(tmp_path):
    (tmp_path / 'site' / 'a').mkdir(parents=True)
    os.chmod(str(tmp_path / 'site' / 'a'), 0o711)
    WebRootStore(str(tmp_path / 'site')).put_document('a/doc', b'x')
    assert stat.S_IMODE((tmp_path / 'site' / 'a').stat().st_mode) == 0o711


def test_stat_read_list(tmp_path):
    store = WebRootStore(str(tmp_path / 'site'))
    assert store.stat(['nothing/here']) == {}
    assert store.read('nothing', 10) is None
    store.put_document('oci-cas/sha256/aa/x', b'12345')
    store.put_document('oci-cas/sha256/bb/y', b'1')
    store.put_document('oci-index/app', b'{}')
    assert store.stat(['oci-cas/sha256/aa/x', 'oci-cas/sha256/aa', 'oci-cas/sha256/aa/x/sub', 'oci-index/app']) == \
        {'oci-cas/sha256/aa/x': 5, 'oci-index/app': 2}
    listed = sorted((key, size) for key, size, mtime in store.list('oci-cas/'))
    assert listed == [('oci-cas/sha256/aa/x', 5), ('oci-cas/sha256/bb/y', 1)]
    assert list(store.list('absent/')) == []
    assert store.read('oci-cas/sha256/aa/x', 5) == b'12345'
    with pytest.raises(StoreError, match='larger than 4 bytes'):
        store.read('oci-cas/sha256/aa/x', 4)
    with pytest.raises(StoreError, match='is a directory'):
        store.read('oci-cas/sha256', 100)
    store.delete('oci-index/app')
    store.delete('oci-index/app')
    assert store.read('oci-index/app', 10) is None


@pytest.mark.parametrize('key', ['', '/abs', 'a/../b', 'a//b', './a', 'a/', 'a\\b', 'a\0b', None])
def test_check_key_refuses_unclean_keys(key):
    with pytest.raises(StoreError):
        check_key(key)


def test_update_document(tmp_path):
    store = WebRootStore(str(tmp_path / 'site'))
    seen = []

    def update(raw):
        seen.append(raw)
        return (raw or b'') + b'+'

    assert store.update_document('d', update) == (None, b'+')
    assert store.update_document('d', update) == (b'+', b'++')
    before, after = store.update_document('d', lambda raw: None)
    assert before == after == b'++'
    assert after is before
    assert seen == [None, b'+']


def _append_tag(root, tag, barrier):
    barrier.wait()
    store = WebRootStore(root)

    def update(raw):
        doc = json.loads(raw) if raw else {'tags': []}
        time.sleep(0.01)   # widen the window a lost update would need
        doc['tags'].append(tag)
        return json.dumps(doc).encode()

    store.update_document('oci-index/app', update)
    store.close()


def test_concurrent_updates_lose_nothing(tmp_path):
    root = str(tmp_path / 'site')
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_append_tag, args=(root, 't%d' % i, barrier)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    tags = json.loads((tmp_path / 'site' / 'oci-index' / 'app').read_bytes())['tags']
    assert sorted(tags) == sorted('t%d' % i for i in range(8))


def test_site_lock_exclusive_waits_for_shared(tmp_path):
    store = WebRootStore(str(tmp_path / 'site'))
    other = WebRootStore(str(tmp_path / 'site'))
    import fcntl
    with store.lock(False):
        lock_path = os.path.join(str(tmp_path / 'site'), STATE_DIR, 'locks', 'site.lock')
        fd = os.open(lock_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)   # shared holders coexist
        finally:
            os.close(fd)
        with other.lock(False):
            pass


def test_stale_run_directories_are_swept(tmp_path):
    store = WebRootStore(str(tmp_path / 'site'))
    store.put_document('x', b'1')
    tmp = os.path.join(str(tmp_path / 'site'), STATE_DIR, 'tmp')
    dead = os.path.join(tmp, 'run-dead')
    os.mkdir(dead)
    with open(os.path.join(dead, '.oci-part-1'), 'wb') as f:
        f.write(b'partial')
    old = time.time() - 3600
    os.utime(dead, (old, old))
    live = store._run_dir
    os.utime(live, (old, old))
    young = os.path.join(tmp, 'run-young')
    os.mkdir(young)
    other = WebRootStore(str(tmp_path / 'site'))
    other.put_document('y', b'2')
    remaining = set(os.listdir(tmp))
    assert 'run-dead' not in remaining
    assert os.path.basename(live) in remaining       # locked by a live store
    assert 'run-young' in remaining                  # too recent to judge
    store.close()
    other.close()


def test_blob_archive_round_trip(tmp_path):
    blobs = {}
    for data in (b'one', b'two' * 1000, b''):
        blobs[digest_of(data)] = data
    items = [{'digest': d, 'size': len(v)} for d, v in blobs.items()]
    buf = io.BytesIO()
    write_blob_archive(buf, items, lambda d: io.BytesIO(blobs[d]))
    buf.seek(0)
    got = [(digest, f.read()) for digest, f in read_blob_archive(buf, 'test archive')]
    assert got == list(blobs.items())


def test_blob_archive_refuses_non_files(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as archive:
        info = tarfile.TarInfo('sha256:link')
        info.type = tarfile.SYMTYPE
        info.linkname = '/etc/passwd'
        archive.addfile(info)
    buf.seek(0)
    with pytest.raises(StoreError, match="'sha256:link' is not a regular file"):
        list(read_blob_archive(buf, 'test archive'))
    with pytest.raises(StoreError, match='broken blob archive'):
        list(read_blob_archive(io.BytesIO(b'not a tar at all' * 64), 'test archive'))


def test_parse_mode():
    from ansible_collections.oci.discovery.plugins.module_utils._stores import parse_mode
    assert parse_mode('0644') == parse_mode('644') == parse_mode(0o644) == 0o644
    for bad in ('u+rw', '', '99', 0o17777, None, True):
        with pytest.raises(StoreError, match='directory_mode'):
            parse_mode(bad, 'directory_mode')


def test_batch_publishes_at_the_end_in_order(tmp_path, monkeypatch):
    root = str(tmp_path / 'site')
    store = WebRootStore(root)
    blobs = [b'first', b'second', b'third']
    renamed = []
    real_rename = os.rename
    monkeypatch.setattr(os, 'rename', lambda a, b, **fds: (renamed.append(os.path.basename(b)), real_rename(a, b, **fds)))
    with store.batch():
        for i, data in enumerate(blobs):
            store.put_blob('oci-cas/b%d' % i, io.BytesIO(data), digest_of(data), len(data))
            assert served_files(root) == []          # nothing visible before the batch ends
    assert renamed == ['b0', 'b1', 'b2']
    assert served_files(root) == ['oci-cas/b0', 'oci-cas/b1', 'oci-cas/b2']
    assert stat.S_IMODE(os.stat(os.path.join(root, 'oci-cas', 'b0')).st_mode) == 0o644
    assert os.listdir(store._run_dir) == []
    store.close()


def test_batch_error_publishes_what_was_verified(tmp_path):
    root = str(tmp_path / 'site')
    with WebRootStore(root) as store:
        with pytest.raises(VerificationError):
            with store.batch():
                store.put_blob('good', io.BytesIO(b'ok'), digest_of(b'ok'), 2)
                store.put_blob('bad', io.BytesIO(b'no'), digest_of(b'ok'), 2)
        assert served_files(root) == ['good']
        assert os.listdir(store._run_dir) == []


def test_batch_flushes_early_when_large(tmp_path, monkeypatch):
    from ansible_collections.oci.discovery.plugins.module_utils import _stores
    monkeypatch.setattr(_stores, 'BATCH_FILES', 2)
    root = str(tmp_path / 'site')
    with WebRootStore(root) as store:
        with store.batch():
            for i in range(3):
                data = b'%d' % i
                store.put_blob('b%d' % i, io.BytesIO(data), digest_of(data), 1)
            assert served_files(root) == ['b0', 'b1']
        assert served_files(root) == ['b0', 'b1', 'b2']


def _killed_in_batch(root):
    store = WebRootStore(root)
    with store.batch():
        store.put_blob('blob', io.BytesIO(b'data'), digest_of(b'data'), 4)
        os._exit(0)     # killed before the batch ends


def test_killed_batch_leaves_nothing_visible(tmp_path):
    root = str(tmp_path / 'site')
    child = multiprocessing.get_context('fork').Process(target=_killed_in_batch, args=(root,))
    child.start()
    child.join(30)
    assert served_files(root) == []
    assert os.path.isdir(os.path.join(root, STATE_DIR, 'tmp'))   # its staging is left for a later sweep


# -- hostile web roots: symbolic links (and FIFOs) planted by whoever can write into the root -------------

@pytest.fixture
def hostile(tmp_path):
    """(root, victim): an empty web root and, outside it, a directory holding an old file."""
    root, victim = tmp_path / 'site', tmp_path / 'victim'
    root.mkdir()
    (victim / 'tmp' / 'old').mkdir(parents=True)
    (victim / 'tmp' / 'old' / 'precious').write_bytes(b'keep me')
    (victim / 'file').write_bytes(b'outside')
    old = time.time() - 3600
    for path in (victim / 'tmp' / 'old', victim / 'tmp'):
        os.utime(str(path), (old, old))
    return str(root), str(victim)


def _blob():
    data = b'layer'
    return 'oci-cas/sha256/ab/' + hashlib.sha256(data).hexdigest(), data


def test_state_directory_symlinked_out_of_the_root_is_refused(hostile):
    """ROOT/.oci-discovery -> /victim with an old /victim/tmp/old: the sweep must not delete it."""
    root, victim = hostile
    os.symlink(victim, os.path.join(root, STATE_DIR))
    before = snapshot_tree(victim)
    key, data = _blob()
    with WebRootStore(root, owner='1') as store:
        with pytest.raises(StoreError, match=r'%s: is a symbolic link' % os.path.join(root, STATE_DIR)):
            store.put_blob(key, io.BytesIO(data), digest_of(data), len(data))
        with pytest.raises(StoreError, match='is a symbolic link'):
            with store.lock():
                pass
    assert snapshot_tree(victim) == before


def test_index_directory_symlinked_out_of_the_root_is_refused(hostile):
    """ROOT/oci-index -> /outside: nothing is read, written or chowned there."""
    root, victim = hostile
    os.symlink(victim, os.path.join(root, 'oci-index'))
    before = snapshot_tree(victim)
    with WebRootStore(root, owner='1', group='1') as store:
        for attempt in (lambda: store.read('oci-index/team/app', 100),
                        lambda: store.put_document('oci-index/team/app', b'{}'),
                        lambda: store.update_document('oci-index/file', lambda raw: b'{}'),
                        lambda: store.stat(['oci-index/file']),
                        lambda: list(store.list('oci-index/'))):
            with pytest.raises(StoreError, match=r'%s: is a symbolic link' % os.path.join(root, 'oci-index')):
                attempt()
        with pytest.raises(StoreError, match=r'%s: is a symbolic link' % os.path.join(root, 'oci-index')):
            store.delete('oci-index/file')
    assert snapshot_tree(victim) == before


def test_dangling_lock_symlink_is_not_created(hostile, tmp_path):
    """ROOT/.oci-discovery/locks/site.lock -> /etc/nologin (here: a path in a temp dir) is never created."""
    root, victim = hostile
    locks = os.path.join(root, STATE_DIR, 'locks')
    os.makedirs(locks)
    nologin = str(tmp_path / 'etc-nologin')
    os.symlink(nologin, os.path.join(locks, 'site.lock'))
    store = WebRootStore(root)
    with pytest.raises(StoreError, match=r'%s: is a symbolic link' % os.path.join(locks, 'site.lock')):
        with store.lock():
            pass
    assert not os.path.lexists(nologin)
    os.symlink(nologin, os.path.join(locks, 'doc-%s.lock' % hashlib.sha256(b'oci-index/app').hexdigest()[:32]))
    with pytest.raises(StoreError, match='is a symbolic link'):
        store.update_document('oci-index/app', lambda raw: b'{}')
    assert not os.path.lexists(nologin)
    assert not os.path.exists(os.path.join(root, 'oci-index', 'app'))
    store.close()


def test_symlinked_blob_directory_and_blob_are_refused(hostile):
    root, victim = hostile
    key, data = _blob()
    os.makedirs(os.path.join(root, 'oci-cas', 'sha256'))
    os.symlink(victim, os.path.join(root, 'oci-cas', 'sha256', 'ab'))
    before = snapshot_tree(victim)
    with WebRootStore(root, owner='1') as store:
        with pytest.raises(StoreError, match='oci-cas/sha256/ab: is a symbolic link'):
            store.stat([key])
        with pytest.raises(StoreError, match='oci-cas/sha256/ab: is a symbolic link'):
            store.put_blob(key, io.BytesIO(data), digest_of(data), len(data))
        with pytest.raises(StoreError, match='oci-cas/sha256/ab: is a symbolic link'):
            with store.batch():
                store.put_blob(key, io.BytesIO(data), digest_of(data), len(data))
        assert list(store.list('oci-cas/')) == []        # a link is not an object, and not descended into
        os.unlink(os.path.join(root, 'oci-cas', 'sha256', 'ab'))
        os.makedirs(os.path.join(root, 'oci-cas', 'sha256', 'ab'))
        os.symlink(os.path.join(victim, 'file'), os.path.join(root, key))
        with pytest.raises(StoreError, match='%s: is a symbolic link' % key):
            store.stat([key])
        with pytest.raises(StoreError, match='%s: is a symbolic link' % key):
            store.read(key, 100)
    assert snapshot_tree(victim) == before


def test_symlinked_index_file_is_refused(hostile):
    root, victim = hostile
    os.makedirs(os.path.join(root, 'oci-index', 'team'))
    os.symlink(os.path.join(victim, 'file'), os.path.join(root, 'oci-index', 'team', 'app'))
    before = snapshot_tree(victim)
    with WebRootStore(root) as store:
        for attempt in (lambda: store.read('oci-index/team/app', 100),
                        lambda: store.put_document('oci-index/team/app', b'{}'),
                        lambda: store.update_document('oci-index/team/app', lambda raw: b'{}')):
            with pytest.raises(StoreError, match='oci-index/team/app: is a symbolic link'):
                attempt()
    assert snapshot_tree(victim) == before


def _too_slow(signum, frame):
    raise AssertionError('blocked on a FIFO')


def test_fifo_index_is_refused_without_blocking(hostile):
    root, dummy = hostile
    signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(10)
    _fifo_index_refused(root)
    signal.alarm(0)


def _fifo_index_refused(root):
    os.makedirs(os.path.join(root, 'oci-index'))
    os.mkfifo(os.path.join(root, 'oci-index', 'app'))
    with WebRootStore(root) as store:
        with pytest.raises(StoreError, match='oci-index/app: not a regular file'):
            store.read('oci-index/app', 100)
        with pytest.raises(StoreError, match='oci-index/app: not a regular file'):
            store.update_document('oci-index/app', lambda raw: b'{}')


def test_stale_run_sweep_never_follows_links(hostile):
    """A link planted in the staging area (to a directory or inside a dead run) is removed, never followed."""
    root, victim = hostile
    tmp = os.path.join(root, STATE_DIR, 'tmp')
    dead = os.path.join(tmp, 'run-dead')
    os.makedirs(dead)
    os.symlink(os.path.join(victim, 'tmp'), os.path.join(dead, 'inner'))
    os.symlink(os.path.join(victim, 'tmp'), os.path.join(tmp, 'run-link'))
    old = time.time() - 3600
    for path in (dead, os.path.join(tmp, 'run-link')):
        os.utime(path, (old, old), follow_symlinks=False)
    before = snapshot_tree(victim)
    with WebRootStore(root) as store:
        store.put_document('x', b'1')
    assert not os.path.lexists(dead)
    assert snapshot_tree(victim) == before


def test_root_given_as_a_symlink_is_resolved_once(tmp_path):
    """/srv/www -> /data/www: the root's own path is the administrator's, and may lead anywhere."""
    real = tmp_path / 'data-www'
    real.mkdir()
    os.symlink(str(real), str(tmp_path / 'www'))
    key, data = _blob()
    with WebRootStore(str(tmp_path / 'www')) as store:
        store.put_blob(key, io.BytesIO(data), digest_of(data), len(data))
        assert store.stat([key]) == {key: len(data)}
    assert (real / key).read_bytes() == data


def test_put_blobs_is_all_or_nothing(tmp_path):
    """One blob that does not match: none of the batch is published, even those verified before it."""
    from ansible_collections.oci.discovery.plugins.module_utils._commit import StreamBlobs
    root = str(tmp_path / 'site')
    blobs = [{'key': 'good', 'digest': digest_of(b'ok'), 'size': 2, 'mediaType': 'x'},
             {'key': 'bad', 'digest': digest_of(b'OK'), 'size': 2, 'mediaType': 'x'}]
    with WebRootStore(root) as store:
        with pytest.raises(VerificationError, match=r'blob sha256:\w+ \(for %s\): digest mismatch' % os.path.join(root, 'bad')):
            store.put_blobs(blobs, StreamBlobs([(blobs[0]['digest'], io.BytesIO(b'ok')),
                                                (blobs[1]['digest'], io.BytesIO(b'no'))]))
        assert served_files(root) == []
        assert os.listdir(store._run_dir) == []


@pytest.mark.parametrize('content, message', [(b'layer data, one byte more', 'expected 24 bytes, got more'),
                                              (b'layer data, one byte', 'expected 24 bytes, got 20'),
                                              (b'layer data, wrong bytes!', 'digest mismatch')])
def test_put_blob_from_a_regular_file_is_copied_by_the_kernel_and_verified(tmp_path, content, message):
    """From a file (the layout's, or one sent to the host) the copy is the kernel's; the copy is what is verified."""
    from ansible_collections.oci.discovery.plugins.module_utils._digests import copy_range_verified
    good = b'layer data, right bytes!'
    source = tmp_path / 'blob'
    source.write_bytes(good)
    root = str(tmp_path / 'site')
    with WebRootStore(root) as store:
        with open(str(source), 'rb', buffering=0) as f:
            assert store.put_blob('oci-cas/good', f, digest_of(good), len(good)) == len(good)
        source.write_bytes(content)
        with open(str(source), 'rb', buffering=0) as f:
            with pytest.raises(VerificationError, match=message):
                store.put_blob('oci-cas/bad', f, digest_of(good), len(good))
    assert served_files(root) == ['oci-cas/good']
    with open(os.path.join(root, 'oci-cas', 'good'), 'rb') as f:
        assert f.read() == good
    out = tmp_path / 'copy'
    with open(str(source), 'rb') as src, open(str(out), 'w+b') as dst:   # this file system lets the kernel copy
        with pytest.raises(VerificationError):
            copy_range_verified(src.fileno(), dst.fileno(), digest_of(good), len(good), 'test')
        assert out.read_bytes() == content[:len(good) + 1]
