"""``python -m tuning.hyperband --config baseline.yaml [--space report004] …``: hyperparameter search.

Hyperband (default), Bayesian optimisation or random search through keras-tuner over a space declared
in YAML (:mod:`tuning.search`). Running the same command again continues the search. Writes
``trials.csv``, ``search.png`` and ``best.yaml`` (a complete training configuration).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from common import backend
from common.cli import command_parser, quiet_tensorflow, run_main, setup_logging
from training.config import read_config


def parse_args(argv: Optional[Sequence[str]]):
    parser = command_parser("python -m tuning.hyperband", __doc__)
    parser.add_argument("--config", required=True, help="base training config (bare names: configs/)")
    parser.add_argument("--space", default="report004", help="search space YAML (bare names: tuning/spaces/)")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs for the best trials (Hyperband budget)")
    parser.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor (report 004 used 5)")
    parser.add_argument("--objective", default="val_loss", help="val_loss or val_<head>_accuracy, …")
    parser.add_argument("--algorithm", default="hyperband", help="hyperband, bayesian or random")
    parser.add_argument("--max-trials", type=int, default=20, help="trials for bayesian/random")
    parser.add_argument("--seed", type=int, help="search seed (default: training.seed)")
    parser.add_argument("--out", help="search folder (default runs/tune_<config name>; gs:// works)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging()
    backend.choose(read_config(args.config, args.set).training.backend)
    quiet_tensorflow()  # TensorFlow imports Keras: only now, on the chosen backend
    from tuning.search import SearchOptions, search

    search(SearchOptions(args.config, args.space, args.max_epochs, args.factor, args.objective, args.algorithm,
                         args.max_trials, args.seed, args.out, tuple(args.set)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
