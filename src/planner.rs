//! The planner turns a [`Plan`] into the DAG the engine runs and `dry-run` shows: setup steps,
//! one worker per file (clone → start server → wait ready → run tests → stop server), teardown.
//!
//! Everything here is pure: names, order and predictions are decided before any side effect.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::model::Split;
use crate::plan::template::{fill_command, Template, Word};
use crate::plan::{Plan, TestFile};

/// PostgreSQL's limit on identifiers, in bytes.
pub const MAX_IDENT: usize = 63;

/// Name of the template database on an ephemeral cluster.
pub const EPHEMERAL_TEMPLATE: &str = "e2e_template";

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
    /// initdb + start a throwaway PostgreSQL.
    StartCluster,
    /// Create the template if missing, run `prepare` (unless the fingerprint matches).
    PrepareTemplate {
        template: String,
        /// Fingerprinted plans prepare a fresh database of this name and swap it in for the
        /// template; without a fingerprint, `prepare` runs in the template itself.
        build: Option<String>,
        /// The commands and `[database] env` (besides DATABASE_URL), filled for the database
        /// they run in.
        commands: Vec<Vec<String>>,
        env: Vec<(String, String)>,
    },
    /// One file's worker: clone, server, tests, stop.
    Worker { index: usize },
    /// Second pass over failed files, each attempt in fresh isolation.
    RetryFailed { retries: u32 },
    /// Merge JUnit, write summary.json and report.html.
    Report,
    /// Drop or keep worker databases by the keep policy; remove passing workers' logs.
    Cleanup,
    /// Bring the template's pool of ready copies back to `size` for the next run.
    RefillPool { size: usize },
    /// Stop and delete the ephemeral cluster (unless databases are kept).
    StopCluster,
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
    pub db_name: String,
    pub log_dir: PathBuf,
    pub junit: PathBuf,
    /// From recorded timings; None for a file never run before.
    pub predicted: Option<Duration>,
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
    pub jobs: usize,
    pub predicted_wall: Option<Duration>,
    /// `--shard`: the split this shard belongs to.
    pub split: Option<Split>,
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
}

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
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FileTiming {
    pub secs: f64,
    pub runs: u32,
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

    /// Folds one run's durations in (weight 0.5 for the newest, so a changed file adapts quickly).
    pub fn record(&mut self, file: &str, took: Duration) {
        let secs = took.as_secs_f64();
        self.files
            .entry(file.to_string())
            .and_modify(|t| {
                t.secs = t.secs * 0.5 + secs * 0.5;
                t.runs += 1;
            })
            .or_insert(FileTiming { secs, runs: 1 });
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

/// The template database's name from its URL (or the ephemeral default).
pub fn template_name(plan: &Plan) -> String {
    plan.database
        .template
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            let path = u.path().trim_start_matches('/').to_string();
            percent_decode(&path)
        })
        .unwrap_or_else(|| EPHEMERAL_TEMPLATE.to_string())
}

/// The template's URL as far as it is known before the run: a throwaway cluster's port is not.
pub fn shown_template_url(plan: &Plan, template: &str) -> String {
    plan.database
        .template
        .clone()
        .unwrap_or_else(|| format!("postgresql://postgres@127.0.0.1:<cluster-port>/{template}"))
}

/// A URL path segment decoded (`%20` → space; a `+` stays a `+`).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A worker database name: only `[a-z0-9_]`, at most 63 bytes, unique per run and attempt. A long
/// template name is shortened with a hash of the whole name so that two long names never collide.
pub fn worker_db_name(template: &str, run_id: &str, worker: usize, attempt: u32) -> String {
    let suffix = if attempt == 0 {
        format!("_{run_id}_{worker}")
    } else {
        format!("_{run_id}_{worker}r{attempt}")
    };
    db_name(template, &suffix)
}

/// The fresh database a run prepares before it replaces the template (fingerprinted plans).
pub fn build_db_name(template: &str, run_id: &str) -> String {
    db_name(template, &format!("_next_{run_id}"))
}

/// The name the replaced template has between the swap and its drop.
pub fn old_db_name(template: &str, run_id: &str) -> String {
    db_name(template, &format!("_old_{run_id}"))
}

/// The name of the `i`-th copy a run adds to the template's pool.
pub fn pool_db_name(template: &str, run_id: &str, i: usize) -> String {
    db_name(template, &format!("_pool_{run_id}_{i}"))
}

/// `template` made a safe identifier, with `suffix`, at most 63 bytes (shortened with a hash).
fn db_name(template: &str, suffix: &str) -> String {
    let mut base: String = template
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
        base.insert_str(0, "db_");
    }
    if base.len() + suffix.len() > MAX_IDENT {
        let hash = hex(&Sha256::digest(template.as_bytes()))[..8].to_string();
        let keep = MAX_IDENT - suffix.len() - hash.len() - 1;
        base.truncate(keep);
        base.push('_');
        base.push_str(&hash);
    }
    base + suffix
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh run id: 8 lowercase hex characters from the clock and the process id.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}-{}-{:p}", std::process::id(), &nanos);
    hex(&Sha256::digest(seed.as_bytes()))[..8].to_string()
}

/// Placeholder values of one worker attempt. `port` and `template_url` are only known at run time;
/// dry-run passes stand-ins.
pub struct WorkerVars<'a> {
    pub plan: &'a Plan,
    pub run_id: &'a str,
    pub worker: &'a WorkerPlan,
    pub db_name: &'a str,
    pub template_url: &'a str,
    pub port: &'a str,
    pub log_dir: &'a Path,
}

impl WorkerVars<'_> {
    pub fn map(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("root", self.plan.root.display().to_string()),
            ("run", self.run_id.to_string()),
            ("worker", self.worker.index.to_string()),
            ("file", self.worker.file.clone()),
            ("file_stem", self.worker.stem.clone()),
            ("port", self.port.to_string()),
            ("db_name", self.db_name.to_string()),
            ("db_url", with_database(self.template_url, self.db_name)),
            (
                "junit",
                self.log_dir.join("junit.xml").display().to_string(),
            ),
            ("log_dir", self.log_dir.display().to_string()),
        ])
    }
}

/// Filled commands and environment of one worker attempt.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerCommands {
    pub server: Option<ServerCommands>,
    pub test: Vec<String>,
    pub test_env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerCommands {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ready: String,
}

pub fn fill_env(env: &[(String, Template)], vars: &HashMap<&str, String>) -> Vec<(String, String)> {
    env.iter().map(|(k, t)| (k.clone(), t.fill(vars))).collect()
}

impl WorkerVars<'_> {
    pub fn commands(&self, args: &[String]) -> WorkerCommands {
        let vars = self.map();
        WorkerCommands {
            server: self.plan.server.as_ref().map(|s| ServerCommands {
                command: fill_command(&s.command, &vars, args),
                env: fill_env(&s.env, &vars),
                ready: s.ready.fill(&vars),
            }),
            test: fill_command(&self.plan.test.command, &vars, args),
            test_env: fill_env(&self.plan.test.env, &vars),
        }
    }
}

/// `url` with only its database name replaced (user, password, host, port, query kept).
pub fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        // Not parseable (a dry-run stand-in for a port): replace the last path segment as text.
        Err(_) => {
            let (base, query) = url
                .split_once('?')
                .map(|(b, q)| (b, Some(q)))
                .unwrap_or((url, None));
            let head = base.rfind('/').map(|i| &base[..i]).unwrap_or(base);
            match query {
                Some(q) => format!("{head}/{db}?{q}"),
                None => format!("{head}/{db}"),
            }
        }
    }
}

/// Placeholder values of setup and prepare commands: run-wide ones and the database prepared.
pub fn run_vars(
    plan: &Plan,
    run_id: &str,
    db_url: &str,
    db_name: &str,
) -> HashMap<&'static str, String> {
    HashMap::from([
        ("root", plan.root.display().to_string()),
        ("run", run_id.to_string()),
        ("db_name", db_name.to_string()),
        ("db_url", db_url.to_string()),
    ])
}

/// Fills a setup/prepare command (only run-wide placeholders).
pub fn fill_run_command(
    words: &[Word],
    plan: &Plan,
    run_id: &str,
    template_url: &str,
    template: &str,
) -> Vec<String> {
    fill_command(words, &run_vars(plan, run_id, template_url, template), &[])
}

/// Builds the DAG. Workers are ordered longest-predicted first (ties by path), which is also the
/// order the engine starts them in when `jobs` limits how many run at once.
pub fn build(plan: &Plan, opts: &PlanOptions) -> Dag {
    let template = template_name(plan);
    let (workers, split) = worker_plans(plan, opts, &template);
    let mut nodes = Nodes::default();
    let prepare = setup_nodes(&mut nodes, plan, opts, &template);
    let worker_ids: Vec<usize> = workers
        .iter()
        .map(|w| {
            nodes.push(
                format!("worker-{}", w.stem),
                Stage::Worker,
                vec![prepare],
                false,
                Action::Worker { index: w.index },
            )
        })
        .collect();
    teardown_nodes(&mut nodes, plan, worker_ids);
    let known: Vec<Duration> = workers.iter().filter_map(|w| w.predicted).collect();
    let predicted_wall = (known.len() == workers.len() && !known.is_empty())
        .then(|| predict_makespan(&known, plan.run.jobs));
    Dag {
        run_id: opts.run_id.clone(),
        nodes: nodes.0,
        workers,
        args: opts.args.clone(),
        template_name: template,
        jobs: plan.run.jobs,
        predicted_wall,
        split,
    }
}

/// The files this run takes (`--last-failed`, then this shard of the split), longest predicted
/// first (ties by path), each with its names.
fn worker_plans(
    plan: &Plan,
    opts: &PlanOptions,
    template: &str,
) -> (Vec<WorkerPlan>, Option<Split>) {
    let timings = &opts.timings;
    let mut files = plan.files.clone();
    if let Some(only) = &opts.only {
        files.retain(|f| only.contains(&f.path));
    }
    let split = opts.shard.map(|shard| split_files(&files, timings, shard));
    if let Some(split) = &split {
        let mine: Vec<&str> = split.mine().collect();
        files.retain(|f| mine.contains(&f.path.as_str()));
    }
    let predicted = timings.predict(&files);
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        predicted[b]
            .cmp(&predicted[a])
            .then_with(|| files[a].path.cmp(&files[b].path))
    });
    let workers = order
        .iter()
        .enumerate()
        .map(|(index, &i)| {
            let f = &files[i];
            let log_dir = plan.report_dir.join("workers").join(&f.stem);
            WorkerPlan {
                index,
                file: f.path.clone(),
                stem: f.stem.clone(),
                db_name: worker_db_name(template, &opts.run_id, index, 0),
                junit: log_dir.join("junit.xml"),
                log_dir,
                predicted: predicted[i],
            }
        })
        .collect();
    (workers, split)
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
        let action = Action::Setup {
            command: fill_run_command(&s.command, plan, &opts.run_id, "", template),
            creates: s.creates.clone(),
            env: fill_env(&s.env, &run_vars(plan, &opts.run_id, "", template)),
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
            Action::StartCluster,
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
    let template_url_shown = shown_template_url(plan, template);
    let build =
        (!plan.database.fingerprint.is_empty()).then(|| build_db_name(template, &opts.run_id));
    let (target_url, target) = match &build {
        Some(b) => (with_database(&template_url_shown, b), b.clone()),
        None => (template_url_shown.clone(), template.to_string()),
    };
    Action::PrepareTemplate {
        template: template.to_string(),
        commands: plan
            .database
            .prepare
            .iter()
            .map(|c| fill_run_command(c, plan, &opts.run_id, &target_url, &target))
            .collect(),
        env: fill_env(
            &plan.database.env,
            &run_vars(plan, &opts.run_id, &target_url, &target),
        ),
        build,
    }
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
        Action::Cleanup,
    );
    if plan.database.pool > 0 && plan.database.template.is_some() {
        let action = Action::RefillPool {
            size: plan.database.pool,
        };
        nodes.push(
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
            vec![cleanup],
            true,
            Action::StopCluster,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn db_names_are_safe_and_bounded() {
        let n = worker_db_name("App-Test", "ab12cd34", 3, 0);
        assert_eq!(n, "app_test_ab12cd34_3");
        let long_a = "a".repeat(60);
        let long_b = format!("{}b", "a".repeat(59));
        let na = worker_db_name(&long_a, "ab12cd34", 123, 2);
        let nb = worker_db_name(&long_b, "ab12cd34", 123, 2);
        assert!(na.len() <= MAX_IDENT && nb.len() <= MAX_IDENT);
        assert_ne!(na, nb, "shortened names must not collide");
        assert!(na
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_eq!(worker_db_name("9lives", "r", 0, 0), "db_9lives_r_0");
    }

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgresql://u:p%40ss@h:6543/tmpl?sslmode=disable", "w_1"),
            "postgresql://u:p%40ss@h:6543/w_1?sslmode=disable"
        );
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
            t.record(f, Duration::from_secs(s));
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
