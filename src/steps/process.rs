//! Child processes in their own process groups, recorded in the journal before they start and
//! stopped as a whole group (grandchildren included) when they end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Signal;
use tokio::process::{Child, Command};

use super::resource::Resource;
use crate::engine::journal::{Entry, Journal};
use crate::engine::Cancel;
use crate::sys;

/// Who a child runs as: PostgreSQL refuses root, so the ephemeral cluster switches user.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

pub struct Spec<'a> {
    pub what: String,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub log: &'a Path,
    pub run_as: Option<RunAs>,
    /// Read the output through pipes and note in this file when each line arrived (`<unix
    /// seconds> <byte offset>` a line), so that a failing test can be shown what the server
    /// printed while it ran. The log itself stays exactly what the process wrote.
    pub times: Option<&'a Path>,
    /// A lower CPU priority (nice, 0 = the runner's): work with slack yields to the longest.
    pub nice: i32,
}

/// A running process group of ours.
pub struct Group {
    pub child: Child,
    pub pgid: u32,
    pub started: u64,
    cpu: CpuMeter,
    entry: Entry,
    mark: String,
    /// The task copying a stamped process's output into its log.
    copier: Option<tokio::task::JoinHandle<()>>,
}

/// The runner's environment without `PYTEST_*` (a parent pytest's state must not leak into
/// workers), plus `extra`.
pub fn worker_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("PYTEST_"))
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .collect();
    env.extend(extra.iter().cloned());
    env
}

/// A relative program path with a slash is taken relative to `cwd` (the plan's root).
fn program(argv0: &str, cwd: &Path) -> PathBuf {
    let p = Path::new(argv0);
    if p.is_relative() && argv0.contains('/') {
        cwd.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The account a child runs as, and its CPU priority (inherited by all it starts).
fn run_as_and_priority(cmd: &mut Command, run_as: Option<RunAs>, nice: i32) {
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    if nice > 0 {
        // SAFETY: between fork and exec, only setpriority(2), an async-signal-safe system call.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::setpriority_process(None, nice).map_err(std::io::Error::from)
            });
        }
    }
}

pub fn spawn(journal: &Journal, spec: Spec) -> Result<Group, String> {
    let Some(argv0) = spec.argv.first() else {
        return Err(format!("{}: empty command", spec.what));
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log)
        .map_err(|e| format!("cannot open log {}: {e}", spec.log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let what = spec.what.clone();
    let group = |pgid, started, mark: &str| Resource::ProcessGroup {
        what: what.clone(),
        pgid,
        started,
        mark: mark.to_string(),
    };
    // The intent names the mark before the process exists.
    let mark = journal.new_mark();
    let entry = journal
        .intent(&group(0, 0, &mark))
        .map_err(|e| format!("cannot write the journal: {e}"))?;
    let mut env = spec.env.to_vec();
    env.push((sys::MARK_VAR.to_string(), mark.clone()));
    env.push(("E2E_PLAN_RUN".to_string(), journal.run_id().to_string()));
    let mut cmd = Command::new(program(argv0, spec.cwd));
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(worker_env(&env))
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .process_group(0);
    // Opened before the process starts: a child must never run without its group being ours.
    let times = match spec.times {
        Some(path) => Some(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if times.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_err);
    }
    run_as_and_priority(&mut cmd, spec.run_as, spec.nice);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = journal.undone(entry);
            return Err(format!("{}: cannot start `{}`: {e}", spec.what, argv0));
        }
    };
    let pgid = child.id().unwrap_or_default();
    let started = sys::start_time(pgid).unwrap_or_default();
    let _ = journal.done(entry, Some(&group(pgid, started, &mark)));
    let copier = match (times, child.stdout.take(), child.stderr.take()) {
        (Some(times), Some(out), Some(err)) => {
            Some(tokio::spawn(copy_stamped(out, err, log, times)))
        }
        _ => None,
    };
    Ok(Group {
        child,
        pgid,
        started,
        cpu: CpuMeter::watch(pgid, started),
        entry,
        mark,
        copier,
    })
}

/// The CPU a process group's leader has used (its own and its reaped children's), sampled every
/// 50 ms while it runs and read once more when it has exited, before it is reaped (`Group::wait`):
/// what the planner learns a worker's CPU cost from, free of the contention that stretches its
/// wall time. Each sample also notes how long the leader has waited on a run queue (runnable
/// while another task had the CPU): its wall time minus that is about its time alone, however
/// many processes shared the cores; the samples are kept so that an attempt can be cut where its
/// tests began. It also notes the CPU at the end of the start-up as the critical start-up is
/// judged: the first time the process is found asleep three samples in a row with no child of
/// its own.
#[derive(Debug, Clone)]
pub struct CpuMeter(std::sync::Arc<Meter>);

#[derive(Debug)]
pub struct Meter {
    slots: [std::sync::atomic::AtomicU64; 5],
    series: std::sync::Mutex<Series>,
    spawned: std::time::Instant,
    /// The spawn in Unix seconds: what the tests' own timestamps are set against.
    spawned_unix: f64,
}

/// One sample: seconds since the spawn, the leader's CPU (with its reaped children's) and its
/// run-queue wait, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: f64,
    pub cpu: f64,
    pub rq: f64,
    /// The leader had a child then (a wrapper such as `uv run` has one all along).
    pub kids: bool,
}

/// The samples, thinned to every other one (and sampled half as often) whenever 4096 are kept,
/// so a long test costs no more memory than a short one.
#[derive(Debug, Default)]
struct Series {
    points: Vec<Point>,
    every: u32,
    seen: u32,
}

const KEEP_POINTS: usize = 4096;

/// Not known (yet): never sampled, or a start-up never seen to end.
const UNSET: u64 = u64::MAX;
/// The meter's slots: the leader's last reading (with its reaped children), its reading when its
/// start-up ended, the whole group's last reading, and the leader's own CPU (without children)
/// now and at that moment.
const LEADER: usize = 0;
const STARTUP: usize = 1;
const GROUP: usize = 2;
const OWN: usize = 3;
const OWN_AT_GROUP: usize = 4;

/// An attempt's test process cut where its tests began: the start-up before, the tests after,
/// each as wall seconds, run-queue wait and CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    pub startup_wall: f64,
    pub startup_rq: f64,
    pub startup_cpu: f64,
    pub tests_rq: f64,
    pub tests_cpu: f64,
    /// After the suite ended until the process did (an interpreter shutting down a large app):
    /// paid once per process, as its start-up is.
    pub tail_wall: f64,
    pub tail_rq: f64,
    pub tail_cpu: f64,
}

impl CpuMeter {
    fn new() -> CpuMeter {
        use std::sync::atomic::AtomicU64;
        CpuMeter(std::sync::Arc::new(Meter {
            slots: [UNSET; 5].map(AtomicU64::new),
            series: std::sync::Mutex::new(Series {
                every: 1,
                ..Series::default()
            }),
            spawned: std::time::Instant::now(),
            spawned_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        }))
    }

    fn watch(pid: u32, started: u64) -> CpuMeter {
        use std::sync::atomic::Ordering::Relaxed;
        let meter = CpuMeter::new();
        let m = meter.clone();
        tokio::spawn(async move {
            let mut asleep = 0;
            while let Some(state) = m.sample(pid, started, false) {
                let waiting = state == 'S' && !sys::has_children(pid);
                asleep = if waiting { asleep + 1 } else { 0 };
                if asleep == 3 && m.0.slots[STARTUP].load(Relaxed) == UNSET {
                    m.0.slots[STARTUP].store(m.0.slots[LEADER].load(Relaxed), Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        meter
    }

    /// Reads the CPU and the run-queue wait now (`last`: the reading after the process
    /// exited, always kept); the process's state, or None once it is gone.
    fn sample(&self, pid: u32, started: u64, last: bool) -> Option<char> {
        let (own, secs, state) = sys::cpu_and_state(pid, started)?;
        self.store(LEADER, secs);
        self.store(OWN, own);
        if let Some(rq) = sys::runqueue_wait(pid) {
            let t = self.0.spawned.elapsed().as_secs_f64();
            let kids = sys::has_children(pid);
            self.push(
                Point {
                    t,
                    cpu: secs,
                    rq,
                    kids,
                },
                last,
            );
        }
        Some(state)
    }

    fn push(&self, p: Point, always: bool) {
        let mut s = self.0.series.lock().unwrap_or_else(|e| e.into_inner());
        s.seen += 1;
        if !always && !s.seen.is_multiple_of(s.every.max(1)) {
            return;
        }
        if s.points.len() >= KEEP_POINTS {
            let kept: Vec<Point> = s.points.iter().step_by(2).copied().collect();
            s.points = kept;
            s.every = s.every.max(1) * 2;
        }
        s.points.push(p);
    }

    /// The sample at `t` seconds after the spawn, between the two nearest (the first before it,
    /// the last after it).
    pub fn at(&self, t: f64) -> Option<Point> {
        let s = self.0.series.lock().unwrap_or_else(|e| e.into_inner());
        let after = s.points.iter().position(|p| p.t >= t);
        Some(match after {
            None => *s.points.last()?,
            Some(0) => s.points[0],
            Some(i) => {
                let (a, b) = (s.points[i - 1], s.points[i]);
                let f = if b.t > a.t {
                    (t - a.t) / (b.t - a.t)
                } else {
                    1.0
                };
                Point {
                    t,
                    cpu: a.cpu + (b.cpu - a.cpu) * f,
                    rq: a.rq + (b.rq - a.rq) * f,
                    kids: a.kids,
                }
            }
        })
    }

    /// The last sample.
    pub fn last(&self) -> Option<Point> {
        let s = self.0.series.lock().unwrap_or_else(|e| e.into_inner());
        s.points.last().copied()
    }

    /// When the process was spawned, in Unix seconds.
    pub fn spawned_unix(&self) -> f64 {
        self.0.spawned_unix
    }

    /// The test process cut where its tests began: `tests` seconds (their JUnit times) before
    /// they ended, at `ended` seconds after the spawn (the suite's end, by its JUnit timestamp;
    /// else when the process ended: its shutdown then counts as tests). None for a wrapper (a
    /// leader that had a child most of its start-up): its own readings say nothing of the
    /// process that does the work, whose CPU it gets only as it reaps it at the end.
    pub fn cut(&self, tests: f64, ended: Option<f64>) -> Option<Cut> {
        let last = self.last()?;
        let end_t = ended.filter(|e| *e > 0.0 && *e <= last.t).unwrap_or(last.t);
        let end = self.at(end_t)?;
        let wrapped = {
            let s = self.0.series.lock().unwrap_or_else(|e| e.into_inner());
            let before: Vec<&Point> = s.points.iter().filter(|p| p.t <= end_t - tests).collect();
            let kids = before.iter().filter(|p| p.kids).count();
            !before.is_empty() && kids * 2 > before.len()
        };
        if wrapped {
            return None;
        }
        let at = self.at((end_t - tests).max(0.0))?;
        Some(Cut {
            startup_wall: at.t,
            startup_rq: at.rq,
            startup_cpu: at.cpu,
            tests_rq: (end.rq - at.rq).max(0.0),
            tests_cpu: (end.cpu - at.cpu).max(0.0),
            tail_wall: (last.t - end.t).max(0.0),
            tail_rq: (last.rq - end.rq).max(0.0),
            tail_cpu: (last.cpu - end.cpu).max(0.0),
        })
    }

    /// Reads the whole group's CPU now, with its leader's (a scan of /proc, so only at a few
    /// moments: the server ready, a group about to be stopped): what the leader's figure lacks
    /// of members it has not reaped. Nothing is stored when no member was found.
    fn read_group(&self, pgid: u32, started: u64) {
        self.sample(pgid, started, false);
        if let Some(group) = sys::group_cpu(pgid, started) {
            let own = self.0.slots[OWN].load(std::sync::atomic::Ordering::Relaxed);
            self.0.slots[OWN_AT_GROUP].store(own, std::sync::atomic::Ordering::Relaxed);
            self.store(GROUP, group);
        }
    }

    fn store(&self, slot: usize, secs: f64) {
        let ms = (secs * 1000.0) as u64;
        self.0.slots[slot].store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last reading, in seconds: the whole group's when it was read plus the leader's own
    /// CPU since, or the leader's with the children it reaped, whichever is more. Both fall
    /// short, never count a process twice: a leader that reaps its workers as it stops (as
    /// gunicorn's does) has them in its children's figure, which the group reading holds too.
    /// None if it was never read.
    pub fn secs(&self) -> Option<f64> {
        let [leader, group, own, base] = [LEADER, GROUP, OWN, OWN_AT_GROUP]
            .map(|i| Self::known(self.0.slots[i].load(std::sync::atomic::Ordering::Relaxed)));
        let since = own.zip(base).map_or(0.0, |(o, b)| (o - b).max(0.0));
        match (leader, group) {
            (Some(l), Some(g)) => Some(l.max(g + since)),
            (l, g) => l.or(g),
        }
    }

    /// The CPU when its start-up ended; None if it was never seen to end.
    pub fn startup_secs(&self) -> Option<f64> {
        Self::known(self.0.slots[STARTUP].load(std::sync::atomic::Ordering::Relaxed))
    }

    fn known(ms: u64) -> Option<f64> {
        (ms != UNSET).then(|| ms as f64 / 1000.0)
    }
}

/// Copies both output streams into the log line by line, and notes each line's arrival.
async fn copy_stamped(
    out: tokio::process::ChildStdout,
    err: tokio::process::ChildStderr,
    log: std::fs::File,
    times: std::fs::File,
) {
    use std::sync::{Arc, Mutex};
    let sink = Arc::new(Mutex::new(StampedLog {
        log,
        times,
        offset: 0,
    }));
    let a = tokio::spawn(copy_lines(out, Arc::clone(&sink)));
    let b = tokio::spawn(copy_lines(err, sink));
    let _ = a.await;
    let _ = b.await;
}

struct StampedLog {
    log: std::fs::File,
    times: std::fs::File,
    offset: u64,
}

async fn copy_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    sink: std::sync::Arc<std::sync::Mutex<StampedLog>>,
) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        let offset = s.offset;
        let _ = s.log.write_all(&line);
        let _ = writeln!(s.times, "{now:.3} {offset}");
        s.offset += line.len() as u64;
    }
}

impl Group {
    /// Its leader's CPU meter, to read after the group is gone.
    pub fn cpu(&self) -> CpuMeter {
        self.cpu.clone()
    }

    /// The whole group's CPU so far, read now.
    pub async fn cpu_now(&self) -> Option<f64> {
        self.read_group().await;
        self.cpu.secs()
    }

    /// Reads the whole group's CPU (a scan of /proc, off the async threads).
    async fn read_group(&self) {
        let (cpu, pgid, started) = (self.cpu.clone(), self.pgid, self.started);
        let _ = tokio::task::spawn_blocking(move || cpu.read_group(pgid, started)).await;
    }

    /// Waits for the leader to exit and reaps it, reading its CPU in between: the exited
    /// leader's /proc entry holds its final CPU and its reaped children's, which the last sample
    /// may have missed (a wrapper reaps the real process just before it exits).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        let (pid, started) = (self.pgid, self.started);
        if let Some(p) = Pid::from_raw(pid as i32) {
            let exited = tokio::task::spawn_blocking(move || {
                waitid(
                    WaitId::Pid(p),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                )
            });
            let _ = exited.await;
            self.cpu.sample(pid, started, true);
        }
        self.child.wait().await
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after `grace` (at once if `cancel.kill`
    /// fires); a final SIGKILL reaches grandchildren that outlived the leader.
    pub async fn stop(
        mut self,
        journal: &Journal,
        grace: Duration,
        cancel: &Cancel,
    ) -> Option<i32> {
        let code = if let Ok(Some(status)) = self.child.try_wait() {
            status.code()
        } else {
            // Members the leader would not reap before it dies are counted now or never.
            self.read_group().await;
            sys::signal_group(self.pgid, Signal::TERM);
            tokio::select! {
                s = self.wait() => s.ok().and_then(|s| s.code()),
                _ = tokio::time::sleep(grace) => None,
                _ = cancel.kill.cancelled() => None,
            }
        };
        self.finish(journal).await;
        code
    }

    /// After the leader exited: kill what is left of the group and reap.
    pub async fn finish(mut self, journal: &Journal) {
        // Only while members of ours remain: an empty group's id could be someone else's now.
        if sys::group_alive(self.pgid, self.started) {
            sys::signal_group(self.pgid, Signal::KILL);
        }
        let _ = self.child.wait().await;
        if let Some(copier) = self.copier.take() {
            // The group is gone; a descendant that escaped it may still hold the pipes.
            let abort = copier.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), copier)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let (pgid, started) = (self.pgid, self.started);
        wait_gone(|| sys::group_alive(pgid, started), Duration::from_secs(5)).await;
        // Descendants that left the group (setsid) still carry the mark.
        if sys::kill_marked(&self.mark) > 0 {
            let mark = self.mark.clone();
            wait_gone(
                || !sys::marked_processes(&mark).is_empty(),
                Duration::from_secs(5),
            )
            .await;
        }
        let _ = journal.undone(self.entry);
    }
}

/// Runs a one-off command in its own journaled process group to its end: its exit code (None:
/// killed by a signal, or stopped because it ran past `timeout` or the run was stopping, after
/// `grace`).
pub async fn run_to_end(
    journal: &Journal,
    spec: Spec<'_>,
    timeout: Duration,
    grace: Duration,
    cancel: &Cancel,
) -> Result<Option<i32>, String> {
    let mut group = spawn(journal, spec)?;
    let status = tokio::select! {
        s = group.wait() => s.ok(),
        _ = tokio::time::sleep(timeout) => None,
        _ = cancel.stop.cancelled() => None,
    };
    match status {
        Some(s) => {
            group.finish(journal).await;
            Ok(s.code())
        }
        None => {
            group.stop(journal, grace, cancel).await;
            Ok(None)
        }
    }
}

/// Terminates a group we started, if its members are still ours (started no earlier than the
/// leader): SIGTERM, then SIGKILL after `grace`. False: nothing of it was left to stop.
pub async fn kill_group_verified(pgid: u32, started: u64, grace: Duration) -> bool {
    let leader_reused = sys::start_time(pgid).is_some_and(|t| t != started);
    if leader_reused || !sys::group_alive(pgid, started) {
        return false;
    }
    sys::signal_group(pgid, Signal::TERM);
    wait_gone(|| sys::group_alive(pgid, started), grace).await;
    sys::signal_group(pgid, Signal::KILL);
    wait_gone(|| sys::group_alive(pgid, started), Duration::from_secs(5)).await;
    true
}

/// Polls `alive` every 20 ms until it is false or `limit` passes.
pub async fn wait_gone(alive: impl Fn() -> bool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
