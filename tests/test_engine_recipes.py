"""One recipe mechanism: ``EngineConfig.with_recipe(name_or_dict, **options)`` with a ``RECIPES`` table per task
config, where every option the caller gives wins over the recipe, used by every ``*-train`` command."""
from __future__ import annotations

import dataclasses

import pytest

from unireplknet.tasks.audio import AudioTrainConfig
from unireplknet.tasks.dense.task import DenseTrainConfig
from unireplknet.tasks.forecast import ForecastTrainConfig
from unireplknet.tasks.image import TrainConfig
from unireplknet.tasks.pointcloud.task import PointCloudTrainConfig
from unireplknet.tasks.video.task import VideoTrainConfig

CONFIGS = [TrainConfig, AudioTrainConfig, VideoTrainConfig, PointCloudTrainConfig, ForecastTrainConfig,
           DenseTrainConfig]
NAMED = [(cls, name) for cls in CONFIGS for name in cls.RECIPES]


def _class_default(cls, name):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@pytest.mark.parametrize("cls,name", NAMED, ids=[f"{c.__name__}-{n}" for c, n in NAMED])
def test_every_recipe_applies_and_every_given_option_wins(cls, name):
    cfg = cls.with_recipe(name)
    for key, value in cls.recipe(name, {}).items():  # RECIPES[name], composed (dense: with the scene demo's)
        if key in ("head_kwargs", "model_kwargs", "audio"):  # merged / normalised (checked below)
            continue
        assert getattr(cfg, key) == (tuple(value) if isinstance(value, list) else value), key
        # the caller's value wins: give the class default where the recipe changes it
        default = _class_default(cls, key)
        if default != value and default is not None:
            assert getattr(cls.with_recipe(name, **{key: default}), key) == default, key


def test_the_default_recipe_follows_the_data_and_a_named_recipe_overrides_it(tmp_path):
    assert TrainConfig.with_recipe().in_chans == 1 and TrainConfig.with_recipe(data=str(tmp_path)).in_chans == 3
    assert VideoTrainConfig.with_recipe(data=str(tmp_path)).num_frames == 16  # Kinetics recipe for real data
    assert VideoTrainConfig.with_recipe().num_frames == VideoTrainConfig().num_frames
    assert PointCloudTrainConfig.with_recipe(generated="scans").align == "pca"
    assert PointCloudTrainConfig.with_recipe("demo", generated="scans").align == "none"
    assert AudioTrainConfig.with_recipe().loss == "ce" and AudioTrainConfig.with_recipe(data="x").loss == "bce"
    assert ForecastTrainConfig.with_recipe({"lr": 0.5}).lr == 0.5  # a dict of values is a recipe too


def test_the_paper_recipes():
    """Values stated in the docs of each official recipe (docs/video.md, docs/pointcloud.md, docs/audio.md,
    docs/dense.md): the recipe tables carry them."""
    kinetics = VideoTrainConfig.with_recipe("kinetics")
    assert (kinetics.num_frames, kinetics.input_size, kinetics.epochs, kinetics.lr) == (16, 224, 90, 1e-3)
    modelnet = PointCloudTrainConfig.with_recipe("modelnet40")
    assert (modelnet.num_points, modelnet.epochs, modelnet.lr) == (4096, 300, 5e-4)
    speech = AudioTrainConfig.with_recipe(data="sc2")
    assert (speech.lr, speech.decay_rate, speech.decay_start, speech.opt) == (2.5e-4, 0.85, 5, "adam")
    coco = DenseTrainConfig.with_recipe(task="detection", data="coco")
    assert (coco.lr, coco.epochs, coco.decay_epochs, coco.layer_decay) == (1e-4, 36, (27, 33), 0.8)
    ade = DenseTrainConfig.with_recipe(task="segmentation", data="ade")
    assert (ade.sched, ade.crop_size, ade.layer_decay) == ("poly", 512, 1.0)


def test_a_dense_config_built_directly_resolves_to_the_same_recipe_once():
    direct = DenseTrainConfig(task="segmentation", lr=0.3).resolved()
    assert direct == DenseTrainConfig.with_recipe(task="segmentation", lr=0.3)
    assert direct.resolved() == direct and direct.lr == 0.3 and direct.model == "custom"
    assert direct.head_kwargs == DenseTrainConfig.with_recipe(task="segmentation").head_kwargs


def test_an_unknown_recipe_or_option_is_named():
    with pytest.raises(ValueError, match="unknown recipe 'kinetic' for VideoTrainConfig; choose one of demo, kinetics"):
        VideoTrainConfig.with_recipe("kinetic")
    with pytest.raises(TypeError, match="unknown PointCloudTrainConfig options: bogus"):
        PointCloudTrainConfig.with_recipe(bogus=1)
    with pytest.raises(ValueError, match="unknown preset 'papr'"):
        ForecastTrainConfig.with_recipe(preset="papr")
