"""The playground page end to end in headless Chromium: Japanese prompt, stream, thumb, SQLite row."""

import pathlib
import sqlite3

import pytest

pytestmark = pytest.mark.tf_only

CHROMIUM = pathlib.Path("/usr/bin/chromium")


def test_page_is_served(http):
    page = http.get("/")
    assert page.status_code == 200 and "プロンプト" in page.text and 'id="thumb_up"' in page.text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian package chromium (apt-get install chromium)")
def test_japanese_prompt_streams_and_thumb_lands_in_sqlite(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install kerasllm[serve])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length >= 2")
            page.select_option("#model", "tinydir")
            page.select_option("#mode", "chat")
            page.fill("#max_tokens", "24")
            page.fill("#seed", "5")
            page.fill("#prompt", "日本の首都はどこですか？")
            page.click("#send")
            page.wait_for_selector("#feedback:not(.hidden)", timeout=120_000)
            text = page.inner_text("#output")
            assert "完了" in page.inner_text("#status")
            page.click("#thumb_up")
            page.wait_for_function("document.getElementById('status').textContent.includes('保存')")
        finally:
            browser.close()
    with sqlite3.connect(server.db) as db:
        row = db.execute(
            "SELECT c.messages, c.completion, f.rating FROM feedback f JOIN completions c USING (id, choice) "
            "WHERE c.messages LIKE '%日本の首都%' ORDER BY f.feedback_id DESC").fetchone()
    assert row is not None and row[2] == 1
    assert row[1].strip() == text.strip()
