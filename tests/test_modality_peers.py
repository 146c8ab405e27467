"""The peer-backbone benchmark's pieces (benchmarks/modality_peers.py): the timm fallback builds exactly the
model timm builds, inside the real task classifiers, and leaves UniRepLKNet names to the engine."""
import importlib.util
import statistics
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "modality_peers.py"
_spec = importlib.util.spec_from_file_location("modality_peers", _PATH)
mp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mp)


@pytest.fixture
def fallback(monkeypatch):
    """Install the fallback for one test; monkeypatch puts the engine's own build_model back afterwards."""
    from unireplknet import engine
    from unireplknet.engine import trainer

    monkeypatch.setattr(trainer, "build_model", trainer.build_model)
    monkeypatch.setattr(engine, "build_model", engine.build_model)
    original = trainer.build_model
    mp._install_timm_fallback()
    yield original


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_peer_backbone_is_timms_own_convnext_inside_the_audio_classifier(fallback):
    import timm

    from unireplknet.tasks.audio import AudioClassifier

    clf = AudioClassifier(10, mp.PEER_MODEL, mp.PEER_KWARGS, drop_path_rate=0.1)
    direct = timm.create_model(mp.PEER_MODEL, num_classes=0, in_chans=1, **mp.PEER_KWARGS)
    assert type(clf.backbone) is type(direct)
    assert _count(clf.backbone) == _count(direct)
    assert [s.blocks.__len__() for s in clf.backbone.stages] == mp.PEER_KWARGS["depths"]
    assert clf(torch.zeros(2, 1, 128, 64)).shape == (2, 10)


def test_unireplknet_names_still_go_to_the_engine(fallback):
    from unireplknet import UniRepLKNet
    from unireplknet.engine import build_model

    kwargs = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (7,), (3,)))
    net = build_model("custom", 3, 3, kwargs)
    assert isinstance(net, UniRepLKNet)
    assert _count(net) == _count(fallback("custom", 3, 3, kwargs))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("no_such_network", 3)  # neither timm nor UniRepLKNet: the engine's own message


def test_spread_is_the_sample_standard_deviation():
    values = [80.0, 90.0, 90.0]
    got = mp._spread(values)
    assert got["mean"] == pytest.approx(statistics.mean(values))
    assert got["std"] == pytest.approx(statistics.stdev(values))
    assert (got["min"], got["max"]) == (80.0, 90.0)
