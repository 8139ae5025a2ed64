"""The /ui page loads and shows what the API has."""

import uuid

from playwright.sync_api import expect


def test_ui_is_html(page):
    resp = page.request.get("/ui")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/html")


def test_page_has_title_and_form(ui):
    expect(ui).to_have_title("Notes")
    expect(ui.get_by_role("heading", name="Notes")).to_be_visible()
    expect(ui.get_by_label("Title", exact=True)).to_be_editable()
    expect(ui.get_by_role("button", name="Add note")).to_be_enabled()


def test_tag_choices_come_from_the_api(ui):
    tags = [t["name"] for t in ui.request.get("/tags").json()]
    assert tags  # seeded by migrate.py
    expect(ui.locator("#tag option")).to_have_text(["(none)", *tags])
    expect(ui.locator("#filter option")).to_have_text(["all tags", *tags])


def test_count_matches_the_api(ui, api_notes):
    n = len(api_notes())
    expect(ui.locator("#count")).to_have_text("1 note" if n == 1 else f"{n} notes")
    expect(ui.locator("#notes li")).to_have_count(n)


def test_note_made_through_the_api_is_listed_after_reload(ui, api_note):
    title = f"made by the api {uuid.uuid4().hex[:6]}"
    note = api_note(title, tag="ideas")
    ui.reload()
    item = ui.locator(f'#notes li[data-id="{note["id"]}"]')
    expect(item.locator(".title")).to_have_text(title)
    expect(item.locator(".tag")).to_have_text("ideas")
