//! The template's pool: copies cloned after one run so the next run starts without cloning.
//!
//! A pooled copy is a database whose comment names the template and the template's fingerprint
//! when it was cloned. Claiming one renames it to the worker's name and clears the comment in one
//! transaction, so two runs never claim the same copy. A copy is created under the run's journal
//! (a runner killed mid-clone leaves nothing `rollback` would miss) and leaves the journal once its
//! comment is set: from then on it belongs to the pool, not to the run. `e2e-plan pool drain`
//! removes a pool.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::owner::RunEvent;
use super::per_worker::{database::hold, Held};
use super::resource::Resource;
use super::{database, RunCx, StepError, CLONE_CONCURRENCY};
use crate::engine::Cancel;
use crate::planner::{pool_db_name, WorkerPlan};

/// The pool as one run sees it: the copies it may claim (oldest first), the fingerprint they must
/// match, and the refill started during the run. Its own bookkeeping, behind its methods.
pub struct Pool {
    enabled: OnceLock<bool>,
    ready: Mutex<VecDeque<String>>,
    fingerprint: OnceLock<String>,
    refill: Mutex<Option<tokio::task::JoinHandle<Result<String, StepError>>>>,
    refill_slots: Arc<Semaphore>,
    /// The session that claims pooled copies, opened at the first claim.
    claim_session: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            enabled: OnceLock::new(),
            ready: Mutex::new(VecDeque::new()),
            fingerprint: OnceLock::new(),
            refill: Mutex::new(None),
            refill_slots: Arc::new(Semaphore::new(1)),
            claim_session: tokio::sync::Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn err(e: impl std::fmt::Display) -> StepError {
    StepError::new(e.to_string())
}

impl Pool {
    /// Decided once the cluster (if any) runs: see [`super::setup::pool_enabled`].
    pub fn set_enabled(&self, cx: &RunCx) {
        let _ = self.enabled.set(super::setup::pool_enabled(cx));
    }

    /// Whether this run uses a pool: configured, and on a server that outlives the run.
    pub fn enabled(&self) -> bool {
        self.enabled.get() == Some(&true)
    }

    /// After the template is known to be current: which fresh copies this run may claim. `prepared`:
    /// the template was just (re)built, so every existing copy is stale and is marked so (the refill
    /// drops it, off the critical path).
    pub async fn load(
        &self,
        cx: &RunCx,
        admin: &tokio_postgres::Client,
        fingerprint: &str,
        prepared: bool,
    ) -> Result<usize, StepError> {
        let template = &cx.dag().template_name;
        let _ = self.fingerprint.set(fingerprint.to_string());
        if prepared {
            // Its own session: the lock waits for another run's refill, so that no copy of the old
            // template lands afterwards, and ends with the session.
            let session = database::connect(&cx.admin_url().await?)
                .await
                .map_err(err)?;
            database::lock_pool(&session, template).await.map_err(err)?;
            let copies = database::list_pool(&session, template, None)
                .await
                .map_err(err)?;
            for c in copies {
                database::mark_pooled(
                    &session,
                    &c.name,
                    &database::pool_comment(template, "stale"),
                )
                .await
                .map_err(err)?;
            }
            return Ok(0);
        }
        let fresh: Vec<String> = database::list_pool(admin, template, Some(fingerprint))
            .await
            .map_err(err)?
            .into_iter()
            .filter(|c| c.fresh)
            .map(|c| c.name)
            .collect();
        let n = fresh.len();
        *lock(&self.ready) = fresh.into();
        Ok(n)
    }

    /// Takes a ready copy for a worker attempt, under the run's journal. Ok(None): the pool is
    /// empty (or off).
    pub async fn claim(
        &self,
        cx: &RunCx,
        w: &WorkerPlan,
        attempt: u32,
        db_name: &str,
    ) -> Result<Option<Held>, StepError> {
        if !self.enabled() || lock(&self.ready).is_empty() {
            return Ok(None);
        }
        let admin_url = cx.admin_url().await?;
        // One session claims for the whole run: a rename takes milliseconds, a new backend for every
        // worker costs more than that on a small machine. Claims go in the order workers asked.
        let mut session = self.claim_session.lock().await;
        if session.is_none() {
            let client = database::connect(&admin_url).await.map_err(err)?;
            // A claim is a catalog rename: nothing to lose in a crash but the claim itself.
            let _ = client.batch_execute("SET synchronous_commit = off").await;
            *session = Some(client);
        }
        let Some(client) = session.as_ref() else {
            return Ok(None);
        };
        loop {
            let Some(pooled) = lock(&self.ready).pop_front() else {
                return Ok(None);
            };
            let held = hold(cx, w, attempt, db_name).await?;
            if database::claim_pooled(client, &pooled, db_name)
                .await
                .map_err(err)?
            {
                let _ = cx.journal.done::<Resource>(held.entry, None);
                cx.send(RunEvent::DatabaseFrom { pool: true });
                return Ok(Some(held));
            }
            // Another run claimed it first: nothing was created.
            cx.send(RunEvent::Gone(vec![held.entry]));
            let _ = cx.journal.undone(held.entry);
        }
    }
}

/// One copy the refill adds: cloned under the run's journal, then handed to the pool.
struct Copy {
    cx: Arc<RunCx>,
    name: String,
    entry: crate::engine::journal::Entry,
    comment: String,
    file_copy: bool,
}

impl Copy {
    /// Ok(true) once the copy is the pool's (its comment set; rollback must not drop it then). A
    /// half-made one is dropped at once, or left to rollback.
    async fn make(self) -> Result<bool, database::DbError> {
        let (cx, name) = (&self.cx, &self.name);
        let made = async {
            let admin_url = cx
                .admin_url()
                .await
                .map_err(|e| database::DbError::Other(e.message))?;
            let patience = cx.plan().database.busy_timeout;
            let template = &cx.dag().template_name;
            let copying = cx.databases.copies.begin();
            database::clone_database(&admin_url, template, name, self.file_copy, patience).await?;
            drop(copying);
            let client = database::connect(&admin_url).await?;
            database::mark_pooled(&client, name, &self.comment).await
        }
        .await;
        match made {
            Ok(()) => {
                let _ = cx.journal.undone(self.entry);
                Ok(true)
            }
            Err(e) => {
                if let Ok(admin_url) = cx.admin_url().await {
                    if database::drop_database(&admin_url, name).await.is_ok() {
                        let _ = cx.journal.undone(self.entry);
                    }
                }
                Err(e)
            }
        }
    }
}

/// Starts refilling while the tests still run, once every first attempt has its database: one
/// clone at a time, so the tests keep the machine; the refill node widens that once the run is
/// over. For suites of long files the refill is done before the summary.
pub fn start_refill(cx: &Arc<RunCx>, cancel: &Cancel) {
    if !cx.pool.enabled() || cancel.is_stopping() {
        return;
    }
    let task = tokio::spawn(refill(
        Arc::clone(cx),
        cx.plan().database.pool,
        cancel.clone(),
    ));
    *lock(&cx.pool.refill) = Some(task);
}

/// The refill node: the run is over, so the refill may use every clone slot.
pub async fn finish_refill(
    cx: &Arc<RunCx>,
    size: usize,
    cancel: &Cancel,
) -> Result<String, StepError> {
    cx.pool.refill_slots.add_permits(CLONE_CONCURRENCY - 1);
    let task = lock(&cx.pool.refill).take();
    match task {
        Some(task) => task
            .await
            .unwrap_or_else(|e| Err(StepError::new(format!("the refill panicked: {e}")))),
        None => refill(Arc::clone(cx), size, cancel.clone()).await,
    }
}

/// Brings the pool back to `size` fresh copies: drops stale and surplus copies, clones the
/// missing ones (bounded by the refill's slots). Skipped after a setup failure or an interruption;
/// an interruption during the refill stops starting clones and lets the running ones finish.
async fn refill(cx: Arc<RunCx>, size: usize, cancel: Cancel) -> Result<String, StepError> {
    let Some(fingerprint) = cx.pool.fingerprint.get().cloned() else {
        return Ok("skipped: the template was not ready".into());
    };
    let ended = cx.exit_so_far().await;
    let unfinished = matches!(
        ended,
        crate::model::ExitCode::Setup | crate::model::ExitCode::Interrupted
    );
    if unfinished || cancel.is_stopping() {
        return Ok("skipped: the run did not finish".into());
    }
    let start = Instant::now();
    let template = cx.dag().template_name.clone();
    let admin_url = cx.admin_url().await?;
    let admin = database::connect(&admin_url).await.map_err(err)?;
    database::lock_pool(&admin, &template).await.map_err(err)?;
    let copies = database::list_pool(&admin, &template, Some(&fingerprint))
        .await
        .map_err(err)?;
    let (fresh, stale): (Vec<_>, Vec<_>) = copies.into_iter().partition(|c| c.fresh);
    let mut to_drop: Vec<String> = stale.into_iter().map(|c| c.name).collect();
    // Surplus (the pool shrank): drop the newest, keep the oldest.
    to_drop.extend(fresh.iter().skip(size).map(|c| c.name.clone()));
    let missing = size.saturating_sub(fresh.len());

    let mut set = tokio::task::JoinSet::new();
    for name in to_drop {
        let admin_url = admin_url.clone();
        let slots = Arc::clone(&cx.pool.refill_slots);
        set.spawn(async move {
            let _permit = slots.acquire_owned().await;
            database::drop_database(&admin_url, &name)
                .await
                .map(|_| false)
        });
    }
    let mut errors = start_copies(&cx, &mut set, &fingerprint, missing, &cancel).await;
    let (mut cloned, mut dropped) = (0, 0);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(true)) => cloned += 1,
            Ok(Ok(false)) => dropped += 1,
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(StepError::new(format!(
            "could not refill the pool ({} error(s)); the next run clones what is missing",
            errors.len()
        ))
        .with_detail(errors.join("\n")));
    }
    let ready = fresh.len().min(size) + cloned;
    let mut note = format!(
        "{ready} of {size} ready: cloned {cloned} in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    if dropped > 0 {
        note.push_str(&format!(", dropped {dropped} stale or surplus"));
    }
    Ok(note)
}

/// Starts `missing` clones as refill slots free up (journaled first); stops starting them when
/// the run is interrupted. Returns the errors that stopped it early.
async fn start_copies(
    cx: &Arc<RunCx>,
    set: &mut tokio::task::JoinSet<Result<bool, database::DbError>>,
    fingerprint: &str,
    missing: usize,
    cancel: &Cancel,
) -> Vec<String> {
    let template = &cx.dag().template_name;
    let (admin_url, file_copy) = match cx.template().await {
        Ok(t) => (database::admin_url(&t.url), t.file_copy),
        Err(e) => return vec![e.message],
    };
    let comment = database::pool_comment(template, fingerprint);
    for i in 0..missing {
        let permit = tokio::select! {
            p = Arc::clone(&cx.pool.refill_slots).acquire_owned() => p.ok(),
            _ = cancel.stop.cancelled() => None,
        };
        let Some(permit) = permit else { break };
        let name = pool_db_name(template, &cx.dag().run_id, i);
        let entry = match cx.journal.intent(&Resource::Database {
            admin_url: admin_url.clone(),
            name: name.clone(),
            ephemeral: false,
        }) {
            Ok(e) => e,
            Err(e) => return vec![format!("cannot write the journal: {e}")],
        };
        let copy = Copy {
            cx: Arc::clone(cx),
            name,
            entry,
            comment: comment.clone(),
            file_copy,
        };
        set.spawn(async move {
            let _permit = permit;
            copy.make().await
        });
    }
    Vec::new()
}

/// What `e2e-plan pool status|drain` reports.
pub struct PoolReport {
    pub template: String,
    pub size: usize,
    pub fresh: Vec<String>,
    pub stale: Vec<String>,
    pub bytes: i64,
    pub dropped: usize,
}

/// Lists (and with `drain`, drops) a plan's pooled copies. Fresh means: cloned from the template
/// as its fingerprint files are now.
pub async fn inspect(plan: &crate::plan::Plan, drain: bool) -> Result<PoolReport, StepError> {
    let Some(url) = &plan.database.template else {
        return Err(StepError::new(if plan.keeps_cluster() {
            "this plan's pool lives in its kept local cluster, which runs only during a run: `e2e-plan cluster status` shows its size, `e2e-plan cluster remove` deletes it"
        } else {
            "this plan uses an ephemeral cluster: it has no pool (set [database] template)"
        }));
    };
    let template = crate::planner::template_name(plan);
    let fingerprint = (!plan.database.fingerprint.is_empty()).then(|| super::fingerprint(plan));
    let admin_url = database::admin_url(url);
    let admin = database::connect(&admin_url).await.map_err(err)?;
    if drain {
        database::lock_pool(&admin, &template).await.map_err(err)?;
    }
    let copies = database::list_pool(&admin, &template, fingerprint.as_deref())
        .await
        .map_err(err)?;
    let names: Vec<String> = copies.iter().map(|c| c.name.clone()).collect();
    let row = admin
        .query_one(
            "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datname = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| err(database::pg_message(&e)))?;
    let (fresh, stale): (Vec<_>, Vec<_>) = copies.into_iter().partition(|c| c.fresh);
    let mut dropped = 0;
    if drain {
        for name in &names {
            database::drop_database(&admin_url, name)
                .await
                .map_err(err)?;
            dropped += 1;
        }
    }
    Ok(PoolReport {
        template,
        size: plan.database.pool,
        fresh: fresh.into_iter().map(|c| c.name).collect(),
        stale: stale.into_iter().map(|c| c.name).collect(),
        bytes: row.get(0),
        dropped,
    })
}
