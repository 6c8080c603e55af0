"""`FeedbackStore`: completions and what users said about them, in SQLite.

Every completion the server makes is recorded under its id (with the prompt,
the text, the model name and version, the sampling parameters and the time);
`POST /v1/feedback` adds a rating (+1 / -1) or a better answer the user wrote
(`preferred`). `preference_pairs` turns them into `{"prompt", "chosen",
"rejected"}` records, the preference-data format of `kerasllm.alignment`.

The database runs in WAL mode with a busy timeout, so several server workers
(and a `kerasllm feedback export` reading at the same time) are safe; each
thread uses its own connection.
"""

import json
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    id TEXT NOT NULL,
    choice INTEGER NOT NULL,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    prompt TEXT NOT NULL,
    messages TEXT,
    completion TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    params TEXT NOT NULL,
    PRIMARY KEY (id, choice)
);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    choice INTEGER NOT NULL,
    created REAL NOT NULL,
    rating INTEGER,
    preferred TEXT,
    FOREIGN KEY (id, choice) REFERENCES completions (id, choice)
);
CREATE INDEX IF NOT EXISTS feedback_by_completion ON feedback (id, choice);
"""


class FeedbackStore:
    """Completions and feedback in one SQLite file.

    Args:
        path: the database file (created if missing).

    Example:
    ```python
    store = FeedbackStore("feedback.sqlite")
    store.record_completion("cmpl-1", 0, model="tiny", version="1", endpoint="completions",
                            prompt="2+3=", completion="5", finish_reason="stop", params={})
    store.add_feedback("cmpl-1", rating=1)
    ```
    """

    def __init__(self, path):
        self.path = str(path)
        self._local = threading.local()
        self._connect()  # opens this thread's connection
        self._local.db.executescript(SCHEMA)

    def _connect(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return _Transaction(db)

    def record_completion(
        self, id, choice, *, model, version, endpoint, prompt, completion,
        finish_reason, params, messages=None,
    ):
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    id, int(choice), time.time(), model, str(version), endpoint, prompt,
                    json.dumps(messages, ensure_ascii=False) if messages is not None else None,
                    completion, finish_reason, json.dumps(params, ensure_ascii=False, sort_keys=True),
                ),
            )

    def has_completion(self, id, choice=0):
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM completions WHERE id=? AND choice=?", (id, int(choice))
            ).fetchone()
        return row is not None

    def add_feedback(self, id, choice=0, *, rating=None, preferred=None):
        """Store a rating (+1 / -1) or a preferred text for a recorded completion."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO feedback (id, choice, created, rating, preferred) VALUES (?,?,?,?,?)",
                (id, int(choice), time.time(), rating, preferred),
            )
            return cursor.lastrowid

    def rows(self):
        """Every feedback row joined with its completion, oldest first (dicts)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(
                    "SELECT f.feedback_id, f.id, f.choice, f.created AS feedback_created, "
                    "f.rating, f.preferred, c.model, c.version, c.endpoint, c.prompt, "
                    "c.messages, c.completion, c.finish_reason, c.params, c.created "
                    "FROM feedback f JOIN completions c ON c.id = f.id AND c.choice = f.choice "
                    "ORDER BY f.feedback_id"
                ).fetchall()
            finally:
                db.row_factory = None
        return [dict(row) for row in rows]

    def preference_pairs(self):
        """`{"prompt", "chosen", "rejected"}` records from the feedback.

        A better answer written by a user is chosen over the completion it
        replaces. Rated completions of the same prompt pair up: each +1
        completion is chosen over each -1 one. Equal texts make no pair, nor
        does an empty answer (the preference loaders refuse it).

        A chat completion's prompt is its conversation (a list of messages)
        and its answers are plain strings, the conversational form
        `kerasllm.alignment` renders with the chat template, so the answers
        end with `<|im_end|>` as the served model ends them.
        """
        pairs, seen = [], set()

        def add(row, chosen, rejected, source):
            key = (row["prompt"], chosen, rejected)
            if chosen != rejected and chosen.strip() and rejected.strip() and key not in seen:
                seen.add(key)
                prompt = json.loads(row["messages"]) if row["messages"] else row["prompt"]
                pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, **source})

        by_prompt = {}
        for row in self.rows():
            source = {"model": row["model"], "version": row["version"]}
            if row["preferred"]:
                add(row, row["preferred"], row["completion"], source)
            if row["rating"] in (1, -1):
                rated = by_prompt.setdefault(row["prompt"], (row, {1: [], -1: []}))[1]
                rated[row["rating"]].append((row["completion"], source))
        for row, rated in by_prompt.values():
            for good, source in rated[1]:
                for bad, _ in rated[-1]:
                    add(row, good, bad, source)
        return pairs

    def stats(self):
        """Counts per model version: completions, ratings up/down, better answers."""
        with self._connect() as db:
            completions = db.execute(
                "SELECT model, version, COUNT(*) FROM completions GROUP BY model, version"
            ).fetchall()
            feedback = db.execute(
                "SELECT c.model, c.version, "
                "SUM(f.rating = 1), SUM(f.rating = -1), SUM(f.preferred IS NOT NULL) "
                "FROM feedback f JOIN completions c ON c.id = f.id AND c.choice = f.choice "
                "GROUP BY c.model, c.version"
            ).fetchall()
        table = {}
        for model, version, count in completions:
            table[(model, version)] = {
                "model": model, "version": version, "completions": count,
                "thumbs_up": 0, "thumbs_down": 0, "preferred": 0,
            }
        for model, version, up, down, preferred in feedback:
            entry = table.setdefault(
                (model, version),
                {"model": model, "version": version, "completions": 0},
            )
            entry.update(thumbs_up=up or 0, thumbs_down=down or 0, preferred=preferred or 0)
        for entry in table.values():
            rated = entry["thumbs_up"] + entry["thumbs_down"]
            entry["approval"] = round(entry["thumbs_up"] / rated, 4) if rated else None
        return [table[key] for key in sorted(table)]


class _Transaction:
    """`with` block: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, traceback):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False
