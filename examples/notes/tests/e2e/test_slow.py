"""A deliberately slow file (~3 s) to exercise parallel scheduling."""

import time

import pytest


@pytest.mark.parametrize("step", [1, 2, 3])
def test_slow_step(api, step):
    start = time.monotonic()
    note = api.create_note(f"slow step {step}", body="zzz")
    time.sleep(1)
    resp = api.get(f"/notes/{note['id']}")
    assert resp.status == 200
    assert resp.json["title"] == f"slow step {step}"
    assert time.monotonic() - start >= 1
