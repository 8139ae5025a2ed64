//! JUnit: reading workers' files and merging them into one `<testsuites>` document.
//!
//! Merging streams: each input is read, re-counted and written out before the next is read, so
//! memory holds one input at a time; the root element's totals are written last.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

pub use crate::model::junit::read;
use crate::model::{RunSummary, Verdict, WorkerResult};

/// Writes suites as they come and the totals at the end.
pub struct Merger {
    out: PathBuf,
    body: BufWriter<File>,
    body_path: PathBuf,
    tests: usize,
    failures: usize,
    errors: usize,
    time: Duration,
}

impl Merger {
    pub fn new(out: &Path) -> std::io::Result<Merger> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let body_path = out.with_extension("xml.part");
        Ok(Merger {
            out: out.to_path_buf(),
            body: BufWriter::new(File::create(&body_path)?),
            body_path,
            tests: 0,
            failures: 0,
            errors: 0,
            time: Duration::ZERO,
        })
    }

    /// Adds suites, recounting them from their cases.
    pub fn add(&mut self, suites: Vec<TestSuite>) -> std::io::Result<()> {
        let mut report = Report::new("part");
        for s in suites {
            let mut fresh = TestSuite::new(s.name.clone());
            fresh.properties = s.properties;
            fresh.system_out = s.system_out;
            fresh.system_err = s.system_err;
            fresh.timestamp = s.timestamp;
            // What the reader kept for the failures section is not part of the merged report.
            let mut cases = s.test_cases;
            for c in &mut cases {
                c.extra.clear();
            }
            fresh.add_test_cases(cases);
            fresh.time = s.time.or_else(|| {
                let total: Duration = fresh.test_cases.iter().filter_map(|c| c.time).sum();
                Some(total)
            });
            self.tests += fresh.tests;
            self.failures += fresh.failures;
            self.errors += fresh.errors;
            self.time += fresh.time.unwrap_or_default();
            report.add_test_suite(fresh);
        }
        // quick-junit counts skipped cases as `disabled`; the Jenkins schema calls them `skipped`.
        // (A literal ` disabled="` cannot occur in escaped text or attribute values.)
        let xml = report
            .to_string()
            .map_err(std::io::Error::other)?
            .replace(" disabled=\"", " skipped=\"");
        // Log tails travel into error descriptions: no password leaves with them.
        let xml = crate::redact::scrub(&xml).into_owned();
        // Keep what is between the root element's tags.
        let start = xml
            .find("<testsuites")
            .and_then(|i| xml[i..].find('>').map(|j| i + j + 1));
        let end = xml.rfind("</testsuites>");
        if let (Some(s), Some(e)) = (start, end) {
            self.body.write_all(&xml.as_bytes()[s..e])?;
        }
        Ok(())
    }

    pub fn finish(self, name: &str) -> std::io::Result<()> {
        let Merger {
            out,
            body,
            body_path,
            tests,
            failures,
            errors,
            time,
        } = self;
        body.into_inner().map_err(|e| e.into_error())?;
        let tmp = out.with_extension("xml.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            write!(
                w,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
                xml_escape(name),
                time.as_secs_f64()
            )?;
            let mut part = BufReader::new(File::open(&body_path)?);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = part.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])?;
            }
            w.write_all(b"\n</testsuites>\n")?;
            w.flush()?;
        }
        std::fs::remove_file(&body_path)?;
        std::fs::rename(&tmp, &out)
    }
}

/// Escapes text for XML and HTML, after scrubbing it: a secret is recognised before escaping
/// changes how it is written.
pub fn xml_escape(s: &str) -> String {
    crate::redact::scrub(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Strips characters XML 1.0 cannot hold (log tails may contain escape codes).
fn xml_safe(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
        })
        .collect()
}

/// The suites one worker contributes: its own, tagged with its file, with earlier attempts as
/// flaky/rerun elements; or one error case when its file is unusable; or a skipped case.
pub fn worker_suites(w: &WorkerResult) -> Vec<TestSuite> {
    let mut suites = own_suites(w);
    // The tests a dead server kept from running are reported, not silently missing.
    let died = w.attempts.last().and_then(|a| {
        a.server_died
            .as_ref()
            .map(|how| format!("the server {how}"))
            .or_else(|| {
                a.service_died
                    .as_ref()
                    .map(|(s, how)| format!("service {s} {how}"))
            })
    });
    let died = died.map(|what| {
        (
            "tests after the server died",
            "server died",
            format!("{what} during the tests; the file's remaining tests did not run"),
        )
    });
    // A file that did not pass, yet whose JUnit has no failing case (one that timed out in a pack,
    // whose pytest was interrupted to write the JUnit of the tests that ended; one its pack never
    // reached), says why in a case of its own: its JUnit would otherwise read as passed.
    let failing = |s: &TestSuite| {
        s.test_cases
            .iter()
            .any(|c| matches!(c.status, TestCaseStatus::NonSuccess { .. }))
    };
    let unexplained = matches!(w.verdict, Verdict::Fail | Verdict::Timeout | Verdict::Error)
        && !suites.iter().any(failing);
    let why = unexplained.then(|| {
        let message = w.message.clone().unwrap_or_else(|| w.verdict.label().into());
        if w.verdict == Verdict::Timeout {
            (
                "tests after the timeout",
                "TIMEOUT",
                format!(
                    "{}: {message}; the test running then and the file's remaining tests did not end",
                    w.file
                ),
            )
        } else {
            ("the file's result", w.verdict.label(), format!("{}: {message}", w.file))
        }
    });
    if let Some((name, kind, message)) = died.or(why) {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(message);
        status.set_type(kind);
        let mut case = TestCase::new(name, status);
        case.set_classname(w.file.as_str());
        match suites.first_mut() {
            Some(s) => {
                s.add_test_case(case);
            }
            None => {
                let mut s = TestSuite::new(w.file.as_str());
                tag_suite(&mut s, w);
                s.add_test_case(case);
                suites.push(s);
            }
        }
    }
    suites
}

fn own_suites(w: &WorkerResult) -> Vec<TestSuite> {
    let tag = |s: &mut TestSuite| tag_suite(s, w);
    // A worker that never started must not pick up a JUnit file an earlier run left there.
    let junit = match &w.junit {
        Some(j) if !w.attempts.is_empty() => j.clone(),
        _ => return vec![cancelled_suite(w)],
    };
    if w.verdict == Verdict::Cancelled && !junit.exists() {
        return vec![cancelled_suite(w)];
    }
    match read(&junit) {
        Ok(report) => {
            let earlier: Vec<Report> = w
                .attempts
                .iter()
                .rev()
                .skip(1)
                .filter_map(|a| {
                    read(
                        &a.log_dir
                            .join(crate::model::files::attempt_dir(a.number))
                            .join(crate::model::files::JUNIT),
                    )
                    .ok()
                })
                .collect();
            report
                .test_suites
                .into_iter()
                .map(|mut s| {
                    if s.name.as_str() == "pytest" || s.name.as_str().is_empty() {
                        s.name = w.file.as_str().into();
                    }
                    tag(&mut s);
                    for case in &mut s.test_cases {
                        attach_reruns(case, &earlier);
                    }
                    s
                })
                .collect()
        }
        Err(why) => {
            let mut suite = TestSuite::new(w.file.as_str());
            tag(&mut suite);
            let code = w
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none (killed)".into());
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(format!(
                "{}: no usable JUnit report ({why}); exit code {code}",
                w.file
            ));
            status.set_type(w.verdict.label());
            let log = w.test_log.clone().unwrap_or_default();
            status.set_description(xml_safe(&crate::steps::process::tail(&log, 40)));
            let mut case = TestCase::new(w.file.as_str(), status);
            case.set_classname(w.file.as_str());
            case.set_time(Duration::from_secs_f64(w.duration));
            suite.add_test_case(case);
            vec![suite]
        }
    }
}

fn tag_suite(s: &mut TestSuite, w: &WorkerResult) {
    s.add_property(Property::new("file", w.file.as_str()));
    s.add_property(Property::new("result", w.verdict.label()));
    // The duration `timings.json` would record, for `merge --timings` to fold in: a shard never
    // updates the timings its sibling shards balance on.
    // A packed file's duration is its tests' alone, not its time alone: not folded.
    if let Some(alone) = w.time_alone() {
        s.add_property(Property::new(
            super::shards::DURATION,
            format!("{alone:.3}"),
        ));
    }
}

/// One skipped case for a file that did not run to its end.
fn cancelled_suite(w: &WorkerResult) -> TestSuite {
    let mut suite = TestSuite::new(w.file.as_str());
    tag_suite(&mut suite, w);
    let mut status = TestCaseStatus::skipped();
    status.set_message("cancelled before it finished");
    let mut case = TestCase::new(w.file.as_str(), status);
    case.set_classname(w.file.as_str());
    suite.add_test_case(case);
    suite
}

/// Adds the failures of the same test in earlier attempts as `flakyFailure` (it passed in the
/// end) or `rerunFailure` (it still fails), as nextest writes them.
fn attach_reruns(case: &mut TestCase, earlier: &[Report]) {
    for report in earlier {
        let same = report
            .test_suites
            .iter()
            .flat_map(|s| &s.test_cases)
            .find(|c| c.name == case.name && c.classname == case.classname);
        let Some(TestCaseStatus::NonSuccess {
            kind,
            message,
            description,
            ty,
            ..
        }) = same.map(|c| &c.status)
        else {
            continue;
        };
        let mut rerun = TestRerun::new(*kind);
        rerun.message = message.clone();
        rerun.description = description.clone();
        // The schema requires a type; pytest writes none.
        rerun.ty = ty.clone().or_else(|| {
            Some(match kind {
                NonSuccessKind::Failure => "failure".into(),
                NonSuccessKind::Error => "error".into(),
            })
        });
        match &mut case.status {
            TestCaseStatus::Success { flaky_runs } => flaky_runs.push(rerun),
            TestCaseStatus::NonSuccess { reruns, .. } => reruns.push(rerun),
            TestCaseStatus::Skipped { .. } => {}
        }
    }
}

/// Writes `{report_dir}/junit.xml` for a run.
pub fn write_run(summary: &RunSummary, out: &Path) -> std::io::Result<()> {
    let mut m = Merger::new(out)?;
    let mut workers: Vec<&WorkerResult> = summary.workers.iter().collect();
    workers.sort_by(|a, b| a.file.cmp(&b.file));
    for w in workers {
        m.add(worker_suites(w))?;
    }
    if let Some(split) = &summary.shard {
        m.add(vec![super::shards::record_suite(split)])?;
    }
    m.finish(&format!("e2e-plan run {}", summary.run_id))
}

/// `e2e-plan merge`: streams every input into `out`; when any input is unreadable, every bad one
/// is named and nothing is written. With `check`, inputs that carry shard records must cover
/// one split exactly once (see [`super::shards::check`]); their records are not copied.
pub fn merge_files(
    inputs: &[PathBuf],
    out: &Path,
    check: bool,
    timings: Option<&Path>,
) -> Result<(usize, usize), Vec<String>> {
    let io = |e: std::io::Error| vec![format!("{}: {e}", out.display())];
    let mut m = Merger::new(out).map_err(io)?;
    let mut bad = Vec::new();
    let mut shards = Vec::new();
    let mut durations = Vec::new();
    let mut suites = 0;
    for p in inputs {
        match read(p) {
            Ok(report) => {
                let mut shard = super::shards::Shard {
                    input: p.display().to_string(),
                    ..Default::default()
                };
                let mut kept = Vec::new();
                for s in report.test_suites {
                    match super::shards::read_record(&s) {
                        Some(r) => shard.record = Some(r),
                        None => {
                            let file = super::shards::suite_file(&s);
                            if let Some(d) = super::shards::suite_duration(&s) {
                                durations.push((file.clone(), d));
                            }
                            shard.ran.insert(file);
                            kept.push(s);
                        }
                    }
                }
                suites += kept.len();
                shards.push(shard);
                if bad.is_empty() {
                    m.add(kept).map_err(io)?;
                }
            }
            Err(e) => bad.push(format!("{}: {e}", p.display())),
        }
    }
    if bad.is_empty() && check {
        bad = super::shards::check(&shards);
    }
    if !bad.is_empty() {
        let _ = std::fs::remove_file(&m.body_path);
        return Err(bad);
    }
    let tests = m.tests;
    m.finish("merged").map_err(io)?;
    if let Some(path) = timings {
        fold_timings(path, &durations).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    }
    Ok((suites, tests))
}

/// `merge --timings FILE`: the explicit step that folds the shards' durations into the timings
/// snapshot the next sharded runs balance on.
fn fold_timings(path: &Path, durations: &[(String, Duration)]) -> std::io::Result<()> {
    let mut timings: crate::planner::Timings = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e),
    };
    for (file, took) in durations {
        timings.record(file, Some(*took), None);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&timings).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
