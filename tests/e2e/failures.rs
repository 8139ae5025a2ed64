//! A failing run explains itself: failing tests by id with their messages, the server's lines
//! while each ran, a server that dies mid-file, a broken JUnit, annotations, and the caps.
//! Real servers and real pytest.

use crate::common::*;

// Each test takes a moment, as an end-to-end test does (a browser step, a page load) before the
// request that fails: which test a server line belongs to is told from the tests' durations in
// the JUnit.
const SHOP: &str = r#"import os, time, urllib.error, urllib.request

def get(path):
    try:
        return urllib.request.urlopen(os.environ['BASE_URL'] + path, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code

def test_first_fails_on_its_own():
    time.sleep(0.3)
    assert 1 + 1 == 3, 'arithmetic is broken'

def test_second_hits_a_server_bug():
    time.sleep(0.3)
    status = get('/boom')
    assert status == 200, 'the server failed'

def test_third_passes():
    time.sleep(0.3)
    assert get('/healthz') == 200
"#;

/// The failures section's block of one test: from its `✗ id` line to the next block.
fn block<'a>(out: &'a str, id: &str) -> &'a str {
    let start = out
        .find(&format!("✗ {id}"))
        .unwrap_or_else(|| panic!("no block for {id}:\n{out}"));
    let skip = start + "✗".len();
    let rest = &out[skip..];
    let end = [rest.find("✗ "), rest.find("── "), rest.find(" files: ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    &out[start..skip + end]
}

/// The failures section's block of one file: from its `── ` line to the next file's.
fn block_of_file<'a>(out: &'a str, file: &str) -> &'a str {
    let start = out
        .find(&format!("── FAIL {file}"))
        .unwrap_or_else(|| panic!("no block for {file}:\n{out}"));
    let rest = &out[start..];
    let end = [rest.find("\n── "), rest.find(" files: ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn failing_tests_show_their_message_and_the_servers_lines_while_they_ran() {
    let f = Fixture::new("whyfail");
    f.write("tests/test_shop.py", SHOP);
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    let started = now_secs();
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let ended = now_secs();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    // The raw server log is what the server wrote; the times are beside it, one
    // `<unix seconds> <byte offset>` per line, each offset where its line starts.
    let dir = f.root().join("report/workers/test_shop");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.starts_with("server: listening on "), "{log}");
    assert!(
        log.contains("\nBoomError: the server broke on /boom\n"),
        "{log}"
    );
    let times = std::fs::read_to_string(dir.join("server.log.times")).unwrap();
    let mut starts = vec![0];
    starts.extend(log.match_indices('\n').map(|(i, _)| i + 1));
    starts.pop();
    let stamps: Vec<(f64, usize)> = times
        .lines()
        .map(|l| {
            let (t, o) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), o.parse().unwrap())
        })
        .collect();
    assert_eq!(
        stamps.iter().map(|s| s.1).collect::<Vec<_>>(),
        starts,
        "{times}\n{log}"
    );
    assert!(
        stamps.iter().all(|(t, _)| (started..=ended).contains(t)),
        "{times}"
    );
    let text = stdout(&out);
    let first = block(&text, "tests/test_shop.py::test_first_fails_on_its_own");
    assert!(
        first.contains("E       AssertionError: arithmetic is broken"),
        "{first}"
    );
    assert!(first.contains(">       assert 1 + 1 == 3"), "{first}");
    assert!(
        !first.contains("BoomError"),
        "another test's server lines: {first}"
    );
    let second = block(&text, "tests/test_shop.py::test_second_hits_a_server_bug");
    assert!(second.contains("server, while it ran:"), "{second}");
    assert!(
        second.contains("BoomError: the server broke on /boom"),
        "{second}"
    );
    assert!(!text.contains("test_third_passes"), "{text}");
    // The closing line still comes last, after the section.
    assert!(text.find("failures").unwrap() < text.find("1 files: 0 passed, 1 failed").unwrap());

    let s = f.summary();
    let failures = &s.workers[0].failures;
    assert_eq!(failures.len(), 2, "{failures:?}");
    let line_of = |needle: &str| SHOP.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;
    assert_eq!(
        failures[0].id,
        "tests/test_shop.py::test_first_fails_on_its_own"
    );
    assert_eq!(failures[0].file.as_deref(), Some("tests/test_shop.py"));
    assert_eq!(failures[0].line, Some(line_of("assert 1 + 1 == 3")));
    assert_eq!(failures[0].message, "AssertionError: arithmetic is broken");
    assert_eq!(failures[1].line, Some(line_of("assert status == 200")));
    assert!(text.contains(&format!(
        "::error file=tests/test_shop.py,line={}::tests/test_shop.py::test_second_hits_a_server_bug: AssertionError: the server failed",
        line_of("assert status == 200")
    )), "{text}");
    // The times are beside the raw log (checked first, above).
    let html = std::fs::read_to_string(f.root().join("report/report.html")).unwrap();
    assert!(html.contains("test_second_hits_a_server_bug") && html.contains("BoomError"));
    f.assert_clean();
}

#[test]
fn a_server_that_dies_mid_file_ends_the_file_at_once_and_says_so() {
    let f = Fixture::new("serverdies");
    f.write(
        "tests/test_server_goes.py",
        r#"import os, time, urllib.request

def test_crashes_the_server():
    try:
        urllib.request.urlopen(os.environ['BASE_URL'] + '/die', timeout=10)
    except Exception:
        pass
    assert False, 'the server went away'

def test_waits_for_a_server_that_is_gone():
    time.sleep(600)
"#,
    );
    f.plan(PlanOpts {
        test_timeout: "10m",
        keep: "never",
        ..Default::default()
    });
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let w = &s.workers[0];
    assert_eq!(w.verdict, Verdict::Fail);
    assert_eq!(
        w.message.as_deref(),
        Some("server exited with code 7 during the tests")
    );
    // Well under the 10-minute timeout the sleeping test would have run into.
    assert!(w.duration < 120.0, "{w:?}");
    let text = stdout(&out);
    assert!(text.contains("the server's last lines:"), "{text}");
    assert!(text.contains("server: exiting with 7 on /die"), "{text}");
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(junit.contains("tests after the server died"), "{junit}");
    let html = std::fs::read_to_string(f.root().join("report/report.html")).unwrap();
    assert!(html.contains("server exited with code 7 during the tests"));
    f.assert_clean();
}

#[test]
fn a_broken_junit_still_shows_the_test_logs_tail() {
    let f = Fixture::new("brokenjunit");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        keep: "never",
        server: false,
        ..Default::default()
    });
    let py = python().display().to_string();
    f.edit_plan(&[(
        &format!("command = [\"{py}\", \"-m\", \"pytest\""),
        "command = [\"sh\", \"-c\", \"echo the last words of the test run; echo not xml > \\\"$0\\\"; exit 1\", \"{junit}\"]\n# was: [\"pytest\"",
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("the end of its test log:"), "{text}");
    assert!(text.contains("the last words of the test run"), "{text}");
    f.assert_clean();
}

#[test]
fn the_failures_section_is_capped_unless_asked_for_all_of_it() {
    let f = Fixture::new("manyfail");
    for i in 0..12 {
        f.failing_test(&format!("test_f{i:02}"));
    }
    // First in path order: a file with 7 failing tests, each with a 20-line message.
    f.write(
        "tests/test_a_many.py",
        &(0..7)
            .map(|i| format!("def test_m{i}():\n    assert False, '\\n'.join('line %d' % n for n in range(20))\n\n"))
            .collect::<String>(),
    );
    f.plan(PlanOpts {
        keep: "never",
        server: false,
        ..Default::default()
    });
    let short = stdout(&f.run(&["apply", "plan.toml"]));
    assert_eq!(short.matches("\n── FAIL").count(), 10, "{short}");
    assert!(short.contains("… 3 more file(s) did not pass"), "{short}");
    // 5 tests a file, 8 lines a test.
    let many = block_of_file(&short, "tests/test_a_many.py");
    assert_eq!(many.matches("   ✗ ").count(), 5, "{many}");
    assert!(many.contains("… 2 more failing test(s) in"), "{many}");
    for test in many.split("   ✗ ").skip(1) {
        let detail: Vec<&str> = test
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("     "))
            .collect();
        assert_eq!(detail.len(), 9, "8 lines and where the rest is: {test}");
        assert!(detail[8].contains("more line(s) in"), "{test}");
    }
    let full = stdout(&f.run(&["apply", "plan.toml", "--failure-output", "full"]));
    assert_eq!(full.matches("\n── FAIL").count(), 13, "{full}");
    assert!(!full.contains("more file(s) did not pass"), "{full}");
    let many = block_of_file(&full, "tests/test_a_many.py");
    assert_eq!(many.matches("   ✗ ").count(), 7, "{many}");
    assert!(
        !many.contains("more failing test(s)") && !many.contains("more line(s)"),
        "{many}"
    );
    let none = stdout(&f.run(&["apply", "plan.toml", "--failure-output", "none"]));
    assert!(
        !none.contains("\nfailures\n") && !none.contains("── FAIL"),
        "{none}"
    );
    assert!(none.contains("13 files: 0 passed, 13 failed"), "{none}");
    f.assert_clean();
}
