//! Results of a run: per-worker verdicts and the `summary.json` document (version 1).

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::events::Phase;
use crate::plan::FlakyPolicy;
use crate::planner::WorkerPlan;
use crate::redact::scrub;
use crate::steps::database::redact;
use crate::steps::{lock, RunCx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Timeout,
    Cancelled,
    /// Failed, then passed on a retry.
    Flaky,
    /// The worker could not be set up (clone failed, server never ready).
    Error,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Timeout => "TIMEOUT",
            Verdict::Cancelled => "CANCELLED",
            Verdict::Flaky => "FLAKY",
            Verdict::Error => "ERROR",
        }
    }

    /// Whether this verdict fails the run.
    pub fn fails(self, flaky: FlakyPolicy) -> bool {
        match self {
            Verdict::Fail | Verdict::Timeout | Verdict::Error => true,
            Verdict::Flaky => flaky == FlakyPolicy::Fail,
            Verdict::Pass | Verdict::Cancelled => false,
        }
    }
}

/// Test counts from a worker's JUnit file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSpan {
    pub phase: Phase,
    /// Seconds since the run started.
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub number: u32,
    #[serde(rename = "result")]
    pub verdict: Verdict,
    pub exit_code: Option<i32>,
    pub duration: f64,
    pub db_name: String,
    pub port: Option<u16>,
    pub log_dir: PathBuf,
    pub counts: Option<Counts>,
    pub phases: Vec<PhaseSpan>,
    pub message: Option<String>,
    /// How the server ended when it died while the tests ran ("exited with code 7").
    pub server_died: Option<String>,
}

impl Attempt {
    pub fn new(number: u32, db_name: &str, log_dir: &std::path::Path) -> Self {
        Attempt {
            number,
            verdict: Verdict::Cancelled,
            exit_code: None,
            duration: 0.0,
            db_name: db_name.to_string(),
            port: None,
            log_dir: log_dir.to_path_buf(),
            counts: None,
            phases: Vec::new(),
            message: None,
            server_died: None,
        }
    }

    pub fn finish(mut self, verdict: Verdict, start: &mut Instant, phases: Vec<PhaseSpan>) -> Self {
        self.verdict = verdict;
        self.duration = start.elapsed().as_secs_f64();
        self.phases = phases;
        self
    }
}

/// One file's result over all its attempts.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerResult {
    pub index: usize,
    pub file: String,
    pub stem: String,
    #[serde(rename = "result")]
    pub verdict: Verdict,
    pub exit_code: Option<i32>,
    /// Seconds over all attempts.
    pub duration: f64,
    /// The first attempt's database (retries' are always dropped).
    pub db_name: String,
    pub db_kept: bool,
    pub port: Option<u16>,
    /// The worker's logs; None (null) for a file that never started, which has none.
    pub log_dir: Option<PathBuf>,
    pub server_log: Option<PathBuf>,
    pub test_log: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub counts: Option<Counts>,
    pub message: Option<String>,
    /// Its failing tests (from its JUnit), with what the server printed while each ran.
    pub failures: Vec<super::failures::FailedTest>,
    pub attempts: Vec<Attempt>,
}

impl WorkerResult {
    pub fn new(w: &WorkerPlan, first: &Attempt) -> Self {
        WorkerResult {
            index: w.index,
            file: w.file.clone(),
            stem: w.stem.clone(),
            verdict: Verdict::Cancelled,
            exit_code: None,
            duration: 0.0,
            db_name: first.db_name.clone(),
            db_kept: false,
            port: None,
            log_dir: None,
            server_log: None,
            test_log: None,
            junit: None,
            counts: None,
            message: None,
            failures: Vec::new(),
            attempts: Vec::new(),
        }
    }

    /// A file that never started (cancelled before its turn): no logs.
    pub fn not_run(w: &WorkerPlan, db_name: &str) -> Self {
        let a = Attempt::new(1, db_name, &w.log_dir);
        let mut r = WorkerResult::new(w, &a);
        r.message = Some("not started".into());
        r
    }

    /// Points the log paths at `dir` (the worker's folder, or where a kept database's logs went).
    pub fn set_log_dir(&mut self, dir: &std::path::Path) {
        self.log_dir = Some(dir.to_path_buf());
        self.server_log = Some(dir.join("server.log"));
        self.test_log = Some(dir.join("test.log"));
        self.junit = Some(dir.join("junit.xml"));
        for a in &mut self.attempts {
            a.log_dir = dir.to_path_buf();
        }
    }

    pub fn push_attempt(&mut self, a: Attempt) {
        if self.log_dir.is_none() {
            let dir = a.log_dir.clone();
            self.set_log_dir(&dir);
        }
        let failed_before = self
            .attempts
            .iter()
            .any(|p| matches!(p.verdict, Verdict::Fail | Verdict::Timeout | Verdict::Error));
        self.verdict = if a.verdict == Verdict::Pass && failed_before {
            Verdict::Flaky
        } else {
            a.verdict
        };
        self.exit_code = a.exit_code;
        self.duration += a.duration;
        self.port = a.port;
        self.counts = a.counts;
        self.message = a.message.clone();
        self.attempts.push(a);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeptDatabase {
    pub name: String,
    /// Connection URL with any password replaced by `****`.
    pub url: String,
    pub file: String,
    pub log_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    pub message: String,
    pub detail: Option<String>,
}

/// `summary.json`. Versioned: fields are only ever added within a version.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub version: u32,
    pub run_id: String,
    pub plan: PathBuf,
    pub root: PathBuf,
    pub report_dir: PathBuf,
    pub started: String,
    pub ended: String,
    pub wall_secs: f64,
    /// Sum of the workers' durations.
    pub work_secs: f64,
    pub exit_code: i32,
    pub error: Option<RunError>,
    pub interrupted: bool,
    pub flaky_policy: FlakyPolicy,
    pub kept_databases: Vec<KeptDatabase>,
    /// The command that drops kept databases.
    pub cleanup_command: Option<String>,
    /// Where the workers' databases came from.
    pub databases: DatabaseSources,
    /// `--shard K/N`: the split this run was one shard of (null when unsharded).
    pub shard: Option<crate::planner::Split>,
    pub workers: Vec<WorkerResult>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DatabaseSources {
    /// Cloned from the template during the run.
    pub cloned: usize,
    /// Claimed ready from the template's pool (`[database] pool`).
    pub from_pool: usize,
}

impl RunSummary {
    pub fn count(&self, v: Verdict) -> usize {
        self.workers.iter().filter(|w| w.verdict == v).count()
    }
}

pub fn build(cx: &RunCx, exit_code: i32) -> RunSummary {
    let results = lock(&cx.results);
    let scrub_worker = |mut w: WorkerResult| {
        w.message = w.message.map(|m| scrub(&m).into_owned());
        for f in &mut w.failures {
            f.message = scrub(&f.message).into_owned();
            for l in f.detail.iter_mut().chain(f.server_lines.iter_mut()) {
                *l = scrub(l).into_owned();
            }
        }
        for a in &mut w.attempts {
            a.message = a.message.take().map(|m| scrub(&m).into_owned());
        }
        w
    };
    let run_started = cx
        .started_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let mut workers: Vec<WorkerResult> = cx
        .dag
        .workers
        .iter()
        .map(|w| {
            results
                .get(&w.index)
                .cloned()
                .unwrap_or_else(|| WorkerResult::not_run(w, &w.db_name))
        })
        .map(|mut w| {
            if matches!(w.verdict, Verdict::Fail | Verdict::Timeout | Verdict::Error) {
                let testing = w
                    .attempts
                    .last()
                    .and_then(|a| {
                        a.phases
                            .iter()
                            .find(|p| p.phase == crate::events::Phase::Testing)
                    })
                    .map(|p| (run_started + p.start, run_started + p.end))
                    .unwrap_or((run_started, f64::INFINITY));
                w.failures = super::failures::failed_tests(&w, testing);
            }
            w
        })
        .map(scrub_worker)
        .collect();
    workers.sort_by(|a, b| a.file.cmp(&b.file));
    let template_url = cx.template_url();
    let kept_databases: Vec<KeptDatabase> = workers
        .iter()
        .filter(|w| w.db_kept)
        .map(|w| KeptDatabase {
            name: w.db_name.clone(),
            url: redact(&crate::planner::with_database(&template_url, &w.db_name)),
            file: w.file.clone(),
            log_dir: w.log_dir.clone().unwrap_or_default(),
        })
        .collect();
    let cleanup_command = (!kept_databases.is_empty())
        .then(|| format!("e2e-plan rollback {}", cx.plan.path.display()));
    let now = std::time::SystemTime::now();
    RunSummary {
        version: 1,
        run_id: cx.dag.run_id.clone(),
        plan: cx.plan.path.clone(),
        root: cx.plan.root.clone(),
        report_dir: cx.plan.report_dir.clone(),
        started: humantime::format_rfc3339_millis(cx.started_wall).to_string(),
        ended: humantime::format_rfc3339_millis(now).to_string(),
        wall_secs: cx.started_at.elapsed().as_secs_f64(),
        work_secs: workers.iter().map(|w| w.duration).sum(),
        exit_code,
        error: lock(&cx.fatal).as_ref().map(|e| RunError {
            message: scrub(&e.message).into_owned(),
            detail: e.detail.as_deref().map(|d| scrub(d).into_owned()),
        }),
        interrupted: exit_code == 130,
        flaky_policy: cx.plan.run.flaky,
        kept_databases,
        cleanup_command,
        databases: DatabaseSources {
            cloned: cx.cloned.load(std::sync::atomic::Ordering::SeqCst),
            from_pool: cx.pool_claimed.load(std::sync::atomic::Ordering::SeqCst),
        },
        shard: cx.dag.split.clone(),
        workers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32, v: Verdict) -> Attempt {
        let mut a = Attempt::new(n, "db", std::path::Path::new("/l"));
        a.verdict = v;
        a.duration = 1.5;
        a
    }

    #[test]
    fn a_file_that_failed_then_passed_is_flaky() {
        let plan = crate::planner::WorkerPlan {
            index: 0,
            file: "t.py".into(),
            stem: "t".into(),
            db_name: "db".into(),
            log_dir: PathBuf::from("/l"),
            junit: PathBuf::from("/l/junit.xml"),
            predicted: None,
        };
        let mut r = WorkerResult::new(&plan, &attempt(1, Verdict::Fail));
        assert_eq!(r.log_dir, None, "no logs before an attempt");
        r.push_attempt(attempt(1, Verdict::Fail));
        assert_eq!(r.verdict, Verdict::Fail);
        r.push_attempt(attempt(2, Verdict::Pass));
        assert_eq!(r.verdict, Verdict::Flaky);
        assert_eq!(r.duration, 3.0, "durations add up over attempts");
        assert!(
            Verdict::Flaky.fails(FlakyPolicy::Fail) && !Verdict::Flaky.fails(FlakyPolicy::Pass)
        );
        assert!(!Verdict::Cancelled.fails(FlakyPolicy::Fail));
    }
}
