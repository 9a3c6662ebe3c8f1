//! What one exit looked like in `kvm_run`, for handlers that show or record
//! every exit (an `--explain` trace, a timeline of exits): an
//! [`ExitRecord`], passed to [`ExitHandler::observe_exit`] when the
//! handler's [`ExitHandler::observes_exits`] is true.
//!
//! The run loop asks `observes_exits()` once per exit; a handler that
//! returns a constant `false` (the default) compiles to the plain loop. An
//! observed write is recorded before the handler performs it (so a trace
//! line comes before whatever the device prints); an observed read after
//! (so the record holds the data the handler supplied).

use std::time::Instant;

use kvm_bindings::{
    kvm_run, KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN,
    KVM_EXIT_SYSTEM_EVENT,
};
use kvm_ioctls::VcpuExit;

use crate::exit_handler::{ExitHandler, ExitKind};
use crate::vcpu::{handle_exit, io_access_size, VcpuStop};

/// The `kvm_run` fields of one exit that matter for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitFields<'a> {
    /// `KVM_EXIT_IO`: `io.port`, `io.direction`, `io.size`, `io.count` and
    /// the data at `io.data_offset` (`size * count` bytes; for a read, what
    /// the handler supplied).
    Io {
        /// The port.
        port: u16,
        /// `KVM_EXIT_IO_OUT` (true) or `KVM_EXIT_IO_IN`.
        write: bool,
        /// Bytes per element (1, 2 or 4).
        size: u8,
        /// Elements (more than one for string I/O).
        count: u32,
        /// All elements' bytes.
        data: &'a [u8],
    },
    /// `KVM_EXIT_MMIO`: `mmio.phys_addr`, `mmio.is_write`, `mmio.len` (the
    /// data's length) and `mmio.data`.
    Mmio {
        /// Guest-physical address.
        addr: u64,
        /// A write (true) or a read.
        write: bool,
        /// The access's bytes (for a read, what the handler supplied).
        data: &'a [u8],
    },
    /// An exit that ends the run loop; the stop carries its fields (the
    /// suberror and instruction bytes of `KVM_EXIT_INTERNAL_ERROR`, ...).
    Stop(&'a VcpuStop),
    /// KVM_RUN failed with this errno and is retried (EINTR: a kick;
    /// EAGAIN: an AP woken from wait-for-SIPI).
    Errno(i32),
    /// An exit with no fields of interest that does not end the loop
    /// (`KVM_EXIT_INTR`).
    None,
}

/// One exit, as the run loop saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord<'a> {
    /// The vCPU's index.
    pub vcpu: u64,
    /// When KVM_RUN returned.
    pub at: Instant,
    /// The kind the loop reports to [`ExitHandler::exit_handled`].
    pub kind: ExitKind,
    /// `kvm_run.exit_reason` (meaningless for [`ExitFields::Errno`]).
    pub reason: u32,
    /// The fields for this kind.
    pub fields: ExitFields<'a>,
}

/// KVM's name for an exit reason (`KVM_EXIT_IO`...), or `None` for one this
/// crate does not name.
pub fn exit_reason_name(reason: u32) -> Option<&'static str> {
    Some(match reason {
        KVM_EXIT_IO => "KVM_EXIT_IO",
        KVM_EXIT_MMIO => "KVM_EXIT_MMIO",
        KVM_EXIT_HLT => "KVM_EXIT_HLT",
        KVM_EXIT_SHUTDOWN => "KVM_EXIT_SHUTDOWN",
        KVM_EXIT_INTERNAL_ERROR => "KVM_EXIT_INTERNAL_ERROR",
        KVM_EXIT_FAIL_ENTRY => "KVM_EXIT_FAIL_ENTRY",
        KVM_EXIT_DEBUG => "KVM_EXIT_DEBUG",
        KVM_EXIT_SYSTEM_EVENT => "KVM_EXIT_SYSTEM_EVENT",
        KVM_EXIT_INTR => "KVM_EXIT_INTR",
        KVM_EXIT_MEMORY_FAULT => "KVM_EXIT_MEMORY_FAULT",
        _ => return None,
    })
}

/// [`handle_exit`] with the exit recorded through
/// [`ExitHandler::observe_exit`]: writes before they are performed, reads
/// after, every other exit once its outcome is known.
pub(crate) fn handle_observed_exit<H: ExitHandler + ?Sized>(
    exit: VcpuExit<'_>,
    run: *const kvm_run,
    handler: &H,
    vcpu: u64,
    at: Instant,
) -> (ExitKind, Option<VcpuStop>) {
    // SAFETY: `run` points to the mapped kvm_run area; `exit_reason` is a
    // plain integer outside the union the exit's data slice borrows.
    let reason = unsafe { std::ptr::addr_of!((*run).exit_reason).read() };
    let observe = |kind, fields| {
        handler.observe_exit(&ExitRecord {
            vcpu,
            at,
            kind,
            reason,
            fields,
        })
    };
    fn io(run: *const kvm_run, port: u16, write: bool, data: &[u8]) -> ExitFields<'_> {
        let size = io_access_size(run);
        ExitFields::Io {
            port,
            write,
            size: size as u8,
            count: u32::try_from(data.len() / size).unwrap_or(u32::MAX),
            data,
        }
    }
    match exit {
        VcpuExit::IoOut(port, data) => {
            observe(ExitKind::IoOut, io(run, port, true, data));
            handle_exit(VcpuExit::IoOut(port, data), run, handler)
        }
        VcpuExit::IoIn(port, data) => {
            let done = handle_exit(VcpuExit::IoIn(port, &mut *data), run, handler);
            observe(ExitKind::IoIn, io(run, port, false, data));
            done
        }
        VcpuExit::MmioWrite(addr, data) => {
            observe(
                ExitKind::MmioWrite,
                ExitFields::Mmio {
                    addr,
                    write: true,
                    data,
                },
            );
            handle_exit(VcpuExit::MmioWrite(addr, data), run, handler)
        }
        VcpuExit::MmioRead(addr, data) => {
            let done = handle_exit(VcpuExit::MmioRead(addr, &mut *data), run, handler);
            observe(
                ExitKind::MmioRead,
                ExitFields::Mmio {
                    addr,
                    write: false,
                    data,
                },
            );
            done
        }
        other => {
            let (kind, stop) = handle_exit(other, run, handler);
            let fields = stop.as_ref().map_or(ExitFields::None, ExitFields::Stop);
            observe(kind, fields);
            (kind, stop)
        }
    }
}

/// Records a KVM_RUN that failed with `errno` and is retried.
pub(crate) fn observe_errno<H: ExitHandler + ?Sized>(
    handler: &H,
    vcpu: u64,
    at: Instant,
    errno: i32,
) {
    handler.observe_exit(&ExitRecord {
        vcpu,
        at,
        kind: ExitKind::Interrupted,
        reason: 0,
        fields: ExitFields::Errno(errno),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vm_device::bus::{MmioAddress, PioAddress};

    /// Logs accesses and observations in order, as strings.
    #[derive(Default)]
    struct Observer {
        log: Mutex<Vec<String>>,
    }

    impl Observer {
        fn push(&self, s: String) {
            self.log.lock().unwrap().push(s);
        }
    }

    impl ExitHandler for Observer {
        fn pio_read(&self, port: PioAddress, data: &mut [u8]) {
            self.push(format!("in {:#x}", port.0));
            data.fill(0x5a);
        }
        fn pio_write(&self, port: PioAddress, data: &[u8]) {
            self.push(format!("out {:#x} {data:?}", port.0));
        }
        fn mmio_read(&self, addr: MmioAddress, data: &mut [u8]) {
            self.push(format!("mr {:#x}", addr.0));
            data.fill(0x77);
        }
        fn mmio_write(&self, addr: MmioAddress, _: &[u8]) {
            self.push(format!("mw {:#x}", addr.0));
        }
        fn observes_exits(&self) -> bool {
            true
        }
        fn observe_exit(&self, r: &ExitRecord<'_>) {
            let what = match r.fields {
                ExitFields::Io {
                    port,
                    write,
                    size,
                    count,
                    data,
                } => format!("io {port:#x} w={write} size={size} count={count} {data:?}"),
                ExitFields::Mmio { addr, write, data } => {
                    format!("mmio {addr:#x} w={write} {data:?}")
                }
                ExitFields::Stop(s) => format!("stop {s}"),
                ExitFields::Errno(e) => format!("errno {e}"),
                ExitFields::None => "none".into(),
            };
            self.push(format!("observe vcpu{} {:?} {what}", r.vcpu, r.kind));
        }
    }

    fn run_with_io_size(size: u8) -> kvm_run {
        let mut run = kvm_run {
            exit_reason: KVM_EXIT_IO,
            ..Default::default()
        };
        run.__bindgen_anon_1.io.size = size;
        run
    }

    #[test]
    fn test_observed_write_is_recorded_before_it_is_performed() {
        let run = run_with_io_size(2);
        let h = Observer::default();
        let data = [1u8, 0, 2, 0];
        let out = handle_observed_exit(VcpuExit::IoOut(0x10, &data), &run, &h, 3, Instant::now());
        assert_eq!(out, (ExitKind::IoOut, None));
        assert_eq!(
            *h.log.lock().unwrap(),
            vec![
                "observe vcpu3 IoOut io 0x10 w=true size=2 count=2 [1, 0, 2, 0]",
                "out 0x10 [1, 0]",
                "out 0x10 [2, 0]",
            ]
        );
    }

    #[test]
    fn test_observed_read_holds_the_data_supplied() {
        let run = run_with_io_size(1);
        let h = Observer::default();
        let mut data = [0u8; 1];
        handle_observed_exit(VcpuExit::IoIn(0x64, &mut data), &run, &h, 0, Instant::now());
        let mut mmio = [0u8; 4];
        handle_observed_exit(
            VcpuExit::MmioRead(0xd000_0000, &mut mmio),
            &run,
            &h,
            0,
            Instant::now(),
        );
        assert_eq!(
            *h.log.lock().unwrap(),
            vec![
                "in 0x64",
                "observe vcpu0 IoIn io 0x64 w=false size=1 count=1 [90]",
                "mr 0xd0000000",
                "observe vcpu0 MmioRead mmio 0xd0000000 w=false [119, 119, 119, 119]",
            ]
        );
    }

    #[test]
    fn test_observed_stop_carries_the_stop() {
        let run = kvm_run {
            exit_reason: KVM_EXIT_HLT,
            ..Default::default()
        };
        let h = Observer::default();
        let out = handle_observed_exit(VcpuExit::Hlt, &run, &h, 0, Instant::now());
        assert_eq!(out, (ExitKind::Hlt, Some(VcpuStop::Halted)));
        assert_eq!(
            *h.log.lock().unwrap(),
            vec!["observe vcpu0 Hlt stop guest halted"]
        );
        observe_errno(&h, 1, Instant::now(), libc::EINTR);
        assert_eq!(
            h.log.lock().unwrap()[1],
            format!("observe vcpu1 Interrupted errno {}", libc::EINTR)
        );
    }

    #[test]
    fn test_exit_reason_names() {
        assert_eq!(exit_reason_name(KVM_EXIT_IO), Some("KVM_EXIT_IO"));
        assert_eq!(
            exit_reason_name(KVM_EXIT_INTERNAL_ERROR),
            Some("KVM_EXIT_INTERNAL_ERROR")
        );
        assert_eq!(exit_reason_name(999), None);
    }
}
