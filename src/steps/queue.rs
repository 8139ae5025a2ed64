//! The queue: files no run has timed yet, under `units = "auto"`. Starting them all at once would
//! run as many start-ups as files on a few cores, and nothing says yet whether their tests
//! outweigh their start-ups. So the queue runs them a core at a time (its lanes): the first
//! alone, each timed as it ends (start-up and tests, each timed alone, and the CPU they used).
//! Once start-ups are seen to outweigh tests, each lane that frees up takes its share of the
//! files left as one pack, so that the lanes end together; while tests outweigh start-ups, files
//! go alone, and more lanes open when the files seen keep less than a core each busy.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::worker::{record, run_attempt};
use super::{RunCx, StepError};
use crate::engine::{Cancel, Outcome};
use crate::model::{Attempt, Verdict};

/// What the queue has learnt of one unit that ran: its start-up alone, its tests alone per file,
/// and the cores it kept busy.
#[derive(Debug, Clone, Copy)]
struct Seen {
    startup: f64,
    tests_per_file: f64,
    rate: f64,
}

/// The queue's own bookkeeping.
struct State {
    pending: VecDeque<usize>,
    seen: Vec<Seen>,
    /// Packs made so far (they are numbered from 1).
    packs: usize,
    /// Lanes that took their share of the files left (each takes one).
    shared: usize,
    lanes: usize,
    most_lanes: usize,
    cores: usize,
    outcome: Outcome,
    error: Option<StepError>,
}

impl State {
    /// The mean start-up and tests per file of the units seen.
    fn learnt(&self) -> Option<(f64, f64, f64)> {
        let n = self.seen.len() as f64;
        (n > 0.0).then(|| {
            let sum = |f: fn(&Seen) -> f64| self.seen.iter().map(f).sum::<f64>() / n;
            (
                sum(|s| s.startup),
                sum(|s| s.tests_per_file),
                sum(|s| s.rate),
            )
        })
    }

    /// Start-ups outweigh tests: the files left are packed.
    fn packing(&self) -> bool {
        self.learnt()
            .is_some_and(|(startup, tests, _)| tests < startup)
    }

    /// The next unit for a lane that frees up: one file until the start-ups are seen to
    /// outweigh the tests, then its share of what is left, so that the lanes end together.
    fn take(&mut self) -> Option<Vec<usize>> {
        if self.pending.is_empty() || self.error.is_some() {
            return None;
        }
        let n = if self.packing() {
            let left = self.lanes.saturating_sub(self.shared).max(1);
            self.shared += 1;
            self.pending.len().div_ceil(left)
        } else {
            1
        };
        Some(self.pending.drain(..n.min(self.pending.len())).collect())
    }

    /// How many lanes the queue wants: a core each, or, while files go alone, as many as keep the
    /// cores busy by what the files seen used (at most `most_lanes`).
    fn wanted_lanes(&self) -> usize {
        match self.learnt() {
            Some((startup, tests, rate)) if tests >= startup => {
                let fill = (self.cores as f64 / rate.max(0.05)).floor() as usize;
                fill.clamp(self.lanes, self.most_lanes)
            }
            _ => self.lanes,
        }
    }

    fn learn(&mut self, a: &Attempt, files: usize) {
        if !matches!(a.verdict, Verdict::Pass | Verdict::Fail) {
            return;
        }
        let (Some(startup), Some(tests)) = (a.startup_alone_secs, a.tests_alone_secs) else {
            return;
        };
        let cpu = a.startup_cpu_secs.unwrap_or(startup) + a.tests_cpu_secs.unwrap_or(0.0);
        let alone = (startup + tests).max(0.01);
        self.seen.push(Seen {
            startup,
            tests_per_file: tests / files.max(1) as f64,
            rate: cpu / alone,
        });
    }

    fn ended(&mut self, outcome: Outcome) {
        self.outcome = match (outcome, self.outcome) {
            (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
            (Outcome::Cancelled, _) | (_, Outcome::Cancelled) => Outcome::Cancelled,
            _ => Outcome::Ok,
        };
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(q: &Shared) -> std::sync::MutexGuard<'_, State> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the queued files (worker indexes, in order) on `lanes` lanes.
pub async fn run(
    cx: &Arc<RunCx>,
    files: &[usize],
    lanes: usize,
    cancel: &Cancel,
) -> Result<Outcome, StepError> {
    let jobs = cx.plan().run.jobs;
    let q: Shared = Arc::new(Mutex::new(State {
        pending: files.iter().copied().collect(),
        seen: Vec::new(),
        packs: 0,
        shared: 0,
        lanes: lanes.max(1),
        most_lanes: if jobs == 0 { files.len() } else { jobs }.max(lanes),
        cores: crate::sys::cores(),
        outcome: Outcome::Ok,
        error: None,
    }));
    let mut set = tokio::task::JoinSet::new();
    let learnt = Arc::new(tokio::sync::Notify::new());
    let mut open = 0;
    loop {
        let wanted = lock(&q).wanted_lanes();
        while open < wanted && !lock(&q).pending.is_empty() && !cancel.is_stopping() {
            let (cx, q, cancel) = (Arc::clone(cx), Arc::clone(&q), cancel.clone());
            let learnt = Arc::clone(&learnt);
            set.spawn(async move { lane(&cx, &q, &cancel, &learnt).await });
            open += 1;
        }
        tokio::select! {
            ended = set.join_next() => match ended {
                Some(_) => open -= 1,
                None => break,
            },
            // A unit ended: the queue may want more lanes now.
            _ = learnt.notified() => {}
        }
    }
    let mut state = lock(&q);
    match state.error.take() {
        Some(e) => Err(e),
        None if cancel.is_stopping() && !state.pending.is_empty() => Ok(Outcome::Cancelled),
        None => Ok(state.outcome),
    }
}

/// One lane: takes units until the queue is empty (or the run stops), runs each, and learns
/// from it (telling the queue, which may open more lanes).
async fn lane(cx: &Arc<RunCx>, q: &Shared, cancel: &Cancel, learnt: &tokio::sync::Notify) {
    loop {
        if cancel.is_stopping() {
            return;
        }
        let unit = {
            let mut state = lock(q);
            match state.take() {
                Some(files) if files.len() > 1 => {
                    state.packs += 1;
                    Some((files, state.packs))
                }
                Some(files) => Some((files, 0)),
                None => None,
            }
        };
        let Some((files, pack)) = unit else { return };
        let (outcome, attempt) = if pack == 0 {
            single(cx, files[0], cancel).await
        } else {
            let plan = cx.dag().queue_pack(cx.plan(), pack, &files);
            let (result, attempt) = super::pack::run(cx, &plan, cancel).await;
            (result, Some(attempt))
        };
        let mut state = lock(q);
        if let Some(a) = &attempt {
            state.learn(a, files.len());
        }
        match outcome {
            Ok(o) => {
                state.ended(o);
                if o == Outcome::Failed && cx.plan().run.fail_fast {
                    cancel.stop.cancel();
                }
            }
            Err(e) => {
                state.error.get_or_insert(e);
                return;
            }
        }
        drop(state);
        learnt.notify_one();
    }
}

/// One file alone: its first attempt, recorded.
async fn single(
    cx: &RunCx,
    index: usize,
    cancel: &Cancel,
) -> (Result<Outcome, StepError>, Option<Attempt>) {
    let Some(w) = cx.dag().workers.get(index).cloned() else {
        return (Ok(Outcome::Ok), None);
    };
    match run_attempt(cx, &w, 1, cancel).await {
        Ok(a) => {
            let outcome = match a.verdict {
                Verdict::Pass => Outcome::Ok,
                Verdict::Cancelled => Outcome::Cancelled,
                _ => Outcome::Failed,
            };
            record(cx, &w, a.clone());
            (Ok(outcome), Some(a))
        }
        Err(failed) => {
            let (a, e) = *failed;
            record(cx, &w, a);
            (Err(e), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(files: usize, lanes: usize) -> State {
        State {
            pending: (0..files).collect(),
            seen: Vec::new(),
            packs: 0,
            shared: 0,
            lanes,
            most_lanes: files,
            cores: 2,
            outcome: Outcome::Ok,
            error: None,
        }
    }

    fn seen(startup: f64, tests_per_file: f64, rate: f64) -> Seen {
        Seen {
            startup,
            tests_per_file,
            rate,
        }
    }

    /// One file at a time until something is learnt; then, with start-ups outweighing tests,
    /// each lane that frees up takes its share of what is left.
    #[test]
    fn files_go_alone_until_start_ups_are_seen_to_outweigh_tests_then_lanes_share_the_rest() {
        let mut q = state(44, 2);
        assert_eq!(q.take(), Some(vec![0]));
        assert_eq!(q.take(), Some(vec![1]));
        q.seen.push(seen(4.5, 0.4, 1.0));
        let first = q.take().unwrap();
        assert_eq!(first.len(), 21, "half of the 42 left");
        let second = q.take().unwrap();
        assert_eq!(second.len(), 21, "the rest");
        assert_eq!(q.take(), None);
    }

    /// Tests that outweigh their start-ups: files keep going alone, and lanes open up to what
    /// keeps the cores busy.
    #[test]
    fn long_files_go_alone_and_light_ones_open_more_lanes() {
        let mut q = state(20, 2);
        q.seen.push(seen(1.0, 30.0, 1.5));
        assert_eq!(q.take(), Some(vec![0]));
        assert_eq!(q.wanted_lanes(), 2, "busy files: a core each");
        q.seen.clear();
        q.seen.push(seen(0.5, 2.0, 0.1));
        assert_eq!(q.wanted_lanes(), 20, "sleeping files fill the lanes");
    }
}
