//! Platforms (`os/arch[/variant]`) and choosing the right manifest of a multi-platform index for
//! this host, including the ARM variant rules containerd uses: `arm64` and `arm64/v8` are the
//! same; an `arm/v7` host also runs `v6` and `v5` images (preferring the highest it can), an
//! `arm/v6` host also `v5`, never the other way round.

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Normalises architecture names and the implied default variants (`arm64` -> `v8`,
    /// `arm` -> `v7`, `aarch64` -> `arm64`, `x86_64` -> `amd64`).
    pub fn normalized(&self) -> Platform {
        let arch = match self.architecture.as_str() {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "armhf" | "armel" => "arm",
            "i386" | "i686" => "386",
            a => a,
        }
        .to_string();
        let variant = match (arch.as_str(), self.variant.as_deref()) {
            ("arm64", None | Some("") | Some("8")) => Some("v8".to_string()),
            ("arm", None | Some("")) => Some("v7".to_string()),
            ("arm", Some(v)) if !v.starts_with('v') => Some(format!("v{v}")),
            ("amd64" | "386", _) => None,
            (_, v) => v.filter(|s| !s.is_empty()).map(str::to_string),
        };
        Platform {
            os: self.os.clone(),
            architecture: arch,
            variant,
        }
    }

    /// How well an image for `image` fits a host `self`: `None` = cannot run, lower is better.
    pub fn rank(&self, image: &Platform) -> Option<u32> {
        let (h, i) = (self.normalized(), image.normalized());
        if h.os != i.os || h.architecture != i.architecture {
            return None;
        }
        if h.variant == i.variant {
            return Some(0);
        }
        if h.architecture == "arm" {
            let num = |v: &Option<String>| {
                v.as_deref()
                    .and_then(|s| s.trim_start_matches('v').parse::<u32>().ok())
            };
            let (hv, iv) = (num(&h.variant)?, num(&i.variant)?);
            return (iv <= hv).then(|| hv - iv);
        }
        None
    }

    /// The host this process runs on. On 32-bit ARM the variant comes from `/proc/cpuinfo`.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            a => a,
        };
        let variant = match arch {
            "arm64" => Some("v8".to_string()),
            "arm" => std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| arm_variant(&c)),
            _ => None,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant,
        }
    }
}

/// The ARM variant from `/proc/cpuinfo` ("CPU architecture: 7" -> "v7").
pub fn arm_variant(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo
        .lines()
        .find(|l| l.starts_with("CPU architecture"))?;
    let value = line.split(':').nth(1)?.trim();
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.parse::<u32>().ok()? {
        n if n >= 8 => Some("v8".into()),
        n => Some(format!("v{n}")),
    }
}

/// Index of the best candidate for `host`, or `None` when none can run.
pub fn choose(host: &Platform, candidates: &[Platform]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter_map(|(i, p)| host.rank(p).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        let mut it = s.split('/');
        Platform {
            os: it.next().unwrap_or_default().into(),
            architecture: it.next().unwrap_or_default().into(),
            variant: it.next().map(str::to_string),
        }
    }

    #[test]
    fn arm_variants() {
        let all = [
            p("linux/amd64"),
            p("linux/arm/v5"),
            p("linux/arm/v6"),
            p("linux/arm/v7"),
            p("linux/arm64"),
        ];
        assert_eq!(choose(&p("linux/arm/v7"), &all), Some(3));
        assert_eq!(choose(&p("linux/arm/v6"), &all), Some(2));
        assert_eq!(choose(&p("linux/arm/v6"), &[p("linux/arm/v7")]), None);
        assert_eq!(
            choose(&p("linux/arm/v7"), &[p("linux/arm/v5"), p("linux/arm/v6")]),
            Some(1)
        );
        assert_eq!(choose(&p("linux/arm64"), &all), Some(4));
        assert_eq!(
            choose(&p("linux/arm64/v8"), &[p("linux/arm64/v8")]),
            Some(0)
        );
        assert_eq!(choose(&p("linux/arm64"), &[p("linux/arm/v7")]), None);
        assert_eq!(choose(&p("linux/amd64"), &all), Some(0));
        assert_eq!(choose(&p("linux/amd64"), &[p("windows/amd64")]), None);
        // "arm" without a variant means v7.
        assert_eq!(choose(&p("linux/arm/v7"), &[p("linux/arm")]), Some(0));
    }

    #[test]
    fn cpuinfo_variant() {
        assert_eq!(
            arm_variant("processor: 0\nCPU architecture: 7\n").as_deref(),
            Some("v7")
        );
        assert_eq!(arm_variant("CPU architecture: 8\n").as_deref(), Some("v8"));
        assert_eq!(
            arm_variant("CPU architecture\t: 6TEJ\n").as_deref(),
            Some("v6")
        );
        assert_eq!(arm_variant("nothing"), None);
    }

    #[test]
    fn host_is_known() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert_eq!(h.rank(&h), Some(0));
    }
}
