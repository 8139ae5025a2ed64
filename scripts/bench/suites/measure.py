#!/usr/bin/env python3
"""Helpers of scripts/bench/real.sh (standard library only).

    measure.py run --match TAG [--junit F] [--summary F] [--log F] [--field K=V ...] -- CMD...
        Runs CMD (in this folder, with this environment), prints one JSON object: its wall time,
        the CPU of CMD and the children it waited for, the CPU of PostgreSQL backends serving a
        database whose name contains TAG (from /proc, every 0.2 s: a backend that lives less than
        that is missed, and up to 0.2 s of a backend's last CPU may be), its exit code, the JUnit
        counts (--junit) or summary.json figures (--summary). Both files are removed first.
    measure.py predict FILE
        The prediction in an `e2e-plan dry-run --format json` document: predicted_wall_secs and
        the number of workers, as two words (null when absent).
    measure.py record OUT STEPS META
        Appends one JSON line to OUT: META (a JSON object) with the steps (one JSON object per
        line in STEPS, each with suite, mode, rep, step) arranged by suite, mode and repetition.
    measure.py table STEPS
        The steps as a table, for the terminal.
"""
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(tag, stop, seen):
    """Samples the CPU ticks of PostgreSQL backends whose database name contains tag."""
    others = set()
    while True:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or entry in others:
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                if "postgres" not in cmd:
                    others.add(entry)  # never a backend (a fresh one shows the postmaster's line)
                    continue
                # A backend's title: "postgres: [cluster: ]user database host(port) state".
                if not cmd.startswith("postgres: ") or tag not in cmd:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                seen[entry] = int(fields[11]) + int(fields[12])
            except OSError:
                continue
        if stop.wait(0.2):
            return


def junit_counts(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {"tests": None}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return n


def summary_figures(path):
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError):
        return {"wall_secs": None}
    dbs = set()
    cpu = 0.0
    # Each unit's time alone (its copy, start-up and tests, as e2e-plan timed them alone), and
    # when the first unit began: the critical chain is the longest unit after that.
    alone, first = {}, None
    for w in s.get("workers", []):
        for a in w.get("attempts") or []:
            name = a.get("db_name")
            if name and not re.search(r"r\d+$", name):
                phases = a.get("phases") or []
                if phases:
                    first = min(first if first is not None else phases[0]["start"], phases[0]["start"])
                if name not in dbs:
                    cpu += a.get("cpu_secs") or 0.0
                    copy = sum(p["end"] - p["start"] for p in phases if p.get("phase") == "cloning")
                    alone[name] = copy + (a.get("startup_alone_secs") or 0.0)
                alone[name] += a.get("tests_alone_secs") or 0.0
                dbs.add(name)
    results = [w.get("result") for w in s.get("workers", [])]
    return {
        "wall_secs": round(s.get("wall_secs") or 0.0, 3),
        "units": len(dbs),
        "files": len(results),
        "files_passed": sum(r in ("PASS", "FLAKY") for r in results),
        "files_failed": sum(r not in ("PASS", "FLAKY") for r in results),
        "tests_passed": sum((w.get("counts") or {}).get("passed", 0) for w in s.get("workers", [])),
        "workers_cpu": round(cpu, 2),
        "chain": round((first or 0.0) + max(alone.values(), default=0.0), 2),
        "prepared": s.get("prepared"),
    }


def run(argv):
    opts = {"match": None, "junit": None, "summary": None, "log": None}
    fields = {}
    while argv and argv[0] != "--":
        key = argv.pop(0).lstrip("-")
        if key == "field":
            k, v = argv.pop(0).split("=", 1)
            fields[k] = json.loads(v) if re.fullmatch(r"-?\d+(\.\d+)?|true|false|null", v) else v
        else:
            opts[key] = argv.pop(0)
    cmd = argv[1:]
    for f in (opts["junit"], opts["summary"]):
        if f and os.path.exists(f):
            os.remove(f)
    seen = {}
    stop = threading.Event()
    sampler = threading.Thread(target=backend_cpu, args=(opts["match"], stop, seen), daemon=True)
    sampler.start()
    log = open(opts["log"], "ab") if opts["log"] else subprocess.DEVNULL
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log).returncode
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    sampler.join()
    out = dict(fields)
    out.update({
        "wall": round(wall, 3),
        "cpu": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
        "pg_cpu": round(sum(seen.values()) / TICK, 2),
        "exit": code,
    })
    if opts["junit"]:
        out.update(junit_counts(opts["junit"]))
    if opts["summary"]:
        out.update(summary_figures(opts["summary"]))
    print(json.dumps(out))


def predict(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        print("null null")
        return
    p = d.get("predicted_wall_secs")
    print("null" if p is None else round(p, 2), len(d.get("workers") or []))


def load_steps(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def record(out, steps_path, meta):
    rec = json.loads(meta)
    suites = rec.setdefault("suites", {})
    for s in load_steps(steps_path):
        suite, mode, rep, step = s.pop("suite"), s.pop("mode"), s.pop("rep"), s.pop("step")
        node = suites.setdefault(suite, {})
        if mode is None:  # a suite's own figures (sizes, start-up, xdist's first run)
            node.setdefault(step, []).append(s)
            continue
        reps = node.setdefault("runs", {}).setdefault(mode, [])
        while len(reps) < rep:
            reps.append({})
        if step in ("auto", "serial_after"):
            reps[rep - 1].setdefault(step, []).append(s)
        else:
            reps[rep - 1][step] = s
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def table(steps_path):
    def fmt(x):
        return "-" if x is None else f"{x:.1f}"
    for s in load_steps(steps_path):
        if s["mode"] is None:
            continue
        head = f"{s['suite']:6} {s['mode']:10} #{s['rep']} {s['step']:6}"
        run = f" {s['run']}" if "run" in s else "  "
        if s["step"] in ("serial", "xdist", "serial_after"):
            print(f"{head}{run}    wall {fmt(s['wall'])}s  cpu {fmt(s['cpu'])}s  pg {fmt(s['pg_cpu'])}s  "
                  f"passed {s.get('passed')}  failed {s.get('failures')}  errors {s.get('errors')}")
        else:
            pred = f"  predicted {fmt(s.get('predicted'))}s/{s.get('predicted_units')}" if "predicted" in s else ""
            print(f"{head}{run}    wall {fmt(s['wall'])}s  to summary {fmt(s.get('wall_secs'))}s  "
                  f"units {s.get('units')}  files {s.get('files_passed')}/{s.get('files')}  "
                  f"cpu {fmt(s['cpu'])}s  pg {fmt(s['pg_cpu'])}s{pred}")


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "run":
        run(args)
    elif what == "predict":
        predict(args[0])
    elif what == "record":
        record(*args)
    elif what == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {what}")
