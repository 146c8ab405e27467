"""The ``unireplknet`` command: train, eval, reparam, export, predict, bench, info.

Every subcommand is a thin layer over library functions (:mod:`unireplknet.engine`,
:mod:`unireplknet.checkpoint`, :mod:`unireplknet.export`, :mod:`unireplknet.zoo`), so the same work can be
done from Python. Run ``unireplknet <subcommand> --help`` for the options; docs/cli/ has a page per subcommand.

Training scales out unchanged with torchrun::

    torchrun --nproc_per_node 2 -m unireplknet.cli train --data /path/to/images
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .guards import check_finite, check_finite_model, check_output_file, non_negative_int, positive_int
from .engine.flags import add_common_arguments, add_engine_arguments, engine_options, json_dict_arg, set_torch_threads

__all__ = ["main", "build_parser"]

_logger = logging.getLogger("unireplknet.cli")


class CLIError(Exception):
    """A problem with the command line or its inputs; printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------- helpers
def installed_version() -> str:
    """The installed distribution's version; a source checkout without metadata falls back to the package's own."""
    from importlib import metadata

    try:
        return metadata.version("unireplknet")
    except metadata.PackageNotFoundError:
        from . import __version__  # imports torch: only when the metadata is missing

        return __version__


class _VersionAction(argparse.Action):
    """``--version``: looked up when asked for, so building the parser (and ``--help``) stays free of imports."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        print(f"{parser.prog} {installed_version()}")
        parser.exit()


def _int_list(text: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,8,32, got {text!r}") from None


def _str_list(text: str) -> List[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _load_model(path: str, use_ema: bool = False):
    """A UniRepLKNet rebuilt from any checkpoint file (our .pth / .safetensors or an official one), in eval mode."""
    from .checkpoint import load_model, read_state_dict
    from .engine import read_run_metadata
    from .factory import build_model

    config = read_run_metadata(path).get("model_config") or {}
    name = str(config.get("name", ""))
    if name and name != "custom" and not name.startswith("unireplknet") and len(name) > 2:
        # a run of `train --model <timm model>` (a peer backbone): rebuilt by the training engine's factory
        model = build_model(name, config["num_classes"], config["in_chans"], config.get("model_kwargs"))
        model.load_state_dict(read_state_dict(path, use_ema=use_ema))
        model.eval()
    else:  # UniRepLKNet: the structure is read off the tensors, so official files need no metadata
        model = load_model(path, use_ema=use_ema)
    check_finite_model(model, path)  # a diverged run's NaN weights would make every reported number meaningless
    return model.eval()


def _data_config_for(model, path: Optional[str], meta: Dict[str, Any], overrides: argparse.Namespace) -> Dict[str, Any]:
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
    if dc.get("kind") == "digits":
        # Image files of a digits model are normalised like the UCI digits by eval_transform (data.digits).
        dc.setdefault("interpolation", "bilinear")
        dc["crop_pct"] = 1.0
    return dc


# ----------------------------------------------------------------------------------------------- train
def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="image folder: root/train + root/val, or root/<class>/... split by --val-split "
                        "(default: the embedded UCI digits)")
    g.add_argument("--val-split", type=float, default=None, help="held-out share when there is no val/ folder (0.1)")
    g.add_argument("--input-size", type=int, default=None, help="input side in pixels (224; digits 32)")
    g.add_argument("--in-chans", type=int, default=None, choices=(1, 3), help="3 = RGB (default), 1 = grey")
    g = p.add_argument_group("augmentation and regularisation")
    g.add_argument("--mixup", type=float, default=None, help="mixup alpha (0.8; digits 0)")
    g.add_argument("--cutmix", type=float, default=None, help="cutmix alpha (1.0; digits 0)")
    g.add_argument("--smoothing", type=float, default=None, help="label smoothing (0.1)")
    g.add_argument("--aa", dest="auto_augment", default=None, help="RandAugment policy (rand-m9-mstd0.5-inc1; '' = off)")
    g.add_argument("--reprob", type=float, default=None, help="random erasing probability (0.25; digits 0)")
    g.add_argument("--no-augment", dest="train_augment", action="store_false", default=None,
                   help="train on the evaluation transform (no random crops, flips, RandAugment …)")
    add_engine_arguments(p, dict(
        model="unireplknet_a; digits: a small custom net", drop_path="0.1; digits 0",
        epochs="300; digits 12", batch_size="64; digits 32", lr="4e-3", warmup_epochs="5; digits 1",
        workers="4; digits 0", output="runs/train; digits runs/digits"))


def cmd_train(args: argparse.Namespace) -> int:
    from .tasks.image import TrainConfig, train

    set_torch_threads(args.threads)
    options = engine_options(args, **{k: getattr(args, k) for k in (
        "data", "val_split", "input_size", "in_chans", "mixup", "cutmix", "smoothing", "auto_augment", "reprob",
        "train_augment")})
    cfg = TrainConfig.with_recipe(**options)
    if _is_main_rank():
        what = "the embedded UCI digits" if cfg.data is None else cfg.data
        model = cfg.model if cfg.model != "custom" else f"custom UniRepLKNet {cfg.model_kwargs}"
        print(f"unireplknet train: {model} on {what}, {cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    from .checkpoint import PretrainedWeightsUnavailableError

    try:
        result = train(cfg)
    except PretrainedWeightsUnavailableError as e:
        raise CLIError(f"{e} On the command line: --checkpoint /path/{e.filename} instead of --pretrained") from e
    if _is_main_rank():
        print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else format_train_summary(result))
    return 0


def format_train_summary(r) -> str:
    """The end-of-training table: training vs deploy structure, speed-up, files."""
    lines = [f"Training summary — {r.data_description}",
             f"{r.epochs} epochs in {_fmt_duration(r.wall_s)} on {r.world_size} process(es)"
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
        lines += ["", _table(["held-out", "top-1", "top-5", "loss", "params", "latency/batch"], rows)]
    if r.speedup:
        lines.append(f"deploy speed-up: {r.speedup:.2f}x (median of interleaved timings, held-out batch)")
    if r.max_logit_diff is not None:
        lines.append(f"max |logit difference| training vs deploy: {r.max_logit_diff:.2e}")
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
    from .data import DigitsDataset, SafeImageFolder, collate_drop_unreadable, collate_tensors, find_image_folders
    from .data.build import eval_transform
    from .engine import make_eval_loader, read_run_metadata
    from .engine.distributed import resolve_device
    from .engine.loop import amp_dtype_of
    from .tasks.image import evaluate

    model = _load_model(args.checkpoint, use_ema=args.ema)
    meta = read_run_metadata(args.checkpoint)
    dc = _data_config_for(model, args.checkpoint, meta, args)
    class_names = meta.get("class_names")
    if args.data is None:
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


# ----------------------------------------------------------------------------------------------- reparam
def cmd_reparam(args: argparse.Namespace) -> int:
    import copy

    import torch

    from .checkpoint import save_model
    from .engine import read_run_metadata
    from .model import reparameterize

    out_path = Path(args.output) if args.output else Path(args.checkpoint).with_name(
        Path(args.checkpoint).stem + "_deploy.safetensors")
    check_output_file(out_path, "safetensors", [args.checkpoint], args.overwrite)
    model = _load_model(args.checkpoint, use_ema=args.ema)
    if model.deploy:
        raise CLIError(f"{args.checkpoint} is already in the deploy (re-parameterized) layout; nothing to do")
    meta = read_run_metadata(args.checkpoint)
    deploy = reparameterize(copy.deepcopy(model))
    size = int(meta.get("data_config", {}).get("input_size", [0, args.input_size])[-1] or args.input_size)
    x = torch.randn(4, model.in_chans, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = model(x), deploy(x)
    diff = float((ref - out).abs().max())
    scale = float(ref.abs().max())
    check_finite(diff, "the re-parameterization check's output difference", args.checkpoint)
    if diff > args.atol * max(1.0, scale):
        raise CLIError(f"re-parameterized outputs differ by {diff:.3g} (> {args.atol}); the checkpoint may hold "
                       "non-finite BatchNorm statistics — please report this")
    metadata = {k: json.dumps(v) for k, v in meta.items()}
    save_model(deploy, out_path, metadata=metadata)
    n_train, n_deploy = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in deploy.parameters())
    print(f"wrote {out_path}: deploy structure, {n_deploy:,} parameters (training structure {n_train:,}); "
          f"max |output difference| on 4 random {size}x{size} inputs: {diff:.2e}")
    return 0


# ----------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .engine import read_run_metadata
    from .model import reparameterize

    base = Path(args.output) if args.output else Path(args.checkpoint).with_suffix("")
    formats = ["onnx", "torch-export"] if args.format == "all" else [args.format]
    for fmt in formats:
        kind = "onnx" if fmt == "onnx" else "pt2"
        check_output_file(base.with_suffix("." + kind), kind, [args.checkpoint], args.overwrite)
    model = _load_model(args.checkpoint, use_ema=args.ema)
    if not model.deploy:
        reparameterize(model)
    meta = read_run_metadata(args.checkpoint)
    dc = _data_config_for(model, args.checkpoint, meta, args)
    input_size = tuple(int(v) for v in dc["input_size"])
    for fmt in formats:
        if fmt == "onnx":
            from .export import export_onnx

            try:
                import onnxruntime  # noqa: F401
                verify = True
            except ImportError:
                verify = False
                print("onnxruntime not installed: exporting without verification (pip install 'unireplknet[onnx]')",
                      file=sys.stderr)
            info = export_onnx(model, base.with_suffix(".onnx"), input_size, opset=args.opset, verify=verify,
                               exporter=args.exporter)
            check = f"onnxruntime max |diff| {info['max_abs_diff']:.2e}" if verify else "not verified"
            print(f"wrote {info['path']} (input 'images' N x {' x '.join(map(str, input_size))}, dynamic batch; {check})")
        else:
            from .export import export_torch_program

            info = export_torch_program(model, base.with_suffix(".pt2"), input_size)
            print(f"wrote {info['path']} (torch.export program, dynamic batch; max |diff| {info['max_abs_diff']:.2e})")
    return 0


# ----------------------------------------------------------------------------------------------- predict
def _class_names_for(model, meta: Dict[str, Any]) -> List[str]:
    if meta.get("class_names"):
        return list(meta["class_names"])
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

    from .data.build import eval_transform
    from .data.folder import UNREADABLE_IMAGE_ERRORS, open_image
    from .engine import read_run_metadata

    if args.checkpoint is None and not args.model:
        raise CLIError("give a checkpoint file, or --model NAME --pretrained for official weights")
    if args.checkpoint is not None:
        model, meta = _load_model(args.checkpoint, use_ema=args.ema), read_run_metadata(args.checkpoint)
    else:
        from .factory import build_model

        model, meta = build_model(args.model, 1000, pretrained=True).eval(), {}
    if not model.num_classes:
        raise CLIError("this checkpoint has no classifier head (a backbone); predict needs a classification model")
    names = _class_names_for(model, meta)
    dc = _data_config_for(model, args.checkpoint, meta, args)
    transform = eval_transform(dc)
    mode = "RGBA" if dc.get("kind") == "digits" else "L" if model.in_chans == 1 else "RGB"
    from .engine.distributed import resolve_device

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


# ----------------------------------------------------------------------------------------------- bench
PLOT_MISSING = "--plot needs matplotlib, which is not installed: pip install 'unireplknet[plot]'"


def _check_bench_args(args: argparse.Namespace, device) -> None:
    """Every option checked before the first measurement, so a bad one does not cost a whole benchmark."""
    if any(bs < 1 for bs in args.batch_sizes):
        raise CLIError(f"--batch-sizes must all be at least 1, got {','.join(map(str, args.batch_sizes))}")
    for structure in args.structures:
        if structure not in ("train", "deploy"):
            raise CLIError(f"--structures takes train and/or deploy, got {structure!r}")
    for fmt in args.memory_formats:
        if fmt not in ("nchw", "nhwc"):
            raise CLIError(f"--memory-formats takes nchw and/or nhwc, got {fmt!r}")
    if args.backends:
        from . import deploy

        for backend in args.backends:
            if backend not in deploy.BACKENDS:
                raise CLIError(f"--backends takes {', '.join(deploy.BACKENDS)} (comma-separated), got {backend!r}")
            if backend in ("onnxruntime", "openvino") and device.type != "cpu":
                raise CLIError(f"the {backend} backend runs on the CPU: use --device cpu, or leave it out of --backends")
        for backend in set(args.backends) - set(deploy.available_backends()):
            deploy._require(backend)  # raises deploy_model's ImportError, which names the pip extra
    if args.plot:
        _plot_figure_class()
        suffix = Path(args.plot).suffix.lstrip(".").lower()
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        supported = FigureCanvasAgg.get_supported_filetypes()
        if suffix not in supported:
            raise CLIError(f"--plot {args.plot}: give the file one of the image suffixes "
                           f"{', '.join('.' + k for k in sorted(supported))}")


def cmd_bench(args: argparse.Namespace) -> int:
    import copy
    import platform

    import torch

    from .factory import build_model
    from .engine.benchmark import measure_latency
    from .engine.distributed import resolve_device
    from .model import reparameterize

    torch.manual_seed(0)
    device = resolve_device(args.device)
    _check_bench_args(args, device)
    rows, records = [], []

    def record(name: str, runtime: str, structure: str, fmt: str, compiled: bool, bs: int, m: Dict[str, float],
               compiled_cell: Optional[str] = None) -> None:
        rec = dict(model=name, runtime=runtime, structure=structure, memory_format=fmt, compiled=compiled, batch=bs,
                   latency_ms=1000 * m["median_s"], images_per_s=m["images_per_s"])
        records.append(rec)
        rows.append([name, runtime, structure, fmt, compiled_cell or ("yes" if compiled else "no"), bs,
                     f"{rec['latency_ms']:.2f}", f"{rec['images_per_s']:.1f}"])
        print(f"  {name} {runtime} {structure} {fmt} compile={compiled} batch {bs}: {rec['latency_ms']:.2f} ms",
              file=sys.stderr)

    for name in args.models:
        base = build_model(name, args.num_classes, args.in_chans, args.model_kwargs if name == "custom" else None)
        base.eval()
        for structure in args.structures:
            net = reparameterize(copy.deepcopy(base)) if structure == "deploy" else base
            for fmt in args.memory_formats:
                mf = torch.channels_last if fmt == "nhwc" else torch.contiguous_format
                net_f = copy.deepcopy(net).to(device, memory_format=mf)
                for compiled in ([False, True] if args.compile == "both" else [args.compile == "on"]):
                    runner = torch.compile(net_f) if compiled else net_f
                    for bs in args.batch_sizes:
                        x = torch.randn(bs, args.in_chans, args.input_size, args.input_size, device=device)
                        x = x.contiguous(memory_format=mf)
                        m = measure_latency(runner, x, warmup=args.warmup + (2 if compiled else 0), iters=args.iters)
                        record(name, "torch", structure, fmt, compiled, bs, m)
        for backend in args.backends or ():
            from .deploy import deploy_model

            example = torch.randn(min(args.batch_sizes), args.in_chans, args.input_size, args.input_size,
                                  device=device)
            deployed = deploy_model(base.to(device), backend=backend, example_input=example)
            print(f"  {name} deploy:{backend}: max relative error vs PyTorch {deployed.max_rel_error:.1e}",
                  file=sys.stderr)
            # deploy_model hands eager/compile a channels_last module; ONNX Runtime and OpenVINO pick their own layout
            fmt = "nhwc" if backend in ("eager", "compile") else "-"
            for bs in args.batch_sizes:
                x = torch.randn(bs, args.in_chans, args.input_size, args.input_size, device=device)
                m = measure_latency(deployed, x, warmup=args.warmup + (2 if backend == "compile" else 0),
                                    iters=args.iters)
                record(name, f"deploy:{backend}", "deploy", fmt, backend == "compile", bs, m,
                       compiled_cell=None if backend in ("eager", "compile") else "-")
    if not records:
        raise CLIError("nothing to measure: give --structures and --memory-formats, or --backends")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    if args.json:
        print(json.dumps(dict(device=str(device), machine=machine, threads=torch.get_num_threads(),
                              torch=torch.__version__, input_size=args.input_size, iters=args.iters,
                              results=records), indent=2))
    else:
        print(f"# {device} ({machine}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
              f"input {args.input_size}x{args.input_size}, median of {args.iters} runs")
        print(_table(["model", "runtime", "structure", "format", "compiled", "batch", "latency ms", "images/s"], rows))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)  # stdout: the JSON alone
    if args.plot:
        _plot_bench(records, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _plot_figure_class():
    try:
        import matplotlib  # noqa: F401  (the package itself, even when a submodule is already imported)
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError(PLOT_MISSING) from None
    return Figure


def _plot_bench(records: List[Dict[str, Any]], path: str) -> None:
    """Images/s against batch size, one line per configuration, written to ``path`` (format from its suffix)."""
    # A bare Figure renders with the Agg canvas: no pyplot state and no global backend switch in the caller's process.
    fig = _plot_figure_class()(figsize=(7, 4))
    ax = fig.subplots()
    series: Dict[str, List[Any]] = {}
    for r in records:
        if r["runtime"] == "torch":
            label = f"{r['model']} {r['structure']} {r['memory_format']}" + (" compiled" if r["compiled"] else "")
        else:
            label = f"{r['model']} {r['runtime']}"
        series.setdefault(label, []).append((r["batch"], r["images_per_s"]))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    batches = sorted({r["batch"] for r in records})
    ax.set_xticks(batches, labels=[str(b) for b in batches])  # the measured sizes, not powers of two
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    from . import zoo

    rows = zoo.variants_table(resolution=args.resolution)
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    table = [[r["name"], "-".join(map(str, r["depths"])), "-".join(map(str, r["dims"])), r["kernel_layout"],
              f"{r['params_deploy'] / 1e6:.1f}M", f"{r['params_train'] / 1e6:.1f}M", f"{r['gmacs_deploy']:.2f}",
              ", ".join(r["pretrained_tags"]) or "-"] for r in rows]
    print(f"UniRepLKNet variants (GMACs at {args.resolution}x{args.resolution}, deploy structure)")
    print(_table(["model", "depths", "dims", "kernels per stage", "params", "train params", "GMACs",
                  "pretrained tags"], table))
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unireplknet",
        description="Train, evaluate, re-parameterize, export and benchmark UniRepLKNet models. "
                    "`unireplknet train` with no arguments trains a small model on the embedded UCI digits.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train or fine-tune (default: the embedded digits); works under torchrun",
                       description="Train with the official recipe; ends with a fused (deploy) model, its accuracy "
                                   "next to the training structure's, the speed-up, and an ONNX export.")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    def add_ckpt(q: argparse.ArgumentParser, required: bool = True) -> None:
        if required:
            q.add_argument("checkpoint", help="a .pth (own or official) or .safetensors file")
        q.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")

    def add_data_cfg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--input-size", type=positive_int, default=None, help="override the checkpoint's input size")
        q.add_argument("--crop-pct", type=float, default=None, help="override the centre-crop fraction")
        q.add_argument("--interpolation", default=None, help="override the resize interpolation")

    p = sub.add_parser("eval", help="top-1/top-5 and loss of a checkpoint on an image folder")
    add_ckpt(p)
    p.add_argument("--data", default=None, help="image folder (root/<class>/... or root/val/<class>/...); "
                   "default for digits models: the embedded held-out split")
    add_data_cfg(p)
    p.add_argument("--batch-size", type=positive_int, default=96, help="images per batch (96)")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data-loading processes (2)")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast dtype (none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("reparam", help="training checkpoint -> deploy checkpoint (safetensors), verified")
    add_ckpt(p)
    p.add_argument("--output", "-o", default=None, help="destination .safetensors (default: <checkpoint>_deploy.safetensors)")
    p.add_argument("--input-size", type=positive_int, default=224, help="side of the random check inputs when the checkpoint does not say")
    p.add_argument("--atol", type=float, default=1e-3, help="largest accepted output difference (relative to the output scale)")
    p.add_argument("--overwrite", action="store_true", help="allow --output to be the input or a file of another kind")
    add_common_arguments(p)
    p.set_defaults(func=cmd_reparam)

    p = sub.add_parser("export", help="ONNX (dynamic batch, onnxruntime-verified) or torch.export of the deploy model")
    add_ckpt(p)
    p.add_argument("--output", "-o", default=None, help="destination path without suffix (default: next to the checkpoint)")
    p.add_argument("--format", default="onnx", choices=("onnx", "torch-export", "all"),
                   help="onnx (default), torch-export (.pt2) or both")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (18)")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"),
                   help="ONNX exporter (auto: dynamo when onnxscript is installed)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing file of another kind")
    add_data_cfg(p)
    add_common_arguments(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="top-k labels with class names for image files")
    p.add_argument("checkpoint", nargs="?", default=None, help="model file (omit with --model NAME --pretrained)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default=None, help="variant for official pretrained weights instead of a file")
    p.add_argument("--pretrained", action="store_true", help="with --model: download the official weights")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image (5)")
    add_data_cfg(p)
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="latency/throughput: training vs deploy, NCHW vs channels_last, eager vs "
                                     "compile, deployment runtimes")
    p.add_argument("--models", type=_str_list, default=["unireplknet_a"], help="comma-separated variants, or custom")
    p.add_argument("--model-kwargs", type=json_dict_arg, default=None, help="UniRepLKNet arguments for 'custom'")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 16], help="comma-separated batch sizes (1,16)")
    p.add_argument("--input-size", type=positive_int, default=224, help="input side in pixels (224)")
    p.add_argument("--in-chans", type=positive_int, default=3, help="input channels (3)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (1000)")
    p.add_argument("--structures", type=_str_list, default=["train", "deploy"],
                   help="comma-separated: train, deploy (both)")
    p.add_argument("--memory-formats", type=_str_list, default=["nchw", "nhwc"],
                   help="comma-separated: nchw, nhwc (both)")
    p.add_argument("--compile", default="off", choices=("off", "on", "both"), help="torch.compile the model")
    p.add_argument("--backends", type=_str_list, default=[],
                   help="also time unireplknet.deploy_model with these runtimes: comma-separated eager, compile, "
                        "onnxruntime, openvino (rows 'deploy:NAME' in the same table)")
    p.add_argument("--iters", type=positive_int, default=10, help="timed iterations (10)")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed warm-up iterations (3)")
    p.add_argument("--csv", default=None, help="also write the results to this CSV file")
    p.add_argument("--plot", default=None,
                   help="also draw images/s vs batch size to this image file, e.g. bench.png (needs unireplknet[plot])")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("info", help="the variants: parameters, MACs, kernel layout, pretrained tags")
    p.add_argument("--resolution", type=positive_int, default=224, help="input side for the MAC count (224)")
    add_common_arguments(p, json=True)
    p.set_defaults(func=cmd_info)
    for module in SUBCOMMAND_MODULES:
        _register(sub, module)
    return parser


#: Modules that add subcommands: each has ``add_subcommands(subparsers)`` (several commands, each with its
#: ``func`` default) or ``add_parser(subparsers)`` + ``run(args)`` (one command). A new one plugs in with one
#: line here. None of them may import torch or timm at module level (``unireplknet --help`` stays instant).
SUBCOMMAND_MODULES = (
    "unireplknet.tasks.audio.cli",  # audio-train, audio-eval, audio-stats, audio-predict
    "unireplknet.tasks.forecast.cli",  # forecast-train, forecast-eval, forecast-make-grid
    "unireplknet.tasks.dense.cli",  # det-train, det-eval, seg-train, seg-eval, dense-scenes
    "unireplknet.tasks.video.cli",  # video-train, video-eval, video-mosaic
    "unireplknet.tasks.pointcloud.cli",  # points-train, points-eval, points-project
    "unireplknet.analysis.erf_cli",  # erf
)


def _subcommand_names(parser: argparse.ArgumentParser) -> List[str]:
    """The registered subcommands (for tests and shell completion)."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def _register(sub: "argparse._SubParsersAction", module_name: str) -> None:
    import importlib

    module = importlib.import_module(module_name)
    if hasattr(module, "add_subcommands"):
        module.add_subcommands(sub)
        return
    parser = module.add_parser(sub)
    if parser is not None and parser.get_default("func") is None:
        parser.set_defaults(func=module.run)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    quiet = getattr(args, "quiet", False)
    if quiet:  # --quiet: no progress bars, whatever spelling the command's own option has
        for name, off in (("progress", False), ("no_progress", True)):
            if hasattr(args, name):
                setattr(args, name, off)
    level = (logging.DEBUG if args.verbose
             else logging.INFO if _is_main_rank() and not quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("unireplknet").setLevel(level)  # also when the root logger was configured before (--quiet)
    # timm and PIL are chatty at INFO; the run's own messages are what matter here.
    for noisy in ("timm", "PIL", "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    from . import zoo  # noqa: F401  registers the variants with timm (the console script defers it past --help)
    from .checkpoint import CheckpointError
    from .data import DataError
    from .engine import CheckpointWriteError, RunFolderError

    try:
        # Every command, also those without --threads: torch's thread count, at most the cores free now.
        set_torch_threads(getattr(args, "threads", None))
        return args.func(args)
    except (CLIError, DataError, CheckpointError, CheckpointWriteError, RunFolderError, OSError,
            ImportError, ValueError, FloatingPointError) as e:
        if args.verbose:
            raise
        print(f"unireplknet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unireplknet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
