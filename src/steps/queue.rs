//! The queue: files no run has timed yet, under `units = "auto"`. Starting them all at once would
//! run as many start-ups as files on a few cores, and nothing says yet whether their tests
//! outweigh their start-ups. So the queue runs them a core at a time (its lanes), the biggest
//! first, alone, each timed as it ends (start-up and tests, each timed alone, and the CPU they
//! used). A file's tests are then guessed from its size, at the rate the files seen took: while
//! the next file's guess outweighs a start-up it goes alone (and more lanes open when the files
//! seen keep less than a core each busy); once it does not, each lane that frees up takes its
//! share of the files left (the biggest and the smallest in turn), by their guessed tests, as one
//! pack, so that the lanes end together:
//! a lane still busy with a long file alone takes a smaller share when it frees up, later.
//! Copies of the template are made ahead, one per lane, so that a lane's next unit does not wait
//! for its database.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::worker::{record, run_attempt};
use super::{RunCx, StepError};
use crate::engine::{Cancel, Outcome};
use crate::model::{Attempt, Verdict};

/// What the queue has learnt of one unit that ran: its start-up alone, its tests alone, its
/// files' size, and the cores it kept busy.
#[derive(Debug, Clone, Copy)]
struct Seen {
    startup: f64,
    tests: f64,
    bytes: u64,
    rate: f64,
}

/// A unit a lane runs: when it began, its files' size, and whether it is a file alone.
#[derive(Debug, Clone, Copy)]
struct Running {
    id: u64,
    began: Instant,
    bytes: u64,
    alone: bool,
}

/// The queue's own bookkeeping.
struct State {
    /// The units the lanes run now.
    running: Vec<Running>,
    next_id: u64,
    /// Every queued file's size, by worker index.
    sizes: std::collections::HashMap<usize, u64>,
    /// Files left (worker index, size), biggest first.
    pending: VecDeque<(usize, u64)>,
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
    /// The mean start-up, the tests' seconds per byte of file, and the mean cores busy, of the
    /// units seen.
    fn learnt(&self) -> Option<(f64, f64, f64)> {
        let n = self.seen.len() as f64;
        (n > 0.0).then(|| {
            let mean = |f: fn(&Seen) -> f64| self.seen.iter().map(f).sum::<f64>() / n;
            let tests: f64 = self.seen.iter().map(|s| s.tests).sum();
            let bytes: u64 = self.seen.iter().map(|s| s.bytes).sum();
            let per_byte = tests / bytes.max(1) as f64;
            (mean(|s| s.startup), per_byte, mean(|s| s.rate))
        })
    }

    /// A file's tests as guessed from its size.
    fn guess(&self, size: u64) -> Option<f64> {
        self.learnt().map(|(_, per_byte, _)| per_byte * size as f64)
    }

    /// The next file outweighs a start-up (or nothing is learnt yet): it goes alone.
    fn alone_next(&self) -> bool {
        let Some(&(_, size)) = self.pending.front() else {
            return true;
        };
        match self.learnt() {
            Some((startup, per_byte, _)) => per_byte * size as f64 >= startup,
            None => true,
        }
    }

    /// The next unit for a lane that frees up, registered as running (`done` ends it).
    fn take(&mut self) -> Option<(u64, Vec<usize>)> {
        let files = self.next_unit()?;
        let bytes = files
            .iter()
            .filter_map(|i| self.sizes.get(i))
            .copied()
            .sum::<u64>();
        self.next_id += 1;
        self.running.push(Running {
            id: self.next_id,
            began: Instant::now(),
            bytes,
            alone: files.len() == 1,
        });
        Some((self.next_id, files))
    }

    /// A lane's unit ended.
    fn done(&mut self, id: u64) {
        self.running.retain(|r| r.id != id);
    }

    /// The biggest file alone while its guessed tests outweigh a start-up; then this lane's
    /// share of what is left, by guessed tests, so that the lanes end together: the lanes
    /// still busy with a file alone take theirs when they free up (as guessed), so this one
    /// takes more (the last lane to take its share takes the rest).
    fn next_unit(&mut self) -> Option<Vec<usize>> {
        if self.pending.is_empty() || self.error.is_some() {
            return None;
        }
        if self.alone_next() {
            return self.pending.pop_front().map(|(i, _)| vec![i]);
        }
        let left = self.lanes.saturating_sub(self.shared).max(1);
        self.shared += 1;
        if left == 1 {
            return Some(self.pending.drain(..).map(|(i, _)| i).collect());
        }
        let total: f64 = self
            .pending
            .iter()
            .filter_map(|&(_, size)| self.guess(size))
            .sum();
        let startup = self.learnt().map_or(0.0, |(s, _, _)| s);
        // When each of the other lanes frees up, from now: its file alone's guessed start-up
        // and tests less the time it has run.
        let mut busy: Vec<f64> = self
            .running
            .iter()
            .filter(|r| r.alone)
            .map(|r| {
                let guessed = startup + self.guess(r.bytes).unwrap_or_default();
                (guessed - r.began.elapsed().as_secs_f64()).max(0.0)
            })
            .collect();
        // Lanes running nothing take theirs at once.
        let idle = self.lanes.saturating_sub(self.running.len() + 1);
        busy.extend(std::iter::repeat_n(0.0, idle));
        busy.sort_by(f64::total_cmp);
        busy.truncate(left - 1);
        let share = fill(&busy, total, startup);
        // The biggest and the smallest in turn: every share holds files of every size, so a
        // guess by size that is off for small files (a test file costs something whatever its
        // size) is off alike for every lane.
        let mut taken = Vec::new();
        let mut load = 0.0;
        let mut small = false;
        loop {
            let next = if small {
                self.pending.back()
            } else {
                self.pending.front()
            };
            let Some(&(i, size)) = next else { break };
            let g = self.guess(size).unwrap_or_default();
            if !taken.is_empty() && load + g / 2.0 > share {
                break;
            }
            load += g;
            taken.push(i);
            if small {
                self.pending.pop_back();
            } else {
                self.pending.pop_front();
            }
            small = !small;
        }
        taken.sort_unstable();
        Some(taken)
    }

    /// How many lanes the queue wants: a core each, or, while files go alone, as many as keep the
    /// cores busy by what the files seen used (at most `most_lanes`).
    fn wanted_lanes(&self) -> usize {
        match self.learnt() {
            Some((_, _, rate)) if self.alone_next() => {
                let fill = (self.cores as f64 / rate.max(0.05)).floor() as usize;
                fill.clamp(self.lanes, self.most_lanes)
            }
            _ => self.lanes,
        }
    }

    fn learn(&mut self, a: &Attempt, bytes: u64) {
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
            tests,
            bytes,
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

/// This lane's share of `total` seconds of tests, so that it and the lanes that free up after
/// `busy` seconds (ascending) end together, each paying one `startup`: lanes that would free up
/// after that end take none.
fn fill(busy: &[f64], total: f64, startup: f64) -> f64 {
    let mut end = total + startup;
    for m in 1..=busy.len() {
        let next =
            (busy[..m].iter().sum::<f64>() + total + (m + 1) as f64 * startup) / (m + 1) as f64;
        if busy[m - 1] + startup >= next {
            break;
        }
        end = next;
    }
    end - startup
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
    let jobs = cx.plan().run.jobs.bound();
    let size = |i: usize| cx.dag().workers.get(i).map_or(0, |w| w.size);
    let q: Shared = Arc::new(Mutex::new(State {
        pending: files.iter().map(|&i| (i, size(i))).collect(),
        running: Vec::new(),
        next_id: 0,
        sizes: files.iter().map(|&i| (i, size(i))).collect(),
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
    // Copies for the units after the first ones, made while those run.
    let spares = {
        let (cx, q, cancel) = (Arc::clone(cx), Arc::clone(&q), cancel.clone());
        tokio::spawn(async move { make_spares(&cx, &q, &cancel).await })
    };
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
    spares.abort();
    let _ = spares.await;
    let mut state = lock(&q);
    match state.error.take() {
        Some(e) => Err(e),
        None if cancel.is_stopping() && !state.pending.is_empty() => Ok(Outcome::Cancelled),
        None => Ok(state.outcome),
    }
}

/// Keeps one copy ahead per lane while files are left beyond the units running: each lane's next
/// unit then renames one instead of waiting for a copy. The first lanes' units take theirs first.
async fn make_spares(cx: &RunCx, q: &Shared, cancel: &Cancel) {
    tokio::task::yield_now().await;
    let mut made = 0;
    loop {
        let (lanes, left) = {
            let s = lock(q);
            (s.lanes, s.pending.len())
        };
        // A unit per lane is started or starting; the files beyond them are the spares' use.
        let wanted = left.min(lanes);
        if made >= wanted || cancel.is_stopping() {
            return;
        }
        if cx.databases.make_spare(cx, cancel).await.is_err() {
            return;
        }
        made += 1;
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
                Some((id, files)) if files.len() > 1 => {
                    state.packs += 1;
                    Some((id, files, state.packs))
                }
                Some((id, files)) => Some((id, files, 0)),
                None => None,
            }
        };
        let Some((id, files, pack)) = unit else {
            return;
        };
        let bytes: u64 = files
            .iter()
            .filter_map(|&i| cx.dag().workers.get(i))
            .map(|w| w.size)
            .sum();
        let (outcome, attempt) = if pack == 0 {
            single(cx, files[0], cancel).await
        } else {
            let plan = cx.dag().queue_pack(cx.plan(), pack, &files);
            let (result, attempt) = super::pack::run(cx, &plan, cancel).await;
            (result, Some(attempt))
        };
        let mut state = lock(q);
        state.done(id);
        if let Some(a) = &attempt {
            state.learn(a, bytes);
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

    /// `files` files of these sizes (biggest first), on `lanes` lanes.
    fn state(sizes: &[u64], lanes: usize) -> State {
        State {
            pending: sizes.iter().copied().enumerate().collect(),
            running: Vec::new(),
            next_id: 0,
            sizes: sizes.iter().copied().enumerate().collect(),
            seen: Vec::new(),
            packs: 0,
            shared: 0,
            lanes,
            most_lanes: sizes.len(),
            cores: 2,
            outcome: Outcome::Ok,
            error: None,
        }
    }

    fn seen(startup: f64, tests: f64, bytes: u64, rate: f64) -> Seen {
        Seen {
            startup,
            tests,
            bytes,
            rate,
        }
    }

    /// The units `q` hands out, ending each at once (a lane that frees up at once).
    fn take(q: &mut State) -> Option<Vec<usize>> {
        q.take().map(|(id, files)| {
            q.done(id);
            files
        })
    }

    /// The biggest files go alone while their guessed tests outweigh a start-up; the rest go in
    /// packs, a share per lane by guessed tests, the last lane taking what is left.
    #[test]
    fn big_files_go_alone_and_the_small_rest_is_shared_by_the_lanes() {
        // Two long files (20 kB), then 42 short ones (2 kB each).
        let mut sizes = vec![20_000, 20_000];
        sizes.extend(std::iter::repeat_n(2_000, 42));
        let mut q = state(&sizes, 2);
        assert_eq!(take(&mut q), Some(vec![0]), "nothing learnt: alone");
        // 4 s of tests in 20 kB: 0.2 ms a byte; a 2 kB file, 0.4 s, under a 2.5 s start-up.
        q.seen.push(seen(2.5, 4.0, 20_000, 1.0));
        assert_eq!(take(&mut q), Some(vec![1]), "the other long file: alone");
        let first = take(&mut q).unwrap();
        assert_eq!(
            first.len(),
            21,
            "half of the short files by their guessed tests"
        );
        let second = take(&mut q).unwrap();
        assert_eq!(second.len(), 21, "the rest");
        assert_eq!(take(&mut q), None);
    }

    /// A lane that frees up while the other still runs a long file alone takes more than half
    /// of the short files: the other lane's pack starts later, so both end together.
    #[test]
    fn a_lane_that_frees_up_first_takes_more_while_the_other_is_busy() {
        let mut sizes = vec![20_000, 20_000];
        sizes.extend(std::iter::repeat_n(2_000, 42));
        let mut q = state(&sizes, 2);
        let (a, _) = q.take().unwrap();
        q.seen.push(seen(2.5, 4.0, 20_000, 1.0));
        let (_busy, _) = q.take().unwrap();
        q.done(a);
        // The other lane's file: 2.5 s of start-up and 4 s of tests to go (6.5 s); 16.8 s of
        // short tests left. Ending together: (6.5 + 16.8 + 2 × 2.5) / 2 = 14.15 s, so this
        // lane takes 11.65 s of tests (29 files), the other the 13 left.
        let (_, first) = q.take().unwrap();
        assert_eq!(first.len(), 29);
        assert_eq!(fill(&[], 10.0, 2.0), 10.0, "alone: all of it");
        assert_eq!(
            fill(&[30.0], 10.0, 2.0),
            10.0,
            "the other lane frees up too late to help"
        );
        assert!(
            (fill(&[0.0], 10.0, 2.0) - 5.0).abs() < 1e-9,
            "both free: half each"
        );
    }

    /// A share holds the biggest and the smallest files in turn, not the biggest alone: a guess
    /// by size that is off for small files is then off alike for every lane.
    #[test]
    fn a_share_mixes_big_and_small_files() {
        let mut q = state(&[4_000, 3_000, 2_000, 1_000], 2);
        q.seen.push(seen(10.0, 1.0, 10_000, 1.0));
        assert_eq!(take(&mut q), Some(vec![0, 3]));
        assert_eq!(take(&mut q), Some(vec![1, 2]));
    }

    /// Tests that outweigh their start-ups: files keep going alone, and lanes open up to what
    /// keeps the cores busy.
    #[test]
    fn long_files_go_alone_and_light_ones_open_more_lanes() {
        let mut q = state(&[5_000; 20], 2);
        q.seen.push(seen(1.0, 30.0, 5_000, 1.5));
        assert_eq!(take(&mut q), Some(vec![0]));
        assert_eq!(q.wanted_lanes(), 2, "busy files: a core each");
        q.seen.clear();
        q.seen.push(seen(0.5, 2.0, 5_000, 0.1));
        assert_eq!(q.wanted_lanes(), 20, "sleeping files fill the lanes");
    }
}
