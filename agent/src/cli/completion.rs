//! `agent completion SHELL` (a completion script on stdout, clap_complete) and `agent man DIR`
//! (a man page per command in DIR, clap_mangen): `agent.1`, `agent-ps.1`, `agent-image-pull.1`,
//! ... Both come from the clap command tree, so they always match the binary;
//! `packaging/install.sh` writes them at install time.

use std::path::PathBuf;

use clap::CommandFactory;

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing), e.g. /usr/local/share/man/man1.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn completion(args: CompletionArgs) -> crate::Result<Outcome> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "agent", &mut std::io::stdout());
    Ok(Outcome::OK)
}

pub fn man(args: ManArgs) -> crate::Result<Outcome> {
    let io = |what: &str, e: std::io::Error| {
        crate::Error::Failed(format!("{what} {}: {e}", args.dir.display()))
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| io("create", e))?;
    let mut cmd = super::Cli::command();
    cmd.build();
    let written = write_pages(&cmd, "agent", &args.dir).map_err(|e| io("write man pages to", e))?;
    println!("wrote {written} man pages to {}", args.dir.display());
    Ok(Outcome::OK)
}

/// Writes the page of `cmd` (built: its usage line names its parents; the page is named
/// `name`) and of each visible subcommand but `help`; returns how many.
fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> std::io::Result<usize> {
    let cmd = cmd.clone().display_name(name.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    let mut n = 1;
    // Not clap's generated `help` subcommands: `agent help ps` is `agent ps --help`.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        n += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every argument of every command says what it is for (`--help`, man pages, completions).
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin
                    && !a.is_hide_set()
                    && a.get_help().is_none()
                    && a.get_long_help().is_none()
                {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                if s.get_about().is_none() && s.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::super::Cli::command(), "agent", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without help text: {missing:#?}"
        );
    }

    #[test]
    fn pages_for_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = super::super::Cli::command();
        cmd.build();
        let n = write_pages(&cmd, "agent", dir.path()).unwrap();
        assert!(n > 20, "{n}");
        let ps = std::fs::read_to_string(dir.path().join("agent-ps.1")).unwrap();
        assert!(ps.starts_with(".ie"), "{ps}");
        assert!(ps.contains("agent\\-ps"), "{ps}");
        assert!(dir.path().join("agent-image-pull.1").exists());
        assert!(!dir.path().join("agent-monitor.1").exists());
    }
}
