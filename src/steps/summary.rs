//! The run's summary (`summary.json`), built by the run's owner from its state once the tests
//! are over.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::artifacts::{list, Artifact};
use crate::model::junit::{case_times, read};
use crate::model::{
    files, DatabaseSources, ExitCode, KeptDatabase, RunError, RunSummary, Startups, UnusedDatabase,
    Verdict, WorkerResult,
};
use crate::redact::scrub;

use super::database::redact;
use super::owner::ClusterInfo;
use super::{RunConfig, StepError};

/// What the owner knows of the run that the summary reports.
pub struct Facts<'a> {
    pub exit: ExitCode,
    pub results: &'a BTreeMap<usize, WorkerResult>,
    /// The per-worker resources held: a kept database's resources are named with it.
    pub held: &'a [super::per_worker::Held],
    pub fatal: Option<&'a StepError>,
    pub template_url: &'a str,
    pub cluster: Option<&'a ClusterInfo>,
    pub prepared: bool,
    pub from_pool: usize,
    pub cloned: usize,
    pub most_at_once: usize,
}

/// The summary of the run so far; every text scrubbed of secrets.
pub fn build(config: &RunConfig, facts: Facts) -> RunSummary {
    let workers = workers(config, facts.results);
    let kept_databases = kept(&facts);
    let cleanup_command = (!kept_databases.is_empty())
        .then(|| format!("e2e-plan rollback {}", config.plan.path.display()));
    let now = std::time::SystemTime::now();
    let mut summary = RunSummary {
        version: 1,
        run_id: config.dag.run_id.clone(),
        plan: config.plan.path.clone(),
        root: config.plan.root.clone(),
        report_dir: config.plan.report_dir.clone(),
        started: humantime::format_rfc3339_millis(config.started_wall).to_string(),
        ended: humantime::format_rfc3339_millis(now).to_string(),
        wall_secs: config.started_at.elapsed().as_secs_f64(),
        jobs: config.plan.run.jobs.to_string(),
        most_at_once: facts.most_at_once,
        work_secs: workers.iter().map(|w| w.duration).sum(),
        exit_code: facts.exit,
        error: facts.fatal.map(|e| RunError {
            message: scrub(&e.message).into_owned(),
            detail: e.detail.as_deref().map(|d| scrub(d).into_owned()),
        }),
        interrupted: facts.exit == ExitCode::Interrupted,
        flaky_policy: config.plan.run.flaky,
        kept_databases,
        cleanup_command,
        databases: DatabaseSources {
            cloned: facts.cloned,
            from_pool: facts.from_pool,
        },
        cluster: facts.cluster.map(|c| c.used.clone()),
        prepared: facts.prepared,
        shard: config.dag.split.clone(),
        predicted_wall_secs: config.dag.predicted_wall.map(|d| d.as_secs_f64()),
        startups: None,
        unused_databases: unused_databases(&workers),
        workers,
    };
    summary.startups = startups(config, &summary);
    summary
}

/// The files whose first attempt ran its tests without any session on its database.
fn unused_databases(workers: &[WorkerResult]) -> Vec<UnusedDatabase> {
    workers
        .iter()
        .filter_map(|w| {
            let a = w.attempts.first()?;
            let ran = matches!(a.verdict, Verdict::Pass | Verdict::Fail | Verdict::Timeout);
            (ran && a.db_sessions == Some(0)).then(|| UnusedDatabase {
                file: w.file.clone(),
                database: a.db_name.clone(),
            })
        })
        .collect()
}

/// The share of the workers' CPU their start-ups took; when a worker per file spent most of it
/// starting up, what `units = "auto"` would predict for the suite from this run's costs.
fn startups(config: &RunConfig, run: &RunSummary) -> Option<Startups> {
    let workers = &run.workers;
    let mut seen = std::collections::BTreeSet::new();
    let attempts: Vec<&crate::model::Attempt> = workers
        .iter()
        .flat_map(|w| &w.attempts)
        .filter(|a| seen.insert((a.db_name.clone(), a.number)))
        .collect();
    let startup: f64 = attempts.iter().filter_map(|a| a.startup_cpu_secs).sum();
    let all: f64 = attempts.iter().filter_map(|a| a.cpu_secs).sum();
    if all <= 0.0 {
        return None;
    }
    let share = startup / all;
    let mut out = Startups {
        cpu_secs: startup,
        share,
        auto_wall_secs: None,
        auto_units: None,
        file_wall_secs: None,
    };
    let plan = &config.plan;
    let many = config.dag.units().count() > crate::sys::cores();
    if plan.run.units == crate::plan::Units::File && share >= 0.5 && many {
        let mut timings = crate::planner::Timings::default();
        timings.learn_run(workers);
        timings.learn_choice(run);
        let mut auto = plan.clone();
        auto.run.units = crate::plan::Units::Auto;
        let opts = crate::planner::PlanOptions {
            run_id: config.dag.run_id.clone(),
            timings,
            cores: crate::sys::cores(),
            ..Default::default()
        };
        let dag = crate::planner::build(&auto, &opts);
        let packs = dag.units().filter(|w| !w.pack.is_empty()).count();
        let auto_wall = dag.predicted_wall.map(|d| d.as_secs_f64());
        let file_wall = dag.weighed.iter().find(|w| w.packs == 0).map(|w| w.wall);
        // Only when packing is worth saying: a tenth faster at least.
        let better = match (auto_wall, file_wall) {
            (Some(a), Some(f)) => a < 0.9 * f,
            _ => false,
        };
        if packs > 0 && better {
            out.auto_wall_secs = auto_wall;
            out.file_wall_secs = file_wall;
            out.auto_units = Some(format!(
                "{} worker(s), {packs} of them pack(s)",
                dag.units().count()
            ));
        }
    }
    Some(out)
}

/// Every planned file's result (a file that never started too, a split file's merged from its
/// parts), sorted by path, with why the failing ones failed; scrubbed of secrets.
fn workers(config: &RunConfig, results: &BTreeMap<usize, WorkerResult>) -> Vec<WorkerResult> {
    let run_started = config.started_unix();
    // Failures are found per worker: a part's tests are timed against its own server's log.
    let results: BTreeMap<usize, WorkerResult> = results
        .iter()
        .map(|(&i, w)| {
            let mut w = w.clone();
            let file = config.dag.file_of(i).unwrap_or(&w.file).to_string();
            if matches!(w.verdict, Verdict::Fail | Verdict::Timeout | Verdict::Error) {
                w.failures = super::failures::failed_tests(&w, &file, tests_ran(&w, run_started));
            }
            w.artifacts = artifacts(&w, &file, &config.plan.report_dir);
            (i, w)
        })
        .collect();
    // A worker that never started (cancelled before its turn) has no result and no logs.
    let result_of = |p: &crate::planner::WorkerPlan| {
        results
            .get(&p.index)
            .cloned()
            .unwrap_or_else(|| WorkerResult::not_run(p.index, &p.file, &p.stem, p.db_name()))
    };
    let mut workers: Vec<WorkerResult> = config
        .dag
        .files()
        .map(|w| {
            if w.parts.is_empty() {
                return result_of(w);
            }
            let parts: Vec<WorkerResult> = w
                .parts
                .iter()
                .filter_map(|&p| config.dag.workers.get(p))
                .map(result_of)
                .collect();
            super::parts::merge(w, &parts)
        })
        .map(scrub_worker)
        .collect();
    workers.sort_by(|a, b| a.file.cmp(&b.file));
    workers
}

/// What `[report] artifacts` kept of each attempt's artifacts folder: the last attempt's in the
/// file's folder, each earlier one's in its `attempt-<n>/`; each tied to the test of that
/// attempt's JUnit its folder is named after.
fn artifacts(w: &WorkerResult, file: &str, report_dir: &Path) -> Vec<Artifact> {
    let Some(dir) = &w.log_dir else {
        return Vec::new();
    };
    let last = w.attempts.last().map(|a| a.number).unwrap_or(1);
    let mut out = Vec::new();
    for n in w.attempts.iter().map(|a| a.number) {
        let folder = if n == last {
            dir.clone()
        } else {
            dir.join(files::attempt_dir(n))
        };
        // Each test once: one its test tool reran has a case for each run.
        let mut ids: Vec<String> = read(&folder.join(files::JUNIT))
            .map(|r| case_times(file, &r).into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        out.extend(list(&folder.join(files::ARTIFACTS), report_dir, n, &ids));
    }
    out
}

/// When the last attempt's tests ran (Unix seconds).
fn tests_ran(w: &WorkerResult, run_started: f64) -> (f64, f64) {
    w.attempts
        .last()
        .and_then(|a| {
            a.phases
                .iter()
                .find(|p| p.phase == crate::events::Phase::Testing)
        })
        .map(|p| (run_started + p.start, run_started + p.end))
        .unwrap_or((run_started, f64::INFINITY))
}

fn scrub_worker(mut w: WorkerResult) -> WorkerResult {
    w.message = w.message.map(|m| scrub(&m).into_owned());
    for f in &mut w.failures {
        f.message = scrub(&f.message).into_owned();
        for l in f.detail.iter_mut().chain(f.server_lines.iter_mut()) {
            *l = scrub(l).into_owned();
        }
    }
    for a in &mut w.attempts {
        a.message = a.message.take().map(|m| scrub(&m).into_owned());
    }
    w
}

/// How to reach each kept database: its URL (password hidden), logs, and where the password is.
/// Each part of a split file has its own.
fn kept(facts: &Facts) -> Vec<KeptDatabase> {
    let mut workers: Vec<&WorkerResult> = facts.results.values().collect();
    workers.sort_by(|a, b| a.file.cmp(&b.file));
    let password_file = facts.cluster.map(|c| c.password_file.clone());
    workers
        .iter()
        .filter(|w| w.db_kept)
        .map(|w| KeptDatabase {
            name: w.db_name.clone(),
            url: redact(&crate::planner::with_database(
                facts.template_url,
                &w.db_name,
            )),
            file: w.file.clone(),
            log_dir: w.log_dir.clone().unwrap_or_default(),
            password_file: password_file.clone(),
            resources: facts
                .held
                .iter()
                .filter(|h| h.follows.as_deref() == Some(w.db_name.as_str()))
                .map(|h| h.name.clone())
                .collect(),
        })
        .collect()
}
