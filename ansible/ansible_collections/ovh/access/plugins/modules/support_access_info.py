#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ovh-access contributors
# MIT License or Apache License 2.0 (see the repository's Cargo.toml)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: support_access_info
short_description: What support access is granted, until when, and whether it is consistent
version_added: "0.1.0"
description:
  - Runs C(ovh-access status) on the managed host and returns its C(--json) object, that is the grant
    (or null), whether the support key, the firewall and DNS still agree, each drift with the
    command that repairs it, and when the grant expires.
  - Never changes anything. A drift is not a failure of the module (the command exits 1 then);
    test RV(consistent).
author:
  - ovh-access contributors (!UNKNOWN)
requirements:
  - the C(ovh-access) command on the managed host
options:
  executable:
    description:
      - The C(ovh-access) binary on the managed host, a name looked up in E(PATH) (and the sbin
        directories) or an absolute path.
    type: str
    default: ovh-access
  root:
    description:
      - Treat this directory as C(/) for every file the command reads (C(--root)).
    type: path
attributes:
  check_mode:
    description: The module changes nothing and runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
seealso:
  - module: ovh.access.support_access
'''

EXAMPLES = r'''
- name: Read the support access of every server
  ovh.access.support_access_info:
  register: access

- name: Fail where key, firewall and DNS disagree, with the repairs
  ansible.builtin.assert:
    that: access.consistent
    fail_msg: "{{ access.drift | map(attribute='repair') | list }}"

- name: Show what is granted and until when
  ansible.builtin.debug:
    msg: "{{ access.granted.host }} until {{ access.expires_at }}"
  when: access.granted
'''

RETURN = r'''
granted:
  description: The recorded grant (host, addresses, ports, keys, keys file, layers, times), or
    null when nothing is granted.
  returned: always
  type: dict
consistent:
  description: True when the support key, the firewall and DNS agree with the grant.
  returned: always
  type: bool
drift:
  description: Each disagreement, with the command that repairs it.
  returned: always
  type: list
  elements: dict
  contains:
    what:
      description: What disagrees.
      type: str
      returned: always
    repair:
      description: The command that repairs it.
      type: str
      returned: always
expires_at:
  description: When the grant ends, in seconds since the epoch; null when nothing is granted or
    the grant has no end.
  returned: always
  type: int
rc:
  description: The command's exit code when it failed (1 the system refused, 2 bad input); the
    module's C(msg) is then the command's one-line error.
  returned: failure
  type: int
  sample: 2
cmd:
  description: The command line that ran.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ovh.access.plugins.module_utils.ovh_access import (
    EXIT_FAILURE,
    EXIT_OK,
    common_argument_spec,
    run_json,
)


def main():
    module = AnsibleModule(argument_spec=common_argument_spec(), supports_check_mode=True)
    # `status` exits 1 on drift with its report (no `error`): a fact, not a failure.
    result = run_json(module, ['status'], ok_codes=(EXIT_OK, EXIT_FAILURE))
    result.pop('changed', None)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
