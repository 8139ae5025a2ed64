#!/usr/bin/env bash
# Benchmark (not a test): merging many pytest JUnit files with `e2e-plan merge` against the same
# merge done in Python with junitparser, written the linear way (append every suite, count once).
#
#   scripts/bench-merge.sh [--json FILE]
#
# Generates FILES JUnit files of CASES test cases each (pytest style, with some failures, errors
# and skips) into a temp dir, then times
#   - e2e-plan merge -o OUT IN...              (the release binary, every path as an argument)
#   - python merge.py OUT IN...                (junitparser: fromfile each input, append its
#                                               suites to one JUnitXml, update_statistics once)
# with hyperfine (wall clock, both the same way), and measures each one's peak resident memory
# with GNU time (/usr/bin/time -v, both the same way). Both outputs are checked to hold every
# test case. Prints a table; with --json, appends the figures as one JSON line (the raw record
# scripts/bench/report turns into the README's line). The temp dir is removed on exit.
#
# (junitparser's `merged += JUnitXml.fromfile(path)` is not measured: it recounts everything
# merged so far after each file and compares each new suite with every earlier one, so it grows
# with the square of the file count; nobody would merge 1,000 files that way on purpose.)
#
# Environment: FILES (1000), CASES (100), RUNS (10), E2E_PLAN (the release binary), VENV
# (target/bench-venv, created with junitparser when missing).
set -euo pipefail

cd "$(dirname -- "$0")/.."
root=$PWD
FILES=${FILES:-1000}
CASES=${CASES:-100}
RUNS=${RUNS:-10}
JSON_OUT=
if [[ ${1:-} == --json ]]; then JSON_OUT=$(realpath -m -- "${2:?--json needs a file}"); fi
bin=${E2E_PLAN:-$root/target/release/e2e-plan}
venv=${VENV:-$root/target/bench-venv}

die() { echo "bench-merge: $*" >&2; exit 1; }
log() { echo "bench-merge: $*" >&2; }

[[ -x $bin ]] || die "no binary at $bin (build it with: cargo build --release)"

# Tools: hyperfine and GNU time, from Debian when we may install them; both are required, so
# that the two merges are timed and measured the same way.
apt_updated=
apt_install() {
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
    if [[ -z $apt_updated ]]; then apt-get update -qq >&2 || return 1; apt_updated=1; fi
    apt-get install -y -qq "$@" >&2
}
command -v hyperfine >/dev/null || apt_install hyperfine || die "hyperfine is needed"
[[ -x /usr/bin/time ]] || apt_install time || die "GNU time (/usr/bin/time) is needed"

# The Python side.
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import junitparser' 2>/dev/null; then
    log "creating $venv with junitparser …"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check junitparser
fi
jp_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("junitparser"))')

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-merge.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
mkdir -p "$tmp/in"

cat >"$tmp/merge.py" <<'PY'
"""Merges JUnit files with junitparser, linearly: merge.py OUT IN..."""
import sys

from junitparser import JUnitXml

out, inputs = sys.argv[1], sys.argv[2:]
merged = JUnitXml()
for path in inputs:
    for suite in JUnitXml.fromfile(path):
        # Append the suite as it is: no comparison with the suites merged so far.
        merged._elem.append(suite._elem)
merged.update_statistics()
merged.write(out)
PY

log "generating $FILES files × $CASES cases in $tmp/in …"
python3 - "$tmp/in" "$FILES" "$CASES" <<'PY'
"""Writes pytest-style JUnit files: deterministic, with ~3% failures, ~1% errors, ~4% skips."""
import random
import sys
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape, quoteattr

out, files, cases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20251126)
t0 = datetime(2025, 11, 26, 9, 0, 0, tzinfo=timezone.utc)
for f in range(files):
    module = f"tests/e2e/test_area_{f:04d}.py"
    classname = module[:-3].replace("/", ".")
    body = []
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for c in range(cases):
        name = f"test_case_{c:03d}" + (f"[param-{c % 7}]" if c % 5 == 0 else "")
        t = round(rng.lognormvariate(-3.5, 1.2), 3)
        total += t
        r = rng.random()
        head = f"<testcase classname={quoteattr(classname)} name={quoteattr(name)} time=\"{t:.3f}\""
        if r < 0.03:
            counts["failures"] += 1
            msg = f"AssertionError: assert {c} == {c + 1}"
            trace = (
                f"def {name.split('[')[0]}(client):\n"
                f"        resp = client.get('/notes/{c}')\n"
                f">       assert resp.status_code == {c}\n"
                f"E       {msg}\n\n{module}:{10 + c}: AssertionError"
            )
            body.append(f"{head}><failure message={quoteattr(msg)}>{escape(trace)}</failure></testcase>")
        elif r < 0.04:
            counts["errors"] += 1
            msg = 'failed on setup with "psycopg.OperationalError: connection refused"'
            body.append(
                f"{head}><error message={quoteattr(msg)}>"
                f"{escape('conftest.py:101: in db' + chr(10) + 'E   psycopg.OperationalError: connection refused')}"
                "</error></testcase>"
            )
        elif r < 0.08:
            counts["skipped"] += 1
            body.append(
                f"{head}><skipped type=\"pytest.skip\" message=\"needs the mail server\">"
                f"{escape(module)}:{20 + c}: needs the mail server</skipped></testcase>"
            )
        elif r < 0.10:
            body.append(f"{head}><system-out>{escape('created note id=' + str(c) + chr(10))}</system-out></testcase>")
        else:
            body.append(f"{head} />")
    stamp = (t0 + timedelta(seconds=f * 3.217)).isoformat(timespec="microseconds")
    doc = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="{counts["errors"]}" failures="{counts["failures"]}" '
        f'skipped="{counts["skipped"]}" tests="{cases}" time="{total:.3f}" '
        f'timestamp="{stamp}" hostname="ci-runner-{f % 4}">'
        + "".join(body)
        + "</testsuite></testsuites>"
    )
    with open(f"{out}/junit-{f:04d}.xml", "w", encoding="utf-8") as fh:
        fh.write(doc)
PY
inputs=("$tmp"/in/junit-*.xml)
(( ${#inputs[@]} == FILES )) || die "expected $FILES inputs, found ${#inputs[@]}"
log "inputs: $(du -sh "$tmp/in" | cut -f1) in ${#inputs[@]} files"

rust_cmd="$(printf '%q' "$bin") merge -o $(printf '%q' "$tmp/out-rust.xml") $(printf '%q' "$tmp")/in/junit-*.xml"
py_cmd="$(printf '%q' "$venv/bin/python") $(printf '%q' "$tmp/merge.py") $(printf '%q' "$tmp/out-py.xml") $(printf '%q' "$tmp")/in/junit-*.xml"


# Every run's wall time (seconds) of a command, with hyperfine, into $tmp/NAME.json.
time_cmd() { # name, command
    hyperfine --style basic --warmup 1 --runs "$RUNS" --command-name "$1" \
        --export-json "$tmp/$1.json" "$2" >&2
}

# One run of a command under GNU time, which also checks its output has every test case; prints
# its peak resident memory (GNU time's "Maximum resident set size") in KiB.
want=$((FILES * CASES))
checked_run() {
    local cmd=$1 out=$2 got
    rm -f -- "$out"
    /usr/bin/time -v -o "$tmp/time.txt" bash -c "exec $cmd" >/dev/null || die "failed: $cmd"
    got=$(grep -o '<testcase ' "$out" | wc -l)
    (( got == want )) || die "$(basename -- "$out") has $got test cases, expected $want"
    awk -F': ' '/Maximum resident set size/{print $2}' "$tmp/time.txt"
}

log "e2e-plan merge: checking its output and measuring memory …"
rust_kib=$(checked_run "$rust_cmd" "$tmp/out-rust.xml")
log "junitparser $jp_version: checking its output and measuring memory …"
py_kib=$(checked_run "$py_cmd" "$tmp/out-py.xml")
log "timing e2e-plan merge ($RUNS runs) …"
time_cmd rust "$rust_cmd"
log "timing junitparser $jp_version ($RUNS runs) …"
time_cmd py "$py_cmd"

python3 - "$tmp" "$FILES" "$CASES" "$(du -sb "$tmp/in" | cut -f1)" "$rust_kib" "$py_kib" \
    "$jp_version" "$(nproc)" "${JSON_OUT:-}" <<'PY'
import json, sys, time
tmp, files, cases, in_bytes, rust_kib, py_kib, jp, cores, out = sys.argv[1:]
runs = lambda name: json.load(open(f"{tmp}/{name}.json"))["results"][0]["times"]
rec = {"date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "files": int(files),
       "cases": int(cases), "input_bytes": int(in_bytes), "cores": int(cores),
       "e2e_plan": {"wall": runs("rust"), "peak_rss_kib": int(rust_kib)},
       "junitparser_linear": {"version": jp, "wall": runs("py"), "peak_rss_kib": int(py_kib)}}
for name in ("e2e_plan", "junitparser_linear"):
    w = rec[name]["wall"]
    print(f"{name:20} wall {min(w):.3f}–{max(w):.3f} s over {len(w)} runs, "
          f"peak RSS {rec[name]['peak_rss_kib'] / 1024:.1f} MiB")
if out:
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
PY
