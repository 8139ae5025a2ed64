//! Commands and environments as the planner resolves them. Everything known before the run is
//! filled in; only `{port}` (a free port, taken when the server starts) and `{db_url}` (a throwaway
//! cluster's port exists only once it runs) are left, and [`RunTime`] is the one place that fills
//! them.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::names::with_database;
use crate::plan::template::{fill_command, resolve_command, resolve_command_files, Template, Word};
use crate::plan::Plan;

/// A worker attempt's commands: `T` is [`Template`] as planned, `String` once filled.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerCommands<T = Template> {
    /// Its `[[resource]]`s' commands, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceCommands<T>>,
    /// Its `[[service]]`s, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceCommands<T>>,
    pub server: Option<ServerCommands<T>>,
    pub test: Vec<T>,
    pub test_env: Vec<(String, T)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerCommands<T = Template> {
    pub command: Vec<T>,
    pub env: Vec<(String, T)>,
    pub ready: T,
}

/// A service: a server of the attempt's own, by name.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceCommands<T = Template> {
    pub name: String,
    #[serde(flatten)]
    pub commands: ServerCommands<T>,
}

/// A resource's commands, by name.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceCommands<T = Template> {
    pub name: String,
    pub create: Vec<T>,
    pub destroy: Vec<T>,
    pub env: Vec<(String, T)>,
}

/// The preparation's commands and `[database] env` (besides `DATABASE_URL`), resolved for the
/// database they run in.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareCommands<T = Template> {
    pub commands: Vec<Vec<T>>,
    pub env: Vec<(String, T)>,
}

/// The values only the run knows.
#[derive(Debug, Clone, Copy)]
pub struct RunTime<'a> {
    /// The attempt's port (empty outside a worker).
    pub port: &'a str,
    /// The template's URL: from the plan, or the throwaway cluster's once it runs.
    pub template_url: &'a str,
    /// Each service's port (`{port.NAME}`), by name.
    pub service_ports: &'a [(String, String)],
}

impl RunTime<'_> {
    /// The run-time placeholders for commands that work in database `db`.
    fn vars<'k>(&self, db: &str, keys: &'k [String]) -> HashMap<&'k str, String> {
        let mut vars = HashMap::from([
            ("port", self.port.to_string()),
            ("db_url", with_database(self.template_url, db)),
        ]);
        for (key, (_, port)) in keys.iter().zip(self.service_ports) {
            vars.insert(key.as_str(), port.clone());
        }
        vars
    }

    fn port_keys(&self) -> Vec<String> {
        self.service_ports
            .iter()
            .map(|(name, _)| format!("port.{name}"))
            .collect()
    }

    pub fn worker(&self, c: &WorkerCommands, db: &str) -> WorkerCommands<String> {
        let keys = self.port_keys();
        let vars = self.vars(db, &keys);
        let server = |s: &ServerCommands| ServerCommands {
            command: fill_all(&s.command, &vars),
            env: fill_env(&s.env, &vars),
            ready: s.ready.fill(&vars),
        };
        WorkerCommands {
            resources: c
                .resources
                .iter()
                .map(|r| ResourceCommands {
                    name: r.name.clone(),
                    create: fill_all(&r.create, &vars),
                    destroy: fill_all(&r.destroy, &vars),
                    env: fill_env(&r.env, &vars),
                })
                .collect(),
            services: c
                .services
                .iter()
                .map(|s| ServiceCommands {
                    name: s.name.clone(),
                    commands: server(&s.commands),
                })
                .collect(),
            server: c.server.as_ref().map(server),
            test: fill_all(&c.test, &vars),
            test_env: fill_env(&c.test_env, &vars),
        }
    }

    pub fn prepare(&self, c: &PrepareCommands, db: &str) -> PrepareCommands<String> {
        let vars = self.vars(db, &[]);
        PrepareCommands {
            commands: c.commands.iter().map(|w| fill_all(w, &vars)).collect(),
            env: fill_env(&c.env, &vars),
        }
    }
}

fn fill_all(words: &[Template], vars: &HashMap<&str, String>) -> Vec<String> {
    words.iter().map(|t| t.fill(vars)).collect()
}

fn fill_env(env: &[(String, Template)], vars: &HashMap<&str, String>) -> Vec<(String, String)> {
    env.iter().map(|(k, t)| (k.clone(), t.fill(vars))).collect()
}

fn resolve_env(
    env: &[(String, Template)],
    vars: &HashMap<&str, String>,
) -> Vec<(String, Template)> {
    env.iter()
        .map(|(k, t)| (k.clone(), t.resolve(vars)))
        .collect()
}

/// What one worker attempt is known by before the run.
pub(super) struct WorkerVars<'a> {
    pub plan: &'a Plan,
    pub run_id: &'a str,
    pub index: usize,
    pub file: &'a str,
    pub stem: &'a str,
    pub db_name: &'a str,
    pub log_dir: &'a Path,
    pub junit: &'a Path,
    pub artifacts: &'a Path,
    /// A pack's files: a test command word that is exactly `{file}` becomes all of them.
    pub files: Option<&'a [String]>,
}

impl WorkerVars<'_> {
    fn map(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("root", self.plan.root.display().to_string()),
            ("run", self.run_id.to_string()),
            ("worker", self.index.to_string()),
            ("file", self.file.to_string()),
            ("file_stem", self.stem.to_string()),
            ("db_name", self.db_name.to_string()),
            ("junit", self.junit.display().to_string()),
            ("log_dir", self.log_dir.display().to_string()),
            ("artifacts_dir", self.artifacts.display().to_string()),
        ])
    }

    /// The attempt's commands with everything but `{port}` and `{db_url}` filled.
    pub fn commands(&self, args: &[String]) -> WorkerCommands {
        let vars = self.map();
        WorkerCommands {
            resources: self
                .plan
                .resources
                .iter()
                .map(|r| ResourceCommands {
                    name: r.name.clone(),
                    create: resolve_command(&r.create, &vars, &[]),
                    destroy: resolve_command(&r.destroy, &vars, &[]),
                    env: resolve_env(&r.env, &vars),
                })
                .collect(),
            services: self
                .plan
                .services
                .iter()
                .map(|s| ServiceCommands {
                    name: s.name.clone(),
                    commands: ServerCommands {
                        command: resolve_command(&s.command, &vars, &[]),
                        env: resolve_env(&s.env, &vars),
                        ready: s.ready.resolve(&vars),
                    },
                })
                .collect(),
            server: self.plan.server.as_ref().map(|s| ServerCommands {
                command: resolve_command(&s.command, &vars, args),
                env: resolve_env(&s.env, &vars),
                ready: s.ready.resolve(&vars),
            }),
            test: resolve_command_files(&self.plan.test.command, &vars, args, self.files),
            test_env: resolve_env(&self.plan.test.env, &vars),
        }
    }
}

/// Run-wide placeholder values of setup and prepare commands, and the database prepared.
fn run_vars(plan: &Plan, run_id: &str, db_name: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        ("root", plan.root.display().to_string()),
        ("run", run_id.to_string()),
        ("db_name", db_name.to_string()),
    ])
}

/// Prepare's commands and env, resolved for database `db` (all but `{db_url}`): `DATABASE_URL`
/// names the database prepared, unless `[database] env` sets it.
pub fn prepare_commands(plan: &Plan, run_id: &str, db: &str) -> PrepareCommands {
    let vars = run_vars(plan, run_id, db);
    let mut env = Vec::new();
    if !plan.database.env.iter().any(|(k, _)| k == "DATABASE_URL") {
        env.push(("DATABASE_URL".to_string(), Template::var("db_url")));
    }
    env.extend(resolve_env(&plan.database.env, &vars));
    PrepareCommands {
        commands: plan
            .database
            .prepare
            .iter()
            .map(|c| resolve_command(c, &vars, &[]))
            .collect(),
        env,
    }
}

/// A setup command and its env, filled: setup may only use `{root}` and `{run}`.
pub fn setup_command(
    plan: &Plan,
    run_id: &str,
    words: &[Word],
    env: &[(String, Template)],
) -> (Vec<String>, Vec<(String, String)>) {
    let vars = run_vars(plan, run_id, "");
    (fill_command(words, &vars, &[]), fill_env(env, &vars))
}

/// A command to run, filled, and its environment.
pub type CollectCommand = (Vec<String>, Vec<(String, String)>);

/// `[test] collect` for one file, filled, and the `[test] env` entries it can have: those that
/// need nothing a worker has (it runs before any database or server exists).
pub fn collect_command(plan: &Plan, file: &str, args: &[String]) -> Option<CollectCommand> {
    let words = plan.test.collect.as_ref()?;
    let vars = HashMap::from([
        ("root", plan.root.display().to_string()),
        ("file", file.to_string()),
        ("db_name", super::names::template_name(plan)),
        ("db_url", collect_db_url(plan)),
    ]);
    let env = plan
        .test
        .env
        .iter()
        .filter(|(_, t)| {
            crate::plan::template::WORKER_PLACEHOLDERS
                .iter()
                .all(|p| crate::plan::COLLECT_PLACEHOLDERS.contains(p) || !t.uses(p))
        })
        .map(|(k, t)| (k.clone(), t.fill(&vars)))
        .collect();
    Some((fill_command(words, &vars, args), env))
}

/// `{db_url}` in `[test] collect`: the template's, for settings that parse a URL at import.
/// Collect runs before the template is prepared (and before a local cluster starts), so with a
/// local cluster it names the template as it will be called, on no reachable server.
fn collect_db_url(plan: &Plan) -> String {
    plan.database.template.clone().unwrap_or_else(|| {
        format!(
            "postgresql://postgres@127.0.0.1:1/{}",
            super::names::EPHEMERAL_TEMPLATE
        )
    })
}
