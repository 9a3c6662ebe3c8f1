use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::testing::*;

const ECHO_TYPE: u32 = 0x7e;
const ECHO_FEATURE: u64 = 1 << 3;

/// Queue 0: copies each chain's readable bytes into its writable ones.
#[derive(Default)]
struct Echo {
    activated: Arc<Mutex<Option<u64>>>,
    resets: Arc<Mutex<u32>>,
    broken: bool,
}

impl VirtioDevice for Echo {
    fn device_type(&self) -> u32 {
        ECHO_TYPE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn features(&self) -> u64 {
        ECHO_FEATURE
    }
    fn config_space(&self) -> Vec<u8> {
        vec![0x11, 0x22, 0x33, 0x44, 0x55]
    }
    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        *self.activated.lock().unwrap() = Some(features);
        Ok(())
    }
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if self.broken {
            return Err(DeviceError::NeedsReset("broken on purpose".into()));
        }
        while let Some(chain) = ctx.pop(index) {
            let head = chain.head_index();
            let mut data = Vec::new();
            chain
                .clone()
                .reader(ctx.mem)
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            let mut w = chain.writer(ctx.mem).unwrap();
            let n = w.write(&data).unwrap();
            ctx.add_used(index, head, n as u32)?;
        }
        ctx.signal_used(index).map(|_| ())
    }
    fn reset(&mut self) {
        *self.resets.lock().unwrap() += 1;
    }
}

fn transport(dev: Echo) -> MmioTransport {
    MmioTransport::new(Box::new(dev), memory(), IrqLine::eventfd().unwrap()).unwrap()
}

fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
}

#[test]
fn test_mmio_identification_registers() {
    let mut t = transport(Echo::default());
    assert_eq!(read32(&mut t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_VERSION), 2);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_DEVICE_ID), ECHO_TYPE);
    assert_eq!(device_features(&mut t), ECHO_FEATURE | VIRTIO_F_VERSION_1);
    write32(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 8);
    write32(&mut t, VIRTIO_MMIO_QUEUE_SEL, 2);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no queue 2");
    assert_eq!(read32(&mut t, VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
    // Config space: byte and unaligned reads, zero past its end.
    let mut b = [0u8; 4];
    t.read(0x101, &mut b);
    assert_eq!(b, [0x22, 0x33, 0x44, 0x55]);
    t.read(0x104, &mut b);
    assert_eq!(b, [0x55, 0, 0, 0]);
    // A register read that is not 32 bits wide is ignored (zeros).
    let mut w = [0xffu8; 2];
    t.read(0, &mut w);
    assert_eq!(w, [0, 0]);
    assert!(t.ignored_accesses() > 0);
}

#[test]
fn test_mmio_features_ok_refused_for_unoffered_or_legacy_features() {
    let mut t = transport(Echo::default());
    assert!(!negotiate(
        &mut t,
        ECHO_FEATURE | VIRTIO_F_VERSION_1 | (1 << 40)
    ));
    assert!(!negotiate(&mut t, ECHO_FEATURE), "VERSION_1 is required");
    assert!(negotiate(&mut t, VIRTIO_F_VERSION_1));
    // DRIVER_OK without FEATURES_OK is not taken.
    let mut t = transport(Echo::default());
    write32(
        &mut t,
        VIRTIO_MMIO_STATUS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
    );
    write32(
        &mut t,
        VIRTIO_MMIO_STATUS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK,
    );
    assert!(!t.is_active());
    assert_eq!(
        read32(&mut t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK,
        0
    );
}

#[test]
fn test_mmio_request_round_trip_with_notify_and_interrupt() {
    let mem = memory();
    let activated = Arc::new(Mutex::new(None));
    let dev = Echo {
        activated: activated.clone(),
        ..Default::default()
    };
    let mut t =
        MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::eventfd().unwrap()).unwrap();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
    activate(&mut t, ECHO_FEATURE | VIRTIO_F_VERSION_1, &[&mock], 16);
    assert_eq!(
        *activated.lock().unwrap(),
        Some(ECHO_FEATURE | VIRTIO_F_VERSION_1)
    );
    mem.write_slice(b"ping", GuestAddress(0x2_0000)).unwrap();
    mock.add_desc_chains(
        &[
            desc(0x2_0000, 4, VRING_DESC_F_NEXT_FLAG, 1),
            desc(0x3_0000, 16, VRING_DESC_F_WRITE_FLAG, 0),
        ],
        0,
    )
    .unwrap();
    // The driver's notify (no ioeventfd here) reaches the queue's eventfd.
    write32(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_eq!(t.queue_events()[0].read().unwrap(), 1);
    t.process_queue(0);
    let mut echoed = [0u8; 4];
    mem.read_slice(&mut echoed, GuestAddress(0x3_0000)).unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(mock.used().idx().load(), 1);
    let elem = mock.used().ring().ref_at(0).unwrap().load();
    assert_eq!((elem.id(), elem.len()), (0, 4));
    assert_eq!(
        read32(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING
    );
    assert_eq!(
        t.interrupt().line().as_eventfd().unwrap().read().unwrap(),
        1
    );
    write32(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    // Once live, the queue cannot be moved.
    write32(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
    write32(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8_0000);
    assert_eq!(t.queues[0].desc_table(), mock.desc_table_addr().0);
}

const VRING_DESC_F_NEXT_FLAG: u32 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
const VRING_DESC_F_WRITE_FLAG: u32 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;

#[test]
fn test_mmio_invalid_queue_size_or_rings_outside_ram_need_reset() {
    let mem = memory();
    for bad in [
        "size 12",
        "size above max",
        "rings outside RAM",
        "misaligned",
    ] {
        let mut t =
            MmioTransport::new(Box::new(Echo::default()), mem.clone(), IrqLine::None).unwrap();
        let mock = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        assert!(negotiate(&mut t, VIRTIO_F_VERSION_1));
        setup_queue(&mut t, 0, &mock, 16);
        match bad {
            "size 12" => write32(&mut t, VIRTIO_MMIO_QUEUE_NUM, 12),
            "size above max" => write32(&mut t, VIRTIO_MMIO_QUEUE_NUM, 32),
            "rings outside RAM" => {
                write32(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, 0);
                write32(&mut t, VIRTIO_MMIO_QUEUE_USED_HIGH, 1);
            }
            _ => write32(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1_0003),
        }
        let status = driver_ok(&mut t);
        assert_ne!(
            status & VIRTIO_CONFIG_S_NEEDS_RESET,
            0,
            "{bad}: {status:#x}"
        );
        assert!(!t.is_active(), "{bad}");
        assert_eq!(
            read32(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
            VIRTIO_MMIO_INT_CONFIG
        );
        // Notifications are dropped, the backend never runs.
        t.process_queue(0);
        assert_eq!(mock.used().idx().load(), 0);
    }
}

#[test]
fn test_mmio_reset_drops_queues_and_interrupts() {
    let mem = memory();
    let resets = Arc::new(Mutex::new(0));
    let dev = Echo {
        resets: resets.clone(),
        ..Default::default()
    };
    let mut t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
    activate(&mut t, VIRTIO_F_VERSION_1, &[&mock], 16);
    t.interrupt().signal_used_queue();
    write32(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    let before = *resets.lock().unwrap();
    write32(&mut t, VIRTIO_MMIO_STATUS, 0);
    assert_eq!(*resets.lock().unwrap(), before + 1);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_STATUS), 0);
    assert_eq!(read32(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert!(!t.is_active());
    assert!(!t.queues[0].ready());
    // The notify still pending from before the reset serves nothing.
    mock.add_desc_chains(&[desc(0x3_0000, 16, VRING_DESC_F_WRITE_FLAG, 0)], 0)
        .unwrap();
    t.process_queue(0);
    assert_eq!(mock.used().idx().load(), 0, "pending notify dropped");
    // Clearing a bit without a reset is not allowed.
    assert!(negotiate(&mut t, VIRTIO_F_VERSION_1));
    write32(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    assert_ne!(
        read32(&mut t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK,
        0
    );
}

#[test]
fn test_mmio_unready_queue_notify_and_backend_failure() {
    let mem = memory();
    let mut t = MmioTransport::new(Box::new(Echo::default()), mem.clone(), IrqLine::None).unwrap();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
    activate(&mut t, VIRTIO_F_VERSION_1, &[&mock], 16);
    mock.add_desc_chains(&[desc(0x3_0000, 16, VRING_DESC_F_WRITE_FLAG, 0)], 0)
        .unwrap();
    // Queue 1 was never set up: its notify does nothing.
    t.process_queue(1);
    t.process_queue(7);
    assert_eq!(mock.used().idx().load(), 0);
    // A backend that finds the driver broke the contract: NEEDS_RESET.
    let mut t = MmioTransport::new(
        Box::new(Echo {
            broken: true,
            ..Default::default()
        }),
        mem.clone(),
        IrqLine::None,
    )
    .unwrap();
    activate(&mut t, VIRTIO_F_VERSION_1, &[&mock], 16);
    t.process_queue(0);
    assert_ne!(t.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    assert!(!t.is_active());
}

#[test]
fn test_mmio_through_the_bus_as_a_mutex_device() {
    let mut bus = crate::IoBus::new();
    let t = Arc::new(Mutex::new(transport(Echo::default())));
    bus.register_mmio(
        "virtio",
        vm_device::bus::MmioAddress(0xd000_0000),
        VIRTIO_MMIO_WINDOW,
        t,
    )
    .unwrap();
    let mut b = [0u8; 4];
    bus.mmio_read(vm_device::bus::MmioAddress(0xd000_0000), &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x7472_6976);
}

/// An active Echo transport with one request served, and its mock queue.
fn served_once(
    mem: &vm_memory::GuestMemoryMmap,
) -> (
    MmioTransport,
    MockSplitQueue<'_, vm_memory::GuestMemoryMmap>,
) {
    let mut t = MmioTransport::new(
        Box::new(Echo::default()),
        mem.clone(),
        IrqLine::eventfd().unwrap(),
    )
    .unwrap();
    let mock = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    activate(&mut t, ECHO_FEATURE | VIRTIO_F_VERSION_1, &[&mock], 16);
    mem.write_slice(b"one", GuestAddress(0x2_0000)).unwrap();
    mock.add_desc_chains(
        &[
            desc(0x2_0000, 3, VRING_DESC_F_NEXT_FLAG, 1),
            desc(0x3_0000, 16, VRING_DESC_F_WRITE_FLAG, 0),
        ],
        0,
    )
    .unwrap();
    t.process_queue(0);
    assert_eq!(mock.used().idx().load(), 1);
    (t, mock)
}

#[test]
fn test_mmio_state_restored_on_a_new_transport_continues_the_queue() {
    let mem = memory();
    let (t, mock) = served_once(&mem);
    let state = t.state();
    assert!(state.active);
    assert_eq!(state.queues[0].next_avail, 1);
    assert_eq!(state.queues[0].next_used, 1);
    assert_eq!(state.interrupt_status, VIRTIO_MMIO_INT_VRING);
    let json = serde_json::to_string(&state).unwrap();
    let back: TransportState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    let activated = Arc::new(Mutex::new(None));
    let mut fresh = MmioTransport::new(
        Box::new(Echo {
            activated: activated.clone(),
            ..Default::default()
        }),
        mem.clone(),
        IrqLine::eventfd().unwrap(),
    )
    .unwrap();
    fresh.restore(&back).unwrap();
    assert!(fresh.is_active());
    assert_eq!(
        *activated.lock().unwrap(),
        Some(ECHO_FEATURE | VIRTIO_F_VERSION_1),
        "the backend is activated with the saved features"
    );
    assert_eq!(fresh.state(), state);
    // The next request, at avail index 1, is served by the new transport.
    mem.write_slice(b"two", GuestAddress(0x4_0000)).unwrap();
    mock.add_desc_chains(
        &[
            desc(0x4_0000, 3, VRING_DESC_F_NEXT_FLAG, 3),
            desc(0x5_0000, 16, VRING_DESC_F_WRITE_FLAG, 0),
        ],
        2,
    )
    .unwrap();
    fresh.process_queue(0);
    assert_eq!(mock.used().idx().load(), 2);
    let mut echoed = [0u8; 3];
    mem.read_slice(&mut echoed, GuestAddress(0x5_0000)).unwrap();
    assert_eq!(&echoed, b"two");
}

#[test]
fn test_mmio_restore_refuses_states_the_driver_could_not_have_set() {
    let mem = memory();
    let (t, _mock) = served_once(&mem);
    let good = t.state();
    let fresh = || {
        MmioTransport::new(
            Box::new(Echo::default()),
            memory(),
            IrqLine::eventfd().unwrap(),
        )
        .unwrap()
    };
    type Bend = Box<dyn Fn(&mut TransportState)>;
    let cases: Vec<(&str, Bend)> = vec![
        ("device_type", Box::new(|s| s.device_type = 1)),
        ("queues", Box::new(|s| s.queues.truncate(1))),
        ("status", Box::new(|s| s.status |= 0x100)),
        (
            "driver_features",
            Box::new(|s| s.driver_features |= 1 << 40),
        ),
        (
            "active",
            Box::new(|s| s.status &= !VIRTIO_CONFIG_S_DRIVER_OK),
        ),
        ("queue 0", Box::new(|s| s.queues[0].size = 3)),
        ("queue 0", Box::new(|s| s.queues[0].max_size = 32)),
        ("queue 0", Box::new(|s| s.queues[0].used_ring = 1 << 40)),
        ("interrupt_status", Box::new(|s| s.interrupt_status = 4)),
    ];
    for (what, bend) in cases {
        let mut bad = good.clone();
        bend(&mut bad);
        let mut t = fresh();
        let e = t.restore(&bad).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert!(
            !t.is_active(),
            "{what}: refused state left the transport alone"
        );
    }
}

#[test]
fn test_mmio_dirty_tracking_records_writable_buffers_and_used_rings() {
    let mem = memory();
    let dirty = Arc::new(crate::virtio::DirtyPages::new(&mem));
    let mut t = MmioTransport::new(
        Box::new(Echo::default()),
        mem.clone(),
        IrqLine::eventfd().unwrap(),
    )
    .unwrap();
    t.track_dirty_pages(dirty.clone());
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
    activate(&mut t, ECHO_FEATURE | VIRTIO_F_VERSION_1, &[&mock], 16);
    mock.add_desc_chains(
        &[
            desc(0x2_0000, 3, VRING_DESC_F_NEXT_FLAG, 1),
            desc(0x3_0ff0, 0x20, VRING_DESC_F_WRITE_FLAG, 0),
        ],
        0,
    )
    .unwrap();
    t.process_queue(0);
    let words = dirty.take(0);
    let page = |p: u64| words[(p / 64) as usize] & (1 << (p % 64)) != 0;
    assert!(page(0x30) && page(0x31), "the writable buffer's two pages");
    assert!(
        !page(0x20),
        "the readable buffer is not the device's to write"
    );
    let rings = t.device_written_rings();
    assert_eq!(rings, [(mock.used_addr(), 6 + 8 * 16)]);
}
