"""``python -m data_prep.synthetic``: write a small learnable dataset in a real on-disk layout."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from common.cli import command_parser, run_main
from common.errors import UserError
from data_prep.synthetic import SYNTHETIC, generate


def parse_size(text: Optional[str]):
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size: expected WIDTHxHEIGHT such as 800x600 (received {text!r})") from None
    if min(width, height) < 32:
        raise UserError(f"--size: pictures must be at least 32x32 (received {text!r})")
    return width, height


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m data_prep.synthetic", __doc__)
    parser.add_argument("--layout", required=True, help=", ".join(SYNTHETIC.names()))
    parser.add_argument("--out", required=True, help="folder to write the dataset into")
    parser.add_argument("--variant", help="; ".join(f"{name}: {', '.join(entry.variants)}"
                                                    for name, entry in SYNTHETIC.items()) + " (default: the first)")
    parser.add_argument("--makes", type=int, default=4)
    parser.add_argument("--models-per-make", type=int, default=3)
    parser.add_argument("--images-per-model", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", help="fixed picture size WIDTHxHEIGHT (default: varied, 192–384 px wide)")
    parser.add_argument("--no-bad-files", action="store_true", help="leave out the deliberately bad files")
    parser.add_argument("--label-conflicts", type=int, default=0,
                        help="near-copies filed under another class (the same photo under two labels)")
    parser.add_argument("--lookalikes", type=int, default=0, help="pairs of different cars that pHash finds alike")
    parser.add_argument("--csv-header", action="store_true", help="kaggle variant: CSVs with a header row")
    parser.add_argument("--crlf", action="store_true", help="kaggle variant: CRLF line endings")
    args = parser.parse_args(argv)
    truth = generate(args.layout, args.out, args.variant, args.makes, args.models_per_make,
                     args.images_per_model, args.seed, not args.no_bad_files, parse_size(args.size),
                     args.csv_header, args.crlf, label_conflicts=args.label_conflicts, lookalikes=args.lookalikes)
    print(f"wrote {truth['images']} images of {len(truth['classes'])} classes "
          f"({args.layout}/{truth['variant']}) to {args.out}; "
          f"{len(truth['bad_files'])} bad files, {len(truth['near_duplicates'])} near-duplicates "
          f"({len(truth['label_conflicts'])} under two labels), {len(truth['lookalikes'])} look-alike pairs")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
