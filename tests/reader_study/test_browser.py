"""A rater session in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): log in, answer with
the keyboard and the mouse, reload mid-way, double-submit, finish; the database holds every answer exactly
once. All network traffic is recorded: nothing in it names a source, a group or the real image; images come
with the rater's code in a header and are never cacheable. Then the organiser signs in to /admin through
the form: the token travels in no URL and the session cookie is HttpOnly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reader_study import store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")


def test_rater_session_in_headless_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    base, paths, token = server
    key = json.loads(paths.answer_key.read_text())
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    traffic: list[tuple[str, dict, bytes]] = []
    requests: list[tuple[str, dict]] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("response", lambda r: traffic.append((r.url, r.headers, r.body() if r.ok else b"")))
        page.on("request", lambda r: requests.append((r.url, r.headers)))
        page.goto(base + "/")
        page.fill("#code", "not-a-code")
        page.click("#start")
        page.wait_for_selector("#error:has-text('not known')")
        page.fill("#code", rater.code)
        page.click("#start")
        page.wait_for_selector("#progresstext:has-text('Trial 1 of 10')")

        # images are large: each of the four at least a fifth of the viewport wide
        page.wait_for_function("[...document.querySelectorAll('.imgbox img')].every(i => i.complete && i.naturalWidth > 0)")
        widths = page.eval_on_selector_all(".imgbox img", "els => els.map(e => e.getBoundingClientRect().width)")
        assert len(widths) == 4 and min(widths) > 0.2 * 1600
        srcs = page.eval_on_selector_all(".imgbox img", "els => els.map(e => e.src)")
        assert all(src.startswith("blob:") for src in srcs)  # fetched with the code, shown from memory
        page.screenshot(path=str(os.environ.get("CSPINE_STUDY_SCREENSHOT", tmp_path / "rater.png")))
        assert page.locator("#submit").is_disabled()

        # trials 1-3 with the keyboard: letter picks, digits rate A..D in turn, Enter submits
        for n, letter in enumerate("ABC", start=1):
            page.keyboard.press(letter)
            for s in (1, 2, 3, 4):
                page.keyboard.press(str(s))
            page.keyboard.press("Enter")
            page.wait_for_selector(f"#progresstext:has-text('Trial {n + 1} of 10')")

        # trial 4 with the mouse, half done, then a reload: the draft and the position survive
        page.locator(".cell").nth(3).locator("button.real").click()
        page.locator(".cell").nth(0).locator(".scores button").nth(1).click()
        page.reload()
        page.wait_for_selector("#progresstext:has-text('Trial 4 of 10')")
        assert "on" in page.locator(".cell").nth(3).locator("button.real").get_attribute("class")
        for i in range(1, 4):
            page.locator(".cell").nth(i).locator(".scores button").nth(2).click()
        # zoom opens and closes
        page.locator(".imgbox").nth(1).click()
        assert page.locator("#zoom").is_visible()
        page.mouse.wheel(0, -300)
        page.keyboard.press("Escape")
        assert not page.locator("#zoom").is_visible()
        # double submit: a second click and a replayed request do not duplicate the answer
        page.locator("#submit").dblclick()
        page.wait_for_selector("#progresstext:has-text('Trial 5 of 10')")
        replay = page.evaluate(
            """async (code) => (await (await fetch('api/answer', {method: 'POST',
                 headers: {'Content-Type': 'application/json', 'X-Access-Code': code},
                 body: JSON.stringify({step: 3, choice: 0, scores: [1, 1, 1, 1]})})).json())""",
            rater.code,
        )
        assert replay["stored"] is False and replay["done"] == 4

        for n in range(5, 11):
            page.keyboard.press("D")
            for s in (2, 2, 2, 2):
                page.keyboard.press(str(s))
            page.keyboard.press("Enter")
            if n < 10:
                page.wait_for_selector(f"#progresstext:has-text('Trial {n + 1} of 10')")
        page.wait_for_selector("#done:has-text('all 10 trials')")
        page.reload()
        page.wait_for_selector("#done:has-text('all 10 trials')")

        # the organiser: /admin shows the sign-in form; the token goes in a POST body, never in a URL
        admin = browser.new_page()
        admin.on("request", lambda r: requests.append((r.url, r.headers)))
        admin.goto(base + "/admin")
        admin.fill("#token", "wrong")
        admin.click("button[type=submit]")
        admin.wait_for_selector("#error:has-text('not right')")
        admin.fill("#token", token)
        admin.click("button[type=submit]")
        admin.wait_for_selector("h1:has-text('progress')")
        assert admin.url == base + "/admin" and "10 of 30 answers given" in admin.content()
        assert f"{rater.rater_id}</td>" in admin.content() and "10 / 10" in admin.content()
        (cookie,) = admin.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
        assert admin.evaluate("document.cookie") == ""  # invisible to scripts
        with admin.expect_download() as dl:
            admin.click("a[href='admin/export.csv']")
        assert len(Path(dl.value.path()).read_text().strip().splitlines()) == 11
        admin.click("text=Sign out")
        admin.wait_for_selector("#token")
        assert admin.context.cookies() == []
        browser.close()

    with store.connect(paths.db) as conn:
        rows = [r for r in store.responses(conn) if r["rater_id"] == rater.rater_id]
    assert len(rows) == 10 and sorted(r["trial"] for r in rows) == list(range(10))
    assert [r["step"] for r in rows] == list(range(10))
    assert [r["choice"] for r in rows] == [0, 1, 2, 3] + [3] * 6
    assert rows[0]["scores"] == [1, 2, 3, 4] and rows[3]["scores"] == [2, 3, 3, 3]

    # no URL the browser asked for carries the token or the rater's code; image requests carry the code
    assert requests and not any(token in u or rater.code in u or "?" in u for u, _ in requests)
    assert all(h.get("x-access-code") == rater.code for u, h in requests if "/img/" in u)
    # the network traffic: image responses identical in headers and size, never cacheable; nothing names a
    # source or group
    imgs = [(h, b) for u, h, b in traffic if "/img/" in u]
    assert len(imgs) >= 40
    assert all(h["cache-control"] == "no-store" and h["pragma"] == "no-cache" for h, _ in imgs)
    assert len({(json.dumps(sorted(h.items())), len(b)) for h, b in imgs}) == 1
    secrets_ = {a["image_id"] for t in key["trials"] for a in t["alternatives"]} | set(key["groups"]) - {"real"}
    for url, _, body in traffic:
        if "/img/" in url:
            continue
        text = url + body.decode("utf-8", errors="replace")
        assert not any(s in text for s in secrets_), url
        if "/api/" in url:
            assert "real" not in body.decode().lower()
