//! Secrets in a bundle: each [`SecretFile`] is read from the host (held to the secret permission
//! rule at that moment too), copied into `<bundle>/secrets/` (0700, root only) with the owner and
//! mode the container asked for, and bound read-only at its target; each `secret_env` variable
//! is read the same way into the runtime spec's environment (one trailing newline dropped, as a
//! shell's `$(cat file)` would). Errors name the secret and the file, never the value.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use oci_spec::runtime::{MountBuilder, Spec};

use super::Error;
use super::spec::ContainerSpec;
use crate::manifest::source::perms;

fn invalid(spec: &ContainerSpec, field: String, reason: String) -> Error {
    Error::InvalidSpec {
        container: spec.name.clone(),
        field,
        reason,
    }
}

/// Copies the secrets into `<dir>/secrets/` and adds their mounts and variables to `oci`.
pub fn apply(dir: &Path, spec: &ContainerSpec, oci: &mut Spec) -> Result<(), Error> {
    let sdir = dir.join("secrets");
    match fs::remove_dir_all(&sdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove old secrets", &sdir)(e)),
    }
    if spec.secrets.is_empty() && spec.secret_env.is_empty() {
        return Ok(());
    }
    fs::create_dir(&sdir).map_err(Error::io("create directory", &sdir))?;
    fs::set_permissions(&sdir, fs::Permissions::from_mode(0o700))
        .map_err(Error::io("chmod", &sdir))?;
    let mut mounts = oci.mounts().clone().unwrap_or_default();
    for (i, s) in spec.secrets.iter().enumerate() {
        let field = format!("secrets[{}]", s.name);
        let value = perms::read_secret(&s.source)
            .map_err(|e| invalid(spec, field.clone(), e.to_string()))?;
        if mounts
            .iter()
            .any(|m| m.destination().as_path() == Path::new(&s.target))
        {
            return Err(invalid(
                spec,
                field,
                format!("{} is already a mount target", s.target),
            ));
        }
        let copy = sdir.join(format!("{i}-{}", s.name));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)
            .map_err(Error::io("create", &copy))?;
        f.write_all(&value).map_err(Error::io("write", &copy))?;
        f.sync_all().map_err(Error::io("fsync", &copy))?;
        std::os::unix::fs::fchown(&f, Some(s.uid), Some(s.gid))
            .map_err(Error::io("chown", &copy))?;
        f.set_permissions(fs::Permissions::from_mode(s.mode & 0o777))
            .map_err(Error::io("chmod", &copy))?;
        mounts.push(
            MountBuilder::default()
                .destination(&s.target)
                .typ("bind")
                .source(&copy)
                .options(
                    ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()?,
        );
    }
    oci.set_mounts(Some(mounts));
    if spec.secret_env.is_empty() {
        return Ok(());
    }
    let mut env: Vec<String> = oci
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    for (var, source) in &spec.secret_env {
        let field = format!("secretEnv.{var}");
        let value =
            perms::read_secret(source).map_err(|e| invalid(spec, field.clone(), e.to_string()))?;
        let mut text = String::from_utf8(value).map_err(|_| {
            invalid(
                spec,
                field.clone(),
                format!(
                    "{}: not UTF-8 text, which an environment variable must be (mount it as a file instead)",
                    source.display()
                ),
            )
        })?;
        if text.ends_with('\n') {
            text.pop();
        }
        if text.contains('\0') {
            return Err(invalid(
                spec,
                field,
                format!(
                    "{}: holds a NUL byte, which an environment variable cannot",
                    source.display()
                ),
            ));
        }
        let prefix = format!("{var}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{var}={text}"));
    }
    if let Some(p) = oci.process_mut() {
        p.set_env(Some(env));
    }
    Ok(())
}
