//! What `agent validate` warns about without refusing: fields that give a container the host
//! (`privileged`) and host devices that are not there now (they may come later: a USB device
//! plugged in before the container starts; creating the container fails while one is missing).

use std::path::Path;

use super::diag;
use crate::manifest::device::Device;
use crate::manifest::node::Step::{Index, Key};
use crate::manifest::{Diagnostic, Loaded, Manifest};

/// The warnings for every valid object of `loaded`, in file order.
pub fn warnings(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for obj in loaded.objects() {
        let Manifest::Container(c) = &obj.manifest else {
            continue;
        };
        if c.spec.privileged {
            out.push(diag(
                obj,
                &[Key("spec"), Key("privileged")],
                "privileged: every capability, every host device, no seccomp filter and a \
                 writable /sys: this container is root on the host (docs/security.md)"
                    .into(),
            ));
        }
        for (i, d) in c.spec.devices.iter().enumerate() {
            if let Device::Node { source, .. } = d
                && !host_has_device(source)
            {
                out.push(diag(
                    obj,
                    &[Key("spec"), Key("devices"), Index(i)],
                    format!(
                        "device {} is not a device node on this host now: creating the \
                         container fails while it is missing",
                        source.display()
                    ),
                ));
            }
        }
    }
    out
}

fn host_has_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p)
        .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
}
