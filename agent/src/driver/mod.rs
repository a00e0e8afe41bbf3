//! The three drivers, as in the Docker daemon: graph (images and layers), exec (namespaces,
//! cgroups, rlimits) and network (bridge, veth, addresses, ports, links). Each is a trait with a
//! closed enum of implementations and a selector that picks what the host supports.

pub mod exec;
pub mod graph;
pub mod network;
