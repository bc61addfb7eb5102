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
from typing import Dict, FrozenSet, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from data_prep import schema
from data_prep.manifest import shard_paths
from training.augment import Step, apply_host

AUTOTUNE = tf.data.AUTOTUNE
DCT_RATIOS = (8, 4, 2, 1)


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


def base_window(parsed, shape, spec: PipelineSpec):
    """(y, x, height, width) in pixels of the region to use: the bbox (+margin) or the whole image."""
    if not spec.crop_to_bbox:
        return tf.stack([0, 0, shape[0], shape[1]])
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(parsed[schema.BBOX])
    grow_y, grow_x = spec.bbox_margin * (ymax - ymin), spec.bbox_margin * (xmax - xmin)
    top = tf.minimum(tf.cast(tf.floor(tf.maximum(0.0, ymin - grow_y) * height), tf.int32), shape[0] - 1)
    left = tf.minimum(tf.cast(tf.floor(tf.maximum(0.0, xmin - grow_x) * width), tf.int32), shape[1] - 1)
    bottom = tf.minimum(tf.cast(tf.math.ceil(tf.minimum(1.0, ymax + grow_y) * height), tf.int32), shape[0])
    right = tf.minimum(tf.cast(tf.math.ceil(tf.minimum(1.0, xmax + grow_x) * width), tf.int32), shape[1])
    return tf.stack([top, left, tf.maximum(1, bottom - top), tf.maximum(1, right - left)])


def native_window(window, size: int, seed=None):
    """A ``size``×``size`` window inside ``window`` (random with ``seed``, else centred) when it fits,
    else ``window``. At native resolution nothing needs resizing afterwards: the cheapest crop for
    pre-sized shards.
    """
    fits = tf.logical_and(window[2] >= size, window[3] >= size)
    if seed is not None:
        offsets = tf.random.stateless_uniform([2], seed, 0, 2 ** 30, dtype=tf.int32)
        dy = offsets[0] % (tf.maximum(window[2] - size, 0) + 1)
        dx = offsets[1] % (tf.maximum(window[3] - size, 0) + 1)
    else:
        dy, dx = tf.maximum(window[2] - size, 0) // 2, tf.maximum(window[3] - size, 0) // 2
    crop = tf.stack([window[0] + dy, window[1] + dx, size, size])
    return tf.where(fits, crop, window)


def random_window(window, step: Step, size: int, seed):
    """The crop step's window: ``random_crop`` (native resolution) or ``random_resized_crop``
    (area fraction ``scale``, aspect ``ratio``), applied with the step's probability."""
    crop_seed, coin_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    if step.name == "random_crop":
        crop = native_window(window, size, seed=crop_seed)
    else:
        params = step.kwargs
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([window[2], window[3], 3]), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=crop_seed, min_object_covered=0.0, aspect_ratio_range=params.get("ratio", (0.75, 1.333)),
            area_range=params.get("scale", (0.08, 1.0)), max_attempts=10, use_image_if_no_bounding_boxes=True)
        crop = tf.stack([window[0] + begin[0], window[1] + begin[1], extent[0], extent[1]])
    if step.probability >= 1.0:
        return crop
    return tf.cond(tf.random.stateless_uniform([], coin_seed) < step.probability, lambda: crop, lambda: window)


def decode_window(encoded, window, target: int):
    """Decode only ``window`` at the coarsest DCT scale (1/8, 1/4, 1/2, 1) that keeps ≥ ``target`` px.

    The window is given in full-resolution pixels; ``decode_and_crop_jpeg`` takes it in scaled ones.
    """
    smaller = tf.minimum(window[2], window[3])

    def decoder(ratio):
        def decode():
            scaled = tf.stack([window[0] // ratio, window[1] // ratio,
                               tf.maximum(1, window[2] // ratio), tf.maximum(1, window[3] // ratio)])
            return tf.io.decode_and_crop_jpeg(encoded, scaled, channels=3, ratio=ratio)
        return decode

    choice = tf.argmax(tf.stack([smaller // ratio >= target for ratio in DCT_RATIOS] + [True]), output_type=tf.int32)
    choice = tf.minimum(choice, len(DCT_RATIOS) - 1)
    return tf.switch_case(choice, [decoder(ratio) for ratio in DCT_RATIOS])


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
        from models.layers import normalise_pixels

        image = normalise_pixels(image, spec.pixels)
    return image


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


def stored_shape(parsed):
    """Height and width from the record (written and verified by data_prep: no JPEG header re-parse)."""
    return tf.cast(tf.stack([parsed[schema.HEIGHT], parsed[schema.WIDTH]]), tf.int32)


def decode(encoded, window, spec: PipelineSpec):
    """A native-resolution crop is decoded as is; anything else at the best DCT scale."""
    if spec.crop is not None and spec.crop.name == "random_crop" and spec.crop.probability >= 1.0:
        fits = tf.logical_and(tf.equal(window[2], spec.image_size), tf.equal(window[3], spec.image_size))
        return tf.cond(fits, lambda: tf.io.decode_and_crop_jpeg(encoded, window, channels=3),
                       lambda: decode_window(encoded, window, spec.image_size))
    return decode_window(encoded, window, spec.image_size)


def train_example(parsed, spec: PipelineSpec, seed):
    """One training example; ``seed`` (shape [2]) drives its crop and augmentation."""
    crop_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    encoded = parsed[schema.IMAGE]
    window = base_window(parsed, stored_shape(parsed), spec)
    if spec.crop is not None:
        window = random_window(window, spec.crop, spec.image_size, crop_seed)
    image = to_model_input(decode(encoded, window, spec), spec, augment_seed)
    if spec.class_weights:
        return image, targets(parsed, spec), sample_weights(parsed, spec)
    return image, targets(parsed, spec)


def eval_example(parsed, spec: PipelineSpec):
    encoded = parsed[schema.IMAGE]
    window = base_window(parsed, stored_shape(parsed), spec)
    if spec.crop is not None and spec.crop.name == "random_crop":  # evaluate the centre window
        window = native_window(window, spec.image_size)
    return to_model_input(decode(encoded, window, spec), spec), targets(parsed, spec)


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


def padded(dataset, examples: int, batch: int):
    """Append zero-weight copies of the first example until every batch is full.

    Several replicas (or a TPU) need whole global batches: a partial last batch would leave a replica
    empty (BatchNorm fails) or break static shapes. With padding every real example is evaluated once
    and the copies weigh nothing; accuracy is exact, and ``padding_factor`` corrects mean losses,
    which Keras divides by the element count including zero weights.
    """
    total = -(-examples // batch) * batch
    real = dataset.map(lambda image, labels: _weighted(image, labels, 1.0))
    filler = dataset.take(1).map(lambda image, labels: _weighted(image, labels, 0.0)).repeat(total - examples)
    return real.concatenate(filler)


def padding_factor(examples: int, batch: int) -> float:
    """Multiply a padded evaluation's mean losses by this to get the mean over real examples."""
    return (-(-examples // batch) * batch) / examples


def eval_dataset(files: Sequence[str], spec: PipelineSpec, batch: int, examples: Optional[int] = None,
                 pad: bool = False, with_ids: bool = False) -> tf.data.Dataset:
    """One pass over a split in a fixed order, no augmentation.

    ``examples`` (from the manifest) declares the number of batches, which Keras uses for progress
    and to know the pass is complete rather than "out of data". ``pad`` fills the last batch with
    zero-weight copies (see :func:`padded`); it needs ``examples``. ``with_ids`` adds each record's
    ``image/id`` as a third element (evaluation reports, retrieval).
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
        dataset = padded(dataset, examples, batch)
    dataset = dataset.batch(batch, drop_remainder=pad)
    if examples is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-examples // batch)))
    return dataset.prefetch(AUTOTUNE)


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
