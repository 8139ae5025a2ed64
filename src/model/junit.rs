//! A lenient, streaming JUnit reader. Real files vary (pytest omits the root's `name`, some tools
//! write a bare `<testsuite>` root); anything with test suites and cases is accepted, and a file
//! that is empty, truncated or not XML is an error naming why.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use super::Counts;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Reads a JUnit file; None when it is missing, empty, truncated or not JUnit XML.
pub fn read(path: &Path) -> Result<Report, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err("the file is empty".into());
    }
    parse(BufReader::new(file))
}

/// A JUnit file's counts. A test that its test process ran again (pytest-rerunfailures) counts
/// once, as its last run ended, as pytest counts it.
pub fn read_counts(path: &Path) -> Option<Counts> {
    let report = read(path).ok()?;
    let mut c = Counts::default();
    let last_runs = report.test_suites.iter().flat_map(|s| {
        let last: std::collections::HashMap<String, usize> = s
            .test_cases
            .iter()
            .enumerate()
            .map(|(i, c)| (case_id(c), i))
            .collect();
        s.test_cases
            .iter()
            .enumerate()
            .filter(move |(i, c)| last.get(&case_id(c)) == Some(i))
            .map(|(_, c)| c)
    });
    for case in last_runs {
        c.tests += 1;
        match &case.status {
            TestCaseStatus::Success { .. } => c.passed += 1,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                ..
            } => c.failed += 1,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            } => c.errors += 1,
            TestCaseStatus::Skipped { .. } => c.skipped += 1,
        }
    }
    Some(c)
}

/// A case as `classname::name`: what names one test of a suite, rerun or not.
fn case_id(c: &TestCase) -> String {
    let class = c.classname.as_ref().map(|c| c.as_str()).unwrap_or("");
    format!("{class}::{}", c.name.as_str())
}

/// The tests that ran more than once in one test process (each named once, as `classname::name`):
/// pytest-rerunfailures runs a failed test again, and pytest's JUnit then holds a case for each
/// run (the failed ones without their failure) in the process's suite. Empty when none did or
/// the file does not read.
pub fn rerun(path: &Path) -> Vec<String> {
    let Ok(report) = read(path) else {
        return Vec::new();
    };
    let mut twice = std::collections::BTreeSet::new();
    for suite in &report.test_suites {
        let mut seen = std::collections::BTreeSet::new();
        for case in &suite.test_cases {
            let id = case_id(case);
            if !seen.insert(id.clone()) {
                twice.insert(id);
            }
        }
    }
    twice.into_iter().collect()
}

/// The sum of the test cases' times, when the file reads.
pub fn tests_secs(path: &Path) -> Option<f64> {
    let report = read(path).ok()?;
    Some(
        report
            .test_suites
            .iter()
            .flat_map(|s| &s.test_cases)
            .filter_map(|c| c.time)
            .map(|t| t.as_secs_f64())
            .sum(),
    )
}

/// How much longer a report's first test took than its others' median (what its session
/// fixtures cost, a login's password hash, an app's set-up, which every test process pays once,
/// before its first test, as it pays its imports), and that median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstTest {
    pub excess: f64,
    pub median: f64,
}

/// The first test's excess over the others; None with fewer than three tests.
pub fn first_test_excess(path: &Path) -> Option<FirstTest> {
    let report = read(path).ok()?;
    let times: Vec<f64> = report
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .map(|c| c.time.map(|t| t.as_secs_f64()).unwrap_or_default())
        .collect();
    let (first, rest) = times.split_first()?;
    if rest.len() < 2 {
        return None;
    }
    let mut rest = rest.to_vec();
    rest.sort_by(f64::total_cmp);
    let median = rest[rest.len() / 2];
    Some(FirstTest {
        excess: (first - median).max(0.0),
        median,
    })
}

/// The module name pytest gives a file (`tests/e2e/test_x.py` → `test_x`).
pub fn module_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".py").unwrap_or(base)
}

/// A file's path as a dotted module, as pytest's `classname` begins (`tests/e2e/test_x.py` →
/// `tests.e2e.test_x`).
pub fn dotted_module(path: &str) -> String {
    path.trim_end_matches(".py").replace('/', ".")
}

/// A case's test id as pytest's collection prints it (`tests/test_x.py::TestA::test_b[1]`), from
/// the file it belongs to and its JUnit `classname` (`tests.test_x.TestA`: the module, then any
/// classes) and `name`; None when the classname does not name the file's module.
pub fn test_id(file: &str, classname: &str, name: &str) -> Option<String> {
    let parts: Vec<&str> = classname.split('.').collect();
    let at = parts.iter().position(|p| *p == module_name(file))?;
    let mut id = file.to_string();
    for class in &parts[at + 1..] {
        id.push_str("::");
        id.push_str(class);
    }
    id.push_str("::");
    id.push_str(name);
    Some(id)
}

/// Every case of a JUnit report by its test id (as [`test_id`]) with its time in seconds.
pub fn case_times(file: &str, report: &Report) -> Vec<(String, f64)> {
    report
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .filter_map(|c| {
            let class = c.classname.as_ref().map(|c| c.as_str()).unwrap_or("");
            let id = test_id(file, class, c.name.as_str())?;
            Some((id, c.time.map(|t| t.as_secs_f64()).unwrap_or_default()))
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Text {
    None,
    Status,
    Rerun,
    SystemOut,
    SystemErr,
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .filter_map(Result::ok)
        .find(|a| a.key.as_ref() == name.as_bytes())
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn secs(e: &BytesStart) -> Option<Duration> {
    attr(e, "time")
        .and_then(|t| t.replace(',', "").parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map(Duration::from_secs_f64)
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n => {
            let n = n.strip_prefix('#')?;
            let code = match n.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Parses JUnit XML from a reader.
///
/// One loop over the reader's events, kept whole on purpose (it is longer than the rest of the
/// code's functions): which element's text is being read, the case being built and the depth
/// live across events, and splitting the loop would pass all of them around.
pub fn parse<R: BufRead>(input: R) -> Result<Report, String> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut report = Report::new("junit");
    let mut suites: Vec<TestSuite> = Vec::new();
    let mut case: Option<TestCase> = None;
    let mut text_kind = Text::None;
    let mut text = String::new();
    let mut saw_root = false;
    let mut depth = 0usize;
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.to_owned()), false),
            Event::Empty(e) => (Some(e.to_owned()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            if !empty {
                depth += 1;
            }
            let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            match name.as_str() {
                "testsuites" => saw_root = true,
                "testsuite" => {
                    saw_root = true;
                    let mut s = TestSuite::new(attr(&e, "name").unwrap_or_default());
                    s.time = secs(&e);
                    // Kept for the failures section (when each test ran); never written out.
                    if let Some(t) = attr(&e, "timestamp") {
                        s.extra.insert("timestamp".into(), t.into());
                    }
                    suites.push(s);
                }
                "testcase" => {
                    let mut c = TestCase::new(
                        attr(&e, "name").unwrap_or_default(),
                        TestCaseStatus::success(),
                    );
                    if let Some(cn) = attr(&e, "classname") {
                        c.set_classname(cn);
                    }
                    c.time = secs(&e);
                    for key in ["file", "line"] {
                        if let Some(v) = attr(&e, key) {
                            c.extra.insert(key.into(), v.into());
                        }
                    }
                    case = Some(c);
                }
                "failure" | "error" => {
                    if let Some(c) = case.as_mut() {
                        let kind = if name == "failure" {
                            NonSuccessKind::Failure
                        } else {
                            NonSuccessKind::Error
                        };
                        let mut st = TestCaseStatus::non_success(kind);
                        if let Some(m) = attr(&e, "message") {
                            st.set_message(m);
                        }
                        if let Some(t) = attr(&e, "type") {
                            st.set_type(t);
                        }
                        // Reruns read before the final status are kept.
                        if let TestCaseStatus::NonSuccess { reruns: old, .. } = &mut c.status {
                            let old = std::mem::take(old);
                            st.add_reruns(old);
                        }
                        c.status = st;
                        text_kind = Text::Status;
                        text.clear();
                    }
                }
                "skipped" => {
                    if let Some(c) = case.as_mut() {
                        let mut st = TestCaseStatus::skipped();
                        if let Some(m) = attr(&e, "message") {
                            st.set_message(m);
                        }
                        c.status = st;
                    }
                }
                "flakyFailure" | "flakyError" | "rerunFailure" | "rerunError" => {
                    if let Some(c) = case.as_mut() {
                        let kind = if name.ends_with("Failure") {
                            NonSuccessKind::Failure
                        } else {
                            NonSuccessKind::Error
                        };
                        let mut r = TestRerun::new(kind);
                        r.message = attr(&e, "message").map(Into::into);
                        r.ty = attr(&e, "type").map(Into::into);
                        match &mut c.status {
                            TestCaseStatus::Success { flaky_runs } => flaky_runs.push(r),
                            TestCaseStatus::NonSuccess { reruns, .. } => reruns.push(r),
                            TestCaseStatus::Skipped { .. } => {}
                        }
                        text_kind = Text::Rerun;
                        text.clear();
                    }
                }
                "system-out" => {
                    text_kind = Text::SystemOut;
                    text.clear();
                }
                "system-err" => {
                    text_kind = Text::SystemErr;
                    text.clear();
                }
                "property" => {
                    if let (Some(s), Some(n)) = (suites.last_mut(), attr(&e, "name")) {
                        s.add_property(Property::new(n, attr(&e, "value").unwrap_or_default()));
                    }
                }
                _ => {}
            }
            if !empty {
                continue;
            }
        }
        let end_name = match &ev {
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned())
            }
            Event::Empty(e) => Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
            Event::Text(t) if text_kind != Text::None => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
                None
            }
            Event::CData(t) if text_kind != Text::None => {
                text.push_str(&String::from_utf8_lossy(t.as_ref()));
                None
            }
            Event::GeneralRef(r) if text_kind != Text::None => {
                let name = r.decode().map_err(|e| e.to_string())?;
                if let Some(ch) = entity(&name) {
                    text.push(ch);
                }
                None
            }
            Event::Eof => break,
            _ => None,
        };
        let Some(end) = end_name else { continue };
        match end.as_str() {
            "testcase" => {
                if let Some(c) = case.take() {
                    if suites.is_empty() {
                        suites.push(TestSuite::new(""));
                    }
                    if let Some(s) = suites.last_mut() {
                        s.add_test_case(c);
                    }
                }
            }
            "testsuite" => {
                if let Some(s) = suites.pop() {
                    report.add_test_suite(s);
                }
            }
            "failure" | "error" if text_kind == Text::Status => {
                if let Some(TestCaseStatus::NonSuccess { description, .. }) =
                    case.as_mut().map(|c| &mut c.status)
                {
                    *description = Some(std::mem::take(&mut text).into());
                }
                text_kind = Text::None;
            }
            "flakyFailure" | "flakyError" | "rerunFailure" | "rerunError" => {
                let last = case.as_mut().and_then(|c| match &mut c.status {
                    TestCaseStatus::Success { flaky_runs } => flaky_runs.last_mut(),
                    TestCaseStatus::NonSuccess { reruns, .. } => reruns.last_mut(),
                    TestCaseStatus::Skipped { .. } => None,
                });
                if let Some(r) = last {
                    r.description = Some(std::mem::take(&mut text).into());
                }
                text_kind = Text::None;
            }
            "system-out" | "system-err" => {
                let t = std::mem::take(&mut text);
                let out = text_kind == Text::SystemOut;
                if let Some(c) = case.as_mut() {
                    if out {
                        c.set_system_out(t);
                    } else {
                        c.set_system_err(t);
                    }
                } else if let Some(s) = suites.last_mut() {
                    if out {
                        s.set_system_out(t);
                    } else {
                        s.set_system_err(t);
                    }
                }
                text_kind = Text::None;
            }
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err("no <testsuites> or <testsuite> element: not a JUnit file".into());
    }
    if depth > 0 || case.is_some() || !suites.is_empty() {
        return Err("the file ends in the middle of an element (truncated)".into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pytest 8.3 writes for `--reruns 1` when a test fails, then passes: a case for each
    /// run, neither with a failure (its "2 passed, 1 rerun").
    #[test]
    fn a_test_run_again_counts_once_and_is_named() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="0" skipped="0" tests="2" time="1.5"><testcase classname="tests.test_flaky" name="test_page[chromium]" time="0.789" /><testcase classname="tests.test_flaky" name="test_page[chromium]" time="0.319" /><testcase classname="tests.test_flaky" name="test_other[chromium]" time="0.424" /></testsuite></testsuites>"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        std::fs::write(&path, xml).unwrap();
        let c = read_counts(&path).unwrap();
        assert_eq!((c.tests, c.passed), (2, 2), "{c:?}");
        assert_eq!(rerun(&path), vec!["tests.test_flaky::test_page[chromium]"]);
        std::fs::write(
            &path,
            xml.replace(
                "test_page[chromium]\" time=\"0.319",
                "test_x\" time=\"0.319",
            ),
        )
        .unwrap();
        assert!(rerun(&path).is_empty());
        assert_eq!(read_counts(&path).unwrap().tests, 3);
    }

    #[test]
    fn reads_pytest_style_without_root_name() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2"><testcase classname="t" name="a" time="0.5"/><testcase classname="t" name="b"><failure message="boom &amp; bust">trace &lt;here&gt;</failure></testcase></testsuite></testsuites>"#;
        let r = parse(xml.as_bytes()).unwrap();
        assert_eq!(r.test_suites.len(), 1);
        let s = &r.test_suites[0];
        assert_eq!((s.tests, s.failures), (2, 1));
        match &s.test_cases[1].status {
            TestCaseStatus::NonSuccess {
                message,
                description,
                ..
            } => {
                assert_eq!(message.as_ref().map(|m| m.as_str()), Some("boom & bust"));
                assert_eq!(
                    description.as_ref().map(|m| m.as_str()),
                    Some("trace <here>")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bare_testsuite_root() {
        let r = parse(
            r#"<testsuite name="x"><testcase name="a"><skipped/></testcase></testsuite>"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.test_suites[0].tests, 1);
    }

    #[test]
    fn rejects_truncated_and_non_junit() {
        assert!(
            parse(r#"<testsuites><testsuite name="x"><testcase name="a">"#.as_bytes())
                .unwrap_err()
                .contains("truncated")
        );
        assert!(parse("<html></html>".as_bytes())
            .unwrap_err()
            .contains("not a JUnit"));
        assert!(parse("".as_bytes()).is_err());
        assert!(parse("{\"json\": 1}".as_bytes()).is_err());
    }
}
