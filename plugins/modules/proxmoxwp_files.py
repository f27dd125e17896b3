#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_files
short_description: Hold a set of directories, files and links to what is given, in one step
description:
  - Makes each directory of O(directories), writes each file of O(files) whose content, owner, group or mode
    differ, and points each link of O(links) at its source, all in one run of the module on the host. The role
    C(proxmoxwp.hosting.wordpress) writes a site's configuration with it, in one round trip instead of a
    C(template) or C(copy) task per file (each a few round trips of its own).
  - A file is replaced atomically (written beside it, then renamed), so a reader never sees half of it.
  - It reports the paths it changed, and the services that must take a change (each entry's O(files[].service)),
    so that the playbook notifies only the handlers of what changed.
  - File contents are never logged; the module does not support diff mode for that reason.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  directories:
    description: Directories to make when missing, in order (a parent before its children).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory's absolute path.
        type: path
        required: true
      owner: &owner
        description: Its owner.
        type: str
        default: root
      group: &group
        description: Its group.
        type: str
        default: root
      mode:
        description: Its mode, in octal.
        type: str
        default: "0755"
  files:
    description: Files to hold to the given content, owner, group and mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file's absolute path; its folder must exist (made by O(directories) or already there).
        type: path
        required: true
      content:
        description: The whole content of the file. Never logged.
        type: str
        required: true
      owner: *owner
      group: *group
      mode:
        description: Its mode, in octal.
        type: str
        default: "0644"
      service:
        description: The service that must take a change of the file (reported in RV(services) when it changed).
        type: str
      only_if_folder:
        description:
          - Write the file only when its folder exists; otherwise leave it out and report it in RV(left_out).
          - For a setting that the program reads from an optional folder (sshd's C(sshd_config.d)).
        type: bool
        default: false
  links:
    description: Symbolic links to point at their source.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The link's absolute path.
        type: path
        required: true
      src:
        description: What it points to.
        type: path
        required: true
      service:
        description: The service that must take a change of the link.
        type: str
"""

EXAMPLES = r"""
- name: Write the site's configuration
  proxmoxwp.hosting.proxmoxwp_files:
    directories:
      - path: /var/www/wordpress/wp-content/mu-plugins
    files:
      - path: /etc/nginx/sites-available/wordpress
        content: "{{ lookup('ansible.builtin.template', 'nginx-wordpress.conf.j2') }}"
        service: nginx
    links:
      - path: /etc/nginx/sites-enabled/wordpress
        src: /etc/nginx/sites-available/wordpress
        service: nginx
  register: written
"""

RETURN = r"""
changed_paths:
  description: The directories, files and links made or changed, in the order given.
  returned: always
  type: list
  elements: str
services:
  description: The services whose files or links changed (sorted, each once).
  returned: always
  type: list
  elements: str
left_out:
  description: The files with O(files[].only_if_folder) whose folder does not exist.
  returned: always
  type: list
  elements: str
"""

import os  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.parameters import remove_values  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes  # noqa: E402

OWNERSHIP = dict(owner=dict(type="str", default="root"), group=dict(type="str", default="root"))


class FilesModule(AnsibleModule):
    """AnsibleModule, with the contents kept out of the host's log as well.

    Ansible logs each module's invocation to the host's journal (or syslog). It masks no_log values there by
    searching for them in the text of each parameter, and the text of a list shows each string as Python writes it,
    its newlines as \\n: a content of more than one line (wp-config.php, with the database password and the salts)
    was not found, so it was logged whole. The escaped forms are masked too.
    """

    def log(self, msg, log_args=None):
        hidden = self.no_log_values | {repr(value)[1:-1] for value in self.no_log_values if isinstance(value, str)}
        if log_args:
            log_args = {name: remove_values(value, hidden) for name, value in log_args.items()}
        super().log(remove_values(msg, hidden), log_args=log_args)


def attributes(module, path, entry, changed):
    """Owner, group and mode of `path` as `entry` says; True when one changed (or would, in check mode)."""
    wanted = dict(path=path, owner=entry["owner"], group=entry["group"], mode=entry["mode"], attributes=None)
    return module.set_fs_attributes_if_different(module.load_file_common_arguments(wanted), changed)


def hold_directory(module, entry):
    path = entry["path"]
    made = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            module.fail_json(msg=f"{path} exists and is not a directory.")
        made = True
        if not module.check_mode:
            os.mkdir(path, 0o700)  # its mode follows below, after its owner
    if made and module.check_mode:
        return True
    return attributes(module, path, entry, made)


def hold_file(module, entry):
    path = entry["path"]
    content = to_bytes(entry["content"], errors="surrogate_or_strict")
    try:
        with open(path, "rb") as current:
            same = current.read() == content
    except FileNotFoundError:
        same = False
    if same:
        return attributes(module, path, entry, False)
    if module.check_mode:
        return True
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".proxmoxwp-")
    try:
        with os.fdopen(handle, "wb") as written:
            written.write(content)
        # Owner, group and mode before the rename, so the file never appears with others (wp-config.php holds
        # secrets); os.replace, not module.atomic_move, which gives a new file the umask's mode after the rename.
        attributes(module, temporary, entry, True)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return True


def hold_link(module, entry):
    path, src = entry["path"], entry["src"]
    if os.path.islink(path) and os.readlink(path) == src:
        return False
    if os.path.lexists(path) and not os.path.islink(path):
        module.fail_json(msg=f"{path} exists and is not a symbolic link.")
    if not module.check_mode:
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(src, path)
    return True


def main():
    module = FilesModule(
        argument_spec=dict(
            directories=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(path=dict(type="path", required=True), mode=dict(type="str", default="0755"), **OWNERSHIP),
            ),
            files=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    content=dict(type="str", required=True, no_log=True),
                    mode=dict(type="str", default="0644"),
                    service=dict(type="str"),
                    only_if_folder=dict(type="bool", default=False),
                    **OWNERSHIP,
                ),
            ),
            links=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    src=dict(type="path", required=True),
                    service=dict(type="str"),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    changed_paths, services, left_out = [], set(), []
    for entry in module.params["directories"]:
        if hold_directory(module, entry):
            changed_paths.append(entry["path"])
    for entry in module.params["files"]:
        if entry["only_if_folder"] and not os.path.isdir(os.path.dirname(entry["path"])):
            left_out.append(entry["path"])
            continue
        if hold_file(module, entry):
            changed_paths.append(entry["path"])
            services.update([entry["service"]] if entry["service"] else [])
    for entry in module.params["links"]:
        if hold_link(module, entry):
            changed_paths.append(entry["path"])
            services.update([entry["service"]] if entry["service"] else [])
    module.exit_json(
        changed=bool(changed_paths), changed_paths=changed_paths, services=sorted(services), left_out=left_out
    )


if __name__ == "__main__":
    main()
