//! The run's owner, as nextest's dispatcher: one task holds the run's state and changes it only
//! from the [`RunEvent`]s that steps and the signal handler send it. It feeds every sink the same
//! event stream, derives the summary and the exit code, and answers the steps' [`Question`]s.
//!
//! [`RunState`]'s fields are private to this module and only the owner task holds a `RunState`:
//! no step can write the run's state, by construction.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::per_worker::Held;
use super::{RunConfig, StepError};
use crate::engine::journal::Entry;
use crate::engine::Cancel;
use crate::events::{Event, Sink};
use crate::model::{ClusterUse, ExitCode, Verdict, WorkerResult};
use crate::plan::Keep;

/// The template the workers' databases are copied from, once setup has found it.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    pub url: String,
    /// Copies use `STRATEGY = FILE_COPY` (PostgreSQL 15+, unless the plan says wal_log).
    pub file_copy: bool,
}

/// The local cluster a run uses, for the summary.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub used: ClusterUse,
    pub password_file: PathBuf,
}

/// What steps (and the signal handler) tell the owner.
pub enum RunEvent {
    /// Passed to every sink as it is: progress, warnings, steps started and finished.
    Say(Event),
    TemplateUrl(String),
    FileCopy(bool),
    Cluster(ClusterInfo),
    /// `prepare` ran in this run.
    Prepared,
    /// A worker database came from the pool (else it was cloned).
    DatabaseFrom {
        pool: bool,
    },
    /// An attempt of worker `worker` ended: folded into the file's result.
    Attempt {
        worker: usize,
        attempt: Box<crate::model::Attempt>,
    },
    /// A unit's first attempt is past its start-up (its tests began, or it ended).
    StartupOver(usize),
    /// The workers' stage is over: nothing else will start.
    WorkersOver,
    /// A per-worker resource exists (or is about to): the keep decision covers it.
    Held(Held),
    /// Resources that are gone (released, or never made), by journal entry.
    Gone(Vec<Entry>),
    /// A step failed in a way that ends the run (exit 3): the first one is kept.
    Fatal(StepError),
    /// Ctrl-C or SIGTERM.
    Signal,
    /// This many workers (limited engine nodes) run now, told as each node starts.
    AtOnce(usize),
    /// What the report step kept: database names, and the new log folders of their files.
    Kept {
        names: BTreeSet<String>,
        logs: Vec<(usize, PathBuf)>,
    },
    Ask(Question),
}

/// When a wait for start-ups is over.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// This many units are past their start-up.
    Units(usize),
    /// This unit is.
    Unit(usize),
}

/// What steps ask the owner; each carries the channel for the answer.
pub enum Question {
    Template(oneshot::Sender<Option<TemplateInfo>>),
    /// A free port no other worker of this run holds.
    Port(oneshot::Sender<std::io::Result<u16>>),
    /// The exit code of the run so far.
    ExitSoFar(oneshot::Sender<ExitCode>),
    /// The files to retry (failed or timed out); None when setup failed.
    ToRetry(oneshot::Sender<Option<Vec<usize>>>),
    /// Answered once the start-ups are over (or the workers' stage is).
    Startups(Until, oneshot::Sender<()>),
    /// The resource held for one attempt, taken out of the keep decision (a retry's, dropped at
    /// once; sent back with `Held` when that fails).
    Take {
        worker: usize,
        attempt: u32,
        reply: oneshot::Sender<Vec<Held>>,
    },
    /// The databases the keep policy would keep, with the files whose logs go with each.
    ToKeep(Keep, oneshot::Sender<Vec<KeepCandidate>>),
    /// What cleanup releases and removes.
    ToRelease(oneshot::Sender<Release>),
    /// Build the summary, finish every sink; answered once all is written.
    Finish(oneshot::Sender<()>),
    /// What the journal's end needs to know.
    Ending(oneshot::Sender<Ending>),
}

/// A database the keep policy chose, and the files whose logs go with it.
#[derive(Debug, Clone)]
pub struct KeepCandidate {
    pub name: String,
    /// Each file that used it: its worker index, stem and log folder, and whether it shared the
    /// database with others (a pack's files keep a folder each beside it).
    pub files: Vec<KeptFile>,
}

#[derive(Debug, Clone)]
pub struct KeptFile {
    pub index: usize,
    pub stem: String,
    pub log_dir: PathBuf,
    pub packed: bool,
}

/// What cleanup does: the resources to release, the log folders to remove.
#[derive(Debug, Default)]
pub struct Release {
    pub resources: Vec<Held>,
    pub remove: Vec<PathBuf>,
    pub kept: usize,
}

/// The run's end as the journal sees it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub exit: ExitCode,
    pub kept: BTreeSet<String>,
    pub cluster_kept: bool,
}

/// How steps reach the owner.
#[derive(Clone)]
pub struct OwnerHandle(mpsc::UnboundedSender<RunEvent>);

impl OwnerHandle {
    pub fn send(&self, event: RunEvent) {
        let _ = self.0.send(event);
    }

    pub fn say(&self, event: Event) {
        self.send(RunEvent::Say(event));
    }

    pub fn warn(&self, text: impl Into<String>) {
        self.say(Event::Warning(text.into()));
    }

    /// Asks a question; None only if the owner is gone (the run is over).
    pub async fn ask<T>(&self, question: impl FnOnce(oneshot::Sender<T>) -> Question) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.send(RunEvent::Ask(question(tx)));
        rx.await.ok()
    }
}

/// The run's state: what happened so far. Only the owner task has one.
#[derive(Default)]
struct RunState {
    results: BTreeMap<usize, WorkerResult>,
    held: Vec<Held>,
    fatal: Option<StepError>,
    interrupted: bool,
    template: Option<String>,
    file_copy: bool,
    cluster: Option<ClusterInfo>,
    prepared: bool,
    from_pool: usize,
    cloned: usize,
    most_at_once: usize,
    kept: BTreeSet<String>,
    cluster_kept: bool,
    past_startup: BTreeSet<usize>,
    workers_over: bool,
    waiters: Vec<(Until, oneshot::Sender<()>)>,
    ports: HashSet<u16>,
    summary_exit: Option<ExitCode>,
}

/// The owner task: the state, the sinks, and the run's cancellation (a signal stops the run).
pub struct Owner {
    config: Arc<RunConfig>,
    state: RunState,
    sinks: Vec<Box<dyn Sink>>,
    cancel: Cancel,
    signals: u32,
}

/// A new owner and the handle steps reach it by.
pub fn new(
    config: Arc<RunConfig>,
    sinks: Vec<Box<dyn Sink>>,
    cancel: Cancel,
) -> (Owner, OwnerHandle, mpsc::UnboundedReceiver<RunEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let owner = Owner {
        config,
        state: RunState::default(),
        sinks,
        cancel,
        signals: 0,
    };
    (owner, OwnerHandle(tx), rx)
}

impl Owner {
    /// Handles events until every handle is gone, then closes the sinks; returns the run's exit
    /// code (the summary's, or the run's so far if it never got that far).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RunEvent>) -> ExitCode {
        while let Some(event) = rx.recv().await {
            self.handle(event);
        }
        for sink in &mut self.sinks {
            sink.close();
        }
        self.state.summary_exit.unwrap_or_else(|| self.exit_code())
    }

    fn say(&mut self, event: Event) {
        for sink in &mut self.sinks {
            sink.event(&event);
        }
    }

    fn handle(&mut self, event: RunEvent) {
        let s = &mut self.state;
        match event {
            RunEvent::Say(e) => self.say(e),
            RunEvent::TemplateUrl(url) => s.template = Some(url),
            RunEvent::FileCopy(f) => s.file_copy = f,
            RunEvent::Cluster(c) => s.cluster = Some(c),
            RunEvent::Prepared => s.prepared = true,
            RunEvent::DatabaseFrom { pool: true } => s.from_pool += 1,
            RunEvent::DatabaseFrom { pool: false } => s.cloned += 1,
            RunEvent::Attempt { worker, attempt } => self.attempt(worker, *attempt),
            RunEvent::StartupOver(w) => {
                s.past_startup.insert(w);
                self.wake();
            }
            RunEvent::WorkersOver => {
                s.workers_over = true;
                self.wake();
            }
            RunEvent::Held(h) => s.held.push(h),
            RunEvent::Gone(entries) => s.held.retain(|h| !entries.contains(&h.entry)),
            RunEvent::Fatal(e) => {
                s.fatal.get_or_insert(e);
            }
            RunEvent::Signal => self.signal(),
            RunEvent::AtOnce(n) => s.most_at_once = s.most_at_once.max(n),
            RunEvent::Kept { names, logs } => self.kept(names, logs),
            RunEvent::Ask(q) => self.answer(q),
        }
    }

    /// Folds an attempt into its file's result and tells the sinks.
    fn attempt(&mut self, worker: usize, attempt: crate::model::Attempt) {
        let Some(w) = self.config.dag.workers.get(worker) else {
            return;
        };
        let r = self
            .state
            .results
            .entry(worker)
            .or_insert_with(|| WorkerResult::new(w.index, &w.file, &w.stem, &attempt));
        r.push_attempt(attempt);
        let r = Box::new(r.clone());
        self.say(Event::WorkerFinished(r));
    }

    /// A Ctrl-C or SIGTERM: the first stops the run gracefully, a second skips the grace.
    fn signal(&mut self) {
        self.signals += 1;
        let second = self.signals > 1;
        self.state.interrupted = true;
        self.say(Event::Interrupted { second });
        self.cancel.stop.cancel();
        if second {
            self.cancel.kill.cancel();
        }
    }

    fn kept(&mut self, names: BTreeSet<String>, logs: Vec<(usize, PathBuf)>) {
        let s = &mut self.state;
        for r in s.results.values_mut() {
            r.db_kept = names.contains(&r.db_name);
        }
        for (index, dir) in logs {
            if let Some(r) = s.results.get_mut(&index) {
                r.set_log_dir(&dir);
            }
        }
        s.cluster_kept = !names.is_empty() && self.config.plan.database.template.is_none();
        s.kept = names;
    }

    /// Answers the waits whose start-ups are over.
    fn wake(&mut self) {
        let s = &mut self.state;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
            .into_iter()
            .partition(|(until, _)| {
                s.workers_over
                    || match until {
                        Until::Units(n) => s.past_startup.len() >= *n,
                        Until::Unit(u) => s.past_startup.contains(u),
                    }
            });
        s.waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// The run's exit code so far.
    fn exit_code(&self) -> ExitCode {
        let verdicts: Vec<Verdict> = self.state.results.values().map(|r| r.verdict).collect();
        run_exit_code(
            self.state.interrupted,
            self.state.fatal.is_some(),
            &verdicts,
            self.config.plan.run.flaky,
        )
    }

    fn answer(&mut self, q: Question) {
        match q {
            Question::Template(tx) => {
                let s = &self.state;
                let info = s.template.as_ref().map(|url| TemplateInfo {
                    url: url.clone(),
                    file_copy: s.file_copy,
                });
                let _ = tx.send(info);
            }
            Question::Port(tx) => {
                let _ = tx.send(self.take_port());
            }
            Question::ExitSoFar(tx) => {
                let _ = tx.send(self.exit_code());
            }
            Question::ToRetry(tx) => {
                let failed = self.state.fatal.is_none().then(|| {
                    self.state
                        .results
                        .values()
                        .filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::Timeout))
                        .map(|r| r.index)
                        .collect()
                });
                let _ = tx.send(failed);
            }
            Question::Startups(until, tx) => {
                self.state.waiters.push((until, tx));
                self.wake();
            }
            Question::Take {
                worker,
                attempt,
                reply,
            } => {
                let (taken, left): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.state.held)
                    .into_iter()
                    .partition(|h| h.worker == worker && h.attempt == attempt);
                self.state.held = left;
                let _ = reply.send(taken);
            }
            Question::ToKeep(policy, tx) => {
                let _ = tx.send(self.to_keep(policy));
            }
            Question::ToRelease(tx) => {
                let _ = tx.send(self.to_release());
            }
            Question::Finish(tx) => {
                self.finish();
                let _ = tx.send(());
            }
            Question::Ending(tx) => {
                let s = &self.state;
                let _ = tx.send(Ending {
                    exit: s.summary_exit.unwrap_or_else(|| self.exit_code()),
                    kept: s.kept.clone(),
                    cluster_kept: s.cluster_kept,
                });
            }
        }
    }

    fn take_port(&mut self) -> std::io::Result<u16> {
        for _ in 0..50 {
            let port = super::cluster::free_port()?;
            if self.state.ports.insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port found"))
    }

    fn to_keep(&self, policy: Keep) -> Vec<KeepCandidate> {
        let s = &self.state;
        let names = databases_to_keep(policy, self.exit_code(), &s.held, &s.results);
        names
            .into_iter()
            .map(|name| KeepCandidate {
                files: s
                    .results
                    .values()
                    .filter(|r| r.db_name == name)
                    .filter_map(|r| {
                        Some(KeptFile {
                            index: r.index,
                            stem: r.stem.clone(),
                            log_dir: r.log_dir.clone()?,
                            packed: r
                                .attempts
                                .first()
                                .is_some_and(|a| !a.packed_with.is_empty()),
                        })
                    })
                    .collect(),
                name,
            })
            .collect()
    }

    fn to_release(&self) -> Release {
        let s = &self.state;
        // A resource follows its attempt's database: kept with it.
        let kept = |h: &&Held| {
            s.kept.contains(&h.name) || h.follows.as_ref().is_some_and(|db| s.kept.contains(db))
        };
        let resources: Vec<Held> = s.held.iter().filter(|h| !kept(h)).cloned().collect();
        let mut remove: Vec<PathBuf> = s
            .results
            .values()
            .filter(|r| r.verdict == Verdict::Pass && !r.db_kept)
            .filter_map(|r| r.log_dir.clone())
            .collect();
        // A split file's folder holds its merged JUnit and its parts' folders.
        for f in self.config.dag.files().filter(|f| !f.parts.is_empty()) {
            let parts: Vec<&WorkerResult> =
                f.parts.iter().filter_map(|p| s.results.get(p)).collect();
            let passed =
                parts.len() == f.parts.len() && parts.iter().all(|r| r.verdict == Verdict::Pass);
            if passed {
                remove.push(f.log_dir.clone());
            }
        }
        Release {
            resources,
            remove,
            kept: s.kept.len(),
        }
    }

    /// The run's results are final: the summary, every sink's files, then what was written.
    fn finish(&mut self) {
        let exit = self.exit_code();
        let s = &self.state;
        let summary = super::summary::build(
            &self.config,
            super::summary::Facts {
                exit,
                results: &s.results,
                held: &s.held,
                fatal: s.fatal.as_ref(),
                template_url: s.template.as_deref().unwrap_or_default(),
                cluster: s.cluster.as_ref(),
                prepared: s.prepared,
                from_pool: s.from_pool,
                cloned: s.cloned,
                most_at_once: s.most_at_once,
            },
        );
        self.state.summary_exit = Some(exit);
        let mut written = Vec::new();
        for sink in &mut self.sinks {
            written.extend(sink.finish(&summary));
        }
        self.say(Event::Written(written));
    }
}

/// The run's exit code: interrupted, setup failed, a file failed the run (a flaky one only
/// under `flaky = "fail"`), or ok.
pub fn run_exit_code(
    interrupted: bool,
    fatal: bool,
    verdicts: &[Verdict],
    flaky: crate::plan::FlakyPolicy,
) -> ExitCode {
    if interrupted {
        ExitCode::Interrupted
    } else if fatal {
        ExitCode::Setup
    } else if verdicts.iter().any(|v| v.fails(flaky)) {
        ExitCode::TestsFailed
    } else {
        ExitCode::Ok
    }
}

/// Which worker databases survive: retries are always dropped; after a setup failure or an
/// interruption, nothing is kept.
pub fn databases_to_keep(
    policy: Keep,
    exit: ExitCode,
    held: &[Held],
    results: &BTreeMap<usize, WorkerResult>,
) -> BTreeSet<String> {
    if matches!(exit, ExitCode::Setup | ExitCode::Interrupted) {
        return BTreeSet::new();
    }
    let any_failed = exit == ExitCode::TestsFailed;
    held.iter()
        .filter(|h| h.attempt == 1 && h.is_database())
        .filter(|h| {
            // A pack's database serves several files: any of them decides.
            let verdicts: Vec<Option<Verdict>> = h
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
        .map(|h| h.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FlakyPolicy;

    #[test]
    fn exit_codes_rank_interrupt_then_setup_then_tests() {
        use Verdict::*;
        let pass = FlakyPolicy::Pass;
        assert_eq!(run_exit_code(true, true, &[Fail], pass).code(), 130);
        assert_eq!(run_exit_code(false, true, &[Fail], pass).code(), 3);
        assert_eq!(
            run_exit_code(false, false, &[Pass, Timeout], pass).code(),
            1
        );
        assert_eq!(run_exit_code(false, false, &[Pass, Error], pass).code(), 1);
        assert_eq!(run_exit_code(false, false, &[Pass, Flaky], pass).code(), 0);
        assert_eq!(
            run_exit_code(false, false, &[Pass, Flaky], FlakyPolicy::Fail).code(),
            1
        );
        assert_eq!(
            run_exit_code(false, false, &[Pass, Cancelled], pass).code(),
            0
        );
    }

    fn db(worker: usize, attempt: u32) -> Held {
        Held::database_for_test(
            worker,
            attempt,
            format!("db_{worker}_{attempt}"),
            Entry(worker as u64 * 10 + attempt as u64),
        )
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
            databases_to_keep(policy, ExitCode::of(exit), &dbs, &r)
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
