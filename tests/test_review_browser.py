"""The review page in a real browser: Playwright driving Debian's headless chromium against real `beholder review`
servers (subprocesses on free loopback ports). One browser for the module; each test starts its own server."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from review_data import score_table

from beholder.review import Criteria, PairSession, ReviewSession, ScoreTable, read_state
from beholder.serve.launch import BeholderProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                                ".ci/run installs it)"),  # fmt: skip
]
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)  # the tests evaluate scripts of their own
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def start(tmp_path: Path, *args: str) -> BeholderProcess:
    env = {**os.environ, "BEHOLDER_CACHE": str(tmp_path / "cache")}
    return BeholderProcess("review", *args, "--port", "0", env=env, startup_timeout=60)


def open_page(page, url: str) -> None:
    page.goto(url)
    wait_ready(page)


def wait_ready(page) -> None:
    """Until the page has drawn its data and every image on it is loaded."""
    page.wait_for_selector("body[data-ready=true]", state="attached")
    page.wait_for_function(
        "[...document.querySelectorAll('main img')].length > 0 && "
        "[...document.querySelectorAll('main img')].every(i => i.complete && i.naturalWidth > 0)"
    )


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_thousand_row_table_loads_in_under_3_s_with_its_images_painted(page, tmp_path):
    table = score_table(tmp_path / "big", 1000, groups=10)
    with start(tmp_path, str(table), "--group-by", "prompt") as server:
        started = time.perf_counter()
        open_page(page, server.url)
        seconds = time.perf_counter() - started
        assert seconds < 3.0, f"the page took {seconds:.2f} s"
        assert page.inner_text("#progress-text") == "0 of 1000 reviewed"
        cards = page.locator(".card").count()
        assert 10 <= cards < 200  # drawn as a virtual list: the lines on screen, not a thousand cards
        # the screenshot, not the DOM: the first card's image box holds a picture (the box alone is one colour)
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
        box = page.locator(".card .img").first.bounding_box()
        crop = Image.open(shot).convert("RGB").crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        colours = crop.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 500
        page.keyboard.press("End")  # the last card, a thousand rows down, is drawn and painted too
        page.wait_for_function("document.querySelector('.card.cur img')?.complete")
        assert page.locator(".card.cur").get_attribute("data-id") == "999"


def test_ten_keyboard_decisions_land_in_the_file_exactly_and_a_reload_resumes(page, tmp_path):
    table = score_table(tmp_path / "t", 40, groups=4, shard_members=6)
    decisions = tmp_path / "decisions.jsonl"
    args = (str(table), "--group-by", "prompt", "--top-k", "8", "--decisions", str(decisions))
    rows = ReviewSession(ScoreTable.read(table, "prompt"), Criteria(group_by="prompt", top_k=8)).rows.paths
    keys = ["y", "n", "s", "ArrowRight", "y", "j", "j", "n", "k", "s", "y", "l", "ArrowLeft", "y", "n", "y"]
    expected, cursor = [], 0  # the page's own rule: a decision moves on to the next image
    for key in keys:
        if key in "yns":
            expected.append((rows[cursor], {"y": "keep", "n": "reject", "s": "star"}[key]))
            cursor += 1
        else:
            cursor += 1 if key in ("ArrowRight", "j", "l") else -1
    assert len(expected) == 10
    with start(tmp_path, *args) as server:
        open_page(page, server.url)
        for key in keys:
            page.keyboard.press(key)
        def made() -> list[tuple[str, str]]:
            events = map(json.loads, decisions.read_text().splitlines())
            return [(e["path"], e["decision"]) for e in events if e["event"] == "decision"]

        wait_for(lambda: len(made()) >= 10)
        assert made() == expected
        assert page.inner_text("#progress-text") == f"{len(dict(expected))} of 32 reviewed"
        here = page.locator(".card.cur").get_attribute("data-id")
        assert here == str(cursor)
        assert page.url.endswith(f"#row={here}")
        page.reload()
        wait_ready(page)
        assert page.locator(".card.cur").get_attribute("data-id") == here
        assert page.locator(".card.keep").count() + page.locator(".card.star").count() >= 1
        page.keyboard.press("u")  # undo: withdraws the latest decision, and the cursor goes back to its card
        page.wait_for_selector(f'.card.cur[data-id="{rows.index(expected[-1][0])}"]:not(.keep)')
        assert '"undo"' in decisions.read_text().splitlines()[-1]
    state = read_state(decisions, "review")
    assert {k[0]: e["decision"] for k, e in state.decided().items()} == dict(expected[:-1])
    with start(tmp_path, *args) as server:  # a new server resumes after the latest decision in force
        open_page(page, server.url)
        assert page.locator(".card.cur").get_attribute("data-id") == str(rows.index(expected[-2][0]) + 1)


def test_an_ab_review_produces_the_preference_report(page, tmp_path):
    a = score_table(tmp_path / "a", 12, groups=3, seed=0, name="a.parquet")
    b = score_table(tmp_path / "b", 12, groups=3, seed=1, name="b.parquet")
    picks = tmp_path / "picks.jsonl"
    session = PairSession(ScoreTable.read(a), ScoreTable.read(b), Criteria(group_by="prompt", top_k=2))
    sides = ["ArrowLeft", "ArrowRight", "t", "ArrowLeft", "ArrowLeft", "ArrowRight"]
    expected = {"A": 0, "B": 0, "tie": 0}
    for pair, key in zip(session.pairs, sides):
        expected["tie" if key == "t" else pair.pick("left" if key == "ArrowLeft" else "right")] += 1
    server = start(tmp_path, str(a), str(b), "--group-by", "prompt", "--top-k", "2", "--decisions", str(picks))
    with server:
        open_page(page, server.url)
        assert page.inner_text("#progress-text") == "0 of 6 pairs judged"
        for key in sides:
            page.keyboard.press(key)
            page.wait_for_timeout(300)  # the page moves on to the next pair after showing the pick
        page.wait_for_function("document.getElementById('progress-text').textContent.startsWith('6 of 6')")
        wait_for(lambda: picks.read_text().count('"event": "pick"') == 6)
        page.keyboard.press("r")
        page.wait_for_selector(".report")
        assert "win rate of A" in page.inner_text(".report")
        assert server.stop() == 0
    report = json.loads((tmp_path / "picks.report.json").read_text())
    assert (report["wins_a"], report["wins_b"], report["ties"], report["judged"]) == (
        expected["A"], expected["B"], expected["tie"], 6
    )  # fmt: skip
    assert "win rate of A" in server.output() and "scorer-human agreement" in server.output()
    from beholder.cli import main

    html = tmp_path / "ab.html"  # the same review as a static page: read-only, with its picks and its report
    assert main(["review", str(a), str(b), "--group-by", "prompt", "--top-k", "2", "--decisions", str(picks),
                 "--static", str(html), "--thumbnail-cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    open_page(page, html.as_uri())
    assert page.inner_text("#progress-text") == "6 of 6 pairs judged"
    page.keyboard.press("ArrowLeft")
    assert "read-only" in page.inner_text("#toast")
    page.keyboard.press("r")
    page.wait_for_selector(".report")
    shown = page.inner_text(".report")
    assert f"A {expected['A']} · B {expected['B']} · tie {expected['tie']}" in shown and "6 of 6 pairs" in shown


def test_a_keyed_review_lets_in_the_browser_opened_with_its_key_and_nobody_else(page, browser, tmp_path):
    table = score_table(tmp_path / "t", 12, groups=2)
    decisions = tmp_path / "decisions.jsonl"
    key_file = tmp_path / "review.key"
    key_file.write_text("k3y-for-the-team\n")
    args = (str(table), "--group-by", "prompt", "--decisions", str(decisions), "--api-key-file", str(key_file))
    with start(tmp_path, *args) as server:
        assert f"{server.url}/?key=KEY" in server.output()  # how to let a browser in; the key itself is not printed
        assert "k3y-for-the-team" not in server.output()
        open_page(page, server.url + "/?key=k3y-for-the-team")  # every image painted: they went with the cookie
        assert page.url == server.url + "/"
        page.keyboard.press("y")
        wait_for(lambda: '"keep"' in decisions.read_text())
        stranger = browser.new_context(viewport=VIEWPORT)
        try:
            response = stranger.new_page().goto(server.url)
            assert response.status == 401 and "key" in response.text()
        finally:
            stranger.close()


def test_requests_for_paths_outside_the_table_are_refused(page, tmp_path):
    table = score_table(tmp_path / "t", 12, groups=2)
    outside = tmp_path / "t" / "secret.txt"
    outside.write_text("not for the page")
    with start(tmp_path, str(table), "--group-by", "prompt", "--top-k", "2") as server:
        host = urlsplit(server.url).netloc

        def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
            connection = http.client.HTTPConnection(host, timeout=10)
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()

        assert get("/api/images/0/thumb")[0] == 200
        for path in ("/secret.txt", "/api/images/4/thumb", "/api/images/..%2Fsecret.txt/thumb",
                     "/api/images/0/..%2F..%2Fsecret.txt", "/api/images?path=secret.txt", "/assets/..%2Fsecret.txt",
                     "/assets/%2E%2E/%2E%2E/secret.txt", "/api/rows/4"):  # fmt: skip
            status, body = get(path)
            assert status in (400, 404) and b"not for the page" not in body, path
        assert get("/api/session", {"Host": "attacker.example"})[0] == 400  # DNS rebinding
        response = page.goto(server.url + "/secret.txt")
        assert response.status == 404


def test_the_static_export_opens_offline_read_only_with_its_images(page, tmp_path):
    from beholder.cli import main

    table = score_table(tmp_path / "t", 16, groups=2, shard_members=3)
    html = tmp_path / "share.html"
    assert main(["review", str(table), "--group-by", "prompt", "--top-k", "5", "--static", str(html),
                 "--thumbnail-cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_page(page, html.as_uri())
    assert page.locator(".card").count() == 10 and page.inner_text("#progress-text") == "0 of 10 reviewed"
    page.keyboard.press("y")
    assert "read-only" in page.inner_text("#toast") and page.locator(".card.keep").count() == 0
    page.keyboard.press("Enter")
    page.wait_for_selector("#cols td")
    assert "prompt" in page.inner_text("#cols")
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
