"""tools/check_layers.py: the import graph of lt_noise has no cycle and every import points down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "check_layers.py"


@pytest.fixture(scope="module")
def check_layers():
    return load_tool("check_layers")


def test_the_package_has_no_cycle_and_no_upward_import():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no cycle, every import points down" in result.stdout


def test_every_module_has_a_layer(check_layers):
    for module in check_layers.discover(ROOT):
        check_layers.layer_of(module)  # raises for a module outside every layer


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "lt_noise" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_upward_import_inside_a_function_is_reported(check_layers, tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "methods/__init__.py": "from lt_noise.methods.base import Base\n",
        "methods/base.py": "import lt_noise.callbacks\nclass Base: ...\n",
        "callbacks/__init__.py": "",
        "callbacks/diagnostics.py": "def digest():\n    from lt_noise.methods.base import Base\n    return Base\n",
    })
    problems = check_layers.check(root)
    assert any("lt_noise/callbacks/diagnostics.py:2" in p and "imports lt_noise.methods.base (methods)" in p for p in problems)
    assert not any("cycle" in p for p in problems)  # the callbacks package does not import diagnostics


def test_a_cycle_through_a_package_init_is_reported(check_layers, tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "from lt_noise.data.a import A\n",
        "data/a.py": "from lt_noise.data.b import B\nclass A: ...\n",
        "data/b.py": "from lt_noise.data import a\nB = 1\n",
        "data/c.py": "from .missing import thing\n",
    })
    problems = check_layers.check(root)
    assert "import cycle among: lt_noise.data.a, lt_noise.data.b" in problems
    assert any("imports lt_noise.data.missing, which does not exist" in p for p in problems)
