"""A test that fails on purpose when E2E_BROWSER_FAIL=1, and passes otherwise.

With `--screenshot only-on-failure --tracing retain-on-failure` a failed test
keeps `test-failed-1.png` and `trace.zip` under the --output folder: CI sets
E2E_BROWSER_FAIL=1 to check that they are kept.
"""

import os
import re
import uuid

from playwright.sync_api import expect

FAIL = os.environ.get("E2E_BROWSER_FAIL") == "1"


def test_created_note_is_listed(ui):
    title = f"artifact check {uuid.uuid4().hex[:6]}"
    ui.get_by_label("Title", exact=True).fill(title)
    ui.get_by_role("button", name="Add note").click()
    expect(ui.locator("#notes li .title", has_text=title)).to_be_visible()

    # With E2E_BROWSER_FAIL=1, look for a note that is not there (short
    # timeout, so the failure costs 2 s and not expect()'s default 5 s).
    wanted = f"{title} (E2E_BROWSER_FAIL=1: not there)" if FAIL else title
    expect(ui.locator("#notes li .title", has_text=wanted)).to_be_visible(timeout=2000)


def test_page_loads(ui):
    expect(ui.locator("#count")).to_have_text(re.compile(r"^\d+ notes?$"))
