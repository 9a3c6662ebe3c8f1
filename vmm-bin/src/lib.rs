//! The command-line front end's pieces, as a library so they can be tested
//! and fuzzed: argument parsing ([`cli`]), exit statuses ([`exit_status`]),
//! the Firecracker-compatible API socket ([`api`]) and config file
//! ([`config_file`]), and the process policy a library must not impose:
//! stop signals ([`signals`]), the terminal's raw mode ([`terminal`]), the
//! logger ([`logger`]) and drawing the run's picture ([`plot`],
//! `--exit-plot`). `main.rs` wires them to vmm-core and builds the
//! device set.

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
