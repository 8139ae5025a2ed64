"""Basic liveness and routing behaviour."""


def test_healthz_ok(api):
    resp = api.get("/healthz")
    assert resp.status == 200
    assert resp.json == {"status": "ok"}
    assert resp.headers["Content-Type"] == "application/json"


def test_unknown_path_is_json_404(api):
    resp = api.get("/no-such-thing")
    assert resp.status == 404
    assert "error" in resp.json


def test_wrong_method_is_405_with_allow(api):
    resp = api.delete("/tags")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET"
    assert "error" in resp.json


def test_server_and_test_share_the_same_database(api, db):
    # A row written straight into the database is visible through the API.
    note_id = db.execute(
        "insert into notes (title, body) values ('written by sql', 'x') returning id"
    ).fetchone()[0]
    resp = api.get(f"/notes/{note_id}")
    assert resp.status == 200
    assert resp.json["title"] == "written by sql"
