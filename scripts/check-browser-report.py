"""Checks a browser run's evidence: summary.json lists the failing test's screenshot and trace
(paths relative to the report folder, files that exist), and report.html, rendered in headless
Chromium, shows that screenshot (loaded: it has a width) and links that trace.

    python scripts/check-browser-report.py REPORT_DIR TEST_ID

Run with a Python that has Playwright (examples/notes/.venv after plans/browser.toml's setup);
the browser is /usr/bin/chromium (or $E2E_CHROMIUM): nothing is downloaded.
"""

import json
import os
import pathlib
import sys

from playwright.sync_api import sync_playwright


def fail(msg):
    print(f"check-browser-report: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        fail("usage: check-browser-report.py REPORT_DIR TEST_ID")
    report = pathlib.Path(sys.argv[1]).resolve()
    test = sys.argv[2]
    summary = json.loads((report / "summary.json").read_text())
    mine = [a for w in summary["workers"] for a in w.get("artifacts", []) if a.get("test") == test]
    by_kind = {a["kind"]: a for a in mine}
    for kind in ("screenshot", "trace"):
        a = by_kind.get(kind)
        if a is None:
            fail(f"summary.json lists no {kind} of {test}: {json.dumps(mine, indent=1)}")
        if pathlib.PurePath(a["path"]).is_absolute():
            fail(f"the {kind}'s path is not relative to the report folder: {a['path']}")
        if not (report / a["path"]).is_file():
            fail(f"the {kind} {a['path']} is not in {report}")
    shot, trace = by_kind["screenshot"]["path"], by_kind["trace"]["path"]

    chromium = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page()
        page.goto((report / "report.html").as_uri())
        img = page.locator(f'img[src="{shot}"]')
        if img.count() != 1:
            fail(f"report.html has no <img src=\"{shot}\">")
        img.scroll_into_view_if_needed()
        width = img.evaluate("i => i.complete ? i.naturalWidth : 0")
        if not width:
            fail(f"the screenshot {shot} is in report.html but did not load")
        link = page.locator(f'a[href="{trace}"]')
        if link.count() < 1:
            fail(f"report.html does not link the trace {trace}")
        if f"playwright show-trace {trace}" not in page.inner_text("body"):
            fail("report.html does not show the command that opens the trace")
        browser.close()
    print(f"check-browser-report: {test}: screenshot shown ({width}px wide), trace linked: {trace}")


main()
