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

from ansible_collections.oci.discovery.plugins.action.publish_layout import _direct_program
from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout
from ansible_collections.oci.discovery.plugins.module_utils._stores import write_blob_archive
from ansible_collections.oci.discovery.plugins.module_utils._target import run_direct, run_phase, sources

BLOB = b'a layer, as far as this test is concerned\n'
DIGEST = 'sha256:' + hashlib.sha256(BLOB).hexdigest()
KEY = 'oci-cas/sha256/%s/%s' % (DIGEST[7:9], DIGEST[7:])


def params(root, phase, request, archive=None):
    return {'root': str(root), 'mode': '0644', 'directory_mode': '0755', 'owner': None, 'group': None,
            '_phase': phase, '_request': request, '_archive': archive}


def probe_request(read=('oci-index/app',)):
    return {'site': None, 'blobs': [{'key': KEY, 'digest': DIGEST, 'size': len(BLOB)}], 'read': list(read), 'ops': [],
            'force': False, 'prune': None}


def commit_request():
    site = SiteLayout('cas_bucket', 'example.com/app')
    return {'site': site.to_dict(), 'ops': [], 'force': False, 'documents': [], 'prune': None,
            'send': [{'digest': DIGEST, 'size': len(BLOB), 'key': KEY,
                      'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip'}], 'require': []}


def run_bare_python(program):
    """The program under `python -I -S`: no site-packages, so no Ansible and no collection to import."""
    proc = subprocess.run([sys.executable, '-I', '-S'], input=program, stdout=subprocess.PIPE,
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
    result = run_bare_python(_direct_program(params(root, 'probe', probe_request())))
    assert result['probe']['sizes'] == {}
    assert base64.b64decode(result['probe']['documents']['oci-index/app']) == b'{"schemaVersion": 2, "manifests": []}'

    archive = tmp_path / 'blobs.tar'
    with open(archive, 'wb') as handle:
        write_blob_archive(handle, [{'digest': DIGEST, 'size': len(BLOB)}], lambda digest: io.BytesIO(BLOB))
    committed = run_bare_python(_direct_program(params(root, 'commit', commit_request(), str(archive))))
    assert committed['changed'] and committed['done']['sent'] == 1
    assert (root / KEY).read_bytes() == BLOB
    probed = run_bare_python(_direct_program(params(root, 'probe', probe_request())))
    assert probed['probe']['sizes'] == {KEY: len(BLOB)}


def test_the_direct_program_reports_a_broken_archive_by_name(tmp_path):
    archive = tmp_path / 'blobs.tar'
    archive.write_bytes(b'not a tar archive at all' * 100)
    result = run_bare_python(_direct_program(params(tmp_path / 'site', 'commit', commit_request(), str(archive))))
    assert result['failed'] and str(archive) in result['msg']
    assert not (tmp_path / 'site' / KEY).exists()
