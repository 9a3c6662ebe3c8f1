//! virtio-console (port 0) behind the MMIO transport, driven by a
//! fuzzer-steered driver (`vmm_fuzz::virtio`) and fed host input in
//! between.
//!
//! Checked beyond the harness's ring checks: transmit buffers are never
//! written (used length 0); what reaches the console's sink is exactly the
//! transmitted byte count; receive completions never hand the guest more
//! bytes than the host pushed; the input queue never holds more than
//! `INPUT_QUEUE_MAX`; and host input arrives in order (every received byte
//! is the next one pushed: the pushed stream is a counter).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use vmm_devices::virtio::console::{INPUT_QUEUE_MAX, RECEIVEQ, TRANSMITQ};
use vmm_devices::virtio::VirtioConsole;
use vmm_devices::Console;
use vmm_fuzz::virtio::{Harness, Op, MAX_OPS};

#[derive(Arbitrary, Debug)]
enum Step {
    Driver(Op),
    /// Host input: `len` bytes of the running counter.
    Input { len: u16 },
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(features) = u64::arbitrary(&mut u) else {
        return;
    };
    let out = Console::memory();
    let console = VirtioConsole::new(out.clone()).expect("eventfd");
    let input = console.input();
    let metrics = console.metrics();
    let mut h = Harness::new(Box::new(console), features);
    let mut pushed = 0u64;
    let mut received = 0u64;
    // Empty input decodes as zeros forever: stop when it runs out.
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        vmm_fuzz::trace(&step);
        match step {
            Step::Input { len } => {
                let bytes: Vec<u8> = (0..u64::from(len))
                    .map(|i| (pushed + i) as u8)
                    .collect();
                pushed += input.push(&bytes) as u64;
                assert!(input.queued() <= INPUT_QUEUE_MAX);
            }
            Step::Driver(op) => {
                let mut last_rx = None;
                for (q, head, len) in h.run(&op, features) {
                    if q == TRANSMITQ {
                        assert_eq!(len, 0, "a transmit buffer was written");
                    }
                    if q == RECEIVEQ && len > 0 {
                        last_rx = Some((head, len, received));
                        received += u64::from(len);
                    }
                }
                // Only the last chain served: an earlier one's buffer may
                // share memory with a later one's and hold its bytes.
                if let Some((head, len, from)) = last_rx.filter(|_| !h.unchecked()) {
                    check_in_order(&h, head, len, from);
                }
            }
        }
        if !h.unchecked() {
            assert!(received <= pushed, "{received} bytes received, {pushed} pushed");
        }
    }
    assert_eq!(
        out.captured().len() as u64,
        metrics.tx_bytes(),
        "sink bytes vs transmitted count"
    );
});

/// If chain `head` is one descriptor (no NEXT, no INDIRECT), its first
/// `len` bytes must be the stream from `from`.
fn check_in_order(h: &Harness, head: u16, len: u32, from: u64) {
    let desc = h.descriptor(RECEIVEQ, head);
    let (addr, dlen, flags) = desc;
    if flags & 0b101 != 0 || dlen < len {
        return;
    }
    let mut got = vec![0u8; len as usize];
    if h.mem.read_slice(&mut got, GuestAddress(addr)).is_err() {
        return;
    }
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, (from + i as u64) as u8, "byte {i} of chain {head} out of order");
    }
}
