"""View counters (beta): note 1 read 5 times has exactly 5 views (see test_views_alpha.py)."""

import pytest

VIEWS = 5


@pytest.fixture(scope="module")
def note(api):
    note = api.as_user("beta").create_note("beta's note", "read me 5 times")
    reads = [api.get(f"/notes/{note['id']}") for _ in range(VIEWS)]
    assert [r.status for r in reads] == [200] * VIEWS
    return note, reads[-1].json["views"]


def test_first_note_of_a_fresh_database(note):
    created, _ = note
    assert created["id"] == 1


def test_last_read_sees_exactly_our_reads(note):
    _, views = note
    assert views == VIEWS, f"note 1 has {views} views, not {VIEWS}: another file read it too"


def test_stats_count_only_our_reads(api, note):
    assert api.get("/stats").json["views"] == VIEWS
