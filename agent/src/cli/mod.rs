//! Command-line interface: the clap command tree and one file per command.
//!
//! Every command returns an [`std::process::ExitCode`]-like number through [`Outcome`] so that
//! `main.rs` only maps it. One table of exit codes for every command (docs/cli.md):
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | error: invalid manifests, no such container, the agent is not running, ... |
//! | 2    | `agent plan` only: changes are pending |
//! | 64   | usage error: unknown flag, bad flag value, missing argument (EX_USAGE) |
//! | 125  | `agent exec`: the agent failed (no such container, not running, runtime error) |
//! | 126  | `agent exec`: the command cannot be executed |
//! | 127  | `agent exec`: the command was not found |
//!
//! Otherwise `agent exec` exits with the command's own code.
//!
//! Settings (socket, state directory, config file, manifest directory, graph driver) are
//! resolved the same way by every command: see [`settings`].

use clap::{Parser, Subcommand};

pub mod completion;
pub mod container;
pub mod convert;
pub mod daemon;
pub mod dns;
pub mod exec;
pub mod image;
pub mod plan;
pub mod schema;
pub mod settings;
pub mod stats;
pub mod system;
pub mod validate;
pub mod volume;

/// The process exit code a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome(pub u8);

impl Outcome {
    pub const OK: Outcome = Outcome(0);
    pub const FAILED: Outcome = Outcome(1);
    /// `agent plan`: changes are pending.
    pub const PENDING: Outcome = Outcome(2);
    /// A usage error (BSD's `EX_USAGE`), clap's included.
    pub const USAGE: Outcome = Outcome(64);
}

/// Output formats shared by every listing command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Keeps this host's containers equal to a directory of YAML manifests"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifest files or directories; exit 0 if all are valid, 1 if any is not.
    Validate(validate::Args),
    /// Print the JSON Schema of the manifests.
    Schema(schema::Args),
    /// Show what the agent would change to make the host match the manifests.
    Plan(plan::Args),
    /// Manage images: ls, pull, load, save, rm, prune.
    #[command(subcommand)]
    Image(image::Command),
    /// Write a container's root filesystem as a tar archive.
    Export(image::ExportArgs),
    /// Per-container monitor process (started by the agent, not by people).
    #[command(hide = true)]
    Monitor(exec::MonitorArgs),
    /// The networks' DNS server (started by the agent, not by people).
    #[command(hide = true, name = "dns-server")]
    DnsServer(dns::DnsServerArgs),
    /// Print a container's logs.
    Logs(exec::LogsArgs),
    /// Run a command inside a running container.
    Exec(exec::ExecArgs),
    /// Stop containers (stop signal, grace period, SIGKILL) and keep them stopped: their restart
    /// policy leaves them alone (`always` brings them back when the agent restarts).
    Stop(container::StopArgs),
    /// Start containers stopped with `agent stop` (or exited) again.
    Start(container::StartArgs),
    /// Send a signal to a container's main process.
    Kill(exec::KillArgs),
    /// Run the agent: watch the manifests and keep the host equal to them.
    Run(daemon::RunArgs),
    /// List containers: name, state, health, image digest, ports, uptime, restarts.
    Ps(daemon::PsArgs),
    /// Per manifest file: ok or its error with file:line, and when it was last applied.
    Status(daemon::StatusArgs),
    /// Print one container's recorded state and effective config as JSON.
    Inspect(daemon::InspectArgs),
    /// Print the event log.
    Events(daemon::EventsArgs),
    /// Ask the running agent to reconcile now.
    Apply(daemon::ApplyArgs),
    /// Host-level housekeeping: disk use (df), reset.
    #[command(subcommand)]
    System(system::Command),
    /// Volumes: ls, inspect.
    #[command(subcommand)]
    Volume(volume::Command),
    /// Live CPU, memory, network and process counts per container (like `docker stats`).
    Stats(stats::StatsArgs),
    /// The processes running in a container (like `docker top`).
    Top(stats::TopArgs),
    /// Print a shell completion script: `agent completion bash > /etc/bash_completion.d/agent`.
    Completion(completion::CompletionArgs),
    /// Write agent manifests from other formats: `agent convert compose [-f FILE]... [-o DIR]`.
    #[command(subcommand)]
    Convert(convert::Command),
    /// Write man pages (agent.1, agent-ps.1, ...) into a directory.
    Man(completion::ManArgs),
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> crate::Result<Outcome> {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Image(cmd) => image::run(cmd),
        Command::Export(args) => image::export(args),
        Command::Monitor(args) => exec::monitor(args),
        Command::DnsServer(args) => dns::run(args),
        Command::Logs(args) => exec::logs(args),
        Command::Exec(args) => exec::exec(args),
        Command::Stop(args) => container::stop(args),
        Command::Start(args) => container::start(args),
        Command::Kill(args) => exec::kill(args),
        Command::Run(args) => daemon::run(args),
        Command::Ps(args) => daemon::ps(args),
        Command::Status(args) => daemon::status(args),
        Command::Inspect(args) => daemon::inspect(args),
        Command::Events(args) => daemon::events(args),
        Command::Apply(args) => daemon::apply(args),
        Command::System(cmd) => system::run(cmd),
        Command::Volume(cmd) => volume::run(cmd),
        Command::Stats(args) => stats::stats(args),
        Command::Top(args) => stats::top(args),
        Command::Completion(args) => completion::completion(args),
        Command::Man(args) => completion::man(args),
        Command::Convert(cmd) => convert::run(cmd),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for (`--help`, the man pages
    /// and the completions show it).
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = super::Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "agent", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }
}
