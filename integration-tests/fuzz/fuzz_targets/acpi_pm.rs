//! The ACPI PM1a event/control block and PM timer on their own: arbitrary
//! reads and writes of any width at offsets 0-15 of the block (12 bytes
//! long), with a clock the input moves forward.
//!
//! Checked against a model of the registers: PM1_EN reads back the defined
//! enable bits last written, PM1_CNT reads back BM_RLD and SLP_TYP with
//! SCI_EN always set, PM_TMR reads the 24-bit count of 3.579545 MHz ticks
//! since the device was made, holes and bytes past the block read 0xff,
//! exactly the writes that set SLP_EN with SLP_TYP = 5 (S5) power off and
//! with SLP_TYP = 1 (S3) suspend, and the VM events are exactly the model's:
//! while suspended, an RTC alarm wakes only with RTC_EN, the power button
//! always; WAK_STS, RTC_STS and PWRBTN_STS read as the model says; no SCI
//! is raised while suspended. `Service` is the VMM's timer loop.
#![no_main]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_device::bus::PioAddress;
use vm_device::DevicePio;
use vmm_devices::legacy::acpi_pm::{
    PM1_CNT_BM_RLD, PM1_CNT_SCI_EN, PM1_CNT_SLP_EN, PM1_CNT_SLP_TYP_MASK, PM1_CNT_SLP_TYP_SHIFT,
    PM1_EN_DEFINED, PM_TIMER_FREQUENCY_HZ, PM_TMR_MASK,
};
use vmm_devices::legacy::acpi_pm::{PM1_EN_RTC, PM1_STS_PWRBTN, PM1_STS_RTC, PM1_STS_WAK};
use vmm_devices::legacy::{AcpiPm, RtcAlarmListener, S3_SLP_TYP, S5_SLP_TYP};
use vmm_devices::timer::TimedDevice;
use vmm_devices::vm_event::RecordingSink;
use vmm_devices::VmEvent;
use vmm_fuzz::clock::FuzzClock;
use vmm_fuzz::ports::{self, MAX_OPS};

const BASE: u16 = 0x600;

#[derive(Debug, Arbitrary)]
enum Op {
    Access { write: bool, off: u8, width: u8 },
    Tick(u32),
    Jump(u16),
    /// The RTC raises its alarm interrupt.
    Alarm,
    /// The power button is pressed.
    Button,
    /// The VMM's loop services the PM timer's carry.
    Service,
}

#[derive(Default)]
struct Model {
    en: u16,
    cnt: u16,
    /// WAK_STS, RTC_STS and PWRBTN_STS (the ones only events set).
    sts: u16,
    sleeping: bool,
    events: Vec<VmEvent>,
}

/// The status bits the model tracks.
const EVENT_STS: u16 = PM1_STS_WAK | PM1_STS_RTC | PM1_STS_PWRBTN;

impl Model {
    fn write(&mut self, off: u64, data: &[u8]) {
        let mut value = [0u16; 3];
        let mut mask = [0u16; 3];
        for (i, &b) in data.iter().enumerate() {
            let at = off + i as u64;
            let (reg, byte) = match at {
                0..=5 => ((at / 2) as usize, at % 2),
                _ => continue,
            };
            value[reg] |= u16::from(b) << (8 * byte);
            mask[reg] |= 0xff << (8 * byte);
        }
        self.sts &= !(value[0] & mask[0]);
        self.en = (self.en & !mask[1]) | (value[1] & mask[1] & PM1_EN_DEFINED);
        let stored = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;
        self.cnt = (self.cnt & !(mask[2] & stored)) | (value[2] & mask[2] & stored);
        if value[2] & mask[2] & PM1_CNT_SLP_EN != 0 {
            match (self.cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT {
                S5_SLP_TYP => self.events.push(VmEvent::PowerOff),
                S3_SLP_TYP => {
                    self.sleeping = true;
                    self.events.push(VmEvent::Suspend);
                }
                _ => {}
            }
        }
    }

    /// An event that sets `sts` and wakes a sleeping platform if `wakes`.
    fn event(&mut self, sts: u16, wakes: bool) {
        self.sts |= sts;
        if self.sleeping && wakes {
            self.sts |= PM1_STS_WAK;
            self.sleeping = false;
            self.events.push(VmEvent::Wake);
        }
    }

    fn check_read(&self, off: u64, data: &[u8], tmr: u32) {
        for (i, &b) in data.iter().enumerate() {
            let at = off + i as u64;
            let want = match at {
                // PM1_STS: the timer carry sets TMR_STS behind the model's
                // back; the event bits are checked.
                0..=1 => {
                    let have = u16::from(b) << (8 * (at as u16));
                    let mask = EVENT_STS & (0xff << (8 * (at as u16)));
                    assert_eq!(have & mask, self.sts & mask, "PM1_STS byte {at}");
                    continue;
                }
                2..=3 => (self.en >> (8 * (at - 2))) as u8,
                4..=5 => ((self.cnt | PM1_CNT_SCI_EN) >> (8 * (at - 4))) as u8,
                8..=11 => (tmr >> (8 * (at - 8))) as u8,
                _ => 0xff,
            };
            assert_eq!(b, want, "byte at offset {at:#x}");
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let clock = Arc::new(FuzzClock::new(0, 0));
    clock.advance(u64::from(u32::arbitrary(u)?));
    let sink = Arc::new(RecordingSink::default());
    let pm = AcpiPm::new(sink.clone(), clock.clone());
    let origin = clock.elapsed_ns();
    let mut model = Model::default();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(u) else { break };
        vmm_fuzz::trace(&op);
        match op {
            Op::Access { write, off, width } => {
                let off = u16::from(off % 16);
                if write {
                    let data = ports::data(u, width)?;
                    pm.pio_write(PioAddress(BASE), off, &data);
                    model.write(u64::from(off), &data);
                } else {
                    let mut data = vec![0u8; ports::width(width)];
                    pm.pio_read(PioAddress(BASE), off, &mut data);
                    let ticks = u128::from(clock.elapsed_ns() - origin)
                        * u128::from(PM_TIMER_FREQUENCY_HZ)
                        / 1_000_000_000;
                    let tmr = (ticks & u128::from(PM_TMR_MASK)) as u32;
                    assert_eq!(pm.timer(), tmr, "PM timer");
                    model.check_read(u64::from(off), &data, tmr);
                }
            }
            Op::Tick(ns) => clock.advance(u64::from(ns)),
            Op::Jump(secs) => clock.advance(u64::from(secs) * 1_000_000_000),
            Op::Alarm => {
                let sleeping = model.sleeping;
                let sci = pm.sci_pulses();
                pm.rtc_alarm();
                model.event(PM1_STS_RTC, model.en & PM1_EN_RTC != 0);
                if sleeping {
                    assert_eq!(pm.sci_pulses(), sci, "an SCI while sleeping");
                }
            }
            Op::Button => {
                let sleeping = model.sleeping;
                let sci = pm.sci_pulses();
                pm.power_button();
                model.event(PM1_STS_PWRBTN, true);
                if sleeping {
                    assert_eq!(pm.sci_pulses(), sci, "an SCI while sleeping");
                }
            }
            Op::Service => {
                let sleeping = model.sleeping;
                let sci = pm.sci_pulses();
                if let Some(d) = pm.service() {
                    assert!(!d.is_zero(), "a zero delay would disarm the timer");
                    assert!(!sleeping, "a timer while sleeping");
                }
                if sleeping {
                    assert_eq!(pm.sci_pulses(), sci, "an SCI while sleeping");
                }
            }
        }
        assert_eq!(pm.is_sleeping(), model.sleeping, "sleeping state");
    }
    assert_eq!(sink.events(), model.events, "VM events");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
