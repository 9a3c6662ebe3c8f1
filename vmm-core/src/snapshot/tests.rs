//! The snapshot file format and body checks, without KVM.

use kvm_bindings::kvm_clock_data;
use vmm_cpu::snapshot::{FpuState, VcpuState, XsaveArea, XSAVE_WORDS};
use vmm_devices::legacy::post_code::PostCodeState;
use vmm_devices::legacy::uart8250::UartState;
use vmm_devices::pc::{DeviceSet, PcDeviceStates};
use vmm_memory::MemoryLayout;

use super::body::{SnapshotBody, VmState};
use super::format::{decode, encode, HEADER_LEN, MAX_BODY_LEN};
use super::validate::{layout_memory_state, validate};
use super::SnapshotError;
use crate::config::VmConfig;
use crate::platform::Platform;

fn vcpu(index: u64) -> VcpuState {
    VcpuState {
        index,
        regs: Default::default(),
        sregs: Default::default(),
        fpu: FpuState::default(),
        xsave: XsaveArea(vec![0; XSAVE_WORDS]),
        xcrs: Default::default(),
        debug_regs: Default::default(),
        lapic: None,
        msrs: vec![kvm_bindings::kvm_msr_entry {
            index: 0x10,
            data: 0x1234,
            ..Default::default()
        }],
        skipped_msrs: vec![],
        cpuid: vec![],
        mp_state: Default::default(),
        vcpu_events: Default::default(),
        tsc_khz: Some(1),
    }
}

/// A minimal-platform, one-vCPU, 16 MiB body.
pub(crate) fn sample_body() -> SnapshotBody {
    let config = VmConfig {
        memory_mib: 16,
        vcpus: 1,
        platform: Platform::Minimal,
        ..Default::default()
    };
    let layout = MemoryLayout::new(16).unwrap();
    SnapshotBody {
        vmm: "test".into(),
        config,
        memory: layout_memory_state(&layout),
        vm: VmState {
            irqchip: None,
            pit: None,
            clock: Some(kvm_clock_data {
                clock: 123_456,
                ..Default::default()
            }),
        },
        vcpus: vec![vcpu(0)],
        devices: PcDeviceStates {
            set: DeviceSet::Minimal,
            uart: UartState::default(),
            post: PostCodeState::default(),
            i8042: None,
            cmos: None,
            acpi_pm: None,
        },
        virtio: vec![],
    }
}

/// A file whose header matches `body` (length and CRC recomputed).
fn reseal(file: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = file[..HEADER_LEN].to_vec();
    out[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[24..28].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// `file` with the first `from` in the body replaced by `to`, resealed.
fn edit_body(file: &[u8], from: &str, to: &str) -> Vec<u8> {
    let body = String::from_utf8(file[HEADER_LEN..].to_vec()).unwrap();
    assert!(body.contains(from), "{from} not in the body");
    reseal(file, body.replacen(from, to, 1).as_bytes())
}

#[test]
fn test_snapshot_file_round_trips() {
    let body = sample_body();
    let file = encode(&body).unwrap();
    assert_eq!(&file[..8], b"RVMMSNAP");
    let back = decode(&file).unwrap();
    assert_eq!(
        encode(&back).unwrap(),
        file,
        "decode(encode(x)) re-encodes to the same bytes"
    );
    assert_eq!(back.vcpus[0].msr(0x10), Some(0x1234));
    validate(&back).unwrap();
}

#[test]
fn test_snapshot_header_errors_name_the_problem() {
    let file = encode(&sample_body()).unwrap();
    let check = |bytes: &[u8], what: &str| {
        let e = decode(bytes).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
        e
    };
    let mut bad = file.clone();
    bad[0] = b'X';
    check(&bad, "not a snapshot file");
    check(b"hello world, not a snapshot", "not a snapshot file");
    let mut bad = file.clone();
    bad[8] = 2;
    check(&bad, "format version 2");
    let mut bad = file.clone();
    bad[12] = 1;
    check(&bad, "offset 12");
    let mut bad = file.clone();
    bad[16..24].copy_from_slice(&(MAX_BODY_LEN + 1).to_le_bytes());
    check(&bad, "more than");
    // Truncated in the header, at the end of the header, in the body.
    for cut in [0, 5, 20, HEADER_LEN, HEADER_LEN + 10, file.len() - 1] {
        let e = check(&file[..cut], "truncated");
        assert!(matches!(e, SnapshotError::Truncated { found, .. } if found == cut as u64));
    }
    let mut long = file.clone();
    long.push(b' ');
    check(&long, "header accounts for");
}

#[test]
fn test_snapshot_body_damage_is_caught() {
    let file = encode(&sample_body()).unwrap();
    // Any flipped body byte: the checksum.
    for at in [HEADER_LEN, HEADER_LEN + 100, file.len() - 1] {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let e = decode(&bad).unwrap_err();
        assert!(
            matches!(e, SnapshotError::Checksum { .. }),
            "byte {at}: {e}"
        );
    }
    // A body changed with its checksum fixed: the section is named.
    let e = decode(&edit_body(&file, r#""tsc_khz":1"#, r#""tsc_khz":"x""#)).unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Body {
                section: "vcpus",
                ..
            }
        ),
        "{e}"
    );
    let e = decode(&edit_body(
        &file,
        r#""set":"minimal""#,
        r#""set":"mainframe""#,
    ))
    .unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Body {
                section: "devices",
                ..
            }
        ),
        "{e}"
    );
    let e = decode(&edit_body(&file, r#"{"vmm""#, r#"{"extra":1,"vmm""#)).unwrap_err();
    assert!(e.to_string().contains("extra"), "{e}");
    let e = decode(&reseal(&file, b"[1,2")).unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Body {
                section: "body",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn test_snapshot_validation_catches_contradictions() {
    let check = |edit: &dyn Fn(&mut SnapshotBody), what: &str| {
        let mut b = sample_body();
        edit(&mut b);
        let e = validate(&b).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains(what), "{what}: {e}");
    };
    check(&|b| b.config.vcpus = 2, "saved vCPUs");
    check(&|b| b.vcpus[0].index = 3, "vcpus[0].index");
    check(&|b| b.config.memory_mib = 32, "memory");
    check(&|b| b.memory.regions[0].len -= 4096, "memory");
    check(&|b| b.devices.set = DeviceSet::Pc, "devices.set");
    check(
        &|b| b.vcpus[0].xsave.0.pop().map(drop).unwrap_or(()),
        "xsave",
    );
    check(
        &|b| b.vcpus[0].lapic = Some(Default::default()),
        "vcpus[0].lapic",
    );
    check(&|b| b.config.devices.rng = true, "virtio devices");
    check(&|b| b.config.memory_mib = 0, "memory_mib");
}
