# -*- coding: utf-8 -*-
"""The target side of publish_layout (_target) and the program the action plugin feeds a bare Python."""
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys

from ansible_collections.oci.discovery.plugins.action.publish_layout import _DIRECT_BOOTSTRAP, _direct_input
from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout
from ansible_collections.oci.discovery.plugins.module_utils._stores import write_blob_archive
from ansible_collections.oci.discovery.plugins.module_utils._target import run_direct, run_phase, sources

BLOB = b'a layer, as far as this test is concerned\n'
DIGEST = 'sha256:' + hashlib.sha256(BLOB).hexdigest()
KEY = 'oci-cas/sha256/%s/%s' % (DIGEST[7:9], DIGEST[7:])


def params(root, phase, request, archive=None, deliver=None):
    if archive is not None:
        deliver = {'archives': [archive]}
    return {'root': str(root), 'mode': '0644', 'directory_mode': '0755', 'owner': None, 'group': None,
            '_phase': phase, '_request': request, '_deliver': deliver}


def probe_request(read=('oci-index/app',)):
    return {'site': None, 'blobs': [{'key': KEY, 'digest': DIGEST, 'size': len(BLOB)}], 'read': list(read), 'ops': [],
            'force': False, 'prune': None}


def commit_request():
    site = SiteLayout('cas_bucket', 'example.com/app')
    return {'site': site.to_dict(), 'ops': [], 'force': False, 'documents': [], 'prune': None,
            'send': [{'digest': DIGEST, 'size': len(BLOB), 'key': KEY,
                      'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip'}], 'require': []}


def run_bare_python(program):
    """The program under `python -I -S -c BOOTSTRAP`, as the action plugin runs it: no site-packages, so no
    Ansible and no collection to import."""
    proc = subprocess.run([sys.executable, '-I', '-S', '-c' + _DIRECT_BOOTSTRAP], input=program, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode('utf-8', 'replace')
    return json.loads(proc.stdout.decode('utf-8').strip().splitlines()[-1])


def test_sources_are_the_module_utils_the_target_phases_import():
    """Derived from the imports: every module utility any of them imports is in, Ansible's are not."""
    here = os.path.dirname(os.path.abspath(sys.modules[run_phase.__module__].__file__))
    found = sources()
    assert all(os.path.isfile(os.path.join(here, name + '.py')) for name in found)
    assert {'_target', '_commit', '_plan', '_site', '_stores', '_spec', '_digests', '_documents', '_names',
            '_templates'} <= set(found)
    assert not any(name.startswith('_s3') or name in ('_publish', '_discovery') for name in found)
    for name in found:
        with open(os.path.join(here, name + '.py')) as f:
            text = f.read()
        assert 'from ansible.' not in text and 'import ansible.' not in text, name
        for imported in re.findall(r'plugins\.module_utils(?:\.(_\w+)| import \(?\s*(_\w+))', text):
            assert (imported[0] or imported[1]) in found, (name, imported)


def test_probe_of_a_missing_site_reads_nothing_and_writes_nothing(tmp_path):
    root = tmp_path / 'site'
    result = run_phase(params(root, 'probe', probe_request()))
    assert result['probe'] == {'sizes': {}, 'documents': {'oci-index/app': None}}
    assert not result['changed'] and result['seconds'] >= 0
    assert not root.exists()


def test_commit_puts_the_archived_blob_in_place(tmp_path):
    archive = tmp_path / 'blobs.tar'
    with open(archive, 'wb') as handle:
        write_blob_archive(handle, [{'digest': DIGEST, 'size': len(BLOB)}], lambda digest: io.BytesIO(BLOB))
    root = tmp_path / 'site'
    result = run_phase(params(root, 'commit', commit_request(), str(archive)))
    assert result['changed'] and (root / KEY).read_bytes() == BLOB
    assert run_phase(params(root, 'commit', commit_request(), str(archive)), check_mode=True) == {'changed': False}


def test_run_direct_reports_errors_as_a_failed_result(tmp_path):
    root = tmp_path / 'file'
    root.write_text('a file, not a site\n')
    out = io.StringIO()
    result = run_direct(params(root, 'probe', probe_request(read=['oci-index/app'])), out=out)
    assert result['failed'] and str(root) in result['msg']
    assert json.loads(out.getvalue()) == result


def test_the_direct_program_runs_on_a_bare_python(tmp_path):
    """What the action plugin sends: the phase runs with nothing but the standard library installed."""
    root = tmp_path / 'site'
    (root / 'oci-index').mkdir(parents=True)
    (root / 'oci-index' / 'app').write_bytes(b'{"schemaVersion": 2, "manifests": []}')
    result = run_bare_python(_direct_input(params(root, 'probe', probe_request())))
    assert result['probe']['sizes'] == {}
    assert base64.b64decode(result['probe']['documents']['oci-index/app']) == b'{"schemaVersion": 2, "manifests": []}'

    archive = tmp_path / 'blobs.tar'
    with open(archive, 'wb') as handle:
        write_blob_archive(handle, [{'digest': DIGEST, 'size': len(BLOB)}], lambda digest: io.BytesIO(BLOB))
    committed = run_bare_python(_direct_input(params(root, 'commit', commit_request(), str(archive))))
    assert committed['changed'] and committed['done']['sent'] == 1
    assert (root / KEY).read_bytes() == BLOB
    probed = run_bare_python(_direct_input(params(root, 'probe', probe_request())))
    assert probed['probe']['sizes'] == {KEY: len(BLOB)}


def test_the_direct_program_reports_a_broken_archive_by_name(tmp_path):
    archive = tmp_path / 'blobs.tar'
    archive.write_bytes(b'not a tar archive at all' * 100)
    result = run_bare_python(_direct_input(params(tmp_path / 'site', 'commit', commit_request(), str(archive))))
    assert result['failed'] and str(archive) in result['msg']
    assert not (tmp_path / 'site' / KEY).exists()


def _on_stdin(data=BLOB):
    """The blob (or other bytes in its place) as the archive on a commit's standard input."""
    return ([{'digest': DIGEST, 'size': len(BLOB)}], lambda digest: io.BytesIO(data))


def test_the_direct_program_commits_the_blobs_that_follow_it_on_standard_input(tmp_path):
    root = tmp_path / 'site'
    committed = run_bare_python(_direct_input(params(root, 'commit', commit_request(), deliver={'stdin': True}),
                                              _on_stdin()))
    assert committed['changed'] and committed['done']['sent'] == 1
    assert (root / KEY).read_bytes() == BLOB
    assert os.listdir(str(root / '.oci-discovery' / 'tmp')) == []


def test_a_broken_archive_on_standard_input_is_refused_and_read_to_its_end(tmp_path):
    """Nothing is committed, the error names standard input, and what was left unread is read, so that the
    sender's write never meets a closed pipe."""
    archive = io.BytesIO()
    write_blob_archive(archive, *_on_stdin())
    data = bytearray(archive.getvalue())
    data[data.index(BLOB) + 5] ^= 0xff       # the member's bytes: the digest does not match
    stdin = io.BytesIO(bytes(data) + b'\0' * (3 * 1024 * 1024))
    root = tmp_path / 'site'
    result = run_direct(params(root, 'commit', commit_request(), deliver={'stdin': True}), out=io.StringIO(),
                        stdin=stdin)
    assert result['failed'] and not result['changed']
    assert DIGEST in result['msg'] and 'nothing was committed' in result['msg']
    assert stdin.read() == b'' and stdin.tell() == len(data) + 3 * 1024 * 1024
    assert not (root / KEY).exists()
    stdin = io.BytesIO(b'not a tar archive at all' * 100)
    result = run_direct(params(root, 'commit', commit_request(), deliver={'stdin': True}), out=io.StringIO(),
                        stdin=stdin)
    assert result['failed'] and 'the blob archive on standard input' in result['msg']
    assert stdin.read() == b''


# -- how blobs arrive: in place from the layout (local connection), as files of their own, in archives ---------

def _layout_with_blobs(tmp_path):
    """A layout holding a layer of 3 MiB and a small one; (layout root, the commit request sending both)."""
    from layout_builder import LayoutBuilder
    builder = LayoutBuilder(tmp_path / 'layout')
    large = builder.blob(os.urandom(3 * 1024 * 1024))
    small = builder.blob(b'a small layer')
    builder.save()
    request = commit_request()
    site = SiteLayout('cas_bucket', 'example.com/app')
    request['send'] = [dict(desc, key=site.blob_key(desc['digest'])) for desc in (large, small)]
    return builder, request


def _served(root):
    """{relative path: sha256} of the files a web server would serve (the store's state left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        dirnames[:] = [d for d in dirnames if d != '.oci-discovery']
        for name in filenames:
            with open(os.path.join(dirpath, name), 'rb') as f:
                found[os.path.relpath(os.path.join(dirpath, name), str(root))] = hashlib.sha256(f.read()).hexdigest()
    return found


def _sent_copy(builder, desc, directory, data=None):
    """A copy of a blob as the connection's file transfer leaves it in the host's temp directory."""
    path = directory / desc['digest'].replace(':', '-')
    with open(builder.path(desc), 'rb') as f:
        path.write_bytes(f.read() if data is None else data)
    return str(path)


def test_blobs_in_place_as_files_or_in_an_archive_make_the_same_tree(tmp_path):
    builder, request = _layout_with_blobs(tmp_path)
    large, small = request['send']
    sent = tmp_path / 'sent'
    sent.mkdir()
    archive = sent / 'small.tar'
    with open(archive, 'wb') as handle:
        write_blob_archive(handle, [small], lambda digest: open(builder.path(digest), 'rb'))
    ways = {
        'in place': {'layout': builder.root},
        'file and archive': {'files': {large['digest']: _sent_copy(builder, large, sent)}, 'archives': [str(archive)]},
        'one archive': None,
    }
    whole = sent / 'whole.tar'
    with open(whole, 'wb') as handle:
        write_blob_archive(handle, request['send'], lambda digest: open(builder.path(digest), 'rb'))
    ways['one archive'] = {'archives': [str(whole)]}
    trees = {}
    for way, deliver in ways.items():
        root = tmp_path / way.replace(' ', '-')
        result = run_phase(params(root, 'commit', request, deliver=deliver))
        assert result['changed'] and result['done']['sent'] == 2, way
        trees[way] = _served(root)
    assert trees['in place'] == trees['file and archive'] == trees['one archive']
    assert trees['in place'][large['key']] == large['digest'][7:]
    assert not os.path.exists(ways['file and archive']['files'][large['digest']])   # read, then removed
    with open(builder.path(large), 'rb') as f:     # the layout's own file is left alone
        assert 'sha256:' + hashlib.sha256(f.read()).hexdigest() == large['digest']


def test_a_corrupt_blob_arriving_is_refused_and_nothing_is_committed(tmp_path):
    """The controller does not hash what it sends: the host does, and commits nothing unless every blob matches."""
    builder, request = _layout_with_blobs(tmp_path)
    large, small = request['send']
    sent = tmp_path / 'sent'
    sent.mkdir()
    corrupt = bytearray(open(builder.path(large), 'rb').read())
    corrupt[-1] ^= 0xff      # same size, one bit flipped near the end
    request['send'] = [small, large]     # the good blob is verified first, and still not committed
    archive = sent / 'small.tar'
    with open(archive, 'wb') as handle:
        write_blob_archive(handle, [small], lambda digest: open(builder.path(digest), 'rb'))
    deliver = {'files': {large['digest']: _sent_copy(builder, large, sent, bytes(corrupt))}, 'archives': [str(archive)]}
    root = tmp_path / 'site'
    out = io.StringIO()
    result = run_direct(params(root, 'commit', request, deliver=deliver), out=out)
    assert result['failed'] and not result['changed']
    assert large['digest'] in result['msg'] and 'digest mismatch' in result['msg'] and 'nothing was committed' in result['msg']
    assert _served(root) == {}
    assert os.listdir(str(root / '.oci-discovery' / 'tmp')) == []     # the staged copies are gone too

    # The same with the layout read in place (a local connection) and its file corrupted there.
    with open(builder.path(large), 'wb') as f:
        f.write(bytes(corrupt))
    result = run_direct(params(root, 'commit', request, deliver={'layout': builder.root}), out=io.StringIO())
    assert result['failed'] and large['digest'] in result['msg'] and 'nothing was committed' in result['msg']
    assert _served(root) == {}
