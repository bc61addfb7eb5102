"""Pack the project for upload as a Kaggle dataset: ``python -m notebooks.package --owner NAME``.

Kaggle's notebooks reach code the way they reach data: as an attached input under
``/kaggle/input/…``, read-only. This writes ``OUT/car-recognition/`` (the project's files: those
git tracks, or the tree without caches, environments and runs when there is no git checkout) and
``OUT/dataset-metadata.json`` for the Kaggle command-line tool, then says the upload steps. The
notebook finds the project in any attached dataset. Needs nothing beyond the standard library.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional, Sequence

from common.cli import run_main
from common.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
FOLDER = "car-recognition"
METADATA = "dataset-metadata.json"
SKIPPED = {".git", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "runs", "dist", "demo_out", "bench_out"}
DEFAULT_OUT = os.path.join(PROJECT, "dist", "kaggle-dataset")


def project_files(root: str = PROJECT) -> List[str]:
    """The project's files relative to ``root``: what git tracks or would (not ignored), or else the
    tree without caches, virtual environments and run outputs."""
    try:
        listed = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=True)
        files = [name for name in listed.stdout.decode().split("\0") if name]
        if files:
            return [name for name in files if os.path.isfile(os.path.join(root, name))]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for folder, names, filenames in os.walk(root):
        names[:] = sorted(name for name in names if name not in SKIPPED and not name.startswith(".venv"))
        files += [os.path.relpath(os.path.join(folder, name), root) for name in sorted(filenames)
                  if not name.endswith(".pyc")]
    return files


def kaggle_owner() -> Optional[str]:
    """The Kaggle user name the Kaggle tool would use: ``KAGGLE_USERNAME``, else ``~/.kaggle/kaggle.json``."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    path = os.path.join(os.environ.get("KAGGLE_CONFIG_DIR", os.path.expanduser("~/.kaggle")), "kaggle.json")
    try:
        with open(path) as handle:
            return json.load(handle).get("username")
    except (OSError, ValueError):
        return None


def check_out(out: str) -> None:
    """Refuse an output folder that holds anything but an earlier package (nothing of a user's is replaced)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file; give a folder")
    others = sorted(set(os.listdir(out)) - {FOLDER, METADATA}) if os.path.isdir(out) else []
    if others:
        raise UserError(f"--out {out} holds other files ({', '.join(others)}); give an empty or new folder")


def package(out: str, owner: str, slug: str = FOLDER, title: str = "car-recognition (project code)") -> int:
    """Write the dataset folder ``out`` (replacing an earlier package there as a whole); returns the
    number of project files in it."""
    check_out(out)
    files = project_files()
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".package-", dir=parent)
    try:
        for name in files:
            target = os.path.join(staging, FOLDER, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(PROJECT, name), target)
        metadata = {"title": title, "id": f"{owner}/{slug}", "licenses": [{"name": "other"}],
                    "description": "The car-recognition project's code, for its Kaggle notebook "
                                   "(attach with Add Input)."}
        with open(os.path.join(staging, METADATA), "w") as handle:
            json.dump(metadata, handle, indent=2)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(files)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notebooks.package",
                                     description="Pack the project for upload as a Kaggle dataset (the Kaggle "
                                                 "notebook finds it in any attached dataset).")
    parser.add_argument("--out", default=DEFAULT_OUT, help="the dataset folder to write (default: dist/kaggle-dataset)")
    parser.add_argument("--owner", default=None, help="your Kaggle user name (default: KAGGLE_USERNAME or "
                                                      "~/.kaggle/kaggle.json)")
    parser.add_argument("--slug", default=FOLDER, help="the dataset's name in its URL (default: car-recognition)")
    args = parser.parse_args(argv)
    owner = args.owner or kaggle_owner()
    if not owner:
        raise UserError("no Kaggle user name: pass --owner YOUR_KAGGLE_NAME (or set KAGGLE_USERNAME); the dataset's "
                        "id is OWNER/SLUG")
    try:
        count = package(args.out, owner, args.slug)
    except OSError as error:
        raise UserError(f"could not write {args.out} ({error.strerror or error})") from None
    print(f"wrote {args.out}: {count} project files in {FOLDER}/ and {METADATA} (id {owner}/{args.slug})\n"
          "next:\n"
          f"  1. upload it as a private dataset: kaggle datasets create -p {args.out} --dir-mode zip\n"
          f"     (later: kaggle datasets version -p {args.out} --dir-mode zip -m 'update'), or on kaggle.com\n"
          f"     Datasets → New Dataset with the folder {os.path.join(args.out, FOLDER)}\n"
          "  2. in notebooks/kaggle_tpu.ipynb on Kaggle: Add Input → that dataset (and the Stanford Cars dataset)\n"
          "  3. Settings → Accelerator TPU, Internet on; then Run all")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
