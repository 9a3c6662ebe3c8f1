//! `load_image` with `--format multiboot` forced, so every input goes deep into
//! the Multiboot v1 loader (header search, a.out kludge, ELF, info structure, modules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_fuzz::load::{fuzz_load, Forced};
use vmm_loader::Format;

fuzz_target!(|data: &[u8]| fuzz_load(data, Forced::Always(Format::Multiboot)));
