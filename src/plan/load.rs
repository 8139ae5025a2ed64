//! Loading a plan: parse, interpolate `${VAR}`, check every value, expand globs. Every mistake is a
//! [`PlanError`] that underlines its text; nothing here touches a database or starts a process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use miette::NamedSource;
use toml::Spanned;

use super::format::{CommandSpec, FlakyPolicy, Keep, RawPlan};
use super::template::{
    interpolate_env, Template, TemplateError, Word, SERVICE_PORTS, WORKER_PLACEHOLDERS,
};
use super::{
    suggest, DatabaseSpec, Plan, PlanError, ResourceSpec, RunSpec, ServerSpec, ServiceSpec,
    SetupCommand, TestFile, TestSpec,
};

/// Inputs from outside the file that loading depends on.
pub struct LoadOptions<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            env: &|name| std::env::var(name).ok(),
        }
    }
}

const WORKER_VARS: &[&str] = WORKER_PLACEHOLDERS;
const PREPARE_VARS: &[&str] = &["root", "run", "db_name", "db_url"];
const SETUP_VARS: &[&str] = &["root", "run"];
/// `[test] collect` runs before any worker exists: it knows the file and the template, nothing
/// of a worker.
const COLLECT_VARS: &[&str] = super::COLLECT_PLACEHOLDERS;
/// Pooled copies per template: each is a full copy on disk, so a typo here fills the disk.
const MAX_POOL: usize = 1000;

/// Loads and checks the plan at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan, Box<PlanError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "pass the plan's path, e.g. `e2e-plan apply plans/default.toml`"
        } else {
            "check the file's permissions"
        };
        Box::new(
            PlanError::plain(format!("cannot read plan file {}: {e}", path.display()))
                .with_help(hint),
        )
    })?;
    let cx = Cx {
        src: NamedSource::new(path.display().to_string(), text.clone()),
        text: &text,
        env: opts.env,
        errors: Vec::new(),
    };
    cx.run(path).map_err(Box::new)
}

struct Cx<'a> {
    src: NamedSource<String>,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<PlanError>,
}

impl Cx<'_> {
    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> PlanError {
        PlanError {
            message: message.into(),
            src: Some(self.src.clone()),
            span: Some((span.start, span.end.saturating_sub(span.start)).into()),
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }

    fn push(&mut self, e: PlanError) {
        self.errors.push(e);
    }

    /// The span of `len` bytes at `offset` inside the string value at `span`, when the source text
    /// of the value is the plain quoted string; otherwise the whole value.
    fn inner_span(
        &self,
        span: &Range<usize>,
        value: &str,
        offset: usize,
        len: usize,
    ) -> Range<usize> {
        let raw = self.text.get(span.clone()).unwrap_or_default();
        if raw.len() == value.len() + 2 && &raw[1..raw.len() - 1] == value {
            let start = span.start + 1 + offset;
            start..start + len
        } else {
            span.clone()
        }
    }

    /// `${VAR}` interpolation of one string value.
    fn env_str(&mut self, value: &Spanned<String>) -> Option<String> {
        self.interpolate(value, false)
    }

    /// For fields that are parsed as templates afterwards: braces from the environment stay literal.
    fn env_template(&mut self, value: &Spanned<String>) -> Option<String> {
        self.interpolate(value, true)
    }

    fn interpolate(&mut self, value: &Spanned<String>, escape: bool) -> Option<String> {
        match interpolate_env(value.get_ref(), self.env, escape) {
            Ok(s) => Some(s),
            Err(e) => {
                let span = self.inner_span(&value.span(), value.get_ref(), e.offset, e.len);
                let err = self
                    .error(span, e.message, "here")
                    .with_help(if e.var.is_empty() {
                        "write `${NAME}` or `${NAME:-default}`; `$$` is a literal `$`".to_string()
                    } else {
                        format!("set {} or give a default: `${{{}:-default}}`", e.var, e.var)
                    });
                self.push(err);
                None
            }
        }
    }

    fn template_error(&mut self, span: &Range<usize>, raw: &str, expanded: &str, e: TemplateError) {
        let at = if raw == expanded {
            self.inner_span(span, raw, e.offset, e.len)
        } else {
            span.clone()
        };
        let mut err = self.error(at, e.message, "here");
        err.help = e.help;
        self.push(err);
    }

    fn template(&mut self, value: &Spanned<String>, allowed: &[&str]) -> Option<Template> {
        let expanded = self.env_template(value)?;
        match Template::parse(&expanded, allowed) {
            Ok(t) => Some(t),
            Err(e) => {
                self.template_error(&value.span(), value.get_ref(), &expanded, e);
                None
            }
        }
    }

    fn command(
        &mut self,
        spec: &Spanned<CommandSpec>,
        allowed: &[&str],
        args: bool,
    ) -> Option<Vec<Word>> {
        match spec.get_ref() {
            CommandSpec::Argv(items) => self.argv_command(items, allowed, args),
            CommandSpec::Line(line) => self.line_command(spec.span(), line, allowed, args),
        }
    }

    /// A command written as an array of words.
    fn argv_command(
        &mut self,
        items: &[Spanned<String>],
        allowed: &[&str],
        args: bool,
    ) -> Option<Vec<Word>> {
        if let Some(first) = items.first() {
            if let Some(name) = env_assignment(first.get_ref()) {
                self.assignment_error(first.span(), &name);
                return None;
            }
        }
        let mut words = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(expanded) = self.env_template(item) else {
                ok = false;
                continue;
            };
            match Word::parse(&expanded, allowed, args) {
                Ok(w) => words.push(w),
                Err(e) => {
                    ok = false;
                    self.template_error(&item.span(), item.get_ref(), &expanded, e);
                }
            }
        }
        ok.then_some(words)
    }

    /// A command written as one string, split into words as a shell would (no shell runs it).
    fn line_command(
        &mut self,
        span: Range<usize>,
        line: &Spanned<String>,
        allowed: &[&str],
        args: bool,
    ) -> Option<Vec<Word>> {
        let whole = Spanned::new(span.clone(), line.get_ref().clone());
        let expanded = self.env_template(&whole)?;
        let split = match shell_words::split(&expanded) {
            Ok(s) => s,
            Err(e) => {
                let err = self
                    .error(
                        span,
                        format!("cannot split command into words: {e}"),
                        "this command",
                    )
                    .with_help("close the quote, or write the command as an array of words");
                self.push(err);
                return None;
            }
        };
        if split.is_empty() {
            let err = self.error(span, "empty command", "no words here");
            self.push(err);
            return None;
        }
        if let Some(name) = env_assignment(&split[0]) {
            let at = if expanded == *line.get_ref() {
                let off = expanded.find(&split[0]).unwrap_or(0);
                self.inner_span(&span, &expanded, off, split[0].len())
            } else {
                span
            };
            self.assignment_error(at, &name);
            return None;
        }
        let mut words = Vec::new();
        let mut ok = true;
        for word in split {
            match Word::parse(&word, allowed, args) {
                Ok(w) => words.push(w),
                Err(e) => {
                    ok = false;
                    // Point at the word within the line when it can be found.
                    let off = expanded.find(&word).unwrap_or(0);
                    let e = TemplateError {
                        offset: off + e.offset,
                        ..e
                    };
                    self.template_error(&span, line.get_ref(), &expanded, e);
                }
            }
        }
        ok.then_some(words)
    }

    /// `NAME=value cmd` reads like a shell's environment prefix, but no shell runs the command:
    /// it would be run as a program called `NAME=value`. Refused where it is written.
    fn assignment_error(&mut self, span: Range<usize>, name: &str) {
        let err = self
            .error(
                span,
                format!("`{name}=…` at the start of a command is not an environment variable: no shell runs the command"),
                "an environment assignment, not a program",
            )
            .with_help(format!(
                "set it in the `env` table beside this command, e.g. env = {{ {name} = \"…\" }}"
            ));
        self.push(err);
    }

    fn env_map(
        &mut self,
        env: &BTreeMap<String, Spanned<String>>,
        allowed: &[&str],
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, value) in env {
            if let Some(t) = self.template(value, allowed) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    #[allow(clippy::result_large_err)] // boxed once, at the module's boundary
    fn run(mut self, path: &Path) -> Result<Plan, PlanError> {
        let raw: RawPlan = match toml::from_str(self.text) {
            Ok(raw) => raw,
            Err(e) => return Err(self.toml_error(e)),
        };

        if let Some(v) = &raw.version {
            if *v.get_ref() != 1 {
                let err = self.error(
                    v.span(),
                    format!("unsupported plan version {}", v.get_ref()),
                    "only version 1 exists",
                );
                self.push(err);
            }
        }

        let plan_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let root_rel = match &raw.root {
            Some(r) => self.env_str(r).unwrap_or_default(),
            None => ".".into(),
        };
        let root = plan_dir.join(&root_rel);
        let root = match std::fs::canonicalize(&root) {
            Ok(r) if r.is_dir() => r,
            _ => {
                let msg = format!("root folder {} does not exist", root.display());
                let e = match &raw.root {
                    Some(r) => self.error(r.span(), msg, "relative to the plan file's folder"),
                    None => PlanError::plain(msg),
                };
                return Err(self.finish_with(e));
            }
        };

        let files = self.files(&raw, &root);

        let setup = self.setup(&raw);
        let database = self.database(&raw);
        // A worker's fields may also use its services' ports.
        let names = self.service_names(&raw);
        let mut worker_vars: Vec<String> = WORKER_VARS.iter().map(|v| v.to_string()).collect();
        worker_vars.push(SERVICE_PORTS.to_string());
        worker_vars.extend(names.iter().map(|n| format!("port.{n}")));
        let worker_vars: Vec<&str> = worker_vars.iter().map(String::as_str).collect();
        let resources = self.resources(&raw, &worker_vars);
        let services = self.services(&raw, &worker_vars);
        let server = self.server(&raw, &worker_vars);
        let test_command = self.command(&raw.test.command, &worker_vars, true);
        let test_env = self.env_map(&raw.test.env, &worker_vars);
        let collect = self.collect(&raw.test);

        let report_dir = match &raw.report.dir {
            Some(d) => self.env_str(d).unwrap_or_default(),
            None => "target/e2e".into(),
        };

        let run = self.run_spec(&raw, files.as_deref().unwrap_or_default());

        if !self.errors.is_empty() {
            return Err(self.finish());
        }
        let (Some(command), Some(files)) = (test_command, files) else {
            return Err(self.finish());
        };
        Ok(Plan {
            path: path.to_path_buf(),
            report_dir: normalize(&root.join(report_dir)),
            artifacts: raw.report.artifacts.unwrap_or_default(),
            root,
            files,
            setup,
            database,
            resources,
            services,
            server,
            test: TestSpec {
                command,
                env: test_env,
                timeout: raw
                    .test
                    .timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(15 * 60)),
                ok_exit_codes: raw.test.ok_exit_codes.clone().unwrap_or_else(|| vec![0, 5]),
                collect,
            },
            run,
        })
    }

    fn setup(&mut self, raw: &RawPlan) -> Vec<SetupCommand> {
        raw.setup
            .iter()
            .filter_map(|s| {
                let command = self.command(&s.command, SETUP_VARS, false)?;
                let creates = match &s.creates {
                    Some(c) => Some(self.env_str(c)?),
                    None => None,
                };
                let env = self.env_map(&s.env, SETUP_VARS);
                Some(SetupCommand {
                    command,
                    creates,
                    env,
                })
            })
            .collect()
    }

    fn database(&mut self, raw: &RawPlan) -> DatabaseSpec {
        let template = match &raw.database.template {
            Some(t) => self
                .env_str(t)
                .filter(|s| !s.trim().is_empty())
                .and_then(|url| match check_template_url(&url) {
                    Ok(()) => Some(url),
                    Err(msg) => {
                        let e = self
                            .error(t.span(), msg, "the template database's URL")
                            .with_help("e.g. postgresql://postgres@127.0.0.1:5432/app_test");
                        self.push(e);
                        None
                    }
                }),
            None => None,
        };
        let prepare = raw
            .database
            .prepare
            .iter()
            .filter_map(|c| self.command(c, PREPARE_VARS, false))
            .collect();
        let prepare_env = self.env_map(&raw.database.env, PREPARE_VARS);
        let fingerprint = raw
            .database
            .fingerprint
            .iter()
            .filter_map(|g| self.glob(g).map(|(s, _)| s))
            .collect();
        let pool = match &raw.database.pool {
            Some(p) if *p.get_ref() > 0 && raw.database.fingerprint.is_empty() => {
                let e = self
                    .error(
                        p.span(),
                        "a pool needs [database] fingerprint",
                        "pooled copies are only used while the template's fingerprint matches",
                    )
                    .with_help(
                        "list the files the template is built from, e.g. fingerprint = [\"migrations/**\"]",
                    );
                self.push(e);
                0
            }
            Some(p) if *p.get_ref() > MAX_POOL => {
                let e = self
                    .error(p.span(), format!("pool is at most {MAX_POOL}"), "this size")
                    .with_help("each pooled copy is a full copy of the template on disk");
                self.push(e);
                0
            }
            Some(p) => *p.get_ref(),
            None => 0,
        };

        DatabaseSpec {
            template,
            prepare,
            env: prepare_env,
            keep: raw
                .database
                .keep
                .as_ref()
                .map(|k| *k.get_ref())
                .unwrap_or(Keep::Failed),
            strategy: raw.database.strategy,
            fingerprint,
            busy_timeout: raw
                .database
                .busy_timeout
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(30)),
            pool,
        }
    }

    /// The names of the plan's services and resources, each `[a-z][a-z0-9_]*` and used once (the
    /// ones that are not are errors); services' names give their `{port.NAME}`.
    fn service_names(&mut self, raw: &RawPlan) -> Vec<String> {
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let named = raw
            .service
            .iter()
            .map(|s| (&s.name, true))
            .chain(raw.resource.iter().map(|r| (&r.name, false)));
        let mut services = Vec::new();
        for (name, service) in named {
            let n = name.get_ref();
            let valid = n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                let e = self
                    .error(name.span(), format!("`{n}` is not a name"), "here")
                    .with_help("a name is lowercase letters, digits and `_`, starting with a letter, e.g. \"redis\"");
                self.push(e);
                continue;
            }
            if let Some(first) = seen.get(n) {
                let mut e = self.error(
                    name.span(),
                    format!("`{n}` names two services or resources"),
                    "used again here",
                );
                e.related
                    .push(self.error(first.clone(), "first here", "first used here"));
                self.push(e.with_help("give each [[service]] and [[resource]] a name of its own"));
                continue;
            }
            seen.insert(n.clone(), name.span());
            if service {
                services.push(n.clone());
            }
        }
        services
    }

    fn resources(&mut self, raw: &RawPlan, allowed: &[&str]) -> Vec<ResourceSpec> {
        raw.resource
            .iter()
            .filter_map(|r| {
                let create = self.command(&r.create, allowed, false);
                let destroy = self.command(&r.destroy, allowed, false);
                let env = self.env_map(&r.env, allowed);
                Some(ResourceSpec {
                    name: r.name.get_ref().clone(),
                    create: create?,
                    destroy: destroy?,
                    env,
                    destroy_ok_exit_codes: r
                        .destroy_ok_exit_codes
                        .clone()
                        .unwrap_or_else(|| vec![0]),
                })
            })
            .collect()
    }

    fn services(&mut self, raw: &RawPlan, allowed: &[&str]) -> Vec<ServiceSpec> {
        raw.service
            .iter()
            .filter_map(|s| {
                let command = self.command(&s.command, allowed, false);
                let env = self.env_map(&s.env, allowed);
                let ready = self.ready(&s.ready, allowed);
                Some(ServiceSpec {
                    name: s.name.get_ref().clone(),
                    command: command?,
                    env,
                    ready: ready?,
                    ready_timeout: s
                        .ready_timeout
                        .map(|d| d.0)
                        .unwrap_or(Duration::from_secs(30)),
                    stop_timeout: s
                        .stop_timeout
                        .map(|d| d.0)
                        .unwrap_or(Duration::from_secs(2)),
                })
            })
            .collect()
    }

    /// A `ready` address: http://, https:// or tcp://, whatever its placeholders become.
    fn ready(&mut self, ready: &Spanned<String>, allowed: &[&str]) -> Option<Template> {
        self.template(ready, allowed).and_then(|t| {
            let sample = t.fill(&HashMap::from([("port", "1".to_string())]));
            if ["http://", "https://", "tcp://"]
                .iter()
                .any(|p| sample.starts_with(p))
            {
                Some(t)
            } else {
                let e = self
                    .error(
                        ready.span(),
                        "`ready` must be an http://, https:// or tcp:// address",
                        "here",
                    )
                    .with_help(
                        "e.g. \"http://127.0.0.1:{port}/healthz\" or \"tcp://127.0.0.1:{port}\"",
                    );
                self.push(e);
                None
            }
        })
    }

    fn server(&mut self, raw: &RawPlan, allowed: &[&str]) -> Option<ServerSpec> {
        raw.server.as_ref().and_then(|s| {
            let command = self.command(&s.command, allowed, true);
            let env = self.env_map(&s.env, allowed);
            let ready = self.ready(&s.ready, allowed);
            Some(ServerSpec {
                command: command?,
                env,
                ready: ready?,
                ready_timeout: s
                    .ready_timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(30)),
                stop_timeout: s
                    .stop_timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(2)),
            })
        })
    }

    /// `[test] collect`: it must name the file it lists, as one word of its own.
    fn collect(&mut self, raw: &super::format::RawTest) -> Option<Vec<Word>> {
        let spec = raw.collect.as_ref()?;
        let words = self.command(spec, COLLECT_VARS, true)?;
        let names_file = words
            .iter()
            .any(|w| matches!(w, Word::Text(t) if t.is_only("file")));
        if !names_file {
            let e = self
                .error(
                    spec.span(),
                    "`collect` does not name the file it lists",
                    "no `{file}` word",
                )
                .with_help("e.g. collect = [\"pytest\", \"--collect-only\", \"-q\", \"{file}\"]");
            self.push(e);
            return None;
        }
        Some(words)
    }

    fn run_spec(&mut self, raw: &RawPlan, files: &[TestFile]) -> RunSpec {
        let ci = super::is_ci(self.env);
        let alone = self.file_globs(&raw.run.alone, "alone", files);
        let whole = self.file_globs(&raw.run.whole, "whole", files);
        RunSpec {
            units: raw.run.units.unwrap_or_default(),
            alone,
            whole,
            jobs: raw.run.jobs.unwrap_or_default(),
            fail_fast: raw.run.fail_fast.unwrap_or(false),
            retries: raw.run.retries.unwrap_or(0),
            flaky: raw.run.flaky.unwrap_or(if ci {
                FlakyPolicy::Fail
            } else {
                FlakyPolicy::Pass
            }),
            max_retry_files: raw.run.max_retry_files.unwrap_or(10),
        }
    }

    /// A glob after `${VAR}` interpolation; an invalid one is an error pointing at it.
    fn glob(&mut self, g: &Spanned<String>) -> Option<(String, Glob)> {
        let s = self.env_str(g)?;
        match Glob::new(&s) {
            Ok(glob) => Some((s, glob)),
            Err(e) => {
                let err = self.error(g.span(), format!("invalid glob: {}", e.kind()), "this glob");
                self.push(err);
                None
            }
        }
    }

    /// `[run] alone` or `whole`: the test files each glob matches; a glob that matches none is
    /// a mistake.
    fn file_globs(
        &mut self,
        globs: &[Spanned<String>],
        key: &str,
        files: &[TestFile],
    ) -> Vec<String> {
        let mut alone = BTreeSet::new();
        for g in globs {
            let Some((s, glob)) = self.glob(g) else {
                continue;
            };
            let matcher = glob.compile_matcher();
            let matched: Vec<&TestFile> =
                files.iter().filter(|f| matcher.is_match(&f.path)).collect();
            if matched.is_empty() && !files.is_empty() {
                let err = self
                    .error(
                        g.span(),
                        format!("`{s}` matches no test file"),
                        "matches nothing",
                    )
                    .with_help(format!(
                        "`{key}` names test files (as `include` finds them), relative to root"
                    ));
                self.push(err);
            }
            alone.extend(matched.into_iter().map(|f| f.path.clone()));
        }
        alone.into_iter().collect()
    }

    /// Expands the include globs below root, minus the excludes; each include must match something.
    fn files(&mut self, raw: &RawPlan, root: &Path) -> Option<Vec<TestFile>> {
        let mut includes = Vec::new();
        for g in raw.tests.include.get_ref() {
            if let Some((s, glob)) = self.glob(g) {
                includes.push((g.span(), s, glob.compile_matcher()));
            }
        }
        if raw.tests.include.get_ref().is_empty() {
            let err = self
                .error(
                    raw.tests.include.span(),
                    "no test globs",
                    "add at least one glob",
                )
                .with_help("e.g. include = [\"tests/e2e/test_*.py\"]");
            self.push(err);
            return None;
        }
        let mut exclude = GlobSetBuilder::new();
        for g in &raw.tests.exclude {
            if let Some((_, glob)) = self.glob(g) {
                exclude.add(glob);
            }
        }
        let exclude = exclude.build().unwrap_or_else(|_| GlobSet::empty());
        let mut found = BTreeSet::new();
        for (span, text, matcher) in &includes {
            let mut matched = 0;
            for path in walk_from(root, text) {
                if matcher.is_match(&path) {
                    matched += 1;
                    if !exclude.is_match(&path) {
                        found.insert(path);
                    }
                }
            }
            if matched == 0 {
                let err = self
                    .error(
                        span.clone(),
                        format!("`{text}` matches no file under {}", root.display()),
                        "matches nothing",
                    )
                    .with_help(
                        "globs are relative to `root`; check the path and the plan's `root`",
                    );
                self.push(err);
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        if found.is_empty() {
            let err = self.error(
                raw.tests.include.span(),
                "every matching file is excluded",
                "no test file is left",
            );
            self.push(err);
            return None;
        }
        let mut files = unique_stems(found.into_iter().collect());
        for f in &mut files {
            f.size = std::fs::metadata(root.join(&f.path)).map_or(0, |m| m.len());
        }
        Some(files)
    }

    fn toml_error(self, e: toml::de::Error) -> PlanError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let mut err = self.error(span, message.clone(), "here");
        // serde's "unknown field `x`, expected one of `a`, `b`": suggest the closest.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((field, expected)) = rest.split_once('`') {
                let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
                err.label = "unknown key".into();
                err.help = Some(match suggest(field, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys here: {}", known.join(", ")),
                });
            }
        } else if message.starts_with("unknown variant") {
            err.label = "not one of the allowed values".into();
        } else if message.starts_with("invalid type") {
            err.label = "wrong type".into();
        } else if message.starts_with("missing field") {
            err.label = "in this table".into();
        }
        err
    }

    fn finish(mut self) -> PlanError {
        let mut first = self.errors.remove(0);
        first.related = std::mem::take(&mut self.errors);
        first
    }

    fn finish_with(mut self, e: PlanError) -> PlanError {
        self.errors.insert(0, e);
        self.finish()
    }
}

/// Walks only below the literal (glob-free) prefix of `glob`, yielding `/`-separated paths relative
/// to root; hidden folders other than the prefix itself are skipped (virtualenvs, .git).
pub(crate) fn walk_from(root: &Path, glob: &str) -> Vec<String> {
    let prefix: Vec<&str> = glob
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .collect();
    let prefix = if prefix.len() == glob.split('/').count() {
        // No glob characters: the prefix is the file itself; walk its folder.
        prefix[..prefix.len().saturating_sub(1)].join("/")
    } else {
        prefix.join("/")
    };
    let start: PathBuf = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        root.join(&prefix)
    };
    let walk = walkdir::WalkDir::new(&start)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    relative_files(walk, root)
}

/// The files a walk finds, as `/`-separated paths relative to `root`.
pub fn relative_files(
    walk: walkdir::FilterEntry<walkdir::IntoIter, impl FnMut(&walkdir::DirEntry) -> bool>,
    root: &Path,
) -> Vec<String> {
    walk.filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?;
            Some(rel.to_string_lossy().replace('\\', "/"))
        })
        .collect()
}

/// File stems, made unique by prefixing parent folder names where two files share one.
fn unique_stems(paths: Vec<String>) -> Vec<TestFile> {
    let stem = |p: &str, depth: usize| -> String {
        let parts: Vec<&str> = p.split('/').collect();
        let n = parts.len();
        let last = parts[n - 1];
        let last = last
            .rsplit_once('.')
            .map(|(s, _)| s)
            .filter(|s| !s.is_empty())
            .unwrap_or(last);
        let mut v: Vec<&str> = parts[n.saturating_sub(depth + 1)..n - 1].to_vec();
        v.push(last);
        v.join("_")
    };
    let mut depth = vec![0usize; paths.len()];
    loop {
        let stems: Vec<String> = paths.iter().zip(&depth).map(|(p, d)| stem(p, *d)).collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &stems {
            *counts.entry(s).or_default() += 1;
        }
        let mut changed = false;
        for (i, s) in stems.iter().enumerate() {
            if counts[s.as_str()] > 1 && depth[i] < paths[i].split('/').count() - 1 {
                depth[i] += 1;
                changed = true;
            }
        }
        if !changed {
            return paths
                .iter()
                .zip(stems)
                .map(|(p, s)| TestFile {
                    path: p.clone(),
                    stem: s,
                    size: 0,
                })
                .collect();
        }
    }
}

/// The variable name when `word` is a shell-style assignment (`NAME=value`).
fn env_assignment(word: &str) -> Option<String> {
    let (name, _) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then(|| name.to_string())
}

/// Removes `.` and `..` components without touching the file system (the folder may not exist yet).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A template URL must be a PostgreSQL URL naming a database.
fn check_template_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid template URL: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "template URL must start with postgresql://, not {}://",
            parsed.scheme()
        ));
    }
    let db = parsed.path().trim_start_matches('/');
    if db.is_empty() {
        return Err("template URL names no database".into());
    }
    if matches!(db, "postgres" | "template0" | "template1") {
        return Err(format!(
            "`{db}` cannot be the template: name a database of your own"
        ));
    }
    Ok(())
}

/// The state folder (`{root}/.e2e-plan`) of a plan, read leniently: rollback must work even when
/// the rest of the plan no longer loads (a glob that matches nothing now, say).
pub fn state_dir_of(path: &Path) -> Result<PathBuf, Box<PlanError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Box::new(PlanError::plain(format!(
            "cannot read plan file {}: {e}",
            path.display()
        )))
    })?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| {
        Box::new(PlanError::plain(format!(
            "{}: {}",
            path.display(),
            e.message()
        )))
    })?;
    let root = value.get("root").and_then(|r| r.as_str()).unwrap_or(".");
    let root = interpolate_env(root, &|n| std::env::var(n).ok(), false)
        .unwrap_or_else(|_| root.to_string());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(dir.join(root).join(".e2e-plan"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_unique() {
        let files = unique_stems(vec![
            "a/test_x.py".into(),
            "b/test_x.py".into(),
            "b/test_y.py".into(),
        ]);
        let stems: Vec<_> = files.iter().map(|f| f.stem.as_str()).collect();
        assert_eq!(stems, ["a_test_x", "b_test_x", "test_y"]);
    }

    #[test]
    fn assignments_are_recognised() {
        assert_eq!(
            env_assignment("POSTGRES_DB={db_name}").as_deref(),
            Some("POSTGRES_DB")
        );
        assert_eq!(env_assignment("_X=1").as_deref(), Some("_X"));
        assert_eq!(env_assignment("--junitxml=x"), None);
        assert_eq!(env_assignment("./bin=x"), None);
        assert_eq!(env_assignment("9X=1"), None);
        assert_eq!(env_assignment("pytest"), None);
    }

    #[test]
    fn template_url_checks() {
        assert!(check_template_url("postgresql://u@h:5432/app").is_ok());
        assert!(check_template_url("mysql://u@h/app").is_err());
        assert!(check_template_url("postgresql://u@h:5432/").is_err());
        assert!(check_template_url("postgresql://u@h/postgres").is_err());
    }
}
