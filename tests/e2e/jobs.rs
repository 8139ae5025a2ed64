//! `jobs = "auto"` (the default): a worker per core while the workers keep the cores busy, more
//! while they wait. Judged from marks the test files leave, never from how long anything took.

use crate::common::*;

/// Cores as the product counts them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A test file that spins on the CPU for a second of CPU time, and leaves in `counts/<stem>` how
/// many test bodies were running (marked in `live/`) when its own began.
fn spinning_test(f: &Fixture, stem: &str) {
    let dir = f.root().display().to_string();
    f.write(
        &format!("tests/{stem}.py"),
        &format!(
            r#"import os, time

def test_spins():
    live = os.path.join({dir:?}, 'live')
    mine = os.path.join(live, '{stem}')
    open(mine, 'w').close()
    with open(os.path.join({dir:?}, 'counts', '{stem}'), 'w') as out:
        out.write(str(len(os.listdir(live))))
    start = time.process_time()
    while time.process_time() - start < 1.0:
        pass
    os.remove(mine)
"#
        ),
    );
}

#[test]
fn auto_runs_a_worker_per_core_while_the_workers_keep_the_cores_busy() {
    let f = Fixture::new("jobs_busy");
    for d in ["live", "counts"] {
        std::fs::create_dir_all(f.root().join(d)).unwrap();
    }
    let files = cores() + 2;
    for i in 0..files {
        spinning_test(&f, &format!("test_spin_{i}"));
    }
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let dry = f.run(&["dry-run", "plan.toml"]);
    assert!(
        stdout(&dry).contains("a core each at first, more while cores stand idle"),
        "{}",
        stdout(&dry)
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let counts: Vec<usize> = std::fs::read_dir(f.root().join("counts"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), files, "every file ran once: {counts:?}");
    let most = counts.iter().copied().max().unwrap_or(0);
    assert!(
        most <= cores(),
        "{most} files spun at once on {} cores: {counts:?}",
        cores()
    );
    let s = f.summary_json();
    assert_eq!(s["jobs"], "auto");
    assert!(
        s["most_at_once"].as_u64().unwrap() as usize <= cores(),
        "{s}"
    );
    f.assert_clean();
}

#[test]
fn auto_starts_more_than_a_worker_per_core_while_the_workers_wait() {
    let f = Fixture::new("jobs_wait");
    let barrier = f.root().join("barrier");
    // Each waits (asleep) until all are running: a bound of a worker per core would never let
    // the last ones start, and the first would give up after 60 s.
    let files = cores() + 2;
    for i in 0..files {
        barrier_test(&f, &format!("test_meet_{i}"), &barrier, files);
    }
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(barrier_marks(&barrier).len(), files);
    assert_eq!(f.summary_json()["most_at_once"], files);
    f.assert_clean();
}

#[test]
fn jobs_takes_a_number_or_auto_and_says_where_it_is_neither() {
    let f = Fixture::new("jobs_words");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        run: "jobs = \"fast\"",
        ..Default::default()
    });
    let out = f.run(&["validate", "plan.toml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`fast` is not a number of workers") && err.contains("plan.toml:"),
        "{err}"
    );
    f.edit_plan(&[("jobs = \"fast\"", "jobs = -1")]);
    let out = f.run(&["validate", "plan.toml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("-1 workers"), "{}", stderr(&out));
    f.edit_plan(&[("jobs = -1", "jobs = 3")]);
    for (flag, shown) in [
        (None, "3 at once"),
        (Some("auto"), "a core each at first"),
        (Some("0"), "all at once"),
    ] {
        let mut args = vec!["dry-run", "plan.toml"];
        args.extend(flag.iter().flat_map(|j| ["--jobs", *j]));
        let out = f.run(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(stdout(&out).contains(shown), "{flag:?}: {}", stdout(&out));
    }
    let out = f.run(&["dry-run", "plan.toml", "--jobs", "many"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("`many` is not a number of workers"),
        "{}",
        stderr(&out)
    );
    f.assert_clean();
}

/// The databases of the workers that start first are made before any other copy begins (a copy
/// costs the server about a core-second; four at once held the first tests until all four were
/// made). Read from the journal's order: a database is recorded before its copy begins and
/// marked done once it is made.
#[test]
fn the_first_workers_databases_are_copied_before_the_others_begin() {
    let f = Fixture::new("jobs_copy_first");
    for i in 0..5 {
        f.rows_test(&format!("test_copy_{i}"), 0.0);
    }
    f.plan(PlanOpts {
        server: false,
        keep: "always",
        run: "jobs = 2",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let journals: Vec<_> = std::fs::read_dir(f.root().join(".e2e-plan/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let text = std::fs::read_to_string(&journals[0]).unwrap();
    // Each worker database's copy, in the order the journal saw them begin and end.
    let mut copying = std::collections::BTreeSet::new();
    let (mut made, mut order) = (0, Vec::new());
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = r["seq"].as_u64();
        match r["op"].as_str() {
            Some("intent") if r["resource"]["kind"] == "database" => {
                copying.insert(seq);
                order.push(format!("begin (with {made} made)"));
                assert!(
                    made >= 2 || copying.len() <= 2,
                    "a third copy began before the first two were made: {order:?}\n{text}"
                );
            }
            Some("done") if copying.remove(&seq) => {
                made += 1;
                order.push("made".into());
            }
            _ => {}
        }
    }
    assert_eq!(made, 5, "{order:?}\n{text}");
    let out = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    f.assert_clean();
}
