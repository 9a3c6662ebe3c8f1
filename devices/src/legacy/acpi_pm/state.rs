//! The ACPI PM block's snapshot state: PM1 status, enable and control,
//! and the PM timer as the time it has counted, so a restored timer goes
//! on from its saved value (like the guest's kvmclock, it does not count
//! the time the VM spent saved).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{
    AcpiPm, MonotonicClock, State, PM1_CNT_BM_RLD, PM1_CNT_SLP_TYP_MASK, PM1_EN_DEFINED,
    PM1_STS_DEFINED,
};
use crate::state::StateError;
use crate::timer::Rearm;
use crate::vm_event::VmEventSink;
use crate::{lock, IrqLine};

/// The PM registers and timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcpiPmState {
    /// PM1_STS.
    pub pm1_sts: u16,
    /// PM1_EN.
    pub pm1_en: u16,
    /// PM1_CNT (the stored bits: BM_RLD, SLP_TYP).
    pub pm1_cnt: u16,
    /// Nanoseconds the PM timer has counted.
    pub timer_ns: u64,
    /// The timer's carry (bit 23) count last reflected in TMR_STS.
    pub tmr_carry_seen: u64,
    /// In S3 (asleep until a wake event).
    #[serde(default)]
    pub sleeping: bool,
    /// The SCI level as last evaluated (an enabled event pending), so a
    /// restored block does not pulse again for an event already signalled.
    #[serde(default)]
    pub sci_level: bool,
}

fn check(field: &'static str, value: u16, allowed: u16) -> Result<(), StateError> {
    if value & !allowed != 0 {
        return Err(StateError::Invalid {
            device: "acpi-pm",
            field,
            value: u64::from(value),
            why: "it sets bits the register does not have",
        });
    }
    Ok(())
}

impl AcpiPm {
    /// The registers and the timer now.
    pub fn state(&self) -> AcpiPmState {
        let timer_ns = self.elapsed_ns();
        let s = lock(&self.state);
        AcpiPmState {
            pm1_sts: s.sts,
            pm1_en: s.en,
            pm1_cnt: s.cnt,
            timer_ns,
            tmr_carry_seen: u64::try_from(s.tmr_carry_seen).unwrap_or(u64::MAX),
            sleeping: s.sleeping,
            sci_level: s.sci_level,
        }
    }

    /// A PM block in `state`, wired as [`AcpiPm::new`] (no SCI until
    /// [`AcpiPm::with_sci`]).
    pub fn from_state(
        state: &AcpiPmState,
        sink: Arc<dyn VmEventSink>,
        clock: Arc<dyn MonotonicClock>,
    ) -> Result<Self, StateError> {
        check("PM1_STS", state.pm1_sts, PM1_STS_DEFINED)?;
        check("PM1_EN", state.pm1_en, PM1_EN_DEFINED)?;
        check(
            "PM1_CNT",
            state.pm1_cnt,
            PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK,
        )?;
        let origin_ns = clock.now_ns();
        Ok(AcpiPm {
            sink,
            clock,
            origin_ns,
            base_ns: state.timer_ns,
            state: Mutex::new(State {
                sts: state.pm1_sts,
                en: state.pm1_en,
                cnt: state.pm1_cnt,
                tmr_carry_seen: u128::from(state.tmr_carry_seen),
                sleeping: state.sleeping,
                sci_level: state.sci_level,
            }),
            sci: IrqLine::None,
            rearm: Rearm::none(),
            sci_pulses: AtomicU64::new(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::acpi_pm::{InstantClock, PM1_EN_OFFSET, PM_TMR_OFFSET};
    use crate::vm_event::RecordingSink;
    use vm_device::bus::PioAddress;
    use vm_device::DevicePio;

    fn read32(pm: &AcpiPm, offset: u16) -> u32 {
        let mut b = [0u8; 4];
        pm.pio_read(PioAddress(0x600), offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn test_acpi_pm_state_keeps_registers_and_continues_the_timer() {
        let sink = Arc::new(RecordingSink::default());
        let pm = AcpiPm::new(sink.clone(), Arc::new(InstantClock::new()));
        pm.pio_write(PioAddress(0x600), PM1_EN_OFFSET, &[0x01, 0x01]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let state = pm.state();
        assert!(state.timer_ns >= 20_000_000);
        let json = serde_json::to_string(&state).unwrap();
        let back: AcpiPmState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        // A fresh clock starting at zero: the timer still goes on from
        // the saved count, never backwards.
        let copy = AcpiPm::from_state(&back, sink, Arc::new(InstantClock::new())).unwrap();
        let saved_ticks = (u128::from(state.timer_ns) * 3_579_545 / 1_000_000_000) as u32;
        let now = read32(&copy, PM_TMR_OFFSET);
        assert!(now >= saved_ticks, "{now} < {saved_ticks}");
        assert_eq!(copy.state().pm1_en, 0x0101);
    }

    #[test]
    fn test_acpi_pm_from_state_refuses_undefined_bits() {
        let sink = Arc::new(RecordingSink::default());
        let state = AcpiPmState {
            pm1_cnt: 0x8000,
            ..Default::default()
        };
        let e = AcpiPm::from_state(&state, sink, Arc::new(InstantClock::new()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("PM1_CNT"), "{e}");
    }
}
