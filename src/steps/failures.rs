//! Why a file failed, read from what it left: the failing tests in its JUnit, each with what its
//! server printed while the test ran (from the stamped server log). `report::failures` shows it.

use std::path::Path;

use quick_junit::{TestCase, TestCaseStatus, TestSuite};

use crate::model::{FailedTest, WorkerResult};

/// The failing tests in a worker's JUnit, each with the server lines that arrived while it ran.
/// `file`: the test file the JUnit is of; `tests_ran`: when the test command started and ended
/// (Unix seconds).
pub fn failed_tests(w: &WorkerResult, file: &str, tests_ran: (f64, f64)) -> Vec<FailedTest> {
    let Some(report) = w
        .junit
        .as_deref()
        .and_then(|j| crate::model::junit::read(j).ok())
    else {
        return Vec::new();
    };
    let server = w
        .server_log
        .as_deref()
        .map(stamped_lines)
        .unwrap_or_default();
    let services = service_logs(w);
    let mut failed = Vec::new();
    for suite in &report.test_suites {
        let windows = windows(suite, tests_ran);
        for (i, case) in suite.test_cases.iter().enumerate() {
            let Some(mut f) = failed_test(case, file) else {
                continue;
            };
            if let Some((from, to)) = windows.get(i).copied().flatten() {
                let within = |lines: &[(f64, String)]| -> Vec<String> {
                    lines
                        .iter()
                        .filter(|(t, _)| *t >= from && *t < to)
                        .map(|(_, l)| l.clone())
                        .collect()
                };
                f.server_lines = within(&server);
                f.service_lines = services
                    .iter()
                    .map(|(service, lines)| crate::model::ServiceLines {
                        service: service.clone(),
                        lines: within(lines),
                    })
                    .filter(|s| !s.lines.is_empty())
                    .collect();
            }
            failed.push(f);
        }
    }
    failed
}

fn failed_test(case: &TestCase, file: &str) -> Option<FailedTest> {
    let TestCaseStatus::NonSuccess {
        message,
        description,
        ..
    } = &case.status
    else {
        return None;
    };
    let message = message.as_deref().unwrap_or_default().to_string();
    let text = description.as_deref().unwrap_or_default();
    let mut detail: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("E ") || l.starts_with('>'))
        .map(|l| l.trim_end().to_string())
        .collect();
    // Keep the last `>` line (where it failed) and the `E` lines.
    if let Some(last) = detail.iter().rposition(|l| l.starts_with('>')) {
        detail = detail
            .into_iter()
            .enumerate()
            .filter(|(i, l)| *i == last || !l.starts_with('>'))
            .map(|(_, l)| l)
            .collect();
    }
    if detail.is_empty() {
        detail = message.lines().map(str::to_string).collect();
    }
    let line = failing_line(text, file).or_else(|| {
        case.extra
            .get("line")
            .and_then(|l| l.parse::<u32>().ok())
            .map(|l| l + 1)
    });
    Some(FailedTest {
        service_lines: Vec::new(),
        id: test_id(case, file),
        message: message.lines().next().unwrap_or_default().to_string(),
        file: Some(
            case.extra
                .get("file")
                .map(|f| f.to_string())
                .unwrap_or_else(|| file.to_string()),
        ),
        line,
        detail,
        server_lines: Vec::new(),
    })
}

/// pytest's node id from the JUnit's classname (`tests.e2e.test_x.TestA`) and name.
fn test_id(case: &TestCase, file: &str) -> String {
    let classname = case.classname.as_deref().unwrap_or_default();
    let name = case.name.as_str();
    crate::model::junit::test_id(file, classname, name).unwrap_or_else(|| {
        if classname.is_empty() {
            format!("{file}::{name}")
        } else {
            format!("{classname}::{name}")
        }
    })
}

/// The last `path:LINE: …` of a traceback whose path is the test's file.
fn failing_line(text: &str, file: &str) -> Option<u32> {
    text.lines().rev().find_map(|l| {
        let (path, rest) = l.split_once(':')?;
        let (n, _) = rest.split_once(':')?;
        (path.ends_with(file) || file.ends_with(path.trim_start_matches("./")))
            .then(|| n.trim().parse().ok())
            .flatten()
    })
}

/// When each test case of a suite ran (Unix seconds), or None for each when the suite does not
/// say when it started. The cases ran one after another and ended with the suite, so their
/// boundaries are laid back from the suite's end by the cases' durations (collection, before the
/// first test, is in none of them). The windows touch: a server line belongs to exactly one test,
/// the first test's window reaches back to the test command's start and the last one's on to its
/// end (not to the server's shutdown). A line printed in the first milliseconds of a test may
/// land under the test before it.
fn windows(suite: &TestSuite, (test_started, test_ended): (f64, f64)) -> Vec<Option<(f64, f64)>> {
    let none = vec![None; suite.test_cases.len()];
    let (Some(stamp), Some(total)) = (suite.extra.get("timestamp"), suite.time) else {
        return none;
    };
    let Some(started) = suite_start(stamp.as_str(), test_started) else {
        return none;
    };
    let mut end = started + total.as_secs_f64();
    let mut out = none;
    let mut next_start = test_ended;
    for (i, case) in suite.test_cases.iter().enumerate().rev() {
        let took = case.time.map(|t| t.as_secs_f64()).unwrap_or_default();
        // The first test's window starts with the test command (not with the server's start-up).
        let start = if i == 0 { test_started } else { end - took };
        out[i] = Some((start, next_start));
        next_start = start;
        end -= took;
    }
    out
}

/// The suite's start in Unix seconds from pytest's timestamp: with an offset (pytest 8:
/// `2026-11-27T10:00:00.123+02:00`) or in local time without one (older versions), whose offset
/// is then the difference to the test command's start rounded to a quarter of an hour.
pub(super) fn suite_start(stamp: &str, test_started: f64) -> Option<f64> {
    let (naive, offset) = match stamp.get(19..).and_then(|t| t.rfind(['+', '-'])) {
        Some(i) => {
            let at = 19 + i;
            let (h, m) = stamp[at + 1..].split_once(':')?;
            let secs = (h.parse::<f64>().ok()? * 60.0 + m.parse::<f64>().ok()?) * 60.0;
            let sign = if stamp[at..].starts_with('-') {
                -1.0
            } else {
                1.0
            };
            (&stamp[..at], Some(sign * secs))
        }
        None => (stamp.trim_end_matches('Z'), None),
    };
    let naive = humantime::parse_rfc3339_weak(naive)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let offset = offset.unwrap_or_else(|| ((naive - test_started) / 900.0).round() * 900.0);
    Some(naive - offset)
}

/// Each service's stamped lines, from the `service-<name>.log` files in the worker's folder.
fn service_logs(w: &WorkerResult) -> Vec<(String, Vec<(f64, String)>)> {
    let Some(dir) = &w.log_dir else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<(f64, String)>)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let service = name
                .strip_prefix("service-")?
                .strip_suffix(".log")?
                .to_string();
            Some((service, stamped_lines(&e.path())))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A stamped log's lines with their arrival times (see `model::files::times_of`).
fn stamped_lines(log: &Path) -> Vec<(f64, String)> {
    let Ok(bytes) = std::fs::read(log) else {
        return Vec::new();
    };
    let times = std::fs::read_to_string(crate::model::files::times_of(log)).unwrap_or_default();
    times
        .lines()
        .filter_map(|l| {
            let (t, off) = l.split_once(' ')?;
            Some((t.parse::<f64>().ok()?, off.parse::<usize>().ok()?))
        })
        .filter_map(|(t, off)| {
            let rest = bytes.get(off..)?;
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            Some((
                t,
                String::from_utf8_lossy(&rest[..end]).trim_end().to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(classname: &str, name: &str, text: &str) -> TestCase {
        let mut status = TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure);
        status.set_message("AssertionError: arithmetic is broken\nassert (1 + 1) == 3");
        status.set_description(text);
        let mut c = TestCase::new(name, status);
        c.set_classname(classname);
        c
    }

    const PYTEST: &str = "def test_b():\n>       assert 1 + 1 == 3, 'arithmetic is broken'\nE       AssertionError: arithmetic is broken\nE       assert (1 + 1) == 3\n\ntests/e2e/test_x.py:7: AssertionError";

    #[test]
    fn ids_lines_and_details_come_from_pytests_report() {
        let f = failed_test(
            &case("tests.e2e.test_x.TestA", "test_b[1-2]", PYTEST),
            "tests/e2e/test_x.py",
        )
        .unwrap();
        assert_eq!(f.id, "tests/e2e/test_x.py::TestA::test_b[1-2]");
        assert_eq!(f.line, Some(7));
        assert_eq!(f.message, "AssertionError: arithmetic is broken");
        assert_eq!(
            f.detail,
            [
                ">       assert 1 + 1 == 3, 'arithmetic is broken'",
                "E       AssertionError: arithmetic is broken",
                "E       assert (1 + 1) == 3"
            ]
        );
        let plain = failed_test(
            &case("tests.e2e.test_x", "test_c", ""),
            "tests/e2e/test_x.py",
        )
        .unwrap();
        assert_eq!(plain.id, "tests/e2e/test_x.py::test_c");
        assert_eq!(plain.line, None);
        assert_eq!(
            plain.detail.len(),
            2,
            "the message's lines when there is no traceback"
        );
    }

    #[test]
    fn windows_are_laid_back_from_the_suites_end_and_touch() {
        let mut s = TestSuite::new("pytest");
        s.time = Some(std::time::Duration::from_secs(10));
        for t in [2.0, 3.0, 1.0] {
            let mut c = TestCase::new("t", TestCaseStatus::success());
            c.time = Some(std::time::Duration::from_secs_f64(t));
            s.add_test_case(c);
        }
        let utc_start = humantime::parse_rfc3339("2026-11-27T08:00:00Z")
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Local time two hours ahead of UTC, written with its offset (pytest 8) or without.
        for stamp in [
            "2026-11-27T10:00:00.000000+02:00",
            "2026-11-27T10:00:00.000000",
        ] {
            s.extra.insert("timestamp".into(), stamp.into());
            let w = windows(&s, (utc_start - 1.0, utc_start + 11.0));
            assert_eq!(w[2], Some((utc_start + 9.0, utc_start + 11.0)), "{stamp}");
            assert_eq!(w[1], Some((utc_start + 6.0, utc_start + 9.0)), "{stamp}");
            assert_eq!(w[0], Some((utc_start - 1.0, utc_start + 6.0)), "{stamp}");
        }
        assert_eq!(
            suite_start("2026-11-27T08:00:00-05:30", 0.0),
            Some(utc_start + 5.5 * 3600.0)
        );
    }
}
