"""``python -m demo``: the main job on the built-in synthetic dataset, end to end.

1. ``data_prep.synthetic`` writes a small Stanford-Cars-layout dataset (devkit .mat files, with the
   real dataset's traps, near-duplicates and a few deliberately bad files);
2. ``data_prep.build`` turns it into stratified TFRecord shards with a manifest;
3. ``data_prep.verify`` re-reads every shard and checks it against the manifest.

Training, tuning and evaluation join this demo as those stages land (see the README's status).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from common.cli import quiet_tensorflow, run_main, setup_logging


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="folder for everything the demo writes")
    parser.add_argument("--images-per-model", type=int, default=20)
    args = parser.parse_args(argv)
    quiet_tensorflow()
    setup_logging()
    from data_prep.build import build_dataset
    from data_prep.options import BuildOptions
    from data_prep.synthetic import generate
    from data_prep.verify import verify_dataset

    raw, shards = os.path.join(args.out, "raw"), os.path.join(args.out, "shards")
    if not os.path.exists(os.path.join(raw, "SYNTHETIC.json")):
        truth = generate("stanford_cars", raw, "devkit", makes=6, models_per_make=4,
                         images_per_model=args.images_per_model, seed=0)
        print(f"1. synthetic dataset: {truth['images']} images of {len(truth['classes'])} classes in {raw}")
    else:
        print(f"1. synthetic dataset already in {raw}")
    print(f"2. building stratified shards (--max-side 256) in {shards}")
    build_dataset(BuildOptions(dataset="stanford_cars", root=raw, out=shards, split="stratified",
                               max_side=256, num_shards=2))
    problems = verify_dataset(shards)
    print(f"3. verify: {'ok' if not problems else f'{len(problems)} problems'} ({shards}/manifest.json)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
