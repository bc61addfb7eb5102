"""Records written by the schema parse back to the same values (single and batched)."""
import numpy as np
import tensorflow as tf

from data_prep import schema


def test_write_parse_round_trip():
    heads = ["make", "model", "year"]
    labels = {"make": 3, "model": 1715, "year": -1}
    serialized = schema.serialize_example(b"\xff\xd8jpeg", 480, 640, "image/1/2/2012/abc.jpg", labels,
                                          (0.1, 0.2, 0.9, 0.8), 4)
    parsed = {key: value.numpy() for key, value in schema.parse_example(tf.constant(serialized), heads).items()}
    assert parsed[schema.IMAGE] == b"\xff\xd8jpeg"
    assert (parsed[schema.HEIGHT], parsed[schema.WIDTH]) == (480, 640)
    assert parsed[schema.IMAGE_ID] == b"image/1/2/2012/abc.jpg"
    assert {head: int(value) for head, value in schema.labels_of(parsed, heads).items()} == labels
    np.testing.assert_allclose(parsed[schema.BBOX], [0.1, 0.2, 0.9, 0.8], rtol=1e-6)
    assert parsed[schema.VIEWPOINT] == 4
    assert parsed[schema.label_key("model")].dtype == np.int64  # integer ids, no one-hot floats
    batch = schema.parse_batch(tf.constant([serialized, serialized]), heads)
    assert batch[schema.label_key("make")].numpy().tolist() == [3, 3]


def test_shard_names():
    assert schema.shard_name("train", 3, 16) == "train-00003-of-00016.tfrec"
