"""How long the README's install takes and how much it puts on disk. Not a test.

Creates a fresh virtual environment in a temporary folder, runs ``pip install -r requirements.txt``
in it (from the package index this machine is configured with; pip's cache is off, so every wheel is
fetched), and writes the seconds and the environment's size to ``docs/results/bench_install.json``.

Usage: ``python -m benchmarks.bench_install [--requirements requirements.txt]``
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchmarks import results
from benchmarks.bench_build import machine
from common.cli import command_parser


def folder_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def main(argv=None) -> int:
    parser = command_parser("python -m benchmarks.bench_install", __doc__)
    parser.add_argument("--requirements", default="requirements.txt")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        environment = os.path.join(work, "venv")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", environment], check=True)
        python = os.path.join(environment, "bin", "python")
        done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r", args.requirements],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"pip install failed:\n{done.stderr[-2000:]}")
        size = folder_bytes(environment)
    print(f"python -m venv + pip install -r {args.requirements}: {seconds:.0f} s, {size / 1e9:.1f} GB")
    results.save("bench_install", {"requirements": args.requirements, "seconds": seconds, "gigabytes": size / 1e9},
                 machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
