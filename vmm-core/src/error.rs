//! vmm-core's error type: everything that can stop a VM from being built or
//! run, grouped by whose fault it is so front ends can pick an exit status.

use std::path::PathBuf;

use crate::kvm::KvmError;

/// A raw-image boot option (mode, load address, entry point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawOption {
    /// The CPU mode at entry.
    Mode,
    /// The load address.
    LoadAddr,
    /// The entry point.
    Entry,
}

impl std::fmt::Display for RawOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RawOption::Mode => "CPU mode",
            RawOption::LoadAddr => "load address",
            RawOption::Entry => "entry point",
        })
    }
}

/// Who is to blame for an error, for choosing an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The user's input (arguments, image) is wrong.
    BadInput,
    /// KVM is missing, inaccessible or unsuitable.
    KvmUnavailable,
    /// The VMM or a KVM call failed.
    Internal,
}

/// Errors building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// No kernel image was given.
    #[error("no kernel image given")]
    NoKernel,
    /// The GDB stub (its socket, the host probe, its thread).
    #[error(transparent)]
    Gdb(#[from] crate::gdb::GdbError),
    /// A control request (pause, resume) reached a VM that has stopped.
    #[error("the VM is not running: it has stopped")]
    NotRunning,
    /// The VM did not reach the state a control request asked for in time.
    #[error("the VM did not {what} within {after:?}")]
    StateChangeTimeout {
        /// "pause" or "resume".
        what: &'static str,
        /// How long the request waited.
        after: std::time::Duration,
    },
    /// An input file (kernel, initrd, module) cannot be read or used.
    #[error(transparent)]
    Input(#[from] vmm_loader::input::InputError),
    /// A raw-image option was given for another format.
    #[error("a {option} applies to raw images only, but the image is {format}")]
    RawOnlyOption {
        /// The option.
        option: RawOption,
        /// The image's format.
        format: vmm_loader::Format,
    },
    /// The memory size cannot be laid out.
    #[error(transparent)]
    Layout(#[from] vmm_memory::LayoutError),
    /// Guest RAM could not be mapped.
    #[error(transparent)]
    GuestRam(#[from] vmm_memory::GuestRamError),
    /// The image could not be loaded.
    #[error("loading {path}: {source}")]
    Load {
        /// The image path (or `<memory>`).
        path: String,
        /// The loader's error.
        source: vmm_loader::LoadError,
    },
    /// The entry state cannot be set up (bad entry, overlap, KVM refusal).
    #[error(transparent)]
    BootState(#[from] vmm_cpu::BootStateError),
    /// KVM is not usable.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// KVM_CREATE_VM failed.
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(kvm_ioctls::Error),
    /// Registering guest memory failed.
    #[error(transparent)]
    MemorySlots(#[from] vmm_memory::KvmSlotError),
    /// Creating or running a vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] vmm_cpu::VcpuError),
    /// Setting CPUID failed.
    #[error(transparent)]
    Cpuid(#[from] vmm_cpu::cpuid::CpuidError),
    /// A device could not be placed on the bus.
    #[error(transparent)]
    Bus(#[from] vmm_devices::BusError),
    /// The platform's device set could not be built.
    #[error(transparent)]
    Devices(#[from] vmm_devices::pc::DeviceSetError),
    /// The kick signal handler could not be installed.
    #[error(transparent)]
    Kick(#[from] vmm_cpu::kick::KickError),
    /// A seccomp filter could not be built or installed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// KVM_CREATE_IRQCHIP failed.
    #[error("KVM_CREATE_IRQCHIP failed: {0}")]
    CreateIrqchip(kvm_ioctls::Error),
    /// KVM_SET_GSI_ROUTING failed.
    #[error("setting the GSI routing failed: {0}")]
    GsiRouting(String),
    /// The firmware tables could not be written.
    #[error(transparent)]
    Firmware(#[from] crate::firmware::FirmwareError),
    /// KVM_GET_IRQCHIP / KVM_SET_IRQCHIP for the PICs' firmware state failed.
    #[error("setting the PICs as a BIOS leaves them (KVM_GET/SET_IRQCHIP) failed: {0}")]
    PicState(kvm_ioctls::Error),
    /// KVM_GET_PIT2 / KVM_SET_PIT2 for the PIT's firmware state failed.
    #[error("setting the PIT as a BIOS leaves it (KVM_GET/SET_PIT2) failed: {0}")]
    PitState(kvm_ioctls::Error),
    /// The real-mode IVT, stubs or BDA could not be written.
    #[error("writing the real-mode interrupt table and BIOS data area failed: {0}")]
    RealModeFirmware(vm_memory::GuestMemoryError),
    /// KVM_CREATE_PIT2 failed.
    #[error("KVM_CREATE_PIT2 failed: {0}")]
    CreatePit(kvm_ioctls::Error),
    /// An eventfd could not be created.
    #[error("creating an eventfd failed: {0}")]
    EventFd(std::io::Error),
    /// A timerfd (for the devices' timed interrupts) could not be created.
    #[error("creating a timerfd failed: {0}")]
    TimerFd(vmm_sys_util::errno::Error),
    /// Saving the interrupt controllers' start state (KVM_GET_IRQCHIP, for
    /// the reset at an S3 wake) failed.
    #[error("KVM_GET_IRQCHIP (chip {chip}) failed: {source}")]
    GetIrqchip {
        /// KVM's chip number (0, 1: PICs, 2: IOAPIC).
        chip: u32,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// A vCPU could not load its state for the wake from S3.
    #[error("vCPU {index}: {source}")]
    WakeState {
        /// The vCPU.
        index: u64,
        /// What failed.
        source: vmm_cpu::WakeStateError,
    },
    /// The event loop could not be created.
    #[error("creating the event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    /// KVM_IRQFD failed.
    #[error("KVM_IRQFD for GSI {gsi} failed: {source}")]
    RegisterIrqfd {
        /// The GSI.
        gsi: u32,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// Setting up a vCPU's LAPIC, FPU or MSRs failed.
    #[error(transparent)]
    FirmwareState(#[from] vmm_cpu::firmware_state::FirmwareStateError),
    /// The vCPU count is out of range.
    #[error("{requested} vCPUs is out of range: this host's KVM allows 1 to {max}")]
    CpuCount {
        /// Requested.
        requested: u64,
        /// KVM's maximum.
        max: u64,
    },
    /// More than one vCPU without the PC platform.
    #[error(
        "{cpus} vCPUs: more than one needs the PC platform (the APs start through the local APIC)"
    )]
    SmpNeedsPc {
        /// vCPUs asked for.
        cpus: u64,
    },
    /// A vCPU thread could not be started.
    #[error("starting the thread for vCPU {index} failed: {source}")]
    SpawnVcpu {
        /// vCPU index.
        index: u64,
        /// The error.
        source: std::io::Error,
    },
    /// More virtio devices than there are slots.
    #[error("too many virtio devices: at most {max} fit (one GSI each)")]
    TooManyVirtioDevices {
        /// Slots there are.
        max: usize,
    },
    /// A virtio device was attached that the VM's configuration has no slot
    /// for, or in another order than the configuration lists them.
    #[error("virtio device type {got} attached where the configuration has {}", expected.map_or("no further device".to_string(), |t| format!("device type {t}")))]
    VirtioSlot {
        /// The configured slot's device type, if there is one.
        expected: Option<u32>,
        /// The attached device's type.
        got: u32,
    },
    /// A virtio-net device could not be set up (its tap, its MAC).
    #[error(transparent)]
    Net(#[from] vmm_devices::virtio::net::NetError),
    /// The vsock device's host socket could not be set up.
    #[error(transparent)]
    Vsock(vmm_devices::virtio::vsock::VsockError),
    /// A disk image cannot be used (missing, not a disk, in use by another
    /// VM, a bad serial...); the message names the image.
    #[error(transparent)]
    Disk(#[from] vmm_devices::virtio::block::BlockError),
    /// A virtio transport could not be created.
    #[error(transparent)]
    VirtioTransport(#[from] vmm_devices::virtio::mmio::TransportError),
    /// A virtio device's interrupt line could not be connected.
    #[error("connecting a virtio device's interrupt (GSI {gsi}) failed: {source}")]
    VirtioInterrupt {
        /// The GSI.
        gsi: u32,
        /// The error.
        source: std::io::Error,
    },
    /// KVM_IOEVENTFD failed.
    #[error("KVM_IOEVENTFD for the virtio device at {addr:#x} failed: {source}")]
    RegisterIoevent {
        /// The device's window.
        addr: u64,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// The virtio device thread could not be started.
    #[error("starting the virtio device thread failed: {0}")]
    SpawnDeviceThread(std::io::Error),
    /// A vCPU thread panicked (a VMM bug).
    #[error("a vCPU thread panicked (a VMM bug; the VM was stopped)")]
    VcpuPanicked,
    /// The thread running one boot of a rebooting VM could not be started.
    #[error("starting the thread for the next boot failed: {0}")]
    SpawnBootThread(std::io::Error),
    /// The thread running one boot of a rebooting VM panicked (a VMM bug).
    #[error("the thread running the VM panicked (a VMM bug)")]
    BootThreadPanicked,
    /// Taking or restoring a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The serial output file could not be created.
    #[error("cannot create serial output file {path}: {source}")]
    SerialFile {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key press was asked for, but the VM has no keyboard controller.
    #[error("this VM has no i8042 keyboard controller (the minimal platform has none)")]
    NoKeyboard,
    /// The guest's keyboard did not take a key press.
    #[error("the guest's keyboard did not take the keys: scanning is disabled or its 16-byte buffer is full")]
    KeyboardBusy,
}

impl VmmError {
    /// Whose fault the error is.
    pub fn class(&self) -> ErrorClass {
        use vmm_cpu::BootStateError as B;
        use vmm_devices::virtio::net::NetError;
        match self {
            VmmError::NoKernel
            | VmmError::Input(_)
            | VmmError::RawOnlyOption { .. }
            | VmmError::CpuCount { .. }
            | VmmError::SmpNeedsPc { .. }
            | VmmError::TooManyVirtioDevices { .. }
            | VmmError::Disk(_)
            | VmmError::Layout(_)
            | VmmError::Load { .. }
            | VmmError::SerialFile { .. }
            | VmmError::Gdb(
                crate::gdb::GdbError::InUse(_)
                | crate::gdb::GdbError::NotASocket(_)
                | crate::gdb::GdbError::Socket { .. },
            )
            | VmmError::Net(NetError::Tap(_) | NetError::MulticastMac(_))
            | VmmError::BootState(B::RealModeEntry(_) | B::OverlapsBootTables { .. }) => {
                ErrorClass::BadInput
            }
            // The host refused the mapping: the size asked for is the problem.
            VmmError::GuestRam(vmm_memory::GuestRamError::Mmap { .. })
            | VmmError::GuestRam(vmm_memory::GuestRamError::RangeTooLarge(_)) => {
                ErrorClass::BadInput
            }
            VmmError::Snapshot(e) if e.is_bad_input() => ErrorClass::BadInput,
            // An unusable socket path (a file in the way, no directory).
            VmmError::Vsock(e) if e.is_bad_path() => ErrorClass::BadInput,
            VmmError::Kvm(_) => ErrorClass::KvmUnavailable,
            _ => ErrorClass::Internal,
        }
    }
}
