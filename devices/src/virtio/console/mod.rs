//! virtio-console (virtio 1.2 section 5.3), port 0 only: queue 0 is the
//! receiveq (host to guest), queue 1 the transmitq (guest to host). No
//! `VIRTIO_CONSOLE_F_MULTIPORT` and so no control queues; optionally
//! `VIRTIO_CONSOLE_F_SIZE` with a fixed size in the configuration space.
//!
//! This module owns the queue handling. Output goes to a [`Console`], the
//! sink the UART writes to; input comes through a [`ConsoleInput`] handle
//! (see [`input`] for the flow control and the threading).
//!
//! What the guest controls, and how it is checked:
//! - transmitq: each chain's readable bytes go to the console, in order,
//!   streamed through a fixed buffer (nothing is allocated per chain), at
//!   most [`TX_CHAIN_MAX`] per chain; the rest is counted as dropped. A
//!   chain can describe 4 GiB and the device thread serves every device,
//!   and Linux sends at most a page (hvc) or 32 KiB (a port write) per
//!   buffer. Writable descriptors are ignored; used length is always 0.
//! - receiveq: queued input is written into each chain's writable bytes;
//!   used length is what was written. A chain with no writable byte, or
//!   with a buffer outside guest RAM, gets nothing (length 0, counted) and
//!   the bytes wait for the next one. Chains are taken only when there is
//!   input, so buffers the driver posts in advance stay posted.
//!
//! Reset drops what the spec calls in-flight requests: the guest's posted
//! buffers go with the rings (the device never holds a chain between
//! calls). Host input already queued is kept and reaches the next driver:
//! `push` told the VMM it was taken, so dropping it would lose bytes,
//! just as the UART path's host-side queue survives a guest's UART reset.

pub mod input;

use std::io::{Read, Write};
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use virtio_queue::{QueueT, Reader, Writer};
use vmm_sys_util::eventfd::EventFd;

use super::device::{DeviceError, QueueContext, VirtioDevice};
use crate::console::Console;
pub use input::{ConsoleInput, INPUT_QUEUE_MAX};

/// `VIRTIO_CONSOLE_F_SIZE` (5.3.3): cols and rows in the configuration.
pub const VIRTIO_CONSOLE_F_SIZE: u64 = 1 << 0;
/// Each queue's maximum size.
pub const CONSOLE_QUEUE_SIZE: u16 = 256;
/// receiveq of port 0.
pub const RECEIVEQ: usize = 0;
/// transmitq of port 0.
pub const TRANSMITQ: usize = 1;
/// The most output bytes taken from one transmit chain.
pub const TX_CHAIN_MAX: usize = 64 << 10;
/// Bytes of `struct virtio_console_config`: cols, rows (le16 each),
/// max_nr_ports, emerg_wr (le32 each).
const CONFIG_LEN: usize = 12;

/// The device's counters, shared with the VMM (relaxed atomics).
#[derive(Debug, Default)]
pub struct ConsoleMetrics {
    tx_bytes: AtomicU64,
    tx_dropped_bytes: AtomicU64,
    rx_bytes: AtomicU64,
    invalid_chains: AtomicU64,
    output_errors: AtomicU64,
}

impl ConsoleMetrics {
    /// Guest output bytes passed to the console.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Ordering::Relaxed)
    }

    /// Guest output bytes past [`TX_CHAIN_MAX`] in a chain, not passed on.
    pub fn tx_dropped_bytes(&self) -> u64 {
        self.tx_dropped_bytes.load(Ordering::Relaxed)
    }

    /// Host input bytes written into guest buffers.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Ordering::Relaxed)
    }

    /// Chains returned untouched: a transmit chain with no readable byte,
    /// a receive chain with no writable byte, or a buffer outside RAM.
    pub fn invalid_chains(&self) -> u64 {
        self.invalid_chains.load(Ordering::Relaxed)
    }

    /// Console writes that failed (the bytes are lost, as on a UART with
    /// nothing attached).
    pub fn output_errors(&self) -> u64 {
        self.output_errors.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A virtio console with one port.
pub struct VirtioConsole {
    out: Console,
    input: ConsoleInput,
    size: Option<(u16, u16)>,
    metrics: Arc<ConsoleMetrics>,
}

impl std::fmt::Debug for VirtioConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioConsole")
            .field("input", &self.input)
            .field("size", &self.size)
            .finish()
    }
}

impl VirtioConsole {
    /// A console writing guest output to `out`, with no drained
    /// notification.
    pub fn new(out: Console) -> std::io::Result<Self> {
        Self::build(out, None)
    }

    /// Like [`Self::new`], and writes `drained` each time a delivery
    /// empties the input queue.
    pub fn with_input_drained(out: Console, drained: EventFd) -> std::io::Result<Self> {
        Self::build(out, Some(drained))
    }

    fn build(out: Console, drained: Option<EventFd>) -> std::io::Result<Self> {
        Ok(VirtioConsole {
            out,
            input: ConsoleInput::new(drained)?,
            size: None,
            metrics: Arc::default(),
        })
    }

    /// Offers `VIRTIO_CONSOLE_F_SIZE` with `cols` x `rows`.
    pub fn with_size(mut self, cols: u16, rows: u16) -> Self {
        self.size = Some((cols, rows));
        self
    }

    /// The input handle (keep one before handing the device to its
    /// transport).
    pub fn input(&self) -> ConsoleInput {
        self.input.clone()
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<ConsoleMetrics> {
        self.metrics.clone()
    }

    /// Moves queued input into receive buffers while both last.
    fn deliver(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        // The host fd fires whatever the driver set up: without a ready
        // receiveq there is nowhere to deliver (and popping would log).
        if !ctx.queues.get(RECEIVEQ).is_some_and(|q| q.ready()) {
            return Ok(());
        }
        let mut state = self.input.lock();
        let had_input = !state.bytes.is_empty();
        let mut used = false;
        while !state.bytes.is_empty() {
            let Some(chain) = ctx.pop(RECEIVEQ) else {
                break;
            };
            let head = chain.head_index();
            let written = match chain.writer(ctx.mem) {
                Ok(mut w) => fill_from_queue(&mut w, &state.bytes),
                Err(_) => 0,
            };
            if written == 0 {
                ConsoleMetrics::add(&self.metrics.invalid_chains, 1);
            }
            ctx.add_used(RECEIVEQ, head, u32::try_from(written).unwrap_or(0))?;
            // Only now are the bytes the guest's: had the used ring been
            // unwritable they would still be queued.
            state.bytes.drain(..written);
            ConsoleMetrics::add(&self.metrics.rx_bytes, written as u64);
            used = true;
        }
        let emptied = had_input && state.bytes.is_empty();
        drop(state);
        if used {
            ctx.signal_used(RECEIVEQ)?;
        }
        if emptied {
            self.input.notify_drained();
        }
        Ok(())
    }

    /// Writes every available transmit chain to the console.
    fn transmit(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), DeviceError> {
        let mut used = false;
        while let Some(chain) = ctx.pop(TRANSMITQ) {
            let head = chain.head_index();
            let sent = match chain.reader(ctx.mem) {
                Ok(mut r) => self.copy_out(&mut r),
                Err(_) => 0,
            };
            if sent == 0 {
                ConsoleMetrics::add(&self.metrics.invalid_chains, 1);
            }
            // The device writes nothing into transmit buffers.
            ctx.add_used(TRANSMITQ, head, 0)?;
            used = true;
        }
        if used {
            if self.out.flush().is_err() {
                ConsoleMetrics::add(&self.metrics.output_errors, 1);
            }
            ctx.signal_used(TRANSMITQ)?;
        }
        Ok(())
    }

    /// Streams up to [`TX_CHAIN_MAX`] readable bytes to the console;
    /// returns how many were read from the chain.
    fn copy_out(&mut self, r: &mut Reader<'_>) -> usize {
        let total = r.available_bytes();
        let take = total.min(TX_CHAIN_MAX);
        if total > take {
            ConsoleMetrics::add(&self.metrics.tx_dropped_bytes, (total - take) as u64);
            log::debug!("virtio-console: a transmit chain of {total} bytes, {take} passed on");
        }
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < take {
            let want = (take - done).min(buf.len());
            let chunk = match r.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.get(..n).unwrap_or_default(),
            };
            if self.out.write_all(chunk).is_err() {
                ConsoleMetrics::add(&self.metrics.output_errors, 1);
            }
            done += chunk.len();
            ConsoleMetrics::add(&self.metrics.tx_bytes, chunk.len() as u64);
        }
        done
    }

    /// The device failed the driver's contract and waits for a reset.
    fn after(&self, result: Result<(), DeviceError>) -> Result<(), DeviceError> {
        if let Err(DeviceError::NeedsReset(_)) = &result {
            // The transport stops passing host events: stop raising them.
            self.input.stop();
        }
        result
    }
}

/// Writes the front of `queue` into `w`; returns how many bytes went in.
fn fill_from_queue(w: &mut Writer<'_>, queue: &std::collections::VecDeque<u8>) -> usize {
    let (front, back) = queue.as_slices();
    for part in [front, back] {
        let room = w.available_bytes();
        if room == 0 {
            break;
        }
        let part = part.get(..part.len().min(room)).unwrap_or_default();
        // The buffers were checked to be in RAM: this cannot fall short, and
        // if it did, bytes_written says how much went in.
        if w.write_all(part).is_err() {
            break;
        }
    }
    w.bytes_written()
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[CONSOLE_QUEUE_SIZE, CONSOLE_QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        if self.size.is_some() {
            VIRTIO_CONSOLE_F_SIZE
        } else {
            0
        }
    }

    /// `struct virtio_console_config`: the size (zeros without
    /// `VIRTIO_CONSOLE_F_SIZE`), one port, no emergency write.
    fn config_space(&self) -> Vec<u8> {
        let (cols, rows) = self.size.unwrap_or((0, 0));
        let mut c = Vec::with_capacity(CONFIG_LEN);
        c.extend_from_slice(&cols.to_le_bytes());
        c.extend_from_slice(&rows.to_le_bytes());
        c.extend_from_slice(&1u32.to_le_bytes());
        c.extend_from_slice(&0u32.to_le_bytes());
        c
    }

    fn activate(&mut self, _features: u64) -> Result<(), DeviceError> {
        self.input.go_live();
        Ok(())
    }

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        let result = match index {
            RECEIVEQ => self.deliver(ctx),
            TRANSMITQ => self.transmit(ctx),
            _ => Ok(()),
        };
        self.after(result)
    }

    /// The input's pending eventfd.
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.input.pending_fd()]
    }

    fn process_host_fd(
        &mut self,
        fd: RawFd,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), DeviceError> {
        if fd != self.input.pending_fd() {
            return Ok(());
        }
        self.input.clear_pending();
        let result = self.deliver(ctx);
        self.after(result)
    }

    /// Keeps queued input (see the module docs).
    fn reset(&mut self) {
        self.input.stop();
    }
}

#[cfg(test)]
mod tests;
