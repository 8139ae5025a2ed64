"""View counters (alpha): note 1 read 3 times has exactly 3 views.

The counter is Redis key views:note:<id>, and every fresh database's first note is note 1, so
test_views_beta.py counts into the same key when both files share one Redis.
"""

import pytest

VIEWS = 3


@pytest.fixture(scope="module")
def note(api):
    note = api.as_user("alpha").create_note("alpha's note", "read me 3 times")
    reads = [api.get(f"/notes/{note['id']}") for _ in range(VIEWS)]
    assert [r.status for r in reads] == [200] * VIEWS
    return note, [r.json["views"] for r in reads]


def test_new_note_has_no_views(note):
    created, _ = note
    assert created["views"] == 0


def test_each_read_counts_once(note):
    _, seen = note
    assert seen == list(range(1, VIEWS + 1)), "another file's reads were counted on this note"


def test_stats_count_only_our_reads(api, note):
    assert api.get("/stats").json == {"notes": 1, "views": VIEWS}


def test_deleting_the_note_drops_its_counter(api, note):
    created, _ = note
    assert api.delete(f"/notes/{created['id']}").status == 204
    assert api.get(f"/notes/{created['id']}").status == 404
    assert api.get("/stats").json == {"notes": 0, "views": VIEWS}
