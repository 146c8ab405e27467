"""Issue 29 (items 1, 2, 5, 7, 8, 9): the write policy, resume identity, inputs that are no regular file,
untrusted checkpoint fields, numeric flag ranges and small refusals — one test per class of failure.

The inputs come from ``write_policy_cases`` in scripts/make_hostile_corpus.py (next to the first corpus).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_repo_script
from unireplknet.cli import main


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    script = load_repo_script("scripts/make_hostile_corpus.py")
    root = tmp_path_factory.mktemp("hostile29")
    corpus = script.make_corpus(root / "corpus")
    return dict(corpus, **script.write_policy_cases(root / "cases", corpus))


def _run(argv, env=None, monkeypatch=None):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _error_line(err: str, command: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith(f"unireplknet {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------ 1: the write policy
def test_no_command_writes_through_a_link_or_over_a_file_it_did_not_create(cases, tmp_path):
    outside = cases["outside"]
    before = _digest(outside)
    dataset_before = {p.name: _digest(p) for p in cases["dataset"].iterdir()}
    ckpt = tmp_path / "last.pth"
    ckpt.write_bytes(cases["good_train_pth"].read_bytes())
    refused = [
        ["video-mosaic", "-o", cases["link_png"]],
        ["points-project", "-o", cases["link_png"]],
        ["bench", "--csv", cases["link_csv"], "--iters", "1"],
        ["bench", "--csv", ckpt, "--iters", "1"],  # a training checkpoint is no CSV to replace
        ["dense-scenes", cases["dataset"], "--num-train", "1", "--num-val", "1"],
        ["forecast-make-grid", cases["dataset"], "--stations", "2", "--days", "3"],
        ["forecast-make-weather", cases["dataset"], "--days", "3"],
    ]
    for argv in refused:
        code, _, err = _run(argv)
        line = _error_line(err, argv[0])
        assert code == 2 and ("--overwrite" in line), (argv, line)
    assert _digest(outside) == before
    assert {p.name: _digest(p) for p in cases["dataset"].iterdir()} == dataset_before
    assert _digest(ckpt) == _digest(cases["good_train_pth"])
    # --overwrite replaces the link itself (atomically); the file it pointed to is still never written
    link = tmp_path / "mosaic.png"
    link.symlink_to(outside)
    assert _run(["video-mosaic", "-o", link, "--overwrite"])[0] == 0
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG" and _digest(outside) == before


def test_a_run_folder_is_never_written_through_a_link_nor_replaced_by_another_runs_resume(tmp_path):
    from unireplknet.engine.loop import RunFolderError, prepare_output

    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for run in (run_a, run_b):
        run.mkdir()
        (run / "last.pth").write_bytes(b"weights of " + run.name.encode())
    (run_b / "summary.json").symlink_to(outside)
    with pytest.raises(OSError, match="summary.json is a symbolic link"):
        prepare_output(run_b, "auto", False)
    (run_b / "summary.json").unlink()
    with pytest.raises(RunFolderError, match="belongs to another run folder.*--overwrite"):
        prepare_output(run_b, str(run_a / "last.pth"), False)
    assert (run_b / "last.pth").read_bytes() == b"weights of b" and outside.read_text() == "{}"
    prepare_output(run_a, str(run_a / "last.pth"), False)  # its own folder: resumes


# ------------------------------------------------------------------------------------------ 2: resume identity
def test_resume_refuses_what_defines_another_run(tmp_path):
    from unireplknet.engine.checkpointing import check_resume_identity, data_fingerprint
    from unireplknet.data.folder import SafeImageFolder

    def tree(name, classes, per_class):
        root = tmp_path / name
        for c in classes:
            (root / c).mkdir(parents=True)
            for i in range(per_class):
                from PIL import Image
                Image.new("L", (4, 4), 40 * i).save(root / c / f"{i}.png")
        return SafeImageFolder(root)

    a, moved, more = tree("a", ["cat", "dog"], 2), tree("moved/a", ["cat", "dog"], 2), tree("c", ["cat", "dog"], 3)
    assert data_fingerprint(a) == data_fingerprint(moved)  # the same files elsewhere: the same run
    assert data_fingerprint(a) != data_fingerprint(more)
    stored = dict(model_config={"model": "custom", "num_classes": 2}, class_names=["cat", "dog"],
                  data_config={"input_size": [3, 32, 32], "crop_pct": 1.0}, data_fingerprint=data_fingerprint(a))
    check_resume_identity(stored, dict(stored), "last.pth")  # the same run resumes
    for field, given, shown in (("class_names", ["ant", "bee"], "['ant', 'bee']"),
                                ("data_config", {"input_size": [3, 64, 64], "crop_pct": 1.0}, "[3, 64, 64]"),
                                ("data_fingerprint", data_fingerprint(more), data_fingerprint(more)),
                                ("model_config", {"model": "unireplknet_a", "num_classes": 2}, "unireplknet_a")):
        with pytest.raises(ValueError) as e:
            check_resume_identity(stored, dict(stored, **{field: given}), "last.pth")
        message = str(e.value)
        assert field in message and shown in message and "new run" in message, message


# ------------------------------------------------------------------------------------------ 5: not regular files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_inputs_that_are_no_regular_file_are_named_not_read(cases, tmp_path):
    from unireplknet.checkpoint import read_state_dict
    from unireplknet.data.audio.files import load_audio
    from unireplknet.data.folder import open_image
    from unireplknet.data.pointcloud.modelnet import read_points
    from unireplknet.data.timeseries.series import load_csv_series

    fifo = cases["fifo_png"]
    with _deadline(20):
        code, _, err = _run(["predict", cases["good_train_pth"], fifo])
        assert code == 2 and "not a file but a FIFO" in _error_line(err, "predict")
        code, _, err = _run(["reparam", cases["fifo_pth"], "-o", tmp_path / "x.safetensors"])
        assert code == 2 and "FIFO" in _error_line(err, "reparam")
        for read in (read_state_dict, open_image, load_audio, read_points, load_csv_series):
            with pytest.raises(Exception, match="FIFO"):
                read(fifo)
        with pytest.raises(OSError, match="character device"):
            open_image("/dev/zero")


# ------------------------------------------------------------------------------------------ 7: untrusted fields
def test_untrusted_checkpoint_fields_are_refused_by_name(cases):
    for name, field in (("names_number_pth", "class_names"), ("names_short_pth", "class_names"),
                        ("data_config_list_pth", "data_config"), ("overlay_pth", "pretrained_cfg_overlay"),
                        ("int8_pth", "int8")):
        code, out, err = _run(["predict", cases[name], cases["png8"]])
        assert code == 2 and field in _error_line(err, "predict") and "%" not in out, (name, err)


def test_model_config_and_tensor_ranks_are_checked_against_the_weights(cases):
    # the tensors are the TINY custom network with a 3-class head on grey input; each file names something else
    expected = {"stem_1d_pth": ("downsample_layers.0.0.weight", "(36,)", "4-D"),
                "other_net_pth": ("model_config.name", "unireplknet_t", "(1, 1, 1, 1)"),
                "other_dims_pth": ("model_config.model_kwargs.dims", "(16, 32, 64, 128)", "(8, 16, 32, 64)"),
                "config_missing_pth": ("model_config", "in_chans")}
    for name, words in expected.items():
        for argv in (["predict", cases[name], cases["png8"]], ["reparam", cases[name], "-o", cases[name].with_suffix(".x")]):
            code, out, err = _run(argv)
            line = _error_line(err, argv[0])
            assert code == 2 and all(w in line for w in words) and "%" not in out, (name, line)
    # the same fields, when they agree with the tensors, load (the check compares, it does not just refuse)
    from unireplknet.loading import load_model

    good = dict(name="custom", model_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}, num_classes=3,
                in_chans=1)
    assert load_model(cases["good_train_pth"], model_config=good).head.out_features == 3


# ------------------------------------------------------------------------------------------ 8: flag ranges
@pytest.mark.parametrize("argv", [
    ["train", "--drop-path", "5"], ["train", "--smoothing", "2"], ["train", "--clip-grad", "-1"],
    ["train", "--layer-decay", "-0.5"], ["train", "--val-split", "-0.5"], ["train", "--lr", "nan"],
    ["predict", "CKPT", "IMG", "--crop-pct", "0"], ["predict", "CKPT", "IMG", "--threads", "-1"],
    ["predict", "CKPT", "IMG", "--interpolation", "sideways"], ["export", "CKPT", "--opset", "1"],
])
def test_numbers_and_choices_out_of_range_are_usage_errors(cases, tmp_path, argv):
    argv = [{"CKPT": cases["good_train_pth"], "IMG": cases["png8"]}.get(a, a) for a in argv]
    flag = next(a for a in argv if str(a).startswith("--"))
    code, out, err = _run(argv + (["-o", tmp_path / "m"] if argv[0] == "export" else []))
    assert code == 2 and flag.lstrip("-").split("-")[0] in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_export_writes_the_opset_it_was_asked_for(cases, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    code, _, err = _run(["export", cases["good_train_pth"], "--opset", "11", "-o", tmp_path / "m"])
    assert code == 0, err
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [11]


# ------------------------------------------------------------------------------------------ 9: small ones
def test_small_refusals_and_the_exif_orientation(cases, monkeypatch):
    from unireplknet.data.coco import DetectionDataError, _read_coco_json
    from unireplknet.data.folder import open_image

    # a sideways phone photo reads upright (white band on top, like the upright original)
    upright = np.asarray(open_image(cases["exif_upright_png"], "L"), np.int16)
    read = np.asarray(open_image(cases["exif_jpg"], "L"), np.int16)
    assert read.shape == upright.shape and np.abs(read - upright).max() < 16
    # --ema on a checkpoint without EMA weights
    code, _, err = _run(["predict", cases["good_train_pth"], cases["png8"], "--ema"])
    assert code == 2 and "no EMA weights" in _error_line(err, "predict")
    # malformed environment variables
    for name, value in (("UNIREPLKNET_FUSED", "maybe"), ("RANK", "zero")):
        monkeypatch.setenv(name, value)
        code, _, err = _run(["predict", cases["good_train_pth"], cases["png8"]])
        line = _error_line(err, "predict")
        assert code == 2 and name in line and value in line, line
        monkeypatch.delenv(name)
    # COCO annotations that are a number, or a category without an id
    for name, what in (("coco_number_json", "annotations[0] is a int"), ("coco_no_id_json", "categories[0] has no id")):
        with pytest.raises(DetectionDataError, match=what.replace("[", r"\[").replace("]", r"\]")):
            _read_coco_json(cases[name])
