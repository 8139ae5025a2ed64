//! What a run leaves for the next one in `.e2e-plan/`: per-file timings (for scheduling and
//! sharding) and the last run's failed files (for `--last-failed`).

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
    if !matches!(
        ExitCode::of(summary.exit_code),
        ExitCode::Ok | ExitCode::TestsFailed
    ) {
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
    for w in &summary.workers {
        if !w.first_pass_ran() {
            continue;
        }
        timings.record(&w.file, w.time_alone().map(secs), w.tests_time().map(secs));
        if let Some(cpu) = w.cpu_alone() {
            timings.record_cpu(&w.file, cpu);
        }
        if let Some(report) = w.junit.as_deref().and_then(|j| read(j).ok()) {
            timings.record_cases(&w.file, &case_times(&w.file, &report));
        }
    }
    if let Ok(text) = serde_json::to_string_pretty(&timings) {
        let _ = std::fs::write(Timings::path(dir), text);
    }
}
