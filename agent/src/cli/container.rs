//! `agent stop` and `agent start`.
//!
//! With the agent running they go through its API, so that the agent records the container
//! stopped-by-user (its restart policy leaves it alone; see [`crate::reconcile::request`]) and
//! never races a change it is applying. When no agent answers on the socket they act on the store
//! and the exec driver directly, with the same bookkeeping. A container the store does not know
//! (one made with the exec driver alone) is stopped or started by its name or id in the exec
//! driver's state.

use std::path::Path;

use super::Outcome;
use super::daemon::ClientOpts;
use crate::api::ClientError;
use crate::driver::exec::{ExecConfig, ExecDriver, MonitorDriver, paths};
use crate::reconcile::report::ActionReport;
use crate::reconcile::request::{self, RequestError};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The containers' names (or ids).
    #[arg(required = true)]
    pub name: Vec<String>,
    /// Seconds to wait after the stop signal before SIGKILL, 0 to 86400 (default: the
    /// container's grace period, 10 s unless configured).
    #[arg(short = 't', long = "time")]
    pub time: Option<f64>,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The containers' names (or ids).
    #[arg(required = true)]
    pub name: Vec<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Without the agent: the store's bookkeeping when the store knows `name`, else the exec
/// driver alone.
fn offline(
    state: &Path,
    name: &str,
    with_store: impl FnOnce(
        &std::sync::Mutex<Store>,
        &MonitorDriver,
    ) -> Result<ActionReport, RequestError>,
    driver_only: impl FnOnce(&MonitorDriver, &str) -> Result<(), crate::driver::exec::Error>,
) -> crate::Result<()> {
    let driver = MonitorDriver::new(ExecConfig::new(state));
    if state.join(crate::store::DB_FILE).exists() {
        let store = std::sync::Mutex::new(Store::open(state)?);
        match with_store(&store, &driver) {
            Err(RequestError::NotFound(_)) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(crate::Error::Failed(e.to_string())),
        }
    }
    let id = paths::resolve_name(state, name)?;
    driver_only(&driver, &id)?;
    Ok(())
}

fn each(
    names: &[String],
    client_opts: &ClientOpts,
    path: impl Fn(&str) -> String,
    offline_one: impl Fn(&Path, &str) -> crate::Result<()>,
) -> crate::Result<Outcome> {
    let (client, state) = client_opts.resolve()?;
    let mut failed = false;
    let mut said = false;
    for name in names {
        let result = match client.call::<ActionReport>(true, &path(name)) {
            Ok(_) => Ok(()),
            Err(ClientError::NotRunning(socket)) => {
                if !said {
                    eprintln!(
                        "agent: the agent is not running (nothing listens on {}); acting on {} directly",
                        socket.display(),
                        state.display()
                    );
                    said = true;
                }
                offline_one(&state, name)
            }
            Err(e) => Err(crate::api::Error::from(e).into()),
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("agent: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { Outcome::FAILED } else { Outcome::OK })
}

pub fn stop(args: StopArgs) -> crate::Result<Outcome> {
    let grace = args
        .time
        .map(crate::api::server::grace_secs)
        .transpose()
        .map_err(|msg| crate::Error::Usage(format!("-t {msg}")))?;
    each(
        &args.name,
        &args.client,
        |name| {
            let mut p = format!("/v1/containers/{}/stop", super::daemon::url_escape(name));
            if let Some(g) = grace {
                p.push_str(&format!("?time={}", g.as_secs_f64()));
            }
            p
        },
        |state, name| {
            offline(
                state,
                name,
                |store, d| request::stop(store, d, name, grace),
                |d, id| d.stop(id, grace).map(|_| ()),
            )
        },
    )
}

pub fn start(args: StartArgs) -> crate::Result<Outcome> {
    each(
        &args.name,
        &args.client,
        |name| format!("/v1/containers/{}/start", super::daemon::url_escape(name)),
        |state, name| {
            offline(
                state,
                name,
                |store, d| request::start(store, d, name),
                |d, id| d.start(id).map(|_| ()),
            )
        },
    )
}
