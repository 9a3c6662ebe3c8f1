//! The command line: `Cli::try_parse_from` on argument vectors, and each
//! value parser on every argument. Byte 0 chooses how the rest becomes
//! arguments: odd, split at NUL bytes (any bytes, not only UTF-8, as a Unix
//! argv can hold); even, a sequence of tokens that are mostly the real flag
//! names and typical values, so clap's paths past "unknown argument" are
//! reached. Must never panic; parsers that accept a value must agree with
//! themselves (round trips).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use arbitrary::{Arbitrary, Unstructured};
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vmm_bin::cli::{self, Cli, SerialOut};
use vmm_core::loader::Entry;

const FLAGS: &[&str] = &[
    "--kernel",
    "--format",
    "--cmdline",
    "--initrd",
    "--module",
    "--bzimage-entry",
    "--memory",
    "--cpus",
    "--platform",
    "--pv-hypercalls",
    "--mode",
    "--load-addr",
    "--entry",
    "--reg",
    "--serial",
    "--trace-io",
    "--max-exits",
    "--timeout",
    "--stats",
    "--metrics-file",
    "--metrics-interval",
    "--post-codes",
    "--thp",
    "--no-seccomp",
    "--kvm-device",
    "--api-sock",
    "--config-file",
    "--no-api",
    "--id",
    "--restore",
    "--restore-mem",
    "--resume",
    "--track-dirty-pages",
    "--on-reset",
    "--gdb",
    "-v",
    "-vvv",
    "--verbose",
    "--help",
    "-h",
    "--version",
    "--",
    "-",
];

const VALUES: &[&str] = &[
    "guest.bin",
    "raw",
    "elf",
    "multiboot",
    "linux",
    "pvh",
    "0x1000",
    "128",
    "0",
    "18446744073709551615",
    "0x10000000000000000",
    "real",
    "protected",
    "long",
    "rax=1",
    "RIP=0x7c00",
    "0x7c0:0x10",
    "0x10000:0",
    "stdio",
    "none",
    "file:/tmp/out",
    "file:",
    "1.5",
    "1e9",
    "nan",
    "auto",
    "pc",
    "minimal",
    "initrd.img,root=/dev/ram0",
    ",x",
    "console=ttyS0 earlyprintk=serial",
    "/tmp/firecracker.socket",
    "vm_config.json",
    "anonymous-instance",
    "exit",
    "reboot",
];

#[derive(Debug, Arbitrary)]
enum Tok {
    Flag(u8),
    Value(u8),
    FlagEq(u8, String),
    FlagValue(u8, u8),
    Free(String),
    Bytes(Vec<u8>),
}

fn pick<'a>(table: &[&'a str], i: u8) -> &'a str {
    table[usize::from(i) % table.len()]
}

fn args_from_tokens(u: &mut Unstructured<'_>) -> Vec<OsString> {
    let mut args = Vec::new();
    while !u.is_empty() && args.len() < 64 {
        let Ok(tok) = Tok::arbitrary(u) else { break };
        match tok {
            Tok::Flag(i) => args.push(pick(FLAGS, i).into()),
            Tok::Value(i) => args.push(pick(VALUES, i).into()),
            Tok::FlagEq(i, v) => args.push(format!("{}={v}", pick(FLAGS, i)).into()),
            Tok::FlagValue(i, j) => {
                args.push(pick(FLAGS, i).into());
                args.push(pick(VALUES, j).into());
            }
            Tok::Free(s) => args.push(s.into()),
            Tok::Bytes(b) => args.push(OsString::from_vec(b)),
        }
    }
    args
}

/// Every value parser on `s`, with what each promises when it accepts.
fn check_parsers(s: &str) {
    if let Ok(v) = cli::parse_u64(s) {
        assert_eq!(cli::parse_u64(&v.to_string()), Ok(v));
        assert_eq!(cli::parse_u64(&format!("{v:#x}")), Ok(v));
    }
    match cli::parse_entry(s) {
        Ok(Entry::Segmented { segment, offset }) => {
            assert!(s.contains(':'), "{s:?}");
            assert_eq!(
                cli::parse_entry(&format!("{segment:#x}:{offset}")),
                Ok(Entry::Segmented { segment, offset })
            );
        }
        Ok(Entry::Linear(a)) => {
            assert!(!s.contains(':'), "{s:?}");
            assert_eq!(cli::parse_u64(s), Ok(a.0));
        }
        Err(e) => assert!(!e.is_empty()),
    }
    if let Ok((reg, v)) = cli::parse_reg(s) {
        assert_eq!(
            cli::parse_reg(&format!("{}={v:#x}", reg.name())),
            Ok((reg, v))
        );
    }
    if let Ok((path, string)) = cli::parse_module(s) {
        assert!(!path.as_os_str().is_empty(), "{s:?}");
        let back = match &string {
            Some(st) => format!("{},{st}", path.display()),
            None => path.display().to_string(),
        };
        assert_eq!(back, s);
    }
    match cli::parse_serial(s) {
        Ok(SerialOut::File(p)) => assert_eq!(format!("file:{}", p.display()), s),
        Ok(SerialOut::Stdio) => assert_eq!(s, "stdio"),
        Ok(SerialOut::None) => assert_eq!(s, "none"),
        Err(_) => {}
    }
    if let Ok(d) = cli::parse_secs(s) {
        assert!(!d.is_zero(), "{s:?} gave zero");
    }
    if let Ok(f) = cli::parse_format(s) {
        assert_eq!(f.name(), s);
    }
    if let Ok(id) = cli::parse_id(s) {
        assert_eq!(id, s);
        assert!(s.len() <= 64 && !s.is_empty(), "{s:?}");
    }
    if cli::parse_platform(s).is_ok() {
        assert!(matches!(s, "auto" | "minimal" | "pc"), "{s:?}");
    }
    if cli::parse_on_reset(s).is_ok() {
        assert!(matches!(s, "exit" | "reboot"), "{s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let args = if mode & 1 == 1 {
        rest.split(|&b| b == 0)
            .take(64)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    } else {
        args_from_tokens(&mut Unstructured::new(rest))
    };
    vmm_fuzz::trace(&args);
    for a in &args {
        if let Some(s) = a.to_str() {
            check_parsers(s);
            if let Some((_, v)) = s.split_once('=') {
                check_parsers(v);
            }
        }
    }
    if let Some(v) = rest.first_chunk::<4>() {
        let status = vmm_bin::exit_status::debug_exit_status(u32::from_le_bytes(*v));
        assert!((1..=255).contains(&status) && status % 2 == 1, "{status}");
    }
    let argv = std::iter::once(OsString::from("vmm-bin")).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(parsed) => {
            // `--kernel` is required unless an API socket or a config file
            // describes the VM, or `--restore` (with `--restore-mem`) builds
            // it: a successful parse saw one of them.
            // (Compared as bytes: clap finds flags in non-UTF-8 arguments.)
            let saw = |flag: &[u8]| args.iter().any(|a| a.as_encoded_bytes().starts_with(flag));
            assert!(
                saw(b"--kernel")
                    || saw(b"--api-sock")
                    || saw(b"--config-file")
                    || (saw(b"--restore") && parsed.restore_mem.is_some()),
                "parsed without --kernel, --api-sock, --config-file or --restore: {parsed:?}"
            );
            assert!(
                parsed.kernel.is_none() || parsed.restore.is_none(),
                "--kernel and --restore together: {parsed:?}"
            );
            assert!(
                parsed.kernel.is_some()
                    || parsed.api_sock.is_some()
                    || parsed.config_file.is_some()
                    || parsed.restore.is_some()
            );
            let _ = format!("{parsed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
