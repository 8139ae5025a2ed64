//! e2e-plan: runs every end-to-end test file in its own worker (its own PostgreSQL database cloned
//! from a template, its own server, its own test process), then merges the reports.
//!
//! Data flows one way, each layer using only those below it (`tests/e2e/layers.rs` checks it):
//! [`model`] (results as data, with [`events`], [`redact`], [`sys`]) ← [`plan`] (the file) ←
//! [`planner`] (the DAG) ← [`engine`] (runs steps, journal, rollback) ← [`steps`] (database,
//! server, tests) ← [`report`] (sinks of the event stream) ← [`cli`].

pub mod cli;
pub mod engine;
pub mod events;
pub mod model;
pub mod plan;
pub mod planner;
pub mod redact;
pub mod report;
pub mod steps;
pub mod sys;
