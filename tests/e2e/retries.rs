//! Retries in fresh isolation, FLAKY verdicts, and `--last-failed`.

use crate::common::*;

const FLAKY: &str = r#"import pathlib

def test_flaky(db, http_get):
    import os
    # Every attempt gets a brand-new database, and a server of its own on it.
    assert db('select count(*) from items') == '0'
    if os.environ['HAS_SERVER'] == '1':
        assert http_get('/db')[1] == os.environ['DATABASE_URL'].rsplit('/', 1)[1]
    db("insert into items values ('flaky')")
    ran = pathlib.Path(__file__).parent / '.flaky-ran'
    if not ran.exists():
        ran.write_text('1')
        assert False, 'fails on its first attempt only'
"#;

#[test]
fn a_file_that_fails_then_passes_is_flaky_and_passes_locally() {
    let f = Fixture::new("flaky_local");
    f.write("tests/test_flaky.py", FLAKY)
        .rows_test("test_ok", 0.0);
    f.plan(PlanOpts {
        run: "retries = 2",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_flaky.py")
        .unwrap();
    assert_eq!(w.verdict, Verdict::Flaky);
    let attempts = &w.attempts;
    assert_eq!(attempts.len(), 2);
    // Each attempt's test saw an empty database, and the server it talked to served that
    // database (checked inside the test); the summary names what each attempt used.
    for a in attempts {
        assert!(!a.db_name.is_empty() && a.port.is_some(), "{a:?}");
    }
    assert!(stdout(&out).contains("FLAKY"), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 flaky"), "{}", stdout(&out));
    // The failed attempt's logs are kept apart; the merged JUnit records the flaky failure.
    assert!(f
        .root()
        .join("report/workers/test_flaky/attempt-1/test.log")
        .exists());
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(junit.contains("<flakyFailure"), "{junit}");
    f.assert_clean();
}

#[test]
fn flaky_fails_the_run_on_ci() {
    let f = Fixture::new("flaky_ci");
    f.write("tests/test_flaky.py", FLAKY);
    f.plan(PlanOpts {
        run: "retries = 1",
        server: false,
        ..Default::default()
    });
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("CI", "true")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(f.summary().workers[0].verdict, Verdict::Flaky);
    // A flaky file's databases are all dropped: it passed in the end.
    f.assert_clean();
}

#[test]
fn a_file_that_keeps_failing_records_reruns_and_keeps_only_its_first_database() {
    let f = Fixture::new("rerun");
    f.failing_test("test_bad");
    f.plan(PlanOpts {
        run: "retries = 2",
        server: false,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1);
    let s = f.summary();
    let w = &s.workers[0];
    assert_eq!(w.verdict, Verdict::Fail);
    assert_eq!(w.attempts.len(), 3);
    // Retry databases are always dropped; the first attempt's is kept by the policy.
    assert_eq!(f.worker_databases(), vec![w.db_name.clone()]);
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert_eq!(junit.matches("<rerunFailure").count(), 2, "{junit}");
    f.run(&["rollback", "plan.toml"]);
    f.assert_clean();
}

#[test]
fn too_many_failures_are_not_retried() {
    let f = Fixture::new("maxretry");
    f.failing_test("test_a")
        .failing_test("test_b")
        .failing_test("test_c");
    f.plan(PlanOpts {
        run: "retries = 3\nmax_retry_files = 2",
        server: false,
        keep: "never",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("not retrying"), "{}", stderr(&out));
    let s = f.summary();
    assert!(s.workers.iter().all(|w| w.attempts.len() == 1));
    f.assert_clean();
}

#[test]
fn last_failed_runs_exactly_the_failed_files() {
    let f = Fixture::new("lastfailed");
    f.failing_test("test_bad")
        .rows_test("test_ok1", 0.0)
        .rows_test("test_ok2", 0.0);
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    // No previous run: every file.
    let first = f.run(&["apply", "plan.toml", "--last-failed"]);
    assert_eq!(code(&first), 1);
    assert_eq!(f.summary().workers.len(), 3);
    assert!(
        stderr(&first).contains("no previous run"),
        "{}",
        stderr(&first)
    );
    let second = f.run(&["apply", "plan.toml", "--last-failed"]);
    assert_eq!(code(&second), 1);
    let s = f.summary();
    let files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    assert_eq!(files, ["tests/test_bad.py"]);
    f.assert_clean();
}
