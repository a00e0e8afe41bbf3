//! The `agent` binary: parse arguments, set up logging, run the command, map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match agent::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
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
            ExitCode::from(2)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent: {e}");
            ExitCode::from(1)
        }
    }
}
