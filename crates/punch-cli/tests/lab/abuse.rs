//! Abuse scenarios in the lab: the flood scripts (`lab/flood.py`, `lab/register-flood.py`)
//! run in a namespace as a child that is killed if the test ends first, their JSON report,
//! and the server's memory from /proc.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use super::{repo_root, Lab};

/// A flood script running in a lab namespace; killed on drop.
pub struct Script(Child);

impl Script {
    /// Run `lab/NAME ARGS` with python3 in namespace `node` of `lab`.
    pub fn start(lab: &Lab, node: &str, name: &str, args: &[&str]) -> Script {
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(node), "python3"])
            .arg(repo_root().join("lab").join(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 lab/{name}: {e}"));
        Script(child)
    }

    /// Still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Wait for it to end and parse the JSON line it printed (panics, with its stderr,
    /// if it failed).
    pub fn report(mut self) -> serde_json::Value {
        let status = self.0.wait().expect("script ends by itself");
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = self.0.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.success(), "flood script failed: {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("report {out:?}: {e}"))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `VmHWM:`/`VmRSS:`-style field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Append a line to target/lab-results/abuse.txt and print it.
pub fn record(line: &str) {
    super::record_to("abuse.txt", line);
}
