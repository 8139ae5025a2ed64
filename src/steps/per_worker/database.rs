//! A worker's database: claimed from the template's pool (a rename) or cloned from the template
//! (bounded by the run's clone slots). Journaled before it exists; dropped by cleanup unless the
//! keep decision keeps it; undone by `rollback` (`Resource::Database`).

use tokio::sync::Semaphore;

use super::{Fut, Held, WorkerResource};
use crate::engine::Cancel;
use crate::planner::WorkerPlan;
use crate::steps::owner::RunEvent;
use crate::steps::resource::Resource;
use crate::steps::{database, RunCx, StepError};

/// The key of a worker database's [`Held`] record.
pub const KEY: &str = "database";

/// Concurrent clones: about 4 at once is where PostgreSQL 15 stops getting faster on 2 cores.
pub const CLONE_CONCURRENCY: usize = 4;

/// The run's worker databases.
pub struct Databases {
    /// Bounds concurrent clones: PostgreSQL copies faster from a few connections than from many.
    clone_slots: Semaphore,
}

impl Default for Databases {
    fn default() -> Self {
        Databases {
            clone_slots: Semaphore::new(CLONE_CONCURRENCY),
        }
    }
}

impl WorkerResource for Databases {
    fn key(&self) -> &str {
        KEY
    }

    fn acquire<'a>(
        &'a self,
        cx: &'a RunCx,
        w: &'a WorkerPlan,
        n: u32,
        cancel: &'a Cancel,
    ) -> Fut<'a, Result<Option<Held>, StepError>> {
        Box::pin(async move {
            let Some(planned) = w.attempt(n) else {
                return Err(StepError::new(format!(
                    "attempt {n} of {} was not planned",
                    w.file
                )));
            };
            let name = planned.db_name.as_str();
            if let Some(held) = cx.pool.claim(cx, w, n, name).await? {
                return Ok(Some(held));
            }
            let _permit = tokio::select! {
                p = self.clone_slots.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(None),
                },
                _ = cancel.stop.cancelled() => return Ok(None),
            };
            let template = cx.template().await?;
            let held = hold(cx, w, n, name).await?;
            database::clone_database(
                &database::admin_url(&template.url),
                &cx.dag().template_name,
                name,
                template.file_copy,
                cx.plan().database.busy_timeout,
            )
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
            let _ = cx.journal.done::<Resource>(held.entry, None);
            cx.send(RunEvent::DatabaseFrom { pool: false });
            Ok(Some(held))
        })
    }

    fn release<'a>(&'a self, cx: &'a RunCx, held: &'a Held) -> Fut<'a, Result<(), String>> {
        Box::pin(async move {
            let admin = cx.admin_url().await.map_err(|e| e.message)?;
            database::drop_database(&admin, &held.name)
                .await
                .map_err(|e| e.to_string())?;
            let _ = cx.journal.undone(held.entry);
            Ok(())
        })
    }
}

/// Journals a worker attempt's database before it is cloned or claimed, and tells the owner it is
/// held (first: if the outcome is unknown, cleanup still drops the name).
pub async fn hold(cx: &RunCx, w: &WorkerPlan, n: u32, name: &str) -> Result<Held, StepError> {
    let entry = journal_database(cx, name).await?;
    let held = Held::of(KEY, name, entry, w, n);
    cx.send(RunEvent::Held(held.clone()));
    Ok(held)
}

/// Records a database this run is about to create (or rename into being) in the journal.
pub async fn journal_database(
    cx: &RunCx,
    name: &str,
) -> Result<crate::engine::journal::Entry, StepError> {
    let admin_url = cx.admin_url().await?;
    cx.journal
        .intent(&Resource::Database {
            admin_url,
            name: name.to_string(),
            ephemeral: cx.plan().database.template.is_none(),
        })
        .map_err(|e| StepError::new(format!("cannot write the journal: {e}")))
}
