"""Hyperparameter search with keras-tuner (``python -m tuning.hyperband``).

:mod:`.space` declares search spaces as YAML over training-config keys, :mod:`.hypermodel` builds and
trains trials with the very functions of :mod:`training` and :mod:`models`, :mod:`.results` writes the
trials table, a plot of the search and the best configuration as a complete training config.
"""
