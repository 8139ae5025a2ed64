"""Isolation check (beta): this file must have a database of its own.

It writes 7 notes carrying its own marker and then asserts that the
database and the API contain exactly those notes and nothing else. Run in
a database shared with any other test file, this fails.
"""

import uuid

import pytest

MARKER = f"isolation-beta-{uuid.uuid4().hex[:8]}"
COUNT = 7


@pytest.fixture(scope="module")
def created(api, db):
    """Create this file's rows; returns (notes found beforehand, ids created)."""
    existing = db.execute("select count(*) from notes").fetchone()[0]
    ids = []
    for i in range(COUNT):
        note = api.create_note(f"{MARKER} #{i}", body=MARKER, tag="home" if i % 2 else None)
        ids.append(note["id"])
    # One row written directly through SQL, one removed again via the API,
    # so the count is exactly COUNT.
    db.execute("insert into notes (title, body) values (%s, %s)", (f"{MARKER} sql", MARKER))
    assert api.delete(f"/notes/{ids.pop()}").status == 204
    return existing, ids


def test_database_was_fresh(created):
    existing, _ = created
    assert existing == 0, f"expected a fresh database, found {existing} notes already"


def test_stats_count_is_exactly_ours(api, created):
    assert api.get("/stats").json["notes"] == COUNT


def test_database_has_only_our_rows(db, created):
    rows = db.execute("select title, body from notes order by id").fetchall()
    assert len(rows) == COUNT
    assert all(title.startswith(MARKER) and body == MARKER for title, body in rows)


def test_api_lists_only_our_rows(api, created):
    notes = api.get("/notes").json
    assert len(notes) == COUNT
    assert all(n["title"].startswith(MARKER) for n in notes)
    _, ids = created
    assert set(ids) <= {n["id"] for n in notes}

