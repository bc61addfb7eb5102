"""Evaluation and use of trained models: ``eval.test`` (metrics, report), ``eval.compare``,
``eval.curves``, ``eval.retrieval`` (kNN on embeddings), ``eval.predict``, ``eval.export`` and the
listing-form web demo ``eval.app``.

TensorFlow is imported here, once, with its start-up chatter filtered.
"""
from common import backend
from common.cli import quiet_tensorflow

backend.choose()  # before anything imports Keras: KERAS_BACKEND if set, JAX on a TPU, else TensorFlow
quiet_tensorflow()
