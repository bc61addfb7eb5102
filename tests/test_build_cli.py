"""The command lines: bad input gives one clear line and exit status 2, never a traceback."""
import pytest

from data_prep import build, synthetic, verify
from data_prep.synthetic import __main__ as synthetic_cli
from common.cli import run_main


@pytest.mark.parametrize("arguments, message", [
    (["--dataset", "stanford"], "unknown dataset 'stanford'; choose one of: compcars, stanford_cars"),
    (["--root", "/does/not/exist"], "is not a folder"),
    (["--fractions", "70/20/20"], "must add up to 100"),
    (["--fractions", "70/15/15", "--val-fraction", "0.1"], "give one or the other"),
    (["--test-fraction", "0.2"], "does not apply to --split official"),
    (["--split", "random"], "unknown split 'random'"),
    (["--max-side", "8"], "--max-side: expected at least 16 pixels"),
    (["--layout", "kagle"], "did you mean 'kaggle'"),
    (["--split", "stratified", "--val-from", "test"], "--val-from test: expected --split official"),
    (["--out", "/proc/self/shards"], "--out: cannot write to /proc/self/shards"),
    (["--out", "{tmp}/a_file"], "--out: {tmp}/a_file is a file, not a folder"),
])
def test_build_errors(stanford_tree, tmp_path, capsys, arguments, message):
    root, _ = stanford_tree
    (tmp_path / "a_file").write_text("in the way")
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    message = message.replace("{tmp}", str(tmp_path))
    argv = ["--dataset", "stanford_cars", "--root", str(root), "--out", str(tmp_path / "o")]
    for index in range(0, len(arguments), 2):  # override or add
        if arguments[index] in argv:
            argv[argv.index(arguments[index]) + 1] = arguments[index + 1]
        else:
            argv += arguments[index:index + 2]
    assert run_main(build.main, argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_build_and_verify_commands(stanford_tree, tmp_path, capsys):
    root, _ = stanford_tree
    out = tmp_path / "o"
    argv = ["--dataset", "stanford_cars", "--root", str(root), "--out", str(out), "--workers", "1",
            "--no-progress", "--fractions", "70/15/15", "--split", "stratified", "--max-reject-fraction", "0.1"]
    assert run_main(build.main, argv) == 0
    printed = capsys.readouterr().out
    assert "stratified split" in printed and "same-photo pairs of" in printed and "label conflicts: none" in printed
    assert run_main(verify.main, [str(out)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_verify_reports_tampering_and_exits_1(stanford_tree, tmp_path, capsys):
    import json

    root, _ = stanford_tree
    out = tmp_path / "o"
    from tests.helpers import build_options
    build.build_dataset(build_options(root, out, num_shards=1))
    manifest = json.loads((out / "manifest.json").read_text())
    shard = out / manifest["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside some record
    shard.write_bytes(bytes(data))
    manifest["heads"]["model"]["num_classes"] = 2  # labels beyond this are now out of range
    manifest["splits"]["val"]["examples"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = verify.verify_dataset(str(out))
    assert any("checksum differs" in problem for problem in problems)
    assert any("split val: " in problem and "readable records" in problem for problem in problems)
    assert any("label/model = " in problem and "outside -1..1" in problem for problem in problems)
    assert run_main(verify.main, [str(out)]) == 1
    report = capsys.readouterr().out
    assert "problem(s) in" in report and "checksum differs" in report


def test_verify_without_a_manifest(tmp_path, capsys):
    assert run_main(verify.main, [str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


def tree_files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("out, overwrite", [("{root}", False), ("{root}", True), ("{parent}", True)])
def test_shards_never_go_into_the_dataset_folder(stanford_tree, tmp_path, capsys, out, overwrite):
    """--out equal to --root (or a folder holding it) with --overwrite wrote the shards among the photos."""
    import shutil

    root = tmp_path / "data" / "stanford"
    shutil.copytree(stanford_tree[0], root)
    before = tree_files(tmp_path)
    out = out.replace("{root}", str(root)).replace("{parent}", str(root.parent))
    argv = ["--dataset", "stanford_cars", "--root", str(root), "--out", out] + (["--overwrite"] if overwrite else [])
    assert run_main(build.main, argv) == 2
    error = capsys.readouterr().err
    assert f"--out {out}: this is the dataset's folder or a folder holding it" in error and error.count("\n") == 1
    assert tree_files(tmp_path) == before


def test_overwrite_replaces_a_build_never_a_folder_of_other_files(stanford_tree, tmp_path, capsys):
    root, _ = stanford_tree
    out = tmp_path / "mine"
    out.mkdir()
    (out / "rejected.csv").write_text("my own list")  # a name the build writes, in a folder without a build
    (out / "notes.txt").write_text("keep me")
    argv = ["--dataset", "stanford_cars", "--root", str(root), "--out", str(out), "--overwrite"]
    assert run_main(build.main, argv) == 2
    error = capsys.readouterr().err
    assert "holds no build but other files (notes.txt); --overwrite replaces only a previous build" in error
    assert (out / "rejected.csv").read_text() == "my own list" and sorted(p.name for p in out.iterdir()) == [
        "notes.txt", "rejected.csv"]


def test_synthetic_data_goes_to_a_new_folder_or_replaces_its_own(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "cars_meta.mat").write_bytes(b"the real devkit")
    (tmp_path / "a_file").write_text("in the way")
    for out, message in ((real, "is not empty and holds no synthetic dataset (it holds cars_meta.mat)"),
                         (tmp_path / "a_file", "is a file; the synthetic dataset is a folder")):
        assert run_main(synthetic_cli.main, ["--layout", "stanford_cars", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert (real / "cars_meta.mat").read_bytes() == b"the real devkit"
    out = tmp_path / "synthetic"
    synthetic.generate("stanford_cars", str(out), "kaggle", makes=1, models_per_make=2, images_per_model=2)
    synthetic.generate("compcars", str(out), makes=1, models_per_make=2, images_per_model=2)  # replaces it
    assert not (out / "anno_train.csv").exists() and (out / "SYNTHETIC.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file", "real", "synthetic"]  # no .partial


@pytest.mark.parametrize("argv, message", [
    (["--layout", "stanford_cars", "--variant", "kagle"], "did you mean 'kaggle'"),
    (["--layout", "compcars", "--size", "big"], "--size: expected WIDTHxHEIGHT"),
    (["--layout", "compcars", "--makes", "0"], "at least 1"),
])
def test_synthetic_errors(tmp_path, capsys, argv, message):
    assert run_main(synthetic_cli.main, argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_synthetic_is_deterministic(tmp_path):
    first = synthetic.generate("compcars", str(tmp_path / "a"), makes=2, models_per_make=2, images_per_model=3, seed=4)
    second = synthetic.generate("compcars", str(tmp_path / "b"), makes=2, models_per_make=2, images_per_model=3, seed=4)
    assert first == second
    files = lambda base: {p.relative_to(base): p.read_bytes() for p in base.rglob("*") if p.is_file()  # noqa: E731
                          and p.suffix != ".mat"}  # .mat headers carry a creation time
    assert files(tmp_path / "a") == files(tmp_path / "b")


@pytest.mark.parametrize("dataset", ["stanford_cars", "compcars"])
def test_verify_checks_class_names_against_the_hierarchy(stanford_build, compcars_tree, tmp_path, dataset):
    """Two model (or make) names swapped in the manifest keep every count right; the hierarchy the
    manifest also holds (model → make, type, year) and the names themselves then disagree."""
    import json
    import shutil

    from tests.helpers import build_options

    if dataset == "stanford_cars":
        out = tmp_path / "o"
        shutil.copytree(stanford_build[0], out)
    else:
        out = tmp_path / "c"
        build.build_dataset(build_options(compcars_tree[0], out, dataset="compcars", split="stratified"))
    assert verify.verify_dataset(str(out)) == []  # the names as built follow the hierarchy
    original = json.loads((out / "manifest.json").read_text())
    names, makes = original["heads"]["model"]["names"], original["hierarchy"]["model"]["make"]
    first = 0
    other = next(index for index, make in enumerate(makes) if make != makes[first])
    for head, (a, b) in (("model", (first, other)), ("make", (0, 1))):
        manifest = json.loads(json.dumps(original))
        entry = manifest["heads"][head]["names"]
        entry[str(a)], entry[str(b)] = entry[str(b)], entry[str(a)]
        (out / "manifest.json").write_text(json.dumps(manifest))
        problems = verify.verify_dataset(str(out))
        assert any("does not contain that make" in problem and names[str(first)] in problem or head == "make"
                   for problem in problems), problems
        assert problems and all("hierarchy" in problem for problem in problems), problems
