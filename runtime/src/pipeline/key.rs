//! The key of a call: its arguments and config fields, collected by the attribute's expansion
//! before the body runs.

use polars::prelude::DataFrame;
use serde_json::{Map, Value};

use crate::bounds::KeyArg;
use crate::error::{Error, Result};
use crate::fingerprint::data_version;
use crate::model::{CheckpointKey, FRAME_KEY};
use crate::pipeline::call::Spec;

/// The key arguments of one call, collected before the body runs.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    arguments: Map<String, Value>,
    config: Map<String, Value>,
    error: Option<(&'static str, String)>,
    /// The first config field named when the pipeline has no config.
    no_config: Option<&'static str>,
}

/// One key argument, serialised (or why it could not be).
#[derive(Debug)]
pub struct KeyValue(std::result::Result<Value, String>);

/// Serialises a key argument. Its bound is where a type that cannot be part of the key is
/// reported, at the parameter's type.
pub fn key_arg<T: KeyArg + ?Sized>(value: &T) -> KeyValue {
    KeyValue(value.key_value())
}

impl KeyBuilder {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the argument `name`.
    pub fn arg(&mut self, name: &'static str, value: KeyValue) {
        Self::add(&mut self.arguments, &mut self.error, name, value);
    }

    /// Puts `value` into `map` under `name`, or keeps the first error (reported by `finish`).
    fn add(
        map: &mut Map<String, Value>,
        error: &mut Option<(&'static str, String)>,
        name: &'static str,
        value: KeyValue,
    ) {
        match value.0 {
            Ok(v) => {
                map.insert(name.to_owned(), v);
            }
            Err(message) => {
                error.get_or_insert((name, message));
            }
        }
    }

    /// Adds the `DataFrame` argument `name`, by its data version.
    pub fn frame(&mut self, name: &'static str, frame: &DataFrame) {
        let value = data_version(frame)
            .map(|version| {
                let mut object = Map::new();
                object.insert(FRAME_KEY.to_owned(), version.to_hex().into());
                Value::Object(object)
            })
            .map_err(|e| e.to_string());
        self.arg(name, KeyValue(value));
    }

    /// Adds the config field at `path` (`versions.gnomad_version`).
    pub fn config(&mut self, path: &'static str, value: KeyValue) {
        Self::add(&mut self.config, &mut self.error, path, value);
    }

    /// Notes that the config field at `path` was named but the pipeline has no config.
    pub fn no_config(&mut self, path: &'static str) {
        self.no_config.get_or_insert(path);
    }

    /// The key, or the first argument that could not be part of it.
    pub(crate) fn finish(self, spec: &Spec<'_>) -> Result<CheckpointKey> {
        if let Some(field) = self.no_config {
            return Err(Error::NoConfig {
                table: spec.table.to_owned(),
                field: field.to_owned(),
            });
        }
        if let Some((argument, message)) = self.error {
            return Err(Error::Key {
                table: spec.table.to_owned(),
                function: spec.function.to_owned(),
                argument: argument.to_owned(),
                message,
            });
        }
        CheckpointKey::new(spec.function, spec.code, self.arguments, self.config)
    }
}
