"""Evaluation, reports, retrieval, prediction and export (``python -m eval.test``). Not built yet:
issue 5."""
