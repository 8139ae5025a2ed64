#!/usr/bin/env python3
"""Create (or bring up to date) the notes schema in $DATABASE_URL.

Idempotent and in one transaction, like examples/notes/migrate.py. Redis needs
no migration: every key the app uses is created on first use.
"""

import os
import sys

import psycopg

DDL = """
    create table if not exists notes (
        id         serial primary key,
        author     text not null,
        title      text not null,
        body       text not null default '',
        created_at timestamptz not null default now()
    )
"""


def main():
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("migrate: DATABASE_URL is not set")
    with psycopg.connect(url, connect_timeout=10) as conn:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('notes-redis-migrate'))")
            dbname = conn.execute("select current_database()").fetchone()[0]
            conn.execute(DDL)
            print(f"migrate: database {dbname}: table notes ready")


if __name__ == "__main__":
    main()
