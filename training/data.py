"""The tf.data input pipeline: a straight chain of small functions over the shards of a manifest.

Training: epochs, each its own stream keyed by (seed, epoch): list shards → shuffle files →
interleave parallel reads → shuffle records → parse (schema owned by ``data_prep``) →
[class-balanced resampling] → number the examples (each one's random seed) → decode only the crop
window at the smallest sufficient DCT scale → resize → augment → labels dict; then batch
(``drop_remainder``) → prefetch. Every random draw is stateless and derived from (seed, epoch,
example number), so epoch e is the same whether the run started there or was resumed there — a
resumed process never replays epoch 1's order and augmentation — and with ``deterministic`` the
whole run is reproducible. Evaluation has its own builder: deterministic order, no
repeat, no augmentation. Images leave the pipeline as pixels in [0, 255] — uint8 unless the
host augmented them — and the model normalises them (``models.layers.PixelNormalization``) unless
``data.normalize_in: pipeline``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, FrozenSet, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from common.registry import Registry
from data_prep import schema
from data_prep.manifest import shard_paths
from models.layers import PIXEL_MODES
from training.augment import Step, apply_host
from training.windows import CROPS, base_window, decode, native_window, random_window, stored_shape

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """Everything the pipeline functions need, derived once from config + manifest."""

    heads: Tuple[str, ...]
    num_classes: Dict[str, int]
    image_size: int
    one_hot_heads: FrozenSet[str] = frozenset()
    crop_to_bbox: bool = False
    bbox_margin: float = 0.1
    augment: Tuple[Step, ...] = ()  # host steps (empty when augmenting on the device)
    crop: Optional[Step] = None  # the preset's random_resized_crop (always on the host)
    pixels: Optional[str] = None  # normalise in the pipeline with this PIXEL_MODES key (None: in the model)
    class_weights: Optional[Dict[str, np.ndarray]] = None  # sample weight per class id, per head
    resample_head: Optional[str] = None
    resample_counts: Optional[np.ndarray] = None


def split_files(manifest_dir: str, manifest: dict, split: str) -> list:
    return shard_paths(manifest_dir, manifest, split)


# --- per-example functions --------------------------------------------------------------------

def parse(serialized, spec: PipelineSpec):
    return schema.parse_example(serialized, spec.heads)


def to_model_input(image, spec: PipelineSpec, seed=None):
    """Resize to the model's size (unless the crop already has it), augment (training, host), normalise.

    When no float work is left on the host the image leaves as uint8: a quarter of the bytes through
    batching, prefetching and the host-to-device copy (the model casts and normalises).
    """
    size = spec.image_size
    shape = tf.shape(image)
    exact = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    augment = seed is not None and bool(spec.augment)
    if not (augment or spec.pixels):
        image = tf.cond(exact, lambda: image,
                        lambda: tf.cast(tf.round(tf.image.resize(image, [size, size])), tf.uint8))
        return tf.ensure_shape(image, [size, size, 3])
    image = tf.cond(exact, lambda: tf.cast(image, tf.float32), lambda: tf.image.resize(image, [size, size]))
    if augment:
        image = apply_host(image / 255.0, spec.augment, seed) * 255.0
    image = tf.ensure_shape(image, [size, size, 3])
    if spec.pixels:
        image = pipeline_normalised(image, spec.pixels)
    return image


def pipeline_normalised(image, mode: str):
    """The backbone's pixel normalisation (:data:`models.layers.PIXEL_MODES`) with TensorFlow ops: the
    pipeline runs in tf.data whatever Keras' backend."""
    pixel = PIXEL_MODES.get(mode)
    if pixel.bgr:
        image = tf.reverse(image, axis=[-1])
    return image * pixel.scale + tf.constant(pixel.offset, image.dtype)


def targets(parsed, spec: PipelineSpec):
    """Labels keyed by head name: integer ids (-1 unknown), one-hot only where a loss needs it."""
    labels = {}
    for head in spec.heads:
        label = tf.cast(parsed[schema.label_key(head)], tf.int32)
        labels[head] = tf.one_hot(label, spec.num_classes[head]) if head in spec.one_hot_heads else label
    return labels


def sample_weights(parsed, spec: PipelineSpec):
    """Class weights as per-head sample weights (unknown labels weigh 0; other heads 1)."""
    weights = {}
    for head in spec.heads:
        label = tf.cast(parsed[schema.label_key(head)], tf.int32)
        if spec.class_weights and head in spec.class_weights:
            table = tf.constant(spec.class_weights[head], tf.float32)
            weights[head] = tf.where(label >= 0, tf.gather(table, tf.maximum(label, 0)), 0.0)
        else:
            weights[head] = tf.ones([], tf.float32)
    return weights


def train_example(parsed, spec: PipelineSpec, seed):
    """One training example; ``seed`` (shape [2]) drives its crop and augmentation."""
    crop_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    encoded = parsed[schema.IMAGE]
    window = base_window(parsed, stored_shape(parsed), spec.crop_to_bbox, spec.bbox_margin)
    if spec.crop is not None:
        window = random_window(window, spec.crop, spec.image_size, crop_seed)
    image = to_model_input(decode(encoded, window, spec.crop, spec.image_size), spec, augment_seed)
    if spec.class_weights:
        return image, targets(parsed, spec), sample_weights(parsed, spec)
    return image, targets(parsed, spec)


def eval_example(parsed, spec: PipelineSpec):
    encoded = parsed[schema.IMAGE]
    window = base_window(parsed, stored_shape(parsed), spec.crop_to_bbox, spec.bbox_margin)
    if spec.crop is not None and CROPS.get(spec.crop.name).native:  # evaluate the centre window
        window = native_window(window, spec.image_size)
    return (to_model_input(decode(encoded, window, spec.crop, spec.image_size), spec),
            targets(parsed, spec))


# --- datasets ---------------------------------------------------------------------------------

# stateless seeds are (epoch key, stream · 2^40 + number): each use draws from its own stream
FILE_STREAM, RECORD_STREAM, RESAMPLE_STREAM, EXAMPLE_STREAM = 1, 2, 3, 4


def epoch_key(seed: int, epoch):
    """An int64 key of (run seed, epoch) for an epoch's shuffles and stateless draws."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


def example_seed(key, stream: int, number):
    """The stateless seed (shape [2]) of the ``number``-th element of an epoch's ``stream``."""
    return tf.stack([key, stream * (1 << 40) + tf.cast(number, tf.int64)])


def permuted(elements, seed):
    """The rows of ``elements`` (a tensor or a dict of tensors) in a random order drawn from ``seed``."""
    count = tf.shape(tf.nest.flatten(elements)[0])[:1]
    order = tf.argsort(tf.random.stateless_uniform(count, seed))
    return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda rows: tf.gather(rows, order), elements))


def shuffled_files(files: Sequence[str], key):
    """Every file once per pass, each pass in its own order, endlessly."""
    names = tf.constant(list(files))
    return tf.data.Dataset.range(tf.int64.max).flat_map(
        lambda number: permuted(names, example_seed(key, FILE_STREAM, number)))


def block_shuffle(dataset, size: int, key, stream: int):
    """Shuffle within consecutive blocks of ``size`` elements (memory as a shuffle buffer of that size).

    ``Dataset.shuffle`` cannot take a seed computed per epoch inside the pipeline; a stateless
    permutation per block can, and with interleaved reads from many shards a block is well mixed.
    """
    return dataset.batch(size).enumerate().flat_map(
        lambda number, block: permuted(block, example_seed(key, stream, number)))


def resample(dataset, spec: PipelineSpec, key, shuffle_buffer: int):
    """Class-balanced sampling on ``spec.resample_head`` by repetition, then a shuffle.

    Each parsed record is emitted ⌊w⌋ or ⌈w⌉ times (random, mean ``w``, the balanced class weight
    of its class: target share / actual share, mean 1 over the examples), so rare
    classes are repeated (and augmented differently after decoding) and common ones thinned.
    Unlike ``rejection_resample`` nothing is read only to be thrown away on rare classes.
    """
    table = tf.constant(class_weights_from_counts(spec.resample_counts))
    label = schema.label_key(spec.resample_head)

    def repeated(number, parsed):
        weight = tf.gather(table, tf.maximum(tf.cast(parsed[label], tf.int32), 0))
        whole = tf.floor(weight)
        coin = tf.random.stateless_uniform([], example_seed(key, RESAMPLE_STREAM, number))
        count = whole + tf.cast(coin < weight - whole, tf.float32)
        return tf.data.Dataset.from_tensors(parsed).repeat(tf.cast(count, tf.int64))

    return block_shuffle(dataset.enumerate().flat_map(repeated), shuffle_buffer, key, RESAMPLE_STREAM)


def read_records(path):
    """A TFRecord reader with a large read buffer (fewer round trips to gs://)."""
    return tf.data.TFRecordDataset(path, buffer_size=8 << 20)


def epoch_examples(files: Sequence[str], spec: PipelineSpec, key, shuffle_buffer: int, deterministic: bool):
    """One epoch's endless stream of training examples, ordered and augmented by ``key`` alone."""
    dataset = shuffled_files(files, key).interleave(read_records, cycle_length=max(1, min(16, len(files))),
                                                    num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    dataset = block_shuffle(dataset, shuffle_buffer, key, RECORD_STREAM)
    if spec.resample_head:
        parsed = dataset.map(lambda record: parse(record, spec), num_parallel_calls=AUTOTUNE)
        return resample(parsed, spec, key, shuffle_buffer).enumerate().map(
            lambda number, parsed: train_example(parsed, spec, example_seed(key, EXAMPLE_STREAM, number)),
            num_parallel_calls=AUTOTUNE)
    return dataset.enumerate().map(
        lambda number, record: train_example(parse(record, spec), spec, example_seed(key, EXAMPLE_STREAM, number)),
        num_parallel_calls=AUTOTUNE)


def train_dataset(files: Sequence[str], spec: PipelineSpec, global_batch: int, seed: int,
                  examples_per_epoch: Optional[int] = None, first_epoch: int = 0, drop_remainder: bool = True,
                  shuffle_buffer: int = 2048, deterministic: bool = False) -> tf.data.Dataset:
    """Endless, shuffled, augmented training batches, epoch by epoch from ``first_epoch``.

    Epoch e is ``examples_per_epoch`` examples (steps × global batch) drawn with the key (seed, e);
    without ``examples_per_epoch`` the first epoch never ends. ``deterministic: False`` lets parallel
    reads deliver in whatever order they finish (faster); each epoch still draws its own order and
    augmentation.
    """
    def epoch(index):
        examples = epoch_examples(files, spec, epoch_key(seed, index), shuffle_buffer, deterministic)
        return examples.take(examples_per_epoch) if examples_per_epoch else examples

    options = tf.data.Options()
    options.deterministic = deterministic
    dataset = tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(epoch)
    dataset = dataset.batch(global_batch, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE).with_options(options)


def _weighted(image, labels, weight: float):
    return image, labels, {head: tf.constant(weight, tf.float32) for head in labels}


def padded(dataset, examples: int, batch: int, batches: Optional[int] = None):
    """Append zero-weight copies of the first example until every batch is full.

    Several replicas (or a TPU) need whole global batches: a partial last batch would leave a replica
    empty (BatchNorm fails) or break static shapes. With padding every real example is evaluated once
    and the copies weigh nothing; accuracy is exact, and ``padding_factor`` corrects mean losses,
    which Keras divides by the element count including zero weights. ``batches`` pads further, to a
    number of batches every process of a multi-host run has (they step together).
    """
    total = (batches or -(-examples // batch)) * batch
    real = dataset.map(lambda image, labels: _weighted(image, labels, 1.0))
    filler = dataset.take(1).map(lambda image, labels: _weighted(image, labels, 0.0)).repeat(total - examples)
    return real.concatenate(filler)


def padding_factor(examples: int, batch: int) -> float:
    """Multiply a padded evaluation's mean losses by this to get the mean over real examples."""
    return (-(-examples // batch) * batch) / examples


def eval_dataset(files: Sequence[str], spec: PipelineSpec, batch: int, examples: Optional[int] = None,
                 pad: bool = False, with_ids: bool = False, batches: Optional[int] = None) -> tf.data.Dataset:
    """One pass over a split in a fixed order, no augmentation.

    ``examples`` (from the manifest) declares the number of batches, which Keras uses for progress
    and to know the pass is complete rather than "out of data". ``pad`` fills the last batch with
    zero-weight copies (see :func:`padded`); it needs ``examples``. ``with_ids`` adds each record's
    ``image/id`` as a third element (evaluation reports, retrieval). ``batches`` (with ``pad``): pad
    to that many batches.
    """
    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    dataset = dataset.interleave(read_records, cycle_length=max(1, min(4, len(files))),
                                 num_parallel_calls=AUTOTUNE, deterministic=True)
    if with_ids:
        def example(record):
            parsed = parse(record, spec)
            return eval_example(parsed, spec) + (parsed[schema.IMAGE_ID],)
    else:
        def example(record):
            return eval_example(parse(record, spec), spec)
    dataset = dataset.map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
    if pad:
        dataset = padded(dataset, examples, batch, batches)
    dataset = dataset.batch(batch, drop_remainder=pad)
    if examples is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches or -(-examples // batch)))
    return dataset.prefetch(AUTOTUNE)


BALANCES: Registry[Callable] = Registry("class balance", where="data.class_balance")


# name → PipelineSpec fields, from ``counts()`` (the training class counts of ``head``) and ``head``
@BALANCES.register("none")
def _no_balance(counts: Callable[[], np.ndarray], head: str) -> dict:
    return {}


@BALANCES.register("weights")
def _weights(counts: Callable[[], np.ndarray], head: str) -> dict:
    """Per-example loss weights N / (C·n_c) on ``head``."""
    return {"class_weights": {head: class_weights_from_counts(counts())}}


@BALANCES.register("resample")
def _resample(counts: Callable[[], np.ndarray], head: str) -> dict:
    """Report 001's weighted sampler (see :func:`resample`)."""
    return {"resample_head": head, "resample_counts": counts()}


def class_weights_from_counts(counts: Sequence[int]) -> np.ndarray:
    """Balanced class weights ``N / (C · n_c)`` (classes absent from training get 0).

    Their mean over the training examples is 1; used as loss weights (``class_balance: weights``)
    and as emission rates for class-balanced sampling (``resample``).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)
