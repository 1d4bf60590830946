"""The Studio playground in a real headless Chromium (the distribution's chromium + chromedriver,
driven by Selenium): Korean typing, live token count and split, streaming Generate and Stop,
few-shot builder, probabilities view, multi-turn restart text, presets, code snippets."""
from __future__ import annotations

import shutil
import time

import pytest

from serve_helpers import API_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs the chromium and chromium-driver packages (.ci/run installs them)")
PROMPT = "오늘 서울의 날씨는"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # A closed network stalls Chromium's background services: switch them all off.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def long_output_seed(server) -> int:
    import requests

    for seed in range(20):
        r = requests.post(server.base + "/v1/completions", timeout=60,
                          headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"prompt": PROMPT, "max_tokens": 96, "temperature": 1.0, "seed": seed,
                                "top_p": 0.95, "top_k": 0, "repetition_penalty": 1.0}).json()
        if r["usage"]["completion_tokens"] >= 40:
            return seed
    raise AssertionError("no seed in 0..19 gives 40 tokens")


def set_value(driver, el_id, value):
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                          "e.dispatchEvent(new Event('input', {bubbles: true}));", el_id, value)


def test_studio_in_headless_chromium(browser, server, tokenizer, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    by_id = lambda i: d.find_element(By.ID, i)
    d.get(server.base + "/")
    wait(lambda: "run" in by_id("model-info").text, what="the server config")
    # one model served: the model chooser (adapters, docs/serve.md) holds it and stays hidden
    assert by_id("model").get_attribute("value") == "run" and not by_id("model-box").is_displayed()
    by_id("api-key").send_keys(API_KEY + Keys.TAB)

    # Korean typed into the editor: the live token count and the token split follow.
    by_id("prompt").send_keys(PROMPT)
    assert by_id("prompt").get_attribute("value") == PROMPT
    n = len(tokenizer.encode(PROMPT))
    wait(lambda: by_id("token-count").text.startswith(f"{n} tokens"), what="the token count")
    by_id("show-tokens").click()
    wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "#token-view span")) == n, what="the token split")

    # Generate streams into the output; Stop stops it. A slow network makes the stream last; the
    # seed is one whose output is long (asked through the API first), so it cannot end by itself.
    set_value(d, "max-tokens", "96")
    set_value(d, "temperature", "1")
    set_value(d, "seed", str(long_output_seed(server)))
    d.set_network_conditions(offline=False, latency=5, download_throughput=400, upload_throughput=100000)
    by_id("generate").click()
    lengths = set()
    wait(lambda: lengths.add(len(by_id("output").text)) or len(lengths - {0}) >= 2, timeout=30,
         what="streamed text arriving in pieces")
    by_id("stop").click()
    wait(lambda: by_id("status").text == "stopped", what="Stop")
    stopped_at = by_id("output").text
    time.sleep(0.5)
    assert by_id("output").text == stopped_at and by_id("generate").is_enabled()
    d.delete_network_conditions()

    # Probabilities view and multi-turn restart text on a short generation.
    set_value(d, "max-tokens", "8")
    by_id("show-probs").click()
    by_id("inject-restart").click()
    by_id("generate").click()
    wait(lambda: by_id("status").text.startswith("finished"), what="a finished generation")
    toks = d.find_elements(By.CSS_SELECTOR, "#output .tok")
    assert toks and all(0 <= float(t.get_attribute("data-prob")) <= 1 for t in toks)
    out = by_id("output").text
    prompt_now = by_id("prompt").get_attribute("value")
    assert prompt_now.startswith(PROMPT) and prompt_now.endswith("\n사용자: ")
    assert out.strip() in prompt_now

    # Code snippets show the request.
    assert "/v1/completions" in by_id("snippet-curl").text and "max_tokens" in by_id("snippet-curl").text

    # Few-shot builder: description + examples + query, assembled and used as the prompt.
    d.find_element(By.CSS_SELECTOR, "[data-tab=tab-fewshot]").click()
    by_id("fs-description").send_keys("문장의 감정을 분류하세요.")
    ins, outs = d.find_elements(By.CSS_SELECTOR, ".fs-input"), d.find_elements(By.CSS_SELECTOR, ".fs-output")
    ins[0].send_keys("정말 좋아요")
    outs[0].send_keys("긍정")
    by_id("fs-add").click()
    d.find_elements(By.CSS_SELECTOR, ".fs-input")[1].send_keys("별로예요")
    d.find_elements(By.CSS_SELECTOR, ".fs-output")[1].send_keys("부정")
    by_id("fs-query").send_keys("최고의 하루")
    expect = ("문장의 감정을 분류하세요.\n\n입력: 정말 좋아요\n출력: 긍정\n###\n"
              "입력: 별로예요\n출력: 부정\n###\n입력: 최고의 하루\n출력:")
    wait(lambda: by_id("fs-preview").get_attribute("value") == expect, what="the few-shot preview")
    by_id("fs-use").click()
    assert by_id("prompt").get_attribute("value") == expect
    assert by_id("stop-seqs").get_attribute("value") == "###"

    # Presets survive a reload (browser localStorage).
    by_id("preset-name").send_keys("감정 분류")
    by_id("preset-save").click()
    d.refresh()
    wait(lambda: "run" in by_id("model-info").text, what="the reloaded page")
    assert by_id("prompt").get_attribute("value") == ""
    by_id("preset-load").click()
    wait(lambda: by_id("prompt").get_attribute("value") == expect, what="the loaded preset")

    shot = tmp_path / "studio.png"
    d.save_screenshot(str(shot))
    img = Image.open(shot).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20)
    assert img.size[0] >= 800 and colors is not None and len(colors) > 50  # not a blank page
