//! Teardown: the keep decision and the reports, then the cleanup (per-worker resources released,
//! passing workers' logs removed), the cluster's stop, and the journal's end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::owner::{KeepCandidate, KeptFile, Question, RunEvent};
use super::per_worker::Held;
use super::resource::Resource;
use super::{database, RunCx, StepError, CLONE_CONCURRENCY};
use crate::engine::journal::Recorded;

/// The report step: the workers' stage is over; the keep decision (databases that really exist,
/// their logs moved where the next run leaves them), then every sink writes its reports.
pub async fn report(cx: &RunCx) {
    cx.send(RunEvent::WorkersOver);
    let keep = match cx.dag().nodes.iter().find_map(|n| match n.action {
        crate::planner::Action::Cleanup { keep } => Some(keep),
        _ => None,
    }) {
        Some(k) => k,
        None => cx.plan().database.keep,
    };
    let chosen = cx
        .ask(|tx| Question::ToKeep(keep, tx))
        .await
        .unwrap_or_default();
    let kept = still_there(cx, chosen).await;
    let mut logs = Vec::new();
    for c in &kept {
        for f in &c.files {
            if let Some(to) = keep_logs(cx, &c.name, f) {
                logs.push((f.index, to));
            }
        }
    }
    cx.send(RunEvent::Kept {
        names: kept.into_iter().map(|c| c.name).collect(),
        logs,
    });
    cx.ask(Question::Finish).await;
}

/// The databases to keep that really exist: a test may have dropped its own. A run never
/// claims to keep what is not there.
async fn still_there(cx: &RunCx, chosen: Vec<KeepCandidate>) -> Vec<KeepCandidate> {
    if chosen.is_empty() {
        return chosen;
    }
    let names: Vec<String> = chosen.iter().map(|c| c.name.clone()).collect();
    let found = match cx.admin_url().await {
        Ok(admin) => match database::connect(&admin).await {
            Ok(client) => database::existing(&client, &names)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.message),
    };
    let found: BTreeSet<String> = match found {
        Ok(found) => found.into_iter().collect(),
        Err(e) => {
            cx.warn(format!("cannot check that the kept databases exist: {e}"));
            return chosen;
        }
    };
    for gone in names.iter().filter(|n| !found.contains(*n)) {
        cx.warn(format!(
            "database {gone} was to be kept, but it no longer exists (did the tests drop it?)"
        ));
    }
    chosen
        .into_iter()
        .filter(|c| found.contains(&c.name))
        .collect()
}

/// Moves a kept database's file's logs out of `workers/`, which the next run clears, to
/// `kept/<database>/`, recorded in the journal so that `rollback` removes them with the database.
/// Returns the new folder.
fn keep_logs(cx: &RunCx, db: &str, f: &KeptFile) -> Option<PathBuf> {
    let from = &f.log_dir;
    // Files of one pack share its database: each keeps its own folder beside it.
    let name = if f.packed {
        format!("{db}-{}", f.stem)
    } else {
        db.to_string()
    };
    let report_dir = &cx.plan().report_dir;
    let to = kept_logs_dir(report_dir).join(name);
    let entry = cx.journal.intent(&Resource::Folder { path: to.clone() });
    let moved = std::fs::create_dir_all(kept_logs_dir(report_dir))
        .and_then(|()| std::fs::rename(from, &to));
    match (entry, moved) {
        (Ok(_), Ok(())) => Some(to),
        (entry, Err(e)) => {
            if let Ok(entry) = entry {
                let _ = cx.journal.undone(entry);
            }
            cx.warn(format!(
                "cannot move the logs of kept database {db} to {}: {e}; they stay in {}, which the next run clears",
                to.display(),
                from.display()
            ));
            None
        }
        (Err(e), Ok(())) => {
            cx.warn(format!(
                "cannot journal {}: {e}; remove it by hand after `rollback`",
                to.display()
            ));
            Some(to)
        }
    }
}

/// Where the logs of kept databases live until `rollback`.
pub fn kept_logs_dir(report_dir: &Path) -> PathBuf {
    report_dir.join("kept")
}

/// Releases what is not kept and removes passing workers' logs: the resources made after the
/// databases first (a [[resource]] may live in a system the database serves), then the
/// databases, each wave concurrently, bounded.
pub async fn cleanup(cx: &Arc<RunCx>) -> Result<String, StepError> {
    // A copy still in flight must be held before the list is taken.
    cx.prefetch.join().await;
    let release = cx.ask(Question::ToRelease).await.unwrap_or_default();
    let (databases, resources): (Vec<Held>, Vec<Held>) = release
        .resources
        .iter()
        .cloned()
        .partition(Held::is_database);
    let mut failed_resources = release_all(cx, resources).await;
    let failed_databases = release_all(cx, databases.clone()).await;
    // A passing file's artifacts folder is there only if `[report] artifacts` kept it.
    for dir in &release.remove {
        if cx.plan().artifacts == crate::plan::Artifacts::None {
            let _ = std::fs::remove_dir_all(dir);
        } else {
            remove_but_artifacts(dir);
        }
    }
    let mut what = Vec::new();
    if !failed_databases.is_empty() {
        what.push(format!("drop {} database(s)", failed_databases.len()));
    }
    if !failed_resources.is_empty() {
        what.push(format!("destroy {} resource(s)", failed_resources.len()));
    }
    if !what.is_empty() {
        let what = format!("could not {}", what.join(" or "));
        failed_resources.extend(failed_databases);
        let errors = failed_resources;
        // The summary is already out: say it here, and leave the journal for `rollback`.
        cx.warn(format!(
            "{what}; `e2e-plan rollback {}` will try again:\n  {}",
            cx.plan().path.display(),
            errors.join("\n  ")
        ));
        return Err(StepError::new(what).with_detail(errors.join("\n")));
    }
    let made = release.resources.len() - databases.len();
    let resources = if made > 0 {
        format!(", destroyed {made} resource(s)")
    } else {
        String::new()
    };
    Ok(format!(
        "dropped {} database(s){resources}, kept {}",
        databases.len(),
        release.kept
    ))
}

/// Removes a passing file's folder but for its artifacts (`[report] artifacts = "all"`, or a
/// test its test tool reran), at any depth (a split file's parts have theirs), with the folders
/// that lead to them.
fn remove_but_artifacts(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_file(&path);
        } else if entry.file_name() != crate::model::files::ARTIFACTS {
            remove_but_artifacts(&path);
        }
    }
    // Empty now unless artifacts were kept below it.
    let _ = std::fs::remove_dir(dir);
}

/// Releases `held` concurrently (bounded), marks each released one gone, and returns what
/// could not be released.
async fn release_all(cx: &Arc<RunCx>, held: Vec<Held>) -> Vec<String> {
    let slots = Arc::new(Semaphore::new(CLONE_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for held in held {
        let (cx, slots) = (Arc::clone(cx), Arc::clone(&slots));
        set.spawn(async move {
            let _permit = slots.acquire().await;
            let kind = cx.resources().into_iter().find(|r| r.key() == held.key);
            let result = match kind {
                Some(kind) => kind.release(&cx, &held).await,
                None => Err(format!("{} {}: no such resource kind", held.key, held.name)),
            };
            (held.entry, result)
        });
    }
    let mut errors = Vec::new();
    let mut gone = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((entry, Ok(()))) => gone.push(entry),
            Ok((_, Err(e))) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    cx.send(RunEvent::Gone(gone));
    errors
}

/// Stops the local cluster, unless it holds kept databases.
pub async fn stop_cluster(cx: &RunCx) -> Result<Option<String>, StepError> {
    let ending = cx.ask(Question::Ending).await;
    let keep_running = ending.is_some_and(|e| e.cluster_kept);
    cx.cluster.stop(&cx.journal, keep_running).await
}

/// Deletes the journal when nothing of the run is left, else marks it ended (kept on
/// purpose). When more is left than was kept on purpose (a failed drop), the journal stays
/// open, so that the next `apply` warns and `rollback` retries.
pub async fn finish_journal(cx: &RunCx) {
    let Some(ending) = cx.ask(Question::Ending).await else {
        return;
    };
    let all: Vec<Recorded<Resource>> = crate::engine::journal::read_all(&cx.plan().state_dir());
    let pending = all
        .into_iter()
        .find(|r| r.path == cx.journal.path())
        .map(|r| r.pending)
        .unwrap_or_default();
    let kept_logs = kept_logs_dir(&cx.plan().report_dir);
    let on_purpose = |r: &Resource| match r {
        Resource::Database { name, .. } => ending.kept.contains(name),
        // A kept cluster's only folder is its own.
        Resource::Folder { path } => path.starts_with(&kept_logs) || ending.cluster_kept,
        Resource::Postmaster { .. } => ending.cluster_kept,
        Resource::ProcessGroup { .. } => false,
        Resource::Command { database, .. } => ending.kept.contains(database),
    };
    if pending.iter().all(on_purpose) {
        let _ = cx.journal.finish(pending.len());
    }
}
