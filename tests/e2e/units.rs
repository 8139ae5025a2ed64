//! `units = "auto"`: short files with a heavy start-up packed into one test process per pack,
//! each file still its own row; a failed packed file retried alone; `units = "file"` unchanged.
//! Real PostgreSQL, real pytest, real servers.

use crate::common::*;

/// Four short files; each records, per test, the database it used and when (to check that no two
/// files ever used one database at the same time), and leaves the table as it found it, as tests
/// sharing one database under plain pytest must.
fn short_project(name: &str, units: &str) -> Fixture {
    let f = Fixture::new(name);
    for stem in ["test_a", "test_b", "test_c", "test_d"] {
        f.write(
            &format!("tests/{stem}.py"),
            &format!(
                r#"import os, time

def test_{stem}_writes_and_cleans(db, http_get):
    dbname = os.environ['DATABASE_URL'].rsplit('/', 1)[1]
    start = time.time()
    assert http_get('/db')[1] == dbname, 'the server is on this file s database'
    db("insert into items values ('{stem}')")
    assert db("select count(*) from items where v = '{stem}'") == '1'
    time.sleep(0.3)
    db("delete from items where v = '{stem}'")
    with open(os.path.join(os.environ['ROOT'], 'trace', '{stem}'), 'a') as t:
        t.write(f'{{dbname}} {{start}} {{time.time()}}\n')
"#
            ),
        );
    }
    std::fs::create_dir_all(f.root().join("trace")).unwrap();
    f.plan(PlanOpts {
        keep: "never",
        ..Default::default()
    });
    f.edit_plan(&[
        ("\"{root}/{file}\"", "\"{file}\""),
        (", TEST_FILE = \"{file}\"", ""),
        (
            "HAS_SERVER = \"1\"",
            "HAS_SERVER = \"1\", ROOT = \"{root}\"",
        ),
        ("[run]\n", &format!("[run]\nunits = \"{units}\"\n")),
    ]);
    // Recorded timings: each file's tests take 0.3 s of its 3 s (the rest is start-up).
    let files: Vec<String> = ["test_a", "test_b", "test_c", "test_d"]
        .iter()
        .map(|s| format!("\"tests/{s}.py\": {{\"secs\": 3.0, \"runs\": 1, \"tests\": 0.3}}"))
        .collect();
    f.write(
        ".e2e-plan/timings.json",
        &format!("{{\"files\": {{{}}}}}", files.join(", ")),
    );
    f
}

/// (file, database, start, end) of every test that ran.
fn traces(f: &Fixture) -> Vec<(String, String, f64, f64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(f.root().join("trace")).unwrap().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let w: Vec<&str> = line.split(' ').collect();
            out.push((
                file.clone(),
                w[0].to_string(),
                w[1].parse().unwrap(),
                w[2].parse().unwrap(),
            ));
        }
    }
    out
}

/// The dry-run's closing prediction is the one `auto` chose its packs and parts by (the last
/// `predicted wall` of its notes), not a second figure.
fn one_predicted_wall(text: &str) {
    let after = |key: &str| -> Vec<String> {
        text.match_indices(key)
            .map(|(i, _)| {
                text[i + key.len()..]
                    .split(|c: char| c == 's' || c.is_whitespace())
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let chosen = after("predicted wall ").into_iter().rfind(|w| w != "time");
    let closing = after("predicted wall time ").pop();
    assert!(chosen.is_some(), "no prediction for the units: {text}");
    assert_eq!(chosen, closing, "two predicted walls: {text}");
}

#[test]
fn packed_files_keep_their_rows_and_never_share_a_database_at_the_same_time() {
    let f = short_project("units_pack", "auto");
    let dry = f.run(&["dry-run", "plan.toml"]);
    let text = stdout(&dry);
    assert!(text.contains("units = \"auto\": 4 file(s)"), "{text}");
    assert!(
        text.contains("files in one test process, one after another"),
        "{text}"
    );
    one_predicted_wall(&text);

    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    // A row per file, each with its own verdict, counts and JUnit suite.
    let files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    assert_eq!(
        files,
        [
            "tests/test_a.py",
            "tests/test_b.py",
            "tests/test_c.py",
            "tests/test_d.py"
        ]
    );
    for w in &s.workers {
        assert_eq!(w.verdict, Verdict::Pass, "{w:?}");
        assert_eq!(w.counts.unwrap().passed, 1, "{w:?}");
    }
    let packed = s
        .workers
        .iter()
        .filter(|w| !w.attempts[0].packed_with.is_empty())
        .count();
    assert!(packed >= 2, "nothing was packed: {:?}", s.workers);
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    for file in &files {
        assert!(
            junit.contains(&format!("<testsuite name=\"{file}\"")),
            "{junit}"
        );
    }
    // Files that ran at the same time never shared a database; files of one pack did, one after
    // another.
    let t = traces(&f);
    assert_eq!(t.len(), 4, "{t:?}");
    for a in &t {
        for b in &t {
            if a.0 != b.0 && a.1 == b.1 {
                assert!(
                    a.3 <= b.2 || b.3 <= a.2,
                    "{a:?} and {b:?} shared a database at once"
                );
            }
        }
    }
    assert!(
        t.iter().any(|a| t.iter().any(|b| a.0 != b.0 && a.1 == b.1)),
        "no two files shared a pack's database: {t:?}"
    );
    // The timings learnt each file's run (packed or not): a second run, its start-up (the
    // fixture recorded none) and its test by id, which the fixture did not have either.
    let text = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    let timings: serde_json::Value = serde_json::from_str(&text).unwrap();
    for file in &files {
        let t = &timings["files"][file];
        assert_eq!(t["runs"], 2, "{file}: {text}");
        assert!(t["startup"].as_f64().is_some(), "{file}: {text}");
        let stem = file.trim_start_matches("tests/").trim_end_matches(".py");
        let case = t["cases"][format!("{file}::test_{stem}_writes_and_cleans")].as_f64();
        assert!(case.is_some_and(|c| c >= 0.3), "{file}: {text}");
        // And whether it ran packed, which the next choice leans to.
        let w = s.workers.iter().find(|w| &w.file == file).unwrap();
        let packed = !w.attempts[0].packed_with.is_empty();
        assert_eq!(t["packed"], packed, "{file}: {text}");
    }
    f.assert_clean();
}

#[test]
fn a_failed_packed_file_is_retried_alone() {
    let f = short_project("units_retry", "auto");
    // test_b fails the first time it runs (a marker file), then passes.
    f.write(
        "tests/test_b.py",
        r#"import os

def test_b_flaky(db):
    marker = os.path.join(os.environ['ROOT'], 'b-failed-once')
    if not os.path.exists(marker):
        open(marker, 'w').close()
        assert False, 'first run fails'
"#,
    );
    f.edit_plan(&[("[run]\n", "[run]\nretries = 1\n")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let b = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_b.py")
        .unwrap();
    assert_eq!(b.verdict, Verdict::Flaky, "{b:?}");
    assert_eq!(b.attempts.len(), 2, "{b:?}");
    assert!(
        !b.attempts[0].packed_with.is_empty(),
        "the first attempt ran in a pack: {b:?}"
    );
    assert!(
        b.attempts[1].packed_with.is_empty(),
        "the retry ran alone: {b:?}"
    );
    assert_ne!(b.attempts[0].db_name, b.attempts[1].db_name);
    // Its pack mates passed on the first pass and were not run again.
    for w in s.workers.iter().filter(|w| w.file != "tests/test_b.py") {
        assert_eq!((w.verdict, w.attempts.len()), (Verdict::Pass, 1), "{w:?}");
    }
    f.assert_clean();
}

#[test]
fn units_file_runs_a_worker_per_file_whatever_the_timings() {
    let f = short_project("units_file", "file");
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    assert!(s
        .workers
        .iter()
        .all(|w| w.attempts[0].packed_with.is_empty()));
    let dbs: std::collections::BTreeSet<String> = traces(&f).into_iter().map(|t| t.1).collect();
    assert_eq!(dbs.len(), 4, "a database per file: {dbs:?}");
    f.assert_clean();
}

#[test]
fn a_plan_that_names_one_file_outside_the_test_command_is_never_packed() {
    let f = short_project("units_unpackable", "auto");
    f.edit_plan(&[("ROOT = \"{root}\"", "ROOT = \"{root}\", ONE = \"{file}\"")]);
    let text = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(
        text.contains(
            "units = \"auto\": no packs: `{file}` or `{file_stem}` is used where one file is meant"
        ),
        "{text}"
    );
    assert!(!text.contains("one test process"), "{text}");
}

#[test]
fn files_of_a_pack_that_stopped_before_them_never_pass() {
    let f = short_project("units_stopped", "auto");
    // A collection error stops pytest's whole session: no file of the pack runs a test.
    f.write("tests/test_a.py", "def test_a(:\n    pass\n");
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let a = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_a.py")
        .unwrap();
    assert!(
        !a.attempts[0].packed_with.is_empty(),
        "test_a ran in a pack: {a:?}"
    );
    // Whatever passed ran its test; test_a and its pack mates did not pass.
    for w in &s.workers {
        if w.verdict == Verdict::Pass {
            assert_eq!(
                w.counts.unwrap().passed,
                1,
                "{} passed without running: {w:?}",
                w.file
            );
        }
    }
    assert_ne!(a.verdict, Verdict::Pass);
    let mates: Vec<_> = s
        .workers
        .iter()
        .filter(|w| a.attempts[0].packed_with.contains(&w.file))
        .collect();
    assert!(!mates.is_empty());
    for w in mates {
        assert_eq!(w.verdict, Verdict::Fail, "{w:?}");
        let m = w.message.as_deref().unwrap_or_default();
        assert!(m.starts_with("did not run: the test process of"), "{w:?}");
    }
    f.assert_clean();
}

#[test]
fn with_more_workers_than_cores_the_longest_starts_first_and_the_others_yield_the_cpu() {
    let f = short_project("units_nice", "file");
    // More files than this machine has cores; the first is predicted far longer than the rest.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let stems: Vec<String> = (0..cores.max(4) + 2)
        .map(|i| format!("test_n{i:02}"))
        .collect();
    for e in std::fs::read_dir(f.root().join("tests")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("test_") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let mut timings = Vec::new();
    for (i, stem) in stems.iter().enumerate() {
        f.write(
            &format!("tests/{stem}.py"),
            &format!(
                "import os\n\ndef test_{stem}_nice():\n    with open(os.path.join(os.environ['ROOT'], 'trace', '{stem}'), 'w') as t:\n        t.write(str(os.nice(0)))\n"
            ),
        );
        if i == 0 {
            // The critical file's test process is busy starting for about a second (CPU), then
            // notes when it was done.
            f.write(
                &format!("tests/{stem}.py"),
                &format!(
                    "import os, time\n\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass\nopen(os.path.join(os.environ['ROOT'], 'trace', 'busy_end'), 'w').close()\n\ndef test_{stem}_nice():\n    with open(os.path.join(os.environ['ROOT'], 'trace', '{stem}'), 'w') as t:\n        t.write(str(os.nice(0)))\n"
                ),
            );
        }
        let secs = if i == 0 { 20.0 } else { 2.0 };
        timings.push(format!(
            "\"tests/{stem}.py\": {{\"secs\": {secs}, \"runs\": 1}}"
        ));
    }
    f.write(
        ".e2e-plan/timings.json",
        &format!("{{\"files\": {{{}}}}}", timings.join(", ")),
    );
    f.edit_plan(&[(
        "GRANDCHILD = ",
        "NOTE_TO = \"{root}/trace/server_{port}\", NOTE_AFTER = \"{root}/trace/busy_end\", GRANDCHILD = ",
    )]);
    let dry = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(
        dry.contains(&format!(
            "tests/{}.py  (~2.0s, nice 14, after the critical start-up)",
            stems[1]
        )),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("tests/{}.py  (~20.0s)", stems[0])),
        "{dry}"
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let nice = |stem: &str| -> i32 {
        std::fs::read_to_string(f.root().join("trace").join(stem))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let base = nice(&stems[0]);
    for stem in &stems[1..] {
        assert_eq!(nice(stem), (base + 14).min(19), "{stem}");
    }
    // The others' servers started only once the critical file's test process was done starting:
    // each server notes whether `busy_end` existed when it started. The critical file's own
    // server started before its test process, so it alone says "before".
    let mut notes: Vec<String> = std::fs::read_dir(f.root().join("trace"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("server_"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    notes.sort();
    let mut expected = vec!["after".to_string(); stems.len() - 1];
    expected.push("before".to_string());
    assert_eq!(notes, expected, "the servers' notes");
    f.assert_clean();
}

#[test]
fn a_pack_whose_junit_cannot_be_read_passes_no_file() {
    let f = short_project("units_nojunit", "auto");
    // The JUnit goes somewhere else: the pack's test process passes, but nothing says which file
    // ran what.
    f.edit_plan(&[("--junitxml={junit}", "--junitxml={junit}.elsewhere")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let packed: Vec<_> = s
        .workers
        .iter()
        .filter(|w| !w.attempts[0].packed_with.is_empty())
        .collect();
    assert!(!packed.is_empty(), "nothing was packed: {:?}", s.workers);
    for w in packed {
        assert_eq!(w.verdict, Verdict::Error, "{w:?}");
        assert!(w
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("could not be read"));
    }
    f.assert_clean();
}

/// A long file of six tests (recorded at 2 s each, so that splitting it pays) and a short one;
/// every test records the database it used. `[test] collect` lists the tests; a conftest drops
/// `test_3` from a real run (not from collection) when `DROP_TEST_3` is set.
fn long_project(name: &str) -> Fixture {
    let f = short_project(name, "auto");
    for stem in ["test_a", "test_b", "test_c", "test_d"] {
        std::fs::remove_file(f.root().join(format!("tests/{stem}.py"))).unwrap();
    }
    let tests: String = (1..=6)
        .map(|i| {
            format!(
                r#"
def test_{i}(db, http_get):
    dbname = os.environ['DATABASE_URL'].rsplit('/', 1)[1]
    assert http_get('/db')[1] == dbname, 'the server is on this part s database'
    db("insert into items values ('long{i}')")
    with open(os.path.join(os.environ['ROOT'], 'trace', 'test_{i}'), 'a') as t:
        t.write(f'{{dbname}} 0 0\n')
"#
            )
        })
        .collect();
    f.write("tests/test_long.py", &format!("import os\n{tests}"));
    f.write(
        "tests/test_short.py",
        "def test_short(db):\n    assert db('select 1') == '1'\n",
    );
    let conftest = f.root().join("tests/conftest.py");
    let mut text = std::fs::read_to_string(&conftest).unwrap();
    text.push_str(
        r#"

def pytest_collection_modifyitems(config, items):
    if os.environ.get('DROP_TEST_3') and not config.option.collectonly:
        items[:] = [i for i in items if not i.nodeid.endswith('::test_3')]
"#,
    );
    std::fs::write(&conftest, text).unwrap();
    let py = python().display().to_string();
    f.edit_plan(&[
        (
            "[test]\n",
            &format!("[test]\ncollect = [\"{py}\", \"-m\", \"pytest\", \"--collect-only\", \"-q\", \"-p\", \"no:cacheprovider\", \"{{file}}\"]\n"),
        ),
    ]);
    let cases: Vec<String> = (1..=6)
        .map(|i| format!("\"tests/test_long.py::test_{i}\": 2.0"))
        .collect();
    f.write(
        ".e2e-plan/timings.json",
        &format!(
            r#"{{"files": {{
  "tests/test_long.py": {{"secs": 13.0, "runs": 1, "tests": 12.0, "startup": 1.0, "startup_cpu": 1.0, "tests_cpu": 0.1, "cases": {{{}}}}},
  "tests/test_short.py": {{"secs": 2.0, "runs": 1, "tests": 1.0, "startup": 1.0, "startup_cpu": 1.0, "tests_cpu": 0.1}}
}}}}"#,
            cases.join(", ")
        ),
    );
    f
}

/// Which database each test of the long file used.
fn long_traces(f: &Fixture) -> Vec<(String, String)> {
    traces(f).into_iter().map(|t| (t.0, t.1)).collect()
}

#[test]
fn a_long_file_is_split_into_parts_in_their_own_databases_and_merged_into_one_row() {
    let f = long_project("units_split");
    let dry = f.run(&["dry-run", "plan.toml"]);
    let text = stdout(&dry);
    assert_eq!(code(&dry), 0, "{text}{}", stderr(&dry));
    assert!(
        text.contains("split tests/test_long.py into"),
        "dry-run says what it split: {text}"
    );
    assert!(
        text.contains("tests/test_long.py [part 1/"),
        "dry-run shows the parts: {text}"
    );
    one_predicted_wall(&text);

    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let files: Vec<&str> = s.workers.iter().map(|w| w.file.as_str()).collect();
    assert_eq!(
        files,
        ["tests/test_long.py", "tests/test_short.py"],
        "one row per file"
    );
    let long = &s.workers[0];
    assert_eq!(long.verdict, Verdict::Pass, "{long:?}");
    let counts = long.counts.unwrap();
    assert_eq!((counts.tests, counts.passed), (6, 6), "{long:?}");
    let parts: Vec<usize> = long
        .attempts
        .iter()
        .map(|a| a.part.expect("every attempt is a part's").number)
        .collect();
    assert!(parts.len() >= 2, "split into parts: {parts:?}");
    let given: usize = long.attempts.iter().map(|a| a.part.unwrap().tests).sum();
    assert_eq!(given, 6, "every test given to exactly one part");
    // Every test ran once, the parts in databases of their own, none shared with test_short.
    let t = long_traces(&f);
    let ran: std::collections::BTreeSet<&str> = t.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(t.len(), 6, "each test ran once: {t:?}");
    assert_eq!(ran.len(), 6, "{t:?}");
    let dbs: std::collections::BTreeSet<&str> = t.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(dbs.len(), parts.len(), "a database per part: {t:?}");
    let attempt_dbs: std::collections::BTreeSet<&str> =
        long.attempts.iter().map(|a| a.db_name.as_str()).collect();
    assert_eq!(dbs, attempt_dbs, "the tests used the parts' databases");
    // One suite in the merged JUnit, each test once.
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    for i in 1..=6 {
        assert_eq!(
            junit.matches(&format!("name=\"test_{i}\"")).count(),
            1,
            "{junit}"
        );
    }
    // The timings learnt each test's time and the file's time as one worker.
    let timings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap(),
    )
    .unwrap();
    let long_t = &timings["files"]["tests/test_long.py"];
    assert_eq!(long_t["cases"].as_object().unwrap().len(), 6, "{timings}");
    assert!(long_t["secs"].as_f64().unwrap() < 13.0, "{timings}");
    f.assert_clean();

    // `whole` opts a file out; a collect that fails leaves the file whole, and says why.
    f.edit_plan(&[("[run]\n", "[run]\nwhole = [\"tests/test_long.py\"]\n")]);
    let text = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(text.contains("tests/test_long.py is in `whole`"), "{text}");
    assert!(!text.contains("[part 1/"), "{text}");
    f.edit_plan(&[
        ("whole = [\"tests/test_long.py\"]\n", ""),
        ("\"--collect-only\"", "\"--no-such-option\""),
    ]);
    let text = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(
        text.contains("collecting tests/test_long.py's tests failed"),
        "{text}"
    );
    assert!(!text.contains("[part 1/"), "{text}");
}

#[test]
fn a_test_that_did_not_run_in_its_part_fails_the_file_by_name() {
    let f = long_project("units_split_missing");
    let out = f
        .cmd(&["apply", "plan.toml"])
        .env("DROP_TEST_3", "1")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let long = &s.workers[0];
    assert_eq!(long.file, "tests/test_long.py");
    assert_eq!(long.verdict, Verdict::Fail, "{long:?}");
    let message = long.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("tests/test_long.py::test_3") && message.contains("absent from its JUnit"),
        "{message}"
    );
    assert!(
        long.failures
            .iter()
            .any(|x| x.id == "tests/test_long.py::test_3"),
        "{:?}",
        long.failures
    );
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    assert!(
        junit.contains("test_long.py::test_3 was given to part"),
        "{junit}"
    );
    // The other five passed, each once.
    assert_eq!(long_traces(&f).len(), 5);
    f.assert_clean();
}

#[test]
fn a_failed_part_is_retried_alone_and_the_file_is_flaky() {
    let f = long_project("units_split_retry");
    // A test added since the timings were recorded fails the first time it runs, then passes.
    let mut text = std::fs::read_to_string(f.root().join("tests/test_long.py")).unwrap();
    text.push_str(
        r#"

def test_7_flaky():
    marker = os.path.join(os.environ['ROOT'], 'failed-once')
    if not os.path.exists(marker):
        open(marker, 'w').close()
        assert False, 'first run fails'
"#,
    );
    f.write("tests/test_long.py", &text);
    f.edit_plan(&[("[run]\n", "[run]\nretries = 1\n")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let long = &s.workers[0];
    assert_eq!(long.verdict, Verdict::Flaky, "{long:?}");
    let retried: Vec<_> = long.attempts.iter().filter(|a| a.number == 2).collect();
    assert_eq!(retried.len(), 1, "only the failed part ran again: {long:?}");
    let part = retried[0].part.unwrap().number;
    let first = long
        .attempts
        .iter()
        .find(|a| a.number == 1 && a.part.unwrap().number == part)
        .unwrap();
    assert_eq!(first.verdict, Verdict::Fail);
    assert_ne!(
        first.db_name, retried[0].db_name,
        "the retry had a fresh database"
    );
    let counts = long.counts.unwrap();
    assert_eq!((counts.tests, counts.passed), (7, 7), "{long:?}");
    f.assert_clean();
}

/// Every test process spends at least 1 s of CPU starting, like an app's imports: more than its
/// tests take, so that `auto` packs the files.
fn heavy_start_up(f: &Fixture) {
    heavy_start_up_of(f, 1.0);
}

/// A start-up that burns `secs` of CPU.
fn heavy_start_up_of(f: &Fixture, secs: f64) {
    let conftest = std::fs::read_to_string(f.root().join("tests/conftest.py")).unwrap();
    f.write(
        "tests/conftest.py",
        &format!("{conftest}\nimport time as _t\nwhile _t.process_time() < {secs}:\n    pass\n"),
    );
}

/// The timings learn the CPU each file's worker used (its server and test process, whatever ran
/// beside them), which packs are chosen by; a packed file learns the pack's start-up and its own
/// share of the tests, never the pack's whole CPU as its own.
#[test]
fn the_timings_learn_the_cpu_a_file_uses_and_a_packed_file_only_its_share() {
    let f = short_project("units_cpu", "file");
    heavy_start_up(&f);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let cpu_of = |s: &serde_json::Value| -> Vec<f64> {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["attempts"][0]["cpu_secs"].as_f64().unwrap_or(0.0))
            .collect()
    };
    let cpu = cpu_of(&f.summary_json());
    assert!(cpu.iter().all(|&c| c >= 1.0), "{cpu:?}");
    let learnt = || -> std::collections::BTreeMap<String, f64> {
        let t: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap(),
        )
        .unwrap();
        let files = t["files"].as_object().unwrap();
        files
            .iter()
            .map(|(k, v)| (k.clone(), v["cpu"].as_f64().unwrap_or(0.0)))
            .collect()
    };
    let alone = learnt();
    assert_eq!(alone.len(), 4);
    assert!(alone.values().all(|&c| c >= 1.0), "{alone:?}");
    // Of it, the start-up's (until its tests began): the 1 s import, not the CPU of the tests'
    // own psql calls after it. Every file's: the process is cut where its JUnit says its tests
    // began, on the samples taken while it ran and the one taken as it exited, however few the
    // load left (not on catching it asleep between two samples).
    let s = f.summary_json();
    for w in s["workers"].as_array().unwrap() {
        let a = &w["attempts"][0];
        let (cpu, startup) = (a["cpu_secs"].as_f64(), a["startup_cpu_secs"].as_f64());
        assert!(
            startup.is_some_and(|st| st >= 1.0 && st < cpu.unwrap_or(0.0)),
            "start-up unmeasured or not the import's: {a}"
        );
    }

    f.edit_plan(&[("units = \"file\"", "units = \"auto\"")]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary_json();
    let packed: Vec<String> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            !w["attempts"][0]["packed_with"]
                .as_array()
                .unwrap()
                .is_empty()
        })
        .map(|w| w["file"].as_str().unwrap().to_string())
        .collect();
    assert!(packed.len() >= 2, "nothing was packed: {s}");
    assert!(cpu_of(&s).iter().all(|&c| c >= 1.0), "{s}");
    // A packed file learns one start-up and its share of the pack's tests: less than the pack's
    // CPU, which its attempt carries.
    let now = learnt();
    for w in s["workers"].as_array().unwrap() {
        let file = w["file"].as_str().unwrap();
        if !packed.iter().any(|p| p == file) {
            continue;
        }
        let pack_cpu = w["attempts"][0]["cpu_secs"].as_f64().unwrap();
        let learnt = now[file] * 2.0 - alone[file];
        assert!(
            learnt >= 1.0 && learnt < pack_cpu,
            "{file} learnt {learnt} of its pack's {pack_cpu}: {s}"
        );
    }
    f.assert_clean();
}

/// A test command behind a wrapper (`sh -c '…; exit $?'`, like `uv run`): the wrapper sleeps
/// while its child works and reaps it only as it exits, yet the CPU is counted in full (read
/// after the wrapper exits, before it is reaped), and its start-up is left unknown rather than
/// taken as the wrapper's own few milliseconds.
#[test]
fn a_wrapped_test_command_is_measured_in_full_and_its_start_up_left_unknown() {
    let f = short_project("units_cpu_wrap", "file");
    heavy_start_up(&f);
    let py = python().display().to_string();
    f.edit_plan(&[(
        &format!("command = [\"{py}\", \"-m\", \"pytest\""),
        &format!("command = [\"sh\", \"-c\", \"\\\"$0\\\" \\\"$@\\\"; exit $?\", \"{py}\", \"-m\", \"pytest\""),
    )]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    for w in f.summary_json()["workers"].as_array().unwrap() {
        let a = &w["attempts"][0];
        assert!(a["cpu_secs"].as_f64().is_some_and(|c| c >= 1.0), "{a}");
        assert!(a["startup_cpu_secs"].is_null(), "{a}");
    }
    f.assert_clean();
}

/// A server that starts like gunicorn: its workers import and serve while the leader only
/// waits, and reaps them as it stops, or is killed with them unreaped. One worker burns 1 s of CPU before the server is ready,
/// another 1 s once it is (the tests end only after that). Both count (the whole group is read
/// when the server is ready and before it is stopped), the first in the start-up too, and once
/// only, although a leader's own figure holds them too once it has reaped them.
#[test]
fn a_server_s_worker_processes_count_in_its_cpu_and_start_up() {
    let f = short_project("units_cpu_group", "file");
    f.write(
        "busy_server.py",
        r#"import os, signal, sys, time, urllib.request

here = os.path.dirname(os.path.abspath(__file__))
workers = []


def stop(*_):
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    for pid in workers:
        os.waitpid(pid, 0)
    sys.exit(0)


if os.environ["REAP"] == "1":
    signal.signal(signal.SIGTERM, stop)
pid = os.fork()
if pid == 0:
    while time.process_time() < 1.0:
        pass
    os.execv(sys.executable, [sys.executable, os.path.join(here, "server.py")])
workers.append(pid)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    url = "http://127.0.0.1:" + os.environ["PORT"] + "/healthz"
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except Exception:
            time.sleep(0.05)
    end = time.process_time() + 1.0
    while time.process_time() < end:
        pass
    open(os.path.join(here, "trace", "busy_after_" + os.environ["PORT"]), "w").close()
    while True:
        time.sleep(3600)
workers.append(pid)
while True:
    time.sleep(3600)
"#,
    );
    let conftest = std::fs::read_to_string(f.root().join("tests/conftest.py")).unwrap();
    f.write(
        "tests/conftest.py",
        &format!(
            r#"{conftest}

@pytest.fixture(autouse=True, scope="session")
def _busy_worker_done():
    yield
    import os, time
    port = os.environ["BASE_URL"].rsplit(":", 1)[1]
    path = os.path.join(os.environ["ROOT"], "trace", "busy_after_" + port)
    end = time.time() + 30
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.05)
"#
        ),
    );
    f.edit_plan(&[
        ("{root}/server.py\"]", "{root}/busy_server.py\"]"),
        ("GRANDCHILD = ", "REAP = \"1\", GRANDCHILD = "),
    ]);
    // As gunicorn does (reaped as it stops), and killed with the group unreaped.
    let mut cpu_by_reap = Vec::new();
    for reap in ["1", "0"] {
        f.edit_plan(&[("REAP = \"1\"", &format!("REAP = \"{reap}\""))]);
        for e in std::fs::read_dir(f.root().join("trace")).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
        let out = f.run(&["apply", "plan.toml"]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let s = f.summary_json();
        let attempts: Vec<&serde_json::Value> = s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| &w["attempts"][0])
            .collect();
        assert!(
            attempts
                .iter()
                .all(|a| a["cpu_secs"].as_f64().is_some_and(|c| c >= 2.0)),
            "a server worker's CPU was missed: {s}"
        );
        cpu_by_reap.push(
            s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    let file = w["file"].as_str().unwrap().to_string();
                    (file, w["attempts"][0]["cpu_secs"].as_f64().unwrap())
                })
                .collect::<std::collections::BTreeMap<String, f64>>(),
        );
        let traces = std::fs::read_dir(f.root().join("trace")).unwrap().flatten();
        let busy = traces
            .filter(|e| e.file_name().to_string_lossy().starts_with("busy_after_"))
            .count();
        assert_eq!(
            busy, 4,
            "a busy worker did not finish before its tests ended"
        );
        // Every start-up holds the worker's second before the server was ready: the whole group
        // is read when it is ready, and the test process is cut where its JUnit says its tests
        // began, whatever the load.
        let startups: Vec<Option<f64>> = attempts
            .iter()
            .map(|a| a["startup_cpu_secs"].as_f64())
            .collect();
        assert!(
            startups.iter().all(|c| c.is_some_and(|c| c >= 1.0)),
            "a start-up unmeasured or without the server's worker: {startups:?}: {s}"
        );
    }
    // The same work, reaped or not: a reaped worker's CPU counted twice (sampled while it ran,
    // and again in its reaper's children's time) would add its 2 s; the runs differ by much less.
    let (reaped, unreaped) = (&cpu_by_reap[0], &cpu_by_reap[1]);
    for (file, cpu) in reaped {
        assert!(
            (cpu - unreaped[file]).abs() < 1.0,
            "{file}: {cpu} reaped against {} unreaped: a reaped worker's CPU counted twice?",
            unreaped[file]
        );
    }
    f.assert_clean();
}

/// With no timings, `auto` does not start every file at once: the queue runs them a core at a
/// time, the first alone, and once their start-ups are seen to outweigh their tests, packs the
/// rest, a share per lane. Every file still runs once, in a database no other file uses at the
/// same time, and the next run plans its packs from what this one learnt.
#[test]
fn with_no_timings_auto_packs_during_the_run_once_start_ups_outweigh_tests() {
    let f = short_project("units_queue", "auto");
    heavy_start_up(&f);
    let a = std::fs::read_to_string(f.root().join("tests/test_a.py")).unwrap();
    for stem in ["test_e", "test_f"] {
        f.write(&format!("tests/{stem}.py"), &a.replace("test_a", stem));
    }
    std::fs::remove_file(f.root().join(".e2e-plan/timings.json")).unwrap();
    let dry = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(dry.contains("[queue] 6 files with no timings yet"), "{dry}");

    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    assert_eq!(s.workers.len(), 6, "{:?}", s.workers);
    assert!(
        s.workers.iter().all(|w| w.verdict == Verdict::Pass),
        "{:?}",
        s.workers
    );
    let alone = s
        .workers
        .iter()
        .filter(|w| w.attempts[0].packed_with.is_empty())
        .count();
    let packed = s.workers.len() - alone;
    assert!(alone >= 1, "the first files ran alone: {:?}", s.workers);
    assert!(packed >= 2, "the rest were packed: {:?}", s.workers);
    // Never more units at once than lanes (a core each): their spans, server start to end, by
    // database.
    let mut spans: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for a in s.workers.iter().flat_map(|w| &w.attempts) {
        let start = a
            .phases
            .iter()
            .find(|p| p.phase != Phase::Cloning)
            .unwrap()
            .start;
        let end = a.phases.last().unwrap().end;
        spans.entry(a.db_name.as_str()).or_insert((start, end));
    }
    let most = spans
        .values()
        .map(|&(s0, _)| {
            spans
                .values()
                .filter(|&&(s1, e1)| s1 <= s0 && s0 < e1)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most <= e2e_plan::sys::cores(),
        "{most} units at once on {} cores: {spans:?}",
        e2e_plan::sys::cores()
    );
    let t = traces(&f);
    assert_eq!(t.len(), 6, "each file ran once: {t:?}");
    for a in &t {
        for b in &t {
            if a.0 != b.0 && a.1 == b.1 {
                assert!(
                    a.3 <= b.2 || b.3 <= a.2,
                    "{a:?} and {b:?} shared a database at once"
                );
            }
        }
    }
    // What the queue learnt plans the next run: packs, no queue.
    let dry = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(!dry.contains("[queue]"), "{dry}");
    assert!(dry.contains("packed into"), "{dry}");
    f.assert_clean();
}

/// A worker per file that spends most of its CPU starting up says so, with what `units = "auto"`
/// would predict for the suite from this run's costs, in the closing lines and summary.json; a
/// suite whose start-ups are light says nothing of it.
#[test]
fn a_start_up_bound_run_names_its_start_ups_and_what_auto_would_do() {
    let f = short_project("units_findable", "file");
    // Start-ups of 2 s of CPU against tests of under a second: packing is clearly worth saying
    // (at 1 s the prediction came within the hint's margin on a loaded machine).
    heavy_start_up_of(&f, 2.0);
    std::fs::remove_file(f.root().join(".e2e-plan/timings.json")).unwrap();
    // Tests far shorter than the start-ups, so packing is clearly worth saying.
    for stem in ["test_a", "test_b", "test_c", "test_d"] {
        let path = f.root().join(format!("tests/{stem}.py"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("time.sleep(0.3)", "time.sleep(0.05)")).unwrap();
    }
    let out = f.run(&["apply", "plan.toml"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let s = f.summary_json();
    let st = &s["startups"];
    assert!(st["share"].as_f64().unwrap() >= 0.5, "{s}");
    let auto = st["auto_wall_secs"]
        .as_f64()
        .unwrap_or_else(|| panic!("auto's prediction: {s}"));
    assert!(
        auto > 0.0 && st["auto_units"].as_str().unwrap().contains("pack"),
        "{s}"
    );
    assert!(text.contains("start-ups took"), "{text}");
    assert!(text.contains("`units = \"auto\"` predicts"), "{text}");
    assert!(text.contains("one test process and one database"), "{text}");

    // Tests that outweigh their start-ups: nothing to say.
    let g = short_project("units_findable_light", "file");
    std::fs::remove_file(g.root().join(".e2e-plan/timings.json")).unwrap();
    for stem in ["test_a", "test_b", "test_c", "test_d"] {
        let path = g.root().join(format!("tests/{stem}.py"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("time.sleep(0.3)", "time.sleep(2.0)")).unwrap();
    }
    let out = g.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("start-ups took"), "{}", stdout(&out));
    f.assert_clean();
    g.assert_clean();
}

/// What a test process pays once, however many files it runs, is its start-up: the session
/// fixture its first test paid for (a login's password hash) and its shutdown after its suite
/// ended (a large app's interpreter tearing down), as well as its imports. Without them, a
/// Django suite's files were learnt as mostly tests, and `auto` never packed them.
#[test]
fn a_session_fixture_and_a_slow_shutdown_count_as_start_up() {
    let f = short_project("units_once", "file");
    std::fs::remove_file(f.root().join(".e2e-plan/timings.json")).unwrap();
    for stem in ["test_a", "test_b", "test_c", "test_d"] {
        let quick: String = (1..=4)
            .map(|i| format!("\ndef test_{stem}_{i}(hashed):\n    assert hashed\n"))
            .collect();
        f.write(&format!("tests/{stem}.py"), &quick);
    }
    let conftest = std::fs::read_to_string(f.root().join("tests/conftest.py")).unwrap();
    f.write(
        "tests/conftest.py",
        &format!(
            r#"{conftest}
import atexit as _atexit, time as _time

def _burn(secs):
    end = _time.process_time() + secs
    while _time.process_time() < end:
        pass

@pytest.fixture(scope="session")
def hashed():
    _burn(1.0)
    return True

_atexit.register(_burn, 0.8)
"#
        ),
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary_json();
    for w in s["workers"].as_array().unwrap() {
        let a = &w["attempts"][0];
        let startup = a["startup_cpu_secs"].as_f64().unwrap_or_default();
        let tests = a["tests_cpu_secs"].as_f64().unwrap_or(f64::MAX);
        assert!(
            startup >= 1.7,
            "{}: the fixture's and the shutdown's 1.8 s of CPU are not start-up: {a}",
            w["file"]
        );
        assert!(tests < 0.7, "{}: counted as tests: {a}", w["file"]);
        let alone = a["startup_alone_secs"].as_f64().unwrap_or_default();
        assert!(alone >= 1.7, "{}: start-up alone {alone}: {a}", w["file"]);
    }
    f.assert_clean();
}

#[test]
fn a_pack_s_database_is_kept_when_any_of_its_files_failed() {
    let f = short_project("units_keep", "auto");
    f.edit_plan(&[("keep = \"never\"", "keep = \"failed\"")]);
    // test_b fails, always (no retries): its pack mates pass.
    f.write(
        "tests/test_b.py",
        "def test_test_b_fails(db):\n    assert db('select 1') == '2', 'test_b fails'\n",
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let b = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_b.py")
        .unwrap();
    assert_eq!(b.verdict, Verdict::Fail, "{b:?}");
    let mates = &b.attempts[0].packed_with;
    assert!(!mates.is_empty(), "test_b was not packed: {:?}", s.workers);
    for w in s.workers.iter().filter(|w| mates.contains(&w.file)) {
        assert_eq!(w.verdict, Verdict::Pass, "{w:?}");
    }
    // The pack's one database is kept, and it exists; every other one is gone.
    let pack_db = &b.attempts[0].db_name;
    let mut kept: Vec<&str> = s.kept_databases.iter().map(|k| k.name.as_str()).collect();
    kept.dedup();
    assert_eq!(kept, [pack_db.as_str()], "{:?}", s.kept_databases);
    assert_eq!(f.worker_databases(), vec![pack_db.clone()]);
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    f.assert_clean();
}

#[test]
fn a_collect_that_lists_nothing_or_fails_leaves_the_file_whole() {
    let f = long_project("units_collect_none");
    // The fixture's timings, where splitting the long file pays: restored before each try.
    let timings = std::fs::read_to_string(f.root().join(".e2e-plan/timings.json")).unwrap();
    for (command, why) in [
        (
            "collect = [\"sh\", \"-c\", \"true\", \"{file}\"]",
            "its output names no test of tests/test_long.py",
        ),
        (
            "collect = [\"sh\", \"-c\", \"echo the collection broke >&2; exit 2\", \"{file}\"]",
            "collecting tests/test_long.py's tests failed",
        ),
    ] {
        f.write(".e2e-plan/timings.json", &timings);
        let text = std::fs::read_to_string(f.root().join("plan.toml")).unwrap();
        let old = text.lines().find(|l| l.starts_with("collect = ")).unwrap();
        let text = text.replace(old, command);
        f.write("plan.toml", &text);
        let dry = f.run(&["dry-run", "plan.toml"]);
        let said = stdout(&dry);
        assert_eq!(code(&dry), 0, "{said}{}", stderr(&dry));
        assert!(said.contains(why), "dry-run says why it is whole: {said}");
        assert!(!said.contains("[part 1/"), "{said}");
        let out = f.run(&["apply", "plan.toml"]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let s = f.summary();
        let long = s
            .workers
            .iter()
            .find(|w| w.file == "tests/test_long.py")
            .unwrap();
        assert_eq!(long.verdict, Verdict::Pass, "{long:?}");
        assert_eq!(long.counts.unwrap().passed, 6, "{long:?}");
        assert!(
            long.attempts.iter().all(|a| a.part.is_none()),
            "no parts: {long:?}"
        );
    }
    f.assert_clean();
}

#[test]
fn the_files_of_a_pack_that_stopped_before_them_are_retried_alone() {
    let f = short_project("units_stopped_retry", "auto");
    f.edit_plan(&[("[run]\n", "[run]\nretries = 1\nflaky = \"pass\"\n")]);
    // A collection error stops pytest's whole session: no file of test_a's pack runs a test.
    f.write("tests/test_a.py", "def test_a(:\n    pass\n");
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let a = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_a.py")
        .unwrap();
    let mates = &a.attempts[0].packed_with;
    assert!(!mates.is_empty(), "test_a ran in a pack: {a:?}");
    // test_a fails again, alone; its pack mates, which never ran, pass alone: FLAKY.
    assert_eq!(a.verdict, Verdict::Fail, "{a:?}");
    for w in s
        .workers
        .iter()
        .filter(|w| w.file == a.file || mates.contains(&w.file))
    {
        assert_eq!(w.attempts.len(), 2, "{w:?}");
        let retry = &w.attempts[1];
        assert!(retry.packed_with.is_empty(), "retried alone: {w:?}");
        assert_ne!(retry.db_name, a.attempts[0].db_name, "{w:?}");
        if w.file != a.file {
            assert_eq!(w.verdict, Verdict::Flaky, "{w:?}");
        }
    }
    let dbs: std::collections::BTreeSet<&str> = s
        .workers
        .iter()
        .filter(|w| w.file == a.file || mates.contains(&w.file))
        .map(|w| w.attempts[1].db_name.as_str())
        .collect();
    assert_eq!(dbs.len(), mates.len() + 1, "a database each: {dbs:?}");
    f.assert_clean();
}

/// `[test] timeout` is per file inside a pack: the file that hangs is `TIMEOUT` (its row and its
/// JUnit say so), the file before it ran and passes, the files after it never ran and say so
/// (`FAIL`, `did not run`, retried alone like any failure), and nothing is left running.
#[test]
fn a_packed_file_that_hangs_times_out_and_its_pack_mates_are_reported_as_they_ended() {
    let f = short_project("units_pack_timeout", "auto");
    // One worker: the four files in one pack, a, b, c, d in that order; 3 s a file.
    f.edit_plan(&[
        ("[run]\n", "[run]\njobs = 1\n"),
        ("timeout = \"2m\"", "timeout = \"3s\""),
    ]);
    // test_b blocks opening a pipe that nobody ever writes: only the timeout ends it.
    f.write(
        "tests/test_b.py",
        r#"import os

def test_test_b_waits_for_a_writer_that_never_comes(db):
    fifo = os.path.join(os.environ['ROOT'], 'never')
    os.mkfifo(fifo)
    with open(fifo) as never:
        never.read()
"#,
    );
    let dry = f.run(&["dry-run", "plan.toml"]);
    let text = stdout(&dry);
    assert!(
        text.contains(
            "4 file(s) whose tests take less than their start-up packed into 1 worker(s)"
        ),
        "{text}"
    );
    let out = f.run(&["apply", "plan.toml"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{said}");
    let s = f.summary();
    let row = |file: &str| s.workers.iter().find(|w| w.file == file).unwrap();
    let b = row("tests/test_b.py");
    assert_eq!(b.verdict, Verdict::Timeout, "{b:?}");
    assert_eq!(b.attempts.len(), 1, "{b:?}");
    assert_eq!(
        b.attempts[0].packed_with,
        ["tests/test_a.py", "tests/test_c.py", "tests/test_d.py"],
        "{b:?}"
    );
    assert!(
        b.message
            .as_deref()
            .unwrap_or_default()
            .contains("timed out after"),
        "{b:?}"
    );
    // test_a ran its test before test_b hung: it passes, by its own case.
    let a = row("tests/test_a.py");
    assert_eq!(a.verdict, Verdict::Pass, "{a:?}");
    assert_eq!(a.counts.unwrap().passed, 1, "{a:?}");
    assert_eq!(
        traces(&f).len(),
        1,
        "only test_a's test ran: {:?}",
        traces(&f)
    );
    // test_c and test_d never started.
    for file in ["tests/test_c.py", "tests/test_d.py"] {
        let w = row(file);
        assert_eq!(w.verdict, Verdict::Fail, "{w:?}");
        let m = w.message.as_deref().unwrap_or_default();
        assert!(
            m.starts_with("did not run:") && m.contains("timed out in tests/test_b.py"),
            "{w:?}"
        );
    }
    // The merged JUnit: test_a's suite passes, test_b's has the timeout as an error.
    let junit = std::fs::read_to_string(f.root().join("report/junit.xml")).unwrap();
    let suite = |file: &str| {
        let start = junit
            .find(&format!("<testsuite name=\"{file}\""))
            .unwrap_or_else(|| panic!("no suite for {file}: {junit}"));
        let end = junit[start..].find("</testsuite>").unwrap() + start;
        junit[start..end].to_string()
    };
    let sa = suite("tests/test_a.py");
    assert!(
        sa.contains("errors=\"0\"") && sa.contains("failures=\"0\""),
        "{sa}"
    );
    assert!(sa.contains("value=\"PASS\""), "{sa}");
    let sb = suite("tests/test_b.py");
    assert!(sb.contains("value=\"TIMEOUT\""), "{sb}");
    assert!(sb.contains("errors=\"1\""), "{sb}");
    assert!(sb.contains("type=\"TIMEOUT\""), "{sb}");
    // test_c's and test_d's say they did not run: no JUnit reads them as passed.
    for file in ["tests/test_c.py", "tests/test_d.py"] {
        let sc = suite(file);
        assert!(
            sc.contains("value=\"FAIL\"") && sc.contains("errors=\"1\""),
            "{sc}"
        );
        assert!(sc.contains("did not run"), "{sc}");
    }
    f.assert_clean();
}

/// What a test's database backend burns is CPU its worker costs: a test that streams inserts
/// keeps its backend busy for seconds that PostgreSQL's active time barely counts (an API
/// suite's 5 s of backend CPU showed as 0.7 s), and a model that missed them split such a file
/// into parts that ran far slower than predicted. The backend's CPU is read from /proc.
#[test]
fn a_tests_database_backend_cpu_counts_as_its_tests_cpu() {
    let venv = venv("fastapi-venv", "tests/fixtures/fastapi/requirements.txt");
    let f = Fixture::new("units_backend_cpu");
    f.write(
        "tests/test_stream.py",
        r#"import os
import psycopg

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def test_streams_inserts():
    with psycopg.connect(os.environ["DATABASE_URL"]) as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        before = cpu(pid)
        c.execute("create temp table t (n int, s text)")
        rows = [(i, str(i)) for i in range(2000)]
        # Until the backend has burnt 1.5 s (at most 2000 batches).
        for _ in range(2000):
            with c.cursor() as cur:
                cur.executemany("insert into t values (%s, md5(md5(%s)))", rows)
            if cpu(pid) - before >= 1.5:
                break
        spent = cpu(pid) - before
    with open(os.path.join(os.environ["ROOT"], "backend_cpu"), "w") as out:
        out.write(str(spent))
    assert spent >= 1.5, spent
"#,
    );
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    let py = python().display().to_string();
    let venv_py = venv.join("bin/python").display().to_string();
    f.edit_plan(&[
        (&format!("\"{py}\""), &format!("\"{venv_py}\"")),
        (
            "HAS_SERVER = \"0\"",
            "HAS_SERVER = \"0\", ROOT = \"{root}\"",
        ),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let spent: f64 = std::fs::read_to_string(f.root().join("backend_cpu"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let s = f.summary_json();
    let a = &s["workers"][0]["attempts"][0];
    let db_cpu = a["db_cpu_secs"].as_f64();
    // Sampled every 0.2 s: up to that much of the backend's last CPU may be missed.
    assert!(
        db_cpu.is_some_and(|c| c >= spent - 0.3 && c <= spent + 0.5),
        "the backend burnt {spent:.2} s of CPU while the tests ran; recorded {db_cpu:?}: {a}"
    );
    // The test process's own CPU after its start-up, and the backend's on top.
    let own = a["cpu_secs"].as_f64().unwrap_or_default()
        - a["startup_cpu_secs"].as_f64().unwrap_or_default();
    let tests_cpu = a["tests_cpu_secs"].as_f64().unwrap_or_default();
    assert!(
        tests_cpu >= own + spent - 0.3,
        "the tests' CPU {tests_cpu:.2} s leaves out the backend's {spent:.2} s: {a}"
    );
    f.assert_clean();
}
