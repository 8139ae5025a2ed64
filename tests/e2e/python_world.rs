//! Fitting a Python team's world: `init` on repositories of each kind, `--shard auto` on every
//! CI, `--timings` from a JUnit file, and a CLI that behaves as clap users expect.

use crate::common::*;

/// Writes files into the fixture; `init` runs in its root.
fn repo(name: &str, files: &[(&str, &str)]) -> Fixture {
    let f = Fixture::new(name);
    // The harness's own fixture files are not part of these repositories.
    let _ = std::fs::remove_file(f.root().join("server.py"));
    let _ = std::fs::remove_file(f.root().join("tests/conftest.py"));
    for (path, text) in files {
        f.write(path, text);
    }
    f
}

/// `init`, then the written plan must validate and dry-run without edits.
fn init_and_check(f: &Fixture) -> (String, String) {
    let out = f.run(&["init"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let plan = std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap();
    let mut validated = String::new();
    for args in [&["validate"][..], &["dry-run"][..]] {
        let o = f.cmd(args).env_remove("E2E_DATABASE_URL").output().unwrap();
        assert_eq!(code(&o), 0, "{args:?}:\n{plan}\n{}", stderr(&o));
        if args == ["validate"] {
            validated = stdout(&o);
        }
    }
    // The plan's comment says the local cluster that `validate` says it gets.
    let kept = validated.contains("a local cluster kept between runs");
    assert!(
        kept || validated.contains("a throwaway local cluster every run"),
        "{validated}"
    );
    assert_eq!(
        plan.contains("kept between runs"),
        kept,
        "{plan}\n{validated}"
    );
    assert_eq!(plan.contains("throwaway"), !kept, "{plan}\n{validated}");
    // Never over an existing plan.
    let again = f.run(&["init"]);
    assert_eq!(code(&again), 2);
    assert!(
        stderr(&again).contains("init never overwrites a plan"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(f.root().join("plans/default.toml")).unwrap(),
        plan
    );
    (plan, stdout(&out))
}

#[test]
fn init_on_an_alembic_fastapi_project() {
    let f = repo(
        "init_alembic",
        &[
            (
                "alembic.ini",
                "[alembic]\nscript_location = %(here)s/migrations\n",
            ),
            ("migrations/env.py", "# alembic env\n"),
            ("migrations/versions/001_items.py", "# a migration\n"),
            (
                "app/main.py",
                "from fastapi import FastAPI\napp = FastAPI()\n",
            ),
            (
                "tests/e2e/test_items.py",
                "import os\n\ndef test_items(page):\n    page.goto(os.environ['BASE_URL'] + '/items')\n",
            ),
            ("tests/unit/test_models.py", "def test_model():\n    pass\n"),
        ],
    );
    let (plan, said) = init_and_check(&f);
    insta::assert_snapshot!("init_alembic_plan", plan);
    insta::assert_snapshot!("init_alembic_said", said);
}

#[test]
fn init_on_a_django_project() {
    let f = repo(
        "init_django",
        &[
            ("manage.py", "#!/usr/bin/env python\n"),
            // Two testpaths, the second on a continuation line, as ini files allow.
            (
                "pytest.ini",
                "[pytest]\ntestpaths =\n    functional\n    shop\n",
            ),
            // Django's runner finds an app's tests.py; pytest's default python_files do not.
            ("shop/tests.py", "def test_shop():\n    pass\n"),
            ("shop/migrations/__init__.py", ""),
            ("shop/migrations/0001_initial.py", "# a migration\n"),
            (
                "functional/test_checkout.py",
                "def test_checkout():\n    pass\n",
            ),
            (".venv/bin/python", ""),
        ],
    );
    let (plan, said) = init_and_check(&f);
    insta::assert_snapshot!("init_django_plan", plan);
    insta::assert_snapshot!("init_django_said", said);
}

#[test]
fn init_on_a_fastapi_testclient_project() {
    let f = repo(
        "init_testclient",
        &[
            (
                "pyproject.toml",
                "[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\npython_files = [\"test_*.py\", \"check_*.py\"]\n",
            ),
            (
                "app.py",
                "from fastapi import FastAPI\napp = FastAPI()\n",
            ),
            (
                "tests/test_api.py",
                "from fastapi.testclient import TestClient\nfrom app import app\n\ndef test_api():\n    assert TestClient(app).get('/').status_code == 404\n",
            ),
            ("tests/api/check_items.py", "def test_items():\n    pass\n"),
            // A virtualenv inside testpaths: pytest does not look there, nor does the plan.
            ("tests/venv/lib/test_vendored.py", "def test_x():\n    pass\n"),
            // Outside testpaths: left out, as pytest leaves it.
            ("scripts/test_script.py", "def test_s():\n    pass\n"),
        ],
    );
    let (plan, said) = init_and_check(&f);
    insta::assert_snapshot!("init_testclient_plan", plan);
    insta::assert_snapshot!("init_testclient_said", said);
    let out = f
        .cmd(&["dry-run", "--format", "json"])
        .env_remove("E2E_DATABASE_URL")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut files: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["file"].as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["tests/api/check_items.py", "tests/test_api.py"]);
}

#[test]
fn init_proposes_services_from_compose_and_packing_for_many_small_files() {
    let mut files: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("tests/test_{i:02}.py"),
                "def test_a():\n    pass\n\ndef test_b():\n    pass\n".to_string(),
            )
        })
        .collect();
    files.push((
        "compose.yaml".into(),
        "services:\n  cache:\n    image: redis:7-alpine\n  bus:\n    image: \"nats:2.10\"\n  broker:\n    image: docker.io/library/rabbitmq:3-management\n  mail:\n    image: axllent/mailpit\n  db:\n    image: postgres:16\n".into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let f = repo("init_compose", &refs);
    let (plan, said) = init_and_check(&f);
    insta::assert_snapshot!("init_compose_plan", plan);
    insta::assert_snapshot!("init_compose_said", said);
}

#[test]
fn init_writes_a_server_only_for_tests_that_call_one() {
    // pytest-django's live_server: a server, but the test process starts it.
    let live = repo(
        "init_live",
        &[
            ("manage.py", "#!/usr/bin/env python\n"),
            (
                "shop/tests/test_live.py",
                "def test_home(live_server):\n    assert live_server.url\n",
            ),
        ],
    );
    let (plan, said) = init_and_check(&live);
    assert!(!plan.contains("[server]"), "{plan}");
    assert!(
        said.contains("server:  none per worker (shop/tests/test_live.py uses live_server"),
        "{said}"
    );
    // requests to localhost, and no app init can start: the block is there, commented.
    let calls = repo(
        "init_calls",
        &[(
            "tests/test_api.py",
            "import requests\n\ndef test_up():\n    requests.get('http://localhost:8000/')\n",
        )],
    );
    let (plan, said) = init_and_check(&calls);
    assert!(plan.contains("\n# [server]\n"), "{plan}");
    assert!(!plan.contains("\n[server]"), "{plan}");
    assert!(
        said.contains("server:  none found, but tests/test_api.py uses localhost"),
        "{said}"
    );
}

#[test]
fn init_starts_a_script_that_serves_on_port_and_only_such_a_script() {
    let test = (
        "tests/test_home.py",
        "import os, urllib.request\n\ndef test_home():\n    urllib.request.urlopen(os.environ['BASE_URL'])\n",
    );
    // A script run as a program, but not a server on $PORT: not the server.
    let tool = (
        "tools/export.py",
        "import sys\n\nif __name__ == \"__main__\":\n    print(sys.argv)\n",
    );
    let serve = (
        "web/serve.py",
        "import os\nfrom http.server import HTTPServer, SimpleHTTPRequestHandler\n\nif __name__ == '__main__':\n    HTTPServer(('127.0.0.1', int(os.getenv('PORT', '8000'))), SimpleHTTPRequestHandler).serve_forever()\n",
    );
    let f = repo("init_port_script", &[test, tool, serve]);
    let (plan, said) = init_and_check(&f);
    assert!(
        plan.contains(
            "\n[server]\ncommand = [\"python3\", \"web/serve.py\"]\nenv = { PORT = \"{port}\", DATABASE_URL = \"{db_url}\" }\n"
        ),
        "{plan}"
    );
    assert!(
        said.contains("server:  python3 web/serve.py (web/serve.py runs a server on the port in $PORT when run as a script)"),
        "{said}"
    );
    let none = repo("init_no_port_script", &[test, tool]);
    let (plan, _) = init_and_check(&none);
    assert!(plan.contains("\n# [server]\n"), "{plan}");
    assert!(!plan.contains("\n[server]"), "{plan}");
}

#[test]
fn init_on_a_project_without_migrations() {
    let f = repo(
        "init_plain",
        &[("tests/test_api.py", "def test_api():\n    pass\n")],
    );
    let (plan, said) = init_and_check(&f);
    insta::assert_snapshot!("init_plain_plan", plan);
    insta::assert_snapshot!("init_plain_said", said);
}

const CI_VARS: &[&str] = &[
    "CI_NODE_INDEX",
    "CI_NODE_TOTAL",
    "CIRCLE_NODE_INDEX",
    "CIRCLE_NODE_TOTAL",
    "BUILDKITE_PARALLEL_JOB",
    "BUILDKITE_PARALLEL_JOB_COUNT",
    "JOB_COMPLETION_INDEX",
];

/// The files a dry-run's JSON would run.
fn dry_files(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let mut cmd = f.cmd(&[&["dry-run", "plan.toml", "--format", "json"][..], args].concat());
    for v in CI_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    if code(&out) != 0 {
        return Err(stderr(&out));
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut files: Vec<String> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["file"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    Ok(files)
}

#[test]
fn shard_auto_picks_the_shard_each_ci_says() {
    let f = five_files("shardauto");
    let explicit = dry_files(&f, &["--shard", "2/3"], &[]).unwrap();
    assert!(!explicit.is_empty());
    for env in [
        &[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")][..],
        &[("CIRCLE_NODE_INDEX", "1"), ("CIRCLE_NODE_TOTAL", "3")][..],
        &[
            ("BUILDKITE_PARALLEL_JOB", "1"),
            ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
        ][..],
    ] {
        assert_eq!(
            dry_files(&f, &["--shard", "auto"], env),
            Ok(explicit.clone()),
            "{env:?}"
        );
    }
    let k8s = [("JOB_COMPLETION_INDEX", "1")];
    assert_eq!(
        dry_files(&f, &["--shard", "auto/3"], &k8s),
        Ok(explicit.clone())
    );
    // Without any: exit 2, naming what it looked for; apply refuses the same way.
    let err = dry_files(&f, &["--shard", "auto"], &[]).unwrap_err();
    for var in [
        "CI_NODE_INDEX",
        "CIRCLE_NODE_INDEX",
        "BUILDKITE_PARALLEL_JOB",
        "JOB_COMPLETION_INDEX",
    ] {
        assert!(err.contains(var), "{err}");
    }
    let mut apply = f.cmd(&["apply", "plan.toml", "--shard", "auto"]);
    for v in CI_VARS {
        apply.env_remove(v);
    }
    let out = apply.output().unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(f.worker_databases().is_empty(), "nothing was started");
}

#[test]
fn timings_from_a_junit_file_split_as_the_equivalent_timings_file() {
    let f = five_files("timingsjunit");
    let secs = [("a", 10.0), ("b", 9.0), ("c", 8.0), ("d", 2.0), ("e", 1.0)];
    let json: Vec<String> = secs
        .iter()
        .map(|(x, s)| format!("\"tests/test_{x}.py\": {{\"secs\": {s:?}, \"runs\": 1}}"))
        .collect();
    f.write("t.json", &format!("{{\"files\": {{{}}}}}", json.join(", ")));
    // As a merged junit.xml of an earlier run holds them.
    let suites: Vec<String> = secs
        .iter()
        .map(|(x, s)| format!(
            "<testsuite name=\"tests/test_{x}.py\" tests=\"1\" time=\"{s}\"><properties><property name=\"file\" value=\"tests/test_{x}.py\"/><property name=\"e2e-plan.duration\" value=\"{s:.3}\"/></properties><testcase classname=\"tests.test_{x}\" name=\"test_rows\" time=\"0.1\"/></testsuite>"
        ))
        .collect();
    f.write(
        "junit.xml",
        &format!("<testsuites>{}</testsuites>", suites.join("")),
    );
    for k in ["1/3", "2/3", "3/3"] {
        let from_json = dry_files(&f, &["--shard", k, "--timings", "t.json"], &[]).unwrap();
        let from_junit = dry_files(&f, &["--shard", k, "--timings", "junit.xml"], &[]).unwrap();
        assert_eq!(from_json, from_junit, "shard {k}");
    }
    // The longest file, alone in shard 1, shows the durations were used (not round-robin).
    assert_eq!(
        dry_files(&f, &["--shard", "1/3", "--timings", "junit.xml"], &[]).unwrap(),
        ["tests/test_a.py"]
    );
    f.write("bad.xml", "not a report");
    let err = dry_files(&f, &["--shard", "1/3", "--timings", "bad.xml"], &[]).unwrap_err();
    assert!(err.contains("bad.xml"), "{err}");
}

#[test]
fn version_help_and_completions_behave_as_clap_users_expect() {
    let f = Fixture::new("clihelp");
    let v = f.run(&["--version"]);
    assert_eq!(code(&v), 0);
    assert_eq!(
        stdout(&v).trim(),
        format!("e2e-plan {}", env!("CARGO_PKG_VERSION"))
    );
    let help = f.run(&["help"]);
    assert_eq!(code(&help), 0);
    for cmd in [
        "apply",
        "dry-run",
        "init",
        "validate",
        "rollback",
        "merge",
        "completions",
    ] {
        assert!(stdout(&help).contains(cmd), "{}", stdout(&help));
    }
    let apply = f.run(&["help", "apply"]);
    assert!(stdout(&apply).contains("--shard") && stdout(&apply).contains("--failure-output"));
    for shell in ["bash", "zsh", "fish"] {
        let c = f.run(&["completions", shell]);
        assert_eq!(code(&c), 0);
        assert!(stdout(&c).contains("e2e-plan"), "{shell}");
    }
}
