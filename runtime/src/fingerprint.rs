//! Data versions: a fingerprint of a frame's contents, the same for the same values whatever
//! the process, the chunk layout or the polars version, and different for any change of a
//! value, a null, a dtype, a column name or the column order.
//!
//! # Encoding (version 1)
//! Defined over the values, never over polars' in-memory hashes (seeded per process) or Arrow
//! IPC bytes (which follow the chunk layout). Each column is hashed on its own with XXH3-128
//! (a stable, specified hash), over:
//!
//! - the name: byte length (u64 LE) and UTF-8 bytes;
//! - the dtype in this encoding's own words (`bool`, `i8`..`u64`, `f32`, `f64`, `str`,
//!   `binary`, `null`, `date`, `time`, `duration[us]`, `datetime[ns]`, `datetime[us, UTC]`,
//!   `list[str]`), never polars' display of it: length (u64 LE) and bytes;
//! - the row count (u64 LE);
//! - every row in order: one validity byte (0 null, 1 value), then for a value:
//!   booleans one byte; integers their own width, little-endian; floats their bits,
//!   little-endian, every NaN as the one quiet NaN (`-0.0` and `0.0` differ); strings and binary
//!   their byte length (u64 LE) and bytes; dates, times, datetimes and durations their physical
//!   integer (the unit and time zone are in the dtype); lists their length (u64 LE) and each
//!   element encoded the same way; structs each field in order.
//!
//! The frame's version is XXH3-128 of `usher-pipeline data version 1`, the column count
//! (u64 LE) and each column's 16-byte digest in order. Columns are hashed in parallel.

use std::fmt;

use polars::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// The data version of a frame: 128 bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataVersion(u128);

impl DataVersion {
    /// The version as 32 lowercase hex digits.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses 32 hex digits, as [`to_hex`](Self::to_hex) writes them.
    pub fn from_hex(text: &str) -> Option<Self> {
        (text.len() == 32)
            .then(|| u128::from_str_radix(text, 16).ok())
            .flatten()
            .map(DataVersion)
    }
}

impl fmt::Display for DataVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

const HEADER: &[u8] = b"usher-pipeline data version 1";

/// The data version of `frame`. A column whose dtype has no encoding (an object column) is an
/// error naming it.
pub fn data_version(frame: &DataFrame) -> Result<DataVersion> {
    let columns = frame.columns();
    let digests = parallel_map(columns, |column| {
        column_digest(column.as_materialized_series())
    })?;
    let mut hasher = Xxh3::new();
    hasher.update(HEADER);
    hasher.update(&(columns.len() as u64).to_le_bytes());
    for digest in digests {
        hasher.update(&digest.to_le_bytes());
    }
    Ok(DataVersion(hasher.digest128()))
}

/// `f` over `items` on every core, results in order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<R>>> = (0..items.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, Result<R>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for (i, result) in done.into_iter().flatten() {
        results[i] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Format("a column was not fingerprinted".into()))))
        .collect()
}

/// Bytes gathered before they are handed to the hasher.
const BUFFER: usize = 64 * 1024;

/// A hasher fed through a buffer, so small values cost a copy rather than a hasher call.
struct Sink {
    hasher: Xxh3,
    buffer: Vec<u8>,
}

impl Sink {
    fn new() -> Self {
        Self {
            hasher: Xxh3::new(),
            buffer: Vec::with_capacity(BUFFER + 64),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > BUFFER {
            self.flush();
            if bytes.len() > BUFFER {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn len_prefixed(&mut self, bytes: &[u8]) {
        self.put(&(bytes.len() as u64).to_le_bytes());
        self.put(bytes);
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer);
        self.buffer.clear();
    }

    fn finish(mut self) -> u128 {
        self.flush();
        self.hasher.digest128()
    }
}

/// The dtype in this encoding's own words, independent of how polars prints it.
fn dtype_name(series: &Series) -> Result<String> {
    fn unit(u: &TimeUnit) -> &'static str {
        match u {
            TimeUnit::Nanoseconds => "ns",
            TimeUnit::Microseconds => "us",
            TimeUnit::Milliseconds => "ms",
        }
    }
    fn name(dtype: &DataType) -> Option<String> {
        Some(match dtype {
            DataType::Boolean => "bool".into(),
            DataType::Int8 => "i8".into(),
            DataType::Int16 => "i16".into(),
            DataType::Int32 => "i32".into(),
            DataType::Int64 => "i64".into(),
            DataType::UInt8 => "u8".into(),
            DataType::UInt16 => "u16".into(),
            DataType::UInt32 => "u32".into(),
            DataType::UInt64 => "u64".into(),
            DataType::Float32 => "f32".into(),
            DataType::Float64 => "f64".into(),
            DataType::String => "str".into(),
            DataType::Binary => "binary".into(),
            DataType::Null => "null".into(),
            DataType::Date => "date".into(),
            DataType::Time => "time".into(),
            DataType::Duration(u) => format!("duration[{}]", unit(u)),
            DataType::Datetime(u, None) => format!("datetime[{}]", unit(u)),
            DataType::Datetime(u, Some(tz)) => format!("datetime[{}, {}]", unit(u), tz.as_str()),
            DataType::List(inner) => format!("list[{}]", name(inner)?),
            _ => return None,
        })
    }
    name(series.dtype()).ok_or_else(|| {
        Error::Format(format!(
            "column {:?} has dtype {}, which has no data-version encoding",
            series.name().as_str(),
            series.dtype()
        ))
    })
}

fn column_digest(series: &Series) -> Result<u128> {
    let mut sink = Sink::new();
    sink.len_prefixed(series.name().as_bytes());
    sink.len_prefixed(dtype_name(series)?.as_bytes());
    sink.put(&(series.len() as u64).to_le_bytes());
    encode(series, &mut sink)?;
    Ok(sink.finish())
}

/// Writes each value of an iterator: a validity byte, then the value's bytes.
fn values<T>(
    sink: &mut Sink,
    iter: impl Iterator<Item = Option<T>>,
    mut put: impl FnMut(&mut Sink, T),
) {
    for value in iter {
        match value {
            None => sink.put(&[0]),
            Some(v) => {
                sink.put(&[1]);
                put(sink, v);
            }
        }
    }
}

macro_rules! ints {
    ($series:expr, $sink:expr, $($dtype:ident => $method:ident),* $(,)?) => {
        match $series.dtype() {
            $(DataType::$dtype => {
                values($sink, $series.$method()?.iter(), |s, v| s.put(&v.to_le_bytes()));
                return Ok(());
            })*
            _ => {}
        }
    };
}

fn encode(series: &Series, sink: &mut Sink) -> Result<()> {
    ints!(series, sink,
        Int8 => i8, Int16 => i16, Int32 => i32, Int64 => i64,
        UInt8 => u8, UInt16 => u16, UInt32 => u32, UInt64 => u64,
    );
    match series.dtype() {
        DataType::Boolean => values(sink, series.bool()?.iter(), |s, v| s.put(&[u8::from(v)])),
        DataType::Float32 => values(sink, series.f32()?.iter(), |s, v| {
            let v = if v.is_nan() { f32::NAN } else { v };
            s.put(&v.to_bits().to_le_bytes());
        }),
        DataType::Float64 => values(sink, series.f64()?.iter(), |s, v| {
            let v = if v.is_nan() { f64::NAN } else { v };
            s.put(&v.to_bits().to_le_bytes());
        }),
        DataType::String => values(sink, series.str()?.iter(), |s, v| {
            s.len_prefixed(v.as_bytes())
        }),
        DataType::Binary => values(sink, series.binary()?.iter(), |s, v| s.len_prefixed(v)),
        DataType::Null => values(
            sink,
            std::iter::repeat_n(None::<()>, series.len()),
            |_, ()| {},
        ),
        // Temporal types: their physical integers; the unit and time zone are in the dtype.
        DataType::Date | DataType::Datetime(..) | DataType::Duration(..) | DataType::Time => {
            encode(&series.to_physical_repr(), sink)?;
        }
        DataType::List(_) => {
            for value in series.list()?.amortized_iter() {
                match value {
                    None => sink.put(&[0]),
                    Some(inner) => {
                        let inner = inner.as_ref();
                        sink.put(&[1]);
                        sink.put(&(inner.len() as u64).to_le_bytes());
                        encode(inner, sink)?;
                    }
                }
            }
        }
        other => {
            return Err(Error::Format(format!(
                "column {:?} has dtype {other}, which has no data-version encoding",
                series.name().as_str()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        let tags = Series::new(
            "tags".into(),
            [
                Some(Series::new("".into(), ["a", "b"])),
                None,
                Some(Series::new("".into(), Vec::<&str>::new())),
                Some(Series::new("".into(), ["ü"])),
            ],
        );
        df!(
            "gene" => [Some("USH2A"), None, Some(""), Some("MYO7A")],
            "loeuf" => [Some(0.5), Some(f64::NAN), None, Some(-0.0)],
            "n" => [Some(1i64), Some(-2), None, Some(i64::MAX)],
            "ok" => [Some(true), None, Some(false), Some(true)],
        )
        .unwrap()
        .hstack(&[
            tags.into_column(),
            Series::new("day".into(), [Some(19_000i32), None, Some(0), Some(-1)])
                .cast(&DataType::Date)
                .unwrap()
                .into_column(),
        ])
        .unwrap()
    }

    fn version(frame: &DataFrame) -> DataVersion {
        data_version(frame).unwrap()
    }

    /// Pinned: a change of this value is a change of the encoding, which would make every
    /// stored data version stale. Bump the encoding's version instead.
    #[test]
    fn the_encoding_is_pinned() {
        assert_eq!(version(&frame()).to_hex(), PINNED);
    }

    const PINNED: &str = "139855ece54547b1061cc076d021dc80";

    #[test]
    fn chunk_layout_does_not_matter() {
        let whole = frame();
        let mut pieces = whole.slice(0, 1);
        pieces.vstack_mut(&whole.slice(1, 2)).unwrap();
        pieces.vstack_mut(&whole.slice(3, 1)).unwrap();
        assert!(pieces.first_col_n_chunks() > 1);
        assert_eq!(version(&pieces), version(&whole));
        pieces.rechunk_mut_par();
        assert_eq!(version(&pieces), version(&whole));
    }

    #[test]
    fn any_change_is_another_version() {
        let base = version(&frame());
        let changed = |f: &dyn Fn(&mut DataFrame)| {
            let mut frame = frame();
            f(&mut frame);
            version(&frame)
        };
        let variants = [
            (
                "a value",
                changed(&|d| {
                    d.with_column(Column::new(
                        "n".into(),
                        [Some(1i64), Some(-2), None, Some(0)],
                    ))
                    .unwrap();
                }),
            ),
            (
                "a null for a value",
                changed(&|d| {
                    d.with_column(Column::new("n".into(), [Some(1i64), Some(-2), None, None]))
                        .unwrap();
                }),
            ),
            (
                "NaN for null",
                changed(&|d| {
                    d.with_column(Column::new(
                        "loeuf".into(),
                        [Some(0.5), Some(f64::NAN), Some(f64::NAN), Some(-0.0)],
                    ))
                    .unwrap();
                }),
            ),
            (
                "0.0 for -0.0",
                changed(&|d| {
                    d.with_column(Column::new(
                        "loeuf".into(),
                        [Some(0.5), Some(f64::NAN), None, Some(0.0)],
                    ))
                    .unwrap();
                }),
            ),
            (
                "a dtype",
                changed(&|d| {
                    let n = d.column("n").unwrap().cast(&DataType::Int32).unwrap();
                    d.with_column(n).unwrap();
                }),
            ),
            (
                "a column name",
                changed(&|d| {
                    d.rename("gene", "symbol".into()).unwrap();
                }),
            ),
            (
                "the column order",
                changed(&|d| {
                    *d = d
                        .select(["loeuf", "gene", "n", "ok", "tags", "day"])
                        .unwrap();
                }),
            ),
            (
                "string boundaries",
                changed(&|d| {
                    d.with_column(Column::new(
                        "gene".into(),
                        [Some("USH2"), None, Some("A"), Some("MYO7A")],
                    ))
                    .unwrap();
                }),
            ),
            (
                "a list element",
                changed(&|d| {
                    let tags = Series::new(
                        "tags".into(),
                        [
                            Some(Series::new("".into(), ["a"])),
                            None,
                            Some(Series::new("".into(), ["b"])),
                            Some(Series::new("".into(), ["ü"])),
                        ],
                    );
                    d.with_column(tags.into_column()).unwrap();
                }),
            ),
            ("a row fewer", changed(&|d| *d = d.slice(0, 3))),
        ];
        for (what, v) in &variants {
            assert_ne!(*v, base, "{what} must change the version");
        }
        for (i, (a, va)) in variants.iter().enumerate() {
            for (b, vb) in &variants[i + 1..] {
                assert_ne!(va, vb, "{a} and {b} must differ");
            }
        }
    }

    #[test]
    fn every_nan_is_the_same_value() {
        let a = df!("x" => [f64::NAN]).unwrap();
        let b = df!("x" => [f64::from_bits(f64::NAN.to_bits() | 1)]).unwrap();
        assert_eq!(version(&a), version(&b));
    }

    #[test]
    fn hex_round_trips() {
        let v = version(&frame());
        assert_eq!(DataVersion::from_hex(&v.to_hex()), Some(v));
        assert_eq!(DataVersion::from_hex("xyz"), None);
        assert_eq!(version(&DataFrame::empty()), version(&DataFrame::empty()));
    }
}
