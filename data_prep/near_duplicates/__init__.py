"""Near-duplicate photos and label conflicts of a build, in stages:

1. :mod:`.candidates` — every image's 64-bit pHash, and the pairs within ``--hamming-threshold`` bits;
2. :mod:`.same_photo` — each candidate pair verified as the same photo (thumbnail detail over slight crops);
3. :mod:`.label_conflicts` — verified pairs whose labels differ, and what the build does with them;
4. :mod:`.contact_sheet` — the CSVs and the contact sheet a build writes.

:mod:`.pairs` runs the stages for the build (before planning and after writing).
"""
from __future__ import annotations

from data_prep.near_duplicates.contact_sheet import CONTACT_SHEET, LABEL_CONFLICTS, NEAR_DUPLICATES
from data_prep.near_duplicates.pairs import grouped_hashes, label_conflicts_first, near_duplicate_report

__all__ = ["CONTACT_SHEET", "LABEL_CONFLICTS", "NEAR_DUPLICATES", "grouped_hashes", "label_conflicts_first",
           "near_duplicate_report"]
