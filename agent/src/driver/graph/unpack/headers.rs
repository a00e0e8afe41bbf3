//! Tar entries read in raw mode, with GNU long names and PAX extended headers handled here under
//! size limits (the `tar` crate would read an extension header of any size into memory) and with
//! a PAX `size` that disagrees with the header rejected (a parser-differential trick).

use std::io::Read;

use super::super::Error;

/// Largest GNU long name / long link accepted (Linux `PATH_MAX` is 4096).
pub const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted (room for many xattrs, not for a memory bomb).
pub const MAX_PAX: u64 = 1024 * 1024;

/// What PAX and GNU extension headers said about the next entry.
#[derive(Debug, Default)]
pub struct Pending {
    pub long_name: Option<Vec<u8>>,
    pub long_link: Option<Vec<u8>>,
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_empty()
    }

    pub fn pax_value(&self, key: &str) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    pub fn pax_u64(&self, key: &str, entry: &str) -> Result<Option<u64>, Error> {
        match self.pax_value(key) {
            None => Ok(None),
            Some(v) => {
                let s = std::str::from_utf8(v).unwrap_or("");
                // mtime may carry a fraction: keep the whole seconds.
                let whole = s.split('.').next().unwrap_or("");
                whole
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Error::UnsafeEntry {
                        entry: entry.to_string(),
                        reason: format!("PAX {key}={s:?} is not a non-negative integer"),
                    })
            }
        }
    }
}

/// Reads the body of an extension header, refusing one larger than `limit`.
pub fn read_limited(
    entry: &mut impl Read,
    size: u64,
    limit: u64,
    kind: &str,
) -> Result<Vec<u8>, Error> {
    if size > limit {
        return Err(Error::UnsafeEntry {
            entry: format!("<{kind} header>"),
            reason: format!("oversized {kind} header of {size} bytes (limit {limit})"),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Tar(format!("reading {kind} header: {e}")))?;
    Ok(buf)
}

/// A GNU long name body: the name up to its first NUL.
pub fn gnu_name(mut body: Vec<u8>) -> Vec<u8> {
    if let Some(pos) = body.iter().position(|b| *b == 0) {
        body.truncate(pos);
    }
    body
}

/// Parses PAX records `"<len> <key>=<value>\n"`; malformed records are an error.
pub fn parse_pax(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let bad = |why: &str| Error::UnsafeEntry {
        entry: "<PAX header>".into(),
        reason: why.to_string(),
    };
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("record without a length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("record length is not a number"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length does not match its contents"));
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("record without '='"))?;
        let key =
            String::from_utf8(record[..eq].to_vec()).map_err(|_| bad("record key is not UTF-8"))?;
        out.push((key, record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_records() {
        let body = b"29 SCHILY.xattr.user.a=hello\n19 path=some/dir/f\n";
        let recs = parse_pax(body).unwrap_or_default();
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0], ("SCHILY.xattr.user.a".into(), b"hello".to_vec()));
        assert_eq!(recs[1], ("path".into(), b"some/dir/f".to_vec()));
    }

    #[test]
    fn rejects_bad_pax() {
        for body in [&b"999 path=x\n"[..], b"abc path=x\n", b"9 pathx\n", b"3 x"] {
            assert!(
                parse_pax(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn oversized_header_refused() {
        let data = vec![b'a'; 10];
        assert!(read_limited(&mut &data[..], 10, 5, "PAX").is_err());
        assert_eq!(
            read_limited(&mut &data[..], 10, 10, "PAX").unwrap_or_default(),
            data
        );
    }
}
