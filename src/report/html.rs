//! `report.html`: one self-contained page (no network) with a timeline row per worker showing its
//! phases to scale, coloured by result, with details and the tail of failed logs.

use std::fmt::Write;

use super::junit::xml_escape as esc;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::model::artifacts::{Artifact, ArtifactKind};
use crate::model::{RunSummary, Verdict, WorkerResult};
use crate::steps::process::tail;

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#2e9d4f",
        Verdict::Fail | Verdict::Error => "#d64545",
        Verdict::Timeout => "#c2410c",
        Verdict::Cancelled => "#8a8a8a",
        Verdict::Flaky => "#d9a400",
    }
}

fn phase_shade(phase: &str) -> &'static str {
    match phase {
        "cloning" => "0.35",
        "resources" => "0.4",
        "service" => "0.45",
        "starting" => "0.55",
        "testing" => "1",
        _ => "0.25",
    }
}

pub fn render(s: &RunSummary) -> String {
    let wall = s.wall_secs.max(0.001);
    let rows = setup_row(s, wall) + &worker_rows(s, wall);
    let mut ticks = String::new();
    for i in 0..=4 {
        let _ = write!(
            ticks,
            r#"<span class="tick" style="left:{}%">{:.1}s</span>"#,
            i * 25,
            wall * i as f64 / 4.0
        );
    }
    let error = s
        .error
        .as_ref()
        .map(|e| {
            format!(
                "<pre class=\"err\">{}\n{}</pre>",
                esc(&e.message),
                esc(e.detail.as_deref().unwrap_or(""))
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>e2e-plan run {run}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}
h1{{font-size:18px}} .meta{{color:#555;margin-bottom:12px}}
.row summary{{display:flex;align-items:center;gap:8px;cursor:pointer;list-style:none;padding:2px 0}}
.name{{width:260px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-family:monospace;line-height:1.4}}
.res{{width:84px;font-weight:600}} .dur{{width:60px;text-align:right;color:#555}}
.track{{position:relative;flex:1;min-width:320px;height:16px;background:#f1f1f1;border-radius:3px}}
.row summary::before{{content:"▸";width:10px;color:#888}} .row[open] summary::before{{content:"▾"}}
.sw{{display:inline-block;width:14px;height:10px;margin-right:4px;border-radius:2px;vertical-align:middle}}
.bar{{position:absolute;top:0;bottom:0;border-radius:2px}}
.axis{{position:relative;margin-left:378px;margin-right:68px;height:18px;color:#777;font-size:11px}}
.tick{{position:absolute;transform:translateX(-50%)}}
.more{{margin:4px 0 10px 378px}} pre{{background:#111;color:#ddd;padding:8px;overflow:auto;max-height:300px}}
.err{{background:#5a1010}} .shot img{{max-width:640px;border:1px solid #ccc}} .shot{{margin:6px 0}} .artifact{{margin:4px 0}} .legend span{{display:inline-block;margin-right:12px}}
</style></head><body>
<h1>e2e-plan run {run}: exit code {exit}</h1>
<div class="meta">{n} files: {p} passed, {f} failed, {fl} flaky, {t} timed out, {c} cancelled · wall {wall:.1}s · Σ {work:.1}s of work · started {started}</div>
<div class="legend">phases, left to right: <span><i class="sw" style="background:#5b7fbf"></i>setup</span><span><i class="sw" style="background:#2e9d4f;opacity:.35"></i>clone</span><span><i class="sw" style="background:#2e9d4f;opacity:.45"></i>resources, services</span><span><i class="sw" style="background:#2e9d4f;opacity:.55"></i>server start</span><span><i class="sw" style="background:#2e9d4f"></i>tests</span><span><i class="sw" style="background:#2e9d4f;opacity:.25"></i>stop</span> · colour by result: <span style="color:#2e9d4f">pass</span> <span style="color:#d64545">fail</span> <span style="color:#c2410c">timeout</span> <span style="color:#d9a400">flaky</span> <span style="color:#8a8a8a">cancelled</span> · click a row for details</div>
{error}
<div class="axis">{ticks}</div>
{rows}
</body></html>
"#,
        run = esc(&s.run_id),
        exit = s.exit_code.code(),
        n = s.workers.len(),
        p = s.count(Verdict::Pass),
        f = s.count(Verdict::Fail) + s.count(Verdict::Error),
        fl = s.count(Verdict::Flaky),
        t = s.count(Verdict::Timeout),
        c = s.count(Verdict::Cancelled),
        work = s.work_secs,
        started = esc(&s.started),
    )
}

/// One row per file, in the order they started.
fn worker_rows(s: &RunSummary, wall: f64) -> String {
    let mut rows = String::new();
    let mut workers: Vec<_> = s.workers.iter().collect();
    workers.sort_by(|a, b| {
        let start = |w: &&WorkerResult| {
            w.attempts
                .first()
                .and_then(|a| a.phases.first())
                .map(|p| p.start)
                .unwrap_or(f64::MAX)
        };
        start(a)
            .total_cmp(&start(b))
            .then_with(|| a.file.cmp(&b.file))
    });
    for w in workers {
        let bars = bars(w, wall);
        let details = details(w);
        let _ = write!(
            rows,
            r#"<details class="row"{open}><summary><span class="name" title="{f}">{f}</span><span class="res" style="color:{c}">{v}</span><span class="track">{bars}</span><span class="dur">{d:.1}s</span></summary><div class="more">{details}</div></details>"#,
            f = esc(&w.file),
            // Failures open by default: their log tails are what the reader came for.
            open = if matches!(w.verdict, Verdict::Pass | Verdict::Cancelled) {
                ""
            } else {
                " open"
            },
            c = colour(w.verdict),
            v = w.verdict.label(),
            d = w.duration,
        );
    }
    rows
}

/// Setup (setup commands, cluster, template) is everything before the first worker started.
fn setup_row(s: &RunSummary, wall: f64) -> String {
    let first = s
        .workers
        .iter()
        .filter_map(|w| {
            w.attempts
                .first()
                .and_then(|a| a.phases.first())
                .map(|p| p.start)
        })
        .fold(f64::MAX, f64::min);
    if !(first < f64::MAX && first > 0.0) {
        return String::new();
    }
    format!(
        r#"<details class="row"><summary><span class="name">setup</span><span class="res"></span><span class="track"><span class="bar" style="left:0%;width:{:.3}%;background:#5b7fbf" title="setup steps and template: {first:.2}s"></span></span><span class="dur">{first:.1}s</span></summary><div class="more">setup commands, cluster start and template preparation, before the first worker started</div></details>"#,
        first / wall * 100.0
    )
}

/// One file's phases as bars on the timeline (each attempt's, shaded by phase).
fn bars(w: &WorkerResult, wall: f64) -> String {
    let mut bars = String::new();
    for a in &w.attempts {
        for p in &a.phases {
            let left = p.start / wall * 100.0;
            let width = ((p.end - p.start) / wall * 100.0).max(0.2);
            let _ = write!(
                bars,
                r#"<span class="bar" style="left:{left:.3}%;width:{width:.3}%;background:{};opacity:{}" title="{} · attempt {} · {} · {:.2}s → {:.2}s ({:.2}s)"></span>"#,
                colour(if a.verdict == Verdict::Pass {
                    Verdict::Pass
                } else {
                    w.verdict
                }),
                phase_shade(p.phase.label()),
                esc(&w.file),
                a.number,
                match &p.name {
                    Some(n) => format!("{} {}", p.phase.label(), esc(n)),
                    None => p.phase.label().to_string(),
                },
                p.start,
                p.end,
                p.end - p.start
            );
        }
    }
    bars
}

/// What opens under a file's row: its result, and for a failure its failing tests, the server's
/// lines while each ran, and the tails of its logs.
fn details(w: &WorkerResult) -> String {
    let counts = w
        .counts
        .map(|c| format!("{} passed, {} failed", c.passed, c.failed + c.errors))
        .unwrap_or_else(|| "no report".into());
    let mut details = format!(
        "<div>result <b>{}</b> · exit code {} · {:.2}s · {} · database {}{} · port {}</div>",
        w.verdict.label(),
        w.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        w.duration,
        counts,
        esc(&w.db_name),
        if w.db_kept { " (kept)" } else { "" },
        w.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    if let Some(m) = &w.message {
        let _ = write!(details, "<div>{}</div>", esc(m));
    }
    let mut shown = Vec::new();
    if let (false, Some(log_dir), Some(test_log), Some(server_log)) = (
        matches!(w.verdict, Verdict::Pass | Verdict::Cancelled),
        &w.log_dir,
        &w.test_log,
        &w.server_log,
    ) {
        let _ = write!(
            details,
            "<div>logs: {}</div>",
            esc(&log_dir.display().to_string())
        );
        for f in &w.failures {
            let _ = write!(details, "<div class=\"failed\">✗ {}</div>", esc(&f.id));
            let _ = write!(details, "<pre>{}</pre>", esc(&f.detail.join("\n")));
            let mine: Vec<&Artifact> = w
                .artifacts
                .iter()
                .filter(|a| a.test.as_deref() == Some(f.id.as_str()))
                .collect();
            shown.extend(mine.iter().map(|a| &a.path));
            details.push_str(&artifacts(&mine));
            if !f.server_lines.is_empty() {
                let _ = write!(
                    details,
                    "<div>server, while it ran</div><pre>{}</pre>",
                    esc(&f.server_lines.join("\n"))
                );
            }
        }
        let test = tail(test_log, 40);
        if !test.is_empty() {
            let _ = write!(
                details,
                "<div>test log (tail)</div><pre>{}</pre>",
                esc(&test)
            );
        }
        let server = tail(server_log, 20);
        if !server.is_empty() {
            let _ = write!(
                details,
                "<div>server log (tail)</div><pre>{}</pre>",
                esc(&server)
            );
        }
    }
    // The rest: the attempt's own, passing tests' (`artifacts = "all"`), a flaky file's earlier
    // attempts'.
    let rest: Vec<&Artifact> = w
        .artifacts
        .iter()
        .filter(|a| !shown.contains(&&a.path))
        .collect();
    if !rest.is_empty() {
        let _ = write!(details, "<div>artifacts</div>{}", artifacts(&rest));
    }
    details
}

/// Artifacts as the reader uses them: screenshots inline, traces linked with the command that
/// opens them, videos and the rest linked. Paths are relative to the report folder, where this
/// page is, so the folder opens anywhere.
fn artifacts(list: &[&Artifact]) -> String {
    let mut out = String::new();
    for a in list {
        let href = url_path(&a.path);
        let name = esc(&a.path.display().to_string());
        let attempt = if a.attempt > 1 || list.iter().any(|b| b.attempt != a.attempt) {
            format!(" (attempt {})", a.attempt)
        } else {
            String::new()
        };
        let test = a
            .test
            .as_deref()
            .map(|t| format!(" of {}", esc(t)))
            .unwrap_or_default();
        let _ = match a.kind {
            ArtifactKind::Screenshot => write!(
                out,
                r#"<figure class="shot"><a href="{href}"><img src="{href}" alt="screenshot{test}" loading="lazy"></a><figcaption>screenshot{attempt}: {name}</figcaption></figure>"#
            ),
            ArtifactKind::Trace => write!(
                out,
                r#"<div class="artifact">trace{attempt}: <a class="trace" href="{href}">{name}</a> · open it: <code>playwright show-trace {name}</code> (from the report folder) or drop it on trace.playwright.dev</div>"#
            ),
            ArtifactKind::Video => write!(
                out,
                r#"<div class="artifact">video{attempt}: <a class="video" href="{href}">{name}</a></div>"#
            ),
            ArtifactKind::Other => write!(
                out,
                r#"<div class="artifact">file{attempt}: <a href="{href}">{name}</a></div>"#
            ),
        };
    }
    out
}

/// A relative path as a URL path: each segment percent-encoded.
fn url_path(path: &std::path::Path) -> String {
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'\'')
        .add(b'&');
    path.iter()
        .map(|c| utf8_percent_encode(&c.to_string_lossy(), SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_are_relative_urls() {
        let p = std::path::Path::new("workers/test x/artifacts/a#b/test-failed-1.png");
        assert_eq!(
            url_path(p),
            "workers/test%20x/artifacts/a%23b/test-failed-1.png"
        );
        let shot = Artifact {
            path: p.to_path_buf(),
            kind: ArtifactKind::Screenshot,
            test: Some("tests/test_x.py::test_y[chromium]".into()),
            attempt: 1,
        };
        let html = artifacts(&[&shot]);
        assert!(
            html.contains(r#"<img src="workers/test%20x/artifacts/a%23b/test-failed-1.png""#),
            "{html}"
        );
    }
}
