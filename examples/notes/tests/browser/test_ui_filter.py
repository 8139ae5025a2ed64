"""Filtering the list by tag."""

import uuid

import pytest
from playwright.sync_api import expect

MARK = uuid.uuid4().hex[:6]


@pytest.fixture
def seeded(ui, api_note):
    """Two work notes, one home note and an untagged one, then a reload."""
    api_note(f"report {MARK}", tag="work")
    api_note(f"slides {MARK}", tag="work")
    api_note(f"laundry {MARK}", tag="home")
    api_note(f"untagged {MARK}")
    ui.reload()
    ui.locator("body[data-ready=true]").wait_for()
    return ui


def test_filter_by_tag(seeded, api_notes):
    seeded.get_by_label("Show", exact=True).select_option("work")
    work = [n["title"] for n in api_notes(tag="work")]
    expect(seeded.locator("#notes li .title")).to_have_text(work)
    expect(seeded.locator("#notes li .tag")).to_have_text(["work"] * len(work))


def test_filter_back_to_all(seeded, api_notes):
    seeded.get_by_label("Show", exact=True).select_option("home")
    home = [n["title"] for n in api_notes(tag="home")]
    expect(seeded.locator("#notes li .title")).to_have_text(home)
    seeded.get_by_label("Show", exact=True).select_option("")
    expect(seeded.locator("#notes li")).to_have_count(len(api_notes()))


def test_filter_with_no_notes(ui, api_notes):
    assert api_notes(tag="urgent") == []  # nothing in this file is urgent
    ui.get_by_label("Show", exact=True).select_option("urgent")
    expect(ui.locator("#count")).to_have_text("0 notes")
    expect(ui.locator("#notes li")).to_have_count(0)


def test_new_note_shows_under_the_current_filter(seeded):
    seeded.get_by_label("Show", exact=True).select_option("ideas")
    title = f"idea {MARK}"
    seeded.get_by_label("Title", exact=True).fill(title)
    seeded.get_by_label("Tag", exact=True).select_option("ideas")
    seeded.get_by_role("button", name="Add note").click()
    expect(seeded.locator("#notes li .title", has_text=title)).to_be_visible()
