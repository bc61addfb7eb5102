"""Stand-ins for Colab's and Kaggle's TPU images, and a notebook executed in one as a user's runtime would.

``python -m notebooks.standin kaggle --data FOLDER`` builds a virtual environment with the image's own
Python and package versions (``notebooks/platforms.toml``; built once and cached), layers a fresh
environment over it for the run, puts the project where a user would (copied to "Drive", or packed
and attached as a dataset), executes the platform's notebook top to bottom with papermill on 8 XLA
host devices, and reports whether it finished and which of the image's packages changed (none may)
or were added. ``tests/test_platform_colab.py`` and ``tests/test_platform_kaggle.py`` run exactly this.

Where the machine allows it (Linux, as root or with user namespaces) the project's folder and the
cached image are mounted read-only for the run, as a Kaggle input is; elsewhere the project is only
checked to be unchanged afterwards.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from typing import Dict, List, Optional, Sequence, Tuple

from common.cli import run_main
from common.errors import UserError, describe_choices
from notebooks import package

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "platforms.toml")
DEVICES = 8
# what the kernel sees besides the image's own variables: 8 CPU devices for JAX, as a v5e-8 has 8 chips;
# one Eigen thread per device, so that 8 simulated devices do not oversubscribe a small machine's cores
XLA_FLAGS = f"--xla_force_host_platform_device_count={DEVICES} --xla_cpu_multi_thread_eigen=false"
# XLA:CPU ends a process whose devices do not all reach a collective within 40 s, which a loaded test
# machine can miss; jaxlib 0.8 made that limit a flag (openxla/xla#32115), older ones would reject it
COLLECTIVE_TIMEOUT = "--xla_cpu_collective_call_terminate_timeout_seconds=600"
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_INDEX_URL",
             "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "KAGGLEHUB_CACHE")


@dataclasses.dataclass(frozen=True)
class Image:
    """One platform image as ``platforms.toml`` describes it."""

    name: str
    title: str
    source: str
    python: str
    notebook: str
    packages: Tuple[str, ...]
    absent: Tuple[str, ...]
    environment: Dict[str, str]

    @property
    def key(self) -> str:
        """Changes whenever what the environment is built from changes."""
        text = json.dumps([self.python, sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def images(path: str = SPEC) -> Dict[str, Image]:
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    return {name: Image(name, entry["title"], entry["source"], entry["python"], entry["notebook"],
                        tuple(entry["packages"]), tuple(entry.get("absent", ())), dict(entry.get("environment", {})))
            for name, entry in table.items()}


def image(name: str) -> Image:
    known = images()
    if name not in known:
        raise UserError("platform: " + describe_choices("platform", name, known))
    return known[name]


def find_python(version: str) -> Optional[str]:
    """An interpreter of ``version`` (``3.12``) on this machine: on the PATH or in pyenv's versions."""
    candidates = [shutil.which(f"python{version}")] + sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")), reverse=True)
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.returncode == 0 and found.stdout.strip() == version:
            return candidate
    return None


def cache_root() -> str:
    return os.environ.get("CARS_STANDIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "car-recognition", "standins")


def python_of(environment: str) -> str:
    return os.path.join(environment, "bin", "python")


def installed(python: str) -> Dict[str, str]:
    """Every distribution installed for ``python``: canonical name → version."""
    code = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name'])"
            ".lower(): d.version for d in m.distributions() if d.metadata['Name']}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def base_environment(spec: Image, cache: Optional[str] = None) -> str:
    """The image's environment, built once into the cache (atomically: a half-built one is never used)."""
    folder = os.path.join(cache or cache_root(), f"{spec.name}-{spec.key}")
    if os.path.exists(os.path.join(folder, "image.json")):
        return folder
    interpreter = find_python(spec.python)
    if interpreter is None:
        raise UserError(f"the {spec.title} stand-in needs Python {spec.python}, which is not installed here "
                        f"(pyenv install {spec.python}, or your system's python{spec.python} package)")
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    building = tempfile.mkdtemp(prefix=f".{spec.name}-", dir=os.path.dirname(folder))
    try:
        subprocess.run([interpreter, "-m", "venv", building], check=True, capture_output=True)
        result = subprocess.run([python_of(building), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "--only-binary=:all:"] + list(spec.packages), capture_output=True, text=True)
        if result.returncode:
            raise UserError(f"could not build the {spec.title} stand-in: {result.stderr.strip()[-600:]}")
        with open(os.path.join(building, "image.json"), "w") as handle:
            json.dump({"image": spec.name, "packages": installed(python_of(building))}, handle, indent=1)
        try:
            os.replace(building, folder)
        except OSError:  # another process finished the same build first
            pass
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def site_packages(environment: str) -> str:
    found = glob.glob(os.path.join(environment, "lib", "python3*", "site-packages"))
    if not found:
        raise UserError(f"{environment} is not a virtual environment (no lib/python3*/site-packages)")
    return found[0]


def fresh_environment(spec: Image, folder: str, cache: Optional[str] = None) -> str:
    """A new virtual environment in ``folder`` that sees the image's packages (a ``.pth`` file adds the
    cached environment's site-packages, its own ``.pth`` files included): what a notebook installs
    goes into ``folder`` and shadows nothing unnoticed, and the cache is never written (it is also
    mounted read-only during a run). Seconds, where copying the image would move gigabytes."""
    base = base_environment(spec, cache)
    with open(os.path.join(base, "pyvenv.cfg")) as handle:
        home = dict(line.split(" = ", 1) for line in handle.read().splitlines() if " = " in line)["home"]
    interpreter = os.path.join(home, f"python{spec.python}")
    subprocess.run([interpreter if os.path.exists(interpreter) else find_python(spec.python), "-m", "venv",
                    "--without-pip", folder], check=True, capture_output=True)
    with open(os.path.join(site_packages(folder), "_standin_image.pth"), "w") as handle:
        handle.write(f"import site; site.addsitedir({site_packages(base)!r})\n")
    return folder


def project_copy(folder: str) -> str:
    """The project's files in ``folder`` (as ``python -m notebooks.package`` packs them)."""
    for name in package.project_files():
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(package.PROJECT, name), target)
    return folder


def tree_digest(folder: str) -> str:
    """A digest of every file's path and bytes under ``folder`` (bytecode caches aside)."""
    digest = hashlib.sha256()
    for root, names, files in sorted(os.walk(folder)):
        names[:] = sorted(name for name in names if name != "__pycache__")
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


# mounts each folder before "--" read-only in a private mount namespace, then runs the command after it
READ_ONLY = ('while [ "$1" != -- ]; do mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" || exit 97; '
             'shift; done; shift; exec "$@"')


def read_only(folders: Sequence[str], command: List[str]) -> List[str]:
    """``command`` with ``folders`` mounted read-only for it (``unshare``)."""
    return ["unshare", "-m", "sh", "-c", READ_ONLY, "sh", *folders, "--", *command]


def can_mount_read_only() -> bool:
    """Whether ``unshare`` can give a command a private read-only bind mount here (Linux, as root or
    with user namespaces)."""
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = tempfile.mkdtemp(prefix="standin-probe-")
    try:
        result = subprocess.run(read_only([probe], ["sh", "-c", 'touch "$0/x" 2>/dev/null && exit 3; exit 0', probe]),
                                capture_output=True, timeout=60)
        return result.returncode == 0 and not os.path.exists(os.path.join(probe, "x"))
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def xla_flags(python: str) -> str:
    """The kernel's ``XLA_FLAGS`` for the jaxlib installed for ``python``."""
    version = tuple(int(part) for part in re.findall(r"\d+", installed(python).get("jaxlib", "0"))[:2])
    return XLA_FLAGS + (f" {COLLECTIVE_TIMEOUT}" if version >= (0, 8) else "")


def kernel(folder: str, spec: Image, python: str, extra: Dict[str, str]) -> str:
    """A Jupyter kernel spec under ``folder`` that runs the stand-in's Python with the image's variables."""
    name = f"standin-{spec.name}"
    os.makedirs(os.path.join(folder, "kernels", name), exist_ok=True)
    with open(os.path.join(folder, "kernels", name, "kernel.json"), "w") as handle:
        json.dump({"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": spec.title, "language": "python",
                   "env": {**spec.environment, "XLA_FLAGS": xla_flags(python), "JAX_PLATFORMS": "cpu", **extra}},
                  handle, indent=1)
    return name


@dataclasses.dataclass
class Outcome:
    """What a notebook run on a stand-in left behind."""

    returncode: int
    log: str  # everything the cells printed (papermill --log-output), and papermill's own lines
    executed: str  # the executed notebook
    changed: List[str]  # the image's packages that moved: "name before → after"
    added: List[str]
    read_only: bool  # whether the project was mounted read-only for the run
    project_unchanged: bool

    def outputs(self) -> str:
        """The text every cell printed, from the executed notebook."""
        with open(self.executed, encoding="utf-8") as handle:
            book = json.load(handle)
        texts = []
        for cell in book["cells"]:
            for output in cell.get("outputs", []):
                text = output.get("text") or output.get("data", {}).get("text/plain") or ""
                texts.append("".join(text) if isinstance(text, list) else text)
                texts += ["".join(output.get("traceback", []))]
        return "\n".join(texts)


def execute(spec: Image, environment: str, parameters: dict, out: str, project: str, protected: Sequence[str] = (),
            extra_environment: Optional[Dict[str, str]] = None, timeout: int = 1800) -> Outcome:
    """Execute ``spec``'s notebook with ``parameters`` in ``environment`` (papermill); the folders in
    ``protected`` are mounted read-only for the run where possible."""
    python = python_of(environment)
    before = installed(python)
    digest = tree_digest(project)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "parameters.json"), "w") as handle:
        json.dump(parameters, handle, indent=1)
    home = os.path.join(out, "home")
    os.makedirs(home, exist_ok=True)
    variables = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    variables.update(HOME=home, JUPYTER_PATH=os.path.join(out, "jupyter"), PYTHONNOUSERSITE="1",
                     PIP_CACHE_DIR=os.path.join(os.path.expanduser("~"), ".cache", "pip"))
    name = kernel(variables["JUPYTER_PATH"], spec, python, extra_environment or {})
    executed = os.path.join(out, f"executed_{spec.notebook}")
    command = [sys.executable, "-m", "papermill", os.path.join(HERE, spec.notebook), executed, "-k", name,
               "-f", os.path.join(out, "parameters.json"), "--log-output", "--no-progress-bar", "--cwd", home]
    mounted = bool(protected) and can_mount_read_only()
    if mounted:
        command = read_only(protected, command)
    try:
        result = subprocess.run(command, env=variables, capture_output=True, text=True, timeout=timeout)
        returncode, log = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as error:
        returncode, log = 124, f"timed out after {timeout} s\n{error.stdout or ''}{error.stderr or ''}"
    with open(os.path.join(out, "papermill.log"), "w") as handle:
        handle.write(log)
    after = installed(python)
    changed = sorted(f"{package_name} {version} → {after.get(package_name, 'removed')}"
                     for package_name, version in before.items() if after.get(package_name) != version)
    added = sorted(f"{package_name} {version}" for package_name, version in after.items() if package_name not in before)
    return Outcome(returncode, log, executed, changed, added, mounted, tree_digest(project) == digest)


def on_drive(out: str) -> Tuple[str, str]:
    """Colab: the project copied to Drive, ``PROJECT_DIR`` its folder; returns (PROJECT_DIR, folder)."""
    folder = project_copy(os.path.join(out, "drive", "MyDrive", "car-recognition"))
    return folder, folder


def attached(out: str) -> Tuple[str, str]:
    """Kaggle: the project packed by ``notebooks.package`` and attached as a dataset under an input
    folder, ``PROJECT_DIR`` the input folder's ``*`` (the notebook's default is ``/kaggle/input/*``)."""
    dataset = os.path.join(out, "input", "car-recognition")
    package.package(dataset, owner="standin")
    return os.path.join(out, "input", "*"), os.path.join(dataset, package.FOLDER)


PROJECT_PLACES = {"colab": on_drive, "kaggle": attached}
# a small run that still builds, trains two epochs on all 8 devices (global batch 16) and evaluates
FULL_RUN = {"SMOKE": False, "REPO_URL": "", "DATASET": "stanford_cars", "CONFIG": "demo.yaml", "RUN_NAME": "standin",
            "BUILD_OPTIONS": {"split": "official", "max_side": 96}, "TUNE": False, "BACKEND": "jax",
            "OVERRIDES": ["data.image_size=64", "data.batch_size=2", "training.epochs=2"]}


def run(platform: str, data: str, out: str, smoke: bool = False, extra_environment: Optional[Dict[str, str]] = None,
        environment: Optional[str] = None) -> Outcome:
    """Execute ``platform``'s notebook on its stand-in (a fresh overlay of the image's environment in
    ``out/env`` unless ``environment`` is given) with the project where a user would put it, read-only,
    ``data`` as ``DATA_SOURCE`` and ``out/work`` as ``WORK_DIR``; ``smoke`` runs it in smoke mode."""
    spec = image(platform)
    environment = environment or fresh_environment(spec, os.path.join(out, "env"))
    run_out = os.path.join(out, "smoke" if smoke else "full")
    project_dir, project = PROJECT_PLACES[platform](run_out)
    # smoke mode keeps the notebook's own settings (and chooses its backend itself)
    parameters = dict({"SMOKE": True, "REPO_URL": ""} if smoke else FULL_RUN, PROJECT_DIR=project_dir,
                      DATA_SOURCE=data, WORK_DIR=os.path.join(run_out, "work"))
    protected = [os.path.dirname(project) if platform == "colab" else os.path.join(run_out, "input"),
                 base_environment(spec)]  # the image itself: nothing a notebook does may change it
    extra = dict(extra_environment or {}, **({"CARS_SMOKE_DIR": parameters["WORK_DIR"]} if smoke else {}))
    return execute(spec, environment, parameters, run_out, project, protected, extra)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notebooks.standin",
                                     description="Execute a platform's notebook on a stand-in of its image (see "
                                                 "docs/notebooks.md).")
    parser.add_argument("platform", help=f"one of: {', '.join(images())}")
    parser.add_argument("--data", help="DATA_SOURCE for a full run: a Stanford Cars folder or a kaggle: handle")
    parser.add_argument("--out", default=None, help="a new or empty folder for the run's environment, work and "
                                                    "executed notebook (default: a new temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="run the notebook in smoke mode (needs no --data)")
    args = parser.parse_args(argv)
    image(args.platform)  # an unknown platform is one line, before anything is made
    if not args.smoke and not args.data:
        raise UserError("--data: a full run needs a Stanford Cars folder or a kaggle:OWNER/DATASET handle "
                        "(or pass --smoke)")
    if args.out and os.path.isdir(args.out) and os.listdir(args.out):
        raise UserError(f"--out {args.out} is not empty; give a new or empty folder")
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix=f"standin-{args.platform}-"))
    data = args.data or "unused"
    outcome = run(args.platform, data if data.startswith("kaggle:") or args.smoke else os.path.abspath(data), out,
                  args.smoke)
    print(f"notebook: {'finished' if outcome.returncode == 0 else f'failed (exit status {outcome.returncode})'}; "
          f"executed copy and log in {os.path.dirname(outcome.executed)}")
    print("project mounted read-only:", "yes" if outcome.read_only else "no (checked unchanged instead)",
          "- unchanged:", "yes" if outcome.project_unchanged else "NO")
    print("image packages changed:", ", ".join(outcome.changed) or "none")
    print("packages added:", ", ".join(outcome.added) or "none")
    return 0 if outcome.returncode == 0 and not outcome.changed and outcome.project_unchanged else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
