//! Setup: `[[setup]]` commands, the local cluster (kept or throwaway), and the template's
//! preparation. What setup finds out (the template's URL, the clone strategy, the cluster) goes to
//! the run's owner.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::owner::{ClusterInfo, RunEvent};
use super::per_worker::database::journal_database;
use super::{cluster, database, process, RunCx, StepError};
use crate::engine::Cancel;
use crate::model::ClusterUse;
use crate::plan::Plan;
use crate::planner::{hex, PreparePlan, RunTime};

/// The local cluster a run started: held for `stop-cluster` and the pool's checks.
#[derive(Default)]
pub struct ClusterSlot {
    cluster: tokio::sync::Mutex<Option<cluster::Cluster>>,
    kept: std::sync::OnceLock<bool>,
}

impl ClusterSlot {
    /// A cluster started.
    pub async fn started(&self) -> bool {
        self.cluster.lock().await.is_some()
    }

    /// The run uses the kept local cluster.
    pub fn is_kept(&self) -> bool {
        self.kept.get() == Some(&true)
    }

    async fn set(&self, c: cluster::Cluster) {
        let _ = self.kept.set(c.kept.is_some());
        *self.cluster.lock().await = Some(c);
    }

    /// Stops the cluster unless databases were kept in it; the note says what became of it.
    pub async fn stop(
        &self,
        journal: &crate::engine::journal::Journal,
        keep_running: bool,
    ) -> Result<Option<String>, StepError> {
        let guard = self.cluster.lock().await;
        let Some(c) = guard.as_ref() else {
            return Ok(None);
        };
        if keep_running {
            return Ok(Some(format!(
                "left running on port {} for the kept databases",
                c.port
            )));
        }
        c.stop(journal).await.map_err(StepError::new)?;
        Ok(Some(match c.kept {
            Some(_) => format!("kept in {} for the next run", c.dir.display()),
            None => "deleted".into(),
        }))
    }
}

/// A `[[setup]]` command, skipped when what it `creates` exists.
pub async fn setup_command(
    cx: &RunCx,
    command: &[String],
    creates: Option<&str>,
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<Option<String>, StepError> {
    if let Some(c) = creates {
        if cx.plan().root.join(c).exists() {
            return Ok(Some(format!("skipped: {c} exists")));
        }
    }
    run_once(cx, "setup", command, env, cancel).await?;
    Ok(None)
}

/// The kept cluster when the plan keeps one and no other run holds it; else a throwaway one.
pub async fn start_cluster(cx: &RunCx, keep: bool) -> Result<String, StepError> {
    let state_dir = cx.plan().state_dir();
    let busy = if keep {
        match cluster::hold(&state_dir)? {
            Ok(hold) => return start_kept(cx, hold).await,
            Err(cluster::Busy::InUse) => "another run of this checkout is using it",
            Err(cluster::Busy::Running) => {
                "it is still running from an earlier run, for its kept databases or because its runner died (`e2e-plan rollback` stops it)"
            }
            Err(cluster::Busy::Unreachable) => {
                "running as root, the postgres account cannot reach the project's folder"
            }
        }
    } else {
        ""
    };
    if !busy.is_empty() {
        cx.warn(format!(
            "not using the kept cluster: {busy}; this run uses a throwaway one"
        ));
    }
    let c = cluster::start(&state_dir, &cx.dag().run_id, &cx.journal).await?;
    let note = format!("port {}", c.port);
    started(cx, c).await;
    Ok(note)
}

/// Tells the owner about a cluster that runs, and keeps it for `stop-cluster`.
async fn started(cx: &RunCx, c: cluster::Cluster) {
    let url = c.url(&cx.dag().template_name);
    crate::redact::register_url(&url);
    cx.send(RunEvent::TemplateUrl(url));
    cx.send(RunEvent::Cluster(ClusterInfo {
        used: ClusterUse {
            kept: c.kept.is_some(),
            initdb: c.fresh,
            dir: c.dir.clone(),
        },
        password_file: c.password_file(),
    }));
    cx.cluster.set(c).await;
}

/// Starts the kept cluster and drops what dead runs left in it.
async fn start_kept(cx: &RunCx, hold: std::fs::File) -> Result<String, StepError> {
    let c =
        cluster::start_kept(&cx.plan().state_dir(), &cx.dag().run_id, &cx.journal, hold).await?;
    let admin = database::admin_url(&c.url("postgres"));
    let swept = match database::sweep(&admin, &cx.dag().template_name).await {
        Ok(swept) => swept,
        Err(e) => {
            // Not stored for stop-cluster yet: stop it here rather than leave it running.
            let _ = c.stop(&cx.journal).await;
            return Err(db_err(e));
        }
    };
    if !swept.is_empty() {
        cx.warn(format!(
            "the kept cluster held databases of earlier runs that are over (a dead runner's, or kept ones whose cluster stopped since): dropped {}",
            swept.join(", ")
        ));
    }
    let made = match (&c.made_because, c.fresh) {
        (Some(why), _) => format!(" (made again: {why})"),
        (None, true) => " (made now)".to_string(),
        (None, false) => ": initdb skipped".to_string(),
    };
    let note = format!("port {}, kept in {}{made}", c.port, c.dir.display());
    started(cx, c).await;
    Ok(note)
}

/// Runs a one-off command (setup, prepare) in root, its output to a log shown when it fails.
async fn run_once(
    cx: &RunCx,
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    cancel: &Cancel,
) -> Result<(), StepError> {
    let report_dir = &cx.plan().report_dir;
    std::fs::create_dir_all(report_dir)
        .map_err(|e| StepError::new(format!("cannot create {}: {e}", report_dir.display())))?;
    let log = cx.log_path(&format!("{what}.log"));
    let shown = shell_words::join(argv);
    let mut group = process::spawn(
        &cx.journal,
        process::Spec {
            nice: 0,
            what: format!("{what} `{shown}`"),
            argv,
            env,
            cwd: &cx.plan().root,
            log: &log,
            run_as: None,
            times: None,
        },
    )
    .map_err(StepError::new)?;
    let status = tokio::select! {
        s = group.child.wait() => s.ok(),
        _ = cancel.stop.cancelled() => None,
    };
    let grace = cx.plan().stop_timeout();
    match status {
        Some(s) if s.success() => {
            group.finish(&cx.journal).await;
            Ok(())
        }
        Some(s) => {
            group.finish(&cx.journal).await;
            Err(StepError::new(format!(
                "{what} command `{shown}` failed ({s}); its log: {}",
                log.display()
            ))
            .with_detail(process::tail(&log, 30)))
        }
        None => {
            group.stop(&cx.journal, grace, cancel).await;
            Err(StepError::new(format!(
                "{what} command `{shown}` was interrupted"
            )))
        }
    }
}

/// The template's fingerprint: the prepare commands and the contents of the fingerprint files.
pub fn fingerprint(plan: &Plan) -> String {
    let mut h = Sha256::new();
    // The commands as written: the same for every run and every database they run in.
    for c in &plan.database.prepare {
        h.update(
            crate::plan::template::command_source(c)
                .join("\0")
                .as_bytes(),
        );
        h.update(b"\n");
    }
    let mut files = BTreeSet::new();
    for glob in &plan.database.fingerprint {
        let Ok(g) = globset::Glob::new(glob) else {
            continue;
        };
        let m = g.compile_matcher();
        for path in crate::plan::load::walk_from(&plan.root, glob) {
            if m.is_match(&path) {
                files.insert(path);
            }
        }
    }
    for f in files {
        h.update(f.as_bytes());
        h.update(b"\0");
        h.update(std::fs::read(plan.root.join(&f)).unwrap_or_default());
    }
    hex(&h.finalize())
}

/// Makes the template current: skipped when its fingerprint matches, else prepared (rebuilt
/// from nothing when fingerprinted). Then the pool's ready copies are listed.
pub async fn prepare_template(
    cx: &RunCx,
    p: &PreparePlan,
    cancel: &Cancel,
) -> Result<Option<String>, StepError> {
    if let Some(url) = &cx.plan().database.template {
        cx.send(RunEvent::TemplateUrl(url.clone()));
    }
    cx.pool.set_enabled(cx);
    let template = p.template.as_str();
    let admin = connect_admin(cx).await?;
    let commands = &p.commands.commands;
    let hash = (!cx.plan().database.fingerprint.is_empty()).then(|| fingerprint(cx.plan()));
    if commands.is_empty() {
        return nothing_to_prepare(cx, &admin, template, hash.as_deref()).await;
    }
    database::lock_template(&admin, template)
        .await
        .map_err(db_err)?;
    let Some(hash) = hash else {
        // No fingerprint: there is no way to know whether the template is current, so prepare
        // runs in it every time (the commands must be safe to re-run, as migration tools are).
        database::ensure_template(&admin, template, cx.plan().database.busy_timeout)
            .await
            .map_err(db_err)?;
        run_prepare(cx, p, cancel).await?;
        return Ok(Some(format!("{} command(s) run", commands.len())));
    };
    let exists = database::exists(&admin, template).await.map_err(db_err)?;
    if exists && !cx.config().reprepare {
        let stored = database::fingerprint(&admin, template)
            .await
            .map_err(db_err)?;
        if stored.as_deref() == Some(hash.as_str()) {
            let mut note = format!("fingerprint {} matches: prepare skipped", &hash[..12]);
            if cx.pool.enabled() {
                note = format!(
                    "{note}; {}",
                    pool_note(cx.pool.load(cx, &admin, &hash, false).await?)
                );
            }
            return Ok(Some(note));
        }
    }
    rebuild_template(cx, &admin, p, exists, &hash, cancel).await?;
    if cx.pool.enabled() {
        // Every copy in the pool is of the old template now.
        cx.pool.load(cx, &admin, &hash, true).await?;
    }
    Ok(Some(format!(
        "{} command(s) run in a fresh database, swapped in for {template}",
        commands.len()
    )))
}

/// The admin connection, and the clone strategy the server's version allows.
async fn connect_admin(cx: &RunCx) -> Result<tokio_postgres::Client, StepError> {
    let admin_url = cx.admin_url().await?;
    let admin = database::connect(&admin_url).await.map_err(|e| {
        StepError::new(e.to_string())
            .with_detail("is PostgreSQL running, and does [database] template point at it?")
    })?;
    let version = database::server_version(&admin).await.map_err(db_err)?;
    let file_copy = match cx.plan().database.strategy {
        Some(crate::plan::Strategy::WalLog) => false,
        Some(crate::plan::Strategy::FileCopy) | None => version >= 150_000,
    };
    cx.send(RunEvent::FileCopy(file_copy));
    Ok(admin)
}

/// No prepare commands: the template only has to exist (and a pool to be listed).
async fn nothing_to_prepare(
    cx: &RunCx,
    admin: &tokio_postgres::Client,
    template: &str,
    hash: Option<&str>,
) -> Result<Option<String>, StepError> {
    let created = database::ensure_template(admin, template, cx.plan().database.busy_timeout)
        .await
        .map_err(db_err)?;
    let mut notes: Vec<String> = created
        .then(|| format!("created {template}"))
        .into_iter()
        .collect();
    if let (true, Some(h)) = (cx.pool.enabled(), hash) {
        let n = cx
            .pool
            .load(cx, admin, h, created || cx.config().reprepare)
            .await?;
        notes.push(pool_note(n));
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

pub fn db_err(e: database::DbError) -> StepError {
    StepError::new(e.to_string())
}

fn pool_note(n: usize) -> String {
    format!(
        "{n} ready cop{} in the pool",
        if n == 1 { "y" } else { "ies" }
    )
}

/// Runs the prepare commands in their database (the template, or the one that will replace it),
/// with the environment the planner gave them (`DATABASE_URL` naming that database).
async fn run_prepare(cx: &RunCx, p: &PreparePlan, cancel: &Cancel) -> Result<(), StepError> {
    let template = cx.template().await?;
    let rt = RunTime {
        port: "",
        template_url: &template.url,
        service_ports: &[],
    };
    cx.send(RunEvent::Prepared);
    let filled = rt.prepare(&p.commands, p.target());
    for argv in &filled.commands {
        run_once(cx, "prepare", argv, &filled.env, cancel).await?;
    }
    Ok(())
}

/// A changed fingerprint: prepare a fresh database from nothing and, only when that succeeds,
/// swap it in for the template. Migration tools that track what they applied would otherwise
/// skip an edited migration and leave the old schema under the new fingerprint. A failed
/// prepare leaves the old template and its fingerprint as they were.
async fn rebuild_template(
    cx: &RunCx,
    admin: &tokio_postgres::Client,
    p: &PreparePlan,
    exists: bool,
    hash: &str,
    cancel: &Cancel,
) -> Result<(), StepError> {
    let template = p.template.as_str();
    let admin_url = cx.admin_url().await?;
    // Fingerprinted plans always name a build database.
    let next = p.target().to_string();
    let next_entry = journal_database(cx, &next).await?;
    let built = async {
        database::create_empty(admin, &next).await.map_err(db_err)?;
        run_prepare(cx, p, cancel).await
    }
    .await;
    if let Err(e) = built {
        if database::drop_database(&admin_url, &next).await.is_ok() {
            let _ = cx.journal.undone(next_entry);
        }
        return Err(e);
    }
    let old = crate::planner::old_db_name(template, &cx.dag().run_id);
    let old_entry = if exists {
        Some(journal_database(cx, &old).await?)
    } else {
        None
    };
    database::swap_template(
        admin,
        template,
        &next,
        exists.then_some(old.as_str()),
        hash,
        cx.plan().database.busy_timeout,
    )
    .await
    .map_err(db_err)?;
    // `next` is the template now: nothing of that name is left to undo.
    let _ = cx.journal.undone(next_entry);
    // The new template is in place: a failed drop of the old one leaves a leftover that the
    // journal keeps for `rollback`, not a failed run.
    if let Some(entry) = old_entry {
        match database::drop_database(&admin_url, &old).await {
            Ok(_) => {
                let _ = cx.journal.undone(entry);
            }
            Err(e) => cx.warn(format!(
                "the template was rebuilt, but its old copy {old} could not be dropped ({e}); `e2e-plan rollback` drops it"
            )),
        }
    }
    Ok(())
}

/// Whether runs of this plan use a pool: configured, and on a server that outlives the run (a
/// plan that keeps its local cluster has no pool in the throwaway one it falls back to).
pub fn pool_enabled(cx: &RunCx) -> bool {
    cx.plan().has_pool() && (cx.plan().database.template.is_some() || cx.cluster.is_kept())
}
