"""README.md's install and test commands: the default path is what CI runs, the CPU-only path installs the CPU
build of torch before the same command, and the test count is stated once."""
from __future__ import annotations

import re
import shlex
from typing import List

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def _bash_blocks(text: str) -> List[List[str]]:
    return [[line for line in block.strip().splitlines() if line and not line.startswith("#")]
            for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)]


def _ci_commands() -> List[List[str]]:
    lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.startswith("python")]


def test_default_install_is_one_command_and_ci_runs_it():
    default, *_ = _bash_blocks(_section("Install"))
    assert default == ['pip install -e ".[test]"']
    install, test = _ci_commands()
    # .ci/run: `python -m pip` is pip for that python; the arguments must be the README's.
    assert install[:3] == ["python", "-m", "pip"] and install[3:] == shlex.split(default[0])[1:]
    readme_test, = _bash_blocks(_section("Tests"))
    assert test == shlex.split(readme_test[0])


def test_cpu_only_install_takes_the_cpu_torch_first_then_the_default():
    blocks = _bash_blocks(_section("Install"))
    cpu = next(b for b in blocks if any("download.pytorch.org/whl/cpu" in line for line in b))
    first, second = (shlex.split(line) for line in cpu)
    assert first[:4] == ["pip", "install", "torch", "torchvision"]
    assert first[first.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert cpu[1] == blocks[0][0]  # then exactly the default command
    assert second[:2] == ["pip", "install"]


def test_main_job_is_one_command():
    assert _bash_blocks(_section("The main job: train, fuse and export a classifier"))[0] == ["unireplknet train"]


def test_the_suite_size_is_stated_once():
    assert len(re.findall(r"\d+ tests passed", README)) == 1
