//! `load_image` with `--format elf` forced, so every input goes deep into
//! the generic ELF loader (PT_LOAD segments, entry translation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_fuzz::load::{fuzz_load, Forced};
use vmm_loader::Format;

fuzz_target!(|data: &[u8]| fuzz_load(data, Forced::Always(Format::Elf)));
