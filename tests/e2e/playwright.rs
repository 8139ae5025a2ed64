//! A Playwright suite as `init` leaves it (tests/fixtures/playwright: a server script reading
//! PORT and DATABASE_URL, migrate.py, pytest-playwright tests driving `os.environ["BASE_URL"]` in
//! Debian's /usr/bin/chromium): a server per worker on its own port and its own migrated copy
//! (asserted from PostgreSQL), and no browser or server left afterwards.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// `text@port` of the notes in database `db`, in the order they were written.
fn notes(db: &str) -> Vec<String> {
    psql_in(db, "select text || '@' || port from notes order by id")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn init_on_a_playwright_project_starts_a_server_per_worker_on_its_clone() {
    let venv = venv("browser-venv", "examples/notes/requirements-browser.txt");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: apt-get install chromium"
    );
    let f = project_copy("pw_init", "playwright", &venv);
    let out = f.run(&["init"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let plan = std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap();
    insta::assert_snapshot!("playwright_init_plan", plan);
    insta::assert_snapshot!("playwright_init_said", stdout(&out));
    // The script that serves on $PORT, started with its port and its database, and the tests
    // pointed at it.
    assert!(
        plan.contains(
            "\n[server]\ncommand = [\".venv/bin/python\", \"app.py\"]\nenv = { PORT = \"{port}\", DATABASE_URL = \"{db_url}\" }\n"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("BASE_URL = \"http://127.0.0.1:{port}\""),
        "{plan}"
    );

    // Unedited, on the real server, kept for the checks. Its output goes to files: the test
    // watches for the browsers while it runs.
    let plan_path = "plans/default.toml";
    let url = f.template_url();
    let logs = tempfile::tempdir().unwrap();
    let mut child = f
        .cmd(&[
            "apply",
            plan_path,
            "--keep",
            "always",
            "--report-dir",
            "report",
        ])
        .env("E2E_DATABASE_URL", &url)
        .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    // A Chromium really runs, and is seen by the check for leftovers below.
    let seen = poll(Duration::from_secs(60), || {
        working_in(&f)
            .iter()
            .any(|p| p.contains("chromium"))
            .then_some(())
    });
    let exit = wait_exit(&mut child, Duration::from_secs(120));
    let said = std::fs::read_to_string(logs.path().join("out")).unwrap()
        + &std::fs::read_to_string(logs.path().join("err")).unwrap();
    assert!(seen.is_some(), "no Chromium ever ran: {said}");
    assert_eq!(exit, Some(0), "{said}");

    let s = f.summary();
    let mut files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    files.sort();
    assert_eq!(
        files,
        ["tests/test_add_note.py", "tests/test_list_notes.py"]
    );
    assert!(
        s.workers.iter().all(|w| w.verdict == Verdict::Pass),
        "{said}"
    );
    assert!(s.unused_databases.is_empty(), "{:?}", s.unused_databases);
    // prepare ran migrate.py on the template, which no test wrote to.
    assert_eq!(notes(&f.template), Vec::<String>::new());
    let expect = [
        ("tests/test_add_note.py", &["from test_add_note"][..]),
        (
            "tests/test_list_notes.py",
            &["first from test_list_notes", "second from test_list_notes"][..],
        ),
    ];
    let mut ports = Vec::new();
    for (file, texts) in expect {
        let w = s.workers.iter().find(|w| w.file == file).unwrap();
        // Its own server was started, on its own port...
        let phases: Vec<Phase> = w
            .attempts
            .iter()
            .flat_map(|a| a.phases.iter().map(|p| p.phase))
            .collect();
        assert!(phases.contains(&Phase::Starting), "{file}: {phases:?}");
        let port = w.port.expect("a worker with a server has a port");
        ports.push(port);
        let log = std::fs::read_to_string(w.server_log.as_ref().unwrap()).unwrap();
        assert!(log.contains(&format!("notes on 127.0.0.1:{port}")), "{log}");
        // ...and the notes the browser added through it are in the worker's copy, written by
        // that server (its port in each row), and nowhere else.
        assert!(w.db_kept, "{file}");
        assert!(w.db_name.starts_with(&format!("{}_", f.template)), "{w:?}");
        let want: Vec<String> = texts.iter().map(|t| format!("{t}@{port}")).collect();
        assert_eq!(notes(&w.db_name), want, "{file} in {}", w.db_name);
    }
    assert_ne!(
        ports[0], ports[1],
        "a server per worker, on a port of its own"
    );

    let roll = f.run(&["rollback", plan_path]);
    assert_eq!(code(&roll), 0, "{}", stderr(&roll));
    // No browser, server or test process left (Chromium's command line does not name the
    // folder, so assert_clean alone would not see one).
    let gone = poll(Duration::from_secs(10), || {
        working_in(&f).is_empty().then_some(())
    });
    assert!(gone.is_some(), "left behind: {:#?}", working_in(&f));
    f.assert_clean();
}
