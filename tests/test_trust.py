"""What a model can back: the out-of-distribution score and threshold, calibrated probabilities, the
model card — computed against independent implementations, then used by eval.test, eval.predict
and the listing form."""
import json
import shutil

import numpy as np
import pytest

from common.cli import run_main
from common.trust import (Trust, apply_temperature, auroc, fit_temperature, fpr_at_tpr, knn_scores, l2_normalize,
                          load_trust, save_trust, spread_subsample)


def softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_the_fitted_temperature_undoes_an_overconfident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    labels = np.array([rng.choice(5, p=row) for row in softmax(logits)])  # calibrated at temperature 1
    overconfident = softmax(3.0 * logits)  # as if the logits were three times too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.1)
    assert np.allclose(apply_temperature(overconfident, 3.0), softmax(logits), atol=1e-6)
    assert fit_temperature(overconfident, np.full(10, -1)) == 1.0  # no known label: unchanged


def test_scores_auroc_and_fpr_equal_independent_computations():
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    reference = l2_normalize(rng.normal(size=(300, 16)))
    queries = rng.normal(size=(40, 16))
    distances, _ = NearestNeighbors(n_neighbors=10).fit(reference).kneighbors(l2_normalize(queries))
    assert np.allclose(knn_scores(reference, queries, k=10), distances[:, 9], atol=1e-5)
    inside, outside = rng.normal(0, 1, 500), rng.normal(1.5, 1, 300)
    truth = roc_auc_score(np.r_[np.zeros(500), np.ones(300)], np.r_[inside, outside])
    assert auroc(inside, outside) == pytest.approx(truth, abs=1e-9)
    assert fpr_at_tpr(inside, outside) == pytest.approx(np.mean(outside <= np.quantile(inside, 0.95)))
    assert len(spread_subsample(10_000)) == 2000 and list(spread_subsample(5)) == [0, 1, 2, 3, 4]


def test_trust_is_saved_beside_the_model_and_a_damaged_file_is_one_line(tmp_path):
    from common.errors import UserError

    trust = Trust(reference=l2_normalize(np.eye(4, 8)), threshold=0.5, temperatures={"make": 1.5},
                  card={"dataset": "stanford_cars", "synthetic": True})
    model = tmp_path / "model.keras"
    save_trust(trust, str(model))
    loaded = load_trust(str(model))
    assert loaded.threshold == 0.5 and loaded.temperatures == {"make": 1.5} and loaded.card["synthetic"]
    assert np.allclose(loaded.reference, trust.reference, atol=1e-3)
    (tmp_path / "model.trust.npy").write_bytes(b"cut")
    with pytest.raises(UserError, match="model.trust.json .* is damaged"):
        load_trust(str(model))
    assert load_trust(str(tmp_path / "other.keras")) is None


def not_cars(folder, count=12):
    """Pictures that are not cars: noise textures and flat colours."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(2)
    for index in range(count):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) if index % 2 else np.full(
            (64, 64, 3), (index * 20) % 256, np.uint8)
        Image.fromarray(pixels).save(folder / f"texture_{index}.png")
    return folder


@pytest.fixture(scope="module")
def evaluated_with_ood(trained, tmp_path_factory):
    from eval.test import evaluate

    folder = tmp_path_factory.mktemp("trust")
    run = folder / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("checkpoints", "eval_*"))
    outside = not_cars(folder / "not_cars")
    metrics = evaluate(str(run / "model.keras"), out=str(folder / "report"), ood=str(outside))
    return run, folder, metrics


def test_eval_test_sets_calibration_and_abstention_and_measures_the_ood_photos(evaluated_with_ood):
    run, folder, metrics = evaluated_with_ood
    ood = metrics["ood"]
    assert set(ood) >= {"auroc", "fpr_at_95_tpr", "ood_rejected", "in_accepted", "threshold", "examples_in",
                        "examples_out"}
    assert ood["examples_out"] == 12 and ood["examples_in"] == metrics["examples"]
    assert all(0.0 <= ood[key] <= 1.0 for key in ("auroc", "fpr_at_95_tpr", "ood_rejected", "in_accepted"))
    trust = load_trust(str(run / "model.keras"))
    assert trust.threshold == pytest.approx(ood["threshold"]) and trust.card["test_accuracy"]
    assert set(metrics["calibration"]) == set(trust.temperatures) == {"make", "model", "year", "type"}
    for head, values in metrics["calibration"].items():
        assert values["temperature"] == pytest.approx(trust.temperatures[head])
        assert 0.0 <= values["ece_after"] <= 1.0 and 0.0 <= values["ece_before"] <= 1.0
    report = (folder / "report" / "report.md").read_text()
    assert "## Calibration" in report and "## Abstention" in report and "## Out of distribution" in report
    assert (folder / "report" / "figures" / "ood_scores.png").stat().st_size > 5000
    written = json.loads((folder / "report" / "metrics.json").read_text())
    assert written["ood"] == pytest.approx(ood)


def test_eval_predict_gives_every_photo_a_score_and_answers_only_in_distribution(evaluated_with_ood, tiny_shards,
                                                                                  capsys):
    from eval import predict
    from tests.helpers import read_records

    run, folder, _ = evaluated_with_ood
    trust = load_trust(str(run / "model.keras"))
    record = read_records(tiny_shards, json.loads((tiny_shards / "manifest.json").read_text()), "val")[0]
    (folder / "val.jpg").write_bytes(record["image/encoded"])
    photos = [str(folder / "val.jpg")] + sorted(str(path) for path in (folder / "not_cars").iterdir())
    assert run_main(predict.main, ["--model", str(run / "model.keras"), "--format", "json", "--top-k", "4"]
                    + photos) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["synthetic"] is True and result["model"]["classes"]["model"] == 8
    rows = {row["file"]: row for row in result["predictions"]}
    for path, row in rows.items():
        assert row["in_distribution"] == (row["ood_score"] <= trust.threshold)
        assert sum(item["probability"] for item in row["make"]) == pytest.approx(1.0, abs=1e-6)  # 4 makes: all
    outside = [row for path, row in rows.items() if "texture" in path]
    assert sum(not row["in_distribution"] for row in outside) >= len(outside) // 2  # noise: mostly unlike the cars
    assert run_main(predict.main, ["--model", str(run / "model.keras")] + photos) == 0
    table = capsys.readouterr().out
    assert table.startswith("model trained on stanford_cars (synthetic demo pictures — not real cars; 4 makes")
    unlike = [path for path, row in rows.items() if not row["in_distribution"]]
    assert table.count("out of distribution (score") == len(unlike) and "no answer" in table


class Threshold:
    threshold = 0.5


def test_the_form_fills_nothing_for_photos_unlike_the_training_data(tmp_path):
    from eval.app import ABSTAIN, FormFiller, model_card
    from tests.test_app import FakeRecogniser, photo

    class Judging(FakeRecogniser):
        trust = Threshold()
        card = {"dataset": "stanford_cars", "synthetic": True, "classes": {"make": 2, "model": 3},
                "test_accuracy": {"make": 0.9}, "threshold_set_on": "val (30 images)", "set": "2026-12-03T10:00"}

        def outputs(self, images):
            probs = self.predictor.predict(images)
            bright = np.asarray(images, dtype=np.float32).mean(axis=(1, 2, 3)) > 127
            return {**probs, "ood_score": np.where(bright, 0.9, 0.1)}  # bright photos: unlike the cars

    filler = FormFiller(Judging(), min_confidence=0.0)
    form = filler.fill([photo(tmp_path / "bright.jpg", 240)])
    assert form.fields == [] and form.unlike == 1 and form.status() == f"**{ABSTAIN}**"
    both = filler.fill([photo(tmp_path / "dark.jpg", 20), photo(tmp_path / "bright2.jpg", 240)])
    assert both.photos == 1 and both.fields[0].value == "BMW" and both.fields[0].confidence == pytest.approx(0.9)
    assert "1 photo(s) set aside: they do not look like the cars this model knows" in both.status()
    card = model_card(Judging.card)
    assert "**synthetic demo pictures — not real cars**" in card and "2 makes, 3 models" in card
    assert "Test accuracy: make 90%" in card and "Calibrated 2026-12-03." in card and "not answered" in card


def test_training_sets_calibration_and_abstention_at_its_end(tiny_shards, tmp_path, capsys):
    from training.trainer import fit
    from tests.helpers import tiny_config

    run = tmp_path / "run"
    metrics = fit(tiny_config(tiny_shards, training={"model_name": "focal_loss.h5"}), str(run))
    assert "calibration and abstention set on val: model.trust.json" in capsys.readouterr().out
    for name in ("model.keras", "focal_loss.h5"):  # beside each best model
        trust = load_trust(str(run / name))
        assert trust.threshold > 0 and set(trust.temperatures) == {"make", "model", "year", "type"}
        assert trust.card["synthetic"] is True and trust.card["threshold_set_on"].startswith("val (")
        assert trust.card["test_accuracy"] == {head: value["accuracy"] for head, value in metrics["heads"].items()}
        assert len(trust.reference) == 47 and trust.reference.shape[1] == 512  # every training image (≤ 2,000)


def test_an_export_calibrates_scores_and_abstains_like_its_keras_model(evaluated_with_ood, capsys):
    from eval import predict
    from eval.export import export

    run, folder, _ = evaluated_with_ood
    photos = sorted(str(path) for path in (folder / "not_cars").iterdir())[:6]
    result = export(str(run / "model.keras"), "tflite", str(folder / "export" / "model.tflite"))
    assert result["trust"] and result["check"]["max_score_difference"] < 1e-4
    rows = {}
    for model in (run / "model.keras", folder / "export" / "model.tflite"):
        assert run_main(predict.main, ["--model", str(model), "--format", "json"] + photos) == 0
        captured = capsys.readouterr()
        assert "calibration and abstention are not set" not in captured.err
        rows[model.suffix] = json.loads(captured.out)["predictions"]
    for keras_row, lite_row in zip(rows[".keras"], rows[".tflite"]):
        assert lite_row["ood_score"] == pytest.approx(keras_row["ood_score"], abs=1e-4)
        assert lite_row["in_distribution"] == keras_row["in_distribution"]
        assert lite_row["make"][0]["probability"] == pytest.approx(keras_row["make"][0]["probability"], abs=1e-4)
