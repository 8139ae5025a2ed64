//! `dry-run`: the DAG fully resolved per worker, as a tree, JSON or Graphviz DOT. Pure rendering:
//! no connection, no process.

use std::fmt::Write;

use serde::Serialize;

use crate::plan::duration::format_duration;
use crate::plan::{Jobs, Plan};
use crate::planner::{
    with_database, Action, Dag, PrepareCommands, PreparePlan, RunTime, Stage, WorkerCommands,
};
use crate::steps::database::redact;

/// Stands in for the run id in dry-run output (same length as a real one).
pub const RUN_ID: &str = "xxxxxxxx";
/// Stands in for a port only known at run time.
pub const PORT: &str = "<port>";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRunFormat {
    Text,
    Json,
    Dot,
}

fn template_url(plan: &Plan, dag: &Dag) -> String {
    crate::planner::shown_template_url(plan, &dag.template_name)
}

#[derive(Serialize)]
struct WorkerView<'a> {
    index: usize,
    file: &'a str,
    database: &'a str,
    log_dir: String,
    /// `{artifacts_dir}` of each attempt while it runs (an earlier attempt's moves to
    /// `attempt-<n>/` before a retry).
    artifacts_dir: String,
    predicted_secs: Option<f64>,
    /// A pack's files (`units = "auto"`), run one after another by its one test process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<&'a str>,
    /// A part of a split file: the test ids it runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tests: Vec<&'a str>,
    /// Its processes' nice value, when the run yields its CPU to the critical path.
    #[serde(skip_serializing_if = "is_zero")]
    nice: i32,
    /// Its copy and start-up wait for the critical worker's start-up.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    after_critical: bool,
    /// The attempts a failure brings (`retries`), each in a fresh database; a pack's files are
    /// retried alone, each in its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retries: Vec<RetryView<'a>>,
    #[serde(flatten)]
    commands: WorkerCommands<String>,
}

#[derive(Serialize)]
struct RetryView<'a> {
    attempt: usize,
    database: &'a str,
}

/// Stands in for each service's port, `<port.NAME>`.
fn service_ports(plan: &Plan) -> Vec<(String, String)> {
    plan.services
        .iter()
        .map(|s| (s.name.clone(), format!("<port.{}>", s.name)))
        .collect()
}

fn worker_views<'a>(plan: &'a Plan, dag: &'a Dag) -> Vec<WorkerView<'a>> {
    let url = template_url(plan, dag);
    let ports = service_ports(plan);
    dag.units()
        .map(|w| {
            let rt = RunTime {
                port: PORT,
                template_url: &url,
                service_ports: &ports,
            };
            let mut commands = rt.worker(&w.attempts[0].commands, w.db_name());
            for (_, v) in commands.test_env.iter_mut() {
                *v = redact_in(v);
            }
            if let Some(s) = commands.server.as_mut() {
                for (_, v) in s.env.iter_mut() {
                    *v = redact_in(v);
                }
            }
            WorkerView {
                index: w.index,
                file: &w.file,
                database: w.db_name(),
                log_dir: w.log_dir.display().to_string(),
                artifacts_dir: w.attempts[0].paths.artifacts.display().to_string(),
                predicted_secs: w.predicted.map(|d| d.as_secs_f64()),
                nice: w.nice,
                after_critical: w.after_critical,
                files: w
                    .pack
                    .iter()
                    .map(|&f| dag.workers[f].file.as_str())
                    .collect(),
                tests: w
                    .part
                    .iter()
                    .flat_map(|p| &p.tests)
                    .map(String::as_str)
                    .collect(),
                retries: w
                    .attempts
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(i, a)| RetryView {
                        attempt: i + 1,
                        database: &a.db_name,
                    })
                    .collect(),
                commands,
            }
        })
        .collect()
}

/// The preparation as it will run (the cluster's port stands in), passwords redacted.
fn shown_prepare(plan: &Plan, dag: &Dag, p: &PreparePlan) -> PrepareCommands<String> {
    let url = template_url(plan, dag);
    let rt = RunTime {
        port: "",
        template_url: &url,
        service_ports: &[],
    };
    let mut filled = rt.prepare(&p.commands, p.target());
    let target_url = with_database(&url, p.target());
    let shown_url = redact(&target_url);
    for c in filled.commands.iter_mut() {
        for w in c.iter_mut() {
            *w = w.replace(&target_url, &shown_url);
        }
    }
    for (_, v) in filled.env.iter_mut() {
        *v = redact_in(v);
    }
    filled
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Redacts a password in a value that is a URL.
fn redact_in(v: &str) -> String {
    if v.contains("://") {
        redact(v)
    } else {
        v.to_string()
    }
}

/// `NAME=value ` words before a command, redacted; empty without variables.
fn env_prefix(env: &[(String, String)]) -> String {
    let redacted: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.clone(), redact_in(v))).collect();
    let text = env_text(&redacted);
    if text.is_empty() {
        text
    } else {
        text + " "
    }
}

fn env_text(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={}", shell_words::quote(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn render(plan: &Plan, dag: &Dag, format: DryRunFormat) -> String {
    match format {
        DryRunFormat::Text => text(plan, dag),
        DryRunFormat::Json => json(plan, dag),
        DryRunFormat::Dot => dot(plan, dag),
    }
}

fn text(plan: &Plan, dag: &Dag) -> String {
    let mut o = String::new();
    let setup_n = text_setup(&mut o, plan, dag);
    text_workers(&mut o, plan, dag);
    let teardown_n = text_teardown(&mut o, plan, dag);
    let per_worker =
        if plan.server.is_some() { 5 } else { 3 } + plan.resources.len() + 2 * plan.services.len();
    let predicted = dag
        .predicted_wall
        .map(|d| format!("; predicted wall time {:.1}s", d.as_secs_f64()))
        .unwrap_or_else(|| "; no timings recorded yet".into());
    let units = dag.units().count() + dag.queued().len();
    let files = if units == dag.files().count() {
        format!("{units} files")
    } else {
        format!("{} files in {units} workers", dag.files().count())
    };
    let _ = writeln!(
        o,
        "{} steps: {setup_n} setup, {} worker ({files} × {per_worker}), {} teardown{predicted}",
        setup_n + units * per_worker + teardown_n,
        units * per_worker,
        teardown_n
    );
    o
}

/// The header and the setup steps; returns how many.
fn text_setup(o: &mut String, plan: &Plan, dag: &Dag) -> usize {
    let url = redact(&template_url(plan, dag));
    let _ = writeln!(
        o,
        "plan {} (root {})",
        plan.path.display(),
        plan.root.display()
    );
    let _ = writeln!(
        o,
        "(run id {RUN_ID} stands for the id each apply draws, {PORT} for each worker's free port)"
    );
    let _ = writeln!(o, "setup");
    let setup: Vec<_> = dag
        .nodes
        .iter()
        .filter(|n| n.stage == Stage::Setup)
        .collect();
    for (i, n) in setup.iter().enumerate() {
        let last = i + 1 == setup.len();
        let (branch, cont) = if last {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        match &n.action {
            Action::Setup {
                command,
                creates,
                env,
            } => {
                let skip = creates
                    .as_ref()
                    .map(|c| format!("  (skipped when {c} exists)"))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "{branch} run {}{}{skip}",
                    env_prefix(env),
                    shell_words::join(command)
                );
            }
            Action::StartCluster { keep: false } => {
                let _ = writeln!(o, "{branch} start an ephemeral PostgreSQL (initdb into .e2e-plan/clusters/, free port, fsync off)");
            }
            Action::StartCluster { keep: true } => {
                let _ = writeln!(o, "{branch} start the kept PostgreSQL in .e2e-plan/cluster (initdb only when it is missing, half-made or of another major version; stopped after the run, kept for the next)");
            }
            Action::PrepareTemplate(p) => {
                let how = match &p.build {
                    Some(b) => format!("skipped when its fingerprint matches; else built in a fresh database {b} and swapped in"),
                    None => "created if missing; prepare runs in it every time".to_string(),
                };
                let _ = writeln!(
                    o,
                    "{branch} prepare template {} at {url} ({how})",
                    p.template
                );
                let filled = shown_prepare(plan, dag, p);
                let env = env_prefix(&filled.env);
                for (j, c) in filled.commands.iter().enumerate() {
                    let b = if j + 1 == filled.commands.len() {
                        "└─"
                    } else {
                        "├─"
                    };
                    let _ = writeln!(o, "{cont}{b} {env}{}", shell_words::join(c));
                }
            }
            _ => {}
        }
    }
    setup.len()
}

/// Every worker, fully resolved.
fn text_workers(o: &mut String, plan: &Plan, dag: &Dag) {
    let jobs = match dag.jobs {
        Jobs::Auto => "a core each at first, more while cores stand idle".to_string(),
        Jobs::Fixed(0) => "all at once".to_string(),
        Jobs::Fixed(n) => format!("{n} at once"),
    };
    let order = if dag.units().all(|w| w.predicted.is_none()) {
        "in path order: no timings recorded yet"
    } else {
        "longest first"
    };
    let _ = writeln!(
        o,
        "workers ({} files, {jobs}, {order})",
        dag.files().count()
    );
    for why in dag.packing.iter().chain(&dag.parting) {
        let _ = writeln!(o, "units = \"auto\": {why}");
    }
    let views = worker_views(plan, dag);
    let queued = dag.queued();
    for (i, w) in views.iter().enumerate() {
        let last = i + 1 == views.len() && queued.is_empty();
        let (branch, cont) = if last {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let mut nice = if w.nice > 0 {
            format!(", nice {}", w.nice)
        } else {
            String::new()
        };
        if w.after_critical {
            nice.push_str(", after the critical start-up");
        }
        let predicted = w
            .predicted_secs
            .map(|s| format!("  (~{s:.1}s{nice})"))
            .unwrap_or_default();
        if !w.tests.is_empty() {
            let (first, last) = (w.tests[0], w.tests[w.tests.len() - 1]);
            let _ = writeln!(
                o,
                "{branch} [{}] {}: {} tests, {first} … {last}{predicted}",
                w.index,
                w.file,
                w.tests.len()
            );
        } else if w.files.is_empty() {
            let _ = writeln!(o, "{branch} [{}] {}{predicted}", w.index, w.file);
        } else {
            let _ = writeln!(
                o,
                "{branch} [{}] {} files in one test process, one after another: {}{predicted}",
                w.index,
                w.files.len(),
                w.files.join(", ")
            );
        }
        worker_steps(o, plan, dag, w, cont);
    }
    text_queue(o, dag);
}

/// The queue's files: no timings yet, so the run decides their units as it learns them.
fn text_queue(o: &mut String, dag: &Dag) {
    let queued = dag.queued();
    let Some(lanes) = dag.nodes.iter().find_map(|n| match n.action {
        Action::Queue { lanes, .. } => Some(lanes),
        _ => None,
    }) else {
        return;
    };
    let _ = writeln!(
        o,
        "└─ [queue] {} files with no timings yet, {lanes} at a time: each alone until start-ups are seen to outweigh tests, then the rest packed, a share per lane; each file its own database while alone, one per pack",
        queued.len()
    );
    for (i, &f) in queued.iter().enumerate() {
        let Some(w) = dag.workers.get(f) else {
            continue;
        };
        let branch = if i + 1 == queued.len() {
            "└─"
        } else {
            "├─"
        };
        let _ = writeln!(
            o,
            "   {branch} {} (alone: database {})",
            w.file,
            w.db_name()
        );
    }
}

/// One worker's steps, under its line.
fn worker_steps(o: &mut String, plan: &Plan, dag: &Dag, w: &WorkerView, cont: &str) {
    let grace = format_duration(plan.stop_timeout());
    let source = if plan.has_pool() {
        " (or claim a ready copy from its pool)"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "{cont}├─ clone database {} from {}{source}",
        w.database, dag.template_name
    );
    for r in &w.commands.resources {
        let _ = writeln!(
            o,
            "{cont}├─ create resource {}: {}{} (undone after the run, unless kept with the database: {})",
            r.name,
            env_prefix(&r.env),
            shell_words::join(&r.create),
            shell_words::join(&r.destroy)
        );
    }
    for (svc, spec) in w.commands.services.iter().zip(&plan.services) {
        let c = &svc.commands;
        let _ = writeln!(
            o,
            "{cont}├─ start service {}: {}{}",
            svc.name,
            env_prefix(&c.env),
            shell_words::join(&c.command)
        );
        let _ = writeln!(
            o,
            "{cont}├─ wait until ready: {} (within {})",
            c.ready,
            format_duration(spec.ready_timeout)
        );
    }
    if let Some(s) = &w.commands.server {
        let _ = writeln!(
            o,
            "{cont}├─ start server: {} {}",
            env_text(&s.env),
            shell_words::join(&s.command)
        );
        let timeout = plan
            .server
            .as_ref()
            .map(|s| format_duration(s.ready_timeout))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{cont}├─ wait until ready: {} (within {timeout})",
            s.ready
        );
    }
    let env = env_text(&w.commands.test_env);
    let env = if env.is_empty() {
        String::new()
    } else {
        format!("{env} ")
    };
    let _ = writeln!(
        o,
        "{cont}├─ run tests: {env}{} (timeout {})",
        shell_words::join(&w.commands.test),
        format_duration(plan.test.timeout)
    );
    let services = if plan.services.is_empty() {
        ""
    } else {
        ", then the services in reverse order"
    };
    let stop = if plan.server.is_some() {
        format!("stop server and tests{services}")
    } else {
        format!("stop tests{services}")
    };
    let retries = plan.run.retries;
    let last = if retries > 0 { "├─" } else { "└─" };
    let _ = writeln!(
        o,
        "{cont}{last} {stop} (SIGTERM to the process group, SIGKILL after {grace})"
    );
    if retries == 0 {
        return;
    }
    let again = if w.files.is_empty() {
        let dbs: Vec<&str> = w.retries.iter().map(|r| r.database).collect();
        format!(
            "if it fails: up to {retries} more attempt(s), each with a fresh database ({}), server and port",
            dbs.join(", ")
        )
    } else {
        format!(
            "a file of it that fails: retried alone, up to {retries} more attempt(s), each with a fresh database, server and port"
        )
    };
    let _ = writeln!(o, "{cont}└─ {again}");
}

/// The teardown steps; returns how many.
fn text_teardown(o: &mut String, plan: &Plan, dag: &Dag) -> usize {
    let _ = writeln!(o, "teardown");
    let teardown: Vec<_> = dag
        .nodes
        .iter()
        .filter(|n| n.stage == Stage::Teardown || matches!(n.action, Action::RetryFailed { .. }))
        .collect();
    for (i, n) in teardown.iter().enumerate() {
        let branch = if i + 1 == teardown.len() {
            "└─"
        } else {
            "├─"
        };
        let what = match &n.action {
            Action::RetryFailed { retries } => format!("retry failed files up to {retries} time(s), each in a fresh database (at most {} failed files)", plan.run.max_retry_files),
            Action::Report => format!("merge reports into {}/junit.xml, summary.json, report.html", plan.report_dir.display()),
            Action::Cleanup { keep } => format!("drop worker databases (keep = {})", keep_name(*keep)),
            Action::RefillPool { size } => {
                format!("refill the pool to {size} ready copies for the next run")
            }
            Action::StopCluster { keep: false } => "stop and delete the ephemeral PostgreSQL".into(),
            Action::StopCluster { keep: true } => "stop the kept PostgreSQL (its data stays for the next run)".into(),
            _ => continue,
        };
        let _ = writeln!(o, "{branch} {what}");
    }
    teardown.len()
}

fn keep_name(keep: crate::plan::Keep) -> String {
    serde_json::to_value(keep)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn json(plan: &Plan, dag: &Dag) -> String {
    #[derive(Serialize)]
    struct Step<'a> {
        id: &'a str,
        stage: Stage,
        depends_on: Vec<&'a str>,
        always: bool,
        #[serde(flatten)]
        action: ShownAction<'a>,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        plan: String,
        root: String,
        run_id: &'a str,
        template: String,
        jobs: Jobs,
        keep: String,
        predicted_wall_secs: Option<f64>,
        /// `units = "auto"`: what was packed and split, and why (or why not).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        units: Vec<&'a str>,
        /// `units = "auto"`: every number of packs weighed (0: a worker per file).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        weighed: Vec<WeighedView>,
        /// Files with no timings yet, whose units the run decides as it learns them.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        queue: Vec<&'a str>,
        steps: Vec<Step<'a>>,
        workers: Vec<WorkerView<'a>>,
    }
    let doc = Doc {
        version: 1,
        plan: plan.path.display().to_string(),
        root: plan.root.display().to_string(),
        run_id: &dag.run_id,
        template: redact(&template_url(plan, dag)),
        jobs: dag.jobs,
        keep: keep_name(plan.database.keep),
        predicted_wall_secs: dag.predicted_wall.map(|d| d.as_secs_f64()),
        units: dag
            .packing
            .iter()
            .chain(&dag.parting)
            .map(String::as_str)
            .collect(),
        weighed: dag
            .weighed
            .iter()
            .map(|w| WeighedView {
                packs: w.packs,
                workers: w.units,
                predicted_wall_secs: w.wall,
                measured: w.measured,
                scaled: w.scaled,
            })
            .collect(),
        queue: dag
            .queued()
            .iter()
            .filter_map(|&f| dag.workers.get(f))
            .map(|w| w.file.as_str())
            .collect(),
        steps: dag
            .nodes
            .iter()
            .map(|n| Step {
                id: &n.id,
                stage: n.stage,
                depends_on: n.deps.iter().map(|&d| dag.nodes[d].id.as_str()).collect(),
                always: n.always,
                action: shown_action(plan, dag, &n.action),
            })
            .collect(),
        workers: worker_views(plan, dag),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

#[derive(Serialize)]
struct WeighedView {
    packs: usize,
    workers: usize,
    predicted_wall_secs: f64,
    /// The figure is what earlier runs of this option took, not the model's.
    measured: bool,
    /// The model's figure times this: runs of as many workers took that much longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    scaled: Option<f64>,
}

/// An action as JSON; the preparation filled as it will run, like the text view shows it.
#[derive(Serialize)]
#[serde(untagged)]
enum ShownAction<'a> {
    Prepare {
        kind: &'static str,
        template: &'a str,
        build: &'a Option<String>,
        #[serde(flatten)]
        commands: PrepareCommands<String>,
    },
    Other(&'a Action),
}

fn shown_action<'a>(plan: &Plan, dag: &Dag, action: &'a Action) -> ShownAction<'a> {
    match action {
        Action::PrepareTemplate(p) => ShownAction::Prepare {
            kind: "prepare_template",
            template: &p.template,
            build: &p.build,
            commands: shown_prepare(plan, dag, p),
        },
        other => ShownAction::Other(other),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(plan: &Plan, dag: &Dag) -> String {
    let mut o = String::from(
        "digraph e2e_plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    let label = |n: &crate::planner::Node| -> String {
        match &n.action {
            Action::Setup { command, .. } => format!("setup: {}", shell_words::join(command)),
            Action::Worker { .. } | Action::Pack { .. } => String::new(),
            other => crate::steps::step_label(other),
        }
    };
    for n in &dag.nodes {
        if let Action::Worker { index } | Action::Pack { index } = n.action {
            let w = &dag.workers[index];
            let _ = writeln!(
                o,
                "  subgraph \"cluster_{}\" {{\n    label=\"{}\";",
                dot_escape(&n.id),
                dot_escape(&w.file)
            );
            let mut steps = vec![("clone".to_string(), format!("clone {}", w.db_name()))];
            for r in &plan.resources {
                steps.push((format!("resource-{}", r.name), format!("create {}", r.name)));
            }
            for svc in &plan.services {
                steps.push((
                    format!("service-{}", svc.name),
                    format!("start {}", svc.name),
                ));
            }
            if plan.server.is_some() {
                steps.push(("server".into(), "start server".into()));
                steps.push(("ready".into(), "wait ready".into()));
            }
            steps.push(("test".into(), "run tests".into()));
            steps.push(("stop".into(), "stop".into()));
            for (k, l) in &steps {
                let _ = writeln!(
                    o,
                    "    \"{}/{k}\" [label=\"{}\"];",
                    dot_escape(&n.id),
                    dot_escape(l)
                );
            }
            for pair in steps.windows(2) {
                let _ = writeln!(
                    o,
                    "    \"{0}/{1}\" -> \"{0}/{2}\";",
                    dot_escape(&n.id),
                    pair[0].0,
                    pair[1].0
                );
            }
            o.push_str("  }\n");
        } else {
            let _ = writeln!(
                o,
                "  \"{}\" [label=\"{}\"];",
                dot_escape(&n.id),
                dot_escape(&label(n))
            );
        }
    }
    let entry = |n: &crate::planner::Node| match n.action {
        Action::Worker { .. } | Action::Pack { .. } => format!("{}/clone", n.id),
        _ => n.id.clone(),
    };
    let exit = |n: &crate::planner::Node| match n.action {
        Action::Worker { .. } | Action::Pack { .. } => format!("{}/stop", n.id),
        _ => n.id.clone(),
    };
    for n in &dag.nodes {
        for &d in &n.deps {
            let style = if n.always { " [style=dashed]" } else { "" };
            let _ = writeln!(
                o,
                "  \"{}\" -> \"{}\"{style};",
                dot_escape(&exit(&dag.nodes[d])),
                dot_escape(&entry(n))
            );
        }
    }
    o.push_str("}\n");
    o
}
