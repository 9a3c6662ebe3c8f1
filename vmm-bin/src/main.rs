//! `vmm-bin`: the command-line front end. It parses arguments, builds a VM
//! with vmm-core, runs it, and turns the outcome into an exit status.

use std::fs::File;
use std::io::Write;

use clap::Parser;
use vmm_core::devices::console::LineBuffered;
use vmm_core::devices::pc::build_devices;
use vmm_core::devices::Console;
use vmm_core::{Vm, VmBuilder, VmOutcome, VmmError};

use vmm_bin::cli::{Cli, SerialOut};
use vmm_bin::signals::{self, signal_name};
use vmm_bin::terminal::{restore_terminal, RawTerminal};
use vmm_bin::{exit_status, hints};

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_target(false)
        .init();
}

fn console_for(serial: &SerialOut) -> Result<Console, String> {
    Ok(match serial {
        SerialOut::Stdio => Console::writer(Box::new(std::io::stdout())),
        SerialOut::None => Console::discard(),
        SerialOut::File(path) => {
            let f = File::create(path)
                .map_err(|e| format!("cannot create serial output file {}: {e}", path.display()))?;
            Console::writer(Box::new(LineBuffered::new(f)))
        }
    })
}

/// Writes each report to `path` atomically (temp file + rename), so a reader
/// never sees half a JSON document.
fn metrics_writer(path: std::path::PathBuf) -> vmm_core::MetricsSink {
    Box::new(move |stats| {
        let tmp = path.with_extension("tmp");
        let result =
            std::fs::write(&tmp, stats.to_json() + "\n").and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            log::warn!("writing metrics to {}: {e}", path.display());
        }
    })
}

fn run(cli: Cli, started_at: std::time::Instant) -> i32 {
    if let Err(e) = signals::install_stop_signal_handlers() {
        eprintln!("vmm-bin: error: {e}");
        return exit_status::VMM_FAILURE;
    }
    let console = match console_for(&cli.serial) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm-bin: error: {e}");
            return exit_status::BAD_INPUT;
        }
    };
    // The guest owns the terminal while it runs: raw mode (Ctrl-C still
    // stops the VM), restored when `_raw` drops, on panic (hook in main) and
    // on a forced second Ctrl-C (signal handler).
    let _raw = if cli.serial == SerialOut::Stdio {
        match RawTerminal::enable() {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("vmm-bin: error: {e}");
                return exit_status::VMM_FAILURE;
            }
        }
    } else {
        None
    };
    let mut builder = VmBuilder::new()
        .memory_mib(cli.memory)
        .kernel_path(&cli.kernel)
        .bzimage_own_entry(cli.bzimage_entry)
        .started_at(started_at)
        .trace_io(cli.trace_io)
        .print_post_codes(cli.post_codes)
        .thp(cli.thp)
        .kernel_cache(cli.kernel_cache_dir())
        .kvm_path(&cli.kvm_device)
        .cpus(cli.cpus)
        .platform(cli.platform)
        .hypercall_pv_features(cli.pv_hypercalls)
        .seccomp(!cli.no_seccomp);
    if cli.serial == SerialOut::Stdio {
        builder = builder.console_input(libc::STDIN_FILENO);
    }
    if let Some(f) = cli.format {
        builder = builder.format(f);
    }
    if let Some(c) = &cli.cmdline {
        builder = builder.cmdline(c.clone());
    }
    if let Some(p) = &cli.initrd {
        builder = builder.initrd_path(p);
    }
    for (p, string) in &cli.modules {
        builder = builder.module(p, string.clone());
    }
    if let Some(m) = cli.mode {
        builder = builder.mode(m.into());
    }
    if let Some(a) = cli.load_addr {
        builder = builder.load_addr(a);
    }
    if let Some(e) = cli.entry {
        builder = builder.entry(e);
    }
    for (reg, value) in &cli.regs {
        builder = builder.reg(*reg, *value);
    }
    if let Some(n) = cli.max_exits {
        builder = builder.max_exits(n);
    }
    if let Some(t) = cli.timeout {
        builder = builder.timeout(t);
    }
    if let Some(path) = &cli.metrics_file {
        // Without an interval, only the final report is written.
        let every = cli
            .metrics_interval
            .unwrap_or(std::time::Duration::from_secs(u64::MAX / 4));
        builder = builder.metrics_sink(every, metrics_writer(path.clone()));
    }
    let vm = match create_with_devices(builder, console) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("vmm-bin: error: {}", hints::message(&e));
            return exit_status::for_error(&e);
        }
    };
    if let Some(signal) = signals::stop_on_signal(vm.handle()) {
        eprintln!(
            "vmm-bin: stopped by {} ({signal}) during start-up",
            signal_name(signal)
        );
        return 128 + signal;
    }
    let report = match vm.run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmm-bin: error: {}", hints::message(&e));
            return exit_status::for_error(&e);
        }
    };
    let signal = signals::stop_signal();
    match &report.outcome {
        VmOutcome::Halted { .. } | VmOutcome::DebugExit { .. } | VmOutcome::PowerOff => {
            log::info!("{}", report.outcome)
        }
        VmOutcome::Stopped => match signal {
            Some(s) => eprintln!("vmm-bin: stopped by {} ({s})", signal_name(s)),
            None => eprintln!("vmm-bin: {}", report.outcome),
        },
        other => eprintln!("vmm-bin: {other}"),
    }
    if cli.stats {
        // One write: stderr is unbuffered, and a report with 65536 port rows
        // printed piece by piece costs millions of system calls.
        let _ = std::io::stderr().write_all(format!("{}\n", report.stats).as_bytes());
    }
    exit_status::for_outcome(&report.outcome, signal)
}

/// The VM, with the platform's device set (`vmm_devices::pc`) on its exit
/// dispatcher's bus.
fn create_with_devices(builder: VmBuilder, console: Console) -> Result<Vm, VmmError> {
    let mut vm = builder.create()?;
    let devices = build_devices(vm.device_options(console), &mut vm.interrupt_lines())?;
    vm.attach_devices(devices);
    Ok(vm)
}

fn main() {
    let started_at = std::time::Instant::now();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit_status::BAD_INPUT
            } else {
                0
            });
        }
    };
    init_logging(cli.verbose);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        default_hook(info);
    }));
    let status = run(cli, started_at);
    std::process::exit(status);
}
