//! Exit codes an operator can script, and the signals that stop `d06`
//! (docs/OPERATIONS.md, "Exit codes and signals").
//!
//! | code | meaning                                                             |
//! |------|---------------------------------------------------------------------|
//! | 0    | success; `d06 validate`: every line passed                          |
//! | 1    | any other failure (broken infrastructure, …); `validate`: rejected lines |
//! | 2    | the command line itself is wrong (clap's usage error)               |
//! | 74   | `d06 validate` could not read its input (`EX_IOERR`)               |
//! | 78   | configuration error (`EX_CONFIG`): systemd does not restart on it  |
//! | 130  | a second SIGINT while draining: stopped at once                     |
//! | 143  | a second SIGTERM while draining: stopped at once                    |
//!
//! Errors carry their class as a marker in the `anyhow` chain
//! ([`ConfigError`], [`InputError`]), found with `downcast_ref`, never by
//! matching messages.

use std::fmt;
use std::process::ExitCode;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Any failure without a more specific code.
pub const FAILURE: u8 = 1;
/// `d06 validate`: some lines were rejected.
pub const REJECTED: u8 = 1;
/// `EX_IOERR`: `d06 validate` could not read its input.
pub const INPUT: u8 = 74;
/// `EX_CONFIG`: the configuration is wrong; restarting will not help.
pub const CONFIG: u8 = 78;

/// Marks an error as the configuration's fault (exit [`CONFIG`]): an
/// unreadable or invalid file, unknown keys, failed validation, a missing
/// pseudonymisation key or plan file, a URL scheme d06 cannot use.
#[derive(Debug, Clone, Copy)]
pub struct ConfigError;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("configuration error")
    }
}

impl std::error::Error for ConfigError {}

/// Marks an error as the input being unreadable (exit [`INPUT`]).
#[derive(Debug, Clone, Copy)]
pub struct InputError;

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot read the input")
    }
}

impl std::error::Error for InputError {}

/// Marks `e` as a configuration error; for `map_err`.
pub fn config(e: anyhow::Error) -> anyhow::Error {
    e.context(ConfigError)
}

/// Marks `e` as an unreadable input; for `map_err`.
pub fn input(e: anyhow::Error) -> anyhow::Error {
    e.context(InputError)
}

/// The exit code for a failed command: the class found anywhere in the chain
/// (`anyhow` downcasts through later contexts), else [`FAILURE`].
pub fn code_of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() {
        CONFIG
    } else if e.downcast_ref::<InputError>().is_some() {
        INPUT
    } else {
        FAILURE
    }
}

/// Ends `main`: prints the error, if any, as one line and picks the code.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: on a full disk holding stderr's file it would panic.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "d06: {e:#}");
            ExitCode::from(code_of(&e))
        }
    }
}

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (systemd, docker, kill).
    Terminate,
}

impl Signal {
    /// The code of an immediate exit on this signal: 128 + its number, as a shell reports it.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// The first SIGINT or SIGTERM cancels `shutdown` (a graceful drain: the
/// flush finishes, offsets commit); a second one exits the process at once
/// with [`Signal::exit_code`]. Needs a tokio runtime.
pub fn spawn_signal_handler(shutdown: CancellationToken) {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(forward_signals(tx));
    tokio::spawn(on_signals(rx, shutdown, |code| std::process::exit(code)));
}

/// Sends every SIGINT and SIGTERM to `tx` until it closes.
async fn forward_signals(tx: mpsc::Sender<Signal>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => loop {
                let s = tokio::select! {
                    Some(()) = int.recv() => Signal::Interrupt,
                    Some(()) = term.recv() => Signal::Terminate,
                    else => return,
                };
                if tx.send(s).await.is_err() {
                    return;
                }
            },
            (_, Err(error)) | (Err(error), _) => {
                warn!(%error, "no SIGINT/SIGTERM handler; only Ctrl-C stops d06 gracefully");
            }
        }
    }
    while tokio::signal::ctrl_c().await.is_ok() {
        if tx.send(Signal::Interrupt).await.is_err() {
            return;
        }
    }
}

/// The policy, apart from the process: drain on the first signal, `exit`
/// on the second.
async fn on_signals(mut rx: mpsc::Receiver<Signal>, shutdown: CancellationToken, exit: impl FnOnce(i32)) {
    let Some(first) = rx.recv().await else { return };
    info!(signal = %first, "draining; a second SIGINT or SIGTERM stops d06 at once");
    shutdown.cancel();
    if let Some(second) = rx.recv().await {
        let code = second.exit_code();
        error!(
            signal = %second,
            code,
            "second signal while draining: exiting at once; the unfinished flush is not committed and will be replayed"
        );
        exit(code);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use anyhow::Context as _;

    use super::*;

    #[test]
    fn the_class_is_found_under_later_contexts() {
        let e = config(anyhow::anyhow!("unknown field `shardz`")).context("loading d06.toml").context("run");
        assert_eq!(code_of(&e), CONFIG);
        assert!(format!("{e:#}").contains("configuration error: unknown field `shardz`"), "{e:#}");
        let e = input(anyhow::anyhow!("No such file")).context("validate");
        assert_eq!(code_of(&e), INPUT);
        assert_eq!(code_of(&anyhow::anyhow!("ClickHouse down").context("flush")), FAILURE);
        let io: anyhow::Result<()> = Err(std::io::Error::other("disk")).context("reading");
        assert_eq!(code_of(&io.map_err(input).unwrap_err()), INPUT);
    }

    #[test]
    fn report_maps_results_to_codes() {
        assert_eq!(report(Ok(ExitCode::SUCCESS)), ExitCode::SUCCESS);
        assert_eq!(report(Err(config(anyhow::anyhow!("bad")))), ExitCode::from(78));
        assert_eq!(report(Err(anyhow::anyhow!("bad"))), ExitCode::from(1));
    }

    #[tokio::test]
    async fn first_signal_drains_second_exits_at_once() {
        let (tx, rx) = mpsc::channel(2);
        let shutdown = CancellationToken::new();
        let exited = Arc::new(Mutex::new(None));
        let task = {
            let (s, e) = (shutdown.clone(), Arc::clone(&exited));
            tokio::spawn(on_signals(rx, s, move |code| *e.lock().unwrap() = Some(code)))
        };
        tx.send(Signal::Terminate).await.unwrap();
        shutdown.cancelled().await;
        assert_eq!(*exited.lock().unwrap(), None, "the first signal only drains");
        tx.send(Signal::Interrupt).await.unwrap();
        task.await.unwrap();
        assert_eq!(*exited.lock().unwrap(), Some(130));
        assert_eq!(Signal::Terminate.exit_code(), 143);
    }

    #[tokio::test]
    async fn one_signal_then_a_clean_stop_never_exits() {
        let (tx, rx) = mpsc::channel(2);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(on_signals(rx, shutdown.clone(), |_| panic!("exited")));
        tx.send(Signal::Interrupt).await.unwrap();
        shutdown.cancelled().await;
        drop(tx);
        task.await.unwrap();
    }
}
