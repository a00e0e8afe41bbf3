//! Helpers for the graph driver's end-to-end tests: running `agent image ...`, the busybox test
//! images, a private `docker-registry` on 127.0.0.1, `skopeo`, and a TCP proxy that cuts
//! connections to simulate a broken download.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `agent` binary (built once per test process; see [`crate::agent_bin`]).
pub fn agent_bin() -> PathBuf {
    crate::agent_bin()
}

/// Whether we run as root; prints why a test is skipped when not.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: skipped: needs root (layer ownership, mounts)");
    }
    root
}

/// Runs `agent <args>` and returns its output (stdout, stderr, status).
pub fn agent(args: &[&str]) -> Output {
    Command::new(agent_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run agent {args:?}: {e}"))
}

/// Runs `agent <args>` and panics with its output unless it succeeded; returns stdout.
pub fn agent_ok(args: &[&str]) -> String {
    let out = agent(args);
    assert!(
        out.status.success(),
        "agent {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `agent image ls --format json` under `state` as JSON values.
pub fn images(state: &Path) -> Vec<serde_json::Value> {
    let s = agent_ok(&[
        "image",
        "ls",
        "--format",
        "json",
        "--state-dir",
        &state.to_string_lossy(),
    ]);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("image ls JSON: {e}: {s}"))
}

/// The busybox test images built by scripts/build-test-images.sh, with their digests.
pub struct TestImages {
    pub dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl TestImages {
    pub fn get() -> TestImages {
        let dir = std::env::var_os("AGENT_TEST_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/agent-test-images"));
        let env = std::fs::read_to_string(dir.join("digests.env")).unwrap_or_else(|e| {
            panic!(
                "{}/digests.env: {e}; build the test images with scripts/build-test-images.sh",
                dir.display()
            )
        });
        let vars = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        TestImages { dir, vars }
    }

    /// A value from digests.env (`CONFIG_DIGEST`, `LAYER1_BLOB`, ...).
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("digests.env has no {name}"))
    }

    /// `oci:<dir>:latest` for skopeo.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:latest", self.dir.join("oci").display())
    }
}

/// Runs skopeo with `args`; panics with its output on failure. Returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run skopeo (apt install skopeo): {e}"));
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Debian's `docker-registry` serving plain HTTP on 127.0.0.1 with its own config and storage;
/// killed (by its pid) on drop. It never uses the package's system config or service.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
    creds: Option<String>,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `auth` (`user`, `password`, bcrypt hash of the password), the registry requires HTTP
    /// basic auth; `push` and `digest` then log in with those credentials.
    pub fn start_with(auth: Option<(&str, &str, &str)>) -> Registry {
        let htpasswd = auth.map(|(u, _, h)| format!("{u}:{h}"));
        let creds = auth.map(|(u, p, _)| format!("{u}:{p}"));
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            let config = match &htpasswd {
                Some(line) => {
                    let file = dir.path().join("htpasswd");
                    std::fs::write(&file, format!("{line}\n")).unwrap_or_else(|e| panic!("{e}"));
                    format!(
                        "{config}auth:\n  htpasswd:\n    realm: agent-test\n    path: {}\n",
                        file.display()
                    )
                }
                None => config,
            };
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("{e}"));
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .unwrap_or_else(|e| panic!("{e}"));
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("start docker-registry (apt install docker-registry): {e}")
                });
            let mut reg = Registry {
                dir,
                port,
                child,
                creds: creds.clone(),
            };
            if reg.wait_ready() {
                return reg;
            }
            // Lost the port race or failed to start: try another port.
            let _ = reg.child.kill();
        }
        panic!("docker-registry did not start on 127.0.0.1");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if matches!(http_get_status(self.port, "/v2/"), Some(200 | 401)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a skopeo source (`oci:dir:tag`) to `repo:tag` here; `all` copies every platform.
    pub fn push(&self, src: &str, repo_tag: &str, all: bool) {
        let dest = format!("docker://{}/{repo_tag}", self.host());
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        if let Some(c) = &self.creds {
            args.extend(["--dest-creds", c.as_str()]);
        }
        args.extend([src, dest.as_str()]);
        skopeo(&args);
    }

    /// The digest the registry has for `repo:tag` (of the manifest or index bytes).
    pub fn digest(&self, repo_tag: &str) -> String {
        format!("sha256:{}", sha256_hex(self.raw(repo_tag).as_bytes()))
    }

    /// The manifest or index `repo:tag` names, as the registry serves it.
    pub fn raw(&self, repo_tag: &str) -> String {
        let src = format!("docker://{}/{repo_tag}", self.host());
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        if let Some(c) = &self.creds {
            args.extend(["--creds", c.as_str()]);
        }
        args.push(&src);
        skopeo(&args)
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex_encode(&sha2::Sha256::digest(bytes))
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A minimal HTTP/1.0 GET; returns the status code.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that cuts a connection after it has passed
/// `cut_after` response bytes, for the first `cuts` connections that get that far. It records
/// every request head it forwards.
pub struct CutProxy {
    pub port: u16,
    cuts_left: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream: u16, cut_after: usize, cuts: usize) -> CutProxy {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, r, st) = (cuts_left.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c, r) = (c.clone(), r.clone());
                std::thread::spawn(move || relay(client, server, cut_after, c, r));
            }
        });
        CutProxy {
            port,
            cuts_left,
            requests,
            stop,
        }
    }

    /// Arms the proxy to cut `n` more connections.
    pub fn set_cuts(&self, n: usize) {
        self.cuts_left.store(n, Ordering::SeqCst);
    }

    pub fn cuts_left(&self) -> usize {
        self.cuts_left.load(Ordering::SeqCst)
    }

    /// Request heads seen so far (lowercased).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    cut_after: usize,
    cuts_left: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Client -> server: forward, recording request heads.
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            if (text.starts_with("get ") || text.starts_with("head "))
                && let Ok(mut v) = requests.lock()
            {
                v.push(text);
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    // Server -> client: forward, cutting when armed and past the threshold.
    let (mut s_read, mut c_write) = (server, client);
    let mut passed = 0usize;
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if passed + n > cut_after
            && cuts_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                .is_ok()
        {
            let keep = cut_after.saturating_sub(passed);
            let _ = c_write.write_all(&buf[..keep]);
            let _ = c_write.shutdown(Shutdown::Both);
            let _ = s_read.shutdown(Shutdown::Both);
            break;
        }
        passed += n;
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// Builds tar archives entry by entry with raw GNU headers: names and link targets are written
/// as given (no sanitising), so hostile archives can be made.
#[derive(Default)]
pub struct RawTar(Vec<u8>);

/// Tar entry types used by [`RawTar`].
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDev(u32, u32),
    Pax,
}

impl RawTar {
    /// Appends one entry. `size` overrides the size field (to lie about it); `data` follows.
    pub fn entry(
        &mut self,
        kind: Kind,
        name: &str,
        link: &str,
        data: &[u8],
        size: Option<u64>,
    ) -> &mut Self {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], off: usize, len: usize, v: &[u8]| {
            let n = v.len().min(len);
            h[off..off + n].copy_from_slice(&v[..n]);
        };
        let octal = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
            let s = format!("{v:0width$o}\0", width = len - 1);
            put(h, off, len, s.as_bytes());
        };
        put(&mut h, 0, 100, name.as_bytes());
        let mode = match kind {
            Kind::Dir => 0o755,
            _ => 0o644,
        };
        octal(&mut h, 100, 8, mode);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size.unwrap_or(data.len() as u64));
        octal(&mut h, 136, 12, 0);
        let flag = match kind {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDev(..) => b'3',
            Kind::Dir => b'5',
            Kind::Pax => b'x',
        };
        h[156] = flag;
        put(&mut h, 157, 100, link.as_bytes());
        put(&mut h, 257, 8, b"ustar  \0");
        if let Kind::CharDev(major, minor) = kind {
            octal(&mut h, 329, 8, major.into());
            octal(&mut h, 337, 8, minor.into());
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h, 148, 7, sum.into());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(Kind::File, name, "", data, None)
    }

    /// The archive with its two zero end blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.0);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// A snapshot of a directory tree: path -> (kind, contents or link target, mode).
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, (String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = m.permissions().mode();
        let entry = if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap_or_default();
            (
                "symlink".to_string(),
                t.into_os_string().into_encoded_bytes(),
                mode,
            )
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(e.path());
            }
            ("dir".to_string(), Vec::new(), mode)
        } else {
            (
                "file".to_string(),
                std::fs::read(&p).unwrap_or_default(),
                mode,
            )
        };
        out.insert(p, entry);
    }
    out
}
