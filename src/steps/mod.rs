//! The steps: what each DAG node does to the world. The engine sees them only as [`Step`]s; the
//! resources they create go through the journal; everything they have to say goes out as events.

pub mod cluster;
pub mod database;
pub mod pool;
pub mod process;
pub mod resource;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use crate::engine::journal::{Entry, Journal};
use crate::engine::{BoxFuture, Cancel, Outcome, Step};
use crate::events::Event;
use crate::plan::{Keep, Plan};
use crate::planner::{hex, Action, Dag};
use crate::report::summary::{RunSummary, Verdict, WorkerResult};
use resource::Resource;

/// A step failure that ends the run (exit 3): setup, prepare, clone, a server never ready.
#[derive(Debug, Clone)]
pub struct StepError {
    pub message: String,
    /// A log tail or advice, shown under the message.
    pub detail: Option<String>,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            detail: None,
        }
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A worker database we created, for the keep/drop decision at the end.
#[derive(Debug, Clone)]
pub struct WorkerDb {
    pub worker: usize,
    pub attempt: u32,
    pub name: String,
    pub entry: Entry,
}

/// What every step of one run shares.
pub struct RunCx {
    pub plan: Plan,
    pub dag: Dag,
    pub journal: Journal,
    pub events: UnboundedSender<Event>,
    pub started_at: Instant,
    pub started_wall: SystemTime,
    pub reprepare: bool,
    pub template_url: OnceLock<String>,
    pub file_copy: OnceLock<bool>,
    pub cluster: tokio::sync::Mutex<Option<cluster::Cluster>>,
    /// Bounds concurrent clones: PostgreSQL copies faster from a few connections than from many.
    pub clone_slots: Semaphore,
    ports: Mutex<HashSet<u16>>,
    pub results: Mutex<BTreeMap<usize, WorkerResult>>,
    pub databases: Mutex<Vec<WorkerDb>>,
    pub fatal: Mutex<Option<StepError>>,
    pub interrupted: AtomicBool,
    /// Databases the report decided to keep (names).
    pub kept: Mutex<BTreeSet<String>>,
    pub cluster_kept: AtomicBool,
    pub summary: Mutex<Option<RunSummary>>,
    /// Per worker: the first attempt's database, once the prefetcher cloned it (Ok(false):
    /// cancelled first).
    pub prefetched: Vec<tokio::sync::watch::Sender<Option<Result<bool, StepError>>>>,
    pub window_permits: Mutex<std::collections::HashMap<usize, tokio::sync::OwnedSemaphorePermit>>,
    pub prefetcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Pooled copies this run may claim (oldest first), the fingerprint they must match, and how
    /// many workers got their database from the pool or from a clone.
    pub pool: Mutex<std::collections::VecDeque<String>>,
    pub pool_fingerprint: OnceLock<String>,
    pub pool_claimed: std::sync::atomic::AtomicUsize,
    pub cloned: std::sync::atomic::AtomicUsize,
    /// The pool's refill, started during the run, and the clones it may run at once.
    pub refill: Mutex<Option<tokio::task::JoinHandle<Result<String, StepError>>>>,
    pub refill_slots: Arc<Semaphore>,
    /// The session that claims pooled copies, opened at the first claim.
    pub claim_session: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

/// Concurrent clones: about 4 at once is where PostgreSQL 15 stops getting faster on 2 cores.
pub const CLONE_CONCURRENCY: usize = 4;

impl RunCx {
    pub fn new(
        plan: Plan,
        dag: Dag,
        journal: Journal,
        events: UnboundedSender<Event>,
        reprepare: bool,
    ) -> Self {
        let n = dag.workers.len();
        RunCx {
            plan,
            dag,
            journal,
            events,
            started_at: Instant::now(),
            started_wall: SystemTime::now(),
            reprepare,
            template_url: OnceLock::new(),
            file_copy: OnceLock::new(),
            cluster: tokio::sync::Mutex::new(None),
            clone_slots: Semaphore::new(CLONE_CONCURRENCY),
            ports: Mutex::new(HashSet::new()),
            results: Mutex::new(BTreeMap::new()),
            databases: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            interrupted: AtomicBool::new(false),
            kept: Mutex::new(BTreeSet::new()),
            cluster_kept: AtomicBool::new(false),
            summary: Mutex::new(None),
            prefetched: (0..n)
                .map(|_| tokio::sync::watch::Sender::new(None))
                .collect(),
            window_permits: Mutex::new(std::collections::HashMap::new()),
            prefetcher: Mutex::new(None),
            pool: Mutex::new(Default::default()),
            pool_fingerprint: OnceLock::new(),
            pool_claimed: Default::default(),
            cloned: Default::default(),
            refill: Mutex::new(None),
            refill_slots: Arc::new(Semaphore::new(1)),
            claim_session: tokio::sync::Mutex::new(None),
        }
    }

    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn template_url(&self) -> String {
        self.template_url.get().cloned().unwrap_or_default()
    }

    pub fn admin_url(&self) -> String {
        database::admin_url(&self.template_url())
    }

    /// A free port no other worker of this run holds.
    pub fn take_port(&self) -> std::io::Result<u16> {
        for _ in 0..50 {
            let port = cluster::free_port()?;
            let mut ports = lock(&self.ports);
            if ports.insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port found"))
    }

    pub fn set_fatal(&self, e: &StepError) {
        let mut f = lock(&self.fatal);
        if f.is_none() {
            *f = Some(e.clone());
        }
    }

    /// Exit code of the run so far: 130 interrupted, 3 setup failed, 1 tests failed, 0.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted.load(Ordering::SeqCst) {
            130
        } else if lock(&self.fatal).is_some() {
            3
        } else if lock(&self.results)
            .values()
            .any(|r| r.verdict.fails(self.plan.run.flaky))
        {
            1
        } else {
            0
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.plan.report_dir.join(name)
    }
}

/// Locks a mutex, ignoring poisoning: a panicked step must not stop the cleanup.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A DAG node bound to the run's context.
pub struct RunStep {
    pub cx: Arc<RunCx>,
    pub action: Action,
    pub label: String,
}

impl Step for RunStep {
    type Error = StepError;
    fn apply(self: Arc<Self>, cancel: Cancel) -> BoxFuture<Result<Outcome, StepError>> {
        Box::pin(async move {
            let cx = &self.cx;
            let result = match &self.action {
                Action::Worker { index } => {
                    return worker::run_worker(cx, *index, &cancel)
                        .await
                        .inspect_err(|e| cx.set_fatal(e))
                }
                Action::RetryFailed { retries } => {
                    return worker::retry_failed(cx, *retries, &cancel).await
                }
                // Nothing to stop when the cluster never started: say nothing either.
                Action::StopCluster if cx.cluster.lock().await.is_none() => Ok(None),
                _ => {
                    let start = Instant::now();
                    cx.emit(Event::StepStarted {
                        what: self.label.clone(),
                    });
                    let r = self.setup_or_teardown(&cancel).await;
                    if let Ok(note) = &r {
                        cx.emit(Event::StepFinished {
                            what: self.label.clone(),
                            took: start.elapsed(),
                            note: note.clone(),
                        });
                    }
                    r
                }
            };
            match result {
                Ok(_) => Ok(Outcome::Ok),
                Err(e) => {
                    cx.set_fatal(&e);
                    Err(e)
                }
            }
        })
    }
}

impl RunStep {
    /// Runs a setup or teardown action; Ok carries an optional note ("skipped: .venv exists").
    async fn setup_or_teardown(&self, cancel: &Cancel) -> Result<Option<String>, StepError> {
        let cx = &self.cx;
        match &self.action {
            Action::Setup { command, creates } => {
                if let Some(c) = creates {
                    if cx.plan.root.join(c).exists() {
                        return Ok(Some(format!("skipped: {c} exists")));
                    }
                }
                run_once(cx, "setup", command, &[], cancel).await?;
                Ok(None)
            }
            Action::StartCluster => {
                let c = cluster::start(&cx.plan.state_dir(), &cx.dag.run_id, &cx.journal).await?;
                let note = format!("port {}", c.port);
                let _ = cx.template_url.set(c.url(&cx.dag.template_name));
                *cx.cluster.lock().await = Some(c);
                Ok(Some(note))
            }
            Action::PrepareTemplate { template, .. } => {
                let note = prepare_template(cx, template, cancel).await?;
                let prefetch = worker::prefetch(Arc::clone(&self.cx), cancel.clone());
                *lock(&cx.prefetcher) = Some(tokio::spawn(prefetch));
                Ok(note)
            }
            Action::Report => {
                report_step(cx).await;
                Ok(None)
            }
            Action::Cleanup => cleanup(cx).await.map(Some),
            // The tests are over and reported: a pool that could not be refilled only makes the
            // next run clone, so it is a warning, not a failed run.
            Action::RefillPool { size } => match pool::finish_refill(&self.cx, *size, cancel).await
            {
                Ok(note) => Ok(Some(note)),
                Err(e) => {
                    let detail = e.detail.map(|d| format!("\n  {d}")).unwrap_or_default();
                    cx.emit(Event::Warning(format!("{}{detail}", e.message)));
                    Ok(Some("incomplete".into()))
                }
            },
            Action::StopCluster => {
                let guard = cx.cluster.lock().await;
                let Some(c) = guard.as_ref() else {
                    return Ok(None);
                };
                if cx.cluster_kept.load(Ordering::SeqCst) {
                    return Ok(Some(format!(
                        "left running on port {} for the kept databases",
                        c.port
                    )));
                }
                c.stop(&cx.journal).await.map_err(StepError::new)?;
                Ok(None)
            }
            Action::Worker { .. } | Action::RetryFailed { .. } => Ok(None),
        }
    }
}

/// Runs a one-off command (setup, prepare) in root, its output to a log shown when it fails.
async fn run_once(
    cx: &RunCx,
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<(), StepError> {
    std::fs::create_dir_all(&cx.plan.report_dir).map_err(|e| {
        StepError::new(format!(
            "cannot create {}: {e}",
            cx.plan.report_dir.display()
        ))
    })?;
    let log = cx.log_path(&format!("{what}.log"));
    let shown = shell_words::join(argv);
    let group = process::spawn(
        &cx.journal,
        process::Spec {
            what: format!("{what} `{shown}`"),
            argv,
            env,
            cwd: &cx.plan.root,
            log: &log,
            run_as: None,
        },
    )
    .map_err(StepError::new)?;
    let mut group = group;
    let status = tokio::select! {
        s = group.child.wait() => s.ok(),
        _ = cancel.stop.cancelled() => None,
    };
    let grace = cx.plan.stop_timeout();
    match status {
        Some(s) if s.success() => {
            group.finish(&cx.journal).await;
            Ok(())
        }
        Some(s) => {
            group.finish(&cx.journal).await;
            Err(StepError::new(format!(
                "{what} command `{shown}` failed ({s}); its log: {}",
                log.display()
            ))
            .with_detail(process::tail(&log, 30)))
        }
        None => {
            group.stop(&cx.journal, grace, cancel).await;
            Err(StepError::new(format!(
                "{what} command `{shown}` was interrupted"
            )))
        }
    }
}

/// The template's fingerprint: the prepare commands and the contents of the fingerprint files.
pub fn fingerprint(plan: &Plan, commands: &[Vec<String>]) -> String {
    let mut h = Sha256::new();
    for c in commands {
        h.update(c.join("\0").as_bytes());
        h.update(b"\n");
    }
    let mut files = BTreeSet::new();
    for glob in &plan.database.fingerprint {
        let Ok(g) = globset::Glob::new(glob) else {
            continue;
        };
        let m = g.compile_matcher();
        for path in crate::plan::load::walk_from(&plan.root, glob) {
            if m.is_match(&path) {
                files.insert(path);
            }
        }
    }
    for f in files {
        h.update(f.as_bytes());
        h.update(b"\0");
        h.update(std::fs::read(plan.root.join(&f)).unwrap_or_default());
    }
    hex(&h.finalize())
}

async fn prepare_template(
    cx: &RunCx,
    template: &str,
    cancel: &Cancel,
) -> Result<Option<String>, StepError> {
    if let Some(url) = &cx.plan.database.template {
        let _ = cx.template_url.set(url.clone());
    }
    let template_url = cx.template_url();
    let admin = database::connect(&cx.admin_url()).await.map_err(|e| {
        StepError::new(e.to_string())
            .with_detail("is PostgreSQL running, and does [database] template point at it?")
    })?;
    let version = database::server_version(&admin)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    let file_copy = match cx.plan.database.strategy {
        Some(crate::plan::Strategy::WalLog) => false,
        Some(crate::plan::Strategy::FileCopy) | None => version >= 150_000,
    };
    let _ = cx.file_copy.set(file_copy);
    let created = database::ensure_template(&admin, template, cx.plan.database.busy_timeout)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    let commands: Vec<Vec<String>> = cx
        .plan
        .database
        .prepare
        .iter()
        .map(|c| {
            crate::planner::fill_run_command(c, &cx.plan, &cx.dag.run_id, &template_url, template)
        })
        .collect();
    let pooled = pool::enabled(cx);
    let hash = (!cx.plan.database.fingerprint.is_empty()).then(|| fingerprint(&cx.plan, &commands));
    let pool_note = |n: usize| {
        format!(
            "; {n} ready cop{} in the pool",
            if n == 1 { "y" } else { "ies" }
        )
    };
    if commands.is_empty() {
        let mut note = created.then(|| format!("created {template}"));
        if let (true, Some(h)) = (pooled, &hash) {
            let n = pool::load(cx, &admin, h, created || cx.reprepare).await?;
            note = Some(
                format!("{}{}", note.unwrap_or_default(), pool_note(n))
                    .trim_start_matches("; ")
                    .to_string(),
            );
        }
        return Ok(note);
    }
    database::lock_template(&admin, template)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    if let Some(h) = &hash {
        let stored = database::fingerprint(&admin, template)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        if !cx.reprepare && !created && stored.as_deref() == Some(h.as_str()) {
            let mut note = format!("fingerprint {} matches: prepare skipped", &h[..12]);
            if pooled {
                note.push_str(&pool_note(pool::load(cx, &admin, h, false).await?));
            }
            return Ok(Some(note));
        }
        // A prepare that fails half-way must not leave the old fingerprint on a changed template.
        database::clear_fingerprint(&admin, template)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
    }
    let env = vec![("DATABASE_URL".to_string(), template_url.clone())];
    for c in &commands {
        run_once(cx, "prepare", c, &env, cancel).await?;
    }
    if let Some(h) = &hash {
        database::set_fingerprint(&admin, template, h)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        if pooled {
            // Every copy in the pool is of the old template now.
            pool::load(cx, &admin, h, true).await?;
        }
    }
    Ok(Some(format!("{} command(s) run", commands.len())))
}

/// Which worker databases survive: retries are always dropped; after a setup failure or an
/// interruption, nothing is kept.
pub fn databases_to_keep(
    policy: Keep,
    exit_code: i32,
    dbs: &[WorkerDb],
    results: &BTreeMap<usize, WorkerResult>,
) -> BTreeSet<String> {
    if exit_code == 3 || exit_code == 130 {
        return BTreeSet::new();
    }
    let any_failed = exit_code == 1;
    dbs.iter()
        .filter(|db| db.attempt == 1)
        .filter(|db| {
            let verdict = results.get(&db.worker).map(|r| r.verdict);
            let failed = matches!(verdict, Some(Verdict::Fail | Verdict::Timeout));
            match policy {
                Keep::Never => false,
                Keep::Always => verdict != Some(Verdict::Cancelled),
                Keep::AllOnFailure => any_failed && verdict != Some(Verdict::Cancelled),
                Keep::Failed => failed,
            }
        })
        .map(|db| db.name.clone())
        .collect()
}

async fn report_step(cx: &RunCx) {
    let exit = cx.exit_code();
    let kept = {
        let results = lock(&cx.results);
        databases_to_keep(cx.plan.database.keep, exit, &lock(&cx.databases), &results)
    };
    {
        let mut results = lock(&cx.results);
        for r in results.values_mut() {
            r.db_kept = kept.contains(&r.db_name);
        }
    }
    cx.cluster_kept.store(
        !kept.is_empty() && cx.plan.database.template.is_none(),
        Ordering::SeqCst,
    );
    *lock(&cx.kept) = kept;
    let summary = crate::report::summary::build(cx, exit);
    crate::report::state::record_run(&cx.plan, &summary);
    *lock(&cx.summary) = Some(summary.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    cx.emit(Event::RunFinished {
        summary: Box::new(summary),
        written: tx,
    });
    let _ = rx.await;
}

/// Drops what is not kept (concurrently, bounded) and removes passing workers' logs.
async fn cleanup(cx: &RunCx) -> Result<String, StepError> {
    // A clone still in flight must land in the list before the list is dropped.
    let prefetcher = lock(&cx.prefetcher).take();
    if let Some(p) = prefetcher {
        let _ = p.await;
    }
    let kept = lock(&cx.kept).clone();
    let admin = cx.admin_url();
    let to_drop: Vec<WorkerDb> = lock(&cx.databases)
        .iter()
        .filter(|d| !kept.contains(&d.name))
        .cloned()
        .collect();
    let slots = Arc::new(Semaphore::new(CLONE_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for db in to_drop.clone() {
        let admin = admin.clone();
        let slots = Arc::clone(&slots);
        set.spawn(async move {
            let _permit = slots.acquire_owned().await;
            (db.entry, database::drop_database(&admin, &db.name).await)
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((entry, Ok(()))) => {
                let _ = cx.journal.undone(entry);
            }
            Ok((_, Err(e))) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for r in lock(&cx.results).values() {
        if r.verdict == Verdict::Pass {
            let _ = std::fs::remove_dir_all(&r.log_dir);
        }
    }
    if !errors.is_empty() {
        // The summary is already out: say it here, and leave the journal for `rollback`.
        cx.emit(Event::Warning(format!(
            "could not drop {} database(s); `e2e-plan rollback {}` will try again:\n  {}",
            errors.len(),
            cx.plan.path.display(),
            errors.join("\n  ")
        )));
        return Err(
            StepError::new(format!("could not drop {} database(s)", errors.len()))
                .with_detail(errors.join("\n")),
        );
    }
    Ok(format!(
        "dropped {} database(s), kept {}",
        to_drop.len(),
        kept.len()
    ))
}

/// Turns the planner's DAG into engine nodes.
pub fn nodes(cx: &Arc<RunCx>) -> Vec<crate::engine::Node<RunStep>> {
    cx.dag
        .nodes
        .iter()
        .map(|n| crate::engine::Node {
            deps: n.deps.clone(),
            always: n.always,
            limited: matches!(n.action, Action::Worker { .. }),
            step: Arc::new(RunStep {
                cx: Arc::clone(cx),
                action: n.action.clone(),
                label: step_label(&n.action),
            }),
        })
        .collect()
}

/// A short human name of a setup or teardown action.
pub fn step_label(action: &Action) -> String {
    match action {
        Action::Setup { command, .. } => format!("setup: {}", shell_words::join(command)),
        Action::StartCluster => "start ephemeral PostgreSQL".into(),
        Action::PrepareTemplate { template, .. } => format!("prepare template {template}"),
        Action::Worker { index } => format!("worker {index}"),
        Action::RetryFailed { .. } => "retry failed files".into(),
        Action::Report => "write reports".into(),
        Action::Cleanup => "drop worker databases".into(),
        Action::RefillPool { .. } => "refill the pool".into(),
        Action::StopCluster => "stop ephemeral PostgreSQL".into(),
    }
}

pub fn resources_of(state_dir: &Path) -> Vec<crate::engine::journal::Recorded<Resource>> {
    crate::engine::journal::read_all(state_dir)
}
