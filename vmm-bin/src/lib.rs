//! The command-line front end's pieces, as a library so they can be tested
//! and fuzzed: argument parsing ([`cli`]) and exit statuses
//! ([`exit_status`]). `main.rs` only wires them to vmm-core.

pub mod cli;
pub mod exit_status;
