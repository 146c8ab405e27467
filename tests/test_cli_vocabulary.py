"""One command line (issue 24, points 9 and 10): every subcommand takes the common flags, ``--version`` answers,
``--help`` stays free of torch, and no help line says "default:" twice."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from unireplknet import cli
from unireplknet.cli import build_parser

PARSER = build_parser()
SUBCOMMANDS = cli._subcommand_names(PARSER)

#: Commands that only write a file from their inputs: no --device (nothing to accelerate) and no --json (no result
#: to print but the file's name). The ERF writes its table as .json next to the figure itself.
NO_DEVICE = {"reparam", "export", "info", "audio-stats", "forecast-make-grid", "forecast-make-weather", "dense-scenes",
             "video-mosaic", "points-project"}
NO_JSON = {"reparam", "export", "forecast-make-grid", "forecast-make-weather", "dense-scenes", "video-mosaic",
           "points-project", "erf"}


def _subparser(name: str) -> argparse.ArgumentParser:
    action = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _required_arguments(name: str):
    """Placeholder values for what the command requires (positionals, required options): parse only."""
    argv = []
    for a in _subparser(name)._actions:
        if not a.option_strings and a.nargs not in ("?", "*"):
            argv.append("x")
        elif a.option_strings and a.required:
            argv += [a.option_strings[0], "x"]
    return argv


def test_every_command_is_covered():
    assert len(SUBCOMMANDS) >= 26 and {"train", "eval", "erf", "points-project"} <= set(SUBCOMMANDS)
    assert (NO_DEVICE | NO_JSON) <= set(SUBCOMMANDS)  # the lists above name real commands


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_takes_the_common_flags(name):
    argv = [name, *_required_arguments(name), "--threads", "1", "--quiet"]
    if name not in NO_DEVICE:
        argv += ["--device", "cpu"]
    if name not in NO_JSON:
        argv += ["--json"]
    args = PARSER.parse_args(argv)
    assert args.command == name and args.threads == 1 and args.quiet is True
    if name not in NO_DEVICE:
        assert args.device == "cpu"
    if name not in NO_JSON:
        assert args.json is True
    # one vocabulary: the same help text for the same flag everywhere
    helps = {a.dest: a.help for a in _subparser(name)._actions if a.dest in ("threads", "quiet", "json")}
    reference = {a.dest: a.help for a in _subparser("eval")._actions if a.dest in ("threads", "quiet", "json")}
    assert helps == {k: reference[k] for k in helps}


def test_the_readme_example_eval_with_threads_parses():
    args = PARSER.parse_args(["eval", "runs/digits/last.pth", "--threads", "1"])
    assert args.threads == 1 and args.checkpoint == "runs/digits/last.pth"
    with pytest.raises(SystemExit):
        PARSER.parse_args(["eval", "ckpt.pth", "--threads", "-1"])  # a bad value: the command's usage, exit 2


def test_version_comes_from_the_installed_metadata(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"unireplknet {metadata.version('unireplknet')}"


def test_version_falls_back_to_the_package_version(monkeypatch, capsys):
    import unireplknet

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"unireplknet {unireplknet.__version__}"


def test_quiet_silences_info_logs_and_progress(monkeypatch, capsys, tmp_path):
    import logging

    seen = {}

    def fake_info(args):
        logging.getLogger("unireplknet.cli").info("an INFO line")
        logging.getLogger("unireplknet.cli").warning("a warning")
        seen.update(level=logging.getLogger("unireplknet").getEffectiveLevel())
        return 0

    monkeypatch.setattr(cli, "cmd_info", fake_info)
    assert cli.main(["info", "--quiet"]) == 0
    assert seen["level"] == logging.WARNING
    assert cli.main(["info"]) == 0
    assert seen["level"] == logging.INFO
    args = PARSER.parse_args(["eval", "x", "--quiet"])
    assert args.no_progress is False  # main turns it on; checked through a command that records it
    recorded = {}
    from unireplknet.tasks.image import cli as image_cli

    monkeypatch.setattr(image_cli, "cmd_eval", lambda a: recorded.update(no_progress=a.no_progress) or 0)
    checkpoint = tmp_path / "x.pth"
    checkpoint.write_bytes(b"")  # main checks that the file exists before the (recording) command runs
    assert cli.main(["eval", str(checkpoint), "--quiet"]) == 0 and recorded["no_progress"] is True


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_no_help_line_says_default_twice(name):
    text = " ".join(_subparser(name).format_help().split())
    assert not re.search(r"default:\s*default", text, re.I), name
    for a in _subparser(name)._actions:
        assert (a.help or "").count("[default:") <= 1, (name, a.option_strings, a.help)


def test_help_of_python_m_does_not_import_torch():
    """`python -X importtime -m unireplknet.cli --help`: the import list has no torch, timm or numpy."""
    src = str(Path(cli.__file__).parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    for argv in (["--help"], ["eval", "--help"], ["--version"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "unireplknet.cli", *argv],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert "argparse" in imported or "unireplknet.cli" in imported  # the measurement itself works
        assert not imported & {"torch", "timm", "numpy"}, (argv, sorted(imported & {"torch", "timm", "numpy"}))


TINY = '{"depths":[1,1,1,1],"dims":[8,16,32,64],"kernel_sizes":[[3],[7],[3],[3]]}'
TRAIN_JSON_RUNS = {
    "train": ["--model", "custom", "--model-kwargs", TINY, "--input-size", "32", "--epochs", "1", "--batch-size", "32",
              "--warmup-epochs", "0", "--no-onnx", "--no-tensorboard"],
    "points-train": ["--num-points", "64", "--image-size", "32", "--num-views", "2", "--shapes-per-class", "1",
                     "--epochs", "1", "--batch-size", "4", "--test-rotations", "2", "--model-kwargs", TINY, "--no-onnx"],
    "video-train": ["--num-frames", "4", "--input-size", "16", "--clips-per-class", "1", "--epochs", "1",
                    "--batch-size", "3", "--model-kwargs", TINY, "--no-onnx"],
}


@pytest.mark.parametrize("command", sorted(TRAIN_JSON_RUNS))
def test_train_commands_print_their_results_as_json(command, tmp_path, capsys):
    """stdout is one JSON document whose held-out top-1 is the run's own: the last epoch's evaluation of the same
    weights, as its checkpoint records it."""
    import torch

    out = tmp_path / "run"
    assert cli.main([command, *TRAIN_JSON_RUNS[command], "--output", str(out), "--json", "--quiet",
                     "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    last_epoch = torch.load(out / "last.pth", weights_only=True)["history"][-1]
    final = result["train_structure"] if command == "train" else result["final"]
    assert final["top1"] == pytest.approx(last_epoch["val_top1"], abs=1e-9)


def test_bench_prints_its_table_as_json(tmp_path, capsys):
    assert cli.main(["bench", "--models", "custom", "--model-kwargs", TINY, "--input-size", "32", "--in-chans", "1",
                     "--num-classes", "10", "--batch-sizes", "1,2", "--iters", "1", "--warmup", "0", "--structures",
                     "deploy", "--memory-formats", "nchw", "--device", "cpu", "--threads", "1", "--json",
                     "--csv", str(tmp_path / "b.csv")]) == 0
    result = json.loads(capsys.readouterr().out)  # the "wrote" line went to stderr: stdout is the JSON alone
    assert result["threads"] == 1 and [r["batch"] for r in result["results"]] == [1, 2]
    for r in result["results"]:  # throughput and latency are one measurement
        assert r["images_per_s"] == pytest.approx(r["batch"] / (r["latency_ms"] / 1000), rel=1e-6)
