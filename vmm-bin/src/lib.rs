//! The command-line front end's pieces, as a library so they can be tested
//! and fuzzed: argument parsing ([`cli`]), exit statuses ([`exit_status`]),
//! the Firecracker-compatible API socket ([`api`]) and config file
//! ([`config_file`]), and the process policy a library must not impose:
//! stop signals ([`signals`]), the terminal's raw mode ([`terminal`]), the
//! logger ([`logger`]) and drawing the run's picture ([`plot`],
//! `--exit-plot`). `main.rs` wires them to vmm-core and builds the
//! device set.

/// `eprintln!` in one `write(2)`: std's stderr is unbuffered and writes a
/// formatted line piece by piece (five calls for an outcome line), so a
/// line could interleave with the guest's console output or a vCPU
/// thread's log. The README promises errors as one line each.
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(format!("{}\n", format_args!($($arg)*)).as_bytes());
    }};
}

pub mod api;
pub mod cli;
pub mod config_file;
pub mod device_args;
pub mod exit_status;
pub mod hints;
pub mod logger;
pub mod plot;
pub mod signals;
pub mod terminal;
