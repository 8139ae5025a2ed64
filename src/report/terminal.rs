//! The one reporter: turns events into terminal output (a live progress bar on a terminal, plain
//! lines otherwise, never both) and, when the run finishes, the report files and the summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use comfy_table::{presets, Cell, CellAlignment, Color, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use owo_colors::OwoColorize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::failures::FailureOutput;
use super::summary::{RunSummary, Verdict};
use crate::events::{Event, Phase};

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

pub struct Reporter {
    color: bool,
    color_choice: ColorChoice,
    format: SummaryFormat,
    bar: Option<ProgressBar>,
    start: Instant,
    total: usize,
    finished: usize,
    running: BTreeMap<usize, (String, Phase, Instant)>,
    github: bool,
    /// When the summary was printed: the closing line's time leaves out what follows it.
    summary_at: Option<Instant>,
    failure_output: FailureOutput,
}

impl Reporter {
    /// `start`: when the command started; every time shown counts from there.
    pub fn new(
        color: ColorChoice,
        format: SummaryFormat,
        failure_output: FailureOutput,
        total: usize,
        start: Instant,
    ) -> Self {
        let tty =
            std::io::stderr().is_terminal() && !crate::plan::is_ci(&|n| std::env::var(n).ok());
        let bar = tty.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
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
            color: color.enabled(supports_color::Stream::Stderr),
            color_choice: color,
            format,
            bar,
            start,
            summary_at: None,
            failure_output,
            total,
            finished: 0,
            running: BTreeMap::new(),
            github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        }
    }

    /// Handles events until the channel closes.
    pub async fn run(mut self, mut rx: UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            self.handle(ev);
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let (Some(at), SummaryFormat::Human) = (self.summary_at, self.format) {
            self.line(format!(
                "{} done: the cleanup after the summary took {:.2}s",
                self.stamp(),
                at.elapsed().as_secs_f64()
            ));
        }
    }

    fn line(&self, text: String) {
        let text = crate::redact::scrub(&text).into_owned();
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    fn stamp(&self) -> String {
        format!("[{:>7.2}s]", self.start.elapsed().as_secs_f64())
    }

    fn paint(&self, v: Verdict) -> String {
        let l = v.label();
        if !self.color {
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

    fn handle(&mut self, ev: Event) {
        match ev {
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
            Event::WorkerFinished(r) => {
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
            Event::Warning(w) => {
                let head = if self.color {
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
            Event::RunFinished { summary, written } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let paths = write_files(&summary);
                self.print_summary(&summary, &paths);
                self.summary_at = Some(Instant::now());
                let _ = written.send(paths);
            }
        }
        let _ = self.total;
    }

    fn print_summary(&self, s: &RunSummary, paths: &[PathBuf]) {
        let mut err = std::io::stderr().lock();
        if let Some(e) = &s.error {
            let head = if self.color {
                "error:".red().bold().to_string()
            } else {
                "error:".into()
            };
            let _ = writeln!(err, "\n{head} {}", crate::redact::scrub(&e.message));
            if let Some(d) = e.detail.as_deref().filter(|d| !d.trim().is_empty()) {
                for l in d.lines() {
                    let _ = writeln!(err, "  │ {}", crate::redact::scrub(l));
                }
            }
        }
        if self.github {
            // Workflow commands are read from both streams; keep stdout pure JSON under --format json.
            let cwd = std::env::current_dir().unwrap_or_default();
            for line in annotations(s, &cwd) {
                let line = crate::redact::scrub(&line).into_owned();
                if self.format == SummaryFormat::Json {
                    let _ = writeln!(err, "{line}");
                } else {
                    let _ = writeln!(std::io::stdout(), "{line}");
                }
            }
        }
        if self.format == SummaryFormat::Json {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                crate::redact::scrub(&serde_json::to_string_pretty(s).unwrap_or_default())
            );
            return;
        }
        let color = self.color_choice.enabled(supports_color::Stream::Stdout);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n{}", summary_table(s, color));
        let failures = super::failures::render(&s.workers, self.failure_output, &s.report_dir);
        let _ = write!(out, "{}", crate::redact::scrub(&failures));
        let _ = writeln!(out, "{}", summary_line(s));
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
        }
        if let Some(cmd) = &s.cleanup_command {
            let _ = writeln!(out, "drop kept databases with: {cmd}");
        }
        for p in paths {
            let _ = writeln!(out, "report: {}", p.display());
        }
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
            out.push(format!(
                "::error file={}{at}::{}",
                rel(f.file.as_deref().unwrap_or(&w.file)),
                gha_data(&format!("{}: {}", f.id, f.message))
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

/// junit.xml, summary.json and report.html; written on every ending, never deleted by cleanup.
pub fn write_files(s: &RunSummary) -> Vec<PathBuf> {
    let dir = &s.report_dir;
    let _ = std::fs::create_dir_all(dir);
    let mut written = Vec::new();
    let junit = dir.join("junit.xml");
    if super::junit::write_run(s, &junit).is_ok() {
        written.push(junit);
    }
    let json = dir.join("summary.json");
    if serde_json::to_string_pretty(s)
        .ok()
        .and_then(|t| std::fs::write(&json, crate::redact::scrub(&t).into_owned() + "\n").ok())
        .is_some()
    {
        written.push(json);
    }
    let html = dir.join("report.html");
    if std::fs::write(
        &html,
        crate::redact::scrub(&super::html::render(s)).as_bytes(),
    )
    .is_ok()
    {
        written.push(html);
    }
    written
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
            Cell::new(format!("{:.2}s", w.duration)).set_alignment(CellAlignment::Right),
            Cell::new(logs),
        ]);
    }
    t.to_string()
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
    let parallel = if s.wall_secs > 0.0 {
        s.work_secs / s.wall_secs
    } else {
        0.0
    };
    format!(
        "{} files: {} in {:.1}s (Σ {:.1}s of work, ×{:.1} parallel)",
        s.workers.len(),
        parts.join(", "),
        s.wall_secs,
        s.work_secs,
        parallel
    )
}
