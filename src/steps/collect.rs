//! `[test] collect`: a file's test ids, listed before the run plans its units, for the files
//! `units = "auto"` may split. It runs before setup, without a database or a server (pytest's
//! `--collect-only` imports the tests but runs no fixture). A collect that fails or prints no
//! ids of the file leaves the file whole, and says why.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::plan::Plan;
use crate::planner::parts::Collected;

/// Collects every file's test ids at once (one process each), each within `timeout`.
pub fn collect(plan: &Plan, files: &[String], args: &[String], timeout: Duration) -> Collected {
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| (f, s.spawn(move || collect_one(plan, f, args, timeout))))
            .collect();
        handles
            .into_iter()
            .map(|(f, h)| {
                let ids = h
                    .join()
                    .unwrap_or_else(|_| Err("the collecting thread panicked".into()));
                (f.clone(), ids)
            })
            .collect()
    })
}

fn collect_one(
    plan: &Plan,
    file: &str,
    args: &[String],
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let (argv, env) = crate::planner::collect_command(plan, file, args)
        .ok_or("the plan has no `[test] collect`")?;
    let (program, rest) = argv.split_first().ok_or("the collect command is empty")?;
    let child = Command::new(program)
        .args(rest)
        .envs(super::process::worker_env(&env))
        .current_dir(&plan.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: on a timeout the group we started is what we end.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", shell_words::join(&argv)))?;
    let pgid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(|e| format!("collect: {e}"))?,
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            return Err(format!(
                "`{}` did not finish within {}s",
                shell_words::join(&argv),
                timeout.as_secs()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stdout.lines().chain(err.lines()).rev().take(3).collect();
        return Err(format!(
            "`{}` exited with {}: {}",
            shell_words::join(&argv),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    parse_ids(&stdout, file)
}

/// The ids of `file`'s tests in pytest's `--collect-only -q` output (one `file::name` per line,
/// then a count): every line that starts with the file's path and `::`.
pub fn parse_ids(output: &str, file: &str) -> Result<Vec<String>, String> {
    let prefix = format!("{file}::");
    let ids: Vec<String> = output
        .lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(format!(
            "its output names no test of {file} (ids must start with `{prefix}`, relative to the plan's root)"
        ));
    }
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(format!("its output names a test of {file} twice"));
    }
    // pytest ends with how many it collected: a list cut short would leave tests out of every part.
    if let Some(n) = output.lines().rev().find_map(collected_count) {
        if n != ids.len() {
            return Err(format!(
                "its output says {n} test(s) were collected but names {} of {file}",
                ids.len()
            ));
        }
    }
    Ok(ids)
}

/// The count in pytest's last line: `20 tests collected in 0.02s`, `1 test collected`, or
/// `3/20 tests collected (17 deselected)` (3 selected).
fn collected_count(line: &str) -> Option<usize> {
    let line = line.trim().trim_matches('=').trim();
    let (count, rest) = line.split_once(' ')?;
    if !(rest.starts_with("tests collected") || rest.starts_with("test collected")) {
        return None;
    }
    count.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_lines_of_the_file() {
        let out = "tests/test_a.py::test_one\ntests/test_a.py::TestX::test_two[a b]\n\n2 tests collected in 0.01s\n";
        assert_eq!(
            parse_ids(out, "tests/test_a.py").unwrap(),
            [
                "tests/test_a.py::test_one",
                "tests/test_a.py::TestX::test_two[a b]"
            ]
        );
        assert!(parse_ids("no tests ran\n", "tests/test_a.py").is_err());
        // A list cut short, against pytest's own count.
        let short = "tests/test_a.py::test_one\n\n2 tests collected in 0.01s\n";
        assert!(parse_ids(short, "tests/test_a.py")
            .unwrap_err()
            .contains("says 2"));
        let selected = "tests/test_a.py::t\n\n1/3 tests collected (2 deselected) in 0.01s\n";
        assert_eq!(parse_ids(selected, "tests/test_a.py").unwrap().len(), 1);
        assert!(parse_ids("e2e/tests/test_a.py::t\n", "tests/test_a.py").is_err());
    }
}
