//! The debug ports on their own: isa-debug-exit (0xf4), the debug console
//! (0xe9, to an in-memory console or through the line-buffered writer the
//! VMM uses for file consoles) and the POST-code port (0x80), with arbitrary
//! reads and writes of any width.
//!
//! Checked: debug-exit reports one event per write, with the written value
//! (up to 4 bytes, little-endian) and reads all ones; debugcon prints the
//! first byte of each write and reads back 0xe9; the POST port keeps at most
//! its history bound, the newest codes in order, counts every write, and
//! reads all ones.
#![no_main]

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_devices::console::LineBuffered;
use vmm_devices::legacy::debug_exit::DEBUG_EXIT_PORT;
use vmm_devices::legacy::debugcon::{DEBUGCON_PORT, DEBUGCON_READBACK};
use vmm_devices::legacy::post_code::{POST_CODE_HISTORY, POST_CODE_PORT};
use vmm_devices::legacy::{DebugCon, DebugExit, PostCodePort};
use vmm_devices::vm_event::RecordingSink;
use vmm_devices::{Console, VmEvent};
use vmm_fuzz::ports::{self, MAX_OPS};

#[derive(Debug, Arbitrary)]
enum Op {
    Exit {
        write: bool,
        off: u8,
        width: u8,
    },
    Con {
        write: bool,
        width: u8,
    },
    Post {
        write: bool,
        width: u8,
    },
    /// Many POST codes at once: reaches the history bound.
    PostBurst(u16),
}

/// A writer shared with the test, behind the line-buffered console.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let buffered = bool::arbitrary(u)?;
    let sink = Arc::new(RecordingSink::default());
    let exit = DebugExit::new(sink.clone());
    let shared = Shared::default();
    let console = if buffered {
        Console::writer(Box::new(LineBuffered::new(shared.clone())))
    } else {
        Console::memory()
    };
    let con = DebugCon::new(console.clone());
    let post = PostCodePort::new(Instant::now(), false);
    let mut want_events = Vec::new();
    let mut want_out: Vec<u8> = Vec::new();
    let mut want_codes = VecDeque::new();
    let mut total = 0u64;
    let mut post_write = |post: &PostCodePort, data: &[u8], total: &mut u64| {
        post.pio_write(PioAddress(POST_CODE_PORT), 0, data);
        if let Some(&c) = data.first() {
            if want_codes.len() == POST_CODE_HISTORY {
                want_codes.pop_front();
            }
            want_codes.push_back(c);
            *total += 1;
        }
    };
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Exit { write, off, width } => {
                let off = u16::from(off % 4);
                if write {
                    let data = ports::data(u, width)?;
                    exit.pio_write(PioAddress(DEBUG_EXIT_PORT), off, &data);
                    let mut le = [0u8; 4];
                    let n = data.len().min(4);
                    le[..n].copy_from_slice(&data[..n]);
                    want_events.push(VmEvent::DebugExit(u32::from_le_bytes(le)));
                } else {
                    let mut data = vec![0u8; ports::width(width)];
                    exit.pio_read(PioAddress(DEBUG_EXIT_PORT), off, &mut data);
                    assert!(data.iter().all(|&b| b == 0xff));
                }
            }
            Op::Con { write, width } => {
                if write {
                    let data = ports::data(u, width)?;
                    con.pio_write(PioAddress(DEBUGCON_PORT), 0, &data);
                    want_out.extend(data.first());
                } else {
                    let mut data = vec![0u8; ports::width(width)];
                    con.pio_read(PioAddress(DEBUGCON_PORT), 0, &mut data);
                    assert!(data.iter().all(|&b| b == DEBUGCON_READBACK));
                }
            }
            Op::Post { write, width } => {
                if write {
                    let data = ports::data(u, width)?;
                    post_write(&post, &data, &mut total);
                } else {
                    let mut data = vec![0u8; ports::width(width)];
                    post.pio_read(PioAddress(POST_CODE_PORT), 0, &mut data);
                    assert!(data.iter().all(|&b| b == 0xff));
                }
            }
            Op::PostBurst(n) => {
                for i in 0..n % 8192 {
                    post_write(&post, &[i as u8], &mut total);
                }
            }
        }
    }
    assert_eq!(sink.events(), want_events);
    let codes = post.codes();
    assert!(codes.len() <= POST_CODE_HISTORY);
    assert!(codes.iter().map(|c| c.code).eq(want_codes.iter().copied()));
    assert!(
        codes.windows(2).all(|w| w[0].at <= w[1].at),
        "times go back"
    );
    assert_eq!(post.total(), total);
    drop(con);
    if buffered {
        // Dropping the last handle flushes the line buffer.
        drop(console);
        let out = shared.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(out, want_out);
    } else {
        assert_eq!(console.captured(), want_out);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
