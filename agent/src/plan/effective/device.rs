//! The devices of a container, canonical: `devices` as their short forms (sorted, without
//! repeats), `deviceCgroupRules` canonical (`c 188:* rwm`), `privileged`. All fixed fields: a
//! change recreates the container. Empty fields are left out of the stored config, so that
//! containers without devices keep their hash.

use serde::{Deserialize, Serialize};

use crate::manifest::ContainerSpec;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EffectiveDevices {
    /// `/dev/video0:/dev/cam0:rw`, `/dev/ttyUSB0`, `nvidia.com/gpu=all`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

impl EffectiveDevices {
    pub fn from_spec(s: &ContainerSpec) -> EffectiveDevices {
        let sorted = |v: Vec<String>| {
            let set: std::collections::BTreeSet<String> = v.into_iter().collect();
            set.into_iter().collect::<Vec<_>>()
        };
        EffectiveDevices {
            devices: sorted(s.devices.iter().map(ToString::to_string).collect()),
            device_cgroup_rules: sorted(
                s.device_cgroup_rules
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            privileged: s.privileged,
        }
    }
}
