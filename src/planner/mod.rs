//! The planner turns a [`Plan`] into the DAG the engine runs and `dry-run` shows: setup steps,
//! one worker per file (clone → start server → wait ready → run tests → stop server), teardown.
//!
//! Everything here is pure: names, order, predictions and filled commands are decided before any
//! side effect, from the plan and the options (the recorded timings are read by the caller). What
//! only the run knows (ports, a throwaway cluster's URL) is filled by [`RunTime`].

mod commands;
pub mod cost;
mod names;
pub mod parts;
mod shards;
pub mod units;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::files;
pub use crate::model::Split;
use crate::plan::{Keep, Plan, TestFile};
use commands::WorkerVars;
pub use commands::{
    collect_command, prepare_commands, PrepareCommands, ResourceCommands, RunTime, ServerCommands,
    ServiceCommands, WorkerCommands,
};
pub use names::{
    build_db_name, hex, new_run_id, old_db_name, pool_db_name, shown_template_url, spare_db_name,
    template_name, with_database, worker_db_name, EPHEMERAL_TEMPLATE, MAX_IDENT,
};
pub use shards::{predict_makespan, split_files, FileTiming, Shard, ShardArg, Timings};

/// Which part of the run a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Worker,
    Teardown,
}

/// What a node does; the engine only sees it through the step that [`crate::steps`] builds for it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A `[[setup]]` command, skipped when `creates` exists.
    Setup {
        command: Vec<String>,
        creates: Option<String>,
        env: Vec<(String, String)>,
    },
    /// Start the embedded PostgreSQL: the kept one (`keep`, initdb only on its first run) or a
    /// throwaway one.
    StartCluster { keep: bool },
    /// Create the template if missing, run `prepare` (unless the fingerprint matches).
    PrepareTemplate(PreparePlan),
    /// One file's worker (or one part of a split file): clone, server, tests, stop.
    Worker { index: usize },
    /// A pack (`units = "auto"`): one worker whose test process runs several files one after
    /// another; each file gets its own row, and a failed one is retried alone.
    Pack { index: usize },
    /// Files no run has timed yet, run a few at a time (`lanes`, a core each at first): the first
    /// ones alone, the rest packed once their start-ups are seen to outweigh their tests.
    Queue { files: Vec<usize>, lanes: usize },
    /// Second pass over failed files, each attempt in fresh isolation.
    RetryFailed { retries: u32 },
    /// Merge JUnit, write summary.json and report.html.
    Report,
    /// Drop or keep worker databases by the keep policy; remove passing workers' logs.
    Cleanup { keep: Keep },
    /// Bring the template's pool of ready copies back to `size` for the next run.
    RefillPool { size: usize },
    /// Stop the embedded cluster (unless databases are kept); a throwaway one is deleted, the
    /// kept one (`keep`) stays for the next run.
    StopCluster { keep: bool },
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub stage: Stage,
    pub deps: Vec<usize>,
    /// Runs even when a dependency failed or the run was cancelled (teardown).
    pub always: bool,
    pub action: Action,
}

/// One worker, resolved except for what only exists at run time (port, template URL).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerPlan {
    pub index: usize,
    pub file: String,
    pub stem: String,
    pub log_dir: PathBuf,
    pub junit: PathBuf,
    /// From recorded timings; None for a file never run before.
    pub predicted: Option<Duration>,
    /// The first attempt and each retry: its own database, its commands resolved for it.
    pub attempts: Vec<AttemptPlan>,
    /// A pack (`units = "auto"`): the files (worker indexes) its one test process runs; empty
    /// for a file's own worker.
    pub pack: Vec<usize>,
    /// A file run in a pack: the pack's index (its retries still run alone).
    pub in_pack: Option<usize>,
    /// One part of a split file: which, and the tests it runs.
    pub part: Option<PartOf>,
    /// A split file: its parts (worker indexes); its row is merged from theirs.
    pub parts: Vec<usize>,
    /// Its processes' CPU priority (nice): 0 on the critical path; more, the more slack it has,
    /// when the run starts more workers than there are cores.
    pub nice: i32,
    /// Its copy and start-up wait until the critical unit's start-up is over: it has slack
    /// enough to lose that start-up.
    pub after_critical: bool,
    /// The file's size in bytes (a pack's: its files'): before it is timed, what it is guessed by.
    pub size: u64,
}

/// A part of a split file.
#[derive(Debug, Clone, Serialize)]
pub struct PartOf {
    /// The split file's worker index (its row).
    pub file: usize,
    /// 1-based, of `count`.
    pub number: usize,
    pub count: usize,
    /// The test ids it runs (given to the test command as its `{file}` words).
    pub tests: Vec<String>,
}

/// The template's preparation as planned.
#[derive(Debug, Clone, Serialize)]
pub struct PreparePlan {
    pub template: String,
    /// Fingerprinted plans prepare a fresh database of this name and swap it in for the
    /// template; without a fingerprint, `prepare` runs in the template itself.
    pub build: Option<String>,
    /// Resolved for the database they run in: `build`, else the template.
    #[serde(flatten)]
    pub commands: PrepareCommands,
}

impl PreparePlan {
    /// The database `prepare` runs in.
    pub fn target(&self) -> &str {
        self.build.as_deref().unwrap_or(&self.template)
    }
}

/// One attempt of a worker as planned.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptPlan {
    pub db_name: String,
    pub commands: WorkerCommands,
    pub paths: AttemptPaths,
}

/// Where an attempt writes: its folder and the files in it that e2e-plan reads back. Whatever
/// else the worker writes there (a trace, a screenshot) travels with the folder: a retry moves
/// the folder's whole content aside, a pack links it into each of its files' folders.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptPaths {
    pub dir: PathBuf,
    pub server_log: PathBuf,
    pub server_times: PathBuf,
    pub test_log: PathBuf,
    pub junit: PathBuf,
    /// `{artifacts_dir}`: screenshots, traces, videos (moved aside with the rest before a retry).
    pub artifacts: PathBuf,
}

impl AttemptPaths {
    /// The paths of an attempt that writes into `dir`. Every attempt of a worker writes into its
    /// folder; before a retry, the earlier attempt's files move to `attempt-<n>/` below it.
    pub fn in_dir(dir: &std::path::Path) -> Self {
        AttemptPaths {
            dir: dir.to_path_buf(),
            server_log: dir.join(files::SERVER_LOG),
            server_times: files::times_of(&dir.join(files::SERVER_LOG)),
            test_log: dir.join(files::TEST_LOG),
            junit: dir.join(files::JUNIT),
            artifacts: dir.join(files::ARTIFACTS),
        }
    }
}

impl AttemptPlan {
    #[cfg(test)]
    /// An attempt with no commands (a worker built by hand, as the reporters' tests do).
    pub fn named(db_name: impl Into<String>, dir: &std::path::Path) -> Self {
        AttemptPlan {
            db_name: db_name.into(),
            commands: WorkerCommands {
                resources: Vec::new(),
                services: Vec::new(),
                server: None,
                test: Vec::new(),
                test_env: Vec::new(),
            },
            paths: AttemptPaths::in_dir(dir),
        }
    }
}

impl WorkerPlan {
    /// A file's worker built by hand, for the reporters' and steps' unit tests.
    #[cfg(test)]
    pub fn bare(index: usize, file: &str, stem: &str, log_dir: PathBuf, db: String) -> Self {
        WorkerPlan {
            index,
            file: file.into(),
            stem: stem.into(),
            attempts: vec![AttemptPlan::named(db, &log_dir)],
            pack: Vec::new(),
            in_pack: None,
            part: None,
            parts: Vec::new(),
            nice: 0,
            after_critical: false,
            size: 0,
            junit: log_dir.join(files::JUNIT),
            log_dir,
            predicted: None,
        }
    }

    /// The first attempt's database.
    pub fn db_name(&self) -> &str {
        &self.attempts[0].db_name
    }

    /// Attempt `n` (1 = the first pass); None beyond the retries planned.
    pub fn attempt(&self, n: u32) -> Option<&AttemptPlan> {
        self.attempts.get((n as usize).checked_sub(1)?)
    }
}

/// The whole DAG.
#[derive(Debug, Clone)]
pub struct Dag {
    pub run_id: String,
    pub nodes: Vec<Node>,
    pub workers: Vec<WorkerPlan>,
    /// Extra arguments given after `--`.
    pub args: Vec<String>,
    pub template_name: String,
    pub jobs: crate::plan::Jobs,
    pub predicted_wall: Option<Duration>,
    /// `--shard`: the split this shard belongs to.
    pub split: Option<Split>,
    /// `units = "auto"`: what was packed, and why (or why not).
    pub packing: Option<String>,
    /// `units = "auto"`: what was split, and why (or why not).
    pub parting: Option<String>,
    /// `units = "auto"`: every number of packs weighed, with its predicted wall.
    pub weighed: Vec<units::Weighed>,
}

impl Dag {
    /// Whether worker `index` is a unit of the DAG (a node of its own, its first database made
    /// ahead by the prefetcher); a queued file or a pack made during the run is not.
    pub fn is_unit(&self, index: usize) -> bool {
        self.nodes.iter().any(|n| {
            matches!(n.action, Action::Worker { index: i } | Action::Pack { index: i } if i == index)
        })
    }

    /// The files of the queue (worker indexes), none without one.
    pub fn queued(&self) -> &[usize] {
        self.nodes
            .iter()
            .find_map(|n| match &n.action {
                Action::Queue { files, .. } => Some(files.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// A pack the queue makes during the run, `k` counting from 1: planned as the planner plans
    /// packs, with the index, database and log folder that follow the planned workers'.
    pub fn queue_pack(&self, plan: &Plan, k: usize, files: &[usize]) -> WorkerPlan {
        let index = self.workers.len() + k - 1;
        let opts = PlanOptions {
            run_id: self.run_id.clone(),
            args: self.args.clone(),
            ..Default::default()
        };
        let members: Vec<TestFile> = files
            .iter()
            .filter_map(|&f| self.workers.get(f))
            .map(|w| TestFile {
                path: w.file.clone(),
                stem: w.stem.clone(),
                size: 0,
            })
            .collect();
        let refs: Vec<&TestFile> = members.iter().collect();
        let mut w = pack_plan(
            plan,
            &opts,
            &self.template_name,
            (index, k - 1),
            &refs,
            files.to_vec(),
            None,
        );
        w.stem = format!("queue-{}", w.stem);
        w.log_dir = plan.report_dir.join("workers").join(&w.stem);
        let planned = AttemptPaths::in_dir(&w.log_dir);
        w.junit = planned.junit.clone();
        let vars = WorkerVars {
            plan,
            run_id: &self.run_id,
            index,
            file: &w.file,
            stem: &w.stem,
            db_name: &w.attempts[0].db_name,
            log_dir: &w.log_dir,
            junit: &planned.junit,
            artifacts: &planned.artifacts,
            files: Some(&members.iter().map(|m| m.path.clone()).collect::<Vec<_>>()),
        };
        w.attempts[0].commands = vars.commands(&self.args);
        w.attempts[0].paths = planned;
        w
    }

    /// What the engine runs as workers (files alone and packs), in start order.
    pub fn units(&self) -> impl Iterator<Item = &WorkerPlan> {
        self.nodes.iter().filter_map(|n| match n.action {
            Action::Worker { index } | Action::Pack { index } => self.workers.get(index),
            _ => None,
        })
    }

    /// The files (a pack or a part is none), by index: the rows of the reports.
    pub fn files(&self) -> impl Iterator<Item = &WorkerPlan> {
        self.workers
            .iter()
            .filter(|w| w.pack.is_empty() && w.part.is_none())
    }

    /// The test file worker `index` runs (a part's is its file's); None for a pack.
    pub fn file_of(&self, index: usize) -> Option<&str> {
        let w = self.workers.get(index)?;
        match &w.part {
            Some(p) => self.workers.get(p.file).map(|f| f.file.as_str()),
            None if w.pack.is_empty() => Some(&w.file),
            None => None,
        }
    }

    /// What reports a result as it finishes: every file but a split one, and the parts.
    pub fn finishing(&self) -> impl Iterator<Item = &WorkerPlan> {
        self.workers
            .iter()
            .filter(|w| w.pack.is_empty() && w.parts.is_empty())
    }
}

/// Options from the command line that shape the DAG.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub run_id: String,
    pub args: Vec<String>,
    pub shard: Option<Shard>,
    /// Only these files (e.g. `--last-failed`); None = all.
    pub only: Option<Vec<String>>,
    /// Recorded durations: the order of the workers and the balance of the shards.
    pub timings: Timings,
    /// The machine's cores (`units = "auto"` packs for them).
    pub cores: usize,
    /// The test ids of the files `units = "auto"` may split ([`split_candidates`]).
    pub collected: parts::Collected,
}

/// Builds the DAG. Workers are ordered longest-predicted first (ties by path), which is also the
/// order the engine starts them in when `jobs` limits how many run at once.
pub fn build(plan: &Plan, opts: &PlanOptions) -> Dag {
    let template = template_name(plan);
    let Workers {
        workers,
        units,
        queue,
        split,
        packing,
        parting,
        weighed,
        chosen_wall,
    } = worker_plans(plan, opts, &template);
    let mut nodes = Nodes::default();
    let prepare = setup_nodes(&mut nodes, plan, opts, &template);
    let worker_ids: Vec<usize> = units
        .iter()
        .map(|&u| {
            let w = &workers[u];
            let action = if w.pack.is_empty() {
                Action::Worker { index: w.index }
            } else {
                Action::Pack { index: w.index }
            };
            nodes.push(
                format!("worker-{}", w.stem),
                Stage::Worker,
                vec![prepare],
                false,
                action,
            )
        })
        .collect();
    let mut worker_ids = worker_ids;
    if !queue.is_empty() {
        let action = Action::Queue {
            files: queue,
            lanes: units::queue_lanes(plan.run.jobs.bound(), opts.cores),
        };
        worker_ids.push(nodes.push("queue".into(), Stage::Worker, vec![prepare], false, action));
    }
    teardown_nodes(&mut nodes, plan, worker_ids);
    let known: Vec<Duration> = units.iter().filter_map(|&u| workers[u].predicted).collect();
    // One prediction per run: where `auto` packed or split, the one it chose them by; each with
    // what the run takes before its first worker.
    let setup = Duration::from_secs_f64(opts.timings.setup.unwrap_or_default().max(0.0));
    let predicted_wall = chosen_wall
        .or_else(|| simulated_wall(&workers, &units, plan, opts))
        .or_else(|| {
            (known.len() == units.len() && !known.is_empty())
                .then(|| predict_makespan(&known, plan.run.jobs.bound()))
        })
        .map(|w| w + setup);
    let weighed = weighed
        .into_iter()
        .map(|w| units::Weighed {
            wall: w.wall + setup.as_secs_f64(),
            ..w
        })
        .collect();
    Dag {
        run_id: opts.run_id.clone(),
        nodes: nodes.0,
        workers,
        args: opts.args.clone(),
        template_name: template,
        jobs: plan.run.jobs,
        predicted_wall,
        split,
        packing,
        parting,
        weighed,
    }
}

/// The run's wall as the cost model simulates it, when every unit is a file whose costs are
/// recorded (packs and parts come with the prediction they were chosen by).
fn simulated_wall(
    workers: &[WorkerPlan],
    units: &[usize],
    plan: &Plan,
    opts: &PlanOptions,
) -> Option<Duration> {
    let costs: Option<Vec<cost::UnitCost>> = units
        .iter()
        .map(|&u| {
            let w = &workers[u];
            let alone = w.pack.is_empty() && w.part.is_none();
            let c = cost::Cost::of(&opts.timings, &w.file).filter(|_| alone)?;
            Some(cost::UnitCost {
                file: None,
                cost: c,
            })
        })
        .collect();
    let costs = costs.filter(|c| !c.is_empty())?;
    let wall = cost::predict_wall(&costs, plan.run.jobs.into(), opts.cores);
    Some(Duration::from_secs_f64(wall.max(0.0)))
}

/// The workers of a run: every file's (indexed), the packs, the parts, and the order units
/// start in.
struct Workers {
    workers: Vec<WorkerPlan>,
    /// Indexes into `workers` of what runs as a worker (files alone, packs, parts), longest first.
    units: Vec<usize>,
    /// Indexes of the files the queue runs.
    queue: Vec<usize>,
    split: Option<Split>,
    packing: Option<String>,
    parting: Option<String>,
    weighed: Vec<units::Weighed>,
    /// With packs or parts, the run's wall as `units = "auto"` predicted it when choosing them.
    chosen_wall: Option<Duration>,
}

/// The files of a run, longest predicted first, and how `units = "auto"` groups them.
struct Choice {
    ordered: Vec<TestFile>,
    predicted: Vec<Option<Duration>>,
    split: Option<Split>,
    packing: Option<units::Packing>,
    parting: Option<parts::Parting>,
}

/// The files this run takes (`--last-failed`, then this shard of the split), longest predicted
/// first (ties by path); with `units = "auto"`, the packs and the splits, a file's test ids
/// given by `ids`.
fn choose(plan: &Plan, opts: &PlanOptions, ids: parts::IdsOf) -> Choice {
    let (files, split) = pick_files(plan, opts);
    let predicted = opts.timings.predict(&files);
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        predicted[b]
            .cmp(&predicted[a])
            .then_with(|| files[a].path.cmp(&files[b].path))
    });
    let ordered: Vec<TestFile> = order.iter().map(|&i| files[i].clone()).collect();
    let predicted: Vec<Option<Duration>> = order.iter().map(|&i| predicted[i]).collect();
    let mut choice = Choice {
        ordered,
        predicted,
        split,
        packing: None,
        parting: None,
    };
    if plan.run.units != crate::plan::Units::Auto {
        return choice;
    }
    let refs: Vec<&TestFile> = choice.ordered.iter().collect();
    let packing = units::choose(plan, &refs, &opts.timings, opts.cores);
    let costs = unit_costs(&choice, &packing, &opts.timings);
    let n = refs.len();
    let footing = parts::Footing {
        wall: packing.wall,
        packs: packing.packs.len(),
        measured: &|units, packs, parts| opts.timings.measured(n, units, packs, parts),
        underpredicted: &|units| opts.timings.underpredicted(n, units),
    };
    choice.parting = Some(parts::choose(
        plan,
        &refs,
        &costs,
        &opts.timings,
        ids,
        opts.cores,
        &footing,
    ));
    choice.packing = Some(packing);
    choice
}

/// What each unit (a file alone, a pack) is predicted to cost, before any split.
fn unit_costs(choice: &Choice, packing: &units::Packing, timings: &Timings) -> Vec<cost::UnitCost> {
    let cost =
        |i: usize| cost::Cost::or_predicted(timings, &choice.ordered[i].path, choice.predicted[i]);
    let packed: Vec<usize> = packing.packs.iter().flatten().copied().collect();
    let mut out: Vec<cost::UnitCost> = (0..choice.ordered.len())
        .filter(|i| !packed.contains(i))
        .map(|i| cost::UnitCost {
            file: Some(i),
            cost: cost(i),
        })
        .collect();
    out.extend(packing.packs.iter().map(|p| cost::UnitCost {
        file: None,
        cost: cost::Cost::pack(&p.iter().map(|&i| cost(i)).collect::<Vec<_>>()),
    }));
    out
}

/// The files `units = "auto"` would split, judged on their recorded test ids: the ones whose
/// tests the run collects before it plans.
pub fn split_candidates(plan: &Plan, opts: &PlanOptions) -> Vec<String> {
    let recorded = |path: &str| {
        opts.timings
            .cases(path)
            .map(|c| Ok(c.keys().cloned().collect()))
    };
    let choice = choose(plan, opts, &recorded);
    let Some(parting) = choice.parting else {
        return Vec::new();
    };
    parting
        .parts
        .keys()
        .map(|&i| choice.ordered[i].path.clone())
        .collect()
}

/// Every worker of the run. Indexes: files alone first, then the packs, the parts, the packed
/// files and the split files (rows merged from their parts).
fn worker_plans(plan: &Plan, opts: &PlanOptions, template: &str) -> Workers {
    let collected = |path: &str| opts.collected.get(path).cloned();
    let choice = choose(plan, opts, &collected);
    let packs: Vec<Vec<usize>> = choice
        .packing
        .as_ref()
        .map(|p| p.packs.clone())
        .unwrap_or_default();
    let splits = choice
        .parting
        .as_ref()
        .map(|p| p.parts.clone())
        .unwrap_or_default();
    let queued: Vec<usize> = choice
        .packing
        .as_ref()
        .map(|p| p.queue.clone())
        .unwrap_or_default();
    let packed: Vec<usize> = packs.iter().flatten().copied().collect();
    let alone: Vec<usize> = (0..choice.ordered.len())
        .filter(|i| !packed.contains(i) && !splits.contains_key(i) && !queued.contains(i))
        .collect();
    let n_parts: usize = splits.values().map(Vec::len).sum();
    // Worker index of each ordered file.
    let mut index_of = vec![0; choice.ordered.len()];
    let mut next = 0;
    for &i in &alone {
        index_of[i] = next;
        next += 1;
    }
    next += packs.len() + n_parts;
    for &i in packed.iter().chain(splits.keys()).chain(&queued) {
        index_of[i] = next;
        next += 1;
    }
    let file = |i: usize| {
        let f = &choice.ordered[i];
        file_plan(
            plan,
            opts,
            template,
            index_of[i],
            f,
            choice.predicted[i],
            None,
        )
    };
    let mut workers: Vec<WorkerPlan> = alone.iter().map(|&i| file(i)).collect();
    for (k, pack) in packs.iter().enumerate() {
        let members: Vec<usize> = pack.iter().map(|&i| index_of[i]).collect();
        let files: Vec<&TestFile> = pack.iter().map(|&i| &choice.ordered[i]).collect();
        let time = choice
            .packing
            .as_ref()
            .and_then(|p| p.predicted.get(k).copied());
        let index = workers.len();
        let pack = pack_plan(plan, opts, template, (index, k), &files, members, time);
        workers.push(pack);
    }
    for (&i, file_parts) in &splits {
        for (n, p) in file_parts.iter().enumerate() {
            let part = PartOf {
                file: index_of[i],
                number: n + 1,
                count: file_parts.len(),
                tests: p.ids.clone(),
            };
            let f = &choice.ordered[i];
            let index = workers.len();
            workers.push(file_plan(
                plan,
                opts,
                template,
                index,
                f,
                Some(p.predicted),
                Some(part),
            ));
        }
    }
    for (k, pack) in packs.iter().enumerate() {
        for &i in pack {
            let mut w = file(i);
            w.in_pack = Some(alone.len() + k);
            workers.push(w);
        }
    }
    for &i in splits.keys() {
        let mut w = file(i);
        w.parts = (0..workers.len())
            .filter(|&p| workers[p].part.as_ref().is_some_and(|o| o.file == w.index))
            .collect();
        workers.push(w);
    }
    let queue: Vec<usize> = queued.iter().map(|&i| index_of[i]).collect();
    workers.extend(queued.iter().map(|&i| file(i)));
    let units = start_order(
        &mut workers,
        alone.len() + packs.len() + n_parts,
        plan,
        opts,
    );
    let chosen_wall = choice
        .parting
        .as_ref()
        .filter(|_| !packs.is_empty() || !splits.is_empty())
        .map(|p| Duration::from_secs_f64(p.wall.max(0.0)));
    let weighed = choice
        .packing
        .as_ref()
        .map(|p| p.weighed.clone())
        .unwrap_or_default();
    Workers {
        workers,
        units,
        queue,
        split: choice.split,
        packing: choice.packing.map(|p| p.why),
        parting: choice.parting.map(|p| p.why),
        weighed,
        chosen_wall,
    }
}

/// The first `n` workers (the units) longest predicted first; with more of them at once than
/// cores, each one's CPU priority by its slack, and the critical one (no slack) first.
fn start_order(
    workers: &mut [WorkerPlan],
    n: usize,
    plan: &Plan,
    opts: &PlanOptions,
) -> Vec<usize> {
    let mut units: Vec<usize> = (0..n).collect();
    units.sort_by(|&a, &b| {
        workers[b]
            .predicted
            .cmp(&workers[a].predicted)
            .then(a.cmp(&b))
    });
    let at_once = if plan.run.jobs.bound() == 0 {
        units.len()
    } else {
        plan.run.jobs.bound().min(units.len())
    };
    if at_once > opts.cores.max(1) {
        // Slack is judged on the tests' time: recorded start-ups are inflated by whatever ran
        // beside them, and so squeeze every unit's slack towards none.
        let tests: Option<Vec<Duration>> = units
            .iter()
            .map(|&u| unit_tests(&workers[u], workers, &opts.timings))
            .collect();
        let basis: Vec<Option<Duration>> = match tests {
            Some(t) => t.into_iter().map(Some).collect(),
            None => units.iter().map(|&u| workers[u].predicted).collect(),
        };
        // Where every unit's costs are known, the model says whether the critical unit's
        // priority pays (it does not when others are nearly as long).
        let costs: Option<Vec<cost::UnitCost>> = units
            .iter()
            .map(|&u| {
                unit_cost(&workers[u], workers, &opts.timings)
                    .map(|cost| cost::UnitCost { file: None, cost })
            })
            .collect();
        if costs.is_some_and(|c| !cost::predict(&c, plan.run.jobs.into(), opts.cores).1) {
            return units;
        }
        let nice = slack_priorities(&basis);
        for (&u, nice) in units.iter().zip(&nice) {
            workers[u].nice = *nice;
        }
        // Only a critical unit the others yield to is waited for (`RunCx::critical_unit`).
        let lowered = nice.iter().any(|&n| n > 0);
        if let Some(first) = critical_of(&basis).filter(|_| lowered) {
            wait_for_critical(workers, &units, &basis, first);
            units[..=first].rotate_right(1);
        }
    }
    units
}

/// A unit's predicted cost: a file's, or a pack's of its files'; None for a part (its cost is
/// its file's share, which the parts were chosen by) or a file not timed yet.
fn unit_cost(w: &WorkerPlan, workers: &[WorkerPlan], timings: &Timings) -> Option<cost::Cost> {
    if w.part.is_some() {
        return None;
    }
    if w.pack.is_empty() {
        return cost::Cost::of(timings, &w.file);
    }
    let members: Option<Vec<cost::Cost>> = w
        .pack
        .iter()
        .map(|&f| cost::Cost::of(timings, &workers.get(f)?.file))
        .collect();
    Some(cost::Cost::pack(&members?))
}

/// The critical unit among units in start order, by their tests' times (else predicted totals):
/// the first within 5 % of the longest. A pack is sized to the longest file, so a near tie is
/// common; the unit started first (the longest predicted, start-up included) takes it, rather
/// than whichever tests' sum came out a hair longer.
fn critical_of(basis: &[Option<Duration>]) -> Option<usize> {
    let longest = basis.iter().flatten().max()?;
    basis
        .iter()
        .position(|b| b.is_some_and(|b| b.as_secs_f64() >= 0.95 * longest.as_secs_f64()))
}

/// Waiting for the critical unit's start-up costs a unit about that start-up: only units whose
/// tests take at most half the critical unit's wait (`after_critical`). Recorded start-ups are
/// inflated by whatever ran beside them, so the tests' times alone judge.
fn wait_for_critical(
    workers: &mut [WorkerPlan],
    units: &[usize],
    basis: &[Option<Duration>],
    first: usize,
) {
    let critical = units[first];
    for (i, &u) in units.iter().enumerate() {
        let half = basis[first].zip(basis[i]).is_some_and(|(c, b)| b * 2 <= c);
        workers[u].after_critical = u != critical && half;
    }
}

/// A unit's recorded tests' time: a file's, a pack's files', a part's tests' (a test not timed
/// yet counted at its file's mean).
fn unit_tests(w: &WorkerPlan, workers: &[WorkerPlan], timings: &Timings) -> Option<Duration> {
    let secs = if let Some(p) = &w.part {
        let cases = timings.cases(&workers.get(p.file)?.file)?;
        let mean = cases.values().sum::<f64>() / cases.len() as f64;
        p.tests
            .iter()
            .map(|t| cases.get(t).copied().unwrap_or(mean))
            .sum()
    } else if !w.pack.is_empty() {
        w.pack
            .iter()
            .map(|&f| timings.split_of(&workers.get(f)?.file).map(|s| s.0))
            .sum::<Option<f64>>()?
    } else {
        timings.split_of(&w.file)?.0
    };
    Some(Duration::from_secs_f64(secs))
}

/// With more workers than cores, every start-up competes for the CPU, and the longest unit's
/// delays the whole run. It keeps the runner's priority and every other unit yields to it: nice 5,
/// plus its slack in tenths (how much shorter than the longest it is predicted to be), up to 15.
/// Priority to the longest keeps every core busy, so the others' start-ups end about when they
/// would have under fair sharing; a unit nearly as long (a pack, sized to the longest) yields
/// too, or its start-up halves the critical one's CPU. Without a prediction for every worker,
/// all run at the same priority.
pub fn slack_priorities(predicted: &[Option<Duration>]) -> Vec<i32> {
    let known: Option<Vec<f64>> = predicted
        .iter()
        .map(|p| p.map(|d| d.as_secs_f64()))
        .collect();
    let Some(known) = known else {
        return vec![0; predicted.len()];
    };
    let longest = known.iter().copied().fold(0.0, f64::max);
    if longest <= 0.0 {
        return vec![0; predicted.len()];
    }
    let critical = critical_of(predicted);
    known
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let slack = (longest - p) / longest;
            if Some(i) == critical {
                0
            } else {
                5 + (slack * 10.0).ceil().min(10.0) as i32
            }
        })
        .collect()
}

/// The files this run takes: `--last-failed`, then this shard of the split.
fn pick_files(plan: &Plan, opts: &PlanOptions) -> (Vec<TestFile>, Option<Split>) {
    let mut files = plan.files.clone();
    if let Some(only) = &opts.only {
        files.retain(|f| only.contains(&f.path));
    }
    let split = opts
        .shard
        .map(|shard| split_files(&files, &opts.timings, shard));
    if let Some(split) = &split {
        let mine: Vec<&str> = split.mine().collect();
        files.retain(|f| mine.contains(&f.path.as_str()));
    }
    (files, split)
}

/// A file's own worker, or one part of it: its attempts (first pass and retries), each with its
/// database. A part runs its tests (as the test command's `{file}` words), in a folder of its
/// own below the file's.
fn file_plan(
    plan: &Plan,
    opts: &PlanOptions,
    template: &str,
    index: usize,
    f: &TestFile,
    predicted: Option<Duration>,
    part: Option<PartOf>,
) -> WorkerPlan {
    let mut log_dir = plan.report_dir.join("workers").join(&f.stem);
    let (mut file, mut stem) = (f.path.clone(), f.stem.clone());
    if let Some(p) = &part {
        log_dir.push(format!("part-{}", p.number));
        file = format!("{} [part {}/{}]", f.path, p.number, p.count);
        stem = format!("{}.part-{}", f.stem, p.number);
    }
    let attempts = (0..=plan.run.retries)
        .map(|retry| {
            let db_name = worker_db_name(template, &opts.run_id, index, retry);
            let paths = AttemptPaths::in_dir(&log_dir);
            let vars = WorkerVars {
                plan,
                run_id: &opts.run_id,
                index,
                file: &f.path,
                stem: &stem,
                db_name: &db_name,
                log_dir: &log_dir,
                junit: &paths.junit,
                artifacts: &paths.artifacts,
                files: part.as_ref().map(|p| p.tests.as_slice()),
            };
            let commands = vars.commands(&opts.args);
            AttemptPlan {
                db_name,
                commands,
                paths,
            }
        })
        .collect();
    WorkerPlan {
        index,
        file,
        stem,
        junit: log_dir.join(files::JUNIT),
        log_dir,
        predicted,
        attempts,
        pack: Vec::new(),
        in_pack: None,
        part,
        parts: Vec::new(),
        nice: 0,
        after_critical: false,
        size: f.size,
    }
}

/// A pack's worker: one attempt (a failed file is retried alone), its test command running every
/// file of the pack.
fn pack_plan(
    plan: &Plan,
    opts: &PlanOptions,
    template: &str,
    (index, k): (usize, usize),
    files: &[&TestFile],
    members: Vec<usize>,
    predicted: Option<Duration>,
) -> WorkerPlan {
    let mut stem = format!("pack-{}", k + 1);
    while plan.files.iter().any(|f| f.stem == stem) {
        stem.push('_');
    }
    let log_dir = plan.report_dir.join("workers").join(&stem);
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let db_name = worker_db_name(template, &opts.run_id, index, 0);
    let planned = AttemptPaths::in_dir(&log_dir);
    let vars = WorkerVars {
        plan,
        run_id: &opts.run_id,
        index,
        file: &paths.join(" "),
        stem: &stem,
        db_name: &db_name,
        log_dir: &log_dir,
        junit: &planned.junit,
        artifacts: &planned.artifacts,
        files: Some(&paths),
    };
    let commands = vars.commands(&opts.args);
    WorkerPlan {
        index,
        file: paths.join(", "),
        stem,
        junit: log_dir.join(files::JUNIT),
        log_dir,
        predicted,
        attempts: vec![AttemptPlan {
            db_name,
            commands,
            paths: planned,
        }],
        pack: members,
        in_pack: None,
        part: None,
        parts: Vec::new(),
        nice: 0,
        after_critical: false,
        size: files.iter().map(|f| f.size).sum(),
    }
}

/// The DAG's nodes as they are added; a node's id is its position.
#[derive(Default)]
struct Nodes(Vec<Node>);

impl Nodes {
    fn push(
        &mut self,
        id: String,
        stage: Stage,
        deps: Vec<usize>,
        always: bool,
        action: Action,
    ) -> usize {
        self.0.push(Node {
            id,
            stage,
            deps,
            always,
            action,
        });
        self.0.len() - 1
    }

    fn has(&self, id: &str) -> bool {
        self.0.iter().any(|n| n.id == id)
    }
}

/// Setup commands in order, the throwaway cluster if there is no template URL, then the
/// template's preparation. Returns the preparation's node.
fn setup_nodes(nodes: &mut Nodes, plan: &Plan, opts: &PlanOptions, template: &str) -> usize {
    let mut last: Option<usize> = None;
    for (i, s) in plan.setup.iter().enumerate() {
        let (command, env) = commands::setup_command(plan, &opts.run_id, &s.command, &s.env);
        let action = Action::Setup {
            command,
            creates: s.creates.clone(),
            env,
        };
        let id = format!("setup-{}", i + 1);
        last = Some(nodes.push(id, Stage::Setup, last.into_iter().collect(), false, action));
    }
    if plan.database.template.is_none() {
        let deps = last.into_iter().collect();
        last = Some(nodes.push(
            "start-cluster".into(),
            Stage::Setup,
            deps,
            false,
            Action::StartCluster {
                keep: plan.keeps_cluster(),
            },
        ));
    }
    let action = prepare_action(plan, opts, template);
    nodes.push(
        "prepare-template".into(),
        Stage::Setup,
        last.into_iter().collect(),
        false,
        action,
    )
}

/// Prepare, filled for the database it runs in: a fresh build database when fingerprinted.
fn prepare_action(plan: &Plan, opts: &PlanOptions, template: &str) -> Action {
    let build =
        (!plan.database.fingerprint.is_empty()).then(|| build_db_name(template, &opts.run_id));
    let target = build.as_deref().unwrap_or(template);
    Action::PrepareTemplate(PreparePlan {
        template: template.to_string(),
        commands: prepare_commands(plan, &opts.run_id, target),
        build,
    })
}

/// Retries (if any), then the report, the cleanup, the pool's refill and the cluster's stop:
/// all `always`, so teardown runs whatever happened before.
fn teardown_nodes(nodes: &mut Nodes, plan: &Plan, worker_ids: Vec<usize>) {
    let mut deps = worker_ids;
    if plan.run.retries > 0 {
        let action = Action::RetryFailed {
            retries: plan.run.retries,
        };
        deps = vec![nodes.push("retry-failed".into(), Stage::Worker, deps, true, action)];
    }
    let report = nodes.push("report".into(), Stage::Teardown, deps, true, Action::Report);
    let cleanup = nodes.push(
        "cleanup".into(),
        Stage::Teardown,
        vec![report],
        true,
        Action::Cleanup {
            keep: plan.database.keep,
        },
    );
    // The cluster stops after the refill: the pool is cloned into it.
    let mut last = cleanup;
    if plan.has_pool() {
        let action = Action::RefillPool {
            size: plan.database.pool,
        };
        last = nodes.push(
            "refill-pool".into(),
            Stage::Teardown,
            vec![cleanup],
            true,
            action,
        );
    }
    if nodes.has("start-cluster") {
        nodes.push(
            "stop-cluster".into(),
            Stage::Teardown,
            vec![last],
            true,
            Action::StopCluster {
                keep: plan.keeps_cluster(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load::{load, LoadOptions};

    /// A plan whose commands use every kind of placeholder, with one retry.
    fn plan() -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/test_a.py"), "").unwrap();
        let toml = r#"
[tests]
include = ["tests/test_*.py"]
[database]
template = "postgresql://postgres:pw@127.0.0.1:5432/app"
prepare = ["migrate --db {db_name} --url {db_url} --run {run}"]
fingerprint = ["tests/*.py"]
[server]
command = ["serve", "--port={port}", "{args}"]
env = { DATABASE_URL = "{db_url}" }
ready = "http://127.0.0.1:{port}/healthz"
[test]
command = ["pytest", "{file}", "--junitxml={junit}", "--worker={worker}", "{args}"]
[run]
retries = 1
"#;
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, toml).unwrap();
        let plan = load(&path, &LoadOptions::default()).unwrap();
        (dir, plan)
    }

    /// `[test] collect` and the `[test] env` it gets name the template: settings that parse
    /// DATABASE_URL at import collect; entries that need a worker (`{port}`) stay out.
    #[test]
    fn collect_gets_the_templates_url_and_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/test_a.py"), "").unwrap();
        let toml = r#"
[tests]
include = ["tests/test_*.py"]
[database]
template = "${TEMPLATE:-}"
[test]
command = ["pytest", "{file}", "--junitxml={junit}"]
env = { DATABASE_URL = "{db_url}", POSTGRES_DB = "{db_name}", BASE_URL = "http://127.0.0.1:{port}" }
collect = ["pytest", "--collect-only", "{file}", "--ds={db_name}"]
"#;
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, toml).unwrap();
        let url = "postgresql://postgres:pw@127.0.0.1:5432/app";
        for (template, want_url, want_name) in [
            (Some(url), url, "app"),
            (
                None,
                "postgresql://postgres@127.0.0.1:1/e2e_template",
                "e2e_template",
            ),
        ] {
            let env = move |n: &str| (n == "TEMPLATE").then(|| template.unwrap_or("").to_string());
            let plan = load(&path, &LoadOptions { env: &env }).unwrap();
            let (argv, env) = collect_command(&plan, "tests/test_a.py", &[]).unwrap();
            assert_eq!(argv[3], format!("--ds={want_name}"));
            let mut env = env;
            env.sort();
            assert_eq!(
                env,
                [
                    ("DATABASE_URL".to_string(), want_url.to_string()),
                    ("POSTGRES_DB".to_string(), want_name.to_string())
                ]
            );
        }
    }

    /// The DAG holds every command resolved but for the port and the database URL, per attempt;
    /// the run fills those two and nothing else.
    #[test]
    fn resolves_everything_but_the_run_time_values() {
        let (_dir, plan) = plan();
        let opts = PlanOptions {
            run_id: "ab12cd34".into(),
            args: vec!["-k".into(), "x y".into()],
            ..Default::default()
        };
        let dag = build(&plan, &opts);
        let w = &dag.workers[0];
        assert_eq!(w.attempts.len(), 2);
        assert_eq!(w.attempt(2).unwrap().db_name, "app_ab12cd34_0r1");
        assert!(w.attempt(3).is_none() && w.attempt(0).is_none());
        let test: Vec<String> = w
            .attempt(1)
            .unwrap()
            .commands
            .test
            .iter()
            .map(|t| t.source())
            .collect();
        let junit = w.log_dir.join("junit.xml").display().to_string();
        assert_eq!(
            test,
            [
                "pytest",
                "tests/test_a.py",
                &format!("--junitxml={junit}"),
                "--worker=0",
                "-k",
                "x y"
            ]
        );
        let server = w.attempt(1).unwrap().commands.server.as_ref().unwrap();
        assert_eq!(server.command[1].source(), "--port={port}");
        assert_eq!(server.env[0].1.source(), "{db_url}");

        let rt = RunTime {
            port: "4100",
            template_url: "postgresql://postgres:pw@127.0.0.1:5432/app",
            service_ports: &[],
        };
        let second = w.attempt(2).unwrap();
        let filled = rt.worker(&second.commands, &second.db_name);
        let server = filled.server.unwrap();
        assert_eq!(server.command, ["serve", "--port=4100", "-k", "x y"]);
        assert_eq!(
            server.env[0].1,
            "postgresql://postgres:pw@127.0.0.1:5432/app_ab12cd34_0r1"
        );
        assert_eq!(server.ready, "http://127.0.0.1:4100/healthz");

        let Some(Action::PrepareTemplate(p)) = dag
            .nodes
            .iter()
            .map(|n| &n.action)
            .find(|a| matches!(a, Action::PrepareTemplate(_)))
        else {
            panic!("no prepare step")
        };
        assert_eq!(p.target(), "app_next_ab12cd34");
        let filled = rt.prepare(&p.commands, p.target());
        assert_eq!(
            filled.commands[0],
            [
                "migrate",
                "--db",
                "app_next_ab12cd34",
                "--url",
                "postgresql://postgres:pw@127.0.0.1:5432/app_next_ab12cd34",
                "--run",
                "ab12cd34"
            ]
        );
    }

    /// The kept cluster's pool is cloned into it: the cluster stops only after the refill.
    #[test]
    fn the_kept_cluster_stops_after_its_pool_is_refilled() {
        let (_dir, mut plan) = plan();
        plan.database.template = None;
        plan.database.pool = 2;
        let dag = build(&plan, &PlanOptions::default());
        let id = |name: &str| dag.nodes.iter().position(|n| n.id == name).unwrap();
        let stop = &dag.nodes[id("stop-cluster")];
        assert!(matches!(stop.action, Action::StopCluster { keep: true }));
        assert_eq!(stop.deps, vec![id("refill-pool")]);
    }

    /// With more workers at once than cores, the unit with the most tests' time starts first
    /// (not the one with the longest recorded total, inflated by a start-up), and only units
    /// with at most half its tests' time wait for its start-up.
    #[test]
    fn the_critical_unit_is_judged_on_its_tests_and_only_units_with_slack_wait() {
        let (dir, _) = plan();
        for stem in ["test_b", "test_c"] {
            std::fs::write(dir.path().join(format!("tests/{stem}.py")), "").unwrap();
        }
        let mut plan = load(&dir.path().join("plan.toml"), &LoadOptions::default()).unwrap();
        // Every file at once: more than the one core.
        plan.run.jobs = crate::plan::Jobs::Fixed(0);
        let mut timings = Timings::default();
        let secs = Duration::from_secs_f64;
        // test_a: a heavy start-up, few tests; test_b: the most tests; test_c: close to test_b.
        timings.record("tests/test_a.py", Some(secs(9.0)), Some(secs(3.0)));
        timings.record("tests/test_b.py", Some(secs(10.0)), Some(secs(8.0)));
        timings.record("tests/test_c.py", Some(secs(8.0)), Some(secs(5.0)));
        // Tests that wait (on a browser, a server) use no CPU, nor does test_a's start-up (it
        // waits for a service): test_b's start-up first lets its long wait overlap the others'
        // start-ups, which is when priority pays (were all CPU-bound on one core, it would
        // change nothing, and none would be given).
        for (file, cpu) in [("test_a", 1.0), ("test_b", 2.0), ("test_c", 3.0)] {
            timings.record_cpu(&format!("tests/{file}.py"), cpu, Some(cpu));
        }
        let opts = PlanOptions {
            timings,
            cores: 1,
            ..Default::default()
        };
        let dag = build(&plan, &opts);
        let units: Vec<(&str, i32, bool)> = dag
            .units()
            .map(|w| (w.file.as_str(), w.nice, w.after_critical))
            .collect();
        assert_eq!(
            units,
            [
                ("tests/test_b.py", 0, false),
                ("tests/test_a.py", 12, true),
                ("tests/test_c.py", 9, false)
            ]
        );
    }

    /// Two units nearly as long as each other, their tests on the CPU: priority to the one with
    /// the most tests would only make the other end later, so every unit runs at the runner's
    /// priority and none waits.
    #[test]
    fn no_unit_yields_when_another_is_nearly_as_long() {
        let (dir, _) = plan();
        for stem in ["test_b", "test_c"] {
            std::fs::write(dir.path().join(format!("tests/{stem}.py")), "").unwrap();
        }
        let plan = load(&dir.path().join("plan.toml"), &LoadOptions::default()).unwrap();
        let mut timings = Timings::default();
        let secs = Duration::from_secs_f64;
        for (file, tests) in [("test_a", 8.0), ("test_b", 7.5), ("test_c", 2.0)] {
            let path = format!("tests/{file}.py");
            timings.record(&path, Some(secs(tests + 1.0)), Some(secs(tests)));
            timings.record_cpu(&path, tests + 1.0, Some(1.0));
        }
        let opts = PlanOptions {
            timings,
            cores: 2,
            ..Default::default()
        };
        let dag = build(&plan, &opts);
        let units: Vec<(i32, bool)> = dag.units().map(|w| (w.nice, w.after_critical)).collect();
        assert_eq!(units, [(0, false); 3]);
    }

    /// Eleven short files and a long one (`tests/test_long.py`) under `units = "auto"`.
    fn shorts_and_long() -> (tempfile::TempDir, Plan, Vec<String>) {
        let (dir, _) = plan();
        let shorts: Vec<String> = (1..=11).map(|i| format!("tests/test_s{i:02}.py")).collect();
        for f in shorts.iter().chain([&"tests/test_long.py".to_string()]) {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::remove_file(dir.path().join("tests/test_a.py")).unwrap();
        let mut plan = load(&dir.path().join("plan.toml"), &LoadOptions::default()).unwrap();
        plan.run.units = crate::plan::Units::Auto;
        (dir, plan, shorts)
    }

    /// The timings of `shorts_and_long`'s files: the long file, and short files whose start-ups
    /// were stretched to 10 s by running beside each other, with the 1.5 s of CPU each used.
    fn stretched_timings(shorts: &[String]) -> Timings {
        let mut timings = Timings::default();
        let secs = Duration::from_secs_f64;
        timings.record("tests/test_long.py", Some(secs(8.0)), Some(secs(4.2)));
        timings.record_cpu("tests/test_long.py", 1.6, None);
        for f in shorts {
            timings.record(f, Some(secs(11.0)), Some(secs(1.05)));
            timings.record_cpu(f, 1.5, None);
        }
        timings
    }

    /// The DAG `timings` make of `plan` on two cores.
    fn on_two_cores(plan: &Plan, timings: &Timings) -> Dag {
        let opts = PlanOptions {
            timings: timings.clone(),
            cores: 2,
            ..Default::default()
        };
        build(plan, &opts)
    }

    /// Eleven short files whose start-ups were stretched to 10 s by running beside each other,
    /// and a long file: judged by the 1.5 s of CPU each used, four packs shorter than the long
    /// file leave it the critical path (three as long as it would end after it: their tests
    /// wait for every start-up to be spread over the cores). Judged by the stretched start-ups
    /// (no CPU recorded), packs look costly and only two are made, each longer than the long
    /// file.
    #[test]
    fn packs_are_chosen_by_the_cpu_start_ups_use_not_their_stretched_time() {
        let (_dir, plan, shorts) = shorts_and_long();
        let packs = |cpu: bool| {
            let mut timings = Timings::default();
            let secs = Duration::from_secs_f64;
            timings.record("tests/test_long.py", Some(secs(8.0)), Some(secs(4.2)));
            for f in &shorts {
                timings.record(f, Some(secs(11.0)), Some(secs(1.05)));
            }
            if cpu {
                timings.record_cpu("tests/test_long.py", 1.6, None);
                for f in &shorts {
                    timings.record_cpu(f, 1.5, None);
                }
            }
            let opts = PlanOptions {
                timings,
                cores: 2,
                ..Default::default()
            };
            let dag = build(&plan, &opts);
            // The run's one prediction is the one the packs were chosen by (here the start-ups
            // spread over the cores, not the longest recorded total, 8 s).
            let why = dag.packing.clone().unwrap_or_default();
            let chosen: f64 = why
                .rsplit("predicted wall ")
                .next()
                .and_then(|w| w.trim_end_matches('s').parse().ok())
                .unwrap_or_default();
            let closing = dag.predicted_wall.map(|d| d.as_secs_f64());
            // Shown to a tenth (18.15 may show as either neighbour).
            assert!(
                closing.is_some_and(|c| (c - chosen).abs() <= 0.051),
                "{why}: {closing:?}"
            );
            let mut sizes: Vec<usize> = dag.units().map(|w| w.pack.len().max(1)).collect();
            sizes.sort_unstable();
            sizes
        };
        assert_eq!(packs(true), [1, 2, 3, 3, 3]);
        assert_eq!(packs(false), [1, 5, 6]);
    }

    /// Files whose tests take a little longer than their start-up (1.1×): alone when the last
    /// run had them alone, still packed when it had them packed, so that learnt times
    /// wobbling around the line do not flip the choice from run to run.
    #[test]
    fn a_file_near_the_line_stays_as_the_last_run_had_it() {
        let (_dir, plan, shorts) = shorts_and_long();
        let packs = |packed: Option<bool>| {
            let mut timings = Timings::default();
            let secs = Duration::from_secs_f64;
            timings.record("tests/test_long.py", Some(secs(8.0)), Some(secs(4.2)));
            timings.record_cpu("tests/test_long.py", 1.6, None);
            for f in &shorts {
                timings.record(f, Some(secs(2.1)), Some(secs(1.1)));
                timings.record_cpu(f, 2.1, Some(1.0));
                timings.files.get_mut(f.as_str()).unwrap().packed = packed;
            }
            let dag = on_two_cores(&plan, &timings);
            let packs = dag.units().filter(|w| w.pack.len() > 1).count();
            (packs, dag.packing.unwrap_or_default())
        };
        let (alone, why) = packs(Some(false));
        assert_eq!(alone, 0, "{why}");
        assert_eq!(packs(None).0, 0);
        let (packed, why) = packs(Some(true));
        assert!(packed > 0, "{why}");
    }

    /// The model picks its favourite; once a run of that shape took far longer than predicted,
    /// the next run weighs it by what it took and picks another, and a shape measured fastest
    /// keeps its place however the model flatters the others.
    #[test]
    fn an_option_measured_slower_than_predicted_is_weighed_by_what_it_took() {
        let (_dir, plan, shorts) = shorts_and_long();
        let mut timings = stretched_timings(&shorts);
        let shape = |timings: &Timings| {
            let dag = on_two_cores(&plan, timings);
            let packs = dag.units().filter(|w| w.pack.len() > 1).count();
            (dag.units().count(), packs, dag.packing.unwrap_or_default())
        };
        let ran = |units: usize, packs: usize, measured: f64| shards::RunWall {
            run_id: format!("r{units}"),
            predicted: Some(6.0),
            measured,
            units,
            files: 12,
            packs,
            parts: 0,
            complete: true,
        };
        let (units, packs, _) = shape(&timings);
        assert_eq!((units, packs), (5, 4), "the model's favourite");
        timings.runs.push(ran(units, packs, 30.0));
        let (second, second_packs, why) = shape(&timings);
        assert_ne!(second, units, "{why}");
        assert!(why.contains("30.0s as measured"), "{why}");
        // The second choice measured fast: it stays, though the model still prefers the first
        // shape's figure were it unmeasured.
        timings.runs.push(ran(second, second_packs, 5.0));
        timings.runs.push(ran(units, packs, 30.0));
        let (third, _, why) = shape(&timings);
        assert_eq!(third, second, "{why}");
        // Runs of another file set say nothing of this one's options.
        let mut other = Timings {
            runs: vec![ran(units, packs, 30.0)],
            ..timings.clone()
        };
        other.runs[0].files = 13;
        assert_eq!(shape(&other).0, units);
        // Nor does a run that stopped early (interrupted, fail-fast, a shard).
        let mut stopped = Timings {
            runs: vec![ran(units, packs, 30.0)],
            ..timings.clone()
        };
        stopped.runs[0].complete = false;
        assert_eq!(shape(&stopped).0, units);
    }

    /// A run with as many workers as the model's favourite, packed otherwise, took twice its
    /// prediction: the favourite, never run itself, is weighed at twice its figure too, and
    /// loses; an option of another number of workers is not touched.
    #[test]
    fn an_untried_option_is_scaled_by_how_runs_of_as_many_workers_were_misjudged() {
        let (_dir, plan, shorts) = shorts_and_long();
        let mut timings = stretched_timings(&shorts);
        let weigh = |timings: &Timings| {
            let dag = on_two_cores(&plan, timings);
            (dag.units().count(), dag.weighed.clone(), dag.packing)
        };
        let (favourite, before, _) = weigh(&timings);
        assert_eq!(favourite, 5);
        assert!(before.iter().all(|w| w.scaled.is_none()));
        timings.runs.push(shards::RunWall {
            run_id: "r".into(),
            predicted: Some(6.0),
            measured: 12.0,
            units: 5,
            files: 12,
            packs: 3,
            parts: 0,
            complete: true,
        });
        let (chosen, after, why) = weigh(&timings);
        let why = why.unwrap_or_default();
        for (b, a) in before.iter().zip(&after) {
            if a.units == 5 {
                assert_eq!(a.scaled, Some(2.0), "{why}");
                assert!((a.wall - 2.0 * b.wall).abs() < 0.01, "{why}");
                assert!(why.contains("as runs of 5 workers took"), "{why}");
            } else {
                assert_eq!((a.scaled, a.wall), (None, b.wall), "{why}");
            }
        }
        assert_ne!(chosen, 5, "{why}");
        // A run that took less than predicted makes nothing look better.
        timings.runs[0].measured = 3.0;
        assert!(weigh(&timings).1.iter().all(|w| w.scaled.is_none()));
    }

    /// An API-like suite on two cores: a long file of eight tests that leave the cores half idle
    /// (the model likes it split in two) and seven short files packed into one worker.
    fn long_and_packed() -> (tempfile::TempDir, Plan, Timings, parts::Collected) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        let shorts: Vec<String> = (1..=7).map(|i| format!("tests/test_s{i}.py")).collect();
        for f in shorts.iter().chain([&"tests/test_m.py".to_string()]) {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let toml = r#"
[tests]
include = ["tests/test_*.py"]
[database]
template = "postgresql://postgres@127.0.0.1:5432/app"
[test]
command = ["pytest", "{file}", "--junitxml={junit}"]
collect = ["pytest", "--collect-only", "-q", "{file}"]
[run]
units = "auto"
jobs = 0
"#;
        std::fs::write(dir.path().join("plan.toml"), toml).unwrap();
        let plan = load(&dir.path().join("plan.toml"), &LoadOptions::default()).unwrap();
        let mut timings = Timings::default();
        timings.record_alone("tests/test_m.py", 3.0, 3.0, 8.0, 4.0);
        let ids: Vec<String> = (0..8)
            .map(|i| format!("tests/test_m.py::test_{i}"))
            .collect();
        let cases: Vec<(String, f64)> = ids.iter().map(|id| (id.clone(), 1.0)).collect();
        timings.record_cases("tests/test_m.py", &cases);
        for f in &shorts {
            timings.record_alone(f, 5.0, 5.0, 0.3, 0.3);
            timings.files.get_mut(f.as_str()).unwrap().packed = Some(true);
        }
        timings.packs = Some(1);
        let collected = parts::Collected::from([("tests/test_m.py".to_string(), Ok(ids))]);
        (dir, plan, timings, collected)
    }

    /// A split is weighed on the packs' footing: against what the unsplit shape took, by what
    /// runs of its own shape took, or scaled as runs of as many workers were misjudged. Weighed
    /// by the model alone, a split that ran far slower than predicted was taken run after run.
    #[test]
    fn a_split_is_weighed_by_what_runs_took_as_the_packs_are() {
        let (_dir, plan, mut timings, collected) = long_and_packed();
        let split = |timings: &Timings| {
            let opts = PlanOptions {
                timings: timings.clone(),
                collected: collected.clone(),
                cores: 2,
                ..Default::default()
            };
            let dag = build(&plan, &opts);
            let parts = dag.workers.iter().filter(|w| w.part.is_some()).count();
            (parts, dag.parting.unwrap_or_default())
        };
        let (parts, why) = split(&timings);
        assert_eq!(parts, 2, "the model's favourite: {why}");
        let ran = |units: usize, parts: usize, predicted: f64, measured: f64| shards::RunWall {
            run_id: format!("r{units}.{parts}"),
            predicted: Some(predicted),
            measured,
            units,
            files: 8,
            packs: 1,
            parts,
            complete: true,
        };
        // The split ran: 20 s where 9 were predicted. Not taken again.
        let mut slow = timings.clone();
        slow.runs.push(ran(3, 2, 9.0, 20.0));
        let (parts, why) = split(&slow);
        assert_eq!(parts, 0, "{why}");
        assert!(why.contains("as measured"), "{why}");
        // A run of three workers packed otherwise took twice its prediction: the untried split
        // is scaled so, and loses to the unsplit shape.
        let mut misjudged = timings.clone();
        misjudged.runs.push(ran(3, 0, 9.0, 18.0));
        let (parts, why) = split(&misjudged);
        assert_eq!(parts, 0, "{why}");
        assert!(why.contains("as runs of 3 workers took"), "{why}");
        // The unsplit shape ran in 8 s: the split, predicted longer, must beat that.
        timings.runs.push(ran(2, 0, 12.0, 8.0));
        let (parts, why) = split(&timings);
        assert_eq!(parts, 0, "{why}");
        assert!(why.contains("against 8.0s unsplit"), "{why}");
    }

    #[test]
    fn slack_lowers_the_priority_of_all_but_the_longest() {
        let secs = |s: &[u64]| -> Vec<Option<Duration>> {
            s.iter().map(|&s| Some(Duration::from_secs(s))).collect()
        };
        assert_eq!(
            slack_priorities(&secs(&[40, 36, 20, 10, 1])),
            vec![0, 6, 10, 13, 15]
        );
        assert_eq!(
            slack_priorities(&[Some(Duration::from_secs(4)), None]),
            vec![0, 0]
        );
        assert_eq!(slack_priorities(&secs(&[0, 0])), vec![0, 0]);
        // A near tie (within 5 %) goes to the unit started first: a pack sized to the longest
        // file does not take its place by a hair.
        assert_eq!(slack_priorities(&secs(&[40, 41, 20])), vec![0, 5, 11]);
    }
}
