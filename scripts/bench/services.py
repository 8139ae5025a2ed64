#!/usr/bin/env python3
"""Benchmark (not a test): what a [[service]] per worker adds to a worker's way to its first test.

    scripts/bench/services.py [--repeat R] [--json FILE]

    --repeat R   runs of each variant (default 5), the variants interleaved
    --json FILE  append the figures to FILE as one JSON line (scripts/bench/results/services.jsonl)

A project of 6 one-test files and no server runs `e2e-plan apply` with jobs = 2 (a core each),
on a template in the local PostgreSQL (127.0.0.1:5432, user postgres), in four variants: no
service, a redis-server per worker, a nats-server per worker, both. From each run's summary.json:
each worker's `service` spans (spawned until ready) and its way to its first test (from its first
phase's start, the copy of its database, to its `testing` phase), and the run's wall time. The
binary is target/release/e2e-plan (built here); pytest comes from target/test-venv (.ci/run makes it). Leaves nothing: the plan's rollback runs, the
template is dropped, and no process of the run is left (checked).
"""
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "e2e-plan")
# The tests' venv (.ci/run makes it: target/test-venv with pytest).
PYTHON = os.path.join(ROOT, "target", "test-venv", "bin", "python")
FILES = 6

SERVICES = {
    "redis": '''[[service]]
name = "redis"
command = ["redis-server", "--port", "{port.redis}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
ready = "tcp://127.0.0.1:{port.redis}"
''',
    "nats": '''[[service]]
name = "nats"
command = ["nats-server", "-a", "127.0.0.1", "-p", "{port.nats}"]
ready = "tcp://127.0.0.1:{port.nats}"
''',
}
VARIANTS = {"none": [], "redis": ["redis"], "nats": ["nats"], "redis+nats": ["redis", "nats"]}


def args():
    repeat, out = 5, None
    argv = sys.argv[1:]
    while argv:
        if argv[0] == "--repeat" and len(argv) > 1:
            repeat, argv = int(argv[1]), argv[2:]
        elif argv[0] == "--json" and len(argv) > 1:
            out, argv = argv[1], argv[2:]
        else:
            sys.exit(__doc__)
    return repeat, out


def plan(template, services):
    body = "".join(SERVICES[s] for s in services)
    return f'''[tests]
include = ["tests/test_*.py"]

[database]
template = "postgresql://postgres@127.0.0.1:5432/{template}"
keep = "never"

{body}
[test]
command = ["{PYTHON}", "-m", "pytest", "{{file}}", "-q", "-p", "no:cacheprovider", "--junitxml={{junit}}"]

[run]
jobs = 2

[report]
dir = "report"
'''


def measure(summary):
    s = json.load(open(summary))
    ready, first = [], []
    for w in s["workers"]:
        a = w["attempts"][0]
        phases = a["phases"]
        for p in phases:
            if p["phase"] == "service":
                ready.append(p["end"] - p["start"])
        testing = next(p["start"] for p in phases if p["phase"] == "testing")
        first.append(testing - phases[0]["start"])
    return {"wall": round(s["wall_secs"], 3), "service_ready": [round(x, 4) for x in ready],
            "to_first_test": [round(x, 4) for x in first],
            "passed": sum(w["result"] == "PASS" for w in s["workers"])}


def in_folder(work):
    """Processes whose working directory is in `work`: every one a run starts is."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(work):
                left.append(pid)
        except OSError:
            pass
    return left


def main():
    repeat, out = args()
    for tool in ("redis-server", "nats-server"):
        if not shutil.which(tool):
            sys.exit(f"services.py: {tool} is not installed (apt-get install redis-server nats-server)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="e2e-plan-bench-services-")
    template = f"bench_svc_{os.getpid()}"
    runs = {v: [] for v in VARIANTS}
    try:
        os.makedirs(os.path.join(work, "tests"))
        for i in range(FILES):
            with open(os.path.join(work, "tests", f"test_{i}.py"), "w") as f:
                f.write("def test_ok():\n    assert True\n")
        for r in range(repeat):
            for variant, services in VARIANTS.items():
                with open(os.path.join(work, "plan.toml"), "w") as f:
                    f.write(plan(template, services))
                run = subprocess.run([BIN, "--color", "never", "apply", "plan.toml"], cwd=work,
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    sys.exit(f"services.py: {variant} failed ({run.returncode}):\n{run.stdout}{run.stderr}")
                m = measure(os.path.join(work, "report", "summary.json"))
                if m["passed"] != FILES:
                    sys.exit(f"services.py: {variant}: {m['passed']} of {FILES} files passed")
                runs[variant].append(m)
                print(f"{variant:>10} #{r + 1}: wall {m['wall']:.2f}s, to the first test "
                      f"median {statistics.median(m['to_first_test']) * 1000:.0f} ms", file=sys.stderr)
    finally:
        subprocess.run([BIN, "rollback", "plan.toml"], cwd=work, capture_output=True)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                        f"DROP DATABASE IF EXISTS {template}"], capture_output=True)
        left = in_folder(work)
        shutil.rmtree(work, ignore_errors=True)
        if left:
            sys.exit(f"services.py: processes of the run are left: {left}")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    pg = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
                        capture_output=True, text=True).stdout.strip()
    versions = {t: subprocess.run([t, "--version"], capture_output=True, text=True).stdout.strip()
                for t in ("redis-server", "nats-server")}
    rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "rev": rev, "dirty": dirty, "pg": pg, "cores": os.cpu_count(), "files": FILES,
           "versions": versions, "runs": runs}
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
