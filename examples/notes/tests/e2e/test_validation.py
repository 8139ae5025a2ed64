"""Bad input is rejected with 4xx and a JSON error, and nothing is stored."""

import pytest


@pytest.fixture
def note_count(db):
    return lambda: db.execute("select count(*) from notes").fetchone()[0]


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({}, "title"),
        ({"body": "no title"}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"title": "x" * 201}, "at most"),
        ({"title": "ok", "body": 7}, "body"),
        ({"title": "ok", "body": ["a"]}, "body"),
        ({"title": "ok", "tag": 3}, "tag"),
        ({"title": "ok", "tag": ""}, "tag"),
        ({"title": "ok", "tag": "no-such-tag"}, "unknown tag"),
        ({"title": "ok", "colour": "red"}, "unknown field"),
        (["title", "ok"], "JSON object"),
        ("just a string", "JSON object"),
    ],
)
def test_invalid_note_payload_is_400(api, note_count, payload, fragment):
    before = note_count()
    resp = api.post("/notes", payload)
    assert resp.status == 400, resp
    assert fragment in resp.json["error"]
    assert note_count() == before


def test_malformed_json_is_400(api):
    resp = api.post("/notes", raw_body=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "valid JSON" in resp.json["error"]


def test_non_utf8_body_is_400(api):
    resp = api.post("/notes", raw_body=b"\xff\xfe\x00", headers={"Content-Type": "application/json"})
    assert resp.status == 400


def test_oversized_body_is_413(api):
    resp = api.post("/notes", {"title": "big", "body": "x" * (70 * 1024)})
    assert resp.status == 413


@pytest.mark.parametrize("raw_id", ["abc", "0", "-1", "1.5"])
def test_bad_note_id_is_400(api, raw_id):
    resp = api.get(f"/notes/{raw_id}")
    assert resp.status == 400
    assert "positive integer" in resp.json["error"]


def test_huge_note_id_is_404_not_500(api):
    assert api.get("/notes/99999999999999999999").status == 404
    assert api.delete("/notes/99999999999999999999").status == 404
