//! The local cluster kept between runs (plans with a fingerprint and no template URL): the second
//! run skips initdb and prepare, a changed fingerprint prepares again, two runs of one checkout at
//! once both pass, a killed runner never leaves a cluster the next run trusts, `cluster remove`
//! leaves nothing. Real PostgreSQL binaries, real pytest.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use rustix::process::{kill_process, Pid, Signal};

/// A project on the embedded cluster whose template is fingerprinted by `schema.sql`; each run
/// of `prepare` appends a line to `prepared.log`.
fn kept_project(name: &str) -> Fixture {
    let f = Fixture::new(name);
    f.rows_test("test_one", 0.0).rows_test("test_two", 0.0);
    f.write("schema.sql", "create table items (v text);\n");
    f.plan(PlanOpts {
        server: false,
        template: Some(""),
        keep: "never",
        ..Default::default()
    });
    f.edit_plan(&[
        (
            r#"prepare = [["psql", "{db_url}", "-qc", "create table if not exists items (v text)"]]"#,
            r#"prepare = [["sh", "-c", "echo ran >> prepared.log && psql -q -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -f schema.sql"]]
fingerprint = ["schema.sql"]"#,
        ),
    ]);
    f
}

fn prepared_count(f: &Fixture) -> usize {
    std::fs::read_to_string(f.root().join("prepared.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn apply_ok(f: &Fixture) -> (RunSummary, String) {
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    (f.summary(), stderr(&out))
}

fn kept_dir(f: &Fixture) -> PathBuf {
    f.root().join(".e2e-plan/cluster")
}

#[test]
fn the_second_run_skips_initdb_and_prepare_and_a_changed_fingerprint_prepares_again() {
    let f = kept_project("kept_second");
    let (first, _) = apply_ok(&f);
    let c = first.cluster.expect("an embedded cluster");
    assert!(c.kept && c.initdb, "{c:?}");
    assert_eq!(c.dir, kept_dir(&f));
    assert!(first.prepared);
    assert_eq!(prepared_count(&f), 1);
    // Nothing runs when the command returns: the postmaster is stopped, its data kept.
    f.assert_clean();
    assert!(kept_dir(&f).join("complete").exists());

    let (second, said) = apply_ok(&f);
    let c = second.cluster.expect("an embedded cluster");
    assert!(c.kept && !c.initdb, "{c:?}");
    assert!(!second.prepared, "{said}");
    assert_eq!(
        prepared_count(&f),
        1,
        "prepare never runs when nothing changed"
    );
    assert!(said.contains("initdb skipped"), "{said}");
    f.assert_clean();

    // A changed schema: prepare runs again, from nothing, and the tests see the new schema.
    f.write("schema.sql", "create table items (v text, extra int);\n");
    f.write(
        "tests/test_schema.py",
        "def test_new_column(db):\n    assert db(\"select count(*) from information_schema.columns where column_name = 'extra'\") == '1'\n",
    );
    let (third, _) = apply_ok(&f);
    assert!(third.prepared);
    assert!(!third.cluster.unwrap().initdb);
    assert_eq!(prepared_count(&f), 2);

    let status = f.run(&["cluster", "status", "plan.toml"]);
    let text = stdout(&status);
    assert!(
        text.contains(&format!("kept cluster {}", kept_dir(&f).display()))
            && text.contains("stopped, PostgreSQL"),
        "{text}"
    );
    let rm = f.run(&["cluster", "remove", "plan.toml"]);
    assert_eq!(code(&rm), 0, "{}{}", stdout(&rm), stderr(&rm));
    assert!(!kept_dir(&f).exists());
    assert!(stdout(&f.run(&["cluster", "status", "plan.toml"])).contains("no kept cluster"));
    // The next run makes it again.
    let (fourth, _) = apply_ok(&f);
    assert!(fourth.cluster.unwrap().initdb);
    assert_eq!(prepared_count(&f), 3);
    f.assert_clean();
}

#[test]
fn two_runs_of_one_checkout_at_once_both_pass() {
    let f = kept_project("kept_two");
    apply_ok(&f);
    // Each test waits for a file, so that the two runs surely overlap.
    f.write(
        "tests/test_one.py",
        "import os, time\n\ndef test_waits(db):\n    assert db('select count(*) from items') == '0'\n    deadline = time.time() + 120\n    while not os.path.exists(os.path.join(os.environ['ROOT'], 'go')) and time.time() < deadline:\n        time.sleep(0.05)\n    assert os.path.exists(os.path.join(os.environ['ROOT'], 'go'))\n",
    );
    f.edit_plan(&[(
        "HAS_SERVER = \"0\"",
        "HAS_SERVER = \"0\", ROOT = \"{root}\"",
    )]);
    let mut a = start_and_wait(&f, &["test_one"]);
    let b = f
        .cmd(&["apply", "plan.toml", "--report-dir", "report-b"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // b is under way (its own workers are waiting too) before a may finish.
    let b_waiting = poll(Duration::from_secs(60), || {
        f.root()
            .join("report-b/workers/test_one/test.log")
            .exists()
            .then_some(())
    });
    std::fs::write(f.root().join("go"), "").unwrap();
    assert!(
        b_waiting.is_some(),
        "the second run never started its tests"
    );
    let ob = b.wait_with_output().unwrap();
    assert_eq!(wait_exit(&mut a, Duration::from_secs(120)), Some(0));
    assert_eq!(code(&ob), 0, "{}{}", stdout(&ob), stderr(&ob));
    assert!(
        stderr(&ob)
            .contains("not using the kept cluster: another run of this checkout is using it"),
        "{}",
        stderr(&ob)
    );
    f.assert_clean();
    // The kept cluster is whole: the next run starts it without initdb.
    let (next, _) = apply_ok(&f);
    assert!(!next.cluster.unwrap().initdb);
}

/// Spawns `apply` and waits until `path` (relative to the root) exists, then kills the runner
/// with SIGKILL.
fn kill_runner_when(f: &Fixture, path: &str) {
    kill_runner_once(f, path, |f| f.root().join(path).exists());
}

/// The new kept cluster's data folder while initdb makes it (in its run's staging folder).
fn staging_data(f: &Fixture) -> Option<PathBuf> {
    std::fs::read_dir(f.root().join(".e2e-plan"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cluster.new-"))
        })
        .map(|p| p.join("data"))
        .filter(|d| d.exists())
}

fn kill_runner_once(f: &Fixture, what: &str, seen: impl Fn(&Fixture) -> bool) {
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let found = poll(Duration::from_secs(60), || seen(f).then_some(()));
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    assert!(found.is_some(), "{what} never appeared");
}

#[test]
fn a_runner_killed_mid_prepare_never_leaves_a_template_the_next_run_trusts() {
    let f = kept_project("kept_killed");
    apply_ok(&f);
    // A changed schema whose prepare hangs until released.
    f.write("schema.sql", "create table items (v text, extra int);\n");
    f.edit_plan(&[(
        "echo ran >> prepared.log &&",
        "echo ran >> prepared.log && touch preparing && while [ ! -f release ]; do sleep 0.05; done &&",
    )]);
    kill_runner_when(&f, "preparing");
    std::fs::write(f.root().join("release"), "").unwrap();
    // The dead runner's postmaster still runs: the next run leaves it alone and uses a
    // throwaway cluster.
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("still running from an earlier run"),
        "{}",
        stderr(&out)
    );
    assert!(!f.summary().cluster.unwrap().kept);
    // rollback stops it and keeps its data.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains("undid kept PostgreSQL"),
        "{}",
        stdout(&rb)
    );
    f.assert_clean();
    assert!(kept_dir(&f).join("complete").exists());
    // The half-made build never became the template: the next run on the kept cluster prepares
    // the new schema again.
    let before = prepared_count(&f);
    f.write(
        "tests/test_schema.py",
        "def test_new_column(db):\n    assert db(\"select count(*) from information_schema.columns where column_name = 'extra'\") == '1'\n",
    );
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && !c.initdb, "{c:?}");
    assert!(s.prepared, "{said}");
    assert_eq!(prepared_count(&f), before + 1);
    f.assert_clean();
}

#[test]
fn a_runner_killed_during_initdb_leaves_nothing_the_next_run_trusts() {
    let f = kept_project("kept_initdb");
    kill_runner_once(&f, "initdb's data folder", |f| staging_data(f).is_some());
    assert!(
        !kept_dir(&f).exists(),
        "the kept folder exists before initdb finished"
    );
    // Without rollback: the next run makes its own, even while the dead run's initdb may still
    // be writing into the dead run's staging folder.
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && c.initdb, "{c:?}");
    assert!(said.contains("ended without cleaning up"), "{said}");
    // rollback removes the dead run's staging folder, and leaves the kept cluster.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(staging_data(&f).is_none(), "{}", stdout(&rb));
    assert!(kept_dir(&f).join("complete").exists());
    f.assert_clean();
    let (s, _) = apply_ok(&f);
    assert!(!s.cluster.unwrap().initdb);
    f.assert_clean();
}

#[test]
fn validate_says_which_local_cluster_a_plan_gets() {
    let f = kept_project("kept_validate");
    let v = f.run(&["validate", "plan.toml"]);
    assert!(
        stdout(&v).contains("a local cluster kept between runs"),
        "{}",
        stdout(&v)
    );
    f.edit_plan(&[("fingerprint = [\"schema.sql\"]", "")]);
    let v = f.run(&["validate", "plan.toml"]);
    assert!(
        stdout(&v).contains("a throwaway local cluster every run"),
        "{}",
        stdout(&v)
    );
    // And a run of it keeps nothing.
    let (s, _) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(!c.kept && c.initdb, "{c:?}");
    assert!(!kept_dir(&f).exists());
    f.assert_clean();
}

#[test]
fn a_kept_cluster_that_ran_when_the_machine_went_down_or_left_a_stale_pid_is_handled() {
    let f = kept_project("kept_crash");
    apply_ok(&f);
    // A postmaster.pid naming a live process that is no postgres of this folder (a reused pid):
    // not "running for kept databases", and postgres starts anyway.
    let data = kept_dir(&f).join("data");
    std::fs::write(
        data.join("postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), data.display()),
    )
    .unwrap();
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && !c.initdb, "{c:?}\n{said}");
    // It was running when the machine went down (another boot): with fsync off, made again.
    std::fs::write(kept_dir(&f).join("running"), "another-boot\n").unwrap();
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && c.initdb, "{c:?}");
    assert!(
        said.contains("made again: it was running when the machine went down"),
        "{said}"
    );
    assert!(s.prepared);
    f.assert_clean();
    assert!(
        !kept_dir(&f).join("running").exists(),
        "a clean stop removes the marker"
    );
}

#[test]
fn cluster_remove_is_refused_while_a_run_uses_it_or_it_holds_kept_databases() {
    let f = kept_project("kept_rm");
    apply_ok(&f);
    // A run that holds the cluster until the test lets it go.
    f.write(
        "tests/test_one.py",
        "import os, time\n\ndef test_waits():\n    go = os.path.join(os.environ['ROOT'], 'go')\n    deadline = time.monotonic() + 120\n    while not os.path.exists(go):\n        assert time.monotonic() < deadline, 'never let go'\n        time.sleep(0.05)\n",
    );
    f.edit_plan(&[
        (
            "HAS_SERVER = \"0\"",
            "HAS_SERVER = \"0\", ROOT = \"{root}\"",
        ),
        ("keep = \"never\"", "keep = \"failed\""),
    ]);
    let mut run = start_and_wait(&f, &["test_one"]);
    let rm = f.run(&["cluster", "remove", "plan.toml"]);
    std::fs::write(f.root().join("go"), "").unwrap();
    assert_eq!(wait_exit(&mut run, Duration::from_secs(120)), Some(0));
    assert_ne!(code(&rm), 0, "{}", stdout(&rm));
    assert!(
        stderr(&rm).contains("a run of this checkout is using the kept cluster"),
        "{}",
        stderr(&rm)
    );
    assert!(
        kept_dir(&f).join("complete").exists(),
        "the cluster is still there"
    );

    // A failing file keeps its database: the cluster keeps running for it, and is not removed.
    f.failing_test("test_two");
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(f.summary().kept_databases.len(), 1);
    let rm = f.run(&["cluster", "remove", "plan.toml"]);
    assert_ne!(code(&rm), 0, "{}", stdout(&rm));
    assert!(
        stderr(&rm).contains("the kept cluster is still running from an earlier run"),
        "{}",
        stderr(&rm)
    );
    assert!(kept_dir(&f).join("complete").exists());
    // rollback drops the kept database and stops the cluster; then it may go.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    let rm = f.run(&["cluster", "remove", "plan.toml"]);
    assert_eq!(code(&rm), 0, "{}{}", stdout(&rm), stderr(&rm));
    assert!(!kept_dir(&f).exists());
    f.assert_clean();
}

#[test]
fn a_kept_cluster_of_another_major_version_or_that_will_not_start_is_made_again() {
    let f = kept_project("kept_remake");
    apply_ok(&f);
    let data = kept_dir(&f).join("data");
    // As a PostgreSQL 14 would have left it: its marker and the folder's own version file
    // (which PostgreSQL 15 refuses to start).
    std::fs::write(kept_dir(&f).join("complete"), "14\n").unwrap();
    std::fs::write(data.join("PG_VERSION"), "14\n").unwrap();
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && c.initdb, "{c:?}");
    assert!(
        said.contains("made again: it was made by PostgreSQL 14"),
        "{said}"
    );
    assert!(s.prepared, "a new cluster prepares its template again");
    assert_eq!(
        std::fs::read_to_string(data.join("PG_VERSION"))
            .unwrap()
            .trim(),
        std::fs::read_to_string(kept_dir(&f).join("complete"))
            .unwrap()
            .trim()
    );
    f.assert_clean();
    // A folder that will not start (its control file lost).
    std::fs::remove_file(data.join("global/pg_control")).unwrap();
    let (s, said) = apply_ok(&f);
    let c = s.cluster.unwrap();
    assert!(c.kept && c.initdb, "{c:?}");
    assert!(said.contains("made again: it did not start"), "{said}");
    assert!(data.join("global/pg_control").exists());
    f.assert_clean();
    // And the remade cluster is whole: the next run starts it as it is.
    let (s, said) = apply_ok(&f);
    assert!(!s.cluster.unwrap().initdb, "{said}");
    f.assert_clean();
}
