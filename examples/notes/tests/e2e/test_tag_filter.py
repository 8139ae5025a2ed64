"""GET /notes?tag= filtering."""

import pytest


@pytest.fixture(scope="module")
def tagged_notes(api):
    return {
        "work": [api.create_note(f"filter work {i}", tag="work")["id"] for i in range(3)],
        "home": [api.create_note(f"filter home {i}", tag="home")["id"] for i in range(2)],
        None: [api.create_note("filter untagged")["id"]],
    }


@pytest.mark.parametrize("tag", ["work", "home"])
def test_filter_returns_only_that_tag(api, tagged_notes, tag):
    resp = api.get(f"/notes?tag={tag}")
    assert resp.status == 200
    assert resp.json, "expected some notes"
    assert all(n["tag"] == tag for n in resp.json)
    ids = [n["id"] for n in resp.json]
    assert set(tagged_notes[tag]) <= set(ids)
    for other, other_ids in tagged_notes.items():
        if other != tag:
            assert not set(other_ids) & set(ids)


def test_filter_with_unused_tag_is_empty(api, tagged_notes, db):
    used = db.execute("select count(*) from notes where tag = 'ideas'").fetchone()[0]
    resp = api.get("/notes?tag=ideas")
    assert resp.status == 200
    assert len(resp.json) == used


def test_filter_with_unknown_tag_is_empty_list(api, tagged_notes):
    resp = api.get("/notes?tag=does-not-exist")
    assert resp.status == 200
    assert resp.json == []


def test_no_filter_returns_everything(api, tagged_notes, db):
    resp = api.get("/notes")
    total = db.execute("select count(*) from notes").fetchone()[0]
    assert len(resp.json) == total
    all_ids = {n["id"] for n in resp.json}
    for ids in tagged_notes.values():
        assert set(ids) <= all_ids
