"""The embedded UCI digits: file contents, fixed split, upsampling."""
import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unireplknet.data import DIGITS_MEAN, DIGITS_STD, DigitsDataset, digits_split_indices, load_digits, write_digits_image_folder


def test_shipped_file_is_small_and_attributed():
    folder = resources.files("unireplknet.data")
    size = len(folder.joinpath("digits.npz").read_bytes())
    assert size < 150_000
    attribution = folder.joinpath("ATTRIBUTION.md").read_text()
    assert "Alpaydin" in attribution and "CC BY 4.0" in attribution


def test_arrays_are_the_uci_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,)
    assert images.max() == 16 and images.min() == 0
    # The published class counts of the 1,797-image set.
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_matches_scikit_learn_csv_when_available():
    sklearn = pytest.importorskip("sklearn")
    csv = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    images, labels = load_digits()
    np.testing.assert_array_equal(images.reshape(-1, 64), table[:, :64].astype(np.uint8))
    np.testing.assert_array_equal(labels, table[:, 64].astype(np.uint8))


def test_split_is_stratified_disjoint_and_complete():
    train, val = digits_split_indices(0.2)
    assert len(set(train) & set(val)) == 0
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(1797))
    _, labels = load_digits()
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((labels[val] == c).sum()) == round(0.2 * n_c)
    # fixed: the held-out set does not depend on any training seed
    assert np.array_equal(digits_split_indices(0.2)[1], val)


def test_dataset_upsamples_and_normalises():
    ds = DigitsDataset("val", image_size=40)
    images, labels = load_digits()
    _, val = digits_split_indices(0.2)
    x, y = ds[5]
    assert x.shape == (1, 40, 40) and y == labels[val[5]]
    raw = torch.from_numpy(images[val[5]]).float()[None, None] / 16.0
    want = (F.interpolate(raw, size=(40, 40), mode="bilinear", align_corners=False)[0] - DIGITS_MEAN[0]) / DIGITS_STD[0]
    torch.testing.assert_close(x, want)
    with pytest.raises(ValueError, match="at least 32"):
        DigitsDataset("train", image_size=16)


def test_image_folder_export_round_trips(tmp_path):
    from PIL import Image

    root = write_digits_image_folder(tmp_path / "digits", split="val", limit_per_class=2)
    files = sorted(root.rglob("*.png"))
    assert len(files) == 20 and {p.parent.name for p in files} == {str(d) for d in range(10)}
    images, _ = load_digits()
    index = int(files[0].stem)
    pixels = np.asarray(Image.open(files[0]))
    np.testing.assert_array_equal(pixels, np.round(images[index] * 255.0 / 16.0).astype(np.uint8))
