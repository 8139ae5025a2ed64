//! The embedded default: a PostgreSQL cluster of e2e-plan's own (a free port, a private socket
//! folder, durability off), recorded in the journal like every other resource.
//!
//! A plan with a fingerprint keeps its cluster between runs (`.e2e-plan/cluster`): stopped after
//! each run and started by the next, so that the template's fingerprint and the pool work as on
//! a server and an unchanged project skips initdb and prepare. Without a fingerprint nothing can
//! say whether a kept template is current, so the cluster is thrown away after every run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::process::{tail, RunAs};
use super::resource::Resource;
use super::StepError;
use crate::engine::journal::{Entry, Journal};
use crate::sys;

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    /// The superuser's password over TCP (scram-sha-256): other local accounts must not get in.
    pub password: String,
    pub pid: u32,
    pub started: u64,
    pub postmaster: Entry,
    /// A throwaway cluster's folder, deleted when it stops; None for the kept cluster.
    pub folder: Option<Entry>,
    /// The kept cluster: this run's exclusive hold on it (released when dropped).
    pub kept: Option<std::fs::File>,
    /// The kept cluster was made by this run (initdb ran).
    pub fresh: bool,
    /// Why the kept cluster was made again (not only made for the first time).
    pub made_because: Option<String>,
}

impl Cluster {
    /// The URL of a database on this cluster, with the password (scrubbed from every output).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The owner-only file with the password, for reaching a kept database by hand.
    pub fn password_file(&self) -> PathBuf {
        password_file(&self.dir)
    }

    /// A throwaway cluster: immediate shutdown (the data is thrown away), then the folder goes.
    /// The kept cluster: a fast shutdown (a clean checkpoint for the next start); its folder
    /// stays.
    pub async fn stop(&self, journal: &Journal) -> Result<(), String> {
        use crate::engine::journal::Resource as _;
        let pm = Resource::Postmaster {
            data_dir: self.dir.join("data"),
            pid: self.pid,
            started: self.started,
            kept: self.kept.is_some(),
        };
        if self.kept.is_some() {
            stop_fast(self.pid, self.started).await?;
            stopped_cleanly(&self.dir.join("data"));
        } else {
            pm.undo().await?;
        }
        let _ = journal.undone(self.postmaster);
        if let Some(folder) = self.folder {
            Resource::Folder {
                path: self.dir.clone(),
            }
            .undo()
            .await?;
            let _ = journal.undone(folder);
        }
        Ok(())
    }
}

/// Finds PostgreSQL's server binaries: `pg_config --bindir`, PATH, `/usr/lib/postgresql/*/bin`
/// (newest first).
pub fn find_bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&dir) {
            return Some(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has(d)) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().next().map(|(_, d)| d)
}

/// PostgreSQL refuses to run as root: as root, run as the `postgres` account.
fn run_as() -> Result<Option<RunAs>, StepError> {
    if !sys::is_root() {
        return Ok(None);
    }
    sys::lookup_user("postgres")
        .map(|(uid, gid)| Some(RunAs { uid, gid }))
        .ok_or_else(|| StepError::new("running as root, and there is no `postgres` account to run the ephemeral PostgreSQL as")
            .with_detail("PostgreSQL refuses to run as root: create the account (useradd -r postgres) or set [database] template"))
}

fn password_file(dir: &Path) -> PathBuf {
    dir.join("password")
}

/// The cluster's folder and socket folder owner-only (the account the cluster runs as), and a
/// random superuser password in an owner-only file for initdb. Returns the password.
fn keep_out_other_users(dir: &Path, user: Option<RunAs>) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let password = crate::planner::hex(&bytes);
    let file = password_file(dir);
    std::fs::write(&file, format!("{password}\n"))?;
    for (path, mode) in [
        (dir.to_path_buf(), 0o700),
        (dir.join("sock"), 0o700),
        (file, 0o600),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        if let Some(u) = user {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))?;
        }
    }
    Ok(password)
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a throwaway cluster; when any step fails, what was made so far (postmaster, folder) is
/// undone at once rather than left for `rollback`.
pub async fn start(
    state_dir: &Path,
    run_id: &str,
    journal: &Journal,
) -> Result<Cluster, StepError> {
    let mut made = Vec::new();
    let started = start_recording(state_dir, run_id, journal, &mut made).await;
    if started.is_err() {
        for (entry, resource) in made.into_iter().rev() {
            use crate::engine::journal::Resource as _;
            if resource.undo().await.is_ok() {
                let _ = journal.undone(entry);
            }
        }
    }
    started
}

async fn start_recording(
    state_dir: &Path,
    run_id: &str,
    journal: &Journal,
    made: &mut Vec<(Entry, Resource)>,
) -> Result<Cluster, StepError> {
    let bindir = find_bindir().ok_or_else(|| {
        StepError::new("no PostgreSQL server binaries found for the ephemeral cluster").with_detail(
            "looked in `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin; install the server \
             (e.g. `apt-get install postgresql`) or set [database] template to an existing server",
        )
    })?;
    let user = run_as()?;
    let dir = cluster_dir(state_dir, run_id, user);
    let folder = journal
        .intent(&Resource::Folder { path: dir.clone() })
        .map_err(io("writing the journal"))?;
    made.push((folder, Resource::Folder { path: dir.clone() }));
    std::fs::create_dir_all(dir.join("sock"))
        .map_err(io(&format!("creating {}", dir.display())))?;
    let password = keep_out_other_users(&dir, user)
        .map_err(io(&format!("making {} private", dir.display())))?;
    let _ = journal.done::<Resource>(folder, None);

    let log_path = dir.join("postgres.log");
    let log = std::fs::File::create(&log_path).map_err(io("creating the cluster log"))?;
    if let Some(u) = user {
        let _ = std::os::unix::fs::chown(&log_path, Some(u.uid), Some(u.gid));
    }
    initdb(&bindir, &dir, user, &log).await?;
    let port = free_port().map_err(io("finding a free port"))?;
    let mut pg = postgres_command(&bindir, &dir, port, user, &log)?;
    let data_dir = dir.join("data");
    let (mut child, postmaster, pm) = spawn_postmaster(&mut pg, &data_dir, false, journal)?;
    let (pid, started) = (pm.pid, pm.started);
    made.push((postmaster, pm.resource()));
    let cluster = Cluster {
        dir,
        port,
        password,
        pid,
        started,
        postmaster,
        folder: Some(folder),
        kept: None,
        fresh: true,
        made_because: None,
    };
    wait_accepting(&cluster, &mut child, journal).await?;
    // The child handle is dropped without killing: the postmaster is stopped through the journal.
    drop(child);
    Ok(cluster)
}

/// A postmaster as the journal records it.
struct Postmaster {
    data_dir: PathBuf,
    pid: u32,
    started: u64,
    kept: bool,
}

impl Postmaster {
    fn resource(&self) -> Resource {
        Resource::Postmaster {
            data_dir: self.data_dir.clone(),
            pid: self.pid,
            started: self.started,
            kept: self.kept,
        }
    }
}

/// Spawns the postmaster, journaled before it exists and recorded (PID, start time) once it does.
fn spawn_postmaster(
    pg: &mut Command,
    data_dir: &Path,
    kept: bool,
    journal: &Journal,
) -> Result<(tokio::process::Child, Entry, Postmaster), StepError> {
    let mut pm = Postmaster {
        data_dir: data_dir.to_path_buf(),
        pid: 0,
        started: 0,
        kept,
    };
    let entry = journal
        .intent(&pm.resource())
        .map_err(io("writing the journal"))?;
    let child = pg.spawn().map_err(io("starting postgres"))?;
    pm.pid = child.id().unwrap_or_default();
    pm.started = sys::start_time(pm.pid).unwrap_or_default();
    let _ = journal.done(entry, Some(&pm.resource()));
    Ok((child, entry, pm))
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> StepError {
    let what = what.to_string();
    move |e: std::io::Error| StepError::new(format!("{what}: {e}"))
}

/// `.e2e-plan/clusters/<run>`, or a folder under /tmp when the `postgres` account (as root)
/// could not reach a folder below the project.
fn cluster_dir(state_dir: &Path, run_id: &str, user: Option<RunAs>) -> PathBuf {
    if user.is_some() && !sys::world_traversable(state_dir.parent().unwrap_or(state_dir)) {
        return std::env::temp_dir().join(format!("e2e-plan-cluster-{run_id}"));
    }
    state_dir.join("clusters").join(run_id)
}

async fn initdb(
    bindir: &Path,
    dir: &Path,
    user: Option<RunAs>,
    log: &std::fs::File,
) -> Result<(), StepError> {
    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .args(["-D"])
        .arg(dir.join("data"))
        .args([
            "-U",
            "postgres",
            // The private socket folder needs no password; TCP, which any local account can
            // reach, does.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .arg(format!("--pwfile={}", password_file(dir).display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("log"))?)
        .stderr(log.try_clone().map_err(io("log"))?)
        .current_dir(dir)
        .kill_on_drop(true);
    if let Some(u) = user {
        initdb.uid(u.uid).gid(u.gid);
    }
    let status = initdb.status().await.map_err(io("running initdb"))?;
    if !status.success() {
        return Err(StepError::new(format!("initdb failed ({status})"))
            .with_detail(tail(&dir.join("postgres.log"), 30)));
    }
    Ok(())
}

/// The postmaster: 127.0.0.1 only, the private socket folder, durability off (the data is
/// thrown away), in a process group of its own.
fn postgres_command(
    bindir: &Path,
    dir: &Path,
    port: u16,
    user: Option<RunAs>,
    log: &std::fs::File,
) -> Result<Command, StepError> {
    let sock = dir.join("sock");
    let sock_arg = if sock.as_os_str().len() < 100 {
        sock.display().to_string()
    } else {
        String::new()
    };
    let mut pg = Command::new(bindir.join("postgres"));
    pg.arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k", &sock_arg])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=300", "-c", "shared_buffers=128MB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("log"))?)
        .stderr(log.try_clone().map_err(io("log"))?)
        .current_dir(dir)
        .process_group(0);
    if let Some(u) = user {
        pg.uid(u.uid).gid(u.gid);
    }
    Ok(pg)
}

/// Polls until the cluster accepts connections: an exit or 60 s without is an error with the
/// log's tail (and a cluster that never answered is stopped).
async fn wait_accepting(
    cluster: &Cluster,
    child: &mut tokio::process::Child,
    journal: &Journal,
) -> Result<(), StepError> {
    let log = cluster.dir.join("postgres.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StepError::new(format!(
                "the ephemeral PostgreSQL exited before accepting connections ({status})"
            ))
            .with_detail(tail(&log, 30)));
        }
        if super::database::connect(&cluster.url("postgres"))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let _ = cluster.stop(journal).await;
            return Err(StepError::new(
                "the ephemeral PostgreSQL did not accept connections within 60s",
            )
            .with_detail(tail(&log, 30)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the kept cluster cannot be used by this run: then it runs on a throwaway one, as before.
pub enum Busy {
    /// Another run of this checkout holds it.
    InUse,
    /// It is running for the databases an earlier run kept (`rollback` stops it).
    Running,
    /// Running as root, the `postgres` account cannot reach the project's folder.
    Unreachable,
}

/// The kept cluster's folder.
pub fn kept_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster")
}

/// As root, the `postgres` account must reach the kept folder below the project. When it cannot,
/// there is no kept cluster: a folder elsewhere (under /tmp) would have a name other accounts
/// can guess and plant first.
fn reachable(state_dir: &Path) -> bool {
    let user = run_as().ok().flatten();
    user.is_none() || sys::world_traversable(state_dir.parent().unwrap_or(state_dir))
}

/// Where a run holds the kept cluster (beside it, owned by the runner).
fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.lock")
}

/// The marker initdb's end writes: only a folder that has it is ever started; it holds the
/// PostgreSQL major version that made it.
fn marker(dir: &Path) -> PathBuf {
    dir.join("complete")
}

/// Takes this checkout's kept cluster for the run without waiting: Err(Busy) when another run
/// holds it or it is running for kept databases.
pub fn hold(state_dir: &Path) -> Result<Result<std::fs::File, Busy>, StepError> {
    if !reachable(state_dir) {
        return Ok(Err(Busy::Unreachable));
    }
    std::fs::create_dir_all(state_dir).map_err(io("creating the state folder"))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(state_dir))
        .map_err(io("opening the cluster lock"))?;
    use rustix::fs::{flock, FlockOperation};
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Err(Busy::InUse));
    }
    if running_pid(&kept_dir(state_dir).join("data")).is_some() {
        return Ok(Err(Busy::Running));
    }
    Ok(Ok(file))
}

/// The postmaster of a data folder, when its `postmaster.pid` names a live process.
/// A pid that another process reuses (after a reboot, a crash) does not count: the process must
/// be a postgres serving this very folder.
pub fn running_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let serves = words.contains(&data.as_os_str().as_encoded_bytes());
    let is_postgres = words.first().is_some_and(|w| w.ends_with(b"postgres"));
    (serves && is_postgres).then_some(pid)
}

/// The major version of the server binaries in `bindir`, from `postgres -V`.
fn major_version(bindir: &Path) -> Option<String> {
    let out = std::process::Command::new(bindir.join("postgres"))
        .arg("-V")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().last()?;
    Some(version.split('.').next()?.to_string())
}

/// Starts the kept cluster (held with [`hold`]): a complete folder made by this PostgreSQL major
/// version is started as it is; anything else (none yet, half-made, another major version, a
/// folder that does not start) is made again from initdb.
pub async fn start_kept(
    state_dir: &Path,
    run_id: &str,
    journal: &Journal,
    hold: std::fs::File,
) -> Result<Cluster, StepError> {
    let bindir = find_bindir().ok_or_else(no_binaries)?;
    let user = run_as()?;
    let dir = kept_dir(state_dir);
    let major = major_version(&bindir).unwrap_or_default();
    let complete = read_no_follow(&marker(&dir)).ok();
    // `hold` found no postgres serving this folder: a postmaster.pid left by one that crashed
    // (its pid perhaps reused since) would only make postgres refuse to start.
    let _ = std::fs::remove_file(dir.join("data/postmaster.pid"));
    let why = match complete.as_deref().map(str::trim) {
        Some(v) if v == major => match distrust(&dir) {
            Some(why) => Some(why),
            None => {
                // Twice: a port taken between choosing and binding is no reason to rebuild.
                let mut failed = String::new();
                for _ in 0..2 {
                    match start_postmaster(&bindir, &dir, user, journal, true).await {
                        Ok(mut c) => {
                            c.kept = Some(hold);
                            return Ok(c);
                        }
                        Err(e) => failed = e.message,
                    }
                }
                Some(format!("it did not start ({failed})"))
            }
        },
        Some(v) => Some(format!("it was made by PostgreSQL {v}")),
        None if dir.exists() => Some("it was half-made".to_string()),
        None => None,
    };
    let staging = staging_dir(&dir, run_id);
    let mut c = make_kept(&bindir, &dir, &staging, user, journal, &major).await?;
    c.kept = Some(hold);
    c.made_because = why;
    Ok(c)
}

/// Where a run makes a new kept cluster before it moves it into place: its own folder, so that
/// an initdb a killed run left behind never writes into the one the next run makes.
fn staging_dir(dir: &Path, run_id: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}.new-{run_id}"))
}

/// initdb into a staging folder of this run's, journaled while it is made (a killed run leaves
/// nothing `rollback` cannot remove), marked complete, then moved into place: the kept folder
/// is never a half-made one.
async fn make_kept(
    bindir: &Path,
    dir: &Path,
    staging: &Path,
    user: Option<RunAs>,
    journal: &Journal,
    major: &str,
) -> Result<Cluster, StepError> {
    let folder = journal
        .intent(&Resource::Folder {
            path: staging.to_path_buf(),
        })
        .map_err(io("writing the journal"))?;
    let made = async {
        std::fs::create_dir_all(staging.join("sock"))
            .map_err(io(&format!("creating {}", staging.display())))?;
        keep_out_other_users(staging, user)
            .map_err(io(&format!("making {} private", staging.display())))?;
        let log = cluster_log(staging, user)?;
        initdb(bindir, staging, user, &log).await?;
        write_no_follow(&marker(staging), &format!("{major}\n"))
            .map_err(io("marking the cluster complete"))?;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&format!("removing {}", dir.display()))(e)),
        }
        std::fs::rename(staging, dir)
            .map_err(io(&format!("moving {} into place", staging.display())))
    }
    .await;
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(staging);
        let _ = journal.undone(folder);
        return Err(e);
    }
    // In place: the folder is the checkout's to keep now, not this run's to undo.
    let _ = journal.undone(folder);
    let mut c = start_postmaster(bindir, dir, user, journal, true).await?;
    c.fresh = true;
    Ok(c)
}

/// The cluster's log, opened without following a symlink and handed to the cluster's account
/// through the open file: as root, in a folder that account owns, a path could lead elsewhere.
fn cluster_log(dir: &Path, user: Option<RunAs>) -> Result<std::fs::File, StepError> {
    let log =
        open_no_follow(&dir.join("postgres.log"), true).map_err(io("opening the cluster log"))?;
    if let Some(u) = user {
        let _ = std::os::unix::fs::fchown(&log, Some(u.uid), Some(u.gid));
    }
    Ok(log)
}

/// Opens `path` for writing (appending, or truncating), never through a symlink.
fn open_no_follow(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.create(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
}

fn write_no_follow(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    open_no_follow(path, false)?.write_all(text.as_bytes())
}

fn read_no_follow(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

/// This boot of the machine: a kept cluster that was running when the machine went down ran
/// with fsync off, so its data cannot be trusted.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Written (with the boot id) once the kept postmaster runs; removed when it stops cleanly.
fn running_marker(dir: &Path) -> PathBuf {
    dir.join("running")
}

/// Why a complete kept folder must not be started, if it must not.
fn distrust(dir: &Path) -> Option<String> {
    let boot = read_no_follow(&running_marker(dir)).ok()?;
    (boot.trim() != boot_id()).then(|| {
        "it was running when the machine went down (with fsync off, its data cannot be trusted)"
            .to_string()
    })
}

/// The kept postmaster stopped cleanly: its next start needs no distrust.
pub fn stopped_cleanly(data_dir: &Path) {
    if let Some(dir) = data_dir.parent() {
        let _ = std::fs::remove_file(running_marker(dir));
    }
}

/// Starts the postmaster of a made folder on a free port (journaled before it exists).
async fn start_postmaster(
    bindir: &Path,
    dir: &Path,
    user: Option<RunAs>,
    journal: &Journal,
    kept: bool,
) -> Result<Cluster, StepError> {
    let password = read_no_follow(&password_file(dir))
        .map_err(io("reading the cluster's password"))?
        .trim()
        .to_string();
    let log = cluster_log(dir, user)?;
    let port = free_port().map_err(io("finding a free port"))?;
    let mut pg = postgres_command(bindir, dir, port, user, &log)?;
    let (mut child, postmaster, pm) = spawn_postmaster(&mut pg, &dir.join("data"), kept, journal)?;
    let (pid, started) = (pm.pid, pm.started);
    let cluster = Cluster {
        dir: dir.to_path_buf(),
        port,
        password,
        pid,
        started,
        postmaster,
        folder: None,
        kept: None,
        fresh: false,
        made_because: None,
    };
    if let Err(e) = wait_accepting(&cluster, &mut child, journal).await {
        if stop_fast(pid, started).await.is_ok() {
            stopped_cleanly(&dir.join("data"));
            let _ = journal.undone(postmaster);
        }
        return Err(e);
    }
    drop(child);
    write_no_follow(&running_marker(dir), &format!("{}\n", boot_id()))
        .map_err(io("marking the cluster running"))?;
    Ok(cluster)
}

/// A fast shutdown (SIGINT): sessions end, a checkpoint is written, the next start needs no
/// recovery.
pub async fn stop_fast(pid: u32, started: u64) -> Result<(), String> {
    if pid == 0 || !sys::is_same_process(pid, started) {
        return Ok(());
    }
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?,
        rustix::process::Signal::INT,
    );
    super::process::wait_gone(
        || sys::is_same_process(pid, started),
        Duration::from_secs(30),
    )
    .await;
    if sys::is_same_process(pid, started) {
        return Err(format!(
            "the kept PostgreSQL (pid {pid}) did not stop within 30s"
        ));
    }
    Ok(())
}

fn no_binaries() -> StepError {
    StepError::new("no PostgreSQL server binaries found for the ephemeral cluster").with_detail(
        "looked in `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin; install the server \
         (e.g. `apt-get install postgresql`) or set [database] template to an existing server",
    )
}

/// What `e2e-plan cluster status` shows.
pub struct KeptStatus {
    pub dir: PathBuf,
    pub exists: bool,
    pub complete: Option<String>,
    pub bytes: u64,
    pub running: Option<u32>,
    pub in_use: bool,
}

pub fn kept_status(state_dir: &Path) -> KeptStatus {
    let dir = kept_dir(state_dir);
    let bytes = walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let in_use = std::fs::File::open(lock_path(state_dir))
        .ok()
        .is_some_and(|f| {
            use rustix::fs::{flock, FlockOperation};
            let free = flock(&f, FlockOperation::NonBlockingLockShared).is_ok();
            !free
        });
    KeptStatus {
        exists: dir.exists(),
        complete: std::fs::read_to_string(marker(&dir))
            .ok()
            .map(|s| s.trim().to_string()),
        bytes,
        running: running_pid(&dir.join("data")),
        in_use,
        dir,
    }
}

/// `e2e-plan cluster remove`: deletes the kept cluster unless a run holds it or it is running
/// for kept databases.
pub fn remove_kept(state_dir: &Path) -> Result<Option<PathBuf>, StepError> {
    let file = match hold(state_dir)? {
        Ok(f) => f,
        Err(Busy::InUse) => {
            return Err(
                StepError::new("a run of this checkout is using the kept cluster")
                    .with_detail("try again when it has finished"),
            )
        }
        Err(Busy::Running) => {
            return Err(StepError::new(
                "the kept cluster is still running from an earlier run (its kept databases, or a runner that died)",
            )
            .with_detail("`e2e-plan rollback` drops them and stops it; then remove it"))
        }
        Err(Busy::Unreachable) => return Ok(None),
    };
    let dir = kept_dir(state_dir);
    let removed = match std::fs::remove_dir_all(&dir) {
        Ok(()) => Some(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&format!("removing {}", dir.display()))(e)),
    };
    // The lock file stays: deleting it would let two later runs each lock a file of their own.
    drop(file);
    Ok(removed)
}
