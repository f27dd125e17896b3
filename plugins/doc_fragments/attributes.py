# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The attributes of the collection's modules, described once (as ansible.builtin.action_common_attributes does);
each module states how far it supports check_mode and diff_mode."""


class ModuleDocFragment:
    # check_mode, diff_mode and platform: what each means. A module adds its own `support` for the first two.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details:
      - The module runs where the task runs, usually the controller (C(delegate_to) localhost or a play on
        localhost), and acts on a remote API over HTTP(S), never on the host it runs on.
"""

    # A module that only reads.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""
