"""Hyperparameter search with keras-tuner (``python -m tuning.hyperband``). Not built yet: issue 4."""
