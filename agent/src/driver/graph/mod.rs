//! Graph driver: content-addressed blobs, layers, overlay/vfs mounts, archive import, registry pull.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
