//! Fetching a manifest or an index: one GET with a size cap, never a whole body in memory first.
//!
//! oci-client reads a manifest response whole before anyone can look at its size, so a hostile
//! or broken registry streaming an endless body takes the process's memory with it. Here the
//! request is made with the same credentials (oci-client still does the token dance, in
//! [`token`], and keeps the token for the blob requests), and the body is read chunk by chunk with
//! a running count: a `Content-Length` above the cap is refused before any of the body is read,
//! and a body without one is refused as soon as it passes the cap. Error bodies (shown in
//! messages) are capped too ([`MAX_ERROR_BODY`]).
//!
//! A token request that does not answer in time is reported as such, with its URL and the
//! timeout (oci-client would drop the error and the registry's 401 would follow, "not
//! authorized").

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::fetch::{Attempt, classify};
use super::{ACCEPT, MAX_CONFIG, MAX_MANIFEST};
use crate::driver::graph::Error;
use crate::driver::graph::import::{MT_OCI_INDEX, MT_OCI_MANIFEST, ManifestDoc};

/// How much of an error response is read for the message.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why [`read_capped`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CapError<E> {
    /// The body is larger than the cap: `declared` from `Content-Length`, else at least `seen`.
    TooLarge { declared: Option<u64>, seen: u64 },
    /// The stream failed.
    Stream(E),
}

/// Reads a body of at most `cap` bytes from `chunks`; `declared` is its `Content-Length`.
/// Refuses at once when `declared` is above `cap`, else as soon as more than `cap` bytes came.
/// Memory stays within `cap` plus one chunk.
pub async fn read_capped<S, B, E>(
    mut chunks: S,
    declared: Option<u64>,
    cap: usize,
) -> Result<Vec<u8>, CapError<E>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    if let Some(len) = declared
        && len > cap as u64
    {
        return Err(CapError::TooLarge {
            declared: Some(len),
            seen: 0,
        });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(CapError::Stream)?;
        let chunk = chunk.as_ref();
        let seen = body.len() as u64 + chunk.len() as u64;
        if seen > cap as u64 {
            return Err(CapError::TooLarge {
                declared: None,
                seen,
            });
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

/// `4 MiB` for a power-of-two number of bytes, else the bytes.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The message for a body over the cap. `what` is "manifest" or "image config".
pub fn too_large(what: &str, url: &str, cap: usize, declared: Option<u64>, seen: u64) -> String {
    let cap_text = size_text(cap as u64);
    match declared {
        Some(len) => format!(
            "{what} larger than {cap_text}: {url} announces {len} bytes (Content-Length); \
             refused without reading it (real ones are a few KiB)"
        ),
        None => format!(
            "{what} larger than {cap_text}: {url} sent more than {cap} bytes (stopped reading at \
             {seen}); refused (real ones are a few KiB)"
        ),
    }
}

/// Parses a manifest or index as a registry sent it: at most [`MAX_MANIFEST`] bytes of JSON with a
/// media type the agent accepts (without one: an index if it has `manifests`, else an OCI
/// manifest) and, for a manifest, a config descriptor of at most [`MAX_CONFIG`] bytes (the
/// config is read into memory later). Returns the document and its media type. The fuzz target
/// `manifest_parse` feeds it arbitrary bytes.
pub fn parse(bytes: &[u8]) -> Result<(ManifestDoc, String), String> {
    if bytes.len() > MAX_MANIFEST {
        return Err(format!(
            "{} bytes, more than the {} allowed",
            bytes.len(),
            size_text(MAX_MANIFEST as u64)
        ));
    }
    let doc: ManifestDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
    let media_type = doc.media_type.clone().unwrap_or_else(|| {
        if doc.manifests.is_some() {
            MT_OCI_INDEX.into()
        } else {
            MT_OCI_MANIFEST.into()
        }
    });
    if !ACCEPT.contains(&media_type.as_str()) {
        return Err(format!(
            "media type {media_type} is not supported; supported: {}",
            ACCEPT.join(", ")
        ));
    }
    if let Some(config) = &doc.config
        && config.size > MAX_CONFIG
    {
        return Err(format!(
            "its image config {} is {} bytes, more than the {} allowed",
            config.digest,
            config.size,
            size_text(MAX_CONFIG)
        ));
    }
    Ok((doc, media_type))
}

/// The registry's address as oci-client uses it.
pub(super) struct Registry<'a> {
    pub client: &'a Client,
    pub http: &'a reqwest::Client,
    pub auth: &'a RegistryAuth,
    /// `http` for insecure registries, else `https`.
    pub scheme: &'static str,
    /// Per-read timeout of every request (also the token request's).
    pub timeout: Duration,
}

/// Asks oci-client for a pull token for `r` (it keeps it for the blob requests too). Returns
/// the bearer token, if the registry uses tokens.
pub(super) async fn token(reg: &Registry<'_>, r: &Reference) -> Result<Option<String>, Attempt> {
    let name = r.whole();
    reg.client
        .auth(r, reg.auth, RegistryOperation::Pull)
        .await
        .map_err(|e| match e {
            OciDistributionError::RequestError(e) if e.is_timeout() => {
                let url = e
                    .url()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "the token endpoint".into());
                Attempt::Transient(format!(
                    "token request {url} timed out: no answer within {}s",
                    reg.timeout.as_secs_f64()
                ))
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                Attempt::Fatal(Error::Registry {
                    reference: name.clone(),
                    reason: format!(
                        "the token endpoint refused the credentials: {}",
                        reason.chars().take(500).collect::<String>().trim()
                    ),
                })
            }
            e => classify(&name, e),
        })
}

/// `GET /v2/<repo>/manifests/<tag or digest>` with `accept`; the body, at most `cap` bytes.
pub(super) async fn get(
    reg: &Registry<'_>,
    r: &Reference,
    accept: &[&str],
    cap: usize,
) -> Result<Vec<u8>, Attempt> {
    let name = r.whole();
    let bearer = token(reg, r).await?;
    let registry = r.resolve_registry();
    let url = format!(
        "{}://{registry}/v2/{}/manifests/{}{}",
        reg.scheme,
        r.repository(),
        r.digest().or(r.tag()).unwrap_or("latest"),
        r.namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default(),
    );
    let mut req = reg
        .http
        .get(&url)
        .header(reqwest::header::ACCEPT, accept.join(", "));
    match (&bearer, reg.auth) {
        (Some(t), _) => req = req.bearer_auth(t),
        (None, RegistryAuth::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
        _ => {}
    }
    let res = req
        .send()
        .await
        .map_err(|e| classify(&name, OciDistributionError::RequestError(e)))?;
    let status = res.status();
    let declared = res.content_length();
    if status != reqwest::StatusCode::OK {
        let body = read_capped(res.bytes_stream(), None, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        return Err(classify(&name, status_error(status, &url, &body)));
    }
    read_capped(res.bytes_stream(), declared, cap)
        .await
        .map_err(|e| match e {
            CapError::TooLarge { declared, seen } => Attempt::Fatal(Error::Registry {
                reference: name.clone(),
                reason: too_large("manifest", &url, cap, declared, seen),
            }),
            CapError::Stream(e) => classify(&name, OciDistributionError::RequestError(e)),
        })
}

/// The error for a non-200 answer, as oci-client makes it.
fn status_error(status: reqwest::StatusCode, url: &str, body: &[u8]) -> OciDistributionError {
    let url = url.to_string();
    match status {
        reqwest::StatusCode::UNAUTHORIZED => OciDistributionError::UnauthorizedError { url },
        s if s.is_client_error() => match serde_json::from_slice::<OciEnvelope>(body) {
            Ok(envelope) => OciDistributionError::RegistryError { envelope, url },
            Err(_) => OciDistributionError::ServerError {
                code: s.as_u16(),
                url,
                message: String::from_utf8_lossy(body).into_owned(),
            },
        },
        s => OciDistributionError::ServerError {
            code: s.as_u16(),
            url,
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: Vec<&'static [u8]>,
    ) -> impl Stream<Item = Result<&'static [u8], String>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(Ok))
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    #[test]
    fn bodies_within_the_cap_are_read_whole() {
        let got = run(read_capped(chunks(vec![b"ab", b"cd"]), Some(4), 4));
        assert_eq!(got, Ok(b"abcd".to_vec()));
        let got = run(read_capped(chunks(vec![b"ab", b"cd"]), None, 4));
        assert_eq!(got, Ok(b"abcd".to_vec()));
    }

    #[test]
    fn a_large_content_length_is_refused_before_reading() {
        let got = run(read_capped(chunks(vec![b"never read"]), Some(5), 4));
        assert_eq!(
            got,
            Err(CapError::TooLarge {
                declared: Some(5),
                seen: 0
            })
        );
    }

    #[test]
    fn an_endless_body_is_refused_once_past_the_cap() {
        let endless = futures_util::stream::repeat_with(|| Ok::<_, String>(&b"xyz"[..]));
        let got = run(read_capped(endless, None, 10));
        assert_eq!(
            got,
            Err(CapError::TooLarge {
                declared: None,
                seen: 12
            })
        );
        // A Content-Length that lies (small, then more comes) is no way around it.
        let got = run(read_capped(chunks(vec![b"abc", b"defgh"]), Some(3), 4));
        assert!(matches!(got, Err(CapError::TooLarge { .. })), "{got:?}");
    }

    #[test]
    fn parse_checks_json_media_type_and_config_size() {
        let d = crate::driver::graph::Digest::of(b"c");
        let manifest = |size: u64| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":{size}}},"layers":[]}}"#
            )
        };
        let (_, mt) = parse(manifest(100).as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mt, MT_OCI_MANIFEST);
        let e = parse(manifest(MAX_CONFIG + 1).as_bytes())
            .err()
            .unwrap_or_default();
        assert!(e.contains("image config") && e.contains("8 MiB"), "{e}");
        let (_, mt) = parse(br#"{"manifests":[]}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mt, MT_OCI_INDEX);
        let e = parse(br#"{"mediaType":"text/html"}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("text/html"), "{e}");
        assert!(parse(b"<html>").is_err());
        assert!(parse(&vec![b' '; MAX_MANIFEST + 1]).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(size_text(4 << 20), "4 MiB");
        assert_eq!(size_text(16 << 10), "16 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
        let m = too_large(
            "manifest",
            "http://h/v2/r/manifests/t",
            4 << 20,
            None,
            4194305,
        );
        assert!(
            m.starts_with("manifest larger than 4 MiB: http://h/"),
            "{m}"
        );
        let m = too_large("manifest", "u", 4 << 20, Some(1 << 40), 0);
        assert!(m.contains("1099511627776 bytes (Content-Length)"), "{m}");
    }
}
