//! Weight files -> named, shape-checked host tensors (f32, converted from f16 / bf16) or block
//! matrices: safetensors (float checkpoints and wembed's quantized files) and GGUF.

use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, gguf_name};
use crate::quant::{BLOCK, BlockQ4_0, QuantFormat, QuantMatrix};

/// Metadata key naming the format of a file written by [`quantize_file`].
pub const DTYPE_KEY: &str = "wembed.dtype";
/// Metadata key naming the file a quantized file was made from.
pub const SOURCE_KEY: &str = "wembed.source";

/// Bytes of a float tensor converted between page releases (see [`Weights::get`]): a multiple
/// of every element width.
const CONVERT_BYTES: usize = 1 << 20;

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

/// What is told that some bytes of a file have been converted and may leave memory.
pub type Release<'a> = dyn Fn(&[u8]) + 'a;

/// A weight file read a range at a time, its bytes staying with the caller (in wasm, a
/// `Uint8Array` in the JavaScript heap): a load then never holds the whole file beside the
/// model it builds, only the tensor being converted, a megabyte at a time for floats.
pub trait ReadAt {
    /// The file's length in bytes.
    fn len(&self) -> usize;
    /// Bytes `offset..offset + len` (within [`ReadAt::len`]; the caller checks).
    fn read_at(&self, offset: usize, len: usize) -> Result<Vec<u8>>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn read_at(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        Ok(self[offset..offset + len].to_vec())
    }
}

/// A tensor's bytes: a slice of a file in memory (or mapped), or a range read when needed.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Slice(&'a [u8]),
    At(&'a dyn ReadAt, usize, usize),
}

impl<'a> Raw<'a> {
    /// The bytes, whole.
    fn all(self) -> Result<Cow<'a, [u8]>> {
        match self {
            Raw::Slice(b) => Ok(Cow::Borrowed(b)),
            Raw::At(r, offset, len) => r.read_at(offset, len).map(Cow::Owned),
        }
    }

    /// The bytes in parts of `size` (the last shorter), each read when the iterator gets to it.
    fn parts(self, size: usize) -> impl Iterator<Item = Result<Cow<'a, [u8]>>> {
        let len = match self {
            Raw::Slice(b) => b.len(),
            Raw::At(_, _, len) => len,
        };
        let size = size.max(1);
        (0..len.div_ceil(size)).map(move |i| {
            let (start, n) = (i * size, size.min(len - i * size));
            match self {
                Raw::Slice(b) => Ok(Cow::Borrowed(&b[start..start + n])),
                Raw::At(r, offset, _) => r.read_at(offset + start, n).map(Cow::Owned),
            }
        })
    }
}

/// One parsed weight file.
pub struct WeightFile<'a> {
    source: Source<'a>,
    file: String,
    /// The `wembed.dtype` [`quantize_file`] recorded: its U8 tensors are blocks.
    quantized: Option<String>,
    /// Told each tensor's bytes once they are converted (see [`WeightFile::releasing`]).
    release: Option<&'a Release<'a>>,
}

enum Source<'a> {
    Safetensors(SafeTensors<'a>),
    /// A safetensors file behind a [`ReadAt`]: its header, where its data starts, the reader.
    SafetensorsAt(safetensors::tensor::Metadata, usize, &'a dyn ReadAt),
    /// Tensors named as llama.cpp names them; looked up through [`gguf_name`].
    Gguf(Gguf, &'a [u8]),
}

impl<'a> WeightFile<'a> {
    pub fn parse(bytes: &'a [u8], file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let bad = |e: safetensors::SafeTensorError| {
            Error::bad_file(&file, format!("not a readable safetensors file ({e}); is it truncated or corrupt?"))
        };
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let quantized = quantized_as(&meta, &file)?;
        Ok(WeightFile { source: Source::Safetensors(st), file, quantized, release: None })
    }

    /// A safetensors file read through `reader`: the header now (checked as
    /// [`WeightFile::parse`] checks it), each tensor when the model asks for it.
    pub fn parse_at(reader: &'a dyn ReadAt, file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let bad = |why: String| {
            Error::bad_file(&file, format!("not a readable safetensors file ({why}); is it truncated or corrupt?"))
        };
        let len = reader.len();
        if len < 8 {
            return Err(bad(format!("{len} bytes")));
        }
        let n = u64::from_le_bytes(reader.read_at(0, 8)?.try_into().map_err(|_| bad("no header length".into()))?);
        // safetensors' own cap on a header (100 MB).
        if n > 100_000_000 || n as usize > len - 8 {
            return Err(bad(format!("a header of {n} bytes in a file of {len}")));
        }
        let header = reader.read_at(8, n as usize)?;
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
        if 8 + n as usize + meta.data_len() != len {
            return Err(bad(format!(
                "its header describes {} bytes of data, the file has {}",
                meta.data_len(),
                len - 8 - n as usize
            )));
        }
        let quantized = quantized_as(&meta, &file)?;
        Ok(WeightFile { source: Source::SafetensorsAt(meta, 8 + n as usize, reader), file, quantized, release: None })
    }

    /// A GGUF file (see [`crate::gguf`]).
    pub fn parse_gguf(bytes: &'a [u8], file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let g = Gguf::parse(bytes, &file)?;
        Ok(WeightFile { source: Source::Gguf(g, bytes), file, quantized: None, release: None })
    }

    /// Calls `release` with each tensor's bytes once they have been converted to what the
    /// model keeps, so that a mapped file's pages can go as the load walks through it
    /// ([`crate::ModelFiles::release`]).
    pub fn releasing(mut self, release: &'a Release<'a>) -> Self {
        self.release = Some(release);
        self
    }

    /// All tensors, by their full (Hugging Face) names.
    pub fn root(&self) -> Weights<'_> {
        let blocks = matches!(self.quantized.as_deref(), Some("q8_0" | "q4"));
        Weights { source: &self.source, file: &self.file, blocks, prefix: String::new(), release: self.release }
    }
}

/// The `wembed.dtype` a safetensors header records, if one wembed reads.
fn quantized_as(meta: &safetensors::tensor::Metadata, file: &str) -> Result<Option<String>> {
    let quantized = meta.metadata().as_ref().and_then(|m| m.get(DTYPE_KEY)).cloned();
    match quantized.as_deref() {
        None | Some("f16") | Some("q8_0") | Some("q4") => Ok(quantized),
        Some(other) => Err(Error::bad_file(file, format!("{DTYPE_KEY} `{other}` (wembed reads f16, q8_0, q4)"))),
    }
}

/// A tensor found in a file: its dtype, shape and bytes.
enum Found<'a> {
    St(Dtype, Vec<usize>, Raw<'a>),
    Gguf(GgmlType, Vec<usize>, &'a [u8]),
}

/// The tensors of one file under a name prefix, read on demand.
pub struct Weights<'a> {
    source: &'a Source<'a>,
    file: &'a str,
    /// U8 tensors hold blocks.
    blocks: bool,
    prefix: String,
    release: Option<&'a Release<'a>>,
}

impl<'a> Weights<'a> {
    /// Weights under `prefix.` (e.g. `encoder.layer.3`).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Weights<'a> {
        let prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}.{prefix}", self.prefix) };
        Weights { source: self.source, file: self.file, blocks: self.blocks, prefix, release: self.release }
    }

    /// `raw` has been converted: its pages may go.
    fn done(&self, raw: &[u8]) {
        if let Some(release) = self.release {
            release(raw);
        }
    }

    /// [`Self::done`] for a tensor's bytes where they lie in the file in memory (bytes read
    /// through a [`ReadAt`] were the load's own, and are gone already).
    fn done_raw(&self, raw: Raw<'_>) {
        if let Raw::Slice(b) = raw {
            self.done(b);
        }
    }

    fn find(&self, full: &str) -> Option<Found<'a>> {
        match self.source {
            Source::Safetensors(st) => {
                let v = st.tensor(full).ok()?;
                Some(Found::St(v.dtype(), v.shape().to_vec(), Raw::Slice(v.data())))
            }
            Source::SafetensorsAt(meta, start, reader) => {
                let t = meta.info(full)?;
                let (s, e) = t.data_offsets;
                Some(Found::St(t.dtype, t.shape.clone(), Raw::At(*reader, start + s, e - s)))
            }
            Source::Gguf(g, bytes) => {
                let t = g.tensors.get(&gguf_name(g.architecture(), full)?)?;
                Some(Found::Gguf(t.dtype, t.shape.clone(), &bytes[t.start..t.end]))
            }
        }
    }

    /// A matrix stored in blocks (a U8 tensor `[rows, blocks * block_bytes]` in a file
    /// [`quantize_file`] wrote; the width tells q8_0 from q4_1), or None when it is stored as
    /// floats.
    pub fn get_quant(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QuantMatrix>> {
        let full = self.full(name);
        let (format, data) = match self.find(&full) {
            Some(Found::St(Dtype::U8, shape, data)) if self.blocks => {
                let per_row = cols.div_ceil(BLOCK);
                let format = [QuantFormat::Q8_0, QuantFormat::Q4_1]
                    .into_iter()
                    .find(|f| shape == [rows, per_row * f.block_bytes()])
                    .ok_or_else(|| {
                        Error::weight(
                            &full,
                            format!(
                                "block shape {shape:?} in {}; the config implies [{rows}, {}] (q8_0) or [{rows}, {}] \
                                 (q4_1)",
                                self.file,
                                per_row * QuantFormat::Q8_0.block_bytes(),
                                per_row * QuantFormat::Q4_1.block_bytes()
                            ),
                        )
                    })?;
                (format, data.all()?)
            }
            Some(Found::Gguf(
                dtype @ (GgmlType::Q8_0
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q4K
                | GgmlType::Q5K
                | GgmlType::Q6K),
                shape,
                data,
            )) => {
                if shape != [rows, cols] {
                    return Err(self.shape_error(&full, &shape, &[rows, cols]));
                }
                if dtype == GgmlType::Q4_0 {
                    let blocks: Vec<BlockQ4_0> = data.chunks_exact(18).map(bytemuck::pod_read_unaligned).collect();
                    self.done(data);
                    return Ok(Some(self.in_hf_order(&full, QuantMatrix::from_q4_0(rows, cols, &blocks))?));
                }
                let format = match dtype {
                    GgmlType::Q8_0 => QuantFormat::Q8_0,
                    GgmlType::Q4K => QuantFormat::Q4K,
                    GgmlType::Q5K => QuantFormat::Q5K,
                    GgmlType::Q6K => QuantFormat::Q6K,
                    _ => QuantFormat::Q4_1,
                };
                (format, Cow::Borrowed(data))
            }
            _ => return Ok(None),
        };
        let q = QuantMatrix::from_bytes(format, rows, cols, &data)
            .map_err(|e| Error::weight(&full, format!("{e} in {}", self.file)))?;
        if let Cow::Borrowed(b) = data {
            self.done(b);
        }
        Ok(Some(self.in_hf_order(&full, q)?))
    }

    /// The file row of each Hugging Face row of `full` `[rows, _]`, where the file stores them
    /// in another order (a `llama` GGUF file's q/k weights: [`crate::gguf::llama_row_order`]).
    fn row_order(&self, full: &str, rows: usize) -> Result<Option<Vec<usize>>> {
        let Source::Gguf(g, _) = self.source else { return Ok(None) };
        match gguf_name(g.architecture(), full) {
            Some(name) => crate::gguf::llama_row_order(g, &name, rows, self.file),
            None => Ok(None),
        }
    }

    /// `q`, the blocks of `full`, with its rows in the Hugging Face order.
    fn in_hf_order(&self, full: &str, q: QuantMatrix) -> Result<QuantMatrix> {
        Ok(match self.row_order(full, q.rows)? {
            Some(order) => q.select_rows(&order),
            None => q,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(&self.full(name)).is_some()
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    fn shape_error(&self, full: &str, got: &[usize], want: &[usize]) -> Error {
        Error::weight(full, format!("shape {got:?} in {}, the config implies {want:?}", self.file))
    }

    /// The tensor `name`'s bytes and what they are, its shape checked against `shape`.
    fn locate(&self, name: &str, shape: &[usize]) -> Result<(String, Encoding, Raw<'a>)> {
        let full = self.full(name);
        let found = self.find(&full).ok_or_else(|| {
            // A GGUF file names it as llama.cpp does: say that name too.
            let gguf = match self.source {
                Source::Gguf(g, _) => gguf_name(g.architecture(), &full).map(|n| format!(" (GGUF tensor `{n}`)")),
                Source::Safetensors(_) | Source::SafetensorsAt(..) => None,
            };
            Error::weight(
                &full,
                format!("missing from {}{}; is this the right model file?", self.file, gguf.unwrap_or_default()),
            )
        })?;
        let (encoding, got, raw) = match found {
            Found::St(dtype, got, raw) => {
                let e = match dtype {
                    Dtype::F32 => Encoding::F32,
                    Dtype::F16 => Encoding::F16,
                    Dtype::BF16 => Encoding::BF16,
                    other => Encoding::Other(format!("{other:?}")),
                };
                (e, got, raw)
            }
            Found::Gguf(dtype, got, raw) => {
                let e = match dtype {
                    GgmlType::F32 => Encoding::F32,
                    GgmlType::F16 => Encoding::F16,
                    GgmlType::BF16 => Encoding::BF16,
                    GgmlType::Q8_0
                    | GgmlType::Q4_0
                    | GgmlType::Q4_1
                    | GgmlType::Q4K
                    | GgmlType::Q5K
                    | GgmlType::Q6K => Encoding::Blocks,
                };
                (e, got, Raw::Slice(raw))
            }
        };
        if got != shape {
            return Err(self.shape_error(&full, &got, shape));
        }
        Ok((full, encoding, raw))
    }

    /// Float bytes of `full` converted and appended to `out`, a slice of the file at a time,
    /// its pages given back once converted: a large tensor (a word table can be half a model)
    /// is never resident twice, as file bytes and as floats. `start` is the index of the first
    /// value, for the error that names a non-finite one.
    fn convert(&self, full: &str, encoding: &Encoding, raw: &[u8], start: usize, out: &mut Vec<f32>) -> Result<()> {
        let from = out.len();
        for part in raw.chunks(CONVERT_BYTES) {
            match encoding {
                Encoding::F32 => out.extend(part.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                Encoding::F16 => {
                    out.extend(part.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()))
                }
                _ => out.extend(part.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
            }
            self.done(part);
        }
        if let Some(i) = out[from..].iter().position(|v| !v.is_finite()) {
            return Err(Error::weight(full, format!("non-finite value at index {} in {}", start + i, self.file)));
        }
        Ok(())
    }

    /// The tensor `name`, checked against `shape` and converted to f32 (a GGUF block tensor is
    /// dequantized: only small tables are read this way).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let (full, encoding, raw) = self.locate(name, shape)?;
        let data: Vec<f32> = match encoding {
            Encoding::F32 | Encoding::F16 | Encoding::BF16 => {
                let mut out = Vec::with_capacity(shape.iter().product());
                for part in raw.parts(CONVERT_BYTES) {
                    let start = out.len();
                    self.convert(&full, &encoding, &part?, start, &mut out)?;
                }
                // Reading a page maps its cached neighbours too (fault-around), some of them in
                // slices already given back: the whole tensor once more at the end.
                self.done_raw(raw);
                match self.row_order(&full, shape.first().copied().unwrap_or(0))? {
                    Some(order) => {
                        let cols = out.len() / shape[0].max(1);
                        order.iter().flat_map(|&r| out[r * cols..(r + 1) * cols].iter().copied()).collect()
                    }
                    None => out,
                }
            }
            Encoding::Blocks => {
                let (rows, cols) = (shape[..shape.len() - 1].iter().product(), shape[shape.len() - 1]);
                let q = self
                    .get_quant(name, rows, cols)?
                    .ok_or_else(|| Error::weight(&full, format!("unreadable blocks in {}", self.file)))?;
                let mut out = vec![0.0; rows * cols];
                q.dequantize_rows(0, rows, &mut out);
                if let Some(i) = out.iter().position(|v| !v.is_finite()) {
                    return Err(Error::weight(&full, format!("non-finite value at index {i} in {}", self.file)));
                }
                out
            }
            Encoding::Other(what) => {
                return Err(Error::weight(
                    &full,
                    format!("dtype {what} in {}; wembed reads F32, F16 and BF16", self.file),
                ));
            }
        };
        Ok(HostTensor::new(shape.to_vec(), data))
    }

    /// The float matrix `name` `[rows, cols]` quantized to `format` a slice of rows at a time,
    /// so that its f32 copy is never whole (blocks are per row: the result equals quantizing the
    /// whole matrix). Other encodings go through [`Weights::get`].
    pub fn get_quantized(&self, name: &str, rows: usize, cols: usize, format: QuantFormat) -> Result<QuantMatrix> {
        let (full, encoding, raw) = self.locate(name, &[rows, cols])?;
        let width = match encoding {
            Encoding::F32 => 4,
            Encoding::F16 | Encoding::BF16 => 2,
            _ => return Ok(QuantMatrix::quantize(format, rows, cols, &self.get(name, &[rows, cols])?.data)),
        };
        let per_part = (CONVERT_BYTES / (cols * width).max(1)).max(1);
        let mut parts = Vec::with_capacity(rows.div_ceil(per_part));
        let mut floats = Vec::with_capacity(per_part * cols);
        for (i, part) in raw.parts(per_part * cols * width).enumerate() {
            floats.clear();
            self.convert(&full, &encoding, &part?, i * per_part * cols, &mut floats)?;
            parts.push(QuantMatrix::quantize(format, floats.len() / cols.max(1), cols, &floats));
        }
        self.done_raw(raw);
        let q = QuantMatrix::vstack(&parts)
            .ok_or_else(|| Error::weight(&full, format!("no rows to quantize in {}", self.file)))?;
        self.in_hf_order(&full, q)
    }
}

/// What a tensor's bytes are, whichever file they came from.
enum Encoding {
    F32,
    F16,
    BF16,
    Blocks,
    Other(String),
}

/// The format [`quantize_file`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDtype {
    /// Everything in f16: half the download.
    F16,
    /// Matmul weights and the word-embedding table in q8_0 blocks, the other tables in f16.
    Q8_0,
    /// As Q8_0 but the word-embedding table in q4_1 (see [`crate::quant`] for why the matmuls
    /// stay 8-bit).
    Q4,
}

impl FileDtype {
    /// The name recorded under [`DTYPE_KEY`].
    pub fn name(self) -> &'static str {
        match self {
            FileDtype::F16 => "f16",
            FileDtype::Q8_0 => "q8_0",
            FileDtype::Q4 => "q4",
        }
    }
}

/// Writes a smaller copy of a model's safetensors file. Matmul weights (2-D `*.weight`
/// outside `embeddings.`, bias tables excepted) and the word-embedding table become blocks (U8 tensors of ggml
/// blocks, row by row) or f16; the other embedding tables become f16; the rest is copied. The
/// metadata records the format and the source, and [`WeightFile`] reads the result directly.
pub fn quantize_file(bytes: &[u8], dtype: FileDtype, source: &str) -> Result<Vec<u8>> {
    let file = WeightFile::parse(bytes, source)?;
    if file.quantized.is_some() {
        return Err(Error::Input(format!("{source} is already quantized ({:?})", file.quantized)));
    }
    let Source::Safetensors(st) = &file.source else {
        return Err(Error::Input(format!("{source} is not a safetensors file")));
    };
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let is_float = matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16);
        // BERT's word_embeddings, ModernBERT's tok_embeddings, Gemma's embed_tokens.
        let words = shape.len() == 2
            && ["word_embeddings.weight", "tok_embeddings.weight", "embed_tokens.weight"]
                .iter()
                .any(|w| name.ends_with(w));
        // MPNet's relative_attention_bias is a [buckets, heads] table, not a matmul weight.
        let matmul = shape.len() == 2
            && name.ends_with(".weight")
            && !words
            && !name.contains("embeddings.")
            && !name.ends_with("relative_attention_bias.weight");
        if !is_float {
            out.push((name, view.dtype(), shape, view.data().to_vec()));
            continue;
        }
        let values = file.root().get(&name, &shape)?.data;
        let format = match dtype {
            FileDtype::F16 => None,
            FileDtype::Q8_0 if matmul || words => Some(QuantFormat::Q8_0),
            FileDtype::Q4 if matmul => Some(QuantFormat::Q8_0),
            FileDtype::Q4 if words => Some(QuantFormat::Q4_1),
            _ => None,
        };
        if let Some(format) = format {
            let q = QuantMatrix::quantize(format, shape[0], shape[1], &values);
            let width = q.per_row() * format.block_bytes();
            out.push((name, Dtype::U8, vec![shape[0], width], q.bytes().to_vec()));
        } else if matmul || name.contains("embeddings.") || dtype == FileDtype::F16 {
            let halves: Vec<u8> = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
            out.push((name, Dtype::F16, shape, halves));
        } else {
            out.push((name, view.dtype(), shape, view.data().to_vec()));
        }
    }
    let views = out
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::weight(n, e))?)))
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (DTYPE_KEY.to_string(), dtype.name().to_string()),
        (SOURCE_KEY.to_string(), source.to_string()),
    ]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Backend(format!("writing safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantizing a slice of rows at a time gives the blocks quantizing the whole matrix gives,
    /// across several slices and a short last one.
    #[test]
    fn a_matrix_quantized_in_slices_equals_it_quantized_whole() {
        let (rows, cols) = (3001, 96); // 1.15 MB of f32: a slice of 2,730 rows, then 271
        let data: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![rows, cols], &bytes).unwrap();
        let file = safetensors::serialize([("w", view)], None).unwrap();
        let weights = WeightFile::parse(&file, "test").unwrap();
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
            let sliced = weights.root().get_quantized("w", rows, cols, format).unwrap();
            assert_eq!(sliced.bytes(), QuantMatrix::quantize(format, rows, cols, &data).bytes(), "{format:?}");
        }
    }
}
