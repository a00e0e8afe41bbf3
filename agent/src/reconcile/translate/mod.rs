//! From the effective config of a container or network to what the drivers are told: the
//! exec driver's [`ContainerSpec`](crate::driver::exec::spec::ContainerSpec) and live update
//! ([`spec`]), and the network driver's networks, attach requests, hosts and resolv.conf files
//! ([`network`], which also owns the network driver handle the applier calls). The drivers are
//! told finished values (addresses, ports, paths), never asked to decide.

pub mod network;
pub mod spec;
