"""Training under TPUStrategy, falling back to GPUs or CPU (``python -m training.fit``). Not built
yet: issue 3."""
