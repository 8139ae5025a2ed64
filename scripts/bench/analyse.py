#!/usr/bin/env python3
"""Turns the files setup.sh leaves in its work dir into the table (and an optional JSON line).

    analyse.py WORK_DIR [--json FILE]

Reads meta.json, <label>.<r>.json / .timing (naive clones), <label>.<r>.summary.json / .ext /
.samples (e2e-plan runs), makespan/sleeps.json, left_dbs, left_procs. Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys


def load_json(path):
    with open(path) as f:
        return json.load(f)


def naive(work, label):
    """Per repetition: total, per-clone median and max, drop total."""
    runs = []
    for path in sorted(glob.glob(os.path.join(work, f"{label}.*.json"))):
        r = load_json(path)
        timing = path[: -len(".json")] + ".timing"
        per = [float(m) / 1000 for m in re.findall(r"Time: ([0-9.]+) ms", open(timing).read())]
        r["per_clone_median"] = statistics.median(per)
        r["per_clone_max"] = max(per)
        runs.append(r)
    return runs


def e2e_run(work, label):
    """Figures of one e2e-plan run from its summary.json, wall clock and clone samples."""
    s = load_json(os.path.join(work, label + ".summary.json"))
    ext = float(open(os.path.join(work, label + ".ext")).read())
    bad = [w["file"] for w in s["workers"] if w["result"] != "PASS"]
    if bad:
        sys.exit(f"bench: {label}: not every worker passed: {bad}")
    rows = []
    for w in s["workers"]:
        a = w["attempts"][0]
        ph = {p["phase"]: p for p in a["phases"]}
        rows.append({
            "file": w["file"],
            "dur": a["duration"],
            "clone_start": ph["cloning"]["start"],
            "clone_end": ph["cloning"]["end"],
            "test_start": ph["testing"]["start"],
            "test_end": ph["testing"]["end"],
        })
    test = [r["test_end"] - r["test_start"] for r in rows]
    clone = [r["clone_end"] - r["clone_start"] for r in rows]
    samples = []
    for line in open(os.path.join(work, label + ".samples")):
        m = re.search(r"clones (\d+) at", line)
        if m:
            samples.append(int(m.group(1)))
    busy = [c for c in samples if c > 0]
    wall = s["wall_secs"]
    return {
        "wall": wall,
        "process_wall": ext,
        "after_report": ext - wall,
        "first_clone_start": min(r["clone_start"] for r in rows),
        "first_test_start": min(r["test_start"] for r in rows),
        "last_test_start": max(r["test_start"] for r in rows),
        "clone_phase_median": statistics.median(clone),
        "clone_phase_max": max(clone),
        "clones_at_once_max": max(samples, default=0),
        "clones_at_once_mean": statistics.mean(busy) if busy else 0.0,
        "slowest_worker": max(r["dur"] for r in rows),
        "longest_test": max(test),
        "overhead": wall - max(test),
        "overhead_pct": 100 * (wall - max(test)) / wall,
        # What the user waits for beyond the longest test, up to the command's exit.
        "overhead_to_exit": ext - max(test),
        "rows": rows,
    }


def e2e(work, label):
    runs = []
    for path in sorted(glob.glob(os.path.join(work, f"{label}.*.summary.json"))):
        runs.append(e2e_run(work, os.path.basename(path)[: -len(".summary.json")]))
    return runs


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def fmt(runs, key, digits=2):
    """Median, and min..max when there are several runs."""
    vals = [r[key] for r in runs]
    m = f"{statistics.median(vals):.{digits}f}"
    if len(vals) > 1:
        return m, f"[{min(vals):.{digits}f}..{max(vals):.{digits}f}]"
    return m, ""


def main():
    work = sys.argv[1]
    json_out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    meta = load_json(os.path.join(work, "meta.json"))
    n, sleep, jobs = meta["n"], meta["sleep"], meta["jobs"]
    out = dict(meta)
    out["template_mb"] = round(meta["template_bytes"] / 1048576, 1)

    nw, nf = naive(work, "naive_wal_log"), naive(work, "naive_file_copy")
    ef, ew, ep = e2e(work, "e2e"), e2e(work, "e2e_wal"), e2e(work, "e2e_pool")

    lines = []

    def row(label, runs, key, note="", digits=2, unit=""):
        m, rng = fmt(runs, key, digits)
        lines.append(f"{label:50} {m + unit:>8} {rng:>14}   {note}")

    reps = f", {meta['repeat']} runs: median [min..max]" if meta["repeat"] > 1 else ""
    print()
    print(f"e2e-plan setup benchmark {meta['date']}: N={n} workers, template {meta['template']} = "
          f"{out['template_mb']} MB, PostgreSQL {meta['pg'].split()[0]}, {meta['cores']} cores, "
          f"test = sleep {sleep}s{reps}")
    if meta.get("template_build_secs") is not None:
        print(f"(template built in {meta['template_build_secs']}s)")
    print()
    lines.append(f"{'':50} {'seconds':>8}")
    if nw:
        row("naive: N sequential clones, WAL_LOG (PG15 default)", nw, "total")
        row("  one clone (median)", nw, "per_clone_median", digits=3)
    if nf:
        row("naive: N sequential clones, FILE_COPY", nf, "total")
        row("  one clone (median)", nf, "per_clone_median", digits=3)
    if nw:
        row("naive orchestration wall, WAL_LOG (run)", nw, "orchestration_wall",
            "clones one by one, then all N tests at once")
    if nf:
        row("naive orchestration wall, FILE_COPY (run)", nf, "orchestration_wall")
    for name, runs in (("e2e-plan (FILE_COPY, its default)", ef), ("e2e-plan with strategy = wal_log", ew),
                       ("e2e-plan, warm pool (pool = N)", ep)):
        if not runs:
            continue
        lines.append(name + ":")
        row("  first clone starts", runs, "first_clone_start", "template checks")
        row("  first test starts (setup time)", runs, "first_test_start")
        row("  last test starts (all clones done)", runs, "last_test_start")
        row("  wall_secs (summary.json)", runs, "wall")
        row("  after the report (drops, exit)", runs, "after_report", "not in wall_secs")
        row("  slowest worker", runs, "slowest_worker")
        row("  clone phase per worker (median)", runs, "clone_phase_median", "includes waiting for a clone slot")
        row("  CREATE DATABASE running at once (max)", runs, "clones_at_once_max", digits=0)
        row("  CREATE DATABASE running at once (mean)", runs, "clones_at_once_mean", "while any ran", digits=1)
        row("  longest test phase", runs, "longest_test")
        row("  overhead = wall - longest test", runs, "overhead")
        row("  overhead, % of wall", runs, "overhead_pct", digits=1, unit="%")
    for line in lines:
        print(line)

    def stats(runs):
        return {k: med(runs, k) for k in runs[0] if k != "rows"} if runs else None

    # Every repetition's own figures, side by side: a ratio is only ever taken within one.
    def strip(run):
        return {k: v for k, v in run.items() if k != "rows"}

    out["runs"] = [
        {key: strip(runs[i]) for key, runs in (("naive_wal_log", nw), ("naive_file_copy", nf),
                                                ("e2e", ef), ("e2e_wal_log", ew), ("e2e_pool", ep))
         if i < len(runs)}
        for i in range(meta["repeat"])
    ]
    out["naive_wal_log"] = stats(nw)
    out["naive_file_copy"] = stats(nf)
    out["e2e"] = stats(ef)
    out["e2e_wal_log"] = stats(ew)
    out["e2e_pool"] = stats(ep)
    print()
    for name, runs, key in (("e2e-plan", ef, "e2e"), ("e2e-plan wal_log", ew, "e2e_wal_log"),
                            ("e2e-plan warm pool", ep, "e2e_pool")):
        if not runs or not nw:
            continue
        last, first = med(runs, "last_test_start"), med(runs, "first_test_start")
        naive_total = med(nw, "total")
        ratio = naive_total / last
        out[f"ratio_{key}"] = ratio
        msg = (f"setup ratio naive(WAL_LOG) / {name}: {ratio:.2f}x to the last test start "
               f"({naive_total / first:.1f}x to the first)")
        if nf:
            out[f"ratio_{key}_vs_naive_file_copy"] = med(nf, "total") / last
            msg += f"; naive(FILE_COPY) / {name}: {med(nf, 'total') / last:.2f}x"
        print(msg)
        print(f"wall ratio naive orchestration / {name}: "
              f"{med(nw, 'orchestration_wall') / med(runs, 'wall'):.2f}x")

    if meta["makespan"]:
        sleeps = list(load_json(os.path.join(work, "makespan", "sleeps.json")).values())
        bound = max(sum(sleeps) / jobs, max(sleeps))
        slots = [0.0] * jobs
        for x in sorted(sleeps, reverse=True):
            slots[slots.index(min(slots))] += x
        lpt = max(slots)
        print()
        print(f"makespan: {len(sleeps)} files sleeping {min(sleeps):.1f}..{max(sleeps):.1f}s "
              f"(sum {sum(sleeps):.1f}s), --jobs {jobs}")
        print(f"  lower bound max(sum/jobs, longest) = {bound:.2f}s; "
              f"longest-first schedule of the sleeps alone = {lpt:.2f}s")
        mk = {"files": len(sleeps), "jobs": jobs, "sum": sum(sleeps), "lower_bound": bound, "lpt_sleeps": lpt}
        for label, what in (("mk_cold", "run 1 (no timings: path order)"),
                            ("mk_warm", "run 2 (timings: longest first)"),
                            ("mk_pool", "run 3 (timings, warm pool)")):
            if not os.path.exists(os.path.join(work, label + ".summary.json")):
                continue
            m = e2e_run(work, label)
            durs = [r["dur"] for r in m["rows"]]
            bound_w = max(sum(durs) / jobs, max(durs))
            per_worker = statistics.median(r["dur"] - (r["test_end"] - r["test_start"]) for r in m["rows"])
            print(f"  {what:32} wall {m['wall']:6.2f}s = {m['wall'] / bound:.3f}x the bound"
                  f" | {m['wall'] / bound_w:.3f}x the bound of the measured worker durations"
                  f" | per-worker overhead (median) {per_worker:.2f}s")
            mk[label] = {"wall": m["wall"], "process_wall": m["process_wall"], "ratio": m["wall"] / bound,
                         "ratio_measured": m["wall"] / bound_w, "per_worker_overhead": per_worker}
        out["makespan"] = mk
    else:
        out["makespan"] = None

    out["left_dbs"] = open(os.path.join(work, "left_dbs")).read().strip()
    out["left_procs"] = open(os.path.join(work, "left_procs")).read().strip()
    print()
    print(f"left behind: databases: {out['left_dbs'] or 'none'}; processes: {out['left_procs'] or 'none'}")
    if json_out:
        with open(json_out, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
