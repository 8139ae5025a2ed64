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

/// A plan is one TOML file, usually `plans/default.toml` in your repository. Only `[tests] include` and `[test] command` are required. Write `#:schema ../schemas/plan.schema.json` as its first line and editors with TOML schema support (Taplo, Even Better TOML) validate and complete its keys; `e2e-plan schema > schemas/plan.schema.json` writes the schema.
///
/// **Commands.** Every command (setup, prepare, server, test) runs in `root`, its output going to a log file. It inherits e2e-plan's environment without the runner's `PYTEST_*` variables, plus the plan's `env` for it. A program path that is relative and contains a `/` (like `.venv/bin/pytest`) is resolved against `root`. A command is an array of words, or one string split into words like a shell would; e2e-plan never runs a shell (write `["sh", "-c", "…"]` to get one). So a command that starts with `NAME=value` is refused when the plan is loaded, with its line and column: put the variable in the `env` table beside the command. `validate`, `dry-run` and `apply` all refuse it.
///
/// **Process groups.** Every command runs in its own process group with `E2E_PLAN_RUN=<run id>` and `E2E_PLAN_MARK=<run id>.<n>` in its environment. Stopping one sends SIGTERM to the group and SIGKILL after the grace period (`[server] stop_timeout`); the mark is how e2e-plan finds descendants that left the group (a daemon that called `setsid`) and stops them too.
///
/// **Caches in the project are shared by every worker.** pytest writes `.pytest_cache` under root (`--lf` data, and whatever a conftest stores with `config.cache`); workers that run at once would all write the same files. Give each worker its own, `-o cache_dir={log_dir}/.pytest_cache` (it stays with the worker's logs), or turn it off, `-p no:cacheprovider` (the bundled plan does).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "e2e-plan plan file (version 1)")]
pub struct RawPlan {
    /// The format's version; 1 is the only one.
    #[schemars(with = "Option<u32>")]
    pub version: Option<Spanned<i64>>,
    /// The folder every command runs in, relative to this file's folder. Default ".".
    #[schemars(with = "Option<String>")]
    pub root: Option<Spanned<String>>,
    /// Which test files to run: every matching file gets a worker of its own.
    pub tests: RawTests,
    /// Commands run once, in order, before anything else (creating a virtualenv, installing dependencies). Only `{root}` and `{run}` may appear.
    #[serde(default)]
    pub setup: Vec<RawSetup>,
    /// The template every worker's database is copied from.
    #[serde(default)]
    pub database: RawDatabase,
    /// A slice of a shared system made for each worker attempt by commands (a broker's vhost, a bucket), in file order, after its database and before its services.
    #[serde(default)]
    pub resource: Vec<RawResource>,
    /// A process each worker attempt starts for itself (a Redis, a NATS, a mail catcher), in file order, each ready before the next, after its resources and before its server.
    #[serde(default)]
    pub service: Vec<RawService>,
    /// The server each worker starts against its own database, on its own port. Optional: leave it out when the tests start what they need, or drive the app in-process.
    pub server: Option<RawServer>,
    /// The test command, run once per worker.
    pub test: RawTest,
    /// How the workers are scheduled.
    #[serde(default)]
    pub run: RawRun,
    /// Where reports and logs go.
    #[serde(default)]
    pub report: RawReport,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTests {
    /// Globs relative to root; one worker per matching file. Each glob must match at least one file.
    #[schemars(with = "Vec<String>")]
    pub include: Spanned<Vec<Spanned<String>>>,
    /// Globs of files left out of `include`'s matches. Default [].
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSetup {
    /// The command: an argv array, or one string split into words like a shell would (no shell is run).
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    /// Skip the command when this path (relative to root) exists, e.g. `.venv/bin/python`.
    #[schemars(with = "Option<String>")]
    pub creates: Option<Spanned<String>>,
    /// Environment variables for this command; may use `{root}` and `{run}`. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
}

/// Admin work (create, clone, drop) goes through the `postgres` maintenance database on the template's server, so its user needs `CREATEDB`. e2e-plan's own connections do not use TLS. Drops use `DROP DATABASE … WITH (FORCE)`, so the server must be PostgreSQL 13 or newer. Worker databases are named `<template>_<run id>_<worker>` (`r<N>` appended for retries), at most 63 bytes of `[a-z0-9_]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// The template database's URL, `postgres://` or `postgresql://`, naming a database of your own (`postgres`, `template0` and `template1` are refused); e2e-plan creates it if it does not exist. The template is not a per-run resource: on your own server it stays after the run and the next run reuses it. `template = "${E2E_DATABASE_URL:-}"` gives you both a local cluster on your machine and a real server wherever the variable is set.
    ///
    /// **Absent or empty: a local cluster of e2e-plan's own**: `initdb`, a free port, fsync off. No other local account gets in: the folder and its socket are owner-only, and TCP needs a random password (scram-sha-256) that the URLs the commands get carry, that every output shows as `****`, and that is kept in the owner-only file `password` in the cluster's folder. The template there is called `e2e_template`.
    ///
    /// - **With a `fingerprint`, the cluster is kept between runs** in `.e2e-plan/cluster/`. The first run makes it (initdb, prepare); it is stopped when the command returns, and the next run starts it instead (what that saves: the local loop in docs/benchmarks.md): the fingerprint works as on a server, so an unchanged project skips `prepare`, and `pool` keeps ready copies locally too. A folder made by another PostgreSQL major version, half-made (a runner killed during initdb), that does not start, or that was running when the machine went down (it runs with fsync off) is made again without asking. Each start drops any other database left in it (a dead runner's, or kept ones whose cluster stopped since) and names them. As root, the `postgres` account must be able to reach the project's folder; if it cannot, runs use a throwaway cluster.
    ///
    /// - **One run at a time uses it.** A second run of the same checkout while one is going, or any run while the cluster still runs from an earlier run (for its kept databases, or because its runner died), uses a throwaway cluster instead and says so.
    ///
    /// - **Without a `fingerprint`**, nothing can tell whether a kept template is current, so the cluster is a throwaway one, made in `.e2e-plan/clusters/<run>/` and deleted at the end of the run.
    ///
    /// - Either cluster is left running while it holds kept databases, until `rollback`, which stops the kept cluster (its data stays) and deletes a throwaway one. `e2e-plan cluster status` shows the kept cluster and its size on disk; `e2e-plan cluster remove` deletes it.
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Commands run once, in order, before any copy is made, with `DATABASE_URL` set to the database they prepare (plus `[database] env`); they may use `{root}`, `{run}`, `{db_name}` and `{db_url}`, which name that database. Use those, never the template's literal name. Default [].
    ///
    /// With a `fingerprint`, `prepare` is skipped when the template's stored fingerprint matches. When it does not (or with `--reprepare`), the template is **rebuilt from nothing**: `prepare` runs in a fresh, empty database `<template>_next_<run>`, and only when every command succeeded is that database swapped in for the template, in one transaction that also stores the new fingerprint (the old template is then dropped). Migration tools that record what they applied (alembic, Django) would otherwise skip a migration edited after it was applied, and the tests would get the old schema under the new fingerprint. A prepare that fails leaves the old template and its fingerprint as they were, and the run exits 3 with the command's output. The swap waits for other sessions on the template (never terminating them) for `busy_timeout`.
    ///
    /// Without a `fingerprint`, nothing says whether the template is current, so `prepare` runs in the template itself on every run: the commands must be safe to re-run, as most migration tools are. Preparation holds a PostgreSQL advisory lock per template, so two runs never prepare one template at once; the one that waited then finds the new fingerprint and skips. A throwaway cluster's template is new every run, so it is always prepared.
    #[serde(default)]
    #[schemars(with = "Vec<CommandSpec>")]
    pub prepare: Vec<Spanned<CommandSpec>>,
    /// Environment variables for the prepare commands, besides `DATABASE_URL` (which this table may set itself); the same placeholders as `prepare`, e.g. `POSTGRES_DB = "{db_name}"`. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Which worker databases survive the run. A kept database is the one the file's first attempt used; retries' databases are always dropped straight away. After a setup failure (exit 3) or an interruption (exit 130), nothing is kept. A kept database's logs move to `{report.dir}/kept/<database>/`, where the next run does not touch them, and `e2e-plan rollback` removes them together with the database. A database the tests dropped themselves is not reported as kept (the run warns instead). A pack's database is kept when any of its files failed; each part of a split file has its own. `apply --keep` overrides it for one run.
    #[schemars(with = "Option<Keep>")]
    pub keep: Option<Spanned<Keep>>,
    /// How PostgreSQL copies the template. `file_copy` (the default on PostgreSQL 15+) copies the template's files, which is fast, but makes the whole server checkpoint before and after every copy; on a busy shared server, `wal_log` writes the copy through the WAL, with no checkpoints. Servers before 15 get no `STRATEGY` clause. At most 4 copies are made at once.
    pub strategy: Option<Strategy>,
    /// Globs (relative to root) whose paths and contents, hashed with the prepare commands as written, decide whether the template must be prepared again (see `prepare`). The hash is stored on the template with `COMMENT ON DATABASE`. Default []: prepare runs every time.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub fingerprint: Vec<Spanned<String>>,
    /// How long a copy (or the template's swap) waits for other sessions to leave the template (they are never terminated) before failing with their names. Default "30s".
    #[schemars(with = "Option<String>")]
    pub busy_timeout: Option<HumanDuration>,
    /// Ready copies of the template kept between runs (needs `fingerprint`). Default 0: no pool. Copying is what a run waits for; a pool moves it off the next run's critical path, as IntegreSQL does for Go tests: a worker *claims* a copy, which is a rename (milliseconds at any template size), and copies only when the pool runs dry. The run refills the pool while its tests run, once every worker's start-up is over, one copy at a time; what is left is copied 4 at once after the summary (Ctrl-C skips it; the next run copies what is missing).
    ///
    /// - A copy carries the fingerprint of the template it was copied from (as its `COMMENT ON DATABASE`), and only copies of the current template are claimed; stale ones are dropped by the next refill. When `prepare` runs, every existing copy counts as stale.
    ///
    /// - Claiming renames the copy to the worker's name and clears its comment in one transaction, so two runs never claim the same copy. One run at a time refills a template's pool (an advisory lock), so concurrent runs never grow it past N.
    ///
    /// - A copy is made under the run's journal and joins the pool only once whole: a runner killed while refilling leaves nothing half-made, and `rollback` drops what was in flight. `rollback` never touches finished copies: a pool is state you asked for.
    ///
    /// - Each copy is a full copy on disk: N × the template's size. `e2e-plan pool status` shows it, `e2e-plan pool drain` drops them all. On the kept local cluster the pool lives inside it; a throwaway cluster has none. On CI, where every job starts from an empty server, a pool does not help; it pays off on developer machines and long-lived runners. Size it to the files a run starts, plus some for retries.
    #[schemars(with = "Option<usize>")]
    pub pool: Option<Spanned<usize>>,
}

/// Real apps keep more than rows: sessions, caches and job queues in Redis, messages in RabbitMQ or NATS, files in a bucket. Shared between workers, they leak one file's state into another's, as a shared database would. Each `[[resource]]` makes a slice of a shared system for each worker attempt with its `create` command, and its `destroy` command undoes it; `{db_name}` is unique to each attempt of each run, so it makes a safe name.
///
/// The destroy command is journaled, filled, before `create` runs, so `e2e-plan rollback` undoes a resource of a runner that was killed. A resource follows its worker's database: kept with it when the keep rule keeps it (named in the closing lines and in summary.json, destroyed by `rollback`), else destroyed at the end of the run; a retry's is destroyed at once. A create that fails ends the run (exit 3) naming the resource with its output's tail, and what the attempt had made is destroyed. A destroy that fails is a warning, and `rollback` tries again. Each command's output goes to `resource-<name>.log` in the attempt's folder.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// Names it in messages and logs: `[a-z][a-z0-9_]*`, unique among the plan's services and resources.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Makes it, e.g. `["rabbitmqctl", "add_vhost", "{db_name}"]`; every placeholder but `{args}`.
    #[schemars(with = "CommandSpec")]
    pub create: Spanned<CommandSpec>,
    /// Undoes it, e.g. `["rabbitmqctl", "delete_vhost", "{db_name}"]`: at the end of the run, and by `rollback`, possibly after it is gone already; same placeholders.
    #[schemars(with = "CommandSpec")]
    pub destroy: Spanned<CommandSpec>,
    /// Environment variables for both commands. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Exit codes of `destroy` that mean the resource is gone: 0, and what it says when the resource was gone already (rabbitmqctl's `delete_vhost`: 65). Default [0].
    pub destroy_ok_exit_codes: Option<Vec<i32>>,
}

/// Each `[[service]]` is a process each worker attempt starts for itself, such as a Redis on the attempt's own port: files running at once never see each other's keys, queues or messages. It gets a free port of its own, `{port.NAME}`, which the server, the tests, the other services and the resources can use. Services start after the attempt's resources, in file order, each ready before the next, and stop after its server, in reverse order, like the server (SIGTERM to the process group, SIGKILL after `stop_timeout`). Each is journaled as a process group before it starts, so `rollback` stops a killed runner's. Its output goes to `service-<name>.log` in the attempt's folder (kept with the other logs, each line's arrival in `.times`), and a failing test is shown what it printed meanwhile. A service that exits before it is ready ends the run (exit 3); one that exits while the tests run fails the file ("service redis exited with code 1 during the tests"). A retry, a pack and a part each get their own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Names it, and its port `{port.NAME}`: `[a-z][a-z0-9_]*`, unique among the plan's services and resources.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The service's command, in the foreground, e.g. `["redis-server", "--port", "{port.redis}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]`; every placeholder but `{args}`.
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    /// Environment variables for the service. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// As `[server] ready`: `tcp://127.0.0.1:{port.NAME}`, or an http(s) address polled until it answers 2xx or 3xx.
    #[schemars(with = "String")]
    pub ready: Spanned<String>,
    /// How long the service may take to be ready. Default "30s".
    #[schemars(with = "Option<String>")]
    pub ready_timeout: Option<HumanDuration>,
    /// SIGTERM to its process group, then SIGKILL this much later. Default "2s".
    #[schemars(with = "Option<String>")]
    pub stop_timeout: Option<HumanDuration>,
}

/// The server starts against the worker's database and is polled at `ready`. If it exits before it is ready, or is not ready within `ready_timeout`, the run fails with exit 3 and the tail of its log is printed; if it exited because another process took its port meanwhile, the worker tries once more on another port. A server that exits while the tests run fails the file ("server exited with code N during the tests"): the tests get 2 s, then SIGINT (pytest still writes its JUnit), then the usual stop. Its output goes to `server.log`, each line's arrival time to `server.log.times`, so that a failing test is shown what the server printed while it ran.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// The server's command; every placeholder, typically `{port}` and `{db_url}`.
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    /// Environment variables for the server, e.g. `PORT = "{port}"`, `DATABASE_URL = "{db_url}"`. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// `http://…` or `https://…`, polled (every 5 ms at first, then less often, up to every 100 ms) until it answers 2xx or 3xx (any certificate is accepted); or `tcp://host:port`, until it accepts a connection.
    #[schemars(with = "String")]
    pub ready: Spanned<String>,
    /// How long the server may take to be ready. Default "30s".
    #[schemars(with = "Option<String>")]
    pub ready_timeout: Option<HumanDuration>,
    /// The grace period of every process group the run stops (servers, tests, setup and prepare commands): SIGTERM to the group, then SIGKILL this much later; a second Ctrl-C skips it. Default "2s" (also without a `[server]`).
    #[schemars(with = "Option<String>")]
    pub stop_timeout: Option<HumanDuration>,
}

/// The test command passes when its exit code is in `ok_exit_codes`; its counts and failures come from the JUnit it writes to `{junit}`. A test command that runs past `timeout` is killed with no grace period and reported `TIMEOUT`. A pack's test process (which gets `timeout` once per file) is first sent SIGINT and given `stop_timeout` to write its JUnit: the file it stopped in is `TIMEOUT`, the files before it are judged by their own tests, and those after it did not run (`FAIL`, retried alone like any failure).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    /// The test command; every placeholder. It must write JUnit to `{junit}`, e.g. `[".venv/bin/pytest", "{file}", "-q", "--junitxml={junit}", "{args}"]`. With `units = "auto"`, `{file}` as a whole word becomes a pack's files (or a part's test ids), each its own word.
    #[schemars(with = "CommandSpec")]
    pub command: Spanned<CommandSpec>,
    /// Environment variables for the tests, e.g. `BASE_URL = "http://127.0.0.1:{port}"`, `DATABASE_URL = "{db_url}"`. Default {}.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// How long one file's tests may run (a pack gets it once per file). Default "15m".
    #[schemars(with = "Option<String>")]
    pub timeout: Option<HumanDuration>,
    /// Exit codes that count as passing. Default [0, 5] (pytest's 5: no tests collected).
    pub ok_exit_codes: Option<Vec<i32>>,
    /// Lists one file's test ids, one per line, for `units = "auto"` to split a long file by them; may use `{root}`, `{file}` (required, as a whole word), `{args}`, and `{db_url}` and `{db_name}`, which here name the **template** (read-only use). pytest: `["pytest", "--collect-only", "-q", "{file}"]`. It runs before `[[setup]]`, with the `[test] env` entries that need no worker's own value (no `{port}`, `{worker}`…): so `DATABASE_URL = "{db_url}"` reaches it too, and settings that parse the URL at import (django-environ, dj-database-url) collect without a wrapper. It runs before the template is prepared and, with a local cluster, before the cluster starts, where `{db_url}` names `e2e_template` on port 1, which nothing answers: collecting must not connect (pytest's `--collect-only` runs no fixture). One that fails, times out (2 minutes) or lists no test of the file leaves it whole, and `dry-run` says why.
    #[schemars(with = "Option<CommandSpec>")]
    pub collect: Option<Spanned<CommandSpec>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    /// Most workers at once: `auto` (the default), a number, or 0 for every file at once. `apply -j N` overrides it.
    ///
    /// `auto` starts a worker per core, then one more whenever the machine's cores have stood idle for a moment (read from `/proc/stat` every 200 ms; a worker's database copy counts as a busy core), as many as the idle cores fit at the CPU the running workers use each: a suite whose tests wait on the network or on sleeps runs nearly all at once, a CPU-bound one (a browser and a server per worker) stays near one worker per core instead of every file's start-up and Chromium sharing a few cores at once. When the cores are busy again, the bound falls back towards one worker per core. Set a number when something outside the machine's CPU limits you (a licence, an API's rate limit), and 0 when your files must all run at the same time.
    pub jobs: Option<Jobs>,
    /// Stop everything at the first failing file. Default false.
    pub fail_fast: Option<bool>,
    /// Attempts after a failure, each in a fresh database, port and server. Default 0. Files that failed or timed out on the first pass run again up to this many times, once every file has finished; a file that failed, then passed, is `FLAKY`.
    pub retries: Option<u32>,
    /// Whether a `FLAKY` file fails the run: `fail` or `pass`. Default: `fail` when the `CI` environment variable is set to something other than empty, `false` or `0`, else `pass`.
    pub flaky: Option<FlakyPolicy>,
    /// More first-pass failures than this and nothing is retried: that looks like a real break, not flakiness. Default 10.
    pub max_retry_files: Option<usize>,
    /// What one worker runs. `file` (the default): a worker per file, each with its own database, server and port. `auto`: short files whose test process spends more starting up (importing the app and its conftest) than testing are **packed**, several run one after another by one test process, in one database with one server, as plain pytest runs them; a long file that would hold up the run is **split** by its test ids over several workers. Chosen from `.e2e-plan/timings.json`; `dry-run` shows what was packed and split, and why. `apply --units` overrides it.
    ///
    /// - Packs are judged by each file's start-up and tests timed alone (wall time less the time spent waiting for a core) and by their CPU. Files whose tests take less than their start-up are candidates (a file the last run packed stays one until its tests take 1.25 times its start-up, so that a file near the line does not flip from run to run); the planner simulates the run on the machine's cores for every number of packs and for a worker per file, and keeps the one predicted fastest (a near tie goes to fewer workers); an option an earlier run had is weighed by what it took, and one no run had by its prediction scaled by how much longer runs of as many workers took than predicted; `dry-run` lists every option weighed. Files in `alone`, and files whose tests outlast their start-up, run alone. Files with no timings yet go to a queue that runs them a core at a time, the biggest first, and packs the rest once their start-ups are seen to outweigh their tests.
    ///
    /// - `{file}` as a whole word of the test command becomes the pack's files. A plan that names one file elsewhere (inside a word, an environment value, the server) is never packed, and `dry-run` says so.
    ///
    /// - Each file keeps its own row, verdict, counts, duration (its tests' time), JUnit suite and log folder (linked from the pack's); cases are matched to files by pytest's `classname`, so two files of one module name are never packed together. `summary.json` lists a file's pack mates in `packed_with`.
    ///
    /// - What a pack trades: files of one pack share a database one after another, so they must tolerate what the file before them left, exactly as under plain pytest; one file's crash or hang ends its pack mates' run too. Put such files in `alone`. A failed file of a pack is retried **alone**, in a fresh database with its own server; a file whose pack's test process stopped before its tests is `FAIL` with `did not run: …`, never `PASS`; a pack whose JUnit cannot be read makes its files `ERROR`.
    ///
    /// - **The critical path first.** With more workers at once than cores, when the simulation says it pays (others are not nearly as long), the planner starts the unit with the most recorded tests' time first, and every other worker yields the CPU to it: nice 5 plus its slack in tenths, up to 15 (shown by `dry-run`). Its database is copied alone; the workers whose tests take at most half its time wait until its test process is done starting ("after the critical start-up" in `dry-run`).
    ///
    /// - **Splitting a long file** needs `[test] collect`. The planner splits the longest unit while that shortens the predicted wall by 5 % or more, into 2 up to `jobs` parts (16 at most) of neighbouring tests, each a worker with its own database, server and port, and merges their results into the file's one row. Every part is checked against what it was given: each of its tests in its JUnit, once, and no other, or the part fails, naming the test. What a split breaks: module- and class-scoped fixtures run once per part, and tests that depend on running in order fail when the cut falls between them. Put such files in `whole`.
    pub units: Option<Units>,
    /// Globs of test files never packed with others: they always get a worker of their own. Default [].
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub alone: Vec<Spanned<String>>,
    /// Globs of test files never split (their tests depend on running in order, or share costly module fixtures). Default [].
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub whole: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// The folder of the reports (`junit.xml`, `summary.json`, `report.html`) and of the workers' logs, relative to root. Default "target/e2e". `apply --report-dir DIR` overrides it for one run.
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// Which attempts' `{artifacts_dir}` (screenshots, traces, videos the test tool writes besides its JUnit) survive, decided after each attempt: `failed` (the default) keeps an attempt's when it failed, timed out, errored or was cut short, and a passing retry's (the file was flaky); `all` keeps every attempt's (a passing file's folder then keeps only them); `none` keeps none. Kept files are listed in `summary.json` (each with its kind: screenshot, trace, video, other, and the test its folder is named after) and shown in `report.html` under their test. Each retry keeps its own under `attempt-<n>/`; in a pack, each file gets the folders named after its own tests (and those named after none).
    pub artifacts: Option<Artifacts>,
}

/// Which worker databases survive a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// The default: the databases of files that failed or timed out.
    Failed,
    /// When the run failed, every worker's database (but workers cancelled before they finished).
    AllOnFailure,
    /// Every worker's database (but cancelled workers), even after a green run.
    Always,
    /// None.
    Never,
}

/// Which attempts' artifacts survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifacts {
    /// The default: an attempt's that did not pass, and a flaky file's passing retry's.
    #[default]
    Failed,
    /// Every attempt's.
    All,
    /// None.
    None,
}

/// How PostgreSQL copies the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Copy the template's files (the default on PostgreSQL 15+): fast, with a checkpoint before and after.
    FileCopy,
    /// Write the copy through the WAL: no checkpoints.
    WalLog,
}

/// What one worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// The default: one worker per file.
    #[default]
    File,
    /// Short files with a heavy start-up packed into a few workers, a file that would hold up the run split by its test ids.
    Auto,
}

/// How many workers run at once (`[run] jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[schemars(untagged)]
pub enum Jobs {
    /// A worker per core, and more while cores stand idle.
    #[default]
    #[schemars(with = "AutoWord")]
    Auto,
    /// At most this many; 0 = every file at once.
    Fixed(usize),
}

/// The word `auto`, as the schema shows it.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum AutoWord {
    #[serde(rename = "auto")]
    Auto,
}

impl Jobs {
    /// The fixed bound the planner and the prefetcher plan for; `auto` has none fixed (it starts
    /// a worker per core and opens more at run time), so they plan as for every file at once.
    pub fn bound(self) -> usize {
        match self {
            Jobs::Auto => 0,
            Jobs::Fixed(n) => n,
        }
    }
}

impl fmt::Display for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Jobs::Auto => f.write_str("auto"),
            Jobs::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Jobs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Jobs::Auto),
            n => n
                .parse()
                .map(Jobs::Fixed)
                .map_err(|_| format!("`{s}` is not a number of workers: use a number (0 = every file at once) or auto")),
        }
    }
}

impl serde::Serialize for Jobs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Jobs::Auto => s.serialize_str("auto"),
            Jobs::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Jobs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Jobs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of workers (0 = every file at once) or \"auto\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Jobs, E> {
                usize::try_from(v)
                    .map(Jobs::Fixed)
                    .map_err(|_| E::custom("too many workers"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Jobs, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!(
                            "{v} workers: use a number from 0 (every file at once) up, or \"auto\""
                        ))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Jobs, E> {
                let word = super::template::interpolate_value(v).map_err(E::custom)?;
                word.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
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
word_enum!(Artifacts { "failed" => Failed, "all" => All, "none" => None });
word_enum!(Units { "file" => File, "auto" => Auto });
