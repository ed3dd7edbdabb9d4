//! [`FrameStream`]: a polars frame exported as an Arrow C stream (the owner of the
//! `ArrowArrayStream` and of the batches DuckDB has not consumed), and the stream's callbacks.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::Mutex;

use libduckdb_sys as sys;
use polars::prelude::*;
use polars_arrow::array::StructArray;
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::ffi as pa_ffi;

/// A polars frame exported as an Arrow C stream for DuckDB's Arrow scan.
///
/// The frame is cut into batches up front (each at least DuckDB's row group, so the scan runs
/// in parallel without small-batch overhead) and each batch exported zero-copy. DuckDB calls
/// `get_next` from its worker threads, so the queue is behind a mutex; it calls `get_schema`
/// several times and never releases what it gets, so the schema is owned here and handed out
/// as a borrowed copy with a no-op release.
pub(crate) struct FrameStream {
    raw: Box<pa_ffi::ArrowArrayStream>,
}

struct StreamState {
    schema: pa_ffi::ArrowSchema,
    batches: Mutex<VecDeque<pa_ffi::ArrowArray>>,
}

/// Rows of one DuckDB row group; smaller Arrow batches nearly double the save time.
const MIN_BATCH_ROWS: usize = 122_880;

impl FrameStream {
    pub fn new(df: &DataFrame) -> Result<Self, String> {
        let compat = CompatLevel::newest();
        let arrow_fields: Vec<ArrowField> = df
            .columns()
            .iter()
            .map(|c| c.field().to_arrow(compat))
            .collect();
        let struct_type = ArrowDataType::Struct(arrow_fields.clone());
        let schema =
            pa_ffi::export_field_to_c(&ArrowField::new("".into(), struct_type.clone(), false));

        let height = df.height();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let batch_rows = height.div_ceil(threads).max(MIN_BATCH_ROWS);
        let mut batches = VecDeque::new();
        let mut offset = 0;
        while offset < height {
            let len = batch_rows.min(height - offset);
            let mut slice = df.slice(offset as i64, len);
            if slice.should_rechunk() {
                slice.rechunk_mut_par();
            }
            for batch in slice.iter_chunks(compat, false) {
                let (len, arrays) = (batch.height(), batch.into_arrays());
                let array = StructArray::new(struct_type.clone(), len, arrays, None);
                batches.push_back(pa_ffi::export_array_to_c(array.boxed()));
            }
            offset += len;
        }
        let state = Box::new(StreamState {
            schema,
            batches: Mutex::new(batches),
        });
        let raw = new_stream(Box::into_raw(state).cast());
        Ok(FrameStream { raw: Box::new(raw) })
    }

    /// The stream as DuckDB takes it. It stays valid (boxed, never moved) until `self` drops.
    pub(super) fn as_raw(&mut self) -> sys::duckdb_arrow_stream {
        (&mut *self.raw as *mut pa_ffi::ArrowArrayStream).cast()
    }
}

/// The stream struct with our callbacks. polars-arrow keeps the fields private, so the struct
/// is written through libduckdb-sys's identical layout.
fn new_stream(private: *mut c_void) -> pa_ffi::ArrowArrayStream {
    let mut stream = pa_ffi::ArrowArrayStream::empty();
    // SAFETY: identical #[repr(C)] layouts (Arrow C stream interface); `empty()` has no
    // release, so overwriting its fields leaks nothing.
    unsafe {
        let raw = (&mut stream as *mut pa_ffi::ArrowArrayStream).cast::<RawStream>();
        (*raw).get_schema = Some(stream_get_schema);
        (*raw).get_next = Some(stream_get_next);
        (*raw).get_last_error = Some(stream_get_last_error);
        (*raw).release = Some(stream_release);
        (*raw).private_data = private;
    }
    stream
}

/// The Arrow C stream struct with public fields.
#[repr(C)]
struct RawStream {
    get_schema: Option<unsafe extern "C" fn(*mut RawStream, *mut sys::ArrowSchema) -> i32>,
    get_next: Option<unsafe extern "C" fn(*mut RawStream, *mut sys::ArrowArray) -> i32>,
    get_last_error: Option<unsafe extern "C" fn(*mut RawStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut RawStream)>,
    private_data: *mut c_void,
}

unsafe extern "C" fn noop_schema_release(schema: *mut sys::ArrowSchema) {
    // SAFETY: called by the consumer on a schema we handed out; only the marker is cleared.
    unsafe { (*schema).release = None }
}

unsafe extern "C" fn stream_get_schema(stream: *mut RawStream, out: *mut sys::ArrowSchema) -> i32 {
    // SAFETY: private_data is the StreamState set in FrameStream::new, alive until release.
    unsafe {
        let state = &*((*stream).private_data as *const StreamState);
        let owned = (&state.schema as *const pa_ffi::ArrowSchema).cast::<sys::ArrowSchema>();
        ptr::copy_nonoverlapping(owned, out, 1);
        (*out).release = Some(noop_schema_release);
    }
    0
}

unsafe extern "C" fn stream_get_next(stream: *mut RawStream, out: *mut sys::ArrowArray) -> i32 {
    // SAFETY: as above; the popped array's ownership moves to the consumer through `out`.
    unsafe {
        let state = &*((*stream).private_data as *const StreamState);
        let next = match state.batches.lock() {
            Ok(mut queue) => queue.pop_front(),
            Err(_) => return 5, // EIO: a panic elsewhere poisoned the queue
        };
        match next {
            Some(array) => {
                let array = std::mem::ManuallyDrop::new(array);
                ptr::copy_nonoverlapping(
                    (&*array as *const pa_ffi::ArrowArray).cast::<sys::ArrowArray>(),
                    out,
                    1,
                );
            }
            None => ptr::write(out, sys::ArrowArray::empty()),
        }
    }
    0
}

unsafe extern "C" fn stream_get_last_error(_stream: *mut RawStream) -> *const c_char {
    ptr::null()
}

unsafe extern "C" fn stream_release(stream: *mut RawStream) {
    // SAFETY: private_data is the boxed StreamState; it is freed once and the stream marked
    // released. Dropping it releases the schema and any batches DuckDB did not consume.
    unsafe {
        if !(*stream).private_data.is_null() {
            drop(Box::from_raw((*stream).private_data.cast::<StreamState>()));
            (*stream).private_data = ptr::null_mut();
        }
        (*stream).release = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_layouts_agree() {
        assert_eq!(
            std::mem::size_of::<RawStream>(),
            std::mem::size_of::<pa_ffi::ArrowArrayStream>()
        );
        assert_eq!(
            std::mem::size_of::<sys::ArrowArray>(),
            std::mem::size_of::<pa_ffi::ArrowArray>()
        );
        assert_eq!(
            std::mem::size_of::<sys::ArrowSchema>(),
            std::mem::size_of::<pa_ffi::ArrowSchema>()
        );
    }
}
