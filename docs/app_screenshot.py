"""Take the README's screenshot of the listing-form page (``python docs/app_screenshot.py``).

Serves ``eval.app`` for the demo run's model on localhost, uploads two photos of one car from the
demo's synthetic dataset in headless Chromium (``common.browser``) and saves
``docs/app_screenshot.png``. Run the demo first (``python -m training.fit --config demo.yaml``).
"""
import json
import os
import socket
import sys

from common.browser import fill_form, open_page
from eval.app import FormFiller, build_app, launch
from eval.predict import Recogniser

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = "runs/demo/model.keras"
PHOTOS = "runs/demo_data/raw"
OUT = "docs/app_screenshot.png"


def main() -> int:
    truth = json.load(open(os.path.join(PHOTOS, "SYNTHETIC.json")))
    bad = set(truth["bad_files"].values())
    same_car = sorted(path for path, label in truth["class_of"].items() if label == 5 and path not in bad)[:2]
    filler = FormFiller(Recogniser(MODEL), min_confidence=0.5)
    app = build_app(filler)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch(app, filler.limits, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    driver = open_page(f"http://127.0.0.1:{port}/", 1280, 900)
    try:
        page = fill_form(driver, [os.path.join(PHOTOS, path) for path in same_car], [h for h, _ in filler.fields])
        print({key: value for key, value in page.items() if not key.startswith("alternatives")})
        driver.save_screenshot(OUT)
    finally:
        driver.quit()
        app.close()
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
