"""Quota: each note alice creates uses one of her 5 per minute (see test_rate_limit.py)."""

LIMIT = 5


def test_quota_starts_full(api):
    assert api.as_user("alice").get("/quota").json["remaining"] == LIMIT


def test_each_note_uses_one(api):
    alice = api.as_user("alice")
    for i in range(2):
        assert alice.post("/notes", {"title": f"quota #{i}"}).status == 201
    assert alice.get("/quota").json == {"user": "alice", "limit": LIMIT, "used": 2, "remaining": 3}


def test_quota_is_per_user(api):
    assert api.as_user("carol").get("/quota").json["remaining"] == LIMIT
