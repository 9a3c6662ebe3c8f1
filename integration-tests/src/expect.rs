//! Assertions on how a `vmm-bin` run ended: refused input, no panic.

use vmm_bin::exit_status;

use crate::run::{run_vmm, Output};

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
