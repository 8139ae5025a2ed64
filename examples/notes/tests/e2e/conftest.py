"""Shared fixtures for the notes end-to-end tests.

The tests talk to an already running server (BASE_URL) backed by an already
migrated database (DATABASE_URL). Each test file is meant to get its own
server and its own database, which the isolation tests check.
"""

import json
import os
import time
import urllib.error
import urllib.request

import psycopg
import pytest

READY_TIMEOUT_S = 15.0


def _require_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"environment variable {name} must be set for the e2e tests", pytrace=False)
    return value


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = json.loads(raw) if raw else None

    def __repr__(self):
        return f"Response({self.status}, {self.json!r})"


class Api:
    """Tiny JSON client over urllib.request. Never raises on HTTP errors."""

    def __init__(self, base_url, timeout=5.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method, path, payload=None, raw_body=None, headers=None):
        data = raw_body
        hdrs = dict(headers or {})
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.headers, err.read())

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, payload=None, **kwargs):
        return self.request("POST", path, payload, **kwargs)

    def delete(self, path):
        return self.request("DELETE", path)

    def create_note(self, title, body="", tag=None):
        payload = {"title": title, "body": body}
        if tag is not None:
            payload["tag"] = tag
        resp = self.post("/notes", payload)
        assert resp.status == 201, resp
        return resp.json


@pytest.fixture(scope="session")
def base_url():
    url = _require_env("BASE_URL").rstrip("/")
    # Wait (briefly) for the server to be up and its database to answer.
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


@pytest.fixture(scope="session")
def db():
    with psycopg.connect(_require_env("DATABASE_URL"), autocommit=True) as conn:
        yield conn
