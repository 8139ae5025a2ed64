//! The command line: parses arguments, runs one command, renders errors in one place, and maps
//! every ending to an exit code (0 ok, 1 tests failed, 2 plan or usage error, 3 setup failed,
//! 130 interrupted).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use crate::engine::journal;
use crate::plan::{self, Jobs, Keep, Plan, PlanError, Units};
use crate::planner::{self, PlanOptions, ShardArg, Timings};
use crate::report::dryrun::{self, DryRunFormat};
use crate::report::failures::FailureOutput;
use crate::report::terminal::{ColorChoice, DisplayEnv, Reporter, SummaryFormat};
use crate::steps::{self, resource::Resource, RunConfig};
use crate::sys::cores;

use crate::model::ExitCode;

/// Why a command stopped: the one error type. `main` renders it once and exits with its code;
/// nothing else prints an error or picks an exit code (as `just`'s `run.rs` does it).
#[derive(Debug)]
pub enum Error {
    /// A mistake in the plan file, shown with its source and the offending text underlined.
    Plan(Box<PlanError>),
    /// Anything else that stops a command: a message, lines under it, and the exit code.
    Failed {
        code: ExitCode,
        message: String,
        detail: Vec<String>,
    },
    /// A run that ended non-zero; its display has said why already.
    Ended(ExitCode),
}

impl Error {
    fn usage(message: impl Into<String>) -> Self {
        Error::Failed {
            code: ExitCode::Usage,
            message: message.into(),
            detail: Vec::new(),
        }
    }

    fn setup(message: impl Into<String>) -> Self {
        Error::Failed {
            code: ExitCode::Setup,
            message: message.into(),
            detail: Vec::new(),
        }
    }

    pub fn code(&self) -> ExitCode {
        match self {
            Error::Plan(_) => ExitCode::Usage,
            Error::Failed { code, .. } => *code,
            Error::Ended(code) => *code,
        }
    }

    /// The error as the user reads it on stderr, every secret scrubbed.
    fn render(self) -> Option<String> {
        let text = match self {
            Error::Plan(e) => format!("{:?}", miette::Report::new_boxed(e)),
            Error::Failed {
                message, detail, ..
            } => {
                let mut t = format!("error: {message}");
                for d in &detail {
                    t.push_str("\n  ");
                    t.push_str(d);
                }
                t
            }
            Error::Ended(_) => return None,
        };
        Some(crate::redact::scrub(&text).into_owned())
    }
}

impl From<Box<PlanError>> for Error {
    fn from(e: Box<PlanError>) -> Self {
        Error::Plan(e)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "e2e-plan",
    version,
    about = "Run each end-to-end test file in its own worker: its own PostgreSQL database, server and test process, all at once",
    propagate_version = true
)]
pub struct Cli {
    /// When to use colours: auto (a terminal without NO_COLOR), always, never.
    ///
    /// `auto` colours output on a terminal unless `NO_COLOR` is set to a non-empty value.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the plan: clone databases, start servers, run tests, merge reports, clean up.
    ///
    /// The table and the closing lines go to stdout; progress goes to stderr: a live bar on a
    /// terminal when `CI` is unset, plain lines otherwise (`CI` set to anything but empty, `false`
    /// or `0` counts as CI). The exit code says how the run ended (0 passed, 1 tests failed, 2 a
    /// plan or usage error, 3 setup failed, 130 interrupted).
    Apply(ApplyArgs),
    /// Show the DAG the plan would run, fully resolved; touches nothing.
    ///
    /// Every worker is fully resolved, with its database name, commands, environment (passwords
    /// redacted), predicted duration and retry attempts, and the run's predicted wall time.
    /// `xxxxxxxx` (the run id), `<port>` and `<cluster-port>` stand in for values that only exist
    /// at run time. It never connects to a database and never starts a server or a test; with
    /// `units = "auto"` it runs `[test] collect` for the files it may split, as `apply` does, so
    /// that both show the same parts. `--format dot` is Graphviz:
    /// `e2e-plan dry-run --format dot | dot -Tsvg > plan.svg`.
    DryRun(DryRunArgs),
    /// Write a first plan for this repository from what it finds (tests, migrations, server).
    Init {
        /// Where to write it; never overwritten.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
    /// Load and check a plan; prints "ok" and the worker count.
    Validate {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
    /// Undo what earlier runs of this plan left: kept databases, and everything of a dead runner.
    ///
    /// It removes kept databases and their logs, a throwaway cluster kept for them, and every
    /// resource of a runner that died, and prints `undid …` for what it removed and
    /// `…: already gone` for what it found removed already. Runs that are still going are left
    /// alone. It works even if the plan no longer fully loads.
    Rollback {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
    /// Show or empty the template's pool of ready copies ([database] pool).
    Pool {
        #[command(subcommand)]
        action: PoolAction,
    },
    /// Show or remove the local PostgreSQL kept between runs (plans with a fingerprint and no
    /// [database] template).
    ///
    /// `cluster status` shows its folder, its size on disk, and whether it is stopped, in use by
    /// a run, or still running from an earlier run. `cluster remove` deletes it (refused while a
    /// run uses it or while it holds kept databases: `rollback` first); the next run makes it
    /// again.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Print the plan format's JSON Schema (draft-07), or its reference as markdown.
    Schema {
        /// json: the JSON Schema editors validate plans against; markdown: the plan reference
        /// (docs/plan.md), from the same doc comments.
        #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
        format: SchemaFormat,
    },
    /// Merge JUnit files (from several runs or CI shards) into one.
    ///
    /// It reads one input at a time. If any input is unusable, it names every bad one, writes
    /// nothing and exits with 2. Inputs written by `apply --shard` carry their split; merge then
    /// checks that they cover it exactly once and, if not, names every file that ran in no shard
    /// or in two, and the files that shards of different splits placed differently, writes
    /// nothing and exits with 2 (`--allow-partial` merges anyway).
    Merge {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Input JUnit files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Merge even when the inputs are shards of different splits, or leave files out or
        /// run them twice (otherwise an error that names every such file).
        #[arg(long)]
        allow_partial: bool,
        /// Fold the merged files' durations into this timings file (e.g. the plan root's
        /// .e2e-plan/timings.json), which sharded runs never update themselves.
        #[arg(long, value_name = "FILE")]
        timings: Option<PathBuf>,
    },
    /// Print shell completions.
    ///
    /// For bash: `e2e-plan completions bash > ~/.local/share/bash-completion/completions/e2e-plan`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    Json,
    Markdown,
}

#[derive(Subcommand, Debug)]
pub enum PoolAction {
    /// How many copies are ready, how many are stale, and their size on disk.
    Status {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
    /// Drop every pooled copy of the plan's template (the next run clones again).
    Drain {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Where the kept cluster is, its size on disk, and whether it is running or in use.
    Status {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
    /// Delete the kept cluster (the next run makes it again).
    Remove {
        /// The plan file.
        #[arg(default_value = plan::DEFAULT_PLAN)]
        plan: PathBuf,
    },
}

/// What shapes the DAG: shared by `apply` and `dry-run`, so that `dry-run` shows what `apply`
/// with the same flags runs.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The plan file.
    #[arg(default_value = plan::DEFAULT_PLAN)]
    pub plan: PathBuf,
    /// Most workers at once: a number (0 = every file at once) or auto (a worker per core, more
    /// while cores stand idle); overrides [run] jobs.
    #[arg(long, short)]
    pub jobs: Option<Jobs>,
    /// Which worker databases survive: failed, all-on-failure, always, never; overrides
    /// [database] keep.
    #[arg(long, value_parser = parse_keep)]
    pub keep: Option<Keep>,
    /// Run a failed file again up to N times, each in fresh isolation; overrides [run] retries.
    #[arg(long)]
    pub retries: Option<u32>,
    /// What one worker runs: file (a worker per file) or auto (short files packed, long ones
    /// split); overrides [run] units.
    #[arg(long, value_parser = parse_units)]
    pub units: Option<Units>,
    /// Only shard K of N (e.g. 2/4), balanced by recorded timings; `auto` (or `auto/N`) reads
    /// the CI's parallelism variables (GitLab, CircleCI, Buildkite, Kubernetes).
    ///
    /// `auto` reads GitLab's `CI_NODE_INDEX`/`CI_NODE_TOTAL` (1-based), CircleCI's
    /// `CIRCLE_NODE_INDEX`/`CIRCLE_NODE_TOTAL` and Buildkite's
    /// `BUILDKITE_PARALLEL_JOB`/`BUILDKITE_PARALLEL_JOB_COUNT` (0-based), or a Kubernetes indexed
    /// Job's `JOB_COMPLETION_INDEX` with the total given as `auto/N`; with none of them set it
    /// exits 2 and names them (GitHub Actions has none: use a matrix). Files are split by the
    /// durations in `.e2e-plan/timings.json` (greedy, longest first), or round-robin over sorted
    /// paths when nothing is recorded. The split is a pure function of the file list, N and that
    /// timings snapshot, and sharded runs never change the snapshot, so shards run one after
    /// another in one checkout, or on runners with the same snapshot, cover every file once. Each
    /// shard records its split in its `junit.xml` and `summary.json`, and `merge` checks it.
    #[arg(long)]
    pub shard: Option<ShardArg>,
    /// Balance shards and order workers by these durations: a timings.json, or a JUnit file
    /// (e.g. the merged junit.xml of a previous run) instead of .e2e-plan/timings.json.
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
    /// Only the files that failed or were flaky in the previous run.
    ///
    /// The files of this plan that failed, timed out, errored or were flaky in its previous run
    /// whose tests ran (setup failures and interruptions don't count); every file when there is
    /// no such run or none of those files is left.
    #[arg(long)]
    pub last_failed: bool,
    /// Write reports and logs to DIR for this run (overrides [report] dir).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Extra arguments for `{args}` in the commands.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub planning: PlanArgs,
    /// Stop everything at the first failing file.
    #[arg(long)]
    pub fail_fast: bool,
    /// Prepare the template even when its fingerprint matches.
    #[arg(long)]
    pub reprepare: bool,
    /// human: a table and a closing line; json: summary.json on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Human)]
    pub format: SummaryFormat,
    /// How much of the failures to show after the table: short, full or none.
    #[arg(long, value_enum, default_value_t = FailureOutput::Short)]
    pub failure_output: FailureOutput,
}

#[derive(Args, Debug)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub planning: PlanArgs,
    /// text: a tree; json: the DAG as a document; dot: Graphviz.
    #[arg(long, value_enum, default_value_t = DryRunFormat::Text)]
    pub format: DryRunFormat,
}

fn parse_units(s: &str) -> Result<Units, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not a kind of unit: use file or auto"))
}

fn parse_keep(s: &str) -> Result<Keep, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("`{s}` is not a keep policy: use failed, all-on-failure, always or never")
    })
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    // What the user waits for starts here, not when the run's context exists.
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    install_error_hook(cli.color);
    let ended = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::setup(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(cli, started)));
    match ended {
        Ok(()) => ExitCode::Ok.code(),
        Err(e) => {
            let code = e.code();
            if let Some(text) = e.render() {
                eprintln!("{text}");
            }
            code.code()
        }
    }
}

fn install_error_hook(color: ColorChoice) {
    let tty = std::io::stderr().is_terminal();
    let colored = color.enabled(supports_color::Stream::Stderr);
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .unicode(tty)
                .color(colored)
                .terminal_links(false)
                .width(110)
                .build(),
        )
    }));
}

fn load(path: &Path) -> Result<Plan, Error> {
    let plan = plan::load(path, &plan::LoadOptions::default())?;
    if let Some(url) = &plan.database.template {
        crate::redact::register_url(url);
    }
    Ok(plan)
}

async fn run(cli: Cli, started: std::time::Instant) -> Result<(), Error> {
    match cli.command {
        Command::Validate { plan } => {
            let p = load(&plan)?;
            println!(
                "ok: {} is valid, {} worker(s) (one per test file)",
                plan.display(),
                p.files.len()
            );
            if p.database.template.is_none() {
                println!("{}", cluster_kind(&p));
            }
            Ok(())
        }
        Command::DryRun(a) => dry_run(a),
        Command::Init { plan } => init(&plan),
        Command::Apply(a) => apply(a, cli.color, started).await,
        Command::Rollback { plan } => rollback(&plan).await,
        Command::Pool { action } => pool(action).await,
        Command::Cluster { action } => cluster(action),
        Command::Schema { format } => {
            match format {
                SchemaFormat::Json => print!("{}", plan::schema_json()),
                SchemaFormat::Markdown => print!("{}", plan::reference::markdown()),
            }
            Ok(())
        }
        Command::Merge {
            output,
            inputs,
            allow_partial,
            timings,
        } => match crate::report::junit::merge_files(
            &inputs,
            &output,
            !allow_partial,
            timings.as_deref(),
        ) {
            Ok((suites, tests)) => {
                println!(
                    "merged {} file(s): {suites} suites, {tests} tests into {}",
                    inputs.len(),
                    output.display()
                );
                Ok(())
            }
            Err(mut bad) => Err(Error::Failed {
                code: ExitCode::Usage,
                message: format!("nothing was written; {} problem(s):", bad.len()),
                detail: {
                    bad.push(
                        "(--allow-partial merges shards that do not cover their split once)".into(),
                    );
                    bad
                },
            }),
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "e2e-plan",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// The one planning path of `apply` and `dry-run`: the plan with the command line's overrides,
/// and the DAG built from it (with `units = "auto"`, after collecting the files it may split).
fn planned(a: PlanArgs, run_id: String) -> Result<(Plan, planner::Dag), Error> {
    let mut plan = load(&a.plan)?;
    if let Some(j) = a.jobs {
        plan.run.jobs = j;
    }
    if let Some(dir) = &a.report_dir {
        plan.set_report_dir(dir);
    }
    if let Some(k) = a.keep {
        plan.database.keep = k;
    }
    if let Some(r) = a.retries {
        plan.run.retries = r;
    }
    if let Some(u) = a.units {
        plan.run.units = u;
    }
    let only = if a.last_failed {
        last_failed(&plan)
    } else {
        None
    };
    let (shard, timings) = shard_and_timings(&plan, a.shard, a.timings.as_deref())?;
    let opts = with_collected(
        &plan,
        PlanOptions {
            run_id,
            args: a.args,
            shard,
            only,
            timings,
            cores: cores(),
            collected: Default::default(),
        },
    );
    let dag = planner::build(&plan, &opts);
    Ok((plan, dag))
}

fn dry_run(a: DryRunArgs) -> Result<(), Error> {
    let (plan, dag) = planned(a.planning, dryrun::RUN_ID.into())?;
    print!(
        "{}",
        crate::redact::scrub(&dryrun::render(&plan, &dag, a.format))
    );
    Ok(())
}

/// `e2e-plan init`: inspects the working folder and writes a plan there, never over one.
fn init(path: &Path) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::setup(format!("cannot read the working folder: {e}")))?;
    let guess = plan::init::inspect(&cwd);
    // `root` from the plan's folder back to here.
    let root = if path.is_absolute() {
        cwd.display().to_string()
    } else {
        let depth = path
            .parent()
            .map(|d| {
                d.components()
                    .filter(|c| matches!(c, std::path::Component::Normal(_)))
                    .count()
            })
            .unwrap_or(0);
        if depth == 0 {
            ".".to_string()
        } else {
            vec![".."; depth].join("/")
        }
    };
    let text = plan::init::render(&guess, &root);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::setup(format!("cannot create {}: {e}", dir.display())))?;
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => {
            if let Some(plan::init::DjangoDb::Append { .. }) = guess.django_db {
                // After the plan, so that a refused init changes nothing.
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(cwd.join("conftest.py"))
                    .and_then(|mut f| f.write_all(plan::init::CONFTEST_BLOCK.as_bytes()))
                    .map_err(|e| Error::setup(format!("cannot write conftest.py: {e}")))?;
            }
            print!("{}", plan::init::explain(&guess, path));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::usage(format!(
            "{} exists; init never overwrites a plan (remove it, or name another path: e2e-plan init plans/new.toml)",
            path.display()
        ))),
        Err(e) => Err(Error::setup(format!("cannot write {}: {e}", path.display()))),
    }
}

/// The longest `[test] collect` may take.
const COLLECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// With `units = "auto"`, the test ids of the files the planner may split, collected before it
/// plans (dry-run and apply alike, so that both show the same units).
fn with_collected(plan: &Plan, mut opts: PlanOptions) -> PlanOptions {
    let files = planner::split_candidates(plan, &opts);
    if !files.is_empty() {
        let timeout = plan.test.timeout.min(COLLECT_TIMEOUT);
        opts.collected = crate::steps::collect::collect(plan, &files, &opts.args, timeout);
    }
    opts
}

/// The shard and the timings the planner needs, from `--shard` and `--timings` (exit 2 when
/// `--shard auto` finds no CI variables or the timings file is unusable).
fn shard_and_timings(
    plan: &Plan,
    shard: Option<ShardArg>,
    timings: Option<&Path>,
) -> Result<(Option<planner::Shard>, Timings), Error> {
    let shard = shard
        .map(|s| s.resolve(&|n| std::env::var(n).ok()))
        .transpose()
        .map_err(Error::usage)?;
    let timings = match timings {
        Some(p) => crate::report::state::timings_from_file(p).map_err(Error::usage)?,
        None => Timings::load(&plan.state_dir()),
    };
    Ok((shard, timings))
}

/// `--last-failed`: the files of this plan that failed or were flaky last time; None (all files)
/// when there is no previous run, nothing failed, or none of them exists any more.
fn last_failed(plan: &Plan) -> Option<Vec<String>> {
    let Some(last) = crate::report::state::last_run(plan) else {
        eprintln!("--last-failed: no previous run of this plan recorded; running every file");
        return None;
    };
    let files: Vec<String> = last
        .failed
        .into_iter()
        .filter(|f| plan.files.iter().any(|p| &p.path == f))
        .collect();
    if files.is_empty() {
        eprintln!(
            "--last-failed: nothing that failed in run {} is left to run; running every file",
            last.run_id
        );
        return None;
    }
    eprintln!(
        "--last-failed: running the {} file(s) that failed in run {}",
        files.len(),
        last.run_id
    );
    Some(files)
}

/// Warns about what dead runs left (their runner was killed) and offers the command.
fn warn_leftovers(plan: &Plan) {
    let dead: Vec<_> = steps::resources_of(&plan.state_dir())
        .into_iter()
        .filter(|r| !r.runner_alive && !r.ended && !r.pending.is_empty())
        .collect();
    for r in dead {
        eprintln!(
            "warning: run {} (started {}) ended without cleaning up {} resource(s), e.g. {}; undo them with: e2e-plan rollback {}",
            r.run_id,
            r.started,
            r.pending.len(),
            journal::Resource::describe(&r.pending[0]),
            plan.path.display()
        );
    }
}

/// A shard (or `--last-failed`) with no files: CI merges every shard's junit.xml, so it still
/// writes one, with its split, and no stale summary of an earlier run stays beside it.
fn empty_run(plan: &Plan, dag: &planner::Dag) -> Result<(), Error> {
    for stale in ["summary.json", "report.html"] {
        let _ = std::fs::remove_file(plan.report_dir.join(stale));
    }
    let junit = plan.report_dir.join("junit.xml");
    let record = dag
        .split
        .iter()
        .map(crate::report::shards::record_suite)
        .collect();
    let written = crate::report::junit::Merger::new(&junit).and_then(|mut m| {
        m.add(record)?;
        m.finish("e2e-plan (no files)")
    });
    written.map_err(|e| Error::setup(format!("cannot write {}: {e}", junit.display())))?;
    println!(
        "0 files to run (the shard or --last-failed selected none); wrote an empty {}",
        junit.display()
    );
    Ok(())
}

async fn apply(a: ApplyArgs, color: ColorChoice, started: std::time::Instant) -> Result<(), Error> {
    let (mut plan, dag) = planned(a.planning, planner::new_run_id())?;
    if a.fail_fast {
        plan.run.fail_fast = true;
    }
    if dag.workers.is_empty() {
        return empty_run(&plan, &dag);
    }
    // This run's setup and prepare logs start empty.
    for log in ["setup.log", "prepare.log"] {
        let _ = std::fs::remove_file(plan.report_dir.join(log));
    }
    warn_leftovers(&plan);
    let journal = journal::Journal::create(
        &plan.state_dir(),
        &dag.run_id,
        &plan.path.display().to_string(),
    )
    .map_err(|e| {
        Error::setup(format!(
            "cannot write the run journal under {}: {e}",
            plan.state_dir().display()
        ))
    })?;
    let display = Reporter::new(
        DisplayEnv::detect(color),
        a.format,
        a.failure_output,
        dag.finishing().count(),
        started,
        Box::new(std::io::stdout()),
        Box::new(std::io::stderr()),
    );
    let mut sinks: Vec<Box<dyn crate::events::Sink>> = vec![Box::new(display)];
    sinks.extend(crate::report::files::sinks());
    sinks.push(Box::new(crate::report::state::State::new(&plan)));
    let (signals, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(forward_signals(signals));
    let config = RunConfig::new(plan, dag, a.reprepare, started);
    let exit = steps::run(config, journal, sinks, rx).await;
    listener.abort();
    let _ = std::io::stdout().flush();
    match exit {
        ExitCode::Ok => Ok(()),
        // The display has told the user why.
        code => Err(Error::Ended(code)),
    }
}

/// Ctrl-C or SIGTERM: each goes to the run's owner, which stops every worker gracefully (a
/// second one skips the grace period). Workers run in their own process groups, so the
/// terminal's signal reaches only us.
async fn forward_signals(to: tokio::sync::mpsc::UnboundedSender<()>) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if to.send(()).is_err() {
            return;
        }
    }
}

/// What `validate` says about a plan on e2e-plan's own cluster.
fn cluster_kind(p: &plan::Plan) -> &'static str {
    if p.keeps_cluster() {
        "database: a local cluster kept between runs in .e2e-plan/cluster (the fingerprint says when its template is stale)"
    } else {
        "database: a throwaway local cluster every run (no [database] fingerprint, so nothing says whether a kept template would be current)"
    }
}

fn cluster(action: ClusterAction) -> Result<(), Error> {
    use crate::steps::cluster;
    let path = match &action {
        ClusterAction::Status { plan } | ClusterAction::Remove { plan } => plan,
    };
    let plan = load(path)?;
    let state_dir = plan.state_dir();
    if let ClusterAction::Remove { .. } = action {
        let removed = cluster::remove_kept(&state_dir).map_err(|e| Error::setup(e.message))?;
        match removed {
            Some(dir) => println!("removed the kept cluster {}", dir.display()),
            None => println!("no kept cluster to remove"),
        }
        return Ok(());
    }
    let s = cluster::kept_status(&state_dir);
    if !s.exists {
        println!("no kept cluster (it would be {})", s.dir.display());
    } else {
        let state = match (s.in_use, s.running, &s.complete) {
            (true, _, _) => "in use by a run".to_string(),
            (false, Some(pid), _) => {
                format!("running (pid {pid}) from an earlier run (kept databases, or a runner that died); `e2e-plan rollback` stops it")
            }
            (false, None, Some(v)) => format!("stopped, PostgreSQL {v}"),
            (false, None, None) => "half-made: the next run makes it again".to_string(),
        };
        println!(
            "kept cluster {}: {:.1} MiB on disk, {state}",
            s.dir.display(),
            s.bytes as f64 / 1048576.0
        );
    }
    if !plan.keeps_cluster() {
        println!(
            "this plan does not keep a cluster: {}",
            if plan.database.template.is_some() {
                "it uses [database] template"
            } else {
                "without a [database] fingerprint nothing says whether a kept template is current, so each run throws its cluster away"
            }
        );
    }
    Ok(())
}

async fn pool(action: PoolAction) -> Result<(), Error> {
    let (path, drain) = match action {
        PoolAction::Status { plan } => (plan, false),
        PoolAction::Drain { plan } => (plan, true),
    };
    let plan = load(&path)?;
    let r = crate::steps::pool::inspect(&plan, drain)
        .await
        .map_err(|e| Error::setup(e.message))?;
    match r {
        r if drain => {
            println!("pool of {}: dropped {} cop(ies)", r.template, r.dropped);
            Ok(())
        }
        r => {
            println!(
                "pool of {}: {} ready, {} stale (size {}), {:.1} MiB on disk",
                r.template,
                r.fresh.len(),
                r.stale.len(),
                r.size,
                r.bytes as f64 / 1048576.0
            );
            for name in &r.fresh {
                println!("  ready  {name}");
            }
            for name in &r.stale {
                println!("  stale  {name}");
            }
            Ok(())
        }
    }
}

async fn rollback(plan_path: &Path) -> Result<(), Error> {
    let state_dir = plan::load::state_dir_of(plan_path)?;
    let records: Vec<journal::Recorded<Resource>> = journal::read_all(&state_dir);
    let mut did = 0;
    let mut failed = Vec::new();
    for r in &records {
        if r.runner_alive {
            println!("run {} is still running: left alone", r.run_id);
            continue;
        }
        if r.torn > 0 {
            println!(
                "run {}: skipped {} unreadable line(s) of {} (a runner killed mid-write; the resource of a torn intent was never created)",
                r.run_id,
                r.torn,
                r.path.display()
            );
        }
        if r.pending.is_empty() {
            let _ = std::fs::remove_file(&r.path);
            continue;
        }
        let (undone, errors) = journal::replay(r).await;
        for (what, how) in &undone {
            match how {
                journal::Undo::Undone => println!("run {}: undid {what}", r.run_id),
                journal::Undo::AlreadyGone => println!("run {}: {what}: already gone", r.run_id),
            }
        }
        did += undone.len();
        failed.extend(errors.iter().map(|e| format!("run {}: {e}", r.run_id)));
    }
    if did == 0 && failed.is_empty() {
        println!("nothing to roll back");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed {
            code: ExitCode::Setup,
            message: format!(
                "could not undo {} resource(s); run rollback again once the cause is fixed:",
                failed.len()
            ),
            detail: failed,
        })
    }
}

/// The command-line reference, `docs/cli.md`, generated from the definitions above (the same
/// text `e2e-plan help COMMAND` shows), so that it cannot drift.
pub fn reference() -> String {
    use std::fmt::Write as _;
    let mut root = Cli::command();
    root.build();
    let mut o = String::from("# Command-line reference\n\n");
    o.push_str("<!-- Generated from the clap definitions in src/cli.rs by the test `docs::cli_reference_is_current`; do not edit. -->\n\n");
    let _ = writeln!(
        o,
        "Every command and option; `e2e-plan help [COMMAND]` prints the same. Every `PLAN` defaults to `{}`; the plan file is described in the [plan reference](plan.md), the exit codes in the [README](../README.md#exit-codes).\n",
        plan::DEFAULT_PLAN
    );
    let _ = writeln!(o, "```\n{}\n```\n", root.render_usage().to_string().trim());
    let _ = writeln!(o, "Global options:\n");
    args_of(&mut o, &root);
    for sub in root.get_subcommands() {
        command_section(&mut o, sub, "e2e-plan");
    }
    o
}

fn command_section(o: &mut String, cmd: &clap::Command, parent: &str) {
    use std::fmt::Write as _;
    if cmd.get_name() == "help" {
        return;
    }
    let path = format!("{parent} {}", cmd.get_name());
    let _ = writeln!(o, "## `{path}`\n");
    let about = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = writeln!(o, "{}\n", about.trim());
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            command_section(o, sub, &path);
        }
        return;
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage: ");
    let _ = writeln!(o, "```\n{usage}\n```\n");
    args_of(o, cmd);
}

fn args_of(o: &mut String, cmd: &clap::Command) {
    use std::fmt::Write as _;
    let mut any = false;
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if matches!(id, "help" | "version") || (a.is_global_set() && cmd.get_name() != "e2e-plan") {
            continue;
        }
        let value = a
            .get_value_names()
            .map(|v| {
                v.iter()
                    .map(|n| format!("<{n}>"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| format!("<{}>", id.to_uppercase()));
        let takes = a.get_num_args().is_some_and(|n| n.takes_values());
        let name = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) if takes => format!("-{s}, --{l} {value}"),
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) if takes => format!("--{l} {value}"),
            (None, Some(l)) => format!("--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) if a.is_last_set() => format!("-- {value}..."),
            (None, None) => value,
        };
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut extra = Vec::new();
        let possible: Vec<String> = a
            .get_possible_values()
            .iter()
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        if !possible.is_empty() && takes {
            extra.push(format!("one of {}", possible.join(", ")));
        }
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|d| format!("`{}`", d.to_string_lossy()))
            .collect();
        if !defaults.is_empty() && takes {
            extra.push(format!("default {}", defaults.join(", ")));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join("; "))
        };
        let help = help.trim().replace("\n\n", "\n\n  ");
        let _ = writeln!(o, "- `{name}`{extra}: {help}");
        any = true;
    }
    if any {
        o.push('\n');
    }
}
