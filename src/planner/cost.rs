//! What a unit of work is predicted to cost, and the run's predicted wall time: the one model by
//! which `units = "auto"` weighs every option (a worker per file, every number of packs, splits).
//!
//! A unit has two phases, its start-up (the server until ready, the test process until its tests
//! begin) and its tests, each known by the time it takes alone and the CPU it uses (the tests'
//! with their share of the database's backends). Both are learnt free of contention: a time
//! alone is a wall time minus the time the process waited on a run queue, so twelve start-ups
//! stretched by sharing two cores are still learnt as one each. The run is then simulated: the
//! units start in the planner's order, at most `jobs` at once, and while more CPU is wanted than
//! the cores have, each unit's phase goes as much slower as its share of the cores is short of
//! what it wants (the critical unit, which the others yield to, weighing three times as much).

use std::time::Duration;

use super::shards::Timings;

/// What a unit is predicted to cost: its start-up and its tests, each as the seconds it takes
/// alone and the CPU seconds it uses (the copy of its database is left out).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Waiting for its database (a copy of the template, or a claim from the pool): no CPU of
    /// the workers', before its start-up.
    pub copy: f64,
    pub startup: f64,
    pub startup_cpu: f64,
    pub tests: f64,
    pub tests_cpu: f64,
    /// Stopping its processes and reading what they left, after its tests: no CPU to speak of.
    pub stop: f64,
}

impl Cost {
    /// Its time alone: start-up, then tests (its database's copy left out: it is made ahead).
    pub fn total(self) -> f64 {
        self.startup + self.tests
    }

    /// The CPU it uses in all.
    pub fn cpu(self) -> f64 {
        self.startup_cpu + self.tests_cpu
    }

    /// A file's cost from its recorded timings; None before its tests' time is recorded.
    /// Timings learnt before start-ups were timed alone have the start-up as the worker's time
    /// less its tests, judged by its CPU where recorded (a CPU-bound start-up alone takes about
    /// its CPU).
    pub fn of(timings: &Timings, file: &str) -> Option<Cost> {
        let t = timings.files.get(file)?;
        let tests = t.tests?;
        if let Some(startup) = t.startup {
            let startup_cpu = t.startup_cpu.unwrap_or(startup);
            let tests_cpu = t
                .tests_cpu
                .or_else(|| t.cpu.map(|c| (c - startup_cpu).max(0.0)))
                .unwrap_or(tests);
            return Some(Cost {
                copy: timings.copy.unwrap_or_default(),
                startup,
                startup_cpu,
                tests,
                tests_cpu,
                stop: timings.stop.unwrap_or_default(),
            });
        }
        let wall = (t.secs - tests).max(0.0);
        Some(match t.cpu {
            Some(cpu) => {
                let startup = t.startup_cpu.unwrap_or(cpu).min(cpu).min(wall);
                Cost {
                    copy: timings.copy.unwrap_or_default(),
                    startup,
                    startup_cpu: startup,
                    tests,
                    tests_cpu: (cpu - startup).max(0.0),
                    stop: timings.stop.unwrap_or_default(),
                }
            }
            None => Cost {
                copy: timings.copy.unwrap_or_default(),
                startup: wall,
                startup_cpu: wall,
                tests,
                tests_cpu: 0.0,
                stop: timings.stop.unwrap_or_default(),
            },
        })
    }

    /// A file's cost, or when its tests' time is not recorded, its predicted time taken as tests
    /// and, for want of better, as CPU.
    pub fn or_predicted(timings: &Timings, file: &str, predicted: Option<Duration>) -> Cost {
        Cost::of(timings, file).unwrap_or_else(|| {
            let secs = predicted.unwrap_or_default().as_secs_f64();
            Cost {
                copy: timings.copy.unwrap_or_default(),
                startup: 0.0,
                startup_cpu: 0.0,
                tests: secs,
                tests_cpu: secs,
                stop: timings.stop.unwrap_or_default(),
            }
        })
    }

    /// Files run one after another in one worker: one start-up (the heaviest), all their tests.
    pub fn pack(costs: &[Cost]) -> Cost {
        let max = |f: fn(&Cost) -> f64| costs.iter().map(f).fold(0.0, f64::max);
        Cost {
            copy: max(|c| c.copy),
            startup: max(|c| c.startup),
            startup_cpu: max(|c| c.startup_cpu),
            tests: costs.iter().map(|c| c.tests).sum(),
            tests_cpu: costs.iter().map(|c| c.tests_cpu).sum(),
            stop: max(|c| c.stop),
        }
    }

    /// A part of this file holding `tests` seconds of its tests: a start-up of its own, and
    /// that share of the tests' CPU.
    pub fn part(self, tests: f64) -> Cost {
        let share = if self.tests > 0.0 {
            tests / self.tests
        } else {
            0.0
        };
        Cost {
            tests,
            tests_cpu: self.tests_cpu * share,
            ..self
        }
    }

    /// Its phases: seconds alone, and the cores it keeps busy meanwhile.
    fn phases(self, cores: f64) -> [(f64, f64); 4] {
        let rate = |cpu: f64, secs: f64| {
            if secs > 0.0 {
                (cpu / secs).clamp(0.0, cores)
            } else {
                0.0
            }
        };
        [
            (self.copy, 0.0),
            (self.startup, rate(self.startup_cpu, self.startup)),
            (self.tests, rate(self.tests_cpu, self.tests)),
            (self.stop, 0.0),
        ]
    }
}

/// A unit of the run: a file alone (its position in the ordered files), or a pack or a part.
#[derive(Debug, Clone, Copy)]
pub struct UnitCost {
    pub file: Option<usize>,
    pub cost: Cost,
}

/// How much more of the cores the critical unit gets than a unit that yields to it (nice 0
/// against nice 5 and up: CFS weighs them about 3 to 9 times; the lower end, to be safe).
const CRITICAL_WEIGHT: f64 = 3.0;

/// How many units the engine lets run at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slots {
    /// At most so many (0: every unit at once).
    Bound(usize),
    /// `jobs = "auto"` (`engine::Gate`): a unit per core, and one more whenever the running
    /// ones leave [`GATE_OPENS`] of a core idle. Simulated as every unit at once, three CPU-bound
    /// units on two cores were predicted to share them while the third waited for a slot.
    Gate,
}

impl From<crate::plan::Jobs> for Slots {
    fn from(jobs: crate::plan::Jobs) -> Slots {
        match jobs {
            crate::plan::Jobs::Auto => Slots::Gate,
            crate::plan::Jobs::Fixed(n) => Slots::Bound(n),
        }
    }
}

/// Idle cores that let the gate start another unit (the engine's `OPEN_IDLE`).
pub const GATE_OPENS: f64 = 0.75;

/// The run's predicted wall time ([`predict`]).
pub fn predict_wall(units: &[UnitCost], jobs: Slots, cores: usize) -> f64 {
    predict(units, jobs, cores).0
}

/// The critical unit's priority must save at least this share of the wall to be given: when
/// other units are nearly as long, they only wait for it.
const CRITICAL_GAIN: f64 = 0.02;

/// The run's predicted wall time, and whether the critical unit is to be given the cores first:
/// the units started longest first, at most `jobs` at once (0: all), simulated on `cores` cores
/// sharing them evenly and, with more at once than cores, with the one with the most tests' time
/// first and the others yielding to it (as the planner then starts them); the shorter wins.
/// Priority pays when the longest unit alone outlasts what the others leave of the cores; when
/// others are nearly as long (two packs of a Django suite, 7.5 s and 7 s of tests), they end
/// later for it.
pub fn predict(units: &[UnitCost], jobs: Slots, cores: usize) -> (f64, bool) {
    let mut order: Vec<Cost> = units.iter().map(|u| u.cost).collect();
    // One order for one set of units, however they were listed.
    order.sort_by(|a, b| {
        (b.total().total_cmp(&a.total()))
            .then(b.tests.total_cmp(&a.tests))
            .then(b.cpu().total_cmp(&a.cpu()))
            .then(b.copy.total_cmp(&a.copy))
            .then(b.stop.total_cmp(&a.stop))
    });
    let fair = simulate(&order, jobs, cores, false);
    let at_once = match jobs {
        Slots::Bound(0) | Slots::Gate => order.len(),
        Slots::Bound(n) => n.min(order.len()),
    };
    if at_once <= cores.max(1) {
        return (fair, false);
    }
    let most = order.iter().map(|c| c.tests).fold(0.0, f64::max);
    let Some(i) = order.iter().position(|c| c.tests >= 0.95 * most) else {
        return (fair, false);
    };
    order[..=i].rotate_right(1);
    let critical = simulate(&order, jobs, cores, true);
    if critical < fair * (1.0 - CRITICAL_GAIN) {
        (critical, true)
    } else {
        (fair, false)
    }
}

/// Which units wait for the critical unit's start-up before their own copy and start-up, as the
/// planner has them wait (`planner::wait_for_critical`): those whose tests take at most half
/// the critical unit's.
fn waiting(units: &[Cost], critical: bool) -> Vec<bool> {
    let Some(first) = units.first().filter(|_| critical) else {
        return vec![false; units.len()];
    };
    units
        .iter()
        .enumerate()
        .map(|(i, u)| i > 0 && u.tests * 2.0 <= first.tests)
        .collect()
}

/// Runs `units` in order on `cores` cores, at most `jobs` at once, and returns when the last
/// ends. While the running phases want more cores than there are, the cores are shared by
/// water-filling (each unit gets what it wants, up to an equal share by weight; what others
/// leave is shared again), and a phase goes at the share it got of what it wants. `critical`:
/// the first unit weighs `CRITICAL_WEIGHT`.
pub fn simulate(units: &[Cost], jobs: Slots, cores: usize, critical: bool) -> f64 {
    let waits = waiting(units, critical);
    let n_cores = cores.max(1);
    let cores = n_cores as f64;
    let slots = match jobs {
        Slots::Bound(0) => units.len(),
        Slots::Bound(n) => n,
        Slots::Gate => n_cores,
    };
    // Whether one more unit may start beside `running`: a free slot, or under the gate, cores
    // the running units leave idle.
    let room = |running: &[(usize, usize, f64)]| {
        if running.len() < slots {
            return true;
        }
        jobs == Slots::Gate && {
            // A copy keeps the database server busy: it counts as a core.
            let busy: f64 = running
                .iter()
                .map(|&(u, phase, _)| match phase {
                    0 => 1.0,
                    _ => units[u].phases(cores)[phase].1,
                })
                .sum();
            cores - busy >= GATE_OPENS
        }
    };
    // (unit, phase, seconds alone left in it)
    let mut running: Vec<(usize, usize, f64)> = Vec::new();
    let (mut next, mut t) = (0, 0.0);
    // Phases with nothing left move on; units with nothing left end.
    let settle = |running: &mut Vec<(usize, usize, f64)>| {
        running.retain_mut(|(u, phase, left)| {
            while *left <= 1e-9 && *phase < 3 {
                *phase += 1;
                *left = units[*u].phases(cores)[*phase].0;
            }
            *left > 1e-9
        })
    };
    loop {
        settle(&mut running);
        while next < units.len() && room(&running) {
            running.push((next, 0, units[next].phases(cores)[0].0));
            next += 1;
            settle(&mut running);
        }
        if running.is_empty() {
            return t;
        }
        // The critical unit is done starting once it is past its start-up (or gone).
        let critical_started =
            !critical || !running.iter().any(|&(u, phase, _)| u == 0 && phase < 2);
        let held = |u: usize, phase: usize| waits[u] && phase < 2 && !critical_started;
        let wants: Vec<(f64, f64)> = running
            .iter()
            .map(|&(u, phase, _)| {
                let weight = if critical && u == 0 {
                    CRITICAL_WEIGHT
                } else {
                    1.0
                };
                let want = if held(u, phase) {
                    0.0
                } else {
                    units[u].phases(cores)[phase].1
                };
                (want, weight)
            })
            .collect();
        let got = share(&wants, cores);
        let speed: Vec<f64> = running
            .iter()
            .zip(wants.iter().zip(&got))
            .map(|(&(u, phase, _), (&(want, _), &g))| {
                if held(u, phase) {
                    0.0
                } else if want > 0.0 {
                    (g / want).min(1.0)
                } else {
                    1.0
                }
            })
            .collect();
        let dt = running
            .iter()
            .zip(&speed)
            .filter(|(_, &s)| s > 0.0)
            .map(|(&(_, _, left), &s)| left / s)
            .fold(f64::INFINITY, f64::min);
        if !dt.is_finite() {
            // Everything left waits: cannot happen (the critical unit always moves).
            return t;
        }
        t += dt;
        for ((_, _, left), s) in running.iter_mut().zip(&speed) {
            *left -= dt * s;
        }
    }
}

/// Water-filling: each claimant `(wants, weight)` gets what it wants, up to its weight's share
/// of what is left; what those below their share leave goes to the others.
fn share(wants: &[(f64, f64)], capacity: f64) -> Vec<f64> {
    let mut got = vec![0.0; wants.len()];
    let mut open: Vec<usize> = (0..wants.len()).collect();
    let mut left = capacity;
    while !open.is_empty() {
        let weights: f64 = open.iter().map(|&i| wants[i].1).sum();
        let per = left / weights.max(1e-9);
        let (sated, hungry): (Vec<usize>, Vec<usize>) =
            open.iter().partition(|&&i| wants[i].0 <= wants[i].1 * per);
        if sated.is_empty() {
            for &i in &hungry {
                got[i] = wants[i].1 * per;
            }
            break;
        }
        for &i in &sated {
            got[i] = wants[i].0;
            left -= wants[i].0;
        }
        open = hungry;
    }
    got
}

/// The CPU of every unit spread over the cores: how long the cores are busy at the least.
pub fn cpu_spread(units: &[UnitCost], cores: usize) -> f64 {
    units.iter().map(|u| u.cost.cpu()).sum::<f64>() / cores.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Slots = Slots::Bound(0);

    fn timings(secs: f64, tests: f64, cpu: Option<f64>) -> Timings {
        let mut t = Timings::default();
        t.record(
            "t.py",
            Some(Duration::from_secs_f64(secs)),
            Some(Duration::from_secs_f64(tests)),
        );
        if let Some(cpu) = cpu {
            t.record_cpu("t.py", cpu, None);
        }
        t
    }

    fn cost(startup: f64, startup_cpu: f64, tests: f64, tests_cpu: f64) -> Cost {
        Cost {
            copy: 0.0,
            stop: 0.0,
            startup,
            startup_cpu,
            tests,
            tests_cpu,
        }
    }

    fn unit(c: Cost) -> UnitCost {
        UnitCost {
            file: None,
            cost: c,
        }
    }

    /// Timings from before start-ups were timed alone: a start-up stretched to 10 s by
    /// contention is judged by the 2 s of CPU it used.
    #[test]
    fn an_old_start_up_is_judged_by_its_cpu_when_recorded() {
        let c = Cost::of(&timings(11.0, 1.0, Some(2.0)), "t.py").unwrap();
        assert_eq!((c.startup, c.tests, c.cpu()), (2.0, 1.0, 2.0));
        // Tests that use CPU: the start-up is the wall time before them, not all the CPU.
        let c = Cost::of(&timings(3.0, 2.0, Some(2.5)), "t.py").unwrap();
        assert_eq!((c.startup, c.cpu()), (1.0, 2.5));
        // Nothing recorded about CPU: the start-up is all CPU.
        let c = Cost::of(&timings(5.0, 1.0, None), "t.py").unwrap();
        assert_eq!((c.startup, c.cpu()), (4.0, 4.0));
    }

    /// Start-ups and tests timed alone are taken as they are.
    #[test]
    fn costs_timed_alone_are_taken_as_they_are() {
        let mut t = Timings::default();
        t.record_alone("t.py", 3.0, 2.8, 0.5, 0.7);
        let c = Cost::of(&t, "t.py").unwrap();
        assert_eq!(c, cost(3.0, 2.8, 0.5, 0.7));
    }

    /// Packing pays one start-up; splitting pays one per part.
    #[test]
    fn packs_share_a_start_up_and_parts_each_pay_one() {
        let file = cost(2.0, 2.0, 4.0, 1.0);
        let pack = Cost::pack(&[file, file, file]);
        assert_eq!(pack, cost(2.0, 2.0, 12.0, 3.0));
        assert_eq!(file.part(2.0), cost(2.0, 2.0, 2.0, 0.5));
    }

    /// Alone, a unit takes its time; CPU-bound units share the cores; sleeping ones do not.
    #[test]
    fn the_simulation_shares_the_cores_by_what_each_unit_wants() {
        let busy = cost(2.0, 2.0, 4.0, 4.0);
        assert!((predict_wall(&[unit(busy)], ALL, 2) - 6.0).abs() < 1e-9);
        // Four CPU-bound units on two cores: twice as long as one.
        assert!((predict_wall(&[unit(busy); 4], ALL, 2) - 12.0).abs() < 1e-9);
        // Four that sleep through their tests: only the start-ups share the cores.
        let sleepy = cost(2.0, 2.0, 4.0, 0.0);
        assert!((predict_wall(&[unit(sleepy); 4], ALL, 2) - 8.0).abs() < 1e-9);
        // Two slots: two waves.
        assert!((predict_wall(&[unit(sleepy); 4], Slots::Bound(2), 2) - 12.0).abs() < 1e-9);
        // Tests that keep 1.5 cores busy (their database's backends too): two at once on two
        // cores go at 2/3 of their speed.
        let heavy = cost(1.0, 1.0, 6.0, 9.0);
        assert!((predict_wall(&[unit(heavy); 2], ALL, 2) - 10.0).abs() < 1e-9);
    }

    /// Under `jobs = "auto"` a unit per core starts, and more only while cores stand idle:
    /// three CPU-bound units on two cores run in two waves, not sharing the cores; units that
    /// sleep through their tests all run at once, as the gate lets them.
    #[test]
    fn the_gate_starts_a_unit_per_core_and_more_while_cores_stand_idle() {
        let busy = cost(1.0, 1.0, 4.0, 4.0);
        assert!((predict_wall(&[unit(busy); 3], ALL, 2) - 7.5).abs() < 1e-9);
        assert!((predict_wall(&[unit(busy); 3], Slots::Gate, 2) - 10.0).abs() < 1e-9);
        let sleepy = cost(2.0, 2.0, 4.0, 0.0);
        assert!((predict_wall(&[unit(sleepy); 4], Slots::Gate, 2) - 8.0).abs() < 1e-9);
        // A unit copying its database keeps the gate shut: the server is busy copying.
        let copying = Cost {
            copy: 1.0,
            ..cost(0.0, 0.0, 4.0, 0.0)
        };
        assert!((predict_wall(&[unit(copying); 3], Slots::Gate, 2) - 6.0).abs() < 1e-9);
        assert!((predict_wall(&[unit(copying); 3], ALL, 2) - 5.0).abs() < 1e-9);
    }

    /// One process against two packs of the same files on two cores: two packs pay one more
    /// start-up and save half the tests.
    #[test]
    fn two_packs_beat_one_process_when_the_tests_outweigh_a_start_up() {
        let files: Vec<Cost> = (0..40).map(|_| cost(4.5, 4.5, 0.45, 0.45)).collect();
        let one = predict_wall(&[unit(Cost::pack(&files))], ALL, 2);
        let two = predict_wall(
            &[
                unit(Cost::pack(&files[..20])),
                unit(Cost::pack(&files[20..])),
            ],
            ALL,
            2,
        );
        let each = predict_wall(&files.iter().map(|&c| unit(c)).collect::<Vec<_>>(), ALL, 2);
        assert!((one - 22.5).abs() < 1e-9, "{one}");
        assert!((two - 13.5).abs() < 1e-9, "{two}");
        assert!(
            each > 90.0,
            "a worker per file: every start-up at once: {each}"
        );
    }

    /// More units at once than cores: the critical one (the most tests) gets more of the cores
    /// and ends sooner than under fair sharing.
    #[test]
    fn the_critical_unit_gets_more_of_the_cores() {
        let long = cost(1.3, 1.3, 4.2, 0.1);
        let short = cost(1.3, 1.3, 1.0, 0.1);
        let mut units = vec![unit(long)];
        units.extend(std::iter::repeat_n(unit(short), 11));
        let with = predict_wall(&units, ALL, 2);
        let order: Vec<Cost> = units.iter().map(|u| u.cost).collect();
        let fair = simulate(&order, ALL, 2, false);
        assert!(with < fair, "{with} < {fair}");
    }

    #[test]
    fn water_filling_gives_what_is_wanted_then_shares_the_rest() {
        let got = share(&[(0.2, 1.0), (1.0, 1.0), (1.0, 1.0)], 2.0);
        assert_eq!(got, vec![0.2, 0.9, 0.9]);
        let got = share(&[(1.0, 3.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)], 2.0);
        assert_eq!(got, vec![1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
    }
}
