"""eval.metrics and eval.compare / eval.curves on hand-made numbers."""
import json

import numpy as np
import pytest

from common.cli import run_main


def test_calibration_of_a_constant_confidence():
    from eval.metrics import calibration

    probs = np.tile([[0.8, 0.2]], (10, 1))
    labels = np.array([0] * 5 + [1] * 5)  # 80% confident, 50% right
    result = calibration(probs, labels)
    assert result["ece"] == pytest.approx(0.3)
    assert [b["count"] for b in result["bins"]] == [10]


def test_head_metrics_skips_unknown_labels_and_lists_confusions():
    from eval.metrics import head_metrics

    probs = np.eye(3)[[0, 1, 1, 2, 0, 2]] * 0.9 + 0.1 / 3
    labels = np.array([0, 1, 2, 2, -1, -1])
    result = head_metrics(probs, labels, ["a", "b", "c"])
    assert result["examples"] == 4 and result["accuracy"] == pytest.approx(0.75) and result["top5"] is None
    assert result["confused_pairs"] == [{"true": "c", "predicted": "b", "count": 1, "share": 0.5}]
    assert result["per_class"][2]["top_confusions"] == "b (1)"
    assert result["macro"]["recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert head_metrics(probs, -np.ones(6, int), ["a", "b", "c"]) is None


def test_hierarchy_consistency_and_make_from_the_model_head():
    from eval.metrics import hierarchy_metrics

    # models 0, 1 are make 0; model 2 is make 1
    model = np.array([[0.4, 0.3, 0.3],   # model 0 (make 0 by 0.7)
                      [0.1, 0.1, 0.8],   # model 2 (make 1)
                      [0.35, 0.3, 0.35]])  # models tie; make 0 by 0.65
    make = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    labels = {"model": np.array([0, 2, 1]), "make": np.array([0, 1, 0])}
    result = hierarchy_metrics({"model": model, "make": make}, labels, {"make": [0, 0, 1]})["make"]
    assert result["model_within_predicted"] == pytest.approx(1 / 3)  # only the first agrees
    assert result["accuracy_from_model_head"] == pytest.approx(1.0)
    assert result["accuracy_own_head"] == pytest.approx(1 / 3)
    assert hierarchy_metrics({"make": make}, labels, {"make": [0, 0, 1]}) == {}


def write_run(folder, name, make, model, loss=None):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\n")
    heads = {"make": {"accuracy": make, "loss": 0.5}, "model": {"accuracy": model, "loss": 1.0}}
    (folder / "metrics.json").write_text(json.dumps({"split": "test", "heads": heads, "loss": loss, "epochs": 3}))
    return folder


def test_compare_builds_one_table_with_the_published_numbers(tmp_path, capsys):
    from eval import compare

    baseline = write_run(tmp_path / "runs" / "baseline", "baseline", 0.80, 0.60, 2.0)
    optimal = write_run(tmp_path / "runs" / "optimal", "optimal", 0.95, 0.90, 1.1)
    assert run_main(compare.main, [str(baseline), str(optimal), "--published", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model,from,split,loss,make accuracy,model accuracy,make loss,model loss"
    assert lines[1].startswith("baseline,training,test,2.0,0.8,0.6")
    assert lines[2].startswith("baseline,\"report 004, Fig. 56\",test,1.9821,0.873,0.6408")
    assert lines[4].startswith("optimal,\"report 004, Fig. 56\",test,1.2533,0.9451,0.8828")
    assert run_main(compare.main, [str(optimal), "--metrics", "accuracy", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| optimal | training | test | 0.9500 | 0.9000 |"
    own = write_run(tmp_path / "runs" / "mine", "mine", 0.5, 0.5)
    assert run_main(compare.main, [str(own), "--published"]) == 0
    assert "no published numbers for: mine (configs with published numbers: baseline," in capsys.readouterr().err


def test_compare_refuses_unknown_metrics_and_missing_runs(tmp_path, capsys):
    from eval import compare

    run = write_run(tmp_path / "run", "x", 0.5, 0.5)
    assert run_main(compare.main, [str(run), "--metrics", "acuracy"]) == 2
    assert "did you mean 'accuracy'" in capsys.readouterr().err
    assert run_main(compare.main, [str(tmp_path / "nothing")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert run_main(compare.main, [str(tmp_path / "bad.json")]) == 2
    assert "not a metrics file" in capsys.readouterr().err


def test_curves_for_one_run_and_overlaid_runs(tmp_path, capsys):
    from eval import curves

    header = "epoch,loss,make_accuracy,make_loss,val_loss,val_make_accuracy,val_make_loss"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.csv").write_text(f"{header}\n1,2,0.5,1,2,0.4,1.1\n2,1,0.7,0.6,1.5,0.6,0.9\n")
    assert run_main(curves.main, [str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "curves" / "make.png").stat().st_size > 1000
    assert curves.heads_of([{"val_loss": 1, "val_model_accuracy": 1, "learning_rate": 1}]) == ["model"]
    assert run_main(curves.main, [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "both")]) == 0
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["make.png"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "history.csv").write_text("epoch,loss\n1,oops\n")
    capsys.readouterr()
    assert run_main(curves.main, [str(tmp_path / "c")]) == 2
    assert "not a readable history" in capsys.readouterr().err


def test_confusion_figure_keeps_isolated_confusions_visible_with_1716_classes(tmp_path):
    """CompCars' 1,716 models on a ~1,000-pixel axis: one confused pair must still change the picture."""
    from matplotlib.image import imread

    from eval.figures import confusion_figure

    classes = 1716
    names = [f"class {i}" for i in range(classes)]
    clean = np.diag(np.full(classes, 10))
    confused = clean.copy()
    confused[1201, 1201], confused[1201, 301] = 7, 3  # 30% of one class taken for a far-away one
    confusion_figure(clean, names, "model", str(tmp_path / "clean.png"))
    confusion_figure(confused, names, "model", str(tmp_path / "confused.png"))
    first, second = imread(tmp_path / "clean.png"), imread(tmp_path / "confused.png")
    assert first.shape == second.shape and max(first.shape[:2]) < 2000
    changed = np.argwhere(np.abs(first[..., :3] - second[..., :3]).sum(axis=-1) > 0.05)
    assert len(changed) > 0
    rows, columns = changed[:, 0], changed[:, 1]
    # two places change, on one row: the diagonal cell (lighter) and the far confusion (darker)
    assert rows.max() - rows.min() < 5
    assert columns.max() - columns.min() > first.shape[1] * 0.25


def tie_aware_hits(probs, labels, k):
    """Reference: the true class ranks by how many classes score higher, ties broken by class id
    (as argmax does); a hit when that rank is below k and the score is a number."""
    true = probs[np.arange(len(labels)), labels]
    higher = (probs > true[:, None]).sum(axis=1)
    earlier_ties = ((probs == true[:, None]) & (np.arange(probs.shape[1]) < labels[:, None])).sum(axis=1)
    return (higher + earlier_ties < k) & np.isfinite(true)


def test_top_k_does_not_count_ties_as_hits_in_training_or_evaluation():
    """Saturated softmax outputs (one 1.0, the rest exactly 0.0) must not make every label a top-5 hit;
    training's metric and eval.test's must give the same number."""
    from eval.metrics import top_k_accuracy
    from training.metrics import HeadAccuracy

    rng = np.random.default_rng(0)
    saturated = np.eye(24, dtype="float32")[rng.integers(0, 24, 200)]
    coarse = np.round(rng.dirichlet(np.ones(24), 200), 1).astype("float32")  # many ties, some rows all 0
    labels = rng.integers(0, 24, 200)
    for probs in (saturated, coarse):
        for k in (1, 5):
            expected = tie_aware_hits(probs, labels, k).mean()
            metric = HeadAccuracy(k=k)
            metric.update_state(labels, probs)
            assert float(metric.result()) == pytest.approx(expected, abs=1e-6), (k, "training")
            assert top_k_accuracy(probs, labels, k) == pytest.approx(expected, abs=1e-9), (k, "eval")
    assert top_k_accuracy(saturated, labels, 5) < 0.2  # not 1.0
    broken = np.full((3, 24), np.nan, "float32")  # a diverged model's outputs are never hits
    metric = HeadAccuracy(k=5)
    metric.update_state(np.array([0, 1, 2]), broken)
    assert float(metric.result()) == 0.0 and top_k_accuracy(broken, np.array([0, 1, 2]), 5) == 0.0
