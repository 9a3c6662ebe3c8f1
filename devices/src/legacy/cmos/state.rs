//! The RTC/CMOS snapshot state: the index register, the NMI mask, the
//! 128 bytes of CMOS RAM (registers A-D, the alarm, the memory sizes) and
//! the calendar, whose time is kept as an offset from the host's wall
//! clock. A restored RTC therefore keeps showing real time, as a
//! battery-backed RTC would after the machine was off: the guest's
//! monotonic clocks (kvmclock, TSC) are what a snapshot freezes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::calendar::Calendar;
use super::{Cmos, RtcClock, State, CMOS_INDEX_MASK, CMOS_SIZE};
use crate::state::StateError;
use crate::timer::Rearm;
use crate::{lock, IrqLine};

/// The RTC/CMOS's state (capture with [`Cmos::state`], rebuild with
/// [`Cmos::from_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmosState {
    index: u8,
    nmi_masked: bool,
    ram: Vec<u8>,
    calendar: Calendar,
    /// The IRQ pin as last evaluated, so a restored RTC does not pulse
    /// again for a flag the guest has already been interrupted for.
    #[serde(default)]
    irqf: bool,
    /// The alarm interrupt as last evaluated (the same, for the alarm
    /// listener).
    #[serde(default)]
    alarm_irq: bool,
}

impl Cmos {
    /// The device's state.
    pub fn state(&self) -> CmosState {
        let s = lock(&self.state);
        CmosState {
            index: s.index,
            nmi_masked: s.nmi_masked,
            ram: s.ram.to_vec(),
            calendar: s.calendar.clone(),
            irqf: s.irqf,
            alarm_irq: s.alarm_irq,
        }
    }

    /// A device in `state`, reading the host's time from `clock`, with no
    /// interrupt line yet ([`Cmos::with_interrupt`] connects it, and the
    /// loop's first service re-arms the timer the registers ask for).
    pub fn from_state(state: &CmosState, clock: Arc<dyn RtcClock>) -> Result<Self, StateError> {
        let ram: [u8; CMOS_SIZE] =
            state
                .ram
                .as_slice()
                .try_into()
                .map_err(|_| StateError::WrongLength {
                    device: "rtc-cmos",
                    field: "the CMOS RAM",
                    found: state.ram.len(),
                    expected: CMOS_SIZE,
                })?;
        if state.index & !CMOS_INDEX_MASK != 0 {
            return Err(StateError::Invalid {
                device: "rtc-cmos",
                field: "index",
                value: u64::from(state.index),
                why: "the index register has 7 bits",
            });
        }
        state
            .calendar
            .check()
            .map_err(|(field, value)| StateError::Invalid {
                device: "rtc-cmos",
                field,
                value,
                why: "out of range for a clock",
            })?;
        Ok(Cmos {
            clock,
            state: Mutex::new(State {
                index: state.index,
                nmi_masked: state.nmi_masked,
                ram,
                calendar: state.calendar.clone(),
                irqf: state.irqf,
                alarm_irq: state.alarm_irq,
                armed: None,
            }),
            irq: IrqLine::None,
            rearm: Rearm::none(),
            alarm_listener: None,
            interrupts: AtomicU64::new(0),
        })
    }
}

impl Cmos {
    /// Takes over what a PC's CMOS keeps across a machine reset from the
    /// device of the boot before (`before`, its [`Cmos::state`]): the CMOS
    /// RAM and the clock, which are battery-backed; the index register and
    /// the NMI mask keep this device's power-on values. Refuses a state
    /// [`Cmos::from_state`] would refuse, changing nothing.
    pub fn keep_across_reset(&self, before: &CmosState) -> Result<(), StateError> {
        let checked = Cmos::from_state(before, self.clock.clone())?;
        let kept = lock(&checked.state);
        let mut s = lock(&self.state);
        s.ram = kept.ram;
        s.calendar = kept.calendar.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::cmos::{CmosMemorySizes, SystemClock, CMOS_DATA_PORT, CMOS_INDEX_PORT};
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;

    fn cmos() -> Cmos {
        Cmos::new(
            CmosMemorySizes {
                below_4g_end: 64 << 20,
                above_4g_size: 0,
            },
            Arc::new(SystemClock),
        )
    }

    fn read(c: &Cmos, index: u8) -> u8 {
        c.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[index]);
        let mut b = [0u8];
        c.pio_read(PioAddress(CMOS_INDEX_PORT), 1, &mut b);
        b[0]
    }

    #[test]
    fn test_cmos_keeps_ram_and_clock_across_a_reset() {
        let before = cmos();
        before.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[0x40]);
        before.pio_write(PioAddress(CMOS_INDEX_PORT), 1, &[0x03]);
        // Index 0x41 and the NMI mask set: those start over.
        before.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[0x80 | 0x41]);
        let after = cmos();
        after.keep_across_reset(&before.state()).unwrap();
        assert!(!after.nmi_masked());
        assert_eq!(read(&after, 0x40), 0x03);
        // A damaged state changes nothing.
        let mut bad = before.state();
        bad.ram.pop();
        assert!(after.keep_across_reset(&bad).is_err());
        assert_eq!(read(&after, 0x40), 0x03);
    }

    #[test]
    fn test_cmos_state_round_trips_ram_and_clock_offset() {
        let c = cmos();
        // A byte of CMOS RAM, and the year set one century ahead.
        c.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[0x40]);
        c.pio_write(PioAddress(CMOS_INDEX_PORT), 1, &[0x77]);
        let year = read(&c, 0x32);
        c.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[0x32]);
        c.pio_write(PioAddress(CMOS_DATA_PORT - 1), 1, &[year.wrapping_add(1)]);
        let state = c.state();
        let json = serde_json::to_string(&state).unwrap();
        let back: CmosState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let copy = Cmos::from_state(&back, Arc::new(SystemClock)).unwrap();
        assert_eq!(read(&copy, 0x40), 0x77);
        assert_eq!(read(&copy, 0x32), year.wrapping_add(1));
        assert!((copy.guest_time() - c.guest_time()).abs() <= 1);
    }

    #[test]
    fn test_cmos_from_state_checks_sizes_and_ranges() {
        let mut state = cmos().state();
        state.ram.pop();
        let e = Cmos::from_state(&state, Arc::new(SystemClock))
            .err()
            .unwrap();
        assert!(e.to_string().contains("127 bytes"), "{e}");
        let mut state = cmos().state();
        state.calendar = Calendar::new(i128::MAX / 2);
        let e = Cmos::from_state(&state, Arc::new(SystemClock))
            .err()
            .unwrap();
        assert!(e.to_string().contains("seen_ns"), "{e}");
        let mut state = cmos().state();
        state.index = 0x80;
        assert!(Cmos::from_state(&state, Arc::new(SystemClock)).is_err());
    }
}
