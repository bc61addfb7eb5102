"""Pieces shared by every stage: registries, user-facing errors, file-system helpers, CLI glue."""
