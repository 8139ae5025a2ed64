"""Create, read, list and delete notes."""

from datetime import datetime


def test_create_returns_201_with_note(api):
    resp = api.post("/notes", {"title": "Buy milk", "body": "2 litres", "tag": "home"})
    assert resp.status == 201
    note = resp.json
    assert isinstance(note["id"], int) and note["id"] > 0
    assert note["title"] == "Buy milk"
    assert note["body"] == "2 litres"
    assert note["tag"] == "home"
    datetime.fromisoformat(note["created_at"])
    assert resp.headers["Location"] == f"/notes/{note['id']}"


def test_create_without_tag_or_body(api):
    resp = api.post("/notes", {"title": "  just a title  "})
    assert resp.status == 201
    assert resp.json["title"] == "just a title"
    assert resp.json["body"] == ""
    assert resp.json["tag"] is None


def test_get_by_id_round_trips(api):
    created = api.create_note("Round trip", "body text", "work")
    resp = api.get(f"/notes/{created['id']}")
    assert resp.status == 200
    assert resp.json == created


def test_list_contains_created_notes_in_id_order(api):
    a = api.create_note("list-a")
    b = api.create_note("list-b")
    resp = api.get("/notes")
    assert resp.status == 200
    ids = [n["id"] for n in resp.json]
    assert ids == sorted(ids)
    assert a["id"] in ids and b["id"] in ids
    assert ids.index(a["id"]) < ids.index(b["id"])


def test_delete_then_gone(api, db):
    created = api.create_note("Short lived")
    resp = api.delete(f"/notes/{created['id']}")
    assert resp.status == 204
    assert resp.raw == b""
    assert api.get(f"/notes/{created['id']}").status == 404
    assert api.delete(f"/notes/{created['id']}").status == 404
    row = db.execute("select 1 from notes where id = %s", (created["id"],)).fetchone()
    assert row is None


def test_get_missing_note_is_404(api):
    resp = api.get("/notes/999999")
    assert resp.status == 404
    assert "not found" in resp.json["error"]


def test_created_note_is_stored_in_db(api, db):
    created = api.create_note("Persisted", "in postgres", "urgent")
    row = db.execute(
        "select title, body, tag from notes where id = %s", (created["id"],)
    ).fetchone()
    assert row == ("Persisted", "in postgres", "urgent")
