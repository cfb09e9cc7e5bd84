#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ovh-access contributors
# MIT License or Apache License 2.0 (see the repository's Cargo.toml)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: support_access
short_description: Let a hosting provider's support into a server over SSH, and out again
version_added: "0.1.0"
description:
  - Runs the C(ovh-access) command on the managed host, which opens the firewall for exactly the
    support host's addresses on the SSH ports and installs the support key with a C(from=)
    restriction (O(state=granted)), or disables the key, closes the firewall and ends the
    support's live sessions (O(state=revoked)), each as one paired, journaled operation.
  - The module holds no logic of its own about keys files or firewalls; every option is the flag
    of the same name of C(ovh-access grant) or C(ovh-access revoke), and the result is the
    command's C(--json) object.
  - Check mode runs the command with C(--dry-run). Diff mode shows the keys file's content before
    and after, and the firewall change in the firewall's own syntax (C(nft -f) or
    C(iptables-restore) input).
  - A failure is the command's one-line error as C(msg), with its exit code as C(rc)
    (1 the system refused, 2 bad input).
author:
  - ovh-access contributors (!UNKNOWN)
requirements:
  - the C(ovh-access) command on the managed host, run as root
options:
  state:
    description:
      - V(granted) runs C(ovh-access grant), V(revoked) runs C(ovh-access revoke).
      - The grant options are refused by the command with O(state=revoked), and the revoke options
        with O(state=granted).
    type: str
    choices: [granted, revoked]
    default: granted
  region:
    description:
      - The built-in support profile (C(--region)); V(eu) is C(cache-ng.ovh.net), V(ca) is
        C(cache-ng.ovh.ca).
    type: str
    choices: [eu, ca]
  host:
    description:
      - The support host name to resolve (C(--host)); overrides the host of O(region).
    type: str
  addresses:
    description:
      - Support addresses to use instead of DNS (C(--address), one per item).
    type: list
    elements: str
  key_file:
    description:
      - The support public key(s) on the managed host (C(--key-file)), an OpenSSH public key file
        or authorized_keys lines. Without it, the key of O(region).
    type: str
  fingerprint:
    description:
      - Refuse unless the key has this fingerprint (C(--fingerprint), C(SHA256:...)).
    type: str
  ports:
    description:
      - SSH ports to open (C(--port), one per item); replaces the ports detected from sshd.
    type: list
    elements: int
  duration:
    description:
      - Grant for this long (C(--for)), as C(30m), C(4h) or C(2d); the kernel and sshd end the
        grant on time even if nothing runs again.
      - Running the same grant again with a duration starts the duration again, which is a change.
    type: str
  firewall:
    description:
      - Which firewall to program (C(--firewall)); the command's default is V(auto).
    type: str
    choices: [auto, nft, iptables, none]
  replace_foreign:
    description:
      - Comment out an unrestricted line that already carries the support key instead of
        refusing (C(--replace-foreign)).
    type: bool
    default: false
  resolver:
    description:
      - DNS server to ask instead of resolv.conf's (C(--resolver)), as C(IP), C(IP:PORT) or
        C([IPv6]:PORT).
    type: str
  allow_private:
    description:
      - Accept private and documentation addresses in the DNS answer (C(--allow-private)).
    type: bool
    default: false
  trust_dns:
    description:
      - Use DNS answers even outside the region's published addresses (C(--trust-dns)).
    type: bool
    default: false
  no_dns:
    description:
      - Do not ask DNS; use the region's published addresses (C(--no-dns)).
    type: bool
    default: false
  keep_sessions:
    description:
      - With O(state=revoked), leave the support's established SSH sessions running
        (C(--keep-sessions)).
    type: bool
    default: false
  remove:
    description:
      - With O(state=revoked), delete the support key lines instead of commenting them out
        (C(--remove)).
    type: bool
    default: false
  executable:
    description:
      - The C(ovh-access) binary on the managed host, a name looked up in E(PATH) (and the sbin
        directories) or an absolute path.
    type: str
    default: ovh-access
  root:
    description:
      - Treat this directory as C(/) for every file the command reads or writes (C(--root)); the
        firewall is always the managed host's own.
    type: path
attributes:
  check_mode:
    description: Runs the command with C(--dry-run); C(changed) says whether a real run would change something.
    support: full
  diff_mode:
    description: The keys file before and after, and the firewall change as text.
    support: full
notes:
  - The command needs root on the managed host (use C(become) when connecting as another user).
seealso:
  - module: ovh.access.support_access_info
'''

EXAMPLES = r'''
- name: Let OVH's European support in for four hours
  ovh.access.support_access:
    region: eu
    duration: 4h
  register: support

- name: Tell the support which SSH port to use
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: SSH port {{ support.ports | join(', ') }}"

- name: Another provider, its own key pinned by fingerprint, explicit addresses and port
  ovh.access.support_access:
    host: support.example.net
    key_file: /etc/ovh-access/support.pub
    fingerprint: "SHA256:hvVdrBbYqZJYwmIizASV/3BwCRmDBMcZFpIoKIqQ4WI"
    addresses: [192.0.2.10, "2001:db8::10"]
    ports: [2222]
    duration: 2d

- name: Shut the support out again, deleting the key lines
  ovh.access.support_access:
    state: revoked
    remove: true
'''

RETURN = r'''
command:
  description: The command that ran (V(grant) or V(revoke)).
  returned: always
  type: str
  sample: grant
dry_run:
  description: True in check mode (the command ran with C(--dry-run)).
  returned: always
  type: bool
would_change:
  description: Whether the command changes (or, in check mode, would change) something.
  returned: always
  type: bool
host:
  description: The support host.
  returned: when O(state=granted)
  type: str
  sample: cache-ng.ovh.net
addresses:
  description: The support addresses the firewall and the key's C(from=) let in.
  returned: when O(state=granted)
  type: list
  elements: str
  sample: ["198.51.100.2", "2001:db8:1::2"]
ports:
  description: The SSH ports opened to the support; give them to the support team.
  returned: when O(state=granted)
  type: list
  elements: int
  sample: [2222]
expires_at:
  description: When the grant ends, in seconds since the epoch; null when it does not.
  returned: when O(state=granted)
  type: int
expires_at_utc:
  description: The same instant as text.
  returned: when O(state=granted)
  type: str
  sample: "2026-11-25 18:30:00 UTC"
keys_file:
  description: The keys file sshd reads for root, as a path on the managed host.
  returned: always
  type: str
  sample: /root/.ssh/authorized_keys2
keys_file_changed:
  description: Whether the keys file changes.
  returned: always
  type: bool
keys_file_before:
  description: The keys file's content before the command.
  returned: always
  type: str
keys_file_after:
  description: The keys file's content after the command (in check mode, what would be written).
  returned: always
  type: str
firewall:
  description: One entry per firewall layer (C(nftables), C(iptables-legacy), ...), with
    C(changed), C(script), C(chains) and C(notes).
  returned: always
  type: list
  elements: dict
firewall_script:
  description: The firewall change of the layers that change, as C(nft -f) or
    C(iptables-restore) input, each after a C(# layer) line; empty when nothing changes.
  returned: always
  type: str
sessions_ended:
  description: The support's live sessions that were ended.
  returned: when O(state=revoked)
  type: list
  elements: dict
previous:
  description: The grant that was revoked, or null.
  returned: when O(state=revoked)
  type: dict
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
    common_argument_spec,
    run_json,
)

# Options given as a flag with a value, in the command's own spelling.
VALUE_FLAGS = (
    ('region', '--region'),
    ('host', '--host'),
    ('key_file', '--key-file'),
    ('fingerprint', '--fingerprint'),
    ('duration', '--for'),
    ('firewall', '--firewall'),
    ('resolver', '--resolver'),
)
LIST_FLAGS = (('addresses', '--address'), ('ports', '--port'))
BOOL_FLAGS = (
    ('replace_foreign', '--replace-foreign'),
    ('allow_private', '--allow-private'),
    ('trust_dns', '--trust-dns'),
    ('no_dns', '--no-dns'),
    ('keep_sessions', '--keep-sessions'),
    ('remove', '--remove'),
)


def command_line(params, check_mode):
    """The command's arguments for these options: each option given becomes its flag."""
    argv = ['grant' if params['state'] == 'granted' else 'revoke']
    for name, flag in VALUE_FLAGS:
        if params[name] is not None:
            argv += [flag, str(params[name])]
    for name, flag in LIST_FLAGS:
        for item in params[name] or []:
            argv += [flag, str(item)]
    for name, flag in BOOL_FLAGS:
        if params[name]:
            argv.append(flag)
    if check_mode:
        argv.append('--dry-run')
    return argv


def diff_of(result):
    """The keys file as Ansible shows a file's diff, and the firewall change as prepared text."""
    name = result.get('keys_file') or 'keys file'
    diff = [dict(
        before_header=name,
        after_header=name,
        before=result.get('keys_file_before', ''),
        after=result.get('keys_file_after', ''),
    )]
    if result.get('firewall_script'):
        diff.append(dict(prepared=result['firewall_script']))
    return diff


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='granted', choices=['granted', 'revoked']),
        region=dict(type='str', choices=['eu', 'ca']),
        host=dict(type='str'),
        addresses=dict(type='list', elements='str'),
        key_file=dict(type='str'),
        fingerprint=dict(type='str'),
        ports=dict(type='list', elements='int'),
        duration=dict(type='str'),
        firewall=dict(type='str', choices=['auto', 'nft', 'iptables', 'none']),
        replace_foreign=dict(type='bool', default=False),
        resolver=dict(type='str'),
        allow_private=dict(type='bool', default=False),
        trust_dns=dict(type='bool', default=False),
        no_dns=dict(type='bool', default=False),
        keep_sessions=dict(type='bool', default=False),
        remove=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    result = run_json(module, command_line(module.params, module.check_mode))
    changed = bool(result.get('would_change' if module.check_mode else 'changed'))
    result.pop('changed', None)
    if module._diff:
        result['diff'] = diff_of(result)
    module.exit_json(changed=changed, **result)


if __name__ == '__main__':
    main()
