use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_STATUS};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EFD_NONBLOCK;

use super::*;
use crate::virtio::testing::*;
use crate::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
use crate::IrqLine;

const W: u32 = VRING_DESC_F_WRITE;
const N: u32 = VRING_DESC_F_NEXT;
const SIZE: u16 = 16;

type Mock<'a> = MockSplitQueue<'a, GuestMemoryMmap>;

fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
}

struct Rig<'a> {
    t: MmioTransport,
    rx: Mock<'a>,
    tx: Mock<'a>,
    out: Console,
    input: ConsoleInput,
    metrics: Arc<ConsoleMetrics>,
    drained: EventFd,
}

/// The two mock queues, each 4 times the queue size (virtio-queue 0.18's
/// mock lays its used ring over the available ring otherwise; see the rng
/// tests).
fn mocks(mem: &GuestMemoryMmap) -> (Mock<'_>, Mock<'_>) {
    let rx = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 4 * SIZE);
    let tx = MockSplitQueue::create(mem, GuestAddress(0x1_8000), 4 * SIZE);
    (rx, tx)
}

/// A console transport, not yet activated.
fn rig(mem: &GuestMemoryMmap) -> Rig<'_> {
    let out = Console::memory();
    let drained = EventFd::new(EFD_NONBLOCK).unwrap();
    let dev = VirtioConsole::with_input_drained(out.clone(), drained.try_clone().unwrap()).unwrap();
    let (input, metrics) = (dev.input(), dev.metrics());
    let t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
    let (rx, tx) = mocks(mem);
    Rig {
        t,
        rx,
        tx,
        out,
        input,
        metrics,
        drained,
    }
}

fn activate_rig(r: &mut Rig<'_>) {
    activate(
        &mut r.t,
        VIRTIO_F_VERSION_1,
        &[&r.rx, &r.tx],
        u32::from(SIZE),
    );
}

fn active(mem: &GuestMemoryMmap) -> Rig<'_> {
    let mut r = rig(mem);
    activate_rig(&mut r);
    r
}

fn used(mock: &Mock<'_>, i: usize) -> (u32, u32) {
    let e = mock.used().ring().ref_at(i).unwrap().load();
    (e.id(), e.len())
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// What the device thread does when the input's pending eventfd fires.
fn host_event(r: &mut Rig<'_>) {
    let fds = r.t.host_fds();
    assert_eq!(fds.len(), 1);
    r.t.process_host_fd(fds[0]);
}

#[test]
fn test_console_identity_features_and_config() {
    let mut t = MmioTransport::new(
        Box::new(VirtioConsole::new(Console::discard()).unwrap()),
        memory(),
        IrqLine::None,
    )
    .unwrap();
    assert_eq!(read32(&mut t, VIRTIO_MMIO_DEVICE_ID), 3);
    assert_eq!(device_features(&mut t), VIRTIO_F_VERSION_1);
    let sized = VirtioConsole::new(Console::discard())
        .unwrap()
        .with_size(80, 25);
    assert_eq!(sized.features(), VIRTIO_CONSOLE_F_SIZE);
    assert_eq!(sized.queue_max_sizes(), &[256, 256]);
    let mut t = MmioTransport::new(Box::new(sized), memory(), IrqLine::None).unwrap();
    let mut cfg = [0u8; 12];
    t.read(0x100, &mut cfg);
    assert_eq!(cfg, [80, 0, 25, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(negotiate(
        &mut t,
        VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_SIZE
    ));
    assert!(
        !negotiate(&mut t, VIRTIO_F_VERSION_1 | (1 << 1)),
        "no MULTIPORT"
    );
}

#[test]
fn test_console_guest_output_reaches_console_exactly() {
    let mem = memory();
    let mut r = active(&mem);
    mem.write_slice(b"hello, ", GuestAddress(0x2_0000)).unwrap();
    mem.write_slice(b"wor", GuestAddress(0x3_0000)).unwrap();
    mem.write_slice(b"ld", GuestAddress(0x3_1000)).unwrap();
    mem.write_slice(b"XXXX", GuestAddress(0x3_2000)).unwrap();
    mem.write_slice(b"\n", GuestAddress(0x4_0000)).unwrap();
    r.tx.add_desc_chains(
        &[
            desc(0x2_0000, 7, 0, 0),
            // Two readable buffers and a writable one the device ignores.
            desc(0x3_0000, 3, N, 2),
            desc(0x3_1000, 2, N, 3),
            desc(0x3_2000, 4, W, 0),
            desc(0x4_0000, 1, 0, 0),
        ],
        0,
    )
    .unwrap();
    r.t.process_queue(TRANSMITQ);
    assert_eq!(r.out.captured(), b"hello, world\n");
    assert_eq!(r.tx.used().idx().load(), 3);
    assert_eq!(used(&r.tx, 0), (0, 0));
    assert_eq!(used(&r.tx, 1), (1, 0));
    assert_eq!(used(&r.tx, 2), (4, 0));
    assert_eq!(
        read(&mem, 0x3_2000, 4),
        b"XXXX",
        "writable buffer untouched"
    );
    assert_eq!(r.metrics.tx_bytes(), 13);
    assert_eq!(r.t.interrupt().status(), 1);
    // Another notify with nothing new adds nothing.
    r.t.process_queue(TRANSMITQ);
    assert_eq!(r.out.captured().len(), 13);
}

#[test]
fn test_console_transmit_chain_is_bounded() {
    let mem = memory();
    let mut r = active(&mem);
    let half = 48u32 << 10;
    mem.write_slice(&vec![b'a'; half as usize], GuestAddress(0x2_0000))
        .unwrap();
    mem.write_slice(&vec![b'b'; half as usize], GuestAddress(0x4_0000))
        .unwrap();
    r.tx.add_desc_chains(
        &[
            desc(0x2_0000, half, N, 1),
            desc(0x4_0000, half, 0, 0),
            desc(0x2_0000, 3, 0, 0),
        ],
        0,
    )
    .unwrap();
    r.t.process_queue(TRANSMITQ);
    let out = r.out.captured();
    assert_eq!(out.len(), TX_CHAIN_MAX + 3);
    assert!(out[..half as usize].iter().all(|&b| b == b'a'));
    assert!(out[half as usize..TX_CHAIN_MAX].iter().all(|&b| b == b'b'));
    assert_eq!(&out[TX_CHAIN_MAX..], b"aaa", "the next chain follows");
    assert_eq!(
        r.metrics.tx_dropped_bytes(),
        2 * u64::from(half) - TX_CHAIN_MAX as u64
    );
}

#[test]
fn test_console_input_fills_receive_buffers_in_order() {
    let mem = memory();
    let mut r = active(&mem);
    // Buffers posted first: a notify without input leaves them posted.
    r.rx.add_desc_chains(
        &[
            desc(0x2_0000, 40, W, 0),
            // A readable header (ignored), then two writable buffers.
            desc(0x3_0000, 8, N, 2),
            desc(0x3_1000, 10, W | N, 3),
            desc(0x3_2000, 30, W, 0),
            desc(0x4_0000, 40, W, 0),
            desc(0x5_0000, 40, W, 0),
        ],
        0,
    )
    .unwrap();
    r.t.process_queue(RECEIVEQ);
    assert_eq!(r.rx.used().idx().load(), 0, "no input, no chain taken");
    let sent: Vec<u8> = (0..100u8).collect();
    assert_eq!(r.input.push(&sent), 100);
    assert_eq!(r.input.take_pending(), Some(1));
    host_event(&mut r);
    assert_eq!(r.rx.used().idx().load(), 3);
    assert_eq!(used(&r.rx, 0), (0, 40));
    assert_eq!(used(&r.rx, 1), (1, 40));
    assert_eq!(used(&r.rx, 2), (4, 20));
    let got = [
        read(&mem, 0x2_0000, 40),
        read(&mem, 0x3_1000, 10),
        read(&mem, 0x3_2000, 30),
        read(&mem, 0x4_0000, 20),
    ]
    .concat();
    assert_eq!(got, sent);
    assert_eq!(read(&mem, 0x3_0000, 8), vec![0; 8], "readable untouched");
    assert_eq!(r.input.queued(), 0);
    assert_eq!(r.metrics.rx_bytes(), 100);
    assert_eq!(r.drained.read().unwrap(), 1, "emptied: drained");
    // The last buffer stays posted for the next input.
    r.input.push(b"!");
    host_event(&mut r);
    assert_eq!(used(&r.rx, 3), (5, 1));
    assert_eq!(read(&mem, 0x5_0000, 1), b"!");
}

#[test]
fn test_console_input_waits_for_buffers() {
    let mem = memory();
    let mut r = active(&mem);
    r.input.push(b"typed ahead");
    host_event(&mut r);
    assert_eq!(r.rx.used().idx().load(), 0);
    assert_eq!(r.input.queued(), 11, "kept until the guest has room");
    assert!(r.drained.read().is_err());
    // The driver posts a small buffer and notifies: part goes in.
    r.rx.add_desc_chains(&[desc(0x2_0000, 6, W, 0)], 0).unwrap();
    r.t.process_queue(RECEIVEQ);
    assert_eq!(used(&r.rx, 0), (0, 6));
    assert_eq!(read(&mem, 0x2_0000, 6), b"typed ");
    assert!(r.drained.read().is_err(), "not empty yet");
    r.rx.add_desc_chains(&[desc(0x3_0000, 64, W, 0)], 1)
        .unwrap();
    r.t.process_queue(RECEIVEQ);
    assert_eq!(used(&r.rx, 1), (1, 5));
    assert_eq!(read(&mem, 0x3_0000, 5), b"ahead");
    assert_eq!(r.drained.read().unwrap(), 1);
}

#[test]
fn test_console_input_is_bounded_and_drained_is_signalled() {
    let mem = memory();
    let mut r = active(&mem);
    let big: Vec<u8> = (0..INPUT_QUEUE_MAX + 10).map(|i| i as u8).collect();
    assert_eq!(r.input.push(&big), INPUT_QUEUE_MAX);
    assert_eq!((r.input.room(), r.input.push(b"more")), (0, 0));
    // Two 48 KiB buffers take it all, in order, the second partly.
    let half = 48u32 << 10;
    r.rx.add_desc_chains(&[desc(0x2_0000, half, W, 0), desc(0x4_0000, half, W, 0)], 0)
        .unwrap();
    host_event(&mut r);
    assert_eq!(used(&r.rx, 0), (0, half));
    assert_eq!(used(&r.rx, 1), (1, INPUT_QUEUE_MAX as u32 - half));
    let got = [
        read(&mem, 0x2_0000, half as usize),
        read(&mem, 0x4_0000, INPUT_QUEUE_MAX - half as usize),
    ]
    .concat();
    assert_eq!(got, &big[..INPUT_QUEUE_MAX]);
    assert_eq!(r.drained.read().unwrap(), 1);
    assert_eq!(r.input.room(), INPUT_QUEUE_MAX);
    // The caller kept the 10 bytes that did not fit and sends them now.
    assert_eq!(r.input.push(&big[INPUT_QUEUE_MAX..]), 10);
}

#[test]
fn test_console_bad_chains_get_len_0_and_input_waits() {
    let mem = memory();
    let mut r = active(&mem);
    r.input.push(b"abc");
    r.rx.add_desc_chains(
        &[
            // No writable byte.
            desc(0x2_0000, 16, 0, 0),
            // Outside the 1 MiB of RAM.
            desc(0x10_0000 - 2, 16, W, 0),
            desc(0x3_0000, 16, W, 0),
        ],
        0,
    )
    .unwrap();
    host_event(&mut r);
    assert_eq!(used(&r.rx, 0), (0, 0));
    assert_eq!(used(&r.rx, 1), (1, 0));
    assert_eq!(used(&r.rx, 2), (2, 3));
    assert_eq!(read(&mem, 0x3_0000, 3), b"abc");
    r.tx.add_desc_chains(&[desc(u64::MAX - 1, 8, 0, 0), desc(0x3_0000, 8, W, 0)], 0)
        .unwrap();
    r.t.process_queue(TRANSMITQ);
    assert_eq!(r.tx.used().idx().load(), 2);
    assert!(r.out.captured().is_empty());
    assert_eq!(r.metrics.invalid_chains(), 4);
    assert!(r.t.is_active());
}

#[test]
fn test_console_pending_event_only_while_live_and_reset_keeps_input() {
    let mem = memory();
    let mut r = rig(&mem);
    // Before DRIVER_OK input queues without an event the transport would
    // not pass on.
    assert_eq!(r.input.push(b"early"), 5);
    assert_eq!(r.input.take_pending(), None);
    activate_rig(&mut r);
    assert_eq!(r.input.take_pending(), Some(1), "announced at DRIVER_OK");
    r.input.push(b"!");
    // Reset (on a vCPU thread, which may not read the eventfd): the event
    // pending from before stays for the device thread, which drops it
    // while the device is inactive; the input is kept.
    write32(&mut r.t, VIRTIO_MMIO_STATUS, 0);
    assert_eq!(r.input.take_pending(), Some(1), "the stale event");
    r.t.process_host_fd(r.input.pending_fd());
    assert_eq!(r.input.queued(), 6, "nothing delivered while reset");
    r.input.push(b"?");
    assert_eq!(r.input.take_pending(), None, "no events while reset");
    assert_eq!(r.input.queued(), 7);
    // The next driver gets it.
    let (rx, tx) = mocks(&mem);
    (r.rx, r.tx) = (rx, tx);
    activate_rig(&mut r);
    r.rx.add_desc_chains(&[desc(0x2_0000, 16, W, 0)], 0)
        .unwrap();
    r.t.process_queue(RECEIVEQ);
    assert_eq!(used(&r.rx, 0), (0, 7));
    assert_eq!(read(&mem, 0x2_0000, 7), b"early!?");
}

#[test]
fn test_console_needs_reset_stops_pending_events() {
    let mem = memory();
    let mut r = active(&mem);
    r.input.push(b"x");
    assert_eq!(r.input.take_pending(), Some(1));
    // A head index past the queue size: add_used fails, the driver broke
    // the contract.
    let avail = r.rx.avail_addr();
    mem.write_obj(SIZE + 3, avail.unchecked_add(4)).unwrap();
    mem.write_obj(1u16, avail.unchecked_add(2)).unwrap();
    host_event(&mut r);
    assert_ne!(r.t.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    r.input.push(b"y");
    assert_eq!(r.input.take_pending(), None);
    assert_eq!(r.input.queued(), 2, "input kept");
}

#[test]
fn test_console_host_event_without_receiveq_is_harmless() {
    let mem = memory();
    let mut r = rig(&mem);
    // Only the transmitq is set up.
    assert!(negotiate(&mut r.t, VIRTIO_F_VERSION_1));
    setup_queue(&mut r.t, 1, &r.tx, u32::from(SIZE));
    driver_ok(&mut r.t);
    assert!(r.t.is_active());
    r.input.push(b"z");
    host_event(&mut r);
    assert_eq!(r.input.take_pending(), None, "consumed");
    assert_eq!(r.input.queued(), 1);
    assert!(r.t.is_active());
}
