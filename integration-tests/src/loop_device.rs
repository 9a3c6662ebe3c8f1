//! A loop device over a test's file: a host block device the test made
//! itself (`losetup -f --show`), detached when the guard drops, also when
//! the test panics. Needs root, util-linux's `losetup` and the loop driver;
//! without them the test fails saying which is missing.

use std::path::Path;
use std::process::Command;

/// An attached loop device.
#[derive(Debug)]
pub struct LoopDevice {
    dev: String,
}

impl LoopDevice {
    /// Attaches the first free loop device to `file`; panics, saying what
    /// is missing, when this machine cannot.
    pub fn attach(file: &str) -> Self {
        Self::losetup(&["-f", "--show", file])
    }

    /// [`Self::attach`], the device read-only (`losetup -r`).
    pub fn attach_read_only(file: &str) -> Self {
        Self::losetup(&["-r", "-f", "--show", file])
    }

    fn losetup(args: &[&str]) -> Self {
        let file = args.last().copied().unwrap_or_default();
        assert!(
            Path::new("/dev/loop-control").exists(),
            "this test needs loop devices: /dev/loop-control is missing (load the loop module, or run where it exists)"
        );
        let out = Command::new("losetup")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs losetup (util-linux) to make a loop device: running it failed: {e}")
            });
        assert!(
            out.status.success(),
            "losetup {} failed (this test needs root and a free loop device on {file}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            dev.starts_with("/dev/loop"),
            "losetup printed {dev:?}, not a loop device"
        );
        LoopDevice { dev }
    }

    /// Its node, `/dev/loopN`.
    pub fn path(&self) -> &str {
        &self.dev
    }

    /// Its queue's sysfs attribute `name` (`write_zeroes_max_bytes`, ...).
    pub fn queue_limit(&self, name: &str) -> u64 {
        let base = self.dev.trim_start_matches("/dev/");
        let at = format!("/sys/block/{base}/queue/{name}");
        std::fs::read_to_string(&at)
            .unwrap_or_else(|e| panic!("reading {at}: {e}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{at}: {e}"))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").args(["-d", &self.dev]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "losetup -d {} failed: {}",
                self.dev,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("losetup -d {}: {e}", self.dev),
        }
    }
}
