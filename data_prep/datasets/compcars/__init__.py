"""CompCars (web-nature data: 163 makes, 1,716 models): the reader and label files (:mod:`.reader`)
and its synthetic twin (:mod:`.synthetic`)."""
from __future__ import annotations

from data_prep.datasets.compcars import reader, synthetic
from data_prep.datasets.registry import DATASETS
from data_prep.readers import DatasetSpec
from data_prep.synthetic.catalog import compcars_classes
from data_prep.synthetic.layouts import SYNTHETIC, SyntheticDataset

DATASETS.register("compcars")(DatasetSpec(
    name="compcars", layouts=(reader.WEB_NATURE,), heads=reader.HEADS, default_split="stratified"))
SYNTHETIC.register("compcars")(SyntheticDataset(synthetic.VARIANTS, compcars_classes, synthetic.VIEWPOINTS,
                                                synthetic.write_compcars))
