//! `[database] pool`: ready copies claimed by the next run, refilled after it, invalidated by a
//! changed fingerprint, shared safely by concurrent runs, and never half-made.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use rustix::process::{kill_process, Pid, Signal};

/// A fixture whose plan keeps a pool of `size` copies, fingerprinted by schema.sql.
fn pooled(name: &str, files: usize, size: usize) -> Fixture {
    let f = Fixture::new(name);
    for i in 0..files {
        f.rows_test(&format!("test_{i}"), 0.0);
    }
    f.write("schema.sql", "create table items (v text);\n");
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[(
        "keep = \"failed\"",
        &format!("keep = \"failed\"\nfingerprint = [\"schema.sql\"]\npool = {size}"),
    )]);
    f
}

/// The fixture's pooled copies (name, comment), oldest first.
fn pool(f: &Fixture) -> Vec<(String, String)> {
    psql(&format!(
        "select datname || '|' || coalesce(shobj_description(oid, 'pg_database'), '') from pg_database \
         where datname like '{}\\_pool\\_%' order by oid",
        f.template
    ))
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| {
        let (n, c) = l.split_once('|').unwrap();
        (n.to_string(), c.to_string())
    })
    .collect()
}

/// Every copy carries the template's current fingerprint and was created after the template
/// itself (a larger OID): none is a leftover of an earlier template.
fn copies_are_of_the_current_template(f: &Fixture, copies: &[(String, String)]) {
    let fingerprint = psql(&format!(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = '{}'",
        f.template
    ));
    let fp = fingerprint.strip_prefix("e2e-plan fingerprint ").unwrap();
    for (name, comment) in copies {
        assert_eq!(comment, &format!("e2e-plan pool of {} at {fp}", f.template));
        let newer = psql(&format!(
            "select (select oid from pg_database where datname = '{name}') > \
             (select oid from pg_database where datname = '{}')",
            f.template
        ));
        assert_eq!(newer, "t", "{name} is older than the template");
    }
}

/// Every copy left is a whole one (marked as the pool's), and no other database of the fixture is.
fn only_whole_copies_left(f: &Fixture) {
    let left = pool(f);
    assert!(
        left.iter().all(|(_, c)| c.starts_with("e2e-plan pool of ")),
        "a half-made copy survived: {left:?}"
    );
    let mut left = names(&left);
    left.sort();
    assert_eq!(f.worker_databases(), left);
}

fn names(copies: &[(String, String)]) -> Vec<String> {
    copies.iter().map(|(n, _)| n.clone()).collect()
}

fn apply_ok(f: &Fixture, extra: &[&str]) -> RunSummary {
    let mut args = vec!["apply", "plan.toml"];
    args.extend_from_slice(extra);
    let out = f.run(&args);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    f.summary()
}

/// Drains the pool through the product, then checks that nothing at all is left.
fn drain_and_check(f: &Fixture) {
    let out = f.run(&["pool", "drain", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(pool(f).is_empty(), "drain left {:?}", pool(f));
    f.assert_clean();
}

/// A session on the template: clones wait for it, claims do not.
fn block_template(f: &Fixture) -> std::process::Child {
    session_on_template(f, "blocker")
}

#[test]
fn a_warm_run_claims_pooled_copies_and_refills_the_pool() {
    let f = pooled("pool_warm", 3, 3);
    let first = apply_ok(&f, &[]);
    assert_eq!(first.databases.cloned, 3);
    assert_eq!(first.databases.from_pool, 0);
    let after_first = pool(&f);
    assert_eq!(after_first.len(), 3, "refilled to the pool size");
    assert!(
        after_first
            .iter()
            .all(|(_, c)| c.starts_with(&format!("e2e-plan pool of {} at ", f.template))),
        "{after_first:?}"
    );
    let status = f.run(&["pool", "status", "plan.toml"]);
    assert!(
        stdout(&status).contains("3 ready, 0 stale (size 3)"),
        "{}",
        stdout(&status)
    );
    // `rollback` is for runs; the pool is not a run's leftover.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    assert_eq!(pool(&f), after_first);

    // The tests check that each database is the prepared template, empty: a pooled copy is.
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("databases: 3 from the pool, 0 cloned"),
        "{}",
        stdout(&out)
    );
    let second = f.summary();
    assert_eq!(second.databases.from_pool, 3);
    assert_eq!(second.databases.cloned, 0);
    let claimed: Vec<String> = second.workers.iter().map(|w| w.db_name.clone()).collect();
    let after_second = pool(&f);
    assert_eq!(after_second.len(), 3);
    for old in names(&after_first) {
        assert!(
            !names(&after_second).contains(&old),
            "{old} was claimed, so it is gone"
        );
    }
    for db in &claimed {
        assert!(!names(&after_second).contains(db));
    }
    // Only pooled copies are left: every worker database was dropped.
    let mut left = names(&after_second);
    left.sort();
    assert_eq!(f.worker_databases(), left);
    drain_and_check(&f);
}

#[test]
fn a_changed_fingerprint_or_reprepare_makes_the_pool_stale() {
    let f = pooled("pool_stale", 2, 2);
    apply_ok(&f, &[]);
    let first = pool(&f);
    assert_eq!(first.len(), 2);

    f.write("schema.sql", "create table items (v text); -- changed\n");
    let status = f.run(&["pool", "status", "plan.toml"]);
    assert!(
        stdout(&status).contains("0 ready, 2 stale"),
        "{}",
        stdout(&status)
    );
    let s = apply_ok(&f, &[]);
    assert_eq!(s.databases.from_pool, 0, "stale copies are never used");
    let second = pool(&f);
    assert_eq!(second.len(), 2, "stale copies replaced: {second:?}");
    assert_ne!(first[0].1, second[0].1, "new fingerprint in the comment");
    copies_are_of_the_current_template(&f, &second);

    // --reprepare rebuilds the template with the same fingerprint: the copies are stale too.
    let s = apply_ok(&f, &["--reprepare"]);
    assert_eq!(s.databases.from_pool, 0);
    let third = pool(&f);
    assert_eq!(third.len(), 2);
    copies_are_of_the_current_template(&f, &third);
    drain_and_check(&f);
}

#[test]
fn concurrent_runs_never_claim_the_same_copy_and_keep_the_pool_size() {
    let f = pooled("pool_race", 2, 4);
    apply_ok(&f, &[]);
    let copies = pool(&f);
    assert_eq!(copies.len(), 4);
    let mut pooled_oids: Vec<String> = copies
        .iter()
        .map(|(n, _)| {
            psql(&format!(
                "select oid from pg_database where datname = '{n}'"
            ))
        })
        .collect();
    pooled_oids.sort();
    // Both runs' files wait for each other: the runs claim and test at the same time.
    let barrier = f.root().join("barrier");
    for stem in ["test_0", "test_1"] {
        barrier_test(&f, stem, &barrier, 4);
    }
    // A second plan on the same template, reporting elsewhere.
    let text = std::fs::read_to_string(f.root().join("plan.toml")).unwrap();
    f.write(
        "plan2.toml",
        &text.replace("dir = \"report\"", "dir = \"report2\""),
    );
    let spawn = |plan: &str| {
        f.cmd(&["apply", plan, "--format", "json"])
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("plan.toml"), spawn("plan2.toml"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stdout(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Two runs, four copies, two files each: every worker got a copy of its own.
        assert_eq!(s["databases"]["from_pool"], 2, "{s}");
    }
    // A claim renames a copy, which keeps its OID: the four files used the four pooled copies,
    // each exactly once.
    let marks = barrier_marks(&barrier);
    let mut used: Vec<String> = marks.iter().map(|(_, oid)| oid.clone()).collect();
    used.sort();
    assert_eq!(used, pooled_oids, "{marks:?} against the pool {copies:?}");
    // The refills took turns: the pool is exactly its size, not twice.
    assert_eq!(pool(&f).len(), 4, "{:?}", pool(&f));
    drain_and_check(&f);
}

#[test]
fn a_runner_killed_while_refilling_leaves_only_whole_copies() {
    let f = pooled("pool_kill", 2, 2);
    apply_ok(&f, &[]);
    assert_eq!(pool(&f).len(), 2);
    // The template's lock held: the refill's clones are surely in flight (server-side) when the
    // runner is killed, and run on without it.
    let (mut holder, app) = hold_template_lock(&f);
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let in_flight = format!(
        "select count(*) from pg_stat_activity where state = 'active' and query like 'CREATE DATABASE \"{}\\_pool\\_%'",
        f.template
    );
    let caught = poll(Duration::from_secs(60), || {
        (psql(&format!("{in_flight} and wait_event_type = 'Lock'")) != "0").then_some(())
    });
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    end_sessions(&app);
    holder.wait().unwrap();
    assert!(
        caught.is_some(),
        "never saw a refill clone waiting on the server"
    );
    // The clone runs on to its end without its client: a copy with no pool comment appears.
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains(&format!("undid database {}_pool_", f.template)),
        "rollback dropped the half-made copy: {}",
        stdout(&rb)
    );
    assert_eq!(
        psql(&in_flight),
        "0",
        "rollback waited for the clone in flight"
    );
    // Every copy left is a whole one, marked as the pool's, and no worker database is left.
    only_whole_copies_left(&f);
    drain_and_check(&f);
}

#[test]
fn a_pool_without_a_fingerprint_is_a_plan_error() {
    let f = Fixture::new("pool_nofp");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[("keep = \"failed\"", "keep = \"failed\"\npool = 4")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("a pool needs [database] fingerprint"), "{err}");
    assert!(err.contains("plan.toml:8:8"), "{err}");
    assert_eq!(
        psql(&format!(
            "select count(*) from pg_database where datname = '{}'",
            f.template
        )),
        "0"
    );
    f.assert_clean();
}

#[test]
fn dry_run_shows_the_pool() {
    let f = pooled("pool_dry", 1, 5);
    let out = f.run(&["dry-run", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("refill the pool to 5 ready copies"), "{text}");
    assert!(
        text.contains("or claim a ready copy from its pool"),
        "{text}"
    );
}

#[test]
fn a_smaller_pool_drops_its_surplus_and_an_empty_pool_falls_back_to_cloning() {
    let f = pooled("pool_size", 1, 3);
    apply_ok(&f, &[]);
    assert_eq!(pool(&f).len(), 3);
    f.edit_plan(&[("pool = 3", "pool = 1")]);
    let s = apply_ok(&f, &[]);
    assert_eq!(s.databases.from_pool, 1);
    assert_eq!(pool(&f).len(), 1, "the surplus was dropped: {:?}", pool(&f));
    // Three files, one ready copy: one claims it, the other two clone.
    f.rows_test("test_1", 0.0).rows_test("test_2", 0.0);
    let s = apply_ok(&f, &[]);
    assert_eq!(s.databases.from_pool, 1);
    assert_eq!(s.databases.cloned, 2);
    assert_eq!(pool(&f).len(), 1);
    drain_and_check(&f);
}

#[test]
fn ctrl_c_during_a_warm_run_leaves_only_the_pool() {
    let f = pooled("pool_sigint", 2, 2);
    apply_ok(&f, &[]);
    assert_eq!(pool(&f).len(), 2);
    f.hanging_test("test_hang");
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let testing = poll(Duration::from_secs(60), || {
        f.processes()
            .iter()
            .any(|p| p.contains("pytest") && p.contains("test_hang"))
            .then_some(())
    });
    assert!(testing.is_some(), "the hanging file never started");
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    let exited = poll(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().map(|s| s.code())
    });
    assert_eq!(exited, Some(Some(130)));
    let s = f.summary();
    assert!(s.interrupted);
    // The claimed and cloned databases are gone; whatever the refill finished is whole.
    only_whole_copies_left(&f);
    drain_and_check(&f);
}

#[test]
fn a_refill_that_fails_is_a_warning_not_a_failed_run() {
    let f = pooled("pool_refill_fails", 1, 1);
    f.edit_plan(&[("pool = 1", "pool = 1\nbusy_timeout = \"1s\"")]);
    apply_ok(&f, &[]);
    assert_eq!(pool(&f).len(), 1);
    // A session on the template: the claim does not need the template, the refill's clone does.
    let mut blocker = block_template(&f);
    let out = f.run(&["apply", "plan.toml"]);
    kill_process(Pid::from_raw(blocker.id() as i32).unwrap(), Signal::TERM).unwrap();
    let _ = blocker.wait();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("could not refill the pool"),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.summary().databases.from_pool, 1);
    // The failed clone left nothing, not even a journal entry for rollback.
    assert!(pool(&f).is_empty(), "{:?}", pool(&f));
    let journals = std::fs::read_dir(f.root().join(".e2e-plan/runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(journals, 0, "nothing pending in the journal");
    drain_and_check(&f);
}
