# -*- coding: utf-8 -*-
# Copyright (c) ovh-access contributors
# MIT License or Apache License 2.0 (see the repository's Cargo.toml)
"""Running the ovh-access command for the collection's modules.

The modules know nothing about keys files or firewalls: they turn options into the command's
flags, run it with --json, and hand its one JSON object back to Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

# Exit codes of the command (its cli.rs): 0 success, 1 failure (status: drift), 2 bad input.
EXIT_OK = 0
EXIT_FAILURE = 1


def common_argument_spec():
    """The options every module of the collection takes."""
    return dict(
        executable=dict(type='str', default='ovh-access'),
        root=dict(type='path'),
    )


def run_json(module, argv, ok_codes=(EXIT_OK,)):
    """Runs ``ovh-access [--root DIR] --json ARGV...`` and returns its JSON object.

    A run whose object carries ``error``, that exits with a code outside ``ok_codes``, or that
    prints no JSON object fails the task: with the command's own one-line error as ``msg`` and
    its exit code as ``rc``.
    """
    exe = module.get_bin_path(module.params['executable'], required=True)
    cmd = [exe]
    if module.params['root'] is not None:
        cmd += ['--root', module.params['root']]
    cmd.append('--json')
    cmd += argv
    rc, out, err = module.run_command(cmd, check_rc=False, environ_update={'LC_ALL': 'C'})
    try:
        result = json.loads(out)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        module.fail_json(
            msg='%s printed no JSON object (exit code %d): %s' % (exe, rc, (err or out).strip()),
            rc=rc, cmd=cmd, stdout=out, stderr=err)
    if 'error' in result or rc not in ok_codes:
        msg = result.get('error') or (err.strip().splitlines() or ['exit code %d' % rc])[-1]
        result.pop('changed', None)
        module.fail_json(msg=msg, rc=rc, cmd=cmd, stderr=err, **without_reserved(result))
    # No `rc` in a successful result: Ansible fails any task whose result has a non-zero `rc`,
    # and status exits 1 on drift, which is a fact to report (`consistent`), not a failure.
    result['cmd'] = cmd
    return result


def without_reserved(result):
    """The command's object without the keys Ansible reserves for itself in a result."""
    reserved = ('msg', 'failed', 'rc', 'cmd', 'stderr', 'invocation', 'error')
    return dict((k, v) for k, v in result.items() if k not in reserved)
