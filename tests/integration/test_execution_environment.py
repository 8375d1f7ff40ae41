# -*- coding: utf-8 -*-
"""meta/execution-environment.yml: ansible-builder finds the collection's requirements in the
built collection and writes an Execution Environment build context with them (issue 15).

ansible-builder goes into its own venv under .tmp (from PyPI), not into the shared .venv. No
container is built: `ansible-builder create` writes the context, `introspect` reads the
requirements of installed collections as a build would.
"""
import os
import subprocess
import sys

import pytest
import yaml

from rig.ansible import VENV_BIN
from rig.procs import REPO

BUILDER_VERSION = "3.2.0"


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, "%s\nstdout:\n%s\nstderr:\n%s" % (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def builder():
    venv = os.path.join(REPO, ".tmp", "venv-builder")
    program = os.path.join(venv, "bin", "ansible-builder")
    if not (os.path.exists(program) and BUILDER_VERSION in run([program, "--version"])):
        run([sys.executable, "-m", "venv", "--clear", venv])
        run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
             "ansible-builder==%s" % BUILDER_VERSION])
    return program


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection built with ansible-galaxy and installed from its tarball into an empty path."""
    work = tmp_path_factory.mktemp("ee")
    galaxy = os.path.join(VENV_BIN, "ansible-galaxy")
    run([galaxy, "collection", "build", "--output-path", str(work / "dist"), REPO])
    tarball = os.path.join(str(work / "dist"), os.listdir(str(work / "dist"))[0])
    run([galaxy, "collection", "install", "--no-deps", "-p", str(work / "collections"), tarball],
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(work / "collections")))
    return work, tarball


def test_builder_reads_the_collection_requirements_and_creates_the_context(builder, installed):
    work, tarball = installed
    root = work / "collections" / "ansible_collections" / "oci" / "discovery"
    assert yaml.safe_load((root / "meta" / "execution-environment.yml").read_text())["dependencies"] == {
        "python": "requirements.txt", "system": "bindep.txt"}
    found = yaml.safe_load(run([builder, "introspect", str(work / "collections")]))
    python = [line.split("#")[0].strip() for line in found["python"] if "from collection oci.discovery" in line]
    system = [line.split("#")[0].strip() for line in found["system"] if "from collection oci.discovery" in line]
    assert [r.split(">=")[0] for r in python] == ["uritemplate", "boto3", "botocore"], found
    assert "botocore>=1.36" in python, python
    assert "openssh-client [platform:dpkg]" in system and "openssh-clients [platform:rpm]" in system, system

    definition = {
        "version": 3,
        "images": {"base_image": {"name": "quay.io/fedora/python-311:latest"}},
        "dependencies": {"ansible_core": {"package_pip": "ansible-core>=2.16"}, "ansible_runner": {
            "package_pip": "ansible-runner"}, "galaxy": "requirements.yml"},
        "additional_build_files": [{"src": os.path.basename(tarball), "dest": "collections"}],
    }
    os.symlink(tarball, str(work / os.path.basename(tarball)))
    (work / "requirements.yml").write_text(yaml.safe_dump({"collections": [
        {"name": "_build/collections/%s" % os.path.basename(tarball), "type": "file"}]}))
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition))
    run([builder, "create", "-f", "execution-environment.yml", "-c", "context", "--output-filename",
         "Containerfile"], cwd=str(work))
    containerfile = (work / "context" / "Containerfile").read_text()
    assert "ansible-galaxy" in containerfile and "introspect" in containerfile, containerfile
    assert (work / "context" / "_build" / "requirements.yml").exists()
    assert (work / "context" / "_build" / "collections" / os.path.basename(tarball)).exists()
