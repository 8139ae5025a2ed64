//! Per-worker resources: what each worker attempt gets of its own besides its processes (its
//! database now; a broker's vhost, a bucket later). Every kind has the same small life cycle,
//! as Terraform's providers do: **acquire** for an attempt (journaled before it exists),
//! **release** by the keep decision (or at once, for a retry's), and **undo** for `rollback`,
//! through its journal variant (`steps::resource::Resource`). The engine and the owner know
//! them only as [`Held`] records; a new kind is one file here and one journal variant.

pub mod command;
pub mod database;

use std::future::Future;
use std::pin::Pin;

use super::{RunCx, StepError};
use crate::engine::journal::Entry;
use crate::engine::Cancel;
use crate::planner::WorkerPlan;

/// A future borrowing the run.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of per-worker resource.
pub trait WorkerResource: Send + Sync {
    /// Names the kind in messages, and finds it again for a [`Held`] ("database").
    fn key(&self) -> &str;
    /// Makes it for attempt `n` of `w`, journaled before it exists, and tells the run's owner
    /// it is held. Ok(None): cancelled before it began.
    fn acquire<'a>(
        &'a self,
        cx: &'a RunCx,
        w: &'a WorkerPlan,
        n: u32,
        cancel: &'a Cancel,
    ) -> Fut<'a, Result<Option<Held>, StepError>>;
    /// Destroys what the keep decision did not keep, and marks its journal entry undone.
    fn release<'a>(&'a self, cx: &'a RunCx, held: &'a Held) -> Fut<'a, Result<(), String>>;
}

/// A per-worker resource that exists (or is being made) for one attempt.
#[derive(Debug, Clone)]
pub struct Held {
    /// The kind that made it ([`WorkerResource::key`]).
    pub key: String,
    /// Its name (a database's name).
    pub name: String,
    pub entry: Entry,
    pub worker: usize,
    pub attempt: u32,
    /// The files whose results decide whether it is kept: the worker's own, or a pack's.
    pub files: Vec<usize>,
    /// The database it follows (a resource: kept with it, else released).
    pub follows: Option<String>,
    /// What its journal entry says (a resource's destroy command): how it is released.
    pub record: Option<crate::steps::resource::Resource>,
}

impl Held {
    pub fn is_database(&self) -> bool {
        self.key == database::KEY
    }

    /// The record a worker's attempt holds, for resource `key` named `name`.
    pub fn of(key: &str, name: &str, entry: Entry, w: &WorkerPlan, attempt: u32) -> Held {
        Held {
            key: key.to_string(),
            name: name.to_string(),
            entry,
            worker: w.index,
            attempt,
            files: if w.pack.is_empty() {
                vec![w.index]
            } else {
                w.pack.clone()
            },
            follows: None,
            record: None,
        }
    }

    #[cfg(test)]
    pub fn database_for_test(worker: usize, attempt: u32, name: String, entry: Entry) -> Held {
        Held {
            key: database::KEY.into(),
            name,
            entry,
            worker,
            attempt,
            files: vec![worker],
            follows: None,
            record: None,
        }
    }
}
