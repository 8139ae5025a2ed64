//! Behaviours the README promises, each checked against the real thing: rollback leaves a live
//! run alone and never signals a PID it cannot prove is ours, torn journal lines, a kept database
//! on a throwaway cluster, runs racing to prepare, readiness (timeout, tcp://), empty shards, and
//! what `--last-failed` counts.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use rustix::process::{kill_process, Pid, Signal};

#[test]
fn rollback_leaves_a_live_run_alone() {
    let f = Fixture::new("liverun");
    f.hanging_test("test_h");
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let mut child = start_and_wait(&f, &["test_h"]);
    let dbs = f.worker_databases();
    assert_eq!(dbs.len(), 1);
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    assert!(
        stdout(&rb).contains("is still running: left alone"),
        "{}",
        stdout(&rb)
    );
    assert_eq!(
        f.worker_databases(),
        dbs,
        "the live run's database is untouched"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the live run is still going"
    );
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(130));
    f.assert_clean();
}

/// A process in a group of its own that the test started (and ends, by its PID).
fn own_group_sleeper() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Writes a journal of a dead runner (a PID that has exited) with the given resource lines.
fn dead_runner_journal(f: &Fixture, resources: &[String], tail: &str) {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let mut lines = vec![format!(
        r#"{{"op":"header","run_id":"deadbeef","plan":"plan.toml","pid":{dead_pid},"pid_start":1,"started":"2026-11-27T00:00:00Z"}}"#
    )];
    for (i, r) in resources.iter().enumerate() {
        lines.push(format!(
            r#"{{"op":"intent","seq":{},"resource":{r}}}"#,
            i + 1
        ));
    }
    let text = lines.join("\n") + "\n" + tail;
    f.write(".e2e-plan/runs/deadbeef.jsonl", &text);
}

#[test]
fn rollback_never_signals_a_pid_it_cannot_prove_is_ours() {
    let f = Fixture::new("pidreuse");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    // Live processes whose PIDs a dead run's journal names, with start times that are not theirs
    // (the PIDs were reused), and a postmaster recorded before its PID was known.
    let mut group = own_group_sleeper();
    let mut other = own_group_sleeper();
    let data = f.root().join("never-started/data");
    dead_runner_journal(
        &f,
        &[
            format!(
                r#"{{"kind":"postmaster","data_dir":"{}","pid":0,"started":0}}"#,
                data.display()
            ),
            format!(
                r#"{{"kind":"postmaster","data_dir":"{}","pid":{},"started":1}}"#,
                data.display(),
                other.id()
            ),
            format!(
                r#"{{"kind":"process_group","what":"server","pgid":{},"started":1,"mark":""}}"#,
                group.id()
            ),
        ],
        "",
    );
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    let said = stdout(&rb);
    assert_eq!(said.matches("already gone").count(), 3, "{said}");
    for p in [&mut group, &mut other] {
        assert!(
            p.try_wait().unwrap().is_none(),
            "rollback signalled pid {}",
            p.id()
        );
        kill_process(Pid::from_raw(p.id() as i32).unwrap(), Signal::KILL).unwrap();
        let _ = p.wait();
    }
    assert!(
        !f.root().join(".e2e-plan/runs/deadbeef.jsonl").exists(),
        "the journal is done with"
    );
}

#[test]
fn a_torn_last_journal_line_is_skipped_and_said() {
    let f = Fixture::new("torn");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    let folder = f.root().join("made-by-the-dead-run");
    std::fs::create_dir_all(&folder).unwrap();
    // The runner died while appending its next record.
    dead_runner_journal(
        &f,
        &[format!(
            r#"{{"kind":"folder","path":"{}"}}"#,
            folder.display()
        )],
        r#"{"op":"intent","seq":2,"resource":{"kind":"fol"#,
    );
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    let said = stdout(&rb);
    assert!(said.contains("skipped 1 unreadable line(s)"), "{said}");
    assert!(
        said.contains(&format!("undid folder {}", folder.display())),
        "{said}"
    );
    assert!(!folder.exists());
}

#[test]
fn a_kept_database_keeps_its_throwaway_cluster_until_rollback() {
    let f = Fixture::new("keptcluster");
    f.rows_test("test_good", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        server: false,
        template: Some(""),
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("left running on port"),
        "{}",
        stderr(&out)
    );
    let s = f.summary();
    let url = s.kept_databases[0].url.clone();
    // The kept database answers on the cluster left running for it, with the password from the
    // owner-only file the run names; no other local account gets in, by TCP or by the socket.
    let file = s.kept_databases[0]
        .password_file
        .as_ref()
        .unwrap()
        .display()
        .to_string();
    assert!(
        stdout(&out).contains(&format!("password: in {file}")),
        "{}",
        stdout(&out)
    );
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(!url.contains(&password) && url.contains("****"), "{url}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the password file is owner-only");
    let real = url.replace("****", &password);
    let no_password = url.replace(":****@", "@");
    let sock = std::path::Path::new(&file).with_file_name("sock");
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for (how, args) in [
        (
            "TCP without the password",
            vec![no_password.clone(), "-c".into(), "select 1".into()],
        ),
        (
            "the private socket",
            vec![
                "-h".into(),
                sock.display().to_string(),
                "-p".into(),
                port.clone(),
                "-U".into(),
                "postgres".into(),
                "-c".into(),
                "select 1".into(),
            ],
        ),
    ] {
        let other = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "psql", "-w"])
            .args(&args)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap();
        assert!(
            !other.status.success(),
            "another local user got in by {how}: {}",
            String::from_utf8_lossy(&other.stdout)
        );
    }
    // The same account with the password does get in: the refusals above were the password's.
    let control = std::process::Command::new("runuser")
        .args([
            "-u", "nobody", "--", "psql", "-w", &real, "-Atqc", "select 1",
        ])
        .output()
        .unwrap();
    assert!(
        control.status.success(),
        "{}",
        String::from_utf8_lossy(&control.stderr)
    );
    let rows = std::process::Command::new("psql")
        .args([&real, "-Atqc", "select count(*) from items"])
        .output()
        .unwrap();
    assert!(
        rows.status.success(),
        "{}",
        String::from_utf8_lossy(&rows.stderr)
    );
    // The cluster's folder is the first folder its journal records.
    let journal = std::fs::read_dir(f.root().join(".e2e-plan/runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let dir = std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["resource"]["kind"] == "folder")
        .map(|v| std::path::PathBuf::from(v["resource"]["path"].as_str().unwrap()))
        .unwrap();
    let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().to_string();
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains("undid ephemeral PostgreSQL"),
        "{}",
        stdout(&rb)
    );
    let gone = poll(Duration::from_secs(30), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(gone.is_some(), "postmaster {pid} still runs");
    assert!(!dir.exists(), "the cluster's folder is removed");
    f.assert_clean();
}

#[test]
fn of_two_runs_racing_to_prepare_exactly_one_prepares() {
    let a = Fixture::new("race_a");
    let mut b = Fixture::new("race_b");
    b.template = a.template.clone();
    let go = a.root().join("go");
    for f in [&a, &b] {
        f.rows_test("test_one", 0.0);
        f.write("schema.sql", "create table items (v text);\n");
        f.plan(PlanOpts {
            server: false,
            ..Default::default()
        });
        // The prepare holds until the test lets it go: by then the other run waits for the lock.
        f.edit_plan(&[
            (
                "prepare = [[\"psql\", \"{db_url}\", \"-qc\", \"create table if not exists items (v text)\"]]",
                &format!(
                    "prepare = [[\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.05; done; psql \\\"$DATABASE_URL\\\" -qf schema.sql\"]]\nfingerprint = [\"schema.sql\"]",
                    go.display()
                ),
            ),
        ]);
    }
    let spawn = |f: &Fixture| {
        f.cmd(&["apply", "plan.toml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn(&a);
    let cb = spawn(&b);
    // One run holds the preparation lock (inside its prepare); the other waits for it: a lock
    // not granted on this template's key (the product's: the first 8 bytes of
    // sha256("e2e-plan:<template>")), which no other test or run can hold.
    let key = format!(
        "('x' || left(encode(sha256(convert_to('e2e-plan:{}', 'UTF8')), 'hex'), 16))::bit(64)::bigint",
        a.template
    );
    let lock = format!(
        "select count(*) from pg_locks where locktype = 'advisory' and objsubid = 1 \
         and ((classid::bigint << 32) | objid::bigint) = {key} and {{}}"
    );
    let waiting = poll(Duration::from_secs(60), || {
        (psql(&lock.replace("{}", "not granted")) == "1"
            && psql(&lock.replace("{}", "granted")) == "1")
            .then_some(())
    });
    std::fs::write(&go, "").unwrap();
    let oa = ca.wait_with_output().unwrap();
    let ob = cb.wait_with_output().unwrap();
    assert!(
        waiting.is_some(),
        "the second run never waited for the lock"
    );
    assert_eq!(code(&oa), 0, "{}{}", stdout(&oa), stderr(&oa));
    assert_eq!(code(&ob), 0, "{}{}", stdout(&ob), stderr(&ob));
    let prepared = [&oa, &ob]
        .iter()
        .filter(|o| stderr(o).contains("command(s) run"))
        .count();
    let skipped = [&oa, &ob]
        .iter()
        .filter(|o| stderr(o).contains("matches: prepare skipped"))
        .count();
    assert_eq!(
        (prepared, skipped),
        (1, 1),
        "{}\n{}",
        stderr(&oa),
        stderr(&ob)
    );
    a.assert_clean();
    b.assert_clean();
    // b shares a's template: keep b's Drop from racing a's by dropping b first.
    b.template = format!("{}_unused", b.template);
}

#[test]
fn a_server_never_ready_fails_setup_within_its_ready_timeout() {
    let f = Fixture::new("neverready");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    f.edit_plan(&[
        ("GRANDCHILD = ", "NEVER_READY = \"1\", GRANDCHILD = "),
        ("ready_timeout = \"20s\"", "ready_timeout = \"2s\""),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("was not ready at http://127.0.0.1:"), "{err}");
    assert!(err.contains("within 2s"), "{err}");
    assert!(err.contains("server: listening on"), "its log tail: {err}");
    f.assert_clean();
}

#[test]
fn a_tcp_readiness_check_waits_for_the_port() {
    let f = Fixture::new("tcpready");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts::default());
    f.edit_plan(&[(
        "ready = \"http://127.0.0.1:{port}/healthz\"",
        "ready = \"tcp://127.0.0.1:{port}\"",
    )]);
    // The server listens only when the test lets it: until then the check must keep waiting.
    f.edit_plan(&[(
        "GRANDCHILD = ",
        "LISTEN_AFTER = \"{root}/listen\", GRANDCHILD = ",
    )]);
    let child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = poll(Duration::from_secs(60), || {
        f.root().join("listen.waiting").exists().then_some(())
    });
    // The server is up and not listening: no test may have started (a check that returned at
    // once would have started pytest right after the server).
    let early: Vec<String> = f
        .processes()
        .into_iter()
        .filter(|p| p.contains("pytest"))
        .collect();
    std::fs::write(f.root().join("listen"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(waiting.is_some(), "the server never started");
    assert!(
        early.is_empty(),
        "tests started before the port was open: {early:?}"
    );
    // The test asks the server for its database: it was listening when the tests began.
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.assert_clean();
}

#[test]
fn an_empty_shard_writes_an_empty_junit_with_its_split() {
    let f = Fixture::new("emptyshard");
    f.rows_test("test_a", 0.0).rows_test("test_b", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    // An earlier run's reports must not stay beside the empty shard's junit.xml.
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 0);
    assert!(f.root().join("report/summary.json").exists());
    let out = f.run(&["apply", "plan.toml", "--shard", "3/3"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("0 files to run"), "{}", stdout(&out));
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(junit.contains("tests=\"0\""), "{junit}");
    assert!(junit.contains("e2e-plan shard 3/3"), "{junit}");
    assert!(!f.root().join("report/summary.json").exists());
    assert!(!f.root().join("report/report.html").exists());
    f.assert_clean();
}

#[test]
fn last_failed_ignores_runs_that_failed_setup_or_were_interrupted() {
    let f = Fixture::new("lastfailed");
    f.rows_test("test_good", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 1);
    let failed_run = f.summary().run_id;
    // A setup failure...
    f.edit_plan(&[(
        "create table if not exists items (v text)",
        "select nonsense(",
    )]);
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 3);
    f.edit_plan(&[(
        "select nonsense(",
        "create table if not exists items (v text)",
    )]);
    // ...and an interrupted run do not count.
    f.hanging_test("test_hang");
    let mut child = start_and_wait(&f, &["test_hang"]);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(130));
    std::fs::remove_file(f.root().join("tests/test_hang.py")).unwrap();
    let out = f.run(&["apply", "plan.toml", "--last-failed"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "running the 1 file(s) that failed in run {failed_run}"
        )),
        "{}",
        stderr(&out)
    );
    let files: Vec<String> = f.summary().workers.into_iter().map(|w| w.file).collect();
    assert_eq!(files, ["tests/test_bad.py"]);
    f.assert_clean();
}
