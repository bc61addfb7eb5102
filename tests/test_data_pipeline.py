"""The tf.data pipeline on real shards: shapes, labels, crops, DCT decoding, balance, determinism."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_prep import schema
from data_prep.manifest import load_manifest
from training.windows import decode_window
from training.augment import PRESETS, crop_step
from training.data import (BALANCES, PipelineSpec, class_weights_from_counts, eval_dataset, split_files,
                           train_dataset)


@pytest.fixture(scope="module")
def shards(tiny_shards):
    manifest = load_manifest(str(tiny_shards))
    heads = tuple(manifest["heads"])
    return str(tiny_shards), manifest, heads, {h: manifest["heads"][h]["num_classes"] for h in heads}


def test_training_batches(shards):
    folder, manifest, heads, classes = shards
    spec = PipelineSpec(heads, classes, 48, one_hot_heads=frozenset({"make"}), augment=PRESETS.get("basic"),
                        crop=crop_step(PRESETS.get("basic")))
    images, labels = next(iter(train_dataset(split_files(folder, manifest, "train"), spec, 8, seed=0)))
    assert images.shape == (8, 48, 48, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert set(labels) == set(heads)
    assert labels["make"].shape == (8, classes["make"])  # one-hot only where asked
    assert labels["model"].dtype == tf.int32 and labels["model"].shape == (8,)
    assert int(tf.reduce_min(labels["type"])) >= -1  # unknown body types stay -1


def test_normalising_in_the_pipeline(shards):
    folder, manifest, heads, classes = shards
    images, _ = next(iter(eval_dataset(split_files(folder, manifest, "test"), PipelineSpec(heads, classes, 32,
                                                                                           pixels="symmetric"), 8)))
    assert images.dtype == tf.float32 and -1.0 <= float(tf.reduce_min(images)) < 0 < float(tf.reduce_max(images)) <= 1
    raw, _ = next(iter(eval_dataset(split_files(folder, manifest, "test"), PipelineSpec(heads, classes, 32), 8)))
    assert raw.dtype == tf.uint8  # normalised in the model: uint8 leaves the host


def test_evaluation_is_deterministic_and_complete(shards):
    folder, manifest, heads, classes = shards
    spec = PipelineSpec(heads, classes, 32)
    dataset = eval_dataset(split_files(folder, manifest, "test"), spec, 5, examples=manifest["splits"]["test"]["examples"])
    first = np.concatenate([labels["model"].numpy() for _, labels in dataset])
    second = np.concatenate([labels["model"].numpy() for _, labels in dataset])
    assert len(first) == manifest["splits"]["test"]["examples"] and (first == second).all()
    counts = manifest["splits"]["test"]["class_counts"]["model"]["per_class"]
    assert np.bincount(first, minlength=len(counts)).tolist() == counts
    assert int(dataset.cardinality()) == -(-len(first) // 5)


def test_decode_window_uses_dct_scaling_and_the_right_region():
    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[:, :300] = (250, 20, 20)
    pixels[:, 300:] = (20, 20, 250)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    encoded = tf.constant(buffer.getvalue())
    coarse = decode_window(encoded, tf.constant([0, 0, 400, 600]), target=48)  # 1/8 scale is enough
    assert coarse.shape == (50, 75, 3)
    right_half = decode_window(encoded, tf.constant([40, 320, 320, 240]), target=100)  # 1/2 scale
    assert right_half.shape == (160, 120, 3)
    assert float(tf.reduce_mean(tf.cast(right_half[..., 2], tf.float32))) > 200  # blue side only
    full = decode_window(encoded, tf.constant([0, 0, 400, 600]), target=400)
    assert full.shape == (400, 600, 3)


def test_bbox_crop_at_read_time(shards, stanford_tree):
    folder, manifest, heads, classes = shards
    spec = PipelineSpec(heads, classes, 32, crop_to_bbox=True, bbox_margin=0.0)
    crops = eval_dataset(split_files(folder, manifest, "test"), spec, 4)
    whole = eval_dataset(split_files(folder, manifest, "test"), PipelineSpec(heads, classes, 32), 4)
    images_crop = next(iter(crops))[0].numpy()
    images_whole = next(iter(whole))[0].numpy()
    assert images_crop.shape == images_whole.shape and not np.allclose(images_crop, images_whole)
    record = next(iter(tf.data.TFRecordDataset(split_files(folder, manifest, "test"))))
    parsed = schema.parse_example(record, heads)
    ymin, xmin, ymax, xmax = parsed[schema.BBOX].numpy()
    height, width = int(parsed[schema.HEIGHT]), int(parsed[schema.WIDTH])
    decoded = tf.io.decode_jpeg(parsed[schema.IMAGE], channels=3).numpy()
    box = decoded[int(np.floor(ymin * height)):int(np.ceil(ymax * height)),
                  int(np.floor(xmin * width)):int(np.ceil(xmax * width))]
    expected = tf.image.resize(tf.cast(box, tf.float32), [32, 32]).numpy()
    assert np.abs(expected - images_crop[0]).mean() < 12  # same region (JPEG DCT scaling differs slightly)


def test_class_weights_and_balanced_sampling(shards):
    folder, manifest, heads, classes = shards
    counts = np.array(manifest["splits"]["train"]["class_counts"]["model"]["per_class"])
    weights = class_weights_from_counts(counts)
    assert np.average(weights, weights=counts) == pytest.approx(1.0, rel=1e-5)
    assert np.allclose((weights * counts)[counts > 0], counts.sum() / (counts > 0).sum(), rtol=1e-5)
    spec = PipelineSpec(heads, classes, 32, class_weights={"model": weights}, resample_head="model",
                        resample_counts=counts)
    batch = next(iter(train_dataset(split_files(folder, manifest, "train"), spec, 512, seed=1)))
    images, labels, sample_weights = batch
    assert set(sample_weights) == set(heads) and float(tf.reduce_max(sample_weights["make"])) == 1.0
    drawn = np.bincount(labels["model"].numpy(), minlength=len(counts))
    assert drawn[counts > 0].std() / drawn[counts > 0].mean() < 0.3  # near-uniform over present classes
    # declare class 0 ten times more common than it is: the sampler must thin it out accordingly
    inflated = counts.copy()
    inflated[0] *= 10
    thinned = PipelineSpec(heads, classes, 32, resample_head="model", resample_counts=inflated)
    labels = next(iter(train_dataset(split_files(folder, manifest, "train"), thinned, 512, seed=1)))[1]["model"]
    assert np.mean(labels.numpy() == 0) < np.mean(drawn[0] / drawn.sum()) / 3


def test_padded_evaluation_counts_every_example_once(shards):
    """Several replicas / TPU: whole batches, zero-weight padding; accuracy exact, loss corrected."""
    import keras

    from models.build import build_model
    from training.config import ModelConfig
    from training.data import padding_factor
    from training.losses import SparseCategoricalCrossentropy
    from training.metrics import HeadAccuracy

    folder, manifest, heads, classes = shards
    examples = manifest["splits"]["test"]["examples"]
    spec = PipelineSpec(heads, classes, 32)
    batch = 7 if examples % 7 else 8
    padded = eval_dataset(split_files(folder, manifest, "test"), spec, batch, examples=examples, pad=True)
    weights = np.concatenate([w["model"].numpy() for _, _, w in padded])
    assert len(weights) % batch == 0 and weights.sum() == examples and len(weights) > examples
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(backbone="custom_cnn", weights="none", head="linear"), classes, 32)
    model.compile(loss={h: SparseCategoricalCrossentropy() for h in heads},
                  weighted_metrics={h: [HeadAccuracy()] for h in heads})
    plain = model.evaluate(eval_dataset(split_files(folder, manifest, "test"), spec, batch, examples=examples),
                           return_dict=True, verbose=0)
    filled = model.evaluate(padded, return_dict=True, verbose=0)
    assert filled["model_accuracy"] == pytest.approx(plain["model_accuracy"])
    images, labels = zip(*[(x, y["model"].numpy()) for x, y in eval_dataset(split_files(folder, manifest, "test"),
                                                                            spec, 64)])
    probabilities = model.predict(tf.concat(images, 0), verbose=0)["model"]
    labels = np.concatenate(labels)
    true_mean = np.mean(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1)))
    # exact; Keras' own unpadded mean weighs the short last batch like a full one
    assert filled["model_loss"] * padding_factor(examples, batch) == pytest.approx(true_mean, rel=1e-5)


def test_random_crop_at_native_resolution_needs_no_resize(shards):
    """random_crop: an output-sized window decoded as is (train), the centre window (evaluation)."""
    import io

    from PIL import Image

    from training.augment import step

    folder, manifest, heads, classes = shards
    spec = PipelineSpec(heads, classes, 32, crop=step("random_crop", 1.0))
    images, _ = next(iter(train_dataset(split_files(folder, manifest, "train"), spec, 4, seed=0)))
    assert images.dtype == tf.uint8 and images.shape == (4, 32, 32, 3)
    record = next(iter(tf.data.TFRecordDataset(split_files(folder, manifest, "test"))))
    parsed = schema.parse_example(record, heads)
    full = np.asarray(Image.open(io.BytesIO(parsed[schema.IMAGE].numpy())).convert("RGB"))
    height, width = full.shape[:2]
    centre = full[(height - 32) // 2:(height - 32) // 2 + 32, (width - 32) // 2:(width - 32) // 2 + 32]
    evaluated = next(iter(eval_dataset(split_files(folder, manifest, "test"), spec, 1)))[0][0].numpy()
    assert np.abs(evaluated.astype(int) - centre.astype(int)).mean() < 3  # same pixels, no resampling


@pytest.mark.parametrize("preset, resample", [("report000", False), ("report004_as_written", True)])
def test_each_epoch_draws_its_own_order_and_augmentation_and_a_resume_draws_the_same(shards, preset, resample):
    """Epoch e's examples and their random crops, flips, rotations, colours … depend on (seed, e) only:
    a run resumed at epoch 1 sees what an uninterrupted run sees in its epoch 1 — and never epoch 0's
    draws again (the replay that made resumed runs train differently)."""
    folder, manifest, heads, classes = shards
    steps = PRESETS.get(preset)
    counts = np.array(manifest["splits"]["train"]["class_counts"]["model"]["per_class"])
    spec = PipelineSpec(heads, classes, 32, augment=steps, crop=crop_step(steps),
                        resample_head="model" if resample else None, resample_counts=counts if resample else None)

    def batches(first_epoch, count):
        dataset = train_dataset(split_files(folder, manifest, "train"), spec, 4, seed=3, examples_per_epoch=8,
                                first_epoch=first_epoch, deterministic=True)
        return [(images.numpy(), labels["model"].numpy()) for images, labels in dataset.take(count)]

    uninterrupted, resumed = batches(0, 4), batches(1, 2)  # two batches per epoch
    for (images, labels), (again, same) in zip(uninterrupted[2:], resumed):
        np.testing.assert_array_equal(images, again)
        np.testing.assert_array_equal(labels, same)
    first, second = np.concatenate([b[0] for b in uninterrupted[:2]]), np.concatenate([b[0] for b in resumed])
    assert np.abs(first.astype(float) - second.astype(float)).mean() > 10  # a new epoch is not a replay


@pytest.mark.parametrize("balance", BALANCES.names())
def test_every_class_balance_through_the_plan(tiny_shards, balance):
    from tests.helpers import tiny_config
    from training.plan import make_plan, training_data

    plan = make_plan(tiny_config(tiny_shards, data={"class_balance": balance, "balance_head": "model"},
                                 training={"strategy": "cpu"}))
    spec, counts = plan.pipeline, plan.shards.counts("train", "model")
    batch = next(iter(training_data(plan)[0]))
    if balance == "weights":
        assert np.allclose(spec.class_weights["model"], class_weights_from_counts(counts)) and len(batch) == 3
    elif balance == "resample":
        assert spec.resample_head == "model" and list(spec.resample_counts) == list(counts) and len(batch) == 2
    else:
        assert spec.class_weights is None and spec.resample_head is None and len(batch) == 2
