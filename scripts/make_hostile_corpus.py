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

:func:`make_bounds_corpus` writes the second corpus of issue 29 (sizes believed before they are checked, decoders
without bounds, time series taken on trust) and :data:`BOUNDS_CASES` names the command each file is given to;
``scripts/sweep_hostile_corpus.py`` runs them (``--bounds`` here writes that corpus instead).
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import wave
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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


def write_huge_png(path: Path, side: int = 14000, height: Optional[int] = None) -> Path:
    """A valid 1-bit black PNG of side × side pixels (side × height): ~25 KB on disk, 196 M pixels once decoded."""
    height = side if height is None else height
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, height, 1, 0, 0, 0, 0)
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


# ------------------------------------------------------------------------------------- issue 29: items 3, 4, 6
def _deploy_safetensors(path: Path, data_config: dict, tensors=None) -> Path:
    from safetensors.torch import save_file

    from unireplknet.model import reparameterize

    if tensors is None:
        tensors = {k: v.contiguous() for k, v in reparameterize(_image_model(False)).state_dict().items()}
    save_file(tensors, str(path), metadata={"class_names": json.dumps(CLASSES), "data_config": json.dumps(data_config)})
    return path


def _write_deflated_pth(path: Path, values: int) -> Path:
    """A .pth whose one tensor record (``values`` float32 zeros) is deflated: torch.save never writes that, and
    torch.load inflates it in full (the corpus of the issue: 2.3 MB that become 2.4 GB)."""
    import tempfile
    import zipfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        plain, zeros = Path(tmp) / "plain.pth", Path(tmp) / "zeros.bin"
        with open(zeros, "wb") as f:
            f.truncate(4 * values)  # a sparse file of zeros, mapped: no memory taken for the big tensor
        torch.save({"model": {"head.weight": torch.from_file(str(zeros), size=values, dtype=torch.float32)}}, plain)
        with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                record = zipfile.ZipInfo(info.filename)
                record.compress_type = zipfile.ZIP_DEFLATED
                with src.open(info) as fin, dst.open(record, "w", force_zip64=True) as fout:
                    while True:
                        chunk = fin.read(1 << 22)
                        if not chunk:
                            break
                        fout.write(chunk)
    return path


def _write_gif(path: Path, frames: int, side: int) -> Path:
    from PIL import Image

    # alternating black and white frames, so that no frame can be stored as a difference of the previous one
    images = [Image.new("P", (side, side), color=k % 2) for k in range(frames)]
    for im in images:
        im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0, optimize=False)
    return path


def _write_sparse_wav(path: Path, seconds: int, rate: int = 44100) -> Path:
    """A silent 16-bit WAV of ``seconds``: the header and a sparse hole of zeros (no disk space used)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.setnframes(seconds * rate)
        w.writeframesraw(b"")
    size = 44 + 2 * seconds * rate
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", size - 8))
        f.seek(40)
        f.write(struct.pack("<I", size - 44))
        f.truncate(size)
    return path


def _hourly_csv(path: Path, hours: List[int], value=lambda i: f"{i % 24}.0") -> Path:
    import datetime

    t0 = datetime.datetime(2020, 1, 1)
    rows = ["date,temp"] + [f"{t0 + datetime.timedelta(hours=h):%Y-%m-%d %H:%M:%S},{value(i)}"
                            for i, h in enumerate(hours)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _write_task_checkpoints(folder: Path) -> Tuple[Path, Path]:
    """A forecast-train and a seg-train checkpoint (tiny, in the engine's schema) whose model_config claims sizes
    that would allocate tens of GB: a forecaster of 1,000,000,000 stations and a 2,500,000-class segmenter."""
    import dataclasses

    import torch

    from unireplknet.engine.checkpointing import CHECKPOINT_FORMAT
    from unireplknet.engine.config import plain
    from unireplknet.tasks.dense.task import DenseTrainConfig, dense_task
    from unireplknet.tasks.forecast.linear import ForecastTrainConfig, UniRepLKNetForecaster

    def fields(cfg):
        return plain({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})

    torch.manual_seed(0)
    forecaster = UniRepLKNetForecaster(4, 32, 8, 4, 32, "h", np.linspace(0, 1, 8, dtype=np.float32).reshape(4, 2),
                                       "custom", dict(TINY), 0.0, 0.0, True)
    wide = dict(plain(forecaster.config), task="forecast", num_variables=1_000_000_000, enc_in=1_000_000_000)
    forecast = folder / "wide_forecast.pth"
    torch.save(dict(format=CHECKPOINT_FORMAT, model=forecaster.state_dict(), model_config=wide,
                    config=fields(ForecastTrainConfig())), forecast)
    cfg = DenseTrainConfig(task="segmentation", model="custom", model_kwargs=dict(TINY), num_classes=3,
                           head_kwargs=dict(channels=16, aux_channels=16))
    segmenter = dense_task(cfg).create_model(cfg, 3)
    dense = folder / "many_classes_dense.pth"
    torch.save(dict(format=CHECKPOINT_FORMAT, model=segmenter.state_dict(), data_config=dict(config=fields(cfg)),
                    model_config=dict(task="segmentation", num_classes=2_500_000)), dense)
    return forecast, dense


def make_bounds_corpus(root: Path, full_size: bool = True) -> Dict[str, Path]:
    """The second corpus (issue 29 items 3, 4, 6) under ``root``; ``full_size=False`` makes the few files that take
    seconds to write (the deflated .pth, the GIF, the sparse CSV) at a scale that still trips their limit only
    with the environment of :data:`SMALL_LIMITS`."""
    import torch

    root = Path(root)
    paths: Dict[str, Path] = {"root": root}
    for sub in ("checkpoints", "images", "video", "audio", "series"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    data_config = {"input_size": [1, INPUT, INPUT], "mean": [0.5], "std": [0.5], "crop_pct": 1.0,
                   "interpolation": "bilinear", "kind": "folder"}
    ckpt = root / "checkpoints"
    paths["good_deploy_safetensors"] = _deploy_safetensors(ckpt / "good_deploy.safetensors", data_config)
    paths["png8"] = _grey_png(root / "images" / "grey.png", 128)
    paths["good_wav"] = _write_wav(root / "audio" / "tone.wav")
    paths["audio_pth"] = _write_audio_checkpoint(ckpt / "audio.pth")
    # 3: sizes believed before they are checked
    audio = torch.load(paths["audio_pth"], weights_only=True)
    audio["model_config"]["num_classes"] = 2_500_000
    paths["many_classes_audio_pth"] = ckpt / "many_classes_audio.pth"
    torch.save(audio, paths["many_classes_audio_pth"])
    paths["huge_input_safetensors"] = _deploy_safetensors(
        ckpt / "huge_input.safetensors", dict(data_config, input_size=[1, 60000, 60000]))
    good = torch.load(paths["audio_pth"], weights_only=True)  # any file: only the key names matter below
    del good
    from safetensors.torch import load_file

    zero = {k: torch.empty((0,) + tuple(v.shape[1:])) if v.ndim else torch.empty(0)
            for k, v in load_file(str(paths["good_deploy_safetensors"])).items()}
    zero["head.weight"] = torch.empty(12_000_000, 0)  # 0 bytes that announce 12 M classes
    zero["downsample_layers.3.0.weight"] = torch.empty(TINY["dims"][3], 0, 2, 2)
    paths["zero_element_safetensors"] = _deploy_safetensors(ckpt / "zero_element.safetensors", data_config, zero)
    paths["inflating_pth"] = _write_deflated_pth(ckpt / "inflating.pth",
                                                 600_000_000 if full_size else 25_000_000)
    paths["wide_forecast_pth"], paths["many_classes_dense_pth"] = _write_task_checkpoints(ckpt)
    # 4: decoders without bounds
    paths["wide_png"] = write_huge_png(root / "images" / "wide.png", 1_000_000, 1)
    paths["frames_gif"] = _write_gif(root / "video" / "frames.gif", 40, 4000 if full_size else 400)
    paths["rate_44101_wav"] = _write_wav(root / "audio" / "rate_44101.wav", rate=44101)
    paths["rate_prime_wav"] = _write_wav(root / "audio" / "rate_prime.wav", rate=48049)  # 48049 is prime
    paths["long_wav"] = _write_sparse_wav(root / "audio" / "two_hours.wav", 2 * 3600)
    series = root / "series"
    paths["sparse_csv"] = series / "sparse.csv"
    with open(paths["sparse_csv"], "wb") as f:
        f.write(b"date,temp\n")
        f.truncate(5_000_000_000 if full_size else 50_000_000)
    paths["long_cell_csv"] = _hourly_csv(series / "long_cell.csv", list(range(200)),
                                         lambda i: "1" * 200_000 if i == 5 else "1.0")
    paths["empty_npy"] = series / "no_variables.npy"
    np.save(paths["empty_npy"], np.empty((10 ** 9, 0), np.float32))
    # 6: time series taken on trust
    hours = list(range(300))
    paths["unsorted_csv"] = _hourly_csv(series / "unsorted.csv", hours[:100] + hours[150:] + hours[100:150])
    paths["duplicated_csv"] = _hourly_csv(series / "duplicated.csv", hours[:120] + [119] + hours[120:])
    paths["gap_csv"] = _hourly_csv(series / "gap.csv", hours[:150] + [h + 60 for h in hours[150:]])
    paths["float_times_npz"] = series / "float_times.npz"
    np.savez(paths["float_times_npz"], values=np.sin(np.arange(300, dtype=np.float32) / 10),
             timestamps=1.6e9 + 3600.5 * np.arange(300))
    return paths


#: Environment under which the small corpus (``full_size=False``) trips the same limits as the full one.
SMALL_LIMITS = {"UNIREPLKNET_MAX_VIDEO_PIXELS": "4000000", "UNIREPLKNET_MAX_SERIES_BYTES": "10000000"}

#: (case, class, argv after ``unireplknet``, what must happen): "refused" is an exit status of 2 with one error
#: line; "ok" an exit status of 0. ``{name}`` is a corpus path, ``{out}`` a fresh folder that may be written.
BOUNDS_CASES: List[Tuple[str, str, List[str], str]] = [
    ("many classes in model_config", "sizes", ["audio-predict", "{many_classes_audio_pth}", "{good_wav}"], "refused"),
    ("input_size 60000 in metadata", "sizes", ["predict", "{huge_input_safetensors}", "{png8}"], "refused"),
    ("zero-element tensors, 12 M classes", "sizes", ["predict", "{zero_element_safetensors}", "{png8}"], "refused"),
    ("forecaster of 10^9 stations in model_config", "sizes",
     ["forecast-eval", "{wide_forecast_pth}"], "refused"),
    ("segmenter of 2,500,000 classes in model_config", "sizes", ["seg-eval", "{many_classes_dense_pth}"], "refused"),
    ("deflated .pth", "sizes", ["predict", "{inflating_pth}", "{png8}"], "refused"),
    ("predict --input-size 60000", "sizes",
     ["predict", "{good_deploy_safetensors}", "{png8}", "--input-size", "60000"], "refused"),
    ("train --input-size 100000", "sizes",
     ["train", "--input-size", "100000", "--epochs", "1", "-o", "{out}/run", "--quiet"], "refused"),
    ("train --model-kwargs dims 100000", "sizes",
     ["train", "--model", "custom", "--model-kwargs", '{{"depths": [1, 1, 1, 1], "dims": [100000, 100000, 100000, '
      '100000], "kernel_sizes": [[3], [3], [3], [3]]}}', "--epochs", "1", "-o", "{out}/run", "--quiet"], "refused"),
    ("1 x 1,000,000 PNG", "decoders", ["predict", "{good_deploy_safetensors}", "{wide_png}"], "refused"),
    ("GIF of 40 frames of 4000 x 4000", "decoders", ["video-mosaic", "{frames_gif}", "-o", "{out}/m.png"], "refused"),
    ("WAV at 44,101 Hz", "decoders", ["audio-predict", "{audio_pth}", "{rate_44101_wav}"], "ok"),
    ("WAV at a prime rate", "decoders", ["audio-predict", "{audio_pth}", "{rate_prime_wav}"], "ok"),
    ("2-hour silent WAV", "decoders", ["audio-predict", "{audio_pth}", "{long_wav}"], "refused"),
    ("sparse 5 GB CSV", "decoders", ["forecast-train", "--data", "{sparse_csv}", "-o", "{out}/run"], "refused"),
    ("200,000-character cell", "decoders", ["forecast-train", "--data", "{long_cell_csv}", "-o", "{out}/run"],
     "refused"),
    (".npy of shape (10^9, 0)", "decoders", ["forecast-train", "--data", "{empty_npy}", "-o", "{out}/run"],
     "refused"),
    ("unsorted rows", "series", ["forecast-train", "--data", "{unsorted_csv}", "-o", "{out}/run"], "refused"),
    ("duplicated timestamps", "series", ["forecast-train", "--data", "{duplicated_csv}", "-o", "{out}/run"],
     "refused"),
    ("60-hour gap", "series", ["forecast-train", "--data", "{gap_csv}", "-o", "{out}/run"], "refused"),
    ("float timestamps", "series", ["forecast-train", "--data", "{float_times_npz}", "-o", "{out}/run"], "refused"),
]


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
    # item 7 rest: a tensor of the wrong rank; a model_config missing keys or naming another network
    stem_1d = dict(good["model"], **{"downsample_layers.0.0.weight": good["model"]["downsample_layers.0.0.weight"]
                                     .flatten()})
    cases["stem_1d_pth"] = root / "stem_1d.pth"
    torch.save(dict(good, model=stem_1d), cases["stem_1d_pth"])
    model_configs = {"other_net_pth": dict(name="unireplknet_t", model_kwargs={}, num_classes=len(CLASSES), in_chans=1),
                     "other_dims_pth": dict(name="custom", model_kwargs=dict(TINY, dims=[16, 32, 64, 128]),
                                            num_classes=len(CLASSES), in_chans=1),
                     "config_missing_pth": dict(name="custom", model_kwargs=dict(TINY))}
    for name, config in model_configs.items():
        cases[name] = root / f"{name[:-4]}.pth"
        torch.save(dict(good, model_config=config), cases[name])
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


#: Cases of :func:`write_policy_cases` in the form of :data:`BOUNDS_CASES` (class "fields": issue 29 item 7).
FIELDS_CASES: List[Tuple[str, str, List[str], str]] = [
    (f"{what}", "fields", ["predict", "{%s}" % name, "{png8}"], "refused")
    for name, what in (("names_number_pth", "class_names a number"), ("names_short_pth", "class_names too short"),
                       ("data_config_list_pth", "data_config a list"),
                       ("overlay_pth", "pretrained_cfg_overlay naming /etc/passwd"),
                       ("int8_pth", "int8-stored weights"), ("stem_1d_pth", "1-D stem weight"),
                       ("other_net_pth", "model_config names unireplknet_t, the tensors are another network"),
                       ("other_dims_pth", "model_config dims differ from the tensors"),
                       ("config_missing_pth", "model_config missing keys"))
] + [("FIFO as image", "fields", ["predict", "{good_train_pth}", "{fifo_png}"], "refused"),
     ("FIFO as checkpoint", "fields", ["reparam", "{fifo_pth}", "-o", "{out}/x.safetensors"], "refused"),
     ("video-mosaic -o LINK", "writes", ["video-mosaic", "-o", "{link_png}"], "refused"),
     ("bench --csv LINK", "writes", ["bench", "--csv", "{link_csv}", "--iters", "1"], "refused"),
     ("bench --csv over a checkpoint", "writes", ["bench", "--csv", "{good_train_pth}", "--iters", "1"], "refused"),
     ("dense-scenes over a data set", "writes", ["dense-scenes", "{dataset}", "--num-train", "1", "--num-val", "1"],
      "refused"),
     ("forecast-make-grid over a data set", "writes", ["forecast-make-grid", "{dataset}", "--stations", "2",
                                                       "--days", "3"], "refused")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="folder to write the corpus into (created)")
    parser.add_argument("--bounds", action="store_true", help="write the corpus of issue 29 (sizes, decoders, series)")
    args = parser.parse_args(argv)
    if args.bounds:
        paths = make_bounds_corpus(Path(args.output))
    else:
        paths = make_corpus(Path(args.output))
        paths.update(write_policy_cases(Path(args.output) / "write_policy", paths))
    for name, path in sorted(paths.items()):
        print(f"{name:24s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
