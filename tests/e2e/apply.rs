//! `apply` against the real PostgreSQL, real servers and real pytest: isolation, concurrency,
//! endings (pass, fail, crash, fail-fast, timeout, signals, a killed runner) and cleanup.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use rustix::process::{kill_process, Pid, Signal};

fn verdicts(s: &RunSummary) -> Vec<(String, String)> {
    s.workers
        .iter()
        .map(|w| (w.file.clone(), w.verdict.label().to_string()))
        .collect()
}

#[test]
fn files_run_concurrently_each_in_its_own_database() {
    let f = Fixture::new("isolation");
    for i in 0..4 {
        f.rows_test(&format!("test_rows_{i}"), 0.0);
    }
    // A barrier: each file's tests wait until all four are running (an event, not a duration),
    // so they can only pass when they run at the same time.
    f.write(
        "tests/conftest.py",
        &format!(
            "{}\n\n@pytest.fixture(autouse=True)\ndef barrier():\n    import pathlib, time\n    d = pathlib.Path(os.environ['BARRIER'])\n    d.mkdir(exist_ok=True)\n    (d / os.environ['PYTEST_CURRENT_TEST'].split('::')[0].replace('/', '_')).touch()\n    deadline = time.monotonic() + 120\n    while len(list(d.iterdir())) < 4:\n        assert time.monotonic() < deadline, 'the other files never ran at the same time'\n        time.sleep(0.05)\n",
            std::fs::read_to_string(f.root().join("tests/conftest.py")).unwrap()
        ),
    );
    f.plan(PlanOpts {
        grandchild: true,
        ..Default::default()
    });
    f.edit_plan(&[(
        "HAS_SERVER = ",
        "BARRIER = \"{root}/barrier\", HAS_SERVER = ",
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(
        code(&out),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let s = f.summary();
    assert_eq!(s.exit_code, 0);
    assert!(verdicts(&s).iter().all(|(_, v)| v == "PASS"));
    // Concurrency without timing thresholds: every test phase overlaps every other one.
    let phases: Vec<(f64, f64)> = s
        .workers
        .iter()
        .map(|w| {
            let p = w.attempts[0]
                .phases
                .iter()
                .find(|p| p.phase == Phase::Testing)
                .unwrap();
            (p.start, p.end)
        })
        .collect();
    let latest_start = phases.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let earliest_end = phases.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    assert!(
        latest_start < earliest_end,
        "test phases did not overlap: {phases:?}"
    );
    // Each file had its own database: every test saw an empty table and then only its own rows,
    // and its server answered from that same database (both checked inside the tests).
    assert!(
        stdout(&out).contains("4 files: 4 passed, 0 failed in"),
        "{}",
        stdout(&out)
    );
    // Passing workers' logs are removed; the merged reports stay.
    // test_rows_0's folder held its JUnit (the counts were read from it), and it is gone now.
    let w0 = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_rows_0.py")
        .unwrap();
    assert_eq!(w0.counts.unwrap().passed, 1, "{w0:?}");
    assert!(w0
        .log_dir
        .as_ref()
        .unwrap()
        .ends_with("report/workers/test_rows_0"));
    assert!(!f.root().join("report/workers/test_rows_0").exists());
    assert!(f.root().join("report/junit.xml").exists());
    f.assert_clean();
    assert!(
        !f.root()
            .join(".e2e-plan/runs")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "journal removed after a clean run"
    );
}

#[test]
fn exit_code_5_passes_when_nothing_is_collected() {
    let f = Fixture::new("exit5");
    f.rows_test("test_a", 0.0).rows_test("test_b", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml", "--", "-k", "no_such_test"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    assert!(s
        .workers
        .iter()
        .all(|w| w.exit_code == Some(5) && w.verdict == Verdict::Pass));
    f.assert_clean();
}

#[test]
fn a_failing_file_keeps_exactly_its_database() {
    let f = Fixture::new("keepfailed");
    f.rows_test("test_good", 0.0).failing_test("test_bad");
    f.plan(PlanOpts::default());
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let bad = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_bad.py")
        .unwrap();
    assert_eq!(bad.verdict, Verdict::Fail);
    assert!(bad.db_kept);
    let kept = bad.db_name.clone();
    assert_eq!(f.worker_databases(), vec![kept.clone()]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{PG}/{kept}")),
        "kept URL printed:\n{text}"
    );
    assert!(text.contains("e2e-plan rollback plan.toml"), "{text}");
    assert!(
        f.root()
            .join(format!("report/kept/{kept}/test.log"))
            .exists(),
        "failed worker's logs kept beside its database"
    );
    assert!(!f.root().join("report/workers/test_good").exists());
    // rollback drops it; a second rollback has nothing to do.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    assert!(
        stdout(&rb).contains(&format!("database {kept}")),
        "{}",
        stdout(&rb)
    );
    let rb2 = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb2), 0);
    assert!(stdout(&rb2).contains("nothing to roll back"));
    f.assert_clean();
}

#[test]
fn all_on_failure_keeps_every_database() {
    let f = Fixture::new("keepall");
    f.rows_test("test_good", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        keep: "all-on-failure",
        server: false,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1);
    assert_eq!(f.worker_databases().len(), 2);
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0);
    f.assert_clean();
}

#[test]
fn a_crashing_server_fails_setup_and_leaves_nothing() {
    let f = Fixture::new("crash");
    f.rows_test("test_crash_me", 0.0).hanging_test("test_other");
    f.plan(PlanOpts {
        grandchild: true,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("exited with 7 before it was ready"), "{err}");
    assert!(
        err.contains("crashing on purpose"),
        "server log tail shown: {err}"
    );
    let s = f.summary();
    let v = verdicts(&s);
    assert!(
        v.contains(&("tests/test_other.py".into(), "CANCELLED".into())),
        "{v:?}"
    );
    f.assert_clean();
}

#[test]
fn fail_fast_cancels_a_hanging_file() {
    let f = Fixture::new("failfast");
    f.failing_test("test_bad").hanging_test("test_hang");
    f.plan(PlanOpts {
        grandchild: true,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml", "--fail-fast"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let v = verdicts(&f.summary());
    assert!(
        v.contains(&("tests/test_bad.py".into(), "FAIL".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&("tests/test_hang.py".into(), "CANCELLED".into())),
        "{v:?}"
    );
    // The failed file's database is kept (policy failed); the cancelled one is dropped.
    assert_eq!(f.worker_databases().len(), 1);
    f.run(&["rollback", "plan.toml"]);
    f.assert_clean();
}

#[test]
fn fail_fast_never_starts_queued_files() {
    let f = Fixture::new("failfastq");
    f.failing_test("test_a_bad")
        .rows_test("test_b", 0.0)
        .rows_test("test_c", 0.0);
    f.plan(PlanOpts {
        server: false,
        run: "jobs = 1\nfail_fast = true",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1);
    let v = verdicts(&f.summary());
    assert_eq!(
        v.iter().filter(|(_, r)| r == "CANCELLED").count(),
        2,
        "{v:?}"
    );
    f.run(&["rollback", "plan.toml"]);
    f.assert_clean();
}

#[test]
fn a_file_past_its_timeout_is_killed_at_once_and_reported() {
    let f = Fixture::new("timeout");
    // It ignores SIGTERM: only a kill without grace ends it before the grace period would.
    f.write(
        "tests/test_hang.py",
        "import signal, time\n\ndef test_hangs():\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    time.sleep(300)\n",
    );
    f.rows_test("test_ok", 0.0);
    // Long enough that a passing file never reaches it on a busy machine.
    f.plan(PlanOpts {
        test_timeout: "10s",
        keep: "never",
        grandchild: true,
        ..Default::default()
    });
    f.edit_plan(&[("stop_timeout = \"2s\"", "stop_timeout = \"5m\"")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let hang = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_hang.py")
        .unwrap();
    // Not the 5 minutes of grace: the timeout kills at once.
    assert!(hang.duration < 120.0, "{hang:?}");
    let v = verdicts(&s);
    assert!(
        v.contains(&("tests/test_hang.py".into(), "TIMEOUT".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&("tests/test_ok.py".into(), "PASS".into())),
        "{v:?}"
    );
    assert!(stdout(&out).contains("TIMEOUT"));
    f.assert_clean();
}

#[test]
fn sigint_stops_everything_and_exits_130() {
    let f = Fixture::new("sigint");
    f.hanging_test("test_h1").hanging_test("test_h2");
    f.plan(PlanOpts {
        grandchild: true,
        keep: "always",
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h1", "test_h2"]);
    assert_eq!(f.worker_databases().len(), 2);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(code, Some(130));
    let s = f.summary();
    assert!(s.interrupted);
    // Interrupted runs keep nothing, whatever the keep policy.
    f.assert_clean();
}

#[test]
fn a_killed_runner_is_undone_by_rollback_twice() {
    let f = Fixture::new("sigkill");
    f.hanging_test("test_h1").hanging_test("test_h2");
    f.plan(PlanOpts {
        grandchild: true,
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h1", "test_h2"]);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    // Its workers outlive it: servers, tests, grandchildren and databases.
    assert_eq!(f.worker_databases().len(), 2);
    assert!(!f.processes().is_empty());
    // A new apply warns about the leftovers and offers the command (validate-only run: dry-run
    // does not look; use apply with a plan that fails to load? No: warn on apply start).
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(stdout(&rb).contains("undid"), "{}", stdout(&rb));
    f.assert_clean();
    let rb2 = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb2), 0);
    assert!(
        stdout(&rb2).contains("nothing to roll back"),
        "{}",
        stdout(&rb2)
    );
}

#[test]
fn apply_warns_about_a_dead_runs_leftovers() {
    let f = Fixture::new("leftover");
    f.hanging_test("test_h1");
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h1"]);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    f.rows_test("test_h1", 0.0); // now it passes
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ended without cleaning up") && err.contains("e2e-plan rollback plan.toml"),
        "{err}"
    );
    f.run(&["rollback", "plan.toml"]);
    f.assert_clean();
}

#[test]
fn a_60_byte_template_name_gives_valid_distinct_names() {
    let mut f = Fixture::new("longname");
    // 60 bytes, unique to this process.
    let base = format!("e2e_t_long_{}_", std::process::id());
    f.template = format!("{base}{}", "x".repeat(60 - base.len()));
    assert_eq!(f.template.len(), 60);
    f.rows_test("test_a", 0.0).rows_test("test_b", 0.0);
    f.plan(PlanOpts {
        server: false,
        keep: "always",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let names: Vec<String> = s.workers.iter().map(|w| w.db_name.clone()).collect();
    assert_eq!(names.len(), 2);
    // keep = always: each reported name is the database its file really wrote to.
    for (w, n) in s.workers.iter().zip(&names) {
        assert_eq!(psql_in(n, "select distinct v from items"), w.stem);
    }
    for n in &names {
        assert!(n.len() <= 63, "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{n}"
        );
    }
    // keep = always: both exist under exactly these names.
    let existing = psql(&format!(
        "select count(*) from pg_database where datname in ('{}', '{}')",
        names[0], names[1]
    ));
    assert_eq!(existing, "2");
    f.run(&["rollback", "plan.toml"]);
    let existing = psql(&format!(
        "select count(*) from pg_database where datname in ('{}', '{}')",
        names[0], names[1]
    ));
    assert_eq!(existing, "0");
    f.assert_clean();
}

#[test]
fn two_concurrent_applies_share_one_template() {
    let a = Fixture::new("concurrent_a");
    let mut b = Fixture::new("concurrent_b");
    b.template = a.template.clone();
    // The four files of both runs wait for each other: the runs really overlap.
    let barrier = a.root().join("barrier");
    for f in [&a, &b] {
        f.rows_test("test_one", 0.0);
        barrier_test(f, "test_two", &barrier, 4);
        barrier_test(f, "test_three", &barrier, 4);
        f.plan(PlanOpts::default());
    }
    let ca = a
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cb = b
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let oa = ca.wait_with_output().unwrap();
    let ob = cb.wait_with_output().unwrap();
    assert_eq!(code(&oa), 0, "{}{}", stdout(&oa), stderr(&oa));
    assert_eq!(code(&ob), 0, "{}{}", stdout(&ob), stderr(&ob));
    // Each file had a database of its own, cloned from the one template.
    let marks = barrier_marks(&barrier);
    let mut dbs: Vec<&str> = marks.iter().map(|(db, _)| db.as_str()).collect();
    dbs.dedup();
    assert_eq!(dbs.len(), 4, "{marks:?}");
    assert!(
        dbs.iter()
            .all(|d| d.starts_with(&format!("{}_", a.template))),
        "{marks:?}"
    );
    a.assert_clean();
    b.assert_clean();
    // b shares a's template: keep b's Drop from racing a's by dropping b first.
    b.template = format!("{}_unused", b.template);
}

/// Every artifact of a run and of a dry-run, concatenated.
fn artifacts(f: &Fixture, outputs: &[&std::process::Output]) -> String {
    let mut all = String::new();
    for o in outputs {
        all.push_str(&stdout(o));
        all.push_str(&stderr(o));
    }
    for file in ["summary.json", "junit.xml", "report.html"] {
        all.push_str(&std::fs::read_to_string(f.root().join("report").join(file)).unwrap());
    }
    all
}

#[test]
fn a_password_never_reaches_the_output() {
    let f = Fixture::new("password");
    let role = format!("e2e_pw_{}", std::process::id());
    psql(&format!("drop role if exists {role}"));
    // Every character that escaping changes, between two markers no encoding changes.
    let password = r#"Pw7&<>"'%Xk2"#;
    psql(&format!(
        "create role {role} login createdb password '{}'",
        password.replace('\'', "''")
    ));
    f.rows_test("test_good", 0.0);
    // A failing test that prints the connection string and the password (pytest shows it).
    f.write(
        "tests/test_bad.py",
        "import os\nfrom urllib.parse import unquote, urlparse\n\ndef test_bad():\n    url = os.environ['DATABASE_URL']\n    print('connecting to', url, 'password', unquote(urlparse(url).password))\n    assert False, 'password ' + unquote(urlparse(url).password)\n",
    );
    let encoded = "Pw7%26%3C%3E%22%27%25Xk2";
    let url = format!(
        "postgresql://{role}:{encoded}@127.0.0.1:5432/{}",
        f.template
    );
    f.plan(PlanOpts {
        template: Some(&url),
        ..Default::default()
    });
    f.edit_plan(&[("GRANDCHILD = ", "PRINT_URL = \"1\", GRANDCHILD = ")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let dry = f.run(&["dry-run", "plan.toml"]);
    let everything = artifacts(&f, &[&out, &dry]);
    for marker in ["Pw7", "Xk2"] {
        assert!(
            !everything.contains(marker),
            "the password leaked in some form:\n{everything}"
        );
    }
    // The check is not vacuous: the logs that held the password did reach the report.
    let html = std::fs::read_to_string(f.root().join("report/report.html")).unwrap();
    assert!(
        html.contains("connecting to"),
        "test log tail in report.html"
    );
    assert!(
        html.contains("server: connecting to"),
        "server log tail in report.html"
    );
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(junit.contains("password ****"), "{junit}");
    assert!(
        stdout(&out).contains(&format!("{role}:****@127.0.0.1")),
        "{}",
        stdout(&out)
    );
    // A failing prepare prints its command line, which holds the URL; dry-run JSON holds it too.
    f.edit_plan(&[(
        "create table if not exists items (v text)",
        "select nonsense(",
    )]);
    let broken = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&broken), 3, "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains(&format!("{role}:****@")),
        "{}",
        stderr(&broken)
    );
    let json = f.run(&["dry-run", "plan.toml", "--format", "json"]);
    let everything = artifacts(&f, &[&broken, &json]);
    for marker in ["Pw7", "Xk2"] {
        assert!(
            !everything.contains(marker),
            "leaked on a failed prepare:\n{everything}"
        );
    }
    f.run(&["rollback", "plan.toml"]);
    f.assert_clean();
    drop(f);
    psql(&format!("drop role if exists {role}"));
}

#[test]
fn a_parent_pytests_environment_does_not_leak_into_workers() {
    let f = Fixture::new("pytestenv");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    // Were it passed on, pytest would stop with a usage error (exit 4).
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("PYTEST_ADDOPTS", "--no-such-pytest-flag")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.assert_clean();
}

/// The folder the journal of this fixture's (only) run recorded for its ephemeral cluster.
fn cluster_dir(f: &Fixture) -> std::path::PathBuf {
    let runs = f.root().join(".e2e-plan/runs");
    for e in std::fs::read_dir(runs).unwrap().flatten() {
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["resource"]["kind"] == "folder" {
                return v["resource"]["path"].as_str().unwrap().into();
            }
        }
    }
    panic!("no cluster folder in the journal");
}

#[test]
fn an_ephemeral_cluster_of_a_killed_runner_is_stopped_by_rollback() {
    let f = Fixture::new("ephemeral");
    f.hanging_test("test_h1");
    f.plan(PlanOpts {
        server: false,
        template: Some(""),
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h1"]);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    let dir = cluster_dir(&f);
    assert!(
        dir.join("data/postmaster.pid").exists(),
        "the cluster outlived its runner"
    );
    let pid: u32 = std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains("ephemeral PostgreSQL"),
        "{}",
        stdout(&rb)
    );
    assert!(!dir.exists(), "cluster folder removed");
    let gone = poll(Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(gone.is_some(), "postmaster {pid} still running");
    f.assert_clean();
}

#[test]
fn an_ephemeral_run_passes_and_removes_its_cluster() {
    let f = Fixture::new("ephemeral_ok");
    f.rows_test("test_a", 0.0).rows_test("test_b", 0.0);
    f.plan(PlanOpts {
        template: Some(""),
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("start ephemeral PostgreSQL: done"),
        "{}",
        stderr(&out)
    );
    assert!(!f
        .root()
        .join(".e2e-plan/clusters")
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false));
    f.assert_clean();
}

#[test]
fn a_second_sigint_skips_the_grace_period() {
    let f = Fixture::new("sigint2");
    // A test that ignores SIGTERM, and says when one came; it then answers the test's knock,
    // which only a process the first interrupt left alive can do.
    f.write(
        "tests/test_stubborn.py",
        r#"import pathlib, signal, time

here = pathlib.Path(__file__).parent

def test_stubborn():
    signal.signal(signal.SIGTERM, lambda *_: (here / '.got-term').write_text('1'))
    (here / '.ignoring').write_text('1')
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (here / '.knock').exists():
            (here / '.answer').write_text('1')
        time.sleep(0.02)
"#,
    );
    f.plan(PlanOpts::default());
    // A grace period far longer than the test takes.
    f.edit_plan(&[("stop_timeout = \"2s\"", "stop_timeout = \"5m\"")]);
    let mut child = start_and_wait(&f, &["test_stubborn"]);
    let tests = f.root().join("tests");
    let ignoring = poll(Duration::from_secs(30), || {
        tests.join(".ignoring").exists().then_some(())
    });
    assert!(
        ignoring.is_some(),
        "the test never started ignoring SIGTERM"
    );
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    // The first interrupt sends SIGTERM and waits out the grace period: the test got it, and is
    // still alive after it to answer.
    let termed = poll(Duration::from_secs(30), || {
        tests.join(".got-term").exists().then_some(())
    });
    assert!(termed.is_some(), "the first interrupt sent no SIGTERM");
    std::fs::write(tests.join(".knock"), "").unwrap();
    let answered = poll(Duration::from_secs(30), || {
        tests.join(".answer").exists().then_some(())
    });
    assert!(
        answered.is_some(),
        "the first interrupt did not wait out the grace period"
    );
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "exited before the second interrupt"
    );
    kill_process(pid, Signal::INT).unwrap();
    // ...the second kills at once.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(130));
    f.assert_clean();
}

#[test]
fn a_session_on_the_template_is_waited_for_then_named_never_terminated() {
    let f = Fixture::new("busy");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let first = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    f.edit_plan(&[("keep = ", "busy_timeout = \"1s\"\nkeep = ")]);
    // Someone else's session on the template.
    let mut other = session_on_template(&f, "someone_elses_session");
    let out = f.run(&["apply", "plan.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(
        err.contains("other sessions stayed connected to it for 1s"),
        "{err}"
    );
    assert!(
        err.contains("someone_elses_session"),
        "the blocking session is named: {err}"
    );
    // It was never terminated.
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other session was killed"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    f.assert_clean();
}

#[test]
fn an_https_readiness_check_accepts_a_self_signed_server() {
    let f = Fixture::new("https");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(f.root())
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", stderr(&made));
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    f.edit_plan(&[
        ("ready = \"http://", "ready = \"https://"),
        (
            "GRANDCHILD = ",
            "TLS_CERT = \"{root}/cert.pem\", TLS_KEY = \"{root}/key.pem\", GRANDCHILD = ",
        ),
        ("HAS_SERVER = \"1\"", "HAS_SERVER = \"0\""),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.assert_clean();
}

#[test]
fn a_grandchild_that_leaves_the_process_group_is_still_stopped() {
    let f = Fixture::new("setsid");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    f.edit_plan(&[("GRANDCHILD = ", "ESCAPE = \"1\", GRANDCHILD = ")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.assert_clean();
}

#[test]
fn a_runner_killed_while_cloning_leaves_nothing_after_rollback() {
    let f = Fixture::new("killclone");
    for i in 0..8 {
        f.rows_test(&format!("test_{i}"), 0.0);
    }
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    // The template exists and is prepared, so the next run goes straight to cloning.
    let first = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // The template's lock held: the run's clones wait on the server, so the kill below lands
    // while they are in flight, and they run on without their client once it is released.
    let (mut holder, app) = hold_template_lock(&f);
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cloning = poll(Duration::from_secs(60), || {
        (!waiting_clones(&f).is_empty()).then_some(())
    });
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    assert!(cloning.is_some(), "the run never started cloning");
    // Rollback while the clones still wait: it must wait for them to land before it drops them
    // (a drop before would find nothing, and the clone would land after it). Once it is seen
    // waiting, the lock is released.
    let rb = f
        .cmd(&["rollback", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rollback_waits = poll(Duration::from_secs(60), || {
        (psql(
            "select count(*) from pg_stat_activity where pid <> pg_backend_pid() \
             and query like 'SELECT count(*) FROM pg_stat_activity WHERE state = ''active'' AND query LIKE%'",
        ) != "0")
            .then_some(())
    });
    end_sessions(&app);
    holder.wait().unwrap();
    let rb = rb.wait_with_output().unwrap();
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        rollback_waits.is_some(),
        "rollback never looked for clones in flight"
    );
    // No clone may land after the rollback: wait until none is in flight, then look.
    let quiet = poll(Duration::from_secs(60), || {
        let active = psql(&format!(
            "select count(*) from pg_stat_activity where query like 'CREATE DATABASE \"{}%' and state = 'active'",
            f.template
        ));
        (active == "0").then_some(())
    });
    assert!(quiet.is_some());
    f.assert_clean();
}

#[test]
fn a_cluster_that_fails_to_start_is_cleaned_up_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new("badcluster");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        template: Some(""),
        ..Default::default()
    });
    // A pg_config pointing at an initdb that fails.
    let fake = f.root().join("fakepg");
    f.write(
        "fakepg/bin/pg_config",
        &format!("#!/bin/sh\necho {}/bin\n", fake.display()),
    );
    f.write(
        "fakepg/bin/initdb",
        "#!/bin/sh\necho 'initdb: simulated failure' >&2\nexit 1\n",
    );
    f.write("fakepg/bin/postgres", "#!/bin/sh\nexit 1\n");
    for name in ["pg_config", "initdb", "postgres"] {
        std::fs::set_permissions(
            fake.join("bin").join(name),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}",
        fake.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("initdb: simulated failure"),
        "{}",
        stderr(&out)
    );
    let journals = std::fs::read_dir(f.root().join(".e2e-plan/runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(journals, 0, "everything undone, so no journal is left");
    let clusters = std::fs::read_dir(f.root().join(".e2e-plan/clusters"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(clusters, 0);
    f.assert_clean();
}

#[test]
fn sigterm_stops_everything_and_exits_130() {
    let f = Fixture::new("sigterm");
    f.hanging_test("test_h1");
    f.plan(PlanOpts {
        grandchild: true,
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h1"]);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), Some(130));
    f.assert_clean();
}

#[test]
fn a_server_whose_port_was_taken_is_retried_once_on_another_port() {
    let f = Fixture::new("portclash");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    f.edit_plan(&[("GRANDCHILD = ", "PORT_CLASH = \"1\", GRANDCHILD = ")]);
    let out = f.run(&["apply", "plan.toml"]);
    // The port holder is the test's own helper: it holds the port until released, so it outlasts
    // the retry however slow the machine. Release it and wait for it before judging.
    let holder: u32 = std::fs::read_to_string(f.root().join(".clashed"))
        .expect("the clash happened")
        .trim()
        .parse()
        .unwrap();
    std::fs::write(f.root().join(".release"), "").unwrap();
    let gone = poll(Duration::from_secs(60), || {
        (!std::path::Path::new(&format!("/proc/{holder}")).exists()).then_some(())
    });
    assert!(gone.is_some(), "port holder {holder} did not exit");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.assert_clean();
}
