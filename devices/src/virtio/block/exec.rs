//! Serving one well-formed request against the image: the checks that
//! depend on its type (lengths, range, read-only, negotiated features),
//! then the host call. Nothing touches a guest buffer or the image before
//! every check has passed.

use virtio_bindings::virtio_blk::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use super::counters::Counter;
use super::disk::{SECTOR_SIZE, SERIAL_MAX};
use super::io::{PUNCH_HOLE, ZERO_RANGE};
use super::request::{Body, Segment};
use super::{VirtioBlock, RANGE_SEGMENTS_MAX, REQUEST_DATA_MAX, TURN_BYTE_BUDGET};

/// Bytes of one `struct virtio_blk_discard_write_zeroes`.
const RANGE_LEN: usize = 16;
/// What a request without bulk data costs from the turn's budget.
const SMALL_COST: u64 = 512;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The status byte.
    pub status: u8,
    /// Data bytes written into guest buffers (the used length less the
    /// status byte).
    pub written: u32,
    /// Its share of the turn's budget.
    pub cost: u64,
}

impl Outcome {
    fn ok(written: u32, cost: u64) -> Self {
        Outcome {
            status: VIRTIO_BLK_S_OK as u8,
            written,
            cost: cost.max(SMALL_COST),
        }
    }

    fn ioerr() -> Self {
        Outcome {
            status: VIRTIO_BLK_S_IOERR as u8,
            written: 0,
            cost: SMALL_COST,
        }
    }

    fn unsupp() -> Self {
        Outcome {
            status: VIRTIO_BLK_S_UNSUPP as u8,
            written: 0,
            cost: SMALL_COST,
        }
    }
}

/// Discard or write-zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeOp {
    Discard,
    WriteZeroes,
}

/// The guest memory behind `segs`, in order (they were checked to be in
/// RAM when the chain was parsed).
fn slices<'m>(mem: &'m GuestMemoryMmap, segs: &[Segment]) -> Option<Vec<VolatileSlice<'m>>> {
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        for slice in GuestMemoryBackend::get_slices(mem, s.addr, s.len as usize) {
            out.push(slice.ok()?);
        }
    }
    Some(out)
}

/// Copies `bytes` into `segs` in order; returns how many went in.
fn scatter(mem: &GuestMemoryMmap, segs: &[Segment], bytes: &[u8]) -> usize {
    let mut done = 0;
    for s in segs {
        let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) else {
            break;
        };
        let n = rest.len().min(s.len as usize);
        if mem
            .write_slice(rest.get(..n).unwrap_or_default(), s.addr)
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

/// Fills `buf` from `segs` in order; false if they do not hold it all.
fn gather(mem: &GuestMemoryMmap, segs: &[Segment], buf: &mut [u8]) -> bool {
    let mut done = 0;
    for s in segs {
        let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) else {
            break;
        };
        let n = rest.len().min(s.len as usize);
        let Some(dst) = rest.get_mut(..n) else {
            return false;
        };
        if mem.read_slice(dst, s.addr).is_err() {
            return false;
        }
        done += n;
    }
    done == buf.len()
}

impl VirtioBlock {
    /// Serves `body`.
    pub(super) fn execute(&mut self, body: &Body, mem: &GuestMemoryMmap) -> Outcome {
        let t = body.header.request_type;
        let outcome = match t {
            VIRTIO_BLK_T_IN => self.read(body, mem),
            VIRTIO_BLK_T_OUT => self.write(body, mem),
            VIRTIO_BLK_T_FLUSH => self.flush_request(),
            VIRTIO_BLK_T_GET_ID => self.get_id(body, mem),
            VIRTIO_BLK_T_DISCARD if self.accepted(VIRTIO_BLK_F_DISCARD) => {
                self.ranges(RangeOp::Discard, body, mem)
            }
            VIRTIO_BLK_T_WRITE_ZEROES if self.accepted(VIRTIO_BLK_F_WRITE_ZEROES) => {
                self.ranges(RangeOp::WriteZeroes, body, mem)
            }
            _ => {
                log::debug!("virtio-blk: request type {t:#x} unsupported");
                Outcome::unsupp()
            }
        };
        match u32::from(outcome.status) {
            VIRTIO_BLK_S_IOERR => self.counters.add(Counter::IoErrors, 1),
            VIRTIO_BLK_S_UNSUPP => self.counters.add(Counter::Unsupported, 1),
            _ => {}
        }
        outcome
    }

    /// Whether the driver accepted feature bit `bit`.
    fn accepted(&self, bit: u32) -> bool {
        self.accepted & (1u64 << bit) != 0
    }

    /// Logs a request the driver got wrong (debug: the guest controls how
    /// often) and answers IOERR.
    fn refuse(&self, why: &str) -> Outcome {
        log::debug!("virtio-blk {}: {why}: IOERR", self.disk.path().display());
        Outcome::ioerr()
    }

    /// A host call failed: IOERR, logged once as a warning.
    fn host_error(&self, what: &str, e: &std::io::Error) -> Outcome {
        if self.counters.host_errors() == 0 {
            log::warn!("virtio-blk {}: {what}: {e}", self.disk.path().display());
        } else {
            log::debug!("virtio-blk {}: {what}: {e}", self.disk.path().display());
        }
        self.counters.add(Counter::HostErrors, 1);
        Outcome::ioerr()
    }

    /// The byte offset of `len` data bytes at `sector`, if the request
    /// is whole sectors, bounded and inside the disk.
    fn data_range(&self, sector: u64, len: u64) -> Result<u64, String> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(format!("{len} data bytes is not whole sectors"));
        }
        if len > REQUEST_DATA_MAX {
            return Err(format!(
                "{len} data bytes is more than {REQUEST_DATA_MAX} per request"
            ));
        }
        let end = sector.checked_add(len / SECTOR_SIZE);
        if end.is_none_or(|e| e > self.disk.capacity()) {
            return Err(format!(
                "sectors [{sector}, +{}) are beyond the capacity {}",
                len / SECTOR_SIZE,
                self.disk.capacity()
            ));
        }
        // sector <= capacity, and capacity * 512 is the image's size.
        Ok(sector * SECTOR_SIZE)
    }

    fn read(&mut self, body: &Body, mem: &GuestMemoryMmap) -> Outcome {
        if !body.readable.is_empty() {
            return self.refuse("a read with device-readable data");
        }
        let len = Body::len(&body.writable);
        let offset = match self.data_range(body.header.sector, len) {
            Ok(o) => o,
            Err(why) => return self.refuse(&why),
        };
        let Some(slices) = slices(mem, &body.writable) else {
            return self.refuse("a read buffer is not in guest RAM");
        };
        if let Err(e) = self.disk.read(offset, &slices) {
            return self.host_error("reading", &e);
        }
        self.counters.add(Counter::Reads, 1);
        self.counters.add(Counter::BytesRead, len);
        // len <= REQUEST_DATA_MAX, far below u32::MAX.
        Outcome::ok(u32::try_from(len).unwrap_or(0), len)
    }

    fn write(&mut self, body: &Body, mem: &GuestMemoryMmap) -> Outcome {
        if self.disk.read_only() {
            return self.refuse("a write to a read-only disk");
        }
        if !body.writable.is_empty() {
            return self.refuse("a write with device-writable data");
        }
        let len = Body::len(&body.readable);
        let offset = match self.data_range(body.header.sector, len) {
            Ok(o) => o,
            Err(why) => return self.refuse(&why),
        };
        let Some(slices) = slices(mem, &body.readable) else {
            return self.refuse("a write buffer is not in guest RAM");
        };
        if let Err(e) = self.disk.write(offset, &slices) {
            return self.host_error("writing", &e);
        }
        if let Err(e) = self.write_through() {
            return self.host_error("syncing a write-through write", &e);
        }
        self.counters.add(Counter::Writes, 1);
        self.counters.add(Counter::BytesWritten, len);
        Outcome::ok(0, len)
    }

    /// Without VIRTIO_BLK_F_FLUSH accepted, a completed write must already
    /// be stable (section 5.2.6.3, case 1).
    fn write_through(&mut self) -> std::io::Result<()> {
        if self.accepted(VIRTIO_BLK_F_FLUSH) {
            Ok(())
        } else {
            self.flush()
        }
    }

    fn flush_request(&mut self) -> Outcome {
        // The sector and any data are ignored (the driver must send 0 and
        // none, section 5.2.6.1). A flush blocks for the storage: it ends
        // the turn.
        if let Err(e) = self.flush() {
            return self.host_error("fdatasync", &e);
        }
        self.counters.add(Counter::Flushes, 1);
        Outcome::ok(0, TURN_BYTE_BUDGET)
    }

    fn get_id(&mut self, body: &Body, mem: &GuestMemoryMmap) -> Outcome {
        if !body.readable.is_empty() {
            return self.refuse("GET_ID with device-readable data");
        }
        let room = Body::len(&body.writable);
        if room == 0 {
            return self.refuse("GET_ID without a buffer");
        }
        // NUL-padded to 20 bytes; a 20-byte serial has no NUL.
        let mut id = [0u8; SERIAL_MAX];
        if let Some(dst) = id.get_mut(..self.serial.len()) {
            dst.copy_from_slice(&self.serial);
        }
        let n = usize::try_from(room).map_or(SERIAL_MAX, |r| r.min(SERIAL_MAX));
        let written = scatter(mem, &body.writable, id.get(..n).unwrap_or_default());
        self.counters.add(Counter::GetIds, 1);
        Outcome::ok(written as u32, 0)
    }

    fn ranges(&mut self, op: RangeOp, body: &Body, mem: &GuestMemoryMmap) -> Outcome {
        if self.disk.read_only() {
            return self.refuse("a discard/write-zeroes on a read-only disk");
        }
        if !body.writable.is_empty() {
            return self.refuse("a discard/write-zeroes with device-writable data");
        }
        let (max_sectors, max_seg) = match op {
            RangeOp::Discard => (self.config.max_discard_sectors, self.config.max_discard_seg),
            RangeOp::WriteZeroes => (
                self.config.max_write_zeroes_sectors,
                self.config.max_write_zeroes_seg,
            ),
        };
        let len = Body::len(&body.readable);
        let count = len / RANGE_LEN as u64;
        if !len.is_multiple_of(RANGE_LEN as u64) || count == 0 || count > u64::from(max_seg) {
            return self.refuse(&format!(
                "{len} bytes of ranges (1 to {max_seg} of 16 bytes expected)"
            ));
        }
        let mut raw = [0u8; RANGE_LEN * RANGE_SEGMENTS_MAX];
        let Some(raw) = raw.get_mut(..len as usize) else {
            return self.refuse("too many ranges");
        };
        if !gather(mem, &body.readable, raw) {
            return self.refuse("the ranges are not in guest RAM");
        }
        let mut ranges = Vec::with_capacity(count as usize);
        for r in raw.chunks_exact(RANGE_LEN) {
            let mut sector = [0u8; 8];
            let mut sectors = [0u8; 4];
            let mut flags = [0u8; 4];
            sector.copy_from_slice(r.get(0..8).unwrap_or(&[0; 8]));
            sectors.copy_from_slice(r.get(8..12).unwrap_or(&[0; 4]));
            flags.copy_from_slice(r.get(12..16).unwrap_or(&[0; 4]));
            let (sector, sectors, flags) = (
                u64::from_le_bytes(sector),
                u32::from_le_bytes(sectors),
                u32::from_le_bytes(flags),
            );
            let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
            // Unknown flags, and unmap on a discard: UNSUPP (5.2.6.3).
            if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || (op == RangeOp::Discard && unmap)
            {
                log::debug!("virtio-blk: range flags {flags:#x} unsupported");
                return Outcome::unsupp();
            }
            ranges.push((sector, sectors, unmap));
        }
        for &(sector, sectors, _) in &ranges {
            let end = sector.checked_add(u64::from(sectors));
            if sectors > max_sectors || end.is_none_or(|e| e > self.disk.capacity()) {
                return self.refuse(&format!(
                    "range [{sector}, +{sectors}) is beyond the capacity {} or over {max_sectors} sectors",
                    self.disk.capacity()
                ));
            }
        }
        for (sector, sectors, unmap) in ranges {
            if sectors == 0 {
                continue;
            }
            let mode = match op {
                RangeOp::Discard => PUNCH_HOLE,
                RangeOp::WriteZeroes if unmap && self.config.write_zeroes_may_unmap => PUNCH_HOLE,
                RangeOp::WriteZeroes => ZERO_RANGE,
            };
            let (offset, bytes) = (sector * SECTOR_SIZE, u64::from(sectors) * SECTOR_SIZE);
            if let Err(e) = self.disk.fallocate(mode, offset, bytes) {
                return self.host_error("fallocate", &e);
            }
        }
        if let Err(e) = self.write_through() {
            return self.host_error("syncing a write-through discard/write-zeroes", &e);
        }
        self.counters.add(
            match op {
                RangeOp::Discard => Counter::Discards,
                RangeOp::WriteZeroes => Counter::WriteZeroes,
            },
            1,
        );
        // Deallocating can take long on a fragmented file: it ends the turn.
        Outcome::ok(0, TURN_BYTE_BUDGET)
    }

    /// Writes the status byte.
    pub(super) fn put_status(mem: &GuestMemoryMmap, at: GuestAddress, status: u8) -> bool {
        mem.write_obj(status, at).is_ok()
    }
}
