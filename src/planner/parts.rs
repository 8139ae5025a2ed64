//! Splitting a long file (`units = "auto"`): when one file would hold up the run, its tests (by
//! id, from `[test] collect`) are divided into parts, each a worker of its own with its own
//! database and server; the parts' results are merged back into the file's one row. The number
//! of parts is chosen by predicting the run's wall time for each, from the recorded start-ups
//! and per-test times; a part is a run of neighbouring tests, in the file's order.

use std::collections::BTreeMap;
use std::time::Duration;

pub use super::cost::{predict_wall, Cost, Slots, UnitCost};
use super::shards::Timings;
use super::units::packable;
use crate::plan::{Plan, TestFile};

/// One part of a split file: its tests, in the file's order, and its predicted time.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub ids: Vec<String>,
    pub predicted: Duration,
}

/// The files split (by position in the ordered files) and why, or why not.
#[derive(Debug, Clone, Default)]
pub struct Parting {
    pub parts: BTreeMap<usize, Vec<Part>>,
    pub why: String,
    /// The run's predicted wall with these parts and the packs (`cost::predict_wall`), seconds.
    pub wall: f64,
}

/// A file's test ids, as collected for this run (`Err`: the collect command failed).
pub type Ids = Result<Vec<String>, String>;
/// Every collected file's ids.
pub type Collected = BTreeMap<String, Ids>;
/// Where a file's ids come from (None: not collected).
pub type IdsOf<'a> = &'a dyn Fn(&str) -> Option<Ids>;

/// A split saves at least this share of the predicted wall time, or it is not worth its
/// start-ups and what it breaks.
const WORTH: f64 = 0.95;
/// Most parts one file is split into.
const MAX_PARTS: usize = 16;

/// Whether the plan can split files: a collect command, and a test command that takes the tests
/// to run as `{file}` words and writes JUnit (the parts' results are merged from it).
pub fn splittable(plan: &Plan) -> Result<(), String> {
    if plan.test.collect.is_none() {
        return Err(
            "`[test] collect` is not set (pytest: [\"pytest\", \"--collect-only\", \"-q\", \"{file}\"])"
                .into(),
        );
    }
    packable(plan)
}

/// What a split is weighed against, on the footing the packs were chosen on: the units' wall as
/// the packing weighed it (what earlier runs of that shape took, or the model's figure scaled by
/// how it misjudged as many workers), and the same for each split.
pub struct Footing<'a> {
    /// The wall of the units unsplit, as the packing weighed it; None: the model's.
    pub wall: Option<f64>,
    /// How many of the units are packs.
    pub packs: usize,
    /// What earlier runs of so many units, packs and parts took (`Timings::measured`).
    pub measured: &'a dyn Fn(usize, usize, usize) -> Option<f64>,
    /// How much longer than predicted runs of so many units took (`Timings::underpredicted`).
    pub underpredicted: &'a dyn Fn(usize) -> Option<f64>,
}

/// Splits the longest unit while that shortens the run's wall time as weighed (`Footing`), then
/// the next longest. `ids` gives a file's test ids: collected at run time, or the recorded ones
/// when only asking which files to collect.
pub fn choose(
    plan: &Plan,
    files: &[&TestFile],
    units: &[UnitCost],
    timings: &Timings,
    ids: IdsOf,
    cores: usize,
    footing: &Footing,
) -> Parting {
    let jobs = plan.run.jobs.bound();
    let slots = Slots::from(plan.run.jobs);
    let mut units: Vec<UnitCost> = units.to_vec();
    let mut wall = footing
        .wall
        .unwrap_or_else(|| predict_wall(&units, slots, cores));
    let mut n_parts = 0;
    if let Err(why) = splittable(plan) {
        return Parting {
            why: format!("no splits: {why}"),
            wall,
            ..Parting::default()
        };
    }
    let mut out = Parting::default();
    let mut notes: Vec<String> = Vec::new();
    while let Some(longest) = (0..units.len()).max_by(|&a, &b| {
        let (ca, cb) = (units[a].cost.total(), units[b].cost.total());
        ca.total_cmp(&cb).then(b.cmp(&a))
    }) {
        let Some(f) = units[longest].file else {
            break;
        };
        let path = files[f].path.as_str();
        let tests = match why_not(plan, timings, path, ids) {
            Ok(tests) => tests,
            Err(note) => {
                notes.push(note);
                break;
            }
        };
        let cost = units[longest].cost;
        let others: Vec<UnitCost> = units
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != longest)
            .map(|(_, u)| *u)
            .collect();
        let Some((w, parts)) = best_parts(&others, &tests, cost, jobs, slots, cores) else {
            break;
        };
        // The split's shape, weighed as the packs were: by what runs of it took, else by the
        // model scaled as it misjudged runs of as many workers.
        let shape = (others.len() + parts.len(), n_parts + parts.len());
        let (w, how) = match (footing.measured)(shape.0, footing.packs, shape.1) {
            Some(m) => (m, " as measured".to_string()),
            None => match (footing.underpredicted)(shape.0) {
                Some(f) => (
                    w * f,
                    format!(" (×{f:.2}, as runs of {} workers took)", shape.0),
                ),
                None => (w, String::new()),
            },
        };
        if w >= wall * WORTH {
            notes.push(format!(
                "{path} is not split: no number of parts is predicted to shorten the run by 5 % ({} parts {w:.1}s{how} against {wall:.1}s unsplit)",
                parts.len()
            ));
            break;
        }
        wall = w;
        n_parts += parts.len();
        units = others;
        units.extend(parts.iter().map(|p| UnitCost {
            file: None,
            cost: cost.part(p.predicted.as_secs_f64() - cost.startup),
        }));
        out.parts.insert(f, parts);
    }
    out.wall = wall;
    out.why = if out.parts.is_empty() {
        format!("no splits: {}", notes.join("; "))
    } else {
        let what: Vec<String> = out
            .parts
            .iter()
            .map(|(f, p)| format!("{} into {} parts", files[*f].path, p.len()))
            .collect();
        format!(
            "split {} by its test ids: predicted wall {wall:.1}s",
            what.join(", ")
        )
    };
    out
}

/// A file's tests with their predicted times, or why it is not split.
fn why_not(
    plan: &Plan,
    timings: &Timings,
    path: &str,
    ids: IdsOf,
) -> Result<Vec<(String, f64)>, String> {
    if plan.run.whole.iter().any(|w| w == path) {
        return Err(format!("{path} is in `whole`"));
    }
    let Some(cases) = timings.cases(path) else {
        return Err(format!("{path} has no recorded test times yet"));
    };
    let ids = match ids(path) {
        None => return Err(format!("{path}'s tests were not collected")),
        Some(Err(e)) => return Err(format!("collecting {path}'s tests failed: {e}")),
        Some(Ok(ids)) => ids,
    };
    if ids.len() < 2 {
        return Err(format!("{path} has fewer than two tests"));
    }
    let mean = cases.values().sum::<f64>() / cases.len() as f64;
    Ok(ids
        .into_iter()
        .map(|id| {
            let secs = cases.get(&id).copied().unwrap_or(mean);
            (id, secs)
        })
        .collect())
}

/// The parts with the shortest predicted wall, and that wall: for each number of parts, equal
/// shares; and, with a bound on workers, shares that fill each slot up to one level after the
/// other units (longest first, as the engine starts them).
fn best_parts(
    others: &[UnitCost],
    tests: &[(String, f64)],
    file: Cost,
    jobs: usize,
    slots: Slots,
    cores: usize,
) -> Option<(f64, Vec<Part>)> {
    let startup = file.startup;
    let most = tests
        .len()
        .min(MAX_PARTS)
        .min(if jobs == 0 { MAX_PARTS } else { jobs });
    let secs: Vec<f64> = tests.iter().map(|t| t.1).collect();
    let mut shapes: Vec<Vec<f64>> = (2..=most).map(|k| vec![1.0; k]).collect();
    shapes.extend(fill_shares(others, secs.iter().sum(), startup, jobs).filter(|s| s.len() > 1));
    let mut best: Option<(f64, Vec<Part>)> = None;
    for shares in shapes.iter().filter(|s| s.len() <= tests.len()) {
        let parts: Vec<Part> = cut(&secs, shares)
            .into_iter()
            .map(|r| Part {
                ids: tests[r.clone()].iter().map(|t| t.0.clone()).collect(),
                predicted: Duration::from_secs_f64(startup + secs[r].iter().sum::<f64>()),
            })
            .collect();
        let mut all = others.to_vec();
        all.extend(parts.iter().map(|p| UnitCost {
            file: None,
            cost: file.part(p.predicted.as_secs_f64() - startup),
        }));
        let wall = predict_wall(&all, slots, cores);
        if best.as_ref().is_none_or(|(w, _)| wall < *w) {
            best = Some((wall, parts));
        }
    }
    best
}

/// With `jobs` slots: how much of the file's `tests` each slot can take so that all end at one
/// level, after the other units are dealt longest first to the least-loaded slot.
fn fill_shares(others: &[UnitCost], tests: f64, startup: f64, jobs: usize) -> Option<Vec<f64>> {
    if jobs == 0 {
        return None;
    }
    let mut loads = vec![0.0f64; jobs];
    let mut order: Vec<f64> = others.iter().map(|u| u.cost.total()).collect();
    order.sort_by(|a, b| b.total_cmp(a));
    for t in order {
        let slot = (0..jobs).min_by(|&a, &b| loads[a].total_cmp(&loads[b]))?;
        loads[slot] += t;
    }
    // Each slot that takes a part pays its start-up first.
    let mut ends: Vec<f64> = loads.iter().map(|l| l + startup).collect();
    ends.sort_by(f64::total_cmp);
    for m in 1..=jobs {
        let level = (tests + ends[..m].iter().sum::<f64>()) / m as f64;
        if m == jobs || level <= ends[m] {
            return Some(ends[..m].iter().map(|e| (level - e).max(0.0)).collect());
        }
    }
    None
}

/// Runs of neighbouring tests, one per share, each as close as can be to its share of the time
/// (never more parts than tests): a part ends where the next test's midpoint would cross it.
pub fn cut(secs: &[f64], shares: &[f64]) -> Vec<std::ops::Range<usize>> {
    let (n, k) = (secs.len(), shares.len().min(secs.len()).max(1));
    let total: f64 = secs.iter().sum();
    let weight: f64 = shares[..k].iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut parts = Vec::with_capacity(k);
    let (mut start, mut before, mut bound) = (0, 0.0, 0.0);
    for (i, d) in secs.iter().enumerate() {
        let cut = parts.len() + 1;
        if cut < k && i > start {
            let share = total * (bound + shares[cut - 1]) / weight;
            let forced = n - i - 1 < k - cut;
            if forced || before + d / 2.0 > share {
                parts.push(start..i);
                start = i;
                bound += shares[cut - 1];
            }
        }
        before += d;
    }
    parts.push(start..n);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `k` runs of neighbouring tests of about equal time.
    fn balanced(secs: &[f64], k: usize) -> Vec<std::ops::Range<usize>> {
        cut(secs, &vec![1.0; k])
    }

    #[test]
    fn parts_are_runs_of_neighbours_of_about_equal_time() {
        let even = vec![2.0; 20];
        assert_eq!(balanced(&even, 3), vec![0..7, 7..13, 13..20]);
        assert_eq!(balanced(&even, 20).len(), 20);
        // One long test stands alone; the rest share the other part.
        assert_eq!(balanced(&[1.0, 1.0, 10.0, 1.0], 2), vec![0..2, 2..4]);
        assert_eq!(balanced(&[10.0, 1.0, 1.0], 3), vec![0..1, 1..2, 2..3]);
        // Unequal shares: a tenth, then the rest.
        assert_eq!(cut(&even, &[1.0, 9.0]), vec![0..2, 2..20]);
    }

    /// Nine files of 10 s and one of 40 s (20 tests) on 4 slots: splitting the long one into
    /// three parts lets every slot end near Σ/jobs = 32.5 s.
    #[test]
    fn the_long_file_is_split_where_the_run_ends_soonest() {
        let mut units: Vec<UnitCost> = (0..9)
            .map(|_| UnitCost {
                file: None,
                cost: Cost {
                    copy: 0.0,
                    stop: 0.0,
                    startup: 0.3,
                    startup_cpu: 0.3,
                    tests: 10.0,
                    tests_cpu: 0.0,
                },
            })
            .collect();
        units.push(UnitCost {
            file: Some(0),
            cost: Cost {
                copy: 0.0,
                stop: 0.0,
                startup: 0.3,
                startup_cpu: 0.3,
                tests: 40.0,
                tests_cpu: 0.0,
            },
        });
        let tests: Vec<(String, f64)> = (0..20).map(|i| (format!("t{i}"), 2.0)).collect();
        let others = &units[..9];
        let (wall, parts) =
            best_parts(others, &tests, units[9].cost, 4, Slots::Bound(4), 2).unwrap();
        assert!((3..=4).contains(&parts.len()), "{parts:?}");
        // Near Σ/jobs, far under the 40 s the long file alone takes.
        assert!(wall < 36.0, "{wall}");
        assert!(predict_wall(&units, Slots::Bound(4), 2) > 40.0);
        let every: Vec<&String> = parts.iter().flat_map(|p| &p.ids).collect();
        assert_eq!(every.len(), 20);
        assert_eq!(every, tests.iter().map(|t| &t.0).collect::<Vec<_>>());
    }

    /// Three files of 30 s and one of 40 s on 4 slots: equal parts all queue behind the long
    /// files; parts that fill the free slot and the others' gaps end near Σ/jobs = 32.5 s.
    #[test]
    fn parts_fill_the_gaps_the_other_files_leave() {
        let long = |tests: f64| UnitCost {
            file: None,
            cost: Cost {
                copy: 0.0,
                stop: 0.0,
                startup: 0.3,
                startup_cpu: 0.3,
                tests,
                tests_cpu: 0.0,
            },
        };
        let others = vec![long(30.0), long(30.0), long(30.0)];
        let tests: Vec<(String, f64)> = (0..20).map(|i| (format!("t{i}"), 2.0)).collect();
        let (wall, parts) =
            best_parts(&others, &tests, long(40.0).cost, 4, Slots::Bound(4), 4).unwrap();
        assert!(wall < 35.0, "{wall} {parts:?}");
        let sizes: Vec<usize> = parts.iter().map(|p| p.ids.len()).collect();
        assert!(sizes[0] >= 14, "one part takes the free slot: {sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 20);
    }
}
