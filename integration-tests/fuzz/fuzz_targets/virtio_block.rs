//! virtio-blk's request handling as a hostile driver reaches it: a block
//! device on a temporary 64-sector image behind the MMIO transport, with
//! fuzzer-chosen features, queue size, descriptor tables (addresses near the
//! header, data and status areas, across the boundary of two RAM regions or
//! outside RAM; any length, flags, `next`, chain loops), available-ring
//! entries and indices, request headers (every request type, any sector),
//! discard/write-zeroes segments, notifications of any queue, device resets
//! and re-arm wake-ups.
//!
//! Checked beyond "no panic": the used index never runs ahead of what was
//! made available; every used id is a descriptor index; no used length
//! exceeds the data bound + 1; a re-armed device always makes progress (no self-wake-up loop);
//! nothing is served while the device waits for a reset; the image never
//! changes size, and a read-only image never changes at all.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_devices::virtio::block::{BlockConfig, QUEUE_SIZE, REQUEST_DATA_MAX};
use vmm_devices::virtio::MmioTransport;
use vmm_devices::IrqLine;

/// Guest RAM: two adjacent regions, so buffers can straddle them.
const RAM_LO: u64 = 0x10_0000;
const RAM_HI: u64 = 0x1_0000;
/// Where the rings go (descriptor table, available ring, used ring).
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x3000;
const USED: u64 = 0x4000;
/// Header slots, status bytes, data buffers.
const HDR: u64 = 0x8000;
const STATUS: u64 = 0x9000;
const DATA: u64 = 0x2_0000;
/// Image size in sectors.
const SECTORS: u64 = 64;
/// Operations per input.
const MAX_OPS: usize = 64;

/// A buffer address, mostly somewhere meaningful.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Addr {
    Header(u8),
    Status(u8),
    Data(u16),
    /// Around the end of the first region (straddling into the second).
    RegionEdge(i16),
    /// Around the end of RAM.
    RamEnd(i16),
    Raw(u64),
}

impl Addr {
    fn resolve(self) -> u64 {
        match self {
            Addr::Header(i) => HDR + 16 * u64::from(i % 64),
            Addr::Status(i) => STATUS + u64::from(i),
            Addr::Data(o) => DATA + u64::from(o) * 8,
            Addr::RegionEdge(d) => RAM_LO.wrapping_add_signed(i64::from(d)),
            Addr::RamEnd(d) => (RAM_LO + RAM_HI).wrapping_add_signed(i64::from(d)),
            // Never the rings: data the device writes there would change
            // what the checks read back, and a driver can only hurt itself.
            Addr::Raw(a) if (DESC..USED + 0x1000).contains(&a) => DATA + (a - DESC),
            Addr::Raw(a) => a,
        }
    }
}

/// A buffer length, mostly sector-sized or small.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Len {
    Sectors(u8),
    Small(u8),
    Raw(u32),
}

impl Len {
    fn resolve(self) -> u32 {
        match self {
            Len::Sectors(n) => 512 * u32::from(n % 80),
            Len::Small(n) => u32::from(n),
            Len::Raw(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
struct Desc {
    addr: Addr,
    len: Len,
    /// NEXT (1), WRITE (2), INDIRECT (4), and whatever else.
    flags: u16,
    next: u16,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum ReqType {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    Raw(u32),
}

impl ReqType {
    fn value(self) -> u32 {
        match self {
            ReqType::In => 0,
            ReqType::Out => 1,
            ReqType::Flush => 4,
            ReqType::GetId => 8,
            ReqType::Discard => 11,
            ReqType::WriteZeroes => 13,
            ReqType::Raw(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Sector {
    Near(u8),
    Raw(u64),
}

/// A discard/write-zeroes segment written into the data area.
#[derive(Debug, Clone, Copy, Arbitrary)]
struct Range {
    at: u16,
    sector: Sector,
    sectors: u32,
    flags: u8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Writes header slot `slot`.
    Header {
        slot: u8,
        kind: ReqType,
        sector: Sector,
    },
    /// Writes descriptor `index`.
    Desc { index: u16, desc: Desc },
    /// Writes a well-formed chain of `count` descriptors starting at
    /// `start` (NEXT links filled in), from `descs`.
    Chain { start: u16, descs: Vec<Desc> },
    Range(Range),
    /// Publishes `head` in the available ring.
    Publish(u16),
    /// Sets the available index to anything.
    AvailIdx(u16),
    /// A QueueNotify of `queue` (0 is the request queue).
    Notify(u8),
    /// Resets and re-activates the device.
    Reset,
    /// Reads the configuration space.
    Config(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    read_only: bool,
    /// ANDed with what the device offers.
    features: u64,
    /// Queue size 2^(n % 9).
    queue_log2: u8,
    ops: Vec<Op>,
}

fn write32(t: &mut MmioTransport, reg: u32, v: u32) {
    t.write(u64::from(reg), &v.to_le_bytes());
}

fn read32(t: &mut MmioTransport, reg: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(reg), &mut b);
    u32::from_le_bytes(b)
}

/// The initialisation of virtio 1.2 section 3.1.1; returns whether the
/// device is active.
fn activate(t: &mut MmioTransport, features: u64, size: u16) -> bool {
    write32(t, VIRTIO_MMIO_STATUS, 0);
    write32(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    write32(t, VIRTIO_MMIO_STATUS, s);
    let mut offered = 0u64;
    for sel in 0..2 {
        write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
        offered |= u64::from(read32(t, VIRTIO_MMIO_DEVICE_FEATURES)) << (32 * sel);
    }
    let accepted = offered & (features | (1 << 32));
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES, accepted as u32);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write32(t, VIRTIO_MMIO_DRIVER_FEATURES, (accepted >> 32) as u32);
    write32(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_ne!(
        read32(t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK,
        0,
        "offered features refused"
    );
    write32(t, VIRTIO_MMIO_QUEUE_SEL, 0);
    write32(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(size));
    for (low, addr) in [
        (VIRTIO_MMIO_QUEUE_DESC_LOW, DESC),
        (VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL),
        (VIRTIO_MMIO_QUEUE_USED_LOW, USED),
    ] {
        write32(t, low, addr as u32);
        write32(t, low + 4, 0);
    }
    write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
    write32(
        t,
        VIRTIO_MMIO_STATUS,
        s | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK,
    );
    t.is_active()
}

/// The image: sector `i` filled with byte `i + 1`.
fn image() -> Vec<u8> {
    (0..SECTORS)
        .flat_map(|i| std::iter::repeat_n((i + 1) as u8, 512))
        .collect()
}

struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    t: MmioTransport,
    size: u16,
    avail_idx: u16,
    /// Used entries seen so far.
    used_seen: u16,
    features: u64,
    counters: std::sync::Arc<vmm_devices::virtio::block::BlockCounters>,
}

impl Driver<'_> {
    fn desc(&self, index: u16, d: Desc) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&d.addr.resolve().to_le_bytes());
        b[8..12].copy_from_slice(&d.len.resolve().to_le_bytes());
        b[12..14].copy_from_slice(&d.flags.to_le_bytes());
        b[14..16].copy_from_slice(&d.next.to_le_bytes());
        let at = DESC + 16 * u64::from(index % self.size);
        self.mem.write_slice(&b, GuestAddress(at)).unwrap();
    }

    fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem.write_obj(idx, GuestAddress(AVAIL + 2)).unwrap();
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    /// Serves a notification, then every re-arm wake-up, checking each
    /// wake-up made progress.
    fn notify(&mut self, queue: u8) {
        let needs_reset = self.t.status() & VIRTIO_CONFIG_S_NEEDS_RESET != 0;
        let before = self.used_idx();
        write32(&mut self.t, VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(queue));
        self.t.process_queue(usize::from(queue));
        let mut rearms = self.counters.rearms();
        for _ in 0..=usize::from(QUEUE_SIZE) + 1 {
            let fds = self.t.host_fds();
            let used = self.used_idx();
            self.t.process_host_fd(fds[0]);
            let now = self.counters.rearms();
            if now == rearms {
                break;
            }
            assert_ne!(self.used_idx(), used, "re-armed without progress");
            rearms = now;
        }
        if needs_reset {
            assert_eq!(self.used_idx(), before, "served while waiting for a reset");
        }
        self.check_used();
    }

    fn check_used(&mut self) {
        let idx = self.used_idx();
        let new = idx.wrapping_sub(self.used_seen);
        let published = self.avail_idx.wrapping_sub(self.used_seen);
        assert!(new <= published, "used ran ahead: {new} > {published}");
        for k in 0..new {
            let at = USED + 4 + 8 * u64::from(self.used_seen.wrapping_add(k) % self.size);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            assert!(id < u32::from(self.size), "used id {id}");
            assert!(u64::from(len) <= REQUEST_DATA_MAX + 1, "used len {len}");
        }
        self.used_seen = idx;
    }
}

fn run(input: Input) {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), RAM_LO as usize),
        (GuestAddress(RAM_LO), RAM_HI as usize),
    ])
    .unwrap();
    let path = std::env::temp_dir().join(format!("vmm-fuzz-blk-{}.img", std::process::id()));
    let original = image();
    std::fs::write(&path, &original).unwrap();
    let dev = BlockConfig::new(&path)
        .read_only(input.read_only)
        .serial("fuzz")
        .open()
        .unwrap();
    // A descriptor of our own for the checks at the end; the device holds
    // its own, so the name is not needed any more.
    let mut check = std::fs::File::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let counters = dev.counters();
    let t = MmioTransport::new(Box::new(dev), mem.clone(), IrqLine::None).unwrap();
    let size = 1u16 << (input.queue_log2 % 9);
    let mut d = Driver {
        mem: &mem,
        t,
        size,
        avail_idx: 0,
        used_seen: 0,
        features: input.features,
        counters,
    };
    assert!(activate(&mut d.t, d.features, size), "a valid set-up");
    let read_only = input.read_only;
    for op in input.ops.into_iter().take(MAX_OPS) {
        vmm_fuzz::trace(&op);
        match op {
            Op::Header { slot, kind, sector } => {
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&kind.value().to_le_bytes());
                let s = match sector {
                    Sector::Near(n) => u64::from(n) % (SECTORS + 8),
                    Sector::Raw(s) => s,
                };
                h[8..16].copy_from_slice(&s.to_le_bytes());
                let at = HDR + 16 * u64::from(slot % 64);
                mem.write_slice(&h, GuestAddress(at)).unwrap();
            }
            Op::Desc { index, desc } => d.desc(index, desc),
            Op::Chain { start, descs } => {
                let n = descs.len().min(usize::from(size));
                for (k, mut desc) in descs.into_iter().take(n).enumerate() {
                    let i = start.wrapping_add(k as u16) % size;
                    desc.flags &= !1;
                    if k + 1 < n {
                        desc.flags |= 1;
                        desc.next = (i + 1) % size;
                    }
                    d.desc(i, desc);
                }
            }
            Op::Range(r) => {
                let mut b = [0u8; 16];
                let s = match r.sector {
                    Sector::Near(n) => u64::from(n) % (SECTORS + 8),
                    Sector::Raw(s) => s,
                };
                b[0..8].copy_from_slice(&s.to_le_bytes());
                b[8..12].copy_from_slice(&(r.sectors % 128).to_le_bytes());
                b[12..16].copy_from_slice(&u32::from(r.flags % 4).to_le_bytes());
                let at = DATA + 16 * u64::from(r.at % 256);
                mem.write_slice(&b, GuestAddress(at)).unwrap();
            }
            Op::Publish(head) => {
                let slot = u64::from(d.avail_idx % size);
                mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
                    .unwrap();
                let next = d.avail_idx.wrapping_add(1);
                d.set_avail_idx(next);
            }
            Op::AvailIdx(idx) => d.set_avail_idx(idx),
            Op::Notify(q) => d.notify(q % 4),
            Op::Reset => {
                mem.write_slice(&[0u8; 0x1000], GuestAddress(USED)).unwrap();
                mem.write_slice(&[0u8; 0x1000], GuestAddress(AVAIL))
                    .unwrap();
                d.avail_idx = 0;
                d.used_seen = 0;
                assert!(activate(&mut d.t, d.features, size), "re-activation");
            }
            Op::Config(off) => {
                let mut b = [0u8; 8];
                d.t.read(0x100 + u64::from(off % 72), &mut b);
            }
        }
    }
    d.t.shutdown();
    drop(d);
    let mut now = Vec::new();
    std::io::Read::read_to_end(&mut check, &mut now).unwrap();
    assert_eq!(now.len(), original.len(), "the image changed size");
    if read_only {
        assert!(now == original, "a read-only image changed");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = Input::arbitrary(&mut u) {
        run(input);
    }
});
