//! Tests of the RTC's interrupts: IRQ 8 pulses, the main loop's schedule
//! (`TimedDevice::service`), the re-arm eventfd and the alarm listener, on
//! a clock the tests move by hand.

use std::sync::atomic::AtomicUsize;

use vmm_sys_util::eventfd::EventFd;

use super::calendar::{secs_of, NANOS_PER_SEC};
use super::*;

#[derive(Default)]
struct TestClock(Mutex<i128>);

impl TestClock {
    fn advance(&self, d: Duration) {
        *lock(&self.0) += d.as_nanos() as i128;
    }
    fn advance_ns(&self, ns: i128) {
        *lock(&self.0) += ns;
    }
    fn ns(&self) -> i128 {
        *lock(&self.0)
    }
}

impl RtcClock for TestClock {
    fn now(&self) -> (i64, u32) {
        let ns = *lock(&self.0);
        (secs_of(ns), ns.rem_euclid(NANOS_PER_SEC) as u32)
    }
}

#[derive(Default)]
struct CountingListener(AtomicUsize);

impl RtcAlarmListener for CountingListener {
    fn rtc_alarm(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Rig {
    dev: Cmos,
    clock: Arc<TestClock>,
    line: EventFd,
    rearm: EventFd,
    alarms: Arc<CountingListener>,
}

const NO_RAM: CmosMemorySizes = CmosMemorySizes {
    below_4g_end: 0,
    above_4g_size: 0,
};

/// An RTC at `secs` + `nanos` (binary mode, 24 h) with its IRQ line, re-arm
/// eventfd and alarm listener recorded.
fn rig(secs: i64, nanos: u32) -> Rig {
    let clock = Arc::new(TestClock::default());
    clock.advance_ns(i128::from(secs) * NANOS_PER_SEC + i128::from(nanos));
    let irq = IrqLine::eventfd().unwrap();
    let line = irq.as_eventfd().unwrap().try_clone().unwrap();
    let (rearm_dev, rearm) = Rearm::eventfd().unwrap();
    let alarms = Arc::new(CountingListener::default());
    let dev = Cmos::new(NO_RAM, clock.clone())
        .with_interrupt(irq, rearm_dev)
        .with_alarm_listener(alarms.clone());
    let r = Rig {
        dev,
        clock,
        line,
        rearm,
        alarms,
    };
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM);
    r.rearmed();
    r
}

impl Rig {
    fn rd(&self, index: u8) -> u8 {
        self.dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[index]);
        let mut d = [0u8];
        self.dev.pio_read(PioAddress(CMOS_INDEX_PORT), 1, &mut d);
        d[0]
    }

    fn wr(&self, index: u8, value: u8) {
        self.dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[index]);
        self.dev.pio_write(PioAddress(CMOS_INDEX_PORT), 1, &[value]);
    }

    /// Pulses on the IRQ line since the last call.
    fn pulses(&self) -> u64 {
        self.line.read().unwrap_or(0)
    }

    /// Whether the re-arm eventfd was written since the last call.
    fn rearmed(&self) -> bool {
        self.rearm.read().is_ok()
    }

    fn alarms(&self) -> usize {
        self.alarms.0.load(Ordering::SeqCst)
    }

    /// Runs the main loop's part until `until` ns from now: sleep until
    /// the deadline service() gives (or the end), service, and have the
    /// guest's handler read C after every pulse. Returns the pulse count.
    fn run_loop(&self, until: i128) -> u64 {
        self.run_loop_counting(until).0
    }

    /// [`Self::run_loop`], also returning how often the loop woke.
    fn run_loop_counting(&self, until: i128) -> (u64, u64) {
        let end = self.clock.ns() + until;
        let mut pulses = 0;
        let mut wakeups = 1;
        let mut next = self.dev.service();
        loop {
            let at = next.map_or(end, |d| (self.clock.ns() + d.as_nanos() as i128).min(end));
            self.clock.advance_ns(at - self.clock.ns());
            if self.clock.ns() >= end {
                return (pulses, wakeups);
            }
            wakeups += 1;
            next = self.dev.service();
            let p = self.pulses();
            if p > 0 {
                pulses += p;
                assert_ne!(
                    self.rd(RTC_REG_C) & REG_C_IRQF,
                    0,
                    "a pulse with IRQF clear"
                );
                // The handler's read re-armed the loop; it asks again.
                assert!(self.rearmed(), "reading C did not re-arm");
                wakeups += 1;
                next = self.dev.service();
            }
        }
    }
}

#[test]
fn test_cmos_irq_periodic_rate_for_every_rate_select() {
    let hz = [
        0u64, 256, 128, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2,
    ];
    for rs in 1..16u8 {
        let r = rig(1_000, 0);
        r.wr(RTC_REG_A, 0x20 | rs);
        r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE);
        assert!(r.rearmed(), "RS {rs}: enabling PIE re-arms");
        let n = r.run_loop(NANOS_PER_SEC);
        assert!(
            n.abs_diff(hz[usize::from(rs)]) <= 1,
            "RS {rs}: {n} interrupts in one second, want {}",
            hz[usize::from(rs)]
        );
        assert_eq!(r.dev.interrupts(), n);
    }
    // 8192 Hz costs the loop at most two wake-ups per interrupt (the timer
    // and the re-arm), and none once the guest stops reading C.
    let r = rig(1_000, 0);
    r.wr(RTC_REG_A, 0x23);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE);
    let (n, wakeups) = r.run_loop_counting(NANOS_PER_SEC);
    assert!(
        n >= 8191 && wakeups <= 2 * n + 1,
        "{n} interrupts, {wakeups} wake-ups"
    );
    if let Some(d) = r.dev.service() {
        r.clock.advance(d);
    }
    assert_eq!(r.dev.service(), None, "unread: the loop sleeps");
    r.clock.advance_ns(NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None, "still unread: still asleep");
    // RS = 0: no periodic interrupt, nothing scheduled.
    let r = rig(1_000, 0);
    r.wr(RTC_REG_A, 0x20);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE);
    assert_eq!(r.dev.service(), None);
    assert_eq!(r.run_loop(NANOS_PER_SEC), 0);
}

#[test]
fn test_cmos_irq_periodic_deadline_is_the_next_edge() {
    // 1024 Hz: edges every 976.5625 us of the divider, which starts in
    // phase with the host's second at construction.
    let r = rig(50, 0);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE);
    let d = r.dev.service().unwrap();
    assert_eq!(d, Duration::from_nanos(976_563), "ceil(976562.5 ns)");
    r.clock.advance(d - Duration::from_nanos(1));
    assert_eq!(r.dev.service(), Some(Duration::from_nanos(1)));
    assert_eq!(r.pulses(), 0, "not due yet");
    r.clock.advance_ns(1);
    assert_eq!(r.dev.service(), None, "IRQF pending: nothing to schedule");
    assert_eq!(r.pulses(), 1);
    assert_eq!(r.rd(RTC_REG_C), REG_C_IRQF | REG_C_PF);
    assert!(r.rearmed());
    // The next edge: 2 * 976562.5 ns from the start, rounded up.
    assert_eq!(
        r.dev.service(),
        Some(Duration::from_nanos(1_953_125 - 976_563))
    );
}

#[test]
fn test_cmos_irq_no_pulse_while_irqf_pending() {
    let r = rig(77, 0);
    r.wr(RTC_REG_A, 0x23); // 8192 Hz
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE | REG_B_UIE);
    let d = r.dev.service().unwrap();
    r.clock.advance(d);
    assert_eq!(r.dev.service(), None);
    assert_eq!(r.pulses(), 1);
    // Ten seconds of edges and updates pass unread: still one pulse, and
    // the loop is never asked to wake.
    for _ in 0..1000 {
        r.clock.advance_ns(10_000_000);
        assert_eq!(r.dev.service(), None);
    }
    assert_eq!(r.pulses(), 0);
    assert_eq!(r.dev.interrupts(), 1);
    // Re-enabling an interrupt whose flag is set while IRQF is set: no
    // new pulse either.
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE | REG_B_UIE);
    assert_eq!(r.pulses(), 0);
    assert_eq!(r.rd(RTC_REG_C), REG_C_IRQF | REG_C_PF | REG_C_UF);
    // Read-to-clear: C reads 0 now, the line is low until the next edge.
    assert_eq!(r.rd(RTC_REG_C), 0);
    assert_eq!(r.pulses(), 0);
    assert!(r.dev.service().is_some());
}

#[test]
fn test_cmos_irq_read_to_clear_and_enable_with_flag_set() {
    let r = rig(10, 500_000_000);
    // Flags accumulate with interrupts disabled: no pulse, no schedule.
    r.clock.advance_ns(2 * NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None);
    assert_eq!(r.pulses(), 0);
    // Enabling UIE while UF is set raises IRQF at once (QEMU does too).
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    assert_eq!(r.pulses(), 1);
    // Disabling it lowers IRQF (C shows no IRQF), re-enabling pulses again.
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    assert_eq!(r.pulses(), 1);
    let c = r.rd(RTC_REG_C);
    assert_eq!(c & (REG_C_IRQF | REG_C_UF), REG_C_IRQF | REG_C_UF);
    assert_eq!(r.rd(RTC_REG_C), 0, "reading clears every flag");
    // The next update is at 13.0 s: 0.5 s away.
    assert_eq!(r.dev.service(), Some(Duration::from_millis(500)));
}

#[test]
fn test_cmos_irq_update_ended_once_per_second() {
    let r = rig(1_000, 250_000_000);
    r.wr(RTC_REG_A, 0x20); // no periodic flag noise
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    assert!(r.rearmed());
    assert_eq!(r.dev.service(), Some(Duration::from_millis(750)));
    assert_eq!(r.run_loop(10 * NANOS_PER_SEC), 10);
    // SET stops updates (and clears UIE): nothing scheduled.
    r.wr(RTC_REG_B, REG_B_SET | REG_B_24H | REG_B_DM | REG_B_UIE);
    assert_eq!(r.dev.service(), None);
    r.clock.advance_ns(5 * NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None);
    assert_eq!(r.pulses(), 0);
}

#[test]
fn test_cmos_irq_alarm_with_dont_care_bytes() {
    // 12:34:56.5, binary mode.
    let t = 12 * 3600 + 34 * 60 + 56;
    let r = rig(t, 500_000_000);
    r.wr(RTC_REG_A, 0x20);
    // Every second: all three bytes don't care (kvm-unit-tests' s3.flat).
    for i in [RTC_SECONDS_ALARM, RTC_MINUTES_ALARM, RTC_HOURS_ALARM] {
        r.wr(i, ALARM_DONT_CARE);
    }
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_AIE);
    assert_eq!(r.dev.service(), Some(Duration::from_millis(500)));
    assert_eq!(r.run_loop(3 * NANOS_PER_SEC), 3);
    assert_eq!(r.alarms(), 3);
    // Second 10 of any minute: now 12:34:59.5, next 12:35:10.
    r.wr(RTC_SECONDS_ALARM, 10);
    assert_eq!(r.dev.service(), Some(Duration::from_millis(10_500)));
    // Hour 13, any minute, second 0: the first match is 13:00:00.
    r.wr(RTC_HOURS_ALARM, 13);
    r.wr(RTC_SECONDS_ALARM, 0);
    let to_13 = (13 * 3600 - t - 3) * 1000 - 500;
    assert_eq!(r.dev.service(), Some(Duration::from_millis(to_13 as u64)));
    // 12-hour BCD mode: 1 pm is 0x81.
    r.wr(RTC_REG_B, REG_B_AIE);
    r.wr(RTC_HOURS_ALARM, 0x81);
    assert_eq!(r.dev.service(), Some(Duration::from_millis(to_13 as u64)));
    // A byte that can never match (seconds 0x61): nothing scheduled.
    r.wr(RTC_SECONDS_ALARM, 0x61);
    assert_eq!(r.dev.service(), None);
}

#[test]
fn test_cmos_irq_alarm_listener_needs_aie_and_fires_while_irqf_waits() {
    let r = rig(100, 0);
    r.wr(RTC_REG_A, 0x20);
    r.wr(RTC_SECONDS_ALARM, ALARM_DONT_CARE);
    r.wr(RTC_MINUTES_ALARM, ALARM_DONT_CARE);
    r.wr(RTC_HOURS_ALARM, ALARM_DONT_CARE);
    // AF without AIE: a flag for pollers, no interrupt, no listener.
    r.clock.advance_ns(NANOS_PER_SEC);
    assert_eq!(r.rd(RTC_REG_C), REG_C_AF | REG_C_UF);
    assert_eq!((r.pulses(), r.alarms()), (0, 0));
    // UIE raises IRQF first; with AIE too, the alarm still reaches the
    // listener at the next update although IRQF is already set.
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    r.clock.advance_ns(NANOS_PER_SEC);
    assert!(r.dev.service().is_none());
    assert_eq!(r.pulses(), 1);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE | REG_B_AIE);
    // AF is set already (unread): the alarm interrupt rises now.
    assert_eq!(r.alarms(), 1);
    let _ = r.rd(RTC_REG_C);
    // Now nothing is pending: the next update is an alarm and an update.
    let d = r.dev.service().unwrap();
    r.clock.advance(d);
    assert_eq!(r.dev.service(), None);
    assert_eq!((r.pulses(), r.alarms()), (1, 2));
    // 00:01:43.0 now. With UF pending and unread (IRQF set), an alarm
    // still gets scheduled for the listener: a sleeping guest reads no C.
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    r.wr(RTC_SECONDS_ALARM, 46);
    let _ = r.rd(RTC_REG_C);
    assert_eq!(r.dev.service(), Some(Duration::from_secs(1)));
    r.clock.advance_ns(NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None, "UF pending, AIE off");
    assert_eq!(r.pulses(), 1);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE | REG_B_AIE);
    assert_eq!(r.dev.service(), Some(Duration::from_secs(2)));
    r.clock.advance_ns(2 * NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None);
    assert_eq!((r.pulses(), r.alarms()), (0, 3), "listener told, no pulse");
}

#[test]
fn test_cmos_irq_rearm_only_when_the_next_event_comes_sooner() {
    let r = rig(100, 0);
    r.wr(RTC_REG_A, 0x2f); // 2 Hz
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE);
    assert!(r.rearmed());
    assert_eq!(r.dev.service(), Some(Duration::from_millis(500)));
    // A faster rate brings the next edge forward: re-arm.
    r.wr(RTC_REG_A, 0x26);
    assert!(r.rearmed());
    assert!(r.dev.service().unwrap() < Duration::from_millis(1));
    // A slower one does not (the armed timer fires early and finds the
    // new deadline), nor do reads of the time or of RAM.
    r.wr(RTC_REG_A, 0x2f);
    let _ = r.rd(RTC_SECONDS);
    let _ = r.rd(0x40);
    r.wr(0x40, 1);
    assert!(!r.rearmed());
    // Disabling everything: no re-arm; service() then disarms.
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM);
    assert!(!r.rearmed());
    assert_eq!(r.dev.service(), None);
    // Index-port writes alone never touch the schedule.
    r.dev
        .pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[RTC_REG_C]);
    assert!(!r.rearmed());
}

#[test]
fn test_cmos_irq_divider_reset_and_time_jumps() {
    let r = rig(100, 0);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_PIE | REG_B_UIE);
    // Divider in reset: no periodic edges, no updates.
    r.wr(RTC_REG_A, 0x70 | 0x06);
    assert_eq!(r.dev.service(), None);
    // Leaving reset: the first update 500 ms later; the periodic edges
    // run from the new phase.
    r.wr(RTC_REG_A, 0x20);
    r.wr(RTC_REG_B, REG_B_24H | REG_B_DM | REG_B_UIE);
    assert!(r.rearmed());
    assert_eq!(r.dev.service(), Some(Duration::from_millis(500)));
    // Setting the time while running keeps the phase: still 500 ms.
    r.wr(RTC_SECONDS, 30);
    assert_eq!(r.dev.service(), Some(Duration::from_millis(500)));
    assert_eq!(r.run_loop(2 * NANOS_PER_SEC), 2);
    // A time jump of the host clock makes the update due at once.
    r.clock.advance_ns(3_600 * NANOS_PER_SEC);
    assert_eq!(r.dev.service(), None);
    assert_eq!(r.pulses(), 1);
}

#[test]
fn test_cmos_irq_unconnected_line_still_counts_and_schedules() {
    let clock = Arc::new(TestClock::default());
    let dev = Cmos::new(NO_RAM, clock.clone());
    dev.pio_write(
        PioAddress(CMOS_INDEX_PORT),
        0,
        &[RTC_REG_B, REG_B_24H | REG_B_UIE],
    );
    let d = dev.service().unwrap();
    clock.advance(d);
    assert_eq!(dev.service(), None);
    assert_eq!(dev.interrupts(), 1);
}
