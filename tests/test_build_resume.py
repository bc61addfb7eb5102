"""Interrupted builds resume without redoing complete shards; ram:// output; a real kill -9."""
import os
import signal
import subprocess
import sys
import time

import pytest

from common import fs
from common.errors import UserError
from data_prep import shards
from data_prep.build import TooManyRejects, build_dataset
from data_prep.manifest import load_manifest
from data_prep.verify import verify_dataset
from tests.helpers import REPO, build_options


def without_time(manifest):
    return {key: value for key, value in manifest.items() if key != "created"}


def test_interrupted_build_resumes_to_the_same_manifest(stanford_tree, tmp_path, monkeypatch):
    root, _ = stanford_tree
    reference = build_dataset(build_options(root, tmp_path / "reference", num_shards=3))
    out = tmp_path / "interrupted"
    real_write_shard, calls = shards.write_shard, []

    def crash_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(args[1].name)
        return real_write_shard(*args, **kwargs)

    monkeypatch.setattr(shards, "write_shard", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset(build_options(root, out, num_shards=3))
    assert not (out / "manifest.json").exists()
    done = {name: (out / name).stat().st_mtime_ns for name in calls}
    (out / ("train-00002-of-00003.tfrec" + fs.TMP_MARK + "dead")).write_bytes(b"half a shard")

    monkeypatch.setattr(shards, "write_shard", real_write_shard)
    resumed = build_dataset(build_options(root, out, num_shards=3))
    assert without_time(resumed) == without_time(reference)
    assert {name: (out / name).stat().st_mtime_ns for name in calls} == done  # not rewritten
    assert not list(out.glob("*" + fs.TMP_MARK + "*")) and verify_dataset(str(out)) == []


def test_too_many_rejects_fail_after_writing_the_report_then_accept_keeps_shards(stanford_tree, tmp_path):
    root, _ = stanford_tree
    out = tmp_path / "strict"
    with pytest.raises(TooManyRejects, match="--accept-rejects"):
        build_dataset(build_options(root, out, accept_rejects=False))
    assert (out / "rejected.csv").read_text().count("\n") == 4 and not (out / "manifest.json").exists()
    written = {path.name: path.stat().st_mtime_ns for path in out.glob("*.tfrec")}
    manifest = build_dataset(build_options(root, out, accept_rejects=True))
    assert manifest["rejected"]["count"] == 3
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.tfrec")} == written


def test_output_folder_states(stanford_build, stanford_tree, tmp_path):
    root, _ = stanford_tree
    out, manifest, _ = stanford_build
    before = (out / "manifest.json").stat().st_mtime_ns
    assert build_dataset(build_options(root, out)) == manifest  # same command again: nothing to do
    assert (out / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(UserError, match=r"different options \(max_side: None → 64\)"):
        build_dataset(build_options(root, out, max_side=64))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="not empty and holds no build"):
        build_dataset(build_options(root, foreign))


def test_overwrite_replaces_only_what_a_build_writes(stanford_tree, tmp_path):
    root, _ = stanford_tree
    out = tmp_path / "o"
    build_dataset(build_options(root, out, num_shards=2))
    (out / "notes.txt").write_text("mine")
    manifest = build_dataset(build_options(root, out, num_shards=1, overwrite=True))
    assert sorted(p.name for p in out.glob("*.tfrec")) == ["test-00000-of-00001.tfrec", "train-00000-of-00001.tfrec",
                                                           "val-00000-of-00001.tfrec"]
    assert (out / "notes.txt").read_text() == "mine" and manifest["options"]["num_shards"] == 1


def test_ram_filesystem_as_root_and_output(tmp_path):
    """Every path goes through tf.io.gfile: a dataset in ram:// builds into ram:// (as gs:// would)."""
    from data_prep.synthetic import generate

    root, out = f"ram://{tmp_path.name}/src", f"ram://{tmp_path.name}/out"
    generate("stanford_cars", root, "kaggle", makes=2, models_per_make=2, images_per_model=6, seed=11)
    manifest = build_dataset(build_options(root, out, workers=1))  # ram:// is per process: no workers
    assert load_manifest(out) == manifest and manifest["layout"] == "kaggle"
    assert sum(entry["examples"] for entry in manifest["splits"].values()) > 20
    assert fs.exists(fs.join(out, "rejected.csv")) and verify_dataset(out) == []
    assert not os.path.exists(out.replace("ram://", "/"))


def children(pid: int) -> list:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_minus_nine_mid_build_then_rerun(tmp_path):
    """A real process killed while writing: its worker processes exit with it, the re-run finishes,
    the result verifies, and its shards are byte for byte those of an uninterrupted build made by
    another process (records are serialized deterministically)."""
    from data_prep.synthetic import generate

    root, out, straight = tmp_path / "src", tmp_path / "out", tmp_path / "straight"
    generate("stanford_cars", str(root), "devkit", makes=4, models_per_make=3, images_per_model=40, seed=12,
             size=(640, 480))

    def command(folder):
        return [sys.executable, "-m", "data_prep.build", "--dataset", "stanford_cars", "--root", str(root),
                "--out", str(folder), "--num-shards", "8", "--workers", "2", "--no-progress", "--accept-rejects",
                "--max-side", "400"]

    process = subprocess.Popen(command(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    parts, deadline = out / ".build" / "parts", time.time() + 120
    while process.poll() is None and time.time() < deadline and not (parts.is_dir() and any(parts.glob("*.json"))):
        time.sleep(0.05)
    workers = children(process.pid)
    os.kill(process.pid, signal.SIGKILL)  # the parent only: its workers must notice and exit
    process.wait()
    try:
        deadline = time.time() + 15
        while time.time() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.1)
        assert len(workers) >= 2 and not [pid for pid in workers if alive(pid)], "workers outlived the build"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
    assert not (out / "manifest.json").exists(), "the build finished before it could be interrupted"
    finished_before = {p.name for p in out.glob("*.tfrec")}
    assert finished_before
    rerun = subprocess.run(command(out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert verify_dataset(str(out)) == []
    assert finished_before <= {p.name for p in out.glob("*.tfrec")}
    uninterrupted = subprocess.run(command(straight), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert without_time(load_manifest(str(out))) == without_time(load_manifest(str(straight)))


def test_someone_elses_manifest_in_out_is_refused(stanford_tree, tmp_path):
    root, _ = stanford_tree
    (tmp_path / "manifest.json").write_text('{"name": "my web app"}')
    with pytest.raises(UserError, match="was not written by data_prep.build"):
        build_dataset(build_options(root, tmp_path))


@pytest.mark.parametrize("failure, message", [
    (shards.BrokenProcessPool("worker died"), "a worker process died"),
    (OSError(28, "No space left on device"), "No space left on device"),
])
def test_write_failures_say_how_to_continue(stanford_tree, tmp_path, monkeypatch, failure, message):
    root, _ = stanford_tree
    real_write_shard = shards.write_shard
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise failure
        return real_write_shard(*args, **kwargs)

    monkeypatch.setattr(shards, "write_shard", fail_on_second)
    with pytest.raises(UserError) as error:
        build_dataset(build_options(root, tmp_path / "o", num_shards=2))
    assert message in str(error.value) and "1 complete shards are kept" in str(error.value)
    assert "re-run the same command" in str(error.value)


def test_build_stopped_before_its_plan_was_saved_starts_again(stanford_tree, tmp_path, monkeypatch):
    """E.g. killed during the grouped split's hashing pass: only .build/ and temporaries exist."""
    from data_prep import near_duplicates as duplicates

    root, _ = stanford_tree
    out = tmp_path / "o"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(duplicates, "grouped_hashes", killed)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(build_options(root, out, split="grouped"))
    assert [p.name for p in out.iterdir()] == [".build"]
    monkeypatch.undo()
    manifest = build_dataset(build_options(root, out, split="grouped"))
    assert manifest["near_duplicates"]["cross_split_pairs"]["total"] == 0


def test_two_builds_on_one_folder_the_second_says_who_holds_it(stanford_tree, tmp_path):
    import json
    import socket

    root, _ = stanford_tree
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                                     "started": "2026-11-30T10:00:00+00:00"}))
        with pytest.raises(UserError) as raised:
            build_dataset(build_options(root, out))
        message = str(raised.value)
        assert f"process {other.pid}" in message and "another build" in message and "space" not in message
        assert not list(out.glob("*.tfrec"))
    finally:
        other.kill()
        other.wait()
    build_dataset(build_options(root, out))  # the holder is gone: its lock is stale and taken over
    assert (out / "manifest.json").is_file() and not (out / ".lock").exists()
