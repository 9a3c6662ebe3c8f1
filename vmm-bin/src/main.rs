//! `vmm-bin`: the command-line front end. It parses arguments, builds a VM
//! with vmm-core, runs it, and turns the outcome into an exit status.
//!
//! With `--api-sock` or `--config-file` the VM is described the way
//! Firecracker describes it (see `vmm_bin::api`): a config file starts it
//! at once; an API socket without one waits for `InstanceStart`, taking
//! configuration calls on this thread meanwhile. Either way the VM is
//! built and run on this (the main) thread, and the API thread serves
//! runtime calls through the VM's handle.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use clap::Parser;
use vmm_core::devices::pc::build_devices;
use vmm_core::devices::Console;
use vmm_core::gdb::GdbServer;
use vmm_core::virtio::build_backends;
use vmm_core::{HostOptions, Vm, VmConfig, VmOutcome, VmmError};

use vmm_bin::api::controller::{self, Controller, MainReply, Preboot, StartedVm, ToMain};
use vmm_bin::api::http::Response;
use vmm_bin::api::prepare::{open_append, Prepared, PreparedVm};
use vmm_bin::api::server::{ApiSocket, SocketFile};
use vmm_bin::cli::{self, Cli, SerialOut};
use vmm_bin::signals::{self, signal_name};
use vmm_bin::terminal::{restore_terminal, RawTerminal};
use vmm_bin::{config_file, exit_status, hints, logger};

/// How often the main thread, waiting for `InstanceStart`, looks for a
/// stop signal.
const SIGNAL_POLL: Duration = Duration::from_millis(50);
/// Firecracker's metrics period, for metrics set through the API or file.
const API_METRICS_PERIOD: Duration = Duration::from_secs(60);

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

/// Appends each report as one JSON line to `file`, as Firecracker writes
/// its metrics to `metrics_path` (a file or a named pipe).
fn metrics_appender(mut file: std::fs::File, path: PathBuf) -> vmm_core::MetricsSink {
    Box::new(move |stats| {
        if let Err(e) = file.write_all((stats.to_json() + "\n").as_bytes()) {
            log::warn!("writing metrics to {}: {e}", path.display());
        }
    })
}

/// A failed start: the message to print (or to answer `InstanceStart`
/// with) and the exit status it means.
struct LaunchError {
    message: String,
    status: i32,
}

impl LaunchError {
    fn vmm(e: &VmmError) -> Self {
        LaunchError {
            message: hints::message(e),
            status: exit_status::for_error(e),
        }
    }
}

/// A built VM, ready to run, and the terminal mode it runs under.
struct Launched {
    vm: Vm,
    _raw: Option<RawTerminal>,
    /// Where `--exit-plot` draws the run, created before the guest started.
    plot: Option<BufWriter<File>>,
}

/// Builds the VM `config` describes; `prepared` adds what the API or the
/// config file asked of the host (huge pages, the metrics file). A GDB
/// socket in `gdb` is attached to it (and taken).
fn launch(
    cli: &Cli,
    config: &VmConfig,
    prepared: Option<&PreparedVm>,
    started_at: Instant,
    gdb: &mut Option<GdbServer>,
) -> Result<Launched, LaunchError> {
    // The picture's file is created before anything runs: a path that
    // cannot be written is bad input, found before the guest starts.
    let plot = match &cli.exit_plot {
        Some(path) => Some(
            File::create(path)
                .map(BufWriter::new)
                .map_err(|e| LaunchError {
                    message: format!("cannot create the exit plot {}: {e}", path.display()),
                    status: exit_status::BAD_INPUT,
                })?,
        ),
        None => None,
    };
    let console = config
        .devices
        .serial
        .open()
        .map_err(|e| LaunchError::vmm(&e))?;
    // The guest owns the terminal while it runs: raw mode (Ctrl-C still
    // stops the VM), restored when `_raw` drops, on panic (hook in main) and
    // on a forced second Ctrl-C (signal handler).
    // stdin feeds the console on stdio: hvc0 when virtio-console is there,
    // else the UART (vmm-core routes it).
    let stdio = config.devices.serial == SerialOut::Stdio
        || config.devices.virtio_console == Some(SerialOut::Stdio);
    let raw = if stdio {
        RawTerminal::enable().map_err(|e| LaunchError {
            message: e.to_string(),
            status: exit_status::VMM_FAILURE,
        })?
    } else {
        None
    };
    let mut host = HostOptions {
        started_at: Some(started_at),
        console_input: stdio.then_some(libc::STDIN_FILENO),
        ..cli.host_options()
    };
    if cli.explain {
        // One write per line: lines from vCPU threads never interleave.
        host.explain = Some(std::sync::Arc::new(|line: &str| {
            let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
        }));
    }
    let api_metrics = prepared.and_then(|p| p.metrics.clone());
    if let Some(path) = api_metrics {
        let file = open_append(&path).map_err(|e| LaunchError {
            message: format!("Metrics error: cannot open {}: {e}", path.display()),
            status: exit_status::BAD_INPUT,
        })?;
        let every = cli.metrics_interval.unwrap_or(API_METRICS_PERIOD);
        host.metrics = Some((every, metrics_appender(file, path)));
    } else if let Some(path) = &cli.metrics_file {
        // Checked now, like --serial file:, not at the first write after
        // the guest has run.
        if let Err(e) = open_append(path) {
            return Err(LaunchError {
                message: format!("cannot write the metrics file {}: {e}", path.display()),
                status: exit_status::BAD_INPUT,
            });
        }
        // Without an interval, only the final report is written.
        let every = cli
            .metrics_interval
            .unwrap_or(std::time::Duration::from_secs(u64::MAX / 4));
        host.metrics = Some((every, metrics_writer(path.clone())));
    }
    if prepared.is_some_and(|p| p.thp) {
        host.thp = true;
    }
    let mut vm = match &cli.restore {
        Some(snapshot) => restore_vm(cli, snapshot, host, console),
        None => create_with_devices(config, host, console),
    }
    .map_err(|e| LaunchError::vmm(&e))?;
    if let Some(server) = gdb.take() {
        vm.attach_gdb(server).map_err(|e| LaunchError::vmm(&e))?;
    }
    Ok(Launched {
        vm,
        _raw: raw,
        plot,
    })
}

/// Runs a launched VM to its end; the process's exit status.
fn finish(cli: &Cli, launched: Launched) -> i32 {
    let Launched { vm, _raw, mut plot } = launched;
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
    if let (Some(out), Some(timeline)) = (plot.as_mut(), &report.timeline) {
        if let Err(e) = vmm_bin::plot::write(timeline, out) {
            eprintln!("vmm-bin: error: {e}");
            return exit_status::VMM_FAILURE;
        }
    }
    if cli.stats {
        // One write: stderr is unbuffered, and a report with 65536 port rows
        // printed piece by piece costs millions of system calls.
        let _ = std::io::stderr().write_all(format!("{}\n", report.stats).as_bytes());
    }
    exit_status::for_outcome(&report.outcome, signal)
}

fn run(cli: Cli, started_at: Instant) -> i32 {
    if let Err(e) = signals::install_stop_signal_handlers() {
        eprintln!("vmm-bin: error: {e}");
        return exit_status::VMM_FAILURE;
    }
    // The GDB socket first, before any thread exists (bind sets the
    // umask): a path in use is bad input, found before the VM is built.
    let mut gdb = match cli.gdb.as_deref().map(GdbServer::bind).transpose() {
        Ok(g) => g.map(|g| g.with_exit_code(|o| exit_status::for_outcome(o, None) as u8)),
        Err(e) => {
            eprintln!("vmm-bin: error: --gdb: {e}");
            return exit_status::BAD_INPUT;
        }
    };
    if cli.api_sock.is_none() && cli.config_file.is_none() {
        return match launch(&cli, &cli.vm_config(), None, started_at, &mut gdb) {
            Ok(launched) => finish(&cli, launched),
            Err(e) => {
                eprintln!("vmm-bin: error: {}", e.message);
                e.status
            }
        };
    }
    run_firecracker_style(cli, started_at, gdb)
}

/// `--api-sock` and/or `--config-file`.
fn run_firecracker_style(cli: Cli, started_at: Instant, mut gdb: Option<GdbServer>) -> i32 {
    // The socket first, before any thread exists (bind sets the umask) and
    // before the VM is built: a path in use is refused at once.
    let socket = match cli.api_sock.as_deref().map(ApiSocket::bind).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm-bin: error: {e}");
            return exit_status::BAD_INPUT;
        }
    };
    // Removes the socket file on every way out of this function.
    let _socket_file = socket.as_ref().map(SocketFile::of);
    let mut prepared = Prepared::from_flags(cli.vm_config());
    if let Some(path) = &cli.config_file {
        let applied = config_file::load(path)
            .map_err(|e| e.to_string())
            .and_then(|doc| {
                prepared
                    .apply_file(doc)
                    .map_err(|e| format!("--config-file {}: {e}", path.display()))
            })
            .and_then(|logger_config| match logger_config {
                Some(l) => logger::configure(&l, &cli.id)
                    .map_err(|e| format!("--config-file {}: Logger error: {e}", path.display())),
                None => Ok(()),
            });
        if let Err(message) = applied {
            eprintln!("vmm-bin: error: {message}");
            return exit_status::BAD_INPUT;
        }
    }
    let seccomp = !cli.no_seccomp;
    if seccomp && socket.is_some() {
        // The API thread is confined before the VM runs (which would
        // install it).
        if let Err(e) = vmm_core::seccomp::install_sigsys_handler() {
            eprintln!("vmm-bin: error: {e}");
            return exit_status::VMM_FAILURE;
        }
    }
    let (to_main, from_api) = std::sync::mpsc::channel::<ToMain>();
    let serve = |socket: ApiSocket, started: Option<StartedVm>| {
        let controller = Controller::new(cli.id.clone(), to_main.clone(), started);
        socket.serve(controller, seccomp).map_err(|e| {
            eprintln!("vmm-bin: error: starting the API thread: {e}");
            exit_status::VMM_FAILURE
        })
    };

    if cli.config_file.is_some() || cli.restore.is_some() || socket.is_none() {
        // The file or the snapshot describes the VM: start it now; the API
        // (if any) serves runtime calls.
        let vm_config = match &cli.restore {
            Some(_) => None,
            None => match prepared.vm_config() {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!("vmm-bin: error: {e}");
                    return exit_status::BAD_INPUT;
                }
            },
        };
        let config = match &vm_config {
            Some(v) => v.config.clone(),
            None => cli.vm_config(),
        };
        let launched = match launch(&cli, &config, vm_config.as_ref(), started_at, &mut gdb) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("vmm-bin: error: {}", e.message);
                return e.status;
            }
        };
        if let Some(socket) = socket {
            let started = StartedVm {
                handle: launched.vm.handle(),
                config: prepared.full_config(),
            };
            if let Err(status) = serve(socket, Some(started)) {
                return status;
            }
        }
        return finish(&cli, launched);
    }

    // An API and no file: configuration calls until InstanceStart.
    let Some(socket) = socket else {
        return exit_status::VMM_FAILURE;
    };
    if let Err(status) = serve(socket, None) {
        return status;
    }
    let mut apply_logger = |l: &vmm_bin::api::model::Logger| logger::configure(l, &cli.id);
    loop {
        let ToMain { action, reply } = match from_api.recv_timeout(SIGNAL_POLL) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(s) = signals::stop_signal() {
                    eprintln!(
                        "vmm-bin: stopped by {} ({s}) before the VM was started",
                        signal_name(s)
                    );
                    return 128 + s;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                eprintln!("vmm-bin: error: the API thread ended");
                return exit_status::VMM_FAILURE;
            }
        };
        match controller::preboot(&mut prepared, action, &mut apply_logger) {
            Preboot::Reply(response) => {
                let _ = reply.send(MainReply {
                    response,
                    started: None,
                });
            }
            Preboot::Start(vm_config) => {
                match launch(
                    &cli,
                    &vm_config.config,
                    Some(&vm_config),
                    started_at,
                    &mut gdb,
                ) {
                    Ok(launched) => {
                        let started = StartedVm {
                            handle: launched.vm.handle(),
                            config: prepared.full_config(),
                        };
                        let _ = reply.send(MainReply {
                            response: Response::no_content(),
                            started: Some(started),
                        });
                        return finish(&cli, launched);
                    }
                    Err(e) => {
                        log::warn!("InstanceStart failed: {}", e.message);
                        let _ = reply.send(MainReply {
                            response: Response::fault(
                                400,
                                &format!("Start microvm error: {}", e.message),
                            ),
                            started: None,
                        });
                    }
                }
            }
        }
    }
}

/// The VM a snapshot describes (`--restore`), its console output to
/// `console` (`--serial`); running at once with `--resume`, else paused.
fn restore_vm(
    cli: &Cli,
    snapshot: &std::path::Path,
    host: HostOptions,
    console: Console,
) -> Result<Vm, VmmError> {
    // clap makes --restore require --restore-mem.
    let mem = cli.restore_mem.as_deref().unwrap_or(snapshot);
    let mut vm = Vm::restore_with_console(snapshot, mem, host, Some(console))?;
    if cli.resume {
        vm.resume_on_start();
    } else {
        log::warn!("the restored VM is paused; it runs once resumed (--resume, or the API)");
    }
    Ok(vm)
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
    let started_at = Instant::now();
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
    logger::init(cli.verbose);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        // The API socket is not removed here: a panic may come before it
        // is bound (the path could be another process's) or on a thread
        // whose seccomp list has no unlink. The next start replaces it as
        // stale.
        default_hook(info);
    }));
    let status = run(cli, started_at);
    std::process::exit(status);
}
