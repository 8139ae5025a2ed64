#!/usr/bin/env python3
"""Notes with Redis: the notes example plus per-user rate limits and view counters in Redis.

Standard library HTTP server, psycopg 3 and redis-py. Notes live in PostgreSQL; counters live
in Redis under FIXED key names, as they do in many real apps:

    ratelimit:<user>    notes created by <user> in the current 60 s window (SET NX EX + INCR)
    views:note:<id>     how often note <id> was read
    stats:views         how often any note was read

Two test files that share one Redis therefore see each other's counts (both databases have a
note 1, both files post as the same user), so each file needs a Redis of its own.

Environment:
    PORT          port to listen on (bound to 127.0.0.1), required
    DATABASE_URL  libpq connection string / URL, required
    REDIS_URL     redis://host:port/db, required
    RATE_LIMIT    notes one user may create per 60 s window (default 5)

Endpoints (the caller names itself in an X-User header; "anonymous" without one):
    GET    /healthz       200 {"status": "ok"} once PostgreSQL and Redis both answer
    POST   /notes         create {"title", "body"?} -> 201, or 429 past the rate limit
    GET    /notes/<id>    one note with its view count (each read counts)
    DELETE /notes/<id>    delete a note and its counter -> 204
    GET    /quota         {"user", "limit", "used", "remaining"} for the caller
    GET    /stats         {"notes": N, "views": N}
"""

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg.rows import dict_row

MAX_BODY_BYTES = 64 * 1024
MAX_INT4 = 2**31 - 1
WINDOW_S = 60
NOTE_COLUMNS = "id, author, title, body, created_at"

DATABASE_URL = ""
RATE_LIMIT = 5
REDIS = None  # redis.Redis, thread-safe (it keeps a connection pool)


class ApiError(Exception):
    """An error that becomes a JSON response with the given status."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def connect():
    return psycopg.connect(DATABASE_URL, row_factory=dict_row, connect_timeout=5)


def note_to_json(row, views=None):
    note = {
        "id": row["id"],
        "author": row["author"],
        "title": row["title"],
        "body": row["body"],
        "created_at": row["created_at"].isoformat(),
    }
    if views is not None:
        note["views"] = views
    return note


def parse_note_id(raw):
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_INT4:
        raise ApiError(HTTPStatus.NOT_FOUND, f"no note {raw}")
    return int(raw)


class Handler(BaseHTTPRequestHandler):
    server_version = "notes-redis/1.0"
    sys_version = ""

    # ---- plumbing -------------------------------------------------------

    def log_message(self, fmt, *args):
        sys.stderr.write(f"notes-redis: {self.address_string()} {fmt % args}\n")

    def send_json(self, status, payload=None, headers=None):
        data = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def read_json(self):
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header is required") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be valid JSON") from None

    def user(self):
        return self.headers.get("X-User") or "anonymous"

    def dispatch(self, method):
        path = urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        routes = {
            ("healthz",): {"GET": self.get_healthz},
            ("notes",): {"POST": self.create_note},
            ("quota",): {"GET": self.get_quota},
            ("stats",): {"GET": self.get_stats},
        }
        args = ()
        allowed = routes.get(tuple(parts))
        if allowed is None and len(parts) == 2 and parts[0] == "notes":
            allowed, args = {"GET": self.get_note, "DELETE": self.delete_note}, (parts[1],)
        try:
            if allowed is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            handler = allowed.get(method)
            if handler is None:
                raise ApiError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"method {method} not allowed on {path}",
                    {"Allow": ", ".join(sorted(allowed))},
                )
            handler(*args)
        except ApiError as err:
            self.send_json(err.status, {"error": err.message}, err.headers)
        except (psycopg.OperationalError, redis.ConnectionError) as err:
            self.log_message("backend unavailable: %s", str(err).strip())
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "backend unavailable"})
        except Exception as err:  # noqa: BLE001 - last-resort 500
            self.log_message("internal error: %r", err)
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"})

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # ---- endpoints ------------------------------------------------------

    def get_healthz(self):
        try:
            with connect() as conn:
                conn.execute("select 1").fetchone()
            REDIS.ping()
        except (psycopg.Error, redis.RedisError) as err:
            self.log_message("healthz: not ready: %s", str(err).strip())
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable"})
            return
        self.send_json(HTTPStatus.OK, {"status": "ok"})

    def create_note(self):
        payload = self.read_json()
        if not isinstance(payload, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        title, body = payload.get("title"), payload.get("body", "")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(HTTPStatus.BAD_REQUEST, "title is required and must be a non-empty string")
        if not isinstance(body, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a string")

        # Fixed-window rate limit: the first note of a window starts its 60 s clock.
        user = self.user()
        key = f"ratelimit:{user}"
        _, used = REDIS.pipeline().set(key, 0, ex=WINDOW_S, nx=True).incr(key).execute()
        if used > RATE_LIMIT:
            retry_after = max(REDIS.ttl(key), 1)
            raise ApiError(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"{user} may create {RATE_LIMIT} notes per {WINDOW_S}s",
                {"Retry-After": str(retry_after)},
            )

        with connect() as conn:
            row = conn.execute(
                f"insert into notes (author, title, body) values (%s, %s, %s)"
                f" returning {NOTE_COLUMNS}",
                (user, title.strip(), body),
            ).fetchone()
        self.send_json(
            HTTPStatus.CREATED, note_to_json(row, views=0), {"Location": f"/notes/{row['id']}"}
        )

    def get_note(self, raw_id):
        note_id = parse_note_id(raw_id)
        with connect() as conn:
            row = conn.execute(
                f"select {NOTE_COLUMNS} from notes where id = %s", (note_id,)
            ).fetchone()
        if row is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no note {note_id}")
        views, _ = REDIS.pipeline().incr(f"views:note:{note_id}").incr("stats:views").execute()
        self.send_json(HTTPStatus.OK, note_to_json(row, views=views))

    def delete_note(self, raw_id):
        note_id = parse_note_id(raw_id)
        with connect() as conn:
            deleted = conn.execute("delete from notes where id = %s", (note_id,)).rowcount
        if not deleted:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no note {note_id}")
        REDIS.delete(f"views:note:{note_id}")
        self.send_json(HTTPStatus.NO_CONTENT)

    def get_quota(self):
        user = self.user()
        used = min(int(REDIS.get(f"ratelimit:{user}") or 0), RATE_LIMIT)
        self.send_json(
            HTTPStatus.OK,
            {"user": user, "limit": RATE_LIMIT, "used": used, "remaining": RATE_LIMIT - used},
        )

    def get_stats(self):
        with connect() as conn:
            notes = conn.execute("select count(*) as n from notes").fetchone()["n"]
        views = int(REDIS.get("stats:views") or 0)
        self.send_json(HTTPStatus.OK, {"notes": notes, "views": views})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global DATABASE_URL, RATE_LIMIT, REDIS
    DATABASE_URL = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    port = os.environ.get("PORT", "")
    if not DATABASE_URL:
        sys.exit("notes-redis: DATABASE_URL is not set")
    if not redis_url:
        sys.exit("notes-redis: REDIS_URL is not set")
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"notes-redis: PORT must be a port number, got {port!r}")
    RATE_LIMIT = int(os.environ.get("RATE_LIMIT", "5"))
    REDIS = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    server = Server(("127.0.0.1", int(port)), Handler)

    def stop(signum, frame):
        sys.stderr.write(f"notes-redis: received {signal.Signals(signum).name}, shutting down\n")
        # shutdown() waits for serve_forever(), which runs on this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sys.stderr.write(f"notes-redis: listening on http://127.0.0.1:{port} (redis {redis_url})\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        REDIS.close()
    sys.stderr.write("notes-redis: stopped\n")


if __name__ == "__main__":
    main()
