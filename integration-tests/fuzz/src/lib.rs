//! Shared pieces of the fuzz targets in `fuzz_targets/`: how a target's input
//! bytes become a load request, a device register sequence or a clock, so
//! every target decodes the same way and the seed generator
//! (`examples/gen_corpus.rs`) can encode meaningful inputs.
//!
//! This is test code: a harness that cannot set itself up panics, which
//! libFuzzer reports like any other crash.

pub mod clock;
pub mod load;
pub mod ports;
pub mod virtio;
pub mod virtio_net;

/// Prints a decoded operation to stderr when `VMM_FUZZ_TRACE` is set: how
/// to see what an input (a seed, a crash) does, e.g.
/// `VMM_FUZZ_TRACE=1 target/.../uart_registers corpus/uart_registers/probe`.
pub fn trace(what: &dyn std::fmt::Debug) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("VMM_FUZZ_TRACE").is_some()) {
        eprintln!("{what:?}");
    }
}
