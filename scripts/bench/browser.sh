#!/usr/bin/env bash
# A browser suite on this machine's cores: the bundled browser example's files, copied to 12 (each
# worker runs a Chromium of its own), run by plans/browser.toml's commands at every --jobs from 1
# to MAX, with 0 (every file at once) and with the plan's default (no `jobs`: `auto` since jobs
# became adaptive). Prints one JSON line:
# {"bench": "browser", "rev", "cores", "files", "runs": [{"jobs", "rep", "wall", "cpu", "exit"}]}.
#
#   scripts/bench/browser.sh [--repeat R] [--json FILE] [--max-jobs MAX]
#
# Needs target/release/e2e-plan (or $E2E_PLAN_BIN), /usr/bin/chromium and examples/notes/.venv with
# requirements-browser.txt (plans/browser.toml's setup makes it). Hold the machine lock around it.
set -euo pipefail
MAX=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs) MAX=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
source "$(dirname "$0")/common.sh"
bench_args "${ARGS[@]+"${ARGS[@]}"}"
CORES=$(nproc)
MAX=${MAX:-$((CORES * 2))}
BIN=${E2E_PLAN_BIN:-$ROOT/target/release/e2e-plan}
[ -x "$BIN" ] || { echo "build it first: cargo build --release" >&2; exit 2; }
[ -x examples/notes/.venv/bin/playwright ] || { echo "run plans/browser.toml once (its setup makes examples/notes/.venv)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-browser.XXXXXX")
trap '"$BIN" rollback "$work/plan.toml" >/dev/null 2>&1 || true; "$BIN" cluster remove "$work/plan.toml" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/app/tests/browser"
cp examples/notes/app.py examples/notes/migrate.py "$work/app/"
ln -s "$ROOT/examples/notes/.venv" "$work/app/.venv"
cp examples/notes/tests/browser/conftest.py "$work/app/tests/browser/"
n=0
for copy in 1 2 3; do
  for f in examples/notes/tests/browser/test_*.py; do
    n=$((n + 1))
    cp "$f" "$work/app/tests/browser/$(basename "$f" .py)_$copy.py"
  done
done
# plans/browser.toml's commands, rooted at the copy; `jobs` left to each run.
sed -e "s|^root = .*|root = \"app\"|" -e "/^jobs = /d" -e "/^\[\[setup\]\]/,/^creates/d" \
    -e "s|^dir = .*|dir = \"report\"|" plans/browser.toml > "$work/plan.toml"

run() {  # run JOBS REP: one apply; JOBS "" is the plan's default
  local jobs=$1 rep=$2 flag=()
  [ -n "$jobs" ] && flag=(--jobs "$jobs")
  rm -f "$work/app/report/summary.json"
  "$BIN" --color never apply "$work/plan.toml" "${flag[@]+"${flag[@]}"}" >"$work/out.log" 2>&1 || true
  python3 - "$work/app/report/summary.json" "$jobs" "$rep" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
cpu = sum(a.get("cpu_secs") or 0 for w in s["workers"] for a in w["attempts"])
print(json.dumps({"jobs": int(sys.argv[2]) if sys.argv[2] else "default", "rep": int(sys.argv[3]),
                  "wall": round(s["wall_secs"], 3), "cpu": round(cpu, 3), "exit": s["exit_code"],
                  "at_once": s.get("most_at_once")}))
EOF
}

run 2 0 >/dev/null  # warm-up: the cluster's initdb and the template
runs=()
for rep in $(seq 1 "$REPEAT"); do
  for jobs in $(seq 1 "$MAX") 0 ""; do
    line=$(run "$jobs" "$rep")
    echo "$line" >&2
    runs+=("$line")
  done
done
out=$(python3 - "$CORES" "$n" "$(git rev-parse --short HEAD)" "${runs[@]}" <<'EOF'
import json, sys
cores, files, rev = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
import datetime
print(json.dumps({"bench": "browser", "rev": rev, "cores": cores, "files": files,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "runs": [json.loads(r) for r in sys.argv[4:]]}))
EOF
)
echo "$out"
[ -n "$JSON" ] && echo "$out" >> "$JSON"
true
