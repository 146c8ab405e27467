"""``unireplknet train | eval | predict`` (registered by :mod:`unireplknet.cli`): image classification.

Thin layers over :mod:`unireplknet.tasks.image` and :mod:`unireplknet.data`. ``unireplknet train`` with no
arguments trains a small model on the embedded UCI digits; docs/cli/train.md, eval.md and predict.md have the
options. :func:`load_checkpoint_model` and :func:`data_config_for` also serve the generic ``reparam`` and
``export`` commands, which read the same image-classifier files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ...engine.flags import (NON_NEGATIVE, PROBABILITY, RATE, SHARE, CLIError, add_checkpoint_arguments, add_common_arguments, add_data_config_arguments,
                             add_engine_arguments, add_recipe_argument, engine_options, format_duration, is_main_rank, set_torch_threads,
                             text_table)
from ...guards import check_finite, check_finite_model, non_negative_int, positive_int

__all__ = ["add_subcommands", "load_checkpoint_model", "data_config_for", "format_train_summary"]


def load_checkpoint_model(path: str, use_ema: bool = False):
    """A UniRepLKNet rebuilt from any checkpoint file (our .pth / .safetensors or an official one), in eval mode."""
    from ...checkpoint import read_state_dict
    from ...loading import load_model
    from ...engine import read_run_metadata
    from ...factory import build_model

    config = read_run_metadata(path).get("model_config") or {}
    name = str(config.get("name", ""))
    if name and name != "custom" and not name.startswith("unireplknet") and len(name) > 2:
        # a run of `train --model <timm model>` (a peer backbone): rebuilt by the training engine's factory
        from ...checkpoint import require_fields
        from ...limits import build_checked

        require_fields(config, ("num_classes", "in_chans"), str(path))
        state = read_state_dict(path, use_ema=use_ema)
        model = build_checked(lambda: build_model(name, config["num_classes"], config["in_chans"],
                                                  config.get("model_kwargs")), state, str(path))
        model.load_state_dict(state)
        model.eval()
    else:  # UniRepLKNet: the structure is read off the tensors, so official files need no metadata
        model = load_model(path, use_ema=use_ema, model_config=config)
    check_finite_model(model, path)  # a diverged run's NaN weights would make every reported number meaningless
    return model.eval()


def data_config_for(model, path: Optional[str], meta: Dict[str, Any], overrides: argparse.Namespace) -> Dict[str, Any]:
    """The checkpoint's own data config, else timm's resolution from the model's pretrained config; plus overrides."""
    if meta.get("data_config"):
        dc = dict(meta["data_config"])
    else:
        from timm.data import resolve_data_config

        dc = dict(resolve_data_config({}, model=model))
        dc["kind"] = "folder"
        if dc["input_size"][0] != model.in_chans:
            c = model.in_chans
            dc["input_size"] = (c,) + tuple(dc["input_size"][1:])
            if len(dc["mean"]) != c:
                dc["mean"], dc["std"] = (0.5,) * c, (0.5,) * c
    size = getattr(overrides, "input_size", None)
    if size:
        dc["input_size"] = (dc["input_size"][0], size, size)
    if getattr(overrides, "crop_pct", None):
        dc["crop_pct"] = overrides.crop_pct
    if getattr(overrides, "interpolation", None):
        dc["interpolation"] = overrides.interpolation
    _check_input_memory(model, dc, int(getattr(overrides, "batch_size", None) or 1), path)
    if dc.get("kind") == "digits":
        # Image files of a digits model are normalised like the UCI digits by eval_transform (data.digits).
        dc.setdefault("interpolation", "bilinear")
        dc["crop_pct"] = 1.0
    return dc


def _check_input_memory(model, dc: Dict[str, Any], batch: int, path: Optional[str]) -> None:
    """Refuse an input size (--input-size, or a checkpoint's data_config) whose activations cannot fit."""
    from ...limits import activation_bytes, check_memory

    size = dc.get("input_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise CLIError(f"{path or 'the model'}: data_config input_size must be three positive whole numbers "
                       f"(channels, height, width), got {size!r}")
    dims = getattr(model, "dims", None) or (64, 128, 256, 512)  # a timm peer: a typical ConvNet's widths
    check_memory(activation_bytes(size, dims, batch), f"an input of {size[1]}×{size[2]} pixels (batch {batch})",
                 "choose a smaller --input-size")


# ----------------------------------------------------------------------------------------------- train
def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="image folder: root/train + root/val, or root/<class>/... split by --val-split; or an IDX "
                        "folder (train-/t10k-images-idx3-ubyte[.gz] + labels: MNIST, Fashion-MNIST, KMNIST …), "
                        "whose t10k split is scored once after training (default: the embedded UCI digits)")
    g.add_argument("--val-split", type=SHARE, default=None,
                   help="held-out share of each class when there is no val/ folder; IDX: of train (0.1)")
    g.add_argument("--input-size", type=int, default=None, help="input side in pixels (224; digits and IDX 32)")
    g.add_argument("--in-chans", type=int, default=None, choices=(1, 3), help="3 = RGB (default), 1 = grey")
    g.add_argument("--class-names", default=None,
                   help="IDX folder: fashion-mnist, mnist, kmnist or a comma list in label order [default: the "
                        "Fashion-MNIST names when the folder's path contains 'fashion', else the label numbers]")
    g.add_argument("--fit", default=None, choices=("pad", "resize"),
                   help="IDX folder: centre the images on the --input-size canvas (pad) or resize them [default: pad]")
    add_recipe_argument(p, ("digits", "fashion-mnist", "fashion-mnist-quick"),
                        "digits = the embedded-digits recipe (default without --data); fashion-mnist = the IDX "
                        "recipe, UniRepLKNet-A at 32x32 (default for an IDX folder); fashion-mnist-quick = the same "
                        "for 4 epochs (docs/fashion_mnist.md); an image folder gets the ImageNet recipe")
    g = p.add_argument_group("augmentation and regularisation")
    g.add_argument("--mixup", type=NON_NEGATIVE, default=None, help="mixup alpha (0.8; digits 0)")
    g.add_argument("--cutmix", type=NON_NEGATIVE, default=None, help="cutmix alpha (1.0; digits 0)")
    g.add_argument("--smoothing", type=RATE, default=None, help="label smoothing (0.1)")
    g.add_argument("--aa", dest="auto_augment", default=None, help="RandAugment policy (rand-m9-mstd0.5-inc1; '' = off)")
    g.add_argument("--reprob", type=PROBABILITY, default=None, help="random erasing probability (0.25; digits 0)")
    g.add_argument("--no-augment", dest="train_augment", action="store_false", default=None,
                   help="train on the evaluation transform (no random crops, flips, RandAugment …)")
    add_engine_arguments(p, dict(
        model="unireplknet_a; digits: a small custom net", drop_path="0.1; digits 0",
        epochs="300; digits 12", batch_size="64; digits 32", lr="4e-3", warmup_epochs="5; digits 1",
        workers="4; digits 0", output="runs/train; digits runs/digits"))


def cmd_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .task import train

    set_torch_threads(args.threads)
    options = engine_options(args, **{k: getattr(args, k) for k in (
        "data", "val_split", "input_size", "in_chans", "mixup", "cutmix", "smoothing", "auto_augment", "reprob",
        "train_augment", "class_names", "fit")})
    cfg = TrainConfig.with_recipe(args.recipe, **options)
    if is_main_rank():
        what = "the embedded UCI digits" if cfg.data is None else cfg.data
        model = cfg.model if cfg.model != "custom" else f"custom UniRepLKNet {cfg.model_kwargs}"
        print(f"unireplknet train: {model} on {what}, {cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    from ...checkpoint import PretrainedWeightsUnavailableError

    try:
        result = train(cfg)
    except PretrainedWeightsUnavailableError as e:
        raise CLIError(f"{e} On the command line: --checkpoint /path/{e.filename} instead of --pretrained") from e
    if is_main_rank():
        print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else format_train_summary(result))
    return 0


def format_train_summary(r) -> str:
    """The end-of-training table: training vs deploy structure, speed-up, files."""
    lines = [f"Training summary — {r.data_description}",
             f"{r.epochs} epochs in {format_duration(r.wall_s)} on {r.world_size} process(es)"
             + (f"; {r.unreadable_images} unreadable images skipped" if r.unreadable_images else "")]
    rows = []
    for name, m, params, lat in (("training structure", r.train_structure, r.params_train, r.latency_train_s),
                                 ("deploy structure", r.deploy_structure, r.params_deploy, r.latency_deploy_s)):
        if not m and not params:
            continue
        rows.append([name, f"{m['top1']:.2f}%" if m else "-", f"{m['top5']:.2f}%" if m else "-",
                     f"{m['loss']:.4f}" if m else "-", f"{params:,}",
                     f"{lat * 1000:.2f} ms" if lat else "-"])
    if rows:
        lines += ["", text_table(["held-out", "top-1", "top-5", "loss", "params", "latency/batch"], rows)]
    if r.speedup:
        lines.append(f"deploy speed-up: {r.speedup:.2f}x (median of interleaved timings, held-out batch)")
    if r.max_logit_diff is not None:
        lines.append(f"max |logit difference| training vs deploy: {r.max_logit_diff:.2e}")
    test = r.extras.get("test")
    if test:  # an IDX folder's t10k split, read once with the weights of best.pth
        ema = r.extras.get("test_ema")
        lines.append(f"test split (t10k, {test['images']} images, best epoch {r.extras.get('best_epoch')}): top-1 "
                     f"{test['top1']:.2f}%, top-5 {test['top5']:.2f}%, loss {test['loss']:.4f}"
                     + (f"; EMA weights top-1 {ema['top1']:.2f}%" if ema else ""))
    lines.append("")
    files = [(r.checkpoint, "training checkpoint (continue with --resume)"),
             (r.deploy_file, "re-parameterized deploy model"),
             (r.onnx_file, f"ONNX, onnxruntime max diff {r.onnx_max_diff:.1e}" if r.onnx_file else "")]
    if r.checkpoint:
        files.append((Path(r.output) / "metrics.csv", "per-epoch metrics"))
    for path, what in files:
        if path:
            lines.append(f"  {path}  {what}")
    if r.onnx_skipped:
        lines.append(f"  ONNX export skipped: {r.onnx_skipped}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from ...data import DigitsDataset, SafeImageFolder, collate_drop_unreadable, collate_tensors, find_image_folders
    from ...data.build import eval_transform
    from ...data.idx import is_idx_folder
    from ...engine import make_eval_loader, read_run_metadata
    from ...engine.distributed import resolve_device
    from ...engine.loop import amp_dtype_of
    from .task import evaluate

    model = load_checkpoint_model(args.checkpoint, use_ema=args.ema)
    meta = read_run_metadata(args.checkpoint)
    dc = data_config_for(model, args.checkpoint, meta, args)
    class_names = meta.get("class_names")
    if args.data is not None and is_idx_folder(args.data):
        dataset, where = _idx_eval_dataset(args.data, args.split, dc, model.in_chans, class_names)
        collate = collate_tensors
    elif args.data is None:
        if dc.get("kind") != "digits":
            raise CLIError("--data is needed: the folder of labelled images to evaluate on (root/<class>/image)")
        dataset = DigitsDataset("val", int(dc["input_size"][-1]))
        collate, where = collate_tensors, "embedded digits, held-out split"
    else:
        root, val = find_image_folders(Path(args.data))
        root = val or root
        # digits: RGBA keeps a transparent ground, which the digits transform reads as paper
        mode = "RGBA" if dc.get("kind") == "digits" else "L" if model.in_chans == 1 else "RGB"
        dataset = SafeImageFolder(root, eval_transform(dc), class_names, mode=mode)
        collate, where = collate_drop_unreadable, str(root)
    if len(dataset.classes) != model.num_classes and model.num_classes:
        if not (class_names is None and len(dataset.classes) < model.num_classes):
            raise CLIError(
                f"{where} has {len(dataset.classes)} classes but the checkpoint's head has {model.num_classes}; "
                "evaluate on data with the classes the model was trained on"
            )
    device = resolve_device(args.device)
    model.to(device)
    loader = make_eval_loader(dataset, args.batch_size, collate, args.workers)
    m = evaluate(model, loader, device, amp_dtype_of(args.amp), progress=not args.no_progress)
    check_finite(m["loss"], "the evaluation loss", args.checkpoint)
    m.update(checkpoint=str(args.checkpoint), data=where, input_size=list(dc["input_size"]),
             crop_pct=dc.get("crop_pct"), interpolation=dc.get("interpolation"))
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"{args.checkpoint} on {where} ({m['images']} images, input {tuple(dc['input_size'])}, "
              f"crop_pct {dc.get('crop_pct')}, {dc.get('interpolation')})")
        print(f"top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  loss {m['loss']:.4f}")
        if m["unreadable"]:
            print(f"{m['unreadable']} unreadable images skipped")
    return 0


def _idx_eval_dataset(root: str, split: str, dc: Dict[str, Any], in_chans: int, class_names: Optional[List[str]]):
    """An IDX folder's ``split`` (``test``: t10k; ``train``: the whole train split) under the checkpoint's
    evaluation transform; a model trained on image files gets each image as a PIL image of its mode."""
    from ...data.build import eval_transform
    from ...data.idx import IdxDataset, load_idx_split

    data = load_idx_split(root, "t10k" if split == "test" else "train")
    transform = eval_transform(dc)
    if dc.get("kind") != "idx":
        from PIL import Image

        mode = "L" if in_chans == 1 else "RGB"
        base = transform
        transform = lambda x: base(Image.fromarray(x.numpy().squeeze(0), "L").convert(mode))  # noqa: E731
    labels = int(data.labels.max()) + 1
    if class_names and labels > len(class_names):
        raise CLIError(f"{data.labels_path} has labels up to {labels - 1} but the checkpoint knows {len(class_names)} "
                       "classes; evaluate on the data set the model was trained on")
    names = class_names or [str(i) for i in range(labels)]
    dataset = IdxDataset(data, transform, None, names)
    return dataset, f"{root} ({'t10k' if split == 'test' else 'train'} split)"


# ----------------------------------------------------------------------------------------------- predict
def _class_names_for(model, meta: Dict[str, Any]) -> List[str]:
    if meta.get("class_names"):
        names = list(meta["class_names"])
        if len(names) != model.num_classes:  # a label would be missing, or belong to no output
            raise CLIError(f"the checkpoint's class_names lists {len(names)} names but its head has "
                           f"{model.num_classes} outputs; the file was altered or mixes two runs — fix class_names "
                           "or use the checkpoint the run wrote")
        return names
    if model.num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    if model.num_classes == 21841:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-22k")
        return [info.index_to_description(i) for i in range(21841)]
    return [str(i) for i in range(model.num_classes)]


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ...data.build import eval_transform
    from ...data.folder import UNREADABLE_IMAGE_ERRORS, open_image
    from ...engine import read_run_metadata

    if args.checkpoint is None and not args.model:
        raise CLIError("give a checkpoint file, or --model NAME --pretrained for official weights")
    if args.checkpoint is not None:
        model, meta = load_checkpoint_model(args.checkpoint, use_ema=args.ema), read_run_metadata(args.checkpoint)
    else:
        from ...checkpoint import PretrainedWeightsUnavailableError
        from ...factory import build_model
        from ...zoo import check_pretrained_reachable

        try:
            if args.model.startswith("unireplknet_"):
                check_pretrained_reachable(args.model)
            model, meta = build_model(args.model, 1000, pretrained=True).eval(), {}
        except PretrainedWeightsUnavailableError as e:
            cause = e.__cause__ or e
            images = " ".join(args.images[:2]) + (" …" if len(args.images) > 2 else "")
            raise CLIError(
                f"could not download the pretrained weights of {args.model} ({type(cause).__name__}: {cause}). "
                f"Offline? Fetch {e.filename} elsewhere (https://huggingface.co/{e.hub_id}/blob/main/{e.filename}) "
                f"and pass the file instead of --model/--pretrained: unireplknet predict /path/{e.filename} {images}"
            ) from e
    if not model.num_classes:
        raise CLIError("this checkpoint has no classifier head (a backbone); predict needs a classification model")
    names = _class_names_for(model, meta)
    dc = data_config_for(model, args.checkpoint, meta, args)
    transform = eval_transform(dc)
    mode = "RGBA" if dc.get("kind") == "digits" else "L" if model.in_chans == 1 else "RGB"
    from ...engine.distributed import resolve_device

    device = resolve_device(args.device)
    model.to(device)
    k = min(args.top_k, model.num_classes)
    results, failed = [], 0
    for path in args.images:
        try:
            x = transform(open_image(path, mode)).unsqueeze(0)
        except UNREADABLE_IMAGE_ERRORS as e:
            failed += 1
            print(f"{path}: cannot read image ({e})", file=sys.stderr)
            continue
        with torch.no_grad():
            probs = model(x.to(device)).float().softmax(-1)[0].cpu()
        check_finite(float(probs.sum()), f"the class probabilities for {path}", args.checkpoint or args.model)
        top = probs.topk(k)
        preds = [dict(index=int(i), label=names[int(i)], probability=float(p)) for p, i in zip(top.values, top.indices)]
        results.append(dict(image=str(path), top_k=preds))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            best = ", ".join(f"{p['label']} {100 * p['probability']:.1f}%" for p in r["top_k"])
            print(f"{r['image']}: {best}")
    if failed and not results:
        raise CLIError(f"none of the {failed} images could be read")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------- parser
def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("train", help="train or fine-tune (default: the embedded digits); works under torchrun",
                       description="Train with the official recipe; ends with a fused (deploy) model, its accuracy "
                                   "next to the training structure's, the speed-up, and an ONNX export.")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5 and loss of a checkpoint on an image folder")
    add_checkpoint_arguments(p)
    p.add_argument("--data", default=None, help="image folder (root/<class>/... or root/val/<class>/...) or an IDX "
                   "folder (MNIST, Fashion-MNIST …; see --split); default for digits models: the embedded held-out "
                   "split")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="IDX folder: the split to score, test = t10k (default), train = every training image")
    add_data_config_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=96, help="images per batch (96)")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data-loading processes (2)")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast dtype (none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k labels with class names for image files")
    p.add_argument("checkpoint", nargs="?", default=None, help="model file (omit with --model NAME --pretrained)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default=None, help="variant for official pretrained weights instead of a file")
    p.add_argument("--pretrained", action="store_true", help="with --model: download the official weights")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image (5)")
    add_data_config_arguments(p)
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_predict)

