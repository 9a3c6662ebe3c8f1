//! The MC146818A's clock: the guest's time kept as an offset from an
//! [`RtcClock`], the calendar arithmetic behind the time bytes, their BCD or
//! binary and 12- or 24-hour encodings, the divider's phase (UIP, the
//! periodic rate), and the register C flags. Registers A and B and the alarm
//! bytes live in the register file (`super`), which passes them in.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    ALARM_DONT_CARE, CMOS_CENTURY, HOURS_PM, REG_A_DV_MASK, REG_A_RS_MASK, REG_A_UIP, REG_B_24H,
    REG_B_AIE, REG_B_DM, REG_B_PIE, REG_B_SET, REG_B_UIE, REG_C_AF, REG_C_IRQF, REG_C_PF, REG_C_UF,
    RTC_DAY_OF_MONTH, RTC_DAY_OF_WEEK, RTC_HOURS, RTC_MINUTES, RTC_MONTH, RTC_SECONDS, RTC_YEAR,
};

pub(super) const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// The time base the divider chain counts.
const TIME_BASE_HZ: i128 = 32_768;
/// UIP rises 8 time-base periods (244.140625 us) before the update.
const UIP_LEAD_NS: i128 = 8 * NANOS_PER_SEC / TIME_BASE_HZ;
/// After the divider leaves reset, the first update comes half a second later.
const DIVIDER_RESTART_PHASE_NS: i128 = NANOS_PER_SEC / 2;
/// DV2-0 values at or below this run the divider; 11x holds it in reset.
const DV_LAST_RUNNING: u8 = 0x20;

/// Where the RTC gets the current time: seconds and nanoseconds since the
/// Unix epoch (UTC). Injectable so tests control time.
pub trait RtcClock: Send + Sync {
    /// The current time as `(seconds, nanoseconds)` since 1970-01-01 UTC.
    /// Seconds may be negative (before 1970); nanoseconds are below 10^9.
    fn now(&self) -> (i64, u32);
}

/// The host's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl RtcClock for SystemClock {
    fn now(&self) -> (i64, u32) {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(before) => {
                // A host clock before 1970: express it as a negative second
                // plus a positive fraction.
                let d = before.duration();
                let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (secs, 0),
                    n => (secs - 1, 1_000_000_000 - n),
                }
            }
        }
    }
}

/// A calendar date and time (proleptic Gregorian, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Full year (e.g. 2024).
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
    /// Day of week, 0 = Sunday.
    pub weekday: u32,
}

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian). `month`
/// must be 1-12; `day` is taken arithmetically (0 is the previous month's
/// last day, 32 a day into the next month).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count from 0000-03-01 so the leap day is the last day of a "year":
    // then a year's day number depends only on the month, and whole 400-year
    // eras have exactly 146097 days.
    let (y, m) = if month <= 2 {
        (year - 1, i64::from(month) + 9)
    } else {
        (year, i64::from(month) - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    // Month lengths from March repeat 31,30,31,30,31 -> 153 days per 5
    // months; this rounds to each month's first day.
    let day_of_year = (153 * m + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The calendar date `days` after 1970-01-01: `(year, month, day)`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    // Undo the 4/100/400-year leap rules to find the year within the era.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * m + 2) / 5 + 1;
    let month = if m < 10 { m + 3 } else { m - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1-12 and day 1-31 by construction.
    (year, month as u32, day as u32)
}

/// The calendar time `secs` seconds after the Unix epoch.
pub fn civil_from_unix(secs: i64) -> CivilTime {
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    CivilTime {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod / 60 % 60) as u32,
        second: (sod % 60) as u32,
        // 1970-01-01 was a Thursday (4).
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Seconds since the Unix epoch of a calendar time (the weekday is ignored;
/// fields are taken arithmetically as in [`days_from_civil`]).
pub fn unix_from_civil(t: &CivilTime) -> i64 {
    days_from_civil(t.year, t.month.clamp(1, 12), t.day)
        .saturating_mul(SECS_PER_DAY)
        .saturating_add(i64::from(t.hour) * 3600)
        .saturating_add(i64::from(t.minute) * 60)
        .saturating_add(i64::from(t.second))
}

/// The time registers, in the order they are kept while the clock is held.
const TIME_REGS: [u8; 8] = [
    RTC_SECONDS,
    RTC_MINUTES,
    RTC_HOURS,
    RTC_DAY_OF_WEEK,
    RTC_DAY_OF_MONTH,
    RTC_MONTH,
    RTC_YEAR,
    CMOS_CENTURY,
];

/// Where time register `index` sits in [`TIME_REGS`], if it is one.
pub(super) fn time_slot(index: u8) -> Option<usize> {
    TIME_REGS.iter().position(|&r| r == index)
}

/// How register B says numbers are encoded.
#[derive(Clone, Copy)]
struct Mode {
    binary: bool,
    h24: bool,
}

impl Mode {
    fn of(reg_b: u8) -> Self {
        Mode {
            binary: reg_b & REG_B_DM != 0,
            h24: reg_b & REG_B_24H != 0,
        }
    }

    fn encode(self, v: u32) -> u8 {
        let v = v % 100;
        if self.binary {
            v as u8
        } else {
            ((v / 10) << 4 | (v % 10)) as u8
        }
    }

    fn decode(self, b: u8) -> u32 {
        if self.binary {
            u32::from(b)
        } else {
            // Invalid BCD digits are taken at face value, as a counter
            // loaded with them would.
            u32::from(b >> 4) * 10 + u32::from(b & 0x0f)
        }
    }

    fn encode_hour(self, h24: u32) -> u8 {
        if self.h24 {
            return self.encode(h24);
        }
        let h12 = match h24 % 12 {
            0 => 12,
            h => h,
        };
        let pm = if h24 >= 12 { HOURS_PM } else { 0 };
        self.encode(h12) | pm
    }

    fn decode_hour(self, b: u8) -> u32 {
        if self.h24 {
            return self.decode(b);
        }
        let h = self.decode(b & !HOURS_PM) % 12;
        if b & HOURS_PM != 0 {
            h + 12
        } else {
            h
        }
    }
}

/// The host time, in nanoseconds since the epoch.
pub(super) fn host_ns(clock: &dyn RtcClock) -> i128 {
    let (secs, nanos) = clock.now();
    i128::from(secs) * NANOS_PER_SEC + i128::from(nanos)
}

/// The whole second holding `ns` (saturating).
pub(super) fn secs_of(ns: i128) -> i64 {
    let s = ns.div_euclid(NANOS_PER_SEC);
    i64::try_from(s).unwrap_or(if s < 0 { i64::MIN } else { i64::MAX })
}

fn divider_running(reg_a: u8) -> bool {
    reg_a & REG_A_DV_MASK <= DV_LAST_RUNNING
}

fn running_with(reg_a: u8, reg_b: u8) -> bool {
    reg_b & REG_B_SET == 0 && divider_running(reg_a)
}

/// The clock's state: what the guest's time is relative to the host's, and
/// what happened since register C was last read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Calendar {
    /// Guest time = host time + offset (ns).
    offset_ns: i128,
    /// Divider phase = host time + this (ns), modulo one second: where the
    /// 1 Hz update falls, kept even while the time is held.
    phase_offset_ns: i128,
    /// The time bytes while updates are held (SET or divider reset).
    held: Option<[u8; 8]>,
    /// Day-of-week counter minus the weekday of the date, modulo 7.
    dow_adjust: u32,
    /// Register C flags (PF, AF, UF) accumulated since the last read.
    flags: u8,
    /// Guest time up to which UF/AF were accumulated.
    updates_seen_ns: i128,
    /// Divider time up to which PF was accumulated.
    periodic_seen_ns: i128,
}

/// The largest magnitude a saved time field may have: about 40 million
/// years in nanoseconds, far beyond any clock, far below overflow of the
/// i128 sums the model computes.
const MAX_SAVED_NS: i128 = 1 << 100;

impl Calendar {
    /// Checks a saved calendar: offsets small enough that the model's
    /// arithmetic cannot overflow, a day-of-week adjustment below 7.
    pub(super) fn check(&self) -> Result<(), (&'static str, u64)> {
        for (field, v) in [
            ("offset_ns", self.offset_ns),
            ("phase_offset_ns", self.phase_offset_ns),
            ("updates_seen_ns", self.updates_seen_ns),
            ("periodic_seen_ns", self.periodic_seen_ns),
        ] {
            if v.abs() > MAX_SAVED_NS {
                return Err((field, v as u64));
            }
        }
        if self.dow_adjust >= 7 {
            return Err(("dow_adjust", u64::from(self.dow_adjust)));
        }
        Ok(())
    }

    /// A clock showing the host's time, made at host time `now`.
    pub(super) fn new(now: i128) -> Self {
        Calendar {
            offset_ns: 0,
            phase_offset_ns: 0,
            held: None,
            dow_adjust: 0,
            flags: 0,
            updates_seen_ns: now,
            periodic_seen_ns: now,
        }
    }

    /// The guest's time in seconds since the epoch: the held bytes (read in
    /// register B's mode) or the running clock.
    pub(super) fn guest_secs(&self, reg_b: u8, now: i128) -> i64 {
        match self.held {
            Some(bytes) => self.decode_time(Mode::of(reg_b), &bytes),
            None => secs_of(now + self.offset_ns),
        }
    }

    /// Time byte `slot` (see [`time_slot`]) as register B's mode encodes it.
    pub(super) fn time_byte(&self, slot: usize, reg_b: u8, now: i128) -> u8 {
        match self.held {
            Some(bytes) => bytes[slot],
            None => self.encode_time(Mode::of(reg_b), secs_of(now + self.offset_ns))[slot],
        }
    }

    /// The guest writes time byte `slot`: stored while held, else the new
    /// time at once.
    pub(super) fn set_time_byte(&mut self, slot: usize, value: u8, reg_b: u8, now: i128) {
        let m = Mode::of(reg_b);
        match self.held.as_mut() {
            Some(bytes) => bytes[slot] = value,
            None => {
                let mut bytes = self.encode_time(m, secs_of(now + self.offset_ns));
                bytes[slot] = value;
                self.load_time(m, &bytes, now);
            }
        }
    }

    /// Register A's UIP bit at host time `now`.
    pub(super) fn uip(&self, reg_a: u8, reg_b: u8, now: i128) -> u8 {
        let frac = (now + self.offset_ns).rem_euclid(NANOS_PER_SEC);
        let uip = running_with(reg_a, reg_b) && frac >= NANOS_PER_SEC - UIP_LEAD_NS;
        if uip {
            REG_A_UIP
        } else {
            0
        }
    }

    /// Reads register C: the flags since the last read, with IRQF if one is
    /// enabled in register B; reading clears them.
    pub(super) fn take_reg_c(&mut self, reg_b: u8) -> u8 {
        // Each flag sits at the same bit position as its enable.
        let enabled = reg_b & (REG_B_PIE | REG_B_AIE | REG_B_UIE);
        let irqf = if self.flags & enabled != 0 {
            REG_C_IRQF
        } else {
            0
        };
        let v = self.flags | irqf;
        self.flags = 0;
        v
    }

    /// Register A changes from `old` to `new`: entering divider reset holds
    /// the time; leaving it restarts the phase, the first update 500 ms later.
    pub(super) fn write_reg_a(&mut self, old: u8, new: u8, reg_b: u8, now: i128) {
        if divider_running(old) && !divider_running(new) {
            self.hold(Mode::of(reg_b), now);
        }
        if !divider_running(old) && divider_running(new) {
            // Leaving reset: the first update comes 500 ms from now.
            self.phase_offset_ns = DIVIDER_RESTART_PHASE_NS - now;
            self.periodic_seen_ns = now + self.phase_offset_ns;
        }
        self.resume_if_running(new, reg_b, now);
    }

    /// Register B changes from `old` to `new`: setting SET holds the time,
    /// clearing it resumes the clock from the held bytes.
    pub(super) fn write_reg_b(&mut self, reg_a: u8, old: u8, new: u8, now: i128) {
        if running_with(reg_a, old) && !running_with(reg_a, new) {
            // Hold the bytes as encoded in the old mode, as the chip
            // would have them.
            self.hold(Mode::of(old), now);
        }
        self.resume_if_running(reg_a, new, now);
    }
    /// Adds to the register C flags what happened up to host time `now`;
    /// `alarm` holds the seconds, minutes and hours alarm bytes.
    pub(super) fn accumulate(&mut self, reg_a: u8, reg_b: u8, alarm: [u8; 3], now: i128) {
        if divider_running(reg_a) {
            let d = now + self.phase_offset_ns;
            let rs = reg_a & REG_A_RS_MASK;
            if let Some(cycles) = periodic_cycles(rs).filter(|_| d > self.periodic_seen_ns) {
                let ticks = |ns: i128| (ns * TIME_BASE_HZ).div_euclid(NANOS_PER_SEC * cycles);
                if ticks(d) > ticks(self.periodic_seen_ns) {
                    self.flags |= REG_C_PF;
                }
            }
            self.periodic_seen_ns = d;
        }
        if running_with(reg_a, reg_b) {
            let g = now + self.offset_ns;
            let (from, to) = (secs_of(self.updates_seen_ns), secs_of(g));
            if to > from {
                self.flags |= REG_C_UF;
                if alarm_in(Mode::of(reg_b), alarm, from, to) {
                    self.flags |= REG_C_AF;
                }
            }
            self.updates_seen_ns = g;
        }
    }

    /// The register C flags (PF, AF, UF) accumulated since the last read.
    pub(super) fn flags(&self) -> u8 {
        self.flags
    }

    /// Host time of the next periodic-rate edge after `now` (None if RS3-0
    /// is 0 or the divider is held in reset).
    pub(super) fn next_periodic_ns(&self, reg_a: u8, now: i128) -> Option<i128> {
        if !divider_running(reg_a) {
            return None;
        }
        let cycles = periodic_cycles(reg_a & REG_A_RS_MASK)?;
        // Edge k of the divider falls at the first ns with
        // ns * TIME_BASE_HZ >= k * cycles * 10^9 (see `accumulate`).
        let per_edge = NANOS_PER_SEC * cycles;
        let d = now + self.phase_offset_ns;
        let k = (d * TIME_BASE_HZ).div_euclid(per_edge) + 1;
        let edge = ceil_div(k * per_edge, TIME_BASE_HZ);
        Some(edge - self.phase_offset_ns)
    }

    /// Host time of the next update (second boundary of the guest's time)
    /// after `now`, if updates run.
    pub(super) fn next_update_ns(&self, reg_a: u8, reg_b: u8, now: i128) -> Option<i128> {
        if !running_with(reg_a, reg_b) {
            return None;
        }
        let g = now + self.offset_ns;
        let next = (g.div_euclid(NANOS_PER_SEC) + 1) * NANOS_PER_SEC;
        Some(next - self.offset_ns)
    }

    /// Host time of the next update that reaches a time matching `alarm`
    /// (seconds, minutes, hours alarm bytes), within a day of `now`.
    pub(super) fn next_alarm_ns(
        &self,
        reg_a: u8,
        reg_b: u8,
        alarm: [u8; 3],
        now: i128,
    ) -> Option<i128> {
        if !running_with(reg_a, reg_b) {
            return None;
        }
        let g = now + self.offset_ns;
        let s = next_alarm_second(Mode::of(reg_b), alarm, secs_of(g))?;
        Some(i128::from(s) * NANOS_PER_SEC - self.offset_ns)
    }

    /// The time bytes for guest time `secs`, in mode `m`.
    fn encode_time(&self, m: Mode, secs: i64) -> [u8; 8] {
        let t = civil_from_unix(secs);
        let dow = (t.weekday + self.dow_adjust) % 7 + 1;
        [
            m.encode(t.second),
            m.encode(t.minute),
            m.encode_hour(t.hour),
            m.encode(dow),
            m.encode(t.day),
            m.encode(t.month),
            m.encode(t.year.rem_euclid(100) as u32),
            m.encode(t.year.div_euclid(100).rem_euclid(100) as u32),
        ]
    }

    fn decode_time(&self, m: Mode, b: &[u8; 8]) -> i64 {
        let t = CivilTime {
            second: m.decode(b[0]),
            minute: m.decode(b[1]),
            hour: m.decode_hour(b[2]),
            weekday: 0,
            day: m.decode(b[4]),
            month: m.decode(b[5]),
            year: i64::from(m.decode(b[7])) * 100 + i64::from(m.decode(b[6])),
        };
        unix_from_civil(&t)
    }

    /// Makes the time bytes `b` (in mode `m`) the current time, with the
    /// divider's current phase as the fraction of a second.
    fn load_time(&mut self, m: Mode, b: &[u8; 8], now: i128) {
        let secs = self.decode_time(m, b);
        let phase = (now + self.phase_offset_ns).rem_euclid(NANOS_PER_SEC);
        self.offset_ns = i128::from(secs) * NANOS_PER_SEC + phase - now;
        let weekday = civil_from_unix(secs).weekday;
        let dow = m.decode(b[3]);
        self.dow_adjust = (i64::from(dow) - 1 - i64::from(weekday)).rem_euclid(7) as u32;
        // A new time is not an update: no UF/AF for the jump.
        self.updates_seen_ns = now + self.offset_ns;
    }

    fn hold(&mut self, m: Mode, now: i128) {
        if self.held.is_none() {
            self.held = Some(self.encode_time(m, secs_of(now + self.offset_ns)));
        }
    }

    fn resume_if_running(&mut self, reg_a: u8, reg_b: u8, now: i128) {
        if running_with(reg_a, reg_b) {
            if let Some(bytes) = self.held.take() {
                self.load_time(Mode::of(reg_b), &bytes, now);
            }
        }
    }
}

/// Whether alarm byte `want` matches the time byte `have`.
fn alarm_matches(have: u8, want: u8) -> bool {
    want & ALARM_DONT_CARE == ALARM_DONT_CARE || have == want
}

/// The first second in `(from, from + 1 day]` whose time of day matches the
/// alarm bytes (the alarm compares the time of day only, so a day covers
/// every case; `None` if the bytes can never match, e.g. 0x61 seconds).
/// Hours and minutes that do not match are skipped whole: at most a few
/// thousand steps.
fn next_alarm_second(m: Mode, alarm: [u8; 3], from: i64) -> Option<i64> {
    let end = from.saturating_add(SECS_PER_DAY);
    let mut s = from.checked_add(1)?;
    while s <= end {
        let sod = s.rem_euclid(SECS_PER_DAY);
        let step = if !alarm_matches(m.encode_hour((sod / 3600) as u32), alarm[2]) {
            3600 - sod % 3600
        } else if !alarm_matches(m.encode((sod / 60 % 60) as u32), alarm[1]) {
            60 - sod % 60
        } else if !alarm_matches(m.encode((sod % 60) as u32), alarm[0]) {
            1
        } else {
            return Some(s);
        };
        s = s.checked_add(step)?;
    }
    None
}

/// The periodic interrupt's period in 32.768 kHz time-base cycles for rate
/// select `rs` (MC146818A table 5, QEMU `periodic_period_to_clock`): none
/// for 0; RS 1 and 2 are 256 and 128 Hz (as RS 8 and 9) on this base; RS
/// 3-15 halve the rate from 8192 Hz down to 2 Hz.
pub(super) fn periodic_cycles(rs: u8) -> Option<i128> {
    match rs & REG_A_RS_MASK {
        0 => None,
        rs @ 1..=2 => Some(1 << (rs + 6)),
        rs => Some(1 << (rs - 1)),
    }
}

/// `ceil(a / b)` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    -(-a).div_euclid(b)
}

/// Whether an update in seconds `(from, to]` reached the alarm time.
fn alarm_in(m: Mode, alarm: [u8; 3], from: i64, to: i64) -> bool {
    let matches = alarm_matches;
    // Only the time of day is compared: a day covers every case.
    let start = from.max(to.saturating_sub(SECS_PER_DAY));
    (start.saturating_add(1)..=to).any(|s| {
        let sod = s.rem_euclid(SECS_PER_DAY) as u32;
        matches(m.encode(sod % 60), alarm[0])
            && matches(m.encode(sod / 60 % 60), alarm[1])
            && matches(m.encode_hour(sod / 3600), alarm[2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive calendar: walk day by day from 1970 with the leap-year rule.
    fn naive_civil(days: i64) -> (i64, u32, u32) {
        fn leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        fn len(y: i64, m: u32) -> u32 {
            match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        if days >= 0 {
            for _ in 0..days {
                d += 1;
                if d > len(y, m) {
                    d = 1;
                    m += 1;
                    if m > 12 {
                        m = 1;
                        y += 1;
                    }
                }
            }
        } else {
            for _ in 0..-days {
                if d == 1 {
                    if m == 1 {
                        m = 12;
                        y -= 1;
                    } else {
                        m -= 1;
                    }
                    d = len(y, m);
                } else {
                    d -= 1;
                }
            }
        }
        (y, m, d)
    }

    #[test]
    fn test_cmos_calendar_matches_naive_walk_over_centuries() {
        let (mut y, mut m, mut d) = naive_civil(-80_000);
        for days in -80_000i64..120_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "days {days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            (y, m, d) = step(y, m, d);
        }

        fn step(y: i64, m: u32, d: u32) -> (i64, u32, u32) {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            }
        }
    }

    #[test]
    fn test_cmos_naive_reference_agrees_at_known_dates() {
        // 2000-03-01 is day 11017; 1969-12-31 is day -1.
        assert_eq!(naive_civil(11_017), (2000, 3, 1));
        assert_eq!(naive_civil(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }

    #[test]
    fn test_cmos_leap_years_2000_and_2100() {
        // 2000 is a leap year (divisible by 400).
        let feb28_2000 = days_from_civil(2000, 2, 28);
        assert_eq!(civil_from_days(feb28_2000 + 1), (2000, 2, 29));
        assert_eq!(civil_from_days(feb28_2000 + 2), (2000, 3, 1));
        // 2100 is not (divisible by 100, not by 400).
        let feb28_2100 = days_from_civil(2100, 2, 28);
        assert_eq!(civil_from_days(feb28_2100 + 1), (2100, 3, 1));
        // 2024 is; 2023 is not.
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1),
            29
        );
        assert_eq!(
            days_from_civil(2023, 3, 1) - days_from_civil(2023, 2, 1),
            28
        );
    }

    #[test]
    fn test_cmos_next_alarm_second_agrees_with_alarm_in() {
        // Brute force: the first second whose update alarm_in accepts.
        let brute = |m: Mode, alarm: [u8; 3], from: i64| {
            (from + 1..=from + SECS_PER_DAY).find(|&s| alarm_in(m, alarm, s - 1, s))
        };
        let bcd = Mode::of(REG_B_24H);
        let bin12 = Mode::of(REG_B_DM);
        let cases: [(Mode, [u8; 3]); 8] = [
            (bcd, [0xc0, 0xc0, 0xc0]),
            (bcd, [0x30, 0xc0, 0xc0]),
            (bcd, [0x00, 0x15, 0xc0]),
            (bcd, [0x59, 0x59, 0x23]),
            (bcd, [0xc0, 0xc0, 0x07]),
            (bcd, [0x61, 0xc0, 0xc0]),     // never matches
            (bin12, [5, 0xff, 0x80 | 12]), // 12:xx:05 pm
            (bin12, [0xc0, 30, 12]),       // 00:30:xx (12 am)
        ];
        for (m, alarm) in cases {
            for from in [0i64, 86_399, 1_709_214_356, -1, 43_170] {
                assert_eq!(
                    next_alarm_second(m, alarm, from),
                    brute(m, alarm, from),
                    "alarm {alarm:x?} from {from}"
                );
            }
        }
        assert_eq!(next_alarm_second(bcd, [0xc0; 3], i64::MAX), None);
        assert_eq!(
            next_alarm_second(bcd, [0x00, 0xc0, 0xc0], i64::MAX - 5),
            None
        );
    }

    #[test]
    fn test_cmos_periodic_cycles_per_rate_select() {
        let hz: Vec<Option<i128>> = (0..16u8)
            .map(|rs| periodic_cycles(rs).map(|c| TIME_BASE_HZ / c))
            .collect();
        let want = [
            None,
            Some(256),
            Some(128),
            Some(8192),
            Some(4096),
            Some(2048),
            Some(1024),
            Some(512),
            Some(256),
            Some(128),
            Some(64),
            Some(32),
            Some(16),
            Some(8),
            Some(4),
            Some(2),
        ];
        assert_eq!(hz, want);
        assert_eq!(ceil_div(7, 2), 4);
        assert_eq!(ceil_div(-7, 2), -3);
        assert_eq!(ceil_div(8, 2), 4);
    }

    #[test]
    fn test_cmos_system_clock_is_after_2020() {
        let (s, ns) = SystemClock.now();
        assert!(s > 1_577_836_800, "{s}");
        assert!(ns < 1_000_000_000);
    }
}
