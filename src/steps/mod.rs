//! The steps: what each DAG node does to the world. The engine sees them only as [`Step`]s; the
//! resources they create go through the journal; what they learn and what they have to say goes
//! to the run's [`owner`], which alone holds the run's state and feeds the sinks.

pub mod cluster;
pub mod collect;
pub mod database;
pub mod failures;
pub mod owner;
pub mod pack;
pub mod parts;
pub mod per_worker;
pub mod pool;
pub mod prefetch;
pub mod process;
pub mod queue;
pub mod resource;
pub mod setup;
pub mod summary;
pub mod teardown;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::engine::journal::Journal;
use crate::engine::{BoxFuture, Cancel, Outcome, Step};
use crate::events::{Event, Sink};
use crate::model::ExitCode;
use crate::plan::Plan;
use crate::planner::{Action, Dag};
use owner::{OwnerHandle, Question, RunEvent, TemplateInfo, Until};
use per_worker::database::Databases;
use per_worker::WorkerResource;

pub use per_worker::database::CLONE_CONCURRENCY;
pub use setup::fingerprint;
pub use teardown::kept_logs_dir;

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

/// What the run was asked to do: set before it starts, never changed.
pub struct RunConfig {
    pub plan: Plan,
    pub dag: Dag,
    /// `--reprepare`: prepare even when the fingerprint matches.
    pub reprepare: bool,
    /// When the command started: every time the run reports counts from here.
    pub started_at: Instant,
    /// The wall clock at the same moment.
    pub started_wall: SystemTime,
}

impl RunConfig {
    pub fn new(plan: Plan, dag: Dag, reprepare: bool, started_at: Instant) -> Self {
        RunConfig {
            plan,
            dag,
            reprepare,
            started_at,
            started_wall: SystemTime::now()
                .checked_sub(started_at.elapsed())
                .unwrap_or_else(SystemTime::now),
        }
    }

    /// When the run started, in Unix seconds.
    pub fn started_unix(&self) -> f64 {
        self.started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    }

    /// The worker on the critical path, when the planner lowered the others' priority: the
    /// longest, started first.
    pub fn critical_unit(&self) -> Option<usize> {
        let lowered = self.dag.workers.iter().any(|w| w.nice > 0);
        self.dag.units().next().map(|w| w.index).filter(|_| lowered)
    }
}

/// What every step of one run holds: the configuration, the journal, the way to the owner, and
/// the handles of the run's shared subsystems (each with its own private bookkeeping).
pub struct RunCx {
    config: Arc<RunConfig>,
    /// Where the run records what it creates, before it exists.
    pub journal: Journal,
    owner: OwnerHandle,
    /// The local cluster this run started, if any.
    pub cluster: setup::ClusterSlot,
    pub prefetch: prefetch::Prefetch,
    pub pool: pool::Pool,
    pub databases: Databases,
    /// The plan's `[[resource]]`s, in file order.
    pub commands: Vec<per_worker::command::CommandResource>,
}

impl RunCx {
    pub fn plan(&self) -> &Plan {
        &self.config.plan
    }

    pub fn dag(&self) -> &Dag {
        &self.config.dag
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Tells the owner something.
    pub fn send(&self, event: RunEvent) {
        self.owner.send(event);
    }

    /// Says something to every sink.
    pub fn say(&self, event: Event) {
        self.owner.say(event);
    }

    pub fn warn(&self, text: impl Into<String>) {
        self.owner.warn(text);
    }

    /// Asks the owner; None only once the owner is gone.
    pub async fn ask<T>(
        &self,
        q: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Question,
    ) -> Option<T> {
        self.owner.ask(q).await
    }

    /// The template setup found (an error before setup found it).
    pub async fn template(&self) -> Result<TemplateInfo, StepError> {
        self.ask(Question::Template)
            .await
            .flatten()
            .ok_or_else(|| StepError::new("the template database is not known yet"))
    }

    /// The maintenance database's URL on the template's server.
    pub async fn admin_url(&self) -> Result<String, StepError> {
        Ok(database::admin_url(&self.template().await?.url))
    }

    /// A free port no other worker of this run holds.
    pub async fn take_port(&self) -> std::io::Result<u16> {
        self.ask(Question::Port)
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("the run is over")))
    }

    /// The exit code of the run so far.
    pub async fn exit_so_far(&self) -> ExitCode {
        self.ask(Question::ExitSoFar)
            .await
            .unwrap_or(ExitCode::Interrupted)
    }

    /// A unit's first attempt is past its start-up (its tests began, or it ended).
    pub fn past_startup(&self, worker: usize) {
        self.send(RunEvent::StartupOver(worker));
    }

    /// Waits until `units` first attempts are past their start-up, or the workers' stage is over.
    pub async fn startups_over(&self, units: usize) {
        self.ask(|tx| Question::Startups(Until::Units(units), tx))
            .await;
    }

    /// Holds a unit's start-up (server and test process) until the critical unit's is over: with
    /// more workers than cores, a dozen start-ups at once slow the one the run waits on. Only
    /// units the planner found slack enough for wait (`after_critical`).
    pub async fn after_critical_startup(&self, index: usize, cancel: &Cancel) {
        let waits = self
            .dag()
            .workers
            .get(index)
            .is_some_and(|w| w.after_critical);
        let Some(critical) = self.config.critical_unit().filter(|_| waits) else {
            return;
        };
        tokio::select! {
            _ = self.ask(|tx| Question::Startups(Until::Unit(critical), tx)) => {}
            _ = cancel.stop.cancelled() => {}
        }
    }

    /// The per-worker resource kinds of this run, in the order an attempt acquires them.
    pub fn resources(&self) -> Vec<&dyn WorkerResource> {
        let mut all: Vec<&dyn WorkerResource> = vec![&self.databases];
        all.extend(self.commands.iter().map(|c| c as &dyn WorkerResource));
        all
    }

    fn set_fatal(&self, e: &StepError) {
        self.send(RunEvent::Fatal(e.clone()));
    }

    fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.plan().report_dir.join(name)
    }
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
                Action::Pack { index } => {
                    return pack::run_pack(cx, *index, &cancel)
                        .await
                        .inspect_err(|e| cx.set_fatal(e))
                }
                Action::RetryFailed { retries } => {
                    return worker::retry_failed(cx, *retries, &cancel).await
                }
                Action::Queue { files, lanes } => {
                    return queue::run(cx, files, *lanes, &cancel)
                        .await
                        .inspect_err(|e| cx.set_fatal(e))
                }
                // Nothing to stop when the cluster never started: say nothing either.
                Action::StopCluster { .. } if !cx.cluster.started().await => Ok(None),
                _ => {
                    let start = Instant::now();
                    cx.say(Event::StepStarted {
                        what: self.label.clone(),
                    });
                    let r = self.setup_or_teardown(&cancel).await;
                    if let Ok(note) = &r {
                        cx.say(Event::StepFinished {
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
            } => setup::setup_command(cx, command, creates.as_deref(), env, cancel).await,
            Action::StartCluster { keep } => setup::start_cluster(cx, *keep).await.map(Some),
            Action::PrepareTemplate(p) => {
                let note = setup::prepare_template(cx, p, cancel).await?;
                cx.prefetch.start(Arc::clone(cx), cancel.clone());
                Ok(note)
            }
            Action::Report => {
                teardown::report(cx).await;
                Ok(None)
            }
            Action::Cleanup { keep: _ } => teardown::cleanup(cx).await.map(Some),
            // The tests are over and reported: a pool that could not be refilled only makes the
            // next run clone, so it is a warning, not a failed run.
            Action::RefillPool { size } => match pool::finish_refill(cx, *size, cancel).await {
                Ok(note) => Ok(Some(note)),
                Err(e) => {
                    let detail = e.detail.map(|d| format!("\n  {d}")).unwrap_or_default();
                    cx.warn(format!("{}{detail}", e.message));
                    Ok(Some("incomplete".into()))
                }
            },
            Action::StopCluster { .. } => teardown::stop_cluster(cx).await,
            Action::Worker { .. }
            | Action::Pack { .. }
            | Action::Queue { .. }
            | Action::RetryFailed { .. } => Ok(None),
        }
    }
}

/// Runs a planned DAG to its end: the owner task, the engine, the journal's end. `signals`
/// carries each Ctrl-C or SIGTERM to the owner (tests pass one that never sends). Returns the
/// run's exit code.
pub async fn run(
    config: RunConfig,
    journal: Journal,
    sinks: Vec<Box<dyn Sink>>,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<()>,
) -> ExitCode {
    let config = Arc::new(config);
    let cancel = Cancel::default();
    let (owner, handle, rx) = owner::new(Arc::clone(&config), sinks, cancel.clone());
    let owner = tokio::spawn(owner.run(rx));
    let forward = {
        let handle = handle.clone();
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                handle.send(RunEvent::Signal);
            }
        })
    };
    let units = config.dag.workers.len();
    let cx = Arc::new(RunCx {
        config: Arc::clone(&config),
        journal,
        owner: handle,
        cluster: setup::ClusterSlot::default(),
        prefetch: prefetch::Prefetch::new(units),
        pool: pool::Pool::default(),
        databases: Databases::default(),
        commands: config
            .plan
            .resources
            .iter()
            .map(per_worker::command::CommandResource::new)
            .collect(),
    });
    let limit = match config.plan.run.jobs {
        crate::plan::Jobs::Fixed(n) => crate::engine::Limit::Fixed(n),
        crate::plan::Jobs::Auto => {
            let cores = crate::sys::cores();
            let probe = Box::new(IdleCores {
                cores,
                last: None,
                copies: cx.databases.copies.clone(),
            });
            crate::engine::Limit::Load { cores, probe }
        }
    };
    let opts = crate::engine::Options {
        limit,
        fail_fast: config.plan.run.fail_fast,
    };
    let tell = cx.owner.clone();
    crate::engine::run(nodes(&cx), opts, cancel, move |ev| match ev {
        crate::engine::EngineEvent::Panicked(_, msg) => {
            tell.send(RunEvent::Fatal(StepError::new(format!(
                "internal error (please report it): {msg}"
            ))));
        }
        crate::engine::EngineEvent::Started { at_once, .. } => {
            tell.send(RunEvent::AtOnce(at_once));
        }
        _ => {}
    })
    .await;
    forward.abort();
    let _ = forward.await;
    teardown::finish_journal(&cx).await;
    // Dropping the last handle ends the owner, which closes the sinks.
    drop(cx);
    match tokio::time::timeout(std::time::Duration::from_secs(5), owner).await {
        Ok(Ok(code)) => code,
        _ => ExitCode::Setup,
    }
}

/// `jobs = "auto"`'s reading of the machine: the cores that stood idle between two readings of
/// /proc/stat. CPUs the kernel counts that this process may not use (an affinity mask, a
/// container's quota) are taken as idle and taken off, so that a big idle host never looks like
/// free cores of ours; a database copy in flight counts as a busy core, as the planner's model
/// counts it.
struct IdleCores {
    cores: usize,
    last: Option<(u64, u64)>,
    copies: per_worker::database::Copies,
}

impl crate::engine::Probe for IdleCores {
    fn idle_cores(&mut self) -> Option<f64> {
        let (idle, total, cpus) = crate::sys::cpu_idle_and_total()?;
        let copies = self.copies.most_since();
        let (idle0, total0) = self.last.replace((idle, total))?;
        let spent = total.checked_sub(total0).filter(|&t| t > 0)?;
        let share = idle.saturating_sub(idle0) as f64 / spent as f64;
        let cores = self.cores;
        let ours = share * cpus as f64 - cpus.saturating_sub(cores) as f64 - copies as f64;
        Some(ours.clamp(0.0, cores as f64))
    }
}

/// Turns the planner's DAG into engine nodes.
pub fn nodes(cx: &Arc<RunCx>) -> Vec<crate::engine::Node<RunStep>> {
    cx.dag()
        .nodes
        .iter()
        .map(|n| crate::engine::Node {
            deps: n.deps.clone(),
            always: n.always,
            limited: matches!(n.action, Action::Worker { .. } | Action::Pack { .. }),
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
        Action::Pack { index } => format!("pack {index}"),
        Action::Queue { files, .. } => format!("queue of {} files", files.len()),
        Action::RetryFailed { .. } => "retry failed files".into(),
        Action::Report => "write reports".into(),
        Action::Cleanup { .. } => "drop worker databases".into(),
        Action::RefillPool { .. } => "refill the pool".into(),
        Action::StopCluster { keep: false } => "stop ephemeral PostgreSQL".into(),
        Action::StopCluster { keep: true } => "stop the kept PostgreSQL".into(),
    }
}

pub fn resources_of(state_dir: &Path) -> Vec<crate::engine::journal::Recorded<resource::Resource>> {
    crate::engine::journal::read_all(state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Probe;

    /// Waits (polling, up to 5 s) until /proc/stat has counted `ticks` more CPU ticks.
    fn ticks_pass(ticks: u64) {
        let total = || crate::sys::cpu_idle_and_total().map_or(0, |(_, t, _)| t);
        let (from, deadline) = (total(), Instant::now() + std::time::Duration::from_secs(5));
        while total() < from + ticks {
            assert!(Instant::now() < deadline, "/proc/stat's ticks stood still");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A copy waits on the database server's disk, its core idle in /proc/stat: while as many
    /// copies are in flight as there are cores, or were at once since the last reading, the gate
    /// sees no idle core, as the planner's model counts them.
    #[test]
    fn a_database_copy_counts_as_a_busy_core_for_the_gate() {
        let copies = per_worker::database::Copies::default();
        let cores = crate::sys::cores();
        let mut probe = IdleCores {
            cores,
            last: None,
            copies: copies.clone(),
        };
        assert_eq!(
            probe.idle_cores(),
            None,
            "no idle cores before two readings"
        );
        let copying: Vec<_> = (0..cores).map(|_| copies.begin()).collect();
        ticks_pass(20);
        assert_eq!(probe.idle_cores(), Some(0.0), "copies in flight");
        // Copies that ended before the reading still waited during its span.
        drop(copying);
        ticks_pass(20);
        assert_eq!(probe.idle_cores(), Some(0.0), "copies ended in the span");
        // None since.
        assert_eq!(copies.most_since(), 0);
    }
}
