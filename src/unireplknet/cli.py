"""The ``unireplknet`` command: the generic subcommands (reparam, export, bench, info) and the registry of the
tasks' subcommands (``train``/``eval``/``predict`` in :mod:`unireplknet.tasks.image.cli`, ``audio-*`` …).

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

from .engine.flags import (CLIError, add_checkpoint_arguments, add_common_arguments, add_data_config_arguments,
                           add_overwrite_argument,
                           is_main_rank, json_dict_arg, set_torch_threads, text_table)
from .guards import check_finite, check_output_file, non_negative_int, positive_int

__all__ = ["main", "build_parser"]

_logger = logging.getLogger("unireplknet.cli")


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


# ----------------------------------------------------------------------------------------------- reparam
def cmd_reparam(args: argparse.Namespace) -> int:
    import copy

    import torch

    from .checkpoint import save_model
    from .engine import read_run_metadata
    from .model import reparameterize
    from .tasks.image.cli import load_checkpoint_model

    out_path = Path(args.output) if args.output else Path(args.checkpoint).with_name(
        Path(args.checkpoint).stem + "_deploy.safetensors")
    check_output_file(out_path, "safetensors", [args.checkpoint], args.overwrite)
    model = load_checkpoint_model(args.checkpoint, use_ema=args.ema)
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
#: How many images --calibration reads at most (NNCF's default subset size).
CALIBRATION_SAMPLES = 300


def calibration_batches(path: Path, dc: Dict[str, Any], in_chans: int, class_names: Optional[Sequence[str]],
                        limit: int, batch_size: int = 32, idx_split: str = "train"):
    """Image batches read from ``path`` with the model's evaluation transform, for int8 calibration and the
    agreement check: ``(images, labels)`` from an image-folder tree (``path/<class>/…``) or an IDX folder (its
    ``idx_split``: the training images calibrate, the t10k images check), images alone from a flat folder of
    images. At most ``limit`` images, spread evenly over the folder's sorted files (an IDX split's order).

    The one place a calibration source is opened.
    """
    import torch

    from .data import IMAGE_EXTENSIONS, SafeImageFolder
    from .data.build import eval_transform
    from .data.folder import UNREADABLE_IMAGE_ERRORS, DataError, open_image
    from .data.idx import is_idx_folder, load_idx_split

    path = Path(path)
    if not path.is_dir():
        raise CLIError(f"--calibration {path} is not a folder; pass a folder of images (root/<class>/image or "
                       "a flat folder of images) or an IDX folder, from the training distribution")
    transform = eval_transform(dc)
    if is_idx_folder(path):
        split = load_idx_split(path, idx_split)
        count = len(split.labels)
        picks = range(count) if count <= limit else [int(i * count / limit) for i in range(limit)]
        for start in range(0, len(picks), batch_size):
            chosen = list(picks[start:start + batch_size])
            yield (torch.stack([transform(split.images[i]) for i in chosen]),
                   torch.as_tensor(split.labels[chosen].astype("int64")))
        return
    mode = "RGBA" if dc.get("kind") == "digits" else "L" if in_chans == 1 else "RGB"
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        dataset = SafeImageFolder(path, transform, class_names, mode=mode)
        samples = dataset.samples
    else:
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise CLIError(f"--calibration {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        dataset, samples = None, [(f, -1) for f in files]
    if len(samples) > limit:  # an even spread, so every class of a sorted tree is represented
        step = len(samples) / limit
        samples = [samples[int(i * step)] for i in range(limit)]
    images, labels = [], []
    for file, label in samples:
        try:
            image = transform(open_image(file, mode))
        except DataError:
            raise  # a setting wrong for every file (the pixel limit), not a bad file
        except UNREADABLE_IMAGE_ERRORS:
            continue  # an unreadable file calibrates nothing; the rest still do
        images.append(image)
        labels.append(label)
        if len(images) == batch_size:
            yield _calibration_item(torch.stack(images), labels)
            images, labels = [], []
    if images:
        yield _calibration_item(torch.stack(images), labels)


def _calibration_item(images, labels):
    import torch

    return images if -1 in labels else (images, torch.tensor(labels))


def _export_int8(args: argparse.Namespace, model, base: Path, dc: Dict[str, Any], meta: Dict[str, Any]) -> None:
    import torch

    from .export import int8_agreement, quantize_int8

    backend = "openvino" if args.format == "openvino" else "onnxruntime"
    class_names = meta.get("class_names")
    source = list(calibration_batches(Path(args.calibration), dc, model.in_chans, class_names, args.calibration_samples))
    quantized = quantize_int8(model, source, backend=backend, samples=args.calibration_samples,
                              exporter=args.exporter)
    written = quantized.save(base)
    check = (list(calibration_batches(Path(args.agreement_data), dc, model.in_chans, class_names, 10**9,
                                      idx_split="t10k"))
             if args.agreement_data else source)
    with torch.no_grad():
        report = int8_agreement(model, quantized, check)
    where = args.agreement_data or f"the {quantized.calibration_images} calibration images"
    line = f"int8 vs float32 on {where}: top-1 agreement {100 * report['top1_agreement']:.2f}%"
    if report["accuracy_drop"] is not None:
        line += (f", accuracy {report['reference_accuracy']:.2f}% -> {report['candidate_accuracy']:.2f}% "
                 f"(drop {report['accuracy_drop']:.2f} points)")
    print(f"wrote {', '.join(map(str, written))} (int8, {backend}, calibrated on {quantized.calibration_images} "
          f"images from {args.calibration})")
    print(line)


def cmd_export(args: argparse.Namespace) -> int:
    from .engine import read_run_metadata
    from .model import reparameterize
    from .tasks.image.cli import data_config_for, load_checkpoint_model

    if args.int8 and args.format not in ("onnx", "openvino"):
        raise CLIError(f"--int8 quantizes an ONNX or OpenVINO model; use --format openvino (NNCF) or --format onnx "
                       f"(ONNX Runtime), not --format {args.format}")
    if args.int8 and not args.calibration:
        raise CLIError("--int8 needs --calibration DIR: a folder of a few hundred training images that sets the "
                       "int8 ranges (root/<class>/image or a flat folder of images)")
    if (args.calibration or args.agreement_data) and not args.int8:
        raise CLIError("--calibration and --agreement-data go with --int8; add --int8 or leave them out")
    default_base = Path(args.checkpoint).with_suffix("")
    if args.int8 and not args.output:
        default_base = default_base.with_name(default_base.name + "_int8")
    base = Path(args.output) if args.output else default_base
    formats = ["onnx", "torch-export"] if args.format == "all" else [args.format]
    for fmt in formats:
        if fmt == "openvino":
            for suffix in (".xml", ".bin"):
                check_output_file(base.with_suffix(suffix), "other", [args.checkpoint], args.overwrite)
            continue
        kind = "onnx" if fmt == "onnx" else "pt2"
        check_output_file(base.with_suffix("." + kind), kind, [args.checkpoint], args.overwrite)
    model = load_checkpoint_model(args.checkpoint, use_ema=args.ema)
    if not model.deploy:
        reparameterize(model)
    meta = read_run_metadata(args.checkpoint)
    dc = data_config_for(model, args.checkpoint, meta, args)
    input_size = tuple(int(v) for v in dc["input_size"])
    if args.int8:
        _export_int8(args, model, base, dc, meta)
        return 0
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
        elif fmt == "openvino":
            from .export import export_openvino

            info = export_openvino(model, base, input_size)
            print(f"wrote {', '.join(map(str, info['paths']))} (OpenVINO IR, float32, dynamic batch; max |diff| "
                  f"{info['max_abs_diff']:.2e})")
        else:
            from .export import export_torch_program

            info = export_torch_program(model, base.with_suffix(".pt2"), input_size)
            print(f"wrote {info['path']} (torch.export program, dynamic batch; max |diff| {info['max_abs_diff']:.2e})")
    return 0


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
    from .checkpoint import check_destination  # the one write policy, before the measurements

    for flag in ("csv", "plot"):
        if getattr(args, flag):
            check_destination(getattr(args, flag), args.overwrite, f"--{flag}")
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
        print(text_table(["model", "runtime", "structure", "format", "compiled", "batch", "latency ms", "images/s"], rows))
    if args.csv:
        import csv
        import io

        from .checkpoint import atomic_write

        table = io.StringIO(newline="")
        w = csv.DictWriter(table, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
        atomic_write(args.csv, lambda f: f.write(table.getvalue().encode("utf-8")), overwrite=args.overwrite,
                     flag="--csv")
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)  # stdout: the JSON alone
    if args.plot:
        _plot_bench(records, args.plot, args.overwrite)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _plot_figure_class():
    try:
        import matplotlib  # noqa: F401  (the package itself, even when a submodule is already imported)
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError(PLOT_MISSING) from None
    return Figure


def _plot_bench(records: List[Dict[str, Any]], path: str, overwrite: bool = False) -> None:
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
    from .checkpoint import atomic_write

    suffix = Path(path).suffix.lstrip(".").lower()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format=suffix), overwrite=overwrite, flag="--plot")


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
    print(text_table(["model", "depths", "dims", "kernels per stage", "params", "train params", "GMACs",
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
    _register(sub, SUBCOMMAND_MODULES[0])  # the image task's train, eval, predict lead the listing

    p = sub.add_parser("reparam", help="training checkpoint -> deploy checkpoint (safetensors), verified")
    add_checkpoint_arguments(p)
    p.add_argument("--output", "-o", default=None, help="destination .safetensors (default: <checkpoint>_deploy.safetensors)")
    p.add_argument("--input-size", type=positive_int, default=224, help="side of the random check inputs when the checkpoint does not say")
    p.add_argument("--atol", type=float, default=1e-3, help="largest accepted output difference (relative to the output scale)")
    p.add_argument("--overwrite", action="store_true", help="allow --output to be the input or a file of another kind")
    add_common_arguments(p)
    p.set_defaults(func=cmd_reparam)

    p = sub.add_parser("export", help="ONNX (dynamic batch, onnxruntime-verified), torch.export or OpenVINO IR of the "
                                      "deploy model; int8 with --int8 --calibration DIR")
    add_checkpoint_arguments(p)
    p.add_argument("--output", "-o", default=None, help="destination path without suffix (default: next to the "
                                                         "checkpoint; <checkpoint>_int8 with --int8)")
    p.add_argument("--format", default="onnx", choices=("onnx", "torch-export", "openvino", "all"),
                   help="onnx (default), torch-export (.pt2), openvino (.xml + .bin) or all (onnx and torch-export)")
    p.add_argument("--int8", action="store_true",
                   help="post-training int8 quantization: --format openvino through NNCF "
                        "(pip install 'unireplknet[int8]') or --format onnx through ONNX Runtime; needs --calibration")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="images that set the int8 ranges: root/<class>/image or a flat folder (training images)")
    p.add_argument("--calibration-samples", type=positive_int, default=CALIBRATION_SAMPLES,
                   help=f"images read from --calibration ({CALIBRATION_SAMPLES}), spread over the folder")
    p.add_argument("--agreement-data", default=None, metavar="DIR",
                   help="labelled images (root/<class>/image) on which int8's top-1 agreement with float32 and "
                        "accuracy drop are measured (default: the calibration images)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (18)")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"),
                   help="ONNX exporter (auto: dynamo when onnxscript is installed)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing file of another kind")
    add_data_config_arguments(p)
    add_common_arguments(p)
    p.set_defaults(func=cmd_export)

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
    add_overwrite_argument(p, "the --csv and --plot files")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("info", help="the variants: parameters, MACs, kernel layout, pretrained tags")
    p.add_argument("--resolution", type=positive_int, default=224, help="input side for the MAC count (224)")
    add_common_arguments(p, json=True)
    p.set_defaults(func=cmd_info)
    for module in SUBCOMMAND_MODULES[1:]:
        _register(sub, module)
    return parser


#: Modules that add subcommands: each has ``add_subcommands(subparsers)`` (several commands, each with its
#: ``func`` default) or ``add_parser(subparsers)`` + ``run(args)`` (one command). A new one plugs in with one
#: line here. None of them may import torch or timm at module level (``unireplknet --help`` stays instant).
SUBCOMMAND_MODULES = (
    "unireplknet.tasks.image.cli",  # train, eval, predict
    "unireplknet.tasks.audio.cli",  # audio-train, audio-eval, audio-stats, audio-predict
    "unireplknet.tasks.forecast.cli",  # forecast-train, forecast-eval, forecast-make-grid
    "unireplknet.tasks.dense.cli",  # det-train, det-eval, seg-train, seg-eval, dense-scenes
    "unireplknet.tasks.video.cli",  # video-train, video-eval, video-mosaic
    "unireplknet.tasks.pointcloud.cli",  # points-train, points-eval, points-project
    "unireplknet.tasks.tsc.cli",  # tsc-train, tsc-eval, tsc-predict
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


#: Parsed-argument names that hold input files (checkpoints, clips, clouds), whatever the subcommand.
INPUT_FILE_ARGS = ("checkpoint", "resume", "video", "files", "images")


def _check_input_files(args: argparse.Namespace) -> None:
    """Each input file named on the command line must exist and be a regular file: said at once, before torch is
    imported (seconds), not after, in the words of the readers' own check (:func:`._files.not_a_regular_file`).
    ``--resume`` without a path ('auto') is left to the command, and so is a missing predict image (reported
    per image, the others still run); an image that is a FIFO or a folder is refused here."""
    for name in INPUT_FILE_ARGS:
        value = getattr(args, name, None)
        for path in ([value] if isinstance(value, str) else value if isinstance(value, list) else []):
            if not isinstance(path, str) or (name == "resume" and path == "auto") or path.lower() == "none":
                continue  # erf's --checkpoint none: that model keeps its initialisation
            what = ("input file" if name in ("files", "video", "images") else
                    "--" + name if not _is_positional(args, name) else name)
            if name == "images" and not os.path.exists(path):
                continue  # predict reports a missing image per image
            if not os.path.isfile(path):  # missing, a folder, or a FIFO/device that would block the reader forever
                from ._files import not_a_regular_file  # torch-free: the error comes at once

                hint = " (e.g. its last.pth or best.pth)" if os.path.isdir(path) and name != "files" else ""
                raise CLIError(not_a_regular_file(path, what) + hint)


def _is_positional(args: argparse.Namespace, name: str) -> bool:
    # The evaluation/export commands take the checkpoint as their first argument; the *-train ones as --checkpoint.
    command = str(getattr(args, "command", ""))
    return name == "checkpoint" and not (command.endswith("train") or command == "erf")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        _check_input_files(args)  # before anything imports torch: a wrong path is answered at once
    except CLIError as e:
        print(f"unireplknet {args.command}: error: {e}", file=sys.stderr)
        return 2
    quiet = getattr(args, "quiet", False)
    if quiet:  # --quiet: no progress bars, whatever spelling the command's own option has
        for name, off in (("progress", False), ("no_progress", True)):
            if hasattr(args, name):
                setattr(args, name, off)
    level = (logging.DEBUG if args.verbose
             else logging.INFO if is_main_rank() and not quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("unireplknet").setLevel(level)  # also when the root logger was configured before (--quiet)
    # timm and PIL are chatty at INFO; the run's own messages are what matter here.
    for noisy in ("timm", "PIL", "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        from ._runtime import check_environment

        check_environment()  # UNIREPLKNET_FUSED=maybe, RANK=zero: one line naming the variable, no traceback
        from . import zoo  # noqa: F401  registers the variants with timm (the console script defers it past --help)
    except ValueError as e:
        if args.verbose:
            raise
        print(f"unireplknet {args.command}: error: {e}", file=sys.stderr)
        return 2
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
