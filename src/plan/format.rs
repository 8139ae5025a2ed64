//! The plan file as written (format version 1): serde structs that keep every value's position so
//! that later checks can underline it, and that derive the JSON Schema editors validate against.
//!
//! Key names here are a public contract: users' repositories depend on them.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::duration::HumanDuration;

/// A whole plan file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "e2e-plan plan file (version 1)")]
pub struct RawPlan {
    /// Format version; only 1 exists.
    #[schemars(with = "Option<u32>")]
    pub version: Option<Spanned<i64>>,
    /// Folder every command runs in, relative to the plan file's folder. Default ".".
    #[schemars(with = "Option<String>")]
    pub root: Option<Spanned<String>>,
    /// Which test files to run; every matching file is one worker.
    pub tests: RawTests,
    /// Commands run once in `root` before the template is prepared (e.g. creating a virtualenv).
    #[serde(default)]
    pub setup: Vec<RawSetup>,
    /// The template database every worker's database is cloned from.
    #[serde(default)]
    pub database: RawDatabase,
    /// The server each worker starts against its own database. Optional.
    pub server: Option<RawServer>,
    /// The test command run once per file.
    pub test: RawTest,
    /// Scheduling.
    #[serde(default)]
    pub run: RawRun,
    /// Where reports and logs go.
    #[serde(default)]
    pub report: RawReport,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTests {
    /// Globs relative to root; every matching file is one worker.
    #[schemars(with = "Vec<String>")]
    pub include: Spanned<Vec<Spanned<String>>>,
    /// Globs removed from the match.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSetup {
    /// An argv array, or a string split into words like a shell would (no shell is run).
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    /// Skip the command when this path (relative to root) exists.
    #[schemars(with = "Option<String>")]
    pub creates: Option<Spanned<String>>,
    /// Environment variables for this command; may use {root} and {run}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// The template database's URL. Absent or empty: an ephemeral PostgreSQL cluster is started.
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Commands run once, in order, before cloning, with DATABASE_URL set to the template's URL.
    #[serde(default)]
    #[schemars(with = "Vec<CommandSpec>")]
    pub prepare: Vec<Spanned<CommandSpec>>,
    /// Environment variables for the prepare commands (besides DATABASE_URL); may use {root},
    /// {run}, {db_name} and {db_url}, e.g. POSTGRES_DB = "{db_name}".
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Which worker databases survive the run.
    #[schemars(with = "Option<Keep>")]
    pub keep: Option<Spanned<Keep>>,
    /// How PostgreSQL copies the template: file_copy (default on 15+) or wal_log.
    pub strategy: Option<Strategy>,
    /// Globs (relative to root) whose contents, with the prepare commands, decide whether the
    /// template must be prepared again.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub fingerprint: Vec<Spanned<String>>,
    /// How long a clone waits for other sessions to leave the template (they are never
    /// terminated) before failing with their names. Default "30s".
    #[schemars(with = "Option<String>")]
    pub busy_timeout: Option<HumanDuration>,
    /// Copies of the template kept cloned between runs (needs `fingerprint`): the next run claims
    /// them at once instead of cloning, and refills the pool after its summary. 0 (default): off.
    /// Ignored on an ephemeral cluster.
    #[schemars(with = "Option<usize>")]
    pub pool: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// http(s)://… polled until 2xx/3xx, or tcp://host:port.
    #[schemars(with = "String")]
    pub ready: Spanned<String>,
    /// Default "30s".
    #[schemars(with = "Option<String>")]
    pub ready_timeout: Option<HumanDuration>,
    /// SIGTERM to the process group, then SIGKILL after this. Default "2s".
    #[schemars(with = "Option<String>")]
    pub stop_timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Per worker; past it the worker is killed and reported TIMEOUT. Default "15m".
    #[schemars(with = "Option<String>")]
    pub timeout: Option<HumanDuration>,
    /// Exit codes that count as passing. Default [0, 5].
    pub ok_exit_codes: Option<Vec<i32>>,
    /// Lists one file's test ids, one per line (`units = "auto"` splits a long file by them);
    /// may use {root}, {file} and {args}. pytest: ["pytest", "--collect-only", "-q", "{file}"].
    #[schemars(with = "Option<CommandSpec>")]
    pub collect: Option<Spanned<CommandSpec>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    /// Most workers at once; 0 = every file at once.
    pub jobs: Option<usize>,
    pub fail_fast: Option<bool>,
    /// Attempts after a failure, each in a fresh database, port and server.
    pub retries: Option<u32>,
    /// Whether a file that failed then passed fails the run. Default: fail when CI is set.
    pub flaky: Option<FlakyPolicy>,
    /// More first-pass failures than this and nothing is retried. Default 10.
    pub max_retry_files: Option<usize>,
    /// What one worker runs: "file" (default), one worker per file; "auto", short files with a
    /// heavy start-up packed into a few workers, one test process each, and a long file split by
    /// its test ids over several, chosen from the timings.
    pub units: Option<Units>,
    /// Globs of test files never packed with others (they always get a worker of their own).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub alone: Vec<Spanned<String>>,
    /// Globs of test files never split (their tests depend on running in order, or share costly
    /// module fixtures).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub whole: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Default "target/e2e", relative to root.
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
}

/// Which worker databases survive a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// Only the databases of failed workers (when tests failed).
    Failed,
    /// Every worker's database when any test failed.
    AllOnFailure,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    FileCopy,
    WalLog,
}

/// What one worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// One worker per file.
    #[default]
    File,
    /// Short files with a heavy start-up packed into a few workers, a file that would hold up
    /// the run split by its test ids (from recorded timings).
    Auto,
}

/// Defined with the run's results, which it judges; read from plans here.
pub use crate::model::FlakyPolicy;

/// A command: an argv array, or one string split into words like a shell would.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum CommandSpec {
    Argv(#[schemars(with = "Vec<String>")] Vec<Spanned<String>>),
    Line(#[schemars(with = "String")] Spanned<String>),
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command: an array of strings, or one string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // Spans of a string command are recovered from the enclosing Spanned.
                Ok(CommandSpec::Line(Spanned::new(0..0, v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<Spanned<String>>()? {
                    words.push(word);
                }
                if words.is_empty() {
                    return Err(de::Error::custom("a command needs at least one word"));
                }
                Ok(CommandSpec::Argv(words))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Enum words, after `${VAR}` interpolation.
macro_rules! word_enum {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const WORDS: &[&str] = &[$($word),+];
                let raw = String::deserialize(deserializer)?;
                let word = super::template::interpolate_value(&raw).map_err(de::Error::custom)?;
                match word.as_str() {
                    $($word => Ok($ty::$variant),)+
                    other => Err(de::Error::unknown_variant(other, WORDS)),
                }
            }
        }
    };
}

word_enum!(Keep { "failed" => Failed, "all-on-failure" => AllOnFailure, "always" => Always, "never" => Never });
word_enum!(Strategy { "file_copy" => FileCopy, "wal_log" => WalLog });
word_enum!(FlakyPolicy { "pass" => Pass, "fail" => Fail });
word_enum!(Units { "file" => File, "auto" => Auto });
