//! Exit codes and signals (docs/OPERATIONS.md): the binary alone, no
//! services needed.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "an-example-key-of-32-bytes-long!";

fn d06(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_d06"));
    cmd.args(args).env_remove("D06_HMAC_KEY").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn d06");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn configuration_errors_exit_78_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let key = [("D06_HMAC_KEY", KEY)];
    let good = file("good.toml", "[pipeline]\nshards = 3\n");
    let o = d06(&["check-config", &good], &key, "");
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&o.stdout)).expect("TOML on stdout");
    assert_eq!(printed["pipeline"]["shards"].as_integer(), Some(3));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(KEY) && !stderr(&o).contains(KEY));

    let o = d06(&["check-config", &good], &[], "");
    assert_eq!(code(&o), Some(78), "no key: {}", stderr(&o));
    assert!(stderr(&o).contains("no pseudonymisation key"), "{}", stderr(&o));
    assert_eq!(code(&d06(&["check-config", "--without-key", &good], &[], "")), Some(0));

    let several = file(
        "several.toml",
        "[clickhouse]\nurl = \"https://ch:8443\"\nca_file = \"/nonexistent/ca.pem\"\n[plan]\nfile = \"/nonexistent/plan.toml\"\n\
         [alerts]\nalertmanager_url = \"https://am:9093\"\nusername = \"d06\"\n",
    );
    let o = d06(&["check-config", &several], &key, "");
    assert_eq!(code(&o), Some(78));
    let lines: Vec<String> = stderr(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "three problems and a summary: {lines:#?}");
    assert!(lines[0].contains("clickhouse: ca_file: cannot read /nonexistent/ca.pem"), "{lines:#?}");
    assert!(lines[1].contains("alerts: username is set without password_env or password_file"), "{lines:#?}");
    assert!(lines[2].contains("/nonexistent/plan.toml"), "{lines:#?}");

    // `run` refuses the same before touching the network, and the other commands too.
    let unknown = file("unknown.toml", "[pipeline]\nshardz = 3\n");
    for args in [
        vec!["run", "--config", unknown.as_str()],
        vec!["run", "--config", several.as_str()],
        vec!["run", "--config", "/nonexistent/d06.toml"],
        vec!["check-config", unknown.as_str()],
        vec!["validate", "--config", unknown.as_str()],
        vec!["report", "daily", "--day", "2024-05-01", "--config", unknown.as_str()],
    ] {
        let o = d06(&args, &key, "");
        assert_eq!(code(&o), Some(78), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("d06: configuration error: "), "{args:?}: {}", stderr(&o));
    }
    let o = d06(&["run", "--config", &good], &[], "");
    assert_eq!(code(&o), Some(78), "run without a key: {}", stderr(&o));
    assert_eq!(code(&d06(&["check-config"], &[], "")), Some(2), "usage error (clap)");
}

#[test]
fn validate_exits_0_1_or_74() {
    assert_eq!(code(&d06(&["validate", "-"], &[], "\n")), Some(0), "nothing rejected");
    let o = d06(&["validate"], &[], "{\"x\":1}\n");
    assert_eq!(code(&o), Some(1), "rejected lines");
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 accepted, 1 rejected"));
    let o = d06(&["validate", "/nonexistent/events.jsonl"], &[], "");
    assert_eq!(code(&o), Some(74), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot read the input"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&d06(&["validate", &dir.path().display().to_string()], &[], "")), Some(74), "a directory");
}

/// `d06 run` against a broker that never answers waits in its start-up
/// (the facts topic check), where a first SIGTERM cannot end it: the second
/// one must, at once, with 143 and a log line.
#[test]
fn a_second_sigterm_exits_at_once_with_143() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("d06.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:0\"\n[pipeline]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_d06"))
        .args(["run", "--config"])
        .arg(&config)
        .env("D06_HMAC_KEY", KEY)
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let wait_for = |what: &str, deadline: Duration| {
        let start = Instant::now();
        while !read_log().contains(what) {
            assert!(start.elapsed() < deadline, "no {what:?} in the log:\n{}", read_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The signal handler is installed before anything is logged from `run`.
    std::thread::sleep(Duration::from_secs(2));
    let kill = |pid: u32| Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(kill(child.id()).success());
    wait_for("draining", Duration::from_secs(10));
    assert!(child.try_wait().unwrap().is_none(), "still starting up, so still running:\n{}", read_log());
    let sent = Instant::now();
    assert!(kill(child.id()).success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "no exit after the second SIGTERM:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "{}", read_log());
    assert!(read_log().contains("second signal while draining: exiting at once"), "{}", read_log());
}
