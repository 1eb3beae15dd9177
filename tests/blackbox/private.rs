//! A `deploy/local` service of the test's own: its own directory (config,
//! data, log, pid file) and free ports, started and stopped with
//! `deploy/local/start.sh` / `stop.sh`, so stopping or killing it disturbs
//! no other test. Stopped on drop.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::free_port;

pub struct PrivateService {
    /// The service's name in `deploy/local/lib.sh` (`clickhouse`, `kafka-persistent`).
    name: &'static str,
    dir: tempfile::TempDir,
    /// The `D06_*` port settings given to the scripts.
    ports: Vec<(&'static str, u16)>,
}

impl PrivateService {
    /// Starts `name` with each of `port_vars` set to a free port.
    pub fn start(name: &'static str, port_vars: &[&'static str]) -> PrivateService {
        let service = PrivateService {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            ports: port_vars.iter().map(|v| (*v, free_port())).collect(),
        };
        service.script("start");
        service
    }

    /// The port given to the scripts as `var`.
    pub fn port(&self, var: &str) -> u16 {
        self.ports.iter().find(|(v, _)| *v == var).map(|(_, p)| *p).unwrap_or_else(|| panic!("no port {var}"))
    }

    /// `deploy/local/{script}.sh NAME` with this service's directory and ports; must succeed.
    pub fn script(&self, script: &str) {
        let root = env!("CARGO_MANIFEST_DIR");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(format!("{root}/deploy/local/{script}.sh"))
            .arg(self.name)
            .env("D06_LOCAL_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(v, p)| (*v, p.to_string())))
            .output()
            .expect("run a deploy/local script");
        assert!(
            out.status.success(),
            "deploy/local/{script}.sh {} failed:\n{}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{script}.sh {} took {:?}", self.name, started.elapsed());
    }

    /// SIGKILL to the service's process (from its pid file), no goodbye;
    /// returns once the process is gone.
    pub fn kill9(&self) {
        let pidfile = self.dir.path().join(format!("{}.pid", self.name));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: no pid file {}: {e}", self.name, pidfile.display()));
        let pid = pid.trim();
        let killed = Command::new("kill").args(["-KILL", pid]).status().expect("run kill");
        assert!(killed.success(), "kill -KILL {pid} ({}) failed", self.name);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "{} (pid {pid}) still alive 10 s after SIGKILL", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The process exists and is not a zombie (a killed process whose parent
/// has exited waits for init to reap it).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
        .unwrap_or(false)
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let root = env!("CARGO_MANIFEST_DIR");
        let _ = Command::new("bash")
            .arg(format!("{root}/deploy/local/stop.sh"))
            .arg(self.name)
            .env("D06_LOCAL_DIR", self.dir.path())
            .env("D06_STOP_TIMEOUT", "5")
            .envs(self.ports.iter().map(|(v, p)| (*v, p.to_string())))
            .output();
    }
}
