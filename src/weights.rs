//! Safetensors bytes -> named, shape-checked host tensors (f32, converted from f16 / bf16).

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A dense f32 tensor in host memory, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }

    /// Rows of a 2-D tensor stacked: `[a, k]` and `[b, k]` -> `[a + b, k]`.
    pub fn vstack(parts: &[HostTensor]) -> HostTensor {
        let cols = parts[0].shape[1];
        let rows = parts.iter().map(|p| p.shape[0]).sum();
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        HostTensor::new(vec![rows, cols], data)
    }

    /// 1-D tensors concatenated.
    pub fn concat(parts: &[HostTensor]) -> HostTensor {
        let data: Vec<f32> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        HostTensor::new(vec![data.len()], data)
    }
}

/// One parsed safetensors file.
pub struct WeightFile<'a> {
    st: SafeTensors<'a>,
    file: String,
}

impl<'a> WeightFile<'a> {
    pub fn parse(bytes: &'a [u8], file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::bad_file(&file, format!("not a readable safetensors file ({e}); is it truncated or corrupt?"))
        })?;
        Ok(WeightFile { st, file })
    }

    /// All tensors, by their full names.
    pub fn root(&self) -> Weights<'_> {
        Weights { st: &self.st, file: &self.file, prefix: String::new() }
    }
}

/// The tensors of one file under a name prefix, read on demand.
pub struct Weights<'a> {
    st: &'a SafeTensors<'a>,
    file: &'a str,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// Weights under `prefix.` (e.g. `encoder.layer.3`).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Weights<'a> {
        let prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}.{prefix}", self.prefix)
        };
        Weights { st: self.st, file: self.file, prefix }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(&self.full(name)).is_ok()
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// The tensor `name`, checked against `shape` and converted to f32.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let full = self.full(name);
        let view = self.st.tensor(&full).map_err(|_| {
            Error::weight(&full, format!("missing from {}; is this the right model file?", self.file))
        })?;
        if view.shape() != shape {
            return Err(Error::weight(
                &full,
                format!("shape {:?} in {}, the config implies {:?}", view.shape(), self.file, shape),
            ));
        }
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::weight(
                    &full,
                    format!("dtype {other:?} in {}; wembed reads F32, F16 and BF16", self.file),
                ));
            }
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::weight(&full, format!("non-finite value at index {i} in {}", self.file)));
        }
        Ok(HostTensor::new(shape.to_vec(), data))
    }
}
