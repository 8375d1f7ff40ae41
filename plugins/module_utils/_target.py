# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The target side of ``publish_layout``: the two phases that run on the host with the web root.

The action plugin validates the layout and plans on the controller. On the
target it runs ``run_phase`` at most twice: ``probe`` (read-only: which blobs
exist with which size, the current documents) and ``commit`` (the blobs
verified into place as they arrive, then the documents, then the index merged
under the lock). The blobs arrive as ``_deliver`` says (``arrivals``): read in
place from the layout (a local connection: the host is the controller), in
one bounded tar archive on the standard input of a direct commit, or sent to
the host's temp directory, large ones as files of their own, small ones in
bounded tar archives. Every blob is verified here (size and digest)
and none is committed unless all are (``WebRootStore.put_blobs``). There are
two ways to get there, and one code path:

* the ``publish_layout`` module calls ``run_phase`` (works on every
  connection);
* where the connection can feed a command's standard input (as Ansible's
  pipelining does), the action plugin starts the target's Python with the
  sources of the module utilities this module imports (``sources()``,
  derived from the import statements) and the parameters on standard
  input (and after them, for a commit, the blobs if they are few), and that
  program calls ``run_direct``: no module payload, no file
  on the target, no import of Ansible there (about 0.3 s less per phase,
  measured over loopback ssh).

Nothing here imports Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import contextlib
import json
import os
import sys
import time

from ansible_collections.oci.discovery.plugins.module_utils import _commit, _plan
from ansible_collections.oci.discovery.plugins.module_utils._digests import VerificationError
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._stores import read_blob_archive, web_root_store

PACKAGE = 'ansible_collections.oci.discovery.plugins.module_utils'
PHASES = ('probe', 'commit')


def _imported(path):
    """The names of this package's modules that the file at ``path`` imports, anywhere in it."""
    with open(path, 'rb') as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(PACKAGE + '.'):
            found.append(node.module[len(PACKAGE) + 1:])
    return found


def sources(top='_target'):
    """The module utilities the direct phases need on the target: ``top`` and what it imports, transitively.

    Derived from the import statements (lazy imports inside functions too),
    so a new import in a core file is sent without anyone listing it.
    """
    directory = os.path.dirname(os.path.abspath(__file__))
    seen, todo = [], [top]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        todo.extend(_imported(os.path.join(directory, name + '.py')))
    return tuple(sorted(seen))


def run_phase(params, check_mode=False, stdin=None):
    """Run ``params['_phase']`` against the web root; the result as the module returns it.

    ``probe`` returns ``{'changed': False, 'probe': ...}`` (``_plan.probe``);
    ``commit`` carries out the plan in ``params['_request']`` with the blobs
    delivered as ``params['_deliver']`` says (``arrivals``; ``_commit.execute``)
    and returns ``{'changed': bool, 'done': ...}``; ``stdin`` is where a
    ``{'stdin': True}`` delivery is read from. Errors are ``ValueError`` or
    ``OSError`` naming the file, blob or document. ``seconds`` is the time
    the phase took on the target (the action plugin logs it with -vvv).
    """
    started = time.time()
    phase = params['_phase']
    if phase not in PHASES:
        raise ValueError('unknown phase %r' % (phase,))
    with web_root_store(params) as store:
        if phase == 'probe':
            return {'changed': False, 'probe': _plan.probe(store, params['_request']),
                    'seconds': time.time() - started}
        if check_mode:
            return {'changed': False}
        request = params['_request']
        if not params.get('_deliver'):
            done = _commit.execute(store, request)
        else:
            with contextlib.ExitStack() as stack:
                source = _commit.StreamBlobs(arrivals(params['_deliver'], request['send'], stack, stdin))
                try:
                    done = _commit.execute(store, request, source)
                except VerificationError as e:
                    raise VerificationError('%s, as it arrived on the host: nothing was committed (is the file in '
                                            'the layout on the controller corrupt?)' % e)
    return {'changed': done['changed'], 'done': done, 'seconds': time.time() - started}


def arrivals(deliver, send, stack, stdin=None):
    """``(digest, file object)`` of each blob of ``send`` (the plan's order), as ``deliver`` brings them.

    ``deliver`` is ``{'layout': path}`` (read each blob in place from the OCI layout there,
    ``Layout.open_blob``), or ``{'files': {digest: path}, 'archives': [path, ...], 'stdin': bool}``:
    the blobs sent to this host, each file removed once read (it is a copy in the connection's temp
    directory); the archives hold the other blobs in the plan's order (``_stores.write_blob_archive``),
    the first of them on ``stdin`` (a binary stream, read as it comes) when ``stdin`` is true.
    ``stack`` (an ``ExitStack``) closes what is opened.
    """
    if deliver.get('layout'):
        layout = Layout(deliver['layout'])
        for blob in send:
            with layout.open_blob(blob['digest']) as fileobj:
                yield blob['digest'], fileobj
        return
    files = deliver.get('files') or {}
    archives = _archives(deliver, stack, stdin)
    members = iter(())
    for blob in send:
        path = files.get(blob['digest'])
        if path is not None:
            with open(path, 'rb', buffering=0) as fileobj:
                yield blob['digest'], fileobj
            _remove_quietly(path)
            continue
        member = next(members, None)
        while member is None:
            archive = next(archives, None)
            if archive is None:
                return      # the blobs left did not arrive: the commit names them
            members = read_blob_archive(*archive)
            member = next(members, None)
        yield member


def _archives(deliver, stack, stdin):
    """``(file object, what)`` of each blob archive ``deliver`` names, opened as they are needed."""
    if deliver.get('stdin'):
        yield stdin, 'the blob archive on standard input'
    for path in deliver.get('archives') or ():
        yield stack.enter_context(open(path, 'rb')), path


def _remove_quietly(path):
    """Remove a file sent to the temp directory once read (its pages never need writing back)."""
    try:
        os.unlink(path)
    except OSError:
        pass    # the connection user's temp directory, not writable by the become user: removed at the end


def run_direct(params, out=None, stdin=None):
    """Run a phase and write its result as one JSON object (what the action plugin parses).

    ``stdin`` (default: this process's) holds what the action plugin sent after the program: the
    blob archive of a ``{'stdin': True}`` commit. Whatever of it the phase left unread (it failed
    on the way) is read to its end before the result is written, so that the sender never meets
    a closed pipe and the result is what it reads.
    """
    on_stdin = bool((params.get('_deliver') or {}).get('stdin'))
    if on_stdin and stdin is None:
        stdin = sys.stdin.buffer
    try:
        result = run_phase(params, stdin=stdin)
    except (ValueError, OSError) as e:
        result = {'failed': True, 'changed': False, 'msg': str(e)}
    while on_stdin and stdin.read(1024 * 1024):
        pass
    out = out or sys.stdout
    out.write(json.dumps(result) + '\n')
    out.flush()
    return result


__all__ = ['PACKAGE', 'PHASES', 'arrivals', 'run_direct', 'run_phase', 'sources']
