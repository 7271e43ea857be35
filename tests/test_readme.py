"""The README's quickstart runs verbatim, and its commands are what CI runs."""

import re
import warnings
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_quickstart_runs_verbatim_and_clean():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python block"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a user's first run shows no warning (a ConvergenceWarning included)
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})


def test_two_setup_commands_install_cpu_torch_first():
    for marker in ("<!-- main-job command -->", "<!-- test command -->"):
        cmd = README.split(marker, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
        assert "\n" not in cmd, "one command, one line"
        assert cmd.index("torch==2.13.0") < cmd.index("pip install -e")
