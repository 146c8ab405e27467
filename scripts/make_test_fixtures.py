"""Make the repository's reference fixture (tests/data/reference) from the official reference data.

The official data (a UniRepLKNet-A checkpoint in training and deploy layout, an input batch with the official
model's stage outputs and logits, and the official key/shape table of every variant) was produced by running
the official ``unireplknet.py`` (AILab-CVC/UniRepLKNet, commit b5677d8). Tests need it in every clone, so a
trimmed copy lives in the repository:

* ``unireplknet_a.train.safetensors``, ``unireplknet_a.io.safetensors``, ``official_state_dict_keys.json``,
  ``unireplknet_a.json``: copied unchanged (the training weights are random fp32, which no trimming can
  shorten without losing the official logits that depend on every tensor);
* ``unireplknet_a.deploy.stages01.safetensors``: the official *deploy* tensors of the stem, the second
  down-sampling layer and stages 0 and 1 only. They hold both kinds of re-parameterized block of A (3×3
  small-kernel blocks in stage 0, 13×13 Dilated Reparam Blocks in stage 1), and the official stage outputs
  ``stage0_train``/``stage1_train`` check them end to end; the other stages' deploy tensors (18 MB) would
  only repeat those two block kinds at other widths.

Usage::

    python scripts/make_test_fixtures.py [--source ../shared/reference] [--dest tests/data/reference]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "unireplknet_a.train.safetensors",
    "unireplknet_a.io.safetensors",
    "official_state_dict_keys.json",
    "unireplknet_a.json",
)
DEPLOY_SUBSET = "unireplknet_a.deploy.stages01.safetensors"
DEPLOY_PREFIXES = ("downsample_layers.0.", "downsample_layers.1.", "stages.0.", "stages.1.")


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make(source: Path, dest: Path) -> dict:
    from safetensors.torch import load_file, save_file

    missing = [name for name in COPIED + ("unireplknet_a.deploy.safetensors",) if not (source / name).exists()]
    if missing:
        raise SystemExit(f"{source} lacks {', '.join(missing)}: pass --source with the official reference folder")
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        _atomic_copy(source / name, dest / name)
    deploy = load_file(str(source / "unireplknet_a.deploy.safetensors"))
    subset = {k: v.contiguous() for k, v in deploy.items() if k.startswith(DEPLOY_PREFIXES)}
    fd, tmp = tempfile.mkstemp(prefix=f".{DEPLOY_SUBSET}.", suffix=".tmp", dir=dest)
    os.close(fd)
    save_file(subset, tmp, metadata={"source": "unireplknet_a.deploy.safetensors", "prefixes": ",".join(DEPLOY_PREFIXES)})
    os.replace(tmp, dest / DEPLOY_SUBSET)
    manifest = {
        "source": "official UniRepLKNet reference data (AILab-CVC/UniRepLKNet commit b5677d8)",
        "made_by": "python scripts/make_test_fixtures.py",
        "deploy_subset_prefixes": list(DEPLOY_PREFIXES),
        "sha256": {name: _sha256(dest / name) for name in COPIED + (DEPLOY_SUBSET,)},
    }
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT.parent / "shared" / "reference")
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "tests" / "data" / "reference")
    args = parser.parse_args(argv)
    manifest = make(args.source, args.dest)
    total = sum((args.dest / name).stat().st_size for name in manifest["sha256"])
    print(f"wrote {len(manifest['sha256'])} files ({total / 2**20:.1f} MiB) to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
