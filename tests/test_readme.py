"""The README's promises: its Python example runs as written, its commands exist."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the README's examples in fresh interpreters

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_api_example_runs_as_written(tmp_path):
    section = README.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    if not (ROOT / "models" / "lite_cbam.safetensors").exists():
        pytest.skip("the example loads the shipped lite_cbam checkpoint, not trained yet")
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cbam" in out.stdout and "spatial" in out.stdout


def test_the_two_commands_exist():
    for cmd in ("./run.sh", "./test.sh"):
        assert cmd in README
        assert (ROOT / cmd[2:]).stat().st_mode & 0o111, f"{cmd} is not executable"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./test.sh" in ci


def test_space_front_matter():
    front = README.split("---", 2)[1]
    for key in ("sdk: gradio", "app_file: app.py", "suggested_hardware", "sdk_version"):
        assert key in front
