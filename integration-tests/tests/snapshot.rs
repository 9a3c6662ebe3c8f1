//! Snapshots: a guest paused, snapshotted through the VM handle and
//! stopped, then restored in a new `vmm-bin` process, continues exactly
//! where it stopped (no lost or repeated output); the UART's registers,
//! the PC platform's interrupt controllers and timer, the guest's RAM and
//! kvmclock, a second vCPU and a virtio transport survive; diff snapshots
//! carry exactly the pages written since the last one; damaged snapshot
//! files of every kind are refused with status 2 before any guest runs.
//!
//! The first VM runs in this process with seccomp on (on its own thread),
//! so the snapshot path runs under the vCPU and main-thread filters.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use integration_tests::guest_asm::{idt_gate64, kvmclock_guest};
use integration_tests::{assemble, expect_bad_input, require_kvm, run_vmm, target_dir, Output};
use vmm_bin::exit_status;
use vmm_core::config::{BootConfig, KernelImage, RawBoot};
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{
    HostOptions, Platform, SnapshotError, SnapshotInfo, SnapshotKind, SnapshotRequest, Vm,
    VmBuilder, VmConfig, VmHandle, VmOutcome, VmmError,
};

const LOAD: u64 = 0x1000;

/// Long mode at CPL0: writes 0, 1, 2, ... (mod 256) to the debug console
/// forever, the count in AL.
fn counting_guest() -> Vec<u8> {
    assemble(64, LOAD, |a| {
        a.xor(eax, eax).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(0xe9, al).unwrap();
        a.inc(al).unwrap();
        a.jmp(top).unwrap();
    })
}

/// Where the memory-counting guest keeps its count.
const COUNTER: u64 = 0x6000;

/// Like [`counting_guest`], but the count lives in guest RAM (so only a
/// correct memory file continues it).
fn memory_counting_guest() -> Vec<u8> {
    assemble(64, LOAD, |a| {
        a.mov(byte_ptr(COUNTER), 0).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.mov(al, byte_ptr(COUNTER)).unwrap();
        a.out(0xe9, al).unwrap();
        a.inc(al).unwrap();
        a.mov(byte_ptr(COUNTER), al).unwrap();
        a.jmp(top).unwrap();
    })
}

/// Writes 1, 2, 3, ... to COM1 with the polled THR/LSR protocol, keeping
/// the count in the UART's scratch register: only a restored UART
/// continues it.
fn uart_guest() -> Vec<u8> {
    assemble(64, LOAD, |a| {
        a.mov(dx, 0x3ff).unwrap();
        a.xor(eax, eax).unwrap();
        a.out(dx, al).unwrap();
        let mut top = a.create_label();
        let mut wait = a.create_label();
        a.set_label(&mut top).unwrap();
        a.mov(dx, 0x3ff).unwrap(); // SCR
        a.in_(al, dx).unwrap();
        a.inc(al).unwrap();
        a.out(dx, al).unwrap();
        a.mov(bl, al).unwrap();
        a.mov(dx, 0x3fd).unwrap(); // LSR
        a.set_label(&mut wait).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x20).unwrap(); // THRE
        a.jz(wait).unwrap();
        a.mov(al, bl).unwrap();
        a.mov(dx, 0x3f8).unwrap(); // THR
        a.out(dx, al).unwrap();
        a.jmp(top).unwrap();
    })
}

const IDTR: u64 = 0x1bf0;
const IDT: u64 = 0x1c00;
const TIMER: u64 = 0x1800;
const FAULT: u64 = 0x1900;
const SPURIOUS: u64 = 0x1a00;
const TICKS: u64 = 0x6000;

/// PC platform: the PICs remapped to 0x20, only IRQ 0 open, the PIT at
/// ~1 kHz; each timer interrupt adds one to a byte in RAM and writes it to
/// the debug console; the main loop only halts. An exception ends the VM
/// through debug-exit (status 0xff).
fn pit_guest() -> Vec<u8> {
    let main = assemble(64, LOAD, |a| {
        a.mov(rsp, 0x7000u64).unwrap();
        a.mov(byte_ptr(TICKS), 0).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        for (port, val) in [
            (0x20, 0x11),
            (0xa0, 0x11),
            (0x21, 0x20),
            (0xa1, 0x28),
            (0x21, 0x04),
            (0xa1, 0x02),
            (0x21, 0x01),
            (0xa1, 0x01),
            (0x21, 0xfe),
            (0xa1, 0xff),
        ] {
            a.mov(al, val).unwrap();
            a.out(port, al).unwrap();
        }
        // Channel 0, mode 2, divisor 1193: ~1000 Hz.
        a.mov(al, 0x34).unwrap();
        a.out(0x43, al).unwrap();
        a.mov(al, 1193 & 0xff).unwrap();
        a.out(0x40, al).unwrap();
        a.mov(al, 1193 >> 8).unwrap();
        a.out(0x40, al).unwrap();
        a.sti().unwrap();
        let mut idle = a.create_label();
        a.set_label(&mut idle).unwrap();
        a.hlt().unwrap();
        a.jmp(idle).unwrap();
    });
    let timer = assemble(64, TIMER, |a| {
        a.push(rax).unwrap();
        a.mov(al, byte_ptr(TICKS)).unwrap();
        a.inc(al).unwrap();
        a.mov(byte_ptr(TICKS), al).unwrap();
        a.out(0xe9, al).unwrap();
        a.mov(al, 0x20).unwrap();
        a.out(0x20, al).unwrap();
        a.pop(rax).unwrap();
        a.iretq().unwrap();
    });
    let fault = assemble(64, FAULT, |a| {
        a.mov(al, 0x7f).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let spurious = assemble(64, SPURIOUS, |a| a.iretq().unwrap());
    let mut img = main;
    for (at, code) in [(TIMER, timer), (FAULT, fault), (SPURIOUS, spurious)] {
        assert!(img.len() as u64 <= at - LOAD);
        img.resize((at - LOAD) as usize, 0x90);
        img.extend_from_slice(&code);
    }
    img.resize((IDTR - LOAD) as usize, 0);
    img.extend_from_slice(&(0x30u16 * 16 - 1).to_le_bytes());
    img.extend_from_slice(&IDT.to_le_bytes());
    img.resize((IDT - LOAD) as usize, 0);
    for v in 0..0x30u64 {
        let target = match v {
            0x20 => TIMER,
            0x21..=0x2f => SPURIOUS,
            _ => FAULT,
        };
        img.extend_from_slice(&idt_gate64(target));
    }
    img
}

/// pvclock structure the clock guest asks KVM to keep here.
const PVCLOCK: u64 = 0x3000;

/// Enables kvmclock, then forever writes the guest clock in nanoseconds
/// (pvclock ABI) as 8 little-endian bytes to the debug console (see
/// [`kvmclock_guest`]).
fn clock_guest() -> Vec<u8> {
    kvmclock_guest(LOAD, PVCLOCK)
}

/// Answers port reads with 0x77 and asks the run loop to stop after the
/// first exit, as a pause does.
struct StopAfterOneExit;

impl vmm_core::cpu::ExitHandler for StopAfterOneExit {
    fn pio_read(&self, _: vm_device::bus::PioAddress, data: &mut [u8]) {
        data.fill(0x77);
    }
    fn pio_write(&self, _: vm_device::bus::PioAddress, _: &[u8]) {}
    fn mmio_read(&self, _: vm_device::bus::MmioAddress, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _: vm_device::bus::MmioAddress, _: &[u8]) {}
    fn exit_handled(&self, _: vmm_core::cpu::ExitKind) -> vmm_core::cpu::ExitAction {
        vmm_core::cpu::ExitAction::Stop
    }
}

#[test]
fn test_snapshot_pending_in_instruction_is_completed_before_saving() {
    use vmm_core::cpu::{setup_boot_state, CpuMode, Entry, StartState, Vcpu, VcpuStop};
    use vmm_core::memory::{register_memory_slots, GuestRam, MemoryLayout, ThpHint};
    require_kvm();
    // in al, 0x60; hlt (real mode at 0x1000).
    let code = [0xe4, 0x60, 0xf4];
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let layout = MemoryLayout::new(1).unwrap();
    let ram = GuestRam::new(&layout, ThpHint::Off).unwrap();
    vm_memory::Bytes::write_slice(ram.memory(), &code, vm_memory::GuestAddress(LOAD)).unwrap();
    let vm = kvm.create_vm().unwrap();
    // SAFETY: `ram` is declared before `vm`, so it outlives the VM.
    unsafe { register_memory_slots(&vm, &ram, kvm.get_nr_memslots()) }.unwrap();
    let mut vcpu = Vcpu::new(&vm, 0).unwrap();
    let start = StartState::new(CpuMode::Real, Entry::Linear(vm_memory::GuestAddress(LOAD)));
    setup_boot_state(vcpu.fd(), ram.memory(), &start).unwrap();
    assert_eq!(
        vcpu.run(&StopAfterOneExit).unwrap(),
        VcpuStop::StopRequested
    );
    // KVM has the read's data but has not put it in AL, nor moved RIP:
    // saved now, a restored guest would execute the `in` again.
    let regs = vcpu.fd().get_regs().unwrap();
    assert_eq!(regs.rip, LOAD, "still at the in");
    assert_ne!(regs.rax & 0xff, 0x77);
    vcpu.complete_pending_io(&StopAfterOneExit).unwrap();
    let regs = vcpu.fd().get_regs().unwrap();
    assert_eq!(regs.rax & 0xff, 0x77, "the read's value is in AL");
    assert_eq!(
        regs.rip,
        LOAD + 2,
        "past the in, and not one instruction further"
    );
}

/// A scratch directory for one test's snapshot files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = target_dir()
            .join("snapshot-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn request(&self, name: &str, kind: SnapshotKind) -> SnapshotRequest {
        SnapshotRequest {
            snapshot_path: self.file(&format!("{name}.snap")),
            mem_file_path: self.file("vm.mem"),
            kind,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A long-mode raw guest on 16 MiB, its output to `console`, under seccomp.
fn builder(guest: Vec<u8>, console: Console) -> VmBuilder {
    VmBuilder::new()
        .memory_mib(16)
        .mode(BootMode::Long)
        .kernel_bytes(guest)
        .console(console)
        // A backstop only: the tests stop the guest themselves.
        .timeout(Duration::from_secs(60))
        // run() confines the thread it runs on, a fresh one here.
        .seccomp(true)
}

/// Waits until `console` holds more than `len` bytes.
fn wait_for_output(console: &Console, len: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while console.captured().len() <= len {
        assert!(Instant::now() < until, "guest output stuck at {len} bytes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

type Run = std::thread::JoinHandle<Result<vmm_core::RunReport, VmmError>>;

/// Runs `vm` on a thread of its own.
fn start(vm: Vm) -> (VmHandle, Run) {
    let handle = vm.handle();
    (handle, std::thread::spawn(move || vm.run()))
}

/// Pauses the running VM once it has written more than `min` bytes,
/// takes `req`, and returns the output so far and the snapshot's figures.
fn pause_and_snapshot(
    handle: &VmHandle,
    console: &Console,
    min: usize,
    req: SnapshotRequest,
) -> (Vec<u8>, SnapshotInfo) {
    wait_for_output(console, min);
    handle.pause().expect("pause");
    // Paused: the output is final until a resume.
    let out = console.captured();
    let info = handle.snapshot(req).expect("snapshot");
    assert!(handle.is_paused(), "a snapshot leaves the VM paused");
    assert_eq!(console.captured(), out, "nothing ran during the snapshot");
    (out, info)
}

/// Stops the VM and checks it ended because it was asked to.
fn stop(handle: VmHandle, run: Run) {
    handle.stop();
    let report = run.join().unwrap().unwrap();
    assert_eq!(report.outcome, VmOutcome::Stopped);
}

/// Snapshots `vm` (running `guest`) after `min` bytes, stops it; returns
/// the output before the snapshot and the request used.
fn snapshot_once(vm: Vm, console: &Console, min: usize, dir: &Dir) -> Vec<u8> {
    let (handle, run) = start(vm);
    let (out, info) =
        pause_and_snapshot(&handle, console, min, dir.request("vm", SnapshotKind::Full));
    assert_eq!(info.kind, SnapshotKind::Full);
    assert_eq!(info.memory_bytes, 16 << 20);
    assert!(info.memory_bytes_written > 0 && info.memory_bytes_written <= info.memory_bytes);
    stop(handle, run);
    out
}

/// Restores `dir`'s snapshot in a new vmm-bin process, resumed, for
/// `exits` port exits.
fn restore_in_new_process(dir: &Dir, snapshot: &str, exits: u32) -> Output {
    let snap = dir.file(&format!("{snapshot}.snap"));
    let mem = dir.file("vm.mem");
    let exits = exits.to_string();
    let out = run_vmm(&[
        "--restore",
        s(&snap),
        "--restore-mem",
        s(&mem),
        "--resume",
        "--max-exits",
        &exits,
        "--timeout",
        "30",
    ]);
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "the restored guest runs to the exit budget; stderr: {}",
        out.stderr
    );
    out
}

/// `after` continues `before`: its first byte is `before`'s last + 1, and
/// it counts up by one from there.
fn assert_continues(before: &[u8], after: &[u8]) {
    assert!(
        !before.is_empty() && after.len() > 10,
        "{} then {} bytes",
        before.len(),
        after.len()
    );
    let last = *before.last().unwrap();
    assert_eq!(
        after[0],
        last.wrapping_add(1),
        "the restored guest's first byte follows the last one before the snapshot \
         (lost or repeated output otherwise)"
    );
    for (i, pair) in after.windows(2).enumerate() {
        assert_eq!(
            pair[1],
            pair[0].wrapping_add(1),
            "byte {i} after the restore"
        );
    }
}

#[test]
fn test_snapshot_counting_guest_continues_exactly_in_a_new_process() {
    require_kvm();
    let dir = Dir::new("counting");
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone()).build().unwrap();
    let before = snapshot_once(vm, &console, 200, &dir);
    let out = restore_in_new_process(&dir, "vm", 300);
    assert_continues(&before, &out.stdout_raw);
}

#[test]
fn test_snapshot_uart_state_survives() {
    require_kvm();
    let dir = Dir::new("uart");
    let console = Console::memory();
    let vm = builder(uart_guest(), console.clone()).build().unwrap();
    let before = snapshot_once(vm, &console, 100, &dir);
    let out = restore_in_new_process(&dir, "vm", 600);
    // A UART restored as new would restart the count from 1.
    assert_continues(&before, &out.stdout_raw);
}

#[test]
fn test_snapshot_pc_platform_timer_interrupts_keep_counting() {
    require_kvm();
    let dir = Dir::new("pit");
    let console = Console::memory();
    let vm = builder(pit_guest(), console.clone())
        .platform(Platform::Pc)
        .build()
        .unwrap();
    let before = snapshot_once(vm, &console, 50, &dir);
    // Two exits a tick (the count out, the EOI): about 100 ticks more,
    // which come only if the PIT, PICs, IDT and LAPIC came back.
    let out = restore_in_new_process(&dir, "vm", 200);
    assert_continues(&before, &out.stdout_raw);
}

#[test]
fn test_snapshot_two_vcpus_with_a_waiting_ap() {
    require_kvm();
    let dir = Dir::new("smp");
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone())
        .platform(Platform::Pc)
        .cpus(2)
        .build()
        .unwrap();
    let before = snapshot_once(vm, &console, 100, &dir);
    let out = restore_in_new_process(&dir, "vm", 300);
    assert_continues(&before, &out.stdout_raw);
}

#[test]
fn test_snapshot_guest_clock_does_not_jump_over_save_and_restore() {
    require_kvm();
    let dir = Dir::new("clock");
    let console = Console::memory();
    let vm = builder(clock_guest(), console.clone()).build().unwrap();
    let before = snapshot_once(vm, &console, 8 * 50, &dir);
    // Host time passes between the snapshot and the restore.
    let gap = Duration::from_millis(1500);
    std::thread::sleep(gap);
    let out = restore_in_new_process(&dir, "vm", 8 * 100);
    // The stream goes on mid-sample where it stopped: join and cut it.
    let mut all = before.clone();
    all.extend_from_slice(&out.stdout_raw);
    let samples: Vec<u64> = all
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let boundary = before.len() / 8;
    assert!(samples.len() > boundary + 20, "{} samples", samples.len());
    for (i, pair) in samples.windows(2).enumerate() {
        assert!(
            pair[1] >= pair[0],
            "the clock went back at sample {i}: {pair:?}"
        );
    }
    let step = samples[boundary + 1] - samples[boundary - 1];
    assert!(
        Duration::from_nanos(step) < gap / 3,
        "the guest clock stepped {:?} across a save and restore {gap:?} apart",
        Duration::from_nanos(step)
    );
}

/// The memory-counting guest with an (unused) virtio-rng device, on a VM
/// that tracks dirty pages.
fn tracked_vm(console: Console) -> Vm {
    let config = VmConfig {
        memory_mib: 16,
        boot: BootConfig {
            kernel: Some(KernelImage::Bytes(memory_counting_guest())),
            raw: RawBoot {
                mode: Some(BootMode::Long),
                ..Default::default()
            },
            ..Default::default()
        },
        devices: vmm_core::config::DeviceConfig {
            rng: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = HostOptions {
        timeout: Some(Duration::from_secs(60)),
        track_dirty_pages: true,
        ..HostOptions::default()
    };
    VmBuilder::from_config(config, host)
        .console(console)
        .build()
        .unwrap()
}

#[test]
fn test_snapshot_diff_carries_the_pages_written_since_the_full_one() {
    require_kvm();
    let dir = Dir::new("diff");
    let console = Console::memory();
    let (handle, run) = start(tracked_vm(console.clone()));
    // A diff needs a full snapshot to go on top of.
    wait_for_output(&console, 10);
    handle.pause().unwrap();
    let e = handle
        .snapshot(dir.request("early", SnapshotKind::Diff))
        .unwrap_err();
    assert!(
        matches!(e, VmmError::Snapshot(SnapshotError::DiffWithoutBase)),
        "{e}"
    );
    handle.resume().unwrap();
    let (_, full) = pause_and_snapshot(
        &handle,
        &console,
        100,
        dir.request("full", SnapshotKind::Full),
    );
    let full_mem = std::fs::read(dir.file("vm.mem")).unwrap();
    handle.resume().unwrap();
    // The count is in RAM: only the diff has the new value.
    let len = console.captured().len();
    let (before, diff) = pause_and_snapshot(
        &handle,
        &console,
        len + 300,
        dir.request("diff", SnapshotKind::Diff),
    );
    stop(handle, run);
    assert_eq!(diff.kind, SnapshotKind::Diff);
    assert!(
        diff.memory_bytes_written < full.memory_bytes / 16,
        "a diff writes few pages: {} of {} bytes",
        diff.memory_bytes_written,
        diff.memory_bytes
    );
    let merged = std::fs::read(dir.file("vm.mem")).unwrap();
    assert_ne!(
        merged[COUNTER as usize], full_mem[COUNTER as usize],
        "the counter's page was rewritten by the diff"
    );
    let out = restore_in_new_process(&dir, "diff", 300);
    assert_continues(&before, &out.stdout_raw);
}

#[test]
fn test_snapshot_requests_the_vm_cannot_take_are_refused() {
    require_kvm();
    let dir = Dir::new("refused");
    let console = Console::memory();
    let (handle, run) = start(builder(counting_guest(), console.clone()).build().unwrap());
    wait_for_output(&console, 10);
    // Not paused.
    let e = handle
        .snapshot(dir.request("x", SnapshotKind::Full))
        .unwrap_err();
    assert!(
        matches!(e, VmmError::Snapshot(SnapshotError::NotPaused)),
        "{e}"
    );
    handle.pause().unwrap();
    // No dirty-page tracking.
    let e = handle
        .snapshot(dir.request("x", SnapshotKind::Diff))
        .unwrap_err();
    assert!(
        matches!(e, VmmError::Snapshot(SnapshotError::DiffNotTracked)),
        "{e}"
    );
    // An unwritable place: the error names it, the VM stays paused.
    let bad = SnapshotRequest {
        snapshot_path: "/nonexistent/dir/x.snap".into(),
        mem_file_path: "/nonexistent/dir/x.mem".into(),
        kind: SnapshotKind::Full,
    };
    let e = handle.snapshot(bad).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dir/x.mem"), "{e}");
    assert!(handle.is_paused());
    stop(handle, run);
    assert!(matches!(
        handle_after_stop(&console),
        Err(VmmError::NotRunning)
    ));
}

/// A block backend that describes itself by device type only, as a
/// library user's backend would by default.
struct AnonymousDisk;

impl vmm_core::devices::virtio::VirtioDevice for AnonymousDisk {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
    }
    fn features(&self) -> u64 {
        0
    }
    fn process_queue(
        &mut self,
        _: usize,
        _: &mut vmm_core::devices::virtio::QueueContext<'_>,
    ) -> Result<(), vmm_core::devices::virtio::DeviceError> {
        Ok(())
    }
}

#[test]
fn test_snapshot_refuses_a_backend_that_cannot_describe_itself() {
    require_kvm();
    let dir = Dir::new("disk");
    // A virtio-blk slot whose backend reports only its device type: a
    // restore could not check it gets the same disk back, so nothing is
    // saved.
    let config = VmConfig {
        memory_mib: 16,
        boot: BootConfig {
            kernel: Some(KernelImage::Bytes(counting_guest())),
            raw: RawBoot {
                mode: Some(BootMode::Long),
                ..Default::default()
            },
            ..Default::default()
        },
        devices: vmm_core::config::DeviceConfig {
            disks: vec![vmm_core::config::DiskConfig {
                path: dir.file("unused.img"),
                read_only: false,
                serial: None,
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let console = Console::memory();
    let host = HostOptions {
        timeout: Some(Duration::from_secs(60)),
        ..HostOptions::default()
    };
    let mut vm = Vm::create(&config, host).unwrap();
    let devices = vmm_core::devices::pc::build_devices(
        vm.device_options(console.clone()),
        &mut vm.interrupt_lines(),
    )
    .unwrap();
    vm.attach_devices(devices);
    vm.attach_virtio(Box::new(AnonymousDisk)).unwrap();
    let (handle, run) = start(vm);
    wait_for_output(&console, 10);
    handle.pause().unwrap();
    let req = dir.request("disk", SnapshotKind::Full);
    let e = handle.snapshot(req.clone()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, VmmError::Snapshot(SnapshotError::Unsupported { .. }))
            && msg.contains("virtio slot 0 (Block)")
            && msg.contains("device type only"),
        "{msg}"
    );
    assert!(
        !req.snapshot_path.exists() && !req.mem_file_path.exists(),
        "nothing written"
    );
    stop(handle, run);
}

/// A snapshot through the handle of a VM that has ended.
fn handle_after_stop(console: &Console) -> Result<SnapshotInfo, VmmError> {
    // Run on this thread: no seccomp, or the test thread stays confined.
    let vm = builder(counting_guest(), console.clone())
        .seccomp(false)
        .build()
        .unwrap();
    let handle = vm.handle();
    handle.stop();
    vm.run().unwrap();
    handle.snapshot(SnapshotRequest {
        snapshot_path: "x".into(),
        mem_file_path: "y".into(),
        kind: SnapshotKind::Full,
    })
}

/// `file` with its body edited (first `from` replaced by `to`) and the
/// header's length and CRC recomputed: damage the checksum cannot catch.
fn edit_resealed(file: &[u8], from: &str, to: &str) -> Vec<u8> {
    let body = std::str::from_utf8(&file[32..]).unwrap();
    assert!(body.contains(from), "{from} not in the snapshot body");
    let body = body.replacen(from, to, 1).into_bytes();
    let mut out = file[..32].to_vec();
    out[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[24..28].copy_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// CRC-32 (IEEE), as the format uses, computed here independently.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The offset in `file` of the first `needle` after the header.
fn offset_of(file: &[u8], needle: &str) -> usize {
    32 + std::str::from_utf8(&file[32..])
        .unwrap()
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the snapshot"))
}

#[test]
fn test_snapshot_damaged_files_are_refused_before_any_guest_runs() {
    require_kvm();
    let dir = Dir::new("damaged");
    let console = Console::memory();
    let vm = builder(counting_guest(), console.clone()).build().unwrap();
    snapshot_once(vm, &console, 10, &dir);
    let good = std::fs::read(dir.file("vm.snap")).unwrap();
    let mem = dir.file("vm.mem");
    let try_file = |name: &str, bytes: &[u8], needle: &str| {
        let path = dir.file(name);
        std::fs::write(&path, bytes).unwrap();
        // expect_bad_input: status 2, the message, nothing on stdout.
        expect_bad_input(
            &[
                "--restore",
                s(&path),
                "--restore-mem",
                s(&mem),
                "--resume",
                "--timeout",
                "10",
            ],
            needle,
        );
    };
    // Header: magic, version, reserved field, checksum field.
    let mut bad = good.clone();
    bad[3] ^= 0x20;
    try_file("magic", &bad, "not a snapshot file");
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&7u32.to_le_bytes());
    try_file("version", &bad, "format version 7 is not supported");
    let mut bad = good.clone();
    bad[28] = 1;
    try_file("reserved", &bad, "reserved field at offset 28");
    let mut bad = good.clone();
    bad[24] ^= 0xff;
    try_file("crc", &bad, "CRC32");
    // A flipped byte in the vCPU state and in the device state.
    for (name, region) in [("vcpu", r#""vcpus":"#), ("device", r#""devices":"#)] {
        let mut bad = good.clone();
        let at = offset_of(&bad, region) + 40;
        bad[at] ^= 0x04;
        try_file(name, &bad, "the file is damaged");
    }
    // The same regions changed with the checksum fixed up: the
    // consistency checks name the field.
    try_file(
        "vcpu-sealed",
        &edit_resealed(&good, r#""index":0"#, r#""index":5"#),
        "vcpus[0].index",
    );
    try_file(
        "device-sealed",
        &edit_resealed(&good, r#""set":"minimal""#, r#""set":"pc""#),
        "devices.set",
    );
    try_file(
        "type-sealed",
        &edit_resealed(&good, r#""tsc_khz":"#, r#""tsc_khz":"fast","was":"#),
        "vcpus section does not parse",
    );
    // Truncated in the header, right after it, in the middle, at the end.
    for cut in [5, 31, 32, good.len() / 2, good.len() - 1] {
        try_file(&format!("cut{cut}"), &good[..cut], "truncated");
    }
    try_file("empty", &[], "truncated");
    // Trailing garbage.
    let mut long = good.clone();
    long.extend_from_slice(b"junk");
    try_file("trailing", &long, "header accounts for");
    // A memory file of the wrong size.
    let short = dir.file("short.mem");
    std::fs::write(&short, vec![0u8; (16 << 20) - 4096]).unwrap();
    let snap = dir.file("vm.snap");
    expect_bad_input(
        &[
            "--restore",
            s(&snap),
            "--restore-mem",
            s(&short),
            "--resume",
        ],
        "the snapshot's guest RAM is 16777216 bytes",
    );
    // Missing files.
    expect_bad_input(
        &[
            "--restore",
            s(&dir.file("nope.snap")),
            "--restore-mem",
            s(&mem),
        ],
        "nope.snap",
    );
    expect_bad_input(
        &[
            "--restore",
            s(&snap),
            "--restore-mem",
            s(&dir.file("nope.mem")),
        ],
        "nope.mem",
    );
    // And the good file still restores.
    let out = restore_in_new_process(&dir, "vm", 50);
    assert!(!out.stdout_raw.is_empty());
}
