//! Shards and recorded timings: the split is a pure function of the files, N and the snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::names::hex;
use crate::model::Split;
use crate::plan::TestFile;

/// `--shard K/N`: K in 1..=N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// `--shard`: explicit `K/N`, or `auto` (`auto/N`) from the CI's own parallelism variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Explicit(Shard),
    Auto { count: Option<usize> },
}

impl std::str::FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_prefix("auto") {
            Some("") => Ok(ShardArg::Auto { count: None }),
            Some(rest) => {
                let n = rest
                    .strip_prefix('/')
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("expected auto or auto/N, not `{s}`"))?;
                Ok(ShardArg::Auto { count: Some(n) })
            }
            None => s.parse().map(ShardArg::Explicit),
        }
    }
}

/// The CI parallelism variables `--shard auto` reads: (index variable, total variable, base of
/// the index, the CI's name). A Kubernetes indexed Job has no total variable: `auto/N` gives it.
const CI_SHARD_VARS: &[(&str, Option<&str>, usize, &str)] = &[
    ("CI_NODE_INDEX", Some("CI_NODE_TOTAL"), 1, "GitLab CI"),
    (
        "CIRCLE_NODE_INDEX",
        Some("CIRCLE_NODE_TOTAL"),
        0,
        "CircleCI",
    ),
    (
        "BUILDKITE_PARALLEL_JOB",
        Some("BUILDKITE_PARALLEL_JOB_COUNT"),
        0,
        "Buildkite",
    ),
    ("JOB_COMPLETION_INDEX", None, 0, "a Kubernetes indexed Job"),
];

impl ShardArg {
    /// The shard this runner is, from the environment for `auto`. The error names every
    /// variable looked for.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let count = match self {
            ShardArg::Explicit(s) => return Ok(s),
            ShardArg::Auto { count } => count,
        };
        let num = |name: &str| -> Result<Option<usize>, String> {
            match env(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v} is not a number")),
            }
        };
        for (index_var, total_var, base, ci) in CI_SHARD_VARS {
            let Some(index) = num(index_var)? else {
                continue;
            };
            let total = match total_var {
                Some(t) => num(t)?.ok_or_else(|| format!("{index_var} is set but {t} is not"))?,
                None => count.ok_or_else(|| {
                    format!("{index_var} is set ({ci}), but it has no total: write --shard auto/N")
                })?,
            };
            let index = index + 1 - base;
            let shard = format!("{index}/{total}")
                .parse::<Shard>()
                .map_err(|e| format!("{index_var} and the total from {ci} give {e}"))?;
            if count.is_some_and(|n| n != shard.count) {
                return Err(format!(
                    "--shard auto/{} but {ci} runs {} shards",
                    count.unwrap_or_default(),
                    shard.count
                ));
            }
            return Ok(shard);
        }
        let looked: Vec<String> = CI_SHARD_VARS
            .iter()
            .map(|(i, t, _, ci)| match t {
                Some(t) => format!("{i}/{t} ({ci})"),
                None => format!("{i} with --shard auto/N ({ci})"),
            })
            .collect();
        Err(format!(
            "--shard auto found no CI parallelism variables; looked for {}. On GitHub Actions, pass --shard K/N from a matrix",
            looked.join(", ")
        ))
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 1/4")?;
        let index: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("`{k}` is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("shard {s} is out of range: K must be 1..=N"));
        }
        Ok(Shard { index, count })
    }
}

/// Recorded per-file durations: `.e2e-plan/timings.json`, an exponential moving average.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub files: BTreeMap<String, FileTiming>,
    /// How many packs the last unsharded run had: `units = "auto"` keeps that number while it is
    /// predicted nearly as fast as the best, so that the choice settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs: Option<usize>,
    /// How long a worker waited for its database, its copy or claim (the median of the last
    /// run's, averaged over runs): what each unit pays before its start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<f64>,
    /// How long a worker took to stop after its tests (the median, averaged over runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<f64>,
    /// How long the run took before its first worker began (setup, the cluster, `prepare`):
    /// what every prediction adds to the workers' time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<f64>,
    /// The last runs' predicted and measured wall times (newest last, at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunWall>,
}

/// A run's predicted wall time against the one it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunWall {
    pub run_id: String,
    pub predicted: Option<f64>,
    pub measured: f64,
    pub units: usize,
    /// How many files ran and in how many packs: with `units`, which option the run was, so
    /// that `auto` weighs an option it has measured by what it took (older records: 0, none).
    #[serde(default)]
    pub files: usize,
    #[serde(default)]
    pub packs: usize,
    /// How many of the units were parts of split files (older records: 0, none).
    #[serde(default)]
    pub parts: usize,
    /// Every file's first pass ran to its end, unsharded and uninterrupted: only such a run's
    /// wall says what its option takes (a run stopped early would flatter it).
    #[serde(default)]
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTiming {
    /// The file's worker, alone: clone, server start, test process start-up and its tests.
    pub secs: f64,
    pub runs: u32,
    /// Its tests alone (the sum of their JUnit times): `secs` minus this is its start-up cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<f64>,
    /// Each test's time by its id (`tests/test_x.py::TestA::test_b`, from the JUnit): what a
    /// split balances its parts by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cases: BTreeMap<String, f64>,
    /// The CPU seconds its worker's server and test process used when it ran alone: its cost
    /// to the cores, which contention does not stretch as it does `secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Of that, the CPU its start-up used (before its tests began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_cpu: Option<f64>,
    /// Its start-up as it takes alone (the server until ready, the test process until its tests
    /// began; wall time less the time spent waiting for a core), whether it ran alone or packed:
    /// a pack's files share its start-up. With `tests` (then also timed alone) and the CPU of
    /// each, the cost `units = "auto"` weighs; missing in timings of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<f64>,
    /// The CPU its tests used, with their database's backends'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_cpu: Option<f64>,
    /// Whether the last unsharded run had it in a pack: `units = "auto"` keeps a packed file a
    /// candidate until its tests clearly outweigh its start-up, so that a file near the line
    /// does not flip between packed and alone from run to run (and the options with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<bool>,
}

impl Timings {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("timings.json")
    }

    /// Missing or unreadable timings are no timings: they only order work.
    pub fn load(state_dir: &Path) -> Timings {
        std::fs::read_to_string(Self::path(state_dir))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Folds one run's durations in (weight 0.5 for the newest, so a changed file adapts quickly):
    /// the worker's, when the file ran alone, and its tests' (from its JUnit).
    pub fn record(&mut self, file: &str, alone: Option<Duration>, tests: Option<Duration>) {
        let ema = |old: Option<f64>, new: Option<Duration>| match (old, new) {
            (Some(o), Some(n)) => Some(o * 0.5 + n.as_secs_f64() * 0.5),
            (o, n) => n.map(|n| n.as_secs_f64()).or(o),
        };
        match self.files.get_mut(file) {
            Some(t) => {
                t.secs = ema(Some(t.secs), alone).unwrap_or(t.secs);
                t.tests = ema(t.tests, tests);
                t.runs += 1;
            }
            None => {
                // A file first seen packed with others: its tests are all it is known by.
                let Some(secs) = alone.or(tests) else { return };
                let tests = tests.map(|d| d.as_secs_f64());
                let secs = secs.as_secs_f64();
                self.files.insert(
                    file.to_string(),
                    FileTiming {
                        secs,
                        runs: 1,
                        tests,
                        cases: BTreeMap::new(),
                        cpu: None,
                        startup_cpu: None,
                        startup: None,
                        tests_cpu: None,
                        packed: None,
                    },
                );
            }
        }
    }

    /// Folds one run's test times in (the same moving average); a test no longer run is
    /// forgotten, so that the list stays the file's current tests.
    pub fn record_cases(&mut self, file: &str, cases: &[(String, f64)]) {
        let Some(t) = self.files.get_mut(file) else {
            return;
        };
        if cases.is_empty() {
            return;
        }
        let old = std::mem::take(&mut t.cases);
        t.cases = cases
            .iter()
            .map(|(id, secs)| {
                let secs = old.get(id).map_or(*secs, |o| o * 0.5 + secs * 0.5);
                (id.clone(), secs)
            })
            .collect();
    }

    /// Folds in a file's costs timed alone (seconds alone and CPU, of its start-up and of its
    /// tests), with the same moving average; its time alone is then their sum.
    pub fn record_alone(
        &mut self,
        file: &str,
        startup: f64,
        startup_cpu: f64,
        tests: f64,
        tests_cpu: f64,
    ) {
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o * 0.5 + new * 0.5));
        let t = self
            .files
            .entry(file.to_string())
            .or_insert_with(|| FileTiming {
                secs: startup + tests,
                runs: 0,
                tests: None,
                cases: BTreeMap::new(),
                cpu: None,
                startup_cpu: None,
                startup: None,
                tests_cpu: None,
                packed: None,
            });
        // Older timings' start-ups were stretched: they are not averaged in.
        let fresh = t.startup.is_none();
        let fold = |old: Option<f64>, new: f64| if fresh { Some(new) } else { ema(old, new) };
        t.startup = fold(t.startup, startup);
        t.startup_cpu = fold(t.startup_cpu, startup_cpu);
        t.tests = fold(t.tests, tests);
        t.tests_cpu = fold(t.tests_cpu, tests_cpu);
        t.secs = t.startup.unwrap_or_default() + t.tests.unwrap_or_default();
        t.cpu = Some(t.startup_cpu.unwrap_or_default() + t.tests_cpu.unwrap_or_default());
        t.runs += 1;
    }

    /// Learns a run's files that ran to their end: their costs timed alone where measured; else
    /// their times and CPU as older versions measured them.
    pub fn learn_run(&mut self, workers: &[crate::model::WorkerResult]) {
        let secs = Duration::from_secs_f64;
        let ran: Vec<&crate::model::WorkerResult> =
            workers.iter().filter(|w| w.first_pass_ran()).collect();
        for w in ran {
            match w.costs_alone() {
                Some(c) => {
                    self.record_alone(&w.file, c.startup, c.startup_cpu, c.tests, c.tests_cpu);
                }
                None => {
                    let (alone, tests) = (w.time_alone().map(secs), w.tests_time().map(secs));
                    self.record(&w.file, alone, tests);
                    if let Some((cpu, startup)) = w.cpu_alone() {
                        self.record_cpu(&w.file, cpu, startup);
                    }
                }
            }
        }
    }

    /// What the planned runs of this shape (so many files in so many units, so many of them
    /// packs and so many parts of split files) took, on average, less the time before their first worker; none when no run of
    /// the last ten had it. The queue's runs (no prediction) were not planned and do not count.
    pub fn measured(&self, files: usize, units: usize, packs: usize, parts: usize) -> Option<f64> {
        let walls: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| {
                r.complete
                    && r.predicted.is_some()
                    && r.files == files
                    && r.units == units
                    && r.packs == packs
                    && r.parts == parts
            })
            .map(|r| r.measured)
            .collect();
        (!walls.is_empty()).then(|| {
            let mean = walls.iter().sum::<f64>() / walls.len() as f64;
            (mean - self.setup.unwrap_or_default()).max(0.0)
        })
    }

    /// How much longer than predicted the planned runs with `units` workers (of `files` files,
    /// however packed) took, on average (their time before the first worker included in both),
    /// when that is over 5 % longer: an option of as many workers that no run has tried yet is
    /// weighed by its prediction times this. Never below 1: a model that flatters one shape
    /// must not make the untried ones look better than it says.
    pub fn underpredicted(&self, files: usize, units: usize) -> Option<f64> {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.complete && r.files == files && r.units == units)
            .filter_map(|r| r.predicted.filter(|&p| p > 0.0).map(|p| r.measured / p))
            .collect();
        let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
        (!ratios.is_empty() && mean > 1.05).then_some(mean)
    }

    /// Learns how many packs the run had and its predicted and measured wall (the last ten).
    pub fn learn_choice(&mut self, s: &crate::model::RunSummary) {
        let firsts = s
            .workers
            .iter()
            .flat_map(|w| w.attempts.iter().filter(|a| a.number == 1));
        let mut packs = std::collections::BTreeSet::new();
        let mut units = std::collections::BTreeSet::new();
        let mut parts = std::collections::BTreeSet::new();
        for a in firsts {
            units.insert(a.db_name.as_str());
            if !a.packed_with.is_empty() {
                packs.insert(a.db_name.as_str());
            }
            if a.part.is_some() {
                parts.insert(a.db_name.as_str());
            }
        }
        self.packs = Some(packs.len());
        if s.shard.is_none() {
            for w in &s.workers {
                let first = w.attempts.iter().find(|a| a.number == 1);
                if let (Some(a), Some(t)) = (first, self.files.get_mut(&w.file)) {
                    t.packed = Some(!a.packed_with.is_empty());
                }
            }
        }
        let mut copies: Vec<f64> = s
            .workers
            .iter()
            .flat_map(|w| w.attempts.iter().filter(|a| a.number == 1))
            .filter_map(|a| {
                let p = a.phases.first()?;
                (p.phase == crate::model::Phase::Cloning).then_some(p.end - p.start)
            })
            .collect();
        let setup = s
            .workers
            .iter()
            .flat_map(|w| w.attempts.iter().filter(|a| a.number == 1))
            .filter_map(|a| a.phases.first().map(|p| p.start))
            .fold(f64::INFINITY, f64::min);
        if setup.is_finite() {
            self.setup = Some(self.setup.map_or(setup, |o| o * 0.5 + setup * 0.5));
        }
        let mut stops: Vec<f64> = s
            .workers
            .iter()
            .flat_map(|w| w.attempts.iter().filter(|a| a.number == 1))
            .filter_map(|a| {
                let p = a.phases.last()?;
                (p.phase == crate::model::Phase::Stopping).then_some(p.end - p.start)
            })
            .collect();
        stops.sort_by(f64::total_cmp);
        if let Some(&median) = stops.get(stops.len() / 2) {
            self.stop = Some(self.stop.map_or(median, |c| c * 0.5 + median * 0.5));
        }
        copies.sort_by(f64::total_cmp);
        if let Some(&median) = copies.get(copies.len() / 2) {
            self.copy = Some(self.copy.map_or(median, |c| c * 0.5 + median * 0.5));
        }
        self.runs.push(RunWall {
            run_id: s.run_id.clone(),
            predicted: s.predicted_wall_secs,
            measured: s.wall_secs,
            units: units.len(),
            files: s.workers.len(),
            packs: packs.len(),
            parts: parts.len(),
            complete: !s.interrupted
                && s.shard.is_none()
                && s.workers.iter().all(|w| w.first_pass_ran()),
        });
        let extra = self.runs.len().saturating_sub(10);
        self.runs.drain(..extra);
    }

    /// Folds one run's CPU, and its start-up's when known, in (the same moving average).
    pub fn record_cpu(&mut self, file: &str, cpu: f64, startup: Option<f64>) {
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o * 0.5 + new * 0.5));
        if let Some(t) = self.files.get_mut(file) {
            t.cpu = ema(t.cpu, cpu);
            if let Some(s) = startup {
                t.startup_cpu = ema(t.startup_cpu, s);
            }
        }
    }

    /// A file's recorded tests and their times.
    pub fn cases(&self, file: &str) -> Option<&BTreeMap<String, f64>> {
        self.files
            .get(file)
            .map(|t| &t.cases)
            .filter(|c| !c.is_empty())
    }

    /// A file's tests and its start-up cost (its worker's time that is not its tests), when both
    /// are known.
    pub fn split_of(&self, file: &str) -> Option<(f64, f64)> {
        let t = self.files.get(file)?;
        let tests = t.tests?;
        Some((tests, (t.secs - tests).max(0.0)))
    }

    pub fn get(&self, file: &str) -> Option<Duration> {
        self.files
            .get(file)
            .map(|t| Duration::from_secs_f64(t.secs))
    }

    /// Durations for `files`; unknown files get the mean of the known ones (or None if none known).
    pub fn predict(&self, files: &[TestFile]) -> Vec<Option<Duration>> {
        let known: Vec<f64> = files
            .iter()
            .filter_map(|f| self.get(&f.path))
            .map(|d| d.as_secs_f64())
            .collect();
        let mean = (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64);
        files
            .iter()
            .map(|f| {
                self.get(&f.path)
                    .or_else(|| mean.map(Duration::from_secs_f64))
            })
            .collect()
    }
}

/// Splits files into `shard.count` shards: greedy longest-first into the least-loaded shard when
/// timings exist, round-robin over sorted paths otherwise. Same inputs, same answer on every runner.
pub fn split_files(files: &[TestFile], timings: &Timings, shard: Shard) -> Split {
    let mut sorted: Vec<TestFile> = files.to_vec();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let predicted = timings.predict(&sorted);
    let mut digest = Sha256::new();
    digest.update(format!("{}\n", shard.count));
    for f in &sorted {
        let secs = timings.files.get(&f.path).map(|t| t.secs);
        digest.update(format!("{}\0{secs:?}\n", f.path));
    }
    let any_known = sorted.iter().any(|f| timings.get(&f.path).is_some());
    let mut slot_of = vec![0usize; sorted.len()];
    if any_known {
        let mut order: Vec<usize> = (0..sorted.len()).collect();
        order.sort_by(|&a, &b| {
            predicted[b]
                .cmp(&predicted[a])
                .then_with(|| sorted[a].path.cmp(&sorted[b].path))
        });
        let mut loads = vec![Duration::ZERO; shard.count];
        for i in order {
            let (slot, _) = loads
                .iter()
                .enumerate()
                .min_by_key(|(k, load)| (**load, *k))
                .unwrap_or((0, &Duration::ZERO));
            loads[slot] += predicted[i].unwrap_or_default();
            slot_of[i] = slot;
        }
    } else {
        for (i, slot) in slot_of.iter_mut().enumerate() {
            *slot = i % shard.count;
        }
    }
    Split {
        index: shard.index,
        count: shard.count,
        digest: hex(&digest.finalize())[..16].to_string(),
        files: sorted
            .into_iter()
            .zip(slot_of)
            .map(|(f, slot)| (f.path, slot + 1))
            .collect(),
    }
}

/// Makespan of `durations` on `jobs` slots (0 = unbounded), started longest first.
pub fn predict_makespan(durations: &[Duration], jobs: usize) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort_by(|a, b| b.cmp(a));
    let slots = if jobs == 0 { sorted.len().max(1) } else { jobs };
    let mut free = vec![Duration::ZERO; slots];
    for d in sorted {
        if let Some(min) = free.iter_mut().min() {
            *min += d;
        }
    }
    free.into_iter().max().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Costs timed alone replace what older versions learnt, then average like any timing.
    #[test]
    fn costs_timed_alone_average_and_make_the_time_alone() {
        let mut t = Timings::default();
        let secs = Duration::from_secs_f64;
        t.record("a.py", Some(secs(9.0)), Some(secs(1.1)));
        t.record_alone("a.py", 3.0, 2.5, 0.5, 0.4);
        let a = &t.files["a.py"];
        assert_eq!((a.startup, a.tests, a.secs), (Some(3.0), Some(0.5), 3.5));
        t.record_alone("a.py", 2.0, 2.0, 1.5, 1.0);
        let a = &t.files["a.py"];
        assert_eq!(
            (a.startup, a.tests, a.tests_cpu),
            (Some(2.5), Some(1.0), Some(0.7))
        );
        assert_eq!((a.secs, a.cpu), (3.5, Some(2.25 + 0.7)));
        assert_eq!(a.runs, 3);
    }

    /// This shard's files (sorted by path).
    fn shard_files(files: &[TestFile], timings: &Timings, shard: Shard) -> Vec<TestFile> {
        let split = split_files(files, timings, shard);
        let mine: Vec<&str> = split.mine().collect();
        let mut out: Vec<TestFile> = files
            .iter()
            .filter(|f| mine.contains(&f.path.as_str()))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    #[test]
    fn makespan_lpt() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(predict_makespan(&[d(5), d(3), d(3), d(1)], 2), d(6));
        assert_eq!(predict_makespan(&[d(5), d(3)], 0), d(5));
    }

    fn files(names: &[&str]) -> Vec<TestFile> {
        names
            .iter()
            .map(|n| TestFile {
                path: n.to_string(),
                stem: n.to_string(),
                size: 0,
            })
            .collect()
    }

    #[test]
    fn shards_partition_round_robin_without_timings() {
        let fs = files(&["a", "b", "c", "d", "e"]);
        let t = Timings::default();
        let s1 = shard_files(&fs, &t, Shard { index: 1, count: 2 });
        let s2 = shard_files(&fs, &t, Shard { index: 2, count: 2 });
        assert_eq!(
            s1.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["a", "c", "e"]
        );
        assert_eq!(
            s2.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["b", "d"]
        );
    }

    #[test]
    fn shards_balance_by_timings() {
        let fs = files(&["a", "b", "c", "d"]);
        let mut t = Timings::default();
        for (f, s) in [("a", 10), ("b", 6), ("c", 5), ("d", 1)] {
            t.record(f, Some(Duration::from_secs(s)), None);
        }
        let s1 = shard_files(&fs, &t, Shard { index: 1, count: 2 });
        let s2 = shard_files(&fs, &t, Shard { index: 2, count: 2 });
        assert_eq!(
            s1.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["a", "d"]
        );
        assert_eq!(
            s2.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn shard_auto_reads_each_ci_and_normalises_the_base() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let auto: ShardArg = "auto".parse().unwrap();
        let two_of_four = Shard { index: 2, count: 4 };
        for pairs in [
            &[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "4")][..],
            &[("CIRCLE_NODE_INDEX", "1"), ("CIRCLE_NODE_TOTAL", "4")][..],
            &[
                ("BUILDKITE_PARALLEL_JOB", "1"),
                ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
            ][..],
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(pairs.to_vec().into_boxed_slice());
            assert_eq!(auto.resolve(&env(pairs)), Ok(two_of_four), "{pairs:?}");
        }
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(
            "auto/4".parse::<ShardArg>().unwrap().resolve(&k8s),
            Ok(two_of_four)
        );
        assert!(auto.resolve(&k8s).unwrap_err().contains("--shard auto/N"));
        let none = auto.resolve(&env(&[])).unwrap_err();
        for var in [
            "CI_NODE_INDEX",
            "CIRCLE_NODE_TOTAL",
            "BUILDKITE_PARALLEL_JOB",
            "JOB_COMPLETION_INDEX",
        ] {
            assert!(none.contains(var), "{none}");
        }
        assert!("auto/0".parse::<ShardArg>().is_err());
        assert_eq!(
            "2/4".parse::<ShardArg>(),
            Ok(ShardArg::Explicit(two_of_four))
        );
    }

    #[test]
    fn shard_parse() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert!("0/4".parse::<Shard>().is_err());
        assert!("5/4".parse::<Shard>().is_err());
    }
}
