//! A pack (`units = "auto"`): short files run one after another by one test process, in one
//! database with one server, as plain pytest would run them. Each file still gets its own row:
//! its JUnit cases (found by pytest's classname), its verdict, counts and logs. A file that fails
//! is retried alone, in fresh isolation, like any other.

use std::path::Path;

use quick_junit::{Report, TestSuite};

use super::worker::{record, run_attempt, settle_artifacts};
use super::{RunCx, StepError};
use crate::engine::{Cancel, Outcome};
use crate::events::Event;
use crate::model::junit::{read, read_counts, tests_secs};
use crate::model::{files, Attempt, Verdict};
use crate::plan::Artifacts;
use crate::planner::units::module_name;
use crate::planner::WorkerPlan;

/// A planned pack's one attempt, then a row for each of its files.
pub async fn run_pack(cx: &RunCx, index: usize, cancel: &Cancel) -> Result<Outcome, StepError> {
    let pack = &cx.dag().workers[index];
    cx.after_critical_startup(index, cancel).await;
    run(cx, pack, cancel).await.0
}

/// A pack's one attempt (planned, or made by the queue during the run), then a row for each of
/// its files. Returns the pack's attempt too (what the queue learns from).
pub async fn run(
    cx: &RunCx,
    pack: &WorkerPlan,
    cancel: &Cancel,
) -> (Result<Outcome, StepError>, Attempt) {
    let (attempt, error) = match run_attempt(cx, pack, 1, cancel).await {
        Ok(a) => (a, None),
        Err(failed) => {
            let (a, e) = *failed;
            (a, Some(e))
        }
    };
    cx.prefetch.release(pack.index);
    cx.say(Event::PackFinished { worker: pack.index });
    let files: Vec<&WorkerPlan> = pack.pack.iter().map(|&f| &cx.dag().workers[f]).collect();
    let whole = attempt.clone();
    let attempts = split_attempt(cx, pack, &files, attempt);
    let mut outcome = Outcome::Ok;
    for (w, a) in files.iter().zip(attempts) {
        outcome = match (a.verdict, outcome) {
            (Verdict::Fail | Verdict::Timeout | Verdict::Error, _) => Outcome::Failed,
            (Verdict::Cancelled, Outcome::Ok) => Outcome::Cancelled,
            (_, o) => o,
        };
        record(cx, w, a);
    }
    // Every file has its own copy of what it needs: the pack's folder goes.
    let _ = std::fs::remove_dir_all(&pack.log_dir);
    let result = match error {
        Some(e) => Err(e),
        None => Ok(outcome),
    };
    (result, whole)
}

/// One attempt per file from the pack's: the file's JUnit cases in its own JUnit file, the
/// pack's logs linked into its folder, its verdict from its own cases.
fn split_attempt(
    cx: &RunCx,
    pack: &WorkerPlan,
    files: &[&WorkerPlan],
    attempt: Attempt,
) -> Vec<Attempt> {
    let report = read(&pack.junit).ok();
    let dir = attempt.log_dir.clone();
    let paths: Vec<&str> = files.iter().map(|w| w.file.as_str()).collect();
    let test_started = tests_started(cx, &attempt);
    let suites = report
        .as_ref()
        .map(|r| suites_by_file(r, &paths, test_started));
    if let Some((_, unclaimed)) = &suites {
        if !unclaimed.is_empty() {
            cx.warn(format!(
                "{} test case(s) in the JUnit of {} belong to none of its files (e.g. {}); they are left out of the report",
                unclaimed.len(),
                pack.stem,
                unclaimed[0]
            ));
        }
    }
    // A pack that timed out was interrupted: the file it stopped in timed out, those before it
    // ended as their cases say, those after it never ran. Without its JUnit nothing says which
    // file ran what: every file timed out.
    let stopped = match &suites {
        Some((s, _)) if attempt.verdict == Verdict::Timeout => {
            let ran: Vec<bool> = s.iter().map(|s| !s.test_cases.is_empty()).collect();
            Some(stopped_in(&dir.join(files::TEST_LOG), &paths, &ran))
        }
        _ => None,
    };
    let mut out: Vec<Attempt> = files
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let suite = suites.as_ref().map(|(s, _)| s[i].clone());
            let timed_out = stopped.map(|at| (i.cmp(&at), paths[at]));
            let mut a = file_attempt(
                pack,
                &dir,
                w,
                &paths,
                &attempt,
                suite,
                timed_out,
                cx.plan().artifacts,
            );
            share_costs(&mut a, &attempt);
            a
        })
        .collect();
    // The test process passed but its JUnit cannot be read: nothing says which file ran what.
    if attempt.verdict == Verdict::Pass && report.is_none() {
        for a in &mut out {
            a.verdict = Verdict::Error;
            a.message = Some(format!(
                "the JUnit of {} ({}) could not be read: which of its files ran is unknown",
                pack.stem,
                pack.junit.display()
            ));
        }
    }
    // The test process failed, yet no file has a failing case: say so rather than pass them.
    let any_failed = out.iter().any(|a| a.verdict != Verdict::Pass);
    if attempt.verdict == Verdict::Fail && !any_failed {
        for a in &mut out {
            a.verdict = Verdict::Error;
            a.message = Some(format!(
                "the test process of {} failed (exit code {}) but its JUnit names no failing test of any of its files; see test.log",
                pack.stem,
                attempt.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into())
            ));
        }
    }
    out
}

/// Which of `paths` an interrupted pytest stopped in: its log's last
/// `<path>:<line>: KeyboardInterrupt` (where the running test was when SIGINT came) when that
/// is a file of the pack; else (it was in a library's code) the last file with a case in the
/// JUnit, which may have finished, never a later one: the file named is never one that passed;
/// else (no case at all) the first.
fn stopped_in(log: &Path, paths: &[&str], ran: &[bool]) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let named = text
        .lines()
        .rev()
        .find_map(|line| line.trim_end().strip_suffix(": KeyboardInterrupt"))
        .and_then(|at| at.rsplit_once(':'))
        .filter(|(_, lineno)| lineno.parse::<u32>().is_ok())
        .and_then(|(path, _)| {
            paths.iter().position(|p| {
                path == *p || path.strip_suffix(p).is_some_and(|head| head.ends_with('/'))
            })
        });
    named.or_else(|| ran.iter().rposition(|r| *r)).unwrap_or(0)
}

/// A file's attempt from its pack's: its own folder with everything the pack's attempt wrote
/// (linked), but the JUnit, which holds only its own cases. `timed_out`: the pack timed out,
/// and where this file stands from the one it stopped in (named).
#[allow(clippy::too_many_arguments)]
fn file_attempt(
    pack: &WorkerPlan,
    pack_dir: &Path,
    w: &WorkerPlan,
    paths: &[&str],
    attempt: &Attempt,
    suite: Option<TestSuite>,
    timed_out: Option<(std::cmp::Ordering, &str)>,
    policy: Artifacts,
) -> Attempt {
    let mut a = attempt.clone();
    let mine = w.attempt(1).map(|p| p.paths.clone());
    let (dir, junit) = match &mine {
        Some(p) => (p.dir.clone(), p.junit.clone()),
        None => (w.log_dir.clone(), w.junit.clone()),
    };
    a.log_dir = dir.clone();
    a.packed_with = paths
        .iter()
        .filter(|p| **p != w.file)
        .map(|p| p.to_string())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let pack_artifacts = pack_dir.join(files::ARTIFACTS);
    link_tree(
        pack_dir,
        &dir,
        &[pack.junit.as_path(), pack_artifacts.as_path()],
    );
    let artifacts = dir.join(files::ARTIFACTS);
    link_own_artifacts(&pack_artifacts, &artifacts, &w.file, paths);
    if let Some(suite) = suite {
        write_junit(&junit, suite);
    }
    a.counts = read_counts(&junit);
    a.tests_secs = tests_secs(&junit);
    if let Some(t) = a.tests_secs {
        a.duration = t;
    }
    let ran = a.counts.is_some_and(|c| c.tests > 0);
    if let Some((std::cmp::Ordering::Greater, at)) = timed_out {
        // The pack timed out in a file before this one: it never ran, and is retried alone
        // like a failure.
        a.verdict = Verdict::Fail;
        a.message = Some(format!(
            "did not run: the test process of {} (with {}) timed out in {at} before this file's tests",
            pack.stem,
            a.packed_with.join(", "),
        ));
    } else if attempt.verdict == Verdict::Fail && !ran {
        // The test process stopped before this file (a pack mate's collection error, `-x`, a
        // dead server, a crash): it did not pass, and it is retried alone like a failure.
        a.verdict = Verdict::Fail;
        a.message = Some(format!(
            "did not run: the test process of {} (with {}) ended before this file's tests, exit code {}; see test.log",
            pack.stem,
            a.packed_with.join(", "),
            attempt.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into())
        ));
    } else if matches!(attempt.verdict, Verdict::Pass | Verdict::Fail)
        || (ran && matches!(timed_out, Some((std::cmp::Ordering::Less, _))))
    {
        // Its tests all ended (before the file its pack timed out in, too).
        let failed = a.counts.is_some_and(|c| c.failed + c.errors > 0);
        a.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
        a.exit_code = Some(if failed { 1 } else { 0 });
        a.message = None;
        if !failed {
            // Its tests all passed before the server went: that is not its failure.
            a.server_died = None;
        }
    } else {
        let why = attempt.message.clone().unwrap_or_default();
        a.message = Some(format!(
            "{why} (in {} with {})",
            pack.stem,
            a.packed_with.join(", ")
        ));
    }
    settle_artifacts(policy, &artifacts, &junit, a.verdict, 1);
    a
}

/// Links into a packed file's artifacts folder what of its pack's is its own: each top-level
/// folder or file named after one of its tests, and those named after no file of the pack (the
/// attempt's, which every file shares). A file never gets its pack mates' folders.
fn link_own_artifacts(from: &Path, to: &Path, file: &str, paths: &[&str]) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    let mine = paths.iter().position(|p| *p == file);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = crate::model::artifacts::file_of(&name, paths);
        if owner.is_some() && owner != mine {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            link_tree(&entry.path(), &dest, &[]);
        } else {
            let _ = std::fs::create_dir_all(to);
            if std::fs::hard_link(entry.path(), &dest).is_err() {
                let _ = std::fs::copy(entry.path(), &dest);
            }
        }
    }
}

/// A file of a pack learns the pack's start-up as its own (one start-up serves them all) and
/// its share of the pack's tests: by its tests' JUnit times.
fn share_costs(a: &mut Attempt, pack: &Attempt) {
    let share = a
        .tests_secs
        .zip(pack.tests_secs)
        .map(|(mine, all)| if all > 0.0 { mine / all } else { 0.0 });
    a.tests_alone_secs = share.zip(pack.tests_alone_secs).map(|(s, t)| s * t);
    a.tests_cpu_secs = share.zip(pack.tests_cpu_secs).map(|(s, t)| s * t);
}

/// When the pack's test process started (Unix seconds).
fn tests_started(cx: &RunCx, attempt: &Attempt) -> f64 {
    let run = cx.config().started_unix();
    let testing = attempt
        .phases
        .iter()
        .find(|p| p.phase == crate::events::Phase::Testing)
        .map(|p| p.start)
        .unwrap_or_default();
    run + testing
}

/// The report's cases grouped by file (one suite each, in `paths` order), each suite placed in
/// time where its file's tests ran (so that the failures section finds what the server printed
/// meanwhile), and the ids of the cases that belong to none.
fn suites_by_file(
    report: &Report,
    paths: &[&str],
    test_started: f64,
) -> (Vec<TestSuite>, Vec<String>) {
    let mut suites: Vec<TestSuite> = paths.iter().map(|p| TestSuite::new(*p)).collect();
    let mut unclaimed = Vec::new();
    let mut span: Vec<Option<(f64, f64)>> = vec![None; paths.len()];
    for source in &report.test_suites {
        let starts = case_starts(source, test_started);
        for (case, start) in source.test_cases.iter().zip(starts) {
            let module = module_of(case);
            // An interrupted pytest writes an empty case for the test it was running.
            if module.is_empty() {
                continue;
            }
            let Some(i) = owner(module, paths) else {
                unclaimed.push(format!("{module}::{}", case.name.as_str()));
                continue;
            };
            suites[i].add_test_case(case.clone());
            if let Some(start) = start {
                let end = start + case.time.map(|t| t.as_secs_f64()).unwrap_or_default();
                span[i] = Some(match span[i] {
                    Some((a, b)) => (a.min(start), b.max(end)),
                    None => (start, end),
                });
            }
        }
    }
    for (suite, span) in suites.iter_mut().zip(span) {
        if let Some((start, end)) = span {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(start.max(0.0));
            suite.set_timestamp(chrono::DateTime::<chrono::Utc>::from(at));
            suite.set_time(std::time::Duration::from_secs_f64((end - start).max(0.0)));
        }
    }
    (suites, unclaimed)
}

/// A case's module: pytest's classname; a collection error has none, and its name is the module.
fn module_of(case: &quick_junit::TestCase) -> &str {
    match case.classname.as_ref().map(|c| c.as_str()) {
        Some(c) if !c.is_empty() => c,
        _ => case.name.as_str(),
    }
}

/// When each case of a suite began (Unix seconds), laid back from the suite's end by the cases'
/// times, as the failures section does; None when the suite does not say when it started.
fn case_starts(suite: &TestSuite, test_started: f64) -> Vec<Option<f64>> {
    let start = suite
        .extra
        .get("timestamp")
        .and_then(|s| super::failures::suite_start(s.as_str(), test_started));
    let (Some(start), Some(total)) = (start, suite.time) else {
        return vec![None; suite.test_cases.len()];
    };
    let mut next = start + total.as_secs_f64();
    let mut out = vec![None; suite.test_cases.len()];
    for (i, case) in suite.test_cases.iter().enumerate().rev() {
        next -= case.time.map(|t| t.as_secs_f64()).unwrap_or_default();
        out[i] = Some(next);
    }
    out
}

/// Which file a dotted module path (pytest's classname, `tests.e2e.test_x.TestA`) belongs to:
/// the one whose path, as dotted components, ends where a prefix of it does. pytest names
/// modules from its rootdir, so a file's path may be cut at the front (rootdir below the plan's
/// root) or added to (rootdir above it, or `--junit-prefix`). The best match wins: the whole
/// path, then a path the classname adds to, then one it cuts; two files matching equally (two
/// `tests/test_models.py` of different apps, cut to `tests.test_models`) are ambiguous, and the
/// case belongs to neither rather than to the wrong one.
pub fn owner(module: &str, paths: &[&str]) -> Option<usize> {
    let parts: Vec<&str> = module.split('.').collect();
    let score = |p: &str| -> u8 {
        let name = module_name(p);
        let dotted = crate::model::junit::dotted_module(p);
        let mut best = 0;
        for (i, part) in parts.iter().enumerate() {
            if *part != name {
                continue;
            }
            let prefix = parts[..=i].join(".");
            let s = if dotted == prefix {
                3
            } else if prefix.ends_with(&format!(".{dotted}")) {
                2
            } else if dotted.ends_with(&format!(".{prefix}")) {
                1
            } else {
                0
            };
            best = best.max(s);
        }
        best
    };
    let scores: Vec<u8> = paths.iter().map(|p| score(p)).collect();
    let top = scores.iter().copied().max().filter(|&s| s > 0)?;
    let mut best = scores.iter().enumerate().filter(|(_, s)| **s == top);
    let (i, _) = best.next()?;
    best.next().is_none().then_some(i)
}

fn write_junit(path: &Path, suite: TestSuite) {
    let mut report = Report::new("pytest");
    report.add_test_suite(suite);
    if let Ok(xml) = report.to_string() {
        let _ = std::fs::write(path, xml);
    }
}

/// Links (or copies, across file systems) every file under `from` into the same place under
/// `to`, folders made as needed; `skip` (the pack's JUnit, its artifacts folder) is left out.
fn link_tree(from: &Path, to: &Path, skip: &[&Path]) {
    let walk = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_entry(|e| !skip.contains(&e.path()));
    for entry in walk.flatten() {
        let Ok(rel) = entry.path().strip_prefix(from) else {
            continue;
        };
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            let _ = std::fs::create_dir_all(&dest);
        } else if std::fs::hard_link(entry.path(), &dest).is_err() {
            let _ = std::fs::copy(entry.path(), &dest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_find_their_file_from_any_rootdir() {
        let paths = ["tests/e2e/test_a.py", "tests/e2e/test_b.py"];
        assert_eq!(owner("tests.e2e.test_a", &paths), Some(0));
        assert_eq!(owner("e2e.test_b.TestX", &paths), Some(1));
        assert_eq!(owner("test_b", &paths), Some(1));
        assert_eq!(owner("other.test_b", &paths), None);
        assert_eq!(owner("tests.e2e.test_c", &paths), None);
        // A class named like another file's module does not move a case there.
        assert_eq!(owner("tests.e2e.test_a.test_b", &paths), Some(0));
        // A rootdir above the plan's root, or a junit prefix, adds to the front.
        assert_eq!(owner("repo.tests.e2e.test_b.TestX", &paths), Some(1));
    }

    /// pytest, interrupted, names the test it was in as `<path>:<line>: KeyboardInterrupt`,
    /// relative to its rootdir or absolute; in a library's code, the last file with a case is
    /// taken (never a later one), or the first.
    #[test]
    fn an_interrupted_pytest_names_the_file_it_stopped_in() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("test.log");
        let paths = ["tests/test_a.py", "tests/test_b.py", "tests/test_c.py"];
        let case = |text: &str, ran: [bool; 3]| {
            std::fs::write(&log, text).unwrap();
            stopped_in(&log, &paths, &ran)
        };
        let named =
            "..\n!!!!! KeyboardInterrupt !!!!!\n/repo/tests/test_b.py:6: KeyboardInterrupt\n";
        assert_eq!(case(named, [true, true, false]), 1);
        assert_eq!(case(named, [true, false, false]), 1);
        assert_eq!(case("tests/test_c.py:2: KeyboardInterrupt\n", [true; 3]), 2);
        // A library's line, another file's name, or one that only ends like one: the cases say.
        let library = "/usr/lib/python3.11/subprocess.py:2004: KeyboardInterrupt\n";
        assert_eq!(case(library, [true, true, false]), 1);
        assert_eq!(case(library, [false; 3]), 0);
        assert_eq!(
            case(
                "tests/xtest_c.py:2: KeyboardInterrupt\n",
                [true, false, false]
            ),
            0
        );
        assert_eq!(case("", [true, true, true]), 2);
    }

    /// Django keeps tests per app, under the same names: the whole path tells them apart; cut
    /// to a name both share, a case belongs to neither.
    #[test]
    fn files_of_one_name_in_different_folders_are_told_apart_or_left_alone() {
        let paths = [
            "catalog/tests/test_models.py",
            "orders/tests/test_models.py",
        ];
        assert_eq!(owner("catalog.tests.test_models.TestA", &paths), Some(0));
        assert_eq!(owner("orders.tests.test_models", &paths), Some(1));
        assert_eq!(owner("repo.orders.tests.test_models", &paths), Some(1));
        assert_eq!(owner("tests.test_models.TestA", &paths), None, "ambiguous");
        assert_eq!(owner("test_models", &paths), None, "ambiguous");
    }
}
