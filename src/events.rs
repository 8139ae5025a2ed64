//! What steps report while they work. Steps only send events; the reporter alone turns them into
//! terminal output and report files.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::Phase;
use crate::model::{RunSummary, WorkerResult};

#[derive(Debug)]
pub enum Event {
    /// A setup or teardown step began.
    StepStarted {
        what: String,
    },
    StepFinished {
        what: String,
        took: Duration,
        note: Option<String>,
    },
    /// A worker entered a phase (attempt 1 is the first run).
    Phase {
        worker: usize,
        file: String,
        attempt: u32,
        phase: Phase,
    },
    WorkerFinished(Box<WorkerResult>),
    /// A pack's test process is over (its files are reported one by one).
    PackFinished {
        worker: usize,
    },
    Warning(String),
    /// The run's results are final: print the summary and write the report files, then answer.
    RunFinished {
        summary: Box<RunSummary>,
        written: tokio::sync::oneshot::Sender<Vec<PathBuf>>,
    },
    /// The signal handler got a signal.
    Interrupted {
        second: bool,
    },
}
