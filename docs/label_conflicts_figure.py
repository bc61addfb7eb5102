"""Make the README's label-conflict contact sheet (``python docs/label_conflicts_figure.py``).

Writes a small synthetic Stanford Cars dataset with photos filed under two classes and with
look-alike pairs (``data_prep.synthetic --label-conflicts 4 --lookalikes 4``), builds it and copies the
build's ``label_conflicts.png`` to ``docs/label_conflicts.png``. The real Stanford Cars conflicts are
not drawn here: the photos are not redistributed with the project (a build of them writes the same
sheet under ``OUT/``). Prints what the build found against what the generator planted.
"""
import csv
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_prep.build import main as build  # noqa: E402
from data_prep.synthetic import generate  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_conflicts.png")


def main() -> int:
    with tempfile.TemporaryDirectory() as work:
        raw, shards = os.path.join(work, "raw"), os.path.join(work, "shards")
        truth = generate("stanford_cars", raw, "devkit", makes=4, models_per_make=3, images_per_model=12, seed=3,
                         bad_files=False, label_conflicts=4, lookalikes=4)
        build(["--dataset", "stanford_cars", "--root", raw, "--out", shards, "--workers", "1", "--no-progress"])
        manifest = json.load(open(os.path.join(shards, "manifest.json")))
        print("planted:", len(truth["label_conflicts"]), "label conflicts,", len(truth["lookalikes"]), "look-alikes")
        print("found:", manifest["label_conflicts"])
        planted = {frozenset(pair) for pair in truth["label_conflicts"]}
        for row in csv.DictReader(open(os.path.join(shards, "label_conflicts.csv"))):
            pair = frozenset((row["image_id_a"], row["image_id_b"]))
            print(f"  {row['image_id_a']} / {row['image_id_b']}: similarity {row['similarity']}, "
                  f"{'planted' if pair in planted else 'NOT planted (different pictures taken for one photo)'}")
        shutil.copyfile(os.path.join(shards, "label_conflicts.png"), OUT)
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
