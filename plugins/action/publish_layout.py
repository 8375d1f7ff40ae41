# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for oci.discovery.publish_layout.

The layout is on the controller, the site on the target. The sequence is
the one every store follows (``_publish.run``: validate the options, the
name, the templates and the layout, every blob of the chosen tags hashed,
before the target is touched; probe; plan; commit; report); this plugin is
its *target* for a web root on a managed host (``_PhaseTarget``): the probe
and the commit run on the host, and before the commit only the missing blobs
go there (``_deliver``). On a local connection nothing is sent: the commit
reads them in place from the layout. When the phases run directly and the
blobs to send come to at most ARCHIVE_BYTES, they travel in one uncompressed
tar archive on the commit's own standard input, after its program: no temp
directory on the host, no transfer of their own, nothing written on the
controller (the common case of a re-publish with a few new blobs: the probe
and the commit are then the only ssh round trips per host). Otherwise each blob of
LARGE_BLOB_BYTES or more is sent by itself, straight from the layout's file,
through the connection's own file transfer (sftp, scp...), and the small ones
in uncompressed tar archives of at most ARCHIVE_BYTES, written one at a time
in the local temp directory: the controller's memory and temp space do not
grow with the layer sizes. The host verifies every blob as it arrives and
commits none unless all match, so the controller does not hash the large
blobs it sends as files (``verifies_on_arrival``).

Both target phases are ``_target.run_phase``. Where the connection can feed
a command's standard input and the become method allows it (the conditions
of Ansible's pipelining, whether or not pipelining is switched on), the
plugin runs them *directly*: the target's Python (the one modules would use,
discovered the same way) gets a small program on standard input, the
sources of the pure-Python module utilities in ``_target.SOURCES`` and the
phase's parameters (``_direct_input``). That skips the module payload, its temp file and the
import of Ansible on the target: about 0.3 s per phase over loopback ssh. Elsewhere, and when
ANSIBLE_KEEP_REMOTE_FILES asks to keep module files for debugging, each
phase is a run of the publish_layout module, with the same code and results.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import inspect
import io
import json
import os
import posixpath
import shlex
import tempfile
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.oci.discovery.plugins.module_utils import _publish, _target
from ansible_collections.oci.discovery.plugins.module_utils._layout import Layout
from ansible_collections.oci.discovery.plugins.module_utils._site import SiteLayout, check_web_root_kind
from ansible_collections.oci.discovery.plugins.module_utils._stores import WEB_ROOT_OPTIONS, write_blob_archive
from ansible_collections.oci.discovery.plugins.modules.publish_layout import REQUIRED_IF, argument_spec

display = Display()

MODULE = 'oci.discovery.publish_layout'
_DISCOVERY_MODES = ('auto', 'auto_legacy', 'auto_silent', 'auto_legacy_silent')
# Sending this much through an ssh connection with compression on earns a warning: layers are
# compressed already, so ssh -C only burns CPU (1 GiB over loopback: 27 s with -C, 4.5 s without).
_COMPRESSED_SSH_WARNING_BYTES = 16 * 1024 * 1024
# A blob this large is sent by itself from the layout's file; smaller ones go in archives of at most
# ARCHIVE_BYTES (one transfer each: a transfer costs a round trip or two, tens of ms over ssh).
LARGE_BLOB_BYTES = 8 * 1024 * 1024
ARCHIVE_BYTES = 32 * 1024 * 1024
# The host variable that turns the direct target phases off (module runs instead).
DIRECT_VARIABLE = 'oci_discovery_direct_phases'
# The private interfaces of ActionBase and of the connection the direct phases use, with the parameters
# they are called with (None: an attribute). When one is not as expected, as with another ansible-core, the
# phases are module runs, which ansible-core keeps working whatever its internals.
_DIRECT_INTERFACES = (
    ('_configure_module', ('module_name', 'module_args', 'task_vars')),
    ('_low_level_execute_command', ('cmd', 'sudoable', 'in_data')),
    ('_compute_environment_string', ()),
    ('_discovered_interpreter_key', None),
    ('_discovered_interpreter', None),
    ('_connection.has_pipelining', None),
    ('_connection.become', None),
    ('_connection._shell.build_module_command', ('env_string', 'shebang', 'cmd')),
)

# Runs on the target's Python, after SOURCES ({module name: source}) and PARAMS (JSON text):
# imports the module utilities from SOURCES (nothing is written on the target) and runs the phase.
_DIRECT_MAIN = """
import importlib.abc
import importlib.util
import json
import sys


class _FromSources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    packages = set('.'.join(n.split('.')[:i]) for n in SOURCES for i in range(1, n.count('.') + 1))

    def find_spec(self, fullname, path=None, target=None):
        if fullname in SOURCES or fullname in self.packages:
            return importlib.util.spec_from_loader(fullname, self, is_package=fullname in self.packages)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in self.packages:
            module.__path__ = []
        else:
            exec(compile(SOURCES[module.__name__], module.__name__.replace('.', '/') + '.py', 'exec'), module.__dict__)


sys.meta_path.insert(0, _FromSources())
from ansible_collections.oci.discovery.plugins.module_utils._target import run_direct
run_direct(json.loads(PARAMS))
"""
# The target's Python runs this (``python -c``): it reads the program's length, the program, and runs it; what
# follows on standard input (the blob archive of a commit, if any) is the program's to read.
_DIRECT_BOOTSTRAP = ("import sys; i = sys.stdin.buffer; "
                     "exec(compile(i.read(int(i.readline())), '<oci.discovery direct phase>', 'exec'))")
_SOURCE_TEXTS = {}


def _direct_input(params, blobs=None):
    """Standard input of a direct run: the length of the program, the program (the module utilities' sources,
    the parameters, _DIRECT_MAIN), then the blobs to commit, if any (``(send, open_blob)``), as one tar archive."""
    if not _SOURCE_TEXTS:
        directory = os.path.dirname(os.path.abspath(_target.__file__))
        for name in _target.sources():
            with open(os.path.join(directory, name + '.py'), 'rb') as f:
                _SOURCE_TEXTS['%s.%s' % (_target.PACKAGE, name)] = f.read().decode('utf-8')
    program = ('# oci.discovery.publish_layout, run directly\nSOURCES = %r\nPARAMS = %r\n%s' % (
        _SOURCE_TEXTS, json.dumps(params), _DIRECT_MAIN)).encode('utf-8')
    data = io.BytesIO()
    data.write(b'%d\n' % len(program))
    data.write(program)
    if blobs:
        write_blob_archive(data, *blobs)
    return data.getvalue()


class _PhaseFailed(Exception):
    """A target phase failed; ``outcome`` is its result, returned as the task's."""

    def __init__(self, outcome):
        super(_PhaseFailed, self).__init__(outcome.get('msg'))
        self.outcome = outcome


_VERIFY_STEP = 'hashing the blobs the host has (those it lacks are hashed there), planning'


class _PhaseTarget:
    """The web root on the managed host as a target of ``_publish.run``: its probe and commit run there.

    It ``verifies_on_arrival``: the commit on the host verifies every blob and commits none unless
    all match, so ``_publish.run`` leaves the blobs to send unhashed on the controller.
    """

    @staticmethod
    def verifies_on_arrival(blob):
        return True

    def __init__(self, action, options, task_vars, layout=None):
        self.action = action
        self.layout = layout
        self.options = options
        self.task_vars = task_vars

    def describe(self, key):
        return posixpath.join(self.options['root'], key)

    def probe(self, request, blobs=()):
        action = self.action
        action._step('validating the layout and the options (%s)' % (
            'no layout' if self.layout is None else '%d blob(s) hashed, the others recorded as verified and '
            'unchanged since' % self.layout.hashed))
        probe = self._phase('probe', request, None)
        action._step('probing the site (%s; %.3f s of it on the target)' % (action._how, probe['seconds']))
        return probe['probe']

    def commit(self, request, source):
        action = self.action
        action._step(_VERIFY_STEP)
        deliver = action._deliver(request['send'], source.layout) if request['send'] else None
        commit = self._phase('commit', request, deliver)
        action._step('committing (%s; %.3f s of it on the target)' % (action._how, commit['seconds']))
        return commit['done']

    def finish(self):
        self.action._step(_VERIFY_STEP)

    def _phase(self, phase, request, deliver):
        outcome = self.action._run_phase(self.options, phase, request, deliver=deliver, task_vars=self.task_vars)
        if outcome.get('failed'):
            raise _PhaseFailed(outcome)
        return outcome


class ActionModule(ActionBase):

    # No remote temp directory made up front (two ssh round trips per host and run, its mkdir and its rm):
    # only a delivery of files and archives (``_deliver``) or a module run makes one, when it needs it.
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        self._facts = {}    # the discovered interpreter, when discovery ran for this task
        self._stdin_blobs = None    # (send, open_blob) when the blobs go on the commit's standard input
        self._warnings = []
        try:
            outcome = self._publish(task_vars or {})
            result.update(outcome)
            if self._facts:
                result.setdefault('ansible_facts', {}).update(self._facts)
            if self._warnings:
                result['warnings'] = list(result.get('warnings') or []) + self._warnings
        except _PhaseFailed as e:
            result.update(e.outcome)
        except ValueError as e:   # PlanError, LayoutError, InvalidName, DocumentError, ...
            result.update(failed=True, changed=False, msg=to_text(e))
        finally:
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
        """Options -> ``_publish.run`` with this host's web root as the target; the result."""
        self._clock = time.monotonic()
        self._how = self._interpreter = self._direct_command = None
        dummy, args = self.validate_argument_spec(argument_spec=argument_spec(), required_if=REQUIRED_IF)
        internal = sorted(k for k in self._task.args if k.startswith('_'))
        if internal:
            raise ValueError('options %s are internal to the action plugin' % ', '.join(internal))
        site = SiteLayout(check_web_root_kind(args['site_layout']), args['name'], base_url=args['base_url'],
                          cas_template=args['cas_template'], index_template=args['index_template'])
        request = _publish.Request(site, state=args['state'], tags=args['tags'], force=args['force'],
                                   prune=args['prune'], registry_view='files' if args['registry_view'] else None)
        layout = Layout(self._layout_path(args['src'])) if _publish.needs_layout(request, bool(args['src'])) else None
        target = _PhaseTarget(self, dict((k, args[k]) for k in WEB_ROOT_OPTIONS), task_vars, layout)
        outcome = _publish.run(target, request, layout, check_mode=self._task.check_mode)
        result = dict(outcome.result)
        if self._task.diff:
            result['diff'] = outcome.diff
        return result

    def _deliver(self, send, layout):
        """Bring the blobs ``send`` to the host; the commit's ``_deliver`` (``_target.arrivals``)."""
        send_bytes = sum(b['size'] for b in send)
        if getattr(self._connection, 'transport', None) == 'local':
            self._step('nothing to transfer for %d blobs (%d bytes): a local connection reads the layout'
                       % (len(send), send_bytes))
            return {'layout': layout.root}
        if self._how == 'direct' and send_bytes <= ARCHIVE_BYTES:
            self._stdin_blobs = (send, layout.open_blob)
            self._step('%d blobs (%d bytes) go in one archive on the commit\'s standard input'
                       % (len(send), send_bytes))
            self._warn_if_compressed(send_bytes)
            return {'stdin': True}
        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        files, archives, sent = {}, [], [tmpdir]
        for blob in send:
            if blob['size'] >= LARGE_BLOB_BYTES:
                # The layout's own file, checked to be inside the layout; the host verifies what arrives.
                remote = self._connection._shell.join_path(tmpdir, 'oci-blob-%d' % len(files))
                self._transfer_file(layout.blob_path(blob['digest']), remote)
                files[blob['digest']] = remote
                sent.append(remote)
        for group in _archive_groups([b for b in send if b['digest'] not in files]):
            remote = self._connection._shell.join_path(tmpdir, 'oci-blobs-%d.tar' % len(archives))
            with _local_archive(group, layout) as local:
                self._transfer_file(local, remote)
            archives.append(remote)
            sent.append(remote)
        self._fixup_perms2(sent, execute=False)
        self._step('transferring %d blobs (%d bytes: %d files, %d archives)'
                   % (len(send), send_bytes, len(files), len(archives)))
        self._warn_if_compressed(send_bytes)
        return {'files': files, 'archives': archives}

    def _warn_if_compressed(self, send_bytes):
        if send_bytes >= _COMPRESSED_SSH_WARNING_BYTES and self._ssh_compresses():
            self._warnings.append(
                '%d MiB of blobs went through ssh with compression on (-C in ssh_args, Ansible\'s default). '
                'Layers are compressed already: set ansible_ssh_args without -C for publisher hosts, e.g. '
                '"-o ControlMaster=auto -o ControlPersist=60s", for quicker transfers and less CPU on both ends.'
                % (send_bytes // (1024 * 1024)))

    def _run_phase(self, options, phase, request, deliver, task_vars):
        """Run a target phase (``_target.run_phase``) directly where possible, else as a module run."""
        if self._how is None:
            self._how = 'direct' if self._can_run_directly() else 'module run'
        if self._how == 'direct':
            return self._run_directly(dict(options, _phase=phase, _request=request, _deliver=deliver), task_vars)
        outcome = self._execute_module(module_name=MODULE, task_vars=task_vars, module_args=dict(
            self._task.args, _phase=phase, _request=request, _deliver=deliver))
        outcome.pop('invocation', None)    # the internal request is large and says nothing to users
        self._facts.update(outcome.get('ansible_facts') or {})
        return outcome

    def _unexpected_interfaces(self):
        """The entries of ``_DIRECT_INTERFACES`` that are missing or take other parameters here."""
        unexpected = []
        for path, params in _DIRECT_INTERFACES:
            obj = self
            try:
                for part in path.split('.'):
                    obj = getattr(obj, part)
                names = inspect.signature(obj).parameters if params is not None else ()
            except (AttributeError, TypeError, ValueError):
                unexpected.append(path)
                continue
            if not all(name in names for name in params or ()):
                unexpected.append('%s(%s)' % (path, ', '.join(params)))
        return unexpected

    def _can_run_directly(self):
        """Whether a program can be fed on standard input: the conditions of Ansible's pipelining, the
        private interfaces as expected, and the phases not turned off (``oci_discovery_direct_phases``)."""
        host = self._play_context.remote_addr
        wanted = self._templar.template(self._templar.available_variables.get(DIRECT_VARIABLE, True))
        if not boolean(wanted, strict=False):
            display.vvv('publish_layout: module runs (%s is false)' % DIRECT_VARIABLE, host=host)
            return False
        unexpected = self._unexpected_interfaces()
        if unexpected:
            display.vvv('publish_layout: module runs: this ansible-core does not have %s as the direct phases '
                        'expect' % ', '.join(unexpected), host=host)
            return False
        connection = self._connection
        return bool(connection.has_pipelining and (not connection.become or connection.become.pipelining)
                    and getattr(connection._shell, 'SHELL_FAMILY', None) == 'sh'
                    and not C.DEFAULT_KEEP_REMOTE_FILES)

    def _ssh_compresses(self):
        """Whether the connection is Ansible's ssh plugin with compression asked for in its arguments."""
        if getattr(self._connection, 'transport', None) != 'ssh':
            return False
        words = []
        for option in ('ssh_args', 'ssh_common_args', 'ssh_extra_args'):
            try:
                words.extend(shlex.split(self._connection.get_option(option) or ''))
            except (KeyError, ValueError):
                continue
        return '-C' in words or any(w.replace(' ', '').lower() == 'compression=yes' for w in words)

    def _python(self, task_vars):
        """The interpreter a module run would use on the target (see ``_run_directly``)."""
        host_vars = task_vars
        if self._task.delegate_to:
            host_vars = task_vars.get('ansible_delegated_vars', {}).get(self._task.delegate_to, task_vars)
        configured = self._templar.template(
            C.config.get_config_value('INTERPRETER_PYTHON', variables=host_vars) or '').strip()
        if configured and configured not in _DISCOVERY_MODES:
            return configured
        discovered = (host_vars.get('ansible_facts') or {}).get('discovered_interpreter_python')
        if discovered:
            return discovered
        # Discovery has not run for this host: let Ansible run it, as for a module run (the
        # payload built is not used); the result is reported back as a fact like a module's.
        built = self._configure_module(module_name=MODULE, module_args={}, task_vars=task_vars)
        shebang = built[0].shebang if hasattr(built[0], 'shebang') else built[1]   # ansible-core < 2.19: a tuple
        if self._discovered_interpreter_key:
            self._facts[self._discovered_interpreter_key] = self._discovered_interpreter
        return shebang[2:].strip()

    def _run_directly(self, params, task_vars):
        """Feed ``_target.run_direct`` and the module utilities to the target's Python; its JSON result."""
        try:
            if self._direct_command is None:     # built for the first phase, the probe, and kept
                self._interpreter = self._python(task_vars)
                self._direct_command = self._connection._shell.build_module_command(
                    self._compute_environment_string(), '#!' + self._interpreter, '-c' + _DIRECT_BOOTSTRAP).strip()
        except (AttributeError, TypeError, IndexError, KeyError) as e:
            # The private interfaces answered in a shape this plugin does not know (another ansible-core):
            # nothing ran on the target yet (this is the probe); this phase and the next are module runs.
            display.vvv('publish_layout: module runs: preparing a direct run failed (%s: %s)'
                        % (type(e).__name__, e), host=self._play_context.remote_addr)
            self._interpreter, self._how = None, 'module run'
            options = dict((k, v) for k, v in params.items() if not k.startswith('_'))
            return self._run_phase(options, params['_phase'], params['_request'], params['_deliver'], task_vars)
        blobs = self._stdin_blobs if (params['_deliver'] or {}).get('stdin') else None
        res = self._low_level_execute_command(self._direct_command, sudoable=True,
                                              in_data=_direct_input(params, blobs))
        lines = [line for line in (res.get('stdout') or '').splitlines() if line.strip()]
        try:
            outcome = json.loads(lines[-1])
            if not isinstance(outcome, dict):
                raise ValueError('not an object')
        except (IndexError, ValueError):
            return {'failed': True, 'changed': False, 'rc': res.get('rc'), 'stdout': res.get('stdout', ''),
                    'stderr': res.get('stderr', ''),
                    'msg': 'the %s phase on the target (%s) failed (rc %s): %s' % (
                        params['_phase'], self._interpreter, res.get('rc'),
                        (res.get('stderr') or res.get('stdout') or 'no output').strip()[-2000:])}
        return outcome


def _archive_groups(blobs):
    """``blobs`` (the plan's order kept) in groups of at most ARCHIVE_BYTES (a larger blob alone)."""
    group, size = [], 0
    for blob in blobs:
        if group and size + blob['size'] > ARCHIVE_BYTES:
            yield group
            group, size = [], 0
        group.append(blob)
        size += blob['size']
    if group:
        yield group


@contextlib.contextmanager
def _local_archive(blobs, layout):
    """The path of a temporary tar of ``blobs`` from ``layout`` in the local temp directory, removed after."""
    fd, path = tempfile.mkstemp(prefix='oci-blobs-', suffix='.tar', dir=C.DEFAULT_LOCAL_TMP)
    try:
        with os.fdopen(fd, 'wb') as f:
            write_blob_archive(f, blobs, layout.open_blob)
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
