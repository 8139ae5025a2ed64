//! Speed features: fingerprinted templates, recorded timings and longest-first order, shards.

use crate::common::*;

#[test]
fn a_matching_fingerprint_skips_prepare_until_a_file_changes() {
    let f = Fixture::new("fingerprint");
    f.rows_test("test_a", 0.0);
    f.write("migrations/001.sql", "create table items (v text);\n");
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[("keep = ", "fingerprint = [\"migrations/**\"]\nkeep = ")]);

    let first = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert!(
        stderr(&first).contains("1 command(s) run"),
        "{}",
        stderr(&first)
    );
    let second = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&second), 0);
    assert!(
        stderr(&second).contains("matches: prepare skipped"),
        "{}",
        stderr(&second)
    );
    let forced = f.run(&["apply", "plan.toml", "--reprepare"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("1 command(s) run"),
        "{}",
        stderr(&forced)
    );
    f.write(
        "migrations/002.sql",
        "alter table items add column w text;\n",
    );
    let changed = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&changed), 0, "{}", stderr(&changed));
    assert!(
        stderr(&changed).contains("1 command(s) run"),
        "{}",
        stderr(&changed)
    );
    f.assert_clean();
}

#[test]
fn timings_order_workers_longest_first_and_predict_the_wall_time() {
    let f = Fixture::new("timings");
    f.rows_test("test_a", 0.0)
        .rows_test("test_b", 0.0)
        .rows_test("test_c", 0.0);
    f.plan(PlanOpts {
        server: false,
        run: "jobs = 2",
        ..Default::default()
    });
    let before = f.run(&["dry-run", "plan.toml"]);
    assert!(stdout(&before).contains("no timings recorded yet"));
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let path = f.root().join(".e2e-plan/timings.json");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        recorded["files"].as_object().unwrap().len(),
        3,
        "every file's duration recorded"
    );
    // Known durations: b 9 s, c 5 s, a 3 s on 2 slots, longest first: b | c, a → 9 s.
    std::fs::write(
        &path,
        r#"{"files": {"tests/test_a.py": {"secs": 3.0, "runs": 1}, "tests/test_b.py": {"secs": 9.0, "runs": 1}, "tests/test_c.py": {"secs": 5.0, "runs": 1}}}"#,
    )
    .unwrap();
    let dry = f.run(&["dry-run", "plan.toml", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap();
    let order: Vec<&str> = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["tests/test_b.py", "tests/test_c.py", "tests/test_a.py"]
    );
    assert_eq!(doc["predicted_wall_secs"].as_f64(), Some(9.0));
    let text = f.run(&["dry-run", "plan.toml"]);
    assert!(
        stdout(&text).contains("predicted wall time 9.0s"),
        "{}",
        stdout(&text)
    );
    // A file never run before is predicted at the mean of the others.
    f.rows_test("test_d", 0.0);
    let dry = f.run(&["dry-run", "plan.toml", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap();
    let d = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["file"] == "tests/test_d.py")
        .unwrap()
        .clone();
    assert!((d["predicted_secs"].as_f64().unwrap() - 17.0 / 3.0).abs() < 1e-6);
    f.assert_clean();
}

#[test]
fn shards_partition_the_files() {
    let f = Fixture::new("shards");
    for i in 0..5 {
        f.rows_test(&format!("test_{i}"), 0.0);
    }
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let mut seen = Vec::new();
    for k in 1..=2 {
        // As on separate CI runners: every shard sees the same (here: no) recorded timings.
        let _ = std::fs::remove_file(f.root().join(".e2e-plan/timings.json"));
        let shard = format!("{k}/2");
        let out = f.run(&["apply", "plan.toml", "--shard", &shard]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let s = f.summary();
        seen.extend(s.workers.into_iter().map(|w| w.file));
    }
    seen.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("tests/test_{i}.py")).collect();
    assert_eq!(seen, expected, "every file in exactly one shard");
    f.assert_clean();
}

#[test]
fn a_failed_prepare_never_leaves_a_matching_fingerprint() {
    let f = Fixture::new("fpfail");
    f.rows_test("test_a", 0.0);
    f.write("migrations/001.sql", "good\n");
    let plan = f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let good = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("keep = ", "fingerprint = [\"migrations/**\"]\nkeep = ");
    std::fs::write(&plan, &good).unwrap();
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 0);
    // A change whose prepare fails half-way: psql commits the table (each -c is a transaction of
    // its own), then the next statement fails and stops it...
    f.write("migrations/001.sql", "bad\n");
    let bad = good.replace(
        "\"-qc\", \"create table if not exists items (v text)\"",
        "\"-v\", \"ON_ERROR_STOP=1\", \"-qc\", \"create table half_done (x int)\", \"-c\", \"select nonsense(\"",
    );
    assert_ne!(bad, good);
    std::fs::write(&plan, bad).unwrap();
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 3);
    // ...then reverted: the fingerprint matches the first one again, and the template must be
    // the one it was made from: the failed prepare ran in a database of its own.
    f.write("migrations/001.sql", "good\n");
    std::fs::write(&plan, &good).unwrap();
    let again = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("matches: prepare skipped"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        psql_in(
            &f.template,
            "select count(*) from pg_tables where tablename = 'half_done'"
        ),
        "0"
    );
    f.assert_clean();
}
