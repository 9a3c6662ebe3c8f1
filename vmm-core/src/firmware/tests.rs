//! Placement, validation and contents of the firmware tables.

use super::*;

#[test]
fn test_pc_platform_is_valid() {
    for cpus in [1, 4, MAX_CPUS] {
        PlatformInfo::pc(cpus, 5).validate().unwrap();
    }
}

#[test]
fn test_validation_rejects_bad_descriptions() {
    let pc = PlatformInfo::pc(1, 5);
    let cases: Vec<(PlatformInfo, &str)> = vec![
        (
            PlatformInfo {
                cpus: 0,
                ..pc.clone()
            },
            "got 0",
        ),
        (
            PlatformInfo {
                cpus: 255,
                ..pc.clone()
            },
            "255 CPUs",
        ),
        (
            PlatformInfo {
                s5_slp_typ: 8,
                ..pc.clone()
            },
            "sleep type 8",
        ),
        (
            PlatformInfo {
                s3_slp_typ: Some(5),
                ..pc.clone()
            },
            "S3 sleep type 5",
        ),
        (
            PlatformInfo {
                s3_slp_typ: Some(9),
                ..pc.clone()
            },
            "S3 sleep type 9",
        ),
        (
            PlatformInfo {
                ioapic_id: 16,
                ..pc.clone()
            },
            "I/O APIC ID 16",
        ),
        (
            PlatformInfo {
                lapic_base: 0x1_0000_0000,
                ..pc.clone()
            },
            "local APIC base 0x100000000",
        ),
        (
            PlatformInfo {
                pm_base: 0xfff8,
                ..pc.clone()
            },
            "port 0xfff8",
        ),
        (
            PlatformInfo {
                pm_base: 0,
                ..pc.clone()
            },
            "port 0x0",
        ),
        (
            PlatformInfo {
                sci_irq: 2,
                ..pc.clone()
            },
            "IRQ 2",
        ),
        (
            PlatformInfo {
                sci_irq: 16,
                ..pc.clone()
            },
            "IRQ 16",
        ),
        (
            PlatformInfo {
                sci_irq: 8,
                ..pc.clone()
            },
            "the SCI and the RTC",
        ),
        (
            PlatformInfo {
                com1: Some(IsaSerial {
                    port: 0x3f8,
                    irq: 1,
                }),
                ..pc.clone()
            },
            "COM1 and the i8042",
        ),
        (
            PlatformInfo {
                com1: Some(IsaSerial {
                    port: 0xfffc,
                    irq: 4,
                }),
                ..pc.clone()
            },
            "port 0xfffc",
        ),
        (
            PlatformInfo {
                virtio_mmio: vec![VirtioMmio {
                    base: 0xffff_f800,
                    gsi: 5,
                }],
                ..pc.clone()
            },
            "virtio-mmio window end 0x1000007ff",
        ),
        (
            PlatformInfo {
                virtio_mmio: vec![VirtioMmio {
                    base: 0xfeb0_0000,
                    gsi: 24,
                }],
                ..pc.clone()
            },
            "GSI 24",
        ),
        (
            PlatformInfo {
                virtio_mmio: vec![VirtioMmio {
                    base: 0xfeb0_0000,
                    gsi: 4,
                }],
                ..pc.clone()
            },
            "COM1 and a virtio-mmio device are both given IRQ 4",
        ),
        (
            PlatformInfo {
                virtio_mmio: vec![
                    VirtioMmio {
                        base: 0xfeb0_0000,
                        gsi: 17,
                    };
                    2
                ],
                ..pc.clone()
            },
            "IRQ 17",
        ),
        (
            PlatformInfo {
                rtc_century_index: 0x09,
                ..pc.clone()
            },
            "index 0x9",
        ),
        (
            PlatformInfo {
                rtc: false,
                rtc_century_index: 0x32,
                ..pc.clone()
            },
            "index 0x32",
        ),
    ];
    for (info, text) in cases {
        let e = info.validate().unwrap_err().to_string();
        assert!(e.contains(text), "{e:?} should mention {text:?}");
    }
    // Moving a device off a clash makes it valid again.
    PlatformInfo {
        sci_irq: 10,
        ..pc.clone()
    }
    .validate()
    .unwrap();
    PlatformInfo {
        rtc_century_index: 0x32,
        ..pc
    }
    .validate()
    .unwrap();
}

#[test]
fn test_checksum_zeroes_sum() {
    let mut bytes = vec![1u8, 2, 250, 77, 0];
    bytes[4] = checksum(&bytes);
    assert_eq!(bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    assert_eq!(checksum(&[]), 0);
}

#[test]
fn test_placer_aligns_and_refuses_overflow() {
    let mut p = Placer::new("test area", GuestAddress(0x1001), GuestAddress(0x1100));
    assert_eq!(p.place("a", 0x10, 16).unwrap(), 0x1010);
    assert_eq!(p.place("b", 0x40, 64).unwrap(), 0x1040);
    let e = p.place("c", 0x90, 16).unwrap_err().to_string();
    assert_eq!(
        e,
        "the test area do not fit: the c would end at 0x1110, past 0x1100"
    );
    // The failed placement consumed nothing: the room left still fits.
    assert_eq!(p.place("d", 0x80, 16).unwrap(), 0x1080);
    assert!(p.place("e", 1, 1).is_err());
}

/// The MADT and the MP table describe the same CPUs, I/O APIC and
/// ISA interrupt routing.
#[test]
fn test_acpi_and_mp_agree() {
    for info in [
        PlatformInfo::pc(4, 5),
        PlatformInfo {
            irq0_to_gsi2: false,
            sci_irq: 10,
            ioapic_id: 2,
            ..PlatformInfo::pc(3, 5)
        },
    ] {
        let mem = acpi::tests::guest(0, 2 << 20);
        let tables = write_firmware_tables(&mem, &info).unwrap();
        let a = acpi::tests::parse(&mem);
        let m = mptable::tests::parse(&mem);
        assert_eq!(tables.rsdp.0, a.rsdp);
        assert_eq!(tables.mp_floating_pointer.0, m.pointer);

        let madt_ids: Vec<u8> = a.lapics.iter().map(|l| l.1).collect();
        let mp_ids: Vec<u8> = m.cpus.iter().map(|c| c.0).collect();
        assert_eq!(madt_ids, mp_ids);
        assert_eq!(
            u32::from_le_bytes(a.madt()[36..40].try_into().unwrap()),
            m.lapic_base
        );
        assert_eq!(a.ioapics.len(), 1);
        assert_eq!(
            (a.ioapics[0].0, a.ioapics[0].1),
            (m.ioapics[0].0, m.ioapics[0].3)
        );

        // Each ISA IRQ reaches the same I/O APIC input with the same
        // polarity and trigger mode: an override where ACPI has one,
        // identity with the ISA defaults elsewhere.
        for &(_, flags, _, irq, _, pin) in &m.io_ints {
            let (gsi, acpi_flags) = a
                .overrides
                .iter()
                .find(|o| o.1 == irq)
                .map(|o| (o.2, o.3))
                .unwrap_or((u32::from(irq), 0));
            assert_eq!((gsi, acpi_flags), (u32::from(pin), flags), "ISA IRQ {irq}");
        }
        // The SCI the FADT names is the level-triggered line in both.
        let sci = u16::from_le_bytes(a.fadt()[46..48].try_into().unwrap());
        assert_eq!(u16::from(info.sci_irq), sci);
        assert!(m
            .io_ints
            .iter()
            .any(|e| u16::from(e.3) == sci && e.1 == 0x0d));
    }
}
