#!/usr/bin/env bash
# Benchmark (not a test): e2e-plan on two real-shaped pytest suites (issue #29), against plain
# pytest and pytest-xdist on the same machine, back to back.
#
#   scripts/bench/real.sh [--repeat R] [--json FILE] [--small] [--suite S]... [--mode M]...
#                         [--auto-runs N]
#
#   --repeat R     repetitions per suite and mode (default 3)
#   --json FILE    append this invocation's figures to FILE as one JSON line
#                  (scripts/bench/results/real.jsonl for the committed ones)
#   --small        the small projects (a quick end-to-end check of this script, not figures)
#   --suite S      django or api (repeatable; default both)
#   --mode M       bytecode (PYTHONDONTWRITEBYTECODE unset, __pycache__ written by a first
#                  collection and kept) or nobytecode (PYTHONDONTWRITEBYTECODE=1 and the
#                  project's __pycache__ removed before every run; the venv's own bytecode, which
#                  pip writes at install, stays); repeatable; default both
#   --auto-runs N  runs of units = "auto" in each fresh copy (default 5)
#
# The suites (scripts/bench/suites/, see its README): make_django.py writes a Django 5.2 project
# (pytest-django, DRF, django-filter, factory_boy; 8 apps, 112 models, 44 test files, 358 tests;
# --small: 3 apps, 6 files), make_api.py a FastAPI + SQLAlchemy 2 + alembic service (8 files, 60
# tests; --small: lighter). Their venvs are target/bench-venv-django and target/bench-venv-api,
# made (pip install -r of the generator's pinned requirements) when missing or out of date.
#
# For each suite: a copy of the project runs `e2e-plan apply` once (units = "file", unmeasured
# but recorded: it prepares the template `bench_real_<pid>_<suite>` on the local server with
# `manage.py migrate` or `alembic upgrade head`, fingerprinted on the migrations); then, once,
# Django's plain `pytest` (pytest-django creates and migrates test_<db> itself) and
# `pytest -n 2 --create-db`; and for each mode the start-up CPU (`pytest --collect-only -q`).
# Then for each mode, R times, back to back, each after CHECKPOINT and sync:
#   1. serial: plain `pytest` of the whole suite in one process on a fresh clone of the template
#      (Django: with E2E_PLAN_DB naming it, so the project's conftest uses that database as it is);
#   2. xdist: `pytest -n 2` (Django: pytest-django's own per-worker databases, --reuse-db, made
#      by the run above; api: both workers on one fresh clone, where the session's committed
#      users collide: the failures are recorded, not hidden);
#   3. file: `e2e-plan apply` with units = "file" (a worker per file) in a copy that keeps its
#      timings between runs;
#   4. auto: a fresh copy of the project (no .e2e-plan/timings.json), `e2e-plan apply` with
#      units = "auto" N times (the first has no timings), each after `dry-run --format json`
#      (its predicted_wall_secs and worker count), each followed by
#   5. serial_after: step 1 again (in the auto copy, on a fresh clone), so that every auto run
#      sits between two serial runs and its ratio is to their mean: the machine's speed of that
#      moment, not of minutes before.
# Every step records its wall time, the CPU of its processes (with the children they waited for),
# the CPU of the PostgreSQL backends serving its databases (sampled every 0.2 s), the exit code
# and the test counts (JUnit) or summary.json's wall_secs, units (distinct worker databases) and
# file results. The plans use [database] template on the local server, no [server] (the tests
# run their app in-process), `[test] collect` for splits, keep = "never".
#
# Environment: E2E_PLAN (the binary; default target/release/e2e-plan, never built here), PGHOST
# (127.0.0.1), PGPORT (5432), PGUSER (postgres; no password, CREATEDB and CHECKPOINT),
# BENCH_KEEP_WORK=1 (keep the temp dir: projects, plans, summaries, logs). On exit (Ctrl-C too)
# it stops what it started, runs `e2e-plan rollback` for every plan, drops every database whose
# name holds bench_real_<pid> (templates, clones, pytest-django's test_ ones), and checks that
# none is left and no process runs in the temp dir.
set -euo pipefail

cd "$(dirname -- "$0")/../.."
ROOT=$PWD
HERE=$ROOT/scripts/bench/suites
MEASURE=$HERE/measure.py
BIN=${E2E_PLAN:-$ROOT/target/release/e2e-plan}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
export PGHOST PGPORT PGUSER PGOPTIONS
PG=postgresql://$PGUSER@$PGHOST:$PGPORT

REPEAT=3
JSON_OUT=
SMALL=
SUITES=()
MODES=()
AUTO_RUNS=5

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --repeat) REPEAT=${2:-}; shift 2 ;;
        --json) JSON_OUT=$(realpath -m -- "${2:-}"); shift 2 ;;
        --small) SMALL=1; shift ;;
        --suite) SUITES+=("${2:-}"); shift 2 ;;
        --mode) MODES+=("${2:-}"); shift 2 ;;
        --auto-runs) AUTO_RUNS=${2:-}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ ${#SUITES[@]} -gt 0 ]] || SUITES=(django api)
[[ ${#MODES[@]} -gt 0 ]] || MODES=(bytecode nobytecode)
for v in REPEAT AUTO_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
for s in "${SUITES[@]}"; do [[ $s == django || $s == api ]] || { echo "bench: --suite django|api" >&2; exit 2; }; done
for m in "${MODES[@]}"; do [[ $m == bytecode || $m == nobytecode ]] || { echo "bench: --mode bytecode|nobytecode" >&2; exit 2; }; done
command -v psql >/dev/null || die "psql not found"
[[ -x $BIN ]] || die "no binary at $BIN (build it first: cargo build --release; this script never builds)"

TAG=bench_real_$$
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
settle() { q -c "CHECKPOINT"; sync; }
ours() { q -c "SELECT datname FROM pg_database WHERE strpos(datname, '$TAG') > 0 ORDER BY 1"; }
drop_ours() {
    local name
    for name in $(ours); do
        q -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" || log "could not drop $name"
    done
}
# Processes whose working folder is in the temp dir (every command of the benchmark runs there).
procs_in() {
    local p d
    for p in /proc/[0-9]*; do
        d=$(readlink "$p/cwd" 2>/dev/null) || continue
        [[ $d == "$1" || $d == "$1"/* ]] && echo "${p#/proc/}"
    done
    return 0
}

WORK=
PLANS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid plan
    if [[ -n $WORK ]]; then
        for pid in $(procs_in "$WORK"); do
            [[ $pid == "$$" || $pid == "$BASHPID" ]] || kill -TERM "$pid" 2>/dev/null || true
        done
    fi
    for plan in "${PLANS[@]}"; do
        [[ -f $plan ]] && "$BIN" --color never rollback "$plan" >/dev/null 2>&1 || true
    done
    drop_ours 2>/dev/null || true
    if [[ -n $WORK ]]; then
        local left
        left=$(procs_in "$WORK" | grep -vx -e "$$" -e "$BASHPID" | tr '\n' ' ' || true)
        [[ -z ${left// /} ]] || log "WARNING: processes still running in $WORK: $left"
        if [[ -n ${BENCH_KEEP_WORK:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

q -c "SELECT 1" >/dev/null || die "cannot connect to PostgreSQL at $PGHOST:$PGPORT as $PGUSER"
WORK=$(mktemp -d /tmp/e2e-bench-real.XXXXXX)
mkdir -p "$WORK/logs"
STEPS=$WORK/steps.jsonl
: >"$STEPS"

# ---------------------------------------------------------------------------------------------
# Venvs and projects.
ensure_venv() { # suite
    local venv=$ROOT/target/bench-venv-$1 req=$WORK/requirements-$1.txt want
    python3 "$HERE/make_$1.py" --requirements >"$req"
    want=$(sha256sum <"$req" | cut -c1-64)
    if [[ ! -x $venv/bin/pytest || $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$want" ]]; then
        log "making $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >"$WORK/logs/pip-$1.log" 2>&1 \
            || die "pip install failed (see $WORK/logs/pip-$1.log)"
        echo "$want" >"$venv/.requirements.sha256"
    fi
}

venv_of() { echo "$ROOT/target/bench-venv-$1"; }

include_of() {
    case $1 in
        django) echo '["*/tests/test_*.py", "*/tests.py"]' ;;
        api) echo '["tests/test_*.py"]' ;;
    esac
}
prepare_of() {
    local v; v=$(venv_of "$1")
    case $1 in
        django) echo "[[\"$v/bin/python\", \"manage.py\", \"migrate\", \"--no-input\", \"-v\", \"0\"]]" ;;
        api) echo "[[\"$v/bin/alembic\", \"upgrade\", \"head\"]]" ;;
    esac
}
fingerprint_of() {
    case $1 in
        django) echo '["*/migrations/*.py"]' ;;
        api) echo '["migrations/versions/*.py", "migrations/env.py"]' ;;
    esac
}

# The [test] env entries beside DATABASE_URL: for Django, E2E_PLAN_DB (as `e2e-plan init` writes
# it) turns on the project's conftest override, so the worker's clone is the test database.
env_of() {
    case $1 in
        django) echo ', E2E_PLAN_DB = "{db_name}"' ;;
        api) echo '' ;;
    esac
}

write_plan() { # dir suite units
    local v; v=$(venv_of "$2")
    cat >"$1/plan.toml" <<EOF
# Written by scripts/bench/real.sh.
[tests]
include = $(include_of "$2")

[database]
template = "$PG/${TAG}_$2"
prepare = $(prepare_of "$2")
fingerprint = $(fingerprint_of "$2")
keep = "never"

[test]
command = ["$v/bin/pytest", "{file}", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"]
collect = ["$v/bin/pytest", "--collect-only", "-q", "{file}"]
env = { DATABASE_URL = "{db_url}"$(env_of "$2") }

[run]
units = "$3"

[report]
dir = "report"
EOF
    PLANS+=("$1/plan.toml")
}

# menv MODE CMD…: CMD with the mode's bytecode setting.
menv() {
    local mode=$1; shift
    if [[ $mode == nobytecode ]]; then env PYTHONDONTWRITEBYTECODE=1 "$@"; else env -u PYTHONDONTWRITEBYTECODE "$@"; fi
}
no_pycache() { find "$1" -name __pycache__ -prune -exec rm -rf {} +; }

# step SUITE MODE REP STEP DIR LOG [measure options] -- CMD…: measures CMD in DIR, appends the
# step's JSON line to $STEPS and shows it.
step() {
    local suite=$1 mode=$2 rep=$3 name=$4 dir=$5 logf=$6; shift 6
    local m=${ENVMODE:-${mode:-bytecode}}
    [[ $m == nobytecode ]] && no_pycache "$dir"
    settle
    (cd "$dir" && menv "$m" python3 "$MEASURE" run --match "$TAG" --log "$logf" \
        --field "suite=$suite" --field "mode=${mode:-null}" --field "rep=$rep" --field "step=$name" "$@") >>"$STEPS"
    tail -n 1 "$STEPS" >"$WORK/last.jsonl"
    if [[ -n $mode ]]; then python3 "$MEASURE" table "$WORK/last.jsonl" >&2; else log "$(cat "$WORK/last.jsonl")"; fi
}

clone() { # name
    q -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"
    q -c "CREATE DATABASE \"$1\" TEMPLATE \"${TAG}_$SUITE\""
}

for SUITE in "${SUITES[@]}"; do
    ensure_venv "$SUITE"
done
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$( [[ -z $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo false || echo true)

for SUITE in "${SUITES[@]}"; do
    V=$(venv_of "$SUITE")
    SRC=$WORK/$SUITE-src
    log "$SUITE: writing the project"
    if [[ $SUITE == django ]]; then
        env -u PYTHONDONTWRITEBYTECODE "$V/bin/python" "$HERE/make_django.py" "$SRC" ${SMALL:+--small} \
            --python "$V/bin/python" >&2
    else
        python3 "$HERE/make_api.py" "$SRC" ${SMALL:+--small} >&2
    fi
    # A first collection writes the project's bytecode (as a developer's checkout has it);
    # every copy keeps it (cp -a keeps the mtimes the .pyc files are checked against).
    (cd "$SRC" && env -u PYTHONDONTWRITEBYTECODE DATABASE_URL="$PG/${TAG}_$SUITE" \
        "$V/bin/pytest" --collect-only -q -p no:cacheprovider >/dev/null)
    tests=$(cd "$SRC" && "$V/bin/pytest" --collect-only -q -p no:cacheprovider 2>/dev/null | grep -c '::' || true)

    # The template, through e2e-plan itself (unmeasured; its run is recorded as "prepare").
    WARM=$WORK/$SUITE-warm
    cp -a "$SRC" "$WARM"
    write_plan "$WARM" "$SUITE" file
    "$BIN" --color never validate "$WARM/plan.toml" >&2 || die "e2e-plan validate refused the $SUITE plan"
    step "$SUITE" "" 0 prepare "$WARM" "$WORK/logs/$SUITE-prepare.log" --summary "$WARM/report/summary.json" \
        -- "$BIN" --color never apply plan.toml --failure-output none
    "$BIN" --color never rollback "$WARM/plan.toml" >/dev/null 2>&1 || true
    tmpl_bytes=$(q -c "SELECT pg_database_size('${TAG}_$SUITE')")
    echo "{\"suite\": \"$SUITE\", \"mode\": null, \"rep\": 0, \"step\": \"size\", \"tests\": $tests, \"template_bytes\": $tmpl_bytes}" >>"$STEPS"

    if [[ $SUITE == django ]]; then
        # What `pytest` does on its own: pytest-django creates test_<db> and migrates it.
        step django "" 0 serial_create_db "$WARM" "$WORK/logs/django-serial-create.log" \
            --junit "$WORK/serial-create.xml" -- env -u E2E_PLAN_DB DATABASE_URL="$PG/${TAG}_django_plain" \
            "$V/bin/pytest" -q -p no:cacheprovider "--junitxml=$WORK/serial-create.xml"
        # pytest-xdist's first run makes test_<db>_gw0 and _gw1; the measured ones reuse them.
        step django "" 0 xdist_create_db "$WARM" "$WORK/logs/django-xdist-create.log" \
            --junit "$WORK/xdist-create.xml" -- env -u E2E_PLAN_DB DATABASE_URL="$PG/${TAG}_django_xdist" \
            "$V/bin/pytest" -q -p no:cacheprovider -n 2 --create-db --reuse-db "--junitxml=$WORK/xdist-create.xml"
    fi

    for MODE in "${MODES[@]}"; do
        FILEDIR=$WORK/$SUITE-$MODE-file
        rm -rf "$FILEDIR"
        cp -a "$WARM" "$FILEDIR"
        rm -rf "$FILEDIR/report"
        write_plan "$FILEDIR" "$SUITE" file
        # Start-up CPU: a collection imports the app, the conftests and every test module.
        ENVMODE=$MODE step "$SUITE" "" 0 startup "$FILEDIR" "$WORK/logs/$SUITE-$MODE-startup.log" --field "pycache=$MODE" \
            -- env DATABASE_URL="$PG/${TAG}_$SUITE" "$V/bin/pytest" --collect-only -q -p no:cacheprovider
        for r in $(seq 1 "$REPEAT"); do
            # 1. serial pytest, one process, one migrated database.
            clone "${TAG}_${SUITE}_serial"
            serial_env=(env DATABASE_URL="$PG/${TAG}_${SUITE}_serial")
            [[ $SUITE == django ]] && serial_env+=(E2E_PLAN_DB="${TAG}_${SUITE}_serial")
            step "$SUITE" "$MODE" "$r" serial "$FILEDIR" "$WORK/logs/$SUITE-$MODE-$r-serial.log" \
                --junit "$WORK/serial.xml" -- "${serial_env[@]}" "$V/bin/pytest" -q -p no:cacheprovider \
                "--junitxml=$WORK/serial.xml"
            # 2. pytest-xdist -n 2.
            if [[ $SUITE == django ]]; then
                xdist_env=(env -u E2E_PLAN_DB DATABASE_URL="$PG/${TAG}_django_xdist")
                xdist_args=(--reuse-db)
            else
                clone "${TAG}_api_xdist"
                xdist_env=(env DATABASE_URL="$PG/${TAG}_api_xdist")
                xdist_args=()
            fi
            step "$SUITE" "$MODE" "$r" xdist "$FILEDIR" "$WORK/logs/$SUITE-$MODE-$r-xdist.log" \
                --junit "$WORK/xdist.xml" -- "${xdist_env[@]}" "$V/bin/pytest" -q -p no:cacheprovider -n 2 \
                "${xdist_args[@]}" "--junitxml=$WORK/xdist.xml"
            # 3. e2e-plan, a worker per file.
            step "$SUITE" "$MODE" "$r" file "$FILEDIR" "$WORK/logs/$SUITE-$MODE-$r-file.log" \
                --summary "$FILEDIR/report/summary.json" -- "$BIN" --color never apply plan.toml --failure-output none
            # 4. e2e-plan, units = "auto", from a fresh copy.
            AUTODIR=$WORK/$SUITE-$MODE-auto-$r
            cp -a "$SRC" "$AUTODIR"
            write_plan "$AUTODIR" "$SUITE" auto
            for a in $(seq 1 "$AUTO_RUNS"); do
                (cd "$AUTODIR" && menv "$MODE" "$BIN" --color never dry-run plan.toml --format json \
                    >"$WORK/dry.json" 2>>"$WORK/logs/$SUITE-$MODE-$r-auto-dry.log") || true
                read -r predicted predicted_units <<<"$(python3 "$MEASURE" predict "$WORK/dry.json")"
                step "$SUITE" "$MODE" "$r" auto "$AUTODIR" "$WORK/logs/$SUITE-$MODE-$r-auto-$a.log" \
                    --summary "$AUTODIR/report/summary.json" --field "run=$a" \
                    --field "predicted=$predicted" --field "predicted_units=$predicted_units" \
                    -- "$BIN" --color never apply plan.toml --failure-output none
                # 5. serial again, so that each auto run sits between two serial runs: its ratio
                #    is to their mean, the machine's speed of that moment (it drifts by a quarter
                #    within minutes on some machines).
                clone "${TAG}_${SUITE}_serial"
                step "$SUITE" "$MODE" "$r" serial_after "$AUTODIR" "$WORK/logs/$SUITE-$MODE-$r-serial-$a.log" \
                    --junit "$WORK/serial.xml" --field "run=$a" -- "${serial_env[@]}" "$V/bin/pytest" -q \
                    -p no:cacheprovider "--junitxml=$WORK/serial.xml"
            done
            "$BIN" --color never rollback "$AUTODIR/plan.toml" >/dev/null 2>&1 || true
            [[ -n ${BENCH_KEEP_WORK:-} ]] || rm -rf "$AUTODIR"
        done
        "$BIN" --color never rollback "$FILEDIR/plan.toml" >/dev/null 2>&1 || true
    done
done

# Everything this invocation made goes now; the check that nothing is left is part of the record.
for plan in "${PLANS[@]}"; do
    [[ -f $plan ]] && "$BIN" --color never rollback "$plan" >/dev/null 2>&1 || true
done
drop_ours
left_dbs=$(ours | tr '\n' ' ')
left_procs=$(procs_in "$WORK" | grep -vx -e "$$" -e "$BASHPID" | tr '\n' ' ' || true)

python3 "$MEASURE" table "$STEPS" >&2
if [[ -n $JSON_OUT ]]; then
    pgv=$(q -c "SHOW server_version" | cut -d' ' -f1)
    meta=$(python3 -c '
import datetime, json, os, sys
print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "rev": sys.argv[1], "dirty": sys.argv[2] == "true",
    "bin_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(sys.argv[3]), datetime.timezone.utc).isoformat(timespec="seconds"),
    "pg": sys.argv[4], "cores": os.cpu_count(), "small": sys.argv[5] == "1",
    "repeat": int(sys.argv[6]), "auto_runs": int(sys.argv[7]),
    "left": {"databases": sys.argv[8].split(), "processes": sys.argv[9].split()}}))
' "$rev" "$dirty" "$BIN" "$pgv" "${SMALL:-0}" "$REPEAT" "$AUTO_RUNS" "$left_dbs" "$left_procs")
    mkdir -p "$(dirname -- "$JSON_OUT")"
    python3 "$MEASURE" record "$JSON_OUT" "$STEPS" "$meta"
    log "appended to $JSON_OUT"
fi
[[ -z ${left_dbs// /} && -z ${left_procs// /} ]] || die "left behind: databases [$left_dbs] processes [$left_procs]"
