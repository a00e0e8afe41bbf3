//! OCI image layouts built by the tests: the busybox test image's layers plus one layer and a
//! config made here, each tagged with `org.opencontainers.image.ref.name`. Used to test tag
//! selection, rebuilt layouts, half-written layouts and image volumes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// The busybox test image's OCI layout.
pub const BUSYBOX_LAYOUT: &str = "/var/lib/agent-test-images/oci";

/// One entry of the extra layer.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    /// `None`: a directory.
    pub data: Option<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    /// `user.*` extended attributes (written as PAX `SCHILY.xattr.` records).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn dir(path: &str, uid: u64, gid: u64, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            data: None,
            uid,
            gid,
            mode,
            xattrs: Vec::new(),
        }
    }
    pub fn file(path: &str, data: &[u8], uid: u64, gid: u64, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            data: Some(data.to_vec()),
            uid,
            gid,
            mode,
            xattrs: Vec::new(),
        }
    }
    pub fn xattr(mut self, key: &str, value: &[u8]) -> Entry {
        self.xattrs.push((key.into(), value.to_vec()));
        self
    }
}

/// An OCI layout directory under construction.
pub struct Layout {
    pub dir: PathBuf,
    /// index.json's manifest descriptors.
    manifests: Vec<serde_json::Value>,
}

/// What [`Layout::add`] wrote.
#[derive(Debug, Clone)]
pub struct Added {
    /// The index.json descriptor.
    pub descriptor: serde_json::Value,
    pub manifest: String,
    /// The config digest: the image id the agent records.
    pub config: String,
    /// The extra layer's blob digest.
    pub layer: String,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pax(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body_len = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        out.extend(format!("{len} {k}=").as_bytes());
        out.extend(v);
        out.push(b'\n');
    }
    out
}

/// A layer tar of `entries`.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.xattrs.is_empty() {
            let recs: Vec<(String, Vec<u8>)> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
                .collect();
            let body = pax(&recs);
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "PaxHeaders/x", &body[..])
                .expect("pax header");
        }
        let mut h = tar::Header::new_gnu();
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mode(e.mode);
        h.set_mtime(1_700_000_000);
        match &e.data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, &e.path, std::io::empty())
                    .expect("dir entry");
            }
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, &e.path, &d[..]).expect("file entry");
            }
        }
    }
    b.into_inner().expect("layer tar")
}

impl Layout {
    /// An empty layout in `dir` holding the busybox blobs (index.json lists nothing until
    /// [`Layout::write_index`]). Files 0644, directories 0755 (the agent refuses writable ones).
    pub fn new(dir: &Path) -> Layout {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("mkdir layout");
        for d in [dir, &dir.join("blobs"), &blobs] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        for e in std::fs::read_dir(Path::new(BUSYBOX_LAYOUT).join("blobs/sha256"))
            .expect("busybox layout (scripts/build-test-images.sh)")
            .flatten()
        {
            let to = blobs.join(e.file_name());
            std::fs::copy(e.path(), &to).expect("copy blob");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let l = Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        };
        l.put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        l
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        let p = self.dir.join(rel);
        let tmp = self.dir.join(format!(".{}.tmp", rel.replace('/', "_")));
        std::fs::write(&tmp, bytes).expect("write layout file");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::rename(&tmp, &p).expect("rename layout file");
    }

    /// Writes blob `bytes`; returns its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha(bytes);
        self.put(&format!("blobs/sha256/{}", &d[7..]), bytes);
        d
    }

    fn busybox() -> (serde_json::Value, serde_json::Value) {
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(BUSYBOX_LAYOUT).join("index.json")).expect("index.json"),
        )
        .expect("index JSON");
        let mdigest = index["manifests"][0]["digest"].as_str().unwrap_or_default();
        let read = |d: &str| -> serde_json::Value {
            serde_json::from_slice(
                &std::fs::read(Path::new(BUSYBOX_LAYOUT).join("blobs/sha256").join(&d[7..]))
                    .expect("blob"),
            )
            .expect("blob JSON")
        };
        let manifest = read(mdigest);
        let config = read(manifest["config"]["digest"].as_str().unwrap_or_default());
        (manifest, config)
    }

    /// Writes an image (busybox's layers, then one layer of `entries`; the busybox config with
    /// `config` merged into its `config` object, e.g. `{"Volumes": {"/data": {}}}`) and lists it
    /// in index.json under `ref_name` (replacing an entry of the same name). Blobs are written
    /// before index.json, as a finished build does.
    pub fn add(&mut self, ref_name: &str, entries: &[Entry], config: serde_json::Value) -> Added {
        let (mut manifest, mut cfg) = Layout::busybox();
        let tar = layer_tar(entries);
        let layer = self.blob(&tar);
        let diff_id = layer.clone();
        if let (Some(c), Some(patch)) = (cfg["config"].as_object_mut(), config.as_object()) {
            for (k, v) in patch {
                c.insert(k.clone(), v.clone());
            }
        }
        if let Some(ids) = cfg["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(serde_json::json!(diff_id));
        }
        if let Some(h) = cfg["history"].as_array_mut() {
            h.push(serde_json::json!({"created_by": format!("test layer {ref_name}")}));
        }
        let cfg_bytes = serde_json::to_vec(&cfg).expect("config JSON");
        let config_digest = self.blob(&cfg_bytes);
        manifest["config"]["digest"] = serde_json::json!(config_digest);
        manifest["config"]["size"] = serde_json::json!(cfg_bytes.len());
        if let Some(ls) = manifest["layers"].as_array_mut() {
            ls.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer, "size": tar.len()
            }));
        }
        let m_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
        let m_digest = self.blob(&m_bytes);
        let descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest, "size": m_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        });
        self.manifests
            .retain(|d| d["annotations"]["org.opencontainers.image.ref.name"] != ref_name);
        self.manifests.push(descriptor.clone());
        self.write_index();
        Added {
            descriptor,
            manifest: m_digest,
            config: config_digest,
            layer,
        }
    }

    /// Rewrites index.json from the manifests added so far.
    pub fn write_index(&self) {
        self.write_index_of(&self.manifests);
    }

    /// Writes index.json listing `manifests` (atomically).
    pub fn write_index_of(&self, manifests: &[serde_json::Value]) {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.put(
            "index.json",
            &serde_json::to_vec(&index).expect("index JSON"),
        );
    }
}
