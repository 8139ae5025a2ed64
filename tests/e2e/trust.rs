//! Never silently wrong: shards that cover every file once (and a `merge` that says when they do
//! not), templates rebuilt from nothing when their inputs change, environments for setup and
//! prepare, logs of kept databases that outlive the next run, and a run that says what really
//! happened. Against the real PostgreSQL and real pytest.

use std::collections::BTreeSet;

use crate::common::*;

/// The files a run's summary lists.
fn files_run(s: &serde_json::Value) -> Vec<String> {
    s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["file"].as_str().unwrap().to_string())
        .collect()
}

fn summary_at(f: &Fixture, dir: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(f.root().join(dir).join("summary.json"))
        .unwrap_or_else(|e| panic!("{dir}/summary.json: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn write_timings(f: &Fixture, secs: &[(&str, f64)]) {
    let files: Vec<String> = secs
        .iter()
        .map(|(file, s)| format!("\"tests/{file}.py\": {{\"secs\": {s:?}, \"runs\": 1}}"))
        .collect();
    f.write(
        ".e2e-plan/timings.json",
        &format!("{{\"files\": {{{}}}}}", files.join(", ")),
    );
}

#[test]
fn shards_applied_in_turn_cover_every_file_once() {
    let f = five_files("shardturn");
    // Timings under which the split changes as soon as one shard's real (short) durations are
    // folded in: a shard that updated them would hand its successors another split.
    write_timings(
        &f,
        &[
            ("test_a", 10.0),
            ("test_b", 9.0),
            ("test_c", 8.0),
            ("test_d", 2.0),
            ("test_e", 1.0),
        ],
    );
    let before = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    let mut seen = Vec::new();
    for k in 1..=3 {
        let dir = format!("out/{k}");
        let out = f.run(&[
            "apply",
            "plan.toml",
            "--shard",
            &format!("{k}/3"),
            "--report-dir",
            &dir,
        ]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let s = summary_at(&f, &dir);
        assert_eq!(s["shard"]["index"], k);
        seen.extend(files_run(&s));
    }
    seen.sort();
    let all: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|x| format!("tests/test_{x}.py"))
        .collect();
    assert_eq!(seen, all, "every file in exactly one shard");
    let after = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    assert_eq!(
        before, after,
        "sharded runs leave the timings snapshot alone"
    );
    assert!(
        !f.root().join("report").exists(),
        "--report-dir replaced [report] dir for these runs"
    );

    let merged = f.run(&[
        "merge",
        "-o",
        "merged.xml",
        "out/1/junit.xml",
        "out/2/junit.xml",
        "out/3/junit.xml",
    ]);
    assert_eq!(code(&merged), 0, "{}", stderr(&merged));
    let xml = std::fs::read_to_string(f.root().join("merged.xml")).unwrap();
    assert!(xml.contains("tests=\"5\""), "{xml}");
    assert!(
        !xml.contains("e2e-plan.split"),
        "shard records are not copied: {xml}"
    );

    // The explicit step: merge folds the shards' durations into the snapshot.
    let folded = f.run(&[
        "merge",
        "-o",
        "merged.xml",
        "--timings",
        ".e2e-plan/timings.json",
        "out/1/junit.xml",
        "out/2/junit.xml",
        "out/3/junit.xml",
    ]);
    assert_eq!(code(&folded), 0, "{}", stderr(&folded));
    let timings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap(),
    )
    .unwrap();
    for x in ["a", "b", "c", "d", "e"] {
        let t = &timings["files"][format!("tests/test_{x}.py")];
        assert_eq!(t["runs"], 2, "{timings}");
    }
    // An unsharded run updates the snapshot itself.
    let before = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 0);
    let updated = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    assert_ne!(before, updated);
    f.assert_clean();
}

#[test]
fn merge_refuses_shards_of_different_splits_and_names_the_files() {
    let f = five_files("shardsplit");
    write_timings(
        &f,
        &[
            ("test_a", 10.0),
            ("test_b", 9.0),
            ("test_c", 8.0),
            ("test_d", 2.0),
            ("test_e", 1.0),
        ],
    );
    let one = f.run(&[
        "apply",
        "plan.toml",
        "--shard",
        "1/2",
        "--report-dir",
        "out/1",
    ]);
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    // The second runner saw other timings: another split.
    write_timings(
        &f,
        &[
            ("test_a", 1.0),
            ("test_b", 2.0),
            ("test_c", 3.0),
            ("test_d", 9.0),
            ("test_e", 10.0),
        ],
    );
    let two = f.run(&[
        "apply",
        "plan.toml",
        "--shard",
        "2/2",
        "--report-dir",
        "out/2",
    ]);
    assert_eq!(code(&two), 0, "{}", stderr(&two));
    let ran: Vec<String> = [summary_at(&f, "out/1"), summary_at(&f, "out/2")]
        .iter()
        .flat_map(files_run)
        .collect();
    let distinct: BTreeSet<&String> = ran.iter().collect();
    assert!(
        distinct.len() < 5 || ran.len() != 5,
        "the two splits must really differ for this test: {ran:?}"
    );

    let out = f.run(&[
        "merge",
        "-o",
        "merged.xml",
        "out/1/junit.xml",
        "out/2/junit.xml",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("different splits"), "{err}");
    for file in ["a", "b", "c", "d", "e"] {
        let path = format!("tests/test_{file}.py");
        let twice = ran.iter().filter(|r| **r == path).count() > 1;
        let never = !ran.contains(&path);
        if twice {
            assert!(err.contains(&format!("{path} ran in 2 shards")), "{err}");
        }
        if never {
            assert!(err.contains(&format!("{path} ran in no shard")), "{err}");
        }
    }
    assert!(!f.root().join("merged.xml").exists(), "nothing written");
    let anyway = f.run(&[
        "merge",
        "-o",
        "merged.xml",
        "--allow-partial",
        "out/1/junit.xml",
        "out/2/junit.xml",
    ]);
    assert_eq!(code(&anyway), 0, "{}", stderr(&anyway));
    f.assert_clean();
}

/// A project like a real one: migrations applied by a tool that records what it applied (as
/// alembic does), settings read from POSTGRES_* variables, and a test that checks the schema.
fn migrations_project(name: &str) -> Fixture {
    let f = Fixture::new(name);
    let py = python().display().to_string();
    f.write(
        "migrate.py",
        r#""""Applies migrations/*.sql in order, once each, recording them in schema_migrations."""
import os, pathlib, subprocess, sys

env = dict(os.environ, PGHOST=os.environ["POSTGRES_HOST"], PGPORT=os.environ["POSTGRES_PORT"],
           PGUSER=os.environ["POSTGRES_USER"], PGDATABASE=os.environ["POSTGRES_DB"])

def psql(sql):
    out = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-Atqc", sql], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("migration failed: " + out.stderr.strip())
    return out.stdout

psql("create table if not exists schema_migrations (name text primary key)")
applied = set(psql("select name from schema_migrations").split())
for m in sorted(pathlib.Path("migrations").glob("*.sql")):
    if m.name in applied:
        print(f"{m.name}: already applied", flush=True)
        continue
    print(f"applying {m.name}", flush=True)
    psql(m.read_text() + f"; insert into schema_migrations values ('{m.name}')")
"#,
    );
    f.write(
        "tests/conftest.py",
        r#"import os, subprocess
import pytest

@pytest.fixture(scope="session")
def db():
    env = dict(os.environ, PGHOST=os.environ["POSTGRES_HOST"], PGPORT=os.environ["POSTGRES_PORT"],
               PGUSER=os.environ["POSTGRES_USER"], PGDATABASE=os.environ["POSTGRES_DB"])
    def run(sql):
        return subprocess.run(["psql", "-Atqc", sql], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
    return run
"#,
    );
    f.write(
        "tests/test_schema.py",
        r#"def test_schema_matches_the_migrations(db):
    expected = open("expected_columns.txt").read().split()
    got = db("select string_agg(column_name, ' ' order by column_name) from information_schema.columns where table_name = 'items'")
    assert got.split() == expected
"#,
    );
    f.write("migrations/001_items.sql", "create table items (v text);\n");
    f.write("expected_columns.txt", "v\n");
    let pg_env = "{ POSTGRES_HOST = \"127.0.0.1\", POSTGRES_PORT = \"5432\", POSTGRES_USER = \"postgres\", POSTGRES_DB = \"{db_name}\" }";
    f.write(
        "plan.toml",
        &format!(
            r#"[tests]
include = ["tests/test_*.py"]

[database]
template = "{url}"
prepare = ["{py} migrate.py"]
env = {pg_env}
fingerprint = ["migrations/**"]

[test]
command = ["{py}", "-m", "pytest", "{{file}}", "-q", "-p", "no:cacheprovider", "--junitxml={{junit}}"]
env = {pg_env}

[report]
dir = "report"
"#,
            url = f.template_url(),
        ),
    );
    f
}

fn template_comment(f: &Fixture) -> String {
    psql(&format!(
        "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '{}'",
        f.template
    ))
}

#[test]
fn an_edited_migration_rebuilds_the_template_from_nothing() {
    let f = migrations_project("rebuild");
    let first = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&first), 0, "{}{}", stdout(&first), stderr(&first));
    // The migration that was already applied is edited, as happens during development.
    f.write(
        "migrations/001_items.sql",
        "create table items (v text, w text);\n",
    );
    f.write("expected_columns.txt", "v w\n");
    let second = f.run(&["apply", "plan.toml"]);
    assert_eq!(
        code(&second),
        0,
        "the tests saw the old schema:\n{}{}",
        stdout(&second),
        stderr(&second)
    );
    assert!(
        stderr(&second).contains("in a fresh database"),
        "{}",
        stderr(&second)
    );
    let prepare_log = std::fs::read_to_string(f.root().join("report/prepare.log")).unwrap();
    assert!(
        prepare_log.contains("applying 001_items.sql"),
        "{prepare_log}"
    );
    // --reprepare rebuilds from nothing too (an in-place prepare would say "already applied").
    let forced = f.run(&["apply", "plan.toml", "--reprepare"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    let prepare_log = std::fs::read_to_string(f.root().join("report/prepare.log")).unwrap();
    assert!(!prepare_log.contains("already applied"), "{prepare_log}");
    f.assert_clean();
}

#[test]
fn a_failed_rebuild_leaves_the_old_template_and_fingerprint() {
    let f = migrations_project("rebuildfail");
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 0);
    let good = template_comment(&f);
    assert!(good.starts_with("e2e-plan fingerprint "), "{good}");
    f.write(
        "migrations/002_broken.sql",
        "alter table no_such_table add column x int;\n",
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("no_such_table") || stderr(&out).contains("no_such_table"),
        "the command's output tail is shown:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(template_comment(&f), good, "the old fingerprint stays");
    // The old template is whole: the schema the tests expect is still there.
    assert_eq!(
        psql_in(
            &f.template,
            "select string_agg(column_name, ' ' order by column_name) from information_schema.columns where table_name = 'items'"
        ),
        "v"
    );
    assert_eq!(
        psql_in(
            &f.template,
            "select string_agg(name, ' ' order by name) from schema_migrations"
        ),
        "001_items.sql"
    );
    std::fs::remove_file(f.root().join("migrations/002_broken.sql")).unwrap();
    let again = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("matches: prepare skipped"),
        "{}",
        stderr(&again)
    );
    f.assert_clean();
}

#[test]
fn setup_and_prepare_take_an_environment() {
    let f = Fixture::new("setupenv");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[(
        "[database]",
        "[[setup]]\ncommand = [\"sh\", \"-c\", \"echo $GREETING > setup-out.txt\"]\nenv = { GREETING = \"hello from {run}\" }\n\n[database]\nenv = { TABLE_NAME = \"items\", TARGET = \"{db_name}\" }",
    ), (
        "prepare = [[\"psql\", \"{db_url}\", \"-qc\", \"create table if not exists items (v text)\"]]",
        "prepare = [[\"sh\", \"-c\", \"psql -d \\\"$DATABASE_URL\\\" -qc \\\"create table if not exists $TABLE_NAME (v text)\\\" && echo $TARGET > prepared-in.txt\"]]",
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let run_id = f.summary().run_id;
    let greeting = std::fs::read_to_string(f.root().join("setup-out.txt")).unwrap();
    assert_eq!(greeting.trim(), format!("hello from {run_id}"));
    let target = std::fs::read_to_string(f.root().join("prepared-in.txt")).unwrap();
    assert_eq!(
        target.trim(),
        f.template,
        "without a fingerprint, prepare runs in the template"
    );
    f.assert_clean();
}

#[test]
fn an_environment_prefix_in_a_command_is_refused_by_every_command() {
    let f = migrations_project("envprefix");
    f.edit_plan(&[("prepare = [\"", "prepare = [\"POSTGRES_DB={db_name} ")]);
    for args in [
        ["validate", "plan.toml"],
        ["dry-run", "plan.toml"],
        ["apply", "plan.toml"],
    ] {
        let out = f.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}{}", stdout(&out), stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("`POSTGRES_DB=…` at the start of a command"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("plan.toml:6:13"),
            "{args:?}: line and column: {err}"
        );
        assert!(err.contains("env = { POSTGRES_DB"), "{args:?}: {err}");
    }
    assert_eq!(
        psql(&format!(
            "select count(*) from pg_database where datname = '{}'",
            f.template
        )),
        "0",
        "nothing was created"
    );
}

/// A plan with one failing file whose database is kept.
fn failing_project(name: &str) -> Fixture {
    let f = Fixture::new(name);
    f.rows_test("test_good", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f
}

#[test]
fn logs_of_a_kept_database_survive_the_next_run_until_rollback() {
    let f = failing_project("keptlogs");
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 1);
    let first = f.summary();
    let kept = &first.kept_databases[0];
    let logs = kept.log_dir.clone();
    let db = kept.name.clone();
    assert!(logs.join("test.log").exists(), "{}", logs.display());
    assert!(
        logs.starts_with(f.root().join("report/kept")),
        "{}",
        logs.display()
    );
    let bad = first
        .workers
        .iter()
        .find(|w| w.file == "tests/test_bad.py")
        .unwrap();
    assert_eq!(
        bad.log_dir.as_ref(),
        Some(&kept.log_dir),
        "the worker's row points at the same folder"
    );

    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1);
    assert!(
        logs.join("test.log").exists(),
        "the next run deleted the kept logs"
    );
    assert!(f.worker_databases().contains(&db));

    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    assert!(
        !logs.exists(),
        "rollback removes the logs with the database"
    );
    assert!(!f
        .root()
        .join("report/kept")
        .read_dir()
        .unwrap()
        .any(|_| true));
    f.assert_clean();
}

#[test]
fn rollback_says_when_a_kept_database_is_already_gone() {
    let f = failing_project("gone");
    assert_eq!(code(&f.run(&["apply", "plan.toml"])), 1);
    let db = f.summary().kept_databases[0].name.clone();
    drop_database(&db);
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}", stderr(&rb));
    let said = stdout(&rb);
    assert!(
        said.contains(&format!("database {db}: already gone")),
        "{said}"
    );
    assert!(!said.contains(&format!("undid database {db}")), "{said}");
    f.assert_clean();
}

#[test]
fn a_database_the_tests_dropped_is_not_claimed_as_kept() {
    let f = Fixture::new("selfdrop");
    f.write(
        "tests/test_drops.py",
        "import os, subprocess\n\ndef test_drops_its_own_database():\n    name = os.environ['DATABASE_URL'].rsplit('/', 1)[1]\n    subprocess.run(['psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-qc', f'drop database \"{name}\" with (force)'], check=True)\n    assert False, 'failed after dropping its database'\n",
    );
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    assert!(s.kept_databases.is_empty(), "{s:?}");
    assert!(!stdout(&out).contains("kept database"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no longer exists"),
        "{}",
        stderr(&out)
    );
    f.assert_clean();
}

#[test]
fn files_that_never_started_show_no_log_paths_and_the_run_says_what_its_time_leaves_out() {
    let f = Fixture::new("notstarted");
    f.failing_test("test_a_fails");
    f.rows_test("test_b", 0.0).rows_test("test_c", 0.0);
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        run: "jobs = 1\nfail_fast = true",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    // The JSON itself: a file that never started has null log paths, not made-up ones.
    let s = f.summary_json();
    let never: Vec<&serde_json::Value> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["message"] == "not started")
        .collect();
    assert!(
        !never.is_empty(),
        "fail-fast with one job leaves files unstarted: {s}"
    );
    for w in never {
        for key in ["log_dir", "server_log", "test_log", "junit"] {
            assert!(w[key].is_null(), "{key} of a file that never started: {w}");
        }
        let stem = w["stem"].as_str().unwrap();
        assert!(
            !stdout(&out).contains(&format!("workers/{stem}")),
            "{}",
            stdout(&out)
        );
    }
    let err = stderr(&out);
    assert!(
        err.contains("done: the cleanup after the summary took"),
        "{err}"
    );
    f.assert_clean();
}

#[test]
fn a_per_worker_pytest_cache_keeps_each_files_cache_apart() {
    let f = Fixture::new("pycache");
    f.write(
        "tests/conftest.py",
        "import os\nimport pytest\n\n@pytest.fixture(scope='session', autouse=True)\ndef remember(request):\n    request.config.cache.set('e2e/file', os.environ['TEST_FILE'])\n",
    );
    for stem in ["test_x", "test_y", "test_z"] {
        f.write(&format!("tests/{stem}.py"), "def test_ok():\n    pass\n");
    }
    f.plan(PlanOpts {
        server: false,
        keep: "always",
        ..Default::default()
    });
    f.edit_plan(&[
        (
            "\"-p\", \"no:cacheprovider\"",
            "\"-o\", \"cache_dir={log_dir}/.pytest_cache\"",
        ),
        ("HAS_SERVER = ", "TEST_FILE = \"{file}\", HAS_SERVER = "),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        !f.root().join(".pytest_cache").exists(),
        "no shared cache in root"
    );
    let s = f.summary();
    for w in &s.workers {
        let dir = w.log_dir.clone().unwrap();
        let cached = std::fs::read_to_string(dir.join(".pytest_cache/v/e2e/file"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(cached.trim(), format!("\"{}\"", w.file));
    }
    assert_eq!(code(&f.run(&["rollback", "plan.toml"])), 0);
    f.assert_clean();
}
