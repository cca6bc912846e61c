"""Static types: ``mypy --strict`` over the modules listed in pyproject's ``[tool.mypy] files``.

Why a test: CI runs the README's ``pytest -q``, so a type error in a listed module fails CI like
any other regression. The list grows as modules are typed; deselect with ``-m 'not types'``
while iterating on something else.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.types


def test_every_listed_module_exists():
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert files, "pyproject's [tool.mypy] files lists no module"
    assert [f for f in files if not (ROOT / f).exists()] == []


def test_listed_modules_pass_mypy_strict():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output"], cwd=ROOT, capture_output=True,
                          text=True, timeout=540, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
