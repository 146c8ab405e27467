"""What the engine settles before a run (issue 24, points 6 and 7): a warm-up longer than a short run and more
loader workers than cores are adapted in one place, said once; inputs are checked before the output folder."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch

from unireplknet.cli import main
from unireplknet.data import write_digits_image_folder
from unireplknet.tasks.image import TrainConfig
from unireplknet.engine import config as engine_config
from unireplknet.engine.config import SHORT_RUN_WARMUP_SHARE, adapt_to_machine_and_run
from unireplknet.engine.loop import build_scheduler

TRAIN_COMMANDS = ["train", "audio-train", "forecast-train", "video-train", "points-train", "det-train", "seg-train"]
TINY = dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [7], [3], [3]])
FAST = ["--model", "custom", "--model-kwargs", json.dumps(TINY), "--in-chans", "1", "--input-size", "32",
        "--batch-size", "8", "--no-progress", "--no-onnx", "--no-tensorboard"]


def _learning_rates(cfg, steps_per_epoch: int):
    """The rate of every optimizer step of the run, as the engine's scheduler sets it."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    rates = []
    for step in range(cfg.epochs * steps_per_epoch):
        sched.step_update(step)
        rates.append(opt.param_groups[0]["lr"])
    return rates


def test_a_warmup_longer_than_the_run_is_shortened_so_the_rate_peaks_and_decays(caplog):
    cfg = TrainConfig(epochs=3, warmup_epochs=5, lr=1e-3, min_lr=1e-6, workers=0)
    before = _learning_rates(cfg, 10)
    assert max(before) < 0.7 * cfg.lr  # the failure: still warming up when the run ends
    with caplog.at_level(logging.INFO, logger="unireplknet"):
        adapted = adapt_to_machine_and_run(cfg, 10, cores=2)
    assert adapted.warmup_epochs == pytest.approx(SHORT_RUN_WARMUP_SHARE * 3) and cfg.warmup_epochs == 5
    after = _learning_rates(adapted, 10)
    assert max(after) == pytest.approx(cfg.lr, rel=0.05)  # reaches the peak ...
    assert after[-1] < 0.2 * cfg.lr  # ... and the cosine decays it
    notes = [r for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO  # a recipe default: said once, at INFO


def test_an_explicit_impossible_value_is_adapted_with_a_warning(caplog):
    cfg = TrainConfig(epochs=2, warmup_epochs=2, workers=6, set_by_user=("warmup_epochs", "workers"))
    with caplog.at_level(logging.INFO, logger="unireplknet"):
        adapted = adapt_to_machine_and_run(cfg, 5, cores=2)
    assert (adapted.warmup_epochs, adapted.workers) == (pytest.approx(0.4), 2)
    assert sorted(r.levelno for r in caplog.records if r.name.startswith("unireplknet")) == [logging.WARNING] * 2


def test_a_warmup_in_steps_is_capped_by_the_run_too():
    cfg = TrainConfig(epochs=1, workers=0)
    cfg.warmup_steps = 500  # the detection recipe's warm-up, on a run of 10 steps
    assert adapt_to_machine_and_run(cfg, 10, cores=4).warmup_steps == int(SHORT_RUN_WARMUP_SHARE * 10)


def test_workers_are_capped_by_the_usable_cores_shared_by_local_ranks(monkeypatch, caplog):
    cfg = TrainConfig(epochs=10, warmup_epochs=1, workers=4)
    with caplog.at_level(logging.INFO, logger="unireplknet"):
        assert adapt_to_machine_and_run(cfg, 10, cores=2).workers == 2
    assert any("4 data-loading workers" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert adapt_to_machine_and_run(cfg, 10, cores=2).workers == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    caplog.clear()
    fine = TrainConfig(epochs=10, warmup_epochs=1, workers=0)
    with caplog.at_level(logging.INFO, logger="unireplknet"):
        assert adapt_to_machine_and_run(fine, 10, cores=1) is fine  # nothing to adapt: the same object, no line
    assert not caplog.records


def test_usable_cores_follows_the_affinity(monkeypatch):
    monkeypatch.setattr(engine_config.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(engine_config.os, "cpu_count", lambda: 64)
    assert engine_config.usable_cores() == 2


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_image_folder(root / "train", split="train", limit_per_class=2)
    write_digits_image_folder(root / "val", split="val", limit_per_class=1)
    return root


def test_a_short_cli_run_leaves_the_warmup_and_does_not_oversubscribe(digits, tmp_path, monkeypatch, caplog):
    """`train --warmup-epochs 5 --epochs 1 --workers N` on a machine of fewer cores: the run's recorded config says
    what it did, timm's "no effect" warning and torch's DataLoader oversubscription warning do not appear."""
    cores = engine_config.usable_cores()
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        assert main(["train", "--data", str(digits), "--output", str(out), *FAST, "--epochs", "1",
                     "--warmup-epochs", "5", "--workers", str(cores + 1), "--threads", "1"]) == 0
    config = torch.load(out / "last.pth", weights_only=True)["config"]
    assert config["warmup_epochs"] == pytest.approx(SHORT_RUN_WARMUP_SHARE) and config["workers"] == cores
    messages = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    assert not [m for m in messages if "will have no effect" in m or "worker processes in total" in m], messages
    adapted = [r for r in caplog.records if r.name.startswith("unireplknet") and r.levelno == logging.WARNING]
    assert len(adapted) == 2  # both were given on the command line: warnings, each said once


@pytest.mark.parametrize("command", TRAIN_COMMANDS)
def test_a_missing_data_path_is_named_before_the_existing_run_folder(command, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(b"an earlier run")
    assert main([command, "--data", str(tmp_path / "no-such-data"), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "no-such-data" in err and "already holds a run" not in err, err
    assert (out / "last.pth").read_bytes() == b"an earlier run"


@pytest.mark.parametrize("flag", ["--checkpoint", "--resume"])
def test_a_missing_checkpoint_is_named_before_the_existing_run_folder(flag, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(b"an earlier run")
    assert main(["train", flag, str(tmp_path / "gone.pth"), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} {tmp_path / 'gone.pth'} does not exist" in err and "already holds" not in err, err


def test_built_in_data_names_are_not_taken_for_paths(tmp_path):
    from unireplknet.engine.config import check_input_paths
    from unireplknet.tasks.dense.task import DenseTrainConfig
    from unireplknet.tasks.forecast.linear import ForecastTrainConfig

    check_input_paths(DenseTrainConfig(data="scenes"))
    check_input_paths(ForecastTrainConfig(data="synthetic-grid"))
    check_input_paths(TrainConfig(data="digits", resume="auto"))
    with pytest.raises(FileNotFoundError, match="--data scenes2 does not exist.*built-in data sets: scenes"):
        check_input_paths(DenseTrainConfig(data="scenes2"))
