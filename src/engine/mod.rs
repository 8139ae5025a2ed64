//! A small async executor for the planner's DAG. It knows steps only as things to `apply` (and,
//! through the [`journal`], resources to roll back); databases, servers and tests live in
//! [`crate::steps`].
//!
//! Nodes start as soon as their dependencies finish, in list order (the planner puts the longest
//! work first), with at most `jobs` limited nodes at once ([`Limit`]). A fatal step error or, with fail-fast,
//! a failed step cancels the run: pending nodes are cancelled, running ones see the token, and
//! `always` nodes (teardown) still run.

pub mod journal;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a step ended, when it did not fail fatally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Ran to the end but failed (tests failed): not fatal, dependents still run.
    Failed,
    /// Stopped by cancellation.
    Cancelled,
}

/// The final state of a node.
#[derive(Debug)]
pub enum NodeStatus<E> {
    Done(Outcome),
    Error(E),
    /// Never started: a dependency errored or the run was cancelled first.
    NotRun,
    /// The step panicked (a bug); the run was cancelled so that teardown still ran.
    Panicked(String),
}

/// Cancellation as the steps see it: `stop` asks for a graceful stop, `kill` skips the grace period.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    pub stop: CancellationToken,
    pub kill: CancellationToken,
}

impl Cancel {
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// One unit of work.
pub trait Step: Send + Sync + 'static {
    type Error: Send + 'static;
    fn apply(self: Arc<Self>, cancel: Cancel) -> BoxFuture<Result<Outcome, Self::Error>>;
}

pub struct Node<S> {
    pub deps: Vec<usize>,
    /// Runs whatever happened to its dependencies (teardown).
    pub always: bool,
    /// Counts against `jobs`.
    pub limited: bool,
    pub step: Arc<S>,
}

/// What the engine tells its observer.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// Node `node` started; `at_once` limited nodes run now (it among them, if it is one).
    Started {
        node: usize,
        at_once: usize,
    },
    Finished(usize),
    /// A step panicked; told before any dependent (teardown) starts.
    Panicked(usize, String),
}

pub struct Options {
    /// How many limited nodes run at once.
    pub limit: Limit,
    /// Cancel the run on the first `Outcome::Failed` of a limited node.
    pub fail_fast: bool,
}

/// How many limited nodes may run at once.
pub enum Limit {
    /// At most this many; 0 = no limit.
    Fixed(usize),
    /// `jobs = "auto"`: a node per core, more while the probe says cores stand idle ([`Gate`]).
    Load { cores: usize, probe: Box<dyn Probe> },
}

/// How many cores stood idle since the engine last asked; None until there are two readings.
pub trait Probe: Send {
    fn idle_cores(&mut self) -> Option<f64>;
}

/// How often the gate reads the probe while nodes wait for it.
pub const GATE_TICK: std::time::Duration = std::time::Duration::from_millis(200);
/// Idle cores (mean of the last two readings) that let more nodes start...
const OPEN_IDLE: f64 = 0.75;
/// ...and under which the bound falls back towards a node per core.
const BUSY_IDLE: f64 = 0.25;
/// The least CPU a running node is taken to use: idle cores let at most this many more start
/// per core (and at most two per core per reading), so that sleeping nodes do not open the
/// gate for a start-up storm at once.
const LEAST_EACH: f64 = 0.1;

/// `jobs = "auto"`: how many limited nodes may run now. A core each at first: CPU-bound workers
/// (a server, a test process and a browser each) gain nothing from sharing a core, and lose
/// to switching and to memory. While nodes wait for a slot the engine reads the probe every
/// [`GATE_TICK`]; when cores stood idle (the nodes running wait on sleeps, the network, each
/// other) as many more may start as the idle cores fit at what each running node uses; when the
/// cores are busy the bound falls back by one a reading, never under a node per core.
pub struct Gate {
    cores: usize,
    allowed: usize,
    /// The last reading's idle cores while nodes wait; None when they do not.
    idle: Option<f64>,
    /// When the next reading is due while nodes wait (None: they do not): a node ending in
    /// between does not put it off.
    next: Option<tokio::time::Instant>,
    probe: Box<dyn Probe>,
}

impl Gate {
    fn new(cores: usize, probe: Box<dyn Probe>) -> Gate {
        let cores = cores.max(1);
        Gate {
            cores,
            allowed: cores,
            idle: None,
            next: None,
            probe,
        }
    }

    /// Nodes wait for a slot (from now on, or still): when the next reading is due. A fresh
    /// wait starts a fresh window.
    fn wait(&mut self) -> tokio::time::Instant {
        *self.next.get_or_insert_with(|| {
            self.idle = None;
            let _ = self.probe.idle_cores();
            tokio::time::Instant::now() + GATE_TICK
        })
    }

    /// Reads the probe and moves the bound, with `running` nodes running.
    fn read(&mut self, running: usize) {
        self.next = Some(tokio::time::Instant::now() + GATE_TICK);
        let Some(now) = self.probe.idle_cores() else {
            return;
        };
        let idle = self.idle.map_or(now, |before| (before + now) / 2.0);
        self.idle = Some(now);
        let cores = self.cores as f64;
        if idle >= OPEN_IDLE {
            let each = ((cores - idle).max(0.0) / running.max(1) as f64).max(LEAST_EACH);
            let more = ((idle / each).floor() as usize).clamp(1, 2 * self.cores);
            self.allowed = self.allowed.max(running + more);
        } else if idle < BUSY_IDLE {
            self.allowed = self.allowed.saturating_sub(1).max(self.cores);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Finished,
}

/// Runs every node to an end and returns their statuses, index for index.
pub async fn run<S: Step>(
    nodes: Vec<Node<S>>,
    opts: Options,
    cancel: Cancel,
    mut observe: impl FnMut(EngineEvent),
) -> Vec<NodeStatus<S::Error>> {
    let mut run = Scheduler::new(&nodes, opts, cancel);
    loop {
        run.start_ready(&mut observe);
        let gated = run.gate.as_mut().filter(|_| run.blocked);
        let joined = match gated {
            Some(gate) => {
                let due = gate.wait();
                tokio::select! {
                    j = run.set.join_next() => j,
                    _ = tokio::time::sleep_until(due) => {
                        if let Some(gate) = run.gate.as_mut() {
                            gate.read(run.running_limited);
                        }
                        continue;
                    }
                }
            }
            None => {
                if let Some(gate) = run.gate.as_mut() {
                    gate.next = None;
                }
                run.set.join_next().await
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let Some((i, result)) = run.joined(joined, &mut observe) else {
            continue;
        };
        run.finished(i, result);
        observe(EngineEvent::Finished(i));
    }
    run.status
        .into_iter()
        .map(|s| s.unwrap_or(NodeStatus::NotRun))
        .collect()
}

type Joined<E> = Result<(usize, Result<Outcome, E>), tokio::task::JoinError>;

/// The engine's state of one run: where every node is, and the tasks running.
struct Scheduler<'a, S: Step> {
    nodes: &'a [Node<S>],
    /// `Limit::Fixed`'s bound (0 = none); unused under a gate.
    jobs: usize,
    gate: Option<Gate>,
    /// A limited node was ready but had to wait for a slot in the last `start_ready`.
    blocked: bool,
    fail_fast: bool,
    cancel: Cancel,
    state: Vec<State>,
    status: Vec<Option<NodeStatus<S::Error>>>,
    running_limited: usize,
    set: JoinSet<(usize, Result<Outcome, S::Error>)>,
    task_ids: Vec<Option<tokio::task::Id>>,
}

impl<'a, S: Step> Scheduler<'a, S> {
    fn new(nodes: &'a [Node<S>], opts: Options, cancel: Cancel) -> Self {
        let n = nodes.len();
        let (jobs, gate) = match opts.limit {
            Limit::Fixed(n) => (n, None),
            Limit::Load { cores, probe } => (0, Some(Gate::new(cores, probe))),
        };
        Scheduler {
            nodes,
            jobs,
            gate,
            blocked: false,
            fail_fast: opts.fail_fast,
            cancel,
            state: vec![State::Pending; n],
            status: (0..n).map(|_| None).collect(),
            running_limited: 0,
            set: JoinSet::new(),
            task_ids: vec![None; n],
        }
    }

    /// Starts (or rules out) every node whose dependencies are finished, in list order, until
    /// nothing changes.
    fn start_ready(&mut self, observe: &mut impl FnMut(EngineEvent)) {
        let mut progressed = true;
        self.blocked = false;
        while progressed {
            progressed = false;
            for i in 0..self.nodes.len() {
                progressed |= self.consider(i, observe);
            }
        }
    }

    /// Starts node `i`, or marks it not run, if its turn has come. True when it changed.
    fn consider(&mut self, i: usize, observe: &mut impl FnMut(EngineEvent)) -> bool {
        let node = &self.nodes[i];
        if self.state[i] != State::Pending
            || node.deps.iter().any(|&d| self.state[d] != State::Finished)
        {
            return false;
        }
        let deps_ok = node.deps.iter().all(|&d| {
            matches!(
                self.status[d],
                Some(NodeStatus::Done(Outcome::Ok | Outcome::Failed))
            )
        });
        if !node.always && (!deps_ok || self.cancel.is_stopping()) {
            self.state[i] = State::Finished;
            self.status[i] = Some(NodeStatus::NotRun);
            return true;
        }
        if node.limited && !self.has_slot() {
            self.blocked = true;
            return false;
        }
        if node.limited {
            self.running_limited += 1;
        }
        self.state[i] = State::Running;
        observe(EngineEvent::Started {
            node: i,
            at_once: self.running_limited,
        });
        let step = Arc::clone(&node.step);
        let c = self.cancel.clone();
        let handle = self.set.spawn(async move { (i, step.apply(c).await) });
        self.task_ids[i] = Some(handle.id());
        true
    }

    /// Whether one more limited node may start now.
    fn has_slot(&self) -> bool {
        match &self.gate {
            Some(gate) => self.running_limited < gate.allowed,
            None => self.jobs == 0 || self.running_limited < self.jobs,
        }
    }

    /// A task's end as the node it ran and its result. A panicking step is a bug, but the runner
    /// still has to clean up: cancel, record it, and go on so that teardown runs.
    #[allow(clippy::type_complexity)]
    fn joined(
        &mut self,
        joined: Joined<S::Error>,
        observe: &mut impl FnMut(EngineEvent),
    ) -> Option<(usize, Result<Result<Outcome, S::Error>, String>)> {
        let e = match joined {
            Ok((i, r)) => return Some((i, Ok(r))),
            Err(e) => e,
        };
        self.cancel.stop.cancel();
        let id = e.id();
        let i = self.task_ids.iter().position(|t| *t == Some(id))?;
        let msg = e
            .try_into_panic()
            .ok()
            .and_then(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
            })
            .unwrap_or_else(|| "a step panicked".into());
        observe(EngineEvent::Panicked(i, msg.clone()));
        Some((i, Err(msg)))
    }

    /// Records a node's end; an error, or a failure under fail-fast, stops the run.
    fn finished(&mut self, i: usize, result: Result<Result<Outcome, S::Error>, String>) {
        if self.nodes[i].limited {
            self.running_limited -= 1;
        }
        self.state[i] = State::Finished;
        match &result {
            Ok(Err(_)) | Err(_) => self.cancel.stop.cancel(),
            Ok(Ok(Outcome::Failed)) if self.fail_fast && self.nodes[i].limited => {
                self.cancel.stop.cancel()
            }
            _ => {}
        }
        self.status[i] = Some(match result {
            Ok(Ok(o)) => NodeStatus::Done(o),
            Ok(Err(e)) => NodeStatus::Error(e),
            Err(panic) => NodeStatus::Panicked(panic),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planner simulates the gate (`planner::cost::Slots::Gate`) by this figure.
    #[test]
    fn the_planner_opens_the_gate_where_the_engine_does() {
        assert_eq!(OPEN_IDLE, crate::planner::cost::GATE_OPENS);
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct Fake {
        name: &'static str,
        result: Result<Outcome, String>,
        log: Arc<Mutex<Vec<String>>>,
        live: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl Step for Fake {
        type Error = String;
        fn apply(self: Arc<Self>, cancel: Cancel) -> BoxFuture<Result<Outcome, String>> {
            Box::pin(async move {
                let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                self.log.lock().unwrap().push(self.name.to_string());
                self.live.fetch_sub(1, Ordering::SeqCst);
                if cancel.is_stopping() && self.name.starts_with('w') {
                    return Ok(Outcome::Cancelled);
                }
                self.result.clone()
            })
        }
    }

    type Spec<'a> = (
        &'static str,
        &'a [usize],
        bool,
        bool,
        Result<Outcome, String>,
    );
    type Built = (Vec<Node<Fake>>, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>);

    fn dag(spec: &[Spec]) -> Built {
        let log = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let nodes = spec
            .iter()
            .map(|(name, deps, always, limited, result)| Node {
                deps: deps.to_vec(),
                always: *always,
                limited: *limited,
                step: Arc::new(Fake {
                    name,
                    result: result.clone(),
                    log: log.clone(),
                    live: live.clone(),
                    peak: peak.clone(),
                }),
            })
            .collect();
        (nodes, log, peak)
    }

    #[tokio::test]
    async fn runs_in_dependency_order_with_job_limit() {
        let ok = || Ok(Outcome::Ok);
        let (nodes, log, peak) = dag(&[
            ("setup", &[], false, false, ok()),
            ("w1", &[0], false, true, ok()),
            ("w2", &[0], false, true, Ok(Outcome::Failed)),
            ("w3", &[0], false, true, ok()),
            ("teardown", &[1, 2, 3], true, false, ok()),
        ]);
        let st = run(
            nodes,
            Options {
                limit: Limit::Fixed(1),
                fail_fast: false,
            },
            Cancel::default(),
            |_| {},
        )
        .await;
        let log = log.lock().unwrap().clone();
        assert_eq!(log.first().map(String::as_str), Some("setup"));
        assert_eq!(log.last().map(String::as_str), Some("teardown"));
        assert_eq!(peak.load(Ordering::SeqCst), 1);
        assert!(matches!(st[2], NodeStatus::Done(Outcome::Failed)));
        assert!(matches!(st[4], NodeStatus::Done(Outcome::Ok)));
    }

    #[tokio::test]
    async fn setup_error_skips_workers_but_not_teardown() {
        let (nodes, log, _) = dag(&[
            ("setup", &[], false, false, Err("boom".into())),
            ("w1", &[0], false, true, Ok(Outcome::Ok)),
            ("teardown", &[1], true, false, Ok(Outcome::Ok)),
        ]);
        let st = run(
            nodes,
            Options {
                limit: Limit::Fixed(0),
                fail_fast: false,
            },
            Cancel::default(),
            |_| {},
        )
        .await;
        assert!(matches!(st[0], NodeStatus::Error(_)));
        assert!(matches!(st[1], NodeStatus::NotRun));
        assert_eq!(*log.lock().unwrap(), vec!["setup", "teardown"]);
    }

    #[tokio::test]
    async fn fail_fast_cancels_queued_workers() {
        let (nodes, log, _) = dag(&[
            ("w1", &[], false, true, Ok(Outcome::Failed)),
            ("w2", &[], false, true, Ok(Outcome::Ok)),
            ("teardown", &[0, 1], true, false, Ok(Outcome::Ok)),
        ]);
        let st = run(
            nodes,
            Options {
                limit: Limit::Fixed(1),
                fail_fast: true,
            },
            Cancel::default(),
            |_| {},
        )
        .await;
        assert!(matches!(st[1], NodeStatus::NotRun));
        assert_eq!(*log.lock().unwrap(), vec!["w1", "teardown"]);
    }

    /// The idle cores of 2 when each of the `live` workers keeps `each` of a core busy.
    struct Model {
        live: Arc<AtomicUsize>,
        each: f64,
    }
    impl Probe for Model {
        fn idle_cores(&mut self) -> Option<f64> {
            Some((2.0 - self.live.load(Ordering::SeqCst) as f64 * self.each).max(0.0))
        }
    }

    /// Waits a second (of paused time) and counts how many run at once.
    struct Sleeper {
        live: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }
    impl Step for Sleeper {
        type Error = String;
        fn apply(self: Arc<Self>, _: Cancel) -> BoxFuture<Result<Outcome, String>> {
            Box::pin(async move {
                let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                self.live.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome::Ok)
            })
        }
    }

    /// The most of eight workers running at once on 2 cores under `auto`, when each keeps `each`
    /// of a core busy.
    async fn peak_under_gate(each: f64) -> usize {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let nodes = (0..8)
            .map(|_| Node {
                deps: vec![],
                always: false,
                limited: true,
                step: Arc::new(Sleeper {
                    live: live.clone(),
                    peak: peak.clone(),
                }),
            })
            .collect();
        let limit = Limit::Load {
            cores: 2,
            probe: Box::new(Model { live, each }),
        };
        let fail_fast = false;
        let st = run(
            nodes,
            Options { limit, fail_fast },
            Cancel::default(),
            |_| {},
        )
        .await;
        assert!(st
            .iter()
            .all(|s| matches!(s, NodeStatus::Done(Outcome::Ok))));
        peak.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn auto_keeps_a_worker_per_core_when_each_keeps_a_core_busy() {
        assert_eq!(peak_under_gate(1.0).await, 2);
        // Two workers leaving half a core idle: not enough to start another.
        assert_eq!(peak_under_gate(0.75).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_starts_as_many_as_the_idle_cores_fit() {
        // Half a core each: four at once fill the two cores.
        assert_eq!(peak_under_gate(0.5).await, 4);
        // Workers that wait on the network or on each other: all eight at once.
        assert_eq!(peak_under_gate(0.0).await, 8);
    }

    /// Reports the same idle cores at every reading.
    struct Steady(f64);
    impl Probe for Steady {
        fn idle_cores(&mut self) -> Option<f64> {
            Some(self.0)
        }
    }

    #[test]
    fn auto_falls_back_to_a_worker_per_core_when_busy_again() {
        let mut gate = Gate::new(2, Box::new(Steady(2.0)));
        gate.wait();
        gate.read(2);
        assert_eq!(gate.allowed, 6);
        gate.probe = Box::new(Steady(0.0));
        // The mean of the last two readings (1.0 idle), then busy: one fewer a reading.
        gate.read(6);
        let opened = gate.allowed;
        gate.read(6);
        assert_eq!(gate.allowed, opened - 1);
        for _ in 0..20 {
            gate.read(6);
        }
        assert_eq!(gate.allowed, 2);
    }
}
