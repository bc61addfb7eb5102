"""Drive the listing-form page (``eval.app``) in headless Chromium, as a seller would: upload photos,
press the button, read the filled fields. Used by the tests and by ``docs/app_screenshot.py``.

Needs Selenium and Debian's ``chromium`` + ``chromium-driver`` (nothing is downloaded: the driver
must be on the PATH).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Optional, Sequence, Tuple


def chromium_paths() -> Optional[Tuple[str, str]]:
    """``(browser, driver)`` when both are installed, else ``None``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def open_page(url: str, width: int = 1280, height: int = 1000):
    """A headless Chromium showing ``url``; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("headless Chromium needs chromium and chromium-driver (apt-get install chromium "
                           "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.get(url)
    return driver


def fill_form(driver, photos: Sequence[str], heads: Sequence[str], timeout: float = 60) -> Dict[str, str]:
    """Upload ``photos``, press *Fill in the form*, wait for the answer; returns each field's value,
    each field's alternatives text (``alternatives-<head>``), the status text (``status``), the model
    card's text (``model-card``) and how many thumbnails show (``thumbnails``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    upload = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#photos input[type=file]")))
    upload.send_keys("\n".join(os.path.abspath(path) for path in photos))
    stems = [os.path.splitext(os.path.basename(path))[0] for path in photos]  # listed once uploaded
    wait.until(lambda page: all(stem in page.find_element(By.ID, "photos").text for stem in stems))
    before = driver.find_element(By.ID, "status").text
    driver.find_element(By.ID, "fill").click()
    wait.until(lambda page: page.find_element(By.ID, "status").text.strip() not in ("", before.strip()))
    result = {"status": driver.find_element(By.ID, "status").text,
              "model-card": driver.find_element(By.ID, "model-card").text,
              "thumbnails": str(len(driver.find_elements(By.CSS_SELECTOR, "#thumbnails img")))}
    for head in heads:
        box = driver.find_element(By.CSS_SELECTOR, f"#field-{head} textarea, #field-{head} input")
        result[head] = box.get_attribute("value")
        result[f"alternatives-{head}"] = driver.find_element(By.ID, f"alternatives-{head}").text
    return result
