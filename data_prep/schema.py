"""The TFRecord format: the one place that knows how records are written *and* parsed back.

Each record is a ``tf.train.Example`` with

=================  =========  ==============================================================
``image/encoded``  bytes      RGB JPEG
``image/height``   int64      pixels
``image/width``    int64      pixels
``image/id``       bytes      unique, stable id (path relative to the dataset root)
``label/<head>``   int64      class id in the manifest's vocabulary of ``<head>``; -1 = unknown
``bbox``           4 floats   normalised ``ymin, xmin, ymax, xmax`` (0, 0, 1, 1 when unknown)
``viewpoint``      int64      the dataset's viewpoint code (CompCars 1…5), -1 = unknown
=================  =========  ==============================================================

Labels are integer ids only: one-hot vectors are built in the input pipeline when a loss needs
them (the reports stored 1,879 floats per CompCars record). TensorFlow is imported lazily so
that modules importing this one stay light in worker processes.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence

SCHEMA_VERSION = 1
IMAGE = "image/encoded"
HEIGHT = "image/height"
WIDTH = "image/width"
IMAGE_ID = "image/id"
BBOX = "bbox"
VIEWPOINT = "viewpoint"
LABEL_PREFIX = "label/"


def label_key(head: str) -> str:
    """Feature key of a head's label (``label/make``)."""
    return LABEL_PREFIX + head


def serialize_example(encoded: bytes, height: int, width: int, image_id: str,
                      labels: Mapping[str, int], bbox: Sequence[float], viewpoint: int) -> bytes:
    """One serialized ``tf.train.Example`` in the format above."""
    import tensorflow as tf

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    feature = {
        IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        HEIGHT: ints(height),
        WIDTH: ints(width),
        IMAGE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode("utf-8")])),
        BBOX: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in bbox])),
        VIEWPOINT: ints(viewpoint),
    }
    for head, value in labels.items():
        feature[label_key(head)] = ints(value)
    # deterministic: the feature map in a fixed order, so identical builds write identical bytes
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def feature_spec(heads: Sequence[str]) -> Dict[str, object]:
    """``tf.io.parse_example`` spec for records with the given heads."""
    import tensorflow as tf

    spec = {
        IMAGE: tf.io.FixedLenFeature([], tf.string),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
        BBOX: tf.io.FixedLenFeature([4], tf.float32),
        VIEWPOINT: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }
    for head in heads:
        spec[label_key(head)] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def parse_example(serialized, heads: Sequence[str]) -> Dict[str, object]:
    """Parse one serialized record (a scalar string tensor) into a dict of tensors keyed as above."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, feature_spec(heads))


def parse_batch(serialized, heads: Sequence[str]) -> Dict[str, object]:
    """Parse a batch of serialized records (a 1-D string tensor); cheaper than one at a time."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, feature_spec(heads))


def labels_of(parsed: Mapping[str, object], heads: Sequence[str]) -> Dict[str, object]:
    """``{head: label tensor}`` from a parsed record."""
    return {head: parsed[label_key(head)] for head in heads}


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00003-of-00016.tfrec``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrec"
