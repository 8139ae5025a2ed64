//! One worker attempt as a state machine: clone → start server → wait ready → run tests → stop.
//! Timeouts and cancellation are states it passes through, not special cases.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::owner::{Question, RunEvent};
use super::per_worker::WorkerResource;
use super::process::{self, CpuMeter, Group, Spec};
use super::{RunCx, StepError};
use crate::engine::{Cancel, Outcome};
use crate::events::{Event, Phase};
use crate::model::files;
use crate::model::junit::read_counts;
use crate::model::{Attempt, PhaseSpan, Verdict};
use crate::plan::Artifacts;
use crate::planner::{AttemptPlan, RunTime, WorkerCommands, WorkerPlan};

/// How a server's wait for readiness ended.
enum Ready {
    Yes,
    Exited(Option<i32>),
    TimedOut,
    Cancelled,
}

/// The first pass of one file (or one part of a split file).
pub async fn run_worker(cx: &RunCx, index: usize, cancel: &Cancel) -> Result<Outcome, StepError> {
    let w = cx.dag().workers[index].clone();
    cx.after_critical_startup(index, cancel).await;
    let attempt = run_attempt(cx, &w, 1, cancel).await;
    let attempt = match attempt {
        Ok(a) => a,
        Err(failed) => {
            let (a, e) = *failed;
            record(cx, &w, a);
            return Err(e);
        }
    };
    let verdict = attempt.verdict;
    // Its database slot in the prefetch window is free again.
    cx.prefetch.release(index);
    record(cx, &w, attempt);
    Ok(match verdict {
        Verdict::Pass => Outcome::Ok,
        Verdict::Cancelled => Outcome::Cancelled,
        _ => Outcome::Failed,
    })
}

/// Tells the owner an attempt of `w` ended (it folds it into the file's result).
pub(super) fn record(cx: &RunCx, w: &WorkerPlan, attempt: Attempt) {
    cx.send(RunEvent::Attempt {
        worker: w.index,
        attempt: Box::new(attempt),
    });
}

/// Runs failed files again, each attempt in a fresh database, port and server.
pub async fn retry_failed(
    cx: &Arc<RunCx>,
    retries: u32,
    cancel: &Cancel,
) -> Result<Outcome, StepError> {
    if cancel.is_stopping() {
        return Ok(Outcome::Cancelled);
    }
    let Some(failed) = cx.ask(Question::ToRetry).await.flatten() else {
        return Ok(Outcome::Cancelled);
    };
    if failed.is_empty() {
        return Ok(Outcome::Ok);
    }
    let max = cx.plan().run.max_retry_files;
    if failed.len() > max {
        cx.warn(format!(
            "{} files failed on the first pass (more than max_retry_files = {max}): not retrying; this looks like a real break, not flakiness",
            failed.len()
        ));
        return Ok(Outcome::Failed);
    }
    let jobs = if cx.plan().run.jobs.bound() == 0 {
        failed.len()
    } else {
        cx.plan().run.jobs.bound()
    };
    let slots = Arc::new(Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    for index in failed {
        let w = cx.dag().workers[index].clone();
        let slots = Arc::clone(&slots);
        let cancel = cancel.clone();
        let cx = Arc::clone(cx);
        set.spawn(async move {
            let _permit = slots.acquire_owned().await;
            for n in 2..=retries + 1 {
                if cancel.is_stopping() {
                    break;
                }
                if let Some(previous) = w.attempt(n - 1) {
                    stash_attempt(&previous.paths.dir, n - 1);
                }
                let outcome = run_attempt(&cx, &w, n, &cancel).await;
                // A retry that cannot be set up (its server never became ready) is one more failed
                // attempt of this file, not a reason to stop the whole run.
                let attempt = match outcome {
                    Ok(a) => a,
                    Err(failed) => failed.0,
                };
                // Retry databases are always dropped, at once.
                release_attempt(&cx, w.index, n).await;
                let passed = attempt.verdict == Verdict::Pass;
                record(&cx, &w, attempt);
                if passed {
                    break;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    Ok(Outcome::Ok)
}

/// Releases what a retry attempt held, at once (a retry's resources are never kept); what cannot
/// be released goes back to the owner for cleanup to try again.
async fn release_attempt(cx: &RunCx, worker: usize, attempt: u32) {
    let held = cx
        .ask(|reply| Question::Take {
            worker,
            attempt,
            reply,
        })
        .await
        .unwrap_or_default();
    for h in held {
        let kind = cx.resources().into_iter().find(|r| r.key() == h.key);
        let released = match kind {
            Some(kind) => kind.release(cx, &h).await.is_ok(),
            None => false,
        };
        if !released {
            cx.send(RunEvent::Held(h));
        }
    }
}

/// Keeps or removes an attempt's artifacts folder by `[report] artifacts`: under `failed`, an
/// attempt that did not pass keeps them, and so does a retry that passed (the file was flaky: its
/// passing run is the one to compare with), and an attempt that passed only because its test
/// tool ran a failed test again (pytest-rerunfailures: its `junit` holds that test twice). An
/// empty folder goes either way.
pub(super) fn settle_artifacts(
    policy: Artifacts,
    dir: &Path,
    junit: &Path,
    verdict: Verdict,
    n: u32,
) {
    let keep = match policy {
        Artifacts::All => true,
        Artifacts::None => false,
        Artifacts::Failed => {
            verdict != Verdict::Pass || n > 1 || !crate::model::junit::rerun(junit).is_empty()
        }
    };
    if !keep || !crate::model::artifacts::any(dir) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Moves everything the previous attempt left in the worker's folder (its logs, its JUnit, and
/// whatever else it wrote) to `attempt-<n>/`.
fn stash_attempt(log_dir: &Path, n: u32) {
    let dest = log_dir.join(files::attempt_dir(n));
    if std::fs::create_dir_all(&dest).is_err() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let earlier = name
            .to_str()
            .is_some_and(|n| n.starts_with("attempt-") && n[8..].parse::<u32>().is_ok());
        if !earlier {
            let _ = std::fs::rename(entry.path(), dest.join(&name));
        }
    }
}

/// One attempt of one file, phase by phase: logs → database (cloned or claimed) → server
/// (started, ready) → tests → stop. Each phase is a method; the ending is written once, in
/// `end`. Timeouts, cancellation and a dead server are outcomes of the phases, not special cases.
struct AttemptRun<'a> {
    cx: &'a RunCx,
    w: &'a WorkerPlan,
    n: u32,
    /// What the planner resolved for this attempt: its database and commands.
    planned: &'a AttemptPlan,
    cancel: &'a Cancel,
    db_name: String,
    attempt: Attempt,
    /// When the attempt began, and the phases it went through (seconds since the run began).
    start: Instant,
    phases: Vec<PhaseSpan>,
    /// Each service's port, by name (`{port.NAME}`), taken once for the attempt.
    service_ports: Vec<(String, String)>,
}

/// A service of the attempt's own, ready.
struct Running {
    name: String,
    group: Group,
    grace: Duration,
}

/// A server start: ready (with its group), or not (and why that is no error of its own).
enum Started {
    Ready(Option<Box<Group>>),
    /// It exited because another process took its port meanwhile: worth one more try.
    PortTaken,
    Cancelled,
}

/// The port and the commands filled for it: a server start and the tests it serves share them.
struct Launch {
    port: u16,
    commands: WorkerCommands<String>,
}

/// One attempt. Err carries the attempt too (for the report) with the fatal error.
pub async fn run_attempt(
    cx: &RunCx,
    w: &WorkerPlan,
    n: u32,
    cancel: &Cancel,
) -> Result<Attempt, Box<(Attempt, StepError)>> {
    let Some(planned) = w.attempt(n) else {
        let e = StepError::new(format!("attempt {n} of {} was not planned", w.file));
        return Err(Box::new((Attempt::new(n, "", &w.log_dir), e)));
    };
    let db_name = planned.db_name.clone();
    let mut attempt = Attempt::new(n, &db_name, &planned.paths.dir);
    attempt.part = w.part.as_ref().map(|p| crate::model::PartNumber {
        number: p.number,
        count: p.count,
        tests: p.tests.len(),
    });
    let mut run = AttemptRun {
        cx,
        w,
        n,
        planned,
        cancel,
        attempt,
        db_name,
        start: Instant::now(),
        phases: Vec::new(),
        service_ports: Vec::new(),
    };
    let outcome = run.phases().await;
    run.end(outcome)
}

impl AttemptRun<'_> {
    async fn phases(&mut self) -> Result<Verdict, StepError> {
        self.logs()?;
        self.enter(Phase::Cloning);
        if !self.database().await? {
            return Ok(Verdict::Cancelled);
        }
        self.service_ports = self.take_service_ports().await?;
        let mut launch = self.launch().await?;
        if !self.resources(&launch).await? {
            return Ok(Verdict::Cancelled);
        }
        let mut services = Vec::new();
        let outcome = match self.services(&launch, &mut services).await {
            Ok(true) => self.serve_and_test(&mut launch, &mut services).await,
            Ok(false) => Ok(Verdict::Cancelled),
            Err(e) => Err(e),
        };
        // After the server, in reverse order.
        for s in services.into_iter().rev() {
            s.group.stop(&self.cx.journal, s.grace, self.cancel).await;
        }
        outcome
    }

    /// The server (if any), ready, then the tests.
    async fn serve_and_test(
        &mut self,
        launch: &mut Launch,
        services: &mut [Running],
    ) -> Result<Verdict, StepError> {
        let mut server = self.server(launch, true).await?;
        if let Started::PortTaken = server {
            *launch = self.launch().await?;
            server = self.server(launch, false).await?;
        }
        match server {
            Started::Ready(group) => self.tests(launch, group.map(|g| *g), services).await,
            Started::Cancelled | Started::PortTaken => Ok(Verdict::Cancelled),
        }
    }

    /// A free port for each of the plan's services.
    async fn take_service_ports(&mut self) -> Result<Vec<(String, String)>, StepError> {
        let mut ports = Vec::new();
        for s in &self.cx.plan().services {
            let port =
                self.cx.take_port().await.map_err(|e| {
                    StepError::new(format!("no free port for service {}: {e}", s.name))
                })?;
            ports.push((s.name.clone(), port.to_string()));
        }
        Ok(ports)
    }

    /// Makes the attempt's resources, in order. One whose create fails undoes what the attempt
    /// made (itself included, as far as it got) and ends the run; Ok(false): stopped first (what
    /// was made is the owner's to release).
    async fn resources(&mut self, launch: &Launch) -> Result<bool, StepError> {
        let (cx, cancel) = (self.cx, self.cancel);
        if launch.commands.resources.is_empty() {
            return Ok(true);
        }
        self.enter(Phase::Resources);
        let mut made: Vec<super::per_worker::Held> = Vec::new();
        for (kind, filled) in cx.commands.iter().zip(&launch.commands.resources) {
            if cancel.is_stopping() {
                return Ok(false);
            }
            let log = self.planned.paths.dir.join(files::resource_log(&kind.name));
            match kind
                .create(cx, self.w, self.n, &self.db_name, filled, &log, cancel)
                .await
            {
                Ok(held) => made.push(held),
                Err(_) if cancel.is_stopping() => return Ok(false),
                Err((held, e)) => {
                    made.extend(held);
                    let mut gone = Vec::new();
                    for h in made.iter().rev() {
                        let kind = cx.resources().into_iter().find(|r| r.key() == h.key);
                        if let Some(Ok(())) = match kind {
                            Some(k) => Some(k.release(cx, h).await),
                            None => None,
                        } {
                            gone.push(h.entry);
                        }
                    }
                    cx.send(RunEvent::Gone(gone));
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Starts the attempt's services, in order, each ready before the next. One that exits or
    /// is not ready in time ends the run with its log's tail; Ok(false): stopped first.
    async fn services(
        &mut self,
        launch: &Launch,
        out: &mut Vec<Running>,
    ) -> Result<bool, StepError> {
        let (cx, w, cancel) = (self.cx, self.w, self.cancel);
        for (spec, filled) in cx.plan().services.iter().zip(&launch.commands.services) {
            self.enter(Phase::Service);
            if let Some(last) = self.phases.last_mut() {
                last.name = Some(spec.name.clone());
            }
            let log = self.planned.paths.dir.join(files::service_log(&spec.name));
            let times = files::times_of(&log);
            let port = self
                .service_ports
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, p)| p.as_str())
                .unwrap_or_default();
            let what = format!("service {} for {} on port {port}", spec.name, w.file);
            let c = &filled.commands;
            let mut group = self.spawn(what, &c.command, &c.env, &log, Some(&times))?;
            let failed = |why: String| {
                StepError::new(format!(
                    "service {} for {} {why}; its log: {}",
                    spec.name,
                    w.file,
                    log.display()
                ))
                .with_detail(process::tail(&log, 30))
            };
            match wait_ready(&mut group, &c.ready, spec.ready_timeout, cancel).await {
                Ready::Yes => out.push(Running {
                    name: spec.name.clone(),
                    group,
                    grace: spec.stop_timeout,
                }),
                Ready::Cancelled => {
                    group.stop(&cx.journal, spec.stop_timeout, cancel).await;
                    return Ok(false);
                }
                Ready::Exited(code) => {
                    group.finish(&cx.journal).await;
                    let code = code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "a signal".into());
                    return Err(failed(format!("exited with {code} before it was ready")));
                }
                Ready::TimedOut => {
                    group.stop(&cx.journal, spec.stop_timeout, cancel).await;
                    return Err(failed(format!(
                        "was not ready at {} within {}",
                        c.ready,
                        crate::plan::duration::format_duration(spec.ready_timeout)
                    )));
                }
            }
        }
        Ok(true)
    }

    /// The ending, written once: the verdict and its phases, or the error that ended it.
    fn end(
        mut self,
        outcome: Result<Verdict, StepError>,
    ) -> Result<Attempt, Box<(Attempt, StepError)>> {
        let now = self.cx.config().started_at.elapsed().as_secs_f64();
        if let Some(last) = self.phases.last_mut() {
            last.end = now;
        }
        let phases = std::mem::take(&mut self.phases);
        if self.n == 1 {
            self.cx.past_startup(self.w.index);
        }
        match outcome {
            Ok(verdict) => {
                let mut attempt = self.attempt.finish(verdict, &mut self.start, phases);
                if let Some(part) = &self.w.part {
                    super::parts::check(part, &self.planned.paths.junit, &mut attempt);
                }
                Self::settle_artifacts(self.cx, self.w, self.planned, self.n, attempt.verdict);
                Ok(attempt)
            }
            Err(e) => {
                let mut attempt = self.attempt.finish(Verdict::Error, &mut self.start, phases);
                attempt.message = Some(e.message.clone());
                Self::settle_artifacts(self.cx, self.w, self.planned, self.n, Verdict::Error);
                Err(Box::new((attempt, e)))
            }
        }
    }

    /// A file's attempt keeps or drops its artifacts as soon as its verdict is known; a pack's
    /// are shared out to its files first, which decide each by their own verdicts.
    fn settle_artifacts(cx: &RunCx, w: &WorkerPlan, planned: &AttemptPlan, n: u32, v: Verdict) {
        if w.pack.is_empty() {
            let paths = &planned.paths;
            settle_artifacts(cx.plan().artifacts, &paths.artifacts, &paths.junit, v, n);
        }
    }

    fn enter(&mut self, phase: Phase) {
        let now = self.cx.config().started_at.elapsed().as_secs_f64();
        if let Some(last) = self.phases.last_mut() {
            last.end = now;
        }
        self.phases.push(PhaseSpan {
            phase,
            start: now,
            end: now,
            name: None,
        });
        // The critical unit's start-up ends when its test process is done starting, which
        // `critical_startup` watches for.
        let critical = self.cx.config().critical_unit() == Some(self.w.index);
        if phase == Phase::Testing && self.n == 1 && !critical {
            self.cx.past_startup(self.w.index);
        }
        self.cx.say(Event::Phase {
            worker: self.w.index,
            file: self.w.file.clone(),
            attempt: self.n,
            phase,
        });
    }

    /// `[test] timeout` is per file: a pack's test process runs its files one after another.
    fn timeout(&self) -> Duration {
        self.cx.plan().test.timeout * self.w.pack.len().max(1) as u32
    }

    /// A first attempt starts from an empty log folder (and an empty `{artifacts_dir}` in it); a
    /// retry's predecessor was stashed.
    fn logs(&self) -> Result<(), StepError> {
        let dir = &self.planned.paths.dir;
        if self.n == 1 {
            let _ = std::fs::remove_dir_all(dir);
        }
        let artifacts = &self.planned.paths.artifacts;
        std::fs::create_dir_all(artifacts)
            .map_err(|e| StepError::new(format!("cannot create {}: {e}", artifacts.display())))
    }

    /// The attempt's database. A unit's first attempt's was made ahead by the prefetcher;
    /// retries and the queue's units make their own. Ok(false): cancelled first.
    async fn database(&self) -> Result<bool, StepError> {
        let (cx, cancel) = (self.cx, self.cancel);
        if self.n > 1 || !cx.dag().is_unit(self.w.index) {
            let held = cx.databases.acquire(cx, self.w, self.n, cancel).await?;
            return Ok(held.is_some());
        }
        cx.prefetch.wait(self.w.index, cancel).await
    }

    /// A fresh port, and the commands filled for it.
    async fn launch(&mut self) -> Result<Launch, StepError> {
        let cx = self.cx;
        let port = cx
            .take_port()
            .await
            .map_err(|e| StepError::new(format!("no free port: {e}")))?;
        self.attempt.port = Some(port);
        let (port_s, template) = (port.to_string(), cx.template().await?);
        let rt = RunTime {
            port: &port_s,
            template_url: &template.url,
            service_ports: &self.service_ports,
        };
        Ok(Launch {
            port,
            commands: rt.worker(&self.planned.commands, &self.db_name),
        })
    }

    fn spawn(
        &self,
        what: String,
        argv: &[String],
        env: &[(String, String)],
        log: &Path,
        times: Option<&Path>,
    ) -> Result<Group, StepError> {
        let spec = Spec {
            nice: self.w.nice,
            what,
            argv,
            env,
            cwd: &self.cx.plan().root,
            log,
            run_as: None,
            times,
        };
        process::spawn(&self.cx.journal, spec).map_err(StepError::new)
    }

    /// Starts the server (if the plan has one) and waits until it is ready. A server that exits
    /// before, or is not ready in time, fails the attempt with the tail of its log.
    async fn server(&mut self, launch: &Launch, may_retry: bool) -> Result<Started, StepError> {
        let Some(s) = &launch.commands.server else {
            return Ok(Started::Ready(None));
        };
        let (cx, w, cancel) = (self.cx, self.w, self.cancel);
        let grace = cx.plan().stop_timeout();
        self.enter(Phase::Starting);
        let paths = &self.planned.paths;
        let log = paths.server_log.clone();
        let what = format!("server for {} on port {}", w.file, launch.port);
        let mut group = self.spawn(what, &s.command, &s.env, &log, Some(&paths.server_times))?;
        let timeout = cx
            .plan()
            .server
            .as_ref()
            .map(|s| s.ready_timeout)
            .unwrap_or_default();
        let failed = |why: String| {
            StepError::new(format!(
                "the server for {} {why}; its log: {}",
                w.file,
                log.display()
            ))
            .with_detail(process::tail(&log, 30))
        };
        match wait_ready(&mut group, &s.ready, timeout, cancel).await {
            Ready::Yes => Ok(Started::Ready(Some(Box::new(group)))),
            Ready::Cancelled => {
                group.stop(&cx.journal, grace, cancel).await;
                Ok(Started::Cancelled)
            }
            Ready::Exited(code) => {
                group.finish(&cx.journal).await;
                if may_retry && port_taken(launch.port) {
                    return Ok(Started::PortTaken);
                }
                let code = code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "a signal".into());
                Err(failed(format!("exited with {code} before it was ready")))
            }
            Ready::TimedOut => {
                group.stop(&cx.journal, grace, cancel).await;
                Err(failed(format!(
                    "was not ready at {} within {}",
                    s.ready,
                    crate::plan::duration::format_duration(timeout)
                )))
            }
        }
    }

    /// Runs the tests until they end, time out, are cancelled or lose their server; then stops
    /// what is left and reads the counts.
    async fn tests(
        &mut self,
        launch: &Launch,
        mut server: Option<Group>,
        services: &mut [Running],
    ) -> Result<Verdict, StepError> {
        let (cx, w, cancel) = (self.cx, self.w, self.cancel);
        let grace = cx.plan().stop_timeout();
        self.enter(Phase::Testing);
        let what = format!("tests of {} (port {})", w.file, launch.port);
        let c = &launch.commands;
        let test_log = self.planned.paths.test_log.clone();
        let test = match self.spawn(what, &c.test, &c.test_env, &test_log, None) {
            Ok(g) => g,
            Err(e) => {
                if let Some(s) = server {
                    s.stop(&cx.journal, grace, cancel).await;
                }
                return Err(e);
            }
        };
        let mut test = test;
        let backends = super::database::Backends::watch(&self.db_name);
        let cpu = [Some(test.cpu()), server.as_ref().map(Group::cpu)];
        // The server's start-up ends here: its CPU, and its wall time and run-queue wait so far.
        let (server_ready_cpu, server_ready) = match &server {
            Some(s) => (s.cpu_now().await, s.cpu().last()),
            None => (Some(0.0), None),
        };
        let timeout = tokio::time::sleep(self.timeout());
        tokio::pin!(timeout);
        let startup = critical_startup(cx, w, self.n, test.child.id());
        tokio::pin!(startup);
        let mut starting = true;
        let end = {
            // One wait for the whole loop: each holds a blocking thread until the process exits.
            let exited = test.wait();
            tokio::pin!(exited);
            loop {
                tokio::select! {
                    s = &mut exited => break End::Exited(s.ok().and_then(|s| s.code())),
                    (who, how) = first_exit(server.as_mut(), services) => break End::Died(who, how),
                    _ = &mut timeout => break End::Timeout,
                    _ = cancel.stop.cancelled() => break End::Cancelled,
                    _ = &mut startup, if starting => {
                        starting = false;
                        cx.past_startup(w.index);
                    }
                }
            }
        };
        self.enter(Phase::Stopping);
        let verdict = self.stop_tests(test, end).await;
        if let Some(s) = server {
            stop_server(cx, s, grace, cancel, verdict == Verdict::Timeout).await;
        }
        let junit = &self.planned.paths.junit;
        self.attempt.counts = read_counts(junit);
        self.attempt.tests_secs = crate::model::junit::tests_secs(junit);
        self.attempt.cpu_secs = cpu.iter().flatten().map(CpuMeter::secs).sum();
        let backends = backends.finish();
        self.attempt.db_cpu_secs = backends.map(|b| b.cpu);
        self.database_usage().await;
        self.costs(&cpu, server_ready_cpu, server_ready, backends);
        Ok(verdict)
    }

    /// How the tests used their database: its sessions (none: the tests never connected to it)
    /// and its backends' active time, read once they are gone.
    async fn database_usage(&mut self) {
        let Ok(admin) = self.cx.admin_url().await else {
            return;
        };
        let patience = Duration::from_secs(2);
        if let Ok(Some(u)) = super::database::usage(&admin, &self.db_name, patience).await {
            self.attempt.db_sessions = Some(u.sessions);
            self.attempt.db_active_secs = Some(u.active_secs);
        }
    }

    /// What the attempt cost, cut where its tests began (their JUnit times before the test
    /// process ended): its start-up and its tests, each as CPU and as the time it would have
    /// taken alone (wall time minus run-queue wait). Without JUnit times the start-up's CPU is
    /// the test process's until it was first seen waiting.
    fn costs(
        &mut self,
        cpu: &[Option<CpuMeter>; 2],
        server_ready_cpu: Option<f64>,
        server_ready: Option<process::Point>,
        backends: Option<super::database::BackendUse>,
    ) {
        let [test, server] = cpu;
        let a = &mut self.attempt;
        let ended = test
            .as_ref()
            .and_then(|m| suite_end(&self.planned.paths.junit, m.spawned_unix()));
        let cut = a
            .tests_secs
            .zip(test.as_ref())
            .and_then(|(t, m)| m.cut(t, ended));
        let Some(cut) = cut else {
            let test_startup = test.as_ref().and_then(CpuMeter::startup_secs);
            a.startup_cpu_secs = test_startup.zip(server_ready_cpu).map(|(t, s)| t + s);
            return;
        };
        let server_alone = server_ready.map_or(0.0, |p| (p.t - p.rq).max(0.0));
        // Its resources and services, made and started before its server (wall time).
        let before_server: f64 = self
            .phases
            .iter()
            .filter(|p| matches!(p.phase, Phase::Resources | Phase::Service))
            .map(|p| p.end - p.start)
            .sum();
        // What the process costs once however many files it runs: before its tests, and after
        // them until it exits (a large app's interpreter shutting down takes a second).
        let mut startup = before_server
            + server_alone
            + (cut.startup_wall - cut.startup_rq).max(0.0)
            + (cut.tail_wall - cut.tail_rq).max(0.0);
        // The tests also wait while their database's backends wait for a core.
        let db_rq = backends.map_or(0.0, |b| b.rq);
        let mut tests = a.tests_secs.map(|t| {
            let alone = (t - cut.tests_rq).max(0.0);
            (alone - db_rq).max(alone.min(cut.tests_cpu))
        });
        let mut tests_cpu = cut.tests_cpu;
        let mut startup_cpu = cut.startup_cpu + cut.tail_cpu;
        // The first test's excess over the others is what the session's fixtures cost: a start-up
        // every test process pays once, which a pack pays once for all its files (a login's
        // password hash took 1.5 s, three times the imports before it). Only when the first test
        // stands out from the rest and is not far longer than a start-up: a first test merely
        // longer than the others, or one of minutes, stays a test.
        let first = crate::model::junit::first_test_excess(&self.planned.paths.junit);
        if let (Some(first), Some(t), Some(wall)) = (first, tests, a.tests_secs) {
            let stretch = if wall > 0.0 { t / wall } else { 1.0 };
            let x = (first.excess * stretch).min(t);
            let stands_out = first.excess >= STANDS_OUT * first.median.max(0.01);
            if x > 0.0 && stands_out && x <= MOST_STARTUPS * startup {
                startup += x;
                tests = Some(t - x);
                let x_cpu = x.min(tests_cpu);
                tests_cpu -= x_cpu;
                startup_cpu += x_cpu;
            }
        }
        a.startup_alone_secs = Some(startup);
        a.tests_alone_secs = tests;
        let server_tests = server
            .as_ref()
            .and_then(CpuMeter::secs)
            .zip(server_ready_cpu)
            .map_or(0.0, |(end, ready)| (end - ready).max(0.0));
        // The backends' CPU where they could be read; else their active time, stretched as the
        // tests were.
        let stretch = match a.tests_secs {
            Some(wall) if wall > 0.0 => ((wall - cut.tests_rq) / wall).clamp(0.0, 1.0),
            _ => 1.0,
        };
        let backends = backends.map_or(a.db_active_secs.unwrap_or(0.0) * stretch, |b| b.cpu);
        a.tests_cpu_secs = Some(tests_cpu + server_tests + backends);
        a.startup_cpu_secs = server_ready_cpu.map(|s| s + startup_cpu);
    }

    /// What the way the tests ended means, once their process group is gone.
    async fn stop_tests(&mut self, mut test: Group, end: End) -> Verdict {
        let (cx, cancel) = (self.cx, self.cancel);
        let grace = cx.plan().stop_timeout();
        match end {
            End::Died(who, how) => {
                self.attempt.exit_code = wind_down(cx, test, grace, cancel).await;
                match &who {
                    Some(service) => {
                        self.attempt.message =
                            Some(format!("service {service} {how} during the tests"));
                        self.attempt.service_died = Some((service.clone(), how));
                    }
                    None => {
                        self.attempt.message = Some(format!("server {how} during the tests"));
                        self.attempt.server_died = Some(how);
                    }
                }
                Verdict::Fail
            }
            End::Exited(code) => {
                test.finish(&cx.journal).await;
                self.attempt.exit_code = code;
                if code.is_some_and(|c| cx.plan().test.ok_exit_codes.contains(&c)) {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                }
            }
            End::Timeout => {
                // A pack's files are each reported as they ended: pytest, interrupted, writes the
                // JUnit of the tests that ran and names the file it stopped in (see `pack`).
                if self.w.pack.len() > 1 {
                    interrupt(&mut test, grace, cancel).await;
                }
                // Past the timeout there is no grace: the worker is killed.
                test.stop(&cx.journal, Duration::ZERO, cancel).await;
                self.attempt.message = Some(format!(
                    "timed out after {}",
                    crate::plan::duration::format_duration(self.timeout())
                ));
                Verdict::Timeout
            }
            End::Cancelled => {
                test.stop(&cx.journal, grace, cancel).await;
                Verdict::Cancelled
            }
        }
    }
}

/// A first test this many times the others' median beyond them stands out: its excess is taken
/// for the session's fixtures.
const STANDS_OUT: f64 = 5.0;

/// A first test's excess is taken for the session's fixtures up to this many start-ups.
const MOST_STARTUPS: f64 = 4.0;

/// When the tests' JUnit says its suite ended, in seconds after the test process was spawned
/// (`spawned`, Unix seconds): its timestamp plus its time. What follows it (the interpreter
/// shutting down a large app) is paid once per process: it counts as start-up.
fn suite_end(junit: &Path, spawned: f64) -> Option<f64> {
    let report = crate::model::junit::read(junit).ok()?;
    let suite = report.test_suites.first()?;
    let stamp = suite.extra.get("timestamp")?;
    let start = super::failures::suite_start(stamp.as_str(), spawned)?;
    Some(start + suite.time?.as_secs_f64() - spawned)
}

/// How a file's tests ended.
enum End {
    Exited(Option<i32>),
    /// The server (None) or a service died, and how.
    Died(Option<String>, String),
    Timeout,
    Cancelled,
}

/// How long a file's tests may go on after its server died: they can only fail against a dead
/// port, but may still write their report.
const AFTER_SERVER_DIED: Duration = Duration::from_secs(2);

/// How a process ended, in words ("exited with code 7").
fn how(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("could not be watched ({e})"),
    }
}

/// Resolves when the server or a service exits: which (None: the server) and how; never
/// without one.
async fn first_exit(
    server: Option<&mut Group>,
    services: &mut [Running],
) -> (Option<String>, String) {
    type Exit<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = (Option<String>, String)> + Send + 'a>>;
    let mut waits: Vec<Exit> = Vec::new();
    if let Some(g) = server {
        waits.push(Box::pin(async move { (None, how(g.child.wait().await)) }));
    }
    for s in services.iter_mut() {
        let name = s.name.clone();
        let child = &mut s.group.child;
        waits.push(Box::pin(
            async move { (Some(name), how(child.wait().await)) },
        ));
    }
    if waits.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|ctx| {
        for w in waits.iter_mut() {
            if let std::task::Poll::Ready(v) = std::future::Future::poll(w.as_mut(), ctx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The server is gone: the tests get a short grace to end by themselves, then SIGINT (on which
/// pytest still writes its JUnit for the tests that ran), then the usual stop.
async fn wind_down(cx: &RunCx, mut test: Group, grace: Duration, cancel: &Cancel) -> Option<i32> {
    async fn wait(child: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(AFTER_SERVER_DIED, child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
    if let Some(status) = wait(&mut test.child).await {
        test.finish(&cx.journal).await;
        return status.code();
    }
    crate::sys::signal_group(test.pgid, rustix::process::Signal::INT);
    if let Some(status) = wait(&mut test.child).await {
        test.finish(&cx.journal).await;
        return status.code();
    }
    test.stop(&cx.journal, grace, cancel).await
}

/// SIGINT to the test process group, then up to `grace` for its leader to exit (pytest writes
/// its JUnit and names where it was stopped); the caller stops what is left.
async fn interrupt(test: &mut Group, grace: Duration, cancel: &Cancel) {
    crate::sys::signal_group(test.pgid, rustix::process::Signal::INT);
    tokio::select! {
        _ = test.wait() => {}
        _ = tokio::time::sleep(grace) => {}
        _ = cancel.kill.cancelled() => {}
    }
}

async fn stop_server(cx: &RunCx, s: Group, grace: Duration, cancel: &Cancel, now: bool) {
    s.stop(
        &cx.journal,
        if now { Duration::ZERO } else { grace },
        cancel,
    )
    .await;
}

/// True when something else listens on the port now (the race a free-port probe cannot close).
fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Polls `ready`, first every 5 ms and then less often, up to every 100 ms: a redis-server is
/// ready in a few milliseconds, and a fixed 100 ms poll added 0.1 s to every service and server
/// (seen in the services benchmark). A server that exits is reported at once.
async fn wait_ready(group: &mut Group, ready: &str, timeout: Duration, cancel: &Cancel) -> Ready {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Readiness of a local server, often with a self-signed certificate: whether it answers
        // is the question, not who signed its certificate.
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .ok();
    loop {
        if let Ok(Some(status)) = group.child.try_wait() {
            return Ready::Exited(status.code());
        }
        let ok = if let Some(addr) = ready.strip_prefix("tcp://") {
            tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
                .await
                .is_ok()
        } else if let Some(c) = &client {
            c.get(ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success() || r.status().is_redirection())
        } else {
            false
        };
        if ok {
            return Ready::Yes;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ready::TimedOut;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.stop.cancelled() => return Ready::Cancelled,
            s = group.child.wait() => return Ready::Exited(s.ok().and_then(|s| s.code())),
        }
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Ends when the critical unit's test process is done starting (the others wait for it): when
/// it is seen asleep three times in a row, 50 ms apart (waiting on its tests' I/O, not on the
/// CPU, which a starting process is always either using or queued for), or after half its
/// predicted time, or at once if it cannot be watched. Never ends for any other worker.
async fn critical_startup(cx: &RunCx, w: &WorkerPlan, n: u32, pid: Option<u32>) {
    if n != 1 || cx.config().critical_unit() != Some(w.index) {
        return std::future::pending().await;
    }
    let cap = w
        .predicted
        .map(|p| p / 2)
        .unwrap_or(Duration::from_secs(5))
        .clamp(Duration::from_secs(1), Duration::from_secs(30));
    let Some(pid) = pid else { return };
    let started = Instant::now();
    let mut asleep = 0;
    while started.elapsed() < cap && asleep < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match crate::sys::state(pid) {
            Some('S') => asleep += 1,
            Some(_) => asleep = 0,
            None => return,
        }
    }
}
