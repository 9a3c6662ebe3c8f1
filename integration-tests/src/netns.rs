//! A network namespace of the test's own, for tests that put a guest on a
//! tap: created with iproute2 (`ip netns add`), deleted when the guard
//! drops (also when the test panics). The guest's traffic stays between
//! it and this namespace's kernel; nothing reaches the host's network.
//!
//! Needs `ip` (iproute2; `integration-tests/scripts/test.sh` installs it)
//! and root (CAP_SYS_ADMIN, CAP_NET_ADMIN). Without them the test fails,
//! saying what is missing: it never passes silently.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::run::{run_vmm_wrapped, Output};

/// The prefix of every namespace the tests make (`vmmtest-<pid>-<n>`).
const PREFIX: &str = "vmmtest-";

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

/// Runs `ip args`; returns stdout, or panics naming the command and what
/// it said.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "this test needs iproute2's `ip` to make a network namespace and a tap, \
             and it cannot be run ({e}); integration-tests/scripts/test.sh installs it"
        )
    });
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}\nthis test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) \
         to make a network namespace and a tap in it",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NetNs {
    /// A new, empty namespace. Namespaces left by test processes that no
    /// longer run (killed before their guard dropped) are deleted first.
    pub fn create() -> NetNs {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        NetNs { name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NS args` inside the namespace; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Creates tap `dev` with address `cidr` and brings it up. Its IPv6
    /// is turned off, so the guest sees no router solicitations or
    /// duplicate-address probes (it skips them anyway).
    pub fn add_tap(&self, dev: &str, cidr: &str) {
        self.ip(&["tuntap", "add", "dev", dev, "mode", "tap"]);
        self.ip(&["addr", "add", cidr, "dev", dev]);
        let disable = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        // Best effort: a kernel without IPv6 has no such file.
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c"])
            .arg(format!("test ! -e {disable} || echo 1 > {disable}"))
            .status();
        self.ip(&["link", "set", dev, "up"]);
    }

    /// The MAC address of `dev`, as `ip link show` prints it.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["link", "show", dev]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no link/ether in `ip link show {dev}`: {out}"))
            .to_string()
    }

    /// Runs `vmm-bin args` inside the namespace (`ip netns exec`).
    pub fn run_vmm(&self, args: &[&str]) -> Output {
        run_vmm_wrapped(&["ip", "netns", "exec", &self.name], args)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its tap too.
        match Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!(
                "warning: deleting network namespace {} failed: {other:?}",
                self.name
            ),
        }
    }
}

/// Deletes `vmmtest-<pid>-*` namespaces whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "delete", name]).status();
            }
        }
    }
}
