//! Plan files: the TOML format ([`format`]), loading and checking ([`load`]) into a resolved
//! [`Plan`] in which nothing can fail any more, and the JSON Schema editors validate against.

pub mod duration;
pub mod format;
pub mod init;
pub mod load;
pub mod reference;
pub mod template;

use std::path::PathBuf;
use std::time::Duration;

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;

pub use format::{Artifacts, FlakyPolicy, Jobs, Keep, Strategy, Units};
pub use load::{load, LoadOptions};
use template::{Template, Word};

/// The default plan path, relative to the working directory.
pub const DEFAULT_PLAN: &str = "plans/default.toml";

/// The placeholders `[test] collect` and the `[test] env` entries it gets may use: it runs before
/// any worker exists, so `{db_url}` and `{db_name}` name the template (read-only use).
pub const COLLECT_PLACEHOLDERS: &[&str] = &["root", "file", "db_url", "db_name"];

/// A plan as loaded: paths absolute, globs expanded, templates parsed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file as the user named it (for messages and the journal).
    pub path: PathBuf,
    pub root: PathBuf,
    pub files: Vec<TestFile>,
    pub setup: Vec<SetupCommand>,
    pub database: DatabaseSpec,
    /// `[[resource]]`s, in file order: made for each worker attempt after its database.
    pub resources: Vec<ResourceSpec>,
    /// `[[service]]`s, in file order: started for each worker attempt after its resources.
    pub services: Vec<ServiceSpec>,
    pub server: Option<ServerSpec>,
    pub test: TestSpec,
    pub run: RunSpec,
    pub report_dir: PathBuf,
    /// `[report] artifacts`: which attempts' `{artifacts_dir}` survive.
    pub artifacts: Artifacts,
}

/// One test file: one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFile {
    /// Relative to root, with `/` separators.
    pub path: String,
    /// Unique among the plan's files: used for log folders and database names.
    pub stem: String,
    /// Its size in bytes when the plan was loaded: before a file is timed, what it is guessed
    /// by (a bigger file, more tests).
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct SetupCommand {
    pub command: Vec<Word>,
    pub creates: Option<String>,
    pub env: Vec<(String, Template)>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    /// None: start an ephemeral cluster.
    pub template: Option<String>,
    pub prepare: Vec<Vec<Word>>,
    /// Environment of the prepare commands, besides DATABASE_URL.
    pub env: Vec<(String, Template)>,
    pub keep: Keep,
    pub strategy: Option<Strategy>,
    pub fingerprint: Vec<String>,
    pub busy_timeout: Duration,
    /// Pooled copies to keep ready between runs; 0: no pool.
    pub pool: usize,
}

#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub command: Vec<Word>,
    pub env: Vec<(String, Template)>,
    pub ready: Template,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
}

/// A slice of a shared system each worker attempt makes and undoes by commands.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub name: String,
    pub create: Vec<Word>,
    pub destroy: Vec<Word>,
    pub env: Vec<(String, Template)>,
    /// Exit codes of `destroy` that say the resource is gone (0: it was undone now).
    pub destroy_ok_exit_codes: Vec<i32>,
}

/// A process each worker attempt starts for itself, on a port of its own.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub command: Vec<Word>,
    pub env: Vec<(String, Template)>,
    pub ready: Template,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TestSpec {
    pub command: Vec<Word>,
    pub env: Vec<(String, Template)>,
    pub timeout: Duration,
    pub ok_exit_codes: Vec<i32>,
    /// Lists a file's test ids (`[test] collect`): what a split file is divided by.
    pub collect: Option<Vec<Word>>,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub units: format::Units,
    /// Files never packed with others (`[run] alone`).
    pub alone: Vec<String>,
    /// Files never split (`[run] whole`).
    pub whole: Vec<String>,
    pub jobs: Jobs,
    pub fail_fast: bool,
    pub retries: u32,
    pub flaky: FlakyPolicy,
    pub max_retry_files: usize,
}

impl Plan {
    /// Where runs keep their journals, timings and ephemeral clusters.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".e2e-plan")
    }

    /// `--report-dir`: reports and logs go to `dir` (relative to the working folder) this time.
    pub fn set_report_dir(&mut self, dir: &std::path::Path) {
        let cwd = std::env::current_dir().unwrap_or_default();
        self.report_dir = load::normalize(&cwd.join(dir));
    }

    /// The embedded cluster is kept between runs when a fingerprint can say whether its template
    /// is current; without one it is thrown away after every run.
    pub fn keeps_cluster(&self) -> bool {
        self.database.template.is_none() && !self.database.fingerprint.is_empty()
    }

    /// Whether runs keep a pool of ready copies (on a server, or on the kept local cluster).
    pub fn has_pool(&self) -> bool {
        self.database.pool > 0 && (self.database.template.is_some() || self.keeps_cluster())
    }

    /// The stop grace period for any process group, server or test.
    pub fn stop_timeout(&self) -> Duration {
        self.server
            .as_ref()
            .map(|s| s.stop_timeout)
            .unwrap_or(Duration::from_secs(2))
    }
}

/// A mistake in a plan file, pointing at the offending text.
#[derive(Debug, Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(e2e_plan::plan))]
pub struct PlanError {
    pub message: String,
    #[source_code]
    pub src: Option<NamedSource<String>>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    #[related]
    pub related: Vec<PlanError>,
}

impl PlanError {
    pub fn plain(message: impl Into<String>) -> Self {
        PlanError {
            message: message.into(),
            src: None,
            span: None,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// CI is set to something other than empty, `false` or `0`.
pub fn is_ci(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The closest candidate to `word`, if any is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The JSON Schema (draft-07) of the plan format, as checked in at `schemas/plan.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(format::RawPlan);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
