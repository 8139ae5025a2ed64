#!/usr/bin/env bash
# Benchmark (not a test): merging many pytest JUnit files with `e2e-plan merge` against the same
# merge done in Python with junitparser.
#
#   scripts/bench-merge.sh
#
# Generates FILES JUnit files of CASES test cases each (pytest style, with some failures, errors
# and skips) into a temp dir, then times
#   - e2e-plan merge -o OUT IN...              (the release binary, every path as an argument)
#   - python merge.py OUT IN...                (junitparser: JUnitXml.fromfile, `+=`, write)
# with hyperfine when it is there (else bash's clock), and measures each one's peak memory with
# GNU time (/usr/bin/time -v). Prints a table. The temp dir is removed on exit.
#
# Takes about 15 minutes at the default size on 2 cores: junitparser's `+=` recounts every case
# merged so far after each file (JUnitXml.update_statistics) and compares each new suite with
# every earlier one (add_testsuite), so the Python side grows quadratically with FILES (≈200 s
# a run for 1,000 files). e2e-plan merge streams and takes well under a second.
#
# Environment: FILES (1000), CASES (100), RUNS_RUST (10), RUNS_PY (3), E2E_PLAN (the release
# binary), VENV (target/bench-venv, created with junitparser when missing), NO_HYPERFINE=1 (time
# with bash even when hyperfine is there).
set -euo pipefail

cd "$(dirname -- "$0")/.."
root=$PWD
FILES=${FILES:-1000}
CASES=${CASES:-100}
RUNS_RUST=${RUNS_RUST:-10}
RUNS_PY=${RUNS_PY:-3}
bin=${E2E_PLAN:-$root/target/release/e2e-plan}
venv=${VENV:-$root/target/bench-venv}

die() { echo "bench-merge: $*" >&2; exit 1; }
log() { echo "bench-merge: $*" >&2; }

[[ -x $bin ]] || die "no binary at $bin (build it with: cargo build --release)"

# Tools: hyperfine and GNU time, from Debian when we may install them.
apt_updated=
apt_install() {
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
    if [[ -z $apt_updated ]]; then apt-get update -qq >&2 || return 1; apt_updated=1; fi
    apt-get install -y -qq "$@" >&2
}
use_hyperfine=
if [[ -z ${NO_HYPERFINE:-} ]]; then
    if command -v hyperfine >/dev/null || apt_install hyperfine; then
        use_hyperfine=1
    else
        log "hyperfine unavailable: timing with bash"
    fi
fi
[[ -x /usr/bin/time ]] || apt_install time || log "GNU time unavailable: no peak memory figures"

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
"""Merges JUnit files with junitparser: merge.py OUT IN..."""
import sys

from junitparser import JUnitXml

out, inputs = sys.argv[1], sys.argv[2:]
merged = JUnitXml()
for path in inputs:
    merged += JUnitXml.fromfile(path)
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


# mean min max (seconds) of a command, into the named array.
time_cmd() {
    local -n res=$1; local name=$2 cmd=$3 runs=$4 warmup=$5
    if [[ -n $use_hyperfine ]]; then
        hyperfine --style basic --warmup "$warmup" --runs "$runs" --command-name "$name" \
            --export-json "$tmp/$name.json" "$cmd" >&2
        read -r -a res < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["mean"], r["min"], r["max"])' "$tmp/$name.json")
    else
        local i s e all=()
        for ((i = 0; i < warmup; i++)); do bash -c "$cmd" >/dev/null; done
        for ((i = 0; i < runs; i++)); do
            s=$(date +%s%N); bash -c "$cmd" >/dev/null; e=$(date +%s%N)
            all+=("$(( (e - s) / 1000 ))")
        done
        read -r -a res < <(printf '%s\n' "${all[@]}" | awk 'NR==1{mn=$1;mx=$1} {t+=$1; if($1<mn)mn=$1; if($1>mx)mx=$1} END{printf "%f %f %f\n", t/NR/1e6, mn/1e6, mx/1e6}')
    fi
}

# One run of a command under GNU time, which also checks its output has every test case; prints
# its peak resident memory (GNU time's "Maximum resident set size", in KiB) in MiB.
want=$((FILES * CASES))
checked_run() {
    local cmd=$1 out=$2 got
    rm -f -- "$out"
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v -o "$tmp/time.txt" bash -c "exec $cmd" >/dev/null \
            || die "failed: $cmd"
    else
        bash -c "exec $cmd" >/dev/null || die "failed: $cmd"
    fi
    got=$(grep -o '<testcase ' "$out" | wc -l)
    (( got == want )) || die "$(basename -- "$out") has $got test cases, expected $want"
    if [[ -x /usr/bin/time ]]; then
        awk -F': ' '/Maximum resident set size/{printf "%.1f MiB", $2/1024}' "$tmp/time.txt"
    else
        echo "n/a"
    fi
}

# The first run of each also checks the output and measures memory; the Python merge takes
# minutes at the default size, so it gets no warm-up run beyond that one.
log "e2e-plan merge: checking its output and measuring memory …"
rust_mem=$(checked_run "$rust_cmd" "$tmp/out-rust.xml")
log "junitparser $jp_version: checking its output and measuring memory (slow) …"
py_mem=$(checked_run "$py_cmd" "$tmp/out-py.xml")
log "timing e2e-plan merge ($RUNS_RUST runs) …"
time_cmd rust e2e-plan "$rust_cmd" "$RUNS_RUST" 1
log "timing junitparser $jp_version ($RUNS_PY runs) …"
time_cmd py junitparser "$py_cmd" "$RUNS_PY" 0

echo
echo "merge of $FILES JUnit files × $CASES cases ($want test cases, $(du -sh "$tmp/in" | cut -f1) in), $(nproc) cores"
printf '%-28s %10s %10s %10s %12s\n' "tool" "mean" "min" "max" "peak RSS"
printf '%-28s %9.3fs %9.3fs %9.3fs %12s\n' "e2e-plan merge (release)" "${rust[0]}" "${rust[1]}" "${rust[2]}" "$rust_mem"
printf '%-28s %9.3fs %9.3fs %9.3fs %12s\n' "junitparser $jp_version (python)" "${py[0]}" "${py[1]}" "${py[2]}" "$py_mem"
awk -v a="${py[0]}" -v b="${rust[0]}" 'BEGIN{printf "e2e-plan merge is %.1f× faster (mean)\n", a/b}'
