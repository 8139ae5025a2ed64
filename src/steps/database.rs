//! PostgreSQL admin work: the template, its preparation lock and fingerprint, clones and drops.
//! Admin work connects to the `postgres` maintenance database of the template's server.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::planner::with_database;

/// `url` with any password replaced by `****`, for every message a user sees.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The maintenance-database URL of the server that holds `template_url`.
pub fn admin_url(template_url: &str) -> String {
    with_database(template_url, "postgres")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{what}: {message}")]
    Sql { what: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// The server's own message and SQLSTATE, or the client error with its cause ("db error" alone
/// says nothing).
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    let what = what.into();
    move |e| DbError::Sql {
        what,
        message: pg_message(&e),
    }
}

/// Opens a connection; the connection task ends when the client is dropped.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| DbError::Connect {
        url: redact(url),
        message: pg_message(&e),
    })?;
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), config.connect(NoTls))
        .await
        .map_err(|_| {
            DbError::Other(format!(
                "cannot connect to {}: timed out after 10s",
                redact(url)
            ))
        })?
        .map_err(|e| DbError::Connect {
            url: redact(url),
            message: pg_message(&e),
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub async fn server_version(client: &Client) -> Result<i32, DbError> {
    let row = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(sql("reading server_version_num"))?;
    let text: String = row.get(0);
    Ok(text.parse().unwrap_or(0))
}

/// Creates the template database when it does not exist (a concurrent creator is fine).
pub async fn ensure_template(
    client: &Client,
    name: &str,
    patience: Duration,
) -> Result<bool, DbError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(sql("looking up the template"))?
        .is_some();
    if exists {
        return Ok(false);
    }
    // A concurrent run may be creating it too (both copy template1, and one of them then sees
    // SQLSTATE 55006 or a unique violation): wait that out.
    let start = Instant::now();
    loop {
        let created = client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await;
        match created {
            Ok(()) => return Ok(true),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => return Ok(false),
            Err(e)
                if matches!(e.code(), Some(c) if *c == SqlState::OBJECT_IN_USE || *c == SqlState::UNIQUE_VIOLATION)
                    && start.elapsed() < patience =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(sql(format!("creating template database {name}"))(e)),
        }
    }
}

/// Whether a database of that name exists.
pub async fn exists(client: &Client, name: &str) -> Result<bool, DbError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(sql(format!("looking up database {name}")))?
        .is_some())
}

/// Which of `names` exist now.
pub async fn existing(client: &Client, names: &[String]) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(sql("looking up databases"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What a database's sessions did, from `pg_stat_database` (PostgreSQL 14+).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Sessions opened on it.
    pub sessions: i64,
    /// Seconds its backends spent executing statements.
    pub active_secs: f64,
}

/// How database `name` was used, read once its backends are gone (a backend reports its
/// figures as it exits; at most `patience` is waited for them). None before PostgreSQL 14.
pub async fn usage(
    admin_url: &str,
    name: &str,
    patience: std::time::Duration,
) -> Result<Option<Usage>, DbError> {
    let client = connect(admin_url).await?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let row = client
            .query_opt(
                "SELECT numbackends, sessions, active_time FROM pg_stat_database WHERE datname = $1",
                &[&name],
            )
            .await;
        let row = match row {
            Ok(Some(row)) => row,
            // No such database, or no `sessions` column (before 14).
            Ok(None) | Err(_) => return Ok(None),
        };
        let backends: i32 = row.get(0);
        if backends == 0 || tokio::time::Instant::now() >= deadline {
            // A backend still there is a session, whether or not it has reported itself yet
            // (a backend reports its figures as it exits, before it leaves numbackends).
            return Ok(Some(Usage {
                sessions: row.get::<_, i64>(1).max(i64::from(backends)),
                active_secs: row.get::<_, f64>(2) / 1000.0,
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The backends serving one database while its tests run, sampled from /proc every
/// `BACKEND_EVERY` (`sys::backends_of`): what their CPU and run-queue wait add to the tests'.
/// A backend seen at the first sample counts from there (a server's pool opened during its
/// start-up); up to one interval of a backend's last CPU may be missed.
pub struct Backends {
    seen: std::sync::Arc<std::sync::Mutex<BackendSeen>>,
    task: tokio::task::JoinHandle<()>,
    db: String,
}

/// Each backend's first and last reading (CPU, run-queue wait), by PID and start time.
type BackendSeen = std::collections::BTreeMap<(u32, u64), [(f64, f64); 2]>;

const BACKEND_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// What a database's backends added: CPU seconds and seconds waiting on a run queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendUse {
    pub cpu: f64,
    pub rq: f64,
}

impl Backends {
    pub fn watch(db: &str) -> Backends {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BackendSeen::new()));
        let (s, name) = (seen.clone(), db.to_string());
        let task = tokio::spawn(async move {
            let mut first = true;
            loop {
                Self::sample(&s, &name, first);
                first = false;
                tokio::time::sleep(BACKEND_EVERY).await;
            }
        });
        Backends {
            seen,
            task,
            db: db.to_string(),
        }
    }

    fn sample(seen: &std::sync::Mutex<BackendSeen>, db: &str, first: bool) {
        let now = crate::sys::backends_of(db);
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        for b in now {
            let reading = (b.cpu, b.rq);
            // A backend born after the first sample counts from its birth.
            let base = if first { reading } else { (0.0, 0.0) };
            seen.entry((b.pid, b.started)).or_insert([base, reading])[1] = reading;
        }
    }

    /// Stops sampling (after a last sample): what the backends added, or None when none was
    /// ever seen (the server is elsewhere, or the tests never connected).
    pub fn finish(self) -> Option<BackendUse> {
        self.task.abort();
        Self::sample(&self.seen, &self.db, false);
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (!seen.is_empty()).then(|| BackendUse {
            cpu: seen.values().map(|[a, b]| (b.0 - a.0).max(0.0)).sum(),
            rq: seen.values().map(|[a, b]| (b.1 - a.1).max(0.0)).sum(),
        })
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `CREATE DATABASE name`: an empty database, as a new template starts.
pub async fn create_empty(client: &Client, name: &str) -> Result<(), DbError> {
    client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
        .map_err(sql(format!("creating database {name}")))
}

/// Puts the freshly prepared `next` in the place of `template` in one transaction: the old
/// template (if any) is renamed to `old`, `next` takes its name and its fingerprint. A rename
/// waits for clones in flight; sessions connected to either database are waited out (never
/// terminated) for `patience`, then named.
pub async fn swap_template(
    client: &Client,
    template: &str,
    next: &str,
    old: Option<&str>,
    fingerprint: &str,
    patience: Duration,
) -> Result<(), DbError> {
    let mut statement = String::from("BEGIN; ");
    if let Some(old) = old {
        statement += &format!(
            "ALTER DATABASE {} RENAME TO {}; ",
            quote_ident(template),
            quote_ident(old)
        );
    }
    statement += &format!(
        "ALTER DATABASE {} RENAME TO {}; COMMENT ON DATABASE {} IS {}; COMMIT",
        quote_ident(next),
        quote_ident(template),
        quote_ident(template),
        quote_literal(&format!("{FINGERPRINT_PREFIX}{fingerprint}"))
    );
    let what = format!("swap the newly prepared {template} in");
    until_free(client, &statement, template, patience, &what).await
}

/// Key of the advisory lock guarding one template's preparation.
fn lock_key(template: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("e2e-plan:{template}").as_bytes());
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Holds the template's preparation lock until the returned client is dropped, so that two runs
/// never prepare one template at once.
pub async fn lock_template(client: &Client, template: &str) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key(template)])
        .await
        .map_err(sql("taking the template's advisory lock"))?;
    Ok(())
}

const FINGERPRINT_PREFIX: &str = "e2e-plan fingerprint ";

pub async fn fingerprint(client: &Client, template: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&template],
        )
        .await
        .map_err(sql("reading the template's fingerprint"))?;
    let comment: Option<String> = row.and_then(|r| r.get(0));
    Ok(comment.and_then(|c| c.strip_prefix(FINGERPRINT_PREFIX).map(str::to_string)))
}

/// Holds the template's pool lock until the client is dropped: one run at a time fills or
/// empties a template's pool, so two runs never overshoot its size.
pub async fn lock_pool(client: &Client, template: &str) -> Result<(), DbError> {
    client
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&lock_key(&format!("{template}\0pool"))],
        )
        .await
        .map_err(sql("taking the pool's advisory lock"))?;
    Ok(())
}

const POOL_PREFIX: &str = "e2e-plan pool of ";

/// What a pooled copy carries as its comment: the template it was cloned from and the template's
/// fingerprint then. A copy whose comment differs from the current one is stale.
pub fn pool_comment(template: &str, fingerprint: &str) -> String {
    format!("{POOL_PREFIX}{template} at {fingerprint}")
}

/// On the kept cluster, which only one run uses at a time: drops every database but the
/// template and its pooled copies (a dead run's workers, a half-made build). Returns their names.
pub async fn sweep(admin_url: &str, template: &str) -> Result<Vec<String>, DbError> {
    let client = connect(admin_url).await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1', $1) \
             AND NOT starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $2) ORDER BY datname",
            &[&template, &format!("{POOL_PREFIX}{template} at ")],
        )
        .await
        .map_err(sql("listing leftover databases"))?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for name in &names {
        drop_database(admin_url, name).await?;
    }
    Ok(names)
}

/// A pooled copy of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pooled {
    pub name: String,
    /// Its comment matches the template's current fingerprint.
    pub fresh: bool,
}

/// The pooled copies of `template` (oldest first), fresh or stale against `fingerprint`.
pub async fn list_pool(
    client: &Client,
    template: &str,
    fingerprint: Option<&str>,
) -> Result<Vec<Pooled>, DbError> {
    let rows = client
        .query(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database \
             WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $1) ORDER BY oid",
            &[&format!("{POOL_PREFIX}{template} at ")],
        )
        .await
        .map_err(sql("listing the pool"))?;
    let current = fingerprint.map(|f| pool_comment(template, f));
    Ok(rows
        .iter()
        .map(|r| {
            let comment: Option<String> = r.get(1);
            Pooled {
                name: r.get(0),
                fresh: current.is_some() && comment == current,
            }
        })
        .collect())
}

/// Claims a pooled copy: renames it to `name` and clears its comment in one transaction, so no
/// other run can claim it too. Ok(false): another run claimed it first, or someone is connected.
pub async fn claim_pooled(client: &Client, pooled: &str, name: &str) -> Result<bool, DbError> {
    let statement = format!(
        "BEGIN; ALTER DATABASE {} RENAME TO {}; COMMENT ON DATABASE {} IS NULL; COMMIT",
        quote_ident(pooled),
        quote_ident(name),
        quote_ident(name)
    );
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_DATABASE || *c == SqlState::OBJECT_IN_USE)
            {
                Ok(false)
            } else {
                Err(sql(format!("claiming pooled database {pooled}"))(e))
            }
        }
    }
}

/// Hands a database we cloned over to the pool.
pub async fn mark_pooled(client: &Client, name: &str, comment: &str) -> Result<(), DbError> {
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(name),
            quote_literal(comment)
        ))
        .await
        .map_err(sql(format!("adding {name} to the pool")))
}

/// `CREATE DATABASE name TEMPLATE template`. Another session on the template (SQLSTATE 55006)
/// is waited out with backoff, never terminated; past the patience the error names the sessions.
pub async fn clone_database(
    admin_url: &str,
    template: &str,
    name: &str,
    file_copy: bool,
    patience: Duration,
) -> Result<(), DbError> {
    let client = connect(admin_url).await?;
    let strategy = if file_copy {
        " STRATEGY = FILE_COPY"
    } else {
        ""
    };
    let statement = format!(
        "CREATE DATABASE {} TEMPLATE {}{strategy}",
        quote_ident(name),
        quote_ident(template)
    );
    until_free(
        &client,
        &statement,
        template,
        patience,
        &format!("clone {template}"),
    )
    .await
}

/// Runs `statement` until no other session is connected to `db` (SQLSTATE 55006, which clones
/// and renames of a database get), with backoff; an open transaction is rolled back before each
/// new try. Other sessions are never terminated: past `patience` the error names them.
async fn until_free(
    client: &Client,
    statement: &str,
    db: &str,
    patience: Duration,
    what: &str,
) -> Result<(), DbError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let e = match client.batch_execute(statement).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let _ = client.batch_execute("ROLLBACK").await;
        if e.code() != Some(&SqlState::OBJECT_IN_USE) {
            return Err(sql(format!("cannot {what}"))(e));
        }
        if start.elapsed() >= patience {
            let sessions = blocking_sessions(client, db).await.unwrap_or_default();
            return Err(DbError::Other(format!(
                "cannot {what}: other sessions stayed connected to it for {}: {}\n\
                 e2e-plan never terminates other people's sessions; close them and run again \
                 (or raise [database] busy_timeout)",
                crate::plan::duration::format_duration(patience),
                if sessions.is_empty() {
                    "(they left just now)".to_string()
                } else {
                    sessions.join("; ")
                }
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn blocking_sessions(client: &Client, template: &str) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
             coalesce(state, '') FROM pg_stat_activity WHERE datname = $1",
            &[&template],
        )
        .await
        .map_err(sql("listing sessions on the template"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let pid: i32 = r.get(0);
            let user: String = r.get(1);
            let app: String = r.get(2);
            let addr: String = r.get(3);
            let state: String = r.get(4);
            format!("pid {pid} user {user} from {addr} app '{app}' ({state})")
        })
        .collect())
}

/// Drops a worker database that a dead runner may still have been creating: a CREATE DATABASE
/// whose client died runs to its end, so wait (bounded) until no such statement is active, then
/// drop. Without the wait, "DROP IF EXISTS" finds nothing and the clone lands afterwards.
/// Ok(false): there was no such database to drop.
pub async fn drop_database_after_create(admin_url: &str, name: &str) -> Result<bool, DbError> {
    let client = connect(admin_url).await?;
    let pattern = format!(
        "CREATE DATABASE {} TEMPLATE %",
        quote_ident(name).replace('_', "\\_")
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await
            .map_err(sql("looking for a clone in flight"))?;
        let active: i64 = row.get(0);
        if active == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let existed = exists(&client, name).await?;
    drop(client);
    drop_database(admin_url, name).await?;
    Ok(existed)
}

/// Drops a worker database; one that does not exist is already dropped. Sessions on it are ours
/// (our stopped workers), so FORCE is safe.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let client = connect(admin_url).await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(sql(format!("dropping {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgresql://u:secret@h:5432/db"),
            "postgresql://u:****@h:5432/db"
        );
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
