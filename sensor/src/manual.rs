//! The man page and the shell completion scripts, generated from the clap
//! definitions of `cli` (`smtp-sensor generate man`, `smtp-sensor generate
//! completions <shell>`), so they never drift from the real options.
//! `cargo xtask deb` runs these to fill the package.

use std::io::{self, Write};

use clap::Subcommand;
use clap_complete::Shell;

use crate::cli::Cli;

/// What `smtp-sensor generate` prints.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Generate {
    /// The man page, smtp-sensor(8), in roff.
    Man,
    /// The completion script for a shell.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Writes what `what` asks for to `out`.
pub fn generate(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::checked_command();
    match what {
        Generate::Man => man_page(cmd, out),
        Generate::Completions { shell } => {
            let mut cmd = cmd;
            clap_complete::generate(shell, &mut cmd, "smtp-sensor", out);
            Ok(())
        }
    }
}

/// The main page plus the `check-config` subcommand in one page: section
/// 8 (a system daemon), with an EXIT STATUS and FILES section the derive
/// does not know.
fn man_page(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.write_all(EXTRA.as_bytes())?;
    man.render_version_section(out)?;
    Ok(())
}

/// Sections written by hand (roff): what the clap definitions cannot say.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
0
The input was read to its end (offline), or a clean stop after SIGINT/SIGTERM (live).
.TP
1
A failure during the run (a worker thread panicked, capture stopped unexpectedly).
.TP
2
A bad option, configuration file, capture file, interface or log directory.
.SH SIGNALS
.TP
SIGHUP
Reopen smtp.log and notice.log and reload the configuration and the GeoIP database; flows in progress are kept.
.TP
SIGINT, SIGTERM
Flush open connections and the current spam period, close the logs, detach XDP and exit.
.SH FILES
.TP
/etc/smtp-sensor/sensor.toml
The configuration read by the packaged systemd unit smtp-sensor@.service.
.TP
/var/log/smtp-sensor/<iface>/
smtp.log and notice.log of the unit's instance for interface <iface>.
.SH "SEE ALSO"
/usr/share/doc/smtp-sensor/ (CONFIG.md, OPERATIONS.md, METRICS.md, ZEEK-DIFFERENCES.md)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn text(what: Generate) -> String {
        let mut out = Vec::new();
        generate(what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn man_page_lists_the_real_options() {
        let man = text(Generate::Man);
        assert!(
            man.starts_with(".ie") || man.contains(".TH smtp-sensor 8"),
            "{man}"
        );
        for opt in [
            "\\-\\-read",
            "\\-\\-interface",
            "\\-\\-metrics\\-addr",
            "check\\-config",
        ] {
            assert!(man.contains(opt), "{opt} missing from the man page");
        }
        assert!(man.contains("EXIT STATUS"));
        // The packaging helper stays out of the user's page.
        assert!(!man.contains("generate"), "{man}");
    }

    #[test]
    fn completions_know_the_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = text(Generate::Completions { shell });
            assert!(s.contains("metrics-addr"), "{shell}: {s}");
            assert!(s.contains("check-config"), "{shell}");
        }
    }
}
