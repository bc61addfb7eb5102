"""Evaluation and use of trained models: ``eval.test`` (metrics, report), ``eval.compare``,
``eval.curves``, ``eval.retrieval`` (kNN on embeddings), ``eval.predict``, ``eval.export`` and the
listing-form web demo ``eval.app``.

TensorFlow is imported here, once, with its start-up chatter filtered.
"""
from common.cli import quiet_tensorflow

quiet_tensorflow()
