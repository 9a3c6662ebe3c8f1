//! The CMOS RTC (MC146818A) on its own: arbitrary index/data reads and
//! writes of any width at 0x70/0x71 (and past them), with a host clock that
//! starts anywhere within ±544 years of the epoch and moves forward only
//! when the input says (by up to ~4 s or ~18 h at a time), so the time
//! setting, update-in-progress, alarm, periodic and BCD/12-hour paths are
//! all reachable and every run replays exactly.
//!
//! Checked: the index port reads 0xff; the NMI mask follows bit 7 of the
//! last index written; register D always reads VRT; plain CMOS RAM
//! (0x0E-0x7F except the century byte 0x32) reads back what was last
//! written (starting from what it held at power-on); the guest's time
//! can always be asked for; and the interrupt (IRQ 8) follows IRQF: at most
//! one pulse per access or service call, none from time passing alone, no
//! second pulse until register C is read or B rewritten, and a C read after
//! a pulse (B untouched) shows IRQF. `Service` is the VMM's timer loop
//! calling `TimedDevice::service`.
#![no_main]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_devices::legacy::cmos::{
    CMOS_CENTURY, CMOS_DATA_PORT, CMOS_INDEX_MASK, CMOS_INDEX_NMI_DISABLE, CMOS_INDEX_PORT,
    CMOS_SIZE, REG_D_VRT, RTC_REG_D,
};
use vmm_devices::legacy::cmos::{REG_C_IRQF, RTC_REG_B, RTC_REG_C};
use vmm_devices::legacy::{Cmos, CmosMemorySizes};
use vmm_devices::timer::TimedDevice;
use vmm_fuzz::clock::FuzzClock;
use vmm_fuzz::ports::{self, MAX_OPS};

#[derive(Debug, Arbitrary)]
struct Setup {
    start_secs: i64,
    start_nanos: u32,
    below_4g_end: u32,
    above_4g_mib: u32,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// An access as the bus hands it over: base 0x70, offset 0-3.
    Access { write: bool, off: u8, width: u8 },
    /// Select a register (with the NMI bit as given) and read it.
    Get(u8),
    /// Select a register and write it.
    Set(u8, u8),
    /// Time passes: nanoseconds.
    Tick(u32),
    /// Time passes: seconds.
    Jump(u16),
    /// The VMM's loop services the device's timer.
    Service,
}

/// What the test knows about the device.
struct Model {
    index: u8,
    nmi_masked: bool,
    /// Plain RAM bytes as last written (or read at power-on).
    ram: [u8; CMOS_SIZE],
    /// IRQ pulses seen.
    pulses: u64,
    /// A pulse came and C was not read since.
    pulse_unread: bool,
    /// Register B was written since the last pulse (IRQF may have dropped).
    b_written: bool,
}

fn plain_ram(index: u8) -> bool {
    index >= 0x0e && index != CMOS_CENTURY
}

impl Model {
    /// One byte lane landing on `port`: a write of `value`, or a read that
    /// returned `value`.
    fn lane(&mut self, port: u64, write: bool, value: u8) {
        match (port, write) {
            (p, true) if p == u64::from(CMOS_INDEX_PORT) => {
                self.index = value & CMOS_INDEX_MASK;
                self.nmi_masked = value & CMOS_INDEX_NMI_DISABLE != 0;
            }
            (p, false) if p == u64::from(CMOS_INDEX_PORT) => {
                assert_eq!(value, 0xff, "index port read");
            }
            (p, true) if p == u64::from(CMOS_DATA_PORT) => {
                if self.index == RTC_REG_B {
                    self.b_written = true;
                }
                if plain_ram(self.index) {
                    self.ram[usize::from(self.index)] = value;
                }
            }
            (p, false) if p == u64::from(CMOS_DATA_PORT) => {
                if plain_ram(self.index) {
                    assert_eq!(
                        value,
                        self.ram[usize::from(self.index)],
                        "CMOS RAM byte {:#x}",
                        self.index
                    );
                }
                if self.index == RTC_REG_D {
                    assert_eq!(value, REG_D_VRT, "register D");
                }
                if self.index == RTC_REG_C {
                    if self.pulse_unread && !self.b_written {
                        assert_ne!(value & REG_C_IRQF, 0, "C after a pulse lacks IRQF");
                    }
                    self.pulse_unread = false;
                }
            }
            (_, false) => assert_eq!(value, 0xff, "port {port:#x} is not the RTC's"),
            (_, true) => {}
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let s = Setup::arbitrary(u)?;
    vmm_fuzz::trace(&s);
    let clock = Arc::new(FuzzClock::new(s.start_secs, s.start_nanos));
    let sizes = CmosMemorySizes {
        below_4g_end: u64::from(s.below_4g_end),
        above_4g_size: u64::from(s.above_4g_mib) << 20,
    };
    let rtc = Cmos::new(sizes, clock.clone());
    let base = PioAddress(CMOS_INDEX_PORT);
    let mut model = Model {
        index: 0,
        nmi_masked: false,
        ram: [0; CMOS_SIZE],
        pulses: 0,
        pulse_unread: false,
        b_written: false,
    };
    // Power-on contents of plain RAM, through the ports.
    for i in 0..CMOS_SIZE as u8 {
        if plain_ram(i) {
            let mut b = [0u8];
            rtc.pio_write(base, 0, &[i]);
            rtc.pio_read(base, 1, &mut b);
            model.ram[usize::from(i)] = b[0];
        }
    }
    rtc.pio_write(base, 0, &[0]);
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Access { write, off, width } => {
                let off = u16::from(off % 4);
                let mut data = if write {
                    ports::data(u, width)?
                } else {
                    vec![0u8; ports::width(width)]
                };
                if write {
                    rtc.pio_write(base, off, &data);
                } else {
                    rtc.pio_read(base, off, &mut data);
                }
                for (i, &b) in data.iter().enumerate() {
                    model.lane(
                        u64::from(CMOS_INDEX_PORT) + u64::from(off) + i as u64,
                        write,
                        b,
                    );
                }
            }
            Op::Get(index) => {
                let mut b = [0u8];
                rtc.pio_write(base, 0, &[index]);
                rtc.pio_read(base, 1, &mut b);
                model.lane(u64::from(CMOS_INDEX_PORT), true, index);
                model.lane(u64::from(CMOS_DATA_PORT), false, b[0]);
            }
            Op::Set(index, value) => {
                rtc.pio_write(base, 0, &[index, value]);
                model.lane(u64::from(CMOS_INDEX_PORT), true, index);
                model.lane(u64::from(CMOS_DATA_PORT), true, value);
            }
            Op::Tick(ns) => clock.advance(u64::from(ns)),
            Op::Jump(secs) => clock.advance(u64::from(secs) * 1_000_000_000),
            Op::Service => {
                if let Some(d) = rtc.service() {
                    assert!(!d.is_zero(), "a zero delay would disarm the timer");
                }
            }
        }
        let pulses = rtc.interrupts();
        match pulses - model.pulses {
            0 => {}
            1 => {
                assert!(
                    !(model.pulse_unread && !model.b_written),
                    "a second pulse with IRQF never dropped"
                );
                model.pulse_unread = true;
                model.b_written = false;
            }
            n => panic!("{n} pulses from one operation"),
        }
        model.pulses = pulses;
        assert_eq!(rtc.nmi_masked(), model.nmi_masked, "NMI mask");
    }
    let _ = rtc.guest_time();
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
