//! Tests of the RTC/CMOS through its ports, as a guest drives it.

use super::calendar::{secs_of, NANOS_PER_SEC};
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
