"""Creating and deleting notes through the page's form."""

import uuid

from playwright.sync_api import expect


def unique(prefix):
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def test_create_note_through_the_form(ui, api_notes):
    title = unique("buy milk")
    ui.get_by_label("Title", exact=True).fill(title)
    ui.get_by_label("Body", exact=True).fill("two litres")
    ui.get_by_role("button", name="Add note").click()

    expect(ui.locator("#notes li .title", has_text=title)).to_be_visible()
    expect(ui.get_by_label("Title", exact=True)).to_have_value("")  # the form was reset
    stored = [n for n in api_notes() if n["title"] == title]
    assert len(stored) == 1
    assert stored[0]["body"] == "two litres"
    assert stored[0]["tag"] is None


def test_create_tagged_note(ui, api_notes):
    title = unique("call the plumber")
    ui.get_by_label("Title", exact=True).fill(title)
    ui.get_by_label("Tag", exact=True).select_option("home")
    ui.get_by_role("button", name="Add note").click()

    item = ui.locator("#notes li", has_text=title)
    expect(item.locator(".tag")).to_have_text("home")
    assert title in [n["title"] for n in api_notes(tag="home")]


def test_count_follows_creates(ui, api_notes):
    before = len(api_notes())
    for i in range(3):
        ui.get_by_label("Title", exact=True).fill(unique(f"note {i}"))
        ui.get_by_role("button", name="Add note").click()
        expect(ui.locator("#notes li")).to_have_count(before + i + 1)
    expect(ui.locator("#count")).to_have_text(f"{before + 3} notes")


def test_empty_title_shows_the_api_error(ui, api_notes):
    before = len(api_notes())
    ui.get_by_label("Title", exact=True).fill("   ")
    ui.get_by_role("button", name="Add note").click()

    expect(ui.get_by_role("alert")).to_contain_text("title is required")
    assert len(api_notes()) == before


def test_delete_note(ui, api_note, api_notes):
    title = unique("to be deleted")
    note = api_note(title)
    ui.reload()
    ui.get_by_role("button", name=f"Delete {title}").click()

    expect(ui.locator(f'#notes li[data-id="{note["id"]}"]')).to_have_count(0)
    assert note["id"] not in [n["id"] for n in api_notes()]
