"""The command line's default CPU thread count: torch's choice, but never more threads than free cores.

The truth is arithmetic on the machine's state, which the tests fix by replacing the load average, the core
counts and the environment (a busy 2-core machine, an idle one, a 4-core slice of a half-busy 64-core host)."""
from __future__ import annotations

import os

import pytest
import torch

from unireplknet import cli
from unireplknet.engine import flags as _cli_common
from unireplknet.engine.flags import default_threads, set_torch_threads


@pytest.mark.parametrize("torch_default, cores, total, load, expected", [
    (2, 2, 2, 0.0, 2),     # idle 2-core machine: torch's choice
    (2, 2, 2, 7.0, 1),     # 2 cores, load 7 (seven other jobs): one thread, never zero
    (2, 2, 2, 0.9, 1),     # one core busy: 2 · (1 - 0.45) = 1.1 → 1
    (8, 8, 8, 2.0, 6),     # 8 cores, 2 busy: 6 free
    (32, 4, 64, 32.0, 2),  # a 4-core slice of a half-busy 64-core host: half of the 4
    (4, 16, 16, 0.0, 4),   # idle, torch asked for fewer than the cores: torch's choice stays the upper bound
    (2, 2, 2, -1.0, 2),    # a nonsense load reading counts as idle
])
def test_default_threads_is_torch_choice_capped_by_free_cores(torch_default, cores, total, load, expected):
    assert default_threads(torch_default, cores, total, load) == expected


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch, load: float, cores: int = 2) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(_cli_common, "_torch_default_threads", cores)
    for name in _cli_common.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_busy_machine_gets_one_thread_and_the_flag_or_environment_wins(monkeypatch, restore_threads):
    _machine(monkeypatch, load=7.0)
    assert set_torch_threads(None) == 1 == torch.get_num_threads()
    assert set_torch_threads(2) == 2  # --threads always wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_torch_threads(None) == 2  # the user's (or torchrun's) OMP_NUM_THREADS: torch follows it, untouched


def test_idle_machine_keeps_torch_choice(monkeypatch, restore_threads):
    _machine(monkeypatch, load=0.0)
    torch.set_num_threads(1)
    assert set_torch_threads(None) == 2  # torch's own default (here: the 2 cores), not a leftover of a former call


def test_every_command_applies_the_default(monkeypatch, restore_threads):
    """A command without --threads (info) runs with the capped default too."""
    _machine(monkeypatch, load=9.0)
    torch.set_num_threads(2)
    seen = []
    monkeypatch.setattr(cli, "cmd_info", lambda args: seen.append(torch.get_num_threads()) or 0)
    assert cli.main(["info"]) == 0
    assert seen == [1]
