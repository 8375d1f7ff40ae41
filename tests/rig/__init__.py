# -*- coding: utf-8 -*-
"""Test rig for oci.discovery: real services on loopback for the integration tests.

Modules:
  procs    start/stop processes (own process group), PID registry, ports, readiness
  cleanup  `python -m rig.cleanup` kills what a crashed run left behind
  ca       throwaway certificate authorities (trustme)
  nginx    unprivileged nginx from a temporary prefix directory
  ceph     single-node Ceph RADOS Gateway (S3) over http and https
  sshd     OpenSSH server on loopback with a dedicated test user
  ansible  run ansible-playbook and parse its JSON results

Everything the rig starts is recorded in .tmp/rig/pids/ and lives under .tmp/rig/run/.
"""
from .procs import RigError  # noqa: F401
