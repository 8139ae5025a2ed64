//! Why files failed, on one screen: each failing test by its id with the lines that say why, and
//! what the file's server printed while that test ran (the cause of an end-to-end failure is
//! often on the server's side). Read from the worker's JUnit and its stamped server log.

use std::fmt::Write as _;
use std::path::Path;

use crate::model::artifacts::{Artifact, ArtifactKind};
pub use crate::model::FailedTest;
use crate::model::{Verdict, WorkerResult};

/// How much of the failures the terminal shows (`--failure-output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailureOutput {
    /// A few lines per test and per server, at most ten files.
    #[default]
    Short,
    /// Everything the reports hold.
    Full,
    /// No failures section.
    None,
}

/// What a failing test's reader opens first: its screenshots and traces (videos are in the
/// HTML report), the last attempt's first.
pub fn evidence<'a>(all: &'a [Artifact], test: &'a str) -> Vec<&'a Artifact> {
    let mut out: Vec<&Artifact> = all
        .iter()
        .filter(|a| a.test.as_deref() == Some(test))
        .filter(|a| matches!(a.kind, ArtifactKind::Screenshot | ArtifactKind::Trace))
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.attempt));
    out
}

pub fn kind_label(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::Screenshot => "screenshot",
        ArtifactKind::Trace => "trace",
        ArtifactKind::Video => "video",
        ArtifactKind::Other => "file",
    }
}

/// Caps of the short output.
const FILES: usize = 10;
const TESTS: usize = 5;
const DETAIL: usize = 8;
const SERVER: usize = 12;
const LOG_TAIL: usize = 15;

/// The failures section, after the table: one block per file that did not pass.
pub fn render(workers: &[WorkerResult], mode: FailureOutput, report_dir: &Path) -> String {
    let failing: Vec<&WorkerResult> = workers
        .iter()
        .filter(|w| !matches!(w.verdict, Verdict::Pass | Verdict::Cancelled))
        .collect();
    if failing.is_empty() || mode == FailureOutput::None {
        return String::new();
    }
    let full = mode == FailureOutput::Full;
    let mut o = String::from("\nfailures\n");
    let shown = if full { failing.len() } else { FILES };
    for w in failing.iter().take(shown) {
        file_block(&mut o, w, full, report_dir);
    }
    if failing.len() > shown {
        let _ = writeln!(
            o,
            "… {} more file(s) did not pass: every one is in {} and {}",
            failing.len() - shown,
            report_dir.join("summary.json").display(),
            report_dir.join("report.html").display()
        );
    }
    o
}

fn file_block(o: &mut String, w: &WorkerResult, full: bool, report_dir: &Path) {
    let why = w
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let _ = writeln!(o, "── {} {}{why}", w.verdict.label(), w.file);
    if w.verdict == Verdict::Flaky {
        let _ = writeln!(
            o,
            "   failed on attempt 1, passed on attempt {}",
            w.attempts.len()
        );
        // What the failing attempts left: the evidence of the flake.
        let last = w.attempts.last().map(|a| a.number).unwrap_or(1);
        for a in w
            .artifacts
            .iter()
            .filter(|a| a.attempt < last)
            .filter(|a| matches!(a.kind, ArtifactKind::Screenshot | ArtifactKind::Trace))
        {
            let _ = writeln!(
                o,
                "   {} of attempt {}: {}",
                kind_label(a.kind),
                a.attempt,
                report_dir.join(&a.path).display()
            );
        }
        return;
    }
    let path = |p: &Option<std::path::PathBuf>| p.clone().unwrap_or_default();
    let (test_log, server_log, junit) = (path(&w.test_log), path(&w.server_log), path(&w.junit));
    let cap = |n: usize| if full { usize::MAX } else { n };
    for f in w.failures.iter().take(cap(TESTS)) {
        let _ = writeln!(o, "   ✗ {}", f.id);
        lines(o, &f.detail, "     ", cap(DETAIL), false, &test_log);
        for a in evidence(&w.artifacts, &f.id) {
            let path = report_dir.join(&a.path);
            let _ = writeln!(o, "     {}: {}", kind_label(a.kind), path.display());
            if a.kind == ArtifactKind::Trace {
                let _ = writeln!(
                    o,
                    "       open it: playwright show-trace {}",
                    path.display()
                );
            }
        }
        if !f.server_lines.is_empty() {
            let _ = writeln!(o, "     server, while it ran:");
            lines(
                o,
                &f.server_lines,
                "       │ ",
                cap(SERVER),
                true,
                &server_log,
            );
        }
        for sl in &f.service_lines {
            let log = w
                .log_dir
                .clone()
                .unwrap_or_default()
                .join(crate::model::files::service_log(&sl.service));
            let _ = writeln!(o, "     service {}, while it ran:", sl.service);
            lines(o, &sl.lines, "       │ ", cap(SERVER), true, &log);
        }
    }
    if w.failures.len() > cap(TESTS) {
        let _ = writeln!(
            o,
            "   … {} more failing test(s) in {}",
            w.failures.len() - TESTS,
            junit.display()
        );
    }
    let last = w.attempts.last();
    let mut died = last.is_some_and(|a| a.server_died.is_some());
    if died {
        let _ = writeln!(o, "   the server's last lines:");
        tail_of(o, &server_log, cap(SERVER));
    }
    if let Some((service, _)) = last.and_then(|a| a.service_died.as_ref()) {
        died = true;
        let log = w
            .log_dir
            .clone()
            .unwrap_or_default()
            .join(crate::model::files::service_log(service));
        let _ = writeln!(o, "   service {service}'s last lines:");
        tail_of(o, &log, cap(SERVER));
    }
    if w.failures.is_empty() && !died {
        let _ = writeln!(
            o,
            "   no failing test in its JUnit; the end of its test log:"
        );
        tail_of(o, &test_log, cap(LOG_TAIL));
    }
}

/// Up to `cap` lines (the first ones, or the last ones with `last`), and where the rest is.
fn lines(o: &mut String, all: &[String], indent: &str, cap: usize, last: bool, rest: &Path) {
    let n = all.len().min(cap);
    let shown = if last {
        &all[all.len() - n..]
    } else {
        &all[..n]
    };
    if last && all.len() > n {
        let _ = writeln!(
            o,
            "{indent}… {} earlier line(s) in {}",
            all.len() - n,
            rest.display()
        );
    }
    for l in shown {
        let _ = writeln!(o, "{indent}{l}");
    }
    if !last && all.len() > n {
        let _ = writeln!(
            o,
            "{indent}… {} more line(s) in {}",
            all.len() - n,
            rest.display()
        );
    }
}

fn tail_of(o: &mut String, log: &Path, cap: usize) {
    let text = crate::steps::process::tail(log, cap);
    let all: Vec<String> = text.lines().map(str::to_string).collect();
    if all.is_empty() {
        let _ = writeln!(o, "       (empty: {})", log.display());
        return;
    }
    lines(o, &all, "       │ ", usize::MAX, true, log);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(file: &str, verdict: Verdict, message: Option<&str>) -> WorkerResult {
        let stem = file.trim_end_matches(".py").replace('/', "_");
        let log_dir = std::path::PathBuf::from("/project/target/e2e/workers").join(&stem);
        let plan =
            crate::planner::WorkerPlan::bare(0, file, &stem, log_dir, "app_test_ab12cd34_0".into());
        let mut a = crate::model::Attempt::new(1, plan.db_name(), &plan.log_dir);
        a.verdict = verdict;
        a.message = message.map(str::to_string);
        let mut w = WorkerResult::new(plan.index, &plan.file, &plan.stem, &a);
        w.push_attempt(a);
        w
    }

    fn failure(id: &str, detail: &[&str], server: &[&str]) -> FailedTest {
        FailedTest {
            service_lines: Vec::new(),
            id: id.into(),
            message: detail.first().copied().unwrap_or_default().into(),
            file: Some(id.split("::").next().unwrap_or_default().into()),
            line: Some(3),
            detail: detail.iter().map(|l| l.to_string()).collect(),
            server_lines: server.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn sample() -> Vec<WorkerResult> {
        let mut shop = worker("tests/e2e/test_shop.py", Verdict::Fail, None);
        let traceback: Vec<String> = (1..=15).map(|i| format!("  frame {i}")).collect();
        let traceback: Vec<&str> = traceback.iter().map(String::as_str).collect();
        shop.failures = vec![
            failure(
                "tests/e2e/test_shop.py::TestCart::test_total",
                &[">       assert cart.total == 30", "E       assert 20 == 30"],
                &[
                    "GET /cart 200",
                    "POST /cart/items 500",
                    "Traceback (most recent call last):",
                ],
            ),
            failure(
                "tests/e2e/test_shop.py::test_checkout",
                &["E       KeyError: 'price'"],
                &traceback,
            ),
        ];
        let mut crash = worker(
            "tests/e2e/test_crash.py",
            Verdict::Fail,
            Some("server exited with code 7 during the tests"),
        );
        if let Some(a) = crash.attempts.last_mut() {
            a.server_died = Some("exited with code 7".into());
        }
        let hang = worker(
            "tests/e2e/test_hang.py",
            Verdict::Timeout,
            Some("timed out after 5m"),
        );
        let mut flaky = worker("tests/e2e/test_flaky.py", Verdict::Fail, None);
        let mut second = crate::model::Attempt::new(2, "db", Path::new("/x"));
        second.verdict = Verdict::Pass;
        flaky.push_attempt(second);
        let ok = worker("tests/e2e/test_ok.py", Verdict::Pass, None);
        vec![shop, crash, hang, flaky, ok]
    }

    #[test]
    fn the_failures_section_short() {
        insta::assert_snapshot!(render(
            &sample(),
            FailureOutput::Short,
            Path::new("/project/target/e2e")
        ));
    }

    #[test]
    fn the_failures_section_full() {
        insta::assert_snapshot!(render(
            &sample(),
            FailureOutput::Full,
            Path::new("/project/target/e2e")
        ));
    }

    #[test]
    fn no_failures_section_when_asked_or_when_all_passed() {
        assert_eq!(render(&sample(), FailureOutput::None, Path::new("/r")), "");
        let ok = vec![worker("tests/test_ok.py", Verdict::Pass, None)];
        assert_eq!(render(&ok, FailureOutput::Short, Path::new("/r")), "");
    }
}
