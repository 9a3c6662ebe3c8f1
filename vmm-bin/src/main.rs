//! `vmm-bin`: the command-line front end. It parses arguments, builds a VM
//! with vmm-core, runs it, and turns the outcome into an exit status.
//!
//! With `--api-sock` or `--config-file` the VM is described the way
//! Firecracker describes it (see `vmm_bin::api`): a config file starts it
//! at once; an API socket without one waits for `InstanceStart` or
//! `PUT /snapshot/load`, taking configuration calls on this thread
//! meanwhile. Either way the VM is built and run on this (the main)
//! thread, and the API thread serves runtime calls through the VM's
//! handle.

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
use vmm_core::{HostOptions, NextBoot, OnReset, Vm, VmConfig, VmOutcome, VmmError};

use vmm_bin::api::controller::{self, Controller, MainReply, Preboot, StartedVm, ToMain};
use vmm_bin::api::http::Response;
use vmm_bin::api::prepare::{open_append, Prepared, PreparedVm};
use vmm_bin::api::server::{ApiSocket, SocketFile};
use vmm_bin::api::snapshot::{load_failed, LoadRequest};
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

/// Builds the next boot of a VM after a guest reset (`--on-reset reboot`).
type Rebuild = Box<dyn FnMut(NextBoot) -> Result<Vm, VmmError>>;

/// A built VM, ready to run, and the terminal mode it runs under.
struct Launched {
    vm: Vm,
    _raw: Option<RawTerminal>,
    /// How to build its next boot, when it reboots on a guest reset.
    reboot: Option<Rebuild>,
    /// Where `--exit-plot` draws the run, created before the guest started.
    plot: Option<BufWriter<File>>,
}

/// What a VM is built from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A configuration (flags, config file, API calls).
    Config(&'a VmConfig),
    /// A snapshot (`--restore`, `PUT /snapshot/load`); its console is the
    /// one `--serial` names.
    Snapshot(&'a LoadRequest),
}

/// What the API or the config file asked of the host, beyond the flags.
#[derive(Debug, Default)]
struct HostExtras {
    thp: bool,
    metrics: Option<PathBuf>,
    track_dirty_pages: bool,
}

impl From<&PreparedVm> for HostExtras {
    fn from(p: &PreparedVm) -> Self {
        HostExtras {
            thp: p.thp,
            metrics: p.metrics.clone(),
            track_dirty_pages: p.track_dirty_pages,
        }
    }
}

/// The snapshot `--restore` names.
fn cli_load(cli: &Cli) -> Option<LoadRequest> {
    let snapshot = cli.restore.clone()?;
    Some(LoadRequest {
        // clap makes --restore require --restore-mem.
        mem_file_path: cli.restore_mem.clone().unwrap_or_else(|| snapshot.clone()),
        snapshot_path: snapshot,
        track_dirty_pages: cli.track_dirty_pages,
        resume_vm: cli.resume,
    })
}

/// Builds the VM `source` describes; `extras` adds what the API or the
/// config file asked of the host (huge pages, the metrics file, dirty-page
/// tracking). A GDB socket in `gdb` is attached to it (and taken; a reboot
/// runs without the stub).
fn launch(
    cli: &Cli,
    source: Source<'_>,
    extras: &HostExtras,
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
    let flags;
    let config = match source {
        Source::Config(c) => c,
        Source::Snapshot(_) => {
            flags = cli.vm_config();
            &flags
        }
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
    if let Some(path) = extras.metrics.clone() {
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
    host.thp |= extras.thp;
    host.track_dirty_pages |= extras.track_dirty_pages;
    let reboot = match (cli.on_reset, source) {
        (OnReset::Exit, _) => None,
        (OnReset::Reboot, Source::Snapshot(_)) => {
            log::warn!(
                "--on-reset reboot: a VM restored from a snapshot cannot reboot (the snapshot \
                 keeps no boot inputs); a guest reset ends it (status 14)"
            );
            None
        }
        (OnReset::Reboot, Source::Config(config)) => {
            // Each boot: the same configuration, host options and console
            // (one file, not truncated again), the handles handed on.
            let config = config.clone();
            let host = host.for_next_boot();
            let console = console.clone();
            Some(Box::new(move |next: NextBoot| {
                create_with_devices(&config, host.for_next_boot(), console.clone(), Some(next))
            }) as Rebuild)
        }
    };
    let mut vm = match source {
        Source::Snapshot(load) => restore_vm(load, host, console),
        Source::Config(config) => create_with_devices(config, host, console, None),
    }
    .map_err(|e| LaunchError::vmm(&e))?;
    if let Some(server) = gdb.take() {
        vm.attach_gdb(server).map_err(|e| LaunchError::vmm(&e))?;
    }
    // The vsock socket exists now: a forced exit removes it too (an
    // orderly one drops the device, which removes it).
    if let Some(v) = &config.devices.vsock {
        signals::remove_at_forced_exit(std::slice::from_ref(&v.socket));
    }
    Ok(Launched {
        vm,
        _raw: raw,
        reboot,
        plot,
    })
}

/// Runs a launched VM to its end; the process's exit status.
fn finish(cli: &Cli, launched: Launched) -> i32 {
    let Launched {
        vm,
        _raw,
        reboot,
        mut plot,
    } = launched;
    if let Some(signal) = signals::stop_on_signal(vm.handle()) {
        vmm_bin::stderr_line!(
            "vmm-bin: stopped by {} ({signal}) during start-up",
            signal_name(signal)
        );
        return 128 + signal;
    }
    let run = match reboot {
        Some(rebuild) => vmm_core::run_rebooting(vm, rebuild),
        None => vm.run(),
    };
    let report = match run {
        Ok(r) => r,
        Err(e) => {
            vmm_bin::stderr_line!("vmm-bin: error: {}", hints::message(&e));
            return exit_status::for_error(&e);
        }
    };
    let signal = signals::stop_signal();
    match &report.outcome {
        VmOutcome::Halted { .. } | VmOutcome::DebugExit { .. } | VmOutcome::PowerOff => {
            log::info!("{}", report.outcome)
        }
        VmOutcome::Stopped => match signal {
            Some(s) => vmm_bin::stderr_line!("vmm-bin: stopped by {} ({s})", signal_name(s)),
            None => vmm_bin::stderr_line!("vmm-bin: {}", report.outcome),
        },
        other => vmm_bin::stderr_line!("vmm-bin: {other}"),
    }
    if let (Some(out), Some(timeline)) = (plot.as_mut(), &report.timeline) {
        if let Err(e) = vmm_bin::plot::write(timeline, out) {
            vmm_bin::stderr_line!("vmm-bin: error: {e}");
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
        vmm_bin::stderr_line!("vmm-bin: error: {e}");
        return exit_status::VMM_FAILURE;
    }
    // The GDB socket first, before any thread exists (bind sets the
    // umask): a path in use is bad input, found before the VM is built.
    let mut gdb = match cli.gdb.as_deref().map(GdbServer::bind).transpose() {
        Ok(g) => g.map(|g| g.with_exit_code(|o| exit_status::for_outcome(o, None) as u8)),
        Err(e) => {
            vmm_bin::stderr_line!("vmm-bin: error: --gdb: {e}");
            return exit_status::BAD_INPUT;
        }
    };
    if cli.api_sock.is_none() && cli.config_file.is_none() {
        let config = cli.vm_config();
        let load = cli_load(&cli);
        let source = match &load {
            Some(l) => Source::Snapshot(l),
            None => Source::Config(&config),
        };
        return match launch(&cli, source, &HostExtras::default(), started_at, &mut gdb) {
            Ok(launched) => finish(&cli, launched),
            Err(e) => {
                vmm_bin::stderr_line!("vmm-bin: error: {}", e.message);
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
            vmm_bin::stderr_line!("vmm-bin: error: {e}");
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
            vmm_bin::stderr_line!("vmm-bin: error: {message}");
            return exit_status::BAD_INPUT;
        }
    }
    let seccomp = !cli.no_seccomp;
    if seccomp && socket.is_some() {
        // The API thread is confined before the VM runs (which would
        // install it).
        if let Err(e) = vmm_core::seccomp::install_sigsys_handler() {
            vmm_bin::stderr_line!("vmm-bin: error: {e}");
            return exit_status::VMM_FAILURE;
        }
    }
    let (to_main, from_api) = std::sync::mpsc::channel::<ToMain>();
    let serve = |socket: ApiSocket, started: Option<StartedVm>| {
        let controller = Controller::new(cli.id.clone(), to_main.clone(), started);
        socket.serve(controller, seccomp).map_err(|e| {
            vmm_bin::stderr_line!("vmm-bin: error: starting the API thread: {e}");
            exit_status::VMM_FAILURE
        })
    };

    if cli.config_file.is_some() || cli.restore.is_some() || socket.is_none() {
        // The file or the snapshot describes the VM: start it now; the API
        // (if any) serves runtime calls.
        let load = cli_load(&cli);
        let vm_config = match &load {
            Some(_) => None,
            None => match prepared.vm_config() {
                Ok(v) => Some(v),
                Err(e) => {
                    vmm_bin::stderr_line!("vmm-bin: error: {e}");
                    return exit_status::BAD_INPUT;
                }
            },
        };
        let (source, extras) = match (&load, &vm_config) {
            (Some(l), _) => (Source::Snapshot(l), HostExtras::default()),
            (None, Some(v)) => (Source::Config(&v.config), HostExtras::from(v)),
            (None, None) => return exit_status::VMM_FAILURE,
        };
        let launched = match launch(&cli, source, &extras, started_at, &mut gdb) {
            Ok(l) => l,
            Err(e) => {
                vmm_bin::stderr_line!("vmm-bin: error: {}", e.message);
                return e.status;
            }
        };
        if let Some(socket) = socket {
            let config = match &load {
                Some(l) => prepared.restored_config(launched.vm.config(), l.track_dirty_pages),
                None => prepared.full_config(),
            };
            let started = StartedVm {
                handle: launched.vm.handle(),
                config,
            };
            if let Err(status) = serve(socket, Some(started)) {
                return status;
            }
        }
        return finish(&cli, launched);
    }

    // An API and no file: configuration calls until InstanceStart or a
    // snapshot load.
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
                    vmm_bin::stderr_line!(
                        "vmm-bin: stopped by {} ({s}) before the VM was started",
                        signal_name(s)
                    );
                    return 128 + s;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                vmm_bin::stderr_line!("vmm-bin: error: the API thread ended");
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
            Preboot::Load(load) => {
                let extras = HostExtras {
                    metrics: prepared.metrics_path(),
                    track_dirty_pages: load.track_dirty_pages,
                    thp: false,
                };
                match launch(&cli, Source::Snapshot(&load), &extras, started_at, &mut gdb) {
                    Ok(launched) => {
                        let track = load.track_dirty_pages || cli.track_dirty_pages;
                        let started = StartedVm {
                            handle: launched.vm.handle(),
                            config: prepared.restored_config(launched.vm.config(), track),
                        };
                        let _ = reply.send(MainReply {
                            response: Response::no_content(),
                            started: Some(started),
                        });
                        return finish(&cli, launched);
                    }
                    Err(e) => {
                        // Nothing was left behind: the process can take
                        // another load, or a configuration.
                        log::warn!("PUT /snapshot/load failed: {}", e.message);
                        let _ = reply.send(MainReply {
                            response: load_failed(&e.message),
                            started: None,
                        });
                    }
                }
            }
            Preboot::Start(vm_config) => {
                let extras = HostExtras::from(&*vm_config);
                match launch(
                    &cli,
                    Source::Config(&vm_config.config),
                    &extras,
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

/// The VM a snapshot describes (`--restore`, `PUT /snapshot/load`), its
/// console output to `console` (`--serial`); running at once with
/// `--resume` / `resume_vm`, else paused.
fn restore_vm(load: &LoadRequest, host: HostOptions, console: Console) -> Result<Vm, VmmError> {
    let mut vm = Vm::restore_with_console(
        &load.snapshot_path,
        &load.mem_file_path,
        host,
        Some(console),
    )?;
    if load.resume_vm {
        vm.resume_on_start();
    } else {
        log::warn!(
            "the restored VM is paused; it runs once resumed (--resume, or the API's PATCH /vm)"
        );
    }
    Ok(vm)
}

/// The VM, with the platform's device set (`vmm_devices::pc`) on its exit
/// dispatcher's bus; with `next`, as the next boot of a rebooting VM.
fn create_with_devices(
    config: &VmConfig,
    host: HostOptions,
    console: Console,
    next: Option<NextBoot>,
) -> Result<Vm, VmmError> {
    // Host resources first: an unusable disk or socket is bad input.
    let backends = build_backends(&config.devices)?;
    let mut vm = match next {
        Some(next) => Vm::create_next(config, host, next)?,
        None => Vm::create(config, host)?,
    };
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
            vmm_bin::stderr_line!("vmm-bin: error: {}", cli::one_line_error(&e));
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
