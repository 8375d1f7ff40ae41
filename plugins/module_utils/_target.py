# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The target side of ``publish_layout``: the two phases that run on the host with the web root.

The action plugin validates the layout and plans on the controller. On the
target it runs ``run_phase`` at most twice: ``probe`` (read-only: which blobs
exist with which size, the current documents) and ``commit`` (the blobs of
the archive verified into place, then the documents, then the index merged
under the lock). There are two ways to get there, and one code path:

* the ``publish_layout`` module calls ``run_phase`` (works on every
  connection);
* where the connection can feed a command's standard input (as Ansible's
  pipelining does), the action plugin starts the target's Python with the
  sources of ``SOURCES`` and the parameters on standard input, and that
  program calls ``run_direct``: no module payload, no file on the target,
  no import of Ansible there (about 0.3 s less per phase, measured over loopback ssh).

Nothing here imports Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import sys
import time

from ansible_collections.oci.discovery.plugins.module_utils import _plan
from ansible_collections.oci.discovery.plugins.module_utils._stores import WebRootStore, parse_mode, read_blob_archive

# The module utilities ``run_direct`` needs on the target, in import order (no Ansible among them).
SOURCES = ('_digests', '_documents', '_names', '_templates', '_plan', '_stores', '_target')
PHASES = ('probe', 'commit')


def store_from_params(params):
    """The web root store of the task's options (root, mode, directory_mode, owner, group)."""
    return WebRootStore(params['root'], parse_mode(params['mode'], 'mode'),
                        parse_mode(params['directory_mode'], 'directory_mode'),
                        params['owner'], params['group'])


def run_phase(params, check_mode=False):
    """Run ``params['_phase']`` against the web root; the result as the module returns it.

    ``probe`` returns ``{'changed': False, 'probe': ...}`` (``_plan.probe``);
    ``commit`` carries out the plan in ``params['_request']`` with the blobs of
    the archive at ``params['_archive']`` (``_plan.execute``) and returns
    ``{'changed': bool, 'done': ...}``. Errors are ``ValueError`` or
    ``OSError`` naming the file, blob or document. ``seconds`` is the time
    the phase took on the target (the action plugin logs it with -vvv).
    """
    started = time.time()
    phase = params['_phase']
    if phase not in PHASES:
        raise ValueError('unknown phase %r' % (phase,))
    with store_from_params(params) as store:
        if phase == 'probe':
            return {'changed': False, 'probe': _plan.probe(store, params['_request']),
                    'seconds': time.time() - started}
        if check_mode:
            return {'changed': False}
        if not params['_archive']:
            done = _plan.execute(store, params['_request'], ())
        else:
            with open(params['_archive'], 'rb') as archive:
                done = _plan.execute(store, params['_request'], read_blob_archive(archive, params['_archive']))
    return {'changed': done['changed'], 'done': done, 'seconds': time.time() - started}


def run_direct(params, out=None):
    """Run a phase and write its result as one JSON object (what the action plugin parses)."""
    try:
        result = run_phase(params)
    except (ValueError, OSError) as e:
        result = {'failed': True, 'changed': False, 'msg': str(e)}
    out = out or sys.stdout
    out.write(json.dumps(result) + '\n')
    out.flush()
    return result


__all__ = ['PHASES', 'SOURCES', 'run_direct', 'run_phase', 'store_from_params']
