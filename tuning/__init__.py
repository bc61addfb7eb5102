"""Hyperparameter search with keras-tuner (``python -m tuning.hyperband``).

:mod:`.space` declares search spaces as YAML over training-config keys, :mod:`.hypermodel` builds and
trains trials as run plans of :mod:`training.plan`, :mod:`.search` runs the search and
:mod:`.results` writes the trials table, a plot of the search and the best configuration as a
complete training config.
"""
from common import backend

backend.choose()  # before anything imports Keras: KERAS_BACKEND if set, JAX on a TPU, else TensorFlow
