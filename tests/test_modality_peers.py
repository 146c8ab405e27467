"""The peer-backbone benchmark (benchmarks/modality_peers.py): its peer is exactly timm's own model, built by the
engine's one model factory inside the real task classifiers, and UniRepLKNet names still build UniRepLKNet."""
import statistics

import pytest
import torch
from conftest import load_repo_script

mp = load_repo_script("benchmarks/modality_peers.py")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_peer_backbone_is_timms_own_convnext_inside_the_audio_classifier():
    import timm

    from unireplknet.tasks.audio.task import AudioClassifier

    clf = AudioClassifier(10, mp.PEER_MODEL, mp.PEER_KWARGS, drop_path_rate=0.1)
    direct = timm.create_model(mp.PEER_MODEL, num_classes=0, in_chans=1, **mp.PEER_KWARGS)
    assert type(clf.backbone) is type(direct)
    assert _count(clf.backbone) == _count(direct)
    assert [s.blocks.__len__() for s in clf.backbone.stages] == mp.PEER_KWARGS["depths"]
    assert clf(torch.zeros(2, 1, 128, 64)).shape == (2, 10)


def test_unireplknet_names_still_build_unireplknet():
    from unireplknet import UniRepLKNet
    from unireplknet.factory import build_model

    kwargs = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (7,), (3,)))
    assert isinstance(build_model("custom", 3, 3, kwargs), UniRepLKNet)
    assert isinstance(build_model("unireplknet_a", 3, 3), UniRepLKNet)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("no_such_network", 3)  # neither timm nor UniRepLKNet: the engine's own message


def test_spread_is_the_sample_standard_deviation():
    values = [80.0, 90.0, 90.0]
    got = mp.seed_spread(values)
    assert got["mean"] == pytest.approx(statistics.mean(values))
    assert got["std"] == pytest.approx(statistics.stdev(values))
    assert (got["min"], got["max"]) == (80.0, 90.0)


def test_noisy_audio_rows_differ_only_in_the_backbone():
    """The noisy-digits rows parse as audio-train options: ours is the digits demo's tiny UniRepLKNet, and the
    peer's --model/--model-kwargs (appended after the demo's arguments) replace it and nothing else."""
    import json

    from unireplknet.cli import build_parser
    from unireplknet.tasks.audio.task import TINY_AUDIO_MODEL_KWARGS

    parser = build_parser()
    common = [mp.DEMOS["noisy-audio"]["command"], *mp.DEMO_ARGS["noisy-audio"]]
    ours = parser.parse_args(common)
    peer = parser.parse_args(common + ["--model", mp.PEER_MODEL, "--model-kwargs", json.dumps(mp.PEER_KWARGS)])
    assert ours.model == "custom" and peer.model == mp.PEER_MODEL
    assert ours.model_kwargs == json.loads(json.dumps(TINY_AUDIO_MODEL_KWARGS))  # tuples become lists in JSON
    assert peer.model_kwargs == mp.PEER_KWARGS
    differing = {k for k in vars(ours) if vars(ours)[k] != vars(peer)[k]}
    assert differing == {"model", "model_kwargs"}
    assert ours.data == mp.DEMOS["noisy-audio"]["prepared"] and (ours.mel_bins, ours.frames) == (64, 96)


def test_the_runners_child_process_reports_a_failed_command_and_result_files_are_whole(tmp_path):
    # benchmarks/_common.run_cli is what every peer runner uses to start `unireplknet ...`
    with pytest.raises(RuntimeError, match=r"(?s)the bad run failed with exit code 2;.*no-such-command"):
        mp.run_cli(["no-such-command"], "the bad run")
    ok = mp.run_cli(["--help"], "help")
    assert "forecast-train" in ok.stdout and ok.wall_s >= 0 and ok.cpu_s >= 0
    target = tmp_path / "deep" / "table.md"
    mp.write_text_atomic(target, "| a |\n")
    mp.write_text_atomic(target, "| b |\n")
    assert target.read_text() == "| b |\n" and [p.name for p in target.parent.iterdir()] == ["table.md"]
