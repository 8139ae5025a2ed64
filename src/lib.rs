//! e2e-plan: runs every end-to-end test file in its own worker (its own PostgreSQL database cloned
//! from a template, its own server, its own test process), then merges the reports.
//!
//! Data flows one way: [`plan`] (the file) → [`planner`] (the DAG) → [`engine`] (runs steps,
//! journal, rollback) → [`steps`] (database, server, test) → [`events`] → [`report`]; [`cli`] on top.

pub mod cli;
pub mod engine;
pub mod events;
pub mod plan;
pub mod planner;
pub mod redact;
pub mod report;
pub mod steps;
pub mod sys;
