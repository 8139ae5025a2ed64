//! What a unit of work is predicted to cost, and the run's predicted wall time: the one model by
//! which `units = "auto"` chooses packs and splits.
//!
//! A recorded wall time is stretched by whatever ran beside it: on two cores, a dozen start-ups
//! at once each take several times as long as one alone. So where the worker's CPU is recorded,
//! a start-up is judged by it (a CPU-bound start-up alone takes about its CPU), and the CPU of
//! all units is what competes for the cores.

use std::time::Duration;

use super::shards::{predict_makespan, Timings};

/// What a unit is predicted to cost: its start-up (server and test process start, alone; the
/// copy of its database is left out), its tests' time, and the CPU it uses in all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub startup: f64,
    pub tests: f64,
    pub cpu: f64,
}

impl Cost {
    /// Its time alone: start-up, then tests.
    pub fn total(self) -> f64 {
        self.startup + self.tests
    }

    /// A file's cost from its recorded timings; None before its tests' time is recorded. The
    /// start-up is its measured start-up CPU; or its wall time minus its tests, or its CPU if
    /// less; without a recorded CPU, the start-up is taken to be all CPU and the tests none.
    pub fn of(timings: &Timings, file: &str) -> Option<Cost> {
        let t = timings.files.get(file)?;
        let tests = t.tests?;
        let wall = (t.secs - tests).max(0.0);
        Some(match t.cpu {
            Some(cpu) => Cost {
                startup: t.startup_cpu.unwrap_or(cpu).min(cpu).min(wall),
                tests,
                cpu,
            },
            None => Cost {
                startup: wall,
                tests,
                cpu: wall,
            },
        })
    }

    /// A file's cost, or when its tests' time is not recorded, its predicted time taken as tests
    /// and, for want of better, as CPU.
    pub fn or_predicted(timings: &Timings, file: &str, predicted: Option<Duration>) -> Cost {
        Cost::of(timings, file).unwrap_or_else(|| {
            let secs = predicted.unwrap_or_default().as_secs_f64();
            Cost {
                startup: 0.0,
                tests: secs,
                cpu: secs,
            }
        })
    }

    /// Files run one after another in one worker: one start-up (the heaviest), all their tests,
    /// and the CPU of that start-up and of every file's tests.
    pub fn pack(costs: &[Cost]) -> Cost {
        let startup = costs.iter().map(|c| c.startup).fold(0.0, f64::max);
        Cost {
            startup,
            tests: costs.iter().map(|c| c.tests).sum(),
            cpu: startup + costs.iter().map(Cost::tests_cpu).sum::<f64>(),
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
            startup: self.startup,
            tests,
            cpu: self.startup + self.tests_cpu() * share,
        }
    }

    /// The CPU its tests use beyond the start-up.
    fn tests_cpu(&self) -> f64 {
        (self.cpu - self.startup).max(0.0)
    }
}

/// A unit of the run: a file alone (its position in the ordered files), or a pack or a part.
#[derive(Debug, Clone, Copy)]
pub struct UnitCost {
    pub file: Option<usize>,
    pub cost: Cost,
}

/// The run's wall time: the longest chain of units on the slots (`jobs`, 0 = all at once), the
/// CPU of every unit spread over the cores, or the start-ups spread over the cores before each
/// unit's tests, whichever is longest.
pub fn predict_wall(units: &[UnitCost], jobs: usize, cores: usize) -> f64 {
    let all: Vec<Duration> = units
        .iter()
        .map(|u| Duration::from_secs_f64(u.cost.total().max(0.0)))
        .collect();
    let chain = predict_makespan(&all, jobs).as_secs_f64();
    chain
        .max(cpu_spread(units, cores))
        .max(startups_spread(units, jobs, cores))
}

/// With more units at once than cores, their start-ups share the cores. The critical unit (the
/// most tests' time) yields to none and starts at its own pace, which the chain counts; every
/// other unit's tests start about when all the start-ups' CPU has been spread over the cores.
/// With `jobs` slots, the first wave (the longest units, as the run starts them) is judged. A
/// unit within 5 % of the most tests' time may be the one the run puts first instead
/// (`planner::critical_of`), so with a near tie none is spared. Without this, packs were sized
/// as if each had a core to start on, and ended after the file they were sized to.
fn startups_spread(units: &[UnitCost], jobs: usize, cores: usize) -> f64 {
    let cores = cores.max(1);
    let mut wave: Vec<&UnitCost> = units.iter().collect();
    wave.sort_by(|a, b| b.cost.total().total_cmp(&a.cost.total()));
    if jobs > 0 {
        wave.truncate(jobs);
    }
    if wave.len() <= cores {
        return 0.0;
    }
    let spread = wave.iter().map(|u| u.cost.startup).sum::<f64>() / cores as f64;
    let most = wave.iter().map(|u| u.cost.tests).fold(0.0, f64::max);
    let near = wave.iter().filter(|u| u.cost.tests >= 0.95 * most).count();
    let spared = (near == 1).then(|| wave.iter().position(|u| u.cost.tests >= most));
    wave.iter()
        .enumerate()
        .filter(|&(i, _)| spared.flatten() != Some(i))
        .map(|(_, u)| spread.max(u.cost.startup) + u.cost.tests)
        .fold(0.0, f64::max)
}

/// The CPU of every unit spread over the cores: how long the cores are busy at the least.
pub fn cpu_spread(units: &[UnitCost], cores: usize) -> f64 {
    units.iter().map(|u| u.cost.cpu).sum::<f64>() / cores.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A start-up stretched to 10 s by contention is judged by the 2 s of CPU it used.
    #[test]
    fn a_start_up_is_judged_by_its_cpu_when_recorded() {
        let c = Cost::of(&timings(11.0, 1.0, Some(2.0)), "t.py").unwrap();
        assert_eq!((c.startup, c.tests, c.cpu), (2.0, 1.0, 2.0));
        // Tests that use CPU: the start-up is the wall time before them, not all the CPU.
        let c = Cost::of(&timings(3.0, 2.0, Some(2.5)), "t.py").unwrap();
        assert_eq!((c.startup, c.cpu), (1.0, 2.5));
        // The start-up's own CPU measured: the rest is the tests'.
        let mut t = timings(11.0, 1.0, None);
        t.record_cpu("t.py", 2.5, Some(2.0));
        let c = Cost::of(&t, "t.py").unwrap();
        assert_eq!((c.startup, c.cpu), (2.0, 2.5));
        // Nothing recorded about CPU: the start-up is all CPU.
        let c = Cost::of(&timings(5.0, 1.0, None), "t.py").unwrap();
        assert_eq!((c.startup, c.cpu), (4.0, 4.0));
    }

    /// Packing pays one start-up; splitting pays one per part.
    #[test]
    fn packs_share_a_start_up_and_parts_each_pay_one() {
        let file = Cost {
            startup: 2.0,
            tests: 4.0,
            cpu: 3.0,
        };
        let pack = Cost::pack(&[file, file, file]);
        assert_eq!((pack.startup, pack.tests, pack.cpu), (2.0, 12.0, 5.0));
        let half = file.part(2.0);
        assert_eq!((half.startup, half.tests, half.cpu), (2.0, 2.0, 2.5));
        let unit = |cost| UnitCost { file: None, cost };
        // Twelve 2 s start-ups on two cores keep them busy 12 s, whatever the chain.
        let twelve = vec![unit(file); 12];
        assert_eq!(predict_wall(&twelve, 0, 2), 18.0);
        assert_eq!(predict_wall(&[unit(pack)], 0, 2), 14.0);
    }

    /// More units than cores: the others' tests wait for every start-up to be spread over the
    /// cores, so packs as long as the critical file end after it, and shorter ones win.
    #[test]
    fn start_ups_at_once_delay_every_unit_but_the_critical_one() {
        let unit = |startup, tests| UnitCost {
            file: None,
            cost: Cost {
                startup,
                tests,
                cpu: startup + 0.05,
            },
        };
        let long = unit(1.3, 4.2);
        let three = [long, unit(1.3, 4.2), unit(1.3, 4.2), unit(1.3, 3.15)];
        let four = [
            long,
            unit(1.3, 3.15),
            unit(1.3, 3.15),
            unit(1.3, 3.15),
            unit(1.3, 2.1),
        ];
        let (w3, w4) = (predict_wall(&three, 0, 2), predict_wall(&four, 0, 2));
        assert!((w3 - (2.6 + 4.2)).abs() < 1e-9, "{w3}");
        assert!((w4 - (3.25 + 3.15)).abs() < 1e-9, "{w4}");
        // As many cores as units, or slots for no more: each starts on its own.
        assert!((predict_wall(&three, 0, 4) - 5.5).abs() < 1e-9);
        assert!((predict_wall(&three, 2, 2) - startups_free(&three, 2)).abs() < 1e-9);
        // Slots for three of the four on two cores: the first wave's start-ups share them.
        let wave: f64 = (3.0 * 1.3) / 2.0 + 4.2;
        assert!((predict_wall(&three, 3, 2) - wave.max(startups_free(&three, 3))).abs() < 1e-9);
        // A near tie for the most tests' time: either may be put first, so neither is spared.
        let tied = [long, unit(1.3, 4.1), unit(1.3, 1.0)];
        assert!((predict_wall(&tied, 0, 2) - (1.95 + 4.2)).abs() < 1e-9);
    }

    fn startups_free(units: &[UnitCost], jobs: usize) -> f64 {
        let all: Vec<Duration> = units
            .iter()
            .map(|u| Duration::from_secs_f64(u.cost.total()))
            .collect();
        predict_makespan(&all, jobs).as_secs_f64()
    }
}
