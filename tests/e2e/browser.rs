//! Browser suites with real Chromium (Debian's /usr/bin/chromium, driven by pytest-playwright from
//! `target/browser-venv`, which `.ci/run` installs): each attempt's `{artifacts_dir}`, kept or
//! removed by `[report] artifacts`, tied to its tests in summary.json, shown in report.html; and
//! a browser that hangs or is interrupted leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use e2e_plan::model::artifacts::ArtifactKind;
use rustix::process::{kill_process, Pid, Signal};

/// The Python with pytest-playwright (`examples/notes/requirements-browser.txt`).
fn browser_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./.ci/run once, or: python3 -m venv target/browser-venv && target/browser-venv/bin/pip install -r examples/notes/requirements-browser.txt",
        p.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: apt-get install chromium"
    );
    p
}

/// Launches the system's Chromium: no browser is downloaded.
const CONFTEST: &str = r#"

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
    }
"#;

/// A test file whose one test opens the server's page and passes, or fails after it did.
fn page_test(pass: bool) -> String {
    format!(
        "import os\n\ndef test_page(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n    assert {pass}, 'failed on purpose after the page loaded'\n",
        pass = if pass { "True" } else { "False" }
    )
}

/// A browser project: `files` (stem, passes), `[report] artifacts = mode`, pytest-playwright's
/// screenshot and tracing options `capture` (e.g. "only-on-failure" / "retain-on-failure").
fn project(name: &str, files: &[(&str, bool)], mode: &str, capture: (&str, &str)) -> Fixture {
    let py = browser_python();
    let f = Fixture::new(name);
    let conftest = f.root().join("tests/conftest.py");
    let mut text = std::fs::read_to_string(&conftest).unwrap();
    text.push_str(CONFTEST);
    std::fs::write(&conftest, text).unwrap();
    for (stem, pass) in files {
        f.write(&format!("tests/{stem}.py"), &page_test(*pass));
    }
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    let test_py = format!("[\"{}\", \"-m\", \"pytest\"", py.display());
    let options = format!(
        "\"--junitxml={{junit}}\", \"--output\", \"{{artifacts_dir}}\", \"--screenshot\", \"{}\", \"--tracing\", \"{}\", ",
        capture.0, capture.1
    );
    let plan = std::fs::read_to_string(f.root().join("plan.toml")).unwrap();
    let test_line = plan
        .lines()
        .find(|l| l.starts_with("command = [") && l.contains("pytest"))
        .unwrap()
        .to_string();
    let new_line = test_line
        .replace(
            &format!("[\"{}\", \"-m\", \"pytest\"", python().display()),
            &test_py,
        )
        .replace("\"--junitxml={junit}\", ", &options);
    f.edit_plan(&[
        (test_line.as_str(), new_line.as_str()),
        (
            "dir = \"report\"\n",
            &format!("dir = \"report\"\nartifacts = \"{mode}\"\n"),
        ),
    ]);
    f
}

fn report(f: &Fixture) -> PathBuf {
    f.root().join("report")
}

/// The file's row in summary.json.
fn row<'a>(s: &'a RunSummary, stem: &str) -> &'a e2e_plan::model::WorkerResult {
    let file = format!("tests/{stem}.py");
    s.workers
        .iter()
        .find(|w| w.file == file)
        .unwrap_or_else(|| panic!("no row for {file}"))
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn apply(f: &Fixture) -> std::process::Output {
    f.run(&["apply", "plan.toml"])
}

#[test]
fn a_failing_file_keeps_its_screenshot_and_trace_and_a_passing_one_none() {
    // Both files capture on every test, so a passing file has artifacts to remove.
    let f = project(
        "br_failed",
        &[("test_ok", true), ("test_bad", false)],
        "failed",
        ("on", "on"),
    );
    // Kept databases keep their folders: what is left in them is what the policy kept.
    f.edit_plan(&[("keep = \"never\"", "keep = \"always\"")]);
    let out = f.run_env(&["apply", "plan.toml"], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let bad = row(&s, "test_bad");
    let ok = row(&s, "test_ok");
    assert_eq!(bad.verdict, Verdict::Fail);
    assert_eq!(ok.verdict, Verdict::Pass);

    // The failing file's screenshot and trace, tied to its test, relative to the report folder.
    let test = "tests/test_bad.py::test_page[chromium]";
    for kind in [ArtifactKind::Screenshot, ArtifactKind::Trace] {
        let a = bad
            .artifacts
            .iter()
            .find(|a| a.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {:#?}", bad.artifacts));
        assert!(a.path.is_relative(), "{a:?}");
        assert!(report(&f).join(&a.path).is_file(), "{a:?} is not there");
        assert_eq!(a.test.as_deref(), Some(test), "{a:?}");
        assert_eq!(a.attempt, 1);
    }
    assert!(
        bad.failures.iter().any(|t| t.id == test),
        "{:#?}",
        bad.failures
    );
    // The passing file's are gone, from the summary and from its (kept) folder.
    assert!(ok.artifacts.is_empty(), "{:#?}", ok.artifacts);
    let ok_dir = ok.log_dir.clone().unwrap();
    assert!(ok_dir.join("junit.xml").exists(), "{}", ok_dir.display());
    assert!(
        !ok_dir.join("artifacts").exists(),
        "{:?}",
        files_under(&ok_dir)
    );

    // summary.json spells the kinds as words.
    let json = f.summary_json();
    let kinds: Vec<&str> = json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["artifacts"].as_array().unwrap())
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"screenshot") && kinds.contains(&"trace"),
        "{kinds:?}"
    );

    // report.html shows the screenshot inline, by a relative path that exists, and links the trace.
    let html = std::fs::read_to_string(report(&f).join("report.html")).unwrap();
    let shot = bad
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Screenshot)
        .unwrap();
    let src = shot.path.display().to_string();
    assert!(html.contains(&format!("<img src=\"{src}\"")), "{html}");
    assert!(report(&f).join(&src).is_file());
    let trace = bad
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Trace)
        .unwrap();
    let trace = trace.path.display().to_string();
    assert!(html.contains(&format!("href=\"{trace}\"")), "{html}");
    assert!(
        html.contains(&format!("playwright show-trace {trace}")),
        "{html}"
    );

    // The failures section names both under the failing test.
    let text = stdout(&out) + &stderr(&out);
    let at = text
        .find(&format!("✗ {test}"))
        .expect("the failing test is named");
    let after = &text[at..];
    assert!(after.contains("screenshot: "), "{text}");
    assert!(after.contains("playwright show-trace "), "{text}");
    // So does the test's GitHub annotation.
    let note = text
        .lines()
        .find(|l| l.starts_with("::error file=") && l.contains("test_page"))
        .unwrap_or_else(|| panic!("no annotation for the failing test: {text}"));
    assert!(note.contains("%0Ascreenshot: "), "{note}");
    assert!(note.contains("%0Atrace: "), "{note}");
}

#[test]
fn all_keeps_every_attempts_artifacts_and_none_keeps_none() {
    let f = project(
        "br_all",
        &[("test_ok", true), ("test_bad", false)],
        "all",
        ("on", "on"),
    );
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    for stem in ["test_ok", "test_bad"] {
        let w = row(&s, stem);
        let kinds: Vec<ArtifactKind> = w.artifacts.iter().map(|a| a.kind).collect();
        assert!(
            kinds.contains(&ArtifactKind::Screenshot) && kinds.contains(&ArtifactKind::Trace),
            "{stem}: {:#?}",
            w.artifacts
        );
        // Tied to the test, the passing file's too.
        let test = format!("tests/{stem}.py::test_page[chromium]");
        for a in &w.artifacts {
            assert!(report(&f).join(&a.path).is_file(), "{a:?} is not there");
            assert_eq!(a.test.as_deref(), Some(test.as_str()), "{a:?}");
        }
    }
    // The passing file's logs went with its database; its artifacts stayed.
    let ok_dir = report(&f).join("workers/test_ok");
    assert!(
        !ok_dir.join("test.log").exists(),
        "{:?}",
        files_under(&ok_dir)
    );

    f.edit_plan(&[("artifacts = \"all\"", "artifacts = \"none\"")]);
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    for stem in ["test_ok", "test_bad"] {
        assert!(row(&s, stem).artifacts.is_empty(), "{stem}");
    }
    let bad_dir = report(&f).join("workers/test_bad");
    assert!(bad_dir.join("test.log").exists());
    assert!(
        !bad_dir.join("artifacts").exists(),
        "{:?}",
        files_under(&bad_dir)
    );
    f.assert_clean();
}

#[test]
fn each_retry_keeps_its_own_artifacts() {
    let f = project(
        "br_retry",
        &[("test_bad", false)],
        "failed",
        ("only-on-failure", "retain-on-failure"),
    );
    f.edit_plan(&[("[run]\n", "[run]\nretries = 1\n")]);
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = row(&s, "test_bad");
    assert_eq!(w.attempts.len(), 2);
    for n in [1, 2] {
        let shots: Vec<_> = w
            .artifacts
            .iter()
            .filter(|a| a.attempt == n && a.kind == ArtifactKind::Screenshot)
            .collect();
        assert_eq!(shots.len(), 1, "attempt {n}: {:#?}", w.artifacts);
        assert!(report(&f).join(&shots[0].path).is_file());
    }
    let dir = report(&f).join("workers/test_bad");
    let first: Vec<String> = files_under(&dir.join("attempt-1/artifacts"));
    let last: Vec<String> = files_under(&dir.join("artifacts"));
    assert!(first.iter().any(|p| p.ends_with(".png")), "{first:?}");
    assert!(last.iter().any(|p| p.ends_with(".png")), "{last:?}");
    f.assert_clean();
}

#[test]
fn a_flaky_files_passing_retry_keeps_its_artifacts_too() {
    let f = project("br_flaky", &[], "failed", ("on", "on"));
    f.write(
        "tests/test_flaky.py",
        "import os, pathlib\n\ndef test_page(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n    marker = pathlib.Path(__file__).parent / '.failed-once'\n    if not marker.exists():\n        marker.write_text('1')\n        assert False, 'fails the first time'\n",
    );
    f.edit_plan(&[("[run]\n", "[run]\nretries = 1\n")]);
    let out = apply(&f);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = row(&s, "test_flaky");
    assert_eq!(w.verdict, Verdict::Flaky);
    // The failing attempt's and the passing one's, to compare.
    for n in [1, 2] {
        assert!(
            w.artifacts
                .iter()
                .any(|a| a.attempt == n && a.kind == ArtifactKind::Screenshot),
            "attempt {n}: {:#?}",
            w.artifacts
        );
    }
    for a in &w.artifacts {
        assert!(report(&f).join(&a.path).is_file(), "{a:?}");
    }
    // The failures section points at the failing attempt's screenshot.
    let text = stdout(&out);
    assert!(text.contains("screenshot of attempt 1: "), "{text}");
    f.assert_clean();
}

#[test]
fn packed_files_keep_each_their_own_artifacts() {
    let files = [
        ("test_a", false),
        ("test_b", false),
        ("test_c", true),
        ("test_d", true),
    ];
    let f = project("br_pack", &files, "failed", ("on", "on"));
    f.edit_plan(&[
        ("\"{root}/{file}\"", "\"{file}\""),
        (", TEST_FILE = \"{file}\"", ""),
        ("[run]\n", "[run]\nunits = \"auto\"\n"),
    ]);
    let timings: Vec<String> = files
        .iter()
        .map(|(s, _)| format!("\"tests/{s}.py\": {{\"secs\": 6.0, \"runs\": 1, \"tests\": 0.3}}"))
        .collect();
    f.write(
        ".e2e-plan/timings.json",
        &format!("{{\"files\": {{{}}}}}", timings.join(", ")),
    );
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let packed = s
        .workers
        .iter()
        .filter(|w| !w.attempts[0].packed_with.is_empty())
        .count();
    assert!(packed >= 2, "nothing was packed: {}", stdout(&out));
    for (stem, pass) in files {
        let w = row(&s, stem);
        let test = format!("tests/{stem}.py::test_page[chromium]");
        if pass {
            assert!(w.artifacts.is_empty(), "{stem}: {:#?}", w.artifacts);
            continue;
        }
        // Its own test's, none of its pack mates'.
        assert!(
            w.artifacts
                .iter()
                .any(|a| a.kind == ArtifactKind::Screenshot && a.test.as_deref() == Some(&test)),
            "{stem}: {:#?}",
            w.artifacts
        );
        for a in &w.artifacts {
            assert_eq!(a.test.as_deref(), Some(test.as_str()), "{stem}: {a:?}");
            assert!(report(&f).join(&a.path).is_file(), "{a:?}");
        }
    }
    f.assert_clean();
}

fn hanging_browser(name: &str, timeout: &str) -> Fixture {
    let f = project(name, &[], "failed", ("off", "off"));
    f.write(
        "tests/test_hang.py",
        "import os, time\n\ndef test_hangs(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n    time.sleep(300)\n",
    );
    f.edit_plan(&[("timeout = \"2m\"", &format!("timeout = \"{timeout}\""))]);
    f
}

/// Waits until a Chromium runs from the fixture's folder.
fn wait_for_chromium(f: &Fixture) {
    let up = poll(Duration::from_secs(60), || {
        working_in(f)
            .iter()
            .any(|p| p.contains("chromium"))
            .then_some(())
    });
    assert!(up.is_some(), "no Chromium started: {:#?}", working_in(f));
}

#[test]
fn a_hanging_browser_test_times_out_and_leaves_no_browser() {
    let f = hanging_browser("br_hang", "20s");
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_chromium(&f);
    let code = wait_exit(&mut child, Duration::from_secs(90));
    assert_eq!(code, Some(1));
    assert_eq!(row(&f.summary(), "test_hang").verdict, Verdict::Timeout);
    let gone = poll(Duration::from_secs(10), || {
        working_in(&f).is_empty().then_some(())
    });
    assert!(gone.is_some(), "left behind: {:#?}", working_in(&f));
    f.assert_clean();
}

#[test]
fn an_interrupted_browser_test_leaves_no_browser() {
    let f = hanging_browser("br_int", "2m");
    let mut child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_chromium(&f);
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::INT).unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(130));
    let gone = poll(Duration::from_secs(10), || {
        working_in(&f).is_empty().then_some(())
    });
    assert!(gone.is_some(), "left behind: {:#?}", working_in(&f));
    f.assert_clean();
}

/// Waits (10 s at most) until no process runs from the fixture's folder.
fn assert_no_browser_left(f: &Fixture) {
    let gone = poll(Duration::from_secs(10), || {
        working_in(f).is_empty().then_some(())
    });
    assert!(gone.is_some(), "left behind: {:#?}", working_in(f));
}

/// The first folder of an artifact's path under its attempt's artifacts folder: the test's
/// folder pytest-playwright named after it.
fn test_folder(f: &Fixture, a: &e2e_plan::model::artifacts::Artifact, under: &Path) -> String {
    let full = report(f).join(&a.path);
    let rel = full
        .strip_prefix(under)
        .unwrap_or_else(|_| panic!("{a:?} is not under {}", under.display()));
    rel.components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned()
}

/// The top-level folders of an artifacts folder.
fn folders_in(dir: &Path) -> std::collections::BTreeSet<String> {
    files_under(dir)
        .iter()
        .map(|p| p.split('/').next().unwrap().to_string())
        .collect()
}

/// A browser file of four tests (the third fails) split by `[test] collect` into parts, each in
/// its own worker, beside a short one: recorded at 3 s a test, so that `units = "auto"` splits it.
fn split_project(name: &str, mode: &str) -> Fixture {
    let f = project(name, &[("test_short", true)], mode, ("on", "on"));
    let tests: String = (1..=4)
        .map(|i| {
            format!(
                "\ndef test_{i}(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n    assert {}, 'failed on purpose after the page loaded'\n",
                if i == 3 { "False" } else { "True" }
            )
        })
        .collect();
    f.write("tests/test_long.py", &format!("import os\n{tests}"));
    let py = browser_python().display().to_string();
    f.edit_plan(&[
        ("\"{root}/{file}\"", "\"{file}\""),
        (", TEST_FILE = \"{file}\"", ""),
        ("[run]\n", "[run]\nunits = \"auto\"\n"),
        (
            "[test]\n",
            &format!("[test]\ncollect = [\"{py}\", \"-m\", \"pytest\", \"--collect-only\", \"-q\", \"-p\", \"no:cacheprovider\", \"{{file}}\"]\n"),
        ),
    ]);
    let cases: Vec<String> = (1..=4)
        .map(|i| format!("\"tests/test_long.py::test_{i}[chromium]\": 3.0"))
        .collect();
    f.write(
        ".e2e-plan/timings.json",
        &format!(
            r#"{{"files": {{
  "tests/test_long.py": {{"secs": 13.0, "runs": 1, "tests": 12.0, "startup": 1.0, "startup_cpu": 1.0, "tests_cpu": 0.1, "cases": {{{}}}}},
  "tests/test_short.py": {{"secs": 2.0, "runs": 1, "tests": 1.0, "startup": 1.0, "startup_cpu": 1.0, "tests_cpu": 0.1}}
}}}}"#,
            cases.join(", ")
        ),
    );
    f
}

#[test]
fn a_split_files_failing_part_keeps_its_own_artifacts_and_the_passing_parts_none() {
    let f = split_project("br_split", "failed");
    let timings = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let rows = s
        .workers
        .iter()
        .filter(|w| w.file == "tests/test_long.py")
        .count();
    assert_eq!(rows, 1, "the split file has one row: {:#?}", s.workers);
    let long = row(&s, "test_long");
    assert_eq!(long.verdict, Verdict::Fail);
    assert!(
        long.attempts.len() >= 2 && long.attempts.iter().all(|a| a.part.is_some()),
        "split into parts: {}",
        stdout(&out)
    );
    let failed: Vec<_> = long
        .attempts
        .iter()
        .filter(|a| a.verdict == Verdict::Fail)
        .collect();
    assert_eq!(failed.len(), 1, "{:#?}", long.attempts);
    let failed_dir = failed[0].log_dir.join("artifacts");

    // test_3's screenshot and trace, tied to it, under its own part's folder.
    let test = "tests/test_long.py::test_3[chromium]";
    for kind in [ArtifactKind::Screenshot, ArtifactKind::Trace] {
        let a = long
            .artifacts
            .iter()
            .find(|a| a.kind == kind && a.test.as_deref() == Some(test))
            .unwrap_or_else(|| panic!("no {kind:?} of {test}: {:#?}", long.artifacts));
        assert!(report(&f).join(&a.path).is_file(), "{a:?}");
        assert!(
            report(&f).join(&a.path).starts_with(&failed_dir),
            "{a:?} is not under the failing part's {}",
            failed_dir.display()
        );
    }
    // Everything listed is the failing part's, each tied to one of the file's tests, and its
    // folder holds exactly those tests' folders: the other part did not write into it.
    let mut tied = std::collections::BTreeSet::new();
    for a in &long.artifacts {
        let t = a
            .test
            .as_deref()
            .unwrap_or_else(|| panic!("tied to no test: {a:?}"));
        assert!(t.starts_with("tests/test_long.py::test_"), "{a:?}");
        let folder = test_folder(&f, a, &failed_dir);
        assert_eq!(
            folder,
            e2e_plan::model::artifacts::slug(t),
            "{a:?} lies in another test's folder"
        );
        tied.insert(folder);
    }
    assert!(
        tied.contains(&e2e_plan::model::artifacts::slug(test)),
        "{tied:?}"
    );
    assert_eq!(folders_in(&failed_dir), tied);
    // The passing parts' are gone, from disk and from the summary; the short file's too.
    for a in long.attempts.iter().filter(|a| a.verdict == Verdict::Pass) {
        let dir = a.log_dir.join("artifacts");
        assert!(!dir.exists(), "{:?}", files_under(&dir));
    }
    assert!(row(&s, "test_short").artifacts.is_empty());
    assert_no_browser_left(&f);

    // Everything kept: each of the four tests' screenshot once, in the part that ran it, the
    // parts in folders of their own.
    f.edit_plan(&[("artifacts = \"failed\"", "artifacts = \"all\"")]);
    // The same recorded times, so that the file is split again.
    f.write(".e2e-plan/timings.json", &timings);
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let long = row(&s, "test_long");
    assert!(
        long.attempts.len() >= 2,
        "split again: {:#?}",
        long.attempts
    );
    let mut parts_with_shots = std::collections::BTreeSet::new();
    for i in 1..=4 {
        let t = format!("tests/test_long.py::test_{i}[chromium]");
        let shots: Vec<_> = long
            .artifacts
            .iter()
            .filter(|a| a.kind == ArtifactKind::Screenshot && a.test.as_deref() == Some(&t))
            .collect();
        assert_eq!(shots.len(), 1, "{t}: {:#?}", long.artifacts);
        let full = report(&f).join(&shots[0].path);
        assert!(full.is_file(), "{:?}", shots[0]);
        let part = long
            .attempts
            .iter()
            .find(|a| full.starts_with(a.log_dir.join("artifacts")))
            .unwrap_or_else(|| panic!("{:?} is in no part's folder", shots[0]));
        parts_with_shots.insert(part.part.unwrap().number);
    }
    assert!(
        parts_with_shots.len() >= 2,
        "the parts wrote apart: {parts_with_shots:?}"
    );
    for a in &long.attempts {
        let dir = a.log_dir.join("artifacts");
        let listed: std::collections::BTreeSet<String> = long
            .artifacts
            .iter()
            .filter(|x| report(&f).join(&x.path).starts_with(&dir))
            .map(|x| test_folder(&f, x, &dir))
            .collect();
        assert_eq!(folders_in(&dir), listed, "{}", dir.display());
    }
    assert_no_browser_left(&f);
    f.assert_clean();
}

#[test]
fn a_queue_made_pack_gives_a_failing_file_only_its_own_tests_artifacts() {
    // Two big files go first, alone; the small ones, guessed shorter than a start-up, are
    // packed by the queue (no timings).
    let f = project(
        "br_queue",
        &[
            ("test_c", false),
            ("test_d", true),
            ("test_e", false),
            ("test_f", true),
        ],
        "failed",
        ("on", "on"),
    );
    let padding = format!("# {}\n", "padding ".repeat(100)).repeat(20);
    for stem in ["test_a", "test_b"] {
        f.write(
            &format!("tests/{stem}.py"),
            &format!("{padding}{}", page_test(true)),
        );
    }
    // Every test process spends 1 s of CPU starting, more than its test takes.
    let conftest = std::fs::read_to_string(f.root().join("tests/conftest.py")).unwrap();
    f.write(
        "tests/conftest.py",
        &format!("{conftest}\nimport time as _t\nwhile _t.process_time() < 1.0:\n    pass\n"),
    );
    f.edit_plan(&[
        ("\"{root}/{file}\"", "\"{file}\""),
        (", TEST_FILE = \"{file}\"", ""),
        ("[run]\n", "[run]\nunits = \"auto\"\n"),
    ]);
    let dry = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(dry.contains("[queue] 6 files with no timings yet"), "{dry}");
    let out = apply(&f);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    assert_eq!(s.workers.len(), 6, "{:#?}", s.workers);
    let mut packed_failures = 0;
    for w in &s.workers {
        let stem = w.file.trim_start_matches("tests/").trim_end_matches(".py");
        let test = format!("{}::test_page[chromium]", w.file);
        if matches!(stem, "test_c" | "test_e") {
            assert_eq!(w.verdict, Verdict::Fail, "{stem}");
        } else {
            assert_eq!(w.verdict, Verdict::Pass, "{stem}");
            assert!(w.artifacts.is_empty(), "{stem}: {:#?}", w.artifacts);
            continue;
        }
        let attempt = &w.attempts[0];
        if !attempt.packed_with.is_empty() {
            packed_failures += 1;
        }
        // Its own test's screenshot and trace, nothing of its pack mates'.
        for kind in [ArtifactKind::Screenshot, ArtifactKind::Trace] {
            assert!(
                w.artifacts
                    .iter()
                    .any(|a| a.kind == kind && a.test.as_deref() == Some(&test)),
                "{stem}: no {kind:?}: {:#?}",
                w.artifacts
            );
        }
        let dir = attempt.log_dir.join("artifacts");
        for a in &w.artifacts {
            assert_eq!(a.test.as_deref(), Some(test.as_str()), "{stem}: {a:?}");
            assert!(report(&f).join(&a.path).is_file(), "{a:?}");
            assert_eq!(
                test_folder(&f, a, &dir),
                e2e_plan::model::artifacts::slug(&test)
            );
        }
        assert_eq!(
            folders_in(&dir),
            [e2e_plan::model::artifacts::slug(&test)].into(),
            "{stem} (packed with {:?}) holds another file's folders",
            attempt.packed_with
        );
    }
    assert!(
        packed_failures >= 1,
        "no failing file was packed by the queue: {:#?}",
        s.workers
            .iter()
            .map(|w| (&w.file, &w.attempts[0].packed_with))
            .collect::<Vec<_>>()
    );
    assert_no_browser_left(&f);
    f.assert_clean();
}

/// pytest-rerunfailures (`--reruns 1`) runs a failed test again in the same test process; the
/// attempt passes, as pytest does ("2 passed, 1 rerun"). The failed run's evidence is kept all
/// the same (the test is flaky, as a file whose retry passed is), tied to the test; pytest-
/// playwright writes each rerun into a folder of its own (`-retry1`), tied to the test too.
#[test]
fn a_test_that_passes_on_a_pytest_rerun_keeps_its_failed_runs_evidence() {
    let plugin = std::process::Command::new(browser_python())
        .args(["-c", "import pytest_rerunfailures"])
        .status()
        .unwrap();
    assert!(
        plugin.success(),
        "pytest-rerunfailures is missing from target/browser-venv: run ./.ci/run, or pip install -r examples/notes/requirements-browser.txt"
    );
    let f = project(
        "br_rerun",
        &[("test_ok", true)],
        "failed",
        ("only-on-failure", "retain-on-failure"),
    );
    f.write(
        "tests/test_flaky.py",
        "import os, pathlib\n\ndef test_page(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n    marker = pathlib.Path(__file__).parent / '.failed-once'\n    if not marker.exists():\n        marker.write_text('1')\n        assert False, 'fails the first time'\n\ndef test_other(page):\n    page.goto(os.environ['BASE_URL'] + '/healthz')\n",
    );
    f.edit_plan(&[("\"--output\"", "\"--reruns\", \"1\", \"--output\"")]);
    let out = apply(&f);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = row(&s, "test_flaky");
    assert_eq!(w.verdict, Verdict::Pass);
    assert_eq!(w.attempts.len(), 1);
    let counts = w.counts.unwrap();
    assert_eq!(
        (counts.tests, counts.passed),
        (2, 2),
        "as pytest counts: {w:#?}"
    );
    let test = "tests/test_flaky.py::test_page[chromium]";
    let first_run = e2e_plan::model::artifacts::slug(test);
    let dir = w.log_dir.clone().unwrap().join("artifacts");
    for kind in [ArtifactKind::Screenshot, ArtifactKind::Trace] {
        let a = w
            .artifacts
            .iter()
            .find(|a| a.kind == kind)
            .unwrap_or_else(|| {
                panic!("the failed run's {kind:?} was not kept: {:#?}", w.artifacts)
            });
        assert_eq!(a.test.as_deref(), Some(test), "{a:?}");
        assert_eq!(a.attempt, 1);
        assert!(report(&f).join(&a.path).is_file(), "{a:?}");
        assert_eq!(test_folder(&f, a, &dir), first_run, "{a:?}");
    }
    assert!(
        w.artifacts.iter().all(|a| a.test.as_deref() == Some(test)),
        "{:#?}",
        w.artifacts
    );
    // A file whose tests all passed the first time keeps none.
    let ok = row(&s, "test_ok");
    assert!(ok.artifacts.is_empty(), "{:#?}", ok.artifacts);
    assert_no_browser_left(&f);

    // Everything kept: both runs' folders, each tied to the test; the other test's to it.
    std::fs::remove_file(f.root().join("tests/.failed-once")).unwrap();
    f.edit_plan(&[
        ("artifacts = \"failed\"", "artifacts = \"all\""),
        ("\"only-on-failure\"", "\"on\""),
        ("\"retain-on-failure\"", "\"on\""),
    ]);
    let out = apply(&f);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = row(&s, "test_flaky");
    let dir = w.log_dir.clone().unwrap().join("artifacts");
    let shots = |t: &str| -> Vec<String> {
        w.artifacts
            .iter()
            .filter(|a| a.kind == ArtifactKind::Screenshot && a.test.as_deref() == Some(t))
            .map(|a| test_folder(&f, a, &dir))
            .collect()
    };
    assert_eq!(
        shots(test),
        vec![first_run.clone(), format!("{first_run}-retry1")],
        "{:#?}",
        w.artifacts
    );
    let other = "tests/test_flaky.py::test_other[chromium]";
    assert_eq!(shots(other).len(), 1, "{:#?}", w.artifacts);
    for a in &w.artifacts {
        assert!(a.test.is_some(), "tied to no test: {a:?}");
        assert!(report(&f).join(&a.path).is_file(), "{a:?}");
    }
    assert_eq!(w.counts.unwrap().tests, 2);
    assert_no_browser_left(&f);
    f.assert_clean();
}
