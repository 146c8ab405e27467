"""Image-folder data: clear errors for bad trees, corrupt images skipped and counted, stratified splits."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unireplknet.data import (
    DataError,
    SafeImageFolder,
    build_data,
    collate_drop_unreadable,
    collate_replace_unreadable,
    scan_image_folder,
    split_samples,
)


def _png(path: Path, value: int = 128, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        scan_image_folder(tmp_path)


def test_images_without_class_folders(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_image_folder(tmp_path)


def test_class_folders_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        scan_image_folder(tmp_path)


def test_single_class_is_rejected(tmp_path):
    _png(tmp_path / "cat" / "1.png")
    with pytest.raises(DataError, match="single class"):
        build_data(str(tmp_path), input_size=32)


def test_val_with_unknown_class(tmp_path):
    for c in ("a", "b"):
        _png(tmp_path / "train" / c / "1.png")
    _png(tmp_path / "val" / "zebra" / "1.png")
    with pytest.raises(DataError, match="zebra"):
        build_data(str(tmp_path), input_size=32)


def _tree_with_corrupt(tmp_path):
    for c, v in (("a", 10), ("b", 240)):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", v)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tmp_path / "b" / "0.png"
    (tmp_path / "b" / "truncated.png").write_bytes(good.read_bytes()[:40])
    return tmp_path


def test_corrupt_images_are_dropped_and_counted_in_eval(tmp_path):
    root = _tree_with_corrupt(tmp_path)
    import torchvision.transforms as T

    ds = SafeImageFolder(root, T.ToTensor())
    assert len(ds) == 8
    batch = collate_drop_unreadable([ds[i] for i in range(len(ds))])
    assert batch.unreadable == 2 and batch.inputs.shape[0] == 6
    assert sorted(Path(p).name for p in batch.unreadable_paths) == ["broken.png", "truncated.png"]
    # the kept targets are those of the readable files, in order
    want = [t for (p, t) in ds.samples if Path(p).name not in ("broken.png", "truncated.png")]
    assert batch.targets.tolist() == want


def test_corrupt_images_are_replaced_in_training_batches(tmp_path):
    root = _tree_with_corrupt(tmp_path)
    import torchvision.transforms as T

    ds = SafeImageFolder(root, T.ToTensor())
    items = [ds[i] for i in range(len(ds))]
    batch = collate_replace_unreadable(items)
    assert batch.inputs.shape[0] == len(items) and batch.unreadable == 2
    readable = {(round(float(img.mean()), 4), t) for img, t, _ in items if img is not None}
    for img, t in zip(batch.inputs, batch.targets.tolist()):
        assert (round(float(img.mean()), 4), t) in readable
    with pytest.raises(DataError, match="every image of a batch"):
        collate_replace_unreadable([it for it in items if it[0] is None])


def test_stratified_split():
    samples = [(f"{c}/{i}.png", c) for c in range(3) for i in range(10)]
    train, val = split_samples(samples, 0.2, seed=1)
    assert len(val) == 6 and len(train) == 24
    assert sorted(t for _, t in val) == [0, 0, 1, 1, 2, 2]
    assert not set(train) & set(val)
    assert split_samples(samples, 0.2, seed=1) == (train, val)
    with pytest.raises(DataError, match="between 0 and 1"):
        split_samples(samples, 1.5)


def test_build_data_folder_transforms(tmp_path):
    for c, v in (("a", 10), ("b", 240)):
        for i in range(4):
            _png(tmp_path / "train" / c / f"{i}.png", v, size=40)
        _png(tmp_path / "val" / c / "0.png", v, size=40)
    b = build_data(str(tmp_path), input_size=32, in_chans=3)
    assert b.class_names == ["a", "b"] and len(b.train) == 8 and len(b.val) == 2
    img, target, _ = b.val[1]
    assert img.shape == (3, 32, 32) and target == 1
    # the eval transform normalises with ImageNet mean/std: a uniform 240 image maps to (240/255 - mean)/std
    mean = torch.tensor(b.data_config["mean"])[:, None, None]
    std = torch.tensor(b.data_config["std"])[:, None, None]
    torch.testing.assert_close(img, ((torch.full((3, 32, 32), 240 / 255.0) - mean) / std), atol=1e-2, rtol=0)


def test_randaugment_posterize_at_full_magnitude_keeps_one_bit():
    """rand-m9-mstd0.5 reaches magnitude 10, where timm asks PIL for 0 bits (rejected by recent Pillow)."""
    from unireplknet.data.build import train_transform

    t = train_transform(dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3),
                        dict(auto_augment="rand-m9-mstd0.5-inc1"))
    ra = next(x for x in t.transforms if type(x).__name__ == "RandAugment")
    op = next(o for o in ra.ops if o.name == "PosterizeIncreasing")
    op.magnitude, op.magnitude_std, op.prob = 10, 0, 1.0
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(3).reshape(16, 16, 3))
    out = np.asarray(op(img))
    assert set(np.unique(out).tolist()) == {0, 128}  # exactly one bit kept
