//! A split file: each part's attempt is checked against what the split promised (every test it
//! was given ran, once, and nothing else), and the file's row is merged from its parts' results:
//! one JUnit suite with every case, the counts of all, the worst verdict, the failures of each.

use std::collections::BTreeSet;
use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::model::junit::{case_times, read, read_counts};
use crate::model::{Attempt, Verdict, WorkerResult};
use crate::planner::{PartOf, WorkerPlan};

/// How bad a part's verdict is for the file: the worst part decides the row.
fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Pass => 0,
        Verdict::Flaky => 1,
        Verdict::Cancelled => 2,
        Verdict::Error => 3,
        Verdict::Timeout => 4,
        Verdict::Fail => 5,
    }
}

/// The file's row from its parts' results (each with its failures already found): the worst
/// part's verdict and logs, every part's attempts, failures and cases. A part that never
/// started counts as one (`not_run`, CANCELLED): its tests did not run, so the file never passes.
pub fn merge(file: &WorkerPlan, parts: &[WorkerResult]) -> WorkerResult {
    let parts: Vec<&WorkerResult> = parts.iter().collect();
    let Some(worst) = parts.iter().copied().max_by_key(|r| rank(r.verdict)) else {
        return WorkerResult::not_run(file.index, &file.file, &file.stem, file.db_name());
    };
    let mut row = worst.clone();
    row.index = file.index;
    row.file = file.file.clone();
    row.stem = file.stem.clone();
    row.log_dir = Some(file.log_dir.clone());
    row.junit = Some(file.junit.clone());
    row.duration = parts.iter().map(|r| r.duration).sum();
    row.attempts = parts.iter().flat_map(|r| r.attempts.clone()).collect();
    row.failures = parts.iter().flat_map(|r| r.failures.clone()).collect();
    row.artifacts = parts.iter().flat_map(|r| r.artifacts.clone()).collect();
    row.message = worst.message.as_ref().map(|m| {
        let label = worst.file.strip_prefix(file.file.as_str()).unwrap_or("");
        format!("{}: {m}", label.trim())
    });
    write_merged(file, &parts);
    row.counts = read_counts(&file.junit);
    row
}

/// Checks a part's attempt against what it was given: every one of its tests in its JUnit, once,
/// and no other. A test that did not run (or ran twice, or was not the part's) fails the part,
/// by name, with an error case in its JUnit; the part is then retried like any failure.
pub fn check(part: &PartOf, junit: &Path, attempt: &mut Attempt) {
    if !matches!(attempt.verdict, Verdict::Pass | Verdict::Fail) {
        return;
    }
    let Ok(mut report) = read(junit) else {
        if attempt.verdict == Verdict::Pass {
            attempt.verdict = Verdict::Error;
            attempt.message = Some(format!(
                "its JUnit ({}) cannot be read: which of its {} tests ran is unknown",
                junit.display(),
                part.tests.len()
            ));
        }
        return;
    };
    let file = part.tests[0].split("::").next().unwrap_or_default();
    let label = format!("part {}/{}", part.number, part.count);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut last: Option<String> = None;
    for (id, _) in case_times(file, &report) {
        // A test run again right after itself was rerun by its test tool (pytest-rerunfailures),
        // not run twice.
        let again = last.as_deref() == Some(id.as_str());
        last = Some(id.clone());
        if again {
            continue;
        }
        if !part.tests.contains(&id) {
            problems.push((id, format!("ran in {label}, which was not given it")));
        } else if !seen.insert(id.clone()) {
            problems.push((id, format!("ran twice in {label}")));
        }
    }
    for id in part.tests.iter().filter(|t| !seen.contains(*t)) {
        problems.push((
            id.clone(),
            format!("was given to {label} but is absent from its JUnit"),
        ));
    }
    if problems.is_empty() {
        return;
    }
    let mut suite = TestSuite::new("e2e-plan: tests that did not run as planned");
    for (id, why) in &problems {
        suite.add_test_case(problem_case(file, id, why));
    }
    report.add_test_suite(suite);
    if let Ok(xml) = report.to_string() {
        let _ = std::fs::write(junit, xml);
    }
    attempt.counts = read_counts(junit);
    attempt.verdict = Verdict::Fail;
    attempt.exit_code = Some(attempt.exit_code.filter(|c| *c != 0).unwrap_or(1));
    let (id, why) = &problems[0];
    attempt.message = Some(format!(
        "{} test(s) did not run as planned: {id} {why}",
        problems.len()
    ));
}

/// An error case for a test that did not run as planned, named like the test.
fn problem_case(file: &str, id: &str, why: &str) -> TestCase {
    let mut rest = id.split("::").skip(1).collect::<Vec<_>>();
    let name = rest.pop().unwrap_or(id).to_string();
    let mut class = crate::model::junit::dotted_module(file);
    for c in rest {
        class.push('.');
        class.push_str(c);
    }
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(format!("e2e-plan: {id} {why}"));
    let mut case = TestCase::new(name, status);
    case.set_classname(class);
    case
}

/// Writes the file's JUnit: one suite with every part's cases, in order, and their time.
fn write_merged(file: &WorkerPlan, parts: &[&WorkerResult]) {
    let mut suite = TestSuite::new(file.file.as_str());
    for r in parts {
        if let Some(report) = r.junit.as_deref().and_then(|j| read(j).ok()) {
            for case in report.test_suites.iter().flat_map(|s| &s.test_cases) {
                suite.add_test_case(case.clone());
            }
        }
    }
    let time: f64 = suite
        .test_cases
        .iter()
        .filter_map(|c| c.time)
        .map(|t| t.as_secs_f64())
        .sum();
    suite.set_time(std::time::Duration::from_secs_f64(time));
    let mut report = Report::new("e2e-plan");
    report.add_test_suite(suite);
    let _ = std::fs::create_dir_all(&file.log_dir);
    if let Ok(xml) = report.to_string() {
        let _ = std::fs::write(&file.junit, xml);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pytest-rerunfailures' rerun (the same case again, right after) is no second run; the same
    /// test again after another is.
    #[test]
    fn a_rerun_test_ran_once_but_a_test_run_again_later_twice() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let case =
            |n: u32| format!("<testcase classname=\"tests.t\" name=\"test_{n}\" time=\"0.1\" />");
        let part = PartOf {
            file: 0,
            number: 1,
            count: 2,
            tests: vec!["tests/t.py::test_1".into(), "tests/t.py::test_2".into()],
        };
        for (cases, verdict) in [([1, 1, 2], Verdict::Pass), ([1, 2, 1], Verdict::Fail)] {
            let body: String = cases.iter().map(|n| case(*n)).collect();
            std::fs::write(
                &junit,
                format!("<testsuites><testsuite name=\"pytest\">{body}</testsuite></testsuites>"),
            )
            .unwrap();
            let mut a = Attempt::new(1, "db_0", dir.path());
            a.verdict = Verdict::Pass;
            check(&part, &junit, &mut a);
            assert_eq!(a.verdict, verdict, "{cases:?}: {:?}", a.message);
        }
    }

    /// A part that never started (interrupted, `fail_fast`) leaves the file short of tests: the
    /// row is never PASS, whatever the other parts did.
    #[test]
    fn a_part_that_never_started_keeps_the_file_from_passing() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = WorkerPlan::bare(2, "tests/t.py", "t", dir.path().join("t"), "db_t".into());
        file.parts = vec![0, 1];
        let ran = WorkerPlan::bare(
            0,
            "tests/t.py [part 1/2]",
            "t.part-1",
            dir.path().join("t/part-1"),
            "db_0".into(),
        );
        let mut a = Attempt::new(1, "db_0", &ran.log_dir);
        a.verdict = Verdict::Pass;
        let mut passed = WorkerResult::new(0, &ran.file, &ran.stem, &a);
        passed.push_attempt(a);
        let never = WorkerResult::not_run(1, "tests/t.py [part 2/2]", "t.part-2", "db_1");
        let row = merge(&file, &[passed, never]);
        assert_eq!(row.file, "tests/t.py");
        assert_eq!(row.verdict, Verdict::Cancelled, "{row:?}");
    }
}
