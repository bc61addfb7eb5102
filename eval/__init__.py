"""Evaluation and use of trained models: ``eval.test`` (metrics, report), ``eval.compare``,
``eval.curves``, ``eval.retrieval`` (kNN on embeddings), ``eval.predict`` and ``eval.export``."""
