//! vmm-loader on its own: maps guest RAM with vmm-memory, loads an image
//! into it, and prints the detected format and the `BootSpec` (how a vCPU
//! would start it). No KVM, no vCPU.
//!
//! ```sh
//! cargo run -p vmm-loader --example boot_spec -- IMAGE [MEMORY_MIB]
//! cargo run -p vmm-loader --example boot_spec -- integration-tests/guests/hello.bin
//! ```
//!
//! Bad input (a missing file, a corrupt image, an image that does not fit)
//! is reported on stderr with exit status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use vm_memory::GuestAddress;
use vmm_loader::input::{read_input, InputKind};
use vmm_loader::raw::RawOptions;
use vmm_loader::{BootSpec, Detection, Entry, Handoff, LoadRequest};
use vmm_memory::{GuestRam, MemoryLayout, ThpHint};

/// Guest RAM when no size is given, in MiB.
const DEFAULT_MIB: u64 = 128;

fn usage() -> String {
    "usage: boot_spec IMAGE [MEMORY_MIB]".to_string()
}

/// Loads the image named on the command line and returns what was found.
fn load() -> Result<(Detection, BootSpec), String> {
    let mut args = std::env::args_os().skip(1);
    let path = PathBuf::from(args.next().ok_or_else(usage)?);
    let mib = match args.next() {
        None => DEFAULT_MIB,
        Some(m) => m
            .to_str()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("MEMORY_MIB {m:?} is not a number of MiB; {}", usage()))?,
    };
    if args.next().is_some() {
        return Err(usage());
    }
    let layout = MemoryLayout::new(mib).map_err(|e| e.to_string())?;
    let ram = GuestRam::new(&layout, ThpHint::Off).map_err(|e| e.to_string())?;
    let image = read_input(&path, layout.size(), InputKind::Kernel).map_err(|e| e.to_string())?;
    let req = LoadRequest {
        kernel_path: path.display().to_string(),
        ..Default::default()
    };
    vmm_loader::load(
        ram.memory(),
        ram.layout(),
        &image,
        None,
        &req,
        RawOptions::default(),
    )
    .map_err(|e| format!("loading {}: {e}", path.display()))
}

/// `[start, end)` of a `(start, length)` range.
fn range((GuestAddress(start), len): (GuestAddress, u64)) -> String {
    format!("[{start:#x}, {:#x})", start.saturating_add(len))
}

/// The entry as `ADDR` or `SEG:OFF`.
fn entry(e: Entry) -> String {
    match e {
        Entry::Linear(GuestAddress(a)) => format!("{a:#x}"),
        Entry::Segmented { segment, offset } => {
            format!("{segment:#x}:{offset:#x} (linear {:#x})", e.linear().0)
        }
    }
}

/// What the protocol passes the kernel, and in which register.
fn handoff(h: Handoff) -> String {
    match h {
        Handoff::None => "nothing".to_string(),
        Handoff::Multiboot { magic, info } => {
            format!(
                "EAX = {magic:#x}, EBX = {:#x} (Multiboot information)",
                info.0
            )
        }
        Handoff::LinuxZeroPage(a) => format!("RSI = {:#x} (zero page)", a.0),
        Handoff::PvhStartInfo(a) => format!("EBX = {:#x} (hvm_start_info)", a.0),
    }
}

fn main() -> ExitCode {
    let (detection, spec) = match load() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("boot_spec: {e}");
            return ExitCode::from(2);
        }
    };
    println!("format:   {} ({})", detection.format, detection.reason);
    println!("mode:     {:?}", spec.mode);
    println!("entry:    {}", entry(spec.entry));
    println!("image:    {}", range(spec.image));
    for s in &spec.segments {
        println!("segment:  {}", range(*s));
    }
    println!("handoff:  {}", handoff(spec.handoff));
    ExitCode::SUCCESS
}
