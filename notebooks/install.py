"""What a notebook installs next to the platform's packages, without touching those.

Colab's and Kaggle's TPU images ship JAX (with the libtpu that drives their TPUs) and NumPy;
Kaggle's also ``tensorflow-cpu``. Reinstalling any of them breaks the TPU, so the install pins them
at the versions present (a pip constraints file) and adds only ``requirements-notebook.txt`` (ranges)
— plus a ``tensorflow-cpu`` where the image has no TensorFlow (Colab's TPU runtime): tf.data and
``tf.io.gfile`` serve both backends. Standard library only: this runs before the requirements exist.
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
from typing import List, Optional, Sequence

# kept exactly as the platform ships them
PLATFORM_PACKAGES = ("jax", "jaxlib", "libtpu", "libtpu-nightly", "jax-cuda12-plugin", "numpy", "tensorflow",
                     "tensorflow-cpu", "tensorflow-tpu", "tensorflow-text", "tf-keras")
TENSORFLOW_CPU = "tensorflow-cpu>=2.20,<2.22"  # for tf.data where the image has no TensorFlow
REQUIREMENTS = "requirements-notebook.txt"


def platform_pins(packages: Sequence[str] = PLATFORM_PACKAGES) -> List[str]:
    """``name==version`` for each of ``packages`` installed here."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def extra_requirements(pins: Sequence[str]) -> List[str]:
    """A ``tensorflow-cpu`` when no TensorFlow is installed (Colab's TPU runtime), else nothing."""
    return [] if any(pin.startswith("tensorflow") for pin in pins) else [TENSORFLOW_CPU]


def pip_arguments(project_dir: str, constraints: str, pins: Sequence[str]) -> List[str]:
    return ["-r", os.path.join(project_dir, REQUIREMENTS), "-c", constraints] + extra_requirements(pins)


def install(project_dir: str, quiet: bool = True) -> List[str]:
    """Install the notebook requirements with the platform's packages pinned; returns the pins kept."""
    pins = platform_pins()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(pins) + "\n")
    command = [sys.executable, "-m", "pip", "install"] + (["-q"] if quiet else [])
    subprocess.run(command + pip_arguments(project_dir, handle.name, pins), check=True)
    print("kept as the platform ships them:", ", ".join(pins) or "nothing")
    return pins


def check(python_version: str, pins: Sequence[str], project_dir: Optional[str] = None) -> subprocess.CompletedProcess:
    """Resolve the requirements (``pip install --dry-run``, binary wheels only) for ``python_version``
    next to a platform with ``pins``, without installing anything."""
    project_dir = project_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as folder:
        constraints = os.path.join(folder, "platform.txt")
        with open(constraints, "w") as handle:
            handle.write("\n".join(pins) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:",
                   "--python-version", python_version, "--target", os.path.join(folder, "target")]
        return subprocess.run(command + pip_arguments(project_dir, constraints, pins) + list(pins),
                              capture_output=True, text=True)
