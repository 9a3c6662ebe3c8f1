//! The snapshot file parser (`vmm_core::snapshot::format::decode`) and the
//! checks and device rebuilds a restore makes from what it decodes, short
//! of KVM: never a panic, whatever the file.
//!
//! Input: byte 0 picks the mode, the rest is
//! - mode 0 (even): a whole snapshot file, as read from disk;
//! - mode 1 (odd): a body, which the harness seals with a correct header
//!   (length and CRC32), so mutations get past the checksum into the JSON
//!   sections and the consistency checks.
//!
//! Beyond "no panic": a decoded body re-encodes to a file that decodes
//! again to the same bytes; a body that passes `validate` rebuilds its
//! platform devices (`build_devices_from_state`) and every entropy or
//! console transport (`MmioTransport::restore`) without panicking, each
//! either accepting the state or refusing it with an error.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_core::snapshot::format::{decode, encode, FORMAT_VERSION, MAGIC};
use vmm_core::snapshot::validate;
use vmm_devices::console::Console;
use vmm_devices::legacy::CmosMemorySizes;
use vmm_devices::pc::{build_devices_from_state, DeviceSetOptions, NoInterrupts};
use vmm_devices::virtio::console::VirtioConsole;
use vmm_devices::virtio::rng::VirtioRng;
use vmm_devices::virtio::{MmioTransport, VirtioDevice};
use vmm_devices::vm_event::RecordingSink;
use vmm_devices::IrqLine;

/// A header for `body`: what a writer would put in front of it.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&(body.len() as u64).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(body);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        seal(rest)
    };
    let body = match decode(&file) {
        Ok(b) => b,
        Err(e) => {
            vmm_fuzz::trace(&e);
            return;
        }
    };
    let again = encode(&body).expect("a decoded body encodes");
    let back = decode(&again).expect("an encoded body decodes");
    assert_eq!(
        encode(&back).expect("encodes"),
        again,
        "decode/encode is stable"
    );
    if let Err(e) = validate(&body) {
        vmm_fuzz::trace(&e);
        return;
    }
    let options = DeviceSetOptions {
        set: body.devices.set,
        console: Console::discard(),
        events: Arc::new(RecordingSink::default()),
        memory: CmosMemorySizes {
            below_4g_end: 16 << 20,
            above_4g_size: 0,
        },
        print_post_codes: false,
        uart_input: false,
    };
    if let Err(e) = build_devices_from_state(options, &mut NoInterrupts, &body.devices) {
        vmm_fuzz::trace(&e);
    }
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("guest memory");
    for v in &body.virtio {
        let device: Box<dyn VirtioDevice> = match v.transport.device_type {
            4 => Box::new(VirtioRng::new()),
            3 => match VirtioConsole::new(Console::discard()) {
                Ok(c) => Box::new(c),
                Err(_) => continue,
            },
            _ => continue,
        };
        let mut t = MmioTransport::new(device, mem.clone(), IrqLine::None).expect("transport");
        if let Err(e) = t.restore(&v.transport) {
            vmm_fuzz::trace(&e);
        }
    }
});
