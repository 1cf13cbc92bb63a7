"""The study's database, study/responses.sqlite: raters (access codes, trial orders) and their answers.

Every answer is one row, committed (WAL journal, synchronous=FULL) before the web app replies, so a killed
server loses nothing that a rater saw acknowledged. ``PRIMARY KEY (rater_id, trial)`` and
``UNIQUE (rater_id, step)`` make a double submit (a double click, a retried request after a reload) a no-op
rather than a duplicate: the first answer given is the one kept. Used by the web app (reader_study.server),
the admin commands (reader_study.cli) and the analysis (reader_study.analyze).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS raters (
    rater_id    TEXT PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    code        TEXT NOT NULL UNIQUE,
    trial_order TEXT NOT NULL,
    simulated   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    rater_id     TEXT NOT NULL REFERENCES raters(rater_id),
    step         INTEGER NOT NULL,
    trial        INTEGER NOT NULL,
    choice       INTEGER NOT NULL,
    scores       TEXT NOT NULL,
    elapsed_ms   INTEGER,
    submitted_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, trial),
    UNIQUE (rater_id, step)
);
"""

#: Access-code alphabet without look-alikes (0/O, 1/I/L).
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_code() -> str:
    """A random access code such as ``K7QM-2XHD`` (about 40 bits)."""
    chars = [secrets.choice(_CODE_ALPHABET) for _ in range(8)]
    return "".join(chars[:4]) + "-" + "".join(chars[4:])


def normalise_code(code: str) -> str:
    c = "".join(ch for ch in code.upper() if ch.isalnum())
    return c[:4] + "-" + c[4:] if len(c) == 8 else code.strip().upper()


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode with WAL and full sync; closed on exit."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        yield conn
    finally:
        conn.close()


def init_db(path: Path, study_id: str) -> None:
    """Create the tables (idempotent) and tie the database to ``study_id`` (study.json's id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as conn:
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='study_id'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta(key, value) VALUES('study_id', ?)", (study_id,))
        elif row["value"] != study_id:
            raise ValueError(
                f"{path} belongs to study {row['value']}, not {study_id}: move it away before building a new study"
            )


@dataclass(frozen=True)
class Rater:
    rater_id: str
    number: int
    name: str
    code: str
    trial_order: list[int]
    simulated: bool


def _rater(row: sqlite3.Row) -> Rater:
    return Rater(row["rater_id"], row["number"], row["name"], row["code"], json.loads(row["trial_order"]), bool(row["simulated"]))


def add_rater(conn: sqlite3.Connection, order_for, name: str = "", simulated: bool = False) -> Rater:
    """Add the next rater (R01, R02, ...) with a fresh access code; ``order_for(number)`` gives its trial order."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        number = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM raters").fetchone()[0]
        rater_id = f"R{number:02d}"
        while True:
            code = new_code()
            if conn.execute("SELECT 1 FROM raters WHERE code=?", (code,)).fetchone() is None:
                break
        order = order_for(number)
        conn.execute(
            "INSERT INTO raters(rater_id, number, name, code, trial_order, simulated, created_at) VALUES(?,?,?,?,?,?,?)",
            (rater_id, number, name, code, json.dumps(order), int(simulated), now()),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Rater(rater_id, number, name, code, order, simulated)


def raters(conn: sqlite3.Connection) -> list[Rater]:
    return [_rater(r) for r in conn.execute("SELECT * FROM raters ORDER BY number")]


def rater_by_code(conn: sqlite3.Connection, code: str) -> Rater | None:
    row = conn.execute("SELECT * FROM raters WHERE code=?", (normalise_code(code),)).fetchone()
    return _rater(row) if row else None


def answered(conn: sqlite3.Connection, rater_id: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM responses WHERE rater_id=?", (rater_id,)).fetchone()[0]


class SubmitError(ValueError):
    """An answer the study cannot accept (wrong step, bad choice or scores)."""


def submit(
    conn: sqlite3.Connection, rater: Rater, step: int, choice: int, scores: list[int], k: int, likert: int,
    elapsed_ms: int | None = None,
) -> bool:
    """Commit one answer; True if stored, False if this step was already answered (double submit).

    The rater answers their trials in order: ``step`` must be the next unanswered one (or an answered one,
    which is a no-op). ``choice`` is the position picked as real; ``scores`` one Likert score per position.
    """
    if not 0 <= step < len(rater.trial_order):
        raise SubmitError(f"step {step} is outside 0..{len(rater.trial_order) - 1}")
    if not 0 <= choice < k:
        raise SubmitError(f"choice must be a position 0..{k - 1}, got {choice}")
    if len(scores) != k or not all(isinstance(s, int) and 1 <= s <= likert for s in scores):
        raise SubmitError(f"scores must be {k} integers in 1..{likert}, got {scores}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = conn.execute("SELECT COUNT(*) FROM responses WHERE rater_id=?", (rater.rater_id,)).fetchone()[0]
        if step < done:
            conn.execute("ROLLBACK")
            return False
        if step > done:
            raise SubmitError(f"step {step} is ahead of the next unanswered step {done}")
        conn.execute(
            "INSERT INTO responses(rater_id, step, trial, choice, scores, elapsed_ms, submitted_at) "
            "VALUES(?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (rater.rater_id, step, rater.trial_order[step], choice, json.dumps(scores), elapsed_ms, now()),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def responses(conn: sqlite3.Connection) -> list[dict]:
    """Every answer with its rater's simulated flag, in (rater, step) order."""
    rows = conn.execute(
        "SELECT r.rater_id, r.step, r.trial, r.choice, r.scores, r.elapsed_ms, r.submitted_at, t.simulated "
        "FROM responses r JOIN raters t USING (rater_id) ORDER BY t.number, r.step"
    ).fetchall()
    return [dict(row) | {"scores": json.loads(row["scores"]), "simulated": bool(row["simulated"])} for row in rows]
