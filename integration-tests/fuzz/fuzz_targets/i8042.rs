//! The i8042 keyboard controller (with its PS/2 keyboard and mouse) on its
//! own: arbitrary reads and writes of any width at the data (0x60) and
//! command (0x64) ports, as the bus hands them over (base port and offset),
//! interleaved with host key presses.
//!
//! Checked: the status register never shows IBF (input is processed when
//! written); a key press is either queued or counted as dropped, whole; the
//! controller never asks for more than one reset per command written; and
//! at the end a guest that reads the data port while OBF is set empties the
//! output buffer within a bounded number of reads (every queue is bounded).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vm_superio::Trigger;
use vmm_devices::legacy::i8042::{
    I8042_COMMAND_PORT, I8042_DATA_PORT, KEY_QUEUE_CAP, REPLY_QUEUE_CAP, STS_IBF, STS_OBF,
};
use vmm_devices::legacy::I8042;
use vmm_devices::vm_event::RecordingSink;
use vmm_devices::VmEvent;
use vmm_fuzz::ports::{self, MAX_OPS};

/// An interrupt line that counts its edges.
#[derive(Clone, Default)]
struct Edges(Arc<AtomicU64>);

impl Trigger for Edges {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// An access registered at the data port's range.
    Data {
        write: bool,
        off: u8,
        width: u8,
    },
    /// An access registered at the command port's range.
    Cmd {
        write: bool,
        off: u8,
        width: u8,
    },
    /// A controller command followed by its data byte, as drivers send them.
    CmdData(u8, u8),
    Key(Vec<u8>),
}

fn status(dev: &I8042<Edges>) -> u8 {
    let mut s = [0u8];
    dev.pio_read(PioAddress(I8042_COMMAND_PORT), 0, &mut s);
    s[0]
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let sink = Arc::new(RecordingSink::default());
    let (kbd, aux) = (Edges::default(), Edges::default());
    let dev = I8042::new(sink.clone(), kbd.clone(), aux.clone());
    let mut commands = 0usize;
    let mut dropped = 0u64;
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Data { write, off, width } | Op::Cmd { write, off, width } => {
                let base = if matches!(op, Op::Data { .. }) {
                    I8042_DATA_PORT
                } else {
                    I8042_COMMAND_PORT
                };
                let off = u16::from(off % 6);
                if write {
                    let data = ports::data(u, width)?;
                    // A lane on 0x64 is a command.
                    commands += (0..data.len())
                        .filter(|&i| u64::from(base) + u64::from(off) + i as u64 == 0x64)
                        .count();
                    dev.pio_write(PioAddress(base), off, &data);
                } else {
                    let mut data = vec![0u8; ports::width(width)];
                    dev.pio_read(PioAddress(base), off, &mut data);
                    for (i, b) in data.iter().enumerate() {
                        let port = u64::from(base) + u64::from(off) + i as u64;
                        if port != 0x60 && port != 0x64 {
                            assert_eq!(*b, 0xff, "port {port:#x} is not the 8042's");
                        }
                    }
                }
            }
            Op::CmdData(cmd, value) => {
                dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[cmd]);
                dev.pio_write(PioAddress(I8042_DATA_PORT), 0, &[value]);
                commands += 1;
            }
            Op::Key(bytes) => {
                let queued = dev.key_press(&bytes);
                if !queued {
                    dropped += bytes.len() as u64;
                }
                assert_eq!(dev.dropped_key_bytes(), dropped, "queued: {queued}");
            }
        }
        assert_eq!(status(&dev) & STS_IBF, 0, "IBF set");
    }
    let resets = sink
        .events()
        .iter()
        .filter(|e| **e == VmEvent::Reset)
        .count();
    assert!(
        resets <= commands,
        "{resets} resets from {commands} commands"
    );
    assert!(sink.events().iter().all(|e| *e == VmEvent::Reset));
    // Controller replies, keyboard replies and keys, mouse replies: each
    // queue is bounded, so a draining guest is done after this many reads.
    let bound = 4 * KEY_QUEUE_CAP.max(REPLY_QUEUE_CAP) + 2;
    let mut reads = 0;
    while status(&dev) & STS_OBF != 0 {
        let mut b = [0u8];
        dev.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut b);
        reads += 1;
        assert!(
            reads <= bound,
            "output buffer still full after {reads} reads"
        );
    }
    let _ = dev.command_byte();
    let _ = format!("{dev:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
