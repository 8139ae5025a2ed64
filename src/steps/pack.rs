//! A pack (`units = "auto"`): short files run one after another by one test process, in one
//! database with one server, as plain pytest would run them. Each file still gets its own row:
//! its JUnit cases (found by pytest's classname), its verdict, counts and logs. A file that fails
//! is retried alone, in fresh isolation, like any other.

use std::path::Path;

use quick_junit::{Report, TestSuite};

use super::worker::{record, run_attempt};
use super::{lock, RunCx, StepError};
use crate::engine::{Cancel, Outcome};
use crate::events::Event;
use crate::model::junit::{read, read_counts, tests_secs};
use crate::model::{Attempt, Verdict};
use crate::planner::units::module_name;
use crate::planner::WorkerPlan;

/// The pack's one attempt, then a row for each of its files.
pub async fn run_pack(
    cx: &RunCx,
    pack: &WorkerPlan,
    cancel: &Cancel,
) -> Result<Outcome, StepError> {
    let (attempt, error) = match run_attempt(cx, pack, 1, cancel).await {
        Ok(a) => (a, None),
        Err(failed) => {
            let (a, e) = *failed;
            (a, Some(e))
        }
    };
    lock(&cx.prefetch.window).remove(&pack.index);
    let files: Vec<&WorkerPlan> = pack.pack.iter().map(|&f| &cx.dag.workers[f]).collect();
    let attempts = split_attempt(cx, pack, &files, attempt);
    let mut outcome = Outcome::Ok;
    for (w, a) in files.iter().zip(attempts) {
        outcome = match (a.verdict, outcome) {
            (Verdict::Fail | Verdict::Timeout | Verdict::Error, _) => Outcome::Failed,
            (Verdict::Cancelled, Outcome::Ok) => Outcome::Cancelled,
            (_, o) => o,
        };
        record(cx, w, a);
    }
    // Every file has its own copy of what it needs: the pack's folder goes.
    let _ = std::fs::remove_dir_all(&pack.log_dir);
    match error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// One attempt per file from the pack's: the file's JUnit cases in its own JUnit file, the
/// pack's logs linked into its folder, its verdict from its own cases.
fn split_attempt(
    cx: &RunCx,
    pack: &WorkerPlan,
    files: &[&WorkerPlan],
    attempt: Attempt,
) -> Vec<Attempt> {
    let report = read(&pack.junit).ok();
    let paths: Vec<&str> = files.iter().map(|w| w.file.as_str()).collect();
    let suites = report.as_ref().map(|r| suites_by_file(r, &paths));
    if let Some((_, unclaimed)) = &suites {
        if !unclaimed.is_empty() {
            cx.emit(Event::Warning(format!(
                "{} test case(s) in the JUnit of {} belong to none of its files (e.g. {}); they are left out of the report",
                unclaimed.len(),
                pack.stem,
                unclaimed[0]
            )));
        }
    }
    let mut out: Vec<Attempt> = files
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let suite = suites.as_ref().map(|(s, _)| s[i].clone());
            file_attempt(pack, w, &paths, &attempt, suite)
        })
        .collect();
    // The test process failed, yet no file has a failing case: say so rather than pass them.
    let any_failed = out.iter().any(|a| a.verdict != Verdict::Pass);
    if attempt.verdict == Verdict::Fail && !any_failed {
        for a in &mut out {
            a.verdict = Verdict::Error;
            a.message = Some(format!(
                "the test process of {} failed (exit code {}) but its JUnit names no failing test of any of its files; see test.log",
                pack.stem,
                attempt.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into())
            ));
        }
    }
    out
}

fn file_attempt(
    pack: &WorkerPlan,
    w: &WorkerPlan,
    paths: &[&str],
    attempt: &Attempt,
    suite: Option<TestSuite>,
) -> Attempt {
    let mut a = attempt.clone();
    a.log_dir = w.log_dir.clone();
    a.packed_with = paths
        .iter()
        .filter(|p| **p != w.file)
        .map(|p| p.to_string())
        .collect();
    let _ = std::fs::remove_dir_all(&w.log_dir);
    let _ = std::fs::create_dir_all(&w.log_dir);
    for name in ["server.log", "server.log.times", "test.log"] {
        link_or_copy(&pack.log_dir.join(name), &w.log_dir.join(name));
    }
    if let Some(suite) = suite {
        write_junit(&w.junit, suite);
    }
    a.counts = read_counts(&w.junit);
    a.tests_secs = tests_secs(&w.junit);
    if let Some(t) = a.tests_secs {
        a.duration = t;
    }
    if matches!(attempt.verdict, Verdict::Pass | Verdict::Fail) {
        let failed = a.counts.is_some_and(|c| c.failed + c.errors > 0);
        a.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
        a.exit_code = Some(if failed { 1 } else { 0 });
        a.message = None;
    } else {
        let why = attempt.message.clone().unwrap_or_default();
        a.message = Some(format!(
            "{why} (in {} with {})",
            pack.stem,
            a.packed_with.join(", ")
        ));
    }
    a
}

/// The report's cases grouped by file (one suite each, in `paths` order), and the ids of the
/// cases that belong to none.
fn suites_by_file(report: &Report, paths: &[&str]) -> (Vec<TestSuite>, Vec<String>) {
    let mut suites: Vec<TestSuite> = paths.iter().map(|p| TestSuite::new(*p)).collect();
    let mut unclaimed = Vec::new();
    for case in report.test_suites.iter().flat_map(|s| &s.test_cases) {
        let classname = case.classname.as_ref().map(|c| c.as_str()).unwrap_or("");
        // A collection error has no classname; its name is the module's dotted path.
        let module = if classname.is_empty() {
            case.name.as_str()
        } else {
            classname
        };
        match owner(module, paths) {
            Some(i) => {
                suites[i].add_test_case(case.clone());
            }
            None => unclaimed.push(format!("{module}::{}", case.name.as_str())),
        }
    }
    (suites, unclaimed)
}

/// Which file a dotted module path (pytest's classname, `tests.e2e.test_x.TestA`) belongs to:
/// the one whose path, as dotted components, ends where a prefix of it does. pytest names
/// modules from its rootdir, so a file's path may be cut at the front; a pack never holds two
/// files of one module name.
pub fn owner(module: &str, paths: &[&str]) -> Option<usize> {
    let parts: Vec<&str> = module.split('.').collect();
    paths.iter().position(|p| {
        let name = module_name(p);
        parts.iter().enumerate().any(|(i, part)| {
            *part == name && {
                let dotted = p.trim_end_matches(".py").replace('/', ".");
                let prefix = parts[..=i].join(".");
                dotted == prefix || dotted.ends_with(&format!(".{prefix}"))
            }
        })
    })
}

fn write_junit(path: &Path, suite: TestSuite) {
    let mut report = Report::new("pytest");
    report.add_test_suite(suite);
    if let Ok(xml) = report.to_string() {
        let _ = std::fs::write(path, xml);
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if from.exists() && std::fs::hard_link(from, to).is_err() {
        let _ = std::fs::copy(from, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_find_their_file_from_any_rootdir() {
        let paths = ["tests/e2e/test_a.py", "tests/e2e/test_b.py"];
        assert_eq!(owner("tests.e2e.test_a", &paths), Some(0));
        assert_eq!(owner("e2e.test_b.TestX", &paths), Some(1));
        assert_eq!(owner("test_b", &paths), Some(1));
        assert_eq!(owner("other.test_b", &paths), None);
        assert_eq!(owner("tests.e2e.test_c", &paths), None);
        // A class named like another file's module does not move a case there.
        assert_eq!(owner("tests.e2e.test_a.test_b", &paths), Some(0));
    }
}
