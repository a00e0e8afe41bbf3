//! The `agent` binary: parse arguments, set up logging, run the command, map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match agent::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap says 2 for a usage error; the agent's table says 64 (EX_USAGE), so that a
            // pipeline tells a typo from `agent plan`'s "changes pending" (2).
            let code = if e.use_stderr() {
                agent::cli::Outcome::USAGE.0
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    agent::daemon::logging::init(&agent::cli::daemon::log_settings(&cli));
    match agent::cli::dispatch(cli) {
        Ok(outcome) => ExitCode::from(outcome.0),
        Err(agent::Error::Usage(msg)) => {
            // Not `eprintln!`: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "agent: {msg}");
            ExitCode::from(agent::cli::Outcome::USAGE.0)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent: {e}");
            ExitCode::from(1)
        }
    }
}
