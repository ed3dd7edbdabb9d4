//! Values bound to the `?` parameters of a store's SQL
//! ([`CheckpointStore::query`](crate::CheckpointStore::query)): plain values, so the trait
//! can name them whichever backend binds them.

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// SQL `NULL`.
    Null,
    /// `BOOLEAN`.
    Bool(bool),
    /// `BIGINT`.
    Int(i64),
    /// `DOUBLE`.
    Float(f64),
    /// `VARCHAR`.
    Text(String),
    /// `DATE`.
    Date(chrono::NaiveDate),
    /// `TIMESTAMP` (no time zone), microsecond precision.
    Timestamp(chrono::NaiveDateTime),
}

macro_rules! param_from {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(v: $t) -> Self { Param::$variant(v $(as $cast)?.into()) }
        }
    )*};
}
param_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, i16 => Int, u16 => Int, f64 => Float, f32 => Float,
    String => Text, &str => Text, &String => Text, chrono::NaiveDate => Date, chrono::NaiveDateTime => Timestamp);

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}
