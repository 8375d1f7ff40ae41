# -*- coding: utf-8 -*-
"""The records of verified blobs (``_record``): on the controller's layout, in a web root, under attack.

Real files throughout. A record only takes files whose timestamps are a second old, so the
layouts and sites here are made, then left a second (``aged``) before the runs that matter.
"""
import json
import multiprocessing
import os
import time

import pytest

from layout_builder import sample_layout

from ansible_collections.oci.discovery.plugins.module_utils import _publish, _record
from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout, LayoutError
from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout
from ansible_collections.oci.discovery.plugins.module_utils._stores import STATE_DIR, WebRootStore

LAYER = b'the layer the tests corrupt ' * 64
NOBODY = 65534


def aged():
    time.sleep(_record.SETTLE_NS / 1e9 + 0.05)


@pytest.fixture
def builder(tmp_path):
    b = sample_layout(tmp_path / 'layout')
    manifest = b.image('big', layers=(LAYER,))
    b.save()
    b.layer = json.loads(open(b.path(manifest), 'rb').read())['layers'][0]
    aged()
    return b


def validated(root):
    """A validated Layout (its ``hashed``: how many blobs it read)."""
    layout = Layout(root)
    layout.validate()
    return layout


def rewrite_in_place(path, data):
    """Overwrite a file's bytes in place (same inode), then put its size and mtime back."""
    before = os.stat(path)
    assert len(data) == before.st_size
    with open(path, 'r+b') as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    return after


def record_path():
    directory = _record.cache_dir()
    [name] = [n for n in os.listdir(directory) if n.endswith('.json')]
    return os.path.join(directory, name)


def forge(path, name, st, digest):
    """Make the record at ``path`` claim that the file ``name`` with ``st`` holds ``digest``."""
    with open(path) as f:
        data = json.load(f)
    data['blobs'][name] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest]
    with open(path, 'w') as f:
        json.dump(data, f)


# -- the layout's record -----------------------------------------------------------

def test_a_rerun_hashes_nothing_and_a_new_blob_only_it(builder):
    first = validated(builder.root)
    assert first.hashed == 7             # the blobs that are not manifests or indexes (read by the walk)
    assert validated(builder.root).hashed == 0
    with open(record_path()) as f:
        entries = json.load(f)['blobs']
    assert builder.layer['digest'] in entries and oct(os.stat(record_path()).st_mode & 0o777) == '0o600'
    builder.image('more', layers=(b'a new layer',))
    builder.save()
    aged()
    assert validated(builder.root).hashed == 2    # the new image's layer and config
    assert validated(builder.root).hashed == 0


def test_a_blob_changed_in_place_with_size_and_mtime_restored_is_hashed_again(builder):
    validated(builder.root)
    path = builder.path(builder.layer)
    rewrite_in_place(path, b'X' * len(LAYER))
    with pytest.raises(LayoutError, match='digest mismatch') as e:
        Layout(builder.root).validate()
    assert builder.layer['digest'] in str(e.value)
    rewrite_in_place(path, LAYER)       # repaired: the ctime moved again, so it is read again and passes
    layout = validated(builder.root)
    assert layout.hashed == 1


def test_a_blob_replaced_by_another_file_is_hashed_again(builder):
    validated(builder.root)
    path = builder.path(builder.layer)
    before = os.stat(path)
    with open(path + '.new', 'wb') as f:
        f.write(LAYER)
    os.utime(path + '.new', ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(path + '.new', path)
    assert os.stat(path).st_ino != before.st_ino
    assert validated(builder.root).hashed == 1


def test_young_blobs_are_hashed_every_run_until_they_settle(tmp_path):
    b = sample_layout(tmp_path / 'layout')     # just written
    assert validated(b.root).hashed == 6
    assert validated(b.root).hashed == 6
    aged()
    assert validated(b.root).hashed == 6
    assert validated(b.root).hashed == 0


def test_an_unwritable_record_costs_time_only(builder, tmp_path, monkeypatch):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_bytes(b'')
    monkeypatch.setenv('XDG_CACHE_HOME', str(blocker / 'cache'))
    assert validated(builder.root).hashed == 7
    assert validated(builder.root).hashed == 7
    rewrite_in_place(builder.path(builder.layer), b'X' * len(LAYER))
    with pytest.raises(LayoutError, match='digest mismatch'):
        Layout(builder.root).validate()


@pytest.mark.parametrize('how', ['file of another user', 'group-writable file', 'world-writable directory',
                                 'directory of another user'])
def test_a_record_someone_else_can_write_is_not_read(builder, how):
    validated(builder.root)
    path = record_path()
    st = rewrite_in_place(builder.path(builder.layer), b'X' * len(LAYER))
    forge(path, builder.layer['digest'], st, builder.layer['digest'])
    if how == 'file of another user':
        os.chown(path, NOBODY, NOBODY)
    elif how == 'group-writable file':
        os.chmod(path, 0o620)
    elif how == 'world-writable directory':
        os.chmod(os.path.dirname(path), 0o777)
    else:
        os.chown(os.path.dirname(path), NOBODY, NOBODY)
    with pytest.raises(LayoutError, match='digest mismatch'):
        Layout(builder.root).validate()


def test_the_forged_entry_would_be_trusted_in_a_private_record(builder):
    # The control for the test above: the same forgery in the user's own record is believed (a record
    # is only as safe as where it lives), and then the store's own check on arrival stops the publish.
    validated(builder.root)
    st = rewrite_in_place(builder.path(builder.layer), b'X' * len(LAYER))
    forge(record_path(), builder.layer['digest'], st, builder.layer['digest'])
    layout = validated(builder.root)
    assert layout.hashed == 0
    site = os.path.join(os.path.dirname(builder.root), 'site')
    with pytest.raises(VerificationError, match='digest mismatch'):
        publish(builder.root, site)
    assert not os.path.exists(os.path.join(site, 'oci-index', 'app'))     # the index was not written


def _validate_in_child(root, queue):
    layout = Layout(root)
    layout.validate()
    queue.put(layout.hashed)


def test_concurrent_validations_hash_each_blob_once(builder):
    queue = multiprocessing.get_context('fork').Queue()
    children = [multiprocessing.get_context('fork').Process(target=_validate_in_child, args=(builder.root, queue))
                for dummy in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    counts = sorted(queue.get(timeout=5) for dummy in children)
    assert counts == [0, 0, 0, 7]


# -- the web root's record ------------------------------------------------------------

def publish(layout_root, site):
    layout = Layout(layout_root)
    with WebRootStore(site) as store:
        outcome = _publish.run(_publish.StoreTarget(store), _publish.Request(SiteLayout('cas_bucket', 'example.com/app')),
                               layout)
    return outcome.result


def site_path(site, desc):
    return os.path.join(site, 'oci-cas', 'sha256', desc['digest'][7:9], desc['digest'][7:])


def test_a_corrupted_blob_at_the_target_is_replaced_not_trusted(builder, tmp_path):
    site = str(tmp_path / 'site')
    first = publish(builder.root, site)
    assert first['changed'] and first['blobs_present'] == 0
    with open(os.path.join(site, STATE_DIR, 'verified-blobs.json')) as f:
        recorded = json.load(f)['blobs']
    assert len(recorded) == first['blobs_sent']      # every blob written is recorded as verified
    path = site_path(site, builder.layer)
    assert publish(builder.root, site)['changed'] is False
    rewrite_in_place(path, b'X' * len(LAYER))       # corrupted in place, size and mtime as they were
    again = publish(builder.root, site)
    assert again['changed'] and again['blobs_sent'] == 1 and again['bytes_sent'] == len(LAYER)
    assert path in again['warnings'][0] and 'did not match their digest and were replaced' in again['warnings'][0]
    with open(path, 'rb') as f:
        assert f.read() == LAYER
    assert publish(builder.root, site)['changed'] is False


def test_a_wrong_blob_at_the_target_that_no_record_knows_is_hashed_and_replaced(builder, tmp_path):
    site = str(tmp_path / 'site')
    publish(builder.root, site)
    os.unlink(os.path.join(site, STATE_DIR, 'verified-blobs.json'))
    path = site_path(site, builder.layer)
    os.unlink(path)
    with open(path, 'wb') as f:     # put there by someone else: the right size, not the right bytes
        f.write(b'Y' * len(LAYER))
    again = publish(builder.root, site)
    assert again['blobs_sent'] == 1
    with open(path, 'rb') as f:
        assert f.read() == LAYER


def test_a_forged_entry_in_a_web_root_record_of_another_user_is_not_read(builder, tmp_path):
    site = str(tmp_path / 'site')
    publish(builder.root, site)
    record = os.path.join(site, STATE_DIR, 'verified-blobs.json')
    path = site_path(site, builder.layer)
    st = rewrite_in_place(path, b'X' * len(LAYER))
    key = os.path.relpath(path, site)
    forge(record, key, st, builder.layer['digest'])
    os.chown(record, NOBODY, NOBODY)
    again = publish(builder.root, site)
    assert again['blobs_sent'] == 1
    with open(path, 'rb') as f:
        assert f.read() == LAYER


def test_entries_of_blobs_gone_from_the_layout_are_dropped(builder):
    validated(builder.root)
    os.unlink(builder.path(builder.layer))
    builder.index['manifests'] = [m for m in builder.index['manifests']
                                  if m.get('annotations', {}).get('org.opencontainers.image.ref.name') != 'big']
    builder.image('more', layers=(b'a new layer',))
    builder.save()
    aged()
    validated(builder.root)             # records the new blobs, and drops what no longer matches a file
    with open(record_path()) as f:
        entries = json.load(f)['blobs']
    assert builder.layer['digest'] not in entries and len(entries) == 7


def publish_verified_there(layout_root, site):
    """Publish into a web root: it verifies every blob on arrival (as on a managed host), so run leaves them unhashed."""
    layout = Layout(layout_root)
    with WebRootStore(site) as store:
        _publish.run(_publish.StoreTarget(store), _publish.Request(SiteLayout('cas_bucket', 'example.com/app')),
                     layout)
    return layout


def test_blobs_verified_on_arrival_are_recorded_so_the_next_run_hashes_none(builder, tmp_path):
    site = str(tmp_path / 'site')
    assert publish_verified_there(builder.root, site).hashed == 0    # every blob sent: hashed at the target only
    assert publish_verified_there(builder.root, site).hashed == 0    # present there, recorded here: not read


def test_a_blob_that_fails_on_arrival_is_not_recorded(builder, tmp_path):
    site = str(tmp_path / 'site')
    path = builder.path(builder.layer)
    good = open(path, 'rb').read()
    rewrite_in_place(path, b'X' * len(LAYER))
    aged()
    with pytest.raises(Exception, match='digest'):
        publish_verified_there(builder.root, site)
    assert not os.path.exists(site_path(site, builder.layer))
    rewrite_in_place(path, good)
    aged()
    layout = publish_verified_there(builder.root, site)
    assert os.path.exists(site_path(site, builder.layer))
    assert publish_verified_there(builder.root, site).hashed == 0 and layout.hashed == 0
