//! Snapshot figures (run by `scripts/bench-snapshot.sh`, release build):
//! pause and resume latency through the library, snapshot create time and
//! file sizes, and restore latency from process start to the guest's next
//! instruction, for each guest RAM size given.
//!
//! `bench_snapshot VMM_BIN MIB...`. For each size, two guests: `idle`
//! (a counting guest that touches two pages, so the memory file is nearly
//! all holes) and `dirty` (every page of RAM written with non-zero bytes
//! before the guest starts, so a full snapshot writes all of it). The
//! restore runs `VMM_BIN --restore ... --resume --max-exits 1 -v` and reads
//! the VMM's own "guest entered N ms after the VMM started" line; the
//! process's wall time is given beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_core::devices::Console;
use vmm_core::loader::BootMode;
use vmm_core::{SnapshotKind, SnapshotRequest, VmBuilder};

/// xor eax,eax; out 0xe9,al; inc al; jmp back to the out.
const COUNTING: [u8; 8] = [0x31, 0xc0, 0xe6, 0xe9, 0xfe, 0xc0, 0xeb, 0xfa];
/// Pause/resume pairs per VM.
const PAUSES: usize = 20;
/// Restores per snapshot.
const RESTORES: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// Apparent and allocated (disk blocks) size of `path`.
fn sizes(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("snapshot file");
    (m.len(), m.blocks() * 512)
}

/// Waits until the console has more than `len` bytes.
fn wait_output(console: &Console, len: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while console.captured().len() <= len {
        assert!(Instant::now() < until, "the guest wrote nothing");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn restore_once(vmm: &Path, snap: &Path, mem: &Path) -> (Duration, Duration) {
    let t0 = Instant::now();
    let out = Command::new(vmm)
        .args(["--restore"])
        .arg(snap)
        .arg("--restore-mem")
        .arg(mem)
        .args(["--resume", "--max-exits", "1", "-v", "--serial", "none"])
        .output()
        .expect("vmm-bin runs");
    let wall = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let entered = stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("guest entered ").nth(1)?;
            rest.split(' ').next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no 'guest entered' line; status {}: {stderr}", out.status));
    (Duration::from_secs_f64(entered / 1e3), wall)
}

fn bench(vmm: &Path, dir: &Path, mib_size: u64, dirty: bool) {
    let console = Console::memory();
    let vm = VmBuilder::new()
        .memory_mib(mib_size)
        .mode(BootMode::Long)
        .kernel_bytes(COUNTING.to_vec())
        .console(console.clone())
        .timeout(Duration::from_secs(600))
        .seccomp(true)
        .build()
        .expect("VM");
    if dirty {
        // Every page, except the image's, non-zero.
        let chunk = vec![0x5au8; 1 << 20];
        for r in vm.memory().iter() {
            let mut at = r.start_addr().0.max(0x10_0000);
            let end = r.start_addr().0 + r.len();
            while at < end {
                let n = (end - at).min(chunk.len() as u64) as usize;
                vm.memory()
                    .write_slice(&chunk[..n], GuestAddress(at))
                    .expect("fill RAM");
                at += n as u64;
            }
        }
    }
    let handle = vm.handle();
    let run = std::thread::spawn(move || vm.run());
    wait_output(&console, 100);
    let (mut pauses, mut resumes) = (Vec::new(), Vec::new());
    for _ in 0..PAUSES {
        let t = Instant::now();
        handle.pause().expect("pause");
        pauses.push(t.elapsed());
        let t = Instant::now();
        handle.resume().expect("resume");
        resumes.push(t.elapsed());
        wait_output(&console, console.captured().len());
    }
    handle.pause().expect("pause");
    let req = SnapshotRequest {
        snapshot_path: dir.join("vm.snap"),
        mem_file_path: dir.join("vm.mem"),
        kind: SnapshotKind::Full,
    };
    let info = handle.snapshot(req.clone()).expect("snapshot");
    handle.stop();
    run.join().expect("VM thread").expect("run");
    let (mem_len, mem_disk) = sizes(&req.mem_file_path);
    let (restored, walls): (Vec<Duration>, Vec<Duration>) = (0..RESTORES)
        .map(|_| restore_once(vmm, &req.snapshot_path, &req.mem_file_path))
        .unzip();
    println!(
        "{mib_size:>6} {:<5} {:>9} {:>9} {:>10} {:>9} {:>10} {:>10} {:>11} {:>9}",
        if dirty { "dirty" } else { "idle" },
        ms(median(pauses)),
        ms(median(resumes)),
        ms(info.elapsed),
        info.snapshot_bytes,
        mib(mem_len),
        mib(mem_disk),
        ms(median(restored)),
        ms(median(walls)),
    );
    let _ = std::fs::remove_file(&req.mem_file_path);
    let _ = std::fs::remove_file(&req.snapshot_path);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let vmm = PathBuf::from(args.next().expect("usage: bench_snapshot VMM_BIN MIB..."));
    let sizes: Vec<u64> = args.map(|a| a.parse().expect("a size in MiB")).collect();
    let dir = std::env::temp_dir().join(format!("bench-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    println!(
        "{:>6} {:<5} {:>9} {:>9} {:>10} {:>9} {:>10} {:>10} {:>11} {:>9}",
        "MiB",
        "guest",
        "pause_ms",
        "resume_ms",
        "create_ms",
        "state_B",
        "memfile_MiB",
        "on_disk_MiB",
        "restore_ms",
        "wall_ms"
    );
    for &size in &sizes {
        for dirty in [false, true] {
            bench(&vmm, &dir, size, dirty);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "pause/resume: median of {PAUSES}, handle call to published state; create: full \
         snapshot, VM paused; restore: median of {RESTORES} processes, from the VMM's first \
         instruction to its vCPUs entering the guest; wall: whole vmm-bin process"
    );
}
