"""What a notebook installs next to the platform's packages, without changing any of them.

Colab's and Kaggle's TPU images ship JAX (with the libtpu that drives their TPUs), NumPy, Keras and
much more; Kaggle's also ``tensorflow-cpu``. Moving any of them can break the runtime, so every
package installed in the environment — not a list of names — becomes a pip constraint at its
installed version, and only what is missing is added: ``requirements-notebook.txt`` (ranges), plus
``tensorflow-cpu`` and TensorBoard where the image has no TensorFlow (Colab's TPU runtime: tf.data
and ``tf.io.gfile`` serve both backends, keras-tuner writes TensorBoard summaries). When a
requirement cannot be met without changing an image package, the install stops with one sentence
naming both. Standard library only: this runs before the requirements exist.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

# for tf.data where the image has no TensorFlow; TF 2.21 no longer brings TensorBoard along
TENSORFLOW = ("tensorflow-cpu>=2.20,<2.22", "tensorboard>=2.20,<2.22")
REQUIREMENTS = "requirements-notebook.txt"
# PEP 440, permissively (a constraint pip cannot parse would stop the whole install)
VERSION = re.compile(r"^v?(\d+!)?\d+(\.\d+)*([-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
                     r"([-_.]?(post|rev|r)[-_.]?\d*|-\d+)?([-_.]?dev[-_.]?\d*)?(\+[a-z0-9]+([-_.][a-z0-9]+)*)?$",
                     re.IGNORECASE)


class InstallError(Exception):
    """The install cannot go on; shown in a notebook as one ``error: …`` line (IPython calls
    ``_render_traceback_``), which still stops *Run all* at that cell."""

    def _render_traceback_(self) -> List[str]:
        return [f"error: {self}"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> Dict[str, str]:
    """Every distribution installed in this environment: canonical name → version (the one Python
    imports where a name is installed twice)."""
    packages: Dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name, version = distribution.metadata["Name"], distribution.version
        if name and version:
            packages.setdefault(canonical(name), version)
    return packages


def constraints(packages: Dict[str, str]) -> List[str]:
    """``name==version`` for each package whose version pip can read."""
    return [f"{name}=={version}" for name, version in sorted(packages.items()) if VERSION.match(version)]


def extra_requirements(packages: Dict[str, str]) -> List[str]:
    """``tensorflow-cpu`` and TensorBoard when no TensorFlow is installed (Colab's TPU runtime), else nothing."""
    has_tensorflow = any(name in packages for name in ("tensorflow", "tensorflow-cpu", "tensorflow-tpu"))
    return [] if has_tensorflow else list(TENSORFLOW)


def pip_arguments(project_dir: str, constraints_file: str, packages: Dict[str, str]) -> List[str]:
    return ["-r", os.path.join(project_dir, REQUIREMENTS), "-c", constraints_file] + extra_requirements(packages)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return canonical(match.group(1)) if match else ""


def explain(pip_output: str, packages: Dict[str, str]) -> str:
    """One sentence from pip's output: which requirement needs which change to which image package."""
    kept = dict((canonical(name), version) for name, version in
                re.findall(r"The user requested \(constraint\) ([^\s=<>!~]+)==(\S+)", pip_output))
    demands = re.findall(r"^\s*(\S+ \S+) depends on (.+?)\s*$", pip_output, re.MULTILINE)
    for requirement in re.findall(r"The user requested (?!\(constraint\))(.+?)\s*$", pip_output, re.MULTILINE):
        added = _requirement_name(requirement) in {_requirement_name(extra) for extra in TENSORFLOW}
        demands.append(("the notebook's TensorFlow" if added else REQUIREMENTS, requirement))
    for who, requirement in demands:
        name = _requirement_name(requirement)
        if name in kept:
            return (f"the install stops: {who} needs {requirement.strip()}, but this image ships {name} "
                    f"{packages.get(name, kept[name])}, which the notebook does not change (the platform matches "
                    "its packages to its accelerator); use a runtime whose packages fit, or relax "
                    f"{REQUIREMENTS}")
    errors = [line.strip() for line in pip_output.splitlines() if line.startswith("ERROR")]
    reason = errors[0] if errors else (pip_output.strip().splitlines() or ["no output"])[-1]
    return (f"the install failed ({reason}); without internet access pip cannot fetch anything "
            "(Kaggle: Settings → Internet on)")


def run_pip(arguments: Sequence[str], python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--prefer-binary"]
                          + list(arguments), capture_output=True, text=True)


def install(project_dir: str, extra: Sequence[str] = (), dry_run: bool = False) -> Dict[str, str]:
    """Add what ``requirements-notebook.txt`` (and ``extra``) needs to this environment, every
    installed package pinned at its version; returns the packages added (name → version). Raises
    :class:`InstallError` with one sentence when that is impossible, or if a package moved anyway."""
    before = installed_packages()
    with tempfile.TemporaryDirectory() as folder:
        constraints_file = os.path.join(folder, "image.txt")
        with open(constraints_file, "w") as handle:
            handle.write("\n".join(constraints(before)) + "\n")
        result = run_pip(pip_arguments(project_dir, constraints_file, before) + list(extra)
                         + (["--dry-run"] if dry_run else []))
    if result.returncode:
        raise InstallError(explain(result.stdout + result.stderr, before))
    importlib.invalidate_caches()
    after = installed_packages()
    moved = sorted(f"{name} {version} → {after.get(name, 'removed')}" for name, version in before.items()
                   if after.get(name) != version)
    if moved:
        raise InstallError(f"pip changed packages of this image ({', '.join(moved)}): restart the runtime "
                           "and report it")
    added = {name: version for name, version in sorted(after.items()) if name not in before}
    print((f"added {len(added)} package(s): {', '.join(sorted(added))}" if added else "nothing to add")
          + f"; the {len(before)} packages this runtime had are unchanged")
    return added


def check(python_version: str, pins: Sequence[str], project_dir: Optional[str] = None) -> subprocess.CompletedProcess:
    """Resolve the requirements (``pip install --dry-run``, binary wheels only) for ``python_version``
    next to a platform with ``pins`` (``name==version``), without installing anything."""
    project_dir = project_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    packages = dict(pin.split("==", 1) for pin in pins)
    with tempfile.TemporaryDirectory() as folder:
        constraints_file = os.path.join(folder, "platform.txt")
        with open(constraints_file, "w") as handle:
            handle.write("\n".join(pins) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:",
                   "--python-version", python_version, "--target", os.path.join(folder, "target")]
        return subprocess.run(command + pip_arguments(project_dir, constraints_file, packages) + list(pins),
                              capture_output=True, text=True)
