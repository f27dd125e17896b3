"""The README's shell blocks, read by the tests that run them as a reader would (its first command, its
walkthrough), so the README cannot drift from what works."""

from __future__ import annotations

import re

from conftest import ROOT


def shell_block(after: str = "") -> str:
    """The first ```sh block of README.md after the line `after` (from the top when empty)."""
    text = (ROOT / "README.md").read_text()
    start = text.find(f"{after}\n") if after else 0
    assert start >= 0, f"README.md has no line {after!r}"
    found = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"README.md has no shell block after {after or 'its top'!r}"
    return found.group(1)
