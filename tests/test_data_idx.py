"""IDX folders (MNIST, Fashion-MNIST …): the reader against bytes written by hand, its errors, the small-image
transform, and a training run's split, test-once scoring and resume (issue 26)."""
import contextlib
import gzip
import io
import json
import random
import shutil

import numpy as np
import pytest
import torch

from _idx_files import idx_bytes, write_idx, write_idx_folder
from unireplknet.cli import main
from unireplknet.data import DataError
from unireplknet.data.idx import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, KNOWN_CLASS_NAMES, SmallGreyTransform,
                                  is_idx_folder, load_idx_split, read_idx, resolve_class_names)
from unireplknet.engine import load_training_checkpoint
from unireplknet.tasks.image import TrainConfig, train

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((7,), (5,), (3,), (3,)))
TINY_JSON = json.dumps({k: [list(v) if isinstance(v, tuple) else v for v in vals] if k == "kernel_sizes" else list(vals)
                        for k, vals in TINY.items()})


# ----------------------------------------------------------------------------------------------- reader
@pytest.mark.parametrize("gz", [False, True])
def test_reader_returns_the_bytes_written(tmp_path, gz):
    root, arrays = write_idx_folder(tmp_path / "d", n_train=12, n_test=5, classes=4, gz=gz, side=9)
    for split in ("train", "t10k"):
        got = load_idx_split(root, split)
        want_images, want_labels = arrays[split]
        assert got.images.dtype == np.uint8 and got.images.shape == want_images.shape
        assert np.array_equal(got.images, want_images) and np.array_equal(got.labels, want_labels)
        assert got.images_path.name.endswith(".gz") == gz


def test_reader_header_is_big_endian(tmp_path):
    # 2 images of 1 x 3 pixels: the dims (2, 1, 3) written big-endian must not be read as little-endian
    path = tmp_path / "x-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]))
    assert read_idx(path, IDX_IMAGES_MAGIC).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]


def test_wrong_magic_names_file(tmp_path):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((2, 3, 3), np.uint8), IDX_IMAGES_MAGIC)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte starts with the magic number 0x00000803.*"
                                        r"0x00000801.*not an IDX labels"):
        read_idx(path, IDX_LABELS_MAGIC)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    data = idx_bytes(np.ones((4, 5, 5), np.uint8), IDX_IMAGES_MAGIC)[:-7]
    path = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"holds 93 bytes of data but its header announces 4 x 5 x 5 = 100.*truncated"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((40, 28, 28), np.uint8), IDX_IMAGES_MAGIC))[:-30])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz cannot be read as gzip.*download or copy"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_truncated_header(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.ones((1, 2, 2), np.uint8), IDX_IMAGES_MAGIC)[:10])
    with pytest.raises(DataError, match="shorter than its 16-byte IDX header"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_label_count_differs_from_image_count(tmp_path):
    root, _ = write_idx_folder(tmp_path / "d", n_train=10, n_test=4, gz=False)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), IDX_LABELS_MAGIC)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds 3 labels but .*t10k-images-idx3-ubyte holds "
                                        r"4 images"):
        load_idx_split(root, "t10k")


def test_missing_test_file_is_named(tmp_path):
    root, _ = write_idx_folder(tmp_path / "d", n_train=10, n_test=4)
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    assert is_idx_folder(root)  # the train files make it an IDX folder; the missing one is then named
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz does not exist; an IDX folder holds"):
        load_idx_split(root, "t10k")
    assert not is_idx_folder(tmp_path) and not is_idx_folder(None)


def test_class_names(tmp_path):
    assert resolve_class_names(None, tmp_path / "Fashion-MNIST", 10)[0] == "T-shirt/top"
    assert resolve_class_names(None, tmp_path / "mnist", 10) == [str(i) for i in range(10)]
    assert resolve_class_names("kmnist", tmp_path, 10) == list(KNOWN_CLASS_NAMES["kmnist"])
    assert resolve_class_names("cat, dog", tmp_path, 2) == ["cat", "dog"]
    with pytest.raises(DataError, match=r"gives 10 class names but the labels .* \(3 classes\)"):
        resolve_class_names("fashion-mnist", tmp_path, 3)
    with pytest.raises(DataError, match="names a class twice"):
        resolve_class_names("a,a", tmp_path, 2)


# ----------------------------------------------------------------------------------------------- transform
def test_pad_transform_centres_the_image_unchanged():
    image = torch.randint(0, 256, (28, 28), dtype=torch.uint8)
    mean, std = 0.3, 0.4
    x = SmallGreyTransform(32, mean, std)(image)
    assert x.shape == (1, 32, 32)
    want = (image.double() / 255 - mean) / std
    assert torch.allclose(x[0, 2:30, 2:30].double(), want, atol=1e-6)
    assert torch.allclose(x[0, :2], torch.full((2, 32), -mean / std))  # the canvas is background (pixel 0)


def test_training_transform_is_a_shift_or_flip_of_the_canvas():
    image = torch.randint(1, 256, (28, 28), dtype=torch.uint8)
    plain = SmallGreyTransform(32, 0.0, 1.0)(image)[0]
    torch.manual_seed(0)
    for _ in range(20):
        x = SmallGreyTransform(32, 0.0, 1.0, train=True, crop_padding=4, hflip=0.5)(image)[0]
        padded = torch.nn.functional.pad(plain, (4, 4, 4, 4))
        found = any(torch.equal(x, view[i:i + 32, j:j + 32]) for view in (padded, padded.flip(-1))
                    for i in range(9) for j in range(9))
        assert found


def test_resize_and_too_small_input():
    assert SmallGreyTransform(64, 0.5, 0.5, fit="resize")(torch.zeros(28, 28, dtype=torch.uint8)).shape == (1, 64, 64)
    with pytest.raises(DataError, match="--input-size 24 is smaller .* --fit resize"):
        SmallGreyTransform(24, 0.5, 0.5)


# ----------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    root, arrays = write_idx_folder(tmp_path_factory.mktemp("idx") / "data", n_train=60, n_test=21, classes=3)
    return root, arrays


def _cfg(root, out, **kw):
    base = dict(data=str(root), model="custom", model_kwargs=TINY, epochs=2, batch_size=8, class_names="a,b,c",
                output=str(out), export_onnx=False, progress=False)
    base.update(kw)
    return TrainConfig.with_recipe(**base)


def test_idx_folder_gets_its_recipe(idx_root):
    root, _ = idx_root
    cfg = TrainConfig.with_recipe(data=str(root))
    assert (cfg.model, cfg.in_chans, cfg.input_size, cfg.epochs, cfg.auto_augment, cfg.mixup) == \
        ("unireplknet_a", 1, 32, TrainConfig.RECIPES["fashion-mnist"]["epochs"], "", 0.0)
    quick = TrainConfig.with_recipe("fashion-mnist-quick", data=str(root), epochs=3)
    assert quick.epochs == 3 and not quick.model_ema  # a given option wins over the recipe


def test_split_held_out_of_train_and_test_scored_once_with_best_weights(idx_root, tmp_path):
    root, arrays = idx_root
    r = train(_cfg(root, tmp_path / "run", epochs=2, val_split=0.2))
    from unireplknet.tasks.image.task import ImageClassification

    data = ImageClassification().build_data(_cfg(root, tmp_path / "x", val_split=0.2), seed=0)
    train_idx, val_idx = data.train.indices, data.val.indices
    labels = arrays["train"][1]
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(60))  # a partition of train
    assert np.bincount(labels[val_idx]).tolist() == [4, 4, 4]  # 20% of each class of 20

    # the test score is t10k's, with best.pth's weights: recomputed here from the bytes written
    test = r.extras["test"]
    assert test["images"] == 21 and r.extras["best_epoch"] == r.best_epoch >= 1
    ckpt = load_training_checkpoint(tmp_path / "run" / "best.pth")
    from unireplknet.factory import build_model

    model = build_model("custom", 3, 1, TINY, False).eval()
    model.load_state_dict(ckpt["model"])
    mean, std = ckpt["data_config"]["mean"][0], ckpt["data_config"]["std"][0]
    images = torch.nn.functional.pad(torch.from_numpy(arrays["t10k"][0]).float()[:, None] / 255, (2, 2, 2, 2))
    with torch.no_grad():
        pred = model((images - mean) / std).argmax(1)
    assert test["top1"] == pytest.approx(100 * float((pred == torch.from_numpy(arrays["t10k"][1]).long()).double().mean()))
    assert mean == pytest.approx(arrays["train"][0].mean() / 255)  # normalised by the train split's statistics
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["extras"]["test"]["top1"] == test["top1"]


class _Killed(Exception):
    pass


def test_idx_run_resumes_exactly(idx_root, tmp_path):
    root, _ = idx_root
    kw = dict(model_ema=True, model_ema_decay=0.9, reprob=0.5, drop_path=0.1, export_deploy=False)
    full = train(_cfg(root, tmp_path / "full", **kw))

    def kill(end):
        if end.epoch == 1:
            raise _Killed()

    with pytest.raises(_Killed):
        train(_cfg(root, tmp_path / "resumed", **kw), callbacks=[kill])
    torch.manual_seed(999), random.seed(9), np.random.seed(9)
    resumed = train(_cfg(root, tmp_path / "resumed", resume="auto", **kw))
    a = load_training_checkpoint(tmp_path / "full" / "last.pth")
    b = load_training_checkpoint(tmp_path / "resumed" / "last.pth")
    for part in ("model", "model_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert full.extras["test"] == resumed.extras["test"]


def test_cli_train_json_and_eval_on_the_test_split(idx_root, tmp_path, capsys):
    root, _ = idx_root
    out = tmp_path / "cli"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["train", "--data", str(root), "--recipe", "fashion-mnist-quick", "--model", "custom",
                     "--model-kwargs", TINY_JSON, "--epochs", "1", "--batch-size", "8", "--class-names", "x,y,z",
                     "--no-onnx", "--no-progress", "-o", str(out), "--json"]) == 0
    result = json.loads(printed.getvalue())
    assert result["class_names"] == ["x", "y", "z"] and result["extras"]["test"]["images"] == 21
    capsys.readouterr()
    assert main(["eval", str(out / "best.pth"), "--data", str(root), "--json", "--no-progress"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["images"] == 21 and m["top1"] == pytest.approx(result["extras"]["test"]["top1"])


def test_cli_names_a_bad_idx_folder(idx_root, tmp_path, capsys):
    root, _ = idx_root
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    write_idx(bad / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), IDX_LABELS_MAGIC)
    code = main(["train", "--data", str(bad), "--model", "custom", "--model-kwargs", TINY_JSON, "--epochs", "1",
                 "-o", str(tmp_path / "o")])
    assert code != 0 and "holds 5 labels but" in capsys.readouterr().err


def test_a_gzip_file_is_inflated_only_as_far_as_its_header_announces(tmp_path):
    import gzip
    import tracemalloc

    images = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:  # 7 KB of image, then 64 MB of zeros (~64 KB on disk)
        f.write(idx_bytes(images, IDX_IMAGES_MAGIC))
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        got = read_idx(bomb, IDX_IMAGES_MAGIC)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, images)
    assert peak < 4 << 20  # the 64 MB behind the announced payload were never inflated


def test_a_header_announcing_more_than_the_memory_limit_is_refused_before_reading(tmp_path, monkeypatch):
    from unireplknet.limits import LimitError

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((1, 1, 1), np.uint8), IDX_IMAGES_MAGIC)[:4]
                     + (60000).to_bytes(4, "big") + (1000).to_bytes(4, "big") + (1000).to_bytes(4, "big"))
    monkeypatch.setenv("UNIREPLKNET_MAX_MEMORY_GB", "1")
    with pytest.raises(LimitError, match="60,000,000,000 bytes"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_transform_takes_the_readers_read_only_arrays_without_a_warning(tmp_path):
    import warnings

    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((2, 28, 28), 7, np.uint8), IDX_IMAGES_MAGIC)
    images = read_idx(path, IDX_IMAGES_MAGIC)
    assert not images.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about wrapping a non-writable array
        out = SmallGreyTransform(32, 0.0, 1.0)(images[0])
    assert out.shape == (1, 32, 32) and float(out[0, 2:30, 2:30].min()) == pytest.approx(7 / 255)
