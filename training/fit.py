"""``python -m training.fit --config baseline.yaml [--set key=value …] [--out runs/NAME]``.

Trains a configuration into a run folder (:mod:`training.trainer`); running the same command again
after an interruption resumes from the last completed epoch. The Keras backend is chosen from
``training.backend`` (or ``KERAS_BACKEND``) before Keras is imported.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from common import backend
from common.cli import command_parser, quiet_tensorflow, run_main, setup_logging
from training.config import read_config


def parse_args(argv: Optional[Sequence[str]]):
    parser = command_parser("python -m training.fit", __doc__)
    parser.add_argument("--config", required=True, help="YAML file, or a bare name looked up in configs/")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.learning_rate=0.001 (repeatable)")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train the run in --out again from scratch, replacing its model, history and metrics "
                             "(a folder training.fit did not write is still refused)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging()
    config = read_config(args.config, args.set)  # types only: no Keras imported yet
    backend.choose(config.training.backend)
    quiet_tensorflow()  # TensorFlow imports Keras: only now, on the chosen backend
    from training.trainer import fit

    fit(config, args.out, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
