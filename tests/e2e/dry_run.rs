//! `dry-run` in all three formats, as snapshots (paths of the temp folder redacted).

use crate::common::*;

const PLAN: &str = r#"#:schema ../schemas/plan.schema.json
root = "../app"

[[setup]]
command = "python3 -m venv .venv"
creates = ".venv/bin/python"

[tests]
include = ["tests/e2e/test_*.py"]
exclude = ["tests/e2e/test_skip_*.py"]

[database]
template = "postgresql://app:s3cret@127.0.0.1:1/app_test?sslmode=disable"
prepare = [".venv/bin/alembic upgrade head"]
fingerprint = ["migrations/**"]
keep = "all-on-failure"

[server]
command = "uv run python -m app --port {port}"
env = { PORT = "{port}", DATABASE_URL = "{db_url}", WORKER = "{worker}" }
ready = "http://127.0.0.1:{port}/healthz"
ready_timeout = "20s"
stop_timeout = "500ms"

[test]
command = ["uv", "run", "pytest", "{file}", "--junitxml={junit}", "{args}"]
env = { BASE_URL = "http://127.0.0.1:{port}" }
timeout = "10m"

[run]
jobs = 2
retries = 1
"#;

fn fixture() -> Fixture {
    let f = Fixture::new("dryrun");
    for name in ["test_login", "test_cart", "test_checkout", "test_skip_me"] {
        f.write(&format!("app/tests/e2e/{name}.py"), "");
    }
    f.write("plans/e2e.toml", PLAN);
    f
}

fn redact(f: &Fixture, text: &str) -> String {
    let root = std::fs::canonicalize(f.root())
        .unwrap()
        .display()
        .to_string();
    text.replace(&root, "[ROOT]")
}

fn dry(f: &Fixture, args: &[&str]) -> String {
    let mut all = vec!["dry-run", "plans/e2e.toml"];
    all.extend_from_slice(args);
    let out = f.run(&all);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    redact(f, &stdout(&out))
}

#[test]
fn text() {
    let f = fixture();
    insta::assert_snapshot!(dry(&f, &["--", "-k", "smoke and not slow"]));
}

#[test]
fn json() {
    let f = fixture();
    let out = dry(&f, &["--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["workers"].as_array().unwrap().len(), 3);
    insta::assert_snapshot!(out);
}

#[test]
fn dot() {
    let f = fixture();
    insta::assert_snapshot!(dry(&f, &["--format", "dot"]));
}

#[test]
fn shard_shows_only_its_files() {
    let f = fixture();
    let out = dry(&f, &["--shard", "2/2", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files: Vec<&str> = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["file"].as_str().unwrap())
        .collect();
    // Round-robin over sorted paths without timings: cart, checkout, login → shard 2 has checkout.
    assert_eq!(files, ["tests/e2e/test_checkout.py"]);
}

#[test]
fn schema_file_is_current() {
    let out = std::process::Command::new(bin())
        .arg("schema")
        .output()
        .unwrap();
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json"),
    )
    .unwrap();
    assert_eq!(
        stdout(&out),
        checked_in,
        "schemas/plan.schema.json is stale: run `cargo run -- schema > schemas/plan.schema.json`"
    );
}

/// The plan reference is generated from the code's doc comments; the committed one must match.
#[test]
fn plan_reference_is_current() {
    let out = std::process::Command::new(bin())
        .args(["schema", "--format", "markdown"])
        .output()
        .unwrap();
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plan.md"),
    )
    .unwrap();
    assert!(
        stdout(&out) == checked_in,
        "docs/plan.md is stale: run `cargo run -- schema --format markdown > docs/plan.md`"
    );
}

/// The reference's plan that uses every key loads as written: `validate` and `dry-run` accept
/// it, in a project that has the files it names.
#[test]
fn the_every_key_plan_loads_as_written() {
    let f = Fixture::new("everykey");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/every-key.toml"),
    )
    .unwrap();
    f.write("plans/every.toml", &text);
    f.write("tests/e2e/test_order.py", "");
    f.write("tests/e2e/test_other.py", "");
    f.write("migrations/0001_init.py", "");
    f.write("requirements.txt", "");
    for cmd in ["validate", "dry-run"] {
        let out = f.run_env(&[cmd, "plans/every.toml"], &[("E2E_DATABASE_URL", "")]);
        assert_eq!(code(&out), 0, "{cmd}: {}", stderr(&out));
    }
    let out = f.run_env(
        &["dry-run", "plans/every.toml"],
        &[("E2E_DATABASE_URL", "")],
    );
    let shown = stdout(&out);
    assert!(shown.contains("tests/e2e/test_order.py"), "{shown}");
    assert!(!shown.contains("test_wip"), "{shown}");
}

#[test]
fn bundled_plans_start_with_a_schema_line_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in std::fs::read_dir(dir.join("plans")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/plan.schema.json"),
            "{}",
            e.path().display()
        );
        let out = std::process::Command::new(bin())
            .current_dir(dir)
            .arg("validate")
            .arg(e.path())
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

#[test]
fn dot_output_renders_with_graphviz() {
    let f = fixture();
    let dot = dry(&f, &["--format", "dot"]);
    f.write("plan.dot", &dot);
    let out = std::process::Command::new("dot")
        .args(["-Tsvg", "plan.dot"])
        .current_dir(f.root())
        .output()
        .expect("Graphviz's dot is installed (.ci/run installs graphviz)");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("<svg"), "an SVG came out");
}
