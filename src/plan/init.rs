//! `e2e-plan init`: a first plan for a Python repository, written from what the repository
//! shows (its tests, its migration tool, its web framework), with comments that say what was
//! guessed and what to check. Reads files only.

use std::fmt::Write as _;
use std::path::Path;

/// What `init` found in a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// The test glob, and why.
    pub tests: String,
    pub tests_why: String,
    /// The interpreter the commands use (a virtualenv's when there is one).
    pub python: String,
    pub prepare: Option<Prepare>,
    pub server: Option<Server>,
    /// What the user should check before the first run.
    pub check: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prepare {
    pub command: Vec<String>,
    pub fingerprint: Vec<String>,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub command: Vec<String>,
    pub ready: String,
    pub why: String,
}

/// Folders never searched: virtualenvs, caches, dependencies.
const SKIP: &[&str] = &[
    "venv",
    "node_modules",
    "site-packages",
    "__pycache__",
    "build",
    "dist",
];

fn walk(root: &Path) -> Vec<String> {
    let walk = walkdir::WalkDir::new(root).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        e.depth() == 0 || !(name.starts_with('.') || SKIP.contains(&name.as_ref()))
    });
    super::load::relative_files(walk, root)
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap_or_default()
}

/// Looks at the repository at `root`.
pub fn inspect(root: &Path) -> Guess {
    let files = walk(root);
    let mut check = Vec::new();
    let (tests, tests_why) = test_glob(root, &files, &mut check);
    let python = [".venv/bin/python", "venv/bin/python"]
        .into_iter()
        .find(|p| root.join(p).exists())
        .unwrap_or("python3")
        .to_string();
    let prepare = prepare(root, &files, &python, &mut check);
    let server = server(root, &files, &python, &mut check);
    Guess {
        tests,
        tests_why,
        python,
        prepare,
        server,
        check,
    }
}

fn is_test_file(f: &str) -> bool {
    let name = f.rsplit('/').next().unwrap_or(f);
    name.starts_with("test_") && name.ends_with(".py")
}

/// pytest's `testpaths`, from pytest.ini, pyproject.toml, setup.cfg or tox.ini.
fn testpaths(root: &Path) -> Vec<String> {
    let pyproject = read(root, "pyproject.toml");
    if let Ok(t) = pyproject.parse::<toml::Table>() {
        let paths = t
            .get("tool")
            .and_then(|t| t.get("pytest"))
            .and_then(|t| t.get("ini_options"))
            .and_then(|t| t.get("testpaths"));
        if let Some(toml::Value::Array(a)) = paths {
            return a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
    }
    for (file, section) in [
        ("pytest.ini", "[pytest]"),
        ("setup.cfg", "[tool:pytest]"),
        ("tox.ini", "[pytest]"),
    ] {
        let text = read(root, file);
        let Some(body) = text.split(section).nth(1) else {
            continue;
        };
        let body = body.split("\n[").next().unwrap_or_default();
        if let Some(line) = body
            .lines()
            .find(|l| l.trim_start().starts_with("testpaths"))
        {
            let value = line.split_once('=').map(|(_, v)| v).unwrap_or_default();
            return value.split_whitespace().map(str::to_string).collect();
        }
    }
    Vec::new()
}

fn test_glob(root: &Path, files: &[String], check: &mut Vec<String>) -> (String, String) {
    let tests: Vec<&String> = files.iter().filter(|f| is_test_file(f)).collect();
    let under = |dir: &str| tests.iter().any(|f| f.starts_with(&format!("{dir}/")));
    if under("tests/e2e") {
        return (
            "tests/e2e/**/test_*.py".into(),
            "the test files under tests/e2e/".into(),
        );
    }
    for path in testpaths(root) {
        let path = path.trim_end_matches('/').to_string();
        if under(&path) {
            return (
                format!("{path}/**/test_*.py"),
                format!("pytest's testpaths ({path})"),
            );
        }
    }
    if under("tests") {
        return (
            "tests/**/test_*.py".into(),
            "the test files under tests/".into(),
        );
    }
    if let Some(first) = tests.first() {
        let dir = first.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        return (
            format!("{dir}/**/test_*.py"),
            format!("the test files found under {dir}/"),
        );
    }
    check.push("no test file (test_*.py) was found: point [tests] include at yours".into());
    (
        "tests/**/test_*.py".into(),
        "no test file found; a guess".into(),
    )
}

/// Where alembic keeps its migrations, from alembic.ini.
fn alembic_scripts(root: &Path) -> String {
    read(root, "alembic.ini")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "script_location").then(|| v.trim().to_string())
        })
        .map(|v| v.trim_start_matches("%(here)s/").to_string())
        .unwrap_or_else(|| "alembic".into())
}

fn words(python: &str, rest: &[&str]) -> Vec<String> {
    std::iter::once(python)
        .chain(rest.iter().copied())
        .map(str::to_string)
        .collect()
}

fn prepare(
    root: &Path,
    files: &[String],
    python: &str,
    check: &mut Vec<String>,
) -> Option<Prepare> {
    if root.join("alembic.ini").exists() {
        let scripts = alembic_scripts(root);
        check.push(format!(
            "alembic's {scripts}/env.py must take its URL from DATABASE_URL (or from the variables you add to [database] env): prepare runs against a fresh database, not the one in alembic.ini"
        ));
        return Some(Prepare {
            command: words(python, &["-m", "alembic", "upgrade", "head"]),
            fingerprint: vec!["alembic.ini".into(), format!("{scripts}/**/*.py")],
            why: "alembic.ini: migrations by alembic".into(),
        });
    }
    if root.join("manage.py").exists() {
        let mut dirs: Vec<String> = files
            .iter()
            .filter(|f| f.ends_with("/migrations/__init__.py"))
            .map(|f| format!("{}/*.py", f.trim_end_matches("/__init__.py")))
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            dirs.push("manage.py".into());
        }
        check.push(
            "Django's settings must read the database from DATABASE_URL (e.g. dj-database-url) or from the variables you add to [database] env and [test] env".into(),
        );
        return Some(Prepare {
            command: words(python, &["manage.py", "migrate", "--noinput"]),
            fingerprint: dirs,
            why: "manage.py: Django migrations".into(),
        });
    }
    if root.join("migrate.py").exists() {
        let mut fingerprint = vec!["migrate.py".to_string()];
        if root.join("migrations").is_dir() {
            fingerprint.push("migrations/**".into());
        }
        return Some(Prepare {
            command: words(python, &["migrate.py"]),
            fingerprint,
            why: "migrate.py".into(),
        });
    }
    check.push("no migration tool was found: put the commands that build your schema in [database] prepare".into());
    None
}

fn server(root: &Path, files: &[String], python: &str, check: &mut Vec<String>) -> Option<Server> {
    if root.join("manage.py").exists() {
        return Some(Server {
            command: words(
                python,
                &["manage.py", "runserver", "127.0.0.1:{port}", "--noreload"],
            ),
            ready: "tcp://127.0.0.1:{port}".into(),
            why: "manage.py: Django's runserver".into(),
        });
    }
    let app = files.iter().find(|f| {
        f.ends_with(".py") && f.matches('/').count() <= 1 && read(root, f).contains("FastAPI(")
    });
    if let Some(app) = app {
        let module = app.trim_end_matches(".py").replace('/', ".");
        return Some(Server {
            command: words(
                python,
                &[
                    "-m",
                    "uvicorn",
                    &format!("{module}:app"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
            ),
            ready: "tcp://127.0.0.1:{port}".into(),
            why: format!("{app} creates a FastAPI app (check that it is called `app`)"),
        });
    }
    check.push(
        "no server was found: if the tests need one, fill in the commented [server] block".into(),
    );
    None
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| toml::Value::String(i.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The plan file, `root` relative to the plan's folder.
pub fn render(g: &Guess, root: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Written by `e2e-plan init`: read the comments, then `e2e-plan dry-run` this file."
    );
    let _ = writeln!(o, "root = {}", toml::Value::String(root.into()));
    let _ = writeln!(
        o,
        "\n[tests]\n# {}\ninclude = [{}]",
        g.tests_why,
        toml::Value::String(g.tests.clone())
    );
    let _ = writeln!(o, "\n[database]");
    // What a run without E2E_DATABASE_URL gets: the fingerprint below keeps the local cluster.
    let local = if g.prepare.is_some() {
        "a local PostgreSQL is made on the first run and kept between runs in .e2e-plan/cluster/"
    } else {
        "a throwaway PostgreSQL is started for each run"
    };
    let _ = writeln!(o, "# Without E2E_DATABASE_URL, {local}.");
    let _ = writeln!(o, "template = \"${{E2E_DATABASE_URL:-}}\"");
    match &g.prepare {
        Some(p) => {
            let _ = writeln!(
                o,
                "# {}: run with DATABASE_URL set to the database it builds",
                p.why
            );
            let _ = writeln!(o, "prepare = [{}]", toml_list(&p.command));
            let _ = writeln!(
                o,
                "# The template is rebuilt when these files change, and reused otherwise."
            );
            let _ = writeln!(o, "fingerprint = {}", toml_list(&p.fingerprint));
        }
        None => {
            let _ = writeln!(
                o,
                "# The commands that build your schema, run with DATABASE_URL set:"
            );
            let _ = writeln!(o, "prepare = []");
            let _ = writeln!(o, "# fingerprint = [\"migrations/**\"]   # reuse the template while these files are unchanged");
        }
    }
    let base_url = match &g.server {
        Some(s) => {
            let _ = writeln!(o, "\n# {}", s.why);
            let _ = writeln!(o, "[server]\ncommand = {}", toml_list(&s.command));
            let _ = writeln!(o, "env = {{ DATABASE_URL = \"{{db_url}}\" }}");
            let _ = writeln!(o, "ready = {}", toml::Value::String(s.ready.clone()));
            ", BASE_URL = \"http://127.0.0.1:{port}\""
        }
        None => {
            let _ = writeln!(o, "\n# A server per test file, if the tests need one:");
            let _ = writeln!(
                o,
                "# [server]\n# command = [\"{}\", \"-m\", \"your_app\", \"--port\", \"{{port}}\"]",
                g.python
            );
            let _ = writeln!(o, "# env = {{ DATABASE_URL = \"{{db_url}}\" }}\n# ready = \"http://127.0.0.1:{{port}}/health\"");
            ""
        }
    };
    let _ = writeln!(o, "\n[test]");
    let _ = writeln!(o, "# Each worker keeps its own pytest cache: workers running at once would share .pytest_cache.");
    let test = words(
        &g.python,
        &[
            "-m",
            "pytest",
            "{file}",
            "-q",
            "--junitxml={junit}",
            "-o",
            "cache_dir={log_dir}/.pytest_cache",
            "{args}",
        ],
    );
    let _ = writeln!(o, "command = {}", toml_list(&test));
    let _ = writeln!(o, "env = {{ DATABASE_URL = \"{{db_url}}\"{base_url} }}");
    let _ = writeln!(o, "# Lists a file's test ids: with [run] units = \"auto\", a file that would hold up the run is split by them.");
    let collect = words(
        &g.python,
        &[
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "{file}",
            "{args}",
        ],
    );
    let _ = writeln!(o, "collect = {}", toml_list(&collect));
    o
}

/// What `init` says after writing the plan.
pub fn explain(g: &Guess, plan: &Path) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "wrote {}", plan.display());
    let _ = writeln!(o, "  tests:   {} ({})", g.tests, g.tests_why);
    match &g.prepare {
        Some(p) => {
            let _ = writeln!(
                o,
                "  prepare: {} ({})",
                shell_words::join(&p.command),
                p.why
            );
        }
        None => {
            let _ = writeln!(o, "  prepare: none found");
        }
    }
    match &g.server {
        Some(s) => {
            let _ = writeln!(
                o,
                "  server:  {} ({})",
                shell_words::join(&s.command),
                s.why
            );
        }
        None => {
            let _ = writeln!(o, "  server:  none found (a commented block)");
        }
    }
    if !g.check.is_empty() {
        let _ = writeln!(o, "check:");
        for c in &g.check {
            let _ = writeln!(o, "  - {c}");
        }
    }
    let _ = writeln!(
        o,
        "next: e2e-plan dry-run {0}, then e2e-plan apply {0}",
        plan.display()
    );
    o
}
