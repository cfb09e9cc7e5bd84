//! Writes the man pages and the shell completions of `ovh-access` from its command-line definition,
//! so that they can never drift from it. scripts/package runs it at build time:
//!
//!     ovh-access-docs OUTDIR
//!
//! OUTDIR receives `ovh-access.8` (with the exit status, files and related units), one page per
//! command (`ovh-access-grant.8`, ...), and `ovh-access.bash`, `_ovh-access` (zsh) and
//! `ovh-access.fish`. Not installed by the packages: it is a build tool.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use ovh_access::cli::Cli;
use ovh_access::state::{LOCK_FILE, STATE_FILE};

const NAME: &str = "ovh-access";
/// Section 8: system administration commands; the tool runs as root.
const SECTION: &str = "8";
const MANUAL: &str = "System Administration";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: ovh-access-docs OUTDIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ovh-access-docs: cannot write into {}: {e}",
                out.to_string_lossy()
            );
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    // build() fills in what clap derives (display names "ovh-access-grant", the help flags) so
    // that every page and completion sees the command exactly as the binary parses it.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    written.push(write(out, &format!("{NAME}.{SECTION}"), |w| {
        main_page(cmd.clone(), w)
    })?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = page(sub.clone());
        written.push(write(out, &man.get_filename(), |w| {
            man.render(w)?;
            see_also(&[(NAME, SECTION)]).to_writer(w)
        })?);
    }
    for (shell, file) in [
        (Shell::Bash, format!("{NAME}.bash")),
        (Shell::Zsh, format!("_{NAME}")),
        (Shell::Fish, format!("{NAME}.fish")),
    ] {
        written.push(write(out, &file, |w| {
            clap_complete::generate(shell, &mut cmd.clone(), NAME, w);
            Ok(())
        })?);
    }
    Ok(written)
}

fn write(
    dir: &Path,
    name: &str,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let mut w = BufWriter::new(File::create(&path)?);
    body(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(path)
}

fn page(cmd: clap::Command) -> Man {
    let man = Man::new(cmd)
        .section(SECTION)
        .manual(MANUAL)
        .source(format!("{NAME} {}", env!("CARGO_PKG_VERSION")));
    // The commit's date: the same page from the same commit, whenever it is built.
    match option_env!("OVH_ACCESS_DATE") {
        Some(d) if !d.is_empty() => man.date(d),
        _ => man,
    }
}

/// The command's own page, then what an administrator looks for after the options.
fn main_page(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    page(cmd).render(w)?;
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "success (also a revoke with nothing granted)."),
        (
            "1",
            "failure: the system refused a change, status found drift, doctor found a failing check.",
        ),
        ("2", "bad usage or bad input (an argument, a key file, an address)."),
    ] {
        r.control("TP", []).text([bold(code)]).text([roman(meaning)]);
    }
    r.control("SH", ["FILES"]);
    for (file, meaning) in [
        (
            STATE_FILE,
            "what is granted, and the journal of a change in progress (finished or rolled back by the next command).",
        ),
        (LOCK_FILE, "held by every changing command."),
        (
            "/root/.ssh/authorized_keys2",
            "where the support key goes when sshd's AuthorizedKeysFile lists it for root; otherwise the first file listed.",
        ),
    ] {
        r.control("TP", []).text([bold(file)]).text([roman(meaning)]);
    }
    r.control("SH", ["SYSTEMD UNITS"]);
    r.text([
        bold("ovh-access-restore.service"),
        roman(" re-applies a grant at boot (or cleans up an expired one) once the firewall is loaded; "),
        bold("ovh-access-refresh.timer"),
        roman(" re-resolves the support host every 15 minutes and does nothing while nothing is granted. Both are enabled when the package is installed and started by nothing at install time."),
    ]);
    r.to_writer(w)?;
    see_also(&[
        ("sshd", "8"),
        ("sshd_config", "5"),
        ("nft", "8"),
        ("iptables", "8"),
        ("systemd.timer", "5"),
    ])
    .to_writer(w)
}

fn see_also(pages: &[(&str, &str)]) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, (name, section)) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman(format!("({section})")));
    }
    r.text(line);
    r
}
