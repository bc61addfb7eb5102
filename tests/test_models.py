"""Backbones, heads, fine-tuning stages and saving — every registered backbone is exercised."""
import numpy as np
import pytest

import keras

from common.errors import UserError
from models.backbones import BACKBONES, block_names, build_backbone
from models.build import TRAINABLE, backbone_of, build_model, set_trainable
from models.heads import HEADS
from models.layers import PIXEL_MODES, PixelNormalization, normalise_pixels
from training.config import ModelConfig


def shapes(model):
    return dict(zip(model.output_names, [tuple(shape) for shape in model.output_shape]))


def small(backbone, **changes):
    values = dict(backbone=backbone, weights="none", head="trunk_mlp", trunk_units=(16,), head_units=(8,),
                  dropout=0.1, l2=1e-4)
    values.update(changes)
    return ModelConfig(**values)


FAST_BACKBONES = {"custom_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0", "efficientnetv2_b0"}


@pytest.mark.parametrize("name", [name if name in FAST_BACKBONES else pytest.param(name, marks=pytest.mark.slow)
                                  for name in BACKBONES.names()])
def test_every_backbone_builds_and_trains_a_step(name):
    keras.utils.set_random_seed(0)
    model = build_model(small(name), {"make": 3, "model": 5}, image_size=32)
    assert sorted(model.output_names) == ["make", "model"]
    assert shapes(model) == {"make": (None, 3), "model": (None, 5)}
    model.compile(optimizer="sgd", loss={"make": "sparse_categorical_crossentropy",
                                         "model": "sparse_categorical_crossentropy"}, run_eagerly=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = [weight.numpy().copy() for weight in model.trainable_weights[-2:]]
    logs = model.train_on_batch(images, {"make": np.array([0, 2]), "model": np.array([1, 4])}, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights[-2:]))


def test_heads_follow_the_manifest(stanford_build):
    _, manifest, _ = stanford_build
    heads = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
    model = build_model(small("custom_cnn"), heads, image_size=32)
    assert shapes(model) == {head: (None, classes) for head, classes in heads.items()}
    assert model.get_layer("embedding").output.shape == (None, 16) and model.input_shape == (None, 32, 32, 3)
    linear = build_model(small("custom_cnn", head="linear"), {"model": 7}, image_size=32)
    assert [layer.name for layer in linear.layers][-3:] == ["embedding", "head_dropout", "model"]


@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_gives_one_output_per_manifest_head(head):
    model = build_model(small("custom_cnn", head=head), {"make": 3, "model": 5}, image_size=32)
    assert shapes(model) == {"make": (None, 3), "model": (None, 5)}
    outputs = model(np.zeros((2, 32, 32, 3), "float32"))
    for name, classes in (("make", 3), ("model", 5)):
        assert np.allclose(np.sum(outputs[name], axis=1), 1.0, atol=1e-5)  # softmax per head


@pytest.mark.parametrize("mode", TRAINABLE.names())
def test_every_trainable_mode(mode):
    spec = BACKBONES.get("custom_cnn")
    model = build_model(small("custom_cnn"), {"make": 3}, image_size=32)
    set_trainable(model, mode, 1, spec=spec)
    trainable = {weight.path.split("/")[0] for weight in backbone_of(model).trainable_weights}
    expected = {"all": {"block1_conv", "block4_conv", "top_dense"}, "frozen": set(),
                "last_blocks": {"block4_conv", "top_dense"}}[mode]
    assert expected <= trainable and ("block1_conv" in trainable) == (mode == "all")


def test_fine_tuning_stages_and_frozen_batchnorm():
    spec = BACKBONES.get("resnet50")
    model = build_model(small("resnet50"), {"make": 3}, image_size=32)
    backbone = backbone_of(model)
    set_trainable(model, "frozen", spec=spec)
    assert not backbone.trainable_weights and model.trainable_weights  # heads still train
    set_trainable(model, "last_blocks", 2, spec=spec)
    blocks = block_names(backbone, spec)
    trainable_blocks = {block for layer, block in zip(backbone.layers, blocks) if layer.trainable}
    assert trainable_blocks == {"conv5_block2", "conv5_block3"}
    set_trainable(model, "all", freeze_batchnorm=True, spec=spec)
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    assert all(layer.trainable for layer in backbone.layers if not isinstance(layer, keras.layers.BatchNormalization))
    with pytest.raises(UserError, match="unfreeze_blocks"):
        set_trainable(model, "last_blocks", 0, spec=spec)


def test_block_layouts_are_sensible():
    for name, expected_first, expected_last in (("efficientnet_b0", "block1a", "block7a"),
                                                ("mobilenet_v2", "expanded_conv", "block_16"),
                                                ("resnet50", "conv2_block1", "conv5_block3"),
                                                ("custom_cnn", "block1", "block4")):
        spec = BACKBONES.get(name)
        order = [b for b in dict.fromkeys(block_names(build_backbone(name, 32), spec)) if b not in ("stem", "top")]
        assert order[0] == expected_first and order[-1] == expected_last


def test_imagenet_download_failure_says_what_to_do(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(UserError) as error:
        build_backbone("efficientnet_b0", 32, weights="imagenet")
    message = str(error.value)
    assert "could not get the ImageNet weights of efficientnet_b0" in message
    assert "efficientnetb0_notop.h5" in message and "weights: none" in message


def test_weights_errors():
    with pytest.raises(UserError, match="neither 'imagenet', 'none' nor an existing weights file"):
        build_backbone("resnet50", 32, weights="/nowhere/weights.h5")
    with pytest.raises(UserError, match="has no width multiplier"):
        build_backbone("resnet50", 32, width=0.5)
    with pytest.raises(UserError, match="ImageNet weights exist for widths"):
        build_backbone("mobilenet_v2", 32, weights="imagenet", width=0.6)
    with pytest.raises(UserError, match=r"^model.backbone: unknown backbone 'resnet5'; .*did you mean 'resnet50'"):
        BACKBONES.get("resnet5")


def test_local_weights_file_is_loaded(tmp_path):
    source = build_backbone("custom_cnn", 32)
    source.set_weights([np.full_like(w, 0.5) for w in source.get_weights()])
    path = tmp_path / "cnn.weights.h5"
    source.save_weights(path)
    loaded = build_backbone("custom_cnn", 32, weights=str(path))
    assert all(np.allclose(w, 0.5) for w in loaded.get_weights())


def test_normalising_in_the_pipeline_leaves_the_model_raw():
    inside = build_model(small("mobilenet_v2"), {"make": 3}, 32)
    outside = build_model(small("mobilenet_v2"), {"make": 3}, 32, normalize=False)
    assert inside.get_layer("pixel_normalization").mode == "symmetric"
    assert outside.get_layer("pixel_normalization").mode == "raw"  # never normalised twice


@pytest.mark.parametrize("mode, expected", [("raw", [0, 127.5, 255]), ("symmetric", [-1, 0, 1]), ("unit", [0, 0.5, 1]),
                                            ("caffe", [255 - 103.939, 127.5 - 116.779, 0 - 123.68])])
def test_every_pixel_mode_in_the_model_and_in_the_pipeline(mode, expected):
    import tensorflow as tf

    from training.data import pipeline_normalised

    assert set(PIXEL_MODES.names()) == {"raw", "symmetric", "unit", "caffe"}
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    assert np.allclose(normalise_pixels(pixels, mode), [[[expected]]])
    assert np.allclose(PixelNormalization(mode)(pixels), [[[expected]]])
    assert np.allclose(pipeline_normalised(tf.constant(pixels[0]), mode), [[expected]], atol=1e-5)


def test_pixel_normalisation_per_backbone():
    assert {BACKBONES.get(n).pixels for n in ("efficientnet_b3", "efficientnetv2_s")} == {"raw"}
    assert BACKBONES.get("resnet50").pixels == "caffe" and BACKBONES.get("mobilenet_v2").pixels == "symmetric"
    assert len(BACKBONES) == 18 and BACKBONES.get("efficientnet_b7").default_size == 600
    assert all(BACKBONES.get(name).pixels in PIXEL_MODES for name in BACKBONES)


def test_models_and_a_training_step_need_no_tensorflow():
    """A machine set up for JAX alone (a GPU box, Colab's TPU runtime before the install): with
    TensorFlow uninstalled for the process, the model package, our losses, metrics and optimiser
    build and train on JAX, which ``auto`` chooses there (also run on the real image's stand-in:
    tests/test_platform_colab.py)."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import training_step_script

    variables = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", training_step_script(block_tensorflow=True)], capture_output=True,
                            text=True, env=dict(variables, JAX_PLATFORMS="cpu"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == dict(outcome, backend="jax", reason="no TPU, and TensorFlow is not installed",
                           tensorflow_installed=False, tensorflow_imported=False)
    assert np.isfinite(outcome["loss"]) and outcome["loss"] > 0
