"""One command-line vocabulary, and what the engine refuses before it trains (issue 13's engine items).

Every ``*-train`` takes the same engine flags (same option strings, destinations, defaults and actions); every
option of every subcommand has help text; building the parser and ``--help`` import neither torch nor timm; and
bad options or output folders end in a one-line error (exit status 2) before any file of the run changes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unireplknet.cli import build_parser, main
from unireplknet.data import write_digits_image_folder
from unireplknet.engine.flags import ENGINE_FLAGS, MODEL_KWARGS_EXAMPLE

TRAIN_COMMANDS = ["train", "audio-train", "forecast-train", "video-train", "points-train", "det-train", "seg-train"]
TINY = dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [7], [3], [3]])
FAST = ["--model", "custom", "--model-kwargs", json.dumps(TINY), "--in-chans", "1", "--input-size", "32",
        "--epochs", "1", "--batch-size", "8", "--workers", "0", "--warmup-epochs", "0", "--no-progress",
        "--no-onnx", "--no-tensorboard"]


def _subparsers(parser: argparse.ArgumentParser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _engine_actions(p: argparse.ArgumentParser):
    return {a.dest: a for a in p._actions if a.dest in ENGINE_FLAGS or a.dest == "threads"}


def test_every_train_command_takes_the_same_engine_flags():
    subs = _subparsers(build_parser())
    reference = _engine_actions(subs["train"])
    assert set(reference) == set(ENGINE_FLAGS) | {"threads"}
    for name in TRAIN_COMMANDS:
        actions = _engine_actions(subs[name])
        assert set(actions) == set(reference), name
        for dest, a in actions.items():
            r = reference[dest]
            # option strings of a dest may be spread over several actions (--tensorboard / --no-tensorboard)
            strings = sorted(s for x in subs[name]._actions if x.dest == dest for s in x.option_strings)
            ref_strings = sorted(s for x in subs["train"]._actions if x.dest == dest for s in x.option_strings)
            assert strings == ref_strings, (name, dest)
            assert (a.default, a.nargs, a.const, a.type, type(a)) == (r.default, r.nargs, r.const, r.type, type(r)), \
                (name, dest)


def test_aliases_are_accepted():
    parser = build_parser()
    assert parser.parse_args(["det-train", "--grad-checkpointing"]).grad_checkpointing is True
    with pytest.raises(SystemExit):  # the older --with-cp is gone: one spelling per option
        parser.parse_args(["det-train", "--with-cp"])
    assert parser.parse_args(["video-train", "--preset", "kinetics"]).recipe == "kinetics"
    assert parser.parse_args(["points-train", "--recipe", "modelnet40"]).recipe == "modelnet40"
    assert parser.parse_args(["forecast-train", "--recipe", "paper"]).preset == "paper"
    assert parser.parse_args(["train", "--resume"]).resume == "auto"
    assert parser.parse_args(["audio-train", "--resume", "x/last.pth"]).resume == "x/last.pth"


def test_every_option_of_every_subcommand_has_help():
    missing = []
    for name, p in _subparsers(build_parser()).items():
        for a in p._actions:
            if a.option_strings and a.dest != "help" and not a.help:
                missing.append(f"{name} {a.option_strings[0]}")
            if not a.option_strings and not a.help:
                missing.append(f"{name} <{a.dest}>")
    assert not missing, missing


def test_eval_and_predict_commands_default_to_device_auto():
    subs = _subparsers(build_parser())
    for name, p in subs.items():
        if name.endswith(("-eval", "-predict")) or name in ("eval", "predict"):
            device = [a for a in p._actions if a.dest == "device"]
            assert device and device[0].default == "auto", name


HELP_WITHOUT_TORCH = """
import importlib.util, sys, types
# Load unireplknet.cli without running the package's __init__ (which imports the model, hence torch): what is
# measured is the command line itself and every module that registers subcommands.
pkg = types.ModuleType("unireplknet")
pkg.__path__ = [sys.argv[1]]
sys.modules["unireplknet"] = pkg
import unireplknet.cli as cli
parser = cli.build_parser()
for argv in (["--help"], *[[name, "--help"] for name in cli._subcommand_names(parser)]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "timm", "numpy", "PIL") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_help_imports_neither_torch_nor_timm(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(HELP_WITHOUT_TORCH))
    src = Path(__import__("unireplknet.cli").cli.__file__).parent
    proc = subprocess.run([sys.executable, str(script), str(src)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]


# ----------------------------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_image_folder(root / "train", split="train", limit_per_class=2)
    write_digits_image_folder(root / "val", split="val", limit_per_class=1)
    return root


def _train(digits, out, *extra):
    return main(["train", "--data", str(digits), "--output", str(out), *FAST, *extra])


def _snapshot(folder: Path):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_finished_run_is_not_overwritten_without_resume_or_overwrite(digits, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(digits, out) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _train(digits, out) == 2
    assert "already holds a run" in capsys.readouterr().err
    for bad in (["--epochs", "0"], ["--epochs", "-3"], ["--eval-every", "0"], ["--input-size", "0"],
                ["--deploy-from-ema"], ["--model-kwargs", '{"depth": [1, 1, 1, 1]}']):
        assert _train(digits, out, "--overwrite", *bad) == 2, bad
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, (bad, err)
    if not torch.cuda.is_available():
        for bad in (["--amp", "fp16"], ["--device", "cuda"]):
            assert _train(digits, out, "--overwrite", *bad) == 2, bad
            assert "GPU" in capsys.readouterr().err
    assert _snapshot(out) == before  # no file of the finished run changed
    assert _train(digits, out, "--resume", "--epochs", "2") == 0
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 2
    assert _train(digits, out, "--overwrite") == 0
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1


def test_error_messages_name_the_problem(digits, tmp_path, capsys):
    cases = {("--epochs", "0"): "--epochs must be at least 1", ("--eval-every", "0"): "--eval-every must be at least 1",
             ("--input-size", "0"): "--input-size must be a positive",
             ("--deploy-from-ema",): "--model-ema is off",
             ("--model-kwargs", '{"depth": [1, 1, 1, 1]}'): "unknown UniRepLKNet argument(s) depth"}
    for argv, message in cases.items():
        assert _train(digits, tmp_path / "r", *argv) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "r" / "last.pth").exists()


def test_a_second_process_on_the_same_output_is_refused_and_a_stale_lock_is_taken_over(digits, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".unireplknet.lock").write_text(str(sleeper.pid))
        assert _train(digits, out) == 2
        assert f"another training process (pid {sleeper.pid})" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: its lock and the temporary files of its killed saves are cleaned up
    (out / ".last.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    assert _train(digits, out) == 0
    assert not list(out.glob(".*.tmp")) and not (out / ".unireplknet.lock").exists()


def test_output_that_is_a_file_or_not_writable_is_refused(digits, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("keep me")
    assert _train(digits, tmp_path / "file") == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "keep me"
    from unireplknet.engine import loop

    monkeypatch.setattr(loop.os, "access", lambda *a, **k: False)  # root ignores permission bits, so fake them
    assert _train(digits, tmp_path / "ro") == 2
    assert "not writable" in capsys.readouterr().err


def test_the_model_kwargs_example_of_the_help_trains(digits, tmp_path):
    argv = [a if a != json.dumps(TINY) else MODEL_KWARGS_EXAMPLE for a in FAST]
    assert main(["train", "--data", str(digits), "--output", str(tmp_path / "r"), *argv]) == 0
    help_text = "".join(_subparsers(build_parser())["train"].format_help().split())
    assert MODEL_KWARGS_EXAMPLE.replace(" ", "") in help_text


def test_audio_training_skips_unreadable_clips_with_the_flag(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_audio import _tone_folder

    data = _tone_folder(tmp_path / "tones")
    (data / "train" / "low" / "broken.wav").write_bytes(b"RIFF not really a wav")
    args = ["audio-train", "--data", str(data), "--model", "custom", "--model-kwargs", json.dumps(TINY),
            "--frames", "32", "--mel-bins", "32", "--epochs", "1", "--batch-size", "3", "--no-progress", "--no-onnx",
            "--norm-stats", "0,1", "--mixup", "0"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 2
    assert "broken.wav" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "b"), "--skip-unreadable"]) == 0
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    assert int(row[header.index("unreadable")]) == 1


def test_every_documented_command_line_parses():
    """Each `unireplknet …` command quoted in README.md and docs/ is accepted by the parser as written (flag renames
    must update the docs). Placeholders (``...``, ``[optional]``) and bare subcommand names are left out."""
    import re
    import shlex

    root = Path(__file__).parent.parent
    parser = build_parser()
    pattern = re.compile(r"(?:^|`|\s)(?:torchrun [^\n`]*?-m unireplknet\.cli|unireplknet) "
                         r"((?:train|eval|reparam|export|predict|bench|info|[a-z]+-[a-z]+)\b[^\n`|]*)", re.M)
    checked = 0
    for doc in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")
        for m in pattern.finditer(text):
            cmd = re.split(r"\s#", m.group(1))[0].strip()
            if "..." in cmd or "[" in cmd or "{..." in cmd or " " not in cmd:
                continue
            try:
                argv = shlex.split(cmd)
            except ValueError:
                continue
            try:
                parser.parse_args(argv)
            except SystemExit as e:
                pytest.fail(f"{doc.name}: `unireplknet {cmd}` does not parse (exit {e.code})")
            checked += 1
    assert checked > 30


def test_cli_option_pages_are_generated_from_the_parser():
    """docs/cli/engine.md and the task pages list exactly the parser's options (scripts/make_cli_docs.py)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from make_cli_docs import render

    for path, text in render().items():
        assert path.read_text() == text, f"{path.name} is out of date: run python scripts/make_cli_docs.py"


def test_the_worked_example_of_docs_architecture_trains_a_new_task(capsys):
    """docs/architecture.md's new task (under 60 lines) trains on the engine, deploy check and ONNX included."""
    import re

    text = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) < 60
    namespace: dict = {}
    exec(compile(code, "docs/architecture.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best["epoch"] in (1, 2) and result.best["val_mse"] >= 0.0
    assert result.deploy_structure["mse"] == pytest.approx(result.train_structure["mse"], rel=1e-4, abs=1e-7)
    assert result.onnx_max_diff is not None and result.onnx_max_diff < 1e-3


def test_a_named_variant_takes_model_kwargs_as_overrides_and_names_bad_keys():
    """`--model unireplknet_a --model-kwargs …` is honoured (the variant's depths and kernels, these widths), and an
    unknown key is a clear error rather than a TypeError deep in the constructor."""
    from unireplknet.factory import build_model

    model = build_model("unireplknet_a", 10, 1, {"dims": [8, 16, 32, 64]})
    assert model.num_features == 64 and [len(s) for s in model.stages] == [2, 2, 6, 2]  # A's depths
    with pytest.raises(ValueError, match="unknown UniRepLKNet argument"):
        build_model("unireplknet_a", 10, 1, {"widths": [8, 16, 32, 64]})


def test_the_installed_command_answers_help_without_torch():
    """What a user runs: the console script itself, package __init__ included (python -X importtime lists imports)."""
    import shutil

    script = shutil.which("unireplknet")
    if script is None:  # the README installs the package, which installs the script
        pytest.fail("the unireplknet console script is not on PATH; install the package as the README says")
    for argv in (["--help"], ["train", "--help"], ["erf", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", script, *argv], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert not imported & {"torch", "timm", "numpy"}, (argv, sorted(imported & {"torch", "timm", "numpy"}))


def test_import_unireplknet_still_registers_the_variants_with_timm():
    code = "import unireplknet, timm; print(timm.is_model('unireplknet_xl'), unireplknet.UniRepLKNet.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "UniRepLKNet"], proc.stderr[-2000:]


def test_any_timm_model_trains_as_a_peer_backbone_and_evaluates_from_its_files(digits, tmp_path, capsys):
    """`train --model resnet10t`: the same task pipeline with timm's ResNet; eval of last.pth and of the deploy file
    rebuilds it from the run's metadata and scores exactly what training reported."""
    out = tmp_path / "peer"
    fast = [a for a in FAST if a not in ("--model", "custom", "--model-kwargs", json.dumps(TINY))]
    assert main(["train", "--data", str(digits), "--output", str(out), *fast, "--model", "resnet10t",
                 "--no-onnx"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["model_config"]["name"] == "resnet10t" and "fc.weight" in ckpt["model"]  # timm's own ResNet
    capsys.readouterr()
    for path in (out / "last.pth", out / "deploy.safetensors"):
        assert main(["eval", str(path), "--data", str(digits), "--json", "--no-progress"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["top1"] == pytest.approx(summary["train_structure"]["top1"], abs=1e-9), path
    assert main(["train", "--data", str(digits), "--output", str(tmp_path / "bad"), *fast, "--model", "resnet10t",
                 "--model-kwargs", '{"no_such_option": 1}', "--no-onnx"]) == 2
    assert "--model resnet10t --model-kwargs" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- what a run prints
#: Runs several commands in one process (one torch import), as the console script would: the logging set up by
#: cli.main writes to the real stderr, and "@@@" lines mark where each command starts.
RUN_COMMANDS = """
import json, sys
from unireplknet.cli import main
for argv in json.loads(sys.argv[1]):
    print("@@@", argv[0], file=sys.stderr, flush=True)
    print("@@@ rc", main(argv), file=sys.stderr, flush=True)
"""


def _terminal_lines(raw: bytes):
    """What a terminal shows of ``raw``: per line, the text after the last carriage return (a progress bar
    redraws itself with \\r, and one that clears itself leaves spaces)."""
    text = raw.decode("utf-8", "replace")
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def test_every_train_command_reports_each_epoch_once_and_writes_ordinary_files(digits, tmp_path):
    """Two epochs of every ``*-train`` (progress bars on, as by default) show two epoch lines per command, not a
    progress bar, a log line and a printed line each (issue 24, point 8a); and every file a run writes has the
    permissions ``open()`` gives a new file here, not mkstemp's private 0600 (point 10b)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_audio import _tone_folder
    from test_detection_train import DET_HEADS, SEG_HEADS

    tiny = json.dumps(TINY)
    two = ["--epochs", "2", "--model-kwargs", tiny, "--no-tensorboard", "--threads", "1"]
    scenes = ["--batch-size", "2", "--scenes-train", "2", "--scenes-val", "2", "--no-onnx"]
    commands = [
        # with the ONNX export, so that model.onnx is among the files checked
        ["train", "--data", str(digits), "--model", "custom", "--in-chans", "1", "--input-size", "32",
         "--batch-size", "8", "--warmup-epochs", "0", "--workers", "0"],
        ["audio-train", "--data", str(_tone_folder(tmp_path / "tones")), "--model", "custom", "--frames", "32",
         "--mel-bins", "32", "--batch-size", "3", "--norm-stats", "0,1", "--mixup", "0", "--no-onnx"],
        ["forecast-train", "--seq-len", "24", "--label-len", "12", "--pred-len", "8", "--d-model", "96",
         "--train-stride", "16", "--no-onnx"],
        ["video-train", "--num-frames", "4", "--input-size", "16", "--clips-per-class", "1", "--batch-size", "3",
         "--no-onnx"],
        ["points-train", "--num-points", "64", "--image-size", "32", "--num-views", "2", "--shapes-per-class", "1",
         "--batch-size", "4", "--test-rotations", "2", "--no-onnx"],
        ["det-train", "--head-kwargs", DET_HEADS, *scenes],
        ["seg-train", "--head-kwargs", SEG_HEADS, *scenes],
    ]
    argv = [c + two + ["--output", str(tmp_path / c[0])] for c in commands]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", RUN_COMMANDS, json.dumps(argv)], capture_output=True, timeout=900,
                          env=env)
    lines = _terminal_lines(proc.stderr)
    assert proc.returncode == 0, "\n".join(lines[-40:])
    starts = [i for i, line in enumerate(lines) if line.startswith("@@@ ") and not line.startswith("@@@ rc")]
    assert len(starts) == len(commands)
    for begin, end, command in zip(starts, starts[1:] + [len(lines)], commands):
        shown = lines[begin:end]
        assert f"@@@ rc 0" in shown, (command[0], shown[-10:])
        epoch_lines = [line for line in shown if line.lstrip().lower().startswith("epoch")]
        assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"], (command[0], epoch_lines)

    probe = tmp_path / "probe.txt"
    with open(probe, "w"):
        pass
    expected = probe.stat().st_mode & 0o777
    files = [p for c in commands for p in (tmp_path / c[0]).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"last.pth", "best.pth", "deploy.safetensors", "model.onnx", "metrics.csv"}
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != expected}
    assert not wrong, f"expected {oct(expected)}: {wrong}"
