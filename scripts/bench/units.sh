#!/usr/bin/env bash
# Benchmark (not a test): short files with a heavy start-up. 7 test files, 63 quick tests in all
# (each one query through psql); every test process first spends a fixed amount of CPU importing
# (hashing in conftest.py, like importing a large app: 3 s on the first machine measured, 5 s on
# the last). Compared, on this machine's cores:
#   - plain `pytest tests/` run once, serially, on one database cloned from the template (the
#     fairest baseline: one import for the whole suite);
#   - e2e-plan with `units = "file"` (a worker per file: seven imports);
#   - e2e-plan with `units = "auto"` right after the `file` run (packs chosen from timings whose
#     tests' times that run stretched), and in a second copy of the project that runs only
#     `auto` (its timings as a team using `auto` has them).
#
#   scripts/bench/units.sh [--repeat R] [--json FILE]
#
# Each repetition runs the four back to back, after `sync`. e2e-plan runs against the local
# server (127.0.0.1:5432) with a fingerprinted template, so prepare is skipped after the first.
set -euo pipefail
. "$(dirname "$0")/common.sh"
bench_args "$@"
cargo build --release --quiet
BIN=$ROOT/target/release/e2e-plan
PY=$ROOT/target/test-venv/bin/python
PG=postgresql://postgres@127.0.0.1:5432
TEMPLATE=bench_units_tmpl
WORK=$(mktemp -d /tmp/e2e-plan-bench-units-XXXXXX)
cleanup() {
  "$BIN" rollback "$WORK/plan.toml" >/dev/null 2>&1 || true
  "$BIN" rollback "$WORK/steady/plan.toml" >/dev/null 2>&1 || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS bench_units_serial WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $TEMPLATE WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/tests"
cat >"$WORK/tests/conftest.py" <<'EOF'
import hashlib, os, subprocess
import pytest

# The start-up: a fixed amount of CPU work (about 3 s on one free core), like importing an app.
_h = b"x"
for _ in range(7_500_000):
    _h = hashlib.sha256(_h).digest()


@pytest.fixture
def db():
    def q(sql):
        return subprocess.run(["psql", os.environ["DATABASE_URL"], "-Atqc", sql],
                              capture_output=True, text=True, check=True).stdout.strip()
    return q
EOF
for f in 1 2 3 4 5 6 7; do
  {
    echo "def test_${f}_0(db):"
    echo "    assert db('select count(*) from items') == '0'"
    for t in 1 2 3 4 5 6 7 8; do
      echo ""
      echo "def test_${f}_${t}(db):"
      echo "    assert db('select $t') == '$t'"
    done
  } >"$WORK/tests/test_file$f.py"
done
cat >"$WORK/schema.sql" <<'EOF'
create table items (v text);
EOF
write_plan() { # DIR UNITS
  cat >"$1/plan.toml" <<EOF
[tests]
include = ["tests/test_*.py"]

[database]
template = "$PG/$TEMPLATE"
prepare = [["psql", "-q", "-v", "ON_ERROR_STOP=1", "{db_url}", "-f", "schema.sql"]]
fingerprint = ["schema.sql"]
keep = "never"

[test]
command = ["$PY", "-m", "pytest", "{file}", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"]
env = { DATABASE_URL = "{db_url}" }

[run]
units = "$2"

[report]
dir = "report"
EOF
}

serial() {
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS bench_units_serial WITH (FORCE)" >/dev/null 2>&1
  psql "$PG/postgres" -qc "CREATE DATABASE bench_units_serial TEMPLATE $TEMPLATE" >/dev/null
  sync
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$WORK" && DATABASE_URL=$PG/bench_units_serial "$PY" -m pytest tests/ -q -p no:cacheprovider >/dev/null)
  t1=$(date +%s.%N)
  secs "$t0" "$t1"
}

# apply DIR UNITS: prints the wall time and the number of packs the run used.
apply() {
  write_plan "$1" "$2"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$1" && "$BIN" apply plan.toml >/dev/null 2>"$WORK/last.err")
  t1=$(date +%s.%N)
  echo "$(secs "$t0" "$t1") $(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(len({w['attempts'][0]['db_name'] for w in s['workers'] if w['attempts'] and w['attempts'][0].get('packed_with')}))" "$1/report/summary.json")"
}

# A second copy of the project runs only `units = "auto"` after its first run, so its timings
# are those a team using `auto` has (the tests' times recorded in packs); in the first copy,
# every `auto` run follows a `file` run, whose tests' times were stretched by eleven start-ups.
STEADY=$WORK/steady
mkdir -p "$STEADY"
cp -r "$WORK/tests" "$WORK/schema.sql" "$STEADY/"
# Warm-up: the template is prepared and every file's start-up and tests are recorded.
apply "$WORK" file >/dev/null
apply "$WORK" file >/dev/null
apply "$STEADY" file >/dev/null
apply "$STEADY" auto >/dev/null
apply "$STEADY" auto >/dev/null
runs=()
for r in $(seq 1 "$REPEAT"); do
  s=$(serial)
  read -r f _ <<<"$(apply "$WORK" file)"
  read -r a packs <<<"$(apply "$WORK" auto)"
  read -r st steady_packs <<<"$(apply "$STEADY" auto)"
  echo "#$r: plain pytest, serial ${s}s; units = file ${f}s; units = auto after file ${a}s ($packs pack(s)); units = auto only ${st}s ($steady_packs pack(s))" >&2
  runs+=("{\"serial\": $s, \"file\": $f, \"auto\": $a, \"packs\": $packs, \"steady\": $st, \"steady_packs\": $steady_packs}")
done

if [ -n "$JSON" ]; then
  IFS=,
  python3 - "$JSON" "[${runs[*]}]" <<'EOF'
import datetime, json, os, subprocess, sys
pg = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc", "show server_version"],
                    capture_output=True, text=True).stdout.split()[0]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "rev": rev, "pg": pg, "cores": os.cpu_count(), "files": 7, "tests": 63,
       "runs": json.loads(sys.argv[2])}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
fi
