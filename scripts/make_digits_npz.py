#!/usr/bin/env python
"""Regenerate ``src/unireplknet/data/digits.npz`` from scikit-learn's bundled ``digits.csv.gz``.

The file is the test part of the UCI "Optical Recognition of Handwritten Digits" data set
(Alpaydin & Kaynak, 1998; CC BY 4.0): 1,797 images of 8×8 pixels, each pixel a count 0…16 of
"on" pixels in a 4×4 block of the original 32×32 bitmap, and the digit 0…9 as the last column.

scikit-learn is only needed to *find* the CSV (it ships it); it is not a dependency of unireplknet.
Pass ``--csv`` to use a downloaded copy instead::

    pip install scikit-learn && python scripts/make_digits_npz.py
    python scripts/make_digits_npz.py --csv path/to/digits.csv.gz
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "unireplknet" / "data" / "digits.npz"


def find_sklearn_csv() -> Path:
    try:
        import sklearn
    except ImportError as e:  # pragma: no cover - message only
        raise SystemExit("scikit-learn is not installed: `pip install scikit-learn` or pass --csv") from e
    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=None, help="digits.csv.gz (default: scikit-learn's copy)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    csv = args.csv or find_sklearn_csv()
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    if table.shape != (1797, 65):
        raise SystemExit(f"{csv}: expected 1797 rows of 64 pixels + label, got shape {table.shape}")
    images = table[:, :64].astype(np.uint8).reshape(-1, 8, 8)
    labels = table[:, 64].astype(np.uint8)
    assert images.max() <= 16 and set(np.unique(labels)) == set(range(10))
    np.savez_compressed(args.out, images=images, labels=labels)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest[:16]}…): "
          f"images {images.shape} uint8 0..16, labels {labels.shape} counts {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
