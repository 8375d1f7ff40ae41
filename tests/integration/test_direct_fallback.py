# -*- coding: utf-8 -*-
"""publish_layout's direct target phases fall back to module runs (issue 15).

The direct phases use private ActionBase and connection interfaces. Another ansible-core may
change them; then, and when the host variable oci_discovery_direct_phases is false, the phases
are plain module runs and the site is the same. A future ansible-core cannot run here: the
launcher below starts the real ansible-playbook after changing one private interface the way a
new release could (a renamed parameter; another return shape), in the controller process only.
"""
import os
import sys

import pytest

from test_publish_layout import layout_blobs, play, publish_task, served_state

# Run ansible-playbook (argv[1:]) after one change to ActionBase, named by OCI_TEST_CHANGE.
LAUNCHER = '''
import os, runpy, sys
from ansible.plugins.action import ActionBase

change = os.environ["OCI_TEST_CHANGE"]
if change == "signature":
    # The same behaviour behind another parameter name (stdin for in_data): a module run passes its
    # arguments by the new name, the direct phases' check sees that in_data is gone.
    original = ActionBase._low_level_execute_command

    def _low_level_execute_command(self, cmd, sudoable=True, stdin=None, **kwargs):
        return original(self, cmd, sudoable=sudoable, in_data=kwargs.pop("in_data", stdin), **kwargs)
    ActionBase._low_level_execute_command = _low_level_execute_command
elif change == "shape":
    # _configure_module answers a bare interpreter discovery (module_args={}, the call the direct phases
    # make) with a new kind of object; a module run's call is answered as before.
    original = ActionBase._configure_module

    class Built(object):
        pass

    def _configure_module(self, module_name, module_args, task_vars):
        built = original(self, module_name, module_args, task_vars)
        return (Built(), Built()) if module_args == {} else built
    ActionBase._configure_module = _configure_module
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    path = tmp_path_factory.mktemp("launcher") / "launch.py"
    path.write_text(LAUNCHER)
    return str(path)


@pytest.mark.parametrize("how", ["variable", "signature", "shape"])
def test_module_runs_stand_in_for_the_direct_phases(how, sshd, layouts, launcher, run_playbook):
    """The same site and results as direct runs, through module runs, and -vvv says why."""
    host_vars, prefix, env = {}, (), None
    if how == "variable":
        host_vars = {"oci_discovery_direct_phases": False}
        reason = "module runs (oci_discovery_direct_phases is false)"
    else:
        prefix, env = (sys.executable, launcher), {"OCI_TEST_CHANGE": how}
        reason = ("does not have _low_level_execute_command(cmd, sudoable, in_data)" if how == "signature"
                  else "preparing a direct run failed (")
    inventory = sshd.inventory(**host_vars)
    if how == "shape":   # interpreter discovery is where _configure_module is asked
        del inventory["all"]["hosts"]["managed"]["ansible_python_interpreter"]
    roots = [sshd.make_webroot(), sshd.make_webroot()]
    runs = []
    for root, args in ((roots[0], {}), (roots[1], {"inventory": inventory, "prefix": prefix, "env": env})):
        task = publish_task(src=layouts.family, name="example.com/app", root=root, tags=["1.0"])
        first = run_playbook(play(task), verbosity=3, **dict({"inventory": sshd.inventory()}, **args))
        assert not first.failed, first
        runs.append(first)
    direct, fallback = runs
    assert "probing the site (direct;" in direct.stdout and reason not in direct.stdout
    assert reason in fallback.stdout, fallback.stdout[-3000:]
    assert "probing the site (module run;" in fallback.stdout and "committing (module run;" in fallback.stdout
    assert "AnsiballZ_publish_layout" in fallback.stdout
    for key in ("blobs_sent", "bytes_sent", "digests", "tags_added"):
        assert direct.result("publish")[key] == fallback.result("publish")[key], key
    assert fallback.result("publish")["blobs_sent"] == len(layout_blobs(layouts.family, ["1.0"]))
    assert served_state(roots[0]) == served_state(roots[1])
    assert os.listdir(roots[1])
