//! What a run leaves for the next one in `.e2e-plan/`: per-file timings (for scheduling and
//! sharding) and the last run's failed files (for `--last-failed`), written by [`State`], a sink
//! of the run like the report files; and timings read from outside the run (`--timings FILE`).

use serde::{Deserialize, Serialize};

use crate::model::junit::{case_times, read};
use crate::model::{Attempt, Phase, RunSummary, Verdict, WorkerResult};
use crate::plan::Plan;
use crate::planner::Timings;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    /// Files that failed, timed out or were flaky.
    pub failed: Vec<String>,
}

/// One file per plan: two plans sharing a root must not pick each other's failures.
fn last_run_path(plan: &Plan) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let id = std::fs::canonicalize(&plan.path).unwrap_or_else(|_| plan.path.clone());
    let hash = crate::planner::hex(&Sha256::digest(id.to_string_lossy().as_bytes()));
    plan.state_dir()
        .join(format!("last-run-{}.json", &hash[..12]))
}

pub fn last_run(plan: &Plan) -> Option<LastRun> {
    serde_json::from_str(&std::fs::read_to_string(last_run_path(plan)).ok()?).ok()
}

/// The state kept for the next run, as a sink: written when the run finishes.
pub struct State {
    plan: Plan,
}

impl State {
    pub fn new(plan: &Plan) -> Self {
        State { plan: plan.clone() }
    }
}

impl crate::events::Sink for State {
    fn event(&mut self, _: &crate::events::Event) {}

    /// Best effort, and not a report: nothing to list.
    fn finish(&mut self, summary: &RunSummary) -> Vec<crate::events::Written> {
        record_run(&self.plan, summary);
        Vec::new()
    }
}

/// Records timings of files that ran to the end and the files that did not pass. Best effort:
/// these only order and select future work.
pub fn record_run(plan: &Plan, summary: &RunSummary) {
    let dir = plan.state_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    // Shards balance on the timings snapshot: a shard that changed it would make the shards
    // run after it compute another split (files run twice, others never). Only unsharded runs
    // update it; a shard's durations stay in its summary.json and junit.xml.
    if summary.shard.is_none() {
        record_timings(&dir, summary);
    }
    // Only runs whose tests ran say what failed (not setup failures or interruptions).
    use crate::model::ExitCode;
    if !matches!(summary.exit_code, ExitCode::Ok | ExitCode::TestsFailed) {
        return;
    }
    let last = LastRun {
        run_id: summary.run_id.clone(),
        failed: summary
            .workers
            .iter()
            .filter(|w| {
                matches!(
                    w.verdict,
                    Verdict::Fail | Verdict::Timeout | Verdict::Flaky | Verdict::Error
                )
            })
            .map(|w| w.file.clone())
            .collect(),
    };
    if let Ok(text) = serde_json::to_string_pretty(&last) {
        let _ = std::fs::write(last_run_path(plan), text);
    }
}

fn record_timings(dir: &std::path::Path, summary: &RunSummary) {
    let mut timings = Timings::load(dir);
    let secs = std::time::Duration::from_secs_f64;
    let cores = crate::sys::cores() as f64;
    for w in &summary.workers {
        if !w.first_pass_ran() {
            continue;
        }
        let (alone, tests) = (w.time_alone().map(secs), w.tests_time().map(secs));
        match busy_during_tests(&summary.workers, w) {
            Some(busy) => timings.record_busy(&w.file, alone, tests, busy / cores),
            None => timings.record(&w.file, alone, tests),
        }
        if let Some((cpu, startup)) = w.cpu_alone() {
            timings.record_cpu(&w.file, cpu, startup);
        }
        if let Some(report) = w.junit.as_deref().and_then(|j| read(j).ok()) {
            timings.record_cases(&w.file, &case_times(&w.file, &report));
        }
    }
    if let Ok(text) = serde_json::to_string_pretty(&timings) {
        let _ = std::fs::write(Timings::path(dir), text);
    }
}

/// How many workers were busy, on average, while `w`'s first attempt ran its tests (itself
/// included; a pack's files count once, by their shared database). None without a testing span.
fn busy_during_tests(workers: &[WorkerResult], w: &WorkerResult) -> Option<f64> {
    let first = w.attempts.iter().find(|a| a.number == 1)?;
    let t = first.phases.iter().find(|p| p.phase == Phase::Testing)?;
    if t.end <= t.start {
        return None;
    }
    // Busy from its server's start: waiting for a copy of the database takes no CPU.
    let span = |a: &Attempt| {
        let start = a.phases.iter().find(|p| p.phase != Phase::Cloning)?.start;
        Some((start, a.phases.last()?.end))
    };
    let mut spans = std::collections::BTreeMap::new();
    for a in workers.iter().flat_map(|w| &w.attempts) {
        if let Some(s) = span(a) {
            spans.entry(a.db_name.as_str()).or_insert(s);
        }
    }
    let busy: f64 = spans
        .values()
        .map(|(s, e)| (e.min(t.end) - s.max(t.start)).max(0.0))
        .sum();
    Some(busy / (t.end - t.start))
}

/// `--timings FILE`: durations from a `timings.json`, or from a JUnit file (the merged
/// `junit.xml` a previous CI run uploaded): each suite's `e2e-plan.duration` or its time, by its
/// `file` property, or by the file its test cases' classnames name (plain pytest).
pub fn timings_from_file(path: &std::path::Path) -> Result<Timings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(t) = serde_json::from_str::<Timings>(&text) {
        return Ok(t);
    }
    let report = super::junit::read(path).map_err(|e| {
        format!(
            "{}: neither a timings.json nor a JUnit file ({e})",
            path.display()
        )
    })?;
    let mut per_file: std::collections::BTreeMap<String, f64> = Default::default();
    for suite in &report.test_suites {
        if super::shards::read_record(suite).is_some() {
            continue;
        }
        match super::shards::property(suite, "file") {
            Some(file) => {
                let secs = super::shards::suite_duration(suite)
                    .or(suite.time)
                    .unwrap_or_default()
                    .as_secs_f64();
                *per_file.entry(file).or_default() += secs;
            }
            None => {
                for case in &suite.test_cases {
                    let Some(class) = case.classname.as_deref() else {
                        continue;
                    };
                    let file = module_file(class);
                    let secs = case.time.unwrap_or_default().as_secs_f64();
                    *per_file.entry(file).or_default() += secs;
                }
            }
        }
    }
    if per_file.is_empty() {
        return Err(format!("{}: no test durations in it", path.display()));
    }
    let mut t = Timings::default();
    for (file, secs) in per_file {
        t.record(&file, Some(std::time::Duration::from_secs_f64(secs)), None);
    }
    Ok(t)
}

/// The file of a pytest classname: `tests.e2e.test_x.TestA` → `tests/e2e/test_x.py`.
fn module_file(classname: &str) -> String {
    let parts: Vec<&str> = classname.split('.').collect();
    // Classes are capitalised; modules are not.
    let module: Vec<&str> = parts
        .iter()
        .take_while(|p| !p.starts_with(|c: char| c.is_ascii_uppercase()))
        .copied()
        .collect();
    format!("{}.py", module.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PhaseSpan;

    fn worker(file: &str, db: &str, start: f64, testing: (f64, f64)) -> WorkerResult {
        let mut a = Attempt::new(1, db, std::path::Path::new("/l"));
        let span = |phase, start, end| PhaseSpan { phase, start, end };
        a.phases = vec![
            span(Phase::Cloning, 0.0, start),
            span(Phase::Starting, start, testing.0),
            span(Phase::Testing, testing.0, testing.1),
        ];
        a.verdict = Verdict::Pass;
        let mut w = WorkerResult::new(0, file, file, &a);
        w.push_attempt(a);
        w
    }

    /// A pack's files count once; a worker done before the tests began does not count, nor one
    /// while it waited for its copy.
    #[test]
    fn the_workers_busy_beside_a_files_tests_are_counted_once_each() {
        let long = worker("long.py", "db0", 0.0, (1.0, 5.0));
        let workers = vec![
            long.clone(),
            worker("a.py", "db1", 0.0, (0.5, 5.0)),
            worker("b.py", "db2", 0.0, (0.5, 3.0)),
            worker("c.py", "db2", 0.0, (0.5, 3.0)),
            worker("d.py", "db3", 0.0, (0.2, 0.9)),
            // Waited for its copy until 4.0: busy only for the last second.
            worker("e.py", "db4", 4.0, (4.5, 6.0)),
        ];
        let busy = busy_during_tests(&workers, &long).unwrap();
        assert!((busy - 2.75).abs() < 1e-9, "{busy}");
    }
}
