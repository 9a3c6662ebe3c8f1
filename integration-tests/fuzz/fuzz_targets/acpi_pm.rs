//! The ACPI PM1a event/control block and PM timer on their own: arbitrary
//! reads and writes of any width at offsets 0-15 of the block (12 bytes
//! long), with a clock the input moves forward.
//!
//! Checked against a model of the registers: PM1_EN reads back the defined
//! enable bits last written, PM1_CNT reads back BM_RLD and SLP_TYP with
//! SCI_EN always set, PM_TMR reads the 24-bit count of 3.579545 MHz ticks
//! since the device was made, holes and bytes past the block read 0xff, and
//! exactly the writes that set SLP_EN with SLP_TYP = 5 (S5) power off.
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
use vmm_devices::legacy::{AcpiPm, S5_SLP_TYP};
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
}

#[derive(Default)]
struct Model {
    en: u16,
    cnt: u16,
    power_offs: usize,
}

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
        self.en = (self.en & !mask[1]) | (value[1] & mask[1] & PM1_EN_DEFINED);
        let stored = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;
        self.cnt = (self.cnt & !(mask[2] & stored)) | (value[2] & mask[2] & stored);
        if value[2] & mask[2] & PM1_CNT_SLP_EN != 0
            && (self.cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT == S5_SLP_TYP
        {
            self.power_offs += 1;
        }
    }

    fn check_read(&self, off: u64, data: &[u8], tmr: u32) {
        for (i, &b) in data.iter().enumerate() {
            let at = off + i as u64;
            let want = match at {
                // PM1_STS: the timer carry sets TMR_STS behind the model's
                // back; only the bits no one can set are checked.
                0..=1 => continue,
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
        }
    }
    let events = sink.events();
    assert!(events.iter().all(|e| *e == VmEvent::PowerOff), "{events:?}");
    assert_eq!(events.len(), model.power_offs, "S5 requests");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
