//! What the README and the CLI reference promise about the command line, each against the real
//! thing: the README's plans load as written (the minimal one runs), a failing `[[setup]]`
//! command exits 3, `-j`, `--keep` and `--retries` override the plan, `rollback` works when the
//! plan no longer loads, and `stop_timeout` escalates SIGTERM to SIGKILL after its default 2 s.

use std::time::{Duration, Instant};

use crate::common::*;
use rustix::process::{kill_process, Pid, Signal};

/// The ```toml blocks of the README, in order.
fn readme_plans() -> Vec<String> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_readme_plans_load_as_written_and_the_minimal_one_runs() {
    let (plans, fragments): (Vec<String>, Vec<String>) = readme_plans()
        .into_iter()
        .partition(|b| b.contains("[tests]"));
    assert_eq!(plans.len(), 2, "the minimal plan and the typical one");
    assert!(!fragments.is_empty(), "the services fragment");
    let f = Fixture::new("readme_plans");
    f.write("tests/e2e/test_one.py", "def test_one():\n    pass\n");
    f.write("tests/e2e/test_two.py", "def test_two():\n    pass\n");
    // A fragment (a `[[service]]` block) loads added to the minimal plan.
    let whole: Vec<String> = fragments
        .iter()
        .map(|b| format!("{}\n{b}", plans[0]))
        .collect();
    for plan in plans.iter().chain(&whole) {
        f.write("plan.toml", plan);
        let v = f
            .cmd(&["validate", "plan.toml"])
            .env_remove("E2E_DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(code(&v), 0, "{plan}\n{}{}", stdout(&v), stderr(&v));
        assert!(stdout(&v).contains("ok"), "{}", stdout(&v));
    }
    // The minimal plan (only `[tests] include` and `[test] command`) runs as it stands, with
    // pytest on the PATH.
    let minimal = &plans[0];
    assert!(
        !minimal.contains("[database]") && !minimal.contains("[server]"),
        "{minimal}"
    );
    f.write("plan.toml", minimal);
    let venv_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("PATH", path)
        .env_remove("E2E_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2 files: 2 passed, 0 failed"), "{text}");
    f.assert_clean();
}

#[test]
fn a_failing_setup_command_exits_3_with_its_output_and_runs_nothing() {
    let f = Fixture::new("setupfails");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[(
        "[database]",
        "[[setup]]\ncommand = [\"sh\", \"-c\", \"echo the setup broke >&2; exit 4\"]\n\n[database]",
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}{err}", stdout(&out));
    assert!(
        err.contains("the setup broke"),
        "its output is shown: {err}"
    );
    // No file ran.
    let s = f.summary();
    assert!(
        s.workers.iter().all(|w| w.verdict == Verdict::Cancelled),
        "{:?}",
        s.workers
    );
    assert!(!f.root().join("report/workers/test_a/test.log").exists());
    f.assert_clean();
}

#[test]
fn keep_and_retries_on_the_command_line_override_the_plan() {
    let f = Fixture::new("cli_over");
    f.rows_test("test_a", 0.0);
    // Fails on its first run only (a marker file): with a retry it is FLAKY.
    f.write(
        "tests/test_flaky.py",
        "import pathlib\n\ndef test_f():\n    p = pathlib.Path(__file__).parent / '.ran'\n    if not p.exists():\n        p.write_text('1')\n        assert False, 'first run fails'\n",
    );
    f.plan(PlanOpts {
        server: false,
        keep: "always",
        run: "retries = 0\nflaky = \"pass\"",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml", "--keep", "never", "--retries", "1"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let flaky = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_flaky.py")
        .unwrap();
    assert_eq!(flaky.verdict, Verdict::Flaky, "{flaky:?}");
    assert_eq!(flaky.attempts.len(), 2, "{flaky:?}");
    assert!(s.kept_databases.is_empty(), "{:?}", s.kept_databases);
    assert_eq!(f.worker_databases(), Vec::<String>::new());
    // And the other way round: the plan keeps nothing, the command line keeps all.
    f.edit_plan(&[("keep = \"always\"", "keep = \"never\"")]);
    let out = f.run(&["apply", "plan.toml", "--keep", "always"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(f.summary().kept_databases.len(), 2);
    assert_eq!(f.worker_databases().len(), 2);
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    f.assert_clean();
}

#[test]
fn jobs_on_the_command_line_overrides_the_plan() {
    let f = Fixture::new("cli_jobs");
    for stem in ["test_a", "test_b", "test_c"] {
        f.rows_test(stem, 0.3);
    }
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        run: "jobs = 0",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml", "-j", "1"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    // The product's own record of when each file's tests ran: one at a time.
    let s = f.summary();
    let mut spans: Vec<(f64, f64)> = s
        .workers
        .iter()
        .flat_map(|w| &w.attempts[0].phases)
        .filter(|p| p.phase == Phase::Testing)
        .map(|p| (p.start, p.end))
        .collect();
    assert_eq!(spans.len(), 3, "{:?}", s.workers);
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two files tested at once: {spans:?}"
        );
    }
    f.assert_clean();
}

#[test]
fn rollback_works_when_the_plan_no_longer_loads() {
    let f = Fixture::new("rb_broken");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        keep: "always",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let kept = f.worker_databases();
    assert_eq!(kept.len(), 1);
    // The plan is edited into one that no longer loads (a key that does not exist).
    f.edit_plan(&[("[tests]\n", "[tests]\nno_such_key = 1\n")]);
    let v = f.run(&["validate", "plan.toml"]);
    assert_eq!(code(&v), 2, "{}", stderr(&v));
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains(&format!("undid database {}", kept[0])),
        "{}",
        stdout(&rb)
    );
    f.assert_clean();
}

#[test]
fn stop_timeout_escalates_sigterm_to_sigkill_after_its_default_2s() {
    let f = Fixture::new("stopdefault");
    // Ignores SIGTERM; writes its pid once it does.
    f.write(
        "tests/test_stubborn.py",
        "import os, pathlib, signal, time\n\ndef test_stubborn():\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    (pathlib.Path(__file__).parent / '.ignoring').write_text(str(os.getpid()))\n    time.sleep(300)\n",
    );
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let text = std::fs::read_to_string(f.root().join("plan.toml")).unwrap();
    assert!(
        !text.contains("stop_timeout"),
        "the default is what is tested"
    );
    let mut child = start_and_wait(&f, &["test_stubborn"]);
    let pid = poll(Duration::from_secs(30), || {
        std::fs::read_to_string(f.root().join("tests/.ignoring"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
    })
    .expect("the test never started ignoring SIGTERM");
    let interrupted = Instant::now();
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    // SIGTERM comes after the interrupt and SIGKILL 2 s after that: the process cannot be gone
    // sooner than 2 s after the interrupt, and must be gone soon after.
    let gone = poll(Duration::from_secs(30), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')))
        .then(|| interrupted.elapsed())
    });
    let gone = gone.expect("the process that ignores SIGTERM was never killed");
    assert!(
        gone >= Duration::from_secs(2),
        "killed {gone:?} after the interrupt, before the 2 s grace"
    );
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(130));
    f.assert_clean();
}

#[test]
fn a_run_leaves_setup_log_clears_worker_folders_and_keeps_last_run_per_plan() {
    let f = Fixture::new("leaves");
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    f.edit_plan(&[(
        "[database]",
        "[[setup]]\ncommand = [\"sh\", \"-c\", \"echo hello from setup\"]\n\n[database]",
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let setup_log = std::fs::read_to_string(f.root().join("report/setup.log")).unwrap();
    assert!(setup_log.contains("hello from setup"), "{setup_log}");
    // A passed file's folder is removed; a failed one's stays, until the next run starts it.
    let workers = f.root().join("report/workers");
    assert!(!workers.join("test_ok").exists());
    assert!(workers.join("test_bad/test.log").exists());
    std::fs::write(workers.join("test_bad/left-from-before.txt"), "").unwrap();

    // A second plan on the same root, whose only file passes: its last run is its own.
    let text = std::fs::read_to_string(f.root().join("plan.toml")).unwrap();
    f.write(
        "plan2.toml",
        &text
            .replace("tests/test_*.py", "tests/test_ok.py")
            .replace("dir = \"report\"", "dir = \"report2\""),
    );
    let out = f.run(&["apply", "plan2.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let last_runs: Vec<String> = std::fs::read_dir(f.root().join(".e2e-plan"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("last-run-") && n.ends_with(".json"))
        .collect();
    assert_eq!(last_runs.len(), 2, "{last_runs:?}");
    // plan.toml's failures survived plan2's green run.
    let out = f.run(&["apply", "plan.toml", "--last-failed"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let files: Vec<String> = f.summary().workers.into_iter().map(|w| w.file).collect();
    assert_eq!(files, ["tests/test_bad.py"]);
    // The rerun of test_bad started from an empty folder.
    assert!(workers.join("test_bad/test.log").exists());
    assert!(!workers.join("test_bad/left-from-before.txt").exists());
    f.assert_clean();
}

#[test]
fn timings_on_the_command_line_order_the_workers_longest_first() {
    let f = Fixture::new("cli_timings");
    for stem in ["test_a", "test_b", "test_c"] {
        f.rows_test(stem, 0.0);
    }
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    // Durations from elsewhere (a previous CI run's), not .e2e-plan/timings.json.
    f.write(
        "ci-timings.json",
        r#"{"files": {"tests/test_a.py": {"secs": 1.0, "runs": 1}, "tests/test_b.py": {"secs": 9.0, "runs": 1}, "tests/test_c.py": {"secs": 5.0, "runs": 1}}}"#,
    );
    let out = f.run(&[
        "apply",
        "plan.toml",
        "-j",
        "1",
        "--timings",
        "ci-timings.json",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    // One at a time, in the order they started testing (the product's own record).
    let s = f.summary();
    let mut started: Vec<(f64, String)> = s
        .workers
        .iter()
        .map(|w| {
            let t = w.attempts[0]
                .phases
                .iter()
                .find(|p| p.phase == Phase::Testing)
                .map(|p| p.start)
                .unwrap();
            (t, w.file.clone())
        })
        .collect();
    started.sort_by(|a, b| a.0.total_cmp(&b.0));
    let order: Vec<&str> = started.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(
        order,
        ["tests/test_b.py", "tests/test_c.py", "tests/test_a.py"]
    );
    f.assert_clean();
}

#[test]
fn a_template_database_that_cannot_be_reached_exits_3() {
    let f = Fixture::new("tmpl_unreachable");
    f.rows_test("test_a", 0.0);
    // A port nothing listens on (a missing template database on a running server is created).
    f.plan(PlanOpts {
        server: false,
        template: Some("postgresql://postgres@127.0.0.1:1/e2e_nowhere"),
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}{err}", stdout(&out));
    assert!(err.contains("is PostgreSQL running"), "{err}");
    assert!(!f.root().join("report/workers/test_a/test.log").exists());
    f.assert_clean();
}

#[test]
fn clones_use_the_plan_s_strategy_and_at_most_4_run_at_once() {
    let f = Fixture::new("strategy");
    for i in 0..8 {
        f.rows_test(&format!("test_{i}"), 0.0);
    }
    // Every file at once: no first workers whose copies go before the others'.
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        run: "jobs = 0",
        ..Default::default()
    });
    let first = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // The default on PostgreSQL 15 copies files; `wal_log` leaves PostgreSQL's own default.
    for (strategy, file_copy) in [("", true), ("strategy = \"wal_log\"\n", false)] {
        if !strategy.is_empty() {
            f.edit_plan(&[("keep = ", &format!("{strategy}keep = "))]);
        }
        // No timings: no critical file whose database is copied alone, first.
        let _ = std::fs::remove_file(f.root().join(".e2e-plan/timings.json"));
        // The template's lock held: the run's clones wait on the server, where they are seen.
        let (mut holder, app) = hold_template_lock(&f);
        let child = f
            .cmd(&["apply", "plan.toml"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        let waiting = poll(Duration::from_secs(60), || {
            seen = waiting_clones(&f);
            (seen.len() >= 4).then(|| seen.clone())
        });
        end_sessions(&app);
        holder.wait().unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let waiting = waiting.unwrap_or_else(|| {
            panic!(
                "four clones never waited on the server: {seen:#?}\n{}",
                stderr(&out)
            )
        });
        // Eight files, four clones at once.
        assert_eq!(waiting.len(), 4, "{waiting:#?}");
        for q in &waiting {
            assert_eq!(q.contains("STRATEGY = FILE_COPY"), file_copy, "{q}");
        }
    }
    f.assert_clean();
}
