//! Every plan mistake exits 2 before any side effect, naming the problem and where it is.

use crate::common::*;

const GOOD: &str = r#"[tests]
include = ["tests/test_*.py"]

[database]
template = "postgresql://postgres@127.0.0.1:1/never_contacted"

[server]
command = ["python3", "server.py"]
env = { PORT = "{port}" }
ready = "http://127.0.0.1:{port}/healthz"

[test]
command = ["pytest", "{file}", "--junitxml={junit}", "{args}"]
timeout = "15m"
"#;

/// Writes `plan` into a fresh folder with one test file, runs `validate`, and checks the exit
/// code, message and location, and that nothing was created.
fn check(name: &str, plan: &str, message: &str, location: &str) {
    let f = Fixture::new(&format!("err_{name}"));
    f.write("tests/test_a.py", "def test_a(): pass\n");
    f.write("plan.toml", plan);
    for cmd in ["validate", "dry-run", "apply"] {
        let out = f.run(&[cmd, "plan.toml"]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{name}/{cmd}: {err}");
        assert!(
            err.contains(message),
            "{name}/{cmd}: expected {message:?} in:\n{err}"
        );
        assert!(
            err.contains(location),
            "{name}/{cmd}: expected {location:?} in:\n{err}"
        );
    }
    assert!(
        !f.root().join(".e2e-plan").exists(),
        "{name}: state folder created"
    );
    assert!(
        !f.root().join("target").exists(),
        "{name}: report folder created"
    );
}

#[test]
fn broken_toml() {
    check(
        "toml",
        &GOOD.replace("timeout = \"15m\"", "timeout = \"15m"),
        "invalid basic string",
        "plan.toml:14:15",
    );
}

#[test]
fn unknown_key_names_it_and_suggests() {
    let out = GOOD.replace("timeout = \"15m\"", "timout = \"15m\"");
    check("key", &out, "unknown field `timout`", "plan.toml:14:1");
    check("key2", &out, "did you mean `timeout`?", "plan.toml:14:1");
}

#[test]
fn wrong_type() {
    check(
        "type",
        &GOOD.replace("[test]\n", "[run]\nfail_fast = \"yes\"\n\n[test]\n"),
        "invalid type: string \"yes\"",
        "plan.toml:13:13",
    );
}

#[test]
fn bad_duration() {
    check(
        "duration",
        &GOOD.replace("\"15m\"", "\"15 minutes\""),
        "invalid duration",
        "plan.toml:14:11",
    );
}

#[test]
fn bad_glob() {
    check(
        "glob",
        &GOOD.replace("tests/test_*.py", "tests/[test_*.py"),
        "invalid glob",
        "plan.toml:2:12",
    );
}

#[test]
fn glob_matching_nothing() {
    check(
        "nomatch",
        &GOOD.replace("tests/test_*.py", "e2e/test_*.py"),
        "`e2e/test_*.py` matches no file",
        "plan.toml:2:12",
    );
}

#[test]
fn unknown_placeholder() {
    check(
        "placeholder",
        &GOOD.replace("{junit}", "{junit_path}"),
        "unknown placeholder `{junit_path}`",
        "plan.toml:13:44",
    );
}

#[test]
fn unset_environment_variable() {
    check(
        "env",
        &GOOD.replace(
            "postgresql://postgres@127.0.0.1:1/never_contacted",
            "${E2E_PLAN_SURELY_UNSET_VAR}",
        ),
        "environment variable `E2E_PLAN_SURELY_UNSET_VAR` is not set",
        "plan.toml:5:13",
    );
}

#[test]
fn misplaced_args() {
    check(
        "args",
        &GOOD.replace("\"{args}\"", "\"--extra={args}\""),
        "`{args}` must stand alone",
        "plan.toml:13:",
    );
    check(
        "args_env",
        &GOOD.replace("PORT = \"{port}\"", "PORT = \"{args}\""),
        "`{args}` must stand alone",
        "plan.toml:9:",
    );
}

#[test]
fn bad_keep_value() {
    check(
        "keep",
        &GOOD.replace("[server]", "keep = \"sometimes\"\n\n[server]"),
        "unknown variant `sometimes`",
        "plan.toml:7:8",
    );
}

#[test]
fn several_mistakes_are_all_reported() {
    let plan = GOOD
        .replace("{junit}", "{junt}")
        .replace("{port}/healthz", "{prot}/healthz");
    check(
        "many",
        &plan,
        "unknown placeholder `{junt}`",
        "plan.toml:13:",
    );
    check(
        "many2",
        &plan,
        "unknown placeholder `{prot}`",
        "plan.toml:10:",
    );
}

#[test]
fn missing_plan_file() {
    let f = Fixture::new("err_missing");
    let out = f.run(&["apply", "plans/nope.toml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cannot read plan file plans/nope.toml"),
        "{}",
        stderr(&out)
    );
    let out = f.run(&["validate"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("plans/default.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_and_dry_run_make_no_connection() {
    // The template points at port 1, where nothing listens: both still succeed.
    let f = Fixture::new("noconn");
    f.write("tests/test_a.py", "")
        .write("tests/test_b.py", "")
        .write("plan.toml", GOOD);
    let v = f.run(&["validate", "plan.toml"]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert!(
        stdout(&v).contains("ok: plan.toml is valid, 2 worker(s)"),
        "{}",
        stdout(&v)
    );
    for format in ["text", "json", "dot"] {
        let d = f.run(&["dry-run", "plan.toml", "--format", format]);
        assert_eq!(code(&d), 0, "{}", stderr(&d));
    }
    assert!(!f.root().join(".e2e-plan").exists());
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new("usage");
    // A valid plan, so that exit 2 can only come from the argument itself.
    f.write("tests/test_a.py", "")
        .write("tests/test_b.py", "")
        .write("plan.toml", GOOD);
    assert_eq!(code(&f.run(&["validate", "plan.toml"])), 0);
    for (args, says) in [
        (
            &["apply", "plan.toml", "--keep", "sometimes"][..],
            "`sometimes` is not a keep policy",
        ),
        (
            &["apply", "plan.toml", "--shard", "5/4"][..],
            "shard 5/4 is out of range",
        ),
        (
            &["dry-run", "plan.toml", "--shard", "1/0"][..],
            "shard 1/0 is out of range",
        ),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
    ] {
        let out = f.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(!f.root().join(".e2e-plan").exists(), "nothing was started");
}

#[test]
fn a_duration_too_long_is_an_error_not_a_crash() {
    check(
        "huge",
        &GOOD.replace("\"15m\"", "\"99999999999999999999h\""),
        "too long a duration",
        "plan.toml:14:11",
    );
}

#[test]
fn environment_references_work_in_durations_and_words_too() {
    let f = Fixture::new("envwords");
    f.write("tests/test_a.py", "");
    let plan = GOOD
        .replace("\"15m\"", "\"${E2E_PLAN_UNSET_T:-15m}\"")
        .replace(
            "[server]",
            "keep = \"${E2E_PLAN_UNSET_K:-all-on-failure}\"\n\n[server]",
        );
    f.write("plan.toml", &plan);
    let out = f.run(&["validate", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bad = f
        .cmd(&["validate", "plan.toml"])
        .env("E2E_PLAN_UNSET_K", "sometimes")
        .output()
        .unwrap();
    assert_eq!(code(&bad), 2);
    assert!(
        stderr(&bad).contains("unknown variant `sometimes`"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn collect_without_the_file_and_whole_matching_nothing() {
    check(
        "collect_no_file",
        &GOOD.replace(
            "timeout = \"15m\"",
            "timeout = \"15m\"\ncollect = [\"pytest\", \"--collect-only\", \"-q\"]",
        ),
        "`collect` does not name the file it lists",
        "plan.toml:15:11",
    );
    check(
        "collect_placeholder",
        &GOOD.replace(
            "timeout = \"15m\"",
            "timeout = \"15m\"\ncollect = [\"pytest\", \"--collect-only\", \"{file}\", \"--port={port}\"]",
        ),
        "placeholder `{port}` is not available here",
        "plan.toml:15:58",
    );
    check(
        "whole_nothing",
        &format!("{GOOD}\n[run]\nwhole = [\"tests/test_zz.py\"]\n"),
        "`tests/test_zz.py` matches no test file",
        "plan.toml:17:10",
    );
}

/// GOOD with a Redis per worker whose port the server reads.
fn with_service(service: &str) -> String {
    format!(
        "{}\n{service}",
        GOOD.replace(
            "env = { PORT = \"{port}\" }",
            "env = { PORT = \"{port}\", REDIS_URL = \"redis://127.0.0.1:{port.redis}/0\" }"
        )
    )
}

const REDIS: &str = r#"[[service]]
name = "redis"
command = ["redis-server", "--port", "{port.redis}"]
ready = "tcp://127.0.0.1:{port.redis}"
"#;

#[test]
fn a_service_port_naming_no_service() {
    check(
        "port_none",
        &with_service(""),
        "`{port.redis}` names no [[service]]",
        "plan.toml:9:57",
    );
    check(
        "port_typo",
        &with_service(&REDIS.replace("\"redis\"", "\"rediss\"")),
        "did you mean `{port.rediss}`?",
        "plan.toml:9:57",
    );
}

#[test]
fn a_service_port_where_no_worker_is() {
    check(
        "port_setup",
        &format!(
            "{}\n{REDIS}",
            GOOD.replace(
                "template = \"postgresql://postgres@127.0.0.1:1/never_contacted\"",
                "template = \"postgresql://postgres@127.0.0.1:1/never_contacted\"\nprepare = [\"migrate --cache {port.redis}\"]"
            )
        ),
        "placeholder `{port.redis}` is not available here",
        "plan.toml:6:",
    );
}

#[test]
fn service_and_resource_names_are_checked() {
    check(
        "name_bad",
        &with_service(&REDIS.replace("name = \"redis\"", "name = \"Redis\"")),
        "`Redis` is not a name",
        "plan.toml:17:8",
    );
    let vhost = "[[resource]]\nname = \"redis\"\ncreate = [\"true\"]\ndestroy = [\"true\"]\n";
    check(
        "name_twice",
        &with_service(&format!("{REDIS}\n{vhost}")),
        "`redis` names two services or resources",
        "plan.toml:22:8",
    );
}

#[test]
fn a_service_ready_that_is_no_address() {
    check(
        "ready_bad",
        &with_service(&REDIS.replace("tcp://127.0.0.1:{port.redis}", "127.0.0.1:{port.redis}")),
        "`ready` must be an http://, https:// or tcp:// address",
        "plan.toml:19:9",
    );
}
