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
    /// Copies made ahead for units the queue has yet to start (their records, held by no
    /// worker: cleanup drops any left): a unit renames one to its own name, in milliseconds.
    spares: std::sync::Mutex<Vec<Held>>,
    made_spares: std::sync::atomic::AtomicUsize,
    /// Copies in flight (workers', spares', the pool's refill).
    pub copies: Copies,
}

impl Default for Databases {
    fn default() -> Self {
        Databases {
            clone_slots: Semaphore::new(CLONE_CONCURRENCY),
            spares: std::sync::Mutex::new(Vec::new()),
            made_spares: std::sync::atomic::AtomicUsize::new(0),
            copies: Copies::default(),
        }
    }
}

/// The run's database copies in flight, for `jobs = "auto"`'s reading of the machine: a copy
/// waits on the database server's disk and leaves its core looking idle, yet the planner's
/// model counts it as a busy core, and so must the gate, or a slow copy opens it for more
/// workers than the cores can run once the copies land.
#[derive(Default, Clone)]
pub struct Copies(std::sync::Arc<CopyCount>);

#[derive(Default)]
struct CopyCount {
    now: std::sync::atomic::AtomicUsize,
    /// The most in flight at once since [`Copies::most_since`] last asked.
    most: std::sync::atomic::AtomicUsize,
}

/// One copy in flight, until dropped.
pub struct Copying(Copies);

impl Copies {
    pub fn begin(&self) -> Copying {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.0.now.fetch_add(1, SeqCst) + 1;
        self.0.most.fetch_max(n, SeqCst);
        Copying(self.clone())
    }

    /// The most copies in flight at once since the last call (a copy that began and ended in
    /// between counts: its wait is in the idle time read over that span).
    pub fn most_since(&self) -> usize {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.0.now.load(SeqCst);
        self.0.most.swap(now, SeqCst).max(now)
    }
}

impl Drop for Copying {
    fn drop(&mut self) {
        self.0
             .0
            .now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Databases {
    /// Copies the template into a spare, for a unit the queue will start later; journaled and
    /// held by no worker until a unit takes it.
    pub async fn make_spare(&self, cx: &RunCx, cancel: &Cancel) -> Result<(), StepError> {
        let _permit = tokio::select! {
            p = self.clone_slots.acquire() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = cancel.stop.cancelled() => return Ok(()),
        };
        let k = self
            .made_spares
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = crate::planner::spare_db_name(&cx.dag().template_name, &cx.dag().run_id, k);
        let template = cx.template().await?;
        let entry = journal_database(cx, &name).await?;
        let held = Held {
            key: KEY.to_string(),
            name: name.clone(),
            entry,
            worker: usize::MAX,
            attempt: 0,
            files: Vec::new(),
            follows: None,
            record: None,
        };
        cx.send(RunEvent::Held(held.clone()));
        let copying = self.copies.begin();
        database::clone_database(
            &database::admin_url(&template.url),
            &cx.dag().template_name,
            &name,
            template.file_copy,
            cx.plan().database.busy_timeout,
        )
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
        drop(copying);
        let _ = cx.journal.done::<Resource>(entry, None);
        self.spares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(held);
        Ok(())
    }

    /// A spare renamed to `name` for attempt `n` of `w`; None when there is none (or the
    /// rename failed: the spare stays for cleanup).
    async fn take_spare(
        &self,
        cx: &RunCx,
        w: &WorkerPlan,
        n: u32,
        name: &str,
    ) -> Result<Option<Held>, StepError> {
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(spare) = spare else {
            return Ok(None);
        };
        let held = hold(cx, w, n, name).await?;
        let admin = cx.admin_url().await?;
        let renamed = async {
            let client = database::connect(&admin).await?;
            database::claim_pooled(&client, &spare.name, name).await
        }
        .await;
        match renamed {
            Ok(true) => {
                let _ = cx.journal.done::<Resource>(held.entry, None);
                let _ = cx.journal.undone(spare.entry);
                cx.send(RunEvent::Gone(vec![spare.entry]));
                cx.send(RunEvent::DatabaseFrom { pool: false });
                Ok(Some(held))
            }
            _ => {
                cx.send(RunEvent::Gone(vec![held.entry]));
                let _ = cx.journal.undone(held.entry);
                Ok(None)
            }
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
            if let Some(held) = self.take_spare(cx, w, n, name).await? {
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
            let _copying = self.copies.begin();
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
