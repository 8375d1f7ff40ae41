# -*- coding: utf-8 -*-
"""Offline stand-in for ansible-test's pip bootstrap script (get-pip).

ansible-test creates a virtual environment per sanity test and bootstraps pip in it by
downloading get-pip.py from a host this machine cannot reach. It runs the cached script
as `python get_pip_X_Y.py <pip install arguments>`, so this stand-in installs the pip that
ships with Python (ensurepip) and then lets it install what was asked for from PyPI.
scripts/run-tests copies it into ~/.ansible/test/cache/ under the name ansible-test expects.
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test hides pip's configuration (PIP_CONFIG_FILE=/dev/null); the machine's own
# configuration (its CA bundle, its package mirrors) is what makes PyPI reachable here.
env = dict(os.environ)
if env.get("PIP_CONFIG_FILE") == os.devnull:
    del env["PIP_CONFIG_FILE"]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env))
