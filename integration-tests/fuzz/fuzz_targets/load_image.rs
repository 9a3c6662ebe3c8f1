//! Any bytes as a kernel image: format detection, then `vmm_loader::load`
//! with the format, command line, initrd and modules the input's header asks
//! for (see `vmm_fuzz::load`). Must never panic; a successful load must keep
//! its promises (image and entry in RAM, clear of the boot tables).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_fuzz::load::{fuzz_load, Forced};

fuzz_target!(|data: &[u8]| fuzz_load(data, Forced::FromInput));
