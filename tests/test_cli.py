"""Every `unireplknet` subcommand on small data, and the bad inputs each must explain."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unireplknet.cli import main
from unireplknet.data import write_digits_image_folder

TINY = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "kernel_sizes": [[13], [13], [3], [3]]}
TRAIN_ARGS = ["--model", "custom", "--model-kwargs", json.dumps(TINY), "--in-chans", "1", "--input-size", "32",
              "--epochs", "1", "--batch-size", "8", "--workers", "0", "--warmup-epochs", "0", "--no-progress"]


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_image_folder(root / "train", split="train", limit_per_class=4)
    write_digits_image_folder(root / "val", split="val", limit_per_class=2)
    return root


@pytest.fixture(scope="module")
def trained_run(digits_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "--data", str(digits_tree), "--output", str(out)] + TRAIN_ARGS)
    assert code == 0
    return out, stdout.getvalue()


def test_train_writes_run_and_prints_summary(trained_run):
    out, printed = trained_run
    assert "training structure" in printed and "deploy structure" in printed
    assert "deploy.safetensors" in printed and "speed-up" in printed
    for name in ("last.pth", "deploy.safetensors", "metrics.csv", "summary.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["deploy_structure"]["top1"] == pytest.approx(summary["train_structure"]["top1"], abs=5.0 + 1e-9)
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_top1", "val_top5", "val_loss", "lr"} <= set(header)


def test_eval_matches_training_summary(trained_run, digits_tree, capsys):
    out, _ = trained_run
    summary = json.loads((out / "summary.json").read_text())
    for ckpt in ("last.pth", "deploy.safetensors"):
        assert main(["eval", str(out / ckpt), "--data", str(digits_tree), "--json", "--no-progress"]) == 0
        m = json.loads(capsys.readouterr().out)
        assert m["images"] == 20
        assert m["top1"] == pytest.approx(summary["train_structure"]["top1"], abs=1e-6)
        assert m["loss"] == pytest.approx(summary["train_structure"]["loss"], rel=1e-4)
        assert m["input_size"] == [1, 32, 32]


def test_eval_counts_corrupt_images(trained_run, digits_tree, tmp_path, capsys):
    import shutil

    out, _ = trained_run
    data = tmp_path / "val"
    shutil.copytree(digits_tree / "val", data)
    (data / "3" / "broken.png").write_bytes(b"not an image at all")
    assert main(["eval", str(out / "deploy.safetensors"), "--data", str(data), "--json", "--no-progress"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["images"] == 20 and m["unreadable"] == 1


def test_reparam_writes_equivalent_deploy_file(trained_run, tmp_path, capsys):
    out, _ = trained_run
    dst = tmp_path / "fused.safetensors"
    assert main(["reparam", str(out / "last.pth"), "-o", str(dst)]) == 0
    assert "max |output difference|" in capsys.readouterr().out
    from unireplknet.checkpoint import load_model

    train_model, deploy_model = load_model(out / "last.pth"), load_model(dst)
    assert deploy_model.deploy and not train_model.deploy
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(deploy_model(x), train_model(x), rtol=1e-4, atol=1e-4)
    # deploy checkpoints have nothing left to fuse
    assert main(["reparam", str(dst)]) == 2
    assert "already in the deploy" in capsys.readouterr().err


def test_export_onnx_dynamic_batch(trained_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out, _ = trained_run
    assert main(["export", str(out / "last.pth"), "-o", str(tmp_path / "m")]) == 0
    assert "dynamic batch" in capsys.readouterr().out
    from unireplknet.checkpoint import load_model

    model = load_model(out / "deploy.safetensors")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 32, 32)
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-3, atol=1e-4)


def test_predict_names_classes(trained_run, digits_tree, tmp_path, capsys):
    out, _ = trained_run
    images = sorted((digits_tree / "val" / "7").glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    code = main(["predict", str(out / "deploy.safetensors"), *map(str, images), str(broken), "--top-k", "3", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "cannot read image" in captured.err
    results = json.loads(captured.out)
    assert [r["image"] for r in results] == [str(p) for p in images]
    from unireplknet.checkpoint import load_model
    from unireplknet.data.build import eval_transform

    model = load_model(out / "deploy.safetensors")
    from unireplknet.engine import read_run_metadata

    # the transform recorded with the run (a folder run: resize 32/0.875, centre crop, bicubic, mean/std 0.5)
    dc = read_run_metadata(out / "deploy.safetensors")["data_config"]
    assert dc["input_size"] == [1, 32, 32] and dc["crop_pct"] == 0.875
    t = eval_transform(dc)
    for r, path in zip(results, images):
        assert len(r["top_k"]) == 3 and all(p["label"] in [str(d) for d in range(10)] for p in r["top_k"])
        with torch.no_grad():
            probs = model(t(Image.open(path).convert("L"))[None]).softmax(-1)[0]
        assert r["top_k"][0]["label"] == str(int(probs.argmax()))
        assert r["top_k"][0]["probability"] == pytest.approx(float(probs.max()), rel=1e-4)


def test_predict_imagenet_class_names(tmp_path, capsys):
    from unireplknet import UniRepLKNet
    from unireplknet.checkpoint import save_model

    torch.manual_seed(0)
    model = UniRepLKNet(num_classes=1000, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                        kernel_sizes=((3,), (3,), (3,), (3,)))
    save_model(model, tmp_path / "in1k.safetensors")
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(img)
    assert main(["predict", str(tmp_path / "in1k.safetensors"), str(img), "--input-size", "32", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top_k"][0]
    from timm.data import ImageNetInfo

    assert top["label"] == ImageNetInfo().index_to_description(top["index"])


def test_bench_table(capsys, tmp_path):
    code = main(["bench", "--models", "custom", "--model-kwargs", json.dumps(TINY), "--input-size", "32",
                 "--batch-sizes", "1,2", "--iters", "2", "--warmup", "1", "--csv", str(tmp_path / "b.csv")])
    assert code == 0
    table = capsys.readouterr().out
    assert "images/s" in table
    import csv

    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert len(rows) == 2 * 2 * 2  # structures x memory formats x batch sizes
    assert {r["structure"] for r in rows} == {"train", "deploy"}
    assert all(float(r["latency_ms"]) > 0 for r in rows)


def test_info_lists_variants(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("unireplknet_a", "unireplknet_t", "unireplknet_xl"):
        assert name in out
    assert "13" in out and "in1k" in out


# ----------------------------------------------------------------------------------------------- bad input
def _err(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_missing_data_folder(tmp_path, capsys):
    code, err = _err(["train", "--data", str(tmp_path / "nope")] + TRAIN_ARGS, capsys)
    assert code == 2 and "does not exist" in err


def test_empty_data_folder(tmp_path, capsys):
    code, err = _err(["train", "--data", str(tmp_path)] + TRAIN_ARGS, capsys)
    assert code == 2 and "is empty" in err


def test_folder_without_class_subfolders(tmp_path, capsys):
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"{i}.png")
    code, err = _err(["train", "--data", str(tmp_path)] + TRAIN_ARGS, capsys)
    assert code == 2 and "no class sub-folders" in err


def test_unknown_variant(digits_tree, capsys):
    code, err = _err(["train", "--data", str(digits_tree), "--model", "unireplknet_zz", "--epochs", "1"], capsys)
    assert code == 2 and "unknown model 'unireplknet_zz'" in err and "unireplknet_a" in err


def test_checkpoint_that_does_not_fit(trained_run, digits_tree, tmp_path, capsys):
    out, _ = trained_run
    other = dict(TINY, dims=[16, 32, 64, 128])
    args = ["train", "--data", str(digits_tree), "--checkpoint", str(out / "last.pth"),
            "--output", str(tmp_path / "o")] + TRAIN_ARGS
    args[args.index("--model-kwargs") + 1] = json.dumps(other)
    code, err = _err(args, capsys)
    assert code == 2 and "last.pth" in err and ("shape" in err or "mismatch" in err.lower())


def test_corrupt_checkpoint_file(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    code, err = _err(["eval", str(bad), "--no-progress"], capsys)
    assert code == 2 and "bad.pth" in err


def test_eval_needs_data_for_folder_models(trained_run, capsys):
    out, _ = trained_run
    code, err = _err(["eval", str(out / "deploy.safetensors"), "--no-progress"], capsys)
    assert code == 2 and "--data is needed" in err


@pytest.mark.slow
def test_default_digits_run_reaches_95_percent(tmp_path, capsys):
    """The README's first command: `unireplknet train` on the embedded digits (a few minutes on 2 cores)."""
    assert main(["train", "--output", str(tmp_path / "digits"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "digits" / "summary.json").read_text())
    assert summary["train_structure"]["top1"] >= 95.0
    assert summary["deploy_structure"]["top1"] == pytest.approx(summary["train_structure"]["top1"], abs=0.3)
    assert (tmp_path / "digits" / "deploy.safetensors").exists()
