//! `smtp-sensor`: parses the command line, loads the configuration and runs
//! the pipeline. Exit codes (SEMANTICS.md): 0 when the input was read to its
//! end, 2 with one line on stderr for a bad file, config or usage.

use std::io::IsTerminal;
use std::process::ExitCode;

use smtp_sensor::capture::CaptureError;
use smtp_sensor::cli::{Cli, Command, RunArgs};
use smtp_sensor::config::{Config, check_config};
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::pipeline::reload::ConfigSource;
use smtp_sensor::pipeline::{RunControl, RunError, RunOptions, run_offline_files};

/// mimalloc instead of the C library's allocator. Sessions, records and
/// their arenas are allocated on the packet thread and freed on the log
/// writer's, a pattern glibc's arenas handle poorly: live at 1.5–2 Mpps
/// the capture thread spent ≈ 12 % of its time in glibc's malloc and free
/// (chunk sorting, `malloc_consolidate`), ≈ 2 % with mimalloc
/// (docs/PERFORMANCE.md). It holds ≈ 20 MB more at rest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (mimalloc.h): the
/// 16th option. The test below checks it against the option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before giving it back to the OS.
/// Its default, 1 s, is about how long the log writer holds a window's
/// records: under steady load the memory went back and was faulted in
/// again (the kernel zeroing huge pages on the capture thread), 7 000 –
/// 21 000 page faults in 7 s at 1.5–2 Mpps against ≈ 60 with 10 s
/// (docs/PERFORMANCE.md). After 10 s of lower load it still goes back.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's options, unless the operator set them in the
/// environment (`MIMALLOC_PURGE_DELAY`, which mimalloc reads itself).
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; called first thing in main,
        // before any other thread exists (mimalloc's options are not
        // synchronised).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::parse_checked() {
        Ok(c) => c,
        Err(e) => {
            // --help / --version print and exit 0; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match &cli.command {
        Some(Command::CheckConfig(a)) => {
            let code = check_config(a.config.as_deref(), &a.sets);
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
        Some(Command::Reload { pid, timeout }) => {
            let wait = std::time::Duration::from_secs(*timeout);
            return match smtp_sensor::service::reload_command(*pid, wait) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}smtp-sensor: {e}", smtp_sensor::service::error_prefix());
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Generate { what }) => {
            return match smtp_sensor::manual::generate(*what, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("smtp-sensor: {e}");
                    ExitCode::from(1)
                }
            };
        }
        None => {}
    }
    let run = cli.run;
    let cfg = match Config::load(run.config.config.as_deref(), &run.config.sets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smtp-sensor: {e}");
            return ExitCode::from(2);
        }
    };
    // Live: progress and state changes at info; offline: only warnings.
    let level = if run.interface.is_some() {
        "info"
    } else {
        "warn"
    };
    smtp_sensor::service::init_logging(level);
    let ctl = RunControl {
        cpus: run.cpus.clone().unwrap_or_default(),
        metrics_addr: run.metrics_addr,
        config: ConfigSource {
            file: run.config.config.clone(),
            sets: run.config.sets.clone(),
        },
        progress: !run.quiet && std::io::stderr().is_terminal(),
        handle_signals: true,
    };
    if run.read.is_empty() {
        if let Some(iface) = &run.interface {
            return run_live(&cfg, iface, &run, &ctl);
        } else {
            eprintln!(
                "smtp-sensor: give a capture to read with -r <pcap|-> (or -i <iface>); see --help"
            );
        }
        return ExitCode::from(2);
    }
    let inputs: Vec<&std::path::Path> = run.read.iter().map(|p| p.as_path()).collect();
    let opts = RunOptions {
        log_dir: run.log_target(),
        format: run.log_format,
        workers: run.workers.map_or(1, usize::from),
        decode: DecodeOptions {
            verify_checksums: !run.no_checksums,
        },
    };
    match run_offline_files(&cfg, &inputs, &opts, &ctl) {
        Ok(summary) => {
            if summary.truncated_tail
                && let Some(last) = inputs.last()
            {
                eprintln!(
                    "smtp-sensor: warning: {} ends inside a record; every complete record before it was processed",
                    last.display()
                );
            }
            if !run.quiet {
                eprint!("{summary}");
            }
            exit_after(&summary, ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("smtp-sensor: {e}");
            ExitCode::from(2)
        }
    }
}

/// `-i`: the pipeline on live capture until SIGINT/SIGTERM. Exit 0 after a
/// clean stop, 2 for a bad option, interface, config or log directory, 1
/// for any other failure.
fn run_live(cfg: &Config, iface: &str, run: &RunArgs, ctl: &RunControl) -> ExitCode {
    let opts = RunOptions {
        log_dir: run.log_target(),
        format: run.log_format,
        workers: run.workers.map_or(0, usize::from),
        // Live frames carry offloaded, unfilled checksums: verify only on request.
        decode: DecodeOptions {
            verify_checksums: false,
        },
    };
    match smtp_sensor::pipeline::live::run(cfg, iface, &run.live, &opts, ctl) {
        Ok(summary) => {
            if !run.quiet {
                eprint!("{summary}");
            }
            exit_after(&summary, ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}smtp-sensor: {e}", smtp_sensor::service::error_prefix());
            match e {
                RunError::Live(CaptureError::Option(_) | CaptureError::InterfaceNotFound(_))
                | RunError::LogDir(_)
                | RunError::StdoutFormat
                | RunError::Detect(_)
                | RunError::Metrics(_)
                | RunError::Output(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// A run whose worker panicked lost flows: it fails (exit 1) even though
/// the logs hold everything else. So does a live run whose interface was
/// deleted (`--on-interface-loss exit`): its records are flushed, and the
/// failure lets systemd's `Restart=on-failure` start it again.
fn exit_after(summary: &smtp_sensor::pipeline::RunSummary, ok: ExitCode) -> ExitCode {
    if let Some(iface) = &summary.interface_lost {
        eprintln!(
            "smtp-sensor: capture interface {iface} was deleted; every record so far is written; exiting with code 1 (--on-interface-loss wait waits for it instead)"
        );
        return ExitCode::from(1);
    }
    if summary.worker_panics > 0 {
        eprintln!(
            "smtp-sensor: {} worker thread(s) panicked; their connections are missing from the logs (a bug: please report it)",
            summary.worker_panics
        );
        return ExitCode::from(1);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc 3's default purge delay is 1000 ms; another index would
        // show another option's default.
        // SAFETY: reads an integer option.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(before, 1000, "not the purge delay (or its default changed)");
        }
        tune_allocator();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(after, PURGE_DELAY_MS);
        }
    }
}
