"""A split of the shards read the way the model was evaluated during training, and its predictions."""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from common.errors import UserError
from data_prep import schema
from data_prep.integrity import reading_shards, require_shards
from data_prep.manifest import shard_paths
from training import augment
from training.data import PipelineSpec, eval_dataset, eval_example, parse, read_records


def eval_spec(image_size: int, manifest: dict, config=None):
    """The evaluation pipeline: the run's box crop and centre-crop settings, uint8 pixels out.

    Normalisation is left to the predictor (it is part of the model or of its serving function).
    """
    heads = tuple(manifest["heads"])
    classes = {head: manifest["heads"][head]["num_classes"] for head in heads}
    if config is None:
        return PipelineSpec(heads, classes, image_size)
    crop = augment.crop_step(augment.PRESETS.get(config.data.augment))
    return PipelineSpec(heads, classes, image_size, crop_to_bbox=config.data.crop_to_bbox,
                        bbox_margin=config.data.bbox_margin, crop=crop)


def check_split(manifest: dict, split: str) -> None:
    if split not in manifest["splits"] or not manifest["splits"][split]["examples"]:
        have = [name for name, entry in manifest["splits"].items() if entry["examples"]]
        raise UserError(f"--split: the manifest has no {split!r} examples; splits with examples: "
                        f"{', '.join(have) or 'none'}")


def batches(shards: str, manifest: dict, split: str, image_size: int, batch_size: int,
            config=None) -> Iterator[Tuple[np.ndarray, Dict[str, np.ndarray], list]]:
    """``(uint8 images, {head: labels}, ids)`` batches of ``split`` in a fixed order."""
    check_split(manifest, split)
    require_shards(shards, manifest, [split])
    spec = eval_spec(image_size, manifest, config)
    dataset = eval_dataset(shard_paths(shards, manifest, split), spec, batch_size, with_ids=True)
    with reading_shards(shards, manifest, [split]):
        for images, labels, ids in dataset.as_numpy_iterator():
            yield images, labels, [value.decode("utf-8") for value in ids]


def collect(shards: str, manifest: dict, split: str, image_size: int, batch_size: int,
            function: Callable[[np.ndarray], Dict[str, np.ndarray]], config=None,
            keep_images: int = 0) -> Dict[str, object]:
    """Apply ``function`` to every batch: ``{"outputs": {name: [N, …]}, "labels": {head: [N]}, "ids": [N],
    "images": the first ``keep_images`` images}``."""
    outputs, labels, ids, kept = {}, {}, [], []
    for images, batch_labels, batch_ids in batches(shards, manifest, split, image_size, batch_size, config):
        for name, value in function(images).items():
            outputs.setdefault(name, []).append(np.asarray(value))
        for head, value in batch_labels.items():
            labels.setdefault(head, []).append(value)
        ids += batch_ids
        if len(kept) < keep_images:
            kept += list(images[:keep_images - len(kept)])
    return {"outputs": {name: np.concatenate(values) for name, values in outputs.items()},
            "labels": {head: np.concatenate(values) for head, values in labels.items()}, "ids": ids,
            "images": np.stack(kept) if kept else None}


def with_tta(predict: Callable[[np.ndarray], Dict[str, np.ndarray]]):
    """Test-time augmentation: the mean of the predictions for the image and its mirror image."""
    def averaged(images):
        plain, mirrored = predict(images), predict(np.ascontiguousarray(images[:, :, ::-1]))
        return {head: (plain[head] + mirrored[head]) / 2 for head in plain}

    return averaged


def predict_split(predictor, shards: str, manifest: dict, split: str, batch_size: int = 32, tta: bool = False,
                  config=None, predict: Optional[Callable[[np.ndarray], Dict[str, np.ndarray]]] = None
                  ) -> Dict[str, object]:
    """``{"probs": {head: [N, C]}, "labels": {head: [N]}, "ids": [N]}`` over ``split`` (``predict``:
    instead of the predictor's own, e.g. one that also returns embeddings)."""
    predict = predict or predictor.predict
    predict = with_tta(predict) if tta else predict
    result = collect(shards, manifest, split, predictor.image_size, batch_size, predict, config)
    return {"probs": result["outputs"], "labels": result["labels"], "ids": result["ids"]}


def images_by_id(shards: str, manifest: dict, split: str, image_size: int, wanted,
                 config=None) -> Dict[str, np.ndarray]:
    """The evaluation images of the records of ``split`` whose id is in ``wanted`` (others are not decoded)."""
    if not wanted:
        return {}
    spec = eval_spec(image_size, manifest, config)
    table = tf.constant(sorted(set(wanted)))
    dataset = tf.data.Dataset.from_tensor_slices(shard_paths(shards, manifest, split)).flat_map(read_records)
    dataset = dataset.map(lambda record: parse(record, spec))
    dataset = dataset.filter(lambda parsed: tf.reduce_any(tf.equal(parsed[schema.IMAGE_ID], table)))
    dataset = dataset.map(lambda parsed: (eval_example(parsed, spec)[0], parsed[schema.IMAGE_ID]))
    with reading_shards(shards, manifest, [split]):
        return {key.decode("utf-8"): image for image, key in dataset.as_numpy_iterator()}
