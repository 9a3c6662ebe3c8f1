//! docs/TUTORIAL.md is checked: every ```console block whose first line is
//! `$ vmm-bin ARGS` is run (from the workspace root, stdout and stderr into
//! one pipe as a terminal shows them) and its output compared with the
//! block, after normalising the values the page says vary (host addresses,
//! the CPUID entry count, the kvm_run mapping size). A last line
//! `[exit status N]` gives the status expected (else 0). The page's Rust
//! code is the `tutorial:` regions of this file, compared byte for byte and
//! run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{require_kvm, target_dir, vmm_command, workspace_root};

fn tutorial() -> String {
    std::fs::read_to_string(workspace_root().join("docs/TUTORIAL.md")).expect("docs/TUTORIAL.md")
}

/// A checked block: the command's arguments, the output shown, the status.
struct Block {
    line: usize,
    args: Vec<String>,
    expected: String,
    status: i32,
}

fn checked_blocks(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = page.lines().enumerate();
    while let Some((n, l)) = lines.next() {
        if l.trim() != "```console" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        let Some(cmd) = body.first().and_then(|c| c.strip_prefix("$ vmm-bin ")) else {
            continue;
        };
        let mut out = &body[1..];
        let mut status = 0;
        if let Some(s) = out
            .last()
            .and_then(|l| l.strip_prefix("[exit status "))
            .and_then(|l| l.strip_suffix(']'))
        {
            status = s.parse().expect("a number in [exit status N]");
            out = &out[..out.len() - 1];
        }
        blocks.push(Block {
            line: n + 1,
            args: cmd.split_whitespace().map(str::to_string).collect(),
            expected: out.iter().map(|l| format!("{l}\n")).collect(),
            status,
        });
    }
    blocks
}

/// Replaces the token after each `marker` with `X` (the values that differ
/// between hosts and runs).
fn normalise(text: &str) -> String {
    let mut s = text.to_string();
    for marker in [
        "host address ",
        "KVM_SET_CPUID2: ",
        "KVM_GET_VCPU_MMAP_SIZE = ",
    ] {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find(marker) {
            let (head, tail) = rest.split_at(i + marker.len());
            out.push_str(head);
            let end = tail
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(tail.len());
            out.push('X');
            rest = &tail[end..];
        }
        out.push_str(rest);
        s = out;
    }
    s
}

/// Runs vmm-bin as a shell would with `2>&1`: both streams share one file.
fn run_merged(args: &[String]) -> (i32, String) {
    let dir = target_dir().join("test-tutorial");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "out-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::File::create(&path).unwrap();
    let mut child = vmm_command()
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("vmm-bin starts");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("vmm-bin {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    (status.code().unwrap_or(-1), out)
}

#[test]
fn test_tutorial_commands_print_what_the_page_shows() {
    require_kvm();
    let blocks = checked_blocks(&tutorial());
    assert!(blocks.len() >= 5, "only {} checked blocks", blocks.len());
    for b in &blocks {
        let (status, out) = run_merged(&b.args);
        assert_eq!(
            normalise(&out),
            normalise(&b.expected),
            "docs/TUTORIAL.md line {}: `vmm-bin {}` printed:\n{out}",
            b.line,
            b.args.join(" ")
        );
        assert_eq!(status, b.status, "docs/TUTORIAL.md line {}", b.line);
    }
}

#[test]
fn test_normalise_hides_only_the_varying_values() {
    assert_eq!(
        normalise("slot 0, host address 0x7f54cb800000\nKVM_SET_CPUID2: 76 entries"),
        "slot 0, host address X\nKVM_SET_CPUID2: X entries"
    );
    assert_ne!(normalise("data 0x34"), normalise("data 0x35"));
}

/// The Rust code between `// tutorial:NAME begin` and `// tutorial:NAME end`
/// in this file.
fn region(name: &str) -> String {
    let src = include_str!("tutorial.rs");
    let begin = format!("// tutorial:{name} begin\n");
    let end = format!("// tutorial:{name} end\n");
    let from = src.find(&begin).expect("region begins") + begin.len();
    let to = src[from..].find(&end).expect("region ends") + from;
    src[from..to].to_string()
}

#[test]
fn test_tutorial_rust_code_is_the_tested_code() {
    let page = tutorial();
    let code = region("port-device");
    let shown = format!("```rust\n{code}```\n");
    assert!(
        page.contains(&shown),
        "docs/TUTORIAL.md must show the port-device code exactly as tests/tutorial.rs has it:\n{code}"
    );
}

#[test]
fn test_tutorial_port_device_sees_the_counter() {
    require_kvm();
    // The page's code uses paths from the workspace root; run() confines
    // the calling thread with seccomp, so it gets a thread of its own.
    std::env::set_current_dir(workspace_root()).unwrap();
    let seen = std::thread::spawn(run_counter_with_a_port_device)
        .join()
        .expect("no panic")
        .expect("the VM runs");
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

// tutorial:port-device begin
use std::sync::{Arc, Mutex};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vmm_core::loader::Entry;
use vmm_core::{VmBuilder, VmOutcome, VmmError};

/// A port device that keeps every value the guest writes to it.
#[derive(Default)]
struct CounterPort {
    seen: Mutex<Vec<u16>>,
}

impl DevicePio for CounterPort {
    fn pio_read(&self, _base: PioAddress, _offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0); // the guest reads 0 from this port
    }

    fn pio_write(&self, _base: PioAddress, _offset: PioAddressOffset, data: &[u8]) {
        // `out %ax, $0x10` writes 2 bytes, little-endian. The guest picks
        // the size: take what came, never index past it.
        let mut value = [0u8; 2];
        let n = data.len().min(2);
        value[..n].copy_from_slice(&data[..n]);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push(u16::from_le_bytes(value));
    }
}

/// Runs the counter guest with a `CounterPort` at port 0x10, for 5 exits.
fn run_counter_with_a_port_device() -> Result<Vec<u16>, VmmError> {
    let port = Arc::new(CounterPort::default());
    let report = VmBuilder::new()
        .kernel_path("integration-tests/guests/counter.bin")
        .load_addr(0x10000)
        .entry(Entry::Segmented {
            segment: 0x1000,
            offset: 0,
        })
        .pio_device("counter-port", 0x10, 1, port.clone())
        .max_exits(5)
        .build()?
        .run()?;
    assert_eq!(report.outcome, VmOutcome::MaxExits { limit: 5 });
    let seen = port.seen.lock().unwrap_or_else(|e| e.into_inner());
    Ok(seen.clone())
}
// tutorial:port-device end
