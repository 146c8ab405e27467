"""Engine pieces against independent truths: weight-decay groups, schedule formula, layer decay, samplers,
evaluation counts; and a small end-to-end run whose deploy model must score like the training structure."""
import math

import pytest
import torch
from torch import nn

from unireplknet import UniRepLKNet
from unireplknet.engine import Batch, ShardedBatchSampler, ShardedEvalSampler, build_optimizer, build_scheduler
from unireplknet.factory import build_model
from unireplknet.tasks.image import TrainConfig, evaluate, train

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((13,), (13,), (3,), (3,)))


def _tiny(num_classes=3, in_chans=1):
    return UniRepLKNet(in_chans=in_chans, num_classes=num_classes, **TINY)


def test_no_weight_decay_on_1d_params_and_biases():
    model = _tiny()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05))
    wd_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            wd_of[id(p)] = group["weight_decay"]
    for name, p in model.named_parameters():
        want = 0.0 if (p.ndim <= 1 or name.endswith(".bias")) else 0.05
        assert wd_of[id(p)] == want, name
    # GRN gamma/beta are 4-D in the official code and DO get weight decay
    grn = [n for n, p in model.named_parameters() if n.endswith((".act.1.gamma", ".act.1.beta"))]
    assert grn and all(wd_of[id(dict(model.named_parameters())[n])] == 0.05 for n in grn)


def test_layer_decay_scales_follow_group_matcher_depth():
    model = _tiny()
    opt = build_optimizer(model, TrainConfig(layer_decay=0.5))
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    head, stem = scale_of[id(named["head.weight"])], scale_of[id(named["downsample_layers.0.0.weight"])]
    assert head == 1.0
    assert stem < scale_of[id(named["stages.0.0.pwconv1.1.weight"])] < scale_of[id(named["stages.3.0.pwconv1.1.weight"])] < head
    # consecutive layer ids differ by exactly the decay factor
    scales = sorted({round(s, 12) for s in scale_of.values()})
    for a, b in zip(scales, scales[1:]):
        assert b / a == pytest.approx(2.0)


def test_schedule_is_linear_warmup_then_cosine():
    model = nn.Linear(2, 2)
    cfg = TrainConfig(lr=1e-2, min_lr=1e-4, epochs=10, warmup_epochs=2)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)  # 10 warmup steps, 40 cosine steps
    lrs = []
    for step in range(51):
        sched.step_update(num_updates=step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.5e-2)
    assert lrs[10] == pytest.approx(1e-2)
    for t in (10, 20, 30, 45, 50):
        want = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * (t - 10) / 40))
        assert lrs[t] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("world,accum", [(2, 1), (2, 2), (4, 1)])
def test_sharded_sampler_equals_single_process_with_accumulation(world, accum):
    n, bs = 103, 4
    single = ShardedBatchSampler(n, bs, 0, 1, accum_steps=world * accum, seed=3)
    ranks = [ShardedBatchSampler(n, bs, r, world, accum_steps=accum, seed=3) for r in range(world)]
    for s in [single] + ranks:
        s.set_epoch(2)
    assert single.steps_per_epoch == ranks[0].steps_per_epoch
    single_batches = list(single)
    rank_batches = [list(r) for r in ranks]
    k = world * accum
    for step in range(single.steps_per_epoch):
        want = sorted(i for b in single_batches[step * k:(step + 1) * k] for i in b)
        got = sorted(i for rb in rank_batches for b in rb[step * accum:(step + 1) * accum] for i in b)
        assert got == want
    # each sample at most once per epoch, whole batches only
    flat = [i for b in single_batches for i in b]
    assert len(flat) == len(set(flat)) and all(len(b) == bs for b in single_batches)


def test_eval_sampler_covers_every_sample_once():
    world = 3
    seen = sorted(i for r in range(world) for b in ShardedEvalSampler(17, 4, r, world) for i in b)
    assert seen == list(range(17))


def test_evaluate_counts_match_manual_argmax():
    torch.manual_seed(0)
    model = _tiny(num_classes=7).eval()
    x, y = torch.randn(10, 1, 32, 32), torch.randint(0, 7, (10,))
    loader = [Batch(x[:6], y[:6]), Batch(x[6:], y[6:])]
    m = evaluate(model, loader, torch.device("cpu"))
    with torch.no_grad():
        logits = model(x)
    assert m["images"] == 10
    assert m["top1"] == pytest.approx(100.0 * (logits.argmax(1) == y).float().mean().item())
    top5 = logits.topk(5, 1).indices.eq(y[:, None]).any(1).float().mean().item()
    assert m["top5"] == pytest.approx(100.0 * top5)
    assert m["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown model 'unireplknet_zz'.*unireplknet_a"):
        build_model("unireplknet_zz", 10)


def test_config_digits_defaults_and_unknown_option():
    cfg = TrainConfig.with_recipe()
    assert cfg.model == "custom" and cfg.in_chans == 1 and cfg.mixup == 0
    folder = TrainConfig.with_recipe(data="/x")
    assert folder.model == "unireplknet_a" and folder.mixup == 0.8 and folder.auto_augment.startswith("rand-m9")
    with pytest.raises(TypeError, match="unknown TrainConfig options: bogus"):
        TrainConfig.with_recipe(bogus=1)


def test_short_run_deploy_agrees_with_training_structure(tmp_path):
    """One epoch on a small digits image tree with a tiny net: files written, deploy == training structure."""
    from unireplknet.data import write_digits_image_folder

    write_digits_image_folder(tmp_path / "data" / "train", split="train", limit_per_class=4)
    write_digits_image_folder(tmp_path / "data" / "val", split="val", limit_per_class=3)
    cfg = TrainConfig.with_recipe(data=str(tmp_path / "data"), model="custom", model_kwargs=TINY, in_chans=1,
                               input_size=32, epochs=1, batch_size=8, workers=0, warmup_epochs=0,
                               output=str(tmp_path / "run"))
    r = train(cfg)
    assert r.train_structure["images"] == 30
    assert r.deploy_structure["top1"] == pytest.approx(r.train_structure["top1"], abs=100 / 30 + 1e-9)
    assert r.deploy_structure["loss"] == pytest.approx(r.train_structure["loss"], rel=1e-4)
    assert r.max_logit_diff < 1e-3
    assert (tmp_path / "run" / "deploy.safetensors").exists() and (tmp_path / "run" / "metrics.csv").exists()
    assert r.params_deploy < r.params_train
    if r.onnx_file is not None:
        assert r.onnx_max_diff < 1e-3


def test_metrics_logger_resume_drops_later_epochs_from_csv_and_tensorboard(tmp_path):
    """A run killed after logging epoch 2 but before saving its checkpoint resumes from epoch 1: epoch 2 is logged
    again, and both the CSV and the TensorBoard scalars must hold the new value only (the reader's view)."""
    pytest.importorskip("tensorboard")
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from unireplknet.engine.metrics_log import MetricsLogger

    first = MetricsLogger(tmp_path, tensorboard=True)
    for epoch, loss in ((1, 2.5), (2, 2.25)):
        first.log(dict(epoch=epoch, train_loss=loss))
    first.close()
    # Readers take event files in name order (events.out.tfevents.<seconds>.<host>.<pid>.<n>); within one second
    # of one process <n> may sort wrongly (10 < 9), so date the killed run's file back as a real one would be.
    for f in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        parts = f.name.split(".")
        parts[3] = f"{int(parts[3]) - 100:010d}"
        f.rename(f.with_name(".".join(parts)))
    resumed = MetricsLogger(tmp_path, resume_epoch=1, tensorboard=True)
    for epoch, loss in ((2, 1.75), (3, 1.5)):
        resumed.log(dict(epoch=epoch, train_loss=loss))
    resumed.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(int(r["epoch"]), float(r["train_loss"])) for r in rows] == [(1, 2.5), (2, 1.75), (3, 1.5)]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("train_loss")] == [(1, 2.5), (2, 1.75), (3, 1.5)]
