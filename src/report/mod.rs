//! Everything a run shows and leaves: the terminal reporter, JUnit, summary.json, report.html,
//! dry-run rendering, and the state kept for the next run.

pub mod dryrun;
pub mod failures;
pub mod files;
pub mod html;
pub mod junit;
pub mod shards;
pub mod state;
pub mod terminal;
