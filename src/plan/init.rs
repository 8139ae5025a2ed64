//! `e2e-plan init`: a first plan for a Python repository, written from what the repository
//! shows (its tests, its migration tool, its web framework), with comments that say what was
//! guessed and what to check. Reads files only; the one file it may change besides writing the
//! plan is the root `conftest.py` of a pytest-django project (see [`CONFTEST_BLOCK`]).

use std::fmt::Write as _;
use std::path::Path;

/// What `init` found in a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// The test files.
    pub tests: Tests,
    /// The interpreter the commands use (a virtualenv's when there is one).
    pub python: String,
    pub prepare: Option<Prepare>,
    pub server: Option<Server>,
    /// How the tests reach the app: whether a server per worker is worth starting.
    pub reach: Reach,
    /// pytest-django's database set-up, when the project uses pytest-django.
    pub django_db: Option<DjangoDb>,
    /// Whether an app was found (Django's manage.py, a FastAPI or Flask app).
    pub app: bool,
    /// Services the compose file runs that a worker can have its own of.
    pub services: Vec<ComposeService>,
    /// Why the suite looks start-up-bound (many files, few tests each), if it does.
    pub startup_bound: Option<String>,
    /// What the user should check before the first run.
    pub check: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prepare {
    pub command: Vec<String>,
    pub fingerprint: Vec<String>,
    pub why: String,
}

/// How the tests reach the app, from what the test files and conftests say.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// Over the network, to a server e2e-plan starts: the evidence ("tests/test_ui.py: BASE_URL").
    Network(String),
    /// Over the network, to a server the test process starts itself (pytest-django's `live_server`).
    OwnServer(String),
    /// In-process (Django's test client, FastAPI's TestClient) or not at all.
    InProcess,
}

/// What `init` does about pytest-django's test database.
#[derive(Debug, Clone, PartialEq)]
pub enum DjangoDb {
    /// Appends [`CONFTEST_BLOCK`] to the root conftest.py (`true`: creates it).
    Append { create: bool },
    /// The root conftest.py has the block already.
    Present,
    /// The root conftest.py overrides `django_db_setup` itself: left alone, with a check item.
    OwnOverride,
}

/// Appended to a pytest-django project's root conftest.py: under e2e-plan the worker's database
/// (a migrated copy of the template) is the test database, through pytest-django's documented
/// override for an existing database. It applies only when `E2E_PLAN_DB` is set, as the plan's
/// `[test] env` sets it, so the project's own `pytest` runs are unchanged.
pub const CONFTEST_BLOCK: &str = r#"
# --- Written by `e2e-plan init` -------------------------------------------------------------
# Under e2e-plan every test process gets a database of its own, already migrated: a copy of a
# template prepared once with `manage.py migrate`, named in DATABASE_URL and in E2E_PLAN_DB (the
# plan's [test] env). pytest-django would otherwise create and migrate a `test_<name>` database
# in every process; this is its documented override for an existing database
# (https://pytest-django.readthedocs.io/en/latest/database.html#using-an-existing-external-database-for-tests).
# Tests still run in transactions rolled back after each test, as usual. Without E2E_PLAN_DB
# (a plain `pytest` run) nothing here applies.
import os as _e2e_os

if _e2e_os.environ.get("E2E_PLAN_DB"):
    import pytest as _e2e_pytest

    @_e2e_pytest.fixture(scope="session")
    def django_db_setup():
        from django.conf import settings

        name = settings.DATABASES["default"]["NAME"]
        if name != _e2e_os.environ["E2E_PLAN_DB"]:
            _e2e_pytest.exit(
                f"e2e-plan: the settings name the database {name!r}, not this worker's "
                f"{_e2e_os.environ['E2E_PLAN_DB']!r}: read it from DATABASE_URL",
                returncode=3,
            )
        yield
# --- end of e2e-plan's block -----------------------------------------------------------------
"#;

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub command: Vec<String>,
    /// Whether the server takes its port from the `PORT` environment variable (a script that
    /// serves on `$PORT`) rather than from its command line.
    pub port_env: bool,
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
    let tests = find_tests(root, &files, &mut check);
    let python = [".venv/bin/python", "venv/bin/python"]
        .into_iter()
        .find(|p| root.join(p).exists())
        .unwrap_or("python3")
        .to_string();
    let prepare = prepare(root, &files, &python, &mut check);
    let reach = reach(root, &files, &tests);
    let startup_bound = startup_bound(root, &tests);
    let server = match &reach {
        Reach::Network(_) => server(root, &files, &python, &mut check),
        _ => None,
    };
    let django_db = django_db(root, &files, &mut check);
    Guess {
        tests,
        python,
        prepare,
        server,
        reach,
        django_db,
        app: root.join("manage.py").exists()
            || app_file(root, &files).is_some()
            || port_script(root, &files).is_some(),
        services: compose_services(root),
        startup_bound,
        check,
    }
}

/// A service a docker-compose file runs, by its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeService {
    Redis,
    Nats,
    RabbitMq,
    Mail,
}

/// The services of the first compose file found, from its `image:` lines (no YAML parser: the
/// image names are all init needs), each once, in a fixed order.
fn compose_services(root: &Path) -> Vec<ComposeService> {
    let Some(text) = [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yml",
        "docker-compose.yaml",
    ]
    .iter()
    .map(|f| read(root, f))
    .find(|t| !t.is_empty()) else {
        return Vec::new();
    };
    let images: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(|i| {
            let i = i.trim().trim_matches(['"', '\'']).to_lowercase();
            // The image's name, without registry, owner or tag.
            let name = i.rsplit('/').next().unwrap_or(&i);
            name.split([':', '@']).next().unwrap_or(name).to_string()
        })
        .collect();
    let has = |names: &[&str]| images.iter().any(|i| names.contains(&i.as_str()));
    let mut found = Vec::new();
    for (service, names) in [
        (
            ComposeService::Redis,
            &["redis", "valkey", "redis-stack-server"][..],
        ),
        (ComposeService::Nats, &["nats"][..]),
        (ComposeService::RabbitMq, &["rabbitmq"][..]),
        (
            ComposeService::Mail,
            &["mailhog", "mailpit", "maildev", "smtp4dev"][..],
        ),
    ] {
        if has(names) {
            found.push(service);
        }
    }
    found
}

/// Many files with few tests each: each worker's start-up (importing the app, its settings
/// and conftests) may cost more than its tests, which is what `units = "auto"` packs.
fn startup_bound(root: &Path, tests: &Tests) -> Option<String> {
    if tests.files.len() < 10 {
        return None;
    }
    let mut per_file: Vec<usize> = tests
        .files
        .iter()
        .map(|f| read(root, f).matches("def test").count())
        .collect();
    per_file.sort_unstable();
    let median = per_file[per_file.len() / 2];
    (median <= 10).then(|| {
        format!(
            "{} files with a median of {median} test{} each",
            per_file.len(),
            if median == 1 { "" } else { "s" }
        )
    })
}

/// Words in a test file or conftest that mean the tests call the app over the network, and
/// what they mean.
const NETWORK: &[(&str, &str)] = &[
    ("BASE_URL", "a base URL"),
    ("base_url", "a base URL"),
    ("playwright", "a browser (Playwright)"),
    ("selenium", "a browser (Selenium)"),
    ("localhost", "requests to localhost"),
    ("127.0.0.1", "requests to 127.0.0.1"),
];

/// `word` in `text` as a word of its own: `DATABASE_URL` does not contain `BASE_URL`.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn reach(root: &Path, files: &[String], tests: &Tests) -> Reach {
    let conftests = files
        .iter()
        .filter(|f| f.rsplit('/').next() == Some("conftest.py"));
    let mut own = None;
    for f in tests.files.iter().chain(conftests) {
        let text = read(root, f);
        // init's own block names none of these words (DATABASE_URL is not BASE_URL), so a
        // second init reads the same.
        if let Some((word, what)) = NETWORK.iter().find(|(w, _)| has_word(&text, w)) {
            return Reach::Network(format!("{f} uses {word}: {what}"));
        }
        if own.is_none() && text.contains("live_server") {
            own = Some(format!(
                "{f} uses live_server: pytest-django starts a server inside the test process"
            ));
        }
    }
    own.map_or(Reach::InProcess, Reach::OwnServer)
}

/// Whether the project uses pytest-django, from its requirements, its pytest settings, its
/// conftests or its virtualenv.
fn uses_pytest_django(root: &Path, files: &[String]) -> bool {
    let declared = files.iter().any(|f| {
        let name = f.rsplit('/').next().unwrap_or(f);
        let deps = (name.starts_with("requirements")
            && (name.ends_with(".txt") || name.ends_with(".in")))
            || [
                "pyproject.toml",
                "setup.cfg",
                "setup.py",
                "Pipfile",
                "tox.ini",
            ]
            .contains(&name)
            || name == "conftest.py";
        deps && {
            let t = read(root, f).to_lowercase();
            t.contains("pytest-django") || t.contains("pytest_django")
        }
    });
    let configured = ["pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini"]
        .iter()
        .any(|f| read(root, f).contains("DJANGO_SETTINGS_MODULE"));
    let installed = [".venv", "venv"].iter().any(|v| {
        std::fs::read_dir(root.join(v).join("lib"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|py| py.path().join("site-packages/pytest_django").is_dir())
    });
    declared || configured || installed
}

fn django_db(root: &Path, files: &[String], check: &mut Vec<String>) -> Option<DjangoDb> {
    if !root.join("manage.py").exists() || !uses_pytest_django(root, files) {
        return None;
    }
    let conftest = read(root, "conftest.py");
    if conftest.contains("E2E_PLAN_DB") {
        return Some(DjangoDb::Present);
    }
    if conftest.contains("def django_db_setup") {
        check.push("conftest.py overrides django_db_setup already, so init left it alone: under e2e-plan (E2E_PLAN_DB set) it must use the database the settings name as it is, not create one (see the Django section of docs/guide.md)".into());
        return Some(DjangoDb::OwnOverride);
    }
    Some(DjangoDb::Append {
        create: !root.join("conftest.py").exists(),
    })
}

/// pytest's settings that decide which files are tests, from the first of pytest.ini,
/// pyproject.toml, tox.ini and setup.cfg that has a pytest section (pytest's own order).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PytestIni {
    /// The file the settings came from; None without one.
    pub file: Option<String>,
    pub testpaths: Vec<String>,
    pub python_files: Vec<String>,
}

/// `key`'s value in `[section]` of an ini file, continuation lines (indented) included.
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    let mut value: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            if value.is_some() {
                break;
            }
            inside = t == section;
            continue;
        }
        if !inside || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) && !t.is_empty() {
                v.push(' ');
                v.push_str(t);
                continue;
            }
            break;
        }
        if let Some((k, v)) = t.split_once('=') {
            if k.trim() == key {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

fn ini_has_section(text: &str, section: &str) -> bool {
    text.lines().any(|l| l.trim() == section)
}

fn pytest_ini(root: &Path) -> PytestIni {
    let words = |v: String| v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    for (file, section) in [
        ("pytest.ini", "[pytest]"),
        (".pytest.ini", "[pytest]"),
        ("pyproject.toml", ""),
        ("tox.ini", "[pytest]"),
        ("setup.cfg", "[tool:pytest]"),
    ] {
        let text = read(root, file);
        if file == "pyproject.toml" {
            let Ok(t) = text.parse::<toml::Table>() else {
                continue;
            };
            let Some(options) = t
                .get("tool")
                .and_then(|t| t.get("pytest"))
                .and_then(|t| t.get("ini_options"))
            else {
                continue;
            };
            let list = |key: &str| match options.get(key) {
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Some(toml::Value::String(s)) => words(s.clone()),
                _ => Vec::new(),
            };
            return PytestIni {
                file: Some(file.into()),
                testpaths: list("testpaths"),
                python_files: list("python_files"),
            };
        }
        // pytest.ini counts even without its section; the others only with one.
        let exists = root.join(file).is_file();
        if (file.ends_with("pytest.ini") && exists) || ini_has_section(&text, section) {
            return PytestIni {
                file: Some(file.into()),
                testpaths: ini_value(&text, section, "testpaths")
                    .map(words)
                    .unwrap_or_default(),
                python_files: ini_value(&text, section, "python_files")
                    .map(words)
                    .unwrap_or_default(),
            };
        }
    }
    PytestIni::default()
}

/// Which files the plan runs, and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Tests {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Where the globs come from.
    pub why: String,
    /// Each include glob with the files it adds, counted as the plan's loader counts them.
    pub counts: Vec<(String, usize)>,
    pub total: usize,
    /// The files by folder ("." for the root's).
    pub folders: Vec<(String, usize)>,
    /// The files themselves.
    pub files: Vec<String>,
}

/// Folders pytest does not recurse into by default (`norecursedirs`) that a glob could reach.
const NORECURSE: &[&str] = &["venv", "node_modules", "site-packages", "build", "dist"];

/// The files `include` minus `exclude` selects, exactly as `plan::load` expands them.
fn expand(root: &Path, include: &[String], exclude: &[String]) -> Vec<(String, Vec<String>)> {
    let mut ex = globset::GlobSetBuilder::new();
    for e in exclude {
        if let Ok(g) = globset::Glob::new(e) {
            ex.add(g);
        }
    }
    let ex = ex.build().unwrap_or_else(|_| globset::GlobSet::empty());
    let mut seen = std::collections::BTreeSet::new();
    include
        .iter()
        .map(|g| {
            let Ok(m) = globset::Glob::new(g).map(|g| g.compile_matcher()) else {
                return (g.clone(), Vec::new());
            };
            let mut files: Vec<String> = super::load::walk_from(root, g)
                .into_iter()
                .filter(|f| m.is_match(f) && !ex.is_match(f) && seen.insert(f.clone()))
                .collect();
            files.sort();
            (g.clone(), files)
        })
        .collect()
}

fn find_tests(root: &Path, files: &[String], check: &mut Vec<String>) -> Tests {
    let ini = pytest_ini(root);
    let django = root.join("manage.py").exists();
    let mut patterns = ini.python_files.clone();
    let mut why = Vec::new();
    if patterns.is_empty() {
        patterns = vec!["test_*.py".into(), "*_test.py".into()];
    } else if let Some(file) = &ini.file {
        why.push(format!("python_files from {file}: {}", patterns.join(" ")));
    }
    if django && !patterns.iter().any(|p| p == "tests.py") {
        // Django's own runner finds `test*.py`: an app's tests.py is a test module there.
        patterns.push("tests.py".into());
        why.push("and each app's tests.py, which Django's runner finds".into());
    }
    let mut names = globset::GlobSetBuilder::new();
    for p in &patterns {
        if let Ok(g) = globset::Glob::new(p) {
            names.add(g);
        }
    }
    let names = names.build().unwrap_or_else(|_| globset::GlobSet::empty());
    let matches = |f: &str| names.is_match(f.rsplit('/').next().unwrap_or(f));
    let tests: Vec<&String> = files.iter().filter(|f| matches(f)).collect();
    let under = |dir: &str, f: &str| dir.is_empty() || f.starts_with(&format!("{dir}/"));
    let mut dirs: Vec<String> = Vec::new();
    if tests.iter().any(|f| under("tests/e2e", f)) {
        dirs.push("tests/e2e".into());
        why.insert(0, "the test files under tests/e2e/".into());
        let others = tests.iter().filter(|f| !under("tests/e2e", f)).count();
        if others > 0 {
            check.push(format!(
                "{others} other test file(s) outside tests/e2e/ are left out: add their globs to [tests] include if they need a worker each"
            ));
        }
    } else {
        let paths: Vec<String> = ini
            .testpaths
            .iter()
            .map(|p| p.trim_end_matches('/').trim_start_matches("./").to_string())
            .filter(|p| tests.iter().any(|f| under(p, f)))
            .collect();
        if !paths.is_empty() {
            why.insert(
                0,
                format!(
                    "pytest's testpaths from {}: {}",
                    ini.file.clone().unwrap_or_default(),
                    paths.join(" ")
                ),
            );
            dirs = paths;
        } else {
            // One folder when every test file is below it, else the whole repository.
            let top = |f: &str| f.split_once('/').map(|(d, _)| d.to_string());
            let first = tests.first().and_then(|f| top(f));
            let common = first.filter(|d| tests.iter().all(|f| under(d, f)));
            if django
                && tests
                    .iter()
                    .any(|f| f.contains("/tests/") || f.ends_with("/tests.py"))
            {
                why.insert(
                    0,
                    "Django apps' tests (<app>/tests/, <app>/tests.py)".into(),
                );
            } else {
                why.insert(0, "pytest's test files".into());
            }
            dirs.push(common.unwrap_or_default());
        }
    }
    if tests.is_empty() {
        check.push("no test file was found: point [tests] include at yours".into());
        return Tests {
            include: vec!["tests/**/test_*.py".into()],
            exclude: Vec::new(),
            why: "no test file found; a guess".into(),
            counts: Vec::new(),
            total: 0,
            folders: Vec::new(),
            files: Vec::new(),
        };
    }
    let mut include = Vec::new();
    for d in &dirs {
        for p in &patterns {
            let g = if d.is_empty() {
                format!("**/{p}")
            } else {
                format!("{d}/**/{p}")
            };
            include.push(g);
        }
    }
    // Folders pytest skips are left out when a glob reaches into them.
    let all: Vec<String> = expand(root, &include, &[])
        .into_iter()
        .flat_map(|(_, f)| f)
        .collect();
    let exclude: Vec<String> = NORECURSE
        .iter()
        .filter(|n| all.iter().any(|f| f.split('/').any(|c| c == **n)))
        .map(|n| format!("**/{n}/**"))
        .collect();
    let expanded = expand(root, &include, &exclude);
    // Each include glob must match a file: keep the ones that do.
    let counts: Vec<(String, usize)> = expanded
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(g, f)| (g.clone(), f.len()))
        .collect();
    let mut folders = std::collections::BTreeMap::<String, usize>::new();
    for f in expanded.iter().flat_map(|(_, f)| f) {
        let dir = f.rsplit_once('/').map_or(".", |(d, _)| d);
        *folders.entry(dir.to_string()).or_default() += 1;
    }
    Tests {
        include: counts.iter().map(|(g, _)| g.clone()).collect(),
        exclude,
        why: why.join("; "),
        total: counts.iter().map(|(_, n)| n).sum(),
        counts,
        folders: folders.into_iter().collect(),
        files: expanded.into_iter().flat_map(|(_, f)| f).collect(),
    }
}

/// Why no server: the tests drive the app in-process (an app was found) or call none at all.
fn in_process(g: &Guess) -> &'static str {
    if g.app {
        "tests drive the app in-process; no test file or conftest mentions a base URL, a browser or localhost"
    } else {
        "no test file or conftest mentions a base URL, a browser or localhost"
    }
}

/// "3 files: a 2, b 1", for the plan's comment and init's output.
fn found(t: &Tests) -> String {
    let per_glob: Vec<String> = t.counts.iter().map(|(g, n)| format!("{g} {n}")).collect();
    const SHOWN: usize = 12;
    let mut per_folder: Vec<String> = t
        .folders
        .iter()
        .take(SHOWN)
        .map(|(d, n)| format!("{d} {n}"))
        .collect();
    if t.folders.len() > SHOWN {
        per_folder.push(format!("{} more folders", t.folders.len() - SHOWN));
    }
    format!(
        "{} file{}: {}; by folder: {}",
        t.total,
        if t.total == 1 { "" } else { "s" },
        per_glob.join(", "),
        per_folder.join(", ")
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

/// A module at most one folder deep that creates a FastAPI or Flask app, and which.
fn app_file<'a>(root: &Path, files: &'a [String]) -> Option<(&'a String, &'static str)> {
    files
        .iter()
        .filter(|f| f.ends_with(".py") && f.matches('/').count() <= 1)
        .find_map(|f| {
            let text = read(root, f);
            ["FastAPI", "Flask"]
                .into_iter()
                .find(|k| text.contains(&format!("{k}(")))
                .map(|k| (f, k))
        })
}

/// A module at most one folder deep, not a test or a conftest, that serves when run as a script
/// (`if __name__ == "__main__"`) and reads its port from the `PORT` environment variable, as a
/// standard-library or Twelve-Factor server does; the shallowest first.
fn port_script<'a>(root: &Path, files: &'a [String]) -> Option<&'a String> {
    files
        .iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            f.ends_with(".py")
                && f.matches('/').count() <= 1
                && name != "conftest.py"
                && !name.starts_with("test_")
        })
        .filter(|f| {
            let text = read(root, f);
            let main = text.contains("__name__ == \"__main__\"")
                || text.contains("__name__ == '__main__'");
            let env = text.contains("environ") || text.contains("getenv");
            let port = text.contains("\"PORT\"") || text.contains("'PORT'");
            main && env && port
        })
        .min_by_key(|f| f.matches('/').count())
}

fn server(root: &Path, files: &[String], python: &str, check: &mut Vec<String>) -> Option<Server> {
    if root.join("manage.py").exists() {
        return Some(Server {
            command: words(
                python,
                &["manage.py", "runserver", "127.0.0.1:{port}", "--noreload"],
            ),
            port_env: false,
            ready: "tcp://127.0.0.1:{port}".into(),
            why: "manage.py: Django's runserver".into(),
        });
    }
    if let Some(app) = app_file(root, files).filter(|(_, kind)| *kind == "FastAPI") {
        let app = app.0;
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
            port_env: false,
            ready: "tcp://127.0.0.1:{port}".into(),
            why: format!("{app} creates a FastAPI app (check that it is called `app`)"),
        });
    }
    if let Some(script) = port_script(root, files) {
        return Some(Server {
            command: words(python, &[script]),
            port_env: true,
            ready: "tcp://127.0.0.1:{port}".into(),
            why: format!("{script} runs a server on the port in $PORT when run as a script"),
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
    let t = &g.tests;
    let _ = writeln!(o, "\n[tests]\n# {}", t.why);
    if t.total > 0 {
        let _ = writeln!(o, "# {}", found(t));
    }
    let _ = writeln!(o, "include = {}", toml_list(&t.include));
    if !t.exclude.is_empty() {
        let _ = writeln!(o, "# Folders pytest does not look into either.");
        let _ = writeln!(o, "exclude = {}", toml_list(&t.exclude));
    }
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
    let service_env = render_services(&mut o, &g.services);
    while o.ends_with("\n\n") {
        o.pop();
    }
    let base_url = match (&g.server, &g.reach) {
        (Some(s), Reach::Network(evidence)) => {
            let _ = writeln!(
                o,
                "\n# A server per worker: the tests call one ({evidence})."
            );
            let _ = writeln!(o, "# {}", s.why);
            let _ = writeln!(o, "[server]\ncommand = {}", toml_list(&s.command));
            let port = if s.port_env {
                "PORT = \"{port}\", "
            } else {
                ""
            };
            let _ = writeln!(o, "env = {{ {port}DATABASE_URL = \"{{db_url}}\" }}");
            let _ = writeln!(o, "ready = {}", toml::Value::String(s.ready.clone()));
            ", BASE_URL = \"http://127.0.0.1:{port}\""
        }
        (None, Reach::Network(evidence)) => {
            let _ = writeln!(
                o,
                "\n# The tests call a server ({evidence}); start one per worker:"
            );
            let _ = writeln!(
                o,
                "# [server]\n# command = [\"{}\", \"-m\", \"your_app\", \"--port\", \"{{port}}\"]",
                g.python
            );
            let _ = writeln!(o, "# env = {{ DATABASE_URL = \"{{db_url}}\" }}\n# ready = \"http://127.0.0.1:{{port}}/health\"");
            ""
        }
        (_, Reach::OwnServer(evidence)) => {
            let _ = writeln!(o, "\n# No server per worker: {evidence}.");
            ""
        }
        (_, Reach::InProcess) => {
            let _ = writeln!(o, "\n# No server per worker: {}.", in_process(g));
            let _ = writeln!(
                o,
                "# If some do call one over the network, add a [server] block (docs/guide.md)."
            );
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
    let django_db = match g.django_db {
        Some(DjangoDb::Append { .. } | DjangoDb::Present | DjangoDb::OwnOverride) => {
            let _ = writeln!(o, "# pytest-django: E2E_PLAN_DB turns on the django_db_setup override in conftest.py, so the");
            let _ = writeln!(o, "# worker's database (a migrated copy of the template) is the test database: no test_<name>");
            let _ = writeln!(o, "# database is created and migrated in each process. A plain `pytest` does not set it.");
            ", E2E_PLAN_DB = \"{db_name}\""
        }
        None => "",
    };
    let _ = writeln!(
        o,
        "env = {{ DATABASE_URL = \"{{db_url}}\"{django_db}{base_url}{service_env} }}"
    );
    let _ = writeln!(o, "# Lists a file's test ids: with [run] units = \"auto\", a file that would hold up the run is split by them.");
    let _ = writeln!(o, "# It runs before any worker, with DATABASE_URL naming the template: settings may read it at");
    let _ = writeln!(o, "# import, collecting must not connect.");
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
    if let Some(why) = &g.startup_bound {
        let _ = writeln!(o, "\n[run]");
        let _ = writeln!(o, "# {why}: each worker's start-up (importing the app, its");
        let _ = writeln!(o, "# settings and conftests) may cost more than its tests. units = \"auto\" packs such files:");
        let _ = writeln!(o, "# several run one after another in one test process and one database, as plain pytest runs");
        let _ = writeln!(o, "# them. It also splits a file that would hold up the run. It decides from the timings of a");
        let _ = writeln!(
            o,
            "# first run; `dry-run` shows what it would pack, and why."
        );
        let _ = writeln!(o, "# units = \"auto\"");
    }
    o
}

/// The `[[service]]` blocks for what the compose file runs; returns the `[test] env` entries
/// that point the tests at them.
fn render_services(o: &mut String, services: &[ComposeService]) -> String {
    let mut env = String::new();
    if services.is_empty() {
        return env;
    }
    let _ = writeln!(
        o,
        "\n# From the compose file: a service of its own per worker, so that files running at once"
    );
    let _ = writeln!(o, "# never share keys or messages. [test] env gets their URLs under the usual names: rename them");
    let _ = writeln!(o, "# to what your settings read.");
    for s in services {
        match s {
            ComposeService::Redis => {
                let _ = writeln!(o, "[[service]]\nname = \"redis\"");
                let _ = writeln!(o, "command = [\"redis-server\", \"--port\", \"{{port.redis}}\", \"--bind\", \"127.0.0.1\", \"--save\", \"\", \"--appendonly\", \"no\"]");
                let _ = writeln!(o, "ready = \"tcp://127.0.0.1:{{port.redis}}\"\n");
                env.push_str(", REDIS_URL = \"redis://127.0.0.1:{port.redis}/0\"");
            }
            ComposeService::Nats => {
                let _ = writeln!(o, "[[service]]\nname = \"nats\"");
                let _ = writeln!(
                    o,
                    "command = [\"nats-server\", \"-a\", \"127.0.0.1\", \"-p\", \"{{port.nats}}\"]"
                );
                let _ = writeln!(o, "ready = \"tcp://127.0.0.1:{{port.nats}}\"\n");
                env.push_str(", NATS_URL = \"nats://127.0.0.1:{port.nats}\"");
            }
            ComposeService::RabbitMq => {
                let _ = writeln!(o, "# RabbitMQ: a virtual host of its own per worker on the broker you run (the URL's");
                let _ = writeln!(o, "# credentials are the broker's; add AMQP_URL = \"amqp://guest:guest@127.0.0.1:5672/{{db_name}}\"");
                let _ = writeln!(o, "# to [test] env):");
                let _ = writeln!(o, "# [[resource]]\n# name = \"vhost\"");
                let _ = writeln!(
                    o,
                    "# create = [\"rabbitmqctl\", \"add_vhost\", \"{{db_name}}\"]"
                );
                let _ = writeln!(
                    o,
                    "# destroy = [\"rabbitmqctl\", \"delete_vhost\", \"{{db_name}}\"]"
                );
                let _ = writeln!(o, "# destroy_ok_exit_codes = [0, 65]\n");
            }
            ComposeService::Mail => {
                let _ = writeln!(o, "# A mail catcher: if the tests read the mail it caught, give each worker its own, a");
                let _ = writeln!(o, "# [[service]] named \"mail\" whose SMTP port is {{port.mail}}; move its web port off its default");
                let _ = writeln!(
                    o,
                    "# too (every worker's on one port would clash). Check your catcher's flags."
                );
            }
        }
    }
    env
}

/// What `init` says after writing the plan.
pub fn explain(g: &Guess, plan: &Path) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "wrote {}", plan.display());
    let t = &g.tests;
    if t.total > 0 {
        let _ = writeln!(o, "  tests:   {} ({})", found(t), t.why);
    } else {
        let _ = writeln!(
            o,
            "  tests:   none found; {} is a guess",
            t.include.join(", ")
        );
    }
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
    match (&g.server, &g.reach) {
        (Some(s), _) => {
            let _ = writeln!(
                o,
                "  server:  {} ({})",
                shell_words::join(&s.command),
                s.why
            );
        }
        (None, Reach::Network(evidence)) => {
            let _ = writeln!(
                o,
                "  server:  none found, but {evidence} (a commented block)"
            );
        }
        (None, Reach::OwnServer(evidence)) => {
            let _ = writeln!(o, "  server:  none per worker ({evidence})");
        }
        (None, Reach::InProcess) => {
            let _ = writeln!(o, "  server:  none per worker ({})", in_process(g));
        }
    }
    match g.django_db {
        Some(DjangoDb::Append { create }) => {
            let _ = writeln!(
                o,
                "  conftest.py: {} pytest-django's django_db_setup override, on only under e2e-plan (E2E_PLAN_DB): the worker's database is the test database",
                if create { "written with" } else { "appended" }
            );
        }
        Some(DjangoDb::Present) => {
            let _ = writeln!(
                o,
                "  conftest.py: has e2e-plan's django_db_setup override already"
            );
        }
        Some(DjangoDb::OwnOverride) | None => {}
    }
    if !g.services.is_empty() {
        let names: Vec<&str> = g
            .services
            .iter()
            .map(|s| match s {
                ComposeService::Redis => "redis (a [[service]] per worker)",
                ComposeService::Nats => "nats (a [[service]] per worker)",
                ComposeService::RabbitMq => {
                    "rabbitmq (a commented [[resource]]: a vhost per worker)"
                }
                ComposeService::Mail => "a mail catcher (a comment)",
            })
            .collect();
        let _ = writeln!(o, "  services from the compose file: {}", names.join(", "));
    }
    if let Some(why) = &g.startup_bound {
        let _ = writeln!(o, "  units:   {why}: units = \"auto\" proposed, commented");
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
