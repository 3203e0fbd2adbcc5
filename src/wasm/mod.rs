//! The wasm-bindgen surface: the only module that knows about JavaScript. The npm package's
//! JS layer (www/src/index.js) fetches and caches files, queues calls and shapes the API; this
//! module turns bytes into an [`AnyEmbedder`] and texts into one flat `Float32Array`.
//!
//! Every error leaves as a JS `Error` with a stable `code` (see [`Error::code`]); nothing here
//! unwraps on input from JavaScript. The async calls (`load`, `embed`) return a [`WasmTask`]
//! that the JS layer polls itself (see [`task`] for why).

mod task;

use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Float64Array, Object, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::ModelFiles;
use crate::backend::cpu::qmatmul::Kernel;
use crate::device::{AnyEmbedder, Device, Dtype, LoadOptions};
use crate::embedder::EmbedOptions;
use crate::error::Error;
use crate::index::VectorIndex;
pub use task::{WasmTask, reinit_after_crash, set_panic_reporter, test_panic_next_embed};

fn js_error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        js_error(e.code(), &e.to_string())
    }
}

fn input_error(message: impl Into<String>) -> JsValue {
    js_error("INPUT", &message.into())
}

// Options are read field by field, not through serde-wasm-bindgen: its errors name neither
// the option nor the same value on both sides of a worker's structured clone (a function on
// this thread arrives in a worker as {}), and the pool must give the calling thread's message
// (www/test/workers.test.mjs checks that they are equal). `info` goes out through serde.
fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(obj, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn get_string(obj: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| input_error(format!("option `{key}` must be a string"))),
    }
}

fn get_bool(obj: &JsValue, key: &str) -> Result<Option<bool>, JsValue> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| input_error(format!("option `{key}` must be a boolean"))),
    }
}

/// A whole number from `min` to `max` in option `key` (JS numbers arrive as f64).
fn get_whole(obj: &JsValue, key: &str, min: f64, max: f64, range: &str) -> Result<Option<usize>, JsValue> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n >= min && n <= max && n.fract() == 0.0 => Ok(Some(n as usize)),
            _ => Err(input_error(format!("{key} must be a whole number from {range}"))),
        },
    }
}

/// `WasmEmbedder::embed`'s options (JS names) as [`EmbedOptions`].
fn embed_options(options: &JsValue) -> Result<EmbedOptions, JsValue> {
    let defaults = EmbedOptions::default();
    Ok(EmbedOptions {
        batch_size: get_whole(options, "batchSize", 1.0, 1e6, "1 to 1000000")?,
        batch_tokens: get_whole(options, "batchTokens", 1.0, 1e9, "1 to 1000000000")?,
        truncate_dim: get_whole(options, "truncateDim", 1.0, 1e6, "1 to the model's dim")?,
        normalize: get_bool(options, "normalize")?,
        prompt: get_string(options, "prompt")?,
        prompt_name: get_string(options, "promptName")?,
        truncate: get_bool(options, "truncate")?.unwrap_or(defaults.truncate),
    })
}

/// `WasmEmbedder::info`'s value.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsInfo {
    device: &'static str,
    adapter: String,
    device_reason: String,
    /// The integer kernel ('simd128' or 'relaxed') and why, on the CPU with quantized
    /// weights; absent otherwise.
    kernel: Option<String>,
    kernel_reason: Option<String>,
    /// On WebGPU, the tiled matmuls' arithmetic ('f16' or 'f32', AnyEmbedder::gpu_arithmetic);
    /// absent on the CPU.
    arithmetic: Option<&'static str>,
    /// What the weights are stored as: auto resolved for this device, a quantized file's own.
    dtype: String,
    digest: String,
    dim: usize,
    max_tokens: usize,
}

/// An object of file name -> `Uint8Array`, copied.
fn read_files(files: &JsValue, skip: Option<&str>) -> Result<HashMap<String, Vec<u8>>, JsValue> {
    if !files.is_object() {
        return Err(input_error("files must be an object of file name -> Uint8Array"));
    }
    let mut map = HashMap::new();
    for key in Object::keys(files.unchecked_ref::<Object>()).iter() {
        let name = key.as_string().unwrap_or_default();
        let value = Reflect::get(files, &key).map_err(|_| input_error(format!("file `{name}` cannot be read")))?;
        let bytes =
            value.dyn_into::<Uint8Array>().map_err(|_| input_error(format!("file `{name}` must be a Uint8Array")))?;
        if Some(name.as_str()) != skip {
            map.insert(name, bytes.to_vec());
        }
    }
    Ok(map)
}

/// `model.safetensors` of a load's files, left where JavaScript holds it and read a range at
/// a time ([`crate::weights::ReadAt`]).
struct JsFile(Uint8Array);

// SAFETY: the wasm build has no threads (no atomics): nothing here is ever on another one.
unsafe impl Send for JsFile {}
// SAFETY: as above.
unsafe impl Sync for JsFile {}

impl crate::weights::ReadAt for JsFile {
    fn len(&self) -> usize {
        self.0.length() as usize
    }
    fn read_at(&self, offset: usize, len: usize) -> crate::Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len());
        let Some(end) = end else {
            return Err(Error::Backend(format!("read {len} bytes at {offset} of a {}-byte file", self.len())));
        };
        let mut out = vec![0u8; len];
        self.0.subarray(offset as u32, end as u32).copy_to(&mut out);
        Ok(out)
    }
}

/// The `model.safetensors` of `files` (checked a Uint8Array by [`read_files`]), if there is one.
fn weights_file(files: &JsValue) -> Result<Option<JsFile>, JsValue> {
    match get(files, "model.safetensors") {
        None => Ok(None),
        Some(v) => v
            .dyn_into::<Uint8Array>()
            .map(|a| Some(JsFile(a)))
            .map_err(|_| input_error("file `model.safetensors` must be a Uint8Array")),
    }
}

/// A loaded model, on the CPU (wasm) or the GPU (WebGPU).
#[wasm_bindgen]
pub struct WasmEmbedder {
    inner: Rc<AnyEmbedder>,
    why: String,
    /// What identifies the vectors (see [`ModelFiles::digest`]), with the dtype in use.
    digest: String,
    /// On the CPU with quantized weights: the integer kernel's name and why it was chosen.
    kernel: Option<(String, String)>,
}

/// `performance.now()` where the global has it (pages, workers, Node), else `Date.now()`.
fn now_ms() -> f64 {
    let global = js_sys::global();
    let precise = || {
        let performance = Reflect::get(&global, &"performance".into()).ok()?;
        let now = Reflect::get(&performance, &"now".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
        now.call0(&performance).ok()?.as_f64()
    };
    precise().unwrap_or_else(js_sys::Date::now)
}

#[wasm_bindgen]
impl WasmEmbedder {
    /// `files`: an object mapping file names (`config.json`, `1_Pooling/config.json`, …) to
    /// `Uint8Array`s, copied before this returns, except `model.safetensors`, which is read
    /// a tensor at a time during the load: keep its bytes as they are until the task settles. `options`: `{ device: 'auto'|'cpu'|'webgpu',
    /// dtype: 'auto'|'f32'|'f16'|'q8'|'q4', origin }`. The task's value is the `WasmEmbedder`.
    pub fn load(files: JsValue, options: JsValue, wake: js_sys::Function) -> Result<WasmTask, JsValue> {
        // The weights stay in JavaScript's heap, read a tensor at a time: a copy in wasm memory
        // beside the model it builds was the peak of a browser load (2.16x the file in f32).
        let map = read_files(&files, Some("model.safetensors"))?;
        let weights = weights_file(&files)?;
        let device: Device = get_string(&options, "device")?.as_deref().unwrap_or("auto").parse()?;
        let dtype: Dtype = get_string(&options, "dtype")?.as_deref().unwrap_or("auto").parse()?;
        let origin = get_string(&options, "origin")?.unwrap_or_else(|| "model".into());
        // The relaxed build's integer kernel: raced (~25 ms, once a thread) when a CPU model
        // first interleaves its weights, or relaxed where `simd: 'relaxed'` asks.
        let simd = get_string(&options, "simd")?;
        Kernel::plan_wasm(simd.as_deref() == Some("relaxed"), now_ms);
        let integer = !matches!(dtype, Dtype::F32 | Dtype::F16);
        let mut files = ModelFiles::from_map(origin, map);
        if let Some(w) = weights {
            files.insert_reader("model.safetensors", Box::new(w));
        }
        Ok(WasmTask::new(
            async move {
                let (inner, why) = AnyEmbedder::load(&files, &LoadOptions { device, dtype, profile: false }).await?;
                let digest = format!("{}-{}", files.digest()?, inner.dtype_name());
                let cpu = integer && matches!(inner, AnyEmbedder::Cpu(_));
                let kernel = cpu.then(Kernel::chosen).flatten().map(|(k, why)| (format!("{k:?}").to_lowercase(), why));
                Ok(JsValue::from(WasmEmbedder { inner: Rc::new(inner), why, digest, kernel }))
            },
            wake,
        ))
    }

    /// Embeds `texts` (an array of strings, copied before this returns); the task's value is one
    /// `Float32Array` of `texts.length * dim` floats. `options`: `{ normalize, batchSize,
    /// batchTokens, prompt, promptName, truncate, truncateDim }`; `onProgress(done, total)` is called after each wave of
    /// batches, and between waves the task yields to the event loop.
    pub fn embed(
        &self,
        texts: Array,
        options: JsValue,
        on_progress: Option<js_sys::Function>,
        wake: js_sys::Function,
    ) -> Result<WasmTask, JsValue> {
        let mut owned = Vec::with_capacity(texts.length() as usize);
        for i in 0..texts.length() {
            let t = Reflect::get_u32(&texts, i).map_err(|_| input_error(format!("text {i} cannot be read")))?;
            owned.push(t.as_string().ok_or_else(|| input_error(format!("text {i} is not a string")))?);
        }
        let opts = embed_options(&options)?;
        let inner = self.inner.clone();
        Ok(WasmTask::new(
            async move {
                let refs: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
                let progress = |done: usize, total: usize| {
                    task::maybe_test_panic();
                    if let Some(f) = &on_progress {
                        // A throwing callback is the caller's problem, not a failed embed.
                        let _ = f.call2(&JsValue::NULL, &(done as f64).into(), &(total as f64).into());
                    }
                };
                let vectors = inner.embed_async(&refs, &opts, progress).await?;
                let flat: Vec<f32> = vectors.into_iter().flatten().collect();
                Ok(Float32Array::from(flat.as_slice()).into())
            },
            wake,
        ))
    }

    /// Whether [`Self::embed_split`] shares this model's forward pass between workers (a CPU
    /// model of the BERT family, see [`crate::split`]).
    #[wasm_bindgen(js_name = canSplit)]
    pub fn can_split(&self) -> bool {
        matches!(&*self.inner, AnyEmbedder::Cpu(e) if e.can_split())
    }

    /// One text embedded by `parts` workers together, this one being `part` (see
    /// [`crate::split`]). `exchange(rows: Float32Array, parts: number)` sends this part's rows
    /// to parts `0..parts` and returns a Promise of every part's rows in part order (an Array
    /// of Float32Array); a rejection ends the call with that error. The task's value is the
    /// vector (a Float32Array of dim floats) on part 0, null on the others.
    #[wasm_bindgen(js_name = embedSplit)]
    pub fn embed_split(
        &self,
        text: String,
        options: JsValue,
        part: u32,
        parts: u32,
        exchange: js_sys::Function,
        wake: js_sys::Function,
    ) -> Result<WasmTask, JsValue> {
        let opts = embed_options(&options)?;
        let inner = self.inner.clone();
        if parts == 0 || part >= parts {
            return Err(input_error(format!("part {part} of {parts}")));
        }
        Ok(WasmTask::new(
            async move {
                let AnyEmbedder::Cpu(e) = &*inner else {
                    return Err(js_error("UNSUPPORTED", "a split embed runs on the CPU only"));
                };
                task::maybe_test_panic();
                let mut ex = JsExchange(exchange);
                let v = e.embed_split(&text, &opts, part as usize, parts as usize, &mut ex).await?;
                Ok(v.map_or(JsValue::NULL, |v| Float32Array::from(v.as_slice()).into()))
            },
            wake,
        ))
    }

    /// `text` cut into pieces of at most `max_tokens` tokens sharing `overlap` tokens (capped
    /// at what the model takes), as an array of strings.
    pub fn chunks(&self, text: String, max_tokens: u32, overlap: u32) -> Result<Array, JsValue> {
        let pieces = self.inner.chunks(&text, max_tokens as usize, overlap as usize)?;
        Ok(pieces.into_iter().map(JsValue::from).collect())
    }

    /// Bytes of GPU buffers this model holds now (0 on the CPU): for soak tests.
    #[wasm_bindgen(js_name = gpuBufferBytes)]
    pub fn gpu_buffer_bytes(&self) -> f64 {
        self.inner.gpu_buffer_bytes() as f64
    }

    /// `{ device, adapter, deviceReason, kernel, kernelReason, arithmetic, dtype, digest, dim,
    /// maxTokens }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let info = JsInfo {
            device: match *self.inner {
                AnyEmbedder::Cpu(_) => "cpu",
                AnyEmbedder::Gpu(_) => "webgpu",
            },
            adapter: self.inner.device_name(),
            device_reason: self.why.clone(),
            kernel: self.kernel.as_ref().map(|k| k.0.clone()),
            kernel_reason: self.kernel.as_ref().map(|k| k.1.clone()),
            arithmetic: self.inner.gpu_arithmetic(),
            dtype: self.inner.dtype_name(),
            digest: self.digest.clone(),
            dim: self.inner.dim(),
            max_tokens: self.inner.max_tokens(),
        };
        serde_wasm_bindgen::to_value(&info).map_err(|e| js_error("INTERNAL", &format!("info: {e}")))
    }
}

/// [`crate::split::Exchange`] through a JavaScript function (see [`WasmEmbedder::embed_split`]).
struct JsExchange(js_sys::Function);

impl crate::split::Exchange for JsExchange {
    async fn all_gather(&mut self, mine: Vec<f32>, parts: usize) -> crate::Result<Vec<Vec<f32>>> {
        let failed = |e: JsValue| {
            let message = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string());
            Error::Backend(format!("split embed: {}", message.unwrap_or_else(|| format!("{e:?}"))))
        };
        let rows = Float32Array::from(mine.as_slice());
        let promise = self.0.call2(&JsValue::NULL, &rows, &(parts as f64).into()).map_err(failed)?;
        let promise = promise.dyn_into::<js_sys::Promise>().map_err(failed)?;
        let all = wasm_bindgen_futures::JsFuture::from(promise).await.map_err(failed)?;
        let all = all.dyn_into::<Array>().map_err(failed)?;
        if all.length() as usize != parts {
            return Err(Error::Backend(format!("split embed: {} parts' rows for {parts} parts", all.length())));
        }
        all.iter().map(|r| r.dyn_into::<Float32Array>().map(|r| r.to_vec()).map_err(failed)).collect()
    }
}

/// The tokenizer and sentence config of a model without its weights: `chunks()` on the page's
/// thread for a model that runs in workers.
#[wasm_bindgen]
pub struct WasmChunker {
    inner: crate::embedder::Chunker,
}

#[wasm_bindgen]
impl WasmChunker {
    /// `files` as for [`WasmEmbedder::load`]; `model.safetensors` may be left out.
    #[wasm_bindgen(constructor)]
    pub fn new(files: JsValue, origin: String) -> Result<WasmChunker, JsValue> {
        let files = ModelFiles::from_map(origin, read_files(&files, None)?);
        Ok(WasmChunker { inner: crate::embedder::Chunker::load(&files)? })
    }

    pub fn chunks(&self, text: String, max_tokens: u32, overlap: u32) -> Result<Array, JsValue> {
        let pieces = self.inner.chunks(&text, max_tokens as usize, overlap as usize)?;
        Ok(pieces.into_iter().map(JsValue::from).collect())
    }
}

/// The vector index behind the npm package's `SemanticIndex` (see [`crate::index`]).
#[wasm_bindgen]
pub struct WasmIndex {
    inner: VectorIndex,
}

#[wasm_bindgen]
impl WasmIndex {
    /// An empty index: `storage` is 'f32', 'int8' or 'binary'; `model` names the model and
    /// dtype whose vectors it will hold.
    #[wasm_bindgen(constructor)]
    pub fn new(dim: u32, storage: String, model: String) -> Result<WasmIndex, JsValue> {
        Ok(WasmIndex { inner: VectorIndex::new(dim as usize, storage.parse()?, model)? })
    }

    /// Adds `labels.length` vectors (`vectors` holds them row by row).
    pub fn add(&mut self, labels: &[u32], vectors: &[f32]) -> Result<(), JsValue> {
        Ok(self.inner.add(labels, vectors)?)
    }

    /// Removes the vectors with these labels; returns how many went.
    pub fn remove(&mut self, labels: &[u32]) -> u32 {
        self.inner.remove(&labels.iter().copied().collect()) as u32
    }

    /// The `k` best matches among labels in `allowed` (all when undefined): a flat array of
    /// (label, score) pairs, best first.
    pub fn search(&self, query: &[f32], k: u32, allowed: Option<Vec<u32>>) -> Result<Float64Array, JsValue> {
        let allowed: Option<std::collections::HashSet<u32>> = allowed.map(|a| a.into_iter().collect());
        let allow = |l: u32| allowed.as_ref().is_none_or(|a| a.contains(&l));
        let hits = self.inner.search(query, k as usize, &allow)?;
        let flat: Vec<f64> = hits.into_iter().flat_map(|(l, s)| [l as f64, s as f64]).collect();
        Ok(Float64Array::from(flat.as_slice()))
    }

    pub fn len(&self) -> u32 {
        self.inner.len() as u32
    }

    pub fn dim(&self) -> u32 {
        self.inner.dim() as u32
    }

    pub fn storage(&self) -> String {
        self.inner.storage().name().into()
    }

    pub fn model(&self) -> String {
        self.inner.model().into()
    }

    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<WasmIndex, JsValue> {
        Ok(WasmIndex { inner: VectorIndex::from_bytes(bytes)? })
    }
}
