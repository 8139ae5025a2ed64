//! What a run leaves for the next one in `.e2e-plan/`: per-file timings (for scheduling and
//! sharding) and the last run's failed files (for `--last-failed`).

use std::path::Path;

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

fn last_run_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("last-run.json")
}

pub fn last_run(state_dir: &Path) -> Option<LastRun> {
    serde_json::from_str(&std::fs::read_to_string(last_run_path(state_dir)).ok()?).ok()
}

/// Records timings of files that ran to the end and the files that did not pass. Best effort:
/// these only order and select future work.
pub fn record_run(plan: &Plan, summary: &RunSummary) {
    let dir = plan.state_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut timings = Timings::load(&dir);
    for w in &summary.workers {
        if let Some(first) = w.attempts.first() {
            if matches!(first.verdict, Verdict::Pass | Verdict::Fail) {
                timings.record(&w.file, std::time::Duration::from_secs_f64(first.duration));
            }
        }
    }
    if let Ok(text) = serde_json::to_string_pretty(&timings) {
        let _ = std::fs::write(Timings::path(&dir), text);
    }
    if summary.interrupted {
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
        let _ = std::fs::write(last_run_path(&dir), text);
    }
}
