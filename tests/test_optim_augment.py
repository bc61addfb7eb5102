"""Schedules against the reports' formulas, optimisers, and every augmentation op (eager and in tf.data)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from training.augment import AUGMENTATIONS, CROP_OPS, PRESETS, apply_host, device_layers, step
from training.config import ConstantSchedule, OptimizerConfig
from training.windows import CROPS
from training.config import SCHEDULES
from training.optim import OPTIMIZERS, Report004Schedule, StepDecay, WarmupCosine, build_optimizer


def report_lr_curve(epoch):  # report 004, Fig. 16, verbatim
    if epoch < 5:
        return 1e-6 + epoch * ((1e-1 - 1e-6) / 6)
    return 1e-1 * math.exp(-0.1 * epoch)


def test_report004_schedule_is_the_reports_curve():
    schedule = Report004Schedule(steps_per_epoch=7)
    ours = [float(schedule(epoch * 7 + offset)) for epoch in range(80) for offset in (0, 6)]
    theirs = [report_lr_curve(epoch) for epoch in range(80) for _ in (0, 6)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_step_and_cosine_schedules():
    every = StepDecay(steps_per_epoch=2, initial_lr=0.01, factor=0.1, every=10)
    assert [round(float(every(e * 2)), 8) for e in (0, 9, 10, 20)] == [0.01, 0.01, 0.001, 0.0001]
    cosine = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    values = [float(cosine(s)) for s in range(100)]
    assert values[0] < values[9] <= 0.1 + 1e-7 and np.all(np.diff(values[10:]) <= 1e-9) and values[-1] < 1e-3


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizers_with_weight_decay_and_batch_scaling(name):
    config = OptimizerConfig(name=name, learning_rate=0.01, momentum=0.9, weight_decay=1e-4, scale_with_batch=True,
                             base_batch_size=32)
    optimizer = build_optimizer(config, ConstantSchedule(), global_batch=64, steps_per_epoch=10, epochs=5)
    assert float(optimizer.learning_rate) == pytest.approx(0.02) and optimizer.weight_decay == pytest.approx(1e-4)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_augmentation_eagerly_and_in_a_dataset(name):
    image = tf.random.stateless_uniform([48, 64, 3], seed=[1, 2])
    steps, seed = (step(name, 1.0),), tf.constant([7, 11], tf.int64)
    eager = apply_host(image, steps, seed)
    mapped = next(iter(tf.data.Dataset.from_tensors(image).map(lambda x: apply_host(x, steps, seed))))
    np.testing.assert_allclose(eager, mapped, atol=1e-6)  # stateless: the seed alone decides
    for result in (eager, mapped):
        assert result.shape == (48, 64, 3)
        assert float(tf.reduce_min(result)) >= 0.0 and float(tf.reduce_max(result)) <= 1.0
    if name == "flip_left_right":
        np.testing.assert_allclose(eager, image[:, ::-1])
    if name == "grayscale":
        np.testing.assert_allclose(eager[..., 0], eager[..., 2], atol=1e-6)
    if name in CROP_OPS:  # crops act while decoding (tests in test_data_pipeline): one window rule each
        assert set(CROPS.names()) == set(CROP_OPS) and CROPS.get(name).window is not None
    else:
        assert np.abs(np.asarray(eager) - np.asarray(image)).mean() > 1e-3, name  # every operation changes pixels


def test_probabilities_are_per_example():
    image = tf.random.stateless_uniform([8, 8, 3], seed=[3, 4])
    flipped = [bool(np.allclose(apply_host(image, (step("flip_left_right", 0.3),), tf.constant([number, 0])),
                                image[:, ::-1])) for number in range(300)]
    assert 0.2 < np.mean(flipped) < 0.4
    assert np.allclose(apply_host(image, (step("grayscale", 0.0),), tf.constant([1, 2])), image)


@pytest.mark.parametrize("preset", [name for name in PRESETS.names() if name != "none"])
def test_presets_on_host_and_device(preset):
    image = tf.random.stateless_uniform([32, 32, 3], seed=[5, 6])
    assert apply_host(image, PRESETS.get(preset), tf.constant([1, 2])).shape == (32, 32, 3)
    layers = device_layers(PRESETS.get(preset))
    batch = tf.random.stateless_uniform([4, 32, 32, 3], seed=[7, 8]) * 255
    if layers is not None:
        np.testing.assert_allclose(layers(batch, training=False), batch)  # identity at inference
        assert layers(batch, training=True).shape == (4, 32, 32, 3)


def test_device_placement_refuses_host_only_ops():
    with pytest.raises(UserError, match="jpeg_quality"):
        device_layers((step("jpeg_quality", 0.5),))



@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_builds_serialises_and_starts_where_it_should(name):
    """Each schedule from its config's defaults: a positive first rate, the same after a save/load round
    trip of the optimizer (resuming depends on it)."""
    from training.config import SCHEDULE_CONFIGS

    config = next(cls() for cls in SCHEDULE_CONFIGS if cls.__dataclass_fields__["name"].default == name)
    optimizer = build_optimizer(OptimizerConfig(name="sgd", learning_rate=0.05), config, global_batch=8,
                                steps_per_epoch=10, epochs=20)
    first = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert 0 < first <= 0.1 and float(keras.ops.convert_to_numpy(restored.learning_rate)) == pytest.approx(first)
    schedule = optimizer._learning_rate
    if callable(schedule):  # a LearningRateSchedule: its rate moves with the step
        later = [float(schedule(step)) for step in (0, 55, 199)]
        assert len(set(round(value, 9) for value in later)) > 1, later
