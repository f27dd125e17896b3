"""Variables of an Ansible inventory, read the way `ansible-playbook` reads them.

ansible-core's own inventory and variable managers load the inventory (every source, `group_vars`, `host_vars`,
files encrypted with Ansible Vault and inline `!vault` values) and its templar resolves `{{ ... }}` in the values,
so what the API reads is what a playbook sees on `localhost`, where the playbooks that use plans run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from api.config import ConfigError

VAULT_HEADER = b"$ANSIBLE_VAULT"
SETTING = "PROXMOXWP_VAULT_PASSWORD_FILE"


def read_variables(inventory: Path, names: Iterable[str], vault_password_file: Path | None) -> dict[str, Any]:
    """The values of `names` for `localhost` of `inventory`, templated, as plain Python data.

    Every vault-encrypted value of the inventory is decrypted now, used or not, so that a wrong password stops
    the process at start and not at the first job that needs the value."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    secrets = _vault_secrets(loader, vault_password_file)
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        variables = VariableManager(loader=loader, inventory=manager).get_vars(
            host=manager.get_host("localhost"), include_hostvars=False
        )
    except AnsibleError as exc:
        raise _load_error(inventory, exc, vault_password_file) from None
    plain = _decrypted(variables, secrets, vault_password_file)
    templar = Templar(loader=loader, variables=plain)
    found = {}
    for name in names:
        if name not in plain:
            continue
        try:
            found[name] = _native(templar.template(plain[name]))
        except AnsibleError as exc:
            raise ConfigError(f"PROXMOXWP_INVENTORY: {name}: {_first_line(exc)}") from None
    return found


def _vault_secrets(loader, password_file: Path | None) -> list:
    if password_file is None:
        return []
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import get_file_vault_secret

    if not password_file.is_file():
        raise ConfigError(f"{SETTING}: {password_file} is not a file")
    mode = password_file.stat().st_mode
    if not mode & 0o111 and mode & 0o004:  # a script holds no password; a plain file must not be open to all
        raise ConfigError(f"{SETTING}: {password_file} is readable by every user: chmod o-rwx it")
    try:
        secret = get_file_vault_secret(filename=str(password_file), vault_id="default", loader=loader)
        secret.load()
    except (AnsibleError, OSError) as exc:
        raise ConfigError(f"{SETTING}: {password_file}: {_first_line(exc)}") from None
    secrets = [("default", secret)]
    loader.set_vault_secrets(secrets)
    return secrets


def _decrypted(value: Any, secrets: list, password_file: Path | None, where: str = "") -> Any:
    """`value` with every inline `!vault` string replaced by its plain text."""
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import EncryptedString, VaultHelper, VaultLib

    if isinstance(value, EncryptedString):
        if not secrets:
            raise ConfigError(f"PROXMOXWP_INVENTORY: {where} is encrypted with Ansible Vault: set {SETTING}")
        try:
            text = VaultLib(secrets=secrets).decrypt(VaultHelper.get_ciphertext(value, with_tags=False))
        except AnsibleError:
            raise ConfigError(f"{SETTING}: the vault password in {password_file} does not decrypt {where}") from None
        return text.decode()
    if isinstance(value, dict):
        return {key: _decrypted(item, secrets, password_file, f"{where}.{key}" if where else str(key))
                for key, item in value.items()}  # fmt: skip
    if isinstance(value, list | tuple):
        return [_decrypted(item, secrets, password_file, f"{where}[{n}]") for n, item in enumerate(value)]
    return value


def _native(value: Any) -> Any:
    """Ansible's tagged strings, numbers and containers as the plain Python types they stand for."""
    if isinstance(value, dict):
        return {str(key): _native(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_native(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _load_error(inventory: Path, exc: Exception, password_file: Path | None) -> ConfigError:
    encrypted = [str(path) for path in _vault_files(inventory)]
    if encrypted and password_file is None:
        files, verb = ", ".join(encrypted), "is" if len(encrypted) == 1 else "are"
        return ConfigError(f"PROXMOXWP_INVENTORY: {files} {verb} encrypted with Ansible Vault: set {SETTING}")
    if encrypted and "decrypt" in str(exc).lower():
        files = ", ".join(encrypted)
        return ConfigError(f"{SETTING}: the vault password in {password_file} does not decrypt {files}")
    return ConfigError(f"PROXMOXWP_INVENTORY: {inventory}: {_first_line(exc)}")


def _vault_files(inventory: Path) -> list[Path]:
    found = []
    for folder in ("group_vars", "host_vars"):
        for path in sorted((inventory / folder).rglob("*")):
            try:
                with path.open("rb") as handle:
                    if handle.read(len(VAULT_HEADER)) == VAULT_HEADER:
                        found.append(path)
            except OSError:  # a folder, or unreadable: ansible's own error is then the one to show
                continue
    return found


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(getattr(exc, "message", None) or exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
