#!/usr/bin/env bash
# Benchmark (not a test): the local loop on the embedded cluster. How long from the command's
# start until the first worker's server is started, before (every run: initdb, start, prepare)
# and after the kept cluster (the second run starts the kept cluster and skips prepare).
#
#   scripts/bench/cluster.sh [--repeat R] [--json FILE]
#
#   --repeat R   repetitions (default 3); each runs, back to back: the previous version, this
#                version cold (`cluster remove` first), this version warm (its second run)
#   --json FILE  append the figures to FILE as one JSON line
#
# Also timed, for the design not taken: copying the stopped, prepared data folder (cp -a, then
# sync), what a copy-a-snapshot-per-run design would pay before its cluster could start.
#
# Projects: the bundled example (plans/default.toml, examples/notes, pool = 9), and a copy of it
# whose prepare applies 200 small SQL migrations, one psql each (about 5 s), on top of migrate.py.
# The second run is measured with the pool (claims) and without it (clones).
# The measure comes from each run's summary.json: the earliest start of a worker's `starting`
# phase, in seconds since the command started; wall is the command's own wall time.
#
# The previous version is commit 07c004a (before the kept cluster), built once into
# target/bench-old with `cargo build --release`; this version is target/release/e2e-plan.
set -euo pipefail
. "$(dirname "$0")/common.sh"
bench_args "$@"
OLD_REV=07c004a
OLD=$ROOT/target/bench-old/release/e2e-plan
NEW=$ROOT/target/release/e2e-plan
if [ ! -x "$OLD" ]; then
  rm -rf /tmp/e2e-plan-bench-old && git worktree add -f /tmp/e2e-plan-bench-old "$OLD_REV" >/dev/null
  (cd /tmp/e2e-plan-bench-old && cargo build --release --quiet --target-dir "$ROOT/target/bench-old")
  git worktree remove --force /tmp/e2e-plan-bench-old
fi
cargo build --release --quiet

# The bundled example once, so that its virtualenv exists.
"$NEW" apply plans/default.toml >/dev/null 2>&1 || true

# The migrations project: the example's code, its own state folder, 200 migrations.
WORK=$(mktemp -d /tmp/e2e-plan-bench-cluster-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
PROJ=$WORK/notes
mkdir -p "$PROJ"
(cd examples/notes && tar cf - --exclude=.venv --exclude=.e2e-plan --exclude=__pycache__ .) | (cd "$PROJ" && tar xf -)
mkdir -p "$PROJ/migrations"
for i in $(seq -w 1 200); do
  echo "create table m_$i (id serial primary key, name text not null, created timestamptz default now());" >"$PROJ/migrations/$i.sql"
done
VENV=$ROOT/examples/notes/.venv
cat >"$WORK/plan.toml" <<EOF
root = "$PROJ"

[tests]
include = ["tests/e2e/test_*.py"]

[database]
prepare = [
  "$VENV/bin/python migrate.py",
  ["sh", "-c", "for f in migrations/*.sql; do psql -q -v ON_ERROR_STOP=1 \\"\$DATABASE_URL\\" -f \$f || exit 1; done"],
]
fingerprint = ["migrate.py", "migrations/*.sql"]
pool = 9

[server]
command = ["$VENV/bin/python", "app.py"]
env = { PORT = "{port}", DATABASE_URL = "{db_url}" }
ready = "http://127.0.0.1:{port}/healthz"

[test]
command = ["$VENV/bin/pytest", "{file}", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"]
env = { BASE_URL = "http://127.0.0.1:{port}", DATABASE_URL = "{db_url}" }

[report]
dir = "$WORK/report"
EOF

# Each plan without its pool: the second run then clones instead of claiming.
sed -e "s|^root = .*|root = \"$ROOT/examples/notes\"|" -e "s|^pool = .*|pool = 0|" plans/default.toml >"$WORK/example-no-pool.toml"
sed -e "s|^pool = .*|pool = 0|" "$WORK/plan.toml" >"$WORK/plan-no-pool.toml"

# first_server REPORT_DIR: the earliest `starting` phase of any worker.
first_server() {
  python3 - "$1/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
starts = [p["start"] for w in s["workers"] for a in w["attempts"] for p in a["phases"] if p["phase"] == "starting"]
assert s["exit_code"] == 0, "the run failed"
print(min(starts))
EOF
}

# run BIN PLAN REPORT_DIR: one apply; prints {"first_server": s, "wall": s}.
run() {
  local t0 t1
  # Every run starts with the page cache written back: the previous run's writes (initdb, a
  # template) are not charged to the next one.
  sync
  t0=$(date +%s.%N)
  "$1" apply "$2" --report-dir "$3" >/dev/null 2>&1
  t1=$(date +%s.%N)
  python3 -c "import json,sys; print(json.dumps({'first_server': round(float(sys.argv[1]), 3), 'wall': round(float(sys.argv[3]) - float(sys.argv[2]), 3)}))" \
    "$(first_server "$3")" "$t0" "$t1"
}

measure() { # NAME PLAN PLAN_WITHOUT_POOL
  local name=$1 plan=$2 no_pool=$3 runs=()
  for r in $(seq 1 "$REPEAT"); do
    local old cold warm warm_no_pool
    old=$(run "$OLD" "$plan" "$WORK/report-old")
    "$NEW" cluster remove "$plan" >/dev/null
    cold=$(run "$NEW" "$plan" "$WORK/report-new")
    warm=$(run "$NEW" "$plan" "$WORK/report-new")
    warm_no_pool=$(run "$NEW" "$no_pool" "$WORK/report-no-pool")
    # The alternative design: a copy of the stopped, prepared data folder per run.
    local kept t0 t1 copy
    kept=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cluster']['dir'])" "$WORK/report-new/summary.json")
    rm -rf "$WORK/copy"; sync
    t0=$(date +%s.%N); cp -a "$kept" "$WORK/copy"; sync; t1=$(date +%s.%N)
    copy=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" "$t0" "$t1")
    local bytes; bytes=$(du -sb "$kept" | cut -f1)
    rm -rf "$WORK/copy"
    echo "$name #$r: previous $old; kept cluster, first run $cold; second run $warm, without the pool $warm_no_pool; copying the folder ${copy}s" >&2
    runs+=("{\"previous\": $old, \"cold\": $cold, \"warm\": $warm, \"warm_no_pool\": $warm_no_pool, \"copy_folder\": $copy, \"folder_bytes\": $bytes}")
  done
  local IFS=,
  echo "{\"project\": \"$name\", \"runs\": [${runs[*]}]}"
}

example=$(measure "bundled example" plans/default.toml "$WORK/example-no-pool.toml")
migrations=$(measure "200 migrations" "$WORK/plan.toml" "$WORK/plan-no-pool.toml")
"$NEW" cluster remove "$WORK/plan.toml" >/dev/null

if [ -n "$JSON" ]; then
  python3 - "$JSON" "$example" "$migrations" <<'EOF'
import datetime, json, os, subprocess, sys
pg = subprocess.run(["/usr/lib/postgresql/15/bin/postgres", "-V"], capture_output=True, text=True).stdout.split()[-1]
rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "pg": pg, "cores": os.cpu_count(), "old_rev": "07c004a",
       "projects": [json.loads(sys.argv[2]), json.loads(sys.argv[3])]}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
fi
