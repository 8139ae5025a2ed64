#!/usr/bin/env bash
# Benchmark (not a test): how long e2e-plan takes to set N workers up (clone N databases from a
# template, start N test processes) compared with the naive way, how much of the wall time is
# orchestration, and how close `--jobs J` scheduling gets to the ideal makespan.
#
#   scripts/bench/setup.sh [N] [SIZE_MB] [options]
#
#   N                 test files = workers (default 16)
#   SIZE_MB           template database size in MB (default 30)
#   --sleep S         seconds each synthetic test sleeps in the setup runs (default 2)
#   --repeat R        measure the naive clones and the e2e-plan setup run R times (default 1);
#                     the table shows medians (and min..max when R > 1)
#   --jobs J          --jobs of the makespan check (default 4)
#   --mk-files M      files of the makespan check (default 16), sleeping 1.0..4.0 s each
#   --no-makespan     skip the makespan check
#   --no-naive        skip the naive clones (only e2e-plan is measured; no ratios)
#   --pool            also measure warm runs with [database] pool = N (a first, unmeasured run
#                     fills the pool; every measured run claims its databases from it)
#   --no-variants     skip the extra runs: naive with STRATEGY = FILE_COPY, e2e-plan with
#                     strategy = "wal_log"
#   --drop-templates  drop every bench_tmpl_* template at the end (kept for reuse otherwise)
#   --no-run          measure nothing (with --drop-templates: only drop the templates)
#   --json FILE       append this run's figures to FILE as one JSON line
#
# Steps:
#   1. builds the template bench_tmpl_<SIZE_MB> (one table of 192-character rows, VACUUM FREEZE)
#      unless one of about that size (within 10 %, pg_database_size) exists already;
#   2. naive, run for real: N sequential `CREATE DATABASE … TEMPLATE bench_tmpl_<SIZE_MB>` from
#      one psql session with the default strategy (WAL_LOG on PostgreSQL 15), then the N test
#      scripts at once, timed, then the clones dropped; the same with STRATEGY = FILE_COPY (what
#      e2e-plan uses on 15+);
#   3. e2e-plan: a temp project with N test files, no [server], a test command that sleeps S s and
#      writes a one-case JUnit file, `e2e-plan apply --format json`; figures from summary.json
#      (worker phases), plus how many CREATE DATABASE really ran at once (pg_stat_activity sampled
#      every 20 ms); once more with [database] strategy = "wal_log";
#   5. makespan: M files sleeping 1.0..4.0 s with `--jobs J`, run twice: the first run has no
#      timings (path order) and records .e2e-plan/timings.json, the second is ordered from them.
# Before each measured step: CHECKPOINT and sync. Every database created is dropped (templates
# only with --drop-templates), every process started is waited for, the temp dir is removed.
#
# Environment: E2E_PLAN (the binary; default target/release/e2e-plan), PGHOST (127.0.0.1), PGPORT
# (5432), PGUSER (postgres; needs no password, and must be allowed CREATE DATABASE and
# CHECKPOINT), BENCH_KEEP_WORK=1 (keep the temp dir: plans, summaries, samples, logs).
set -euo pipefail

cd "$(dirname -- "$0")/../.."
root=$PWD
here=$root/scripts/bench
BIN=${E2E_PLAN:-$root/target/release/e2e-plan}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
export PGHOST PGPORT PGUSER PGOPTIONS

N=16
SIZE_MB=30
SLEEP=2
REPEAT=1
JOBS=4
MK_FILES=16
MAKESPAN=1
VARIANTS=1
POOL=
NAIVE=1
DROP_TEMPLATES=
RUN=1
JSON_OUT=

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

positional=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --sleep) SLEEP=${2:-}; shift 2 ;;
        --repeat) REPEAT=${2:-}; shift 2 ;;
        --jobs|-j) JOBS=${2:-}; shift 2 ;;
        --mk-files) MK_FILES=${2:-}; shift 2 ;;
        --no-makespan) MAKESPAN=; shift ;;
        --no-variants) VARIANTS=; shift ;;
        --pool) POOL=1; shift ;;
        --no-naive) NAIVE=; shift ;;
        --drop-templates) DROP_TEMPLATES=1; shift ;;
        --no-run) RUN=; shift ;;
        --json) JSON_OUT=$(realpath -m -- "${2:-}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[[ ${#positional[@]} -le 2 ]] || die "too many arguments (see --help)"
[[ ${#positional[@]} -ge 1 ]] && N=${positional[0]}
[[ ${#positional[@]} -ge 2 ]] && SIZE_MB=${positional[1]}
for v in N SIZE_MB REPEAT JOBS MK_FILES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $SLEEP =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--sleep must be a number of seconds, not '$SLEEP'"
command -v psql >/dev/null || die "psql not found"
command -v python3 >/dev/null || die "python3 not found"

TMPL=bench_tmpl_$SIZE_MB
BUILD=bench_build_$SIZE_MB
TMPL_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$TMPL"

# psql on the maintenance database; -At: bare values.
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
now() { date +%s.%N; }
settle() { q -c "CHECKPOINT"; sync; }

# Every database this script (or e2e-plan for it) may create, templates excluded: naive clones, a
# template being built, e2e-plan's worker databases <template>_<8 hex run id>_<i>[r<attempt>] and
# pooled copies <template>_pool_<8 hex run id>_<i>.
BENCH_DBS_RE='^(bench_naive_[0-9]+|bench_build_[0-9]+|bench_tmpl_[0-9]+_[0-9a-f]{8}_[0-9]+(r[0-9]+)?|bench_tmpl_[0-9]+_pool_[0-9a-f]{8}_[0-9]+)$'
TEMPLATES_RE='^bench_tmpl_[0-9]+$'

drop_matching() { # regex
    local name
    for name in $(q -c "SELECT datname FROM pg_database WHERE datname ~ '$1' ORDER BY 1"); do
        q -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" || log "could not drop $name"
    done
}

# Samples, every 20 ms from one session on the maintenance database, which clones of the bench
# template are running (CREATE DATABASE … TEMPLATE "bench_tmpl_<size>"): how many clones e2e-plan
# really runs at once. Stopped by cancelling its backend.
SAMPLER_APP=e2e_bench_sampler_$$
SAMPLER_PID=
start_sampler() { # output file
    PGAPPNAME=$SAMPLER_APP psql -X -q -d postgres -c "SET client_min_messages = notice" -c "
        DO \$\$ DECLARE c int; who text; BEGIN
          WHILE clock_timestamp() < now() + interval '30 min' LOOP
            SELECT count(*), string_agg(pid || '=' || split_part(query, ' ', 3), ' ') INTO c, who
              FROM pg_stat_activity
             WHERE state = 'active' AND query ILIKE 'CREATE DATABASE%TEMPLATE \"$TMPL\"%'
               AND pid <> pg_backend_pid();
            RAISE NOTICE 'clones % at % %', c, to_char(clock_timestamp(), 'HH24:MI:SS.MS'), who;
            COMMIT;
            PERFORM pg_sleep(0.02);
          END LOOP; END \$\$" >/dev/null 2>"$1" &
    SAMPLER_PID=$!
}
stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '$SAMPLER_APP'" >/dev/null || true
    for _ in $(seq 50); do kill -0 "$SAMPLER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
}

WORK=
E2E_PID=
PLANS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $E2E_PID ]] && kill -0 "$E2E_PID" 2>/dev/null; then
        log "stopping e2e-plan (pid $E2E_PID)"
        kill -TERM "$E2E_PID" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$E2E_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$E2E_PID" 2>/dev/null || true
        wait "$E2E_PID" 2>/dev/null || true
    fi
    stop_sampler
    local plan
    for plan in "${PLANS[@]}"; do
        "$BIN" --color never rollback "$plan" >/dev/null 2>&1 || true
        "$BIN" --color never pool drain "$plan" >/dev/null 2>&1 || true
    done
    drop_matching "$BENCH_DBS_RE" 2>/dev/null || true
    if [[ -n $DROP_TEMPLATES ]]; then
        drop_matching "$TEMPLATES_RE" || true
        log "dropped the bench templates"
    fi
    if [[ -n $WORK ]]; then
        local left
        left=$(pgrep -f -- "$WORK" || true)
        [[ -z $left ]] || log "WARNING: processes still running from $WORK: $left"
        if [[ -n ${BENCH_KEEP_WORK:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -n $RUN ]] || exit 0
[[ -x $BIN ]] || die "no binary at $BIN"
q -c "SELECT 1" >/dev/null || die "cannot connect to PostgreSQL at $PGHOST:$PGPORT as $PGUSER"
WORK=$(mktemp -d /tmp/e2e-bench.XXXXXX)

# ---------------------------------------------------------------------------------------------
# 1. The template.
target=$((SIZE_MB * 1024 * 1024))
existing=$(q -c "SELECT pg_database_size(datname) FROM pg_database WHERE datname = '$TMPL'")
build_secs=None
if [[ -n $existing ]] && (( existing * 10 >= target * 9 && existing * 10 <= target * 11 )); then
    log "reusing $TMPL ($((existing / 1048576)) MB)"
else
    if [[ -n $existing ]]; then
        log "$TMPL is $((existing / 1048576)) MB, not ~$SIZE_MB MB: building it again"
        q -c "DROP DATABASE \"$TMPL\" WITH (FORCE)"
    fi
    log "building $TMPL (~$SIZE_MB MB)"
    t0=$(now)
    q -c "DROP DATABASE IF EXISTS \"$BUILD\" WITH (FORCE)"
    q -c "CREATE DATABASE \"$BUILD\" TEMPLATE template0"
    psql -X -q -v ON_ERROR_STOP=1 -d "$BUILD" -c "CREATE TABLE filler (id bigint, pad text)"
    next=1
    for _ in $(seq 20); do
        size=$(q -c "SELECT pg_database_size('$BUILD')")
        (( size * 100 < target * 98 )) || break
        # ~234 bytes a row on disk (35 rows of 192 characters an 8 kB page: no TOAST, no compression).
        rows=$(( (target - size) / 234 + 1 ))
        psql -X -q -v ON_ERROR_STOP=1 -d "$BUILD" -c \
            "INSERT INTO filler SELECT g, repeat(md5(g::text), 6) FROM generate_series($next, $((next + rows - 1))) g"
        next=$((next + rows))
    done
    psql -X -q -v ON_ERROR_STOP=1 -d "$BUILD" -c "VACUUM (FREEZE, ANALYZE) filler"
    q -c "ALTER DATABASE \"$BUILD\" RENAME TO \"$TMPL\""
    build_secs=$(python3 -c "print(round($(now) - $t0, 1))")
fi
sessions=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$TMPL'")
[[ $sessions == 0 ]] || die "$sessions session(s) are connected to $TMPL: clones would wait for them"

python3 - "$WORK/meta.json" <<EOF
import json, os, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%MZ)", "n": $N, "template": "$TMPL",
           "template_bytes": $(q -c "SELECT pg_database_size('$TMPL')"), "template_build_secs": $build_secs,
           "pg": "$(q -c "SHOW server_version")", "cores": os.cpu_count(), "sleep": $SLEEP,
           "repeat": $REPEAT, "jobs": $JOBS, "makespan": bool("$MAKESPAN")}, open(sys.argv[1], "w"))
EOF

# ---------------------------------------------------------------------------------------------
# 2. Naive orchestration, run for real: N sequential clones from one session (timed by psql one
#    by one and as a whole), then every worker at once (the same test scripts e2e-plan runs),
#    until the last one ends.
naive_clones() { # label, strategy clause
    local label=$1 clause=$2 sql="$WORK/$1.sql" i t0 t1 t2 d0 d1 f pids=()
    {
        echo '\timing on'
        for i in $(seq "$N"); do echo "CREATE DATABASE bench_naive_$i TEMPLATE \"$TMPL\"$clause;"; done
    } >"$sql"
    settle
    log "$label: $N sequential clones, then $N workers at once"
    t0=$(now)
    q -f "$sql" >"$WORK/$label.timing"
    t1=$(now)
    for f in "$WORK"/setup/tests/t_*.sh; do
        sh "$f" /dev/null &
        pids+=($!)
    done
    wait "${pids[@]}"
    t2=$(now)
    {
        echo '\timing on'
        for i in $(seq "$N"); do echo "DROP DATABASE bench_naive_$i;"; done
    } >"$sql"
    d0=$(now)
    q -f "$sql" >/dev/null
    d1=$(now)
    echo "{\"total\": $(python3 -c "print($t1 - $t0)"), \"workers_wall\": $(python3 -c "print($t2 - $t1)"), \"orchestration_wall\": $(python3 -c "print($t2 - $t0)"), \"drop_total\": $(python3 -c "print($d1 - $d0)")}" \
        >"$WORK/$label.json"
}

# ---------------------------------------------------------------------------------------------
# 3./5. e2e-plan runs.
make_project() { # dir, file count, "fixed:S" | "varied", strategy ("" = e2e-plan's default), pool size
    local dir=$1
    mkdir -p "$dir/tests"
    python3 - "$dir" "$2" "$3" "$TMPL_URL" "$4" "${5:-0}" <<'EOF'
import json, os, sys
d, count, mode, url, strategy, pool = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
junit = '<testsuites><testsuite name="s" tests="1"><testcase classname="s" name="t"/></testsuite></testsuites>'
sleeps = {}
for i in range(1, count + 1):
    # varied: 1.0 .. 4.0 s, the same on every run
    s = float(mode.split(":")[1]) if mode.startswith("fixed:") else 1 + ((i * 37) % 31) / 10
    name = f"tests/t_{i:03d}.sh"
    sleeps[name] = s
    with open(os.path.join(d, name), "w") as f:
        f.write(f"sleep {s}\nprintf '%s' '{junit}' > \"$1\"\n")
json.dump(sleeps, open(os.path.join(d, "sleeps.json"), "w"))
strategy_line = f"strategy = {json.dumps(strategy)}\n" if strategy else ""
# The template is built by this script, not by a prepare command: a marker file fingerprints it.
if pool:
    open(os.path.join(d, "template.version"), "w").write(url + "\n")
    strategy_line += f'fingerprint = ["template.version"]\npool = {pool}\n'
# {root} in the command puts this temp dir on every test's command line (the leftover check).
open(os.path.join(d, "plan.toml"), "w").write(f"""root = "."

[tests]
include = ["tests/t_*.sh"]

[database]
template = {json.dumps(url)}
keep = "never"
{strategy_line}
[test]
command = ["sh", "{{root}}/{{file}}", "{{junit}}"]
timeout = "5m"

[run]
jobs = 0

[report]
dir = "report"
""")
EOF
    "$BIN" --color never validate "$dir/plan.toml" >/dev/null || die "the generated plan $dir/plan.toml does not validate"
    PLANS+=("$dir/plan.toml")
}

run_e2e() { # dir, jobs, label
    local dir=$1 jobs=$2 label=$3 t0 t1 rc=0
    settle
    start_sampler "$WORK/$label.samples"
    sleep 0.2
    log "$label: e2e-plan, $(find "$dir/tests" -name 't_*.sh' | wc -l) files, --jobs $jobs"
    t0=$(now)
    "$BIN" --color never apply "$dir/plan.toml" --format json --jobs "$jobs" \
        >"$WORK/$label.stdout" 2>"$WORK/$label.stderr" &
    E2E_PID=$!
    wait "$E2E_PID" || rc=$?
    E2E_PID=
    t1=$(now)
    stop_sampler
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$WORK/$label.stderr" >&2
        die "e2e-plan exited with $rc ($label)"
    fi
    cp "$dir/report/summary.json" "$WORK/$label.summary.json"
    python3 -c "print($t1 - $t0)" >"$WORK/$label.ext"
}

make_project "$WORK/setup" "$N" "fixed:$SLEEP" ""
[[ -z $VARIANTS ]] || make_project "$WORK/setup_wal" "$N" "fixed:$SLEEP" wal_log
if [[ -n $POOL ]]; then
    make_project "$WORK/setup_pool" "$N" "fixed:$SLEEP" "" "$N"
    run_e2e "$WORK/setup_pool" 0 pool_fill
fi
for r in $(seq "$REPEAT"); do
    [[ -z $NAIVE ]] || naive_clones "naive_wal_log.$r" ""
    [[ -z $NAIVE || -z $VARIANTS ]] || naive_clones "naive_file_copy.$r" " STRATEGY = FILE_COPY"
    run_e2e "$WORK/setup" 0 "e2e.$r"
    [[ -z $VARIANTS ]] || run_e2e "$WORK/setup_wal" 0 "e2e_wal.$r"
    [[ -z $POOL ]] || run_e2e "$WORK/setup_pool" 0 "e2e_pool.$r"
done
if [[ -n $MAKESPAN ]]; then
    make_project "$WORK/makespan" "$MK_FILES" varied ""
    run_e2e "$WORK/makespan" "$JOBS" mk_cold
    run_e2e "$WORK/makespan" "$JOBS" mk_warm
    if [[ -n $POOL ]]; then
        # Same files; the pool holds one copy a file, so no worker clones in its slot.
        make_project "$WORK/makespan_pool" "$MK_FILES" varied "" "$MK_FILES"
        mkdir -p "$WORK/makespan_pool/.e2e-plan"
        cp "$WORK/makespan/.e2e-plan/timings.json" "$WORK/makespan_pool/.e2e-plan/"
        run_e2e "$WORK/makespan_pool" "$JOBS" mk_pool_fill
        run_e2e "$WORK/makespan_pool" "$JOBS" mk_pool
    fi
fi
# Pools are kept between runs by design; the bench drains its own (the check below counts them).
for plan in "${PLANS[@]}"; do
    "$BIN" --color never pool drain "$plan" >/dev/null
done

# Nothing of ours may be left now (cleanup drops it anyway: this is the check).
q -c "SELECT coalesce(string_agg(datname, ' '), '') FROM pg_database WHERE datname ~ '$BENCH_DBS_RE'" >"$WORK/left_dbs"
{ pgrep -f -- "$WORK" || true; } | tr '\n' ' ' >"$WORK/left_procs"

python3 "$here/analyse.py" "$WORK" ${JSON_OUT:+--json "$JSON_OUT"}
[[ -z $(tr -d ' \n' <"$WORK/left_dbs") && -z $(tr -d ' \n' <"$WORK/left_procs") ]] || die "something was left behind"
