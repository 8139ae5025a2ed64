#!/usr/bin/env python3
"""Notes: a tiny JSON API over PostgreSQL.

Standard library HTTP server plus psycopg 3, nothing else.

Environment:
    PORT          port to listen on (bound to 127.0.0.1), required
    DATABASE_URL  libpq connection string / URL, required

Endpoints:
    GET    /healthz       200 {"status": "ok"} once the database answers `select 1`
    GET    /tags          reference data seeded by migrate.py
    GET    /notes         list notes (optional ?tag=NAME filter)
    POST   /notes         create a note from {"title", "body", "tag"?} -> 201
    GET    /notes/<id>    one note
    DELETE /notes/<id>    delete a note -> 204
    GET    /stats         {"notes": N, "by_tag": {...}}
    GET    /ui            a small HTML page over the API above (for the browser tests)

Errors are JSON objects: {"error": "message"}.
"""

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.rows import dict_row

MAX_BODY_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1024 * 1024
MAX_TITLE_LEN = 200
MAX_NOTE_BODY_LEN = 10_000
MAX_INT4 = 2**31 - 1
NOTE_FIELDS = {"title", "body", "tag"}
NOTE_COLUMNS = "id, title, body, tag, created_at"

# The one HTML page: lists the notes, filters them by tag, creates and deletes
# them, all through the JSON API with fetch(). Static: no data is rendered
# into it on the server.
UI_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Notes</title>
<style>
  body { font-family: sans-serif; max-width: 40rem; margin: 2rem auto; }
  form, .toolbar { display: grid; gap: .5rem; margin-bottom: 1rem; }
  #notes li { display: flex; gap: .5rem; align-items: baseline; }
  .tag { font-size: .8rem; background: #eee; padding: 0 .3rem; }
  #error { color: #b00; }
</style>
</head>
<body>
<h1>Notes</h1>
<form id="new-note">
  <label for="title">Title</label> <input name="title" id="title" maxlength="200">
  <label for="body">Body</label> <textarea name="body" id="body"></textarea>
  <label for="tag">Tag</label> <select name="tag" id="tag"><option value="">(none)</option></select>
  <button type="submit">Add note</button>
</form>
<p id="error" role="alert"></p>
<div class="toolbar">
  <label for="filter">Show</label> <select id="filter"><option value="">all tags</option></select>
</div>
<p id="count" aria-live="polite">loading…</p>
<ul id="notes"></ul>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

async function api(method, path, payload) {
  const init = { method, headers: {} };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const resp = await fetch(path, init);
  const data = resp.status === 204 ? null : await resp.json();
  if (!resp.ok) throw new Error((data && data.error) || resp.statusText);
  return data;
}

async function loadTags() {
  for (const t of await api("GET", "/tags")) {
    for (const select of [$("tag"), $("filter")]) {
      const option = document.createElement("option");
      option.value = t.name;
      option.textContent = t.name;
      select.append(option);
    }
  }
}

async function loadNotes() {
  const tag = $("filter").value;
  const notes = await api("GET", tag ? "/notes?tag=" + encodeURIComponent(tag) : "/notes");
  const list = $("notes");
  list.replaceChildren();
  for (const n of notes) {
    const li = document.createElement("li");
    li.dataset.id = n.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = n.title;
    li.append(title);
    if (n.tag) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = n.tag;
      li.append(tag);
    }
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.setAttribute("aria-label", "Delete " + n.title);
    del.addEventListener("click", async () => {
      await api("DELETE", "/notes/" + n.id);
      await loadNotes();
    });
    li.append(del);
    list.append(li);
  }
  $("count").textContent = notes.length === 1 ? "1 note" : notes.length + " notes";
  document.body.dataset.ready = "true";
}

$("new-note").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const payload = { title: $("title").value, body: $("body").value };
  if ($("tag").value) payload.tag = $("tag").value;
  try {
    await api("POST", "/notes", payload);
    $("error").textContent = "";
    form.reset();
    await loadNotes();
  } catch (err) {
    $("error").textContent = err.message;
  }
});

$("filter").addEventListener("change", loadNotes);

loadTags().then(loadNotes).catch((err) => { $("error").textContent = err.message; });
</script>
</body>
</html>
"""


class ApiError(Exception):
    """An error that becomes a JSON response with the given status."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def connect():
    return psycopg.connect(DATABASE_URL, row_factory=dict_row, connect_timeout=5)


def note_to_json(row):
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "tag": row["tag"],
        "created_at": row["created_at"].isoformat(),
    }


def parse_note_id(raw):
    if not raw.isdigit() or not raw.isascii():
        raise ApiError(HTTPStatus.BAD_REQUEST, "note id must be a positive integer")
    note_id = int(raw)
    if note_id < 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "note id must be a positive integer")
    if note_id > MAX_INT4:
        raise ApiError(HTTPStatus.NOT_FOUND, f"note {note_id} not found")
    return note_id


def validate_note(payload):
    if not isinstance(payload, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
    unknown = sorted(set(payload) - NOTE_FIELDS)
    if unknown:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)}")

    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(HTTPStatus.BAD_REQUEST, "title is required and must be a non-empty string")
    title = title.strip()
    if len(title) > MAX_TITLE_LEN:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"title must be at most {MAX_TITLE_LEN} characters")

    body = payload.get("body", "")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a string")
    if len(body) > MAX_NOTE_BODY_LEN:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"body must be at most {MAX_NOTE_BODY_LEN} characters")

    tag = payload.get("tag")
    if tag is not None and (not isinstance(tag, str) or not tag):
        raise ApiError(HTTPStatus.BAD_REQUEST, "tag must be a non-empty string or null")

    return title, body, tag


class Handler(BaseHTTPRequestHandler):
    server_version = "notes/1.0"
    sys_version = ""

    # ---- plumbing -------------------------------------------------------

    def log_message(self, fmt, *args):
        sys.stderr.write(f"notes: {self.address_string()} {fmt % args}\n")

    def send_json(self, status, payload=None, headers=None):
        data = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def read_json(self):
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header is required")
        try:
            length = int(length)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid Content-Length header") from None
        if length < 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid Content-Length header")
        if length > MAX_BODY_BYTES:
            # Drain what the client is sending (within reason) so it gets to
            # read our answer instead of a connection reset.
            if length <= MAX_DRAIN_BYTES:
                while length > 0:
                    chunk = self.rfile.read(min(length, 64 * 1024))
                    if not chunk:
                        break
                    length -= len(chunk)
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be valid JSON") from None

    def dispatch(self, method):
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            route, args, allowed = self.route(parts)
            if route is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")
            handler = allowed.get(method)
            if handler is None:
                raise ApiError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"method {method} not allowed on {url.path}",
                    {"Allow": ", ".join(sorted(allowed))},
                )
            handler(query, *args)
        except ApiError as err:
            self.send_json(err.status, {"error": err.message}, err.headers)
        except psycopg.OperationalError as err:
            self.log_message("database unavailable: %s", str(err).strip())
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "database unavailable"})
        except Exception as err:  # noqa: BLE001 - last-resort 500
            self.log_message("internal error: %r", err)
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"})

    def route(self, parts):
        if parts == ["healthz"]:
            return "healthz", (), {"GET": self.get_healthz}
        if parts == ["tags"]:
            return "tags", (), {"GET": self.get_tags}
        if parts == ["stats"]:
            return "stats", (), {"GET": self.get_stats}
        if parts == ["ui"]:
            return "ui", (), {"GET": self.get_ui}
        if parts == ["notes"]:
            return "notes", (), {"GET": self.list_notes, "POST": self.create_note}
        if len(parts) == 2 and parts[0] == "notes":
            return "note", (parts[1],), {"GET": self.get_note, "DELETE": self.delete_note}
        return None, (), {}

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    # ---- endpoints ------------------------------------------------------

    def get_healthz(self, query):
        try:
            with connect() as conn:
                conn.execute("select 1").fetchone()
        except psycopg.Error as err:
            self.log_message("healthz: database not ready: %s", str(err).strip())
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable"})
            return
        self.send_json(HTTPStatus.OK, {"status": "ok"})

    def get_ui(self, query):
        data = UI_HTML.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def get_tags(self, query):
        with connect() as conn:
            rows = conn.execute("select name, description from tags order by name").fetchall()
        self.send_json(HTTPStatus.OK, rows)

    def get_stats(self, query):
        with connect() as conn:
            total = conn.execute("select count(*) as n from notes").fetchone()["n"]
            rows = conn.execute(
                "select t.name, count(n.id) as n from tags t"
                " left join notes n on n.tag = t.name group by t.name order by t.name"
            ).fetchall()
            untagged = conn.execute(
                "select count(*) as n from notes where tag is null"
            ).fetchone()["n"]
        self.send_json(
            HTTPStatus.OK,
            {"notes": total, "untagged": untagged, "by_tag": {r["name"]: r["n"] for r in rows}},
        )

    def list_notes(self, query):
        tags = query.get("tag")
        with connect() as conn:
            if tags:
                rows = conn.execute(
                    f"select {NOTE_COLUMNS} from notes where tag = %s order by id", (tags[-1],)
                ).fetchall()
            else:
                rows = conn.execute(f"select {NOTE_COLUMNS} from notes order by id").fetchall()
        self.send_json(HTTPStatus.OK, [note_to_json(r) for r in rows])

    def create_note(self, query):
        title, body, tag = validate_note(self.read_json())
        try:
            with connect() as conn:
                row = conn.execute(
                    f"insert into notes (title, body, tag) values (%s, %s, %s)"
                    f" returning {NOTE_COLUMNS}",
                    (title, body, tag),
                ).fetchone()
        except psycopg.errors.ForeignKeyViolation:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown tag: {tag}") from None
        self.send_json(
            HTTPStatus.CREATED, note_to_json(row), {"Location": f"/notes/{row['id']}"}
        )

    def get_note(self, query, raw_id):
        note_id = parse_note_id(raw_id)
        with connect() as conn:
            row = conn.execute(
                f"select {NOTE_COLUMNS} from notes where id = %s", (note_id,)
            ).fetchone()
        if row is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"note {note_id} not found")
        self.send_json(HTTPStatus.OK, note_to_json(row))

    def delete_note(self, query, raw_id):
        note_id = parse_note_id(raw_id)
        with connect() as conn:
            deleted = conn.execute("delete from notes where id = %s", (note_id,)).rowcount
        if not deleted:
            raise ApiError(HTTPStatus.NOT_FOUND, f"note {note_id} not found")
        self.send_json(HTTPStatus.NO_CONTENT)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global DATABASE_URL
    DATABASE_URL = os.environ.get("DATABASE_URL", "")
    port = os.environ.get("PORT", "")
    if not DATABASE_URL:
        sys.exit("notes: DATABASE_URL is not set")
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"notes: PORT must be a port number, got {port!r}")

    server = Server(("127.0.0.1", int(port)), Handler)

    def stop(signum, frame):
        sys.stderr.write(f"notes: received {signal.Signals(signum).name}, shutting down\n")
        # shutdown() blocks until serve_forever() returns, so it must not run
        # on the main thread, which is the one inside serve_forever().
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sys.stderr.write(f"notes: listening on http://127.0.0.1:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    sys.stderr.write("notes: stopped\n")


DATABASE_URL = ""

if __name__ == "__main__":
    main()
