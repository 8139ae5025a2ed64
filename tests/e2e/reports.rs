//! What a run shows and leaves: merged JUnit (also when a worker crashed), summary.json and
//! `--format json`, plain progress lines off a terminal, colours, GitHub annotations, `merge`.

use crate::common::*;

#[test]
fn a_crashed_worker_contributes_an_error_and_others_are_kept() {
    let f = Fixture::new("crashjunit");
    f.rows_test("test_ok", 0.0);
    f.write(
        "tests/test_dies.py",
        "import os\n\ndef test_dies():\n    print('about to die', flush=True)\n    os._exit(3)\n",
    );
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    // `-s`: without capture, what the test printed before dying reaches test.log.
    let out = f.run(&["apply", "plan.toml", "--", "-s"]);
    assert_eq!(code(&out), 1);
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(
        junit.contains("tests/test_dies.py: no usable JUnit report"),
        "{junit}"
    );
    assert!(junit.contains("exit code 3"), "{junit}");
    assert!(
        junit.contains("about to die"),
        "the test log's tail is in the error: {junit}"
    );
    assert!(
        junit.contains("name=\"test_rows\""),
        "the passing worker's cases survive: {junit}"
    );
    assert!(
        junit.contains("tests=\"2\" failures=\"0\" errors=\"1\""),
        "totals recomputed: {junit}"
    );
    f.assert_clean();
}

#[test]
fn summary_json_and_format_json_agree() {
    let f = Fixture::new("sumjson");
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml", "--format", "json"]);
    assert_eq!(code(&out), 1);
    let printed: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is the JSON document");
    assert_eq!(printed, f.summary_json());
    let s = f.summary();
    assert_eq!(s.version, 1);
    assert_eq!(s.exit_code, 1);
    let bad = &s.workers[0];
    assert_eq!(bad.file, "tests/test_bad.py");
    assert_eq!(bad.verdict, Verdict::Fail);
    assert_eq!(bad.counts.unwrap().failed, 1);
    assert!(bad.port.is_some());
    assert!(bad
        .test_log
        .as_ref()
        .unwrap()
        .ends_with("workers/test_bad/test.log"));
    f.assert_clean();
}

#[test]
fn plain_progress_lines_and_no_colour_off_a_terminal() {
    let f = Fixture::new("plain");
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    let err = stderr(&out);
    for phase in ["cloning", "starting", "testing", "stopping"] {
        assert!(
            err.contains(&format!("tests/test_ok.py: {phase}")),
            "{phase} line missing:\n{err}"
        );
    }
    let all = format!("{}{err}", stdout(&out));
    assert!(!all.contains('\u{1b}'), "no escape codes when piped");
    let text = stdout(&out);
    assert!(text.contains("2 files: 1 passed, 1 failed in "), "{text}");
    assert!(text.contains("of work, ×"), "{text}");
    // Forced colours colour the table.
    let coloured = f.run(&["--color", "always", "apply", "plan.toml"]);
    assert!(
        stdout(&coloured).contains('\u{1b}'),
        "{}",
        stdout(&coloured)
    );
    f.assert_clean();
}

#[test]
fn github_actions_annotations() {
    let f = Fixture::new("gha");
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    // A file that dies without a JUnit (no failing test to point at), and a flaky one that
    // passes on its retry under flaky = "pass" (it does not fail the run).
    f.write(
        "tests/test_dies.py",
        "import os\n\ndef test_dies():\n    os._exit(3)\n",
    );
    f.write("tests/test_flaky.py", "import pathlib\n\ndef test_f():\n    p = pathlib.Path(__file__).parent / '.ran'\n    if not p.exists():\n        p.write_text('1')\n        assert False, 'first run fails'\n");
    f.plan(PlanOpts {
        keep: "never",
        server: false,
        run: "retries = 1\nflaky = \"pass\"",
        ..Default::default()
    });
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    // At the failing test's line, named by its id, with its message.
    assert!(
        text.contains("::error file=tests/test_bad.py,line=2::tests/test_bad.py::test_fails: AssertionError: arithmetic is broken"),
        "{text}"
    );
    // A file-level one for the file without failing tests in its JUnit.
    assert!(text.contains("::error file=tests/test_dies.py::"), "{text}");
    // Only for files that fail the run.
    assert!(!text.contains("::error file=tests/test_ok.py"), "{text}");
    assert!(!text.contains("::error file=tests/test_flaky.py"), "{text}");
    assert_eq!(text.matches("::error ").count(), 2, "{text}");

    // Under --format json they go to stderr; stdout stays pure JSON.
    std::fs::remove_file(f.root().join("tests/.ran")).unwrap();
    let out = f
        .cmd(&["apply", "plan.toml", "--format", "json"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not pure JSON ({e}): {}", stdout(&out)));
    assert_eq!(json["workers"].as_array().map(Vec::len), Some(4), "{json}");
    let err = stderr(&out);
    assert!(
        err.contains("::error file=tests/test_bad.py,line=2::"),
        "{err}"
    );
    assert!(err.contains("::error file=tests/test_dies.py::"), "{err}");
    assert_eq!(err.matches("::error ").count(), 2, "{err}");
    f.assert_clean();
}

#[test]
fn html_report_is_self_contained() {
    let f = Fixture::new("html");
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    f.run(&["apply", "plan.toml"]);
    let html = std::fs::read_to_string(f.root().join("report/report.html")).unwrap();
    assert!(html.contains("tests/test_bad.py") && html.contains("tests/test_ok.py"));
    assert!(
        html.contains("arithmetic is broken"),
        "failed log tail included"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network references"
    );
    assert!(
        html.matches("class=\"bar\"").count() >= 6,
        "phase bars drawn"
    );
    f.assert_clean();
}

const GOOD_A: &str = r#"<?xml version="1.0"?><testsuites><testsuite name="pytest"><testcase classname="a" name="one" time="0.1"/><testcase classname="a" name="two"><failure message="no">trace</failure></testcase></testsuite></testsuites>"#;
const GOOD_B: &str =
    r#"<testsuite name="b"><testcase classname="b" name="three"><skipped/></testcase></testsuite>"#;

#[test]
fn merge_combines_files_and_names_every_bad_input() {
    let f = Fixture::new("merge");
    f.write("a.xml", GOOD_A)
        .write("b.xml", GOOD_B)
        .write("empty.xml", "")
        .write("trunc.xml", &GOOD_A[..80]);
    let out = f.run(&[
        "merge",
        "-o",
        "out/merged.xml",
        "a.xml",
        "empty.xml",
        "b.xml",
        "trunc.xml",
        "missing.xml",
    ]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for bad in ["empty.xml", "trunc.xml", "missing.xml"] {
        assert!(err.contains(bad), "{bad} not named: {err}");
    }
    assert!(!err.contains("a.xml:"), "{err}");
    assert!(
        !f.root().join("out/merged.xml").exists(),
        "nothing written on bad input"
    );
    let out = f.run(&["merge", "-o", "out/merged.xml", "a.xml", "b.xml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let merged = std::fs::read_to_string(f.root().join("out/merged.xml")).unwrap();
    assert!(
        merged.contains("tests=\"3\" failures=\"1\" errors=\"0\""),
        "{merged}"
    );
    assert!(merged.contains("name=\"three\""));
}

/// Runs apply under `script`, which gives it a terminal and copies what it shows, as it shows
/// it, to `typescript` (which the test reads: see below).
fn apply_on_a_terminal(f: &Fixture, ci: bool) -> String {
    let cmd = format!("{} apply plan.toml", bin().display());
    let mut c = std::process::Command::new("script");
    c.current_dir(f.root())
        .args(["-qfec", &cmd, "typescript"])
        .env_remove("NO_COLOR")
        .env_remove("GITHUB_ACTIONS");
    if ci {
        c.env("CI", "true")
            .env("WAIT_FOR", "tests/test_a.py: cloning");
    } else {
        c.env_remove("CI").env("WAIT_FOR", "░");
    }
    let out = c.output().expect("script (util-linux) runs");
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    stdout(&out)
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_ci_log_plain_lines_never_both() {
    let f = Fixture::new("tty");
    // The test holds until the terminal shows what it waits for (the bar, or the plain line):
    // the run is still going when it is drawn, however slow the machine.
    f.write(
        "tests/test_a.py",
        r#"import os, time

def test_sees_the_output():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'typescript')
    deadline = time.monotonic() + 60
    while os.environ['WAIT_FOR'] not in open(path, encoding='utf-8', errors='replace').read():
        assert time.monotonic() < deadline, 'never shown: ' + os.environ['WAIT_FOR']
        time.sleep(0.05)
"#,
    );
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let tty = apply_on_a_terminal(&f, false);
    assert!(
        tty.contains("files") && tty.contains('░'),
        "a bar was drawn:\n{tty}"
    );
    assert!(
        !tty.contains("tests/test_a.py: cloning"),
        "no plain phase lines under a bar:\n{tty}"
    );
    assert!(tty.contains('\u{1b}'), "colours on a terminal");
    let ci = apply_on_a_terminal(&f, true);
    assert!(ci.contains("tests/test_a.py: cloning"), "{ci}");
    assert!(!ci.contains('░'), "no bar in a CI log:\n{ci}");
    f.assert_clean();
}

#[test]
fn the_merged_junit_validates_against_the_jenkins_schema() {
    let xsd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit/jenkins-junit.xsd");
    let f = Fixture::new("xsd");
    // Every kind of case: passed, failed with reruns, flaky, crashed (no report), skipped.
    f.rows_test("test_ok", 0.0).failing_test("test_bad");
    f.write("tests/test_flaky.py", "import pathlib\n\ndef test_f():\n    p = pathlib.Path(__file__).parent / '.ran'\n    if not p.exists():\n        p.write_text('1')\n        assert False\n");
    f.write(
        "tests/test_dies.py",
        "import os\n\ndef test_dies():\n    os._exit(3)\n",
    );
    f.write(
        "tests/test_skips.py",
        "import pytest\n\n@pytest.mark.skip(reason='not today')\ndef test_s():\n    pass\n",
    );
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        run: "retries = 1",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let junit = f.root().join("report/junit.xml");
    let text = std::fs::read_to_string(&junit).unwrap();
    assert!(
        text.contains("<flakyFailure")
            && text.contains("<rerunFailure")
            && text.contains("<skipped"),
        "{text}"
    );
    let lint = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&junit)
        .output()
        .expect("xmllint is installed (.ci/run installs libxml2-utils)");
    assert!(lint.status.success(), "{}\n{text}", stderr(&lint));
    f.assert_clean();
}
