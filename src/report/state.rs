//! What a run leaves for the next one in `.e2e-plan/`: per-file timings (for scheduling and
//! sharding) and the last run's failed files (for `--last-failed`), written by [`State`], a sink
//! of the run like the report files; and timings read from outside the run (`--timings FILE`).

use serde::{Deserialize, Serialize};

use crate::model::junit::{case_times, read};
use crate::model::{RunSummary, Verdict};
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
    timings.learn_run(&summary.workers);
    timings.learn_choice(summary);
    for w in summary.workers.iter().filter(|w| w.first_pass_ran()) {
        if let Some(report) = w.junit.as_deref().and_then(|j| read(j).ok()) {
            timings.record_cases(&w.file, &case_times(&w.file, &report));
        }
    }
    if let Ok(text) = serde_json::to_string_pretty(&timings) {
        let _ = std::fs::write(Timings::path(dir), text);
    }
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
    use crate::model::{Attempt, ExitCode, WorkerResult};

    fn attempt(file_tests: f64, packed: bool) -> Attempt {
        let mut a = Attempt::new(1, "db", std::path::Path::new("/l"));
        a.verdict = Verdict::Pass;
        a.tests_secs = Some(file_tests);
        a.startup_alone_secs = Some(3.0);
        a.startup_cpu_secs = Some(2.5);
        a.tests_alone_secs = Some(file_tests);
        a.tests_cpu_secs = Some(file_tests / 2.0);
        if packed {
            a.packed_with = vec!["other.py".into()];
        }
        a
    }

    /// Every file that ran learns its start-up and tests timed alone (a packed file its pack's
    /// start-up) and their CPU.
    #[test]
    fn files_learn_their_costs_alone() {
        let dir = tempfile::tempdir().unwrap();
        let workers: Vec<WorkerResult> = [("a.py", 1.0, false), ("b.py", 3.0, true)]
            .iter()
            .enumerate()
            .map(|(i, (f, t, packed))| {
                let a = attempt(*t, *packed);
                let mut w = WorkerResult::new(i, f, f, &a);
                w.push_attempt(a);
                w
            })
            .collect();
        let summary = RunSummary {
            cluster: None,
            prepared: false,
            version: 1,
            run_id: "r".into(),
            plan: "p.toml".into(),
            root: dir.path().into(),
            report_dir: dir.path().into(),
            started: String::new(),
            ended: String::new(),
            wall_secs: 0.0,
            jobs: "auto".into(),
            most_at_once: 0,
            work_secs: 0.0,
            exit_code: ExitCode::Ok,
            error: None,
            interrupted: false,
            flaky_policy: crate::model::FlakyPolicy::Pass,
            kept_databases: Vec::new(),
            cleanup_command: None,
            databases: Default::default(),
            shard: None,
            predicted_wall_secs: None,
            startups: None,
            unused_databases: Vec::new(),
            workers,
        };
        record_timings(dir.path(), &summary);
        let t = Timings::load(dir.path());
        let (a, b) = (&t.files["a.py"], &t.files["b.py"]);
        assert_eq!((a.startup, b.startup), (Some(3.0), Some(3.0)));
        assert_eq!((a.tests, b.tests), (Some(1.0), Some(3.0)));
        assert_eq!((a.tests_cpu, b.tests_cpu), (Some(0.5), Some(1.5)));
        assert_eq!((a.startup_cpu, b.startup_cpu), (Some(2.5), Some(2.5)));
    }
}
