"""Where a benchmark writes what it measured: ``docs/results/<name>.json``, with the machine, the date
and the command, from which ``python -m docs.render`` renders the tables of ``docs/`` and the README.

A benchmark measured on two data sets (synthetic pictures and, with ``--real``, the real photos)
keeps each under ``variants``; a run replaces only its own variant.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "docs", "results")


def default_path(name: str) -> str:
    return os.path.join(FOLDER, f"{name}.json")


def save(name: str, measured: dict, machine: str, variant: Optional[str] = None, path: Optional[str] = None) -> str:
    """Write ``measured`` (atomically) and return the file's path."""
    path = path or default_path(name)
    command = " ".join([f"python -m benchmarks.{name}"] + sys.argv[1:])
    entry = {"machine": machine, "date": datetime.date.today().isoformat(), "command": command, **measured}
    if variant is not None:
        existing = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                existing = json.load(handle)
        entry = {"variants": {**existing.get("variants", {}), variant: entry}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w", encoding="utf-8") as handle:
        json.dump(entry, handle, indent=1, ensure_ascii=False)
    os.replace(path + ".partial", path)
    print(f"\nwritten: {os.path.relpath(path)} (python -m docs.render puts it into the docs)")
    return path
