"""The tags reference data seeded by migrate.py."""

SEEDED = {"work", "home", "urgent", "ideas"}


def test_tags_endpoint_lists_seeded_tags(api):
    resp = api.get("/tags")
    assert resp.status == 200
    names = [t["name"] for t in resp.json]
    assert names == sorted(names)
    assert SEEDED <= set(names)
    for tag in resp.json:
        assert set(tag) == {"name", "description"}
        assert isinstance(tag["description"], str)


def test_tags_endpoint_matches_table(api, db):
    rows = db.execute("select name, description from tags order by name").fetchall()
    assert [(t["name"], t["description"]) for t in api.get("/tags").json] == rows


def test_every_seeded_tag_is_usable(api):
    for name in sorted(SEEDED):
        note = api.create_note(f"tagged {name}", tag=name)
        assert note["tag"] == name


def test_tag_is_a_foreign_key(db):
    row = db.execute(
        """
        select count(*) from information_schema.referential_constraints rc
        join information_schema.key_column_usage k
          on k.constraint_name = rc.constraint_name
        where k.table_name = 'notes' and k.column_name = 'tag'
        """
    ).fetchone()
    assert row[0] == 1
