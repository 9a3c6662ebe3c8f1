//! `vmm-bin`: the command-line front end. It parses arguments, builds a VM
//! with vmm-core, runs it, and turns the outcome into an exit status.

use std::io::Write;

use clap::Parser;
use vmm_core::devices::pc::build_devices;
use vmm_core::devices::Console;
use vmm_core::virtio::build_backends;
use vmm_core::{HostOptions, Vm, VmConfig, VmOutcome, VmmError};

use vmm_bin::cli::{self, Cli, SerialOut};
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
    let config = cli.vm_config();
    let console = match config.devices.serial.open() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm-bin: error: {}", hints::message(&e));
            return exit_status::for_error(&e);
        }
    };
    // The guest owns the terminal while it runs: raw mode (Ctrl-C still
    // stops the VM), restored when `_raw` drops, on panic (hook in main) and
    // on a forced second Ctrl-C (signal handler).
    // stdin feeds the console on stdio: hvc0 when virtio-console is there,
    // else the UART (vmm-core routes it).
    let stdio = config.devices.serial == SerialOut::Stdio
        || config.devices.virtio_console == Some(SerialOut::Stdio);
    let _raw = if stdio {
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
    let mut host = HostOptions {
        started_at: Some(started_at),
        console_input: stdio.then_some(libc::STDIN_FILENO),
        ..cli.host_options()
    };
    if let Some(path) = &cli.metrics_file {
        // Checked now, like --serial file:, not at the first write after
        // the guest has run.
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            eprintln!(
                "vmm-bin: error: cannot write the metrics file {}: {e}",
                path.display()
            );
            return exit_status::BAD_INPUT;
        }
        // Without an interval, only the final report is written.
        let every = cli
            .metrics_interval
            .unwrap_or(std::time::Duration::from_secs(u64::MAX / 4));
        host.metrics = Some((every, metrics_writer(path.clone())));
    }
    let vm = match create_with_devices(&config, host, console) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("vmm-bin: error: {}", hints::message(&e));
            return exit_status::for_error(&e);
        }
    };
    // The vsock socket exists now: a forced exit removes it too (an
    // orderly one drops the device, which removes it).
    if let Some(v) = &config.devices.vsock {
        signals::remove_at_forced_exit(std::slice::from_ref(&v.socket));
    }
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
fn create_with_devices(
    config: &VmConfig,
    host: HostOptions,
    console: Console,
) -> Result<Vm, VmmError> {
    // Host resources first: an unusable disk or socket is bad input.
    let backends = build_backends(&config.devices)?;
    let mut vm = Vm::create(config, host)?;
    let devices = build_devices(vm.device_options(console), &mut vm.interrupt_lines())?;
    vm.attach_devices(devices);
    for backend in backends.devices {
        vm.attach_virtio(backend)?;
    }
    if let Some(link) = backends.console_input {
        vm.connect_console_input(link);
    }
    Ok(vm)
}

fn main() {
    let started_at = std::time::Instant::now();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("vmm-bin: error: {}", cli::one_line_error(&e));
            std::process::exit(exit_status::BAD_INPUT);
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
