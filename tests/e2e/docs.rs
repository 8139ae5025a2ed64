//! The generated docs match the code: `docs/cli.md` from the clap definitions (this test writes
//! it with `E2E_PLAN_WRITE_DOCS=1`); `docs/plan.md` is checked in `dry_run`.

#[test]
fn cli_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let text = e2e_plan::cli::reference();
    if std::env::var_os("E2E_PLAN_WRITE_DOCS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text == checked_in,
        "docs/cli.md is stale: run `E2E_PLAN_WRITE_DOCS=1 cargo nextest run docs::`"
    );
}
