#!/usr/bin/env python3
"""Create (or bring up to date) the notes schema in $DATABASE_URL.

Idempotent: safe to run any number of times. Everything runs in a single
transaction, so a failed run leaves the database as it was.
"""

import os
import sys

import psycopg

TAGS = [
    ("work", "Things for the day job"),
    ("home", "Chores, errands and family"),
    ("urgent", "Needs attention today"),
    ("ideas", "Someday, maybe"),
]

TABLES = {
    "tags": """
        create table if not exists tags (
            name        text primary key,
            description text not null default ''
        )
    """,
    "notes": """
        create table if not exists notes (
            id         serial primary key,
            title      text not null,
            body       text,
            tag        text references tags(name),
            created_at timestamptz not null default now()
        )
    """,
}

INDEXES = {
    "notes_tag_idx": "create index if not exists notes_tag_idx on notes (tag)",
}


def exists(conn, name):
    return conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]


def main():
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("migrate: DATABASE_URL is not set")

    with psycopg.connect(url, connect_timeout=10) as conn:
        with conn.transaction():
            # Serialise concurrent runs against the same database.
            conn.execute("select pg_advisory_xact_lock(hashtext('notes-migrate'))")
            dbname = conn.execute("select current_database()").fetchone()[0]
            print(f"migrate: database {dbname}")

            for name, ddl in list(TABLES.items()) + list(INDEXES.items()):
                kind = "index" if name in INDEXES else "table"
                if exists(conn, name):
                    print(f"migrate: {kind} {name} already exists")
                else:
                    conn.execute(ddl)
                    print(f"migrate: created {kind} {name}")

            inserted = []
            for name, description in TAGS:
                cur = conn.execute(
                    "insert into tags (name, description) values (%s, %s)"
                    " on conflict (name) do nothing returning name",
                    (name, description),
                )
                if cur.fetchone() is not None:
                    inserted.append(name)
            if inserted:
                print(f"migrate: seeded tags: {', '.join(inserted)}")
            else:
                print("migrate: tags already seeded")

            total = conn.execute("select count(*) from tags").fetchone()[0]
            print(f"migrate: done ({total} tags)")


if __name__ == "__main__":
    main()
