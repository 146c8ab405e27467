"""Write a corpus of hostile and careless inputs for the `unireplknet` command line (tests/test_bad_input.py).

Every file is generated (nothing downloaded), in a few seconds, into the folder given::

    python scripts/make_hostile_corpus.py /tmp/hostile

What it holds (``make_corpus`` returns the paths by name):

* checkpoints: text, HTML, random bytes and a PNG saved as ``.pth``; an empty file; truncated ``.pth`` and
  ``.safetensors``; a pickle whose loading would create the file ``PWNED`` (so a test can prove that nothing is
  ever unpickled); tiny classifiers (training layout ``.pth`` and deploy ``.safetensors``) with finite and with
  NaN weights; a tiny audio checkpoint;
* arrays: an object ``.npy`` whose loading would create ``PWNED``;
* images: a 16-bit grey gradient PNG and its 8-bit version, a 14000×14000 PNG (a decompression bomb of 25 KB),
  a truncated PNG, HTML saved as ``.png``; an image folder whose class folders hold these next to good images,
  and one with an empty class folder;
* audio: a good WAV, random bytes and an empty file as ``.wav``;
* point clouds / videos: a ModelNet-layout folder with a broken ``.off`` and a video folder with a broken ``.mp4``.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import wave
import zlib
from pathlib import Path
from typing import Dict

import numpy as np

# A small UniRepLKNet (every block kind the fused forward meets) so that the checkpoints are a few hundred KB.
TINY = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "kernel_sizes": [[13], [13], [3], [3]]}
CLASSES = ["circle", "square", "triangle"]
INPUT = 32


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: harmless, but proof that a loader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_huge_png(path: Path, side: int = 14000) -> Path:
    """A valid 1-bit black PNG of side × side pixels: ~25 KB on disk, 196 M pixels once decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))
    return path


def _image_model(nan: bool):
    import torch

    from unireplknet import UniRepLKNet

    torch.manual_seed(0)
    model = UniRepLKNet(in_chans=1, num_classes=len(CLASSES), **TINY).eval()
    if nan:
        with torch.no_grad():
            model.head.weight[0, 0] = float("nan")  # one diverged weight is enough to poison every output
    return model


def _write_image_checkpoints(folder: Path, paths: Dict[str, Path]) -> None:
    import torch

    from unireplknet.checkpoint import save_model
    from unireplknet.model import reparameterize

    data_config = {"input_size": [1, INPUT, INPUT], "mean": [0.5], "std": [0.5], "crop_pct": 1.0,
                   "interpolation": "bilinear", "kind": "folder"}
    for name, nan in (("good", False), ("nan", True)):
        model = _image_model(nan)
        train = folder / f"{name}_train.pth"
        torch.save({"model": model.state_dict(), "class_names": CLASSES, "data_config": data_config}, train)
        deploy = folder / f"{name}_deploy.safetensors"
        save_model(reparameterize(model), deploy, metadata={"class_names": json.dumps(CLASSES),
                                                            "data_config": json.dumps(data_config)})
        paths[f"{name}_train_pth"], paths[f"{name}_deploy_safetensors"] = train, deploy


def _write_audio_checkpoint(path: Path) -> Path:
    import torch

    from unireplknet.engine.checkpointing import CHECKPOINT_FORMAT
    from unireplknet.modalities.audio import AudioConfig
    from unireplknet.tasks.audio.task import AudioClassifier

    torch.manual_seed(0)
    model = AudioClassifier(len(CLASSES), "custom", dict(TINY), 0.0)
    # The fields the engine writes that the audio reader needs (engine.loop's checkpoint schema).
    torch.save(dict(format=CHECKPOINT_FORMAT, model=model.state_dict(),
                    model_config=dict(model.config, task="audio", multilabel=False, loss="ce"),
                    data_config=AudioConfig(target_frames=64).to_dict(), class_names=CLASSES), path)
    return path


def _write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def _grey_png(path: Path, value: int) -> Path:
    from PIL import Image

    Image.fromarray(np.full((INPUT, INPUT), value, np.uint8), "L").save(path)
    return path


def make_corpus(root: Path) -> Dict[str, Path]:
    """Write the corpus under ``root`` and return its files and folders by name (``marker``: must never exist)."""
    import torch
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "PWNED"
    paths: Dict[str, Path] = {"root": root, "marker": marker}
    rng = np.random.default_rng(0)

    ckpt = root / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    _write_image_checkpoints(ckpt, paths)
    good = paths["good_train_pth"].read_bytes()
    bad = {
        "text_pth": b"These are my notes, not weights.\n" * 20,
        "html_pth": b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>gone</body></html>\n",
        "random_pth": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty_pth": b"",
        "truncated_pth": good[: len(good) // 2],
        "truncated_safetensors": paths["good_deploy_safetensors"].read_bytes()[:300],
    }
    for name, data in bad.items():
        stem, suffix = name.rsplit("_", 1)
        paths[name] = ckpt / f"{stem}.{suffix}"
        paths[name].write_bytes(data)
    paths["pickled_pth"] = ckpt / "pickled.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, paths["pickled_pth"])
    paths["audio_pth"] = _write_audio_checkpoint(ckpt / "audio.pth")

    arrays = root / "arrays"
    arrays.mkdir(exist_ok=True)
    paths["pickled_npy"] = arrays / "data_time_pickled.npy"
    np.save(paths["pickled_npy"], np.array([_Payload(marker)], dtype=object), allow_pickle=True)

    images = root / "images"
    images.mkdir(exist_ok=True)
    gradient16 = (np.linspace(0, 65535, INPUT * INPUT).reshape(INPUT, INPUT)).astype(np.uint16)
    paths["png16"] = images / "gradient16.png"
    Image.fromarray(gradient16).save(paths["png16"])  # saved as a 16-bit grey PNG (mode I;16)
    paths["png8"] = images / "gradient8.png"
    Image.fromarray((gradient16 >> 8).astype(np.uint8), "L").save(paths["png8"])  # the same picture in 8 bits
    paths["huge_png"] = write_huge_png(images / "huge.png")
    paths["truncated_png"] = images / "truncated.png"
    paths["truncated_png"].write_bytes(paths["png8"].read_bytes()[:60])
    paths["html_png"] = images / "page.png"
    paths["html_png"].write_bytes(bad["html_pth"])
    paths["ckpt_png"] = images / "weights.png"
    paths["ckpt_png"].write_bytes(good[:2048])

    # An image folder: good images plus every kind of broken one, to be skipped and counted.
    tree = root / "folder"
    for i, name in enumerate(CLASSES):
        (tree / name).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            _grey_png(tree / name / f"good{k}.png", 40 + 80 * i + k)
    for broken in ("huge_png", "truncated_png", "html_png", "ckpt_png"):
        target = tree / CLASSES[0] / paths[broken].name
        target.write_bytes(paths[broken].read_bytes())
    paths["folder"], paths["folder_broken"] = tree, 4
    empty = root / "folder_empty_class"
    for name in CLASSES:
        (empty / name).mkdir(parents=True, exist_ok=True)
    for name in CLASSES[:2]:
        _grey_png(empty / name / "good.png", 128)
    paths["folder_empty_class"] = empty

    audio = root / "audio"
    audio.mkdir(exist_ok=True)
    paths["good_wav"] = _write_wav(audio / "tone.wav")
    paths["random_wav"] = audio / "noise.wav"
    paths["random_wav"].write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    paths["empty_wav"] = audio / "empty.wav"
    paths["empty_wav"].write_bytes(b"")

    points = root / "modelnet"
    for name in CLASSES[:2]:
        (points / name / "test").mkdir(parents=True, exist_ok=True)
        (points / name / "test" / f"{name}_0001.off").write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n")  # truncated mesh
    paths["modelnet"] = points

    video = root / "video"
    for name in CLASSES[:2]:
        (video / "val" / name).mkdir(parents=True, exist_ok=True)
        (video / "val" / name / "clip.mp4").write_bytes(bad["html_pth"])
    paths["video"] = video
    return paths


# ------------------------------------------------------------------------------------ issue 29: writes and fields
def write_policy_cases(root: Path, corpus: Dict[str, Path]) -> Dict[str, Path]:
    """The second corpus's cases for the write policy, inputs that are no regular file and untrusted fields
    (issue 29 items 1, 2, 5, 7, 9), under ``root``; ``corpus`` is :func:`make_corpus`'s result. A sweep runs each
    command on them and checks that ``outside`` and every file of ``dataset`` stay as they were.

    * ``outside``: a file outside every destination; ``link_png``/``link_csv``: symbolic links to it;
    * ``dataset``: a folder holding a data set's file (``dense-scenes``/``forecast-make-grid`` must not replace it);
    * ``fifo_png``/``fifo_pth``: named pipes (reading one blocks forever);
    * ``names_number_pth``, ``names_short_pth``, ``data_config_list_pth``, ``overlay_pth``, ``int8_pth``:
      checkpoints with untrusted fields (class_names 5 or too short, data_config a list, a pretrained_cfg_overlay
      naming /etc/passwd, int8-stored weights);
    * ``exif_jpg``: a JPEG stored sideways with EXIF orientation 6 (its upright picture is ``exif_upright_png``);
    * ``coco_number_json``, ``coco_no_id_json``: COCO files with an annotation that is a number / a category
      without ``id``.
    """
    import os

    import torch
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: Dict[str, Path] = {}
    cases["outside"] = root / "outside.txt"
    cases["outside"].write_text("a file outside every destination\n")
    for name in ("link_png", "link_csv"):
        stem, suffix = name.split("_")
        cases[name] = root / f"{stem}.{suffix}"
        cases[name].symlink_to(cases["outside"])
    cases["dataset"] = root / "dataset"
    cases["dataset"].mkdir()
    (cases["dataset"] / "instances_train.json").write_text('{"images": []}\n')
    if hasattr(os, "mkfifo"):
        for name in ("fifo_png", "fifo_pth"):
            stem, suffix = name.split("_")
            cases[name] = root / f"{stem}.{suffix}"
            os.mkfifo(cases[name])

    good = torch.load(corpus["good_train_pth"], weights_only=True)
    fields = {"names_number_pth": dict(class_names=5), "names_short_pth": dict(class_names=CLASSES[:2]),
              "data_config_list_pth": dict(data_config=[1, 32, 32]),
              "overlay_pth": dict(model_config={"pretrained_cfg_overlay": {"file": "/etc/passwd"}})}
    for name, change in fields.items():
        cases[name] = root / f"{name[:-4]}.pth"
        torch.save(dict(good, **change), cases[name])
    cases["int8_pth"] = root / "int8.pth"
    torch.save(dict(good, model={k: (v.to(torch.int8) if v.is_floating_point() else v)
                                 for k, v in good["model"].items()}), cases["int8_pth"])

    upright = np.zeros((INPUT, INPUT // 2, 3), np.uint8)
    upright[: INPUT // 4] = 255  # white on top: wrong way up is easy to tell
    cases["exif_upright_png"] = root / "upright.png"
    Image.fromarray(upright).save(cases["exif_upright_png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored pixels must be turned 90 degrees clockwise to be upright
    cases["exif_jpg"] = root / "sideways.jpg"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(cases["exif_jpg"], quality=100, exif=exif)

    base = {"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
            "categories": [{"id": 1, "name": "square"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}]}
    cases["coco_number_json"] = root / "coco_number.json"
    cases["coco_number_json"].write_text(json.dumps(dict(base, annotations=[7])))
    cases["coco_no_id_json"] = root / "coco_no_id.json"
    cases["coco_no_id_json"].write_text(json.dumps(dict(base, categories=[{"name": "square"}])))
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="folder to write the corpus into (created)")
    args = parser.parse_args(argv)
    paths = make_corpus(Path(args.output))
    paths.update(write_policy_cases(Path(args.output) / "write_policy", paths))
    for name, path in sorted(paths.items()):
        print(f"{name:24s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
