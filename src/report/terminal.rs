//! The display: a sink that turns the run's events into terminal output (a live progress bar on a
//! terminal, plain lines otherwise, never both) and, when the run finishes, the summary: the
//! table, the failures, the closing lines. It writes only to the writers it is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comfy_table::{presets, Cell, CellAlignment, Color, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use owo_colors::OwoColorize;

use super::failures::{evidence, kind_label, FailureOutput};
use crate::events::{Event, Phase, Written};
use crate::model::{RunSummary, Verdict, WorkerResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Colours only on a terminal, never with NO_COLOR (unless forced).
    pub fn enabled(self, stream: supports_color::Stream) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && supports_color::on(stream).is_some()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// A table and a closing line.
    Human,
    /// The summary.json document on stdout.
    Json,
}

/// What the display knows about where it writes. The caller finds it out (`detect`); the
/// display never reads the environment itself, so its output can be tested with any of these.
#[derive(Debug, Clone)]
pub struct DisplayEnv {
    /// stderr is a terminal and this is not CI: a live progress bar instead of plain lines.
    pub live: bool,
    /// Colours on stderr (progress) and on stdout (table).
    pub color_err: bool,
    pub color_out: bool,
    /// GitHub Actions: workflow-command annotations for failures.
    pub github: bool,
    /// Annotations name files relative to this folder.
    pub cwd: PathBuf,
    /// The terminal's width, for the live bar.
    pub width: u16,
}

impl DisplayEnv {
    /// The real terminal and environment (`CI`, `GITHUB_ACTIONS`, `NO_COLOR`).
    pub fn detect(color: ColorChoice) -> Self {
        DisplayEnv {
            live: std::io::stderr().is_terminal()
                && !crate::plan::is_ci(&|n| std::env::var(n).ok()),
            color_err: color.enabled(supports_color::Stream::Stderr),
            color_out: color.enabled(supports_color::Stream::Stdout),
            github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            cwd: std::env::current_dir().unwrap_or_default(),
            width: rustix::termios::tcgetwinsize(std::io::stderr())
                .map(|w| w.ws_col)
                .ok()
                .filter(|w| *w > 0)
                .unwrap_or(80),
        }
    }
}

/// Where the display writes: stdout (the table, the closing line) and stderr (progress).
pub type Sink = Box<dyn Write + Send>;

/// The display's stderr as the live bar's terminal: the bar draws with ANSI sequences into the
/// same writer the plain lines go to.
#[derive(Clone)]
struct Term {
    out: Arc<Mutex<Sink>>,
    width: u16,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Term")
    }
}

impl Term {
    fn write(&self, text: &str) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(text.as_bytes())
    }
}

impl TermLike for Term {
    fn width(&self) -> u16 {
        self.width
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.write(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.write(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.write(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.write(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.flush()
    }
}

pub struct Reporter {
    env: DisplayEnv,
    format: SummaryFormat,
    bar: Option<ProgressBar>,
    out: Sink,
    err: Term,
    start: Instant,
    finished: usize,
    running: BTreeMap<usize, (String, Phase, Instant)>,
    /// When the summary was printed: the closing line's time leaves out what follows it.
    summary_at: Option<Instant>,
    failure_output: FailureOutput,
}

impl Reporter {
    /// `start`: when the command started; every time shown counts from there.
    pub fn new(
        env: DisplayEnv,
        format: SummaryFormat,
        failure_output: FailureOutput,
        total: usize,
        start: Instant,
        out: Sink,
        err: Sink,
    ) -> Self {
        let err = Term {
            out: Arc::new(Mutex::new(err)),
            width: env.width,
        };
        let bar = env.live.then(|| {
            let target = ProgressDrawTarget::term_like(Box::new(err.clone()));
            let bar = ProgressBar::with_draw_target(Some(total as u64), target);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Reporter {
            env,
            format,
            bar,
            out,
            err,
            start,
            summary_at: None,
            failure_output,
            finished: 0,
            running: BTreeMap::new(),
        }
    }

    /// The end of the command: what ran after the summary, and how long it took.
    fn end(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let (Some(at), SummaryFormat::Human) = (self.summary_at, self.format) {
            let text = format!(
                "{} done: the cleanup after the summary took {:.2}s",
                self.stamp(),
                at.elapsed().as_secs_f64()
            );
            self.line(text);
        }
        let _ = self.out.flush();
        let _ = TermLike::flush(&self.err);
    }

    fn line(&mut self, text: String) {
        let text = crate::redact::scrub(&text).into_owned();
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = self.err.write_line(&text);
            }
        }
    }

    /// Writes straight to stderr (the summary's error lines).
    fn err_line(&self, text: &str) {
        let _ = self.err.write_line(text);
    }

    fn stamp(&self) -> String {
        format!("[{:>7.2}s]", self.start.elapsed().as_secs_f64())
    }

    fn paint(&self, v: Verdict) -> String {
        let l = v.label();
        if !self.env.color_err {
            return l.to_string();
        }
        match v {
            Verdict::Pass => l.green().bold().to_string(),
            Verdict::Fail | Verdict::Error | Verdict::Timeout => l.red().bold().to_string(),
            Verdict::Flaky => l.yellow().bold().to_string(),
            Verdict::Cancelled => l.dimmed().to_string(),
        }
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.finished as u64);
            let msg: Vec<String> = self
                .running
                .values()
                .map(|(f, p, t)| {
                    format!(
                        "{} ({} {:.0}s)",
                        f.rsplit('/').next().unwrap_or(f),
                        p.label(),
                        t.elapsed().as_secs_f64()
                    )
                })
                .collect();
            bar.set_message(msg.join(", "));
        }
    }

    fn handle(&mut self, ev: &Event) {
        match ev.clone() {
            Event::StepStarted { what } => {
                if self.bar.is_none() {
                    self.line(format!("{} {what} …", self.stamp()));
                } else if let Some(bar) = &self.bar {
                    bar.set_message(what);
                }
            }
            Event::StepFinished { what, took, note } => {
                let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
                self.line(format!(
                    "{} {what}: done in {:.2}s{note}",
                    self.stamp(),
                    took.as_secs_f64()
                ));
            }
            Event::Phase {
                worker,
                file,
                attempt,
                phase,
            } => {
                let again = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                if self.bar.is_none() {
                    self.line(format!("{} {file}{again}: {}", self.stamp(), phase.label()));
                }
                self.running.insert(worker, (file, phase, Instant::now()));
                self.refresh();
            }
            Event::WorkerFinished(r) => self.worker_finished(&r),
            Event::PackFinished { worker } => {
                self.running.remove(&worker);
                self.refresh();
            }
            Event::Warning(w) => {
                let head = if self.env.color_err {
                    "warning:".yellow().bold().to_string()
                } else {
                    "warning:".into()
                };
                self.line(format!("{head} {w}"));
            }
            Event::Interrupted { second } => {
                self.line(if second {
                    "second interrupt: killing every worker now".into()
                } else {
                    format!(
                        "interrupted: stopping {} running worker(s) (Ctrl-C again to kill at once)",
                        self.running.len()
                    )
                });
            }
            Event::Written(written) => self.written(&written),
        }
    }

    fn worker_finished(&mut self, r: &WorkerResult) {
        self.running.remove(&r.index);
        if r.attempts.len() == 1 {
            self.finished += 1;
        }
        let attempt = if r.attempts.len() > 1 {
            format!(" attempt {}", r.attempts.len())
        } else {
            String::new()
        };
        let last = r.attempts.last().map(|a| a.verdict).unwrap_or(r.verdict);
        self.line(format!(
            "{} {} {}{attempt} ({:.2}s)",
            self.stamp(),
            self.paint(last),
            r.file,
            r.attempts.last().map(|a| a.duration).unwrap_or(0.0)
        ));
        self.refresh();
    }

    /// The run is over: the summary (the table, the failures, the closing lines).
    fn run_finished(&mut self, summary: &RunSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.print_summary(summary);
        self.summary_at = Some(Instant::now());
    }

    /// Every sink has written its files: each one written is named, and one that could not be
    /// written is said, never dropped.
    fn written(&mut self, written: &[Written]) {
        if self.format == SummaryFormat::Human {
            for path in written.iter().filter_map(|w| w.as_ref().ok()) {
                let _ = writeln!(self.out, "report: {}", path.display());
            }
            let _ = self.out.flush();
        }
        for (path, e) in written.iter().filter_map(|w| w.as_ref().err()) {
            let head = if self.env.color_err {
                "warning:".yellow().bold().to_string()
            } else {
                "warning:".into()
            };
            self.line(format!("{head} cannot write {}: {e}", path.display()));
        }
    }

    fn print_summary(&mut self, s: &RunSummary) {
        if let Some(e) = &s.error {
            let head = if self.env.color_err {
                "error:".red().bold().to_string()
            } else {
                "error:".into()
            };
            self.err_line(&format!("\n{head} {}", crate::redact::scrub(&e.message)));
            if let Some(d) = e.detail.as_deref().filter(|d| !d.trim().is_empty()) {
                for l in d.lines() {
                    self.err_line(&format!("  │ {}", crate::redact::scrub(l)));
                }
            }
        }
        if self.env.github {
            // Workflow commands are read from both streams; keep stdout pure JSON under --format json.
            for line in annotations(s, &self.env.cwd) {
                let line = crate::redact::scrub(&line).into_owned();
                if self.format == SummaryFormat::Json {
                    self.err_line(&line);
                } else {
                    let _ = writeln!(self.out, "{line}");
                }
            }
        }
        if self.format == SummaryFormat::Json {
            let json = serde_json::to_string_pretty(s).unwrap_or_default();
            let _ = writeln!(self.out, "{}", crate::redact::scrub(&json));
            return;
        }
        let out = &mut self.out;
        let _ = writeln!(out, "\n{}", summary_table(s, self.env.color_out));
        let failures = super::failures::render(&s.workers, self.failure_output, &s.report_dir);
        let _ = write!(out, "{}", crate::redact::scrub(&failures));
        let _ = writeln!(out, "{}", summary_line(s));
        for line in prediction_lines(s) {
            let _ = writeln!(out, "{line}");
        }
        for line in unused_lines(s) {
            let _ = writeln!(out, "{line}");
        }
        if s.databases.from_pool > 0 {
            let _ = writeln!(
                out,
                "databases: {} from the pool, {} cloned",
                s.databases.from_pool, s.databases.cloned
            );
        }
        for k in &s.kept_databases {
            let _ = writeln!(
                out,
                "kept database {} for {}\n  {}\n  logs: {}",
                k.name,
                k.file,
                k.url,
                k.log_dir.display()
            );
            if let Some(p) = &k.password_file {
                let _ = writeln!(out, "  password: in {} (an owner-only file)", p.display());
            }
            for r in &k.resources {
                let _ = writeln!(out, "  kept with it: {r}");
            }
        }
        if let Some(cmd) = &s.cleanup_command {
            let _ = writeln!(out, "drop kept databases with: {cmd}");
        }
        let _ = out.flush();
    }
}

impl crate::events::Sink for Reporter {
    fn event(&mut self, event: &Event) {
        self.handle(event);
    }

    /// Prints the summary; the display writes no file.
    fn finish(&mut self, summary: &RunSummary) -> Vec<Written> {
        self.run_finished(summary);
        Vec::new()
    }

    fn close(&mut self) {
        self.end();
    }
}

/// GitHub workflow commands for the files that fail the run: one per failing test, at its line
/// where the JUnit says it, else one for the file.
fn annotations(s: &RunSummary, cwd: &std::path::Path) -> Vec<String> {
    let rel = |file: &str| {
        let path = s.root.join(file);
        let path = path
            .strip_prefix(cwd)
            .unwrap_or(&path)
            .display()
            .to_string();
        gha_escape(&path)
    };
    let mut out = Vec::new();
    for w in s.workers.iter().filter(|w| w.verdict.fails(s.flaky_policy)) {
        let logs = w
            .log_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "none".into());
        if w.failures.is_empty() {
            out.push(format!(
                "::error file={}::{} {} (logs: {})",
                rel(&w.file),
                gha_escape(&w.file),
                w.verdict.label(),
                gha_escape(&logs)
            ));
        }
        for f in &w.failures {
            let at = f.line.map(|l| format!(",line={l}")).unwrap_or_default();
            // Its screenshot and trace, where the report folder (uploaded as the CI artifact)
            // holds them.
            let mut text = format!("{}: {}", f.id, f.message);
            for a in evidence(&w.artifacts, &f.id) {
                let _ = write!(
                    text,
                    "\n{}: {}",
                    kind_label(a.kind),
                    s.report_dir.join(&a.path).display()
                );
            }
            out.push(format!(
                "::error file={}{at}::{}",
                rel(f.file.as_deref().unwrap_or(&w.file)),
                gha_data(&text)
            ));
        }
    }
    out
}

/// Escapes a workflow command's message (only properties need `:` and `,` escaped).
fn gha_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a value for a GitHub workflow command.
fn gha_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
        .replace(':', "%3A")
        .replace(',', "%2C")
}

pub fn summary_table(s: &RunSummary, color: bool) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    if !color {
        t.force_no_tty();
    } else {
        t.enforce_styling();
    }
    t.set_header(vec![
        "file", "result", "passed", "failed", "duration", "logs",
    ]);
    for w in &s.workers {
        let (passed, failed) = w
            .counts
            .map(|c| (c.passed.to_string(), (c.failed + c.errors).to_string()))
            .unwrap_or(("-".into(), "-".into()));
        let mut result = Cell::new(w.verdict.label());
        if color {
            result = result.fg(match w.verdict {
                Verdict::Pass => Color::Green,
                Verdict::Flaky => Color::Yellow,
                Verdict::Cancelled => Color::Grey,
                _ => Color::Red,
            });
        }
        let logs = match &w.log_dir {
            Some(dir) if w.verdict != Verdict::Pass => dir.display().to_string(),
            _ => String::new(),
        };
        t.add_row(vec![
            Cell::new(&w.file),
            result,
            Cell::new(passed).set_alignment(CellAlignment::Right),
            Cell::new(failed).set_alignment(CellAlignment::Right),
            // A file that never started has no duration to show.
            Cell::new(if w.attempts.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}s", w.duration)
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(logs),
        ]);
    }
    t.to_string()
}

/// What the closing lines say of the run's prediction and its start-ups: a run far off what was
/// predicted (under two thirds or over half again), and, when a worker per file spent most of
/// its CPU starting up, what `units = "auto"` would predict and what packing means.
/// A warning per file whose tests never opened a session on their worker's database.
pub fn unused_lines(s: &RunSummary) -> Vec<String> {
    if s.unused_databases.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = s
        .unused_databases
        .iter()
        .map(|u| {
            format!(
                "warning: {} never connected to its database {}",
                u.file, u.database
            )
        })
        .collect();
    lines.push("  its copy of the template was made for nothing: the tests used another database (pytest-django makes test_<name> unless told otherwise) or none; see \"The worker's database is the test database\" in docs/guide.md".into());
    lines
}

pub fn prediction_lines(s: &RunSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = s.predicted_wall_secs.filter(|p| *p > 0.0) {
        let ratio = s.wall_secs / p;
        if !(2.0 / 3.0..=1.5).contains(&ratio) {
            out.push(format!(
                "predicted {p:.1}s from the recorded timings: this run took {ratio:.1}× that"
            ));
        }
    }
    if let Some(st) = &s.startups {
        if let (Some(auto), Some(units)) = (st.auto_wall_secs, &st.auto_units) {
            let against = match st.file_wall_secs {
                Some(file) => format!(
                    "where a worker per file is predicted {file:.1}s (this run took {:.1}s)",
                    s.wall_secs
                ),
                None => format!("against this run's {:.1}s", s.wall_secs),
            };
            out.push(format!(
                "start-ups took {:.0}% of the workers' CPU ({:.1}s): `units = \"auto\"` predicts {auto:.1}s for this suite ({units}) {against}. A pack runs its files one after another in one test process and one database, as plain pytest does (see the plan reference, `[run] units`)",
                st.share * 100.0,
                st.cpu_secs,
            ));
        }
    }
    out
}

/// `N files: P passed, F failed, … in W.Ws (Σ S.Ss of work, ×R parallel)`.
pub fn summary_line(s: &RunSummary) -> String {
    let mut parts = vec![format!("{} passed", s.count(Verdict::Pass))];
    for (v, word) in [
        (Verdict::Fail, "failed"),
        (Verdict::Flaky, "flaky"),
        (Verdict::Timeout, "timed out"),
        (Verdict::Error, "errored"),
        (Verdict::Cancelled, "cancelled"),
    ] {
        let n = s.count(v);
        if n > 0 || v == Verdict::Fail {
            parts.push(format!("{n} {word}"));
        }
    }
    let head = format!(
        "{} files: {} in {:.1}s",
        s.workers.len(),
        parts.join(", "),
        s.wall_secs
    );
    // No file ran (a setup failure, an empty shard): there is no work to sum.
    if s.work_secs <= 0.0 || s.wall_secs <= 0.0 {
        return head;
    }
    format!(
        "{head} (Σ {:.1}s of work, ×{:.1} parallel)",
        s.work_secs,
        s.work_secs / s.wall_secs
    )
}

#[cfg(test)]
mod tests {
    //! The display as a user sees it, off a terminal (plain progress lines), in the five
    //! situations that matter: green, failing, setup failed, interrupted, and the progress lines.
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::{Attempt, Counts, DatabaseSources, RunError, WorkerResult};
    use crate::plan::FlakyPolicy;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    fn worker(
        index: usize,
        file: &str,
        verdict: Verdict,
        passed: usize,
        failed: usize,
    ) -> WorkerResult {
        let stem = file
            .trim_start_matches("tests/")
            .trim_end_matches(".py")
            .to_string();
        let log_dir = PathBuf::from("/project/target/e2e/workers").join(&stem);
        let db = format!("app_test_ab12cd34_{index}");
        let plan = crate::planner::WorkerPlan::bare(index, file, &stem, log_dir, db);
        let mut a = Attempt::new(1, plan.db_name(), &plan.log_dir);
        a.verdict = verdict;
        a.duration = 2.5 + index as f64;
        a.counts = (verdict != Verdict::Cancelled).then_some(Counts {
            tests: passed + failed,
            passed,
            failed,
            errors: 0,
            skipped: 0,
        });
        let mut r = WorkerResult::new(plan.index, &plan.file, &plan.stem, &a);
        r.push_attempt(a);
        r
    }

    fn summary(workers: Vec<WorkerResult>, exit_code: i32, error: Option<RunError>) -> RunSummary {
        let exit_code = crate::model::ExitCode::of(exit_code);
        RunSummary {
            cluster: None,
            prepared: false,
            version: 1,
            run_id: "ab12cd34".into(),
            plan: "plans/default.toml".into(),
            root: "/project".into(),
            report_dir: std::env::temp_dir().join("e2e-plan-display-test-never-written"),
            started: "2026-11-27T08:00:00.000Z".into(),
            ended: "2026-11-27T08:00:07.400Z".into(),
            wall_secs: 7.4,
            jobs: "auto".into(),
            most_at_once: 2,
            work_secs: workers.iter().map(|w| w.duration).sum(),
            exit_code,
            error,
            interrupted: exit_code == crate::model::ExitCode::Interrupted,
            flaky_policy: FlakyPolicy::Pass,
            kept_databases: Vec::new(),
            cleanup_command: None,
            databases: DatabaseSources::default(),
            shard: None,
            predicted_wall_secs: None,
            startups: None,
            unused_databases: Vec::new(),
            workers,
        }
    }

    /// Feeds the events to a display off a terminal, without colour; returns (stdout, stderr)
    /// with the run-specific times redacted.
    fn show(events: Vec<Event>, s: RunSummary) -> String {
        let (out, err) = (Buffer::default(), Buffer::default());
        let env = DisplayEnv {
            live: false,
            color_err: false,
            color_out: false,
            github: false,
            cwd: "/project".into(),
            width: 80,
        };
        let mut r = Reporter::new(
            env,
            SummaryFormat::Human,
            FailureOutput::Short,
            s.workers.len(),
            Instant::now(),
            Box::new(out.clone()),
            Box::new(err.clone()),
        );
        // As the run's owner feeds it: every event, the summary, what the sinks wrote, the end.
        use crate::events::Sink as _;
        for e in events {
            r.event(&e);
        }
        r.finish(&s);
        r.event(&Event::Written(vec![Ok(PathBuf::from(
            "/project/target/e2e/junit.xml",
        ))]));
        r.close();
        let stamp = regex_lite(&err.text());
        format!("--- stdout\n{}--- stderr\n{stamp}", out.text())
    }

    /// `[   1.23s]` and `took 0.00s` vary from run to run.
    fn regex_lite(text: &str) -> String {
        text.lines()
            .map(|l| {
                let l = match (l.find('['), l.find("s]")) {
                    (Some(0), Some(end)) => format!("[ X.XXs]{}", &l[end + 2..]),
                    _ => l.to_string(),
                };
                match l.find("took ") {
                    Some(i) => format!("{}took X.XXs", &l[..i]),
                    None => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    fn progress(file: &str, index: usize, v: Verdict) -> Vec<Event> {
        let mut events: Vec<Event> = [Phase::Cloning, Phase::Starting, Phase::Testing]
            .into_iter()
            .map(|phase| Event::Phase {
                worker: index,
                file: file.into(),
                attempt: 1,
                phase,
            })
            .collect();
        events.push(Event::WorkerFinished(Box::new(worker(
            index, file, v, 3, 0,
        ))));
        events
    }

    fn setup_events() -> Vec<Event> {
        vec![
            Event::StepStarted {
                what: "prepare template app_test".into(),
            },
            Event::StepFinished {
                what: "prepare template app_test".into(),
                took: Duration::from_millis(1250),
                note: Some("fingerprint 0123456789ab matches: prepare skipped".into()),
            },
        ]
    }

    #[test]
    fn a_green_run_with_plain_progress_lines() {
        let mut events = setup_events();
        events.extend(progress("tests/test_cart.py", 0, Verdict::Pass));
        events.extend(progress("tests/test_login.py", 1, Verdict::Pass));
        let s = summary(
            vec![
                worker(0, "tests/test_cart.py", Verdict::Pass, 4, 0),
                worker(1, "tests/test_login.py", Verdict::Pass, 7, 0),
            ],
            0,
            None,
        );
        insta::assert_snapshot!(show(events, s));
    }

    #[test]
    fn a_failing_run() {
        let mut events = progress("tests/test_cart.py", 0, Verdict::Pass);
        events.extend(progress("tests/test_login.py", 1, Verdict::Fail));
        let mut bad = worker(1, "tests/test_login.py", Verdict::Fail, 6, 1);
        bad.failures = vec![crate::report::failures::FailedTest {
            service_lines: Vec::new(),
            id: "tests/test_login.py::test_wrong_password".into(),
            message: "assert 500 == 401".into(),
            file: Some("tests/test_login.py".into()),
            line: Some(12),
            detail: vec![
                ">       assert resp.status == 401".into(),
                "E       assert 500 == 401".into(),
            ],
            server_lines: vec!["ERROR login: KeyError: 'password'".into()],
        }];
        let s = summary(
            vec![worker(0, "tests/test_cart.py", Verdict::Pass, 4, 0), bad],
            1,
            None,
        );
        insta::assert_snapshot!(show(events, s));
    }

    #[test]
    fn a_setup_failure() {
        let events = vec![
            Event::StepStarted {
                what: "prepare template app_test".into(),
            },
            Event::Warning("could not drop 1 database(s)".into()),
        ];
        // The files never started (prepare failed first): as the run records them, with no
        // time and no log folder.
        let not_run = |index: usize, file: &str, stem: &str| {
            WorkerResult::not_run(index, file, stem, &format!("app_test_ab12cd34_{index}"))
        };
        let s = summary(
            vec![
                not_run(0, "tests/test_cart.py", "test_cart"),
                not_run(1, "tests/test_login.py", "test_login"),
            ],
            3,
            Some(RunError {
                message: "prepare command `alembic upgrade head` failed (exit status: 1)".into(),
                detail: Some("INFO  [alembic] Running upgrade -> 0002\nsqlalchemy.exc.ProgrammingError: relation \"users\" does not exist".into()),
            }),
        );
        let shown = show(events, s);
        assert!(
            !shown.contains("workers/"),
            "log folders of files that never ran: {shown}"
        );
        assert!(
            !shown.contains("Σ"),
            "work of files that never ran: {shown}"
        );
        insta::assert_snapshot!(shown);
    }

    #[test]
    fn an_interrupted_run() {
        let mut events = progress("tests/test_cart.py", 0, Verdict::Pass);
        events.push(Event::Phase {
            worker: 1,
            file: "tests/test_login.py".into(),
            attempt: 1,
            phase: Phase::Testing,
        });
        events.push(Event::Interrupted { second: false });
        events.push(Event::Interrupted { second: true });
        events.push(Event::WorkerFinished(Box::new(worker(
            1,
            "tests/test_login.py",
            Verdict::Cancelled,
            0,
            0,
        ))));
        let s = summary(
            vec![
                worker(0, "tests/test_cart.py", Verdict::Pass, 4, 0),
                worker(1, "tests/test_login.py", Verdict::Cancelled, 0, 0),
            ],
            130,
            None,
        );
        insta::assert_snapshot!(show(events, s));
    }

    /// A sink that writes down every call it gets.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl crate::events::Sink for Recorder {
        fn event(&mut self, e: &Event) {
            self.0.lock().unwrap().push(format!("{e:?}"));
        }
        fn finish(&mut self, s: &RunSummary) -> Vec<crate::events::Written> {
            self.0.lock().unwrap().push(format!("finish {}", s.run_id));
            Vec::new()
        }
        fn close(&mut self) {
            self.0.lock().unwrap().push("close".into());
        }
    }

    /// The owner feeds every sink the same stream: two recorders on either side of the display
    /// see the same calls, in the same order, and the display shows them.
    #[tokio::test]
    async fn a_new_sink_beside_the_display_gets_the_same_events() {
        use crate::steps::owner::{self, Question, RunEvent};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/test_a.py"), "").unwrap();
        let plan_path = dir.path().join("plan.toml");
        std::fs::write(
            &plan_path,
            "[tests]\ninclude = [\"tests/test_*.py\"]\n[test]\ncommand = [\"pytest\", \"{file}\"]\n",
        )
        .unwrap();
        let plan = crate::plan::load(&plan_path, &Default::default()).unwrap();
        let dag = crate::planner::build(
            &plan,
            &crate::planner::PlanOptions {
                run_id: "ab12cd34".into(),
                ..Default::default()
            },
        );
        let config = Arc::new(crate::steps::RunConfig::new(
            plan,
            dag,
            false,
            Instant::now(),
        ));
        let (a, b) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (out, err) = (Buffer::default(), Buffer::default());
        let env = DisplayEnv {
            live: false,
            color_err: false,
            color_out: false,
            github: false,
            cwd: "/project".into(),
            width: 80,
        };
        let display = Reporter::new(
            env,
            SummaryFormat::Human,
            FailureOutput::Short,
            1,
            Instant::now(),
            Box::new(out.clone()),
            Box::new(err.clone()),
        );
        let sinks: Vec<Box<dyn crate::events::Sink>> = vec![
            Box::new(Recorder(a.clone())),
            Box::new(display),
            Box::new(Recorder(b.clone())),
        ];
        let cancel = crate::engine::Cancel::default();
        let (owner, handle, rx) = owner::new(config.clone(), sinks, cancel.clone());
        let task = tokio::spawn(owner.run(rx));
        handle.say(Event::Warning("a warning".into()));
        let w = &config.dag.workers[0];
        let mut attempt = crate::model::Attempt::new(1, w.db_name(), &w.log_dir);
        attempt.verdict = Verdict::Pass;
        handle.send(RunEvent::Attempt {
            worker: 0,
            attempt: Box::new(attempt),
        });
        handle.send(RunEvent::Signal);
        handle.ask(Question::Finish).await;
        drop(handle);
        let code = task.await.unwrap();
        assert_eq!(code, crate::model::ExitCode::Interrupted);
        assert!(cancel.stop.is_cancelled(), "a signal stops the run");
        let (a, b) = (a.lock().unwrap().clone(), b.lock().unwrap().clone());
        assert_eq!(a, b);
        let kinds: Vec<&str> = a
            .iter()
            .map(|l| l.split(['(', ' ', '{']).next().unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            [
                "Warning",
                "WorkerFinished",
                "Interrupted",
                "finish",
                "Written",
                "close"
            ]
        );
        let shown = err.text();
        assert!(shown.contains("warning: a warning"), "{shown}");
        assert!(shown.contains("PASS tests/test_a.py"), "{shown}");
        assert!(shown.contains("interrupted: stopping"), "{shown}");
        assert!(out.text().contains("1 files: 1 passed"), "{}", out.text());
    }
}
