//! Progress of long command-line work (`d06 simulate`, `d06 validate`), on
//! standard error: a bar (`indicatif`) when standard error is a terminal,
//! plain lines otherwise (a pipe, a log file, a test, CI).
//!
//! Plain lines are written at each tenth of a known total (10 %, 20 %, …,
//! 100 %) and otherwise at most every 2 s, each one complete, e.g.
//!
//! ```text
//! validate: 30% (3145728 of 10485760 bytes), 3.2 s, 15000 lines, 3 rejected
//! simulate: 12000 messages, 2.0 s, 11950 acked, simulated 2024-05-01 10:00
//! ```
//!
//! and a last line when the work ends elsewhere (stopped early, or after
//! lines written by the clock). Work whose known total is below the
//! caller's "large" threshold, or which has no total and ends within 2 s,
//! shows nothing: a moment's work needs no progress report.

use std::io::{IsTerminal as _, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Messages (a count).
    Messages,
    /// Bytes of input read.
    Bytes,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Messages => "messages",
            Unit::Bytes => "bytes",
        }
    }
}

/// The longest a plain report waits between two lines.
const EVERY: Duration = Duration::from_secs(2);

enum Output {
    Off,
    Bar(ProgressBar),
    Lines { out: Box<dyn Write + Send>, next_tenth: u64, last: Instant, wrote: bool },
}

/// One piece of work's progress (module docs).
pub struct Progress {
    what: &'static str,
    unit: Unit,
    total: Option<u64>,
    started: Instant,
    output: Output,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("what", &self.what).field("total", &self.total).finish()
    }
}

impl Progress {
    /// Progress of `what` (the command's name) towards `total` (if known)
    /// in `unit`s: a bar on a terminal, plain lines on anything else,
    /// nothing when `total` is known and below `large`.
    pub fn new(what: &'static str, total: Option<u64>, unit: Unit, large: u64) -> Progress {
        if total.is_some_and(|t| t < large) {
            return Progress { what, unit, total, started: Instant::now(), output: Output::Off };
        }
        if std::io::stderr().is_terminal() {
            Progress::bar(what, total, unit)
        } else {
            Progress::lines(what, total, unit, Box::new(std::io::stderr()))
        }
    }

    /// Plain lines to `out` whatever it is.
    pub fn lines(what: &'static str, total: Option<u64>, unit: Unit, out: Box<dyn Write + Send>) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            unit,
            total,
            started: now,
            output: Output::Lines { out, next_tenth: 1, last: now, wrote: false },
        }
    }

    fn bar(what: &'static str, total: Option<u64>, unit: Unit) -> Progress {
        let counts = match unit {
            Unit::Messages => "{human_pos}/{human_len} msgs",
            Unit::Bytes => "{bytes}/{total_bytes}, {bytes_per_sec}",
        };
        let (bar, template) = match total {
            Some(t) => {
                (ProgressBar::new(t), format!("{what} [{{bar:30}}] {{percent}}% {counts}, eta {{eta}}  {{msg}}"))
            }
            None => (
                ProgressBar::new_spinner(),
                match unit {
                    Unit::Messages => format!("{what} {{spinner}} {{human_pos}} msgs, {{elapsed}}  {{msg}}"),
                    Unit::Bytes => format!("{what} {{spinner}} {{bytes}}, {{bytes_per_sec}}  {{msg}}"),
                },
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        // A template that does not parse only loses the style: the bar still counts.
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { what, unit, total, started: Instant::now(), output: Output::Bar(bar) }
    }

    /// `done` units so far; `note` (called only when a line or the bar is
    /// redrawn) says what else is worth knowing.
    pub fn update(&mut self, done: u64, note: impl FnOnce() -> String) {
        match &mut self.output {
            Output::Off => {}
            Output::Bar(bar) => {
                bar.set_position(done);
                if bar.is_hidden() {
                    return;
                }
                bar.set_message(note());
            }
            Output::Lines { next_tenth, last, .. } => {
                let tenth_reached = self.total.is_some_and(|t| *next_tenth <= 10 && done >= tenth(t, *next_tenth));
                if tenth_reached || last.elapsed() >= EVERY {
                    self.write_line(done, &note());
                }
            }
        }
    }

    /// The work is over at `done` units: a last line (or the bar closed).
    pub fn finish(&mut self, done: u64, note: impl FnOnce() -> String) {
        match &mut self.output {
            Output::Off => {}
            Output::Bar(bar) => bar.finish_with_message(note()),
            Output::Lines { next_tenth, wrote, .. } => {
                // A last line unless 100 % was just written; without a
                // total, only after earlier lines (quick work says nothing).
                let last_line = if self.total.is_some() { *next_tenth <= 10 } else { *wrote };
                if last_line {
                    self.write_line(done, &note());
                }
            }
        }
    }

    fn write_line(&mut self, done: u64, note: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let head = match self.total {
            Some(t) if t > 0 => {
                format!("{}: {}% ({done} of {t} {})", self.what, done.min(t) * 100 / t, self.unit.name())
            }
            _ => format!("{}: {done} {}", self.what, self.unit.name()),
        };
        let line =
            if note.is_empty() { format!("{head}, {elapsed:.1} s") } else { format!("{head}, {elapsed:.1} s, {note}") };
        let total = self.total;
        if let Output::Lines { out, next_tenth, last, wrote } = &mut self.output {
            *wrote = true;
            // Progress is a courtesy: a closed standard error must not stop the work.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            *last = Instant::now();
            if let Some(t) = total {
                while *next_tenth <= 10 && done >= tenth(t, *next_tenth) {
                    *next_tenth += 1;
                }
            }
        }
    }
}

/// The `k`-th tenth of `total` (rounded up, so 100 % is the total itself).
fn tenth(total: u64, k: u64) -> u64 {
    u64::try_from((u128::from(total) * u128::from(k)).div_ceil(10)).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(str::to_owned).collect()
        }
    }

    /// The "N%" of each line.
    fn percents(lines: &[String]) -> Vec<u64> {
        lines.iter().map(|l| l.split(": ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn plain_lines_at_every_tenth_once_and_a_last_line_only_if_needed() {
        let out = Shared::default();
        let mut p = Progress::lines("validate", Some(1000), Unit::Bytes, Box::new(out.clone()));
        // Uneven steps: 250 jumps over 10 % and 20 % at once (one line), 999 is 90 %.
        for done in [5, 99, 100, 250, 420, 600, 750, 999, 1000] {
            p.update(done, || format!("at {done}"));
        }
        p.finish(1000, || "done".into());
        let lines = out.lines();
        assert_eq!(percents(&lines), [10, 25, 42, 60, 75, 99, 100], "{lines:#?}");
        assert!(lines[0].starts_with("validate: 10% (100 of 1000 bytes), "), "{lines:#?}");
        assert!(lines[0].ends_with(", at 100"), "{lines:#?}");
        assert!(lines[6].starts_with("validate: 100% (1000 of 1000 bytes), ") && lines[6].ends_with(", at 1000"));

        // Stopped early (Ctrl-C, a read error): the last line says where.
        let out = Shared::default();
        let mut p = Progress::lines("simulate", Some(10), Unit::Messages, Box::new(out.clone()));
        p.update(3, String::new);
        p.finish(3, || "stopped".into());
        let lines = out.lines();
        assert_eq!(percents(&lines), [30, 30], "{lines:#?}");
        assert!(lines[1].ends_with(", stopped"));
    }

    #[test]
    fn without_a_total_only_the_clock_writes_and_then_the_end() {
        // Quick work without a total (standard input, no --limit): nothing.
        let out = Shared::default();
        let mut p = Progress::lines("validate", None, Unit::Bytes, Box::new(out.clone()));
        for done in 0..10_000 {
            p.update(done, || unreachable!("no line within 2 s of the start"));
        }
        p.finish(10_000, || unreachable!("nothing was shown, nothing to close"));
        assert!(out.lines().is_empty());
        // Longer work: a line every 2 s (the clock moved back to pretend), then the end.
        let out = Shared::default();
        let mut p = Progress::lines("simulate", None, Unit::Messages, Box::new(out.clone()));
        if let Output::Lines { last, .. } = &mut p.output {
            *last -= EVERY;
        }
        p.update(5_000, || "simulated 2024-04-11 08:00".into());
        p.update(6_000, || unreachable!("within 2 s of the last line"));
        p.finish(10_000, || "simulated 2024-05-01 10:00".into());
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("simulate: 5000 messages, ") && lines[0].ends_with(", simulated 2024-04-11 08:00")
        );
        assert!(
            lines[1].starts_with("simulate: 10000 messages, ") && lines[1].ends_with(" s, simulated 2024-05-01 10:00")
        );
    }

    #[test]
    fn small_work_shows_nothing_and_tenths_round_up() {
        let mut p = Progress::new("validate", Some(10), Unit::Bytes, 1 << 20);
        assert!(matches!(p.output, Output::Off));
        p.update(5, || unreachable!());
        p.finish(10, || unreachable!());
        assert_eq!((tenth(1000, 1), tenth(7, 1), tenth(7, 10), tenth(u64::MAX, 10)), (100, 1, 7, u64::MAX));
    }
}
