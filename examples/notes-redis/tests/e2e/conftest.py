"""Shared fixtures for the notes-redis end-to-end tests.

The tests talk to an already running server (BASE_URL) backed by a migrated PostgreSQL database
and a Redis. Each test file is meant to get its own server, database AND Redis: the files here
post as the same user and read the same note ids, so with one Redis shared between files their
counters mix and the assertions on exact counts fail.
"""

import json
import os
import time
import urllib.error
import urllib.request

import pytest

READY_TIMEOUT_S = 15.0


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.json = json.loads(raw) if raw else None

    def __repr__(self):
        return f"Response({self.status}, {self.json!r})"


class Api:
    """Tiny JSON client over urllib.request, acting as one user (X-User). Never raises on HTTP errors."""

    def __init__(self, base_url, user="anonymous", timeout=5.0):
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.timeout = timeout

    def as_user(self, user):
        return Api(self.base_url, user, self.timeout)

    def request(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"X-User": self.user}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.headers, err.read())

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, payload):
        return self.request("POST", path, payload)

    def delete(self, path):
        return self.request("DELETE", path)

    def create_note(self, title, body=""):
        resp = self.post("/notes", {"title": title, "body": body})
        assert resp.status == 201, resp
        return resp.json


@pytest.fixture(scope="session")
def base_url():
    url = os.environ.get("BASE_URL", "").rstrip("/")
    if not url:
        pytest.fail("environment variable BASE_URL must be set for the e2e tests", pytrace=False)
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return url
        except (urllib.error.URLError, OSError) as err:
            last = err
        time.sleep(0.1)
    pytest.fail(f"server at {url} not healthy after {READY_TIMEOUT_S}s: {last}", pytrace=False)


@pytest.fixture(scope="session")
def api(base_url):
    return Api(base_url)
