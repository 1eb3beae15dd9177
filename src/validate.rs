//! `d06 validate [FILE|-]`: newline-delimited messages checked against the
//! contract before an upstream team sends them. One line per rejected
//! message and a summary on standard output; on a large file (1 MiB or
//! more) its progress on standard error, a bar on a terminal and plain
//! lines otherwise ([`simulate::Progress`]), which change nothing on
//! standard output. Exits 0 when every line passed, 1 when some were
//! rejected, 74 when the input cannot be read.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ingest::contract::Validator;
use ingest::LinesRead;
use simulate::{Progress, Unit};

use crate::exit;
use crate::{load_config, now_nanos};

/// From how many bytes a file's progress is shown (smaller ones take a moment).
const LARGE: u64 = 1 << 20;

/// `d06 validate`: the configuration's validator with an ephemeral key
/// (digests are never shown), then [`run`].
pub(crate) fn command(file: Option<&Path>, config: Option<&Path>) -> Result<ExitCode> {
    let config = load_config(config)?;
    let key = ingest::pseudonym::SecretKey::from_bytes(format!("d06-validate-{}", now_nanos()).into_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, validator, _) = crate::run::validator(&config, &key)?;
    run(file, &validator, now_nanos())
}

/// Validates `file` (standard input for `None` or `-`) with `validator` as
/// of `now`, prints the rejections and the summary.
pub(crate) fn run(file: Option<&Path>, validator: &Validator, now: i64) -> Result<ExitCode> {
    let (input, size): (Box<dyn BufRead>, Option<u64>) = match file {
        None => (Box::new(std::io::stdin().lock()), None),
        Some(p) if p == Path::new("-") => (Box::new(std::io::stdin().lock()), None),
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display())).map_err(exit::input)?;
            // A regular file's size is the total; a pipe or a device has none.
            let size = f.metadata().ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
            (Box::new(std::io::BufReader::new(f)), size)
        }
    };
    let mut progress = Progress::new("validate", size, Unit::Bytes, LARGE);
    let mut last = LinesRead::default();
    let (rejected, accepted) = ingest::contract::validate_lines_with(validator, input, now, |r| {
        last = r;
        progress.update(r.bytes, || lines_note(r));
    })
    .context("reading the input")
    .map_err(exit::input)?;
    progress.finish(last.bytes, || lines_note(last));
    for (line, r) in &rejected {
        println!("line {line}: {r}");
    }
    println!("{accepted} accepted, {} rejected", rejected.len());
    Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(exit::REJECTED) })
}

fn lines_note(r: LinesRead) -> String {
    format!("{} lines, {} rejected", r.lines, r.rejected)
}
