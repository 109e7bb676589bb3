//! The command line (SEMANTICS.md "Command line, files, exit codes"):
//! `smtp-sensor -r <pcap|->… -l <logdir> [-c config.toml] [--set k=v]…`,
//! `-i <iface>` for live capture, `check-config`, `reload <pid>` (the
//! systemd unit's ExecReload) and the hidden `generate` (man page,
//! completions).

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::output::LogFormat;

/// What `--version` prints after the name: the release, the git revision
/// it was built from, and whether the XDP program is built in (without it,
/// only `-r` works). Set by `build.rs`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SMTP_SENSOR_GIT_REV"),
    "; XDP program ",
    env!("SMTP_SENSOR_XDP"),
    ")"
);

/// Passive SMTP sensor: writes Zeek-style smtp.log and notice.log from a
/// capture file or a live interface.
#[derive(Debug, Parser)]
#[command(
    name = "smtp-sensor",
    version = VERSION,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the configuration, print the effective config as
    /// TOML; exit 0 when valid, 2 otherwise.
    CheckConfig(ConfigArgs),
    /// Ask the running sensor `PID` to reload (SIGHUP) and wait for the
    /// outcome: exit 1 with its reason when the new configuration was
    /// refused. The systemd unit's `ExecReload=`, so that a refused reload
    /// fails `systemctl reload`; needs `RUNTIME_DIRECTORY` (set by systemd).
    Reload {
        /// Process id of the sensor (`$MAINPID`).
        pid: i32,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Print the man page or a shell completion script on stdout (for
    /// packaging: `cargo xtask deb` installs both).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: crate::manual::Generate,
    },
}

/// Where the configuration comes from (shared by a run and check-config).
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one configuration key (`--set spam_threshold=100`); may be
    /// repeated, applied in order after the file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Arguments of a capture run.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Read pcap or pcapng captures, plain or gzip/zstd-compressed (`-`
    /// for standard input); several (`-r a.pcap b.pcap.gz`, or `-r` again)
    /// are read in order as one stream of time.
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        num_args = 1..,
        conflicts_with = "interface"
    )]
    pub read: Vec<PathBuf>,
    /// Capture live on a network interface (XDP/AF_XDP).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: Option<String>,
    /// Directory for smtp.log, files.log, notice.log and weird.log; `-`
    /// writes every log's JSON lines to standard output instead, each with
    /// `_path` (for `jq`, a shipper).
    #[arg(short = 'l', long = "logdir", value_name = "DIR", default_value = ".")]
    pub log_dir: PathBuf,
    /// The same as `-l -`.
    #[arg(long = "log-stdout", conflicts_with = "log_dir")]
    pub log_stdout: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Worker threads (flows are sharded by a symmetric hash). Default: 1
    /// offline, one per rx queue live.
    #[arg(long = "workers", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Pin threads to these CPUs (`0-3,6`): live, the capture threads take
    /// the first ones, then the workers, round robin; offline the workers.
    /// Default: not pinned.
    #[arg(long = "cpus", value_name = "LIST")]
    pub cpus: Option<crate::affinity::CpuList>,
    /// Serve Prometheus metrics on this address (`127.0.0.1:9469`,
    /// `localhost:9469`, `[::1]:9469`) at `/metrics`.
    #[arg(long = "metrics-addr", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Do not verify IPv4 and TCP checksums (they are only counted anyway;
    /// this saves the time).
    #[arg(long = "no-checksums")]
    pub no_checksums: bool,
    /// Do not print the end-of-run summary on stderr.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub live: crate::capture::live::LiveArgs,
}

impl RunArgs {
    /// Where the logs go: `-l DIR`, or `-` for `-l -` and `--log-stdout`.
    pub fn log_target(&self) -> PathBuf {
        if self.log_stdout {
            PathBuf::from(crate::pipeline::STDOUT_DIR)
        } else {
            self.log_dir.clone()
        }
    }
}

impl Cli {
    /// The command line definition, with every live-capture option (those
    /// of `LiveArgs`) in conflict with `-r`: one used offline is refused
    /// ("the argument '--read <FILE>...' cannot be used with
    /// '--stats-json <FILE>'", exit 2), never silently ignored. New live options are
    /// covered without a change here.
    pub fn checked_command() -> clap::Command {
        let live = crate::capture::live::LiveArgs::augment_args(clap::Command::new("live"));
        let ids: Vec<clap::Id> = live.get_arguments().map(|a| a.get_id().clone()).collect();
        let mut cmd = Cli::command();
        for id in ids {
            cmd = cmd.mut_arg(id, |a| a.conflicts_with("read"));
        }
        cmd
    }

    /// Parses the process's arguments with [`Cli::checked_command`].
    pub fn parse_checked() -> Result<Cli, clap::Error> {
        Self::parse_checked_from(std::env::args_os())
    }

    pub fn parse_checked_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = Self::checked_command();
        let m = cmd.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches(&m).map_err(|e| e.format(&mut cmd))
    }
}

/// An address to listen on: `IP:PORT`, or `HOST:PORT` with a host name the
/// resolver knows (`localhost:9469`; the first address it gives).
fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT or IP:PORT ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_checked_from(std::iter::once("smtp-sensor").chain(args.iter().copied()))
    }

    #[test]
    fn live_options_are_refused_offline() {
        for extra in [
            &["--stats-json", "s.json"][..],
            &["--stats-interval", "5"],
            &["--non-smtp", "drop"],
            &["--queues", "2"],
            &["--symmetric-rss"],
            &["--ebpf-log"],
        ] {
            let mut args = vec!["-r", "x.pcap"];
            args.extend_from_slice(extra);
            let e = parse(&args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{extra:?}"
            );
            let text = e.to_string();
            assert!(text.contains(extra[0]) && text.contains("--read"), "{text}");
        }
        // Live, they are fine; offline, their defaults do not count.
        let c = parse(&["-i", "eth1", "--stats-json", "s.json", "--queues", "2"]).unwrap();
        assert_eq!(c.run.live.queues, Some(2));
        assert!(parse(&["-r", "x.pcap", "--workers", "2"]).is_ok());
    }

    #[test]
    fn offline_run() {
        let c = parse(&[
            "-r",
            "x.pcap",
            "-l",
            "/tmp/o",
            "--set",
            "a=1",
            "--set",
            "b=2",
            "--workers",
            "4",
        ])
        .unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.run.read, [std::path::Path::new("x.pcap")]);
        assert_eq!(c.run.config.sets, ["a=1", "b=2"]);
        assert_eq!(c.run.workers, Some(4));
        assert_eq!(c.run.log_format, LogFormat::Json);
        let c = parse(&["-r", "-", "--log-format", "zeek"]).unwrap();
        assert_eq!(c.run.log_format, LogFormat::Zeek);
    }

    #[test]
    fn several_captures_in_order() {
        let c = parse(&["-r", "a.pcap", "b.pcap.gz", "-l", "o", "-r", "c.pcap"]).unwrap();
        let want: Vec<PathBuf> = ["a.pcap", "b.pcap.gz", "c.pcap"].map(PathBuf::from).into();
        assert_eq!(c.run.read, want);
        assert!(parse(&["-r"]).is_err());
    }

    #[test]
    fn check_config_subcommand() {
        let c = parse(&["check-config", "-c", "a.toml", "--set", "spam_threshold=5"]).unwrap();
        let Some(Command::CheckConfig(a)) = c.command else {
            panic!("no subcommand")
        };
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("a.toml")));
        assert_eq!(a.sets, ["spam_threshold=5"]);
    }

    #[test]
    fn metrics_addr_takes_a_host_name() {
        let c = parse(&["-r", "a", "--metrics-addr", "localhost:9469"]).unwrap();
        let a = c.run.metrics_addr.unwrap();
        assert!(a.ip().is_loopback(), "{a}");
        assert_eq!(a.port(), 9469);
        let c = parse(&["-r", "a", "--metrics-addr", "[::1]:9469"]).unwrap();
        assert_eq!(c.run.metrics_addr, Some("[::1]:9469".parse().unwrap()));
        assert!(parse(&["-r", "a", "--metrics-addr", "localhost"]).is_err());
        assert!(parse(&["-r", "a", "--metrics-addr", "127.0.0.1:99999"]).is_err());
    }

    #[test]
    fn version_names_the_revision_and_the_xdp_program() {
        let e = parse(&["--version"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        let v = e.to_string();
        assert!(
            v.starts_with(concat!("smtp-sensor ", env!("CARGO_PKG_VERSION"), " (git ")),
            "{v}"
        );
        assert!(
            v.contains("; XDP program built in)") || v.contains("; XDP program missing)"),
            "{v}"
        );
    }

    #[test]
    fn logs_to_standard_output() {
        let c = parse(&["-r", "a", "--log-stdout"]).unwrap();
        assert_eq!(c.run.log_target(), PathBuf::from("-"));
        let c = parse(&["-r", "a", "-l", "-"]).unwrap();
        assert_eq!(c.run.log_target(), PathBuf::from("-"));
        let c = parse(&["-r", "a", "-l", "out"]).unwrap();
        assert_eq!(c.run.log_target(), PathBuf::from("out"));
        assert!(parse(&["-r", "a", "-l", "out", "--log-stdout"]).is_err());
    }

    #[test]
    fn bad_usage_is_rejected() {
        assert!(parse(&["-r", "a", "-i", "eth0"]).is_err());
        assert!(parse(&["--workers", "0", "-r", "a"]).is_err());
        assert!(parse(&["--log-format", "xml", "-r", "a"]).is_err());
    }
}
