"""The source tree passes ruff with the configuration in ``pyproject.toml`` (``ruff`` is in the test extra)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not (ROOT / "fastopt").is_dir(),
                    reason="needs the source tree (the tests run from a clone's root)")
def test_ruff_is_clean():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], cwd=ROOT,
                         capture_output=True, text=True)
    assert "No module named ruff" not in run.stderr, "ruff is part of the test extra: pip install '.[test]'"
    assert run.returncode == 0, run.stdout + run.stderr
