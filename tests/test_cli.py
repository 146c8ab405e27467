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
    # re-parameterization is exact: the deploy structure scores what the training structure scores
    assert summary["deploy_structure"]["top1"] == pytest.approx(summary["train_structure"]["top1"], abs=1e-6)
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
    from unireplknet import load_model

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
    from unireplknet import load_model

    model = load_model(out / "deploy.safetensors")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 32, 32)
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-3, atol=1e-4)


def test_export_all_prints_only_its_result_lines(trained_run, tmp_path):
    """`export --format all` as the console runs it (logging to stderr at INFO): the two result lines on stdout
    and nothing else — not the ~60 lines onnxscript logs about its optimisation passes (issue 24, point 8b)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    out, _ = trained_run
    proc = subprocess.run([sys.executable, "-m", "unireplknet.cli", "export", str(out / "last.pth"), "--format", "all",
                           "-o", str(tmp_path / "m")], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line.split(" (")[0] for line in proc.stdout.splitlines()] == [
        f"wrote {tmp_path / 'm.onnx'}", f"wrote {tmp_path / 'm.pt2'}"]
    assert proc.stderr.strip() == ""


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
    from unireplknet import load_model
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
    data = tmp_path / "data"  # not the working directory, where the run's output folder goes
    data.mkdir()
    code, err = _err(["train", "--data", str(data)] + TRAIN_ARGS, capsys)
    assert code == 2 and "is empty" in err


def test_folder_without_class_subfolders(tmp_path, capsys):
    data = tmp_path / "data"  # not the working directory, where the run's output folder goes
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / f"{i}.png")
    code, err = _err(["train", "--data", str(data)] + TRAIN_ARGS, capsys)
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


# ----------------------------------------------------------------------------------------------- bench: plot, runtimes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_bench_plot_writes_an_image(tmp_path, capsys):
    mpl_image = pytest.importorskip("matplotlib.image")
    path = tmp_path / "bench.png"
    code = main(["bench", "--models", "unireplknet_a", "--input-size", "32", "--batch-sizes", "1,2", "--iters", "1",
                 "--warmup", "0", "--memory-formats", "nchw", "--plot", str(path)])
    assert code == 0 and f"wrote {path}" in capsys.readouterr().out
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpl_image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05  # something is drawn on the white canvas


def test_bench_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    code, err = _err(["bench", "--models", "unireplknet_a", "--input-size", "32", "--batch-sizes", "1",
                      "--iters", "1", "--plot", str(tmp_path / "b.png")], capsys)
    assert code == 2 and "pip install 'unireplknet[plot]'" in err
    assert "images/s" not in capsys.readouterr().out  # refused before measuring anything
    assert not (tmp_path / "b.png").exists()


def test_bench_plot_rejects_unknown_image_suffix(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, err = _err(["bench", "--models", "unireplknet_a", "--input-size", "32", "--batch-sizes", "1",
                      "--plot", str(tmp_path / "b.xyz")], capsys)
    assert code == 2 and "b.xyz" in err and ".png" in err


BENCH_TINY = ["bench", "--models", "custom", "--model-kwargs", json.dumps(TINY), "--input-size", "32",
              "--batch-sizes", "1,3", "--iters", "1", "--warmup", "0", "--structures", "deploy",
              "--memory-formats", "nchw"]


@pytest.mark.parametrize("backends", ["eager", "onnxruntime", "openvino"])
def test_bench_times_deploy_model_backends_in_the_same_table(backends, tmp_path, capsys, monkeypatch):
    for b in backends.split(","):
        if b in ("onnxruntime", "openvino"):
            pytest.importorskip(b)
    from unireplknet import deploy

    built = []
    real_deploy_model = deploy.deploy_model

    def spy(model, backend="auto", example_input=None, **kw):
        built.append(backend)
        return real_deploy_model(model, backend, example_input, **kw)

    monkeypatch.setattr(deploy, "deploy_model", spy)
    code = main(BENCH_TINY + ["--backends", backends, "--csv", str(tmp_path / "b.csv")])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("model"))
    body = [line.split() for line in table[header + 2:] if line.startswith("custom")]
    assert [r[1] for r in body] == ["torch", "torch"] + [f"deploy:{backends}"] * 2
    assert built == [backends]  # one deployment, timed at every batch size
    import csv

    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert [(r["runtime"], r["structure"], int(r["batch"])) for r in rows] == [
        ("torch", "deploy", 1), ("torch", "deploy", 3), (f"deploy:{backends}", "deploy", 1),
        (f"deploy:{backends}", "deploy", 3)]
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    for r in rows:  # images/s is the batch over the median latency
        assert float(r["images_per_s"]) == pytest.approx(int(r["batch"]) / (float(r["latency_ms"]) / 1000), rel=1e-6)


def test_bench_backend_errors(monkeypatch, capsys):
    import sys

    code, err = _err(BENCH_TINY + ["--backends", "tensorrt"], capsys)
    assert code == 2 and "'tensorrt'" in err and "onnxruntime" in err
    monkeypatch.setitem(sys.modules, "openvino", None)  # a machine without OpenVINO
    code, err = _err(BENCH_TINY + ["--backends", "eager,openvino"], capsys)
    assert code == 2 and 'pip install "unireplknet[openvino]"' in err
    assert "images/s" not in capsys.readouterr().out  # refused before measuring anything


# ----------------------------------------------------------------------------------------------- train: TensorBoard
def _with(args, **replace):
    """TRAIN_ARGS with some option values replaced, e.g. _with(TRAIN_ARGS, epochs="2")."""
    args = list(args)
    for k, v in replace.items():
        args[args.index("--" + k.replace("_", "-")) + 1] = v
    return args


def test_train_tensorboard_scalars_equal_the_csv(digits_tree, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--data", str(digits_tree), "--output", str(out), "--tensorboard", "--no-onnx"]
                + _with(TRAIN_ARGS, epochs="2")) == 0
    import csv

    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file under the run folder"
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    columns = [c for c in rows[0] if c != "epoch"]
    assert sorted(acc.Tags()["scalars"]) == sorted(columns)
    assert {"train_loss", "lr", "val_loss", "val_top1", "val_top5"} <= set(columns)
    for c in columns:
        scalars = acc.Scalars(c)
        assert [s.step for s in scalars] == [1, 2], c
        for s, r in zip(scalars, rows):  # the CSV keeps 6 significant digits, TensorBoard float32
            assert s.value == pytest.approx(float(r[c]), rel=1e-5, abs=1e-12), c


def test_train_tensorboard_required_but_missing_names_the_extra(digits_tree, tmp_path, monkeypatch, capsys):
    import sys

    # a machine without tensorboard (torch.utils.tensorboard is what imports it)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, err = _err(["train", "--data", str(digits_tree), "--output", str(tmp_path / "r"), "--tensorboard"]
                     + TRAIN_ARGS, capsys)
    assert code == 2 and "pip install 'unireplknet[tensorboard]'" in err
    assert not (tmp_path / "r" / "last.pth").exists()
    # without --tensorboard the same run goes on, with the CSV only
    assert main(["train", "--data", str(digits_tree), "--output", str(tmp_path / "r"), "--no-onnx"] + TRAIN_ARGS) == 0
    assert (tmp_path / "r" / "metrics.csv").exists() and not (tmp_path / "r" / "tensorboard").exists()


# ----------------------------------------------------------------------------------------------- train: fine-tuning
FINETUNE_ARGS = ["--input-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--warmup-epochs", "0",
                 "--no-progress", "--no-onnx", "--no-tensorboard"]


def _spy_build_model(monkeypatch):
    """Record what train() builds: the weights right after creation and the RNG state the head was drawn from."""
    from unireplknet.tasks.image import task as trainer

    seen = {}
    real = trainer.build_model

    def spy(*args, **kwargs):
        seen.update(rng=torch.get_rng_state(), args=args, kwargs=kwargs, real=real)
        model = real(*args, **kwargs)
        seen["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(trainer, "build_model", spy)
    return seen


def test_train_pretrained_finetunes_official_weights_with_a_new_head(reference, digits_tree, tmp_path, monkeypatch,
                                                                      capsys):
    """--pretrained with the Hugging Face download replaced by the reference checkpoint (the hub is offline here):
    the backbone starts from the official tensors (the RGB stem summed to one grey channel, timm's rule), the
    1000-class head is replaced by a freshly initialised 10-class one, and a 1-epoch run completes."""
    import timm.models._builder as builder

    asked = []

    def fake_hub(repo_id, filename=None, **kwargs):
        asked.append((repo_id, filename))
        return {"model": dict(reference["train"])}  # an official pickle keeps its tensors under `model`

    monkeypatch.setattr(builder, "load_state_dict_from_hf", fake_hub)
    seen = _spy_build_model(monkeypatch)
    from unireplknet.engine import benchmark

    # the end-of-run speed-up timing of variant A is not under test here and would double the test's time
    monkeypatch.setattr(benchmark, "compare_latency", lambda models, x, **kw: [1.0] * len(models))
    out = tmp_path / "ft"
    code = main(["train", "--data", str(digits_tree), "--output", str(out), "--model", "unireplknet_a",
                 "--pretrained", "--in-chans", "1"] + FINETUNE_ARGS)
    assert code == 0
    assert asked == [("DingXiaoH/UniRepLKNet", "unireplknet_a_in1k_224_acc77.03.pth")]
    start, ref = seen["state"], reference["train"]
    assert set(start) == set(ref)
    for k, v in ref.items():
        if k.startswith("head."):
            continue
        want = v.sum(dim=1, keepdim=True) if k == "downsample_layers.0.0.weight" else v
        assert torch.equal(start[k], want), k
    assert start["head.weight"].shape == (10, 320) and start["head.bias"].shape == (10,)
    # the head is the model's own initialisation: rebuild from the same random state without pretrained weights
    torch.set_rng_state(seen["rng"])
    args = list(seen["args"])
    args[4] = False  # pretrained
    fresh = seen["real"](*args, **seen["kwargs"]).state_dict()
    assert torch.equal(start["head.weight"], fresh["head.weight"]) and torch.equal(start["head.bias"], fresh["head.bias"])
    assert not torch.equal(start["stages.2.0.pwconv1.1.weight"], fresh["stages.2.0.pwconv1.1.weight"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["train_structure"]["images"] == 20
    from unireplknet import load_model

    deployed = load_model(out / "deploy.safetensors")
    assert deployed.num_classes == 10 and deployed.in_chans == 1 and deployed.dims == (40, 80, 160, 320)
    # resuming a --pretrained run does not fetch the weights again (they come from last.pth; the run is complete,
    # so the resume goes straight to the end-of-run evaluation)
    assert main(["train", "--data", str(digits_tree), "--output", str(out), "--model", "unireplknet_a",
                 "--pretrained", "--in-chans", "1", "--resume"] + FINETUNE_ARGS) == 0
    assert len(asked) == 1 and seen["args"][4] is False


@pytest.mark.parametrize("layout", ["train", "deploy"])
def test_train_checkpoint_of_another_class_count(layout, digits_tree, tmp_path, monkeypatch, capsys):
    """--checkpoint OWN.safetensors with a 5-class head on the 10-class digits: everything but the head loads,
    the head is the new model's own 10-class initialisation. A deploy-layout file fine-tunes the deploy structure."""
    from conftest import randomize_bn_and_scales
    from unireplknet import UniRepLKNet, reparameterize
    from unireplknet.checkpoint import save_model

    torch.manual_seed(1)
    kwargs = {**TINY, "kernel_sizes": tuple(map(tuple, TINY["kernel_sizes"]))}
    own = randomize_bn_and_scales(UniRepLKNet(in_chans=1, num_classes=5, **kwargs), seed=1)
    if layout == "deploy":
        reparameterize(own)
    path = save_model(own, tmp_path / "own5.safetensors")
    from unireplknet import checkpoint as ckpt_module

    loaded = {}
    real_load = ckpt_module.load_checkpoint

    def spy(model, checkpoint, **kw):
        head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
        real_load(model, checkpoint, **kw)
        loaded.update(head_before=head_before, state={k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(ckpt_module, "load_checkpoint", spy)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="5-class head does not fit the model's 10 classes"):
        code = main(["train", "--data", str(digits_tree), "--output", str(out), "--checkpoint", str(path)]
                    + TRAIN_ARGS + ["--no-onnx", "--no-tensorboard"])
    assert code == 0
    state, want = loaded["state"], own.state_dict()
    assert set(state) == set(want)
    for k, v in want.items():
        if k.startswith("head."):
            assert state[k].shape[0] == 10 and torch.equal(state[k], loaded["head_before"][k]), k
        else:
            assert torch.equal(state[k], v), k
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert (summary["params_train"] == summary["params_deploy"]) == (layout == "deploy")


def test_train_pretrained_offline_names_the_file_and_the_checkpoint_option(digits_tree, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    code, err = _err(["train", "--data", str(digits_tree), "--output", str(tmp_path / "o"), "--model", "unireplknet_a",
                      "--pretrained"] + FINETUNE_ARGS, capsys)
    assert code == 2
    assert "unireplknet_a_in1k_224_acc77.03.pth" in err and "--checkpoint /path/unireplknet_a_in1k_224_acc77.03.pth" in err


class _Stop(Exception):
    pass


def test_train_checkpoint_official_file_for_grey_images(reference, digits_tree, tmp_path, monkeypatch, capsys):
    """The offline replacement of --pretrained: the official file as --checkpoint, with --in-chans 1, starts from
    the same weights (RGB stem summed, as timm does for --pretrained) and the model's own 10-class head."""
    from unireplknet import checkpoint as ckpt_module

    official = tmp_path / "unireplknet_a_in1k_224_acc77.03.pth"
    torch.save({"model": dict(reference["train"])}, official)
    loaded = {}
    real_load = ckpt_module.load_checkpoint

    def spy(model, checkpoint, **kw):
        head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
        real_load(model, checkpoint, **kw)
        loaded.update(head=head, state=model.state_dict())
        raise _Stop  # the weights are what this test is about; the training itself is tested above

    monkeypatch.setattr(ckpt_module, "load_checkpoint", spy)
    with pytest.raises(_Stop), pytest.warns(UserWarning, match="1000-class head"):
        main(["train", "--data", str(digits_tree), "--output", str(tmp_path / "o"), "--model", "unireplknet_a",
              "--checkpoint", str(official), "--in-chans", "1"] + FINETUNE_ARGS)
    state = loaded["state"]
    for k, v in reference["train"].items():
        if k.startswith("head."):
            assert torch.equal(state[k], loaded["head"][k]) and state[k].shape[0] == 10, k
        else:
            want = v.sum(dim=1, keepdim=True) if k == "downsample_layers.0.0.weight" else v
            assert torch.equal(state[k], want), k
    # a file that does not fit still names itself, also when its stem was adapted
    monkeypatch.setattr(ckpt_module, "load_checkpoint", real_load)
    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in reference["train"].items() if k != "stages.3.1.gamma"}, broken)
    code, err = _err(["train", "--data", str(digits_tree), "--output", str(tmp_path / "o"), "--model", "unireplknet_a",
                      "--checkpoint", str(broken), "--in-chans", "1"] + FINETUNE_ARGS, capsys)
    assert code == 2 and str(broken) in err and "1 missing (stages.3.1.gamma)" in err


@pytest.mark.parametrize("text, message", [
    ("{depths: 1}", "not valid JSON"),
    ("[1, 1, 1, 1]", "expected a JSON object like"),
])
def test_model_kwargs_that_is_not_a_json_object_is_a_usage_error(capsys, text, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--models", "custom", "--model-kwargs", text])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command, dest, default", [
    (["video-train"], "eval_split", None), (["video-eval", "last.pth"], "eval_split", "val"),
    (["points-train"], "held_out", None), (["points-eval", "last.pth"], "held_out", "val"),
    (["audio-eval", "best.pth"], "split", "test"), (["forecast-eval", "best.pth"], "split", "test")])
def test_every_command_names_its_scored_split_eval_split(command, dest, default):
    """One flag vocabulary: --eval-split everywhere, and only it (the older --held-out and --split are gone)."""
    from unireplknet.cli import build_parser

    parser = build_parser()
    assert getattr(parser.parse_args(command), dest) == default
    flags = [a for a in parser._subparsers._group_actions[0].choices[command[0]]._actions if a.dest == dest][0]
    assert flags.option_strings == ["--eval-split"]
    assert getattr(parser.parse_args([*command, "--eval-split", "test"]), dest) == "test"


def test_a_missing_input_file_is_named_before_torch_is_imported(tmp_path):
    """Every command that reads a checkpoint, clip or cloud says a wrong path at once: exit status 2, the path
    named, and torch never imported (`python -X importtime` lists every import; issue 24, point 10f)."""
    import shutil
    import subprocess
    import sys

    script = shutil.which("unireplknet")
    if script is None:
        pytest.fail("the unireplknet console script is not on PATH; install the package as the README says")
    missing = str(tmp_path / "missing.pth")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    cases = [["eval", missing], ["reparam", missing], ["export", missing], ["predict", missing, str(image)],
             ["det-eval", missing], ["seg-eval", missing], ["audio-eval", missing], ["forecast-eval", missing],
             ["video-eval", missing], ["points-eval", missing], ["audio-predict", missing, str(image)],
             ["train", "--checkpoint", missing], ["points-train", "--resume", missing],
             ["erf", "--model", "unireplknet_a", "--checkpoint", missing],
             ["points-project", missing], ["video-mosaic", missing.replace(".pth", ".mp4")],
             ["eval", str(tmp_path)]]  # a folder where a file belongs
    for argv in cases:
        proc = subprocess.run([sys.executable, "-X", "importtime", script, *argv], capture_output=True, text=True,
                              timeout=120)
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        message = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert proc.returncode == 2, (argv, proc.stderr[-1000:])
        path = argv[1] if argv[0] in ("predict", "audio-predict") else argv[-1]
        assert len(message) == 1 and path in message[0], (argv, message)
        assert ("is not a file" if path == str(tmp_path) else "does not exist") in message[0], message
        assert "torch" not in imported, argv


def test_predict_pretrained_offline_fails_at_once_with_a_command_line_remedy(tmp_path):
    """`predict --model NAME --pretrained` without the network (HF_HUB_OFFLINE=1, empty cache): exit status 2 and
    the remedy on the command line — the file to fetch and `unireplknet predict FILE …` — not Python code
    (issue 24, point 10g)."""
    import os
    import subprocess
    import sys

    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "unireplknet.cli", "predict", "--model", "unireplknet_a",
                           "--pretrained", str(image)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    from unireplknet.zoo import _find_cfg

    filename = _find_cfg("unireplknet_a", None).hf_hub_filename
    assert f"unireplknet predict /path/{filename} {image}" in proc.stderr
    assert "timm.create_model" not in proc.stderr and "Traceback" not in proc.stderr


def test_predict_pretrained_fails_fast_when_the_hub_cannot_be_reached(monkeypatch, tmp_path, capsys):
    """Without HF_HUB_OFFLINE and with an unreachable Hub, one short connection attempt decides: the download
    (timm's loader, with its retries) is never started."""
    import socket

    import huggingface_hub

    from unireplknet import zoo
    from unireplknet.checkpoint import PretrainedWeightsUnavailableError

    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    attempts = []

    def unreachable(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        raise OSError("Network is unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("the download was started")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(zoo, "build_model_with_cfg", no_download)
    with pytest.raises(PretrainedWeightsUnavailableError, match="cannot be reached") as info:
        zoo.check_pretrained_reachable("unireplknet_a")
    filename = zoo._find_cfg("unireplknet_a", None).hf_hub_filename
    assert info.value.filename == filename
    assert attempts == [(("huggingface.co", 443), zoo.HUB_PROBE_TIMEOUT_S)]
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    capsys.readouterr()
    assert main(["predict", "--model", "unireplknet_a", "--pretrained", str(image)]) == 2
    assert f"unireplknet predict /path/{filename} {image}" in capsys.readouterr().err
    assert len(attempts) == 2
