"""``unireplknet audio-train | audio-eval | audio-stats | audio-predict`` (registered by :mod:`unireplknet.cli`).

Every subcommand is a thin layer over :mod:`unireplknet.tasks.audio` and :mod:`unireplknet.modalities.audio`
(the clip datasets: :mod:`unireplknet.data.audio`).
``unireplknet audio-train`` with no arguments trains a small model on the embedded spoken digits;
``unireplknet audio-train --data /path/to/speech_commands_v0.02 --model unireplknet_s`` runs the paper's
Speech Commands V2 protocol (see docs/audio.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List

from ...engine.flags import PROBABILITY, SHARE, add_common_arguments, add_engine_arguments, engine_options, format_metrics as _fmt

__all__ = ["add_subcommands"]


def _norm_stats(text: str):
    if text in ("auto", "official"):
        return text
    try:
        mean, std = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--norm-stats takes auto, official or MEAN,STD; got {text!r}") from None
    if std <= 0:
        raise argparse.ArgumentTypeError(f"the standard deviation must be positive, got {std}")
    return (mean, std)


def cmd_audio_train(args: argparse.Namespace) -> int:
    from ...modalities.audio import AudioConfig
    from .task import AudioTrainConfig, train_audio

    audio = None
    if any(v is not None for v in (args.mel_bins, args.frames, args.sample_rate)):
        base = AudioConfig(target_frames=64) if args.data is None else AudioConfig()
        audio = dict(base.to_dict())
        for key, value in (("num_mel_bins", args.mel_bins), ("target_frames", args.frames),
                           ("sample_rate", args.sample_rate)):
            if value is not None:
                audio[key] = value
    options = engine_options(
        args, data=args.data, val_split=args.val_split, multilabel=args.multilabel, loss=args.loss, audio=audio,
        norm_stats=args.norm_stats, decay_start=args.lr_decay_start, decay_rate=args.lr_decay, mixup=args.mixup,
        freq_mask=args.freq_mask, time_mask=args.time_mask, noise=args.noise, roll=args.roll,
        skip_unreadable=args.skip_unreadable)
    cfg = AudioTrainConfig.with_recipe(**options)
    what = "the embedded spoken digits" if cfg.data is None else cfg.data
    print(f"unireplknet audio-train: {cfg.model} on {what}, {cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    r = train_audio(cfg)
    key = "mAP" if cfg.multilabel else "acc"
    val, test = r.extras["val"], r.extras["test"]
    if args.json:
        print(json.dumps(dict(data=what, classes=r.class_names, chance=r.chance, best_epoch=r.best_epoch, val=val,
                              test=test, checkpoint=r.checkpoint, best_checkpoint=r.best_checkpoint,
                              wall_s=r.wall_s), indent=2, default=str))
        return 0
    lines = [f"audio classification — {what}: {len(r.class_names)} classes (chance {r.chance:.1f}%)",
             f"best epoch {r.best_epoch} of {cfg.epochs}, {r.wall_s:.0f} s",
             f"validation {key}: {val[key]:.2f}% on {val['clips']} clips"]
    if test is not None:
        lines.append(f"test {key}: {test[key]:.2f}% on {test['clips']} clips")
    lines.extend(r.file_lines())
    print("\n".join(lines))
    return 0


def cmd_audio_eval(args: argparse.Namespace) -> int:
    from .task import AudioTrainConfig, _loader, build_audio_datasets, evaluate_audio, load_audio_classifier

    model, audio_cfg, names, multilabel = load_audio_classifier(args.checkpoint)
    cfg = AudioTrainConfig(data=args.data, multilabel=multilabel)
    datasets = build_audio_datasets(cfg, audio_cfg)
    if args.split not in datasets:
        raise ValueError(f"the data has no {args.split!r} split (has: {', '.join(datasets)})")
    ds = datasets[args.split]
    ds.augment = None
    if ds.class_names != names:
        raise ValueError(f"the data's classes {ds.class_names[:5]}… differ from the checkpoint's {names[:5]}…")
    from ...engine.distributed import resolve_device

    device = resolve_device(args.device)
    metrics = evaluate_audio(model.to(device), _loader(ds, args.batch_size, False, 0, 0), device, multilabel)
    print(json.dumps(metrics) if args.json else f"{args.split}: {_fmt(metrics)}")
    return 0


def cmd_audio_stats(args: argparse.Namespace) -> int:
    from ...data.audio import compute_norm_stats
    from ...modalities.audio import AudioConfig
    from .task import AudioTrainConfig, build_audio_datasets

    audio_cfg = AudioConfig(target_frames=args.frames or (64 if args.data is None else 128))
    if args.mel_bins:
        audio_cfg.num_mel_bins = args.mel_bins
    ds = build_audio_datasets(AudioTrainConfig(data=args.data), audio_cfg)["train"]
    mean, std = compute_norm_stats(ds, args.max_clips)
    if args.json:
        print(json.dumps(dict(mean=mean, std=std, clips=min(len(ds), args.max_clips or len(ds)))))
    else:
        print(f"log-mel mean {mean:.6f}, std {std:.6f} over {min(len(ds), args.max_clips or len(ds))} training clips; "
              f"train with --norm-stats {mean:.6f},{std:.6f}")
    return 0


def cmd_audio_predict(args: argparse.Namespace) -> int:
    import torch

    from ...data.audio import load_audio
    from ...modalities.audio import AudioError, waveform_to_image
    from .task import load_audio_classifier

    from ...engine.distributed import resolve_device

    device = resolve_device(args.device)
    model, audio_cfg, names, multilabel = load_audio_classifier(args.checkpoint)
    model.to(device)
    results: List[Dict[str, Any]] = []
    failed = 0
    with torch.no_grad():
        for path in args.files:
            try:  # like image `predict`: one bad file is reported and the others are still classified
                wave, _ = load_audio(path, audio_cfg.sample_rate, audio_cfg.on_rate_mismatch)
                image = waveform_to_image(wave[0], audio_cfg)
            except AudioError as e:
                failed += 1
                print(f"{path}: cannot read audio ({e})", file=sys.stderr)
                continue
            logits = model(image[None].to(device))[0].cpu()
            probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 0)
            top = torch.topk(probs, min(args.top_k, len(names)))
            results.append(dict(file=str(path), top=[dict(label=names[i], score=float(p))
                                                     for p, i in zip(top.values.tolist(), top.indices.tolist())]))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(r["file"] + ": " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["top"]))
    if failed and not results:
        raise AudioError(f"none of the {failed} audio files could be read")
    return 1 if failed else 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``audio-train``, ``audio-eval``, ``audio-stats`` and ``audio-predict`` to the main parser."""
    p = sub.add_parser("audio-train", help="audio classification (default: embedded spoken digits; Speech Commands v2; "
                       "folder of <class>/<clip> files)",
                       description="Train UniRepLKNet on log-mel images. Unset options take the official Speech "
                                   "Commands recipe, or lighter defaults for the embedded spoken digits.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="Speech Commands v2 folder, folder of <class>/<clip>.wav "
                   "(root/train + root/val[/test] or split by --val-split), or a CSV manifest file,labels[,split] "
                   "(labels ';'-separated, for --multilabel); default: embedded spoken digits")
    g.add_argument("--val-split", type=SHARE, default=None, help="held-out share without a val split (0.1)")
    g.add_argument("--multilabel", action="store_true", help="multi-label targets: BCE loss, mAP metric")
    g.add_argument("--sample-rate", type=int, default=None, help="16000 (other rates are resampled)")
    g.add_argument("--mel-bins", type=int, default=None, help="128")
    g.add_argument("--frames", type=int, default=None, help="fixed time length in 10 ms frames (128; digits 64)")
    g.add_argument("--norm-stats", type=_norm_stats, default=None,
                   help="auto (compute on the training set), official (SC v2: -6.845978,5.5654526) or MEAN,STD; "
                        "default: official for Speech Commands, auto otherwise")
    g.add_argument("--skip-unreadable", action="store_true", default=None,
                   help="leave out clips that fail to load (counted and logged; not read again)")
    g = p.add_argument_group("audio recipe (official defaults)")
    g.add_argument("--loss", default=None, choices=("bce", "ce"), help="bce (official) or ce (digits default)")
    g.add_argument("--lr-decay-start", type=int, default=None,
                   help="first epoch after which the rate is multiplied by --lr-decay every epoch (5; digits 40)")
    g.add_argument("--lr-decay", type=float, default=None, help="per-epoch factor of the rate (0.85)")
    g = p.add_argument_group("augmentation (official: mixup 0.6, masks 48/48, noise 0.1, roll 10)")
    g.add_argument("--mixup", type=PROBABILITY, default=None, help="probability of waveform mixup (0.6; digits 0)")
    g.add_argument("--freq-mask", type=int, default=None, help="SpecAugment frequency mask width (48; digits 8)")
    g.add_argument("--time-mask", type=int, default=None, help="SpecAugment time mask width (48; digits 8)")
    g.add_argument("--noise", type=float, default=None, help="additive noise amplitude on the log-mel image (0.1)")
    g.add_argument("--roll", type=int, default=None, help="random time shift in frames (10; digits 4)")
    add_engine_arguments(p, dict(
        weight_decay="5e-7", min_lr="unused: a step schedule", 
        model="unireplknet_s as in the paper; digits: a small custom net", drop_path="0.4; digits 0",
        epochs="100; digits 60", batch_size="128; digits 16", lr="Adam, 2.5e-4; digits 2e-3",
        warmup_epochs="0", workers="0", output="runs/audio; digits runs/audio-digits"))
    p.set_defaults(func=cmd_audio_train)

    p = sub.add_parser("audio-eval", help="accuracy/mAP of an audio checkpoint on a split")
    p.add_argument("checkpoint", help="best.pth or last.pth of an audio-train run")
    p.add_argument("--data", default=None, help="as for audio-train (default: embedded spoken digits)")
    p.add_argument("--eval-split", dest="split", default="test", choices=("train", "val", "test"),
                   help="which split to score (test)")
    p.add_argument("--batch-size", type=int, default=64, help="clips per batch (64)")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_audio_eval)

    p = sub.add_parser("audio-stats", help="mean/std of the training log-mels, for --norm-stats")
    p.add_argument("--data", default=None, help="as for audio-train (default: embedded spoken digits)")
    p.add_argument("--frames", type=int, default=None, help="fixed time length in 10 ms frames (128; digits 64)")
    p.add_argument("--mel-bins", type=int, default=None, help="mel bands (128)")
    p.add_argument("--max-clips", type=int, default=None, help="use only the first N training clips")
    add_common_arguments(p, json=True)
    p.set_defaults(func=cmd_audio_stats)

    p = sub.add_parser("audio-predict", help="top-k labels for audio files")
    p.add_argument("checkpoint", help="best.pth of an audio-train run")
    p.add_argument("files", nargs="+", help="audio files (WAV; FLAC/OGG/MP3 with the audio extra)")
    p.add_argument("--top-k", type=int, default=3, help="labels per file (3)")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_audio_predict)
