//! `d06 validate` on a large file without a terminal (issue 14, progress on
//! long work): plain progress lines on standard error at every tenth of the
//! file, and standard output exactly what it is without them (the same
//! input on standard input, which has no size and shows none; and the
//! rejections and counts the test planted). The binary alone, no services.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::events::{self, Place};

/// Runs `d06 validate ARG` (stdin from `stdin_file` if given), output to
/// files (no pipe to fill), killed after a minute. (exit code, stdout, stderr)
fn validate(dir: &Path, arg: &str, stdin_file: Option<&Path>) -> (Option<i32>, String, String) {
    let (out, err) = (dir.join("out.txt"), dir.join("err.txt"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_d06"));
    cmd.args(["validate", arg])
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .stdin(match stdin_file {
            Some(p) => Stdio::from(File::open(p).unwrap()),
            None => Stdio::null(),
        });
    let mut child = cmd.spawn().expect("spawn d06");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("d06 validate {arg} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(err).unwrap())
}

#[test]
fn validate_shows_plain_progress_on_a_large_file_and_the_result_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // 6000 lines: valid CCCD applications, except a missing schema on every
    // 1000th line and one line that is not JSON.
    let mut text = String::new();
    let mut bad: Vec<(usize, &str)> = Vec::new();
    for n in 1..=6000usize {
        let line = if n % 1000 == 0 {
            bad.push((n, "missing_field"));
            r#"{"x":1}"#.to_owned()
        } else if n == 2500 {
            bad.push((n, "malformed_json"));
            "not json".to_owned()
        } else {
            events::cccd(
                &format!("vp-{n}"),
                "2024-04-20T09:00:00+07:00",
                Place::Commune("25216"),
                &events::citizen(n as u64),
                "received",
            )
        };
        text.push_str(&line);
        text.push('\n');
    }
    bad.sort_unstable();
    let size = text.len() as u64;
    assert!(size >= 1 << 20, "large enough to show progress: {size} bytes");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, &text).unwrap();

    let (code, stdout, stderr) = validate(dir.path(), &file.display().to_string(), None);
    assert_eq!(code, Some(1), "some lines rejected\n{stderr}");
    // Standard output: one line per planted rejection, then the counts.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), bad.len() + 1, "{stdout}");
    for ((n, reason), got) in bad.iter().zip(&lines) {
        assert!(got.starts_with(&format!("line {n}: {reason}: ")), "{got} (want line {n}: {reason})");
    }
    assert_eq!(lines[bad.len()], format!("{} accepted, {} rejected", 6000 - bad.len(), bad.len()));

    // Standard error: 10 %, 20 %, …, 100 % once each, bytes rising to the file's size.
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("validate: ")).collect();
    let tenths: Vec<u64> =
        progress.iter().filter_map(|l| l.strip_prefix("validate: ")?.split('%').next()?.parse().ok()).collect();
    assert_eq!(tenths.len(), 10, "one line per tenth:\n{stderr}");
    let mut bytes_seen = Vec::new();
    for (k, (l, pct)) in progress.iter().zip(&tenths).enumerate() {
        let tenth = (k as u64 + 1) * 10;
        // A line is written at the first line ending at or past the tenth: at
        // most one message (< 1 %) past it.
        assert!(*pct == tenth || *pct == tenth + 1 && tenth < 100, "{l}");
        let bytes: u64 = l.split(" (").nth(1).and_then(|r| r.split(' ').next()).and_then(|b| b.parse().ok()).unwrap();
        assert!(bytes * 10 >= size * (k as u64 + 1), "{l}");
        assert!(l.contains(&format!(" of {size} bytes)")), "{l}");
        bytes_seen.push(bytes);
    }
    assert!(bytes_seen.windows(2).all(|w| w[0] < w[1]), "{bytes_seen:?}");
    assert_eq!(bytes_seen.last(), Some(&size));
    assert!(progress[9].ends_with(&format!(", 6000 lines, {} rejected", bad.len())), "{}", progress[9]);
    assert_eq!(progress.len(), stderr.lines().count(), "nothing else on standard error:\n{stderr}");

    // The same bytes on standard input (no size, no percentages): the same
    // standard output, the same exit code.
    let (code_stdin, stdout_stdin, stderr_stdin) = validate(dir.path(), "-", Some(&file));
    assert_eq!(code_stdin, Some(1));
    assert_eq!(stdout_stdin, stdout);
    assert!(!stderr_stdin.contains('%'), "{stderr_stdin}");

    // A small file shows no progress at all.
    let small = dir.path().join("small.jsonl");
    std::fs::write(&small, text.lines().take(10).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, stdout, stderr) = validate(dir.path(), &small.display().to_string(), None);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "10 accepted, 0 rejected\n", ""));
}
