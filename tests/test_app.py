"""The listing-form web demo: the form logic on a fake model, the Gradio app through its client API,
and the page in headless Chromium (Debian's chromium + chromium-driver, via Selenium)."""
import socket

import numpy as np
import pytest

from common.cli import run_main
from common.errors import UserError


class FakePredictor:
    """Dark photos look like make 0 / model 0, bright ones like make 1 / model 2."""

    image_size = 32

    def predict(self, images):
        bright = np.asarray(images, dtype=np.float32).mean(axis=(1, 2, 3)) > 127
        make = np.where(bright[:, None], [0.3, 0.7], [0.9, 0.1])
        model = np.where(bright[:, None], [0.2, 0.1, 0.7], [0.5, 0.3, 0.2])
        year = np.tile([0.55, 0.45], (len(images), 1))
        return {"make": make, "model": model, "year": year}


class FakeRecogniser:
    heads = {"make": 2, "model": 3, "year": 2}
    names = {"make": ["BMW", "Ram"], "model": ["BMW X1", "BMW X3", "Ram C/V"], "year": ["2011", "2012"]}
    mapping = [0, 0, 1]
    predictor = FakePredictor()


def photo(path, value):
    from PIL import Image

    Image.new("RGB", (48, 40), (value, value, value)).save(path)
    return str(path)


def test_form_combines_photos_and_says_when_it_is_not_sure(tmp_path):
    from eval.app import FormFiller

    dark, bright = photo(tmp_path / "dark.jpg", 20), photo(tmp_path / "bright.png", 240)
    filler = FormFiller(FakeRecogniser(), min_confidence=0.5, top_k=2)
    assert [head for head, _ in filler.fields] == ["make", "model", "year"]  # no type head: no type field

    one = filler.fill([dark])
    make, model, year = one.fields
    assert (make.value, make.confidence) == ("BMW", pytest.approx(0.9))
    assert model.value == "BMW X1" and year.value == "2011"
    assert [item["class"] for item in model.alternatives] == ["BMW X1", "BMW X3"]
    assert one.photos == 1 and one.notes == [] and "All fields are confident" in one.status()

    both = filler.fill([dark, bright])  # the mean of the two photos' probabilities
    make, model, year = both.fields
    assert make.value == "BMW" and make.confidence == pytest.approx(0.6)
    assert model.value == "" and model.confidence == pytest.approx(0.45)  # Ram C/V: 0.2 and 0.7 → below 0.5
    assert [(item["class"], item["probability"]) for item in model.alternatives] == [
        ("Ram C/V", pytest.approx(0.45)), ("BMW X1", pytest.approx(0.35))]
    status = both.status()
    assert "2 photos combined" in status and "**Model: not sure**" in status and "Ram C/V (45%)" in status

    bright_only = filler.fill([bright])  # make head says Ram (0.7); the model head's guess implies Ram too
    assert bright_only.fields[0].value == "Ram" and not any("disagree" in note for note in bright_only.notes)


def test_form_notes_disagreeing_heads_and_unreadable_photos(tmp_path):
    from eval.app import FormFiller

    class Disagreeing(FakeRecogniser):
        mapping = [1, 1, 0]  # the model classes belong to the other make

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    form = FormFiller(Disagreeing(), min_confidence=0.0).fill([photo(tmp_path / "a.jpg", 20), str(broken)])
    assert form.photos == 1 and form.fields[0].value == "BMW"
    assert any("disagree" in note and "implies Ram" in note for note in form.notes)
    assert form.problems == ["broken.jpg: not an image (expected a photo: JPEG, PNG, HEIC, WebP, GIF, BMP, TIFF, …)"]
    assert "Skipped (could not be read)" in form.status()

    nothing = FormFiller(FakeRecogniser()).fill([str(broken)])
    assert nothing.fields == [] and "No photo could be read" in nothing.status()
    assert "Upload one or more photos" in FormFiller(FakeRecogniser()).fill([]).status()


def huge_png(path, side=13000) -> str:
    """A 13000 × 13000 PNG of one colour: a few hundred KB on disk, 507 MB once decoded."""
    from PIL import Image

    Image.new("L", (side, side), 128).save(path, optimize=True)
    return str(path)


def test_form_limits_photos_file_size_and_decoded_pixels(tmp_path):
    from eval.app import FormFiller, Limits

    limits = Limits(max_photos=3, max_megabytes=1.0, max_megapixels=20.0)
    filler = FormFiller(FakeRecogniser(), min_confidence=0.0, limits=limits)
    photos = [photo(tmp_path / f"p{index}.jpg", 20) for index in range(5)]
    form = filler.fill(photos)
    assert form.photos == 3 and "Only the first 3 of 5 photos were used" in form.status()
    big = tmp_path / "big.jpg"
    big.write_bytes(open(photos[0], "rb").read() + b"\0" * 1_500_000)  # a valid JPEG, 1.5 MB
    form = filler.fill([huge_png(tmp_path / "huge.png"), str(big), photos[0]])
    assert form.photos == 1 and form.fields[0].value == "BMW"
    problems = "\n".join(form.problems)
    assert "huge.png: too large to decode: 13000 × 13000 pixels (169 megapixels; the limit is 20)" in problems
    assert "big.jpg: too large (1.5 MB; the limit is 1 MB)" in problems


class ShapeRecorder(FakeRecogniser):
    """Records the shape of every batch the model is given."""

    def __init__(self):
        self.shapes = []
        recorder, inner = self, FakePredictor()

        class Predictor:
            image_size = inner.image_size

            def predict(self, images):
                recorder.shapes.append(np.asarray(images).shape)
                return inner.predict(images)

        self.predictor = Predictor()


def test_a_large_photo_reaches_the_model_at_twice_its_input_size(tmp_path):
    """Six 6300 × 6330 PNGs took the server to 8.1 GB (each stacked at full size and cast to float32):
    every photo is now downscaled (Lanczos) to 2 × the input size before it is kept."""
    from PIL import Image

    from eval.app import FormFiller

    Image.new("RGB", (6300, 6330), (230, 230, 230)).save(tmp_path / "flat.png", optimize=True)
    Image.new("RGB", (4000, 3000), (20, 20, 20)).save(tmp_path / "camera.jpg", quality=90)
    recogniser = ShapeRecorder()
    form = FormFiller(recogniser, min_confidence=0.0).fill([str(tmp_path / "flat.png"), str(tmp_path / "camera.jpg")])
    assert form.photos == 2 and form.problems == []
    assert sorted(shape[1:] for shape in recogniser.shapes) == [(48, 64, 3), (64, 64, 3)]  # aspect kept
    from eval.images import load_image

    flat = load_image(str(tmp_path / "flat.png"), 32)
    assert flat.dtype == np.uint8 and np.abs(flat.astype(int) - 230).max() <= 1


def test_one_request_decodes_a_bounded_number_of_pixels(tmp_path):
    from PIL import Image

    from eval.app import FormFiller, Limits

    for name in ("a.png", "b.png", "c.png"):
        Image.new("L", (5000, 5000), 200).save(tmp_path / name, optimize=True)  # 25 megapixels each
    filler = FormFiller(FakeRecogniser(), min_confidence=0.0,
                        limits=Limits(max_megapixels=30.0, request_megapixels=60.0))
    form = filler.fill([str(tmp_path / name) for name in ("a.png", "b.png", "c.png")])
    assert form.photos == 2 and len(form.problems) == 1
    assert form.problems[0].startswith("c.png: skipped: the photos before it already decode to 50 megapixels, and "
                                       "one request may decode 60; upload fewer or smaller photos")


def test_form_options_and_missing_extra_are_clear_errors(trained, monkeypatch, capsys):
    import sys

    from eval import app

    with pytest.raises(UserError, match="--min-confidence: expected a probability between 0 and 1"):
        app.FormFiller(FakeRecogniser(), min_confidence=1.5)
    with pytest.raises(UserError, match="--top-k: expected 1 or more"):
        app.FormFiller(FakeRecogniser(), top_k=0)

    class NoFields(FakeRecogniser):
        heads = {"colour": 3}

    with pytest.raises(UserError, match="none of the listing form's heads"):
        app.FormFiller(NoFields())
    assert run_main(app.main, ["--model", str(trained / "model.keras"), "--port", "99999"]) == 2
    assert capsys.readouterr().err == "error: --port: expected a port number from 1 to 65535 (received 99999)\n"
    assert run_main(app.main, ["--model", str(trained / "missing.keras")]) == 2
    assert "missing.keras" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the optional extra were not installed
    assert run_main(app.main, ["--model", str(trained / "model.keras")]) == 2
    assert "pip install -r requirements-app.txt" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(trained):
    """The app on localhost (threshold 0: every field filled), and a photo of one class."""
    pytest.importorskip("gradio")
    from eval.app import FormFiller, Limits, build_app, launch
    from eval.predict import Recogniser

    filler = FormFiller(Recogniser(str(trained / "model.keras")), min_confidence=0.0,
                        limits=Limits(max_megabytes=2.0))
    app = build_app(filler)
    port = free_port()
    launch(app, filler.limits, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", filler
    finally:
        app.close()


@pytest.fixture(scope="module")
def car_photos(stanford_tree):
    """Two photos of the same car model from the synthetic tree."""
    root, truth = stanford_tree
    bad = set(truth["bad_files"].values())
    files = sorted(path for path, label in truth["class_of"].items() if label == 3 and path not in bad)
    return [str(root / path) for path in files[:2]]


def test_app_fills_the_form_through_its_client_api(served, car_photos):
    from gradio_client import Client, handle_file

    url, filler = served
    expected = filler.fill(car_photos)
    client = Client(url, verbose=False)
    result = client.predict([handle_file(path) for path in car_photos], api_name="/fill")
    fields = len(filler.fields)
    assert len(result) == 2 * fields + 1
    values, labels, status = result[:fields], result[fields:2 * fields], result[-1]
    assert list(values) == [field.value for field in expected.fields]
    assert all(values)  # threshold 0: every field is filled
    for label, field in zip(labels, expected.fields):
        assert label["label"] == field.alternatives[0]["class"]
        got = [(item["label"], item["confidence"]) for item in label["confidences"]]
        assert got == [(item["class"], pytest.approx(item["probability"], abs=1e-6)) for item in field.alternatives]
    assert "2 photos combined" in status


def test_a_pdf_is_listed_as_skipped_and_an_oversized_file_refused(served, car_photos, tmp_path):
    from gradio_client import Client, handle_file

    url, filler = served
    pdf = tmp_path / "brochure.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% a brochure, not a photo\n")
    client = Client(url, verbose=False)
    result = client.predict([handle_file(str(pdf)), handle_file(car_photos[0])], api_name="/fill")
    status = result[-1]
    assert result[0] and "Filled from 1 photo" in status and "brochure.pdf: not an image" in status
    oversized = tmp_path / "oversized.jpg"
    oversized.write_bytes(open(car_photos[0], "rb").read() + b"\0" * 3_000_000)
    with pytest.raises(Exception, match="(?i)size"):
        client.predict([handle_file(str(oversized))], api_name="/fill")


@pytest.mark.slow
def test_page_in_headless_chromium_uploads_a_photo_and_reads_the_fields(served, car_photos, tmp_path):
    pytest.importorskip("selenium")
    from common.browser import chromium_paths, fill_form, open_page

    if chromium_paths() is None:
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver")
    url, filler = served
    expected = filler.fill(car_photos)
    driver = open_page(url)
    try:
        page = fill_form(driver, car_photos, [head for head, _ in filler.fields])
        for field in expected.fields:
            assert page[field.head] == field.value and field.value
            alternatives = page[f"alternatives-{field.head}"]
            assert all(item["class"] in alternatives for item in field.alternatives)
        assert page["status"].startswith("Filled from 2 photos combined")
        assert "Model card. Trained on synthetic demo pictures — not real cars" in page["model-card"]
        assert "Photos unlike its training data are not answered" in page["model-card"]
        assert page["thumbnails"] == "2"
        assert driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_thumbnails_show_the_photos_and_leave_other_files_out():
    from eval.app import thumbnail_paths

    assert thumbnail_paths(["/tmp/a.jpg", "/tmp/brochure.pdf", "/tmp/b.HEIC", None]) == ["/tmp/a.jpg", "/tmp/b.HEIC"]
    assert thumbnail_paths(None) == []


def test_a_taken_port_is_a_clear_error(trained, capsys):
    pytest.importorskip("gradio")
    from eval import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_main(app.main, ["--model", str(trained / "model.keras"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot serve on 127.0.0.1:{port}" in err and "choose another --port" in err


@pytest.mark.slow
def test_page_in_headless_chromium_abstains_on_a_picture_unlike_the_cars(served, tmp_path):
    """A picture far from every training picture: no field filled, one sentence saying why."""
    pytest.importorskip("selenium")
    from PIL import Image

    from common.browser import chromium_paths, fill_form, open_page
    from eval.app import ABSTAIN

    if chromium_paths() is None:
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver")
    url, filler = served
    recogniser = filler.recogniser
    assert recogniser.trust is not None  # set at the end of training
    rng = np.random.default_rng(5)
    candidates = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    candidates += [np.full((64, 64, 3), value, np.uint8) for value in (0, 128, 255)]
    scores = recogniser.outputs(np.stack(candidates))["ood_score"]
    unlike = candidates[int(np.argmax(scores))]
    assert scores.max() > recogniser.trust.threshold  # the picture the page must not answer
    path = tmp_path / "not_a_car.png"
    Image.fromarray(unlike).save(path)
    driver = open_page(url)
    try:
        page = fill_form(driver, [str(path)], [head for head, _ in filler.fields])
        assert ABSTAIN in page["status"]
        assert all(page[head] == "" for head, _ in filler.fields)
        assert page["thumbnails"] == "1" and "Model card." in page["model-card"]
    finally:
        driver.quit()


def test_the_served_message_speaks_of_the_commands_flags():
    from eval.app import served_message

    local = served_message("http://127.0.0.1:7860/", None)
    assert "http://127.0.0.1:7860/" in local and "--share" in local and "share=True" not in local
    public = served_message("http://127.0.0.1:7860/", "https://abc.gradio.live")
    assert "https://abc.gradio.live" in public and "add --share" not in public
