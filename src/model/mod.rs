//! The run's results as data: verdicts, attempts, one file's result, the whole run's summary
//! (`summary.json`, version 1), and the few words they share with plans and events. A leaf: it
//! imports no other part of e2e-plan, and every layer above can use it.

pub mod artifacts;
pub mod junit;

use std::path::PathBuf;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The names of what a worker attempt writes in its folder: spelled here once, planned per
/// attempt by the planner (`planner::AttemptPaths`), read back by the reports.
pub mod files {
    /// The server's output, byte for byte.
    pub const SERVER_LOG: &str = "server.log";
    /// When each line of a stamped log arrived: `<unix seconds> <byte offset>` a line, in
    /// `<log>.times` beside it (`server.log.times`).
    pub fn times_of(log: &std::path::Path) -> std::path::PathBuf {
        let mut name = log.as_os_str().to_owned();
        name.push(".times");
        std::path::PathBuf::from(name)
    }
    /// The test process's output.
    pub const TEST_LOG: &str = "test.log";
    /// The JUnit the test command writes (`{junit}`).
    pub const JUNIT: &str = "junit.xml";
    /// A `[[service]]`'s output, stamped as the server's.
    pub fn service_log(name: &str) -> String {
        format!("service-{name}.log")
    }
    /// What a `[[resource]]`'s create and destroy commands printed.
    pub fn resource_log(name: &str) -> String {
        format!("resource-{name}.log")
    }
    /// The attempt's folder for what the test tool writes besides its JUnit (`{artifacts_dir}`).
    pub const ARTIFACTS: &str = "artifacts";
    /// The folder of an earlier attempt of a retried file: `attempt-<n>`.
    pub fn attempt_dir(n: u32) -> String {
        format!("attempt-{n}")
    }
}

/// How a command ends. The only place the exit codes are written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every file passed (or was flaky under `flaky = "pass"`).
    Ok,
    /// A file failed, timed out or errored, or was flaky under `flaky = "fail"`.
    TestsFailed,
    /// A mistake in the plan or the command line.
    Usage,
    /// Setup failed: a setup or prepare command, the cluster, a clone, a server never ready.
    Setup,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::TestsFailed => 1,
            ExitCode::Usage => 2,
            ExitCode::Setup => 3,
            ExitCode::Interrupted => 130,
        }
    }

    /// Whether the run failed in any way.
    pub fn is_ok(self) -> bool {
        self == ExitCode::Ok
    }

    /// The exit code a summary records, back as what it means (anything unknown is a setup
    /// failure: never a success).
    pub fn of(code: i32) -> Self {
        match code {
            0 => ExitCode::Ok,
            1 => ExitCode::TestsFailed,
            2 => ExitCode::Usage,
            130 => ExitCode::Interrupted,
            _ => ExitCode::Setup,
        }
    }
}

/// An exit code is its number to anyone who reads `summary.json`.
impl PartialEq<i32> for ExitCode {
    fn eq(&self, code: &i32) -> bool {
        self.code() == *code
    }
}

/// `summary.json` records the exit code as its number.
impl Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for ExitCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i32::deserialize(d).map(ExitCode::of)
    }
}

/// Whether a file that failed, then passed on a retry, fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlakyPolicy {
    /// A flaky file does not fail the run.
    Pass,
    /// A flaky file fails the run (exit 1).
    Fail,
}

/// A worker's phase, in the order a worker goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Cloning,
    /// Making its `[[resource]]`s.
    Resources,
    /// Starting its `[[service]]`s, one after another, each until ready (a span per service).
    Service,
    Starting,
    Testing,
    Stopping,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Cloning => "cloning",
            Phase::Resources => "resources",
            Phase::Service => "service",
            Phase::Starting => "starting",
            Phase::Testing => "testing",
            Phase::Stopping => "stopping",
        }
    }
}

/// How a file list was split into shards: a pure function of the files, the count and the
/// timings snapshot, recorded in every shard's reports so that `merge` can check that the
/// shards it is given cover every file exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// This shard, 1-based, and the number of shards.
    pub index: usize,
    pub count: usize,
    /// Names the split: the files, the count and the durations it balanced on.
    pub digest: String,
    /// Every file of the split (sorted) with the shard (1-based) that runs it.
    pub files: Vec<(String, usize)>,
}

impl Split {
    /// This shard's files.
    pub fn mine(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .filter(|(_, k)| *k == self.index)
            .map(|(f, _)| f.as_str())
    }
}

/// A test that failed or errored, as `summary.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedTest {
    /// pytest's node id: `tests/e2e/test_x.py::TestA::test_b`.
    pub id: String,
    /// The first line of the failure message.
    pub message: String,
    pub file: Option<String>,
    /// The failing line in `file`, where the report says it.
    pub line: Option<u32>,
    /// The failing source line and the exception lines (pytest's `>` and `E` lines), or the
    /// message's lines.
    pub detail: Vec<String>,
    /// What the server printed while this test ran.
    pub server_lines: Vec<String>,
    /// What each service printed while it ran (only services that printed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_lines: Vec<ServiceLines>,
}

/// A service's lines while a test ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLines {
    pub service: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub phase: Phase,
    /// Seconds since the run started.
    pub start: f64,
    pub end: f64,
    /// What it was of: a service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// A `[[service]]` that died while the tests ran, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_died: Option<(String, String)>,
    /// The sum of its tests' JUnit times: the attempt's duration minus this is start-up.
    #[serde(default)]
    pub tests_secs: Option<f64>,
    /// The CPU seconds its server and test process used (with their reaped children): what
    /// competes for the cores, unlike its wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<f64>,
    /// Of that, the CPU used before its tests: the server's until ready, the test process's
    /// until its tests began (their JUnit times before it ended). None if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_cpu_secs: Option<f64>,
    /// Its start-up (the server until ready, the test process until its tests began) as it
    /// would have taken alone: its wall time minus the time its processes waited on a run queue
    /// while others had the cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_alone_secs: Option<f64>,
    /// Its tests' time alone: their JUnit times minus the run-queue wait meanwhile of the test
    /// process and of its database's backends (where they could be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_alone_secs: Option<f64>,
    /// The CPU its tests used: the test process's after its start-up, the server's after it
    /// was ready, and its database's backends' (read from /proc; else their active time, timed
    /// alone as the tests are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_cpu_secs: Option<f64>,
    /// Sessions opened on its database, and the seconds its backends spent executing statements
    /// (PostgreSQL 14+'s `pg_stat_database`), read once they are gone. No session: the tests
    /// never used the worker's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sessions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_active_secs: Option<f64>,
    /// The CPU seconds its database's backends used while its tests ran, read from /proc when
    /// the server runs on this machine (a backend's active time says little of it: a test that
    /// streams inserts keeps its backend busy for seconds the statistics count as idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_cpu_secs: Option<f64>,
    /// The other files this attempt's test process ran, one after another (a pack); empty when
    /// the file had its worker to itself.
    #[serde(default)]
    pub packed_with: Vec<String>,
    /// A part of a split file: which (its tests are some of the file's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartNumber>,
}

/// Part `number` of `count` of a split file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartNumber {
    pub number: usize,
    pub count: usize,
    /// How many of the file's tests it was given.
    pub tests: usize,
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
            service_died: None,
            tests_secs: None,
            cpu_secs: None,
            startup_cpu_secs: None,
            startup_alone_secs: None,
            tests_alone_secs: None,
            tests_cpu_secs: None,
            db_sessions: None,
            db_active_secs: None,
            db_cpu_secs: None,
            packed_with: Vec::new(),
            part: None,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub failures: Vec<FailedTest>,
    pub attempts: Vec<Attempt>,
    /// What its attempts' test tool left in `{artifacts_dir}` and `[report] artifacts` kept.
    #[serde(default)]
    pub artifacts: Vec<artifacts::Artifact>,
}

impl WorkerResult {
    /// A file's result before its first attempt is folded in.
    pub fn new(index: usize, file: &str, stem: &str, first: &Attempt) -> Self {
        WorkerResult {
            index,
            file: file.to_string(),
            stem: stem.to_string(),
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
            artifacts: Vec::new(),
        }
    }

    /// A file that never started (cancelled before its turn): no logs.
    pub fn not_run(index: usize, file: &str, stem: &str, db_name: &str) -> Self {
        let a = Attempt::new(1, db_name, std::path::Path::new(""));
        let mut r = WorkerResult::new(index, file, stem, &a);
        r.message = Some("not started".into());
        r
    }

    /// Points the log paths at `dir` (the worker's folder, or where a kept database's logs went).
    pub fn set_log_dir(&mut self, dir: &std::path::Path) {
        self.log_dir = Some(dir.to_path_buf());
        self.server_log = Some(dir.join(files::SERVER_LOG));
        self.test_log = Some(dir.join(files::TEST_LOG));
        self.junit = Some(dir.join(files::JUNIT));
        for a in &mut self.attempts {
            a.log_dir = dir.to_path_buf();
        }
    }

    /// The file's time as one worker of its own, as the timings learn it: its first attempt's
    /// duration; a split file's, its parts' tests plus one mean start-up. None when it did not
    /// run to its end, or ran packed with others (its time is then only its tests').
    pub fn time_alone(&self) -> Option<f64> {
        if !self.first_pass_ran() {
            return None;
        }
        let firsts: Vec<&Attempt> = self.attempts.iter().filter(|a| a.number == 1).collect();
        if firsts[0].part.is_none() {
            return firsts[0]
                .packed_with
                .is_empty()
                .then_some(firsts[0].duration);
        }
        let tests: f64 = firsts.iter().map(|a| a.tests_secs).sum::<Option<f64>>()?;
        let startup = firsts.iter().map(|a| a.duration).sum::<f64>() - tests;
        Some(tests + (startup / firsts.len() as f64).max(0.0))
    }

    /// The CPU its worker used and, of that, its start-up's, as the timings learn them: its first
    /// attempt's, when it ran alone and whole (a pack's or a part's CPU is not the file's alone).
    pub fn cpu_alone(&self) -> Option<(f64, Option<f64>)> {
        let first = self.attempts.iter().find(|a| a.number == 1)?;
        let alone = first.part.is_none() && first.packed_with.is_empty();
        (alone && self.first_pass_ran()).then_some((first.cpu_secs?, first.startup_cpu_secs))
    }

    /// Its first pass (every part's, for a split file) ran to its end, passing or failing: only
    /// then do its times say how long it takes.
    pub fn first_pass_ran(&self) -> bool {
        let mut firsts = self.attempts.iter().filter(|a| a.number == 1).peekable();
        firsts.peek().is_some()
            && firsts.all(|a| matches!(a.verdict, Verdict::Pass | Verdict::Fail))
    }

    /// Its costs timed alone, as the timings learn them: its first attempt's start-up and tests
    /// (a packed file's start-up is its pack's; a split file's is its parts' mean, its tests
    /// their sum). None when a figure is missing.
    pub fn costs_alone(&self) -> Option<Alone> {
        let firsts: Vec<&Attempt> = self.attempts.iter().filter(|a| a.number == 1).collect();
        if firsts.is_empty() || !self.first_pass_ran() {
            return None;
        }
        let n = firsts.len() as f64;
        let sum = |f: fn(&Attempt) -> Option<f64>| firsts.iter().map(|a| f(a)).sum::<Option<f64>>();
        Some(Alone {
            startup: sum(|a| a.startup_alone_secs)? / n,
            startup_cpu: sum(|a| a.startup_cpu_secs)? / n,
            tests: sum(|a| a.tests_alone_secs)?,
            tests_cpu: sum(|a| a.tests_cpu_secs)?,
        })
    }

    /// The sum of its first attempts' test times (a split file's over its parts).
    pub fn tests_time(&self) -> Option<f64> {
        self.attempts
            .iter()
            .filter(|a| a.number == 1)
            .map(|a| a.tests_secs)
            .sum()
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

/// A file's costs timed alone: seconds alone and CPU seconds, of its start-up and of its tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alone {
    pub startup: f64,
    pub startup_cpu: f64,
    pub tests: f64,
    pub tests_cpu: f64,
}

/// How much of the workers' CPU went to starting up (servers, test processes before their
/// tests), and, when that is most of it, what `units = "auto"` would do about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Startups {
    pub cpu_secs: f64,
    /// Of the workers' CPU.
    pub share: f64,
    /// With `units = "file"` and start-ups most of the CPU: the wall `units = "auto"` predicts
    /// for this suite, from this run's costs, and its units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_wall_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_units: Option<String>,
    /// What the same model predicts for a worker per file, to compare like with like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_wall_secs: Option<f64>,
}

/// A worker's database that no session ever opened while its tests ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnusedDatabase {
    pub file: String,
    pub database: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptDatabase {
    pub name: String,
    /// Connection URL with any password replaced by `****`.
    pub url: String,
    pub file: String,
    pub log_dir: PathBuf,
    /// On a throwaway cluster: the owner-only file with the password the URL hides.
    pub password_file: Option<PathBuf>,
    /// The `[[resource]]`s kept with it (`vhost for <database>`), which `rollback` destroys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunError {
    pub message: String,
    pub detail: Option<String>,
}

/// `summary.json`. Versioned: fields are only ever added within a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub version: u32,
    pub run_id: String,
    pub plan: PathBuf,
    pub root: PathBuf,
    pub report_dir: PathBuf,
    pub started: String,
    pub ended: String,
    pub wall_secs: f64,
    /// `[run] jobs` as the run had it: `"auto"`, or a number (0 = every file at once).
    #[serde(default)]
    pub jobs: String,
    /// The most workers (units: a pack or a part is one) that ran at once.
    #[serde(default)]
    pub most_at_once: usize,
    /// Sum of the workers' durations.
    pub work_secs: f64,
    pub exit_code: ExitCode,
    pub error: Option<RunError>,
    pub interrupted: bool,
    pub flaky_policy: FlakyPolicy,
    pub kept_databases: Vec<KeptDatabase>,
    /// The command that drops kept databases.
    pub cleanup_command: Option<String>,
    /// Where the workers' databases came from.
    pub databases: DatabaseSources,
    /// The embedded cluster this run used (null with a `[database] template`).
    #[serde(default)]
    pub cluster: Option<ClusterUse>,
    /// Whether `prepare` ran (false when the template's fingerprint matched).
    #[serde(default)]
    pub prepared: bool,
    /// `--shard K/N`: the split this run was one shard of (null when unsharded).
    pub shard: Option<Split>,
    /// The wall time the planner predicted (null without timings), against `wall_secs`.
    #[serde(default)]
    pub predicted_wall_secs: Option<f64>,
    /// The start-ups' share of the workers' CPU (null when unknown).
    #[serde(default)]
    pub startups: Option<Startups>,
    /// Files whose tests never opened a session on their worker's database (PostgreSQL 14+):
    /// the copy was made for nothing, and the tests used another database or none. For a pack,
    /// each of its files. Empty when every worker's database was used, or unknown.
    #[serde(default)]
    pub unused_databases: Vec<UnusedDatabase>,
    pub workers: Vec<WorkerResult>,
}

/// The embedded PostgreSQL of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterUse {
    /// The cluster kept between runs (else a throwaway one).
    pub kept: bool,
    /// initdb ran in this run (always for a throwaway cluster).
    pub initdb: bool,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32, v: Verdict) -> Attempt {
        let mut a = Attempt::new(n, "db", std::path::Path::new("/l"));
        a.verdict = v;
        a.duration = 1.5;
        a
    }

    /// A split file's time alone is its parts' tests and one start-up, not the first part's
    /// time: the timings and a shard's recorded duration must not learn a part for the file.
    #[test]
    fn a_split_file_is_timed_as_one_worker() {
        let part = |n: usize, tests: f64| {
            let mut a = attempt(1, Verdict::Pass);
            a.duration = tests + 1.0;
            a.tests_secs = Some(tests);
            a.part = Some(PartNumber {
                number: n,
                count: 2,
                tests: 3,
            });
            a
        };
        let mut r = WorkerResult::new(0, "t.py", "t", &part(1, 4.0));
        r.push_attempt(part(1, 4.0));
        r.push_attempt(part(2, 6.0));
        assert_eq!(r.time_alone(), Some(11.0));
        assert_eq!(r.tests_time(), Some(10.0));
        let mut packed = attempt(1, Verdict::Pass);
        packed.packed_with = vec!["u.py".into()];
        let mut p = WorkerResult::new(1, "p.py", "p", &packed);
        p.push_attempt(packed);
        assert_eq!(p.time_alone(), None);
        let mut alone = WorkerResult::new(2, "a.py", "a", &attempt(1, Verdict::Fail));
        alone.push_attempt(attempt(1, Verdict::Fail));
        alone.push_attempt(attempt(2, Verdict::Pass));
        assert_eq!(alone.time_alone(), Some(1.5), "the first attempt's time");
    }

    #[test]
    fn exit_codes_round_trip_and_unknown_is_never_success() {
        use ExitCode::*;
        for c in [Ok, TestsFailed, Usage, Setup, Interrupted] {
            assert_eq!(ExitCode::of(c.code()), c);
        }
        assert_eq!(ExitCode::of(101), Setup);
    }

    #[test]
    fn a_file_that_failed_then_passed_is_flaky() {
        let mut r = WorkerResult::new(0, "t.py", "t", &attempt(1, Verdict::Fail));
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
