#!/usr/bin/env bash
# Benchmark (not a test): the critical path on few cores. 12 files (one of about 4 s, eleven of
# about 0.6 s of tests, under their start-up), a server each (the bundled example's app), a test
# process each that spends a fixed amount of CPU starting up (0.5–1.1 s on the machines
# measured), a 140 MB template, every worker
# at once (jobs = 0). Measured:
#   - the long file's start-up: from the command's start until its first test starts, in the
#     full run and with the long file alone;
#   - the wall time, against the design e2e-plan replaces (naive_orchestrator.py: clone each
#     database in turn, then start every server and test at once) and against the version before
#     the slack priorities (the previous commit, built into target/bench-old-nice);
#   - the same with a warm pool (`pool = 12`: every database copied after the previous run's
#     summary), its wall to the summary and to the command's end (which waits for the refill);
#   - the same with `units = "auto"` (short files packed from the recorded timings).
#
#   scripts/bench/critical.sh [--repeat R] [--json FILE] [--old-rev REV]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
REPEAT=3
JSON=""
OLD_REV=$(git log --format=%h -1 --grep '^Critical path first' 2>/dev/null)~1
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) REPEAT=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --old-rev) OLD_REV=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
OLD_REV=$(git rev-parse --short "$OLD_REV")
OLD=$ROOT/target/bench-old-nice/release/e2e-plan
if [ ! -x "$OLD" ]; then
  rm -rf /tmp/e2e-plan-bench-old-nice && git worktree add -f /tmp/e2e-plan-bench-old-nice "$OLD_REV" >/dev/null
  (cd /tmp/e2e-plan-bench-old-nice && cargo build --release --quiet --target-dir "$ROOT/target/bench-old-nice")
  git worktree remove --force /tmp/e2e-plan-bench-old-nice
fi
cargo build --release --quiet
NEW=$ROOT/target/release/e2e-plan
"$NEW" apply plans/default.toml >/dev/null 2>&1 || true   # the example's virtualenv
VENV=$ROOT/examples/notes/.venv
PG=postgresql://postgres@127.0.0.1:5432
TEMPLATE=bench_crit_tmpl
WORK=$(mktemp -d /tmp/e2e-plan-bench-critical-XXXXXX)
PROJ=$WORK/proj
cleanup() {
  "$NEW" rollback "$WORK/plan.toml" >/dev/null 2>&1 || true
  "$NEW" pool drain "$WORK/pool.toml" >/dev/null 2>&1 || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $TEMPLATE WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$PROJ/tests" "$WORK/trace"
cp examples/notes/app.py examples/notes/migrate.py "$PROJ/"
cat >"$PROJ/tests/conftest.py" <<'EOF'
import hashlib, os, time, urllib.request
import pytest

# The start-up: a fixed amount of CPU work (0.5–1.1 s on one free core of the machines measured),
# like importing an app.
_h = b"x"
for _ in range(1_250_000):
    _h = hashlib.sha256(_h).digest()


@pytest.fixture(autouse=True, scope="module")
def _first_test(request):
    trace = os.environ.get("TRACE")
    if trace:
        path = os.path.join(trace, os.path.basename(request.module.__file__) + ".first")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(str(time.time()))


@pytest.fixture
def get():
    def get(path):
        with urllib.request.urlopen(os.environ["BASE_URL"] + path, timeout=10) as r:
            return r.status
    return get
EOF
test_file() { # NAME TESTS SLEEP
  for t in $(seq 1 "$2"); do
    printf 'import time\n\ndef test_%s(get):\n    assert get("/healthz") == 200\n    time.sleep(%s)\n\n' "$t" "$3"
  done >"$PROJ/tests/$1.py"
}
test_file test_long 8 0.5
# The short files' tests (0.6 s) stay clearly under their start-up, so that `auto` packs them on
# any machine (with 1 s of tests, about a start-up, it did only where start-ups ran slow).
for i in 01 02 03 04 05 06 07 08 09 10 11; do test_file "test_short_$i" 2 0.3; done
write_plan() { # FILE INCLUDE [POOL] [UNITS]
  cat >"$1" <<EOF
root = "$PROJ"

[tests]
include = ["$2"]

[database]
template = "$PG/$TEMPLATE"
prepare = [
  "$VENV/bin/python migrate.py",
  ["psql", "-q", "-v", "ON_ERROR_STOP=1", "{db_url}", "-c", "create table pad as select repeat('x', 900) as v from generate_series(1, 150000)"],
]
fingerprint = ["migrate.py"]
keep = "never"
pool = ${3:-0}

[server]
command = ["$VENV/bin/python", "app.py"]
env = { PORT = "{port}", DATABASE_URL = "{db_url}" }
ready = "http://127.0.0.1:{port}/healthz"

[test]
command = ["$VENV/bin/python", "-m", "pytest", "{file}", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"]
env = { BASE_URL = "http://127.0.0.1:{port}", DATABASE_URL = "{db_url}", TRACE = "$WORK/trace" }

[run]
jobs = 0
units = "${4:-file}"

[report]
dir = "$WORK/report"
EOF
}
write_plan "$WORK/plan.toml" "tests/test_*.py"
write_plan "$WORK/alone.toml" "tests/test_long.py"
write_plan "$WORK/pool.toml" "tests/test_*.py" 12
write_plan "$WORK/auto.toml" "tests/test_*.py" 0 auto

# apply BIN PLAN: prints {"wall": s, "long_startup": s}.
apply() {
  rm -f "$WORK"/trace/*
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$1" apply "$2" >/dev/null 2>&1
  t1=$(date +%s.%N)
  python3 -c "import json,sys; t0=float(sys.argv[1]); s=json.load(open(sys.argv[4])); packs=len({w['attempts'][0]['db_name'] for w in s['workers'] if w['attempts'] and w['attempts'][0].get('packed_with')}); print(json.dumps({'wall': round(float(sys.argv[2]) - t0, 3), 'long_startup': round(float(open(sys.argv[3]).read()) - t0, 3), 'to_summary': round(s['wall_secs'], 3), 'packs': packs}))" \
    "$t0" "$t1" "$WORK/trace/test_long.py.first" "$WORK/report/summary.json"
}

naive() {
  sync
  python3 scripts/bench/naive_orchestrator.py "$PROJ" "$PG" "$TEMPLATE" "$VENV/bin/python" \
    $(cd "$PROJ" && ls tests/test_*.py)
}

# Warm-up: the template is prepared, every file's time is recorded (both versions read it).
apply "$NEW" "$WORK/plan.toml" >/dev/null
apply "$NEW" "$WORK/plan.toml" >/dev/null
apply "$NEW" "$WORK/pool.toml" >/dev/null   # fills the pool
size=$(psql "$PG/postgres" -Atqc "select pg_database_size('$TEMPLATE')")
runs=()
for r in $(seq 1 "$REPEAT"); do
  nv=$(naive)
  old=$(apply "$OLD" "$WORK/plan.toml")
  new=$(apply "$NEW" "$WORK/plan.toml")
  alone=$(apply "$NEW" "$WORK/alone.toml")
  pool=$(apply "$NEW" "$WORK/pool.toml")
  auto=$(apply "$NEW" "$WORK/auto.toml")
  echo "#$r: naive ${nv}s; previous $old; slack priorities $new; long file alone $alone; warm pool $pool; units = auto $auto" >&2
  runs+=("{\"naive\": $nv, \"previous\": $old, \"priorities\": $new, \"alone\": $alone, \"pool\": $pool, \"auto\": $auto}")
done

if [ -n "$JSON" ]; then
  IFS=,
  python3 - "$JSON" "[${runs[*]}]" "$size" "$OLD_REV" <<'EOF'
import datetime, json, os, subprocess, sys
pg = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc", "show server_version"],
                    capture_output=True, text=True).stdout.split()[0]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "pg": pg, "cores": os.cpu_count(), "files": 12, "template_bytes": int(sys.argv[3]),
       "old_rev": sys.argv[4], "gate": "wave", "rev": rev, "runs": json.loads(sys.argv[2])}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
fi
