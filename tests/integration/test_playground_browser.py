"""The playground in a real headless Chromium against a real ``distilkit serve`` of tiny models.

Each model's sample is run from the page and what the page shows is checked against what the
JSON API answers for the same request. Needs Playwright's Python package and a Chromium
(Debian's ``chromium``; ``DISTILKIT_CHROMIUM`` points elsewhere); skips with the reason otherwise.
``DISTILKIT_PLAYGROUND_SCREENSHOT=docs/playground.png`` also runs the README's card models
(``../shared``, dummy weights) and writes the README's screenshot there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import httpx
import pytest
from test_serve import server

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")

CHROMIUM = os.environ.get("DISTILKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "pl4yground-key"
SCREENSHOT = os.environ.get("DISTILKIT_PLAYGROUND_SCREENSHOT")
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A fresh Chromium profile; page errors (uncaught exceptions) are collected on ``.errors``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DISTILKIT_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        context.errors = []
        context.on("weberror", lambda error: context.errors.append(str(error.error)))
        yield context
        context.close()
    assert context.errors == []


@pytest.fixture(scope="module")
def served(tiny_model):
    """One server, API key on, with the four tasks and both mask-token families."""
    models = {
        "bert": tiny_model("fill-mask"), "roberta": tiny_model("fill-mask", "roberta"),
        "squad": tiny_model("question-answering"),
        "sst": tiny_model("text-classification", id2label=["NEGATIVE", "POSITIVE"]),
        "ner": tiny_model("token-classification", id2label=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    }
    args = [a for name, path in models.items() for a in ("--model", f"{name}={path}")]
    with server(*args, "--api-key", KEY) as (_, url):
        yield url


def open_page(browser, url: str, key: str | None):
    """Open the page in a new tab; with ``key``, enter it the way a user does and wait for the models."""
    page = browser.new_page()
    page.goto(url + "/")
    expect = sync_api.expect
    expect(page.locator("#auth")).to_be_visible()
    if key:
        page.fill("#api-key", key)
        page.press("#api-key", "Enter")
        expect(page.locator("#model")).to_be_enabled()
    return page


@pytest.fixture(scope="module")
def page(browser, served):
    page = open_page(browser, served, KEY)
    yield page
    page.close()


def run(page, *, keyboard: bool = False) -> None:
    """Press Run (or Ctrl+Enter in the first text box) and wait for the page to finish."""
    runs = int(page.get_attribute("#output", "data-runs") or 0)
    if keyboard:
        page.locator("#fields textarea, #fields input").first.press("Control+Enter")
    else:
        page.click("#run")
    page.wait_for_selector(f"#output[data-runs='{runs + 1}']")


def same_request_by_api(page, url: str) -> tuple[dict, httpx.Response]:
    """The request the page sent (from its raw view), sent again with httpx."""
    method, path = page.inner_text("#request-line").split(" ", 1)
    body = json.loads(page.inner_text("#request-json"))
    assert method == "POST" and path.startswith("/models/")
    response = httpx.post(url + path, json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    return body, response


def close(a, b) -> bool:
    """Equal JSON up to float rounding (the page and the client call the same model twice)."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-7)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def bars(page, scope: str = "#result") -> list[tuple[str, float]]:
    rows = page.locator(f"{scope} .bar-row")
    return [(row.locator(".bar-label").inner_text(), float(row.locator(".bar-value").inner_text()))
            for row in rows.all()]


def check_fill_mask(page, body, answer) -> None:
    assert len(bars(page)) == body.get("parameters", {}).get("top_k", 5) == len(answer)
    for (label, score), candidate in zip(bars(page), answer):
        assert label == candidate["token_str"].strip()
        assert math.isclose(score, candidate["score"], abs_tol=6e-5)
    assert page.inner_text("#result .filled") == answer[0]["sequence"]


def check_question_answering(page, body, answer) -> None:
    context = body["inputs"]["context"]
    marked = page.inner_text("#result mark.answer")
    assert marked == answer["answer"] == context[answer["start"]:answer["end"]]
    assert page.inner_text("#result .context") == context
    cells = page.locator("#result tbody tr").first.locator("td").all_inner_texts()
    assert cells[1:] == [answer["answer"], f"{answer['score']:.4f}", str(answer["start"]), str(answer["end"])]


def check_text_classification(page, body, answer) -> None:
    labels = answer[0] if isinstance(answer[0], list) else answer  # a pair comes back as one result in a list
    assert [label for label, _ in bars(page)] == [r["label"] for r in labels] and len(labels) == 2
    assert all(math.isclose(s, r["score"], abs_tol=6e-5) for (_, s), r in zip(bars(page), labels))


def check_token_classification(page, body, answer) -> None:
    text = body["inputs"]
    marks = page.locator("#result mark.ent")
    shown = [(marks.nth(i).locator(".ent-text").inner_text(), marks.nth(i).get_attribute("data-type"))
             for i in range(marks.count())]
    assert answer and shown == [(text[e["start"]:e["end"]], e["entity_group"]) for e in answer]
    assert page.locator("#result tbody tr").count() == len(answer)
    assert page.inner_text("#result .entities-text").replace("\n", "") != ""


CHECKS = {"bert": check_fill_mask, "roberta": check_fill_mask, "squad": check_question_answering,
          "sst": check_text_classification, "ner": check_token_classification}
SAMPLES = [  # (model, sample button, the request the sample must send)
    ("bert", 0, {"inputs": "Paris is [MASK] of France"}),
    ("roberta", 0, {"inputs": "Paris is the <mask> of France.", "parameters": {"top_k": 2}}),
    ("squad", 0, {"inputs": {"question": "What is my name?",
                             "context": "My name is John and I live in Seattle."}}),
    ("squad", 1, {"inputs": {"question": "Where do I live?",
                             "context": "My name is Ravi and I live in Hyderabad."}}),
    ("sst", 0, {"inputs": "I like you. I love you", "parameters": {"top_k": 2}}),
    ("sst", 1, {"inputs": {"text": "A man is playing a guitar.", "text_pair": "A person plays music."},
                "parameters": {"top_k": 2}}),
    ("ner", 0, {"inputs": "My name is Wolfgang and I live in Berlin.",
                "parameters": {"aggregation_strategy": "simple"}}),
]


def test_without_the_key_the_page_asks_for_it_then_lists_every_model(browser, served):
    page = open_page(browser, served, None)
    assert "missing or wrong API key" in page.inner_text("#notice")
    page.fill("#api-key", KEY)
    page.click("#auth-form button[type=submit]")
    sync_api.expect(page.locator("#model")).to_be_enabled()
    assert page.locator("#model option").all_inner_texts() == [
        "bert (fill-mask)", "roberta (fill-mask)", "squad (question-answering)", "sst (text-classification)",
        "ner (token-classification)"]
    assert page.evaluate("() => sessionStorage.getItem('distilkit-api-key')") == KEY
    page.close()


@pytest.mark.parametrize(("name", "sample", "request_body"), SAMPLES, ids=[f"{m}-{i}" for m, i, _ in SAMPLES])
def test_each_sample_shows_what_the_json_api_answers(page, served, name, sample, request_body, tmp_path):
    page.select_option("#model", name)
    page.locator("#samples button.sample").nth(sample).click()
    run(page, keyboard=name == "squad")
    assert page.locator("#error").is_hidden()
    body, response = same_request_by_api(page, served)
    assert body == request_body
    assert response.status_code == 200
    assert close(json.loads(page.inner_text("#response-json")), response.json())
    CHECKS[name](page, body, response.json())
    assert "total" in page.inner_text("#timing")
    curl = page.inner_text("#curl")
    assert f"{served}/models/{name}" in curl and "Bearer $DISTILKIT_API_KEY" in curl
    page.screenshot(path=tmp_path / f"playground-{name}-{sample}.png", full_page=True)


def test_bad_input_shows_the_servers_422_message_then_the_mask_button_fixes_it(page, served):
    page.select_option("#model", "bert")
    page.fill("#field-text", "Paris is the capital of France")
    run(page)
    _, response = same_request_by_api(page, served)
    assert response.status_code == 422
    error = page.locator("#error")
    assert error.is_visible() and error.get_attribute("role") == "alert"
    assert "422 invalid_request" in error.inner_text()
    assert response.json()["error"]["message"] in error.inner_text()
    assert "this model's mask token is [MASK]" in error.inner_text()
    page.locator("#field-text").evaluate("(box) => box.setSelectionRange(13, 20)")  # select "capital"
    page.click("#insert-mask")
    assert page.input_value("#field-text") == "Paris is the [MASK] of France"
    page.fill("#param-top_k", "3")
    run(page)
    assert error.is_hidden() and len(bars(page)) == 3


def test_every_server_timing_entry_is_kept_for_display(page):
    # Stage entries (tokenize, queue, forward, decode) come before the guard's total.
    header = 'tokenize;dur=0.4, queue;dur=1, forward;dur=8.25;desc="bf16", total;dur=10.1'
    parsed = page.evaluate("async (h) => (await import('/playground/static/render.js')).parseServerTiming(h)", header)
    assert parsed == [{"name": "tokenize", "dur": 0.4}, {"name": "queue", "dur": 1},
                      {"name": "forward", "dur": 8.25, "desc": "bf16"}, {"name": "total", "dur": 10.1}]


def test_readable_at_360_px_without_sideways_scrolling_and_the_answer_comes_into_view(page):
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        page.select_option("#model", "squad")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
        for label in page.locator("#fields label, #params label").all():
            assert label.is_visible()
        page.evaluate("window.scrollTo(0, 0)")
        run(page)  # one column: the answer is below the form and scrolls into view
        assert 0 <= page.locator("#output").bounding_box()["y"] < 740
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.skipif(not SCREENSHOT, reason="DISTILKIT_PLAYGROUND_SCREENSHOT=docs/playground.png writes the "
                                           "README's screenshot")
def test_readme_screenshot_of_the_card_models(browser, shared_dir):
    names = ("distilbert-base-cased", "distilbert-base-cased-distilled-squad", "distilroberta-base")
    args = [a for name in names for a in ("--model", str(shared_dir / "models" / name))]
    with server("--dummy-weights", *args) as (_, url):
        page = browser.new_page()
        page.set_viewport_size({"width": 1280, "height": 860})
        page.goto(url + "/")
        page.select_option("#model", "distilroberta-base")
        run(page)
        assert page.locator("#error").is_hidden() and len(bars(page)) == 2
        page.evaluate("window.scrollTo(0, 0)")
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT)
        page.close()
