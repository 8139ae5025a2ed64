#!/usr/bin/env bash
# Benchmark (not a test): one long file holds up the run. Nine files of 10 s (five tests of 2 s)
# and one of 40 s (twenty tests of 2 s), each test one query through psql then a sleep, each
# worker with its own small HTTP server; `--jobs 4`. The ideal makespan is
# max(Σ/jobs, longest test) = max(130 s / 4, 2 s) = 32.5 s. Compared, back to back:
#   - e2e-plan with `units = "file"` (a worker per file: the run waits for the 40 s file);
#   - e2e-plan with `units = "auto"` (the long file split by its test ids, from the timings the
#     runs before recorded).
#
#   scripts/bench/makespan.sh [--repeat R] [--json FILE]
set -euo pipefail
. "$(dirname "$0")/common.sh"
bench_args "$@"
cargo build --release --quiet
BIN=$ROOT/target/release/e2e-plan
PY=$ROOT/target/test-venv/bin/python
PG=postgresql://postgres@127.0.0.1:5432
TEMPLATE=bench_makespan_tmpl
WORK=$(mktemp -d /tmp/e2e-plan-bench-makespan-XXXXXX)
cleanup() {
  "$BIN" rollback "$WORK/plan.toml" >/dev/null 2>&1 || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $TEMPLATE WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/tests"
cat >"$WORK/tests/conftest.py" <<'EOF'
import os, subprocess, time, urllib.request
import pytest


@pytest.fixture
def step():
    """One query, one request to this worker's server, then the test's wait."""
    def run(secs):
        out = subprocess.run(["psql", os.environ["DATABASE_URL"], "-Atqc", "select count(*) from items"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == "0"
        with urllib.request.urlopen(os.environ["BASE_URL"] + "/", timeout=5) as r:
            assert r.status == 200
        time.sleep(secs)
    return run
EOF
for f in 1 2 3 4 5 6 7 8 9; do
  for t in 1 2 3 4 5; do
    printf 'def test_%s_%s(step):\n    step(1.97)\n\n' "$f" "$t"
  done >"$WORK/tests/test_short$f.py"
done
for t in $(seq -w 1 20); do
  printf 'def test_long_%s(step):\n    step(1.97)\n\n' "$t"
done >"$WORK/tests/test_long.py"
cat >"$WORK/schema.sql" <<'EOF'
create table items (v text);
EOF
write_plan() { # UNITS
  cat >"$WORK/plan.toml" <<EOF
[tests]
include = ["tests/test_*.py"]

[database]
template = "$PG/$TEMPLATE"
prepare = [["psql", "-q", "-v", "ON_ERROR_STOP=1", "{db_url}", "-f", "schema.sql"]]
fingerprint = ["schema.sql"]
keep = "never"

[server]
command = ["$PY", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ready = "http://127.0.0.1:{port}/"

[test]
command = ["$PY", "-m", "pytest", "{file}", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"]
collect = ["$PY", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "{file}"]
env = { DATABASE_URL = "{db_url}", BASE_URL = "http://127.0.0.1:{port}" }

[run]
units = "$1"
jobs = 4

[report]
dir = "report"
EOF
}

apply() { # UNITS
  write_plan "$1"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$WORK" && "$BIN" apply plan.toml >/dev/null 2>"$WORK/last.err")
  t1=$(date +%s.%N)
  secs "$t0" "$t1"
}

# The sum of every test's time in the last run's JUnit.
tests_sum() {
  python3 - "$WORK/report/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
print(round(sum(float(c.get("time", 0)) for c in ET.parse(sys.argv[1]).iter("testcase")), 3))
EOF
}

# Warm-up: the template is prepared and every file's start-up and tests are recorded.
apply file >/dev/null
runs=()
for r in $(seq 1 "$REPEAT"); do
  f=$(apply file)
  fs=$(tests_sum)
  a=$(apply auto)
  as=$(tests_sum)
  parts=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(max([a["part"]["count"] for w in s["workers"] for a in w["attempts"] if a.get("part")] or [0]))' "$WORK/report/summary.json")
  echo "#$r: units = file ${f}s (tests ${fs}s); units = auto ${a}s (tests ${as}s, $parts parts)" >&2
  runs+=("{\"file\": $f, \"file_tests\": $fs, \"auto\": $a, \"auto_tests\": $as, \"parts\": $parts}")
done

if [ -n "$JSON" ]; then
  IFS=,
  python3 - "$JSON" "[${runs[*]}]" <<'EOF'
import datetime, json, os, subprocess, sys
pg = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc", "show server_version"],
                    capture_output=True, text=True).stdout.split()[0]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "rev": rev,
       "pg": pg, "cores": os.cpu_count(), "jobs": 4, "files": 10, "tests": 65,
       "ideal": 32.5, "runs": json.loads(sys.argv[2])}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
fi
