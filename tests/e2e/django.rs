//! Django and in-process suites as `init` leaves them: every test file found the way Django lays
//! them out, the worker's copy of the template used as pytest-django's test database (asserted
//! from PostgreSQL), no server nobody calls, and a warning for a file that never used its copy.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The Python with Django, pytest-django and psycopg that `.ci/run` installs.
fn django_venv() -> PathBuf {
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/django-venv");
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run ./.ci/run once, or: python3 -m venv target/django-venv && target/django-venv/bin/pip install -r tests/fixtures/django/requirements.txt",
        v.display()
    );
    v
}

/// The fixture project (tests/fixtures/django) in a fresh folder, its `.venv` the Django venv.
fn django_project(name: &str) -> Fixture {
    let f = Fixture::new(name);
    // The harness's own fixture files are not part of this project.
    std::fs::remove_file(f.root().join("server.py")).unwrap();
    std::fs::remove_dir_all(f.root().join("tests")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/django");
    for e in walkdir::WalkDir::new(&src) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&src).unwrap();
        if e.file_type().is_file() {
            f.write(
                rel.to_str().unwrap(),
                &std::fs::read_to_string(e.path()).unwrap(),
            );
        }
    }
    std::os::unix::fs::symlink(django_venv(), f.root().join(".venv")).unwrap();
    f
}

fn kept_rows(db: &str) -> Vec<String> {
    psql_in(db, "select text from notes_note order by id")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn init_on_a_django_project_runs_every_file_in_its_clone_with_no_server() {
    let f = django_project("django_init");
    let out = f.run(&["init"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let plan = std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap();
    insta::assert_snapshot!("django_init_plan", plan);
    insta::assert_snapshot!("django_init_said", stdout(&out));
    // The override went into a new root conftest.py, exactly the block.
    assert_eq!(
        std::fs::read_to_string(f.root().join("conftest.py")).unwrap(),
        e2e_plan::plan::init::CONFTEST_BLOCK
    );

    // A second init finds its own block and writes the same plan: nothing in it (its
    // DATABASE_URL included) reads as a test calling a server.
    std::fs::rename(
        f.root().join("plans/default.toml"),
        f.root().join("first.toml"),
    )
    .unwrap();
    let again = f.run(&["init"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap(),
        plan
    );
    assert!(
        stdout(&again).contains("conftest.py: has e2e-plan's django_db_setup override already"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        std::fs::read_to_string(f.root().join("conftest.py")).unwrap(),
        e2e_plan::plan::init::CONFTEST_BLOCK,
        "written once"
    );

    // Unedited, on the real server: every file passes in its own copy, kept for the checks.
    let plan_path = "plans/default.toml";
    let url = f.template_url();
    let out = f.run_env(
        &[
            "apply",
            plan_path,
            "--keep",
            "always",
            "--report-dir",
            "report",
        ],
        &[("E2E_DATABASE_URL", &url)],
    );
    let said = stdout(&out);
    assert_eq!(code(&out), 0, "{said}{}", stderr(&out));
    let s = f.summary();
    let mut files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "notes/tests/test_notes.py",
            "notes/tests/test_text.py",
            "tags/tests.py"
        ]
    );
    assert!(s.workers.iter().all(|w| w.verdict == Verdict::Pass));
    // The row the notes file committed outside its tests' transactions is in its worker's
    // copy: pytest-django used it, not a test_<name> database of its own.
    let notes = s
        .workers
        .iter()
        .find(|w| w.file == "notes/tests/test_notes.py")
        .unwrap();
    assert!(notes.db_kept);
    assert_eq!(kept_rows(&notes.db_name), ["notes.tests.test_notes"]);
    // The file that never touches the database is the one warned about, in both places.
    let text = s
        .workers
        .iter()
        .find(|w| w.file == "notes/tests/test_text.py")
        .unwrap();
    assert_eq!(
        s.unused_databases,
        [e2e_plan::model::UnusedDatabase {
            file: text.file.clone(),
            database: text.db_name.clone(),
        }]
    );
    assert!(
        said.contains(&format!(
            "warning: notes/tests/test_text.py never connected to its database {}",
            text.db_name
        )),
        "{said}"
    );
    assert!(
        !said.contains("warning: notes/tests/test_notes.py"),
        "{said}"
    );
    assert!(!said.contains("warning: tags/tests.py"), "{said}");
    assert_eq!(
        f.summary_json()["unused_databases"][0]["file"],
        "notes/tests/test_text.py"
    );
    let roll = f.run(&["rollback", plan_path]);
    assert_eq!(code(&roll), 0, "{}", stderr(&roll));

    // The project's own `pytest` is unchanged: without E2E_PLAN_DB pytest-django makes its
    // test_<name> database, and the template it names gets none of the rows.
    let py = f.root().join(".venv/bin/python");
    let own = std::process::Command::new(py)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "notes/tests/test_notes.py",
        ])
        .current_dir(f.root())
        .env("DATABASE_URL", &url)
        .env_remove("E2E_PLAN_DB")
        .env_remove("E2E_PLAN_RUN")
        .output()
        .unwrap();
    assert_eq!(code(&own), 0, "{}{}", stdout(&own), stderr(&own));
    assert_eq!(kept_rows(&f.template), Vec::<String>::new());
    assert_eq!(
        psql(&format!(
            "select count(*) from pg_database where datname = 'test_{}'",
            f.template
        )),
        "0",
        "pytest-django drops its own test database"
    );
    f.assert_clean();
}
