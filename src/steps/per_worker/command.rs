//! A `[[resource]]`: a slice of a shared system (a broker's vhost, a bucket) that each worker
//! attempt makes with its `create` command and undoes with its `destroy` command. The destroy
//! command, filled, is journaled before `create` runs (`Resource::Command`), so `rollback`
//! undoes what a killed runner made. It follows its attempt's database: kept with it, else
//! destroyed by cleanup (a retry's at once).

use std::path::Path;
use std::time::Duration;

use super::{Fut, Held, WorkerResource};
use crate::engine::journal::Undo;
use crate::engine::Cancel;
use crate::planner::{ResourceCommands, WorkerPlan};
use crate::steps::owner::RunEvent;
use crate::steps::process;
use crate::steps::resource::Resource;
use crate::steps::{RunCx, StepError};

/// The key of a resource's [`Held`] record: `resource <name>`.
pub fn key(name: &str) -> String {
    format!("resource {name}")
}

/// How long a create or destroy command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One `[[resource]]` of the plan.
pub struct CommandResource {
    key: String,
    pub name: String,
    ok: Vec<i32>,
}

impl CommandResource {
    pub fn new(spec: &crate::plan::ResourceSpec) -> Self {
        CommandResource {
            key: key(&spec.name),
            name: spec.name.clone(),
            ok: spec.destroy_ok_exit_codes.clone(),
        }
    }

    /// Makes it for attempt `n` of `w` (whose database is `database`), its commands filled:
    /// the destroy command journaled first, then `create` run in the root, its output to
    /// `log`. Err: it failed (with its output's tail) or was interrupted; the Held then names
    /// what may have been made, for the caller to undo.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        cx: &RunCx,
        w: &WorkerPlan,
        n: u32,
        database: &str,
        filled: &ResourceCommands<String>,
        log: &Path,
        cancel: &Cancel,
    ) -> Result<Held, (Option<Held>, StepError)> {
        let what = format!("resource {} for {database}", self.name);
        let record = Resource::Command {
            what: what.clone(),
            database: database.to_string(),
            argv: filled.destroy.clone(),
            env: filled.env.clone(),
            cwd: cx.plan().root.clone(),
            ok: self.ok.clone(),
        };
        let entry = cx.journal.intent(&record).map_err(|e| {
            (
                None,
                StepError::new(format!("cannot write the journal: {e}")),
            )
        })?;
        let mut held = Held::of(&self.key, &what, entry, w, n);
        held.follows = Some(database.to_string());
        held.record = Some(record);
        cx.send(RunEvent::Held(held.clone()));
        let shown = shell_words::join(&filled.create);
        let ended = process::run_to_end(
            &cx.journal,
            process::Spec {
                nice: w.nice,
                what: format!("create {what}"),
                argv: &filled.create,
                env: &filled.env,
                cwd: &cx.plan().root,
                log,
                run_as: None,
                times: None,
            },
            COMMAND_TIMEOUT,
            cx.plan().stop_timeout(),
            cancel,
        )
        .await;
        match ended {
            Ok(Some(0)) => {
                let _ = cx.journal.done::<Resource>(entry, None);
                Ok(held)
            }
            Ok(Some(code)) => Err((
                Some(held),
                StepError::new(format!(
                    "{what}: `{shown}` exited with {code}; its log: {}",
                    log.display()
                ))
                .with_detail(process::tail(log, 30)),
            )),
            Ok(None) => Err((
                Some(held),
                StepError::new(format!("{what}: `{shown}` was stopped before it ended")),
            )),
            Err(e) => Err((Some(held), StepError::new(format!("{what}: {e}")))),
        }
    }
}

impl WorkerResource for CommandResource {
    fn key(&self) -> &str {
        &self.key
    }

    /// Resources are made by the attempt, its commands filled ([`CommandResource::create`]).
    fn acquire<'a>(
        &'a self,
        _cx: &'a RunCx,
        _w: &'a WorkerPlan,
        _n: u32,
        _cancel: &'a Cancel,
    ) -> Fut<'a, Result<Option<Held>, StepError>> {
        Box::pin(async move { Ok(None) })
    }

    /// Runs its destroy command, as journaled.
    fn release<'a>(&'a self, cx: &'a RunCx, held: &'a Held) -> Fut<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(Resource::Command {
                what,
                argv,
                env,
                cwd,
                ok,
                ..
            }) = &held.record
            else {
                return Err(format!("{}: its destroy command is not known", held.name));
            };
            destroy(what, argv, env, cwd, ok).await?;
            let _ = cx.journal.undone(held.entry);
            Ok(())
        })
    }
}

/// Runs a resource's destroy command (outside any run: `rollback` too). Undone on exit 0; gone
/// already on another of `ok`; an error with its output's tail otherwise.
pub async fn destroy(
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    ok: &[i32],
) -> Result<Undo, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("{what}: an empty destroy command"));
    };
    let program = if program.contains('/') && Path::new(program).is_relative() {
        cwd.join(program)
    } else {
        Path::new(program).to_path_buf()
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(process::worker_env(env))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "{what}: `{}` did not end in 2 minutes",
                shell_words::join(argv)
            )
        })?
        .map_err(|e| format!("{what}: cannot run `{}`: {e}", shell_words::join(argv)))?;
    match out.status.code() {
        Some(0) => Ok(Undo::Undone),
        Some(c) if ok.contains(&c) => Ok(Undo::AlreadyGone),
        code => {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            Err(format!(
                "{what}: `{}` exited with {}: {}",
                shell_words::join(argv),
                code.map_or("a signal".to_string(), |c| c.to_string()),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }
}
