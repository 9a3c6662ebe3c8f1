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
    let n = 5;
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
}

fn acpi_pm_seeds(out: &Out) {
    let mut e = Enc::default();
    let n = 3;
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

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let out = Out { root };
    load_seeds(&out);
    cli_seeds(&out);
    uart_seeds(&out);
    debug_port_seeds(&out);
    i8042_seeds(&out);
    cmos_seeds(&out);
    acpi_pm_seeds(&out);
    bus_seeds(&out);
    virtio_seeds(&out);
    snapshot_seeds(&out);
    println!("seeds written to {}", out.root.display());
}
