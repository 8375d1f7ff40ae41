# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for oci.discovery.publish_layout.

The layout is on the controller, the site on the target. In order:
1. validate the options, the name, the templates and the layout (every blob
   of the chosen tags is hashed) here, before the target is touched;
2. run the module once to *probe* the site (read-only: which blobs exist
   with which size, the current index);
3. plan (``_plan.make_plan``); in check mode, or when nothing changes, stop
   here and report;
4. send only the missing blobs as one uncompressed tar in one transfer;
5. run the module once more to *commit* (blobs verified into place, then
   documents, then the index merged under a lock), and remove the temp files.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import posixpath
import tempfile
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.oci.discovery.plugins.module_utils import _plan
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._stores import write_blob_archive
from ansible_collections.oci.discovery.plugins.modules.publish_layout import REQUIRED_IF, argument_spec

display = Display()

MODULE = 'oci.discovery.publish_layout'
# What the plan carries to the commit phase (the rest is for reporting on the controller).
_COMMIT_KEYS = ('mapping', 'ops', 'force', 'send', 'require', 'documents', 'prune')


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        local_archive = None
        try:
            outcome, local_archive = self._publish(task_vars or {})
            result.update(outcome)
        except ValueError as e:   # PlanError, LayoutError, InvalidName, DocumentError, ...
            result.update(failed=True, changed=False, msg=to_text(e))
        finally:
            if local_archive:
                try:
                    os.unlink(local_archive)
                except OSError:
                    pass
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _layout_path(self, src):
        try:
            return self._find_needle('files', src)
        except AnsibleError as e:
            raise ValueError('layout src %r not found on the controller: %s' % (src, to_native(e)))

    def _step(self, what):
        now = time.monotonic()
        display.vvv('publish_layout: %s took %.3f s' % (what, now - self._clock), host=self._play_context.remote_addr)
        self._clock = now

    def _publish(self, task_vars):
        self._clock = time.monotonic()
        dummy, args = self.validate_argument_spec(argument_spec=argument_spec(), required_if=REQUIRED_IF)
        internal = sorted(k for k in self._task.args if k.startswith('_'))
        if internal:
            raise ValueError('options %s are internal to the action plugin' % ', '.join(internal))
        mapping = _plan.Mapping(args['site_layout'], args['name'], args['base_url'],
                                args['cas_template'], args['index_template'])
        state, prune, force = args['state'], args['prune'], args['force']
        pub = None
        layout = None
        if state == 'present' or (args['tags'] is None and args['src']):
            layout = Layout(self._layout_path(args['src']))
        if state == 'present':
            pub = _plan.publication(layout, mapping, _plan.tag_pairs(args['tags'], layout.tags()))
            ops = _plan.index_ops('present', pub['entries'])
            sample = pub['blobs'][-1]['digest'] if pub['blobs'] else None
        else:
            if args['tags'] is None and layout is None:
                raise ValueError('state=absent needs the tags to remove (tags), or src to take them from')
            pairs = _plan.tag_pairs(args['tags'], layout.tags() if layout else None)
            ops = _plan.index_ops('absent', tags=[dest for src, dest in pairs])
            sample = None
        mapping.check_templates(sample)
        self._step('validating the layout (%d blobs)' % len(pub['blobs']) if pub else 'validating the options')

        root = args['root']

        def describe(key):
            return posixpath.join(root, key)

        module_args = dict((k, v) for k, v in self._task.args.items())
        probe = self._run_module(dict(module_args, _phase='probe', _request=_plan.probe_request(
            mapping, ops, pub['blobs'] if pub else (), prune, force)), task_vars)
        if probe.get('failed'):
            return probe, None
        self._step('probing the site')
        plan = _plan.make_plan(mapping, ops, pub, probe['probe'], describe, force, prune)

        if self._task.check_mode or not plan['changed']:
            return self._report(mapping, plan), None

        local_archive = remote_archive = None
        if plan['send']:
            fd, local_archive = tempfile.mkstemp(prefix='oci-blobs-', suffix='.tar', dir=C.DEFAULT_LOCAL_TMP)
            with os.fdopen(fd, 'wb') as f:
                write_blob_archive(f, plan['send'], lambda digest: open(layout.blob_path(digest), 'rb'))
            self._step('writing the archive of %d blobs (%d bytes)' % (len(plan['send']), plan['send_bytes']))
            tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
            remote_archive = self._connection._shell.join_path(tmpdir, 'oci-blobs.tar')
            self._transfer_file(local_archive, remote_archive)
            self._fixup_perms2((tmpdir, remote_archive))
            self._step('transferring the archive')

        request = dict((k, plan[k]) for k in _COMMIT_KEYS)
        commit = self._run_module(dict(module_args, _phase='commit', _request=request, _archive=remote_archive),
                                  task_vars)
        if commit.get('failed'):
            return commit, local_archive
        self._step('committing')
        return self._report(mapping, plan, commit['done']), local_archive

    def _run_module(self, module_args, task_vars):
        outcome = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
        outcome.pop('invocation', None)    # the internal request is large and says nothing to users
        return outcome

    def _report(self, mapping, plan, done=None):
        outcome = _plan.summary(mapping, plan, done)
        if self._task.diff:
            outcome['diff'] = _plan.diff(mapping, plan, done)
        return outcome
