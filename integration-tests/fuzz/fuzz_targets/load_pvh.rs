//! `load_image` with `--format pvh` forced, so every input goes deep into
//! the PVH loader (Xen ELF notes, hvm_start_info, memory map, modules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_fuzz::load::{fuzz_load, Forced};
use vmm_loader::Format;

fuzz_target!(|data: &[u8]| fuzz_load(data, Forced::Always(Format::Pvh)));
