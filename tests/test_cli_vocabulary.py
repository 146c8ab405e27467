"""One command line (issue 24, points 9 and 10): every subcommand takes the common flags, ``--version`` answers,
``--help`` stays free of torch, and no help line says "default:" twice."""
from __future__ import annotations

import argparse
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
NO_DEVICE = {"reparam", "export", "info", "audio-stats", "forecast-make-grid", "dense-scenes", "video-mosaic",
             "points-project"}
NO_JSON = {"reparam", "export", "forecast-make-grid", "dense-scenes", "video-mosaic", "points-project", "erf"}


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


def test_quiet_silences_info_logs_and_progress(monkeypatch, capsys):
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
    monkeypatch.setattr(cli, "cmd_eval", lambda a: recorded.update(no_progress=a.no_progress) or 0)
    assert cli.main(["eval", "x", "--quiet"]) == 0 and recorded["no_progress"] is True


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
