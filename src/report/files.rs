//! The report files, each a sink of the run: `junit.xml`, `summary.json` and `report.html`.
//! Written on every ending (a setup failure and Ctrl-C too), never deleted by cleanup. Each says
//! whether it was written; the display reports every one that was not.

use std::path::{Path, PathBuf};

use crate::events::{Event, Sink, Written};
use crate::model::RunSummary;

/// A report file made from the run's summary, in the report folder.
pub trait ReportFile: Send {
    /// Its name in the report folder.
    fn file_name(&self) -> &'static str;
    fn write(&self, s: &RunSummary, path: &Path) -> Result<(), String>;
}

/// The merged JUnit of every worker.
pub struct Junit;
/// The run as JSON (`"version": 1`).
pub struct SummaryJson;
/// The self-contained timeline page.
pub struct Html;

impl ReportFile for Junit {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }
    fn write(&self, s: &RunSummary, path: &Path) -> Result<(), String> {
        super::junit::write_run(s, path).map_err(|e| e.to_string())
    }
}

impl ReportFile for SummaryJson {
    fn file_name(&self) -> &'static str {
        "summary.json"
    }
    fn write(&self, s: &RunSummary, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
        std::fs::write(path, crate::redact::scrub(&text).into_owned() + "\n")
            .map_err(|e| e.to_string())
    }
}

impl ReportFile for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }
    fn write(&self, s: &RunSummary, path: &Path) -> Result<(), String> {
        std::fs::write(
            path,
            crate::redact::scrub(&super::html::render(s)).as_bytes(),
        )
        .map_err(|e| e.to_string())
    }
}

/// A report file as a sink: it needs no event but the end.
pub struct FileSink(pub Box<dyn ReportFile>);

impl Sink for FileSink {
    fn event(&mut self, _: &Event) {}

    fn finish(&mut self, s: &RunSummary) -> Vec<Written> {
        let _ = std::fs::create_dir_all(&s.report_dir);
        let path = s.report_dir.join(self.0.file_name());
        vec![match self.0.write(s, &path) {
            Ok(()) => Ok(path),
            Err(e) => Err((path, e)),
        }]
    }
}

/// Every report file a run writes, as sinks.
pub fn sinks() -> Vec<Box<dyn Sink>> {
    [
        Box::new(Junit) as Box<dyn ReportFile>,
        Box::new(SummaryJson),
        Box::new(Html),
    ]
    .into_iter()
    .map(|f| Box::new(FileSink(f)) as Box<dyn Sink>)
    .collect()
}

/// Finishes each sink: what was written, and what could not be (with why).
pub fn write_all(
    s: &RunSummary,
    sinks: &mut [Box<dyn Sink>],
) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for sink in sinks {
        for w in sink.finish(s) {
            match w {
                Ok(path) => written.push(path),
                Err(e) => failed.push(e),
            }
        }
    }
    (written, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_cannot_be_written_is_named_with_why() {
        let dir = tempfile::tempdir().unwrap();
        // The report folder is a file: nothing can be written into it.
        let blocked = dir.path().join("report");
        std::fs::write(&blocked, "").unwrap();
        let s = RunSummary {
            cluster: None,
            prepared: false,
            version: 1,
            run_id: "r".into(),
            plan: "p.toml".into(),
            root: dir.path().into(),
            report_dir: blocked.clone(),
            started: String::new(),
            ended: String::new(),
            wall_secs: 0.0,
            jobs: "auto".into(),
            most_at_once: 0,
            work_secs: 0.0,
            exit_code: crate::model::ExitCode::Ok,
            error: None,
            interrupted: false,
            flaky_policy: crate::model::FlakyPolicy::Pass,
            kept_databases: Vec::new(),
            cleanup_command: None,
            databases: Default::default(),
            shard: None,
            predicted_wall_secs: None,
            startups: None,
            unused_databases: Vec::new(),
            workers: Vec::new(),
        };
        let (written, failed) = write_all(&s, &mut sinks());
        assert!(written.is_empty());
        let names: Vec<_> = failed.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            names,
            ["junit.xml", "summary.json", "report.html"].map(|n| blocked.join(n))
        );
        assert!(failed.iter().all(|(_, why)| !why.is_empty()));
    }
}
