//! The steps: what each DAG node does to the world. The engine sees them only as [`Step`]s; the
//! resources they create go through the journal; everything they have to say goes out as events.

pub mod cluster;
pub mod collect;
pub mod database;
pub mod failures;
pub mod pack;
pub mod parts;
pub mod pool;
pub mod process;
pub mod resource;
pub mod state;
pub mod summary;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use crate::engine::journal::{Entry, Journal, Recorded};
use crate::engine::{BoxFuture, Cancel, Outcome, Step};
use crate::events::Event;
use crate::model::{ExitCode, RunSummary, Verdict, WorkerResult};
use crate::plan::{Keep, Plan};
use crate::planner::{hex, Action, Dag, PreparePlan, RunTime};
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
    /// The files whose results decide whether it is kept: the worker's own, or a pack's.
    pub files: Vec<usize>,
}

/// What every step of one run shares.
pub struct RunCx {
    // What the run was asked to do: set at the start, never changed.
    plan: Plan,
    dag: Dag,
    reprepare: bool,
    started_at: Instant,
    started_wall: SystemTime,
    // Where it records what it creates and says what happens.
    journal: Journal,
    events: UnboundedSender<Event>,
    infra: Infra,
    state: RunState,
    prefetch: Prefetch,
    pool: PoolState,
}

/// What setup finds out and the workers share: the template's URL, the clone strategy, the
/// throwaway cluster, the ports in use.
struct Infra {
    template_url: OnceLock<String>,
    file_copy: OnceLock<bool>,
    /// The run uses the kept local cluster.
    kept_cluster: OnceLock<bool>,
    cluster: tokio::sync::Mutex<Option<cluster::Cluster>>,
    /// Bounds concurrent clones: PostgreSQL copies faster from a few connections than from many.
    clone_slots: Semaphore,
    ports: Mutex<HashSet<u16>>,
}

/// What happened: each worker's result, the databases made, the error that stopped the run.
#[derive(Default)]
struct RunState {
    results: Mutex<BTreeMap<usize, WorkerResult>>,
    databases: Mutex<Vec<WorkerDb>>,
    fatal: Mutex<Option<StepError>>,
    interrupted: AtomicBool,
    /// Databases the report decided to keep (names).
    kept: Mutex<BTreeSet<String>>,
    cluster_kept: AtomicBool,
    /// `prepare` ran in this run.
    prepared: AtomicBool,
    summary: Mutex<Option<RunSummary>>,
    /// Units whose first attempt is past its start-up (testing, or ended), and the wake-up for
    /// whoever waits for all of them; `workers_over` ends the wait for units that never started.
    past_startup: Mutex<BTreeSet<usize>>,
    startups: tokio::sync::Notify,
    workers_over: AtomicBool,
}

/// First attempts' databases, cloned ahead of their workers.
struct Prefetch {
    /// Per worker, once cloned (Ok(false): cancelled first).
    done: Vec<tokio::sync::watch::Sender<Option<Result<bool, StepError>>>>,
    window: Mutex<std::collections::HashMap<usize, tokio::sync::OwnedSemaphorePermit>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Pooled copies this run may claim (oldest first), the fingerprint they must match, how many
/// workers claimed or cloned, and the refill started during the run.
struct PoolState {
    ready: Mutex<std::collections::VecDeque<String>>,
    fingerprint: OnceLock<String>,
    claimed: std::sync::atomic::AtomicUsize,
    cloned: std::sync::atomic::AtomicUsize,
    refill: Mutex<Option<tokio::task::JoinHandle<Result<String, StepError>>>>,
    refill_slots: Arc<Semaphore>,
    /// The session that claims pooled copies, opened at the first claim.
    claim_session: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
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
        started_at: Instant,
    ) -> Self {
        let n = dag.workers.len();
        RunCx {
            plan,
            dag,
            journal,
            events,
            started_at,
            // The wall clock at the same moment as `started_at`.
            started_wall: SystemTime::now()
                .checked_sub(started_at.elapsed())
                .unwrap_or_else(SystemTime::now),
            reprepare,
            infra: Infra {
                template_url: OnceLock::new(),
                file_copy: OnceLock::new(),
                kept_cluster: OnceLock::new(),
                cluster: tokio::sync::Mutex::new(None),
                clone_slots: Semaphore::new(CLONE_CONCURRENCY),
                ports: Mutex::new(HashSet::new()),
            },
            state: RunState::default(),
            prefetch: Prefetch {
                done: (0..n)
                    .map(|_| tokio::sync::watch::Sender::new(None))
                    .collect(),
                window: Mutex::new(Default::default()),
                task: Mutex::new(None),
            },
            pool: PoolState {
                ready: Mutex::new(Default::default()),
                fingerprint: OnceLock::new(),
                claimed: Default::default(),
                cloned: Default::default(),
                refill: Mutex::new(None),
                refill_slots: Arc::new(Semaphore::new(1)),
                claim_session: tokio::sync::Mutex::new(None),
            },
        }
    }

    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn template_url(&self) -> String {
        self.infra.template_url.get().cloned().unwrap_or_default()
    }

    /// A unit's first attempt is past its start-up (its tests began, or it ended).
    pub(super) fn past_startup(&self, worker: usize) {
        if lock(&self.state.past_startup).insert(worker) {
            self.state.startups.notify_waiters();
        }
    }

    /// The workers' stage is over: nothing else will start.
    fn workers_over(&self) {
        self.state.workers_over.store(true, Ordering::SeqCst);
        self.state.startups.notify_waiters();
    }

    /// Waits until `units` first attempts are past their start-up, or the workers' stage is over.
    pub(super) async fn startups_over(&self, units: usize) {
        self.wait_startups(|past| past.len() >= units).await;
    }

    /// Holds a unit's start-up (server and test process) until the critical unit's is over: with
    /// more workers than cores, a dozen start-ups at once slow the one the run waits on. Only
    /// units the planner found slack enough for wait (`after_critical`).
    pub(super) async fn after_critical_startup(&self, index: usize, cancel: &Cancel) {
        let waits = self
            .dag
            .workers
            .get(index)
            .is_some_and(|w| w.after_critical);
        let Some(critical) = self.critical_unit().filter(|_| waits) else {
            return;
        };
        tokio::select! {
            _ = self.wait_startups(|past| past.contains(&critical)) => {}
            _ = cancel.stop.cancelled() => {}
        }
    }

    async fn wait_startups(&self, done: impl Fn(&BTreeSet<usize>) -> bool) {
        loop {
            let notified = self.state.startups.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let over = done(&lock(&self.state.past_startup));
            if over || self.state.workers_over.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// The worker on the critical path, when the planner lowered the others' priority: the
    /// longest, started first.
    pub fn critical_unit(&self) -> Option<usize> {
        let lowered = self.dag.workers.iter().any(|w| w.nice > 0);
        self.dag.units().next().map(|w| w.index).filter(|_| lowered)
    }

    pub fn cluster_is_kept(&self) -> bool {
        self.infra.kept_cluster.get() == Some(&true)
    }

    pub fn admin_url(&self) -> String {
        database::admin_url(&self.template_url())
    }

    /// A free port no other worker of this run holds.
    pub fn take_port(&self) -> std::io::Result<u16> {
        for _ in 0..50 {
            let port = cluster::free_port()?;
            let mut ports = lock(&self.infra.ports);
            if ports.insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port found"))
    }

    /// A Ctrl-C or SIGTERM arrived (`second`: another one before).
    pub fn interrupt(&self, second: bool) {
        self.state.interrupted.store(true, Ordering::SeqCst);
        self.emit(Event::Interrupted { second });
    }

    /// The exit code the summary recorded, or the run's so far if it never got that far.
    pub fn final_exit_code(&self) -> i32 {
        lock(&self.state.summary)
            .as_ref()
            .map(|s| s.exit_code)
            .unwrap_or_else(|| self.exit_code())
    }

    /// Deletes the journal when nothing of the run is left, else marks it ended (kept on
    /// purpose). When more is left than was kept on purpose (a failed drop), the journal stays
    /// open, so that the next `apply` warns and `rollback` retries.
    pub fn finish_journal(&self) {
        let all: Vec<Recorded<Resource>> = crate::engine::journal::read_all(&self.plan.state_dir());
        let pending = all
            .into_iter()
            .find(|r| r.path == self.journal.path())
            .map(|r| r.pending)
            .unwrap_or_default();
        let kept = lock(&self.state.kept).clone();
        let kept_logs = kept_logs_dir(&self.plan.report_dir);
        let cluster_kept = self.state.cluster_kept.load(Ordering::SeqCst);
        let on_purpose = |r: &Resource| match r {
            Resource::Database { name, .. } => kept.contains(name),
            // A kept cluster's only folder is its own.
            Resource::Folder { path } => path.starts_with(&kept_logs) || cluster_kept,
            Resource::Postmaster { .. } => cluster_kept,
            Resource::ProcessGroup { .. } => false,
        };
        if pending.iter().all(on_purpose) {
            let _ = self.journal.finish(pending.len());
        }
    }

    pub fn set_fatal(&self, e: &StepError) {
        let mut f = lock(&self.state.fatal);
        if f.is_none() {
            *f = Some(e.clone());
        }
    }

    /// Exit code of the run so far: 130 interrupted, 3 setup failed, 1 tests failed, 0.
    pub fn exit_code(&self) -> i32 {
        let verdicts: Vec<Verdict> = lock(&self.state.results)
            .values()
            .map(|r| r.verdict)
            .collect();
        run_exit_code(
            self.state.interrupted.load(Ordering::SeqCst),
            lock(&self.state.fatal).is_some(),
            &verdicts,
            self.plan.run.flaky,
        )
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.plan.report_dir.join(name)
    }
}

/// The run's exit code: 130 interrupted, 3 setup failed, 1 a file failed the run (a flaky one
/// only under `flaky = "fail"`), 0.
pub fn run_exit_code(
    interrupted: bool,
    fatal: bool,
    verdicts: &[Verdict],
    flaky: crate::plan::FlakyPolicy,
) -> i32 {
    let code = if interrupted {
        ExitCode::Interrupted
    } else if fatal {
        ExitCode::Setup
    } else if verdicts.iter().any(|v| v.fails(flaky)) {
        ExitCode::TestsFailed
    } else {
        ExitCode::Ok
    };
    code.code()
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
                Action::StopCluster { .. } if cx.infra.cluster.lock().await.is_none() => Ok(None),
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
            Action::Setup {
                command,
                creates,
                env,
            } => {
                if let Some(c) = creates {
                    if cx.plan.root.join(c).exists() {
                        return Ok(Some(format!("skipped: {c} exists")));
                    }
                }
                run_once(cx, "setup", command, env, cancel).await?;
                Ok(None)
            }
            Action::StartCluster { keep } => {
                let (c, note) = start_cluster(cx, *keep).await?;
                let url = c.url(&cx.dag.template_name);
                crate::redact::register_url(&url);
                let _ = cx.infra.template_url.set(url);
                *cx.infra.cluster.lock().await = Some(c);
                Ok(Some(note))
            }
            Action::PrepareTemplate(p) => {
                let note = prepare_template(cx, p, cancel).await?;
                let prefetch = worker::prefetch(Arc::clone(&self.cx), cancel.clone());
                *lock(&cx.prefetch.task) = Some(tokio::spawn(prefetch));
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
            Action::StopCluster { .. } => {
                let guard = cx.infra.cluster.lock().await;
                let Some(c) = guard.as_ref() else {
                    return Ok(None);
                };
                if cx.state.cluster_kept.load(Ordering::SeqCst) {
                    return Ok(Some(format!(
                        "left running on port {} for the kept databases",
                        c.port
                    )));
                }
                c.stop(&cx.journal).await.map_err(StepError::new)?;
                Ok(Some(match c.kept {
                    Some(_) => format!("kept in {} for the next run", c.dir.display()),
                    None => "deleted".into(),
                }))
            }
            Action::Worker { .. } | Action::RetryFailed { .. } => Ok(None),
        }
    }
}

/// The kept cluster when the plan keeps one and no other run holds it; else a throwaway one.
async fn start_cluster(cx: &RunCx, keep: bool) -> Result<(cluster::Cluster, String), StepError> {
    let state_dir = cx.plan.state_dir();
    let busy = if keep {
        match cluster::hold(&state_dir)? {
            Ok(hold) => return start_kept(cx, hold).await,
            Err(cluster::Busy::InUse) => "another run of this checkout is using it",
            Err(cluster::Busy::Running) => {
                "it is still running from an earlier run, for its kept databases or because its runner died (`e2e-plan rollback` stops it)"
            }
            Err(cluster::Busy::Unreachable) => {
                "running as root, the postgres account cannot reach the project's folder"
            }
        }
    } else {
        ""
    };
    if !busy.is_empty() {
        cx.emit(Event::Warning(format!(
            "not using the kept cluster: {busy}; this run uses a throwaway one"
        )));
    }
    let c = cluster::start(&state_dir, &cx.dag.run_id, &cx.journal).await?;
    let note = format!("port {}", c.port);
    Ok((c, note))
}

/// Starts the kept cluster and drops what dead runs left in it.
async fn start_kept(
    cx: &RunCx,
    hold: std::fs::File,
) -> Result<(cluster::Cluster, String), StepError> {
    let c = cluster::start_kept(&cx.plan.state_dir(), &cx.dag.run_id, &cx.journal, hold).await?;
    let _ = cx.infra.kept_cluster.set(true);
    let admin = database::admin_url(&c.url("postgres"));
    let swept = match database::sweep(&admin, &cx.dag.template_name).await {
        Ok(swept) => swept,
        Err(e) => {
            // Not stored for stop-cluster yet: stop it here rather than leave it running.
            let _ = c.stop(&cx.journal).await;
            return Err(db_err(e));
        }
    };
    if !swept.is_empty() {
        cx.emit(Event::Warning(format!(
            "the kept cluster held databases of earlier runs that are over (a dead runner's, or kept ones whose cluster stopped since): dropped {}",
            swept.join(", ")
        )));
    }
    let made = match (&c.made_because, c.fresh) {
        (Some(why), _) => format!(" (made again: {why})"),
        (None, true) => " (made now)".to_string(),
        (None, false) => ": initdb skipped".to_string(),
    };
    let note = format!("port {}, kept in {}{made}", c.port, c.dir.display());
    Ok((c, note))
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
            nice: 0,
            what: format!("{what} `{shown}`"),
            argv,
            env,
            cwd: &cx.plan.root,
            log: &log,
            run_as: None,
            stamp: false,
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
pub fn fingerprint(plan: &Plan) -> String {
    let mut h = Sha256::new();
    // The commands as written: the same for every run and every database they run in.
    for c in &plan.database.prepare {
        h.update(
            crate::plan::template::command_source(c)
                .join("\0")
                .as_bytes(),
        );
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
    p: &PreparePlan,
    cancel: &Cancel,
) -> Result<Option<String>, StepError> {
    if let Some(url) = &cx.plan.database.template {
        let _ = cx.infra.template_url.set(url.clone());
    }
    let template = p.template.as_str();
    let admin = connect_admin(cx).await?;
    let commands = &p.commands.commands;
    let hash = (!cx.plan.database.fingerprint.is_empty()).then(|| fingerprint(&cx.plan));
    if commands.is_empty() {
        return nothing_to_prepare(cx, &admin, template, hash.as_deref()).await;
    }
    database::lock_template(&admin, template)
        .await
        .map_err(db_err)?;
    let Some(hash) = hash else {
        // No fingerprint: there is no way to know whether the template is current, so prepare
        // runs in it every time (the commands must be safe to re-run, as migration tools are).
        database::ensure_template(&admin, template, cx.plan.database.busy_timeout)
            .await
            .map_err(db_err)?;
        run_prepare(cx, p, cancel).await?;
        return Ok(Some(format!("{} command(s) run", commands.len())));
    };
    let exists = database::exists(&admin, template).await.map_err(db_err)?;
    if exists && !cx.reprepare {
        let stored = database::fingerprint(&admin, template)
            .await
            .map_err(db_err)?;
        if stored.as_deref() == Some(hash.as_str()) {
            let mut note = format!("fingerprint {} matches: prepare skipped", &hash[..12]);
            if pool::enabled(cx) {
                note = format!(
                    "{note}; {}",
                    pool_note(pool::load(cx, &admin, &hash, false).await?)
                );
            }
            return Ok(Some(note));
        }
    }
    rebuild_template(cx, &admin, p, exists, &hash, cancel).await?;
    if pool::enabled(cx) {
        // Every copy in the pool is of the old template now.
        pool::load(cx, &admin, &hash, true).await?;
    }
    Ok(Some(format!(
        "{} command(s) run in a fresh database, swapped in for {template}",
        commands.len()
    )))
}

/// The admin connection, and the clone strategy the server's version allows.
async fn connect_admin(cx: &RunCx) -> Result<tokio_postgres::Client, StepError> {
    let admin = database::connect(&cx.admin_url()).await.map_err(|e| {
        StepError::new(e.to_string())
            .with_detail("is PostgreSQL running, and does [database] template point at it?")
    })?;
    let version = database::server_version(&admin).await.map_err(db_err)?;
    let file_copy = match cx.plan.database.strategy {
        Some(crate::plan::Strategy::WalLog) => false,
        Some(crate::plan::Strategy::FileCopy) | None => version >= 150_000,
    };
    let _ = cx.infra.file_copy.set(file_copy);
    Ok(admin)
}

/// No prepare commands: the template only has to exist (and a pool to be listed).
async fn nothing_to_prepare(
    cx: &RunCx,
    admin: &tokio_postgres::Client,
    template: &str,
    hash: Option<&str>,
) -> Result<Option<String>, StepError> {
    let created = database::ensure_template(admin, template, cx.plan.database.busy_timeout)
        .await
        .map_err(db_err)?;
    let mut notes: Vec<String> = created
        .then(|| format!("created {template}"))
        .into_iter()
        .collect();
    if let (true, Some(h)) = (pool::enabled(cx), hash) {
        let n = pool::load(cx, admin, h, created || cx.reprepare).await?;
        notes.push(pool_note(n));
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

fn db_err(e: database::DbError) -> StepError {
    StepError::new(e.to_string())
}

fn pool_note(n: usize) -> String {
    format!(
        "{n} ready cop{} in the pool",
        if n == 1 { "y" } else { "ies" }
    )
}

/// Runs the prepare commands in their database (the template, or the one that will replace it).
async fn run_prepare(cx: &RunCx, p: &PreparePlan, cancel: &Cancel) -> Result<(), StepError> {
    let template_url = cx.template_url();
    let rt = RunTime {
        port: "",
        template_url: &template_url,
    };
    cx.state.prepared.store(true, Ordering::SeqCst);
    let filled = rt.prepare(&p.commands, p.target());
    let url = crate::planner::with_database(&template_url, p.target());
    let mut env = vec![("DATABASE_URL".to_string(), url)];
    env.extend(filled.env);
    for argv in &filled.commands {
        run_once(cx, "prepare", argv, &env, cancel).await?;
    }
    Ok(())
}

/// A changed fingerprint: prepare a fresh database from nothing and, only when that succeeds,
/// swap it in for the template. Migration tools that track what they applied would otherwise
/// skip an edited migration and leave the old schema under the new fingerprint. A failed
/// prepare leaves the old template and its fingerprint as they were.
async fn rebuild_template(
    cx: &RunCx,
    admin: &tokio_postgres::Client,
    p: &PreparePlan,
    exists: bool,
    hash: &str,
    cancel: &Cancel,
) -> Result<(), StepError> {
    let template = p.template.as_str();
    // Fingerprinted plans always name a build database.
    let next = p.target().to_string();
    let next_entry = journal_database(cx, &next)?;
    let built = async {
        database::create_empty(admin, &next).await.map_err(db_err)?;
        run_prepare(cx, p, cancel).await
    }
    .await;
    if let Err(e) = built {
        if database::drop_database(&cx.admin_url(), &next)
            .await
            .is_ok()
        {
            let _ = cx.journal.undone(next_entry);
        }
        return Err(e);
    }
    let old = crate::planner::old_db_name(template, &cx.dag.run_id);
    let old_entry = if exists {
        Some(journal_database(cx, &old)?)
    } else {
        None
    };
    database::swap_template(
        admin,
        template,
        &next,
        exists.then_some(old.as_str()),
        hash,
        cx.plan.database.busy_timeout,
    )
    .await
    .map_err(db_err)?;
    // `next` is the template now: nothing of that name is left to undo.
    let _ = cx.journal.undone(next_entry);
    // The new template is in place: a failed drop of the old one leaves a leftover that the
    // journal keeps for `rollback`, not a failed run.
    if let Some(entry) = old_entry {
        match database::drop_database(&cx.admin_url(), &old).await {
            Ok(_) => {
                let _ = cx.journal.undone(entry);
            }
            Err(e) => cx.emit(Event::Warning(format!(
                "the template was rebuilt, but its old copy {old} could not be dropped ({e}); `e2e-plan rollback` drops it"
            ))),
        }
    }
    Ok(())
}

/// Records a database this run is about to create (or rename into being) in the journal.
fn journal_database(cx: &RunCx, name: &str) -> Result<Entry, StepError> {
    cx.journal
        .intent(&Resource::Database {
            admin_url: cx.admin_url(),
            name: name.to_string(),
            ephemeral: cx.plan.database.template.is_none(),
        })
        .map_err(|e| StepError::new(format!("cannot write the journal: {e}")))
}

/// Journals a worker attempt's database before it is cloned or claimed, and lists it for the
/// keep-or-drop decision at the end (listed first: if the outcome is unknown, cleanup still
/// drops the name).
fn journal_worker_db(
    cx: &RunCx,
    worker: usize,
    attempt: u32,
    name: &str,
) -> Result<Entry, StepError> {
    let entry = journal_database(cx, name)?;
    let pack = &cx.dag.workers[worker].pack;
    lock(&cx.state.databases).push(WorkerDb {
        worker,
        attempt,
        name: name.to_string(),
        entry,
        files: if pack.is_empty() {
            vec![worker]
        } else {
            pack.clone()
        },
    });
    Ok(entry)
}

/// Which worker databases survive: retries are always dropped; after a setup failure or an
/// interruption, nothing is kept.
pub fn databases_to_keep(
    policy: Keep,
    exit_code: i32,
    dbs: &[WorkerDb],
    results: &BTreeMap<usize, WorkerResult>,
) -> BTreeSet<String> {
    let exit = ExitCode::of(exit_code);
    if matches!(exit, ExitCode::Setup | ExitCode::Interrupted) {
        return BTreeSet::new();
    }
    let any_failed = exit == ExitCode::TestsFailed;
    dbs.iter()
        .filter(|db| db.attempt == 1)
        .filter(|db| {
            // A pack's database serves several files: any of them decides.
            let verdicts: Vec<Option<Verdict>> = db
                .files
                .iter()
                .map(|f| results.get(f).map(|r| r.verdict))
                .collect();
            let failed = verdicts
                .iter()
                .any(|v| matches!(v, Some(Verdict::Fail | Verdict::Timeout)));
            let ran = verdicts.iter().any(|v| *v != Some(Verdict::Cancelled));
            match policy {
                Keep::Never => false,
                Keep::Always => ran,
                Keep::AllOnFailure => any_failed && ran,
                Keep::Failed => failed,
            }
        })
        .map(|db| db.name.clone())
        .collect()
}

async fn report_step(cx: &RunCx) {
    cx.workers_over();
    let exit = cx.exit_code();
    let chosen = {
        let results = lock(&cx.state.results);
        databases_to_keep(
            cx.plan.database.keep,
            exit,
            &lock(&cx.state.databases),
            &results,
        )
    };
    let kept = still_there(cx, chosen).await;
    {
        let mut results = lock(&cx.state.results);
        for r in results.values_mut() {
            r.db_kept = kept.contains(&r.db_name);
            if r.db_kept {
                keep_logs(cx, r);
            }
        }
    }
    cx.state.cluster_kept.store(
        !kept.is_empty() && cx.plan.database.template.is_none(),
        Ordering::SeqCst,
    );
    *lock(&cx.state.kept) = kept;
    let summary = summary::build(cx, exit);
    state::record_run(&cx.plan, &summary);
    *lock(&cx.state.summary) = Some(summary.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    cx.emit(Event::RunFinished {
        summary: Box::new(summary),
        written: tx,
    });
    let _ = rx.await;
}

/// The databases to keep that really exist: a test may have dropped its own. A run never
/// claims to keep what is not there.
async fn still_there(cx: &RunCx, chosen: BTreeSet<String>) -> BTreeSet<String> {
    if chosen.is_empty() {
        return chosen;
    }
    let names: Vec<String> = chosen.iter().cloned().collect();
    let found = match database::connect(&cx.admin_url()).await {
        Ok(client) => database::existing(&client, &names).await,
        Err(e) => Err(e),
    };
    let found: BTreeSet<String> = match found {
        Ok(found) => found.into_iter().collect(),
        Err(e) => {
            cx.emit(Event::Warning(format!(
                "cannot check that the kept databases exist: {e}"
            )));
            return chosen;
        }
    };
    for gone in chosen.difference(&found) {
        cx.emit(Event::Warning(format!(
            "database {gone} was to be kept, but it no longer exists (did the tests drop it?)"
        )));
    }
    found
}

/// Moves a kept database's logs out of `workers/`, which the next run clears, to
/// `kept/<database>/`, recorded in the journal so that `rollback` removes them with the database.
fn keep_logs(cx: &RunCx, r: &mut WorkerResult) {
    let Some(from) = r.log_dir.clone() else {
        return;
    };
    // Files of one pack share its database: each keeps its own folder beside it.
    let packed = cx
        .dag
        .workers
        .get(r.index)
        .is_some_and(|w| w.in_pack.is_some());
    let name = if packed {
        format!("{}-{}", r.db_name, r.stem)
    } else {
        r.db_name.clone()
    };
    let to = kept_logs_dir(&cx.plan.report_dir).join(name);
    let entry = cx.journal.intent(&Resource::Folder { path: to.clone() });
    let moved = std::fs::create_dir_all(kept_logs_dir(&cx.plan.report_dir))
        .and_then(|()| std::fs::rename(&from, &to));
    match (entry, moved) {
        (Ok(_), Ok(())) => r.set_log_dir(&to),
        (entry, Err(e)) => {
            if let Ok(entry) = entry {
                let _ = cx.journal.undone(entry);
            }
            cx.emit(Event::Warning(format!(
                "cannot move the logs of kept database {} to {}: {e}; they stay in {}, which the next run clears",
                r.db_name,
                to.display(),
                from.display()
            )));
        }
        (Err(e), Ok(())) => {
            r.set_log_dir(&to);
            cx.emit(Event::Warning(format!(
                "cannot journal {}: {e}; remove it by hand after `rollback`",
                to.display()
            )));
        }
    }
}

/// Where the logs of kept databases live until `rollback`.
pub fn kept_logs_dir(report_dir: &Path) -> PathBuf {
    report_dir.join("kept")
}

/// Drops what is not kept (concurrently, bounded) and removes passing workers' logs.
async fn cleanup(cx: &RunCx) -> Result<String, StepError> {
    // A clone still in flight must land in the list before the list is dropped.
    let prefetcher = lock(&cx.prefetch.task).take();
    if let Some(p) = prefetcher {
        let _ = p.await;
    }
    let kept = lock(&cx.state.kept).clone();
    let admin = cx.admin_url();
    let to_drop: Vec<WorkerDb> = lock(&cx.state.databases)
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
    for r in lock(&cx.state.results).values() {
        if let (Verdict::Pass, false, Some(dir)) = (r.verdict, r.db_kept, &r.log_dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    // A split file's folder holds its merged JUnit and its parts' folders.
    if let Some(summary) = lock(&cx.state.summary).as_ref() {
        for f in cx.dag.files().filter(|f| !f.parts.is_empty()) {
            let passed = summary
                .workers
                .iter()
                .any(|r| r.index == f.index && r.verdict == Verdict::Pass);
            if passed {
                let _ = std::fs::remove_dir_all(&f.log_dir);
            }
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
        Action::StartCluster { keep: false } => "start ephemeral PostgreSQL".into(),
        Action::StartCluster { keep: true } => "start the kept PostgreSQL".into(),
        Action::PrepareTemplate(p) => format!("prepare template {}", p.template),
        Action::Worker { index } => format!("worker {index}"),
        Action::RetryFailed { .. } => "retry failed files".into(),
        Action::Report => "write reports".into(),
        Action::Cleanup => "drop worker databases".into(),
        Action::RefillPool { .. } => "refill the pool".into(),
        Action::StopCluster { keep: false } => "stop ephemeral PostgreSQL".into(),
        Action::StopCluster { keep: true } => "stop the kept PostgreSQL".into(),
    }
}

pub fn resources_of(state_dir: &Path) -> Vec<crate::engine::journal::Recorded<Resource>> {
    crate::engine::journal::read_all(state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FlakyPolicy;

    #[test]
    fn exit_codes_rank_interrupt_then_setup_then_tests() {
        use Verdict::*;
        let pass = FlakyPolicy::Pass;
        assert_eq!(run_exit_code(true, true, &[Fail], pass), 130);
        assert_eq!(run_exit_code(false, true, &[Fail], pass), 3);
        assert_eq!(run_exit_code(false, false, &[Pass, Timeout], pass), 1);
        assert_eq!(run_exit_code(false, false, &[Pass, Error], pass), 1);
        assert_eq!(run_exit_code(false, false, &[Pass, Flaky], pass), 0);
        assert_eq!(
            run_exit_code(false, false, &[Pass, Flaky], FlakyPolicy::Fail),
            1
        );
        assert_eq!(run_exit_code(false, false, &[Pass, Cancelled], pass), 0);
    }

    fn db(worker: usize, attempt: u32) -> WorkerDb {
        WorkerDb {
            worker,
            attempt,
            name: format!("db_{worker}_{attempt}"),
            entry: Entry(worker as u64 * 10 + attempt as u64),
            files: vec![worker],
        }
    }

    fn results(verdicts: &[Verdict]) -> BTreeMap<usize, WorkerResult> {
        verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let plan = crate::planner::WorkerPlan::bare(
                    i,
                    &format!("t{i}.py"),
                    &format!("t{i}"),
                    PathBuf::from("/l"),
                    format!("db_{i}_1"),
                );
                let mut a = crate::model::Attempt::new(1, plan.db_name(), &plan.log_dir);
                a.verdict = *v;
                let mut r = WorkerResult::new(plan.index, &plan.file, &plan.stem, &a);
                r.push_attempt(a);
                (i, r)
            })
            .collect()
    }

    #[test]
    fn which_databases_are_kept() {
        use Verdict::*;
        let dbs = [db(0, 1), db(1, 1), db(2, 1), db(3, 1), db(1, 2)];
        let r = results(&[Pass, Fail, Timeout, Cancelled]);
        let keep = |policy, exit| {
            databases_to_keep(policy, exit, &dbs, &r)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keep(Keep::Failed, 1),
            ["db_1_1", "db_2_1"],
            "failed and timed out, first attempts only"
        );
        assert_eq!(
            keep(Keep::AllOnFailure, 1),
            ["db_0_1", "db_1_1", "db_2_1"],
            "not the cancelled one"
        );
        assert!(
            keep(Keep::AllOnFailure, 0).is_empty(),
            "a green run keeps nothing"
        );
        assert_eq!(keep(Keep::Always, 0), ["db_0_1", "db_1_1", "db_2_1"]);
        assert!(keep(Keep::Never, 1).is_empty());
        for exit in [3, 130] {
            assert!(
                keep(Keep::Always, exit).is_empty(),
                "nothing after exit {exit}"
            );
        }
    }
}
