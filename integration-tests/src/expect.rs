//! Assertions on how a `vmm-bin` run ended: refused input, no panic, a
//! self-checking test kernel that passed.

use vmm_bin::exit_status::{self, debug_exit_status};

use crate::run::{run_raw, run_vmm, Output, RawRun};

/// Fails the test if the VMM panicked, whatever its status.
pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the VMM panicked:\n{}",
        tail(stderr)
    );
}

/// The last few KiB of a (possibly huge) stderr, for assertion messages.
pub fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(4000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs `vmm-bin` with `args` and expects it to refuse them before any
/// guest runs: status `code`, an error naming `needle`, no panic, nothing
/// on stdout. Returns the run for further checks.
pub fn expect_error(args: &[&str], code: i32, needle: &str) -> Output {
    let out = run_vmm(args);
    assert_eq!(out.status, code, "{args:?}: stderr {}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{args:?}: stderr lacks {needle:?}: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?}: nothing should run: {}",
        out.stdout
    );
    out
}

/// [`expect_error`] with [`exit_status::BAD_INPUT`].
pub fn expect_bad_input(args: &[&str], needle: &str) -> Output {
    expect_error(args, exit_status::BAD_INPUT, needle)
}

/// Runs a self-checking test kernel with `args` and asserts it passed: it
/// wrote 0 to the debug-exit port. A kernel whose check `i` fails writes
/// `i + 1` instead; the failure message then names `checks[i]`.
pub fn run_self_checked(args: &[&str], checks: &[&str]) -> RawRun {
    let run = run_raw(args);
    let failed = (1u32..)
        .zip(checks)
        .find(|&(code, _)| debug_exit_status(code) == run.status)
        .map(|(_, check)| check);
    assert_eq!(
        run.status,
        debug_exit_status(0),
        "{args:?}: expected debug-exit 0; guest check failed: {failed:?}; stderr: {}",
        run.stderr
    );
    run
}
