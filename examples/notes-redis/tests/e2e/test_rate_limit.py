"""Rate limit: alice may create 5 notes per minute; the 6th gets 429 with Retry-After.

The counter is Redis key ratelimit:alice. test_quota.py posts as alice too, so with one Redis
shared between the two files alice runs out early and one of them fails.
"""

LIMIT = 5


def test_quota_starts_full(api):
    assert api.as_user("alice").get("/quota").json == {
        "user": "alice", "limit": LIMIT, "used": 0, "remaining": LIMIT
    }


def test_five_notes_then_429(api):
    alice = api.as_user("alice")
    statuses = [alice.post("/notes", {"title": f"alice #{i}"}).status for i in range(LIMIT)]
    assert statuses == [201] * LIMIT, "alice was limited early: someone else posted as alice"
    refused = alice.post("/notes", {"title": "one too many"})
    assert refused.status == 429, refused
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert alice.get("/quota").json["remaining"] == 0


def test_other_users_are_not_limited(api):
    assert api.as_user("bob").post("/notes", {"title": "bob's"}).status == 201
    assert api.get("/stats").json["notes"] == LIMIT + 1
