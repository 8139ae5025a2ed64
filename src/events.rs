//! What a run tells its sinks. The run's owner (`steps::owner`) feeds every sink the same stream
//! of [`Event`]s, then [`Sink::finish`] with the summary; sinks alone write to the terminal and to
//! report files. Steps never print.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::Phase;
use crate::model::{RunSummary, WorkerResult};

#[derive(Debug, Clone)]
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
    /// A file's attempt ended: its result over every attempt so far.
    WorkerFinished(Box<WorkerResult>),
    /// A pack's test process is over (its files are reported one by one).
    PackFinished {
        worker: usize,
    },
    Warning(String),
    /// The signal handler got a signal.
    Interrupted {
        second: bool,
    },
    /// Every sink has finished: what each wrote (or could not write), in sink order.
    Written(Vec<Written>),
}

/// A file a sink wrote when the run finished, or could not write (and why).
pub type Written = Result<PathBuf, (PathBuf, String)>;

/// Where a run's story goes: the terminal, JUnit, summary.json, the HTML page, the state kept for
/// the next run. Every sink gets every event, in order, then the summary once.
pub trait Sink: Send {
    fn event(&mut self, event: &Event);
    /// The run's results are final: write what this sink makes of them. Returns the files it
    /// wrote or failed to write (a sink that writes none returns none).
    fn finish(&mut self, summary: &RunSummary) -> Vec<Written>;
    /// The command is about to end: nothing more will come.
    fn close(&mut self) {}
}
