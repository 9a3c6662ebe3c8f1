//! Writes the seed corpus: `corpus/<target>/<name>` for every fuzz target.
//!
//! Run from `integration-tests/fuzz`: `cargo +nightly run --example gen_corpus`
//! (no sanitizer needed). Seeds are meaningful inputs: real guests and
//! synthetic kernels of every format for the loaders, typical command lines,
//! and register sequences drivers actually issue for the devices (a Linux
//! 8042 probe, setting the RTC, an S5 power-off...). The device targets decode
//! their input with `arbitrary` 1.x's derive; [`Enc`] writes that encoding,
//! and `VMM_FUZZ_TRACE=1 <target binary> <seed>` prints what a seed decodes
//! to.

use std::path::{Path, PathBuf};

use vmm_fuzz::load::LoadHeader;
use vmm_fuzz::virtio_net::{self as net, Op as NetOp};
use vmm_loader::detect::XEN_ELFNOTE_PHYS32_ENTRY;
use vmm_loader::linux::test_image::{bzimage, compress, BzImageSpec, Codec};
use vmm_loader::multiboot::test_image as mb;
use vmm_loader::{elf, pvh, Format};

/// The input bytes `arbitrary`'s derive decodes into given values.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    /// Variant `i` of an enum with `n` variants: derive reads a `u32` `x`
    /// and takes `(x * n) >> 32`.
    fn variant(&mut self, i: u64, n: u64) -> &mut Self {
        let x = (i << 32).div_ceil(n);
        self.0.extend_from_slice(&(x as u32).to_le_bytes());
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Raw bytes (write data, which the targets take as is).
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A `Vec<u8>` field: each element behind a "more" flag, then a stop.
    fn vec(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0.extend_from_slice(&[1, x]);
        }
        self.u8(0)
    }
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Width codes (`vmm_fuzz::ports::WIDTHS`).
const W1: u8 = 0;
const W2: u8 = 5;
const W4: u8 = 8;
const W0: u8 = 11;
const W3: u8 = 12;
const W9: u8 = 14;

struct Out {
    root: PathBuf,
}

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

fn hlt_code() -> Vec<u8> {
    // mov al, 'K'; out 0xe9, al; hlt
    let mut c = vec![0xb0, b'K', 0xe6, 0xe9, 0xf4];
    c.resize(0x40, 0xf4);
    c
}

fn vmlinux() -> Vec<u8> {
    let code = hlt_code();
    pvh::test_image::build(
        true,
        0x10_0000,
        &[(0x10_0000, 0xffff_ffff_8100_0000, &code, 0x1_0000)],
        &[("Linux", 6, b"4.0.0\0\0\0")],
    )
}

fn load_seeds(out: &Out) {
    let code = hlt_code();
    let plain = LoadHeader::default();
    let full = LoadHeader {
        acpi: true,
        cmdline: Some((b"console=ttyS0 root=/dev/ram0".to_vec(), 0)),
        initrd: Some(40),
        modules: (2, 20),
        ..LoadHeader::default()
    };
    let raw_at_1000 = LoadHeader {
        raw: (0, 0x10),
        ..LoadHeader::default()
    };
    let mut all: Vec<(&str, Option<Format>, Vec<u8>)> = Vec::new();

    // The repository's test guests (raw, real mode at 0x1000).
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests");
    for g in ["hello.bin", "counter.bin"] {
        let bytes = std::fs::read(guests.join(g)).expect("read guest");
        all.push((g, Some(Format::Raw), raw_at_1000.encode(&bytes)));
    }
    // Raw in protected mode at 1 MiB.
    let pm = LoadHeader {
        format: Some(Format::Raw),
        raw: (1, 0x1000),
        ..LoadHeader::default()
    };
    all.push(("raw-protected", Some(Format::Raw), pm.encode(&code)));

    // Plain ELF programs.
    let elf64 = elf::test_image::build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, 0x2000)]);
    let elf32 = elf::test_image::build(
        false,
        0xc010_0000,
        &[
            (0x10_0000, 0xc010_0000, &code, 0x1000),
            (0x20_0000, 0xc020_0000, &code[..8], 0x3000),
        ],
    );
    all.push(("elf64", Some(Format::Elf), plain.encode(&elf64)));
    all.push((
        "elf32-two-segments",
        Some(Format::Elf),
        plain.encode(&elf32),
    ));

    // Multiboot: a.out kludge in a flat file, header in an ELF, video fields.
    let load = 0x10_0000u32;
    let hdr_len = 48u32;
    let file_len = hdr_len + code.len() as u32;
    let mut aout = mb::header(
        mb::AOUT_KLUDGE | mb::MEMORY_INFO | mb::PAGE_ALIGN,
        &[
            load,
            load,
            load + file_len,
            load + file_len + 0x1000,
            load + hdr_len,
            0,
            0,
            0,
            0,
        ],
    );
    aout.extend_from_slice(&code);
    all.push((
        "multiboot-aout",
        Some(Format::Multiboot),
        full.encode(&aout),
    ));
    let mut seg = mb::header(mb::MEMORY_INFO | mb::PAGE_ALIGN, &[]);
    seg.extend_from_slice(&code);
    let mb_elf = elf::test_image::build(false, 0x10_000c, &[(0x10_0000, 0x10_0000, &seg, 0x4000)]);
    all.push((
        "multiboot-elf",
        Some(Format::Multiboot),
        full.encode(&mb_elf),
    ));
    let mut video = mb::header(
        mb::MEMORY_INFO | mb::VIDEO_MODE,
        &[0, 0, 0, 0, 0, 1, 80, 25, 0],
    );
    video.extend_from_slice(&code);
    let mb_video =
        elf::test_image::build(false, 0x10_0030, &[(0x10_0000, 0x10_0000, &video, 0x1000)]);
    all.push((
        "multiboot-video",
        Some(Format::Multiboot),
        plain.encode(&mb_video),
    ));

    // Linux: a bzImage per codec (decompressed on the host), one run with
    // its own entry, and a bare vmlinux.
    // Linux takes one initrd and no modules.
    let linux = LoadHeader {
        modules: (0, 0),
        ..full.clone()
    };
    let vml = vmlinux();
    for codec in Codec::ALL {
        let payload = match compress(codec, &vml) {
            Some(p) => p,
            // No encoder (lzo): the magic alone reaches the refusal.
            None => codec.magic().to_vec(),
        };
        let img = bzimage(&BzImageSpec::default(), &payload);
        all.push((
            Box::leak(format!("bzimage-{}", codec.name()).into_boxed_str()),
            Some(Format::Linux),
            linux.encode(&img),
        ));
    }
    let gz = compress(Codec::Gzip, &vml).expect("gzip encoder");
    let own = LoadHeader {
        bzimage_own_entry: true,
        ..linux.clone()
    };
    all.push((
        "bzimage-own-entry",
        Some(Format::Linux),
        own.encode(&bzimage(&BzImageSpec::default(), &gz)),
    ));
    let old = BzImageSpec {
        version: 0x0206,
        setup_sects: 0,
        xloadflags: 0,
        ..BzImageSpec::default()
    };
    all.push((
        "bzimage-2.06-own-entry",
        Some(Format::Linux),
        own.encode(&bzimage(&old, &gz)),
    ));
    all.push(("vmlinux", Some(Format::Linux), linux.encode(&vml)));

    // PVH: ELF32 and ELF64 with the Xen entry note, with modules.
    let entry = pvh::test_image::phys32_entry_desc(0x10_0000);
    let notes: &[pvh::test_image::Note<'_>] = &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry)];
    for is_64 in [false, true] {
        let img = pvh::test_image::build(
            is_64,
            0x10_0000,
            &[(0x10_0000, 0x10_0000, &code, 0x2000)],
            notes,
        );
        all.push((
            if is_64 { "pvh-elf64" } else { "pvh-elf32" },
            Some(Format::Pvh),
            full.encode(&img),
        ));
    }

    for (name, format, bytes) in &all {
        out.put("load_image", name, bytes);
        let forced = match format {
            Some(Format::Elf) => Some("load_elf"),
            Some(Format::Multiboot) => Some("load_multiboot"),
            Some(Format::Linux) => Some("load_linux"),
            Some(Format::Pvh) => Some("load_pvh"),
            _ => None,
        };
        if let Some(t) = forced {
            out.put(t, name, bytes);
        }
    }
    // ELFs are the basis of three other formats: give each forced target the
    // plain ELFs too.
    for t in ["load_multiboot", "load_linux", "load_pvh"] {
        out.put(t, "elf64", &all[3].2);
    }

    // The payload target: cap byte (2^24 = 16 MiB), then a payload.
    for codec in Codec::ALL {
        let mut seed = vec![24u8];
        match compress(codec, &vml) {
            Some(p) => seed.extend_from_slice(&p),
            None => seed.extend_from_slice(codec.magic()),
        }
        out.put("linux_payload", codec.name(), &seed);
    }

    // The cache target: vmlinux bytes, one laid out like a linked kernel
    // (pages mappable), one packed (copied), one not an ELF.
    out.put("kernel_cache", "packed", &vml);
    let code = hlt_code();
    let paged = vmm_loader::elf::test_image::build_paged(
        true,
        0x10_0000,
        &[(
            0x10_0000,
            0x10_0000,
            &[code.as_slice(), &[0x90; 0x2000]].concat(),
            0x4000,
        )],
    );
    out.put("kernel_cache", "paged", &paged);
    out.put("kernel_cache", "not-elf", b"MZ\x90\x00");
}

fn cli_seeds(out: &Out) {
    let lines: &[(&str, &[&str])] = &[
        ("minimal", &["--kernel", "guest.bin", "--timeout", "5"]),
        (
            "linux",
            &[
                "--kernel",
                "bzImage",
                "--format",
                "linux",
                "--cmdline",
                "console=ttyS0 earlyprintk=serial",
                "--initrd",
                "initrd.img",
                "--memory",
                "256",
                "--cpus",
                "2",
                "--platform",
                "pc",
                "--timeout",
                "30",
            ],
        ),
        (
            "multiboot",
            &[
                "--kernel=mb.elf",
                "--module",
                "a.bin,arg one",
                "--module=b.bin",
                "--serial",
                "file:/tmp/out",
                "--max-exits",
                "0x1000",
                "-vv",
            ],
        ),
        (
            "raw",
            &[
                "--kernel",
                "raw.bin",
                "--mode",
                "real",
                "--load-addr",
                "0x7c00",
                "--entry",
                "0x7c0:0",
                "--reg",
                "rax=1",
                "--reg",
                "RSP=0x8000",
                "--trace-io",
                "--stats",
                "--metrics-file",
                "m.json",
                "--metrics-interval",
                "0.5",
                "--post-codes",
                "--thp",
                "--no-seccomp",
                "--kvm-device",
                "/dev/kvm",
                "--pv-hypercalls",
                "--bzimage-entry",
                "--serial",
                "none",
                "--platform",
                "minimal",
            ],
        ),
        ("help", &["--help"]),
        ("version", &["--version"]),
    ];
    for (name, args) in lines {
        // Mode byte 1: arguments separated by NUL bytes.
        let mut seed = vec![1u8];
        seed.extend_from_slice(args.join("\0").as_bytes());
        out.put("cli_args", name, &seed);
    }
}

/// Requests as Firecracker's getting-started guide, its SDKs and curl send
/// them (byte 0 even: an HTTP stream), and config documents (byte 0 odd).
fn api_seeds(out: &Out) {
    let req = |method: &str, path: &str, body: &str| {
        let mut r = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: application/json\r\n"
        );
        if body.is_empty() {
            r.push_str("\r\n");
        } else {
            r.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        r
    };
    let boot = req(
        "PUT",
        "/boot-source",
        r#"{"kernel_image_path": "./vmlinux", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"}"#,
    );
    let machine = req(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false}"#,
    );
    let drive = req(
        "PUT",
        "/drives/rootfs",
        r#"{"drive_id": "rootfs", "path_on_host": "./rootfs.ext4", "is_root_device": true, "is_read_only": false}"#,
    );
    let net = req(
        "PUT",
        "/network-interfaces/eth0",
        r#"{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tap0"}"#,
    );
    let start = req("PUT", "/actions", r#"{"action_type": "InstanceStart"}"#);
    let streams: &[(&str, String)] = &[
        ("get-info", req("GET", "/", "")),
        ("boot-source", boot.clone()),
        ("machine-config", machine.clone()),
        ("drive", drive.clone()),
        ("network", net.clone()),
        ("getting-started", [boot, machine, drive, net, start].concat()),
        ("vsock", req("PUT", "/vsock", r#"{"guest_cid": 3, "uds_path": "./v.sock"}"#)),
        ("entropy", req("PUT", "/entropy", "{}")),
        (
            "logger",
            req(
                "PUT",
                "/logger",
                r#"{"log_path": "logs.fifo", "level": "Debug", "show_level": true, "show_log_origin": true}"#,
            ),
        ),
        ("metrics", req("PUT", "/metrics", r#"{"metrics_path": "metrics.fifo"}"#)),
        ("pause", req("PATCH", "/vm", r#"{"state": "Paused"}"#)),
        (
            "snapshot-create",
            req(
                "PUT",
                "/snapshot/create",
                r#"{"snapshot_type": "Full", "snapshot_path": "./snapshot_file", "mem_file_path": "./mem_file"}"#,
            ),
        ),
        (
            "snapshot-load",
            req(
                "PUT",
                "/snapshot/load",
                r#"{"snapshot_path": "./snapshot_file", "mem_backend": {"backend_path": "./mem_file", "backend_type": "File"}, "resume_vm": true}"#,
            ),
        ),
        ("ctrl-alt-del", req("PUT", "/actions", r#"{"action_type": "SendCtrlAltDel"}"#)),
        ("patch-machine", req("PATCH", "/machine-config", r#"{"vcpu_count": 4}"#)),
        (
            "expect-continue",
            "PUT /mmds HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}".to_string(),
        ),
        ("config", req("GET", "/vm/config", "")),
    ];
    for (name, stream) in streams {
        let mut seed = vec![0u8];
        seed.extend_from_slice(stream.as_bytes());
        out.put("api_request", name, &seed);
    }
    let doc = br#"{
  "boot-source": {"kernel_image_path": "vmlinux.bin", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off", "initrd_path": null},
  "drives": [{"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe", "is_read_only": false, "path_on_host": "bionic.rootfs.ext4", "io_engine": "Sync", "rate_limiter": null, "socket": null}],
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
  "cpu-config": null, "balloon": null,
  "network-interfaces": [{"iface_id": "net1", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tap0"}],
  "vsock": null, "logger": null, "metrics": null, "mmds-config": null, "entropy": null
}"#;
    let mut seed = vec![1u8];
    seed.extend_from_slice(doc);
    out.put("api_request", "config-file", &seed);
}

fn uart_seeds(out: &Out) {
    let mut e = Enc::default();
    let (read, write, flood) = (0, 1, 3);
    let n = 4;
    let wr = |e: &mut Enc, reg: u8, v: u8| {
        e.variant(write, n).u8(reg).u8(W1).u8(v);
    };
    let rd = |e: &mut Enc, reg: u8| {
        e.variant(read, n).u8(reg).u8(W1);
    };
    // Linux 8250 probe and setup: scratch test, DLAB, 115200 8N1, FIFO,
    // interrupts, then transmit and poll LSR.
    e.u8(1);
    wr(&mut e, 7, 0x5a);
    rd(&mut e, 7);
    wr(&mut e, 3, 0x80);
    wr(&mut e, 0, 0x01);
    wr(&mut e, 1, 0x00);
    wr(&mut e, 3, 0x03);
    wr(&mut e, 2, 0xc7);
    wr(&mut e, 4, 0x0b);
    wr(&mut e, 1, 0x0f);
    rd(&mut e, 2);
    for b in b"hi\n" {
        rd(&mut e, 5);
        wr(&mut e, 0, *b);
    }
    rd(&mut e, 2);
    out.put("uart_registers", "linux-setup", &e.take());

    // Input: fill the FIFO, drain it, loopback.
    e.u8(2);
    e.variant(flood, n).u8(3);
    for _ in 0..70 {
        rd(&mut e, 5);
        rd(&mut e, 0);
    }
    wr(&mut e, 4, 0x10);
    wr(&mut e, 0, b'L');
    rd(&mut e, 0);
    e.variant(2, n).vec(b"abc");
    rd(&mut e, 6);
    out.put("uart_registers", "input-loopback", &e.take());

    // Wide accesses across the register file and past its end.
    e.u8(0);
    e.variant(write, n).u8(3).u8(W2).raw(&[0x03, 0x0b]);
    e.variant(read, n).u8(6).u8(W4);
    e.variant(write, n).u8(5).u8(W9).raw(&[0xff; 9]);
    e.variant(read, n).u8(0).u8(W0);
    out.put("uart_registers", "wide", &e.take());
}

fn debug_port_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 4;
    e.bool(true);
    for b in b"hello\n" {
        e.variant(1, n).bool(true).u8(W1).u8(*b);
    }
    e.variant(1, n).bool(false).u8(W2);
    e.variant(2, n).bool(true).u8(W1).u8(0x55);
    e.variant(2, n).bool(false).u8(W1);
    e.variant(0, n).bool(false).u8(0).u8(W4);
    e.variant(0, n)
        .bool(true)
        .u8(0)
        .u8(W4)
        .raw(&[0x10, 0, 0, 0]);
    out.put("debug_ports", "exit-after-output", &e.take());
    e.bool(false);
    e.variant(3, n).u16(5000);
    e.variant(0, n).bool(true).u8(2).u8(W3).raw(&[1, 2, 3]);
    e.variant(1, n).bool(true).u8(W0);
    out.put("debug_ports", "post-burst", &e.take());
}

fn i8042_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 4;
    let cmd = |e: &mut Enc, c: u8| {
        e.variant(1, n).bool(true).u8(0).u8(W1).u8(c);
    };
    let data_w = |e: &mut Enc, v: u8| {
        e.variant(0, n).bool(true).u8(0).u8(W1).u8(v);
    };
    let status = |e: &mut Enc| {
        e.variant(1, n).bool(false).u8(0).u8(W1);
    };
    let data_r = |e: &mut Enc| {
        e.variant(0, n).bool(false).u8(0).u8(W1);
    };
    // Linux i8042 probe: flush, read CTR, self test, write CTR, AUX
    // loopback (0xD3), enable AUX, mouse ID, keyboard reset.
    status(&mut e);
    data_r(&mut e);
    cmd(&mut e, 0x20);
    data_r(&mut e);
    cmd(&mut e, 0xaa);
    data_r(&mut e);
    e.variant(2, n).u8(0x60).u8(0x47);
    e.variant(2, n).u8(0xd3).u8(0x5a);
    status(&mut e);
    data_r(&mut e);
    cmd(&mut e, 0xa8);
    e.variant(2, n).u8(0xd4).u8(0xf2);
    data_r(&mut e);
    data_r(&mut e);
    data_w(&mut e, 0xff);
    data_r(&mut e);
    data_r(&mut e);
    data_w(&mut e, 0xf0);
    data_w(&mut e, 0x02);
    data_r(&mut e);
    e.variant(3, n).vec(&[0xe0, 0x75]);
    data_r(&mut e);
    data_r(&mut e);
    out.put("i8042", "linux-probe", &e.take());
    // Reset through the output port and the pulse command.
    e.variant(2, n).u8(0xd1).u8(0xfe);
    cmd(&mut e, 0xfe);
    e.variant(1, n).bool(true).u8(0).u8(W2).raw(&[0xd2, 0x12]);
    out.put("i8042", "reset", &e.take());
}

fn cmos_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 6;
    // 2024-02-29 23:59:59.9 UTC, 128 MiB of RAM.
    e.i64(1_709_251_199).u32(900_000_000).u32(128 << 20).u32(0);
    for r in [
        0x00u8, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32, 0x0a, 0x0b, 0x0d,
    ] {
        e.variant(1, n).u8(r);
    }
    // Set the time: SET, binary 12-hour mode, write 11:59:58 PM, clear SET.
    e.variant(2, n).u8(0x0b).u8(0x80 | 0x04);
    e.variant(2, n).u8(0x00).u8(58);
    e.variant(2, n).u8(0x02).u8(59);
    e.variant(2, n).u8(0x04).u8(0x80 | 11);
    e.variant(2, n).u8(0x0b).u8(0x04 | 0x20 | 0x10);
    e.variant(2, n).u8(0x01).u8(0xc0);
    e.variant(2, n).u8(0x03).u8(0xc0);
    e.variant(2, n).u8(0x05).u8(0xc0);
    e.variant(3, n).u32(999_999_999);
    e.variant(1, n).u8(0x0a);
    e.variant(1, n).u8(0x0c);
    e.variant(4, n).u16(3600);
    e.variant(1, n).u8(0x0c);
    e.variant(1, n).u8(0x04);
    // Divider reset and restart, periodic rate.
    e.variant(2, n).u8(0x0a).u8(0x70);
    e.variant(2, n).u8(0x0a).u8(0x26);
    e.variant(2, n).u8(0x0b).u8(0x40);
    e.variant(3, n).u32(10_000_000);
    e.variant(1, n).u8(0x0c);
    // NMI mask bit, a 16-bit access, CMOS RAM.
    e.variant(0, n)
        .bool(true)
        .u8(0)
        .u8(W2)
        .raw(&[0x80 | 0x40, 0x99]);
    e.variant(1, n).u8(0x40);
    e.variant(1, n).u8(0x34);
    out.put("cmos", "set-time", &e.take());
    // Interrupts: 1024 Hz periodic, update-ended, an every-second alarm;
    // the loop services the timer, the handler reads C.
    e.i64(1_709_251_199).u32(500_000_000).u32(64 << 20).u32(0);
    e.variant(1, n).u8(0x0c);
    e.variant(2, n).u8(0x0b).u8(0x02 | 0x40);
    for _ in 0..3 {
        e.variant(5, n);
        e.variant(3, n).u32(976_563);
        e.variant(5, n);
        e.variant(1, n).u8(0x0c);
    }
    for r in [0x01u8, 0x03, 0x05] {
        e.variant(2, n).u8(r).u8(0xc0);
    }
    e.variant(2, n).u8(0x0b).u8(0x02 | 0x20 | 0x10);
    e.variant(5, n);
    e.variant(3, n).u32(500_000_000);
    e.variant(5, n);
    e.variant(2, n).u8(0x0b).u8(0x02);
    e.variant(2, n).u8(0x0b).u8(0x02 | 0x10);
    e.variant(1, n).u8(0x0c);
    e.variant(4, n).u16(2);
    e.variant(5, n);
    out.put("cmos", "interrupts", &e.take());
}

fn acpi_pm_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 6;
    e.u32(0);
    // Read the timer, let it carry (bit 23), read PM1_STS, clear TMR_STS,
    // enable the power button, then S5.
    e.variant(0, n).bool(false).u8(8).u8(W4);
    e.variant(2, n).u16(3);
    e.variant(0, n).bool(false).u8(0).u8(W2);
    e.variant(0, n).bool(true).u8(0).u8(W2).raw(&[0x01, 0x00]);
    e.variant(0, n).bool(true).u8(2).u8(W2).raw(&[0x00, 0x01]);
    e.variant(0, n).bool(false).u8(2).u8(W2);
    e.variant(0, n).bool(false).u8(4).u8(W2);
    e.variant(1, n).u32(12_345);
    e.variant(0, n).bool(false).u8(8).u8(W4);
    e.variant(0, n).bool(true).u8(4).u8(W2).raw(&[0x00, 0x34]);
    e.variant(0, n).bool(false).u8(6).u8(W4);
    out.put("acpi_pm", "timer-then-s5", &e.take());
    // kvm-unit-tests s3.flat: RTC_EN, S3 (0x2400), the RTC alarm wakes;
    // then TMR_EN with the loop servicing the carry, S3 again, an alarm
    // without RTC_EN, the power button.
    e.u32(0);
    e.variant(0, n).bool(true).u8(2).u8(W2).raw(&[0x00, 0x04]);
    e.variant(0, n).bool(true).u8(4).u8(W2).raw(&[0x00, 0x24]);
    e.variant(3, n);
    e.variant(0, n).bool(false).u8(0).u8(W2);
    e.variant(0, n).bool(true).u8(0).u8(W2).raw(&[0x00, 0x84]);
    e.variant(0, n).bool(true).u8(2).u8(W2).raw(&[0x01, 0x00]);
    e.variant(5, n);
    e.variant(2, n).u16(3);
    e.variant(5, n);
    e.variant(0, n).bool(true).u8(4).u8(W2).raw(&[0x00, 0x24]);
    e.variant(3, n);
    e.variant(4, n);
    e.variant(0, n).bool(false).u8(0).u8(W2);
    out.put("acpi_pm", "s3-wake", &e.take());
}

fn bus_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 7;
    // Setup: clock, max_exits = Some(200), uart irqfd, 128 MiB.
    e.i64(1_700_000_000)
        .u32(0)
        .bool(true)
        .u16(200)
        .bool(true)
        .u16(128);
    let pio = |e: &mut Enc, exit: bool, write: bool, dev: u8, off: u8, w: u8| {
        e.variant(0, n).bool(exit).bool(write);
        e.variant(0, 2).u8(dev).u8(off).u8(w);
    };
    // UART output, debugcon, POST, CMOS, i8042 status, ACPI timer, all as
    // vCPU exits; then straddling and unclaimed accesses on the bus.
    pio(&mut e, true, true, 0, 2, W1);
    e.u8(b'A');
    pio(&mut e, true, false, 0, 7, W1);
    pio(&mut e, true, true, 2, 2, W1);
    e.u8(b'B');
    pio(&mut e, true, true, 3, 2, W1);
    e.u8(0x42);
    pio(&mut e, true, true, 6, 2, W2);
    e.raw(&[0x0a, 0]);
    pio(&mut e, true, false, 5, 2, W1);
    pio(&mut e, true, false, 7, 10, W4);
    pio(&mut e, false, false, 0, 8, W4);
    pio(&mut e, false, true, 1, 0, W4);
    e.raw(&[1, 2, 3, 4]);
    pio(&mut e, false, false, 7, 15, W4);
    e.variant(0, n)
        .bool(false)
        .bool(false)
        .variant(1, 2)
        .u16(0xffff)
        .u8(W4);
    // MMIO: the scratch device, its edges, and far away.
    e.variant(1, n)
        .bool(true)
        .bool(true)
        .variant(0, 2)
        .u16(8)
        .u8(W4);
    e.raw(&[0xde, 0xad, 0xbe, 0xef]);
    e.variant(1, n)
        .bool(false)
        .bool(false)
        .variant(0, 2)
        .u16(8)
        .u8(W4);
    e.variant(1, n)
        .bool(false)
        .bool(false)
        .variant(0, 2)
        .u16(6)
        .u8(W4);
    e.variant(1, n)
        .bool(true)
        .bool(false)
        .variant(1, 2)
        .u64(0xfee0_0000)
        .u8(W4);
    e.variant(2, n).u32(0x100).u16(1100);
    for k in 0..12 {
        e.variant(3, n).u8(k);
    }
    e.variant(4, n).vec(b"in");
    e.variant(5, n).vec(&[0x1c]);
    e.variant(6, n).u32(1_000_000);
    // Finally the debug-exit port.
    pio(&mut e, true, true, 1, 2, W1);
    e.u8(3);
    pio(&mut e, true, false, 0, 2, W1);
    out.put("bus_dispatch", "mixed-then-debug-exit", &e.take());
}

/// `vmm_fuzz::virtio::Op` variants and the device feature sets the seeds
/// negotiate.
mod vop {
    pub const N: u64 = 7;
    pub const DESC: u64 = 0;
    pub const AVAIL: u64 = 1;
    pub const NOTIFY: u64 = 2;
    pub const POKE: u64 = 3;
    pub const HOST: u64 = 5;
    pub const RESET: u64 = 6;
    pub const NEXT: u16 = 1;
    pub const WRITE: u16 = 2;
    pub const VERSION_1: u64 = 1 << 32;
}

/// A descriptor in the data area (`Addr::Data`).
fn vdesc(e: &mut Enc, queue: u8, slot: u16, at: u32, len: u32, flags: u16, next: u16) {
    e.variant(vop::DESC, vop::N).u8(queue).u16(slot);
    e.variant(0, 2).u32(at).u32(len).u16(flags).u16(next);
}

fn vavail(e: &mut Enc, queue: u8, head: u16) {
    e.variant(vop::AVAIL, vop::N).u8(queue).u16(head);
}

fn vnotify(e: &mut Enc, queue: u8) {
    e.variant(vop::NOTIFY, vop::N).u8(queue);
}

fn virtio_seeds(out: &Out) {
    // virtio-rng: one buffer, a two-descriptor chain, a descriptor loop, a
    // buffer beyond RAM, a reset, then a request again.
    let mut e = Enc::default();
    e.u64(vop::VERSION_1);
    vdesc(&mut e, 0, 0, 0, 32, vop::WRITE, 0);
    vavail(&mut e, 0, 0);
    vnotify(&mut e, 0);
    vdesc(&mut e, 0, 1, 0x100, 16, vop::NEXT | vop::WRITE, 2);
    vdesc(&mut e, 0, 2, 0x200, 16, vop::WRITE, 0);
    vavail(&mut e, 0, 1);
    vnotify(&mut e, 0);
    vdesc(&mut e, 0, 3, 0x300, 16, vop::NEXT | vop::WRITE, 3);
    vavail(&mut e, 0, 3);
    vnotify(&mut e, 0);
    e.variant(vop::DESC, vop::N).u8(0).u16(4);
    e.variant(1, 2)
        .u64(0x7fff_f000)
        .u32(4096)
        .u16(vop::WRITE)
        .u16(0);
    vavail(&mut e, 0, 4);
    vnotify(&mut e, 0);
    e.variant(vop::RESET, vop::N);
    vdesc(&mut e, 0, 0, 0x400, 64, vop::WRITE, 0);
    vavail(&mut e, 0, 0);
    vnotify(&mut e, 0);
    out.put("virtio_rng", "requests-loop-beyond-ram-reset", &e.take());

    // virtio-console: host input then a receive buffer (delivered by the
    // host-fd event and by the receiveq notify), output on the transmitq,
    // a transmit chain with a writable descriptor, a reset with input
    // still queued.
    const SIZE: u64 = 1;
    let driver = |e: &mut Enc| {
        e.variant(0, 2);
    };
    let input = |e: &mut Enc, len: u16| {
        e.variant(1, 2).u16(len);
    };
    let mut e = Enc::default();
    e.u64(vop::VERSION_1 | SIZE);
    input(&mut e, 20);
    driver(&mut e);
    vdesc(&mut e, 0, 0, 0, 8, vop::WRITE, 0);
    driver(&mut e);
    vavail(&mut e, 0, 0);
    driver(&mut e);
    e.variant(vop::HOST, vop::N);
    driver(&mut e);
    vdesc(&mut e, 0, 1, 0x100, 64, vop::WRITE, 0);
    driver(&mut e);
    vavail(&mut e, 0, 1);
    driver(&mut e);
    vnotify(&mut e, 0);
    driver(&mut e);
    e.variant(vop::POKE, vop::N)
        .u32(0x1000)
        .vec(b"hello, host\n");
    driver(&mut e);
    vdesc(&mut e, 1, 0, 0x1000, 12, 0, 0);
    driver(&mut e);
    vavail(&mut e, 1, 0);
    driver(&mut e);
    vnotify(&mut e, 1);
    driver(&mut e);
    vdesc(&mut e, 1, 1, 0x1000, 4, vop::NEXT, 2);
    driver(&mut e);
    vdesc(&mut e, 1, 2, 0x2000, 4, vop::WRITE, 0);
    driver(&mut e);
    vavail(&mut e, 1, 1);
    driver(&mut e);
    vnotify(&mut e, 1);
    input(&mut e, 300);
    driver(&mut e);
    e.variant(vop::RESET, vop::N);
    driver(&mut e);
    vdesc(&mut e, 0, 0, 0x3000, 512, vop::WRITE, 0);
    driver(&mut e);
    vavail(&mut e, 0, 0);
    driver(&mut e);
    vnotify(&mut e, 0);
    out.put("virtio_console", "input-output-reset", &e.take());
}

/// Long mode: xor eax,eax; out 0xe9,al; inc al; jmp back to the out.
const COUNTING: [u8; 8] = [0x31, 0xc0, 0xe6, 0xe9, 0xfe, 0xc0, 0xeb, 0xfa];

/// A real snapshot file of a counting guest (`pc`: the PC platform, two
/// vCPUs and a virtio-rng device), taken through a VM handle; needs KVM.
fn real_snapshot(pc: bool) -> Result<Vec<u8>, String> {
    use std::time::Duration;
    use vmm_core::config::{BootConfig, DeviceConfig, KernelImage, RawBoot};
    use vmm_core::loader::BootMode;
    use vmm_core::{HostOptions, Platform, SnapshotKind, SnapshotRequest, VmBuilder, VmConfig};
    let config = VmConfig {
        memory_mib: 16,
        vcpus: if pc { 2 } else { 1 },
        platform: if pc { Platform::Pc } else { Platform::Minimal },
        boot: BootConfig {
            kernel: Some(KernelImage::Bytes(COUNTING.to_vec())),
            raw: RawBoot {
                mode: Some(BootMode::Long),
                ..Default::default()
            },
            ..Default::default()
        },
        devices: DeviceConfig {
            rng: pc,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = HostOptions {
        seccomp: false,
        timeout: Some(Duration::from_secs(30)),
        ..HostOptions::default()
    };
    let console = vmm_devices::Console::memory();
    let vm = VmBuilder::from_config(config, host)
        .console(console.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let handle = vm.handle();
    let run = std::thread::spawn(move || vm.run());
    while console.captured().len() < 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = std::env::temp_dir().join(format!("gen-corpus-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let req = SnapshotRequest {
        snapshot_path: dir.join("vm.snap"),
        mem_file_path: dir.join("vm.mem"),
        kind: SnapshotKind::Full,
    };
    let taken = handle
        .pause()
        .and_then(|_| handle.snapshot(req.clone()))
        .map_err(|e| e.to_string());
    handle.stop();
    let _ = run.join();
    taken?;
    let file = std::fs::read(&req.snapshot_path).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    file
}

/// `snapshot_parser`: real snapshot files whole (mode 0) and their bodies
/// for the harness to seal (mode 1).
fn snapshot_seeds(out: &Out) {
    for (name, pc) in [("minimal", false), ("pc-smp-rng", true)] {
        match real_snapshot(pc) {
            Ok(file) => {
                out.put(
                    "snapshot_parser",
                    &format!("file-{name}"),
                    &[&[0u8][..], &file].concat(),
                );
                out.put(
                    "snapshot_parser",
                    &format!("body-{name}"),
                    &[&[1u8][..], &file[32..]].concat(),
                );
            }
            Err(e) => eprintln!("snapshot_parser seeds ({name}) skipped: {e} (needs /dev/kvm)"),
        }
    }
}

/// virtio-net: what a driver does (ARP and ping exchanges, mergeable
/// buffers, offloads, a reset) and what a broken one does.
fn net_seeds(out: &Out) {
    use NetOp::*;
    const MAC: u64 = 1 << 5;
    const MRG: u64 = 1 << 15;
    const STATUS: u64 = 1 << 16;
    const OFFLOADS: u64 = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
    // Address words: buffer n at 0x1_0000 * n.
    let at = |n: u64| (n * 0x1_0000 - net::BUF_BASE) as u32;
    let plain = net::Setup {
        features: MAC | STATUS,
        sizes: [3, 3],
        tap: 0,
    };
    let rx = |addr, len| Chain {
        q: 0,
        n: 1,
        addr,
        len,
    };
    let tx_frame = |n: u64, len: u16, flags, gso| {
        [
            Frame {
                addr: at(n),
                len,
                flags,
                gso,
            },
            Chain {
                q: 1,
                n: 1,
                addr: at(n),
                len: 12 + u32::from(len),
            },
        ]
    };
    let mut arp_ping = vec![rx(at(1), 1526), rx(at(2), 1526)];
    arp_ping.extend(tx_frame(3, 42, 0, 0));
    arp_ping.extend([
        Notify { q: 1 },
        TapFrame {
            flags: 0,
            gso: 0,
            len: 42,
        },
        TapEvent,
    ]);
    arp_ping.extend(tx_frame(4, 74, 0, 0));
    arp_ping.extend([
        Notify { q: 1 },
        TapFrame {
            flags: 2,
            gso: 0,
            len: 74,
        },
        TapEvent,
        Config { off: 0, len: 10 },
    ]);
    out.put("virtio_net", "arp-ping", &net::encode(&plain, &arp_ping));

    let mrg = net::Setup {
        features: MAC | MRG | STATUS,
        sizes: [3, 3],
        tap: 0,
    };
    let mut big = vec![];
    let small = |k: u32| rx(at(1) + k * 0x400, 1024);
    for k in 0..4 {
        big.push(small(k));
    }
    big.extend([
        TapFrame {
            flags: 0,
            gso: 0,
            len: 3000,
        },
        TapEvent,
        // Waits for buffers, then is too large for a whole ring of them.
        TapFrame {
            flags: 0,
            gso: 0,
            len: 9000,
        },
        TapEvent,
    ]);
    for k in 4..11 {
        big.push(small(k));
    }
    big.extend([
        Notify { q: 0 },
        // Longer than any tap frame: truncated, dropped.
        TapFrame {
            flags: 0,
            gso: 0,
            len: 65_600,
        },
        TapFrame {
            flags: 0,
            gso: 0,
            len: 500,
        },
        TapEvent,
    ]);
    out.put("virtio_net", "mergeable", &net::encode(&mrg, &big));

    let offloads = net::Setup {
        features: MAC | MRG | STATUS | OFFLOADS,
        sizes: [4, 4],
        tap: 0,
    };
    let mut gso = vec![rx(at(1), 0x1_0000)];
    gso.extend(tx_frame(2, 3000, 1, 1));
    gso.extend([
        Notify { q: 1 },
        TapFrame {
            flags: 1,
            gso: 1,
            len: 20_000,
        },
        TapEvent,
        Reset {
            features: MAC | STATUS,
        },
        rx(at(3), 1526),
        TapFrame {
            flags: 1,
            gso: 4,
            len: 1000,
        },
        Notify { q: 0 },
    ]);
    out.put(
        "virtio_net",
        "offloads-reset",
        &net::encode(&offloads, &gso),
    );

    let waiting = vec![
        TapFrame {
            flags: 0,
            gso: 0,
            len: 60,
        },
        TapFrame {
            flags: 0,
            gso: 0,
            len: 61,
        },
        TapEvent,
        rx(at(1), 1526),
        Notify { q: 0 },
        rx(at(2), 100),
        TapFrame {
            flags: 0,
            gso: 0,
            len: 200,
        },
        TapEvent,
        // Too large for one chain without mergeable buffers.
        rx(at(3), 100),
        Notify { q: 0 },
    ];
    out.put("virtio_net", "no-buffers", &net::encode(&plain, &waiting));
    // A reset drops the pending frame (and counts it).
    let reset_pending = vec![
        TapFrame {
            flags: 0,
            gso: 0,
            len: 60,
        },
        TapEvent,
        Reset {
            features: MAC | MRG,
        },
        rx(at(1), 1526),
        Notify { q: 0 },
    ];
    out.put(
        "virtio_net",
        "reset-pending",
        &net::encode(&plain, &reset_pending),
    );

    let hostile = vec![
        // A loop, a next beyond the table, a buffer past RAM, a head that
        // is not a descriptor.
        Desc {
            q: 1,
            index: 0,
            addr: at(1),
            len: 100,
            flags: 1,
            next: 1,
        },
        Desc {
            q: 1,
            index: 1,
            addr: at(1),
            len: 100,
            flags: 1,
            next: 0,
        },
        Avail { q: 1, head: 0 },
        Notify { q: 1 },
        Reset {
            features: MAC | MRG,
        },
        Desc {
            q: 0,
            index: 0,
            addr: at(8) - 0x10,
            len: 0x1000,
            flags: 2,
            next: 0,
        },
        Avail { q: 0, head: 0 },
        TapFrame {
            flags: 0,
            gso: 0,
            len: 500,
        },
        TapEvent,
        Reset { features: MAC },
        Avail { q: 0, head: 200 },
        Notify { q: 0 },
        Notify { q: 2 },
        TapFail { bits: 7 },
        TapFrame {
            flags: 0,
            gso: 0,
            len: 60,
        },
        TapEvent,
        Reset { features: 1 << 63 },
        Config { off: 250, len: 15 },
    ];
    out.put("virtio_net", "hostile", &net::encode(&plain, &hostile));
    let bad_sizes = net::Setup {
        features: MAC,
        sizes: [9, 10],
        tap: 1,
    };
    out.put(
        "virtio_net",
        "bad-queue-sizes",
        &net::encode(&bad_sizes, &[rx(at(1), 1526), Notify { q: 0 }, TapEvent]),
    );
}

/// `virtio_vsock` seeds: a "short timeout" flag, then ops; `Op` has 12
/// variants (Tx, TxRaw, Rx, Notify, HostConnect, HostWrite, HostRead,
/// HostShutdown, HostClose, HostEvent, Reset, Wait); `Cid` 3 (Guest, Host, Any), `Port` 4 (Peer, Guest, Local, Any),
/// `Layout` 5 (One, Two, SplitHeader, Writable, Longer), `RxLayout` 5 (One,
/// Two, HeaderOnly, Readable, Outside).
fn vsock_seeds(out: &Out) {
    const OPS: u64 = 12;
    let mut e = Enc::default();
    /// A transmit packet from the guest (Cid::Guest to Cid::Host).
    #[allow(clippy::too_many_arguments)]
    fn tx(
        e: &mut Enc,
        src: (u64, u32),
        dst: (u64, u32),
        op: u8,
        flags: u32,
        buf_alloc: u32,
        fwd: u32,
        payload: &[u8],
        layout: u64,
    ) {
        e.variant(0, OPS);
        e.variant(0, 3).variant(1, 3);
        for (v, x) in [src, dst] {
            e.variant(v, 4);
            if v == 3 {
                e.u32(x);
            } else {
                e.u8(x as u8);
            }
        }
        e.bool(false)
            .bool(false)
            .u8(op)
            .u32(flags)
            .u32(buf_alloc)
            .u32(fwd);
        e.vec(payload);
        e.variant(layout, 5);
    }
    let rx = |e: &mut Enc, n: u8| {
        e.variant(2, OPS).u8(n).variant(0, 5).u16(1024);
    };
    // A guest connection to the peer at <path>_5000: hello, a reply, a
    // half-close, shutdown.
    e.bool(false);
    rx(&mut e, 7);
    tx(&mut e, (3, 40000), (0, 0), 1, 0, 65536, 0, &[], 0);
    tx(
        &mut e,
        (3, 40000),
        (0, 0),
        5,
        0,
        65536,
        0,
        b"hello from guest",
        1,
    );
    e.variant(5, OPS).u8(0).vec(b"hello from host");
    tx(&mut e, (3, 40000), (0, 0), 4, 2, 65536, 15, &[], 0);
    e.variant(6, OPS).u8(0);
    tx(&mut e, (3, 40000), (0, 0), 4, 3, 65536, 15, &[], 0);
    rx(&mut e, 4);
    out.put("virtio_vsock", "guest-connect", &e.take());
    // A host process connects to guest port 1234; the guest accepts with
    // a small buffer; data both ways; credit; the host closes.
    e.bool(false);
    rx(&mut e, 7);
    e.variant(4, OPS).bool(true).variant(1, 4).u8(0).vec(&[]);
    tx(&mut e, (1, 0), (2, 0), 2, 0, 64, 0, &[], 0);
    e.variant(6, OPS).u8(0);
    e.variant(5, OPS).u8(0).vec(&[b'x'; 200]);
    rx(&mut e, 7);
    tx(&mut e, (1, 0), (2, 0), 6, 0, 64, 64, &[], 0);
    tx(&mut e, (1, 0), (2, 0), 7, 0, 64, 128, &[], 0);
    tx(&mut e, (1, 0), (2, 0), 5, 0, 64, 128, b"PONG", 1);
    e.variant(6, OPS).u8(0);
    e.variant(8, OPS).u8(0);
    e.variant(9, OPS);
    rx(&mut e, 4);
    out.put("virtio_vsock", "host-connect", &e.take());
    // Refusals and junk: nobody at port 7, a guest port refusing, a bad
    // handshake, wrong CIDs, SEQPACKET, malformed chains, a reset.
    e.bool(false);
    rx(&mut e, 7);
    tx(&mut e, (3, 40001), (3, 7), 1, 0, 4096, 0, &[], 0);
    e.variant(4, OPS).bool(true).variant(1, 4).u8(1).vec(&[]);
    tx(&mut e, (1, 1), (2, 0), 3, 0, 0, 0, &[], 0);
    e.variant(4, OPS).bool(false).vec(b"HELLO\n");
    e.variant(0, OPS).variant(2, 3).u64(9).variant(1, 3);
    e.variant(3, 4).u32(1).variant(3, 4).u32(2);
    e.bool(false)
        .bool(true)
        .u16(2)
        .u8(1)
        .u32(0)
        .u32(0)
        .u32(0)
        .vec(&[])
        .variant(0, 5);
    tx(&mut e, (3, 40002), (0, 1), 5, 0, 0, 0, b"split", 2);
    tx(&mut e, (3, 40002), (0, 1), 5, 0, 0, 0, b"writable", 3);
    e.variant(1, OPS).vec(&[]).vec(&[0u8; 44]);
    e.variant(2, OPS).u8(3).variant(2, 5);
    e.variant(2, OPS).u8(3).variant(4, 5);
    e.variant(3, OPS).u8(2);
    e.variant(10, OPS);
    rx(&mut e, 4);
    out.put("virtio_vsock", "refusals-and-junk", &e.take());
    // With a 1 ms connect timeout: an unanswered REQUEST and an unfinished
    // line expire; a late RESPONSE.
    e.bool(true);
    rx(&mut e, 7);
    e.variant(4, OPS).bool(true).variant(1, 4).u8(2).vec(&[]);
    e.variant(4, OPS).bool(false).vec(b"CONN");
    e.variant(11, OPS);
    tx(&mut e, (1, 2), (2, 0), 2, 0, 4096, 0, &[], 0);
    rx(&mut e, 4);
    out.put("virtio_vsock", "timeouts", &e.take());
}

/// `fuzz_targets/virtio_block.rs`'s encoding.
mod blk {
    use super::Enc;

    pub const OPS: u64 = 9;
    pub const HEADER: u64 = 0;
    pub const DESC: u64 = 1;
    pub const CHAIN: u64 = 2;
    pub const RANGE: u64 = 3;
    pub const PUBLISH: u64 = 4;
    pub const AVAIL_IDX: u64 = 5;
    pub const NOTIFY: u64 = 6;
    pub const RESET: u64 = 7;
    /// Request types (`ReqType`).
    pub const IN: u64 = 0;
    pub const OUT: u64 = 1;
    pub const FLUSH: u64 = 2;
    pub const GET_ID: u64 = 3;
    pub const DISCARD: u64 = 4;
    pub const WRITE_ZEROES: u64 = 5;
    /// Descriptor flags.
    pub const NEXT: u16 = 1;
    pub const W: u16 = 2;

    /// Where a buffer is (`Addr`).
    #[derive(Clone, Copy)]
    pub enum A {
        Hdr(u8),
        Status(u8),
        Data(u16),
    }

    /// How long it is (`Len`).
    #[derive(Clone, Copy)]
    pub enum L {
        Sectors(u8),
        Small(u8),
    }

    pub fn input(e: &mut Enc, read_only: bool, queue_log2: u8) {
        e.bool(read_only).u64(u64::MAX).u8(queue_log2);
    }

    fn op(e: &mut Enc, v: u64) -> &mut Enc {
        e.u8(1).variant(v, OPS)
    }

    pub fn desc(e: &mut Enc, a: A, l: L, flags: u16, next: u16) {
        match a {
            A::Hdr(i) => e.variant(0, 6).u8(i),
            A::Status(i) => e.variant(1, 6).u8(i),
            A::Data(o) => e.variant(2, 6).u16(o),
        };
        match l {
            L::Sectors(n) => e.variant(0, 3).u8(n),
            L::Small(n) => e.variant(1, 3).u8(n),
        };
        e.u16(flags).u16(next);
    }

    pub fn header(e: &mut Enc, slot: u8, kind: u64, sector: u8) {
        op(e, HEADER).u8(slot).variant(kind, 7).variant(0, 2).u8(sector);
    }

    pub fn one_desc(e: &mut Enc, index: u16, a: A, l: L, flags: u16, next: u16) {
        op(e, DESC).u16(index);
        desc(e, a, l, flags, next);
    }

    pub fn chain(e: &mut Enc, start: u16, descs: &[(A, L, u16)]) {
        op(e, CHAIN).u16(start);
        for &(a, l, f) in descs {
            e.u8(1);
            desc(e, a, l, f, 0);
        }
        e.u8(0);
    }

    pub fn range(e: &mut Enc, at: u16, sector: u8, sectors: u32, flags: u8) {
        op(e, RANGE).u16(at).variant(0, 2).u8(sector).u32(sectors).u8(flags);
    }

    pub fn publish(e: &mut Enc, head: u16) {
        op(e, PUBLISH).u16(head);
    }

    pub fn avail_idx(e: &mut Enc, idx: u16) {
        op(e, AVAIL_IDX).u16(idx);
    }

    pub fn notify(e: &mut Enc, q: u8) {
        op(e, NOTIFY).u8(q);
    }

    pub fn reset(e: &mut Enc) {
        op(e, RESET);
    }

    pub fn end(e: &mut Enc) {
        e.u8(0);
    }
}

fn virtio_block_seeds(out: &Out) {
    use blk::{A, L};
    let mut e = Enc::default();
    // What a Linux driver does: GET_ID, reads, a write, a flush.
    blk::input(&mut e, false, 4);
    blk::header(&mut e, 0, blk::GET_ID, 0);
    blk::header(&mut e, 1, blk::IN, 3);
    blk::header(&mut e, 2, blk::OUT, 5);
    blk::header(&mut e, 3, blk::FLUSH, 0);
    let data_in = (A::Data(0), L::Sectors(8), blk::W);
    blk::chain(&mut e, 0, &[(A::Hdr(0), L::Small(16), 0), (A::Data(0), L::Small(20), blk::W), (A::Status(0), L::Small(1), blk::W)]);
    blk::publish(&mut e, 0);
    blk::chain(&mut e, 3, &[(A::Hdr(1), L::Small(16), 0), data_in, (A::Status(1), L::Small(1), blk::W)]);
    blk::publish(&mut e, 3);
    blk::notify(&mut e, 0);
    blk::chain(&mut e, 6, &[(A::Hdr(2), L::Small(16), 0), (A::Data(0x800), L::Sectors(2), 0), (A::Status(2), L::Small(1), blk::W)]);
    blk::publish(&mut e, 6);
    blk::chain(&mut e, 9, &[(A::Hdr(3), L::Small(16), 0), (A::Status(3), L::Small(1), blk::W)]);
    blk::publish(&mut e, 9);
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "linux-requests", &e.take());

    // Discard and write-zeroes (with unmap), then an unmap discard.
    blk::input(&mut e, false, 3);
    blk::range(&mut e, 0, 8, 4, 0);
    blk::range(&mut e, 1, 20, 2, 0);
    blk::range(&mut e, 2, 30, 8, 1);
    blk::header(&mut e, 0, blk::DISCARD, 0);
    blk::header(&mut e, 1, blk::WRITE_ZEROES, 0);
    blk::chain(&mut e, 0, &[(A::Hdr(0), L::Small(16), 0), (A::Data(0), L::Small(32), 0), (A::Status(0), L::Small(1), blk::W)]);
    blk::publish(&mut e, 0);
    blk::chain(&mut e, 3, &[(A::Hdr(1), L::Small(16), 0), (A::Data(4), L::Small(16), 0), (A::Status(1), L::Small(1), blk::W)]);
    blk::publish(&mut e, 3);
    blk::chain(&mut e, 6, &[(A::Hdr(0), L::Small(16), 0), (A::Data(4), L::Small(16), 0), (A::Status(2), L::Small(1), blk::W)]);
    blk::publish(&mut e, 6);
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "discard-write-zeroes", &e.take());

    // A descriptor loop (NEEDS_RESET), a reset, then a read that works.
    blk::input(&mut e, false, 3);
    blk::header(&mut e, 0, blk::IN, 1);
    blk::one_desc(&mut e, 0, A::Hdr(0), L::Small(16), blk::NEXT, 1);
    blk::one_desc(&mut e, 1, A::Data(0), L::Sectors(1), blk::NEXT | blk::W, 0);
    blk::publish(&mut e, 0);
    blk::notify(&mut e, 0);
    blk::reset(&mut e);
    blk::header(&mut e, 0, blk::IN, 1);
    blk::chain(&mut e, 0, &[(A::Hdr(0), L::Small(16), 0), data_in, (A::Status(0), L::Small(1), blk::W)]);
    blk::publish(&mut e, 0);
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "loop-then-reset", &e.take());

    // A read-only disk: a write (IOERR), a read, the header split in two.
    blk::input(&mut e, true, 2);
    blk::header(&mut e, 0, blk::OUT, 0);
    blk::header(&mut e, 1, blk::IN, 2);
    blk::chain(&mut e, 0, &[(A::Hdr(0), L::Small(16), 0), (A::Data(0), L::Sectors(1), 0), (A::Status(0), L::Small(1), blk::W)]);
    blk::publish(&mut e, 0);
    blk::notify(&mut e, 0);
    blk::chain(&mut e, 0, &[(A::Hdr(1), L::Small(8), 0), (A::Data(0x1000), L::Sectors(1), blk::W), (A::Status(1), L::Small(1), blk::W)]);
    blk::publish(&mut e, 0);
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "read-only", &e.take());

    // Nine 30 KiB reads: more than a turn's budget, so the device re-arms.
    blk::input(&mut e, false, 5);
    blk::header(&mut e, 0, blk::IN, 0);
    for i in 0..9u16 {
        blk::chain(&mut e, 3 * i, &[(A::Hdr(0), L::Small(16), 0), (A::Data(0), L::Sectors(60), blk::W), (A::Status(i as u8), L::Small(1), blk::W)]);
        blk::publish(&mut e, 3 * i);
    }
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "budget-rearm", &e.take());

    // An available index far ahead, and a notify of a queue that is not.
    blk::input(&mut e, false, 4);
    blk::notify(&mut e, 3);
    blk::avail_idx(&mut e, 1000);
    blk::notify(&mut e, 0);
    blk::end(&mut e);
    out.put("virtio_block", "avail-far-ahead", &e.take());
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let out = Out { root };
    load_seeds(&out);
    cli_seeds(&out);
    api_seeds(&out);
    uart_seeds(&out);
    debug_port_seeds(&out);
    i8042_seeds(&out);
    cmos_seeds(&out);
    acpi_pm_seeds(&out);
    bus_seeds(&out);
    virtio_seeds(&out);
    snapshot_seeds(&out);
    net_seeds(&out);
    vsock_seeds(&out);
    virtio_block_seeds(&out);
    println!("seeds written to {}", out.root.display());
}
