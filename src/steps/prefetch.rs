//! First attempts' databases, made ahead of their workers in the planner's order (longest
//! first): a worker waiting for a `--jobs` slot finds its database ready. The prefetcher keeps
//! its own bookkeeping: each worker's result, the window of databases ahead, its task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::per_worker::WorkerResource;
use super::{RunCx, StepError, CLONE_CONCURRENCY};
use crate::engine::Cancel;

/// A first attempt's database as the prefetcher made it: Ok(true) made, Ok(false) cancelled first.
type Made = Option<Result<bool, StepError>>;

pub struct Prefetch {
    /// Per worker, once made.
    done: Vec<watch::Sender<Made>>,
    /// Databases made ahead of the workers that finished, at most `jobs + CLONE_CONCURRENCY`.
    window: Mutex<HashMap<usize, OwnedSemaphorePermit>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Prefetch {
    pub fn new(workers: usize) -> Self {
        Prefetch {
            done: (0..workers).map(|_| watch::Sender::new(None)).collect(),
            window: Mutex::new(HashMap::new()),
            task: Mutex::new(None),
        }
    }

    /// Starts making the first attempts' databases (once the template is ready).
    pub fn start(&self, cx: Arc<RunCx>, cancel: Cancel) {
        *lock(&self.task) = Some(tokio::spawn(prefetch(cx, cancel)));
    }

    /// Waits for worker `index`'s first database. Ok(false): cancelled first.
    pub async fn wait(&self, index: usize, cancel: &Cancel) -> Result<bool, StepError> {
        let Some(done) = self.done.get(index) else {
            return Ok(false);
        };
        let mut rx = done.subscribe();
        tokio::select! {
            r = rx.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()).unwrap_or(Ok(false)),
            _ = cancel.stop.cancelled() => Ok(false),
        }
    }

    /// Worker `index` is done with its slot in the window: the next database may be made.
    pub fn release(&self, index: usize) {
        lock(&self.window).remove(&index);
    }

    /// Waits until the prefetcher is done (a database in flight is held by then).
    pub async fn join(&self) {
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Makes the first attempt's databases ahead of their workers, in the planner's order (longest
/// first), at most `jobs + CLONE_CONCURRENCY` ahead of the workers that finished: a worker
/// waiting for a `--jobs` slot finds its database ready, and a large suite does not copy every
/// database at once. The units that start first are copied before the others begin.
async fn prefetch(cx: Arc<RunCx>, cancel: Cancel) {
    let units: Vec<usize> = cx.dag().units().map(|w| w.index).collect();
    let jobs = cx.plan().run.jobs.bound();
    let window = (jobs > 0 && jobs < units.len())
        .then(|| Arc::new(Semaphore::new(jobs + CLONE_CONCURRENCY)));
    let critical = cx.config().critical_unit();
    // The units that start at once (a core each under `auto`, `jobs` of them with a number, all
    // with 0): their copies are made before the later units' share the server's CPU and disk
    // (a copy costs about a core-second; four at once held the first tests until all four were
    // made). With a critical unit, it alone goes first (below).
    let first = match cx.plan().run.jobs {
        crate::plan::Jobs::Auto => crate::sys::cores(),
        crate::plan::Jobs::Fixed(n) => n,
    };
    let stage = (critical.is_none() && first > 0 && first < units.len()).then_some(first);
    let mut set = tokio::task::JoinSet::new();
    for (k, index) in units.into_iter().enumerate() {
        if stage == Some(k) {
            while set.join_next().await.is_some() {}
        }
        if let Some(window) = &window {
            let permit = tokio::select! {
                p = Arc::clone(window).acquire_owned() => p.ok(),
                _ = cancel.stop.cancelled() => None,
            };
            let Some(permit) = permit else { break };
            lock(&cx.prefetch.window).insert(index, permit);
        }
        if cancel.is_stopping() {
            break;
        }
        let (cx2, cancel2) = (Arc::clone(&cx), cancel.clone());
        let make = async move {
            // Copies slow the whole server, the critical worker's own queries included: a unit
            // with slack copies only once the critical start-up is over (in its own task, so
            // that units without it are not held behind it).
            cx2.after_critical_startup(index, &cancel2).await;
            let w = &cx2.dag().workers[index];
            let made = cx2
                .databases
                .acquire(&cx2, w, 1, &cancel2)
                .await
                .map(|h| h.is_some());
            // send_replace: the worker may not be listening yet.
            cx2.prefetch.done[index].send_replace(Some(made));
        };
        // The critical path's database is copied alone, before the others share the disk.
        if critical == Some(index) {
            make.await;
        } else {
            set.spawn(make);
        }
    }
    while set.join_next().await.is_some() {}
    // Every first attempt has its database; once every start-up is over too (copies slow the
    // server, and a start-up is what the critical path waits on), the pool can be refilled while
    // the tests run.
    cx.startups_over(cx.dag().units().count()).await;
    super::pool::start_refill(&cx, &cancel);
    // Workers not reached: tell them (they are cancelled).
    for tx in &cx.prefetch.done {
        tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(Ok(false));
                true
            } else {
                false
            }
        });
    }
}
