"""Fixtures for the notes browser tests (pytest-playwright).

The tests drive the app's /ui page in a headless Chromium against an already
running server (BASE_URL) backed by an already migrated database, like the
tests in tests/e2e/. The browser is the system's Chromium (Debian:
`apt-get install chromium`), started by Playwright from its path: nothing is
downloaded, `playwright install` is never needed. Set E2E_CHROMIUM to use
another Chromium binary.

pytest-playwright's own options still apply, e.g.
    --output DIR --screenshot only-on-failure --tracing retain-on-failure
keeps a screenshot and a trace (open it with `playwright show-trace`) for
each failed test under DIR/<test id as a slug>/.
"""

import os
import shutil
import time
import urllib.error
import urllib.request

import pytest

READY_TIMEOUT_S = 15.0

# Flags for a Chromium that runs as root in a container with no network but
# the app's: no sandbox (root), no GPU, and none of Chromium's own network
# calls (updates, sync, first-run pages), which would only be refused and slow
# the start down.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _chromium_path():
    path = os.environ.get("E2E_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no Chromium at {path}: install it (apt-get install chromium) or set E2E_CHROMIUM",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options (--headed, --slowmo, ...) plus the
    system Chromium and its flags. Headless unless --headed is given."""
    return {
        **browser_type_launch_args,
        "executable_path": _chromium_path(),
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS],
    }


@pytest.fixture(scope="session")
def base_url():
    """$BASE_URL, once /healthz answers 200. Overrides pytest-playwright's
    --base-url fixture, so `page.goto("/ui")` and `page.request` resolve
    against it."""
    url = os.environ.get("BASE_URL")
    if not url:
        pytest.fail("environment variable BASE_URL must be set for the browser tests", pytrace=False)
    url = url.rstrip("/")
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return url
        except (urllib.error.URLError, OSError) as err:
            last_error = err
        time.sleep(0.2)
    pytest.fail(f"server at {url} not ready after {READY_TIMEOUT_S}s: {last_error}", pytrace=False)


@pytest.fixture
def ui(page):
    """The /ui page, loaded: the tags are in the selects and the list is shown."""
    page.goto("/ui")
    page.locator("body[data-ready=true]").wait_for()
    return page


@pytest.fixture
def api_note(page):
    """Create a note through the JSON API (page.request, so it shows in a trace)."""

    def create(title, tag=None, body=""):
        payload = {"title": title, "body": body}
        if tag is not None:
            payload["tag"] = tag
        resp = page.request.post("/notes", data=payload)
        assert resp.status == 201, resp.text()
        return resp.json()

    return create


@pytest.fixture
def api_notes(page):
    """The notes the JSON API lists (all, or one tag's)."""

    def list_notes(tag=None):
        resp = page.request.get("/notes", params={"tag": tag} if tag else None)
        assert resp.ok, resp.text()
        return resp.json()

    return list_notes
