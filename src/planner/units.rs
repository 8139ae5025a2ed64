//! Units of work: what one worker runs with its own database, server and port. With
//! `units = "file"` that is one file. With `units = "auto"`, files whose tests take less time
//! than their start-up (the test process importing the app and its conftest, the server) are
//! packed into a few workers, one test process running them one after another, when the recorded
//! timings predict a shorter run; every other file keeps a worker of its own.

use std::collections::HashMap;
use std::time::Duration;

use super::shards::{predict_makespan, Timings};
use crate::plan::template::Word;
use crate::plan::{Plan, TestFile};

/// The packs chosen (positions in the ordered file list, each with two files or more) and why.
#[derive(Debug, Clone, Default)]
pub struct Packing {
    pub packs: Vec<Vec<usize>>,
    /// Each pack's predicted time: its longest start-up plus its files' tests.
    pub predicted: Vec<Duration>,
    pub why: String,
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

/// Chooses packs for `files` (ordered as the run starts them) on `cores` cores with `jobs`.
pub fn choose(plan: &Plan, files: &[&TestFile], timings: &Timings, cores: usize) -> Packing {
    let none = |why: String| Packing {
        why,
        ..Packing::default()
    };
    if let Err(why) = packable(plan) {
        return none(format!("no packs: {why}"));
    }
    let split: Vec<Option<(f64, f64)>> = files.iter().map(|f| timings.split_of(&f.path)).collect();
    if split.iter().all(Option::is_none) {
        return none("no packs yet: no file's start-up and tests are recorded".into());
    }
    let mut module_count: HashMap<&str, usize> = HashMap::new();
    for f in files {
        *module_count.entry(module_name(&f.path)).or_default() += 1;
    }
    // Short files with a heavy start-up: their tests take less than starting them.
    let candidates: Vec<usize> = (0..files.len())
        .filter(|&i| {
            let f = files[i];
            !plan.run.alone.contains(&f.path)
                && module_count[module_name(&f.path)] == 1
                && split[i].is_some_and(|(tests, startup)| tests < startup)
        })
        .collect();
    if candidates.len() < 2 {
        return none(
            "no packs: fewer than two files whose tests take less than their start-up".into(),
        );
    }
    let owned: Vec<TestFile> = files.iter().map(|f| (*f).clone()).collect();
    let predicted = timings.predict(&owned);
    let others: Vec<Duration> = (0..files.len())
        .filter(|i| !candidates.contains(i))
        .map(|i| predicted[i].unwrap_or_default())
        .collect();
    let options = candidates.len().min(cores.max(1));
    let mut best: Option<(Duration, Vec<Vec<usize>>, Vec<Duration>)> = None;
    for k in (1..=options).chain(std::iter::once(candidates.len())) {
        let (bins, times) = bins(&candidates, &split, k);
        let wall = predict_wall(&others, &times, plan.run.jobs, cores);
        if best.as_ref().is_none_or(|(w, _, _)| wall <= *w) {
            best = Some((wall, bins, times));
        }
    }
    let Some((wall, bins, times)) = best else {
        return none("no packs".into());
    };
    let (packs, predicted): (Vec<_>, Vec<_>) = bins
        .into_iter()
        .zip(times)
        .filter(|(b, _)| b.len() > 1)
        .unzip();
    let why = if packs.is_empty() {
        "no packs: a worker per file is predicted to be as fast".to_string()
    } else {
        format!(
            "{} file(s) whose tests take less than their start-up packed into {} worker(s) on {cores} core(s): predicted wall {:.1}s",
            packs.iter().map(Vec::len).sum::<usize>(),
            packs.len(),
            wall.as_secs_f64()
        )
    };
    Packing {
        packs,
        predicted,
        why,
    }
}

/// Two files of one module name in a pack could not be told apart in its JUnit.
pub use crate::model::junit::module_name;

/// `k` bins of the candidates, longest tests first into the least-loaded bin; each bin's time
/// is its longest start-up plus its tests.
fn bins(
    candidates: &[usize],
    split: &[Option<(f64, f64)>],
    k: usize,
) -> (Vec<Vec<usize>>, Vec<Duration>) {
    let tests = |i: usize| split[i].map(|s| s.0).unwrap_or_default();
    let startup = |i: usize| split[i].map(|s| s.1).unwrap_or_default();
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| tests(b).total_cmp(&tests(a)).then(a.cmp(&b)));
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut load = vec![0.0f64; k];
    for i in order {
        let slot = (0..k)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        bins[slot].push(i);
        load[slot] += tests(i);
    }
    bins.retain(|b| !b.is_empty());
    for b in &mut bins {
        b.sort_unstable();
    }
    let times = bins
        .iter()
        .map(|b| {
            let start = b.iter().map(|&i| startup(i)).fold(0.0, f64::max);
            Duration::from_secs_f64(start + b.iter().map(|&i| tests(i)).sum::<f64>())
        })
        .collect();
    (bins, times)
}

/// The run's wall time: the longest chain of work on the slots, or all the work spread over the
/// cores (start-ups are CPU-bound), whichever is longer.
fn predict_wall(others: &[Duration], packs: &[Duration], jobs: usize, cores: usize) -> Duration {
    let all: Vec<Duration> = others.iter().chain(packs).copied().collect();
    let chain = predict_makespan(&all, jobs);
    let spread = all.iter().sum::<Duration>() / cores.max(1) as u32;
    chain.max(spread)
}
