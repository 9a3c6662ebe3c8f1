//! The exit path: an `IoBus` holding every legacy device the VMM has (COM1,
//! debug-exit, debugcon, POST code, i8042, CMOS, ACPI PM) plus a scratch
//! MMIO device, inside vmm-core's `ExitDispatcher`, driven by an arbitrary
//! sequence of port and MMIO reads and writes of any width (0 to 16 bytes),
//! exit notifications, host input and clock ticks.
//!
//! Checked on every access made straight on the bus: whether it is
//! claimed, split or unclaimed follows from the registered ranges, and
//! bytes nobody claims read as 0xff. At the end: every access was counted
//! once, unclaimed MMIO pages stay within their bound, and the dispatcher's
//! exit counts and budget agree with what was sent.
#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::{MmioAddress, MmioAddressOffset, PioAddress};
use vm_device::{DeviceMmio, DevicePio};
use vmm_core::control::VmControl;
use vmm_core::dispatch::ExitDispatcher;
use vmm_core::trace::{io_line, mmio_line, Dir};
use vmm_core::VmOutcome;
use vmm_cpu::{ExitAction, ExitHandler, ExitKind};
use vmm_devices::bus::{BusKey, MAX_UNCLAIMED_MMIO_KEYS};
use vmm_devices::legacy::{
    AcpiPm, Cmos, CmosMemorySizes, DebugCon, DebugExit, PostCodePort, Uart8250, I8042,
};
use vmm_devices::pc::{self, PcDevice};
use vmm_devices::{Access, Console, IoBus, IrqLine};
use vmm_fuzz::clock::FuzzClock;
use vmm_fuzz::ports::{self, PortSel, MAX_OPS};

const SCRATCH_BASE: u64 = 0xd000_0000;
const SCRATCH_LEN: u64 = 0x100;

/// An MMIO register file: what the guest writes it reads back.
struct Scratch(Mutex<[u8; SCRATCH_LEN as usize]>);

impl DeviceMmio for Scratch {
    fn mmio_read(&self, _: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        let regs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = offset as usize;
        match regs.get(at..at + data.len()) {
            Some(src) => data.copy_from_slice(src),
            None => panic!(
                "bus passed an access beyond the device: {offset:#x}+{}",
                data.len()
            ),
        }
    }

    fn mmio_write(&self, _: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        let mut regs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = offset as usize;
        match regs.get_mut(at..at + data.len()) {
            Some(dst) => dst.copy_from_slice(data),
            None => panic!(
                "bus passed an access beyond the device: {offset:#x}+{}",
                data.len()
            ),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Setup {
    clock_secs: i64,
    clock_nanos: u32,
    max_exits: Option<u16>,
    uart_irqfd: bool,
    ram_mib: u16,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum MmioSel {
    Near(u16),
    Any(u64),
}

impl MmioSel {
    fn addr(self) -> u64 {
        match self {
            MmioSel::Near(off) => (SCRATCH_BASE - 8) + u64::from(off) % (SCRATCH_LEN + 16),
            MmioSel::Any(a) => a,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A port access, straight on the bus or as a vCPU exit.
    Pio {
        exit: bool,
        write: bool,
        port: PortSel,
        width: u8,
    },
    /// An MMIO access, straight on the bus or as a vCPU exit.
    Mmio {
        exit: bool,
        write: bool,
        addr: MmioSel,
        width: u8,
    },
    /// One-byte reads of consecutive 4 KiB pages: reaches the unclaimed-page
    /// counter's bound.
    Sweep { page: u32, pages: u16 },
    /// The vCPU loop reporting an exit of another kind.
    Exit(u8),
    /// Console input for the UART.
    SerialIn(Vec<u8>),
    /// A host key press for the i8042.
    Key(Vec<u8>),
    /// Time passes.
    Tick(u32),
}

/// The registered port ranges, for the claimed/split/unclaimed oracle.
const PIO_RANGES: [(u16, u16); 8] = [
    range(PcDevice::Com1, 0),
    range(PcDevice::DebugExit, 0),
    range(PcDevice::DebugCon, 0),
    range(PcDevice::PostCode, 0),
    range(PcDevice::I8042, 0),
    range(PcDevice::I8042, 1),
    range(PcDevice::RtcCmos, 0),
    range(PcDevice::AcpiPm, 0),
];

/// Port range `i` of `device`'s row in the PC platform table.
const fn range(device: PcDevice, i: usize) -> (u16, u16) {
    let p = pc::device(device).ports[i];
    (p.base, p.len)
}

fn pio_device(port: u16) -> Option<usize> {
    PIO_RANGES
        .iter()
        .position(|&(b, l)| port >= b && u32::from(port) < u32::from(b) + u32::from(l))
}

/// What the bus must answer for a `len`-byte access at `port`, and which
/// byte lanes reach a device.
fn expected_pio(port: u16, len: usize) -> (Access, Vec<bool>) {
    let lanes: Vec<bool> = (0..len)
        .map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| port.checked_add(i))
                .is_some_and(|p| pio_device(p).is_some())
        })
        .collect();
    let last = u16::try_from(len)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| port.checked_add(l));
    let whole = match (pio_device(port), last) {
        (Some(d), Some(last)) => pio_device(last) == Some(d),
        _ => false,
    };
    if whole {
        (Access::Claimed, vec![true; len])
    } else if len > 1 && lanes.iter().any(|&c| c) {
        (Access::Split, lanes)
    } else {
        (Access::Unclaimed, vec![false; len])
    }
}

fn expected_mmio(addr: u64, len: usize) -> Access {
    let end = addr.checked_add(len as u64);
    match end {
        Some(end) if len > 0 && addr >= SCRATCH_BASE && end <= SCRATCH_BASE + SCRATCH_LEN => {
            Access::Claimed
        }
        _ => Access::Unclaimed,
    }
}

fn reg(
    bus: &mut IoBus,
    name: &str,
    (base, len): (u16, u16),
    dev: Arc<dyn DevicePio + Send + Sync>,
) {
    if let Err(e) = bus.register_pio(name, PioAddress(base), len, dev) {
        panic!("fuzz harness: {e}");
    }
}

struct Machine {
    dispatcher: ExitDispatcher,
    control: Arc<VmControl>,
    clock: Arc<FuzzClock>,
    uart: Arc<Uart8250<IrqLine>>,
    i8042: Arc<I8042<IrqLine>>,
}

fn machine(s: &Setup) -> Machine {
    let clock = Arc::new(FuzzClock::new(s.clock_secs, s.clock_nanos));
    let control = Arc::new(VmControl::new(s.max_exits.map(u64::from)));
    let irq = |fd: bool| match (fd, IrqLine::eventfd()) {
        (true, Ok(line)) => line,
        (true, Err(e)) => panic!("fuzz harness: eventfd: {e}"),
        (false, _) => IrqLine::None,
    };
    let uart = Arc::new(Uart8250::new(irq(s.uart_irqfd), Console::memory()));
    let i8042 = Arc::new(I8042::new(control.clone(), irq(false), irq(false)));
    let mib = u64::from(s.ram_mib);
    let mem = CmosMemorySizes {
        below_4g_end: (mib << 20).min(3 << 30),
        above_4g_size: (mib << 20).saturating_sub(3 << 30),
    };
    let mut bus = IoBus::new();
    reg(&mut bus, "uart8250", PIO_RANGES[0], uart.clone());
    reg(
        &mut bus,
        "debug-exit",
        PIO_RANGES[1],
        Arc::new(DebugExit::new(control.clone())),
    );
    reg(
        &mut bus,
        "debugcon",
        PIO_RANGES[2],
        Arc::new(DebugCon::new(Console::discard())),
    );
    reg(
        &mut bus,
        "post-code",
        PIO_RANGES[3],
        Arc::new(PostCodePort::new(std::time::Instant::now(), false)),
    );
    reg(&mut bus, "i8042-data", PIO_RANGES[4], i8042.clone());
    reg(&mut bus, "i8042-cmd", PIO_RANGES[5], i8042.clone());
    reg(
        &mut bus,
        "cmos",
        PIO_RANGES[6],
        Arc::new(Cmos::new(mem, clock.clone())),
    );
    reg(
        &mut bus,
        "acpi-pm",
        PIO_RANGES[7],
        Arc::new(AcpiPm::new(control.clone(), clock.clone())),
    );
    let scratch = Arc::new(Scratch(Mutex::new([0; SCRATCH_LEN as usize])));
    if let Err(e) = bus.register_mmio("scratch", MmioAddress(SCRATCH_BASE), SCRATCH_LEN, scratch) {
        panic!("fuzz harness: {e}");
    }
    Machine {
        dispatcher: ExitDispatcher::new(bus, control.clone(), false),
        control,
        clock,
        uart,
        i8042,
    }
}

/// Exit bookkeeping the dispatcher's counters must match.
#[derive(Default)]
struct Sent {
    by_kind: [u64; ExitKind::ALL.len()],
    budgeted: u64,
    pio_accesses: u64,
    mmio_accesses: u64,
}

impl Sent {
    fn exit(&mut self, m: &Machine, kind: ExitKind, max: Option<u64>) {
        let action = m.dispatcher.exit_handled(kind);
        self.by_kind[kind.index()] += 1;
        if matches!(
            kind,
            ExitKind::IoIn | ExitKind::IoOut | ExitKind::MmioRead | ExitKind::MmioWrite
        ) {
            self.budgeted += 1;
        }
        assert_eq!(
            action == ExitAction::Stop,
            m.control.is_stopping(),
            "exit_handled({kind:?}) said {action:?}"
        );
        if let Some(max) = max {
            // The exit that reaches the budget stops the VM (a budget of 0
            // acts as 1).
            if self.budgeted >= max.max(1) {
                assert_eq!(action, ExitAction::Stop, "budget {max} spent, not stopped");
                assert!(m.control.outcome().is_some());
            }
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let setup = Setup::arbitrary(u)?;
    vmm_fuzz::trace(&setup);
    let max = setup.max_exits.map(u64::from);
    let m = machine(&setup);
    let mut sent = Sent::default();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Pio {
                exit,
                write,
                port,
                width,
            } => {
                let port = port.port();
                let mut data = if write {
                    ports::data(u, width)?
                } else {
                    vec![0u8; ports::width(width)]
                };
                let (want, lanes) = expected_pio(port, data.len());
                let dir = if write { Dir::Write } else { Dir::Read };
                sent.pio_accesses += 1;
                if exit {
                    if write {
                        m.dispatcher.pio_write(PioAddress(port), &data);
                    } else {
                        m.dispatcher.pio_read(PioAddress(port), &mut data);
                    }
                    let kind = if write {
                        ExitKind::IoOut
                    } else {
                        ExitKind::IoIn
                    };
                    sent.exit(&m, kind, max);
                } else {
                    let bus = m.dispatcher.bus();
                    let got = if write {
                        bus.pio_write(PioAddress(port), &data)
                    } else {
                        bus.pio_read(PioAddress(port), &mut data)
                    };
                    assert_eq!(got, want, "port {port:#x} size {}", data.len());
                }
                if !write {
                    for (i, (&b, &claimed)) in data.iter().zip(&lanes).enumerate() {
                        if !claimed {
                            assert_eq!(b, 0xff, "unclaimed lane {i} of port {port:#x}");
                        }
                    }
                }
                let line = io_line(dir, port, &data);
                assert!(line.contains(&format!("size={}", data.len())), "{line}");
            }
            Op::Mmio {
                exit,
                write,
                addr,
                width,
            } => {
                let addr = addr.addr();
                let mut data = if write {
                    ports::data(u, width)?
                } else {
                    vec![0u8; ports::width(width)]
                };
                let want = expected_mmio(addr, data.len());
                let dir = if write { Dir::Write } else { Dir::Read };
                sent.mmio_accesses += 1;
                if exit {
                    if write {
                        m.dispatcher.mmio_write(MmioAddress(addr), &data);
                    } else {
                        m.dispatcher.mmio_read(MmioAddress(addr), &mut data);
                    }
                    let kind = if write {
                        ExitKind::MmioWrite
                    } else {
                        ExitKind::MmioRead
                    };
                    sent.exit(&m, kind, max);
                } else {
                    let bus = m.dispatcher.bus();
                    let got = if write {
                        bus.mmio_write(MmioAddress(addr), &data)
                    } else {
                        bus.mmio_read(MmioAddress(addr), &mut data)
                    };
                    assert_eq!(got, want, "mmio {addr:#x} size {}", data.len());
                }
                if !write && want == Access::Unclaimed {
                    assert!(data.iter().all(|&b| b == 0xff), "unclaimed mmio {addr:#x}");
                }
                let _ = mmio_line(dir, addr, &data);
            }
            Op::Sweep { page, pages } => {
                for i in 0..u64::from(pages % 2048) {
                    let addr = (u64::from(page) << 12).wrapping_add(i << 12);
                    let mut b = [0u8];
                    m.dispatcher.bus().mmio_read(MmioAddress(addr), &mut b);
                    sent.mmio_accesses += 1;
                }
            }
            Op::Exit(k) => {
                let kind = ExitKind::ALL[usize::from(k) % ExitKind::ALL.len()];
                sent.exit(&m, kind, max);
            }
            Op::SerialIn(bytes) => {
                let room = m.uart.rx_room();
                let n = m.uart.receive(&bytes);
                assert!(n <= room.min(bytes.len()));
            }
            Op::Key(bytes) => {
                let _ = m.i8042.key_press(&bytes);
            }
            Op::Tick(ns) => m.clock.advance(u64::from(ns)),
        }
    }

    let counts = m.dispatcher.bus().access_counts();
    let total = |pick: fn(&BusKey) -> bool| -> u64 {
        counts
            .iter()
            .filter(|r| pick(&r.key))
            .map(|r| {
                r.count.reads + r.count.writes + r.count.unclaimed_reads + r.count.unclaimed_writes
            })
            .sum()
    };
    assert_eq!(
        total(|k| matches!(k, BusKey::Port(_))),
        sent.pio_accesses,
        "port accesses counted"
    );
    assert_eq!(
        total(|k| !matches!(k, BusKey::Port(_))),
        sent.mmio_accesses,
        "MMIO accesses counted"
    );
    let pages = counts
        .iter()
        .filter(|r| matches!(r.key, BusKey::UnclaimedMmioPage(_)))
        .count();
    assert!(
        pages <= MAX_UNCLAIMED_MMIO_KEYS,
        "{pages} unclaimed pages kept"
    );
    for (kind, n) in m.dispatcher.exits_by_kind() {
        assert_eq!(n, sent.by_kind[kind.index()], "{kind:?} exits");
    }
    assert_eq!(m.control.exits(), sent.budgeted);
    if let Some(VmOutcome::MaxExits { limit }) = m.control.outcome() {
        assert_eq!(Some(limit), max);
        assert!(sent.budgeted >= limit);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
