//! How values cross between Rust and the database, the same on both: timestamps are whole
//! milliseconds since the epoch (`BIGINT`), ids are UUID text, enums their `as_str` text, counts
//! `BIGINT`. A stored value that cannot be read back is [`StoreError::Corrupt`].

use std::str::FromStr;

use chrono::{DateTime, Utc};
use kbsync_core::UnknownVariant;
use kbsync_core::datasource::DatasourceKind;
use uuid::Uuid;

use crate::{Result, StoreError};

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A timestamp as the store keeps it: whole milliseconds.
pub(crate) fn truncate_ms(t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    from_ms(ms(t))
}

pub(crate) fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {v}")))
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("bad uuid {s:?}: {e}")))
}

pub(crate) fn parse_enum<T: FromStr<Err = UnknownVariant>>(s: &str) -> Result<T> {
    s.parse::<T>().map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A datasource kind as stored (its `as_str`).
pub(crate) fn parse_datasource(s: &str) -> Result<DatasourceKind> {
    DatasourceKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown datasource {s:?}")))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative count: {v}")))
}

/// A measured duration as stored: whole microseconds (`BIGINT`, saturating).
pub(crate) fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(v: i64) -> Result<std::time::Duration> {
    u64::try_from(v)
        .map(std::time::Duration::from_micros)
        .map_err(|_| StoreError::Corrupt(format!("negative duration: {v} µs")))
}

/// An `i32` column (INTEGER) read back as a count or a number of minutes.
pub(crate) fn to_u32(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value: {v}")))
}

/// A `u32` as an INTEGER column holds it (saturating: no count or interval comes near).
pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Emails are compared and stored for lookup in this form.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Maps every row with `f`, stopping at the first that cannot be read.
pub(crate) fn collect<R, T>(rows: Vec<R>, f: impl Fn(R) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(f).collect()
}
