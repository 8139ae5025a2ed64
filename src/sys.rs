//! Process facts from /proc and signals to process groups. Processes are only ever addressed by a
//! PID or group we started and recorded, and checked by start time before they are signalled.

use std::path::Path;

use rustix::process::{kill_process_group, Pid, Signal};

/// The machine's cores, as `units = "auto"` plans for them and the timings judge contention.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The machine's CPU time so far, idle and all, in clock ticks, and how many CPUs it counts (the
/// first lines of /proc/stat; idle counts I/O wait, which leaves the core free for another worker).
pub fn cpu_idle_and_total() -> Option<(u64, u64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    if ticks.len() < 5 {
        return None;
    }
    Some((ticks[3] + ticks[4], ticks.iter().sum(), cpus.max(1)))
}

/// A process's start time (clock ticks since boot, field 22 of /proc/PID/stat); None if gone.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat).and_then(|f| f.get(19)?.parse().ok())
}

/// CPU seconds `pid` has used: its own, and with its reaped children's (fields 14–15 and 14–17
/// of /proc/PID/stat, readable until it is reaped); and its state (`R`, `S`…). None once it is
/// gone or its PID is another's.
pub fn cpu_and_state(pid: u32, started: u64) -> Option<(f64, f64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = stat_fields(&stat)?;
    if f.get(19).and_then(|s| s.parse::<u64>().ok()) != Some(started) {
        return None;
    }
    let state = f.first()?.chars().next()?;
    let own = ticks_to_secs(sum_fields(&f, 11..13));
    Some((own, ticks_to_secs(cpu_ticks(&f)), state))
}

/// Fields 14–17 (utime, stime, cutime, cstime) of the fields after `(comm)`.
fn cpu_ticks(f: &[&str]) -> u64 {
    sum_fields(f, 11..15)
}

fn sum_fields(f: &[&str], range: std::ops::Range<usize>) -> u64 {
    f.get(range)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse::<u64>().ok())
        .sum()
}

fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / rustix::param::clock_ticks_per_second().max(1) as f64
}

/// Seconds `pid`'s main thread has waited on a run queue (runnable, but another task had the
/// CPU): field 2 of /proc/PID/schedstat. Its wall time minus this is about what it would have
/// taken alone, however many processes shared the cores. None when gone or unreadable.
pub fn runqueue_wait(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// Process `pid`'s state (`R` running or queued for the CPU, `S` asleep, `D` on the disk…);
/// None when it is gone or unreadable.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.first()?.chars().next()
}

/// Whether `pid`'s main thread has a child process (`/proc/PID/task/PID/children`).
pub fn has_children(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|c| !c.trim().is_empty())
}

/// Fields after the `(comm)` of a stat line: index 0 is field 3 (state).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// True when `pid` is running and is the process that started at `started` (not a reused PID).
/// A zombie counts as gone.
pub fn is_same_process(pid: u32, started: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(f) = stat_fields(&stat) else {
        return false;
    };
    f.first() != Some(&"Z") && f.get(19).and_then(|s| s.parse().ok()) == Some(started)
}

/// PIDs (not zombies) whose process group is `pgid` and that started no earlier than `since`:
/// the members of a group we created, even after its leader exited.
pub fn group_members(pgid: u32, since: u64) -> Vec<u32> {
    let mut pids = Vec::new();
    for_each_in_group(pgid, since, |pid, f| {
        if f.first() != Some(&"Z") {
            pids.push(pid);
        }
    });
    pids
}

/// CPU seconds the processes of group `pgid` (started no earlier than `since`) have used, their
/// own and their reaped children's. Zombies count: no parent's figure holds them yet. A server's
/// workers (gunicorn's) are in it, which their leader's figure lacks until it reaps them. None
/// when no member was found.
pub fn group_cpu(pgid: u32, since: u64) -> Option<f64> {
    let (mut ticks, mut members) = (0, 0);
    for_each_in_group(pgid, since, |_, f| {
        ticks += cpu_ticks(f);
        members += 1;
    });
    (members > 0).then(|| ticks_to_secs(ticks))
}

/// One PostgreSQL backend seen on this machine: its PID and start time, the CPU seconds it has
/// used and the seconds it has waited on a run queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backend {
    pub pid: u32,
    pub started: u64,
    pub cpu: f64,
    pub rq: f64,
}

/// The PostgreSQL backends on this machine serving database `db`, found by the title PostgreSQL
/// gives them (`postgres: [cluster: ]user db host(port) state`; `update_process_title`, on by
/// default). Empty when the server is elsewhere, titles are off or no backend serves `db`.
pub fn backends_of(db: &str) -> Vec<Backend> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    let mut out = Vec::new();
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name stays `postgres` whatever the title says: only those are read on.
        if !stat.contains("(postgres)") {
            continue;
        }
        let Ok(title) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !serves(&String::from_utf8_lossy(&title), db) {
            continue;
        }
        let Some(f) = stat_fields(&stat) else {
            continue;
        };
        let Some(started) = f.get(19).and_then(|s| s.parse().ok()) else {
            continue;
        };
        out.push(Backend {
            pid,
            started,
            cpu: ticks_to_secs(sum_fields(&f, 11..13)),
            rq: runqueue_wait(pid).unwrap_or_default(),
        });
    }
    out
}

/// Whether a backend's title names database `db` (a whole word after `postgres:`).
fn serves(title: &str, db: &str) -> bool {
    let title = title.trim_end_matches('\0').replace('\0', " ");
    title
        .strip_prefix("postgres: ")
        .is_some_and(|rest| rest.split_whitespace().take(4).any(|w| w == db))
}

/// Calls `each` with the PID and stat fields of every process of group `pgid` that started no
/// earlier than `since` (a group id reused after ours emptied has only later members).
fn for_each_in_group(pgid: u32, since: u64, mut each: impl FnMut(u32, &[&str])) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let pids = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(f) = stat_fields(&stat) else {
            continue;
        };
        let ours = f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(pgid)
            && f.get(19)
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|t| t >= since);
        if ours {
            each(pid, &f);
        }
    }
}

/// The environment variable every child of a run carries: `<run id>.<journal entry>`. It survives
/// what a process group does not (a grandchild that calls setsid), so it finds every descendant.
pub const MARK_VAR: &str = "E2E_PLAN_MARK";

/// Live processes whose environment carries `E2E_PLAN_MARK=<mark>`.
pub fn marked_processes(mark: &str) -> Vec<u32> {
    let needle = format!("{MARK_VAR}={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s).map(|f| f.first() == Some(&"Z")))
                .unwrap_or(true);
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                    .unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs every process that carries `mark` (they are ours by construction).
pub fn kill_marked(mark: &str) -> usize {
    let pids = marked_processes(mark);
    for pid in &pids {
        if let Some(p) = Pid::from_raw(*pid as i32) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
        }
    }
    pids.len()
}

/// Sends `signal` to the group; a group that no longer exists is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid as i32) {
        let _ = kill_process_group(pid, signal);
    }
}

/// True when the group still has a live member of ours.
pub fn group_alive(pgid: u32, since: u64) -> bool {
    !group_members(pgid, since).is_empty()
}

/// This process's identity, recorded in journals so that a later run can tell a dead runner.
pub fn self_identity() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or_default())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// uid and gid of a local account, from /etc/passwd.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// True when every folder from `/` down to `path` can be traversed by "others".
pub fn world_traversable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_itself() {
        let (pid, started) = self_identity();
        assert!(started > 0);
        assert!(is_same_process(pid, started));
        assert!(!is_same_process(pid, started + 1));
    }

    #[test]
    fn parses_comm_with_spaces() {
        let line = "12 (a b) c) S 1 12 12 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        let f = stat_fields(line).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[2], "12");
        assert_eq!(f[19], "777");
    }

    /// A backend's title names its database after the user, with or without a cluster name;
    /// autovacuum on it counts; another database whose name starts alike does not.
    #[test]
    fn a_backend_is_known_by_the_database_its_title_names() {
        let db = "app_1a2b_0";
        assert!(serves(
            "postgres: 15/main: postgres app_1a2b_0 127.0.0.1(4242) idle\0",
            db
        ));
        assert!(serves("postgres: app app_1a2b_0 [local] SELECT", db));
        assert!(serves(
            "postgres: 15/main: autovacuum worker app_1a2b_0",
            db
        ));
        assert!(!serves(
            "postgres: 15/main: postgres app_1a2b_01 127.0.0.1(4242) idle",
            db
        ));
        assert!(!serves("postgres: 15/main: checkpointer ", db));
        assert!(!serves("python app_1a2b_0", db));
    }
}
