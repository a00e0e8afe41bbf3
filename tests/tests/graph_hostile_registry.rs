//! `agent image pull` against hostile registries: a tiny HTTP server on 127.0.0.1 in this test
//! (a std `TcpListener` thread) that
//! - streams an endless manifest (chunked, no length): the pull fails with "manifest larger than
//!   4 MiB" and its peak RSS (`ru_maxrss` from `wait4`) stays small (the old code read the whole
//!   body first: the server stops after 256 MiB so that the old code ends at all);
//! - announces a manifest of 1 TiB (`Content-Length`): refused before reading, saying so;
//! - sends the client to a token endpoint that never answers: the pull fails saying the token
//!   request timed out, with its URL and the timeout (`--timeout 2`), not "not authorized".

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agent_e2e::graph::agent_bin;

/// How the fake registry answers a manifest request.
#[derive(Clone, Copy)]
enum Mode {
    /// 200, chunked, endless JSON-ish bytes (up to [`SAFETY_BUDGET`]).
    Endless,
    /// 200 with `Content-Length: 1 TiB`, then the same bytes.
    HugeLength,
    /// `/v2/` asks for a bearer token from `/token`, which never answers.
    HangingToken,
}

/// What the server sends at most on one connection (the old code reads it all).
const SAFETY_BUDGET: u64 = 256 << 20;

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Manifest bytes sent, all connections.
    sent: Arc<AtomicU64>,
}

impl Server {
    fn start(mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (stop3, sent3) = (stop2.clone(), sent2.clone());
                std::thread::spawn(move || serve(conn, mode, port, &stop3, &sent3));
            }
        });
        Server { port, stop, sent }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(conn: TcpStream, mode: Mode, port: u16, stop: &AtomicBool, sent: &AtomicU64) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let ok = if path == "/v2/" || path.starts_with("/v2/?") {
            match mode {
                Mode::HangingToken => respond(
                    &mut out,
                    "401 Unauthorized",
                    &format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"hostile\"\r\n"
                    ),
                    b"{}",
                ),
                _ => respond(&mut out, "200 OK", "", b"{}"),
            }
        } else if path.starts_with("/token") {
            // Never answer; hold the connection until the test ends.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        } else if path.contains("/manifests/") {
            match mode {
                Mode::Endless => endless(&mut out, None, sent),
                Mode::HugeLength => endless(&mut out, Some(1 << 40), sent),
                Mode::HangingToken => {
                    respond(&mut out, "401 Unauthorized", "", b"{}");
                }
            }
            return;
        } else {
            respond(&mut out, "404 Not Found", "", b"{}")
        };
        if !ok {
            return;
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes()).is_ok() && out.write_all(body).is_ok()
}

/// A 200 manifest response whose body never ends (until the budget or the client hangs up).
fn endless(out: &mut TcpStream, length: Option<u64>, sent: &AtomicU64) {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{framing}\r\n"
    );
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let piece = {
        let mut p = b"{\"schemaVersion\":2,\"layers\":[".to_vec();
        p.resize(64 * 1024, b' ');
        p
    };
    let mut total = 0u64;
    while total < SAFETY_BUDGET {
        let ok = match length {
            Some(_) => out.write_all(&piece).is_ok(),
            None => {
                out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .is_ok()
                    && out.write_all(&piece).is_ok()
                    && out.write_all(b"\r\n").is_ok()
            }
        };
        if !ok {
            return;
        }
        total += piece.len() as u64;
        sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
    }
    if length.is_none() {
        let _ = out.write_all(b"0\r\n\r\n");
    }
}

/// Runs `agent image pull` to its end; returns (exit code, stderr, peak RSS in KiB).
fn pull(reference: &str, host: &str, extra: &[&str]) -> (Option<i32>, String, i64) {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err_path = state.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(agent_bin())
        .args([
            "image",
            "pull",
            "-q",
            "--retries",
            "0",
            "--insecure-registry",
            host,
        ])
        .args(extra)
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .arg(reference)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn agent image pull: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child (not waited for by `Child` before: it is forgotten).
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (code, stderr, usage.ru_maxrss)
}

#[test]
fn an_endless_manifest_is_refused_with_bounded_memory() {
    let server = Server::start(Mode::Endless);
    let host = server.host();
    let (code, stderr, rss_kib) = pull(&format!("{host}/hostile/endless:v1"), &host, &[]);
    let sent = server.sent.load(Ordering::SeqCst);
    eprintln!("endless manifest: peak RSS {rss_kib} KiB, {sent} bytes sent; {stderr}");
    // The old code read the whole 256 MiB (RSS over 256 MiB); reading stops at 4 MiB now.
    assert!(
        rss_kib < 96 * 1024,
        "peak RSS {rss_kib} KiB while refusing a manifest ({sent} bytes sent): {stderr}"
    );
    assert!(
        sent < SAFETY_BUDGET,
        "the client read the whole {SAFETY_BUDGET} bytes the server had"
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("manifest larger than 4 MiB"),
        "the error must say why: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_huge_content_length_is_refused_before_reading() {
    let server = Server::start(Mode::HugeLength);
    let host = server.host();
    let (code, stderr, rss_kib) = pull(&format!("{host}/hostile/huge:v1"), &host, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("manifest larger than 4 MiB")
            && stderr.contains("1099511627776 bytes (Content-Length)"),
        "{stderr}"
    );
    eprintln!("1 TiB Content-Length: peak RSS {rss_kib} KiB; {stderr}");
    assert!(rss_kib < 96 * 1024, "peak RSS {rss_kib} KiB: {stderr}");
}

#[test]
fn a_hanging_token_endpoint_is_reported_as_a_timeout() {
    let server = Server::start(Mode::HangingToken);
    let host = server.host();
    let (code, stderr, _) = pull(
        &format!("{host}/hostile/token:v1"),
        &host,
        &["--timeout", "2"],
    );
    eprintln!("hanging token endpoint: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("timed out")
            && stderr.contains(&format!("http://{host}/token"))
            && stderr.contains("2s"),
        "the error must name the token URL, the timeout and say it timed out: {stderr}"
    );
    assert!(!stderr.contains("not authorized"), "{stderr}");
}
