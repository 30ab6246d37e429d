"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium chromium-driver)"
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), (
        "chromium is installed but /usr/bin/chromedriver is not: apt-get install -y chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,800"):
        options.add_argument(flag)
    # An explicit driver path: selenium then never runs Selenium Manager (which would go to the network).
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_type_a_sentence_click_and_see_a_label(live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server.url + "/")
    assert "情感" in browser.title
    box = browser.find_element(By.ID, "text")
    box.send_keys("这部电影太好看了，非常喜欢")
    browser.find_element(By.ID, "submit").click()
    wait = WebDriverWait(browser, 10)
    wait.until(EC.visibility_of_element_located((By.ID, "result")))
    label = browser.find_element(By.ID, "label").text
    assert label in ("Positive", "Negative")
    assert browser.find_element(By.ID, "score").text.startswith("score 0.")
    # The footer shows which artifact answered (from /health).
    wait.until(lambda d: "tiny" in d.find_element(By.ID, "model").text)
    # Both names of the label: the API's and the checkpoint's (config.json id2label).
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "label-name").text)
    assert browser.find_element(By.ID, "label-name").text == "· " + {"Positive": "正面", "Negative": "负面"}[label]
    # Chinese text is set in a CJK font stack, not the UI font alone (boxes where it has no CJK glyphs).
    family = browser.execute_script("return getComputedStyle(document.getElementById('text')).fontFamily")
    assert family.startswith('"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei"'), family

    # An empty text shows the server's error message instead of a label.
    box.clear()
    browser.find_element(By.ID, "submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "error")))
    assert "text is empty" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "result").is_displayed()

    # Nothing on the page came from anywhere but this server.
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith(live_server.url) for url in urls), urls
