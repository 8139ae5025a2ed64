//! The resources a run creates and how each is undone; recorded in the engine's journal.

use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::engine::journal::{self, Undo};
use crate::engine::BoxFuture;
use crate::steps::process::{kill_group_verified, wait_gone};
use crate::sys;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A worker database on the server reached through `admin_url` (the maintenance database).
    Database {
        admin_url: String,
        name: String,
        /// On an ephemeral cluster: when the cluster is gone, so is the database.
        #[serde(default)]
        ephemeral: bool,
    },
    /// A process group we started; `pgid` 0 until spawned.
    ProcessGroup {
        what: String,
        pgid: u32,
        started: u64,
        /// The `E2E_PLAN_MARK` its processes carry: finds them even when `pgid` is still 0
        /// (the runner died between spawn and record) or a descendant left the group.
        #[serde(default)]
        mark: String,
    },
    /// A folder we created (an ephemeral cluster's data, a socket folder).
    Folder { path: PathBuf },
    /// A `[[resource]]` a worker attempt made: undone by its destroy command, filled as it was
    /// made, in the root, with its environment. It follows its attempt's database (`database`):
    /// kept with it, else destroyed.
    Command {
        what: String,
        database: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: PathBuf,
        /// Exit codes that say it is gone (0: undone now; another: gone already).
        ok: Vec<i32>,
    },
    /// An embedded cluster's postmaster. A throwaway one is stopped with an immediate shutdown;
    /// the kept one (`kept`) with a fast one, and its folder stays for the next run.
    Postmaster {
        data_dir: PathBuf,
        pid: u32,
        started: u64,
        #[serde(default)]
        kept: bool,
    },
}

impl journal::Resource for Resource {
    fn undo(&self) -> BoxFuture<Result<Undo, String>> {
        let this = self.clone();
        Box::pin(async move {
            match this {
                Resource::Database {
                    admin_url,
                    name,
                    ephemeral,
                } => match crate::steps::database::drop_database_after_create(&admin_url, &name)
                    .await
                {
                    Ok(true) => Ok(Undo::Undone),
                    Ok(false) => Ok(Undo::AlreadyGone),
                    // The throwaway cluster that held it is gone, and so is the database.
                    Err(crate::steps::database::DbError::Connect { .. }) if ephemeral => {
                        Ok(Undo::AlreadyGone)
                    }
                    Err(e) => Err(e.to_string()),
                },
                Resource::ProcessGroup {
                    pgid,
                    started,
                    mark,
                    ..
                } => {
                    let mut stopped = false;
                    if pgid != 0 {
                        stopped = kill_group_verified(pgid, started, Duration::from_secs(2)).await;
                    }
                    if !mark.is_empty() && !sys::marked_processes(&mark).is_empty() {
                        stopped = true;
                        sys::kill_marked(&mark);
                        wait_gone(
                            || !sys::marked_processes(&mark).is_empty(),
                            Duration::from_secs(5),
                        )
                        .await;
                    }
                    Ok(if stopped {
                        Undo::Undone
                    } else {
                        Undo::AlreadyGone
                    })
                }
                Resource::Command {
                    what,
                    argv,
                    env,
                    cwd,
                    ok,
                    ..
                } => {
                    crate::steps::per_worker::command::destroy(&what, &argv, &env, &cwd, &ok).await
                }
                Resource::Folder { path } => match std::fs::remove_dir_all(&path) {
                    Ok(()) => Ok(Undo::Undone),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Undo::AlreadyGone),
                    Err(e) => Err(e.to_string()),
                },
                Resource::Postmaster {
                    pid, started, kept, ..
                } => {
                    if pid == 0 || !sys::is_same_process(pid, started) {
                        return Ok(Undo::AlreadyGone);
                    }
                    if kept {
                        crate::steps::cluster::stop_fast(pid, started).await?;
                        return Ok(Undo::Undone);
                    }
                    // SIGQUIT: immediate shutdown; the data is thrown away anyway.
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?,
                        Signal::QUIT,
                    );
                    wait_gone(
                        || sys::is_same_process(pid, started),
                        Duration::from_secs(10),
                    )
                    .await;
                    Ok(Undo::Undone)
                }
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Resource::Database { name, .. } => format!("database {name}"),
            Resource::ProcessGroup { what, pgid, .. } => format!("{what} (process group {pgid})"),
            Resource::Folder { path } => format!("folder {}", path.display()),
            Resource::Command { what, .. } => what.clone(),
            Resource::Postmaster {
                data_dir,
                pid,
                kept,
                ..
            } => {
                let what = if *kept {
                    "kept PostgreSQL (stopped; its data stays)"
                } else {
                    "ephemeral PostgreSQL"
                };
                format!("{what} (pid {pid}, {})", data_dir.display())
            }
        }
    }
}
