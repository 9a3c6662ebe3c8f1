//! `load_image` with `--format linux` forced, so every input goes deep into
//! the Linux loader (setup header, payload decompression, vmlinux, boot_params, initrd).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_fuzz::load::{fuzz_load, Forced};
use vmm_loader::Format;

fuzz_target!(|data: &[u8]| fuzz_load(data, Forced::Always(Format::Linux)));
