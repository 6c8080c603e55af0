"""Feedback: ids on completions, ratings and better answers in SQLite, export and stats."""

import concurrent.futures
import json
import sqlite3

import pytest

pytestmark = pytest.mark.tf_only


def _complete(http, prompt, **extra):
    body = {"model": "tinydir", "prompt": prompt, "max_tokens": 4, "temperature": 1.0, **extra}
    answer = http.post("/v1/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_feedback_rows_export_and_stats(server, http, tmp_path, capsys):
    from kerasllm.cli import main

    good = _complete(http, "フィードバック", seed=1)
    bad = _complete(http, "フィードバック", seed=2)
    fixed = _complete(http, "直してください", seed=3)
    assert http.post("/v1/feedback", json={"id": good["id"], "rating": 1}).status_code == 200
    assert http.post("/v1/feedback", json={"id": bad["id"], "rating": -1}).status_code == 200
    assert http.post("/v1/feedback", json={"id": fixed["id"], "preferred": "より良い答え"}).status_code == 200
    assert http.post("/v1/feedback", json={"id": "cmpl-missing", "rating": 1}).status_code == 404
    assert http.post("/v1/feedback", json={"id": good["id"], "rating": 5}).status_code == 400
    assert http.post("/v1/feedback", json={"id": good["id"]}).status_code == 400

    with sqlite3.connect(server.db) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute(
            "SELECT c.prompt, c.completion, c.model, c.version, c.params, f.rating FROM feedback f "
            "JOIN completions c USING (id, choice) WHERE id = ?", (good["id"],)).fetchone()
    assert row[0] == "フィードバック" and row[1] == good["choices"][0]["text"]
    assert row[2] == "tinydir" and row[3] == "1" and row[5] == 1
    assert json.loads(row[4])["seed"] == 1

    output = tmp_path / "prefs.jsonl"
    assert main(["feedback", "export", "--db", str(server.db), "--output", str(output)]) == 0
    pairs = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    assert {"prompt": "直してください", "chosen": "より良い答え",
            "rejected": fixed["choices"][0]["text"]} in pairs
    if good["choices"][0]["text"] != bad["choices"][0]["text"]:
        assert {"prompt": "フィードバック", "chosen": good["choices"][0]["text"],
                "rejected": bad["choices"][0]["text"]} in pairs
    capsys.readouterr()
    assert main(["feedback", "stats", "--db", str(server.db), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["models"]
    entry = next(s for s in stats if s["model"] == "tinydir")
    assert entry["thumbs_up"] >= 1 and entry["thumbs_down"] >= 1 and entry["preferred"] >= 1


def test_concurrent_feedback_writes_all_land(server, http):
    ids = [_complete(http, f"並行 {i}")["id"] for i in range(4)]
    jobs = [(ids[i % 4], 1 if i % 2 else -1) for i in range(48)]

    def send(job):
        return http.post("/v1/feedback", json={"id": job[0], "rating": job[1]}).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, jobs))
    assert codes == [200] * len(jobs)
    with sqlite3.connect(server.db) as db:
        count = db.execute(
            f"SELECT COUNT(*) FROM feedback WHERE id IN ({','.join('?' * 4)})", ids).fetchone()[0]
    assert count == len(jobs)


def test_preference_pairs_from_a_store(tmp_path):
    from kerasllm.serving import FeedbackStore

    store = FeedbackStore(tmp_path / "f.sqlite")
    for i, (text, rating) in enumerate([("good", 1), ("bad", -1), ("worse", -1)]):
        store.record_completion(f"c{i}", 0, model="m", version="2", endpoint="completions",
                                prompt="p", completion=text, finish_reason="stop", params={})
        store.add_feedback(f"c{i}", rating=rating)
    pairs = store.preference_pairs()
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("good", "bad"), ("good", "worse")]
    [stats] = store.stats()
    assert (stats["completions"], stats["thumbs_up"], stats["thumbs_down"]) == (3, 1, 2)


def test_stats_table_fits_long_version_names(monkeypatch, capsys):
    """A constellation records the member's name as the version: the columns widen to fit."""
    import types

    from kerasllm.cli import feedback

    rows = [dict(model="specialists", version="japanese-specialist", completions=12, thumbs_up=3,
                 thumbs_down=1, preferred=2, approval=0.75),
            dict(model="specialists", version="en", completions=7, thumbs_up=0, thumbs_down=0,
                 preferred=0, approval=None)]
    monkeypatch.setattr(feedback, "_open", lambda args: types.SimpleNamespace(stats=lambda: rows))
    feedback._stats(types.SimpleNamespace(json=False))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "version", "completions", "up", "down", "better", "approval"]
    assert lines[1].split() == ["specialists", "japanese-specialist", "12", "3", "1", "2", "75%"]
    assert lines[2].split() == ["specialists", "en", "7", "0", "0", "0", "-"]
    # Right-aligned numbers end in the same column as their header.
    assert len({line.index("approval") + len("approval") if i == 0 else len(line)
                for i, line in enumerate(lines)}) == 1
