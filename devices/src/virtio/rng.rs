//! virtio-rng, the entropy device (virtio 1.2 section 5.4): one request
//! queue whose device-writable buffers the device fills with random bytes
//! from the host kernel's `getrandom(2)` (the pool `/dev/urandom` reads, no
//! file to open and so nothing for a seccomp filter beyond the syscall).
//!
//! The device owns only the request handling; the transport
//! ([`super::MmioTransport`]) owns the queue and the negotiation. No feature
//! bits beyond `VIRTIO_F_VERSION_1`, no configuration space.
//!
//! What the guest controls, and how it is checked:
//! - Readable descriptors in a request are ignored (the driver must not
//!   send any, 5.4.6.1); a chain with no writable byte is returned with used
//!   length 0.
//! - A chain whose writable buffers are not all in guest RAM is returned
//!   unfilled (used length 0) and counted, and the device keeps serving.
//! - A request is filled with at most [`RNG_REQUEST_MAX`] bytes. A chain can
//!   describe up to 4 GiB; generating that much would keep the device
//!   thread (which serves every virtio device in turn) busy for seconds.
//!   The used length tells the driver how much it got, and the spec lets
//!   the device fill less than offered (5.4.6: "the device MAY ... fewer").

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;

use super::device::{DeviceError, QueueContext, VirtioDevice};

/// The request queue's maximum size.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// The most bytes one request gets (see the module docs).
pub const RNG_REQUEST_MAX: usize = 64 << 10;
/// The request queue's index.
const REQUESTQ: usize = 0;

/// The device's counters, shared with the VMM (relaxed atomics: written by
/// the device thread, readable from any thread at any time).
#[derive(Debug, Default)]
pub struct RngMetrics {
    requests: AtomicU64,
    bytes: AtomicU64,
    invalid_chains: AtomicU64,
    host_errors: AtomicU64,
}

impl RngMetrics {
    /// Requests returned to the driver (filled or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Random bytes written into guest buffers.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Requests returned empty because they had no writable byte or a
    /// writable buffer outside guest RAM.
    pub fn invalid_chains(&self) -> u64 {
        self.invalid_chains.load(Ordering::Relaxed)
    }

    /// Requests returned empty because `getrandom(2)` failed.
    pub fn host_errors(&self) -> u64 {
        self.host_errors.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The virtio entropy device.
#[derive(Debug)]
pub struct VirtioRng {
    metrics: Arc<RngMetrics>,
    /// Random bytes are generated here, then copied into the guest's
    /// buffers (getrandom needs one contiguous host buffer).
    scratch: Vec<u8>,
}

impl Default for VirtioRng {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtioRng {
    /// A new entropy device.
    pub fn new() -> Self {
        VirtioRng {
            metrics: Arc::default(),
            scratch: vec![0; RNG_REQUEST_MAX],
        }
    }

    /// The device's counters (keep a clone before handing the device to
    /// its transport).
    pub fn metrics(&self) -> Arc<RngMetrics> {
        self.metrics.clone()
    }

    /// Fills one request; returns the used length.
    fn fill(
        &mut self,
        chain: DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> io::Result<u32> {
        let Ok(mut writer) = chain.writer(mem) else {
            // A writable buffer is not in guest RAM (or the lengths
            // overflow): nothing is written.
            RngMetrics::add(&self.metrics.invalid_chains, 1);
            return Ok(0);
        };
        let n = writer.available_bytes().min(RNG_REQUEST_MAX);
        if n == 0 {
            RngMetrics::add(&self.metrics.invalid_chains, 1);
            return Ok(0);
        }
        let random = self.scratch.get_mut(..n).unwrap_or_default();
        if let Err(e) = fill_from_host(random) {
            RngMetrics::add(&self.metrics.host_errors, 1);
            return Err(e);
        }
        // The buffers were checked to be in RAM and to hold `n` bytes, so
        // this cannot fall short; if it did, the used length says so.
        let _ = writer.write_all(random);
        let written = writer.bytes_written();
        RngMetrics::add(&self.metrics.bytes, written as u64);
        Ok(u32::try_from(written).unwrap_or(0))
    }
}

/// Fills `buf` from the kernel's random pool, retrying after a signal and
/// after a short read (large reads may return early).
fn fill_from_host(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        // SAFETY: the kernel writes at most `rest.len()` bytes at
        // `rest.as_mut_ptr()`, a live, exclusively borrowed buffer of that
        // length; flags 0 only selects the urandom pool (blocking until it
        // is initialised, which on a running host it is).
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(0) => return Err(io::Error::other("getrandom returned no bytes")),
            Ok(n) => filled += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

impl VirtioDevice for VirtioRng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[RNG_QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    /// Serves every available request, then interrupts once.
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if index != REQUESTQ {
            return Ok(());
        }
        let mut used = false;
        let mut host_error = None;
        while let Some(chain) = ctx.pop(REQUESTQ) {
            let head = chain.head_index();
            let len = match self.fill(chain, ctx.mem) {
                Ok(len) => len,
                Err(e) => {
                    // Never hand out zeros as entropy: return the request
                    // empty and stop; the next notify retries.
                    host_error = Some(e);
                    0
                }
            };
            ctx.add_used(REQUESTQ, head, len)?;
            RngMetrics::add(&self.metrics.requests, 1);
            used = true;
            if host_error.is_some() {
                break;
            }
        }
        if used {
            ctx.signal_used(REQUESTQ)?;
        }
        match host_error {
            Some(e) => Err(DeviceError::Host(e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
    use virtio_bindings::virtio_mmio::VIRTIO_MMIO_DEVICE_ID;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::virtio::testing::*;
    use crate::virtio::{MmioTransport, VIRTIO_F_VERSION_1};
    use crate::IrqLine;

    const W: u32 = VRING_DESC_F_WRITE;
    const N: u32 = VRING_DESC_F_NEXT;

    fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
    }

    /// An active rng transport over `mem` with a queue of `size` at
    /// 0x1_0000.
    ///
    /// The mock is made 4 times larger than the queue: virtio-queue 0.18's
    /// `MockSplitQueue` puts its used ring `len` bytes (not `2 * len + 6`)
    /// after the start of the available ring, so with equal sizes the used
    /// ring overlaps available entries `len / 2` and up, and more than
    /// `len / 2` chains corrupt each other. The device only uses the first
    /// `size` entries of each ring.
    fn active(
        mem: &GuestMemoryMmap,
        size: u16,
    ) -> (
        MmioTransport,
        MockSplitQueue<'_, GuestMemoryMmap>,
        Arc<RngMetrics>,
    ) {
        let rng = VirtioRng::new();
        let metrics = rng.metrics();
        let mut t = MmioTransport::new(Box::new(rng), mem.clone(), IrqLine::None).unwrap();
        let mock = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 4 * size);
        activate(&mut t, VIRTIO_F_VERSION_1, &[&mock], u32::from(size));
        (t, mock, metrics)
    }

    fn used(mock: &MockSplitQueue<'_, GuestMemoryMmap>, i: usize) -> (u32, u32) {
        let e = mock.used().ring().ref_at(i).unwrap().load();
        (e.id(), e.len())
    }

    fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn test_rng_identity_and_features() {
        let mut t =
            MmioTransport::new(Box::new(VirtioRng::new()), memory(), IrqLine::None).unwrap();
        assert_eq!(read32(&mut t, VIRTIO_MMIO_DEVICE_ID), 4);
        assert_eq!(device_features(&mut t), VIRTIO_F_VERSION_1);
        assert!(VirtioRng::new().config_space().is_empty());
    }

    #[test]
    fn test_rng_fills_buffers_with_distinct_random_bytes() {
        let mem = memory();
        let (mut t, mock, metrics) = active(&mem, 16);
        // Two requests; the second has a readable header the device skips
        // and two writable buffers.
        mock.add_desc_chains(
            &[
                desc(0x2_0000, 64, W, 0),
                desc(0x3_0000, 16, N, 2),
                desc(0x4_0000, 40, W | N, 3),
                desc(0x5_0000, 24, W, 0),
            ],
            0,
        )
        .unwrap();
        t.process_queue(0);
        assert_eq!(mock.used().idx().load(), 2);
        assert_eq!(used(&mock, 0), (0, 64));
        assert_eq!(used(&mock, 1), (1, 64));
        let a = read(&mem, 0x2_0000, 64);
        let b = [read(&mem, 0x4_0000, 40), read(&mem, 0x5_0000, 24)].concat();
        assert!(a.iter().any(|&x| x != 0) && b.iter().any(|&x| x != 0));
        assert_ne!(a, b, "two requests got the same bytes");
        assert_eq!(read(&mem, 0x3_0000, 16), vec![0; 16], "readable untouched");
        assert_eq!((metrics.requests(), metrics.bytes()), (2, 128));
        assert_eq!(t.interrupt().status(), 1, "used-buffer interrupt");
    }

    #[test]
    fn test_rng_request_is_bounded() {
        let mem = memory();
        let (mut t, mock, metrics) = active(&mem, 16);
        // 96 KiB offered in two 48 KiB buffers: 64 KiB are filled.
        let half = 48 << 10;
        mock.add_desc_chains(
            &[desc(0x2_0000, half, W | N, 1), desc(0x4_0000, half, W, 0)],
            0,
        )
        .unwrap();
        t.process_queue(0);
        assert_eq!(used(&mock, 0), (0, RNG_REQUEST_MAX as u32));
        let tail_start = 0x4_0000 + (RNG_REQUEST_MAX as u64 - u64::from(half));
        let tail = read(&mem, tail_start, (2 * half as usize) - RNG_REQUEST_MAX);
        assert!(tail.iter().all(|&x| x == 0), "past the bound untouched");
        assert!(read(&mem, tail_start - 64, 64).iter().any(|&x| x != 0));
        assert_eq!(metrics.bytes(), RNG_REQUEST_MAX as u64);
    }

    #[test]
    fn test_rng_readable_only_or_outside_ram_chains_get_len_0() {
        let mem = memory();
        let (mut t, mock, metrics) = active(&mem, 16);
        mock.add_desc_chains(
            &[
                // Only readable.
                desc(0x2_0000, 32, 0, 0),
                // Writable, but the second buffer is past the 1 MiB of RAM.
                desc(0x3_0000, 32, W | N, 2),
                desc(0x10_0000 - 8, 32, W, 0),
                // Far outside RAM, and a length that wraps the address space.
                desc(u64::MAX - 4, 64, W, 0),
                // A good one after them.
                desc(0x4_0000, 8, W, 0),
            ],
            0,
        )
        .unwrap();
        t.process_queue(0);
        assert_eq!(mock.used().idx().load(), 4);
        assert_eq!(used(&mock, 0), (0, 0));
        assert_eq!(used(&mock, 1), (1, 0));
        assert_eq!(used(&mock, 2), (3, 0));
        assert_eq!(used(&mock, 3), (4, 8));
        assert_eq!(read(&mem, 0x3_0000, 32), vec![0; 32]);
        assert_eq!(metrics.invalid_chains(), 3);
        assert_eq!(t.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
        assert!(t.is_active());
    }

    #[test]
    fn test_rng_full_queue_served_in_one_notify() {
        let mem = memory();
        let size = RNG_QUEUE_SIZE;
        let (mut t, mock, metrics) = active(&mem, size);
        let chains: Vec<_> = (0..u64::from(size))
            .map(|i| desc(0x2_0000 + i * 0x100, 32, W, 0))
            .collect();
        mock.add_desc_chains(&chains, 0).unwrap();
        t.process_queue(0);
        assert_eq!(mock.used().idx().load(), size);
        for i in 0..usize::from(size) {
            assert_eq!(used(&mock, i), (i as u32, 32));
        }
        assert_eq!(metrics.requests(), u64::from(size));
        // Nothing left: another notify adds nothing.
        t.process_queue(0);
        assert_eq!(mock.used().idx().load(), size);
    }

    #[test]
    fn test_fill_from_host_fills_large_buffers() {
        let mut buf = vec![0u8; 1 << 20];
        fill_from_host(&mut buf).unwrap();
        // 1 MiB of zeros would be a broken pool, not chance.
        assert!(buf.chunks(4096).all(|c| c.iter().any(|&x| x != 0)));
        fill_from_host(&mut []).unwrap();
    }
}
