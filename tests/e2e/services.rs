//! `[[service]]` and `[[resource]]`: a Redis and a NATS of each worker's own, a RabbitMQ vhost
//! per worker, kept with a failing file's database and destroyed by `rollback`; a failing create;
//! a service that dies; a killed runner's services and resources undone. Real redis-server,
//! nats-server and rabbitmqctl (`.ci/run` installs and starts them).

use std::path::Path;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use crate::common::*;

/// A test file that meets every other file of the run at a barrier (so that they really run at
/// once), then counts a fixed key up in its Redis: a Redis shared by two files would give one of
/// them 2.
fn counting_test(stem: &str, files: usize) -> String {
    format!(
        r#"import os, socket, time

def redis(*words):
    s = socket.create_connection(("127.0.0.1", int(os.environ["REDIS_PORT"])), timeout=5)
    s.sendall(("*%d\r\n" % len(words) + "".join("$%d\r\n%s\r\n" % (len(w), w) for w in words)).encode())
    reply = s.recv(100).decode()
    s.close()
    return reply

def test_counts_alone():
    trace = os.path.join(os.environ["ROOT"], "trace")
    open(os.path.join(trace, "{stem}"), "w").write(os.environ["REDIS_PORT"])
    deadline = time.time() + 60
    while len(os.listdir(trace)) < {files} and time.time() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(trace)) == {files}, "the files did not all start"
    assert redis("INCR", "visits") == ":1\r\n", "another file counted in this file's Redis"
"#
    )
}

/// A project of `files` counting files and a plan whose service is `service` (a `[[service]]`
/// block, or nothing), its tests reaching Redis at `redis_port`.
fn counting_project(name: &str, files: usize, service: &str, redis_port: &str) -> Fixture {
    let f = Fixture::new(name);
    for i in 0..files {
        let stem = format!("test_count_{i}");
        f.write(&format!("tests/{stem}.py"), &counting_test(&stem, files));
    }
    std::fs::create_dir_all(f.root().join("trace")).unwrap();
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    f.edit_plan(&[
        (
            "HAS_SERVER = \"0\"",
            &format!("HAS_SERVER = \"0\", ROOT = \"{{root}}\", REDIS_PORT = \"{redis_port}\""),
        ),
        ("[test]\n", &format!("{service}\n[test]\n")),
    ]);
    f
}

const REDIS: &str = r#"[[service]]
name = "redis"
command = ["redis-server", "--port", "{port.redis}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
ready = "tcp://127.0.0.1:{port.redis}"
"#;

/// Live processes whose environment says they belong to run `run` (`E2E_PLAN_RUN`): a service
/// renames itself (redis-server shows only its address), so its command line cannot tell.
fn processes_of_run(run: &str) -> Vec<String> {
    let needle = format!("E2E_PLAN_RUN={run}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    found
}

/// Waits (with a deadline) until nothing of run `run` is left running.
fn assert_run_gone(run: &str) {
    let gone = poll(Duration::from_secs(30), || {
        processes_of_run(run).is_empty().then_some(())
    });
    assert!(gone.is_some(), "left running: {:?}", processes_of_run(run));
}

/// Each file of the run counts in a Redis of its own; the same files on one shared Redis fail:
/// the test can tell the difference.
#[test]
fn a_redis_per_worker_keeps_files_that_run_at_once_apart() {
    let f = counting_project("svc_redis", 3, REDIS, "{port.redis}");
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary_json();
    let ports: std::collections::BTreeSet<String> = (0..3)
        .map(|i| std::fs::read_to_string(f.root().join(format!("trace/test_count_{i}"))).unwrap())
        .collect();
    assert_eq!(ports.len(), 3, "a port each: {ports:?}");
    // Each Redis stopped with its worker: nothing listens on its port any more.
    for port in &ports {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()));
        assert!(listening.is_err(), "a Redis still listens on {port}");
    }
    // The service's phase is on the timeline, by name.
    let phases = &s["workers"][0]["attempts"][0]["phases"];
    assert!(
        phases
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["phase"] == "service" && p["name"] == "redis"),
        "{phases}"
    );
    assert_run_gone(s["run_id"].as_str().unwrap());
    f.assert_clean();

    // The same files on one Redis: one of them sees another's count.
    let shared = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = shared.local_addr().unwrap().port().to_string();
    drop(shared);
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = poll(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).ok()
    });
    assert!(up.is_some(), "the shared redis did not start");
    let g = counting_project("svc_redis_shared", 3, "", &port);
    let out = g.run(&["apply", "plan.toml"]);
    kill_process(Pid::from_raw(redis.id() as i32).unwrap(), Signal::TERM).unwrap();
    let _ = redis.wait();
    assert_eq!(
        code(&out),
        1,
        "a shared Redis went unnoticed: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("another file counted"),
        "{}",
        stdout(&out)
    );
    g.assert_clean();
}

/// A NATS of each worker's own: each file reaches a server on its own port that answers with
/// its INFO.
#[test]
fn a_nats_server_per_worker() {
    let f = Fixture::new("svc_nats");
    for stem in ["test_n1", "test_n2"] {
        f.write(
            &format!("tests/{stem}.py"),
            &format!(
                r#"import os, socket

def test_nats_answers():
    port = os.environ["NATS_PORT"]
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    assert s.recv(4096).startswith(b"INFO "), "not a NATS server"
    s.close()
    open(os.path.join(os.environ["ROOT"], "trace", "{stem}"), "w").write(port)
"#
            ),
        );
    }
    std::fs::create_dir_all(f.root().join("trace")).unwrap();
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[
        (
            "HAS_SERVER = \"0\"",
            "HAS_SERVER = \"0\", ROOT = \"{root}\", NATS_PORT = \"{port.nats}\"",
        ),
        (
            "[test]\n",
            "[[service]]\nname = \"nats\"\ncommand = [\"nats-server\", \"-a\", \"127.0.0.1\", \"-p\", \"{port.nats}\"]\nready = \"tcp://127.0.0.1:{port.nats}\"\n\n[test]\n",
        ),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let ports: Vec<String> = ["test_n1", "test_n2"]
        .iter()
        .map(|s| std::fs::read_to_string(f.root().join(format!("trace/{s}"))).unwrap())
        .collect();
    assert_ne!(ports[0], ports[1], "one NATS each");
    for port in &ports {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()));
        assert!(listening.is_err(), "a NATS still listens on {port}");
    }
    assert_run_gone(f.summary_json()["run_id"].as_str().unwrap());
    f.assert_clean();
}

/// The RabbitMQ vhosts that exist now, of this fixture's template (worker databases' names).
fn vhosts(f: &Fixture) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_vhosts"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&f.template))
        .map(str::to_string)
        .collect()
}

const VHOST: &str = r#"[[resource]]
name = "vhost"
create = ["rabbitmqctl", "-q", "add_vhost", "{db_name}"]
destroy = ["rabbitmqctl", "-q", "delete_vhost", "{db_name}"]
destroy_ok_exit_codes = [0, 65]
"#;

/// A vhost per worker attempt, made before its tests and destroyed after; a failing file's is
/// kept with its database, named in the closing lines and summary.json, and `rollback` destroys
/// it.
#[test]
fn a_rabbitmq_vhost_per_worker_follows_its_database() {
    let f = Fixture::new("svc_vhost");
    let check = r#"import os, subprocess

def test_my_vhost_exists():
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout.split()
    assert os.environ["VHOST"] in vhosts
"#;
    f.write("tests/test_v1.py", check);
    f.write(
        "tests/test_v2.py",
        &format!("{check}\ndef test_fails():\n    assert False, 'on purpose'\n"),
    );
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[
        (
            "HAS_SERVER = \"0\"",
            "HAS_SERVER = \"0\", VHOST = \"{db_name}\"",
        ),
        ("[test]\n", &format!("{VHOST}\n[test]\n")),
    ]);
    let dry = stdout(&f.run(&["dry-run", "plan.toml"]));
    assert!(
        dry.contains("create resource vhost: rabbitmqctl -q add_vhost"),
        "{dry}"
    );
    let out = f.run(&["apply", "plan.toml"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let s = f.summary();
    let v1 = s
        .workers
        .iter()
        .find(|w| w.file == "tests/test_v1.py")
        .unwrap();
    assert_eq!(
        v1.counts.unwrap().passed,
        1,
        "the vhost existed during the tests"
    );
    // The failing file's database and its vhost are kept; the passing file's vhost is gone.
    let kept = &s.kept_databases;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        kept[0].resources,
        [format!("resource vhost for {}", kept[0].name)]
    );
    assert_eq!(vhosts(&f), [kept[0].name.clone()]);
    assert!(
        stdout(&out).contains("kept with it: resource vhost for"),
        "{}",
        stdout(&out)
    );
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(
        stdout(&rb).contains("undid resource vhost for"),
        "{}",
        stdout(&rb)
    );
    assert!(vhosts(&f).is_empty(), "{:?}", vhosts(&f));
    f.assert_clean();
}

/// A create that fails ends the run (exit 3) naming the resource and showing its output; what
/// the attempt had made is undone at once (the first resource's destroy ran).
#[test]
fn a_failing_create_names_its_resource_and_undoes_what_was_made() {
    let f = Fixture::new("svc_create_fails");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let made = f.root().join("made");
    let resources = format!(
        r#"[[resource]]
name = "first"
create = ["touch", "{m}-{{db_name}}"]
destroy = ["rm", "{m}-{{db_name}}"]

[[resource]]
name = "second"
create = ["sh", "-c", "echo the broker said no; exit 3"]
destroy = ["true"]
"#,
        m = made.display()
    );
    f.edit_plan(&[("[test]\n", &format!("{resources}\n[test]\n"))]);
    let out = f.run(&["apply", "plan.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}{err}", stdout(&out));
    assert!(err.contains("resource second for"), "{err}");
    assert!(err.contains("the broker said no"), "{err}");
    let left: Vec<_> = std::fs::read_dir(f.root())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("made-"))
        .collect();
    assert!(
        left.is_empty(),
        "the first resource was not undone: {left:?}"
    );
    f.assert_clean();
}

/// A service that dies while the tests run fails the file, named; its last lines are shown.
#[test]
fn a_service_that_dies_during_the_tests_fails_the_file() {
    let f = Fixture::new("svc_dies");
    f.write(
        "tests/test_d.py",
        r#"import os, time

def test_waits_for_the_service_to_die():
    open(os.path.join(os.environ["ROOT"], "die"), "w").close()
    deadline = time.time() + 60
    while os.path.exists(os.path.join(os.environ["ROOT"], "die")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(30)
"#,
    );
    f.write(
        "flaky_service.py",
        r#"import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("flaky service up", flush=True)
die = os.path.join(sys.argv[2], "die")
while not os.path.exists(die):
    time.sleep(0.05)
os.remove(die)
print("flaky service going down", flush=True)
sys.exit(7)
"#,
    );
    f.plan(PlanOpts {
        server: false,
        keep: "never",
        ..Default::default()
    });
    let py = python().display().to_string();
    f.edit_plan(&[
        ("HAS_SERVER = \"0\"", "HAS_SERVER = \"0\", ROOT = \"{root}\""),
        (
            "[test]\n",
            &format!("[[service]]\nname = \"flaky\"\ncommand = [\"{py}\", \"{{root}}/flaky_service.py\", \"{{port.flaky}}\", \"{{root}}\"]\nready = \"tcp://127.0.0.1:{{port.flaky}}\"\n\n[test]\n"),
        ),
    ]);
    let out = f.run(&["apply", "plan.toml"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    let s = f.summary_json();
    let a = &s["workers"][0]["attempts"][0];
    assert_eq!(
        a["service_died"],
        serde_json::json!(["flaky", "exited with code 7"]),
        "{a}"
    );
    assert!(
        text.contains("service flaky exited with code 7 during the tests"),
        "{text}"
    );
    assert!(text.contains("flaky service going down"), "{text}");
    f.assert_clean();
}

/// A runner killed while the tests run leaves its services, its resources and its databases;
/// `rollback` stops and destroys them all.
#[test]
fn a_killed_runner_s_services_and_resources_are_undone_by_rollback() {
    let f = Fixture::new("svc_sigkill");
    f.write(
        "tests/test_h.py",
        r#"import os, time

def test_hangs_after_saying_so():
    open(os.path.join(os.environ["ROOT"], "started"), "w").close()
    time.sleep(300)
"#,
    );
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    f.edit_plan(&[
        (
            "HAS_SERVER = \"0\"",
            "HAS_SERVER = \"0\", ROOT = \"{root}\"",
        ),
        ("[test]\n", &format!("{VHOST}\n{REDIS}\n[test]\n")),
    ]);
    let mut child = f.cmd(&["apply", "plan.toml"]).spawn().unwrap();
    let started = poll(Duration::from_secs(60), || {
        f.root().join("started").exists().then_some(())
    });
    assert!(started.is_some(), "the test never started");
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = child.wait();
    let run = journal_run(f.root());
    // redis-server rewrites its title and environment: it is found by the process group the
    // journal recorded for it.
    let groups = journal_groups(f.root(), &run, "service redis");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(group_alive(groups[0]), "the service died with the runner");
    assert_eq!(vhosts(&f).len(), 1, "the vhost was made");
    let rb = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&rb), 0, "{}{}", stdout(&rb), stderr(&rb));
    assert!(vhosts(&f).is_empty(), "{:?}", vhosts(&f));
    assert!(!group_alive(groups[0]), "rollback left the service running");
    assert_run_gone(&run);
    f.assert_clean();
}

/// The process groups run `run`'s journal recorded for what starts with `what`.
fn journal_groups(root: &Path, run: &str, what: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(root.join(format!(".e2e-plan/runs/{run}.jsonl"))).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["op"] == "done")
        .filter_map(|r| {
            let res = &r["resource"];
            let named = res["what"].as_str()?.starts_with(what);
            named
                .then(|| res["pgid"].as_u64())
                .flatten()
                .map(|p| p as u32)
        })
        .collect()
}

/// Whether any live (not zombie) process is in group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// The run id of the one journal in the project.
fn journal_run(root: &Path) -> String {
    let runs: Vec<String> = std::fs::read_dir(root.join(".e2e-plan/runs"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".jsonl")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// A destroy that fails is a warning naming the resource and its output; the journal stays
/// open, and `rollback` destroys it once it can.
#[test]
fn a_failing_destroy_is_named_and_rollback_tries_again() {
    let f = Fixture::new("svc_destroy_fails");
    f.rows_test("test_a", 0.0);
    f.plan(PlanOpts {
        server: false,
        ..Default::default()
    });
    let made = f.root().join("made");
    let allow = f.root().join("allow");
    let resources = format!(
        r#"[[resource]]
name = "bucket"
create = ["touch", "{m}-{{db_name}}"]
destroy = ["sh", "-c", "if test -e {a}; then rm {m}-{{db_name}}; else echo the bucket is busy; exit 4; fi"]
"#,
        m = made.display(),
        a = allow.display()
    );
    f.edit_plan(&[("[test]\n", &format!("{resources}\n[test]\n"))]);
    let made_files = || -> Vec<String> {
        std::fs::read_dir(f.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("made-"))
            .collect()
    };
    let out = f.run(&["apply", "plan.toml"]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(
        format!("{text}{err}").contains("could not destroy 1 resource(s)"),
        "no warning: {text}{err}"
    );
    assert!(
        format!("{text}{err}").contains("the bucket is busy"),
        "the destroy's output is not shown: {text}{err}"
    );
    assert!(format!("{text}{err}").contains("rollback"), "{text}{err}");
    assert!(
        err.contains("resource bucket for"),
        "the resource is not named: {err}"
    );
    // The tests passed: the run says so, and the leftover is a warning, not a failure.
    assert_eq!(code(&out), 0, "{text}{err}");
    assert_eq!(made_files().len(), 1, "the resource should still exist");
    std::fs::write(&allow, "").unwrap();
    let out = f.run(&["rollback", "plan.toml"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(made_files().is_empty(), "rollback left {:?}", made_files());
    f.assert_clean();
}
