//! A FastAPI suite on TestClient as `init` leaves it (tests/fixtures/fastapi: settings reading
//! DATABASE_URL at import, alembic migrations, tests driving the app in-process): every file runs
//! in its own migrated copy of the template (asserted from PostgreSQL), with no server per worker.

use crate::common::*;

/// `source:name` of the items in database `db`, in the order they were written.
fn items(db: &str) -> Vec<String> {
    psql_in(db, "select source || ':' || name from items order by id")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn init_on_a_fastapi_testclient_project_runs_every_file_in_its_clone_with_no_server() {
    let venv = venv("fastapi-venv", "tests/fixtures/fastapi/requirements.txt");
    let f = project_copy("fastapi_init", "fastapi", &venv);
    let out = f.run(&["init"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let plan = std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap();
    insta::assert_snapshot!("fastapi_init_plan", plan);
    insta::assert_snapshot!("fastapi_init_said", stdout(&out));
    // In-process: no [server] block, not even a commented one, and init says why.
    assert!(
        !plan.contains("\n[server]") && !plan.contains("\n# [server]"),
        "{plan}"
    );
    assert!(
        stdout(&out).contains("server:  none per worker (tests drive the app in-process"),
        "{}",
        stdout(&out)
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
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let mut files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "tests/api/test_search.py",
            "tests/test_items.py",
            "tests/test_stats.py"
        ]
    );
    assert!(s.workers.iter().all(|w| w.verdict == Verdict::Pass));
    let passed: usize = s
        .workers
        .iter()
        .map(|w| w.counts.as_ref().map_or(0, |c| c.passed))
        .sum();
    assert_eq!(passed, 7, "every test of every file ran");
    // No worker started a server: its phases go from the clone straight to the tests.
    for w in &s.workers {
        let phases: Vec<Phase> = w
            .attempts
            .iter()
            .flat_map(|a| a.phases.iter().map(|p| p.phase))
            .collect();
        assert!(!phases.contains(&Phase::Starting), "{}: {phases:?}", w.file);
        assert!(phases.contains(&Phase::Testing), "{}: {phases:?}", w.file);
    }
    assert!(s.unused_databases.is_empty(), "{:?}", s.unused_databases);

    // prepare ran alembic on the template: both migrations, and no rows.
    assert_eq!(
        psql_in(&f.template, "select version_num from alembic_version"),
        "0002"
    );
    assert_eq!(items(&f.template), Vec::<String>::new());
    // Each file's rows, written through the app, are in its worker's copy and only there.
    let expect = [
        (
            "tests/api/test_search.py",
            &[
                "test_search:red chair",
                "test_search:blue chair",
                "test_search:table",
            ][..],
        ),
        ("tests/test_items.py", &["test_items:kettle"][..]),
        (
            "tests/test_stats.py",
            &["test_stats:mug", "test_stats:plate"][..],
        ),
    ];
    for (file, rows) in expect {
        let w = s.workers.iter().find(|w| w.file == file).unwrap();
        assert!(w.db_kept, "{file}");
        assert!(w.db_name.starts_with(&format!("{}_", f.template)), "{w:?}");
        assert_eq!(items(&w.db_name), rows, "{file} in {}", w.db_name);
    }

    let roll = f.run(&["rollback", plan_path]);
    assert_eq!(code(&roll), 0, "{}", stderr(&roll));
    f.assert_clean();
}
