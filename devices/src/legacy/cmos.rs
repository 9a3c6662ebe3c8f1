//! The PC's real-time clock and CMOS RAM: a Motorola MC146818A at ports
//! 0x70 (index) and 0x71 (data), as in the IBM PC/AT.
//!
//! References: the Motorola MC146818A datasheet (register map, registers A-D,
//! the update cycle, BCD/binary and 12/24-hour data modes); the IBM PC/AT
//! Technical Reference for the index port's NMI-mask bit and the century byte
//! at 0x32; QEMU `hw/rtc/mc146818rtc.c` for the PC conventions a guest
//! expects (reset values of registers A-D, UIP for the last 244 us of each
//! second); QEMU `hw/i386/pc.c` (`pc_cmos_init`) for the memory-size bytes
//! firmware leaves in CMOS, and SeaBIOS `src/hw/rtc.h` / `src/fw/paravirt.c`
//! (`qemu_preinit`), which reads them back to size RAM.
//!
//! # Model
//! - **Index port** (0x70): bits 0-6 select one of 128 CMOS bytes; bit 7 set
//!   masks NMI ([`Cmos::nmi_masked`] reports the last value; the VMM decides
//!   what to do with it). The port is write-only on the AT: reads return
//!   0xff, as in QEMU.
//! - **Time** (0x00 seconds, 0x02 minutes, 0x04 hours, 0x06 day of week
//!   (1 = Sunday), 0x07 day of month, 0x08 month, 0x09 year in century, 0x32
//!   century): computed on every read from an [`RtcClock`] plus an offset the
//!   guest controls, encoded per register B's DM bit (BCD or binary) and
//!   24/12 bit (12-hour mode: 1-12 with bit 7 = PM). The calendar conversion
//!   is written here (proleptic Gregorian, no dependency).
//! - **Setting the time**: while register B's SET bit is set, or register A's
//!   divider is held in reset (DV2-0 = 11x), updates stop and the time bytes
//!   are plain storage, exactly as on the chip. When the clock restarts, the
//!   written bytes become the new time: the device keeps the difference to
//!   the host clock. The sub-second phase follows the datasheet: after SET
//!   is cleared the divider's phase is unchanged (it never stopped); after
//!   the divider leaves reset the first update comes 500 ms later. A write
//!   to a time byte while the clock runs takes effect at once (as in QEMU).
//!   The day of week is a counter of its own, as on the chip: a value the
//!   guest writes is kept and advances with the date. Out-of-range values
//!   are taken arithmetically (day 32 is the next month's first day, hour 25
//!   the next day's 1:00); a month outside 1-12 is clamped into that range.
//! - **Register A** (0x0A): UIP (bit 7, read-only) is set during the last
//!   244.140625 us (8 periods of the 32.768 kHz time base) before each
//!   second boundary while the clock runs, so a guest that reads the time
//!   when UIP is clear has that long before the bytes change. DV2-0 and
//!   RS3-0 are writable; DV = 000, 001 and 010 all run the clock at real
//!   time (a PC's time base is always the 32.768 kHz crystal), 11x holds it.
//! - **Register B** (0x0B): writable; setting SET clears UIE and UIP, as the
//!   datasheet says.
//! - **Register C** (0x0C): read-only interrupt flags, cleared by reading.
//!   PF, AF and UF are computed when read: PF if a periodic-rate edge (rate
//!   per RS3-0 on the 32.768 kHz base) passed since the last read, UF if an
//!   update (second boundary) passed, AF if an update reached a time matching
//!   the alarm bytes (0x01/0x03/0x05; a byte with bits 7-6 = 11 matches any
//!   value). IRQF is set if a flag and its enable bit in register B are both
//!   set.
//! - **Register D** (0x0D): VRT (bit 7) is always set: the RAM and time are
//!   valid. Writes are ignored.
//! - **Interrupts: not implemented.** This device has no timer of its own, so
//!   IRQ8 is never raised; guests that poll register C (or read the time)
//!   work, guests that wait for an RTC interrupt do not.
//! - **CMOS RAM** (0x0E-0x7F except 0x32): plain storage. At construction it
//!   holds the memory-size bytes firmware fills (see [`CmosMemorySizes`])
//!   and the standard checksum over 0x10-0x2D at 0x2E/0x2F.
//! - **Byte lanes**: the device decodes two ports; a wider access is handled
//!   byte by byte at consecutive ports (a 16-bit `out` to 0x70 writes the
//!   index, then the data with that index). Bytes beyond the two ports read
//!   0xff and are ignored when written.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::lock;

/// The index port (write-only; bit 7 masks NMI).
pub const CMOS_INDEX_PORT: u16 = 0x70;
/// The data port.
pub const CMOS_DATA_PORT: u16 = 0x71;
/// Ports the device decodes, from [`CMOS_INDEX_PORT`].
pub const CMOS_PORT_COUNT: u16 = 2;
/// Bytes of CMOS (the index is 7 bits).
pub const CMOS_SIZE: usize = 128;
/// The ISA IRQ line the RTC would use (never raised by this model).
pub const RTC_IRQ: u32 = 8;

/// Index port bit 7: NMI disabled.
pub const CMOS_INDEX_NMI_DISABLE: u8 = 0x80;
/// Index port bits 0-6: the register index.
pub const CMOS_INDEX_MASK: u8 = 0x7f;

/// Seconds.
pub const RTC_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const RTC_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const RTC_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const RTC_MINUTES_ALARM: u8 = 0x03;
/// Hours.
pub const RTC_HOURS: u8 = 0x04;
/// Hours alarm.
pub const RTC_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
pub const RTC_DAY_OF_WEEK: u8 = 0x06;
/// Day of month.
pub const RTC_DAY_OF_MONTH: u8 = 0x07;
/// Month.
pub const RTC_MONTH: u8 = 0x08;
/// Year within the century.
pub const RTC_YEAR: u8 = 0x09;
/// Status register A.
pub const RTC_REG_A: u8 = 0x0a;
/// Status register B.
pub const RTC_REG_B: u8 = 0x0b;
/// Status register C.
pub const RTC_REG_C: u8 = 0x0c;
/// Status register D.
pub const RTC_REG_D: u8 = 0x0d;
/// Century (IBM PC/AT convention; the FADT's CENTURY field points here).
pub const CMOS_CENTURY: u8 = 0x32;

/// Register A: update in progress.
pub const REG_A_UIP: u8 = 0x80;
/// Register A: divider select bits DV2-0.
pub const REG_A_DV_MASK: u8 = 0x70;
/// Register A: rate select bits RS3-0.
pub const REG_A_RS_MASK: u8 = 0x0f;
/// Register A reset value: 32.768 kHz time base, 1024 Hz periodic rate.
pub const REG_A_DEFAULT: u8 = 0x26;
/// Register B: SET, updates inhibited.
pub const REG_B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
pub const REG_B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const REG_B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const REG_B_UIE: u8 = 0x10;
/// Register B: square-wave enable.
pub const REG_B_SQWE: u8 = 0x08;
/// Register B: data mode, 1 = binary, 0 = BCD.
pub const REG_B_DM: u8 = 0x04;
/// Register B: 1 = 24-hour mode, 0 = 12-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register B: daylight-saving enable (stored; no DST adjustment is made).
pub const REG_B_DSE: u8 = 0x01;
/// Register B reset value: 24-hour, BCD, no interrupts.
pub const REG_B_DEFAULT: u8 = REG_B_24H;
/// Register C: an enabled interrupt flag is set.
pub const REG_C_IRQF: u8 = 0x80;
/// Register C: periodic interrupt flag.
pub const REG_C_PF: u8 = 0x40;
/// Register C: alarm flag.
pub const REG_C_AF: u8 = 0x20;
/// Register C: update-ended flag.
pub const REG_C_UF: u8 = 0x10;
/// Register D: valid RAM and time.
pub const REG_D_VRT: u8 = 0x80;
/// 12-hour mode: PM flag in the hours byte.
pub const HOURS_PM: u8 = 0x80;
/// Alarm bytes with bits 7-6 set match any value.
pub const ALARM_DONT_CARE: u8 = 0xc0;

/// Base memory in KiB, low byte (high at 0x16).
pub const CMOS_BASE_MEM_LO: u8 = 0x15;
/// Base memory in KiB, high byte.
pub const CMOS_BASE_MEM_HI: u8 = 0x16;
/// Extended memory (above 1 MiB) in KiB, low byte (high at 0x18).
pub const CMOS_EXT_MEM_LO: u8 = 0x17;
/// Extended memory in KiB, high byte.
pub const CMOS_EXT_MEM_HI: u8 = 0x18;
/// Standard checksum over 0x10-0x2D, high byte (low at 0x2F).
pub const CMOS_CHECKSUM_HI: u8 = 0x2e;
/// Standard checksum, low byte.
pub const CMOS_CHECKSUM_LO: u8 = 0x2f;
/// Extended memory as found by POST, in KiB, low byte (high at 0x31).
pub const CMOS_EXT_MEM_POST_LO: u8 = 0x30;
/// Extended memory as found by POST, high byte.
pub const CMOS_EXT_MEM_POST_HI: u8 = 0x31;
/// Memory between 16 MiB and the end of low RAM in 64 KiB blocks, low byte.
pub const CMOS_MEM_ABOVE_16M_LO: u8 = 0x34;
/// Memory between 16 MiB and the end of low RAM, high byte.
pub const CMOS_MEM_ABOVE_16M_HI: u8 = 0x35;
/// Memory above 4 GiB in 64 KiB blocks, bits 0-7 (QEMU/SeaBIOS).
pub const CMOS_MEM_ABOVE_4G_LO: u8 = 0x5b;
/// Memory above 4 GiB in 64 KiB blocks, bits 8-15.
pub const CMOS_MEM_ABOVE_4G_MID: u8 = 0x5c;
/// Memory above 4 GiB in 64 KiB blocks, bits 16-23.
pub const CMOS_MEM_ABOVE_4G_HI: u8 = 0x5d;

/// Base (conventional) memory the PC reports, in KiB.
pub const BASE_MEMORY_KIB: u64 = 640;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// The time base the divider chain counts.
const TIME_BASE_HZ: i128 = 32_768;
/// UIP rises 8 time-base periods (244.140625 us) before the update.
const UIP_LEAD_NS: i128 = 8 * NANOS_PER_SEC / TIME_BASE_HZ;
/// After the divider leaves reset, the first update comes half a second later.
const DIVIDER_RESTART_PHASE_NS: i128 = NANOS_PER_SEC / 2;
/// DV2-0 values at or below this run the divider; 11x holds it in reset.
const DV_LAST_RUNNING: u8 = 0x20;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

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

/// The guest RAM layout the memory-size bytes describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmosMemorySizes {
    /// End of RAM below 4 GiB, in bytes (RAM is `[0, below_4g_end)`).
    pub below_4g_end: u64,
    /// Bytes of RAM from 4 GiB up.
    pub above_4g_size: u64,
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

fn time_slot(index: u8) -> Option<usize> {
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

struct State {
    index: u8,
    nmi_masked: bool,
    /// Alarm bytes, registers A and B, and the RAM; time bytes and C/D are
    /// computed instead.
    ram: [u8; CMOS_SIZE],
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

/// The MC146818A RTC and CMOS RAM.
pub struct Cmos {
    clock: Arc<dyn RtcClock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Cmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmos").finish_non_exhaustive()
    }
}

fn host_ns(clock: &dyn RtcClock) -> i128 {
    let (secs, nanos) = clock.now();
    i128::from(secs) * NANOS_PER_SEC + i128::from(nanos)
}

fn secs_of(ns: i128) -> i64 {
    let s = ns.div_euclid(NANOS_PER_SEC);
    i64::try_from(s).unwrap_or(if s < 0 { i64::MIN } else { i64::MAX })
}

impl Cmos {
    /// An RTC reading `clock`, with CMOS memory-size bytes describing `mem`.
    pub fn new(mem: CmosMemorySizes, clock: Arc<dyn RtcClock>) -> Self {
        let now = host_ns(clock.as_ref());
        let mut ram = [0u8; CMOS_SIZE];
        ram[usize::from(RTC_REG_A)] = REG_A_DEFAULT;
        ram[usize::from(RTC_REG_B)] = REG_B_DEFAULT;
        fill_memory_sizes(&mut ram, mem);
        Cmos {
            clock,
            state: Mutex::new(State {
                index: 0,
                nmi_masked: false,
                ram,
                offset_ns: 0,
                phase_offset_ns: 0,
                held: None,
                dow_adjust: 0,
                flags: 0,
                updates_seen_ns: now,
                periodic_seen_ns: now,
            }),
        }
    }

    /// Whether the guest's last index write set bit 7 (NMI disabled).
    pub fn nmi_masked(&self) -> bool {
        lock(&self.state).nmi_masked
    }

    /// The guest's current RTC time as seconds since the Unix epoch (what
    /// the time registers show, or would show once updates resume).
    pub fn guest_time(&self) -> i64 {
        let now = host_ns(self.clock.as_ref());
        let s = lock(&self.state);
        match s.held {
            Some(bytes) => s.decode_time(&bytes),
            None => secs_of(now + s.offset_ns),
        }
    }

    fn read_port(&self, port: u16, now: i128) -> u8 {
        match port {
            CMOS_DATA_PORT => {
                let mut s = lock(&self.state);
                let index = s.index;
                s.read_register(index, now)
            }
            // The index port is write-only; QEMU reads it as 0xff too.
            _ => 0xff,
        }
    }

    fn write_port(&self, port: u16, value: u8, now: i128) {
        let mut s = lock(&self.state);
        match port {
            CMOS_INDEX_PORT => {
                s.index = value & CMOS_INDEX_MASK;
                s.nmi_masked = value & CMOS_INDEX_NMI_DISABLE != 0;
            }
            CMOS_DATA_PORT => {
                let index = s.index;
                s.write_register(index, value, now);
            }
            _ => {}
        }
    }
}

fn fill_memory_sizes(ram: &mut [u8; CMOS_SIZE], mem: CmosMemorySizes) {
    let mut put16 = |lo: u8, v: u64| {
        let v = v.min(0xffff);
        ram[usize::from(lo)] = v as u8;
        ram[usize::from(lo) + 1] = (v >> 8) as u8;
    };
    // QEMU pc_cmos_init: base memory is what lies below 640 KiB.
    put16(
        CMOS_BASE_MEM_LO,
        (mem.below_4g_end / KIB).min(BASE_MEMORY_KIB),
    );
    // Extended memory: KiB above 1 MiB, capped at 0xffff (the "next 64 MiB").
    let ext = mem.below_4g_end.saturating_sub(MIB) / KIB;
    put16(CMOS_EXT_MEM_LO, ext);
    put16(CMOS_EXT_MEM_POST_LO, ext);
    // SeaBIOS reads the rest of low RAM from these: 64 KiB blocks above 16 MiB.
    put16(
        CMOS_MEM_ABOVE_16M_LO,
        mem.below_4g_end.saturating_sub(16 * MIB) / (64 * KIB),
    );
    // High RAM in 64 KiB blocks, 24 bits (QEMU's extension).
    let high = (mem.above_4g_size / (64 * KIB)).min(0xff_ffff);
    ram[usize::from(CMOS_MEM_ABOVE_4G_LO)] = high as u8;
    ram[usize::from(CMOS_MEM_ABOVE_4G_MID)] = (high >> 8) as u8;
    ram[usize::from(CMOS_MEM_ABOVE_4G_HI)] = (high >> 16) as u8;
    // The AT checksum: 16-bit sum of 0x10-0x2D, high byte first.
    let sum: u16 = ram[0x10..=0x2d]
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
    ram[usize::from(CMOS_CHECKSUM_HI)] = (sum >> 8) as u8;
    ram[usize::from(CMOS_CHECKSUM_LO)] = sum as u8;
}

impl State {
    fn reg_a(&self) -> u8 {
        self.ram[usize::from(RTC_REG_A)]
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(RTC_REG_B)]
    }

    fn mode(&self) -> Mode {
        Mode::of(self.reg_b())
    }

    fn divider_running(reg_a: u8) -> bool {
        reg_a & REG_A_DV_MASK <= DV_LAST_RUNNING
    }

    fn running_with(reg_a: u8, reg_b: u8) -> bool {
        reg_b & REG_B_SET == 0 && Self::divider_running(reg_a)
    }

    fn running(&self) -> bool {
        Self::running_with(self.reg_a(), self.reg_b())
    }

    /// The time bytes for guest time `secs`, in the current mode.
    fn encode_time(&self, secs: i64) -> [u8; 8] {
        let m = self.mode();
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

    fn decode_time(&self, b: &[u8; 8]) -> i64 {
        let m = self.mode();
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

    /// Makes the time bytes `b` the current time, with the divider's
    /// current phase as the fraction of a second.
    fn load_time(&mut self, b: &[u8; 8], now: i128) {
        let secs = self.decode_time(b);
        let phase = (now + self.phase_offset_ns).rem_euclid(NANOS_PER_SEC);
        self.offset_ns = i128::from(secs) * NANOS_PER_SEC + phase - now;
        let weekday = civil_from_unix(secs).weekday;
        let dow = self.mode().decode(b[3]);
        self.dow_adjust = (i64::from(dow) - 1 - i64::from(weekday)).rem_euclid(7) as u32;
        // A new time is not an update: no UF/AF for the jump.
        self.updates_seen_ns = now + self.offset_ns;
    }

    /// Adds to the register C flags what happened up to host time `now`.
    fn accumulate(&mut self, now: i128) {
        let reg_a = self.reg_a();
        if Self::divider_running(reg_a) {
            let d = now + self.phase_offset_ns;
            let rs = reg_a & REG_A_RS_MASK;
            if rs != 0 && d > self.periodic_seen_ns {
                // Periodic rate in time-base cycles (MC146818A table 5 for
                // the 32.768 kHz base): RS 1 and 2 are 256 and 128 Hz.
                let cycles: i128 = if rs <= 2 {
                    1 << (rs + 6)
                } else {
                    1 << (rs - 1)
                };
                let ticks = |ns: i128| (ns * TIME_BASE_HZ).div_euclid(NANOS_PER_SEC * cycles);
                if ticks(d) > ticks(self.periodic_seen_ns) {
                    self.flags |= REG_C_PF;
                }
            }
            self.periodic_seen_ns = d;
        }
        if self.running() {
            let g = now + self.offset_ns;
            let (from, to) = (secs_of(self.updates_seen_ns), secs_of(g));
            if to > from {
                self.flags |= REG_C_UF;
                if self.alarm_in(from, to) {
                    self.flags |= REG_C_AF;
                }
            }
            self.updates_seen_ns = g;
        }
    }

    /// Whether an update in seconds `(from, to]` reached the alarm time.
    fn alarm_in(&self, from: i64, to: i64) -> bool {
        let m = self.mode();
        let alarm = [
            self.ram[usize::from(RTC_SECONDS_ALARM)],
            self.ram[usize::from(RTC_MINUTES_ALARM)],
            self.ram[usize::from(RTC_HOURS_ALARM)],
        ];
        let matches =
            |have: u8, want: u8| want & ALARM_DONT_CARE == ALARM_DONT_CARE || have == want;
        // Only the time of day is compared: a day covers every case.
        let start = from.max(to.saturating_sub(SECS_PER_DAY));
        (start.saturating_add(1)..=to).any(|s| {
            let sod = s.rem_euclid(SECS_PER_DAY) as u32;
            matches(m.encode(sod % 60), alarm[0])
                && matches(m.encode(sod / 60 % 60), alarm[1])
                && matches(m.encode_hour(sod / 3600), alarm[2])
        })
    }

    fn read_register(&mut self, index: u8, now: i128) -> u8 {
        self.accumulate(now);
        if let Some(slot) = time_slot(index) {
            return match self.held {
                Some(bytes) => bytes[slot],
                None => self.encode_time(secs_of(now + self.offset_ns))[slot],
            };
        }
        match index {
            RTC_REG_A => {
                let frac = (now + self.offset_ns).rem_euclid(NANOS_PER_SEC);
                let uip = self.running() && frac >= NANOS_PER_SEC - UIP_LEAD_NS;
                self.reg_a() | if uip { REG_A_UIP } else { 0 }
            }
            RTC_REG_C => {
                // Each flag sits at the same bit position as its enable.
                let enabled = self.reg_b() & (REG_B_PIE | REG_B_AIE | REG_B_UIE);
                let irqf = if self.flags & enabled != 0 {
                    REG_C_IRQF
                } else {
                    0
                };
                let v = self.flags | irqf;
                self.flags = 0;
                v
            }
            RTC_REG_D => REG_D_VRT,
            _ => self.ram[usize::from(index & CMOS_INDEX_MASK)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8, now: i128) {
        self.accumulate(now);
        if let Some(slot) = time_slot(index) {
            match self.held.as_mut() {
                Some(bytes) => bytes[slot] = value,
                None => {
                    let mut bytes = self.encode_time(secs_of(now + self.offset_ns));
                    bytes[slot] = value;
                    self.load_time(&bytes, now);
                }
            }
            return;
        }
        match index {
            RTC_REG_A => {
                let old = self.reg_a();
                // UIP is status, never stored.
                let new = value & !REG_A_UIP;
                if Self::divider_running(old) && !Self::divider_running(new) {
                    self.hold(now);
                }
                self.ram[usize::from(RTC_REG_A)] = new;
                if !Self::divider_running(old) && Self::divider_running(new) {
                    // Leaving reset: the first update comes 500 ms from now.
                    self.phase_offset_ns = DIVIDER_RESTART_PHASE_NS - now;
                    self.periodic_seen_ns = now + self.phase_offset_ns;
                }
                self.resume_if_running(now);
            }
            RTC_REG_B => {
                let value = if value & REG_B_SET != 0 {
                    value & !REG_B_UIE
                } else {
                    value
                };
                if self.running() && !Self::running_with(self.reg_a(), value) {
                    // Hold the bytes as encoded in the old mode, as the chip
                    // would have them.
                    self.hold(now);
                }
                self.ram[usize::from(RTC_REG_B)] = value;
                self.resume_if_running(now);
            }
            // Read-only.
            RTC_REG_C | RTC_REG_D => {}
            _ => self.ram[usize::from(index & CMOS_INDEX_MASK)] = value,
        }
    }

    fn hold(&mut self, now: i128) {
        if self.held.is_none() {
            self.held = Some(self.encode_time(secs_of(now + self.offset_ns)));
        }
    }

    fn resume_if_running(&mut self, now: i128) {
        if self.running() {
            if let Some(bytes) = self.held.take() {
                self.load_time(&bytes, now);
            }
        }
    }
}

impl DevicePio for Cmos {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let now = host_ns(self.clock.as_ref());
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match port_at(base, offset, i) {
                Some(port) => self.read_port(port, now),
                None => 0xff,
            };
        }
    }

    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let now = host_ns(self.clock.as_ref());
        for (i, &byte) in data.iter().enumerate() {
            if let Some(port) = port_at(base, offset, i) {
                self.write_port(port, byte, now);
            }
        }
    }
}

/// The port byte lane `i` of an access lands on, if it is one of ours.
fn port_at(base: PioAddress, offset: PioAddressOffset, i: usize) -> Option<u16> {
    u64::from(base.0)
        .checked_add(u64::from(offset))?
        .checked_add(i as u64)
        .filter(|p| {
            (u64::from(CMOS_INDEX_PORT)..u64::from(CMOS_INDEX_PORT + CMOS_PORT_COUNT)).contains(p)
        })
        .map(|p| p as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock tests move by hand (nanoseconds since the epoch).
    #[derive(Default)]
    struct TestClock(Mutex<i128>);

    impl TestClock {
        fn at(secs: i64, nanos: u32) -> Arc<Self> {
            let c = Arc::new(TestClock::default());
            c.set(secs, nanos);
            c
        }
        fn set(&self, secs: i64, nanos: u32) {
            *lock(&self.0) = i128::from(secs) * NANOS_PER_SEC + i128::from(nanos);
        }
        fn advance_ns(&self, ns: i64) {
            *lock(&self.0) += i128::from(ns);
        }
    }

    impl RtcClock for TestClock {
        fn now(&self) -> (i64, u32) {
            let ns = *lock(&self.0);
            (secs_of(ns), ns.rem_euclid(NANOS_PER_SEC) as u32)
        }
    }

    const NO_RAM: CmosMemorySizes = CmosMemorySizes {
        below_4g_end: 0,
        above_4g_size: 0,
    };

    fn rtc_at(secs: i64, nanos: u32) -> (Cmos, Arc<TestClock>) {
        let clock = TestClock::at(secs, nanos);
        (Cmos::new(NO_RAM, clock.clone()), clock)
    }

    fn rd(dev: &Cmos, index: u8) -> u8 {
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[index]);
        let mut d = [0u8];
        dev.pio_read(PioAddress(CMOS_INDEX_PORT), 1, &mut d);
        d[0]
    }

    fn wr(dev: &Cmos, index: u8, value: u8) {
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[index]);
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), 1, &[value]);
    }

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
    fn test_cmos_reads_time_in_bcd_24h_by_default() {
        // 2024-02-29 13:45:56 UTC, a Thursday.
        let t = unix_from_civil(&CivilTime {
            year: 2024,
            month: 2,
            day: 29,
            hour: 13,
            minute: 45,
            second: 56,
            weekday: 0,
        });
        assert_eq!(t, 1_709_214_356);
        let (dev, _) = rtc_at(t, 0);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x56);
        assert_eq!(rd(&dev, RTC_MINUTES), 0x45);
        assert_eq!(rd(&dev, RTC_HOURS), 0x13);
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 5); // Thursday, Sunday = 1
        assert_eq!(rd(&dev, RTC_DAY_OF_MONTH), 0x29);
        assert_eq!(rd(&dev, RTC_MONTH), 0x02);
        assert_eq!(rd(&dev, RTC_YEAR), 0x24);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x20);
        assert_eq!(rd(&dev, RTC_REG_A), REG_A_DEFAULT);
        assert_eq!(rd(&dev, RTC_REG_B), REG_B_DEFAULT);
        assert_eq!(rd(&dev, RTC_REG_D), REG_D_VRT);
        assert_eq!(dev.guest_time(), t);
    }

    #[test]
    fn test_cmos_bcd_binary_12h_24h_matrix() {
        // Hours to check: midnight, 1 am, noon, 1 pm, 11 pm.
        let cases: [(u32, u8, u8, u8, u8); 5] = [
            // h24, bcd24, bin24, bcd12, bin12
            (0, 0x00, 0, 0x12, 12),
            (1, 0x01, 1, 0x01, 1),
            (12, 0x12, 12, 0x80 | 0x12, 0x80 | 12),
            (13, 0x13, 13, 0x80 | 0x01, 0x80 | 1),
            (23, 0x23, 23, 0x80 | 0x11, 0x80 | 11),
        ];
        for (h, bcd24, bin24, bcd12, bin12) in cases {
            let t = unix_from_civil(&CivilTime {
                year: 2099,
                month: 12,
                day: 31,
                hour: h,
                minute: 59,
                second: 58,
                weekday: 0,
            });
            let (dev, _) = rtc_at(t, 0);
            for (b, hours, min, year, mday) in [
                (REG_B_24H, bcd24, 0x59, 0x99, 0x31),
                (REG_B_24H | REG_B_DM, bin24, 59, 99, 31),
                (0, bcd12, 0x59, 0x99, 0x31),
                (REG_B_DM, bin12, 59, 99, 31),
            ] {
                wr(&dev, RTC_REG_B, b);
                assert_eq!(rd(&dev, RTC_HOURS), hours, "h={h} B={b:#x}");
                assert_eq!(rd(&dev, RTC_MINUTES), min, "B={b:#x}");
                assert_eq!(rd(&dev, RTC_YEAR), year, "B={b:#x}");
                assert_eq!(rd(&dev, RTC_DAY_OF_MONTH), mday, "B={b:#x}");
                assert_eq!(
                    rd(&dev, CMOS_CENTURY),
                    if b & REG_B_DM != 0 { 20 } else { 0x20 }
                );
            }
        }
    }

    #[test]
    fn test_cmos_time_advances_across_century() {
        // 1999-12-31 23:59:59 -> 2000-01-01 00:00:00.
        let t = unix_from_civil(&CivilTime {
            year: 1999,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
            weekday: 0,
        });
        let (dev, clock) = rtc_at(t, 0);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x19);
        assert_eq!(rd(&dev, RTC_YEAR), 0x99);
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 6); // Friday
        clock.advance_ns(1_000_000_000);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x20);
        assert_eq!(rd(&dev, RTC_YEAR), 0x00);
        assert_eq!(rd(&dev, RTC_MONTH), 0x01);
        assert_eq!(rd(&dev, RTC_DAY_OF_MONTH), 0x01);
        assert_eq!(rd(&dev, RTC_HOURS), 0x00);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x00);
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 7); // Saturday
    }

    #[test]
    fn test_cmos_2100_is_not_leap_in_registers() {
        let t = unix_from_civil(&CivilTime {
            year: 2100,
            month: 2,
            day: 28,
            hour: 23,
            minute: 59,
            second: 59,
            weekday: 0,
        });
        let (dev, clock) = rtc_at(t, 0);
        clock.advance_ns(1_000_000_000);
        assert_eq!(rd(&dev, RTC_MONTH), 0x03);
        assert_eq!(rd(&dev, RTC_DAY_OF_MONTH), 0x01);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x21);
        assert_eq!(rd(&dev, RTC_YEAR), 0x00);
    }

    #[test]
    fn test_cmos_uip_set_only_in_last_244us_of_a_second() {
        let (dev, clock) = rtc_at(1_000_000, 0);
        let uip = |d: &Cmos| rd(d, RTC_REG_A) & REG_A_UIP != 0;
        assert!(!uip(&dev));
        clock.set(1_000_000, 999_755_000); // 245 us before the boundary
        assert!(!uip(&dev));
        clock.set(1_000_000, 999_755_860); // 244.140 us before: UIP
        assert!(uip(&dev));
        clock.set(1_000_000, 999_999_999);
        assert!(uip(&dev));
        assert_eq!(rd(&dev, RTC_SECONDS), 0x40); // 1_000_000 % 60 = 40
        clock.set(1_000_001, 0);
        assert!(!uip(&dev));
        assert_eq!(rd(&dev, RTC_SECONDS), 0x41);
        // Held by SET: no update, no UIP.
        clock.set(1_000_001, 999_900_000);
        assert!(uip(&dev));
        wr(&dev, RTC_REG_B, REG_B_DEFAULT | REG_B_SET);
        assert!(!uip(&dev));
        // UIP is read-only.
        wr(&dev, RTC_REG_B, REG_B_DEFAULT);
        wr(&dev, RTC_REG_A, 0xa6);
        assert_eq!(rd(&dev, RTC_REG_A) & !REG_A_UIP, 0x26);
    }

    #[test]
    fn test_cmos_set_mode_holds_time_and_writes_offset_the_clock() {
        let (dev, clock) = rtc_at(1_700_000_000, 250_000_000); // 2023-11-14 22:13:20
        wr(&dev, RTC_REG_B, REG_B_DEFAULT | REG_B_SET);
        // Linux's mc146818_set_time order, setting 2031-07-04 08:09:10.
        wr(&dev, RTC_YEAR, 0x31);
        wr(&dev, RTC_MONTH, 0x07);
        wr(&dev, RTC_DAY_OF_MONTH, 0x04);
        wr(&dev, RTC_HOURS, 0x08);
        wr(&dev, RTC_MINUTES, 0x09);
        wr(&dev, RTC_SECONDS, 0x10);
        // Held: time does not move while SET.
        clock.advance_ns(5_000_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x10);
        assert_eq!(rd(&dev, RTC_YEAR), 0x31);
        wr(&dev, RTC_REG_B, REG_B_DEFAULT);
        let set = unix_from_civil(&CivilTime {
            year: 2031,
            month: 7,
            day: 4,
            hour: 8,
            minute: 9,
            second: 10,
            weekday: 0,
        });
        assert_eq!(dev.guest_time(), set);
        // The clock then runs with the host.
        clock.advance_ns(3_000_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x13);
        assert_eq!(rd(&dev, RTC_MINUTES), 0x09);
        assert_eq!(rd(&dev, RTC_HOURS), 0x08);
        assert_eq!(rd(&dev, RTC_DAY_OF_MONTH), 0x04);
        assert_eq!(rd(&dev, RTC_MONTH), 0x07);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x20);
        assert_eq!(dev.guest_time(), set + 3);
        // SET only inhibited updates: the divider phase (0.25 s + 5 s) is
        // kept, so the next boundary is 0.75 s after clearing SET.
        clock.advance_ns(740_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x13);
        clock.advance_ns(20_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x14);
    }

    #[test]
    fn test_cmos_divider_reset_holds_time_and_restarts_half_a_second_later() {
        let (dev, clock) = rtc_at(0, 900_000_000); // 1970-01-01 00:00:00.9
        wr(&dev, RTC_REG_A, 0x70); // DV = 111: divider reset
        clock.advance_ns(10_000_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x00);
        wr(&dev, RTC_SECONDS, 0x30);
        wr(&dev, RTC_REG_A, REG_A_DEFAULT);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x30);
        clock.advance_ns(499_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x30);
        clock.advance_ns(2_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x31);
    }

    #[test]
    fn test_cmos_linux_set_time_sequence() {
        // drivers/rtc/rtc-mc146818-lib.c mc146818_set_time: SET, divider
        // reset, write the fields, restore B, restore A.
        let (dev, clock) = rtc_at(1_700_000_000, 123_000_000);
        let save_b = rd(&dev, RTC_REG_B);
        wr(&dev, RTC_REG_B, save_b | REG_B_SET);
        let save_a = rd(&dev, RTC_REG_A);
        wr(&dev, RTC_REG_A, save_a | 0x70);
        for (reg, v) in [
            (RTC_YEAR, 0x01),
            (RTC_MONTH, 0x02),
            (RTC_DAY_OF_MONTH, 0x03),
            (RTC_HOURS, 0x04),
            (RTC_MINUTES, 0x05),
            (RTC_SECONDS, 0x06),
        ] {
            wr(&dev, reg, v);
        }
        clock.advance_ns(7_000_000_000);
        wr(&dev, RTC_REG_B, save_b);
        // Still held: the divider is in reset.
        clock.advance_ns(3_000_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x06);
        assert_eq!(rd(&dev, RTC_REG_A) & REG_A_UIP, 0);
        wr(&dev, RTC_REG_A, save_a);
        let set = unix_from_civil(&CivilTime {
            year: 2001,
            month: 2,
            day: 3,
            hour: 4,
            minute: 5,
            second: 6,
            weekday: 0,
        });
        assert_eq!(dev.guest_time(), set);
        assert_eq!(rd(&dev, CMOS_CENTURY), 0x20);
        clock.advance_ns(500_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x07);
        assert_eq!(dev.guest_time(), set + 1);
    }

    #[test]
    fn test_cmos_write_while_running_takes_effect_at_once() {
        let (dev, clock) = rtc_at(1_700_000_000, 0); // 2023-11-14 22:13:20
        wr(&dev, RTC_YEAR, 0x25);
        assert_eq!(rd(&dev, RTC_YEAR), 0x25);
        assert_eq!(rd(&dev, RTC_MONTH), 0x11);
        clock.advance_ns(1_000_000_000);
        assert_eq!(rd(&dev, RTC_SECONDS), 0x21);
        let expected = unix_from_civil(&CivilTime {
            year: 2025,
            month: 11,
            day: 14,
            hour: 22,
            minute: 13,
            second: 21,
            weekday: 0,
        });
        assert_eq!(dev.guest_time(), expected);
    }

    #[test]
    fn test_cmos_12h_binary_write_sets_pm_hour() {
        let (dev, _) = rtc_at(0, 0);
        // Binary 12-hour mode, then set 12 pm with SET held in that mode.
        wr(&dev, RTC_REG_B, REG_B_DM);
        wr(&dev, RTC_REG_B, REG_B_DM | REG_B_SET);
        wr(&dev, RTC_HOURS, HOURS_PM | 12);
        wr(&dev, RTC_REG_B, REG_B_DM);
        assert_eq!(rd(&dev, RTC_HOURS), HOURS_PM | 12);
        wr(&dev, RTC_REG_B, REG_B_DM | REG_B_24H);
        assert_eq!(rd(&dev, RTC_HOURS), 12);
        // BCD 12-hour mode: 0x12 without PM is midnight.
        wr(&dev, RTC_REG_B, 0);
        wr(&dev, RTC_REG_B, REG_B_SET);
        wr(&dev, RTC_HOURS, 0x12);
        wr(&dev, RTC_REG_B, 0);
        assert_eq!(rd(&dev, RTC_HOURS), 0x12);
        wr(&dev, RTC_REG_B, REG_B_24H);
        assert_eq!(rd(&dev, RTC_HOURS), 0x00);
        // 11 pm in BCD 12-hour mode.
        wr(&dev, RTC_REG_B, 0);
        wr(&dev, RTC_HOURS, HOURS_PM | 0x11);
        wr(&dev, RTC_REG_B, REG_B_24H);
        assert_eq!(rd(&dev, RTC_HOURS), 0x23);
    }

    #[test]
    fn test_cmos_day_of_week_is_its_own_counter() {
        let (dev, clock) = rtc_at(0, 0); // Thursday
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 5);
        wr(&dev, RTC_DAY_OF_WEEK, 1); // guest says Sunday
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 1);
        clock.advance_ns(86_400 * 1_000_000_000);
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 2);
        clock.advance_ns(6 * 86_400 * 1_000_000_000);
        assert_eq!(rd(&dev, RTC_DAY_OF_WEEK), 1);
    }

    #[test]
    fn test_cmos_alarm_bytes_stored_and_flags_computed_on_read() {
        let (dev, clock) = rtc_at(3600 * 10, 0); // 10:00:00
        wr(&dev, RTC_SECONDS_ALARM, 0x05);
        wr(&dev, RTC_MINUTES_ALARM, 0x00);
        wr(&dev, RTC_HOURS_ALARM, 0x10);
        assert_eq!(rd(&dev, RTC_SECONDS_ALARM), 0x05);
        assert_eq!(rd(&dev, RTC_MINUTES_ALARM), 0x00);
        assert_eq!(rd(&dev, RTC_HOURS_ALARM), 0x10);
        wr(&dev, RTC_REG_A, 0x20); // no periodic rate
        assert_eq!(rd(&dev, RTC_REG_C), 0);
        clock.advance_ns(3_000_000_000);
        // An update, but not the alarm time yet.
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_UF);
        assert_eq!(rd(&dev, RTC_REG_C), 0, "reading clears");
        clock.advance_ns(2_000_000_000); // 10:00:05
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_UF | REG_C_AF);
        // Enables give IRQF.
        wr(&dev, RTC_REG_B, REG_B_DEFAULT | REG_B_UIE);
        clock.advance_ns(1_000_000_000);
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_IRQF | REG_C_UF);
        // Don't-care alarm hour and minute: matches at :05 of any minute.
        wr(&dev, RTC_HOURS_ALARM, 0xc0);
        wr(&dev, RTC_MINUTES_ALARM, 0xff);
        wr(&dev, RTC_REG_B, REG_B_DEFAULT | REG_B_AIE);
        clock.advance_ns(58_000_000_000); // 10:01:04
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_UF);
        clock.advance_ns(1_000_000_000); // 10:01:05
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
        // C and D are read-only.
        wr(&dev, RTC_REG_C, 0xff);
        wr(&dev, RTC_REG_D, 0x00);
        assert_eq!(rd(&dev, RTC_REG_C), 0);
        assert_eq!(rd(&dev, RTC_REG_D), REG_D_VRT);
    }

    #[test]
    fn test_cmos_periodic_flag_follows_rate_select() {
        let (dev, clock) = rtc_at(100, 0);
        // RS = 0110: 1024 Hz (976.5625 us).
        assert_eq!(rd(&dev, RTC_REG_C), 0);
        clock.advance_ns(900_000);
        assert_eq!(rd(&dev, RTC_REG_C), 0);
        clock.advance_ns(100_000);
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_PF);
        // RS = 1111: 2 Hz.
        wr(&dev, RTC_REG_A, 0x2f);
        wr(&dev, RTC_REG_B, REG_B_DEFAULT | REG_B_PIE);
        let _ = rd(&dev, RTC_REG_C);
        clock.advance_ns(400_000_000); // 100.4 s
        assert_eq!(rd(&dev, RTC_REG_C), 0);
        clock.advance_ns(200_000_000); // 100.6 s: a 500 ms edge passed
        assert_eq!(rd(&dev, RTC_REG_C), REG_C_IRQF | REG_C_PF);
    }

    #[test]
    fn test_cmos_set_clears_uie() {
        let (dev, _) = rtc_at(0, 0);
        wr(&dev, RTC_REG_B, REG_B_SET | REG_B_UIE | REG_B_24H);
        assert_eq!(rd(&dev, RTC_REG_B), REG_B_SET | REG_B_24H);
        wr(&dev, RTC_REG_B, REG_B_UIE | REG_B_24H | REG_B_DSE);
        assert_eq!(rd(&dev, RTC_REG_B), REG_B_UIE | REG_B_24H | REG_B_DSE);
    }

    #[test]
    fn test_cmos_index_nmi_bit_and_all_256_index_values() {
        let (dev, _) = rtc_at(0, 0);
        assert!(!dev.nmi_masked());
        for v in 0..=255u8 {
            dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[v]);
            assert_eq!(dev.nmi_masked(), v & 0x80 != 0);
            let mut d = [0u8];
            dev.pio_read(PioAddress(CMOS_INDEX_PORT), 1, &mut d);
            // Reading the same register through the NMI-masked alias gives
            // the same byte as through the plain index.
            let again = rd(&dev, v & 0x7f);
            if v & 0x7f != RTC_REG_C {
                assert_eq!(d[0], again, "index {v:#x}");
            }
            let mut ix = [0u8];
            dev.pio_read(PioAddress(CMOS_INDEX_PORT), 0, &mut ix);
            assert_eq!(ix[0], 0xff, "index port is write-only");
        }
        // RAM bytes read back what was written, through either alias.
        for idx in 0x0e..=0x7fu8 {
            if idx == CMOS_CENTURY {
                continue;
            }
            wr(&dev, idx | 0x80, idx ^ 0x5a);
            assert_eq!(rd(&dev, idx), idx ^ 0x5a, "index {idx:#x}");
        }
        // Writing every register with every value never panics.
        for idx in 0..=255u8 {
            for v in [0x00, 0x7f, 0x80, 0x99, 0xc0, 0xff] {
                wr(&dev, idx, v);
                let _ = rd(&dev, idx);
            }
        }
    }

    #[test]
    fn test_cmos_byte_lanes() {
        let (dev, _) = rtc_at(0, 0);
        // 16-bit write at 0x70: index then data.
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), 0, &[0x40, 0xa5]);
        assert_eq!(rd(&dev, 0x40), 0xa5);
        // 16-bit read at 0x70: index port (0xff) then data.
        let mut d = [0u8; 2];
        dev.pio_read(PioAddress(CMOS_INDEX_PORT), 0, &mut d);
        assert_eq!(d, [0xff, 0xa5]);
        // Bytes past 0x71 are not ours.
        let mut d = [0u8; 4];
        dev.pio_read(PioAddress(CMOS_INDEX_PORT), 1, &mut d);
        assert_eq!(d, [0xa5, 0xff, 0xff, 0xff]);
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), 1, &[0x11, 0x22, 0x33]);
        assert_eq!(rd(&dev, 0x40), 0x11);
        // Huge offsets do not wrap onto our ports.
        dev.pio_write(PioAddress(CMOS_INDEX_PORT), u16::MAX, &[0x41, 0x42]);
        assert_eq!(rd(&dev, 0x40), 0x11);
        dev.pio_read(PioAddress(CMOS_INDEX_PORT), 0, &mut []);
    }

    #[test]
    fn test_cmos_memory_size_bytes() {
        let clock = TestClock::at(0, 0);
        let mem = CmosMemorySizes {
            below_4g_end: 3 * 1024 * MIB,
            above_4g_size: 5 * 1024 * MIB,
        };
        let dev = Cmos::new(mem, clock.clone());
        let w = |lo: u8| u32::from(rd(&dev, lo)) | u32::from(rd(&dev, lo + 1)) << 8;
        assert_eq!(w(CMOS_BASE_MEM_LO), 640);
        assert_eq!(w(CMOS_EXT_MEM_LO), 0xffff);
        assert_eq!(w(CMOS_EXT_MEM_POST_LO), 0xffff);
        assert_eq!(w(CMOS_MEM_ABOVE_16M_LO), ((3 * 1024 - 16) * 16) as u32);
        let high = u32::from(rd(&dev, CMOS_MEM_ABOVE_4G_LO))
            | u32::from(rd(&dev, CMOS_MEM_ABOVE_4G_MID)) << 8
            | u32::from(rd(&dev, CMOS_MEM_ABOVE_4G_HI)) << 16;
        assert_eq!(high, 5 * 1024 * 16);
        let sum: u32 = (0x10..=0x2du8).map(|i| u32::from(rd(&dev, i))).sum();
        assert_eq!(
            (u32::from(rd(&dev, CMOS_CHECKSUM_HI)) << 8) | u32::from(rd(&dev, CMOS_CHECKSUM_LO)),
            sum & 0xffff
        );

        // A small guest: 32 MiB.
        let dev = Cmos::new(
            CmosMemorySizes {
                below_4g_end: 32 * MIB,
                above_4g_size: 0,
            },
            clock.clone(),
        );
        let w = |lo: u8| u32::from(rd(&dev, lo)) | u32::from(rd(&dev, lo + 1)) << 8;
        assert_eq!(w(CMOS_BASE_MEM_LO), 640);
        assert_eq!(w(CMOS_EXT_MEM_LO), 31 * 1024);
        assert_eq!(w(CMOS_EXT_MEM_POST_LO), 31 * 1024);
        assert_eq!(w(CMOS_MEM_ABOVE_16M_LO), 16 * 16);
        assert_eq!(rd(&dev, CMOS_MEM_ABOVE_4G_LO), 0);

        // Tiny: 512 KiB, nothing above 1 MiB.
        let dev = Cmos::new(
            CmosMemorySizes {
                below_4g_end: 512 * KIB,
                above_4g_size: 0,
            },
            clock,
        );
        let w = |lo: u8| u32::from(rd(&dev, lo)) | u32::from(rd(&dev, lo + 1)) << 8;
        assert_eq!(w(CMOS_BASE_MEM_LO), 512);
        assert_eq!(w(CMOS_EXT_MEM_LO), 0);
        assert_eq!(w(CMOS_MEM_ABOVE_16M_LO), 0);
    }

    #[test]
    fn test_cmos_extreme_clock_values_do_not_panic() {
        for secs in [i64::MIN, i64::MIN / 2, -1, 0, i64::MAX / 2, i64::MAX] {
            let (dev, _) = rtc_at(secs, 999_999_999);
            for idx in 0..=0x7fu8 {
                let _ = rd(&dev, idx);
            }
            wr(&dev, RTC_YEAR, 0x99);
            wr(&dev, RTC_REG_B, REG_B_SET);
            wr(&dev, RTC_MONTH, 0xff);
            wr(&dev, RTC_REG_B, REG_B_24H);
            let _ = rd(&dev, RTC_REG_C);
            let _ = dev.guest_time();
        }
    }

    #[test]
    fn test_cmos_system_clock_is_after_2020() {
        let (s, ns) = SystemClock.now();
        assert!(s > 1_577_836_800, "{s}");
        assert!(ns < 1_000_000_000);
    }
}
