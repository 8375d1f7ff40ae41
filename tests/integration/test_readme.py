# -*- coding: utf-8 -*-
"""The README's examples, run as written against the rig's real nginx, sshd and Ceph RGW.

The README marks each example block this test runs with an HTML comment on the line before
the fence, ``<!-- readme-test: NAME -->``. Every block runs with the collection installed the
way the README's *Install* section says: the section's own commands build the tarball (in a
copy of the repository) and install it into an empty collections path, which every later
run uses. Where an example names things that cannot exist on loopback (a managed host's
``/srv/www``, the home of a builder, an S3 endpoint on the Internet), the test replaces that
exact text, and fails if the README no longer contains it: an example that changes must
change here too, so the README cannot drift from what works.

What stands in for the world:
* ``example.com`` is served by the rig's nginx on a private loopback address, port 443, with a
  certificate of the test CA; ansible-playbook runs in a mount namespace whose /etc/hosts maps
  the name there (discovery_hosts.NamedSites) and with ``SSL_CERT_FILE`` naming the test CA, so
  that the lookup's default https and certificate checks apply unchanged;
* the publisher host (group ``publishers``) and the ``edge`` host are the rig's sshd on
  127.0.0.1, logged in as its unprivileged test user, whose web root it owns (the README's
  "or give a root the login user can write": ``ansible_become: false`` in the inventory);
* S3 is the rig's Ceph RGW, reached through an AWS profile named ``publisher`` in a private
  shared-credentials file, with the settings the README names for S3-compatible stores.

Not run here (they need root on a managed host, Galaxy or the system's container storage):
the Galaxy install line, the ``provision_publisher`` example (its variables are checked against
the role's argument spec below; ``make demo`` runs the same playbook on loopback), the registry
client commands (tests/integration/test_registry_view.py runs skopeo and podman against the
role's configuration) and the pull example's podman hand-over task.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from discovery_hosts import NamedSites
from rig.ansible import ansible_env, local_inventory, run_playbook
from rig.procs import REPO, make_workdir, remove_workdir

README = os.path.join(REPO, "README.md")
MARK = re.compile(r"^<!-- readme-test: ([a-z0-9-]+) -->\n```([a-z]*)\n(.*?)^```", re.M | re.S)
REF_NAME = "org.opencontainers.image.ref.name"


def readme_blocks(path=README):
    with open(path) as handle:
        text = handle.read()
    blocks = {}
    for name, lang, body in MARK.findall(text):
        assert name not in blocks, "README: two blocks marked readme-test: %s" % name
        blocks[name] = (lang, body)
    return blocks


BLOCKS = readme_blocks()


def block(name, replace=()):
    """The text of the README block `name`, with each (old, new) of `replace` applied; every
    `old` must be in the block (the test fails when the README changed under it)."""
    assert name in BLOCKS, "README has no block marked <!-- readme-test: %s --> (marks: %s)" % (
        name, sorted(BLOCKS))
    text = BLOCKS[name][1]
    for old, new in replace:
        assert old in text, "README block %r no longer contains %r:\n%s" % (name, old, text)
        text = text.replace(old, new)
    return text


def shell(text, cwd, env, prefix=(), timeout=300):
    """Run README shell lines with bash -e; (rc, output)."""
    proc = subprocess.run(list(prefix) + ["/bin/bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def namespace_prefix(sites, workdir):
    """unshare ... so that a command sees the sites' /etc/hosts (as NamedSites.run_playbook does)."""
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", sites.hosts_file(workdir)]


def platform_digests(layout, tag):
    """(digest of the index of `tag`, {"os/arch[/variant]": manifest digest}) of a layout."""
    with open(os.path.join(layout, "index.json")) as handle:
        digest = next(m["digest"] for m in json.load(handle)["manifests"] if m["annotations"][REF_NAME] == tag)
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1])) as handle:
        children = json.load(handle)["manifests"]
    return digest, {"/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"],
                                           m["platform"].get("variant")))): m["digest"] for m in children}


def with_tag(src, dest, tag, like):
    """A copy of layout `src` whose index also carries `tag` for the manifest of tag `like`."""
    shutil.copytree(src, dest)
    path = os.path.join(dest, "index.json")
    with open(path) as handle:
        index = json.load(handle)
    entry = dict(next(m for m in index["manifests"] if m["annotations"][REF_NAME] == like))
    entry["annotations"] = {REF_NAME: tag}
    index["manifests"].append(entry)
    with open(path, "w") as handle:
        json.dump(index, handle)
    return dest


@pytest.fixture(scope="module")
def installed():
    """The README's install commands (the Galaxy line left out: no Galaxy here), run in a copy of
    the repository with an empty collections path; yields that path."""
    work = make_workdir("readme-install", mode=0o755)
    try:
        checkout = os.path.join(work, "checkout")
        shutil.copytree(REPO, checkout, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", ".tmp", ".venv", "tests", "benchmarks",
                                                      "__pycache__", "*.tar.gz", ".pytest_cache"))
        collections = os.path.join(work, "collections")
        lines = [line for line in block("install").splitlines() if "# from Galaxy" not in line]
        env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": collections})
        rc, out = shell("\n".join(lines), checkout, env)
        assert rc == 0, out
        target = os.path.join(collections, "ansible_collections", "oci", "discovery")
        assert os.path.isfile(os.path.join(target, "MANIFEST.json")), out
        # The documentation the section promises, from the installed copy.
        for command in re.findall(r"`(ansible-doc [^`]+)`", open(README).read().split("## Install", 1)[1]
                                  .split("\n## ", 1)[0]):
            rc, out = shell(command, work, env)
            assert rc == 0 and target in out, "%s:\n%s" % (command, out)
        yield collections
    finally:
        remove_workdir(work)


@pytest.fixture
def example_com(nginx_factory, ca, public_tmp_path, sshd):
    """example.com on nginx (port 443 of a private loopback address), its web root the ssh user's."""
    sites = NamedSites(nginx_factory, ca, public_tmp_path, names=("example.com", "*.example.com"))
    sites.host("example.com")
    sshd.grant_write(sites.docroot("example.com"))
    return sites.start()


def test_the_readme_examples_work_as_written(installed, example_com, ca, sshd, rgw, public_tmp_path):
    sites = example_com
    root = sites.docroot("example.com")
    work = make_workdir("readme", mode=0o755)
    env = {"ANSIBLE_COLLECTIONS_PATH": installed, "SSL_CERT_FILE": ca.cert_path}
    builder = os.path.join(public_tmp_path, "builder")     # layouts "on the controller"
    os.makedirs(builder)
    app = os.path.join(REPO, "examples", "layouts", "app")

    # -- Publish to an Nginx host. build/app-layout: a multi-platform image (tags 1.0, 2.0) so
    # that the platform options below have an index to descend. The playbook as written, plus a
    # second play for the mirror example's other family; the publishers' group vars as README
    # says; the rig's sshd as the host.
    layout = with_tag(os.path.join(REPO, "examples", "layouts", "multiarch"),
                      os.path.join(work, "build", "app-layout"), "2.0", like="1.0")
    db = with_tag(app, os.path.join(builder, "db"), "15", like="1.0")
    playbook = os.path.join(work, "publish.yml")
    with open(playbook, "w") as handle:
        handle.write(block("publish-webroot", [("/srv/www/example.com", root)]))
        yaml.safe_dump([{"hosts": "publishers", "gather_facts": False, "tasks": [
            {"oci.discovery.publish_layout": {"src": db, "name": "example.com/team/db", "root": root,
                                              "tags": ["15"]}}]}], handle)
    group_vars = yaml.safe_load(block("publishers-group-vars"))
    inventory = {"publishers": {"hosts": {"web1": sshd.host_vars(ansible_become=False)}, "vars": group_vars}}
    published = run_playbook(playbook, inventory=inventory, env=env)
    assert not published.failed and published.changed_count == 3, str(published)
    again = run_playbook(playbook, inventory=inventory, env=env)
    assert not again.failed and again.changed_count == 0, str(again)
    assert os.path.isfile(os.path.join(root, ".well-known", "oci-host-ref-engines"))
    index_digest, platforms = platform_digests(layout, "1.0")

    # -- Resolve names in playbooks: the lookup (https, certificates verified), then the playbook.
    lookups = run_playbook(
        [{"hosts": "localhost", "gather_facts": False, "tasks": yaml.safe_load(block("lookup"))}],
        env=env, prefix=namespace_prefix(sites, work))
    assert not lookups.failed, str(lookups)
    first, second = [hosts["localhost"]["msg"] for unused_play, unused_name, hosts in lookups.tasks]
    assert first == index_digest, str(lookups)
    assert second["digest"] == platforms["linux/arm64/v8"], str(lookups)
    rc, out = shell(block("resolve-playbook"), work, ansible_env(env), prefix=namespace_prefix(sites, work))
    assert rc == 0, out
    with open(os.path.join(work, "oci-lock.json")) as handle:
        assert json.load(handle)["example.com/app#1.0"]["digest"] == index_digest

    # -- Pull onto a host: the edge host is this machine (in the namespace that resolves
    # example.com; its architecture fact x86_64 or aarch64), the layout directory and podman's
    # storage private to the test.
    images, storage = os.path.join(work, "images"), os.path.join(work, "containers")
    store = "containers-storage:[vfs@%s/root+%s/run]" % (storage, storage)
    pull_play = yaml.safe_load(block("pull", [("/var/lib/images", images), ("containers-storage:", store)]))
    edge = {"edge": {"hosts": {"edge1": local_inventory()["all"]["hosts"]["localhost"]}}}
    pulled = run_playbook(pull_play, inventory=edge, env=env, prefix=namespace_prefix(sites, work))
    assert not pulled.failed and pulled.changed_count == 2, str(pulled)
    mine = platforms["linux/%s" % {"x86_64": "amd64", "aarch64": "arm64/v8"}[os.uname().machine]]
    with open(os.path.join(images, "index.json")) as handle:
        assert [(m["annotations"][REF_NAME], m["digest"]) for m in json.load(handle)["manifests"]] == \
            [("app-1.0", mine)]
    rc, out = shell("skopeo inspect --raw %sexample.com/app:1.0 | sha256sum" % store, work, ansible_env(env))
    assert rc == 0 and "sha256:" + out.split()[0] == mine, out
    shell("rm -rf %s" % storage, work, ansible_env(env))

    # -- Sync layouts to S3: s3.yml as written plus the README's settings for an S3-compatible
    # store; AWS_PROFILE=publisher from a private shared-credentials file.
    s3_src = os.path.join(builder, "layouts", "app")
    shutil.copytree(app, s3_src)
    s3 = yaml.safe_load(block("s3-vars", [("/home/builder/layouts/app", s3_src)]))
    s3.update({"s3_publisher_endpoint_url": rgw.tls_endpoint, "s3_publisher_aws_ca_bundle": rgw.ca_path,
               "s3_publisher_ceph": True})
    with open(os.path.join(work, "s3.yml"), "w") as handle:
        yaml.safe_dump(s3, handle)
    credentials = os.path.join(work, "aws-credentials")
    with open(credentials, "w") as handle:
        handle.write("[publisher]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n"
                     % (rgw.access_key, rgw.secret_key, rgw.region))
    aws_env = ansible_env(dict(env, AWS_SHARED_CREDENTIALS_FILE=credentials,
                               AWS_CONFIG_FILE=os.path.join(work, "no-aws-config")))
    command = block("s3-command")
    rc, out = shell(command.replace("# --check --diff first", "--check --diff  #"), work, aws_env)
    assert rc == 0, out
    bucket = s3["s3_publisher_bucket"]
    assert bucket not in [b["Name"] for b in rgw.client().list_buckets()["Buckets"]], "--check created it"
    rc, out = shell(command, work, aws_env)
    assert rc == 0, out
    keys = {o["Key"] for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {".well-known/oci-host-ref-engines", "oci-index/app"} <= keys, sorted(keys)

    # The module_defaults example reaches the role's module: the same site again, its endpoint
    # and region from module_defaults only, changes nothing.
    defaults_play = yaml.safe_load(block("s3-module-defaults", [("https://rgw.example.net", rgw.tls_endpoint)]))
    defaults_play[0]["module_defaults"]["group/oci.discovery.aws"]["aws_ca_bundle"] = rgw.ca_path
    site = {k: v for k, v in s3.items() if k not in ("s3_publisher_endpoint_url", "s3_publisher_aws_ca_bundle")}
    rerun = run_playbook(defaults_play, extra_vars=site, env=dict(aws_env, AWS_PROFILE="publisher"))
    assert not rerun.failed and rerun.changed_count == 0, str(rerun)

    # -- Mirror a family: example.com's families into a bucket of RGW.
    mirror = yaml.safe_load(block("mirror-vars", [('"https://s3.example.net"', json.dumps(rgw.tls_endpoint))]))
    mirror["mirror_aws"].update({"aws_ca_bundle": rgw.ca_path, "access_key": rgw.access_key,
                                 "secret_key": rgw.secret_key})
    mirror["mirror_staging"] = os.path.join(work, "staging")
    rgw.client().create_bucket(Bucket=mirror["mirror_bucket"])
    with open(os.path.join(work, "mirror.yml"), "w") as handle:
        yaml.safe_dump(mirror, handle)
    rc, out = shell(block("mirror-commands"), work, ansible_env(env), prefix=namespace_prefix(sites, work))
    assert rc == 0, out
    keys = {o["Key"] for o in rgw.client().list_objects_v2(Bucket=mirror["mirror_bucket"])["Contents"]}
    assert {".well-known/oci-host-ref-engines", "oci-index/app", "oci-index/db"} <= keys, sorted(keys)
    remove_workdir(work)


def test_the_readme_role_variables_match_the_roles_argument_specs():
    """The provisioning and S3 examples' variables pass the roles' argument specs (what the
    roles check first), so a renamed or mistyped variable in the README fails here."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    def spec(role):
        with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
            return yaml.safe_load(handle)["argument_specs"]["main"]["options"]

    provision = yaml.safe_load(block("provision-vars").replace("{{ inventory_dir }}", "/inventory"))
    s3 = yaml.safe_load(block("s3-vars"))
    for role, values in (("nginx_publisher", provision), ("s3_publisher", s3)):
        result = ArgumentSpecValidator(spec(role)).validate(values)
        assert not result.error_messages, (role, result.error_messages)
    inventory = yaml.safe_load(block("provision-inventory"))
    assert "-C" not in inventory["publishers"]["vars"]["ansible_ssh_args"].split()
