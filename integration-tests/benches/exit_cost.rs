//! What a port-I/O exit costs through the VMM, against the floor of a
//! minimal KVM_RUN loop written directly on kvm-ioctls; how long the classic
//! guest takes from process start to halt; and how much memory the VMM uses.
//!
//! Run it with `integration-tests/scripts/bench.sh` (which also builds the release `vmm-bin`
//! and prints a summary), or alone:
//! `cargo bench -p integration-tests --bench exit_cost`.
//!
//! Every measured VM runs in a fresh child process (this bench re-executed
//! with `EXIT_COST_CHILD` set) that times itself and reports back: the VMM
//! may confine the thread that ran it for good (seccomp), and no run should
//! inherit another's state. The parent only schedules, interleaves and
//! computes.
//!
//! # 1. Cost per exit (interleaved; the 5% target)
//!
//! The guest is the same 16-bit real-mode port loop in every variant:
//! `mov cx, N; mov al, 0x55; L: out PORT, al; loop L; hlt`, so every exit
//! carries exactly one other emulated instruction (`loop`). The two the
//! target compares:
//!
//! - `(a) floor`: the classic LWN loop on kvm-ioctls (`Kvm::new`, one 1 MiB
//!   slot, real-mode sregs, `loop { match vcpu.run() { .. } }`);
//! - `(b) VMM lib`: the library path (`VmBuilder .. build()?.run()?`, default
//!   settings, 1 MiB, console discarded): vCPU thread, vmm-cpu run loop, exit
//!   dispatcher, bus, counters, watchdog; once on port 0x10 (unclaimed: the
//!   full dispatch and counting, no device) and once on port 0x80 (the
//!   POST-code device, which records each byte);
//!
//! the shipped binary, `vmm-bin --kernel LOOP --memory 1 --serial none
//! --stats` (timed from spawn to exit; also with `--no-seccomp` when the
//! binary has that flag, and with `--exit-plot`, whose exit counters must
//! stay within noise of the plain binary); and, to see where a difference
//! comes from, the
//! steps from (a) to (b):
//!
//! - `floor + 3 clock reads`: the floor loop reading the clock as vmm-cpu's
//!   run loop does for its statistics;
//! - `vmm-cpu run loop, null handler`: the floor's VM run by
//!   `vmm_cpu::Vcpu::run` with an exit handler that does nothing;
//! - `vmm-cpu loop + dispatcher/bus`: the same with vmm-core's
//!   `ExitDispatcher` over a bus holding the devices `VmBuilder` registers;
//!   then that with the host CPUID set on the vCPU as `VmBuilder` does, and
//!   that run on a thread of its own as `Vm::run` does;
//! - `VMM lib .seccomp(false)`: (b) without its seccomp filters.
//!
//! VM creation and teardown (about 1 ms here, and noisy) are cancelled by
//! running every variant at two guest sizes (`N_SMALL` and `N` exits) and
//! taking the slope. Each round runs every variant at both sizes, in an order
//! rotated from round to round, so drift hits all variants alike; the
//! overhead is the median over rounds of the per-round ratio
//! `slope(variant) / slope(floor)`.
//!
//! Each run reports wall time and CPU time (user + system of the process,
//! all threads). On an idle machine the two agree; on a busy one (these
//! hosts have 2 CPUs, shared with builds and tests) wall time also counts
//! the time other processes held the CPU, while CPU time does not, so the
//! CPU-time figures are the ones to trust then (the bench warns when the
//! floor's wall time per exit exceeds its CPU time by more than 5%).
//!
//! # 2. Process start to halt, and peak RSS
//!
//! `vmm-bin --kernel integration-tests/guests/hello.bin --reg rax=2 --reg
//! rbx=2` (the classic guest, 128 MiB by default), the same with
//! `--memory 1`, and the floor as a process (the same guest on bare
//! kvm-ioctls), interleaved. Time is from `spawn` to the parent's `wait4`
//! reaping the process. Peak RSS is measured in separate runs under GNU time
//! (`/usr/bin/time -f %M`); see [`peak_rss_kib`] for why not this process's
//! own `wait4` rusage.
//!
//! # 3. Guest memory touched
//!
//! The classic guest is run through the library with a probe device on an
//! unused port written just before `hlt`; while the vCPU waits in the probe,
//! a helper thread counts resident guest RAM pages with `mincore`. The VMM's
//! own memory is peak RSS minus that.
//!
//! # 4. Criterion
//!
//! One criterion benchmark per headline variant (floor, VMM library on both
//! ports, vmm-bin), one iteration = one whole VM run of
//! `EXIT_COST_CRITERION_N` exits (VM set-up included), with throughput in
//! exits, for baselines (`--save-baseline`, `--baseline`) across commits.
//! The time criterion sees is the run's CPU time (see above; vmm-bin's
//! includes its process start), or its wall time with
//! `EXIT_COST_CRITERION_CLOCK=wall`. Arguments after `--` go to criterion (a
//! filter, `--noplot`, ...).
//!
//! # Knobs (environment)
//!
//! `EXIT_COST_ROUNDS` (default 30), `EXIT_COST_N` (20000, at most 65535),
//! `EXIT_COST_N_SMALL` (2000), `EXIT_COST_VARIANTS` (comma-separated keys,
//! default all; the floor always runs), `EXIT_COST_PROC_RUNS` (20),
//! `EXIT_COST_RSS_RUNS` (5), `EXIT_COST_CRITERION_N` (10000),
//! `EXIT_COST_CRITERION_CLOCK` (`cpu` or `wall`), `EXIT_COST_CRITERION=0` to
//! skip section 4, `EXIT_COST_SUMMARY=PATH` to
//! also write the figures as `key=value` lines (used by `integration-tests/scripts/bench.sh`).

use std::error::Error;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use integration_tests::code_asm::{al, cx, CodeAssembler, IcedError};
use integration_tests::{assemble, vmm_bin, workspace_root, TempFile};
use kvm_bindings::{kvm_regs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_device::bus::{MmioAddress, PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};
use vmm_core::control::VmControl;
use vmm_core::cpu::Reg;
use vmm_core::cpu::{ExitHandler, ExitKind, Vcpu, VcpuStop};
use vmm_core::devices::legacy::CmosMemorySizes;
use vmm_core::devices::pc::{build_devices, DeviceSet, DeviceSetOptions, NoInterrupts};
use vmm_core::devices::Console;
use vmm_core::dispatch::ExitDispatcher;
use vmm_core::{VmBuilder, VmOutcome};

type Res<T> = Result<T, Box<dyn Error>>;

/// Where every guest is loaded and starts (CS=0, IP=0x1000), as in the
/// classic example and the VMM's default.
const LOAD: u64 = 0x1000;
/// Guest RAM of the floor VM; the VMM variants get 1 MiB too.
const FLOOR_MEM: usize = 1 << 20;
/// The unclaimed port of the port loop.
const PORT_UNCLAIMED: u8 = 0x10;
/// The POST-code port (a device that records each byte).
const PORT_POST: u8 = 0x80;
/// A free port for the resident-memory probe.
const PROBE_PORT: u8 = 0x99;
/// GNU time, for peak RSS (`apt-get install time`).
const TIME: &str = "/usr/bin/time";
/// No single VM or process may take longer than this.
const WATCHDOG: Duration = Duration::from_secs(120);
/// The environment variable that makes this binary a child.
const CHILD: &str = "EXIT_COST_CHILD";

fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.trim().parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

/// Assembles a 16-bit guest at [`LOAD`], reporting assembler errors.
fn asm16(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Res<Vec<u8>> {
    let mut err = None;
    let code = assemble(16, LOAD, |a| err = body(a).err());
    match err {
        Some(e) => Err(e.into()),
        None => Ok(code),
    }
}

/// `mov cx, n; mov al, 0x55; L: out port, al; loop L; hlt`: `n` port-I/O
/// exits, one emulated `loop` between two exits.
fn port_loop_guest(port: u8, n: u64) -> Res<Vec<u8>> {
    let n = u16::try_from(n)?;
    asm16(|a| {
        let mut top = a.create_label();
        a.mov(cx, i32::from(n))?;
        a.mov(al, 0x55)?;
        a.set_label(&mut top)?;
        a.out(i32::from(port), al)?;
        a.loop_(top)?;
        a.hlt()
    })
}

/// The classic guest's image (`guests/hello.bin` under integration-tests,
/// or at the workspace root where older trees kept it).
fn hello_path() -> Res<PathBuf> {
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/hello.bin"),
        workspace_root().join("guests/hello.bin"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("no hello.bin at {candidates:?}").into())
}

/// The classic guest: prints AL + BL on COM1, halts.
fn hello_guest() -> Res<Vec<u8>> {
    let path = hello_path()?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The floor: the classic loop directly on kvm-ioctls.

/// A VM of the floor. Field order is drop order: vCPU, VM, then the memory
/// KVM maps.
struct FloorVm<V> {
    vcpu: V,
    _vm: VmFd,
    _kvm: Kvm,
    _mem: GuestMemoryMmap,
}

/// One 1 MiB slot, `guest` at [`LOAD`], real mode with CS=0, IP=LOAD: the
/// classic example's set-up. `create` makes the vCPU (a bare `VcpuFd` for
/// the floor, a `vmm_cpu::Vcpu` for the attribution variants).
fn floor_vm<V>(
    guest: &[u8],
    rax: u64,
    rbx: u64,
    create: impl FnOnce(&VmFd) -> Res<V>,
    fd: impl FnOnce(&V) -> &VcpuFd,
) -> Res<FloorVm<V>> {
    let kvm = Kvm::new()?;
    let vm = kvm.create_vm()?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), FLOOR_MEM)])?;
    mem.write_slice(guest, GuestAddress(LOAD))?;
    let region = mem.iter().next().ok_or("guest memory has no region")?;
    let host = region.get_host_address(MemoryRegionAddress(0))?;
    let slot = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
    };
    // SAFETY: the slot covers exactly the live mapping `mem`, which is moved
    // into the returned `FloorVm` and dropped after the VM fd (field order).
    unsafe { vm.set_user_memory_region(slot) }?;
    let vcpu = create(&vm)?;
    let vcpu_fd = fd(&vcpu);
    let mut sregs = vcpu_fd.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu_fd.set_sregs(&sregs)?;
    vcpu_fd.set_regs(&kvm_regs {
        rip: LOAD,
        rflags: 2,
        rax,
        rbx,
        ..Default::default()
    })?;
    Ok(FloorVm {
        vcpu,
        _vm: vm,
        _kvm: kvm,
        _mem: mem,
    })
}

fn bare_vcpu(vm: &VmFd) -> Res<VcpuFd> {
    Ok(vm.create_vcpu(0)?)
}

fn vmm_cpu_vcpu(vm: &VmFd) -> Res<Vcpu> {
    Ok(Vcpu::new(vm, 0)?)
}

/// A vmm-cpu vCPU given the host-supported CPUID, as `VmBuilder` does
/// (straight through kvm-ioctls, without vmm-cpu's per-vCPU patching).
fn vmm_cpu_vcpu_with_cpuid(vm: &VmFd) -> Res<Vcpu> {
    let vcpu = Vcpu::new(vm, 0)?;
    let supported = Kvm::new()?.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
    vcpu.fd().set_cpuid2(&supported)?;
    Ok(vcpu)
}

/// Runs to `hlt`, handing every port write to `on_out`. With `TIMED`, reads
/// the clock exactly as the VMM's run loop does (two reads around KVM_RUN,
/// one after handling the exit). Returns the port exits.
fn floor_loop<const TIMED: bool>(
    vcpu: &mut VcpuFd,
    mut on_out: impl FnMut(u16, &[u8]),
) -> Res<u64> {
    let mut exits = 0u64;
    let mut run_time = Duration::ZERO;
    let mut handle_time = Duration::ZERO;
    loop {
        let entered = if TIMED { Some(Instant::now()) } else { None };
        let result = vcpu.run();
        let exited = if TIMED { Some(Instant::now()) } else { None };
        if let (Some(a), Some(b)) = (entered, exited) {
            run_time += b - a;
        }
        match result {
            Ok(VcpuExit::IoOut(port, data)) => {
                on_out(port, data);
                exits += 1;
            }
            Ok(VcpuExit::Hlt) => break,
            Ok(other) => return Err(format!("floor: unexpected exit {other:?}").into()),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(b) = exited {
            handle_time += b.elapsed();
        }
    }
    std::hint::black_box((run_time, handle_time));
    Ok(exits)
}

/// An exit handler that does nothing: the vmm-cpu run loop alone.
struct NullHandler;

impl ExitHandler for NullHandler {
    fn pio_read(&self, _: PioAddress, _: &mut [u8]) {}
    fn pio_write(&self, _: PioAddress, _: &[u8]) {}
    fn mmio_read(&self, _: MmioAddress, _: &mut [u8]) {}
    fn mmio_write(&self, _: MmioAddress, _: &[u8]) {}
}

/// vmm-core's exit dispatcher over the minimal platform's device set (UART,
/// debug-exit, debugcon, POST port), built by the same public call vmm-bin
/// makes (`vmm_devices::pc::build_devices`).
fn vmm_dispatcher() -> Res<ExitDispatcher> {
    let control = Arc::new(VmControl::new(None));
    let options = DeviceSetOptions {
        set: DeviceSet::Minimal,
        console: Console::discard(),
        events: control.clone(),
        memory: CmosMemorySizes {
            below_4g_end: 1 << 20,
            above_4g_size: 0,
        },
        print_post_codes: false,
        uart_input: false,
    };
    let devices = build_devices(options, &mut NoInterrupts)?;
    Ok(ExitDispatcher::new(devices.bus, control, false))
}

// ---------------------------------------------------------------------------
// The variants of section 1.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The floor: kvm-ioctls directly.
    Floor,
    /// The floor plus the VMM loop's clock reads.
    FloorClock,
    /// The floor's VM, run by vmm-cpu's `Vcpu::run` with a null handler.
    CpuLoop,
    /// The same with vmm-core's `ExitDispatcher` and a VMM-like bus.
    CpuDispatch,
    /// The same, the vCPU given the host's CPUID as `VmBuilder` does.
    CpuDispatchCpuid,
    /// `CpuDispatch` run on a thread of its own, as `Vm::run` does.
    CpuDispatchThread,
    /// The whole VMM through `VmBuilder`, the guest writing to this port.
    Vmm(u8),
    /// The same (port 0x10) with `.seccomp(false)`.
    VmmNoSeccomp,
    /// The `vmm-bin` process (port 0x10), optionally with `--no-seccomp`.
    VmmBin { no_seccomp: bool },
    /// `vmm-bin --exit-plot` (port 0x10): the per-kind, per-bucket exit
    /// counters on the exit path, and the SVG drawn at the end.
    VmmBinExitPlot,
}

impl Variant {
    const ALL: [Variant; 12] = [
        Variant::Floor,
        Variant::FloorClock,
        Variant::CpuLoop,
        Variant::CpuDispatch,
        Variant::CpuDispatchCpuid,
        Variant::CpuDispatchThread,
        Variant::Vmm(PORT_UNCLAIMED),
        Variant::Vmm(PORT_POST),
        Variant::VmmNoSeccomp,
        Variant::VmmBin { no_seccomp: false },
        Variant::VmmBin { no_seccomp: true },
        Variant::VmmBinExitPlot,
    ];

    fn name(self) -> String {
        match self {
            Variant::Floor => "(a) floor: kvm-ioctls loop".into(),
            Variant::FloorClock => "floor + 3 clock reads/exit".into(),
            Variant::CpuLoop => "vmm-cpu run loop, null handler".into(),
            Variant::CpuDispatch => "vmm-cpu loop + dispatcher/bus".into(),
            Variant::CpuDispatchCpuid => "  same + host CPUID set".into(),
            Variant::CpuDispatchThread => "  same on a vCPU thread".into(),
            Variant::Vmm(PORT_UNCLAIMED) => "(b) VMM lib, port 0x10 unclaimed".into(),
            Variant::Vmm(PORT_POST) => "(b) VMM lib, port 0x80 POST dev".into(),
            Variant::Vmm(p) => format!("(b) VMM lib, port {p:#x}"),
            Variant::VmmNoSeccomp => "VMM lib .seccomp(false), port 0x10".into(),
            Variant::VmmBin { no_seccomp: false } => "vmm-bin process, port 0x10".into(),
            Variant::VmmBin { no_seccomp: true } => "vmm-bin --no-seccomp, port 0x10".into(),
            Variant::VmmBinExitPlot => "vmm-bin --exit-plot, port 0x10".into(),
        }
    }

    fn key(self) -> String {
        match self {
            Variant::Floor => "floor".into(),
            Variant::FloorClock => "floor_clock".into(),
            Variant::CpuLoop => "cpu_loop".into(),
            Variant::CpuDispatch => "cpu_dispatch".into(),
            Variant::CpuDispatchCpuid => "cpu_dispatch_cpuid".into(),
            Variant::CpuDispatchThread => "cpu_dispatch_thread".into(),
            Variant::Vmm(p) => format!("vmm_{p:02x}"),
            Variant::VmmNoSeccomp => "vmm_10_noseccomp".into(),
            Variant::VmmBin { no_seccomp: false } => "vmm_bin".into(),
            Variant::VmmBin { no_seccomp: true } => "vmm_bin_noseccomp".into(),
            Variant::VmmBinExitPlot => "vmm_bin_exit_plot".into(),
        }
    }

    fn from_key(key: &str) -> Option<Variant> {
        Variant::ALL.iter().copied().find(|v| v.key() == key)
    }

    fn port(self) -> u8 {
        match self {
            Variant::Vmm(p) => p,
            _ => PORT_UNCLAIMED,
        }
    }

    /// Whether the run loop reports its own exit-handling time.
    fn has_handle_time(self) -> bool {
        !matches!(self, Variant::Floor | Variant::FloorClock)
    }
}

/// One run of the port loop.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// VM creation, run and teardown (vmm-bin: spawn to exit).
    total: Duration,
    /// The run loop alone: first KVM_RUN to `hlt` (vmm-cpu loops: the
    /// vCPU's time in KVM_RUN plus its time handling exits, as its
    /// statistics report).
    in_loop: Duration,
    /// Time handling exits in userspace as vmm-cpu measures it.
    handle: Duration,
    /// CPU time (user + system, all threads) over `total`; unlike wall
    /// time it does not grow while other processes hold the CPU.
    cpu: Duration,
}

/// User + system CPU time of this process so far (all its threads,
/// finished ones included). `clock_gettime`, not `getrusage`: the VMM's
/// seccomp filter (when on) leaves a thread that ran it `clock_gettime` but
/// not `getrusage`.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn rusage_cpu(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn check_exits(v: Variant, exits: u64, n: u64) -> Res<()> {
    if exits == n {
        Ok(())
    } else {
        Err(format!("{}: {exits} port exits, expected {n}", v.name()).into())
    }
}

/// Runs one variant in this process (a child): the floor and the
/// attribution steps, and the VMM library path.
fn run_in_child(v: Variant, n: u64) -> Res<Sample> {
    let guest = port_loop_guest(v.port(), n)?;
    let cpu0 = cpu_time();
    let mut sample = run_variant_here(v, n, guest)?;
    sample.cpu = cpu_time().saturating_sub(cpu0);
    Ok(sample)
}

fn run_variant_here(v: Variant, n: u64, guest: Vec<u8>) -> Res<Sample> {
    match v {
        Variant::Floor | Variant::FloorClock => {
            let t0 = Instant::now();
            let mut f = floor_vm(&guest, 0, 0, bare_vcpu, |v| v)?;
            let l0 = Instant::now();
            let exits = if v == Variant::Floor {
                floor_loop::<false>(&mut f.vcpu, |_, _| {})?
            } else {
                floor_loop::<true>(&mut f.vcpu, |_, _| {})?
            };
            let in_loop = l0.elapsed();
            drop(f);
            let total = t0.elapsed();
            check_exits(v, exits, n)?;
            Ok(Sample {
                total,
                in_loop,
                handle: Duration::ZERO,
                cpu: Duration::ZERO,
            })
        }
        Variant::CpuLoop
        | Variant::CpuDispatch
        | Variant::CpuDispatchCpuid
        | Variant::CpuDispatchThread => {
            let t0 = Instant::now();
            let mut f = if v == Variant::CpuDispatchCpuid {
                floor_vm(&guest, 0, 0, vmm_cpu_vcpu_with_cpuid, Vcpu::fd)?
            } else {
                floor_vm(&guest, 0, 0, vmm_cpu_vcpu, Vcpu::fd)?
            };
            let dispatcher = if v == Variant::CpuLoop {
                None
            } else {
                Some(vmm_dispatcher()?)
            };
            let vcpu = &mut f.vcpu;
            let stop = match &dispatcher {
                Some(d) if v == Variant::CpuDispatchThread => {
                    std::thread::scope(|sc| sc.spawn(|| vcpu.run(d)).join())
                        .map_err(|_| "vCPU thread panicked")??
                }
                Some(d) => vcpu.run(d)?,
                None => vcpu.run(&NullHandler)?,
            };
            let stats = f.vcpu.stats();
            drop(f);
            drop(dispatcher);
            let total = t0.elapsed();
            if stop != VcpuStop::Halted {
                return Err(format!("{}: {stop}", v.name()).into());
            }
            // vmm-cpu counts the final hlt exit too.
            check_exits(v, stats.exits.saturating_sub(1), n)?;
            Ok(Sample {
                total,
                in_loop: stats.run_time + stats.handle_time,
                handle: stats.handle_time,
                cpu: Duration::ZERO,
            })
        }
        Variant::Vmm(_) | Variant::VmmNoSeccomp => {
            let t0 = Instant::now();
            let report = VmBuilder::new()
                .seccomp(v != Variant::VmmNoSeccomp)
                .memory_mib(1)
                .kernel_bytes(guest)
                .console(Console::discard())
                .timeout(WATCHDOG)
                .build()?
                .run()?;
            let total = t0.elapsed();
            if report.outcome != (VmOutcome::Halted { vcpu: 0 }) {
                return Err(format!("{}: {}", v.name(), report.outcome).into());
            }
            let exits = report
                .stats
                .exits_by_kind
                .iter()
                .find(|(k, _)| *k == ExitKind::IoOut)
                .map_or(0, |(_, c)| *c);
            check_exits(v, exits, n)?;
            let (_, s) = report.stats.vcpus.first().ok_or("no vCPU statistics")?;
            Ok(Sample {
                total,
                in_loop: s.run_time + s.handle_time,
                handle: s.handle_time,
                cpu: Duration::ZERO,
            })
        }
        Variant::VmmBin { .. } | Variant::VmmBinExitPlot => {
            Err("vmm-bin runs are spawned by the parent".into())
        }
    }
}

/// The output of a finished child process.
struct Finished {
    wall: Duration,
    /// The child's user + system CPU time.
    cpu: Duration,
    /// `wait4` status.
    status: libc::c_int,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn exited_ok(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    fn describe(&self, cmd: &Command) -> String {
        format!(
            "{cmd:?}: wait status {:#x}, stdout {:?}, stderr {:?}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Spawns `cmd` and reaps it with `wait4`, killing it after [`WATCHDOG`].
/// `wall` is from just before `spawn` to the reaping.
fn spawn_wait(cmd: &mut Command) -> Res<Finished> {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = libc::pid_t::try_from(child.id())?;
    let (cancel, cancelled) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if cancelled.recv_timeout(WATCHDOG) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: plain kill(2) of our own child, not yet reaped (the
            // parent reaps it only after this wait ends or is cancelled).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct for which all zeroes is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = loop {
        // SAFETY: `pid` is our child, not reaped yet; `status` and `ru` are
        // valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            break Err(e);
        }
    };
    let wall = t0.elapsed();
    let _ = cancel.send(());
    let _ = watchdog.join();
    waited?;
    // The children here print a few lines at most: the pipes never fill.
    let mut stdout = String::new();
    if let Some(mut p) = child.stdout.take() {
        p.read_to_string(&mut stdout)?;
    }
    let mut stderr = String::new();
    if let Some(mut p) = child.stderr.take() {
        p.read_to_string(&mut stderr)?;
    }
    Ok(Finished {
        wall,
        cpu: rusage_cpu(&ru),
        status,
        stdout,
        stderr,
    })
}

/// This bench binary as a child doing `job`.
fn child_command(job: &str) -> Res<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.env(CHILD, job);
    Ok(c)
}

/// Runs `job` in a child and returns the numbers on its `result` line.
fn child_result(job: &str) -> Res<Vec<u64>> {
    let mut cmd = child_command(job)?;
    let done = spawn_wait(&mut cmd)?;
    let line = done
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .filter(|_| done.exited_ok())
        .ok_or_else(|| done.describe(&cmd))?;
    line.split_whitespace()
        .map(|w| {
            w.parse::<u64>()
                .map_err(|e| format!("{line:?}: {e}").into())
        })
        .collect()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The port-loop guests written to files, for `vmm-bin`.
struct GuestFiles(Vec<(u64, TempFile)>);

impl GuestFiles {
    fn path(&self, n: u64) -> Res<&str> {
        self.0
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, f)| f.path())
            .ok_or_else(|| format!("no guest file for N={n}").into())
    }
}

/// Parses `vmm-bin --stats`: the port-write exits and vCPU 0's time in
/// KVM_RUN and handling exits (ms).
fn parse_stats(stderr: &str) -> (Option<u64>, Option<f64>, Option<f64>) {
    let mut io_out = None;
    let (mut run_ms, mut handle_ms) = (None, None);
    for line in stderr.lines().map(str::trim) {
        // `io_out   N` under "exits by kind" (later sections may repeat the
        // name with other fields).
        if let Some(rest) = line.strip_prefix("io_out") {
            io_out = io_out.or(rest.trim().parse().ok());
        }
        if line.starts_with("vcpu 0:") {
            for word in line.split_whitespace() {
                let ms = |w: &str, key: &str| {
                    w.strip_prefix(key)
                        .and_then(|v| v.trim_end_matches("ms").parse::<f64>().ok())
                };
                run_ms = run_ms.or(ms(word, "in_kvm_run="));
                handle_ms = handle_ms.or(ms(word, "handling_exits="));
            }
        }
    }
    (io_out, run_ms, handle_ms)
}

/// One measurement of `v` at `n` exits, in a fresh process.
fn measure(v: Variant, n: u64, files: &GuestFiles) -> Res<Sample> {
    match v {
        Variant::VmmBin { .. } | Variant::VmmBinExitPlot => {
            let mut cmd = Command::new(vmm_bin());
            cmd.args([
                "--kernel",
                files.path(n)?,
                "--memory",
                "1",
                "--serial",
                "none",
            ])
            .arg("--stats");
            if v == (Variant::VmmBin { no_seccomp: true }) {
                cmd.arg("--no-seccomp");
            }
            let plot = std::env::temp_dir().join(format!("exit-cost-{}.svg", std::process::id()));
            if v == Variant::VmmBinExitPlot {
                cmd.arg("--exit-plot").arg(&plot);
            }
            let done = spawn_wait(&mut cmd)?;
            if v == Variant::VmmBinExitPlot {
                // The picture must have been drawn, or the variant measured
                // nothing of what it is for.
                let svg = std::fs::read_to_string(&plot).unwrap_or_default();
                let _ = std::fs::remove_file(&plot);
                if !svg.contains("<svg") {
                    return Err(format!("--exit-plot wrote no SVG to {}", plot.display()).into());
                }
            }
            let (io_out, run_ms, handle_ms) = parse_stats(&done.stderr);
            if !done.exited_ok() {
                return Err(done.describe(&cmd).into());
            }
            check_exits(v, io_out.unwrap_or(0), n)?;
            let ms = |x: Option<f64>| Duration::from_secs_f64(x.unwrap_or(f64::NAN).max(0.0) / 1e3);
            Ok(Sample {
                total: done.wall,
                in_loop: match (run_ms, handle_ms) {
                    (Some(r), Some(h)) => ms(Some(r + h)),
                    _ => Duration::ZERO,
                },
                handle: ms(handle_ms),
                cpu: done.cpu,
            })
        }
        _ => {
            let r = child_result(&format!("run {} {n}", v.key()))?;
            let [total, in_loop, handle, cpu] = r[..] else {
                return Err(format!("child reported {r:?}").into());
            };
            Ok(Sample {
                total: Duration::from_nanos(total),
                in_loop: Duration::from_nanos(in_loop),
                handle: Duration::from_nanos(handle),
                cpu: Duration::from_nanos(cpu),
            })
        }
    }
}

/// Whether this `vmm-bin` has `flag` (`--help` names it).
fn vmm_bin_has_flag(flag: &str) -> bool {
    Command::new(vmm_bin())
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

/// `EXIT_COST_VARIANTS`: comma-separated variant keys (the floor is always
/// run first); all by default.
fn selected_variants() -> Res<Vec<Variant>> {
    let mut out = vec![Variant::Floor];
    match std::env::var("EXIT_COST_VARIANTS") {
        Err(_) => out.extend(Variant::ALL.iter().skip(1)),
        Ok(list) => {
            for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                let v = Variant::from_key(key).ok_or_else(|| {
                    let keys: Vec<String> = Variant::ALL.iter().map(|v| v.key()).collect();
                    format!(
                        "EXIT_COST_VARIANTS: unknown {key:?}; known: {}",
                        keys.join(",")
                    )
                })?;
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    if out.contains(&Variant::VmmBin { no_seccomp: true }) && !vmm_bin_has_flag("--no-seccomp") {
        println!("  (vmm-bin has no --no-seccomp flag: that variant is left out)");
        out.retain(|v| *v != Variant::VmmBin { no_seccomp: true });
    }
    if out.contains(&Variant::VmmBinExitPlot) && !vmm_bin_has_flag("--exit-plot") {
        println!("  (vmm-bin has no --exit-plot flag: that variant is left out)");
        out.retain(|v| *v != Variant::VmmBinExitPlot);
    }
    Ok(out)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `q` quantile (0..=1) of `xs`, linearly interpolated.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// Per-round measurements of one variant, in microseconds.
#[derive(Default)]
struct Rounds {
    /// Slope of the whole VM run: (T(N) - T(N_SMALL)) / (N - N_SMALL).
    slope: Vec<f64>,
    /// Slope of the run loop alone.
    loop_slope: Vec<f64>,
    /// Fixed cost: T(N_SMALL) - N_SMALL * slope (VM set-up and teardown).
    fixed: Vec<f64>,
    /// Userspace handling per exit as vmm-cpu measures it, at N.
    handle: Vec<f64>,
    /// slope / slope(floor) of the same round.
    ratio: Vec<f64>,
    /// loop_slope / loop_slope(floor) of the same round.
    loop_ratio: Vec<f64>,
    /// Slope of CPU time.
    cpu_slope: Vec<f64>,
    /// cpu_slope / cpu_slope(floor) of the same round.
    cpu_ratio: Vec<f64>,
}

fn measure_exit_cost(
    variants: &[Variant],
    rounds: u64,
    n_small: u64,
    n_large: u64,
) -> Res<Vec<(Variant, Rounds)>> {
    let mut files = Vec::new();
    for n in [n_small, n_large] {
        files.push((
            n,
            TempFile::with_bytes(&port_loop_guest(PORT_UNCLAIMED, n)?),
        ));
    }
    let files = GuestFiles(files);
    // Warm-up: page cache, dynamic loader, CPU frequency.
    for &v in variants {
        measure(v, n_small, &files)?;
    }
    let mut rows: Vec<(Variant, Rounds)> =
        variants.iter().map(|v| (*v, Rounds::default())).collect();
    let dn = (n_large - n_small) as f64;
    print!("  rounds:");
    for r in 0..rounds as usize {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        order.rotate_left(r % variants.len());
        if r % 2 == 1 {
            order.reverse();
        }
        let mut per_round = vec![(Sample::default(), Sample::default()); variants.len()];
        for &i in &order {
            let v = variants[i];
            // Alternate which size goes first.
            if r % 2 == 0 {
                per_round[i].0 = measure(v, n_small, &files)?;
                per_round[i].1 = measure(v, n_large, &files)?;
            } else {
                per_round[i].1 = measure(v, n_large, &files)?;
                per_round[i].0 = measure(v, n_small, &files)?;
            }
        }
        let slopes = |(s, l): (Sample, Sample)| {
            (
                (us(l.total) - us(s.total)) / dn,
                (us(l.in_loop) - us(s.in_loop)) / dn,
                (us(l.cpu) - us(s.cpu)) / dn,
            )
        };
        let (floor_slope, floor_loop_slope, floor_cpu_slope) = slopes(per_round[0]);
        for (i, (_, rows_v)) in rows.iter_mut().enumerate() {
            let (s, l) = per_round[i];
            let (slope, loop_slope, cpu_slope) = slopes(per_round[i]);
            rows_v.cpu_slope.push(cpu_slope);
            rows_v.cpu_ratio.push(cpu_slope / floor_cpu_slope);
            rows_v.slope.push(slope);
            rows_v.loop_slope.push(loop_slope);
            rows_v
                .fixed
                .push((us(s.total) - slope * n_small as f64) / 1e3);
            rows_v.handle.push(us(l.handle) / n_large as f64);
            rows_v.ratio.push(slope / floor_slope);
            rows_v.loop_ratio.push(loop_slope / floor_loop_slope);
        }
        print!(" {}", r + 1);
        let _ = std::io::stdout().flush();
    }
    println!();
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Section 2: processes.

/// The child side of the floor process: the classic guest on bare
/// kvm-ioctls, printing what it writes to COM1.
fn floor_hello_process() -> Res<()> {
    let guest = hello_guest()?;
    let mut f = floor_vm(&guest, 2, 2, bare_vcpu, |v| v)?;
    let mut out = Vec::new();
    floor_loop::<false>(&mut f.vcpu, |port, data| {
        if port == 0x3f8 {
            out.extend_from_slice(data);
        }
    })?;
    drop(f);
    std::io::stdout().write_all(&out)?;
    Ok(())
}

/// One process measured in section 2.
struct ProcRow {
    label: &'static str,
    key: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Makes this bench binary run the floor child.
    floor_child: bool,
    expect_stdout: &'static str,
    /// Whether its start-to-halt time is measured (else only its RSS).
    timed: bool,
    /// Spawn-to-reap times.
    wall: Vec<Duration>,
    /// The process's CPU time (user + system) in the same runs.
    cpu: Vec<Duration>,
    /// Peak RSS (KiB) of runs under GNU time; empty if it is missing.
    rss: Vec<u64>,
}

impl ProcRow {
    fn command(&self, wrapper: Option<(&str, &Path)>) -> Command {
        let mut c = match wrapper {
            Some((time, out)) => {
                let mut c = Command::new(time);
                c.arg("-f").arg("%M").arg("-o").arg(out).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        c.args(&self.args);
        if self.floor_child {
            c.env(CHILD, "floor-hello");
        }
        c
    }

    /// Runs it once (under `wrapper` if given) and checks its output.
    fn run(&self, wrapper: Option<(&str, &Path)>) -> Res<Finished> {
        let mut cmd = self.command(wrapper);
        let done = spawn_wait(&mut cmd)?;
        if !done.exited_ok() || done.stdout != self.expect_stdout {
            return Err(format!(
                "expected stdout {:?}: {}",
                self.expect_stdout,
                done.describe(&cmd)
            )
            .into());
        }
        Ok(done)
    }
}

fn measure_processes(runs: u64, rss_runs: u64) -> Res<Vec<ProcRow>> {
    let hello = hello_path()?;
    let hello = hello.to_str().ok_or("non-UTF-8 workspace path")?;
    let classic: Vec<String> = ["--kernel", hello, "--reg", "rax=2", "--reg", "rbx=2"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let row = |label, key, program: PathBuf, args: Vec<String>| ProcRow {
        label,
        key,
        program,
        args,
        floor_child: false,
        expect_stdout: "4\n",
        timed: true,
        wall: Vec::new(),
        cpu: Vec::new(),
        rss: Vec::new(),
    };
    let mut rows = vec![
        row(
            "vmm-bin classic (default --memory 128)",
            "proc_vmm_mem128",
            vmm_bin().to_path_buf(),
            classic.clone(),
        ),
        row(
            "vmm-bin classic --memory 1",
            "proc_vmm_mem1",
            vmm_bin().to_path_buf(),
            [&classic[..], &["--memory".to_string(), "1".to_string()]].concat(),
        ),
        ProcRow {
            floor_child: true,
            ..row(
                "floor process (kvm-ioctls, 1 MiB)",
                "proc_floor",
                std::env::current_exe()?,
                Vec::new(),
            )
        },
        ProcRow {
            expect_stdout: "",
            timed: false,
            ..row(
                "/bin/true (the RSS method's floor)",
                "proc_true",
                PathBuf::from("/bin/true"),
                Vec::new(),
            )
        },
    ];
    let timed: Vec<usize> = (0..rows.len()).filter(|i| rows[*i].timed).collect();
    // Warm-up (page cache, dynamic loader).
    for row in rows.iter().filter(|r| r.timed) {
        row.run(None)?;
    }
    for r in 0..runs as usize {
        let mut order = timed.clone();
        order.rotate_left(r % timed.len());
        for i in order {
            let done = rows[i].run(None)?;
            rows[i].wall.push(done.wall);
            rows[i].cpu.push(done.cpu);
        }
    }
    if Path::new(TIME).exists() {
        for _ in 0..rss_runs {
            for row in rows.iter_mut() {
                let kib = peak_rss_kib(row)?;
                row.rss.push(kib);
            }
        }
    } else {
        println!("  ({TIME} not found: no peak RSS; install it with `apt-get install -y time`)");
    }
    Ok(rows)
}

/// Peak RSS in KiB of `row`'s process, as GNU time reports it (`%M`). Why
/// not `ru_maxrss` from this bench's own `wait4`: Linux folds the peak RSS
/// of the mm a process had before `execve` into its maximum, and a child
/// spawned from here starts on this (larger) process's mm; GNU time forks
/// from a small process, and `/bin/true` under it shows that floor.
fn peak_rss_kib(row: &ProcRow) -> Res<u64> {
    static N: AtomicU64 = AtomicU64::new(0);
    let out = std::env::temp_dir().join(format!(
        "exit-cost-rss-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = row.run(Some((TIME, &out))).and_then(|_| {
        let text = std::fs::read_to_string(&out)?;
        let last = text.lines().last().unwrap_or("").trim().to_string();
        last.parse::<u64>()
            .map_err(|e| format!("{TIME} -f %M wrote {text:?}: {e}").into())
    });
    let _ = std::fs::remove_file(&out);
    result
}

// ---------------------------------------------------------------------------
// Section 3: guest memory touched.

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

fn resident_pages(regions: &[(usize, usize)]) -> std::io::Result<u64> {
    let page = usize::try_from(page_size()).unwrap_or(4096);
    let mut n = 0u64;
    for &(addr, len) in regions {
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: [addr, addr + len) is a page-aligned mapping of guest RAM
        // that is alive: its VM is running the guest that is waiting for this
        // count; `vec` holds one byte per page.
        let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        n += vec.iter().filter(|b| **b & 1 != 0).count() as u64;
    }
    Ok(n)
}

#[derive(Default)]
struct ProbeState {
    regions: Vec<(usize, usize)>,
    requested: bool,
    result: Option<Result<u64, String>>,
    quit: bool,
}

/// A port device that, when written, holds the vCPU until a helper thread
/// has counted the resident guest pages. The count runs on the helper (a
/// thread started before the VM runs) because the VMM may confine its own
/// threads to a system-call list that has no `mincore`.
#[derive(Default)]
struct ResidentProbe {
    state: Mutex<ProbeState>,
    cv: Condvar,
}

impl ResidentProbe {
    fn helper(&self) {
        let mut st = lock(&self.state);
        while !st.quit {
            if st.requested && st.result.is_none() {
                st.result = Some(resident_pages(&st.regions).map_err(|e| e.to_string()));
                self.cv.notify_all();
            }
            st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn quit(&self) {
        lock(&self.state).quit = true;
        self.cv.notify_all();
    }
}

impl DevicePio for ResidentProbe {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0);
    }

    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, _: &[u8]) {
        let mut st = lock(&self.state);
        st.requested = true;
        self.cv.notify_all();
        while st.result.is_none() && !st.quit {
            st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Resident guest pages (after load, and just before `hlt`) for the classic
/// guest run through the library with `mib` MiB of RAM. Runs in a child.
fn guest_pages_touched(mib: u64) -> Res<(u64, u64)> {
    let mut guest = hello_guest()?;
    if guest.pop() != Some(0xf4) {
        return Err("hello.bin no longer ends with hlt".into());
    }
    guest.extend_from_slice(&[0xe6, PROBE_PORT, 0xf4]); // out PROBE_PORT, al; hlt
    let probe = Arc::new(ResidentProbe::default());
    let console = Console::memory();
    let vm = VmBuilder::new()
        .memory_mib(mib)
        .kernel_bytes(guest)
        .reg(Reg::Rax, 2)
        .reg(Reg::Rbx, 2)
        .console(console.clone())
        .pio_device("resident-probe", u16::from(PROBE_PORT), 1, probe.clone())
        .timeout(WATCHDOG)
        .build()?;
    let mut regions = Vec::new();
    for r in vm.memory().iter() {
        let host = r.get_host_address(MemoryRegionAddress(0))?;
        regions.push((host as usize, usize::try_from(r.len())?));
    }
    let after_load = resident_pages(&regions)?;
    lock(&probe.state).regions = regions;
    let helper = {
        let probe = probe.clone();
        std::thread::spawn(move || probe.helper())
    };
    let report = vm.run();
    probe.quit();
    let _ = helper.join();
    let report = report?;
    if report.outcome != (VmOutcome::Halted { vcpu: 0 }) || console.captured() != b"4\n" {
        return Err(format!("probe run: {} / {:?}", report.outcome, console.captured()).into());
    }
    let at_halt = lock(&probe.state)
        .result
        .clone()
        .ok_or("the guest never reached the probe")??;
    Ok((after_load, at_halt))
}

// ---------------------------------------------------------------------------
// Section 4: criterion.

fn criterion_section(variants: &[Variant], n: u64, cpu_clock: bool) -> Res<()> {
    let files = vec![(
        n,
        TempFile::with_bytes(&port_loop_guest(PORT_UNCLAIMED, n)?),
    )];
    let files = GuestFiles(files);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut group = c.benchmark_group("port_loop");
    group
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(n));
    let headline = |v: &&Variant| {
        matches!(
            v,
            Variant::Floor | Variant::Vmm(_) | Variant::VmmBin { no_seccomp: false }
        )
    };
    for &v in variants.iter().filter(headline) {
        group.bench_function(format!("{}/{n}", v.key()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    match measure(v, n, &files) {
                        Ok(s) if cpu_clock => total += s.cpu,
                        Ok(s) => total += s.total,
                        Err(e) => {
                            eprintln!("exit_cost: {}: {e}", v.name());
                            std::process::exit(1);
                        }
                    }
                }
                total
            });
        });
    }
    group.finish();
    c.final_summary();
    Ok(())
}

// ---------------------------------------------------------------------------

/// Figures collected for `EXIT_COST_SUMMARY`.
static SUMMARY: OnceLock<Mutex<String>> = OnceLock::new();

fn record(key: &str, value: impl std::fmt::Display) {
    let mut s = lock(SUMMARY.get_or_init(Mutex::default));
    let _ = writeln!(s, "{key}={value}");
}

fn pct(ratio: f64) -> f64 {
    (ratio - 1.0) * 100.0
}

fn report_exit_cost(rows: &[(Variant, Rounds)]) {
    let spread = |xs: &[f64]| {
        format!(
            "{:+.2}% [{:+.2}, {:+.2}]",
            pct(median(xs)),
            pct(quantile(xs, 0.25)),
            pct(quantile(xs, 0.75))
        )
    };
    let or_dash = |show: bool, s: String| if show { s } else { "-".to_string() };
    println!("  per exit, wall time:");
    println!(
        "  {:<32} {:>8} {:>24} {:>8} {:>9}",
        "variant", "us/exit", "vs floor [p25, p75]", "loop us", "loop vs"
    );
    for (v, r) in rows {
        let not_floor = *v != Variant::Floor;
        println!(
            "  {:<32} {:>8.3} {:>24} {:>8.3} {:>9}",
            v.name(),
            median(&r.slope),
            or_dash(not_floor, spread(&r.ratio)),
            median(&r.loop_slope),
            or_dash(not_floor, format!("{:+.2}%", pct(median(&r.loop_ratio)))),
        );
    }
    println!("  per exit, CPU time (user + system of the process; immune to other processes taking the CPU):");
    println!(
        "  {:<32} {:>8} {:>24} {:>9} {:>8}",
        "variant", "us/exit", "vs floor [p25, p75]", "handle us", "fixed ms"
    );
    for (v, r) in rows {
        let not_floor = *v != Variant::Floor;
        println!(
            "  {:<32} {:>8.3} {:>24} {:>9} {:>8.2}",
            v.name(),
            median(&r.cpu_slope),
            or_dash(not_floor, spread(&r.cpu_ratio)),
            or_dash(v.has_handle_time(), format!("{:.3}", median(&r.handle))),
            median(&r.fixed)
        );
    }
    println!("  us/exit: slope between the two sizes of the time from VM creation to teardown (vmm-bin: spawn to exit), median of rounds");
    println!("  vs floor: median [quartiles] over rounds of (this variant's slope / the floor's slope in the same round) - 1");
    println!("  loop: the same for the run loop alone (floor: first KVM_RUN..hlt; vmm-cpu loops: their run + handle time)");
    println!("  handle: userspace us/exit as vmm-cpu's own statistics measure it; fixed: wall ms outside the per-exit slope");
    if let Some((_, floor)) = rows.first() {
        let busy = pct(median(&floor.slope) / median(&floor.cpu_slope));
        record("busy_pct", format!("{busy:.1}"));
        if busy > 5.0 {
            println!(
                "  WARNING: the machine was busy: the floor's wall time per exit is {busy:.0}% above its CPU time, so \
                 wall figures include time other processes held the CPU; trust the CPU-time figures"
            );
        }
    }
    for (v, r) in rows {
        let k = v.key();
        record(
            &format!("{k}_us_per_exit"),
            format!("{:.3}", median(&r.slope)),
        );
        record(
            &format!("{k}_loop_us_per_exit"),
            format!("{:.3}", median(&r.loop_slope)),
        );
        record(
            &format!("{k}_cpu_us_per_exit"),
            format!("{:.3}", median(&r.cpu_slope)),
        );
        record(&format!("{k}_fixed_ms"), format!("{:.3}", median(&r.fixed)));
        if *v != Variant::Floor {
            for (name, xs) in [
                ("", &r.ratio),
                ("loop_", &r.loop_ratio),
                ("cpu_", &r.cpu_ratio),
            ] {
                record(
                    &format!("{k}_{name}overhead_pct"),
                    format!("{:.2}", pct(median(xs))),
                );
                record(
                    &format!("{k}_{name}overhead_p25_pct"),
                    format!("{:.2}", pct(quantile(xs, 0.25))),
                );
                record(
                    &format!("{k}_{name}overhead_p75_pct"),
                    format!("{:.2}", pct(quantile(xs, 0.75))),
                );
            }
        }
        if v.has_handle_time() {
            record(
                &format!("{k}_handle_us_per_exit"),
                format!("{:.3}", median(&r.handle)),
            );
        }
        if matches!(
            v,
            Variant::Vmm(_)
                | Variant::VmmNoSeccomp
                | Variant::VmmBin { .. }
                | Variant::VmmBinExitPlot
        ) {
            let (wall, cpu) = (pct(median(&r.ratio)), pct(median(&r.cpu_ratio)));
            let verdict = |p: f64| if p <= 5.0 { "meets" } else { "MISSES" };
            println!(
                "  target (at most 5% over the floor per exit): {}: CPU {cpu:+.2}% {} it, wall {wall:+.2}% {} it",
                v.name(),
                verdict(cpu),
                verdict(wall),
            );
        }
    }
}

fn report_processes(rows: &[ProcRow], proc_runs: u64, rss_runs: u64) {
    println!(
        "  {:<40} {:>10} {:>8} {:>8} {:>8} {:>13}",
        "process", "median ms", "p10", "p90", "CPU ms", "peak RSS KiB"
    );
    let cell = |x: f64, prec: usize| {
        if x.is_finite() {
            format!("{x:.prec$}")
        } else {
            "-".to_string()
        }
    };
    let ms = |ds: &[Duration]| -> Vec<f64> { ds.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
    for row in rows {
        let (wall, cpu) = (ms(&row.wall), ms(&row.cpu));
        let rss: Vec<f64> = row.rss.iter().map(|k| *k as f64).collect();
        let key = row.key;
        println!(
            "  {:<40} {:>10} {:>8} {:>8} {:>8} {:>13}",
            row.label,
            cell(median(&wall), 2),
            cell(quantile(&wall, 0.1), 2),
            cell(quantile(&wall, 0.9), 2),
            cell(median(&cpu), 2),
            cell(median(&rss), 0)
        );
        if !wall.is_empty() {
            record(&format!("{key}_median_ms"), format!("{:.3}", median(&wall)));
            record(
                &format!("{key}_p10_ms"),
                format!("{:.3}", quantile(&wall, 0.1)),
            );
            record(
                &format!("{key}_p90_ms"),
                format!("{:.3}", quantile(&wall, 0.9)),
            );
            record(&format!("{key}_cpu_ms"), format!("{:.3}", median(&cpu)));
        }
        if !rss.is_empty() {
            record(&format!("{key}_maxrss_kib"), format!("{:.0}", median(&rss)));
        }
    }
    println!("  ms: spawn() to wait4() reaping the process, {proc_runs} runs each (not under GNU time); CPU: its user + system time, median");
    println!(
        "  peak RSS: median of {rss_runs} runs under `{TIME} -f %M` (maximum resident set, KiB)"
    );
}

fn real_main() -> Res<()> {
    let rounds = env_u64("EXIT_COST_ROUNDS", 30)?.max(1);
    let n_large = env_u64("EXIT_COST_N", 20_000)?;
    let n_small = env_u64("EXIT_COST_N_SMALL", 2_000)?;
    let proc_runs = env_u64("EXIT_COST_PROC_RUNS", 20)?.max(1);
    let rss_runs = env_u64("EXIT_COST_RSS_RUNS", 5)?.max(1);
    let crit_n = env_u64("EXIT_COST_CRITERION_N", 10_000)?;
    let criterion = env_u64("EXIT_COST_CRITERION", 1)? != 0;
    let criterion_wall = std::env::var("EXIT_COST_CRITERION_CLOCK").as_deref() == Ok("wall");
    if n_small >= n_large || n_large > 65_535 || crit_n == 0 || crit_n > 65_535 {
        return Err(
            "need 0 < EXIT_COST_N_SMALL < EXIT_COST_N <= 65535 and EXIT_COST_CRITERION_N <= 65535"
                .into(),
        );
    }
    // Build vmm-bin (if needed) before anything is timed.
    let bin = vmm_bin();
    println!("vmm-bin: {}", bin.display());

    println!();
    println!(
        "== 1. cost per port-I/O exit: same guest, {rounds} interleaved rounds, N = {n_small} and {n_large} exits =="
    );
    let variants = selected_variants()?;
    let rows = measure_exit_cost(&variants, rounds, n_small, n_large)?;
    report_exit_cost(&rows);

    println!();
    println!("== 2. process start to halt, classic guest (hello.bin, rax=2 rbx=2), interleaved ==");
    let procs = measure_processes(proc_runs, rss_runs)?;
    report_processes(&procs, proc_runs, rss_runs);

    println!();
    println!("== 3. guest memory touched (classic guest via the library; mincore on guest RAM) ==");
    let page_kib = page_size() / 1024;
    let mut touched_kib = Vec::new();
    for mib in [1u64, 128] {
        let r = child_result(&format!("touched {mib}"))?;
        let [after_load, at_halt] = r[..] else {
            return Err(format!("touched child reported {r:?}").into());
        };
        let kib = at_halt * page_kib;
        println!(
            "  --memory {mib:>3}: resident guest pages after load {after_load}, just before hlt {at_halt} ({kib} KiB)"
        );
        record(&format!("guest_touched_mem{mib}_kib"), kib);
        touched_kib.push((mib, kib));
    }
    for row in &procs {
        let Some(mib) = row.key.strip_prefix("proc_vmm_mem") else {
            continue;
        };
        let mib: u64 = mib.parse()?;
        let guest = touched_kib.iter().find(|(m, _)| *m == mib).map(|(_, k)| *k);
        let (Some(guest), false) = (guest, row.rss.is_empty()) else {
            continue;
        };
        let rss = median(&row.rss.iter().map(|k| *k as f64).collect::<Vec<_>>());
        let own = rss - guest as f64;
        println!(
            "  {}: VMM's own memory = peak RSS {rss:.0} KiB - guest {guest} KiB = {own:.0} KiB",
            row.label
        );
        record(&format!("{}_own_kib", row.key), format!("{own:.0}"));
    }

    if let Ok(path) = std::env::var("EXIT_COST_SUMMARY") {
        let text = lock(SUMMARY.get_or_init(Mutex::default)).clone();
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    }

    if criterion {
        println!();
        println!(
            "== 4. criterion: one iteration = one VM run of {crit_n} exits (VM set-up included), {} time ==",
            if criterion_wall { "wall" } else { "CPU" }
        );
        criterion_section(&variants, crit_n, !criterion_wall)?;
    }
    Ok(())
}

/// The child side: `run KEY N`, `touched MIB` or `floor-hello`.
fn child_main(job: &str) -> Res<()> {
    let words: Vec<&str> = job.split_whitespace().collect();
    match words[..] {
        ["run", key, n] => {
            let v = Variant::from_key(key).ok_or_else(|| format!("unknown variant {key}"))?;
            let s = run_in_child(v, n.parse()?)?;
            println!(
                "result {} {} {} {}",
                nanos(s.total),
                nanos(s.in_loop),
                nanos(s.handle),
                nanos(s.cpu)
            );
        }
        ["touched", mib] => {
            let (after_load, at_halt) = guest_pages_touched(mib.parse()?)?;
            println!("result {after_load} {at_halt}");
        }
        ["floor-hello"] => floor_hello_process()?,
        _ => return Err(format!("unknown child job {job:?}").into()),
    }
    Ok(())
}

fn main() {
    if let Ok(job) = std::env::var(CHILD) {
        if let Err(e) = child_main(&job) {
            eprintln!("exit_cost child ({job}): {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = real_main() {
        eprintln!("exit_cost: error: {e}");
        std::process::exit(1);
    }
}
