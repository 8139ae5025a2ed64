//! Test harness: a fixture project in a temp folder (a tiny server, pytest files, a plan) against
//! the real PostgreSQL on 127.0.0.1:5432, with checks that nothing is left behind.

pub use e2e_plan::model::{Phase, RunSummary, Verdict};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PG: &str = "postgresql://postgres@127.0.0.1:5432";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_e2e-plan"))
}

/// The Python with pytest that `.ci/run` installs.
pub fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./.ci/run once, or: python3 -m venv target/test-venv && target/test-venv/bin/pip install pytest",
        p.display()
    );
    p
}

/// Runs SQL on the maintenance database as `postgres`.
fn psql_output(flags: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            flags,
            sql,
        ])
        .output()
        .expect("psql runs")
}

pub fn psql(sql: &str) -> String {
    let out = psql_output("-Atqc", sql);
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every 50 ms until it returns Some or the deadline passes.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub template: String,
}

/// Knobs of the standard plan.
pub struct PlanOpts<'a> {
    pub server: bool,
    pub grandchild: bool,
    pub test_timeout: &'a str,
    pub keep: &'a str,
    pub run: &'a str,
    pub template: Option<&'a str>,
    pub include: &'a str,
}

impl Default for PlanOpts<'_> {
    fn default() -> Self {
        PlanOpts {
            server: true,
            grandchild: false,
            test_timeout: "2m",
            keep: "failed",
            run: "",
            template: None,
            include: "tests/test_*.py",
        }
    }
}

impl Fixture {
    /// `name` must be unique among tests: it names the template database.
    pub fn new(name: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app");
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::copy(fixtures.join("server.py"), dir.path().join("server.py")).unwrap();
        std::fs::copy(
            fixtures.join("conftest.py"),
            dir.path().join("tests/conftest.py"),
        )
        .unwrap();
        let template = format!("e2e_t_{name}_{}", std::process::id());
        Fixture { dir, template }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// A test file that writes its own rows and checks it sees only them.
    pub fn rows_test(&self, stem: &str, sleep_secs: f64) -> &Self {
        self.write(
            &format!("tests/{stem}.py"),
            &format!(
                "import os, time\n\ndef test_rows(db, http_get):\n    if os.environ['HAS_SERVER'] == '1':\n        assert http_get('/healthz')[0] == 200\n        assert http_get('/db')[1] == os.environ['DATABASE_URL'].rsplit('/', 1)[1], 'the server is not on this file s database'\n    assert db('select count(*) from items') == '0'\n    for i in range(3):\n        db(\"insert into items values ('{stem}')\")\n    time.sleep({sleep_secs})\n    assert db('select count(*) from items') == '3'\n    assert db('select distinct v from items') == '{stem}'\n"
            ),
        )
    }

    pub fn failing_test(&self, stem: &str) -> &Self {
        self.write(
            &format!("tests/{stem}.py"),
            "def test_fails():\n    assert 1 + 1 == 3, 'arithmetic is broken'\n",
        )
    }

    pub fn hanging_test(&self, stem: &str) -> &Self {
        self.write(
            &format!("tests/{stem}.py"),
            "import time\n\ndef test_hangs():\n    time.sleep(300)\n",
        )
    }

    pub fn template_url(&self) -> String {
        format!("{PG}/{}", self.template)
    }

    pub fn plan(&self, o: PlanOpts) -> PathBuf {
        let py = python().display().to_string();
        let template = o
            .template
            .map(str::to_string)
            .unwrap_or_else(|| self.template_url());
        let server = if o.server {
            format!(
                "[server]\ncommand = [\"{py}\", \"{{root}}/server.py\"]\nenv = {{ PORT = \"{{port}}\", TEST_FILE = \"{{file}}\", MARKER = \"{{root}}\", DATABASE_URL = \"{{db_url}}\", GRANDCHILD = \"{}\" }}\nready = \"http://127.0.0.1:{{port}}/healthz\"\nready_timeout = \"20s\"\nstop_timeout = \"2s\"\n",
                if o.grandchild { "1" } else { "0" }
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"[tests]
include = ["{include}"]

[database]
template = "{template}"
prepare = [["psql", "{{db_url}}", "-qc", "create table if not exists items (v text)"]]
keep = "{keep}"

{server}
[test]
command = ["{py}", "-m", "pytest", "{{root}}/{{file}}", "-q", "-p", "no:cacheprovider", "--junitxml={{junit}}", "{{args}}"]
env = {{ DATABASE_URL = "{{db_url}}", BASE_URL = "http://127.0.0.1:{{port}}", HAS_SERVER = "{has_server}" }}
timeout = "{timeout}"

[run]
{run}

[report]
dir = "report"
"#,
            include = o.include,
            keep = o.keep,
            has_server = if o.server { "1" } else { "0" },
            timeout = o.test_timeout,
            run = o.run,
        );
        let p = self.root().join("plan.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Rewrites parts of the written plan (each `from` must be there).
    pub fn edit_plan(&self, edits: &[(&str, &str)]) {
        let path = self.root().join("plan.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "plan.toml has no {from:?}");
            text = text.replace(from, to);
        }
        std::fs::write(path, text).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.root())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("e2e-plan runs")
    }

    /// Runs e2e-plan with these environment variables set too.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("e2e-plan runs")
    }

    /// Worker databases of this fixture's template that exist now.
    pub fn worker_databases(&self) -> Vec<String> {
        let out = psql(&format!(
            "select datname from pg_database where datname like '{}\\_%' order by 1",
            self.template
        ));
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Live processes whose command line mentions this fixture's folder (its servers, tests and
    /// their grandchildren all do).
    pub fn processes(&self) -> Vec<String> {
        let marker = self.root().display().to_string();
        let me = std::process::id();
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
            {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&marker) {
                found.push(format!("{pid}: {cmd}"));
            }
        }
        found
    }

    /// Databases in the fixture's kept local cluster (`.e2e-plan/cluster`), read from its data
    /// folder (the cluster is stopped between runs): one folder per database under `base/`,
    /// named by its OID; user databases have OIDs from 16384. Empty when there is none.
    pub fn kept_cluster_databases(&self) -> Vec<String> {
        let base = self.root().join(".e2e-plan/cluster/data/base");
        let mut oids: Vec<String> = std::fs::read_dir(base)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|oid| *oid >= 16384)
                    .map(|oid| oid.to_string())
                    .collect()
            })
            .unwrap_or_default();
        oids.sort();
        oids
    }

    /// Nothing of ours is left: no worker database (on the shared server, in a throwaway local
    /// cluster, or in the kept one beside its template), no process.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.worker_databases(),
            Vec::<String>::new(),
            "worker databases left behind"
        );
        // A throwaway cluster goes with everything in it; the kept one holds its template only.
        let throwaway: Vec<_> = std::fs::read_dir(self.root().join(".e2e-plan/clusters"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert_eq!(throwaway, Vec::<PathBuf>::new(), "throwaway clusters left");
        let kept = self.kept_cluster_databases();
        assert!(
            kept.len() <= 1,
            "databases left in the kept cluster beside its template (OIDs): {kept:?}"
        );
        // Generous: a deadline that means "left behind", never "slow to exit".
        let procs = poll(Duration::from_secs(30), || {
            let p = self.processes();
            p.is_empty().then_some(())
        });
        assert!(
            procs.is_some(),
            "processes left behind: {:#?}",
            self.processes()
        );
    }

    /// `summary.json` as JSON, for the tests of its shape.
    pub fn summary_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.root().join("report/summary.json"))
            .expect("summary.json written");
        serde_json::from_str(&text).expect("summary.json is JSON")
    }

    /// `summary.json`, typed: a field the product renames breaks the tests at compile time.
    pub fn summary(&self) -> RunSummary {
        let text = std::fs::read_to_string(self.root().join("report/summary.json"))
            .expect("summary.json written");
        serde_json::from_str(&text).expect("summary.json reads as a RunSummary")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Undo whatever a failed test left (through the product's own journal), then the template.
        if self.root().join("plan.toml").exists() {
            let _ = Command::new(bin())
                .current_dir(self.root())
                .args(["rollback", "plan.toml"])
                .output();
        }
        for db in self.worker_databases() {
            drop_database(&db);
        }
        drop_database(&self.template);
    }
}

/// Starts `apply` in the background and waits until every file's tests are running.
pub fn start_and_wait(f: &Fixture, files: &[&str]) -> std::process::Child {
    let child = f
        .cmd(&["apply", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = poll(Duration::from_secs(60), || {
        files
            .iter()
            .all(|s| {
                f.root()
                    .join(format!("report/workers/{s}/test.log"))
                    .exists()
            })
            .then_some(())
    });
    assert!(ready.is_some(), "workers never reached their tests");
    // The test processes exist once their logs do; wait until pytest itself runs them.
    let running = poll(Duration::from_secs(30), || {
        (f.processes()
            .iter()
            .filter(|p| p.contains("pytest"))
            .count()
            >= files.len())
        .then_some(())
    });
    assert!(
        running.is_some(),
        "pytest processes never started: {:?}",
        f.processes()
    );
    child
}

pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    poll(limit, || {
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    })
}

/// Five passing files without a server (test_a … test_e), for sharding and timings.
pub fn five_files(name: &str) -> Fixture {
    let f = Fixture::new(name);
    for stem in ["test_a", "test_b", "test_c", "test_d", "test_e"] {
        f.rows_test(stem, 0.0);
    }
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f
}

/// Someone else's session on the fixture's template (started by the test, ended by its pid):
/// clones wait for it. Returns once it is connected.
pub fn session_on_template(f: &Fixture, app: &str) -> std::process::Child {
    let session = Command::new("psql")
        .args([&f.template_url(), "-qc", "select pg_sleep(120)"])
        .env("PGAPPNAME", app)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let connected = poll(Duration::from_secs(10), || {
        (psql(&format!(
            "select count(*) from pg_stat_activity where datname = '{}'",
            f.template
        )) == "1")
            .then_some(())
    });
    assert!(
        connected.is_some(),
        "the session on the template never connected"
    );
    session
}

/// Runs SQL in database `db` as `postgres`.
pub fn psql_in(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atqc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql -d {db} {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Best-effort cleanup of a test database.
pub fn drop_database(name: &str) {
    let _ = psql_output(
        "-qc",
        &format!("drop database if exists \"{name}\" with (force)"),
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A test file that meets others at a barrier: it leaves a mark in `dir` (named by its stem and
/// pid, holding its database's name and OID) and passes only once `n` marks are there, within
/// 60 s. Runs whose files all meet really ran at the same time.
pub fn barrier_test(f: &Fixture, stem: &str, dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    f.write(
        &format!("tests/{stem}.py"),
        &format!(
            r#"import os, time

def test_meets_the_others(db):
    d = {dir:?}
    me = db("select datname || ' ' || oid from pg_database where datname = current_database()")
    with open(os.path.join(d, '{stem}-' + str(os.getpid())), 'w') as m:
        m.write(me)
    deadline = time.monotonic() + 60
    while len(os.listdir(d)) < {n}:
        assert time.monotonic() < deadline, 'the others never came: ' + str(os.listdir(d))
        time.sleep(0.02)
"#,
            dir = dir.display().to_string()
        ),
    );
}

/// The marks left at a barrier: (database, OID) of each file that reached it.
pub fn barrier_marks(dir: &Path) -> Vec<(String, String)> {
    let mut marks: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let (db, oid) = text.trim().split_once(' ').unwrap();
            (db.to_string(), oid.to_string())
        })
        .collect();
    marks.sort();
    marks
}

/// Now, in Unix seconds (as the product stamps log lines).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Ends the server side of sessions this test started under application name `app` (killing a
/// `psql` client leaves its backend running a `pg_sleep` to its end).
pub fn end_sessions(app: &str) {
    psql(&format!(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = '{app}'"
    ));
}

/// A transaction that re-sets the template's comment (to what it is) and stays open: it holds a
/// lock on the template that every `CREATE DATABASE … TEMPLATE` of it waits for, server-side,
/// until [`end_sessions`] ends it (under the application name this returns). Clones started
/// meanwhile are surely in flight, whatever the machine's speed.
pub fn hold_template_lock(f: &Fixture) -> (std::process::Child, String) {
    let app = format!("holds_{}", f.template);
    let comment = psql(&format!(
        "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '{}'",
        f.template
    ));
    let holder = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            &format!(
                "begin; comment on database \"{}\" is '{}'; select pg_sleep(120)",
                f.template,
                comment.replace('\'', "''")
            ),
        ])
        .env("PGAPPNAME", &app)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holding = poll(Duration::from_secs(10), || {
        (psql(&format!(
            "select count(*) from pg_stat_activity where application_name = '{app}' and state = 'active'"
        )) == "1")
            .then_some(())
    });
    assert!(holding.is_some(), "the lock holder never started");
    (holder, app)
}

/// The `CREATE DATABASE` statements from the fixture's template waiting on the server now.
pub fn waiting_clones(f: &Fixture) -> Vec<String> {
    psql(&format!(
        "select query from pg_stat_activity where state = 'active' and wait_event_type = 'Lock' \
         and query like 'CREATE DATABASE %' and query like '%TEMPLATE \"{}\"%'",
        f.template
    ))
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect()
}

/// A Python venv under target/ that `.ci/run` makes (`target/<name>`), or a panic saying how.
pub fn venv(name: &str, requirements: &str) -> PathBuf {
    let v = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run ./.ci/run once, or: python3 -m venv target/{name} && target/{name}/bin/pip install -r {requirements}",
        v.display()
    );
    v
}

/// A fixture project (`tests/fixtures/<project>`) copied into a fresh folder, its `.venv` a link
/// to `venv`, without the harness's own server.py and tests/.
pub fn project_copy(name: &str, project: &str, venv: &Path) -> Fixture {
    let f = Fixture::new(name);
    std::fs::remove_file(f.root().join("server.py")).unwrap();
    std::fs::remove_dir_all(f.root().join("tests")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(project);
    for e in walkdir::WalkDir::new(&src) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&src).unwrap();
        let cached = rel.components().any(|c| c.as_os_str() == "__pycache__");
        if e.file_type().is_file() && !cached {
            f.write(
                rel.to_str().unwrap(),
                &std::fs::read_to_string(e.path()).unwrap(),
            );
        }
    }
    std::os::unix::fs::symlink(venv, f.root().join(".venv")).unwrap();
    f
}

/// Live processes working in the fixture's folder: its servers, its pytest and the Chromium
/// pytest-playwright starts (whose command line does not name the folder).
pub fn working_in(f: &Fixture) -> Vec<String> {
    let root = f.root().canonicalize().unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if cwd.starts_with(&root) && !zombie {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    out
}
