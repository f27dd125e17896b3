"""The collection proxmoxwp.hosting as an operator gets it, and ansible-test's sanity environments for it.

`build` makes the artifact with `ansible-galaxy collection build`, `install` installs it into a folder of its own
(`<folder>/ansible_collections/proxmoxwp/hosting`, the layout ansible-test needs), `sanity` runs
`ansible-test sanity` there.

ansible-test 2.19 runs each sanity test in a virtual environment of its own under ~/.ansible/test/venv, with the
requirements it pins (pylint, voluptuous, antsibull-docs-parser, yamllint, ...) from the package index, whatever
the calling Python has installed: extras of this project would not be seen. It starts each environment with pip's
bootstrap script get-pip.py, which it downloads from a host that is not the package index (unreachable here and
in CI). `bootstrap_pip` puts an equivalent in the place ansible-test reads first: pip's own wheel, from the
index, run as get-pip.py runs the copy it embeds. `scripts/install.sh --dev` makes the environments
(`python -m tests.collection prime`), so that the tests install nothing; they are kept between runs.

    python -m tests.collection prime    # bootstrap pip, then `ansible-test sanity --prime-venvs`
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NAMESPACE, NAME = "proxmoxwp", "hosting"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
ANSIBLE_TEST_CACHE = Path.home() / ".ansible" / "test" / "cache"
BUILD_TIMEOUT = 300
SANITY_TIMEOUT = 1500

# What get-pip.py does with its arguments, for ansible-test's bootstrap (ansible_test/_util/target/setup/
# requirements.py runs it with pip's options and `pip==X`, plus two options of get-pip.py's own).
BOOTSTRAP = '''"""pip's bootstrap for ansible-test, in place of get-pip.py: written by tests/collection.py."""
import os
import sys

WHEEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), {wheel!r})
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

arguments = [argument for argument in sys.argv[1:] if argument not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *arguments]))
'''


def environment() -> dict[str, str]:
    """This process's environment without the settings that would point Ansible at the checkout's configuration or
    collections: the artifact is used as an operator who installed it uses it."""
    env = {k: v for k, v in os.environ.items() if k not in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(argv: list[str], cwd: Path, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env={**environment(), **extra}, capture_output=True, text=True, timeout=timeout, check=False
    )


def build(output: Path) -> Path:
    """The artifact of the working tree (galaxy.yml's build_ignore leaves out what is not the collection)."""
    built = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(output), str(ROOT)],
                output, BUILD_TIMEOUT)  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"ansible-galaxy collection build failed:\n{built.stdout}{built.stderr}")
    [artifact] = output.glob(f"{NAMESPACE}-{NAME}-*.tar.gz")
    return artifact


def install(artifact: Path, collections: Path) -> Path:
    """The artifact installed as an operator installs it; the collection's folder. From `collections`, so that the
    checkout's ansible.cfg, which already finds the collection, is not read."""
    installed = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                     str(collections), str(artifact)], collections, BUILD_TIMEOUT)  # fmt: skip
    if installed.returncode != 0:
        raise RuntimeError(f"ansible-galaxy collection install failed:\n{installed.stdout}{installed.stderr}")
    return collections / "ansible_collections" / NAMESPACE / NAME


def bootstrap_pip() -> None:
    """Put the bootstrap script ansible-test looks for (get_pip_<version>.py) and pip's wheel in its cache."""
    from ansible_test._internal.python_requirements import get_venv_packages  # ansible-test's own pin of pip

    version = get_venv_packages(SimpleNamespace(version=PYTHON))["pip"]
    script = ANSIBLE_TEST_CACHE / f"get_pip_{version.replace('.', '_')}.py"
    wheel = f"pip-{version}-py3-none-any.whl"
    if script.is_file() and (ANSIBLE_TEST_CACHE / wheel).is_file():
        return
    ANSIBLE_TEST_CACHE.mkdir(parents=True, exist_ok=True)
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--dest", str(ANSIBLE_TEST_CACHE), f"pip=={version}"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    if downloaded.returncode != 0:
        raise RuntimeError(f"pip {version} could not be downloaded for ansible-test:\n{downloaded.stderr}")
    partial = script.with_suffix(".partial")
    partial.write_text(BOOTSTRAP.format(wheel=wheel))
    partial.replace(script)


def sanity(collection: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`ansible-test sanity --python X.Y` (this Python's version) in the installed collection."""
    bootstrap_pip()
    argv = [str(BIN / "ansible-test"), "sanity", "--python", PYTHON, "--color", "no", *options]
    return run(argv, collection, SANITY_TIMEOUT)


def prime() -> int:
    """Make ansible-test's sanity environments for the collection, in a folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="proxmoxwp-collection-") as scratch:
        artifact = build(Path(scratch))
        collections = Path(scratch) / "collections"
        collections.mkdir()
        primed = sanity(install(artifact, collections), "--prime-venvs")
    if primed.returncode != 0:
        sys.stdout.write(primed.stdout + primed.stderr)
    return primed.returncode


if __name__ == "__main__":
    if sys.argv[1:] != ["prime"]:
        sys.exit("usage: python -m tests.collection prime")
    sys.exit(prime())
