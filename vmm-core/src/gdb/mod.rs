//! A GDB stub: gdb's remote protocol (the gdbstub crate) on a Unix socket,
//! `target remote PATH` in gdb.
//!
//! - [`GdbServer::bind`] makes the socket (mode 0600; a stale socket file
//!   nobody listens on is replaced). [`crate::Vm::attach_gdb`] takes it,
//!   asks the host what it can do for a debugger ([`probe`]) and makes the
//!   VM start paused: the guest stops at its entry, before its first
//!   instruction, until gdb continues.
//! - The stub runs on its own thread, confined to
//!   [`crate::seccomp::ThreadRole::Gdb`] (a socket, poll, no ioctl). It
//!   never touches a vCPU: it pauses and resumes the VM through the main
//!   loop like any [`crate::VmHandle`], and reads and writes a parked vCPU
//!   through jobs run on that vCPU's own thread (`gdb/vcpus.rs`).
//! - A vCPU thread whose KVM_RUN ends with KVM_EXIT_DEBUG (a single step,
//!   a breakpoint or a watchpoint) records it ([`events`]), asks for the
//!   pause and parks; the stub tells gdb. One gdb thread per vCPU.
//! - Breakpoints and watchpoints live in DR0-DR3 ([`debugregs`]): at most
//!   four together, `break` (Z0) included, because an `int3` never reaches
//!   the VMM on the hosts this project runs on. Memory is read through the
//!   stopped vCPU's page tables ([`memory`]). Where the host reports no
//!   data breakpoints, write watchpoints are kept by single-stepping
//!   (`gdb/target.rs`).
//! - When gdb detaches, guest debugging is turned off and the VM runs on;
//!   another gdb may attach (the VM stops again). When the VM ends, gdb
//!   is told how (an exit code or a signal) and the stub ends.

pub mod conn;
pub mod debugregs;
pub mod events;
pub mod memory;
pub mod probe;
pub mod regs;
mod session;
mod socket;
pub(crate) mod target;
pub(crate) mod vcpus;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use events::{DebugExit, DebugExits, VcpuDebugLink};
pub use probe::HostDebug;
pub use socket::SocketFile;

use crate::dispatch::ExitDispatcher;
use crate::handle::VmHandle;
use crate::outcome::VmOutcome;
use vm_memory::GuestMemoryMmap;

/// Errors of the GDB stub.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// Another process listens on the socket path.
    #[error("the GDB socket {0}: another process is listening on it")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("the GDB socket {0}: the path exists and is not a socket (remove it first)")]
    NotASocket(PathBuf),
    /// Binding, probing or removing the socket failed.
    #[error("the GDB socket {path}: {what} failed: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The host probe's KVM call failed.
    #[error("probing the host's guest debugging: {what} failed: {source}")]
    Probe {
        /// The ioctl.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// The host probe could not set up its memory.
    #[error("probing the host's guest debugging: guest memory: {0}")]
    ProbeMemory(String),
    /// A KVM call on a vCPU failed.
    #[error("vCPU {vcpu}: {what} failed: {source}")]
    Kvm {
        /// The vCPU.
        vcpu: u64,
        /// The ioctl.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// The VM stopped while the stub needed it.
    #[error("the VM has stopped")]
    VmEnded,
    /// A parked vCPU did not run the stub's job in time.
    #[error("vCPU {vcpu} did not answer the debugger within {waited:?}")]
    VcpuTimeout {
        /// The vCPU.
        vcpu: u64,
        /// How long the stub waited.
        waited: Duration,
    },
    /// The VM did not pause in time.
    #[error("the VM did not pause within {0:?}")]
    PauseTimeout(Duration),
    /// The stub thread could not be started or confined.
    #[error("starting the GDB stub thread: {0}")]
    Thread(std::io::Error),
}

/// Maps how the VM ended to the exit code gdb is told (`W` packet).
pub type ExitCode = fn(&VmOutcome) -> u8;

/// The default [`ExitCode`]: 0 for a halt or power-off, `(v << 1) | 1` for
/// debug-exit value `v` (QEMU's isa-debug-exit), 1 for anything else.
pub fn default_exit_code(outcome: &VmOutcome) -> u8 {
    match outcome {
        VmOutcome::Halted { .. } | VmOutcome::PowerOff => 0,
        VmOutcome::DebugExit { value } => ((value << 1) | 1) as u8,
        _ => 1,
    }
}

/// A bound GDB socket, before the VM runs.
#[derive(Debug)]
pub struct GdbServer {
    listener: UnixListener,
    file: SocketFile,
    exit_code: ExitCode,
}

impl GdbServer {
    /// Binds `path` (see the module docs).
    pub fn bind(path: &Path) -> Result<Self, GdbError> {
        let (listener, file) = socket::bind(path)?;
        Ok(GdbServer {
            listener,
            file,
            exit_code: default_exit_code,
        })
    }

    /// Tells gdb the VM's end with `exit_code` instead of
    /// [`default_exit_code`] (a front end: its own process status).
    pub fn with_exit_code(mut self, exit_code: ExitCode) -> Self {
        self.exit_code = exit_code;
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A [`GdbServer`] attached to a VM, with what the host can do.
#[derive(Debug)]
pub(crate) struct AttachedGdb {
    pub server: GdbServer,
    pub host: HostDebug,
    pub exits: Arc<DebugExits>,
}

/// MAXPHYADDR from a vCPU's CPUID (leaf 0x80000008 EAX 7:0), 36 without
/// the leaf, as the CPU defines it.
pub(crate) fn phys_bits(cpuid: Option<&[kvm_bindings::kvm_cpuid_entry2]>) -> u32 {
    cpuid
        .and_then(|entries| entries.iter().find(|e| e.function == 0x8000_0008))
        .map_or(36, |e| e.eax & 0xff)
}

/// What the stub thread needs from [`crate::Vm::run`].
pub(crate) struct StubParts {
    pub handle: VmHandle,
    pub dispatcher: Arc<ExitDispatcher>,
    pub memory: GuestMemoryMmap,
    /// MAXPHYADDR of each vCPU, in index order.
    pub phys_bits: Vec<u32>,
    pub seccomp: bool,
}

/// Starts the stub thread. It returns the socket file (removed by the
/// caller, whose seccomp list allows unlink) when the VM has ended.
pub(crate) fn spawn(
    gdb: AttachedGdb,
    parts: StubParts,
) -> Result<JoinHandle<SocketFile>, GdbError> {
    let AttachedGdb {
        server,
        host,
        exits,
    } = gdb;
    let vcpus = vcpus::Vcpus::new(parts.handle, parts.dispatcher, parts.phys_bits.len());
    let target = target::VmTarget::new(vcpus, parts.memory, parts.phys_bits, host, exits);
    let seccomp = parts.seccomp;
    std::thread::Builder::new()
        .name("gdb".into())
        .spawn(move || {
            let GdbServer {
                listener,
                file,
                exit_code,
            } = server;
            session::serve(&listener, target, seccomp, exit_code, file.path());
            file
        })
        .map_err(GdbError::Thread)
}
