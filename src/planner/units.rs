//! Units of work: what one worker runs with its own database, server and port. With
//! `units = "file"` that is one file. With `units = "auto"`, files whose tests take less time
//! than their start-up (the test process importing the app and its conftest, the server) are
//! packed into a few workers, one test process running them one after another, when the recorded
//! timings predict a shorter run; every other file keeps a worker of its own.

use std::time::Duration;

use super::cost::{cpu_spread, predict_wall, Cost, Slots, UnitCost};
use super::shards::Timings;
use crate::plan::template::Word;
use crate::plan::{Plan, TestFile};

/// The packs chosen (positions in the ordered file list, each with two files or more) and why.
#[derive(Debug, Clone, Default)]
pub struct Packing {
    pub packs: Vec<Vec<usize>>,
    /// Each pack's predicted time: its longest start-up plus its files' tests.
    pub predicted: Vec<Duration>,
    pub why: String,
    /// Files no run has timed yet, too many to start at once: the run packs them as it learns
    /// what they cost (positions in the ordered file list).
    pub queue: Vec<usize>,
    /// Every number of packs weighed, with its predicted wall (seconds).
    pub weighed: Vec<Weighed>,
    /// The chosen option's wall as weighed (measured, or predicted and scaled), seconds: what a
    /// split must beat. None when nothing was weighed.
    pub wall: Option<f64>,
}

/// One option `units = "auto"` weighed: so many packs (0: a worker per file), so many workers in
/// all, and the run's predicted wall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weighed {
    pub packs: usize,
    pub units: usize,
    pub wall: f64,
    /// `wall` is what earlier runs of this option took, not a prediction.
    pub measured: bool,
    /// The model's figure was multiplied by this: runs with as many workers (packed otherwise)
    /// took that much longer than it predicted.
    pub scaled: Option<f64>,
}

/// Whether the plan's commands can run several files in one worker: `{file}` only as whole words
/// of the test command (they become the pack's files), and nothing else naming one file.
pub fn packable(plan: &Plan) -> Result<(), String> {
    let whole = plan
        .test
        .command
        .iter()
        .filter(|w| matches!(w, Word::Text(t) if t.is_only("file")))
        .count();
    let inside = plan.test.command.iter().any(|w| match w {
        Word::Text(t) => !t.is_only("file") && (t.uses("file") || t.uses("file_stem")),
        Word::Args => false,
    });
    let mut elsewhere = plan.test.env.iter().map(|(_, t)| t).collect::<Vec<_>>();
    if let Some(s) = &plan.server {
        elsewhere.extend(s.env.iter().map(|(_, t)| t));
        elsewhere.push(&s.ready);
        elsewhere.extend(s.command.iter().filter_map(|w| match w {
            Word::Text(t) => Some(t),
            Word::Args => None,
        }));
    }
    if whole == 0 {
        return Err("the test command has no `{file}` word to give a pack its files".into());
    }
    let junit = plan.test.command.iter().any(|w| match w {
        Word::Text(t) => t.uses("junit"),
        Word::Args => false,
    });
    if !junit {
        return Err(
            "the test command writes no JUnit to `{junit}`, which a pack needs to tell its files apart"
                .into(),
        );
    }
    if inside
        || elsewhere
            .iter()
            .any(|t| t.uses("file") || t.uses("file_stem"))
    {
        return Err(
            "`{file}` or `{file_stem}` is used where one file is meant (inside a word, an environment value or the server)"
                .into(),
        );
    }
    Ok(())
}

/// A file the last run packed stays a candidate while its tests take less than this many times
/// its start-up (one that ran alone becomes one under once): learnt times wobble from run to run,
/// and a file near the line would otherwise flip, changing every option's shape with it.
const STAY_PACKED: f64 = 1.25;

/// Chooses packs for `files` (ordered as the run starts them) on `cores` cores with `jobs`: every
/// number of packs is tried, and the one with the shortest predicted wall time is kept; a near
/// tie (within `NEAR`) goes to fewer workers, which leave more of the cores to the others.
pub fn choose(plan: &Plan, files: &[&TestFile], timings: &Timings, cores: usize) -> Packing {
    let none = |why: String| Packing {
        why,
        ..Packing::default()
    };
    if let Err(why) = packable(plan) {
        return none(format!("no packs: {why}"));
    }
    let costs: Vec<Option<Cost>> = files.iter().map(|f| Cost::of(timings, &f.path)).collect();
    // More files than cores that no run has timed: starting them all at once would run as many
    // start-ups as files on a few cores. They go to the run's queue, which runs them a core at a
    // time, the first ones alone, and packs the rest once start-ups are seen to dominate.
    let mut untimed: Vec<usize> = (0..files.len())
        .filter(|&i| costs[i].is_none() && !plan.run.alone.contains(&files[i].path))
        .collect();
    // The biggest first: likely the longest, the ones that run alone anyway.
    untimed.sort_by(|&a, &b| files[b].size.cmp(&files[a].size).then(a.cmp(&b)));
    if untimed.len() > cores.max(1) {
        let mut p = choose(plan, &timed_only(files, &untimed), timings, cores);
        let timed: Vec<usize> = (0..files.len()).filter(|i| !untimed.contains(i)).collect();
        p.packs = p
            .packs
            .iter()
            .map(|pack| pack.iter().map(|&i| timed[i]).collect())
            .collect();
        p.queue = untimed;
        p.wall = None;
        p.why = format!(
            "{} file(s) with no timings yet go to the queue: {} at a time, the biggest first, alone; the rest packed once their start-ups are seen to outweigh their tests (guessed by their size){}",
            p.queue.len(),
            queue_lanes(plan.run.jobs.bound(), cores),
            if timed.is_empty() {
                String::new()
            } else {
                format!("; the others: {}", p.why)
            }
        );
        return p;
    }
    if costs.iter().all(Option::is_none) {
        return none("no packs yet: no file's start-up and tests are recorded".into());
    }
    // Short files with a heavy start-up: their tests take less than starting them (a file the
    // last run packed: less than `STAY_PACKED` times).
    let candidates: Vec<usize> = (0..files.len())
        .filter(|&i| {
            let packed = timings.files.get(&files[i].path).and_then(|t| t.packed);
            let line = if packed == Some(true) {
                STAY_PACKED
            } else {
                1.0
            };
            !plan.run.alone.contains(&files[i].path)
                && costs[i].is_some_and(|c| c.tests < c.startup * line)
        })
        .collect();
    let names: Vec<&str> = files.iter().map(|f| module_name(&f.path)).collect();
    if candidates.len() < 2 {
        return none(
            "no packs: fewer than two files whose tests take less than their start-up".into(),
        );
    }
    let owned: Vec<TestFile> = files.iter().map(|f| (*f).clone()).collect();
    let predicted = timings.predict(&owned);
    let others: Vec<UnitCost> = (0..files.len())
        .filter(|i| !candidates.contains(i))
        .map(|i| UnitCost {
            file: Some(i),
            cost: Cost::or_predicted(timings, &files[i].path, predicted[i]),
        })
        .collect();
    let (best, weighed) = best_bins(
        &candidates,
        &costs,
        &names,
        &others,
        plan.run.jobs.into(),
        cores,
        timings.packs,
        &|units, packs| timings.measured(files.len(), units, packs, 0),
        &|units| timings.underpredicted(files.len(), units),
    );
    let Some(Binned {
        wall, bins, packs, ..
    }) = best
    else {
        return none("no packs".into());
    };
    let (packs, predicted): (Vec<_>, Vec<_>) = bins
        .into_iter()
        .zip(packs)
        .filter(|(b, _)| b.len() > 1)
        .map(|(b, c)| (b, Duration::from_secs_f64(c.total())))
        .unzip();
    let shown = weighed_text(&weighed, packs.len());
    let why = if packs.is_empty() {
        format!("no packs: a worker per file is predicted to be as fast ({shown})")
    } else {
        format!(
            "{} file(s) whose tests take less than their start-up packed into {} worker(s) on {cores} core(s) ({shown}): predicted wall {wall:.1}s",
            packs.iter().map(Vec::len).sum::<usize>(),
            packs.len(),
        )
    };
    Packing {
        packs,
        predicted,
        why,
        queue: Vec::new(),
        weighed,
        wall: Some(wall),
    }
}

/// The files but `queued`, in order.
fn timed_only<'a>(files: &[&'a TestFile], queued: &[usize]) -> Vec<&'a TestFile> {
    (0..files.len())
        .filter(|i| !queued.contains(i))
        .map(|i| files[i])
        .collect()
}

/// How many units the queue runs at once at first: a core each (fewer with fewer `jobs`).
pub fn queue_lanes(jobs: usize, cores: usize) -> usize {
    let cores = cores.max(1);
    if jobs == 0 {
        cores
    } else {
        jobs.min(cores)
    }
}

/// The options weighed, as `dry-run` says them: a worker per file, the fewest packs, and the
/// ones around the chosen number.
fn weighed_text(weighed: &[Weighed], chosen: usize) -> String {
    let mut shown: Vec<&Weighed> = weighed
        .iter()
        .filter(|w| w.packs == 0 || w.packs <= 3 || w.packs.abs_diff(chosen) <= 1)
        .collect();
    shown.sort_by_key(|w| (w.packs == 0, w.packs));
    let words: Vec<String> = shown
        .iter()
        .map(|w| {
            let what = match w.packs {
                0 => "a worker per file".to_string(),
                _ if w.units == 1 => "one process".to_string(),
                1 => format!("1 pack in {} workers", w.units),
                n => format!("{n} packs in {} workers", w.units),
            };
            let how = match (w.measured, w.scaled) {
                (true, _) => " as measured".to_string(),
                (false, Some(s)) => format!(" (×{s:.2}, as runs of {} workers took)", w.units),
                (false, None) => String::new(),
            };
            format!("{what} {:.1}s{how}", w.wall)
        })
        .collect();
    format!("weighed: {}", words.join(", "))
}

/// Predicted walls this close are a tie.
const NEAR: f64 = 0.03;
/// The most packs tried, per core.
const MOST_PACKS_PER_CORE: usize = 8;

/// The candidates dealt into bins, and what the run is then predicted to take.
struct Binned {
    wall: f64,
    spread: f64,
    bins: Vec<Vec<usize>>,
    packs: Vec<Cost>,
}

/// Every number of bins from one (one process) to one per candidate (a worker per file); the
/// shortest predicted wall wins, and a near tie goes to the fewer workers (less CPU spread over
/// the cores). The number of packs the last run chose (`last`) keeps its place while within
/// `STAY` of the best, so that timings that wobble from run to run do not flip the choice.
/// An option earlier runs took is weighed by what they took (`measured`): a model that
/// flattered it is not believed twice, and the choice settles on what ran fastest.
#[allow(clippy::too_many_arguments)]
fn best_bins(
    candidates: &[usize],
    costs: &[Option<Cost>],
    names: &[&str],
    others: &[UnitCost],
    jobs: Slots,
    cores: usize,
    last: Option<usize>,
    measured: &dyn Fn(usize, usize) -> Option<f64>,
    underpredicted: &dyn Fn(usize) -> Option<f64>,
) -> (Option<Binned>, Vec<Weighed>) {
    let mut best: Option<Binned> = None;
    let mut weighed = Vec::new();
    let mut kept: Option<Binned> = None;
    // More packs than a few per core only add start-ups; the bound keeps planning quick.
    let most = candidates.len().min(MOST_PACKS_PER_CORE * cores.max(1));
    let none = (candidates.len() > most).then_some(candidates.len());
    let preload = slot_loads(others, jobs, cores);
    for k in (1..=most).chain(none) {
        // Packs as even as can be, or (as many packs as slots at most) evened out with the
        // units that run alone, whichever the model says ends sooner.
        let even = bins(candidates, costs, names, k, &[]);
        let evened =
            (k > 1 && k <= preload.len()).then(|| bins(candidates, costs, names, k, &preload[..k]));
        let with = |packs: &[Cost]| {
            let mut all = others.to_vec();
            all.extend(packs.iter().map(|&cost| UnitCost { file: None, cost }));
            all
        };
        let (bins, packs) = match evened {
            Some(e)
                if predict_wall(&with(&e.1), jobs, cores)
                    < predict_wall(&with(&even.1), jobs, cores) =>
            {
                e
            }
            _ => even,
        };
        let all = with(&packs);
        let n_packs = bins.iter().filter(|b| b.len() > 1).count();
        let n_units = others.len() + bins.len();
        let seen = measured(n_units, n_packs);
        // An option not run yet, whose number of workers ran (packed otherwise) longer than
        // predicted: the model misjudges that many workers here, so its figure is scaled too.
        let scaled = seen.is_none().then(|| underpredicted(n_units)).flatten();
        let b = Binned {
            wall: seen.unwrap_or_else(|| predict_wall(&all, jobs, cores) * scaled.unwrap_or(1.0)),
            spread: cpu_spread(&all, cores),
            bins,
            packs,
        };
        weighed.push(Weighed {
            packs: n_packs,
            units: n_units,
            wall: b.wall,
            measured: seen.is_some(),
            scaled,
        });
        if last == Some(n_packs) && n_packs > 0 {
            kept = Some(Binned {
                bins: b.bins.clone(),
                packs: b.packs.clone(),
                ..b
            });
        }
        let better = best.as_ref().is_none_or(|o| {
            b.wall < o.wall * (1.0 - NEAR)
                || (b.wall <= o.wall * (1.0 + NEAR) && b.spread < o.spread)
        });
        if better {
            best = Some(b);
        }
    }
    if let (Some(k), Some(b)) = (&kept, &best) {
        if k.wall <= b.wall * (1.0 + STAY) {
            best = kept;
        }
    }
    (best, weighed)
}

/// The last run's number of packs stays while predicted within this share of the best.
const STAY: f64 = 0.05;

/// Two files of one module name in a pack could not be told apart in its JUnit.
pub use crate::model::junit::module_name;

/// With a bound on units at once (`jobs`, or a core each under the gate): the units that run
/// alone dealt longest first onto that many slots, and each slot's load, the heaviest first. A
/// pack that shares a slot with a long file alone should be that much shorter than the others
/// (each pays its own start-up), so that the slots end together. Empty without a bound.
fn slot_loads(others: &[UnitCost], jobs: Slots, cores: usize) -> Vec<f64> {
    let slots = match jobs {
        Slots::Bound(0) => return Vec::new(),
        Slots::Bound(n) => n,
        Slots::Gate => cores.max(1),
    };
    let mut order: Vec<f64> = others.iter().map(|u| u.cost.total()).collect();
    order.sort_by(|a, b| b.total_cmp(a));
    let mut loads = vec![0.0f64; slots];
    for t in order {
        if let Some(least) = loads.iter_mut().min_by(|a, b| a.total_cmp(b)) {
            *least += t;
        }
    }
    loads.sort_by(|a, b| b.total_cmp(a));
    loads
}

/// `k` bins of the candidates, longest tests first into the least-loaded bin (one without a file
/// of the same name, when there is one: a pack's JUnit tells such files apart only by their whole
/// path), each bin starting at its `preload` (none: 0), and each bin's cost (one start-up, all
/// its tests).
fn bins(
    candidates: &[usize],
    costs: &[Option<Cost>],
    names: &[&str],
    k: usize,
    preload: &[f64],
) -> (Vec<Vec<usize>>, Vec<Cost>) {
    let cost = |i: usize| costs[i].unwrap_or_default();
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| cost(b).tests.total_cmp(&cost(a).tests).then(a.cmp(&b)));
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut load: Vec<f64> = (0..k)
        .map(|b| preload.get(b).copied().unwrap_or_default())
        .collect();
    for i in order {
        let clash = |b: usize| bins[b].iter().any(|&j| names[j] == names[i]);
        let least = |pool: &mut dyn Iterator<Item = usize>| {
            pool.min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
        };
        let slot = least(&mut (0..k).filter(|&b| !clash(b)))
            .or_else(|| least(&mut (0..k)))
            .unwrap_or(0);
        bins[slot].push(i);
        load[slot] += cost(i).tests;
    }
    bins.retain(|b| !b.is_empty());
    for b in &mut bins {
        b.sort_unstable();
    }
    let packs = bins
        .iter()
        .map(|b| Cost::pack(&b.iter().map(|&i| cost(i)).collect::<Vec<_>>()))
        .collect();
    (bins, packs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(startup: f64, tests: f64) -> Cost {
        Cost {
            copy: 0.0,
            startup,
            startup_cpu: startup,
            tests,
            tests_cpu: tests,
            stop: 0.0,
        }
    }

    /// Two cores under the gate, a long file alone (2 s start-up, 6 s of tests) and ten short
    /// CPU-bound files: two even packs leave one of three units waiting for a slot, so the
    /// packs are dealt to end with the long file (the pack beside it that much shorter), and
    /// the run is predicted shorter than with even packs.
    #[test]
    fn packs_are_evened_out_with_the_files_that_run_alone() {
        let long = UnitCost {
            file: Some(10),
            cost: cost(2.0, 6.0),
        };
        let costs: Vec<Option<Cost>> = (0..10).map(|_| Some(cost(2.0, 1.0))).collect();
        let candidates: Vec<usize> = (0..10).collect();
        let names: Vec<String> = (0..10).map(|i| format!("test_{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let weigh = |jobs: Slots| {
            let (best, weighed) = best_bins(
                &candidates,
                &costs,
                &names,
                std::slice::from_ref(&long),
                jobs,
                2,
                None,
                &|_, _| None,
                &|_| None,
            );
            assert!(!weighed.is_empty());
            (best.as_ref().map(|b| b.bins.clone()), best.map(|b| b.wall))
        };
        let (bins, evened) = weigh(Slots::Gate);
        let mut sizes: Vec<usize> = bins.unwrap_or_default().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 9], "the pack beside the long file is shorter");
        // The long file and the short "pack" (one file) share one slot: 8 s, then 2 + 1 s; the
        // other pack fills the other: 2 + 9 s. One pack of all ten beside the long file: 12 s;
        // even packs (2 + 5 s each) leave the third unit alone after the first two: 14 s.
        assert!(
            evened.is_some_and(|w| (w - 11.0).abs() < 1e-9),
            "{evened:?}"
        );
        let (bins, _) = weigh(Slots::Bound(0));
        let mut sizes: Vec<usize> = bins.unwrap_or_default().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_ne!(
            sizes,
            [1, 9],
            "with every unit at once, no slot to even out"
        );
    }
}
