"""Stanford Cars (196 classes): the devkit ``.mat`` layouts (:mod:`.devkit`), the Kaggle CSV and
class-folder re-uploads (:mod:`.kaggle`), the class names (:mod:`.names`, ``classes.txt``) and its
synthetic twin (:mod:`.synthetic`)."""
from __future__ import annotations

from data_prep.datasets.registry import DATASETS
from data_prep.datasets.stanford_cars import devkit, kaggle, synthetic
from data_prep.readers import DatasetSpec
from data_prep.synthetic.catalog import stanford_classes
from data_prep.synthetic.layouts import SYNTHETIC, SyntheticDataset

DATASETS.register("stanford_cars")(DatasetSpec(
    name="stanford_cars", layouts=(devkit.DEVKIT, devkit.TORCHVISION, devkit.CAR_IMS, kaggle.KAGGLE),
    heads=devkit.HEADS, default_split="official"))
SYNTHETIC.register("stanford_cars")(SyntheticDataset(
    (synthetic.DEFAULT_VARIANT,) + tuple(v for v in synthetic.VARIANTS if v != synthetic.DEFAULT_VARIANT),
    stanford_classes, (3, 3, 4, 5), synthetic.write_stanford))
