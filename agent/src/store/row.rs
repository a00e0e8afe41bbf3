//! Conversions between Rust values and columns, with errors that name the table, row and column.

use std::net::IpAddr;
use std::str::FromStr;

use rusqlite::types::Type;

use super::Error;

/// A column that could not be decoded; turned into [`Error::Corrupt`] by [`from_sqlite`].
#[derive(Debug)]
pub(super) struct Undecodable {
    pub table: &'static str,
    pub key: String,
    pub column: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row {:?}: column {}: {}",
            self.table, self.key, self.column, self.reason
        )
    }
}

impl std::error::Error for Undecodable {}

/// Maps a rusqlite error, unwrapping [`Undecodable`] into [`Error::Corrupt`].
pub(super) fn from_sqlite(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::FromSqlConversionFailure(i, t, inner) => {
            match inner.downcast::<Undecodable>() {
                Ok(u) => Error::Corrupt {
                    table: u.table,
                    key: u.key,
                    column: u.column,
                    reason: u.reason,
                },
                Err(inner) => Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(i, t, inner)),
            }
        }
        other => Error::Sqlite(other),
    }
}

fn undecodable(
    table: &'static str,
    key: &str,
    column: &'static str,
    reason: String,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        usize::MAX,
        Type::Text,
        Box::new(Undecodable {
            table,
            key: key.to_string(),
            column,
            reason,
        }),
    )
}

/// Parses a text column with `FromStr`.
pub(super) fn parse<T>(
    table: &'static str,
    key: &str,
    column: &'static str,
    text: &str,
) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| undecodable(table, key, column, format!("{text:?}: {e}")))
}

/// Parses a JSON text column.
pub(super) fn json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &str,
    column: &'static str,
    text: &str,
) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| undecodable(table, key, column, format!("invalid JSON: {e}")))
}

/// Converts an integer column to a narrower or unsigned type.
pub(super) fn int<T: TryFrom<i64>>(
    table: &'static str,
    key: &str,
    column: &'static str,
    v: i64,
) -> rusqlite::Result<T> {
    T::try_from(v).map_err(|_| undecodable(table, key, column, format!("{v} is out of range")))
}

/// An unsigned size or count as stored (`INTEGER` is i64).
pub(super) fn to_i64(what: &str, v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Invalid {
        what: what.to_string(),
        reason: format!("{v} is larger than {}", i64::MAX),
    })
}

/// Serialises a JSON value for a text column.
pub(super) fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Invalid {
        what: what.to_string(),
        reason: format!("cannot be written as JSON: {e}"),
    })
}

/// An address as stored: its canonical text form.
pub(super) fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

/// True for a SQLite constraint violation (UNIQUE, PRIMARY KEY, FOREIGN KEY, CHECK).
pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}
