//! The journal: every resource a run creates is recorded **before** it is created and marked done
//! or undone after, in `.e2e-plan/runs/<run>.jsonl` (one JSON record a line, synced). Rollback
//! replays a journal backwards; undoing is idempotent, so replaying twice, or over a resource that
//! was only half created, is safe.
//!
//! The journal is generic over the resource type: the engine knows how to record and replay, the
//! steps know what a resource is and how to undo it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::BoxFuture;

/// What undoing a resource found: rollback says "already gone" rather than claim it undid
/// something that was not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    Undone,
    AlreadyGone,
}

/// A resource that can be undone.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Undoes the resource; must succeed (saying so) when it is already gone.
    fn undo(&self) -> BoxFuture<Result<Undo, String>>;
    /// One line for messages.
    fn describe(&self) -> String;
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record<R> {
    Header {
        run_id: String,
        plan: String,
        pid: u32,
        pid_start: u64,
        started: String,
    },
    Intent {
        seq: u64,
        resource: R,
    },
    /// Created; `resource` carries what was only known after creation (a PID).
    Done {
        seq: u64,
        resource: Option<R>,
    },
    Undone {
        seq: u64,
    },
    /// The run ended normally; what is still done was kept on purpose.
    End {
        kept: usize,
    },
}

/// A handle on a resource recorded in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry(pub u64);

pub struct Journal {
    path: PathBuf,
    run_id: String,
    inner: Mutex<(File, u64)>,
    marks: std::sync::atomic::AtomicU64,
}

impl Journal {
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("runs")
    }

    /// Starts a journal for a new run.
    pub fn create(state_dir: &Path, run_id: &str, plan: &str) -> std::io::Result<Journal> {
        let dir = Self::dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        // Owner-only: it holds the admin URL rollback needs, password included.
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            OpenOptions::new().create_new(true).append(true),
            0o600,
        )
        .open(&path)?;
        let journal = Journal {
            path,
            run_id: run_id.to_string(),
            marks: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new((file, 0)),
        };
        let (pid, pid_start) = crate::sys::self_identity();
        journal.write::<()>(&Record::Header {
            run_id: run_id.into(),
            plan: plan.into(),
            pid,
            pid_start,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })?;
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A label unique within all runs (`<run id>.<n>`) for steps to tag what they create.
    pub fn new_mark(&self) -> String {
        let n = self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        format!("{}.{n}", self.run_id)
    }

    /// Appends a record. Intents (and the header) are synced: they must survive a power loss
    /// before the resource exists. Done/undone records are not: losing one only makes a later
    /// rollback undo something again, which is idempotent. The write may block on a busy disk, so
    /// on a multi-threaded runtime the other tasks are moved off this thread meanwhile.
    fn write<R: Serialize>(&self, record: &Record<R>) -> std::io::Result<()> {
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        let sync = matches!(record, Record::Intent { .. } | Record::Header { .. });
        let write = || {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.0.write_all(line.as_bytes())?;
            if sync {
                guard.0.sync_data()?;
            }
            Ok(())
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(write)
            }
            _ => write(),
        }
    }

    /// Records that `resource` is about to be created.
    pub fn intent<R: Resource>(&self, resource: &R) -> std::io::Result<Entry> {
        let seq = {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.1 += 1;
            guard.1
        };
        self.write(&Record::Intent {
            seq,
            resource: resource.clone(),
        })?;
        Ok(Entry(seq))
    }

    pub fn done<R: Resource>(&self, entry: Entry, updated: Option<&R>) -> std::io::Result<()> {
        self.write(&Record::Done {
            seq: entry.0,
            resource: updated.cloned(),
        })
    }

    pub fn undone(&self, entry: Entry) -> std::io::Result<()> {
        self.write::<()>(&Record::Undone { seq: entry.0 })
    }

    /// Closes the journal: deleted when nothing is left, else marked ended with what was kept.
    pub fn finish(&self, kept: usize) -> std::io::Result<()> {
        if kept == 0 {
            std::fs::remove_file(&self.path)
        } else {
            self.write::<()>(&Record::End { kept })
        }
    }
}

/// A journal read back from disk.
#[derive(Debug)]
pub struct Recorded<R> {
    pub path: PathBuf,
    pub run_id: String,
    pub plan: String,
    pub started: String,
    /// The runner still runs (same PID and start time).
    pub runner_alive: bool,
    /// The run reached its end (what is left was kept on purpose).
    pub ended: bool,
    /// Resources not undone, newest first: what rollback must undo, in order.
    pub pending: Vec<R>,
    /// Lines that could not be read. A runner killed mid-write leaves its last line torn; an
    /// intent is synced before its resource is created, so a torn one created nothing.
    pub torn: usize,
}

/// Reads every journal under `state_dir`; unreadable lines are skipped (a torn last line after a
/// crash is expected).
pub fn read_all<R: Resource>(state_dir: &Path) -> Vec<Recorded<R>> {
    let Ok(dir) = std::fs::read_dir(Journal::dir(state_dir)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    paths.into_iter().filter_map(|p| read_one(&p)).collect()
}

fn read_one<R: Resource>(path: &Path) -> Option<Recorded<R>> {
    let file = File::open(path).ok()?;
    let mut header = None;
    let mut ended = false;
    let mut entries: BTreeMap<u64, (R, bool)> = BTreeMap::new();
    let mut torn = 0;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(record) = serde_json::from_str::<Record<R>>(&line) else {
            torn += 1;
            continue;
        };
        match record {
            Record::Header {
                run_id,
                plan,
                pid,
                pid_start,
                started,
            } => header = Some((run_id, plan, pid, pid_start, started)),
            Record::Intent { seq, resource } => {
                entries.insert(seq, (resource, false));
            }
            Record::Done {
                seq,
                resource: Some(r),
            } => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.0 = r;
                }
            }
            Record::Done { .. } => {}
            Record::Undone { seq } => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.1 = true;
                }
            }
            Record::End { .. } => ended = true,
        }
    }
    let (run_id, plan, pid, pid_start, started) = header?;
    Some(Recorded {
        path: path.to_path_buf(),
        run_id,
        plan,
        started,
        runner_alive: crate::sys::is_same_process(pid, pid_start),
        ended,
        pending: entries
            .into_values()
            .rev()
            .filter(|(_, undone)| !undone)
            .map(|(r, _)| r)
            .collect(),
        torn,
    })
}

/// Undoes every pending resource of a journal, newest first, then deletes the journal. Returns
/// what was undone (or found gone) and what failed (the journal is kept when anything failed,
/// for another try).
pub async fn replay<R: Resource>(recorded: &Recorded<R>) -> (Vec<(String, Undo)>, Vec<String>) {
    let mut undone = Vec::new();
    let mut failed = Vec::new();
    for r in &recorded.pending {
        match r.undo().await {
            Ok(how) => undone.push((r.describe(), how)),
            Err(e) => failed.push(format!("{}: {e}", r.describe())),
        }
    }
    if failed.is_empty() {
        let _ = std::fs::remove_file(&recorded.path);
    }
    (undone, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Dir(PathBuf);

    impl Resource for Dir {
        fn undo(&self) -> BoxFuture<Result<Undo, String>> {
            let p = self.0.clone();
            Box::pin(async move {
                match std::fs::remove_dir_all(&p) {
                    Ok(()) => Ok(Undo::Undone),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Undo::AlreadyGone),
                    Err(e) => Err(e.to_string()),
                }
            })
        }
        fn describe(&self) -> String {
            format!("folder {}", self.0.display())
        }
    }

    #[tokio::test]
    async fn replay_undoes_pending_newest_first_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::create(tmp.path(), "r1", "p.toml").unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let ea = j.intent(&Dir(a.clone())).unwrap();
        std::fs::create_dir(&a).unwrap();
        j.done::<Dir>(ea, None).unwrap();
        let eb = j.intent(&Dir(b.clone())).unwrap();
        std::fs::create_dir(&b).unwrap();
        j.done::<Dir>(eb, None).unwrap();
        j.undone(eb).unwrap();
        // A half-created resource: intent recorded, never created.
        j.intent(&Dir(tmp.path().join("c"))).unwrap();
        drop(j);

        let all: Vec<Recorded<Dir>> = read_all(tmp.path());
        assert_eq!(all.len(), 1);
        assert!(all[0].runner_alive, "this test process is the runner");
        assert_eq!(all[0].pending.len(), 2);
        assert!(all[0].pending[0].0.ends_with("c"), "newest first");
        let (undone, failed) = replay(&all[0]).await;
        assert_eq!((undone.len(), failed.len()), (2, 0));
        assert_eq!(undone[0].1, Undo::AlreadyGone, "c was never created");
        assert_eq!(undone[1].1, Undo::Undone);
        assert!(!a.exists());
        let again: Vec<Recorded<Dir>> = read_all(tmp.path());
        assert!(again.is_empty(), "journal removed after a clean replay");
        // Replaying the same record again is harmless.
        let (undone, failed) = replay(&all[0]).await;
        assert_eq!((undone.len(), failed.len()), (2, 0));
        assert!(undone.iter().all(|(_, how)| *how == Undo::AlreadyGone));
    }
}
