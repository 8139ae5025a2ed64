//! What a run leaves for the next one in `.e2e-plan/`: per-file timings (for scheduling and
//! sharding) and the last run's failed files (for `--last-failed`).

use serde::{Deserialize, Serialize};

use super::summary::{RunSummary, Verdict};
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
    if !matches!(summary.exit_code, 0 | 1) {
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
    for w in &summary.workers {
        if let Some(first) = w.attempts.first() {
            if matches!(first.verdict, Verdict::Pass | Verdict::Fail) {
                timings.record(&w.file, std::time::Duration::from_secs_f64(first.duration));
            }
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
        let prop = |name: &str| {
            suite
                .properties
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.value.to_string())
        };
        if super::shards::read_record(suite).is_some() {
            continue;
        }
        match prop("file") {
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
        t.record(&file, std::time::Duration::from_secs_f64(secs));
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
