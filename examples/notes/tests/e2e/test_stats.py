"""GET /stats counts notes, overall and per tag."""


def stats(api):
    resp = api.get("/stats")
    assert resp.status == 200
    return resp.json


def test_stats_shape(api):
    s = stats(api)
    assert set(s) == {"notes", "untagged", "by_tag"}
    assert {"work", "home", "urgent"} <= set(s["by_tag"])


def test_stats_follow_creates_and_deletes(api):
    before = stats(api)
    a = api.create_note("stats a", tag="urgent")
    api.create_note("stats b", tag="urgent")
    api.create_note("stats c")
    after = stats(api)
    assert after["notes"] == before["notes"] + 3
    assert after["by_tag"]["urgent"] == before["by_tag"]["urgent"] + 2
    assert after["untagged"] == before["untagged"] + 1

    assert api.delete(f"/notes/{a['id']}").status == 204
    assert stats(api)["notes"] == before["notes"] + 2


def test_stats_agree_with_database(api, db):
    s = stats(api)
    assert s["notes"] == db.execute("select count(*) from notes").fetchone()[0]
    assert s["notes"] == s["untagged"] + sum(s["by_tag"].values())
