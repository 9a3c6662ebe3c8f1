//! ACPI fixed-hardware power-management registers: the PM1a event block, the
//! PM1a control block and the power-management timer, in one 12-byte I/O
//! block laid out as on QEMU's ICH9 LPC (`hw/acpi/ich9.c`, `hw/acpi/core.c`):
//!
//! | offset | register | width | behaviour                                     |
//! |--------|----------|-------|-----------------------------------------------|
//! | +0     | PM1_STS  | 16    | status bits, write 1 to clear                 |
//! | +2     | PM1_EN   | 16    | enable bits, read/write                       |
//! | +4     | PM1_CNT  | 16    | SCI_EN, BM_RLD, GBL_RLS, SLP_TYP, SLP_EN      |
//! | +6     | -        | 16    | nothing: reads 0xff, writes ignored           |
//! | +8     | PM_TMR   | 32    | 24-bit 3.579545 MHz counter, read-only        |
//!
//! Reference: ACPI Specification 6.4, chapter 4 "ACPI Hardware
//! Specification", §4.8 fixed hardware registers: the Power Management
//! Timer, the PM1 Event Grouping (Table 4.11 PM1 Status and Table 4.12 PM1
//! Enable bits) and the PM1 Control Grouping (Table 4.13).
//!
//! # Model
//! - Every access of any size at any offset is handled per byte lane: byte
//!   `i` of the access is byte `offset + i` of the block, registers are
//!   little-endian. A write changes only the bytes it covers; the timer is
//!   sampled once per access, so a 32-bit read is coherent.
//! - **PM1_STS**: the defined status bits (TMR_STS, BM_STS, GBL_STS,
//!   PWRBTN_STS, SLPBTN_STS, RTC_STS, PCIEXP_WAKE_STS, WAK_STS) are cleared
//!   by writing 1; writing 0 leaves them; reserved bits read 0. TMR_STS is
//!   set whenever bit 23 of the timer changes, as the spec defines for a
//!   24-bit timer. RTC_STS is set when the RTC raises its alarm interrupt
//!   (§4.8.2.1.1 "RTC alarm", [`RtcAlarmListener`]), PWRBTN_STS by
//!   [`AcpiPm::power_button`], WAK_STS by a wake from S3.
//! - **PM1_EN** and the **SCI** ([`AcpiPm::with_sci`], GSI 9): the defined
//!   enable bits are stored; reserved bits read 0. While the system works,
//!   the SCI is raised when an event status bit (TMR, GBL, PWRBTN, SLPBTN,
//!   RTC) and its enable bit are both set. The SCI is level-triggered; its
//!   line here is a KVM irqfd, which pulses: the device pulses it when the
//!   level rises, and again after a guest write to PM1_STS or PM1_EN that
//!   leaves the level high (the re-assertion a level line gives after the
//!   handler's EOI), so an event cannot be lost while another is pending.
//!   For TMR_STS with TMR_EN the device is a [`TimedDevice`]: the VMM's
//!   loop services it at the next carry (every 2^23 ticks, 2.34 s).
//! - **PM1_CNT**: this is an ACPI-only platform (the FADT's SMI_CMD must be
//!   0; there is no SMM), and on such platforms SCI_EN is always set (the
//!   spec's PM1 Enable text: "ACPI-only platforms (where SCI_EN is always
//!   set)"; Table 4.13 makes it hardware-owned): it reads 1 and ignores
//!   writes, as QEMU does without SMM. BM_RLD and SLP_TYP are stored;
//!   GBL_RLS and SLP_EN are write-only and read 0. Writing SLP_EN = 1 enters
//!   the sleep state SLP_TYP names (the value in PM1_CNT after the write's
//!   bytes are applied): [`S5_SLP_TYP`] (soft-off) sends
//!   [`VmEvent::PowerOff`] to the sink; [`S3_SLP_TYP`] (suspend to RAM)
//!   marks the platform sleeping and sends [`VmEvent::Suspend`] (the VMM
//!   stops every vCPU and keeps RAM); S1, S2 and S4 are not implemented
//!   and the request is logged and ignored (the guest keeps running).
//! - **Waking from S3** (§4.8.2.1.1, §16.1.5): while sleeping, the RTC
//!   alarm wakes the platform if RTC_EN is set, the power button always
//!   does. A wake sets WAK_STS (and the event's status bit, which says
//!   why), ends the sleeping state and sends [`VmEvent::Wake`]; the VMM
//!   restarts the boot processor at the FACS waking vector. While
//!   sleeping, events raise no SCI (they are wake events); an event that
//!   does not wake only sets its status bit.
//! - **PM_TMR**: `floor(elapsed_ns * 3579545 / 10^9) mod 2^24`, from a
//!   monotonic clock, zero when the device is created; bits 24-31 read 0.
//!   The FADT must advertise a 24-bit timer: TMR_VAL_EXT (FADT flag bit 8) =
//!   [`PM_TMR_VAL_EXT`] = false. Writes are ignored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::Trigger;

use crate::irq::IrqLine;
use crate::legacy::cmos::RtcAlarmListener;
use crate::lock;
use crate::timer::{delay_until, Rearm, TimedDevice};
use crate::vm_event::{VmEvent, VmEventSink};

mod state;
pub use state::AcpiPmState;

/// PM1a_CNT SLP_TYP value for S5 (soft-off). The DSDT's `\_S5_` package must
/// carry the same value.
pub const S5_SLP_TYP: u16 = 5;

/// PM1a_CNT SLP_TYP value for S3 (suspend to RAM), QEMU's value (which
/// kvm-unit-tests' `s3.flat` writes without reading the DSDT). The DSDT's
/// `\_S3_` package must carry the same value.
pub const S3_SLP_TYP: u16 = 1;

/// Offset of PM1_STS (PM1a_EVT_BLK + 0).
pub const PM1_STS_OFFSET: u16 = 0;
/// Offset of PM1_EN (PM1a_EVT_BLK + PM1_EVT_LEN / 2).
pub const PM1_EN_OFFSET: u16 = 2;
/// Offset of PM1_CNT (PM1a_CNT_BLK).
pub const PM1_CNT_OFFSET: u16 = 4;
/// Offset of PM_TMR (PM_TMR_BLK).
pub const PM_TMR_OFFSET: u16 = 8;
/// Length of the whole block.
pub const ACPI_PM_BLOCK_LEN: u16 = 0xc;
/// FADT PM1_EVT_LEN: status + enable.
pub const PM1_EVT_LEN: u8 = 4;
/// FADT PM1_CNT_LEN.
pub const PM1_CNT_LEN: u8 = 2;
/// FADT PM_TMR_LEN.
pub const PM_TMR_LEN: u8 = 4;
/// The PM timer's frequency.
pub const PM_TIMER_FREQUENCY_HZ: u64 = 3_579_545;
/// FADT flag TMR_VAL_EXT: false, the timer is 24 bits wide.
pub const PM_TMR_VAL_EXT: bool = false;
/// Mask of the timer value (24 bits).
pub const PM_TMR_MASK: u32 = 0x00ff_ffff;

/// PM1_STS: timer carry (bit 23 of the timer changed).
pub const PM1_STS_TMR: u16 = 1 << 0;
/// PM1_STS: bus-master status.
pub const PM1_STS_BM: u16 = 1 << 4;
/// PM1_STS: global lock release.
pub const PM1_STS_GBL: u16 = 1 << 5;
/// PM1_STS: power button.
pub const PM1_STS_PWRBTN: u16 = 1 << 8;
/// PM1_STS: sleep button.
pub const PM1_STS_SLPBTN: u16 = 1 << 9;
/// PM1_STS: RTC alarm.
pub const PM1_STS_RTC: u16 = 1 << 10;
/// PM1_STS: PCI Express wake.
pub const PM1_STS_PCIEXP_WAKE: u16 = 1 << 14;
/// PM1_STS: woke from a sleep state.
pub const PM1_STS_WAK: u16 = 1 << 15;
/// All defined PM1_STS bits.
pub const PM1_STS_DEFINED: u16 = PM1_STS_TMR
    | PM1_STS_BM
    | PM1_STS_GBL
    | PM1_STS_PWRBTN
    | PM1_STS_SLPBTN
    | PM1_STS_RTC
    | PM1_STS_PCIEXP_WAKE
    | PM1_STS_WAK;

/// PM1_EN: timer carry interrupt enable.
pub const PM1_EN_TMR: u16 = 1 << 0;
/// PM1_EN: global lock release enable.
pub const PM1_EN_GBL: u16 = 1 << 5;
/// PM1_EN: power button enable.
pub const PM1_EN_PWRBTN: u16 = 1 << 8;
/// PM1_EN: sleep button enable.
pub const PM1_EN_SLPBTN: u16 = 1 << 9;
/// PM1_EN: RTC alarm enable.
pub const PM1_EN_RTC: u16 = 1 << 10;
/// PM1_EN: PCI Express wake disable.
pub const PM1_EN_PCIEXP_WAKE_DIS: u16 = 1 << 14;
/// All defined PM1_EN bits.
pub const PM1_EN_DEFINED: u16 =
    PM1_EN_TMR | PM1_EN_GBL | PM1_EN_PWRBTN | PM1_EN_SLPBTN | PM1_EN_RTC | PM1_EN_PCIEXP_WAKE_DIS;
/// The status bits that raise the SCI when their enable bit (at the same
/// position in PM1_EN) is set.
pub const PM1_SCI_EVENTS: u16 =
    PM1_STS_TMR | PM1_STS_GBL | PM1_STS_PWRBTN | PM1_STS_SLPBTN | PM1_STS_RTC;

/// PM1_CNT: SCI (not SMI) delivery of PM events; always 1 here.
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
/// PM1_CNT: bus-master requests take the CPU out of C3.
pub const PM1_CNT_BM_RLD: u16 = 1 << 1;
/// PM1_CNT: global lock release (write-only).
pub const PM1_CNT_GBL_RLS: u16 = 1 << 2;
/// PM1_CNT: SLP_TYP field position.
pub const PM1_CNT_SLP_TYP_SHIFT: u32 = 10;
/// PM1_CNT: SLP_TYP field mask (bits 10-12).
pub const PM1_CNT_SLP_TYP_MASK: u16 = 0x7 << PM1_CNT_SLP_TYP_SHIFT;
/// PM1_CNT: enter the sleep state in SLP_TYP (write-only).
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;

/// Bit 23 of the 24-bit timer: TMR_STS is set whenever it changes.
const TMR_CARRY_SHIFT: u32 = 23;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A monotonic nanosecond clock; injectable so tests control the PM timer.
pub trait MonotonicClock: Send + Sync {
    /// Nanoseconds since an arbitrary fixed origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// The host's monotonic clock, counted from when this value was made.
#[derive(Debug, Clone, Copy)]
pub struct InstantClock {
    origin: Instant,
}

impl InstantClock {
    /// A clock starting at zero now.
    pub fn new() -> Self {
        InstantClock {
            origin: Instant::now(),
        }
    }
}

impl Default for InstantClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for InstantClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

struct State {
    sts: u16,
    en: u16,
    /// BM_RLD and SLP_TYP; the other bits are constant or write-only.
    cnt: u16,
    /// `ticks >> 23` when TMR_STS was last brought up to date.
    tmr_carry_seen: u128,
    /// In S3: between SLP_EN with [`S3_SLP_TYP`] and a wake event.
    sleeping: bool,
    /// The SCI level (an enabled event pending) as last evaluated.
    sci_level: bool,
}

/// The PM1a event/control registers and PM timer.
pub struct AcpiPm {
    sink: Arc<dyn VmEventSink>,
    clock: Arc<dyn MonotonicClock>,
    origin_ns: u64,
    /// Timer nanoseconds already elapsed at `origin_ns` (a restored
    /// timer goes on from its saved value).
    base_ns: u64,
    state: Mutex<State>,
    sci: IrqLine,
    rearm: Rearm,
    /// SCI pulses sent.
    sci_pulses: AtomicU64,
}

impl std::fmt::Debug for AcpiPm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcpiPm").finish_non_exhaustive()
    }
}

/// Registers by byte offset in the block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    Sts,
    En,
    Cnt,
    Tmr,
}

fn reg_at(offset: u64) -> Option<(Reg, u32)> {
    let byte = (offset % 2) as u32;
    match offset {
        0..=1 => Some((Reg::Sts, byte)),
        2..=3 => Some((Reg::En, byte)),
        4..=5 => Some((Reg::Cnt, byte)),
        8..=11 => Some((Reg::Tmr, (offset - 8) as u32)),
        _ => None,
    }
}

impl AcpiPm {
    /// A PM block reporting power-off to `sink`, with its timer on `clock`.
    pub fn new(sink: Arc<dyn VmEventSink>, clock: Arc<dyn MonotonicClock>) -> Self {
        let origin_ns = clock.now_ns();
        AcpiPm {
            sink,
            clock,
            origin_ns,
            base_ns: 0,
            state: Mutex::new(State {
                sts: 0,
                en: 0,
                cnt: 0,
                tmr_carry_seen: 0,
                sleeping: false,
                sci_level: false,
            }),
            sci: IrqLine::None,
            rearm: Rearm::none(),
            sci_pulses: AtomicU64::new(0),
        }
    }

    /// Connects the SCI: `sci` is pulsed as the module docs say, `rearm`
    /// is written when the guest enables TMR_EN (the loop then services
    /// the timer carry).
    pub fn with_sci(mut self, sci: IrqLine, rearm: Rearm) -> Self {
        self.sci = sci;
        self.rearm = rearm;
        self
    }

    /// SCI pulses sent so far.
    pub fn sci_pulses(&self) -> u64 {
        self.sci_pulses.load(Ordering::Relaxed)
    }

    /// Whether the platform is in S3.
    pub fn is_sleeping(&self) -> bool {
        lock(&self.state).sleeping
    }

    /// The power button is pressed: PWRBTN_STS; a wake from S3 (whatever
    /// PWRBTN_EN says, §4.8.2.2.1.1), or the SCI if PWRBTN_EN is set.
    /// (No VMM front end presses it yet, and the FADT still says there is
    /// no fixed power button.)
    pub fn power_button(&self) {
        let wake = {
            let mut s = lock(&self.state);
            s.sts |= PM1_STS_PWRBTN;
            s.sleeping
        };
        self.event(wake);
    }

    /// After an event set a status bit: wakes the platform if `wake` (and
    /// it sleeps), else raises the SCI if the event is enabled.
    fn event(&self, wake: bool) {
        let (pulse, woke) = {
            let mut s = lock(&self.state);
            if s.sleeping && wake {
                s.sts |= PM1_STS_WAK;
                s.sleeping = false;
                // The VMM resets the interrupt controllers at the wake: the
                // level counts as seen, the guest clears it after resuming.
                s.sci_level = s.sci_pending();
                (false, true)
            } else {
                (s.sync_sci(false), false)
            }
        };
        if pulse {
            self.pulse_sci();
        }
        if woke {
            log::info!("acpi-pm: wake from S3");
            self.sink.vm_event(VmEvent::Wake);
        }
    }

    fn pulse_sci(&self) {
        self.sci_pulses.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.sci.trigger() {
            log::warn!("acpi-pm: raising the SCI failed: {e}");
        }
    }

    /// Host nanoseconds (on the device's clock) until the next timer carry.
    fn until_next_carry(&self, s: &State) -> Duration {
        let next_ticks = (s.tmr_carry_seen + 1) << TMR_CARRY_SHIFT;
        // The first ns whose tick count reaches `next_ticks`.
        let hz = u128::from(PM_TIMER_FREQUENCY_HZ);
        let at_ns = (next_ticks * NANOS_PER_SEC).div_ceil(hz);
        let elapsed = self.clock.now_ns().saturating_sub(self.origin_ns);
        let at = i128::try_from(at_ns).unwrap_or(i128::MAX);
        delay_until(at, i128::from(elapsed))
    }

    /// Timer ticks since the device was made (not wrapped).
    /// Nanoseconds the timer has counted.
    fn elapsed_ns(&self) -> u64 {
        self.clock
            .now_ns()
            .saturating_sub(self.origin_ns)
            .saturating_add(self.base_ns)
    }

    fn ticks(&self) -> u128 {
        let elapsed = self.elapsed_ns();
        u128::from(elapsed) * u128::from(PM_TIMER_FREQUENCY_HZ) / NANOS_PER_SEC
    }

    /// The PM_TMR value now.
    pub fn timer(&self) -> u32 {
        (self.ticks() & u128::from(PM_TMR_MASK)) as u32
    }

    fn sleep(&self, slp_typ: u16) {
        if slp_typ == S5_SLP_TYP {
            log::info!("acpi-pm: S5 (soft-off) requested");
            self.sink.vm_event(VmEvent::PowerOff);
        } else if slp_typ == S3_SLP_TYP {
            log::info!("acpi-pm: S3 (suspend to RAM) requested");
            lock(&self.state).sleeping = true;
            self.sink.vm_event(VmEvent::Suspend);
        } else {
            log::warn!(
                "acpi-pm: sleep type {slp_typ} requested; only S3 and S5 are implemented, ignored"
            );
        }
    }
}

impl RtcAlarmListener for AcpiPm {
    /// The RTC raised its alarm interrupt: RTC_STS; a wake from S3 if
    /// RTC_EN is set, else the SCI if RTC_EN is set.
    fn rtc_alarm(&self) {
        let wake = {
            let mut s = lock(&self.state);
            s.sts |= PM1_STS_RTC;
            s.en & PM1_EN_RTC != 0
        };
        self.event(wake);
    }
}

impl TimedDevice for AcpiPm {
    /// Brings TMR_STS up to date (raising the SCI for it) and, with TMR_EN
    /// set, asks to be called at the next carry.
    fn service(&self) -> Option<Duration> {
        let ticks = self.ticks();
        let (pulse, next) = {
            let mut s = lock(&self.state);
            s.update_tmr_sts(ticks);
            let pulse = !s.sleeping && s.sync_sci(false);
            let next = (s.en & PM1_EN_TMR != 0 && !s.sleeping).then(|| self.until_next_carry(&s));
            (pulse, next)
        };
        if pulse {
            self.pulse_sci();
        }
        next
    }
}

impl State {
    /// An enabled event is pending (the SCI's level).
    fn sci_pending(&self) -> bool {
        self.sts & self.en & PM1_SCI_EVENTS != 0
    }

    /// Re-evaluates the SCI level; whether to pulse: on a rise, or with
    /// `reassert` (a guest write to STS/EN) while it stays high. No SCI
    /// while sleeping.
    fn sync_sci(&mut self, reassert: bool) -> bool {
        let level = self.sci_pending() && !self.sleeping;
        let pulse = level && (!self.sci_level || reassert);
        self.sci_level = level;
        pulse
    }

    fn update_tmr_sts(&mut self, ticks: u128) {
        let carry = ticks >> TMR_CARRY_SHIFT;
        if carry != self.tmr_carry_seen {
            self.sts |= PM1_STS_TMR;
            self.tmr_carry_seen = carry;
        }
    }
}

impl DevicePio for AcpiPm {
    fn pio_read(&self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let ticks = self.ticks();
        let mut s = lock(&self.state);
        s.update_tmr_sts(ticks);
        // A carry found by this read raises the SCI now if TMR_EN is set.
        if s.sync_sci(false) {
            self.pulse_sci();
        }
        let tmr = (ticks & u128::from(PM_TMR_MASK)) as u32;
        for (i, byte) in data.iter_mut().enumerate() {
            let at = u64::from(offset).saturating_add(i as u64);
            *byte = match reg_at(at) {
                Some((Reg::Sts, b)) => (s.sts >> (8 * b)) as u8,
                Some((Reg::En, b)) => (s.en >> (8 * b)) as u8,
                Some((Reg::Cnt, b)) => ((s.cnt | PM1_CNT_SCI_EN) >> (8 * b)) as u8,
                Some((Reg::Tmr, b)) => (tmr >> (8 * b)) as u8,
                None => 0xff,
            };
        }
    }

    fn pio_write(&self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        // Gather the access per register first: W1C and SLP_EN act on the
        // bytes written in this access, together.
        let mut value = [0u16; 3];
        let mut mask = [0u16; 3];
        for (i, &byte) in data.iter().enumerate() {
            let at = u64::from(offset).saturating_add(i as u64);
            let slot = match reg_at(at) {
                Some((Reg::Sts, b)) => Some((0, b)),
                Some((Reg::En, b)) => Some((1, b)),
                Some((Reg::Cnt, b)) => Some((2, b)),
                // The timer is read-only; holes are ignored.
                Some((Reg::Tmr, _)) | None => None,
            };
            if let Some((r, b)) = slot {
                value[r] |= u16::from(byte) << (8 * b);
                mask[r] |= 0xff << (8 * b);
            }
        }
        let ticks = self.ticks();
        let (sleep_type, pulse, timer_enabled) = {
            let mut s = lock(&self.state);
            // Bring TMR_STS up to date first, so a carry that already
            // happened is the one the guest clears.
            s.update_tmr_sts(ticks);
            let old_en = s.en;
            s.sts &= !(value[0] & mask[0] & PM1_STS_DEFINED);
            s.en = (s.en & !mask[1]) | (value[1] & mask[1] & PM1_EN_DEFINED);
            let stored = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;
            s.cnt = (s.cnt & !(mask[2] & stored)) | (value[2] & mask[2] & stored);
            // A handler's write to STS or EN that leaves an enabled event
            // pending sees the SCI again, as a level line would.
            let pulse = s.sync_sci(mask[0] | mask[1] != 0);
            let timer_enabled = old_en & PM1_EN_TMR == 0 && s.en & PM1_EN_TMR != 0;
            let sleep = (value[2] & mask[2] & PM1_CNT_SLP_EN != 0)
                .then_some((s.cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT);
            (sleep, pulse, timer_enabled)
        };
        if pulse {
            self.pulse_sci();
        }
        if timer_enabled {
            self.rearm.notify();
        }
        // Outside the lock: the sink may stop vCPUs.
        if let Some(typ) = sleep_type {
            self.sleep(typ);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm_event::RecordingSink;
    use vmm_sys_util::eventfd::EventFd;

    #[derive(Default)]
    struct TestClock(AtomicU64);

    impl TestClock {
        fn advance(&self, ns: u64) {
            self.0.fetch_add(ns, Ordering::SeqCst);
        }
    }

    impl MonotonicClock for TestClock {
        fn now_ns(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const BASE: PioAddress = PioAddress(0x600);

    fn pm() -> (AcpiPm, Arc<RecordingSink>, Arc<TestClock>) {
        let sink = Arc::new(RecordingSink::default());
        let clock = Arc::new(TestClock::default());
        clock.advance(123_456_789); // the origin need not be zero
        (AcpiPm::new(sink.clone(), clock.clone()), sink, clock)
    }

    fn r16(dev: &AcpiPm, off: u16) -> u16 {
        let mut d = [0u8; 2];
        dev.pio_read(BASE, off, &mut d);
        u16::from_le_bytes(d)
    }

    fn r32(dev: &AcpiPm, off: u16) -> u32 {
        let mut d = [0u8; 4];
        dev.pio_read(BASE, off, &mut d);
        u32::from_le_bytes(d)
    }

    fn w16(dev: &AcpiPm, off: u16, v: u16) {
        dev.pio_write(BASE, off, &v.to_le_bytes());
    }

    #[test]
    fn test_acpi_pm_timer_runs_at_3579545_hz_and_wraps_at_24_bits() {
        let (dev, _, clock) = pm();
        assert_eq!(r32(&dev, PM_TMR_OFFSET), 0);
        clock.advance(1_000_000_000);
        // 3579545 < 2^24: no wrap yet.
        assert_eq!(r32(&dev, PM_TMR_OFFSET), 3_579_545);
        clock.advance(1_000_000_000);
        assert_eq!(r32(&dev, PM_TMR_OFFSET), 7_159_090);
        // 5 s = 17897725 ticks: past 2^24, wraps; bits 24-31 stay 0.
        clock.advance(3_000_000_000);
        let v = r32(&dev, PM_TMR_OFFSET);
        assert_eq!(v, 17_897_725 % (1 << 24));
        assert_eq!(v & !PM_TMR_MASK, 0);
        assert_eq!(dev.timer(), v);
        // Sub-tick resolution: 1 us = 3.579545 ticks -> 3.
        let (dev, _, clock) = pm();
        clock.advance(1_000);
        assert_eq!(r32(&dev, PM_TMR_OFFSET), 3);
        // After one hour, still exact.
        clock.advance(3_600_000_000_000 - 1_000);
        assert_eq!(
            r32(&dev, PM_TMR_OFFSET),
            ((3_600u64 * PM_TIMER_FREQUENCY_HZ) % (1 << 24)) as u32
        );
    }

    #[test]
    fn test_acpi_pm_timer_byte_lanes_and_read_only() {
        let (dev, _, clock) = pm();
        clock.advance(1_000_000_000); // 0x369e99
        let v = r32(&dev, PM_TMR_OFFSET);
        assert_eq!(v, 0x0036_9e99);
        let mut b = [0u8];
        for i in 0..4u16 {
            dev.pio_read(BASE, PM_TMR_OFFSET + i, &mut b);
            assert_eq!(b[0], (v >> (8 * i)) as u8, "byte {i}");
        }
        assert_eq!(r16(&dev, PM_TMR_OFFSET + 2), 0x0036);
        dev.pio_write(BASE, PM_TMR_OFFSET, &[0xff; 4]);
        assert_eq!(r32(&dev, PM_TMR_OFFSET), v);
    }

    #[test]
    fn test_acpi_pm_s5_powers_off() {
        let (dev, sink, _) = pm();
        // Linux: write SLP_TYP, then SLP_TYP | SLP_EN.
        let typ = S5_SLP_TYP << PM1_CNT_SLP_TYP_SHIFT;
        w16(&dev, PM1_CNT_OFFSET, typ | PM1_CNT_SCI_EN);
        assert!(sink.events().is_empty());
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), typ | PM1_CNT_SCI_EN);
        w16(&dev, PM1_CNT_OFFSET, typ | PM1_CNT_SCI_EN | PM1_CNT_SLP_EN);
        assert_eq!(sink.events(), vec![VmEvent::PowerOff]);
        // SLP_EN reads 0.
        assert_eq!(r16(&dev, PM1_CNT_OFFSET) & PM1_CNT_SLP_EN, 0);
    }

    #[test]
    fn test_acpi_pm_s5_by_high_byte_write() {
        let (dev, sink, _) = pm();
        let hi = ((S5_SLP_TYP << PM1_CNT_SLP_TYP_SHIFT | PM1_CNT_SLP_EN) >> 8) as u8;
        dev.pio_write(BASE, PM1_CNT_OFFSET + 1, &[hi]);
        assert_eq!(sink.events(), vec![VmEvent::PowerOff]);
        // A 32-bit write from offset 2 (PM1_EN + PM1_CNT) powers off too.
        let (dev, sink, _) = pm();
        let cnt = S5_SLP_TYP << PM1_CNT_SLP_TYP_SHIFT | PM1_CNT_SLP_EN;
        let v = u32::from(cnt) << 16 | u32::from(PM1_EN_PWRBTN);
        dev.pio_write(BASE, PM1_EN_OFFSET, &v.to_le_bytes());
        assert_eq!(sink.events(), vec![VmEvent::PowerOff]);
        assert_eq!(r16(&dev, PM1_EN_OFFSET), PM1_EN_PWRBTN);
    }

    #[test]
    fn test_acpi_pm_other_sleep_types_ignored() {
        let (dev, sink, _) = pm();
        for typ in (0..8u16).filter(|&t| t != S5_SLP_TYP && t != S3_SLP_TYP) {
            w16(
                &dev,
                PM1_CNT_OFFSET,
                typ << PM1_CNT_SLP_TYP_SHIFT | PM1_CNT_SLP_EN,
            );
        }
        assert!(sink.events().is_empty());
        // SLP_TYP = S5 without SLP_EN: nothing.
        w16(&dev, PM1_CNT_OFFSET, S5_SLP_TYP << PM1_CNT_SLP_TYP_SHIFT);
        // A low-byte write while SLP_TYP = S5: no SLP_EN, nothing.
        dev.pio_write(BASE, PM1_CNT_OFFSET, &[0xff]);
        assert!(sink.events().is_empty());
        // SLP_EN alone with the stored S5 type: power off.
        dev.pio_write(
            BASE,
            PM1_CNT_OFFSET + 1,
            &[((S5_SLP_TYP << 2) | 0x20) as u8],
        );
        assert_eq!(sink.events(), vec![VmEvent::PowerOff]);
    }

    #[test]
    fn test_acpi_pm_cnt_bits() {
        let (dev, _, _) = pm();
        // SCI_EN is always 1 (ACPI-only platform) and cannot be cleared.
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), PM1_CNT_SCI_EN);
        w16(&dev, PM1_CNT_OFFSET, 0);
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), PM1_CNT_SCI_EN);
        // BM_RLD is stored, GBL_RLS reads 0, reserved bits read 0.
        w16(
            &dev,
            PM1_CNT_OFFSET,
            PM1_CNT_BM_RLD | PM1_CNT_GBL_RLS | 0xc1f8,
        );
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), PM1_CNT_SCI_EN | PM1_CNT_BM_RLD);
        // SLP_TYP = 3 stored (no SLP_EN).
        w16(&dev, PM1_CNT_OFFSET, 3 << PM1_CNT_SLP_TYP_SHIFT);
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), PM1_CNT_SCI_EN | 3 << 10);
        // A low-byte write leaves SLP_TYP.
        dev.pio_write(BASE, PM1_CNT_OFFSET, &[PM1_CNT_BM_RLD as u8]);
        assert_eq!(
            r16(&dev, PM1_CNT_OFFSET),
            PM1_CNT_SCI_EN | PM1_CNT_BM_RLD | 3 << 10
        );
    }

    #[test]
    fn test_acpi_pm_status_bits_are_write_one_to_clear() {
        let (dev, _, clock) = pm();
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
        // 2^23 ticks = 2.3435 s: bit 23 toggles, TMR_STS sets.
        clock.advance(2_343_000_000);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
        clock.advance(1_000_000);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        // Writing 0 does not clear it; other bits written 1 change nothing.
        w16(&dev, PM1_STS_OFFSET, 0);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        w16(&dev, PM1_STS_OFFSET, !PM1_STS_TMR);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        // A high-byte write does not touch bit 0.
        dev.pio_write(BASE, PM1_STS_OFFSET + 1, &[0xff]);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        // Writing 1 clears; it stays clear until the next toggle.
        dev.pio_write(BASE, PM1_STS_OFFSET, &[0x01]);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
        clock.advance(2_000_000_000);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
        clock.advance(400_000_000); // past 2 * 2^23 ticks (4.687 s)
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        // A toggle that happened before the write is the one cleared.
        clock.advance(2_400_000_000);
        w16(&dev, PM1_STS_OFFSET, PM1_STS_TMR);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
    }

    #[test]
    fn test_acpi_pm_enable_register() {
        let (dev, _, _) = pm();
        w16(&dev, PM1_EN_OFFSET, 0xffff);
        assert_eq!(r16(&dev, PM1_EN_OFFSET), PM1_EN_DEFINED);
        dev.pio_write(BASE, PM1_EN_OFFSET + 1, &[0x00]);
        assert_eq!(r16(&dev, PM1_EN_OFFSET), PM1_EN_DEFINED & 0x00ff);
        w16(&dev, PM1_EN_OFFSET, PM1_EN_PWRBTN | PM1_EN_TMR);
        assert_eq!(r16(&dev, PM1_EN_OFFSET), PM1_EN_PWRBTN | PM1_EN_TMR);
        // 32-bit read at 0: STS then EN.
        assert_eq!(
            r32(&dev, PM1_STS_OFFSET),
            u32::from(PM1_EN_PWRBTN | PM1_EN_TMR) << 16
        );
    }

    #[test]
    fn test_acpi_pm_every_offset_and_size() {
        let (dev, sink, clock) = pm();
        clock.advance(1_000_000_000);
        for off in 0..=0xffu16 {
            for len in [1usize, 2, 3, 4, 8] {
                let mut d = vec![0u8; len];
                dev.pio_read(BASE, off, &mut d);
                for (i, &b) in d.iter().enumerate() {
                    let at = u64::from(off) + i as u64;
                    if at == 6 || at == 7 || at >= 12 {
                        assert_eq!(b, 0xff, "offset {at}");
                    }
                    if at == 10 {
                        assert_eq!(b, 0x36, "PM_TMR byte 2");
                    }
                    if at == 11 {
                        assert_eq!(b, 0, "PM_TMR byte 3");
                    }
                }
                // Writes of zeros anywhere: no event, nothing breaks.
                dev.pio_write(BASE, off, &vec![0u8; len]);
            }
        }
        dev.pio_read(BASE, u16::MAX, &mut [0u8; 4]);
        dev.pio_write(BASE, u16::MAX, &[0xff; 4]);
        dev.pio_write(BASE, 0, &[]);
        assert!(sink.events().is_empty());
    }

    #[test]
    fn test_acpi_pm_instant_clock_is_monotonic() {
        let c = InstantClock::new();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
        let dev = AcpiPm::new(Arc::new(RecordingSink::default()), Arc::new(c));
        let t1 = dev.timer();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let t2 = dev.timer();
        assert!(t2 > t1, "{t1} {t2}");
    }

    /// A PM block with its SCI connected (pulses counted by the device).
    fn pm_sci() -> (AcpiPm, Arc<RecordingSink>, Arc<TestClock>, EventFd) {
        let (dev, sink, clock) = pm();
        let (rearm, watched) = Rearm::eventfd().unwrap();
        let dev = dev.with_sci(IrqLine::eventfd().unwrap(), rearm);
        (dev, sink, clock, watched)
    }

    fn sleep_s3(dev: &AcpiPm) {
        w16(
            dev,
            PM1_CNT_OFFSET,
            S3_SLP_TYP << PM1_CNT_SLP_TYP_SHIFT | PM1_CNT_SLP_EN,
        );
    }

    #[test]
    fn test_acpi_pm_s3_suspends_and_rtc_alarm_with_rtc_en_wakes() {
        let (dev, sink, _, _) = pm_sci();
        // kvm-unit-tests s3.flat: PM1_EN = RTC_EN, then PM1_CNT = 0x2400.
        w16(&dev, PM1_EN_OFFSET, PM1_EN_RTC);
        w16(&dev, PM1_CNT_OFFSET, 0x2400);
        assert_eq!(sink.events(), vec![VmEvent::Suspend]);
        assert!(dev.is_sleeping());
        assert_eq!(r16(&dev, PM1_CNT_OFFSET), PM1_CNT_SCI_EN | 1 << 10);
        dev.rtc_alarm();
        assert!(!dev.is_sleeping());
        assert_eq!(sink.events(), vec![VmEvent::Suspend, VmEvent::Wake]);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_WAK | PM1_STS_RTC);
        assert_eq!(dev.sci_pulses(), 0, "a wake is not an SCI");
        // OSPM clears them after resuming.
        w16(&dev, PM1_STS_OFFSET, PM1_STS_WAK | PM1_STS_RTC);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), 0);
        assert_eq!(dev.sci_pulses(), 0);
    }

    #[test]
    fn test_acpi_pm_rtc_alarm_without_rtc_en_does_not_wake() {
        let (dev, sink, _, _) = pm_sci();
        sleep_s3(&dev);
        dev.rtc_alarm();
        assert!(dev.is_sleeping());
        assert_eq!(sink.events(), vec![VmEvent::Suspend]);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_RTC);
        // Enabling RTC_EN afterwards does not wake by itself (no new
        // event), nor raise an SCI while sleeping.
        w16(&dev, PM1_EN_OFFSET, PM1_EN_RTC);
        assert!(dev.is_sleeping());
        assert_eq!(dev.sci_pulses(), 0);
        // The power button wakes whatever PWRBTN_EN says.
        dev.power_button();
        assert!(!dev.is_sleeping());
        assert_eq!(
            r16(&dev, PM1_STS_OFFSET),
            PM1_STS_WAK | PM1_STS_PWRBTN | PM1_STS_RTC
        );
        assert_eq!(sink.events(), vec![VmEvent::Suspend, VmEvent::Wake]);
    }

    #[test]
    fn test_acpi_pm_sci_for_enabled_events_while_working() {
        let (dev, sink, _, _) = pm_sci();
        // Not enabled: status only.
        dev.rtc_alarm();
        dev.power_button();
        assert_eq!(dev.sci_pulses(), 0);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_RTC | PM1_STS_PWRBTN);
        // Enabling an event whose status is set raises the level: a pulse.
        w16(&dev, PM1_EN_OFFSET, PM1_EN_RTC);
        assert_eq!(dev.sci_pulses(), 1);
        // A second event while the level is high: no new edge.
        dev.rtc_alarm();
        assert_eq!(dev.sci_pulses(), 1);
        // The handler clears PWRBTN_STS only: RTC is still pending, so the
        // SCI is seen again (a level line after EOI).
        w16(&dev, PM1_STS_OFFSET, PM1_STS_PWRBTN);
        assert_eq!(dev.sci_pulses(), 2);
        // Clearing RTC_STS drops the level; the next alarm raises it.
        w16(&dev, PM1_STS_OFFSET, PM1_STS_RTC);
        assert_eq!(dev.sci_pulses(), 2);
        dev.rtc_alarm();
        assert_eq!(dev.sci_pulses(), 3);
        // PWRBTN_EN: a press raises no new edge while RTC is pending...
        w16(&dev, PM1_STS_OFFSET, PM1_STS_RTC);
        w16(&dev, PM1_EN_OFFSET, PM1_EN_PWRBTN);
        dev.power_button();
        assert_eq!(dev.sci_pulses(), 4);
        assert!(sink.events().is_empty(), "no VM events while working");
    }

    #[test]
    fn test_acpi_pm_timer_carry_raises_sci_with_tmr_en() {
        let (dev, _, clock, rearm) = pm_sci();
        assert_eq!(dev.service(), None, "TMR_EN clear: no timer needed");
        w16(&dev, PM1_EN_OFFSET, PM1_EN_TMR);
        assert_eq!(rearm.read().unwrap(), 1, "enabling TMR_EN re-arms");
        // The first carry: 2^23 ticks = 2.343495 s after the origin.
        let d = dev.service().unwrap();
        let carry_ns = ((1u128 << 23) * 1_000_000_000).div_ceil(3_579_545) as u64;
        assert_eq!(d, Duration::from_nanos(carry_ns));
        clock.advance(carry_ns - 1);
        assert!(dev.service().is_some());
        assert_eq!(dev.sci_pulses(), 0);
        clock.advance(1);
        let second = ((2u128 << 23) * 1_000_000_000).div_ceil(3_579_545) as u64;
        assert_eq!(dev.service(), Some(Duration::from_nanos(second - carry_ns)));
        assert_eq!(dev.sci_pulses(), 1);
        assert_eq!(r16(&dev, PM1_STS_OFFSET), PM1_STS_TMR);
        // Another enable write does not re-arm.
        w16(&dev, PM1_EN_OFFSET, PM1_EN_TMR);
        assert!(rearm.read().is_err());
        // No SCI and no timer while sleeping.
        w16(&dev, PM1_STS_OFFSET, PM1_STS_TMR);
        sleep_s3(&dev);
        clock.advance(carry_ns * 3);
        assert_eq!(dev.service(), None);
        assert_eq!(dev.sci_pulses(), 2, "only the STS write's re-assert");
    }
}
