//! Data versions: a fingerprint of a frame's contents, the same for the same values whatever
//! the process, the chunk layout or the polars version, and different for any change of a
//! value, a null, a dtype, a column name or the column order.
//!
//! # Encoding (version 2)
//! Defined over the values, never over polars' in-memory hashes (seeded per process) or Arrow
//! IPC bytes (which follow the chunk layout). XXH3-128 (a stable, specified hash) throughout.
//!
//! Rows are cut into blocks of 65,536 by row index (never by chunk). Each block of a column is
//! hashed over every row in order: one validity byte (0 null, 1 value), then for a value:
//! booleans one byte; integers their own width, little-endian; floats their bits,
//! little-endian, every NaN as the one quiet NaN (`-0.0` and `0.0` differ); strings and binary
//! their byte length (u64 LE) and bytes; dates, times, datetimes and durations their physical
//! integer (the unit and time zone are in the dtype); lists their length (u64 LE) and each
//! element encoded the same way.
//!
//! A column's digest is the hash of its name (byte length as u64 LE, then UTF-8), its dtype in
//! this encoding's own words (`bool`, `i8`..`u64`, `f32`, `f64`, `str`, `binary`, `null`,
//! `date`, `time`, `duration[us]`, `datetime[ns]`, `datetime[us, UTC]`, `list[str]`; never
//! polars' display of it; length-prefixed the same way), its row count (u64 LE) and its block
//! digests (16 bytes LE each) in order.
//!
//! The frame's version is the hash of `usher-pipeline data version 2`, the column count (u64
//! LE) and each column's digest in order. Blocks of all columns are hashed in parallel.

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

const HEADER: &[u8] = b"usher-pipeline data version 2";

/// Rows per block: large enough that a block's hashing outweighs handing it to a thread, small
/// enough that one long column spreads over every core.
const BLOCK_ROWS: usize = 65_536;

/// The data version of `frame`. A column whose dtype has no encoding (an object column) is an
/// error naming it.
pub fn data_version(frame: &DataFrame) -> Result<DataVersion> {
    let columns: Vec<&Series> = frame
        .columns()
        .iter()
        .map(|c| c.as_materialized_series())
        .collect();
    let names = columns
        .iter()
        .map(|c| dtype_name(c))
        .collect::<Result<Vec<_>>>()?;
    let blocks: Vec<(usize, usize)> = columns
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            (0..c.len())
                .step_by(BLOCK_ROWS)
                .map(move |offset| (i, offset))
        })
        .collect();
    // A small frame (a hit's frame argument, say) is hashed on this thread: starting threads
    // would cost more than the hashing.
    let cells: usize = columns.iter().map(|c| c.len()).sum();
    let threads = if cells < BLOCK_ROWS {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let digests = parallel_map(&blocks, threads, |&(i, offset)| {
        let block = columns[i].slice(offset as i64, BLOCK_ROWS);
        let mut sink = Sink::new();
        encode(&block, &mut sink)?;
        Ok(sink.finish())
    })?;
    let mut hasher = Xxh3::new();
    hasher.update(HEADER);
    hasher.update(&(columns.len() as u64).to_le_bytes());
    let mut digests = blocks.iter().map(|&(i, _)| i).zip(digests).peekable();
    for (i, (column, dtype)) in columns.iter().zip(&names).enumerate() {
        let mut sink = Sink::new();
        sink.len_prefixed(column.name().as_bytes());
        sink.len_prefixed(dtype.as_bytes());
        sink.put(&(column.len() as u64).to_le_bytes());
        while let Some((_, digest)) = digests.next_if(|(owner, _)| *owner == i) {
            sink.put(&digest.to_le_bytes());
        }
        hasher.update(&sink.finish().to_le_bytes());
    }
    Ok(DataVersion(hasher.digest128()))
}

/// `f` over `items` on up to `threads` threads, results in order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = threads.min(items.len());
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

    /// The buffer, with room for `n` more bytes (`n` at most [`BUFFER`]): for writers of many
    /// small values, which extend it directly.
    fn room(&mut self, n: usize) -> &mut Vec<u8> {
        if self.buffer.len() + n > BUFFER {
            self.flush();
        }
        &mut self.buffer
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

/// Values per batch of the fast paths: one flush check per batch.
const BATCH: usize = 1024;

/// The fast path of a primitive column: each chunk's values and validity read directly and
/// written in batches of [`BATCH`], byte for byte what [`values`] writes (`$bytes`: a value's
/// bytes). A macro, as polars does not name its Arrow arrays' types for us.
macro_rules! fast {
    ($sink:expr, $ca:expr, $bytes:expr) => {{
        let bytes = $bytes;
        for array in $ca.downcast_iter() {
            let values = array.values().as_slice();
            let validity = array.validity().filter(|v| v.unset_bits() > 0);
            for (start, batch) in (0..).step_by(BATCH).zip(values.chunks(BATCH)) {
                let width = 1 + std::mem::size_of_val(&bytes(batch[0]));
                let buffer = $sink.room(batch.len() * width);
                match validity {
                    None => {
                        for &v in batch {
                            buffer.push(1);
                            buffer.extend_from_slice(&bytes(v));
                        }
                    }
                    Some(valid) => {
                        for (i, &v) in batch.iter().enumerate() {
                            if valid.get_bit(start + i) {
                                buffer.push(1);
                                buffer.extend_from_slice(&bytes(v));
                            } else {
                                buffer.push(0);
                            }
                        }
                    }
                }
            }
        }
    }};
}

/// The encoding of [`encode_generic`], faster for the common dtypes: primitive and string
/// columns are read chunk by chunk rather than value by value through `Option`s.
fn encode(series: &Series, sink: &mut Sink) -> Result<()> {
    match series.dtype() {
        DataType::Int8 => fast!(sink, series.i8()?, |v: i8| v.to_le_bytes()),
        DataType::Int16 => fast!(sink, series.i16()?, |v: i16| v.to_le_bytes()),
        DataType::Int32 => fast!(sink, series.i32()?, |v: i32| v.to_le_bytes()),
        DataType::Int64 => fast!(sink, series.i64()?, |v: i64| v.to_le_bytes()),
        DataType::UInt8 => fast!(sink, series.u8()?, |v: u8| v.to_le_bytes()),
        DataType::UInt16 => fast!(sink, series.u16()?, |v: u16| v.to_le_bytes()),
        DataType::UInt32 => fast!(sink, series.u32()?, |v: u32| v.to_le_bytes()),
        DataType::UInt64 => fast!(sink, series.u64()?, |v: u64| v.to_le_bytes()),
        DataType::Float32 => fast!(sink, series.f32()?, |v: f32| {
            let v = if v.is_nan() { f32::NAN } else { v };
            v.to_bits().to_le_bytes()
        }),
        DataType::Float64 => fast!(sink, series.f64()?, |v: f64| {
            let v = if v.is_nan() { f64::NAN } else { v };
            v.to_bits().to_le_bytes()
        }),
        DataType::String => {
            for array in series.str()?.downcast_iter() {
                for value in array.iter() {
                    match value {
                        None => sink.room(1).push(0),
                        Some(v) if 9 + v.len() <= BUFFER => {
                            let buffer = sink.room(9 + v.len());
                            buffer.push(1);
                            buffer.extend_from_slice(&(v.len() as u64).to_le_bytes());
                            buffer.extend_from_slice(v.as_bytes());
                        }
                        Some(v) => {
                            sink.put(&[1]);
                            sink.len_prefixed(v.as_bytes());
                        }
                    }
                }
            }
        }
        _ => return encode_generic(series, sink),
    }
    Ok(())
}

/// The encoding, value by value: the reference the fast paths of [`encode`] must equal, and
/// the path of every other dtype.
fn encode_generic(series: &Series, sink: &mut Sink) -> Result<()> {
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

    const PINNED: &str = "3608a1768637d73d9dfdb52b04f71e33";

    /// The fast paths write what the value-by-value encoding writes, for every dtype they take,
    /// with and without nulls, whole and sliced at odd offsets, across chunks.
    #[test]
    fn the_fast_paths_equal_the_reference_encoding() {
        let n = 5_000usize;
        let nulls = |i: usize| i % 7 == 3;
        let ints: Vec<Option<i64>> = (0..n)
            .map(|i| (!nulls(i)).then_some(i as i64 * 7919 - 1_000_000))
            .collect();
        let floats: Vec<Option<f64>> = (0..n)
            .map(|i| match i % 11 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-0.0),
                _ => Some(i as f64 / 3.0),
            })
            .collect();
        let strings: Vec<Option<String>> = (0..n)
            .map(|i| match i % 13 {
                0 => None,
                1 => Some(String::new()),
                2 => Some("ü".repeat(i % 40)),
                _ => Some(format!("GENE{i:08}")),
            })
            .collect();
        let long = vec![Some("x".repeat(BUFFER + 10)), None, Some("y".into())];
        let mut columns: Vec<Series> = vec![
            Series::new("i64".into(), &ints),
            Series::new("f64".into(), &floats),
            Series::new("str".into(), &strings),
            Series::new("long".into(), &long),
            Series::new("i64_dense".into(), (0..n as i64).collect::<Vec<_>>()),
        ];
        // (polars is built without the 8- and 16-bit integer dtypes.)
        for dtype in [
            DataType::Int32,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float32,
        ] {
            columns.push(
                columns[0]
                    .cast(&dtype)
                    .unwrap()
                    .with_name(format!("{dtype}").into()),
            );
        }
        for column in &columns {
            let mut chunked = column.slice(0, 100);
            chunked.append(&column.slice(100, column.len())).unwrap();
            for series in [
                column.clone(),
                column.slice(3, 997),
                column.slice(1_031, 2_500),
                chunked,
            ] {
                let (mut fast, mut reference) = (Sink::new(), Sink::new());
                encode(&series, &mut fast).unwrap();
                encode_generic(&series, &mut reference).unwrap();
                assert_eq!(fast.finish(), reference.finish(), "{}", series.name());
            }
        }
    }

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

    /// Blocks are cut by row index: chunks that straddle block boundaries change nothing, and
    /// a change in any block changes the version.
    #[test]
    fn blocks_follow_rows_not_chunks() {
        let n = 3 * BLOCK_ROWS + 123;
        let ids: Vec<String> = (0..n).map(|i| format!("ENSG{i:011}")).collect();
        let scores: Vec<Option<f64>> = (0..n).map(|i| (i % 7 != 0).then_some(i as f64)).collect();
        let whole = df!("id" => ids, "score" => scores).unwrap();
        let mut pieces = whole.slice(0, 70_001);
        for (offset, len) in [(70_001, 1), (70_002, 100_000), (170_002, n - 170_002)] {
            pieces.vstack_mut(&whole.slice(offset as i64, len)).unwrap();
        }
        assert_eq!(pieces.first_col_n_chunks(), 4);
        assert_eq!(version(&pieces), version(&whole));
        let mut changed = whole.clone();
        let scores: Vec<Option<f64>> = (0..n)
            .map(|i| match i {
                i if i == n - 1 => Some(-1.0),
                i => (i % 7 != 0).then_some(i as f64),
            })
            .collect();
        changed
            .with_column(Column::new("score".into(), scores))
            .unwrap();
        assert_ne!(version(&changed), version(&whole));
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
