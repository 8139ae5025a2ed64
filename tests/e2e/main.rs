//! The integration tests, as one binary (one build and link instead of one per area, as ripgrep
//! and just do): a module per area, the helpers in `common`. They run against the real PostgreSQL
//! on 127.0.0.1:5432, real servers and real pytest (`.ci/run` sets those up).

mod common;

mod apply;
mod browser;
mod cli_promises;
mod django;
mod docs;
mod dry_run;
mod failures;
mod fastapi;
mod jobs;
mod kept_cluster;
mod layers;
mod plan_errors;
mod playwright;
mod pool;
mod promises;
mod python_world;
mod reports;
mod retries;
mod services;
mod speed;
mod trust;
mod units;
