//! Identity tokens: a credential helper (or `config.json`'s `identitytoken`) may hand out an
//! OAuth2 refresh token instead of a password. As Docker and containerd do, it is traded for an
//! access token at the token endpoint the registry names in its `WWW-Authenticate: Bearer`
//! challenge (`POST realm`, form `grant_type=refresh_token`, `refresh_token`, `service`,
//! `scope=repository:<repo>:pull`, `client_id`), and the access token is then sent as a bearer
//! token. A registry that does not challenge with `Bearer` cannot take an identity token: that is
//! an error naming the registry.

use std::time::Duration;

/// The `client_id` sent with token requests.
const CLIENT_ID: &str = "agent";
/// Token responses larger than this are refused (real ones are a few KiB).
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// The parameters of a `WWW-Authenticate: Bearer realm="..",service=".."` challenge.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
}

/// Parses a `Bearer` challenge; `None` for any other scheme or without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let h = header.trim();
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut c = Challenge::default();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.as_str() {
            "realm" => c.realm = value.to_string(),
            "service" => c.service = Some(value.to_string()),
            _ => {}
        }
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (!c.realm.is_empty()).then_some(c)
}

/// The form body of the refresh-token request.
pub fn form(challenge: &Challenge, repository: &str, token: &str) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", "refresh_token");
    f.append_pair("refresh_token", token);
    if let Some(s) = &challenge.service {
        f.append_pair("service", s);
    }
    f.append_pair("scope", &format!("repository:{repository}:pull"));
    f.append_pair("client_id", CLIENT_ID);
    f.finish()
}

/// Trades `token` for an access token for pulling `repository` from `base` (`http[s]://host`).
/// Errors say what failed and never contain either token.
pub async fn exchange(
    http: &reqwest::Client,
    base: &str,
    repository: &str,
    token: &str,
    timeout: Duration,
) -> Result<String, String> {
    let url = format!("{base}/v2/");
    let res = http
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
        .ok_or_else(|| {
            format!(
                "the credential is an identity token, but {url} asks for no bearer token \
                 (status {}); identity tokens work only with registries that use a token \
                 service",
                res.status()
            )
        })?;
    let res = http
        .post(&challenge.realm)
        .timeout(timeout)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&challenge, repository, token))
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", challenge.realm))?;
    let status = res.status();
    let body = res
        .bytes()
        .await
        .map_err(|e| format!("POST {}: {e}", challenge.realm))?;
    if !status.is_success() {
        return Err(format!(
            "the token endpoint {} refused the identity token: {status}",
            challenge.realm
        ));
    }
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(format!(
            "the token endpoint {} answered with {} bytes; refused",
            challenge.realm,
            body.len()
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(&body)
        .map_err(|e| format!("the token endpoint {} sent no JSON: {e}", challenge.realm))?;
    a.access_token
        .or(a.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            format!(
                "the token endpoint {} sent no access_token",
                challenge.realm
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#
            ),
            Some(Challenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=http://h/t"),
            Some(Challenge {
                realm: "http://h/t".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        let f = form(
            &Challenge {
                realm: "r".into(),
                service: Some("reg svc".into()),
            },
            "library/busybox",
            "a+b/c=",
        );
        assert_eq!(
            f,
            "grant_type=refresh_token&refresh_token=a%2Bb%2Fc%3D&service=reg+svc&\
             scope=repository%3Alibrary%2Fbusybox%3Apull&client_id=agent"
        );
    }

    /// A token service on 127.0.0.1: `/v2/` challenges, `/token` checks the refresh token.
    fn serve(listener: std::net::TcpListener, port: u16) {
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut r = BufReader::new(s.try_clone().unwrap_or_else(|e| panic!("{e}")));
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body);
            let reply = if line.starts_with("GET /v2/") {
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                     realm=\"http://127.0.0.1:{port}/token\",service=\"test\"\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            } else if body.contains("refresh_token=rt-123") && body.contains("service=test") {
                let j = r#"{"access_token":"at-456"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{j}",
                    j.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = s.write_all(reply.as_bytes());
        }
    }

    #[test]
    fn trades_a_refresh_token_for_an_access_token() {
        let run = |token: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            let t = std::thread::spawn(move || serve(l, port));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let http = reqwest::Client::new();
            let r = rt.block_on(exchange(
                &http,
                &format!("http://127.0.0.1:{port}"),
                "test/busybox",
                token,
                Duration::from_secs(10),
            ));
            let _ = t.join();
            r
        };
        assert_eq!(run("rt-123"), Ok("at-456".to_string()));
        let e = run("wrong").err().unwrap_or_default();
        assert!(
            e.contains("refused the identity token") && !e.contains("wrong"),
            "{e}"
        );
    }
}
