export type Device = 'auto' | 'webgpu' | 'cpu';
export type Dtype = 'auto' | 'f32' | 'f16' | 'q8' | 'q4';

/** A load's progress: file events while downloading, then 'compile' (building the model), then 'ready'. */
export type LoadProgress = ProgressEvent | { phase: 'compile' | 'ready' };

export interface ProgressEvent {
  phase: 'download';
  /** File name inside the model folder, e.g. "model.safetensors". */
  file: string;
  loaded: number;
  total: number;
  /** True when the file came from the cache. */
  cached: boolean;
}

/** Something that went wrong without failing the load, e.g. a full cache (the model loads, uncached). */
export interface LoadWarning {
  /** The file concerned, or "cache". */
  file: string;
  warning: string;
}

/** The parts of the Cache API wembed uses; pass one to test or to keep models elsewhere. */
export interface CacheLike {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
}
export interface CacheStorageLike {
  open(name: string): Promise<CacheLike>;
  delete(name: string): Promise<boolean>;
}

export interface LoadOptions {
  /**
   * 'auto' (default): a hardware WebGPU adapter where there is one, else the CPU path; on a
   * GPU, a one-text call goes to a CPU copy in workers when the load measured it sooner there
   * (see `EmbedderInfo.queryDevice`). 'webgpu': every call on WebGPU (software adapters too).
   * 'cpu': the wasm CPU path.
   */
  device?: Device;
  /** 'auto' (default): q8 on the CPU (wasm), f16 on WebGPU (f32 without shader f16); 'f32' is exact. */
  dtype?: Dtype;
  /** Download progress, and warnings ({ file, warning }) such as a cache that is full. */
  onProgress?: (event: LoadProgress | LoadWarning) => void;
  /** Base URL of a Hugging Face-style hub: files at {hubBase}/{id}/resolve/{revision}/{file}. */
  hubBase?: string;
  revision?: string;
  /**
   * Cache fetched files so later loads work offline: true (default, the Cache API), false, or
   * a CacheStorage / Cache of your own. A model's files are cached as one set or not at all.
   */
  cache?: boolean | CacheStorageLike | CacheLike;
  /**
   * Node: a folder to cache downloaded model files in (Node has no Cache API), like
   * transformers.js' env.cacheDir; the WEMBED_CACHE_DIR variable sets a default. Without either,
   * Node caches nothing.
   */
  cacheDir?: string;
  fetch?: typeof fetch;
  /** Stops the load; it rejects with code 'ABORTED'. */
  signal?: AbortSignal;
  /** Milliseconds for getting all files (default: no limit); past it, code 'FETCH'. */
  timeout?: number;
  /** Milliseconds a download may go without data (default 30000); past it, code 'FETCH'. */
  stallTimeout?: number;
  /** Largest file accepted, in bytes (default 4 GiB); a longer download stops with 'FETCH'. */
  maxFileBytes?: number;
  /**
   * Where the wasm module is (URL or bytes), for bundlers that do not copy it (esbuild):
   * pkg/wembed_bg.wasm, or pkg/wembed_relaxed_bg.wasm for engines with relaxed SIMD.
   */
  wasm?: string | URL | BufferSource;
  /**
   * Which of the package's two wasm builds runs the CPU path: 'auto' (default: relaxed SIMD
   * where the engine runs it right, Chromium; else SIMD128), 'simd128' (every engine with wasm
   * SIMD) or 'relaxed' (engines without it get 'simd128'). The first load on a thread decides;
   * `info.wasm` says which runs. In the relaxed-SIMD build, 'auto' also races its two integer
   * kernels and keeps the faster (`info.kernel`); 'relaxed' runs the relaxed one.
   */
  simd?: 'auto' | 'simd128' | 'relaxed';
  /**
   * Where the CPU path runs (device 'cpu', or 'auto' when it finds no GPU; WebGPU always runs
   * on the calling thread). 'auto' (default): module Web Workers (Node: worker_threads), as
   * many as the cores, 1 to 4, fewer when the memory budget cannot hold
   * a copy of the model per worker. A number: that many (up to 64). 0: the calling thread.
   */
  workers?: 'auto' | number;
  /** Where worker.js is, for bundlers that do not bundle `new URL('./worker.js', import.meta.url)` (esbuild). */
  workerUrl?: string | URL;
  /**
   * Where device 'auto' runs a call with one short text when it picked a GPU. 'auto'
   * (default): the load times a 16-token query on the GPU and on a CPU copy in workers and
   * keeps the copy for such calls where it was sooner (`EmbedderInfo.queryDevice`). 'webgpu':
   * every call on the GPU; no copy is made and nothing is timed (a shorter load, one copy of
   * the weights). Device 'webgpu' always runs every call on the GPU.
   */
  queryDevice?: 'auto' | 'webgpu';
}

export interface EmbedOptions {
  normalize?: boolean;
  /** Most texts per forward pass (default: 32 on the CPU; WebGPU fills batches by tokens). */
  batchSize?: number;
  /** Most tokens per forward pass (default: no limit on the CPU; on WebGPU 4096, 2048 on a software adapter). */
  batchTokens?: number;
  prompt?: string;
  promptName?: string;
  /** Cut texts longer than the model's limit (default true); false makes them an error. */
  truncate?: boolean;
  /** Keep the first n values of each vector (Matryoshka models), 1 to `info.dim`; as sentence-transformers, after normalization. */
  truncateDim?: number;
  onProgress?: (done: number, total: number) => void;
  /** Aborts the call (code 'ABORTED') between batches; the embedder stays usable. */
  signal?: AbortSignal;
  /**
   * sentence-transformers' `precision` (its quantize_embeddings), applied after normalization
   * and truncateDim: 'float32' (default); 'int8' / 'uint8' per dimension over `ranges` (or this
   * call's own vectors); 'binary' / 'ubinary' one bit per value (v > 0), 8 to a byte.
   */
  precision?: Precision;
  /** Calibration of 'int8' / 'uint8': [min, max] per dimension, e.g. quantizeRanges() of a corpus. */
  ranges?: Ranges;
}

export type Precision = 'float32' | 'int8' | 'uint8' | 'binary' | 'ubinary';
export type Ranges = [ArrayLike<number>, ArrayLike<number>] | { min: ArrayLike<number>; max: ArrayLike<number> };

/** The row type of a precision. */
export type PrecisionArray<P extends Precision> = P extends 'int8' | 'binary' ? Int8Array : P extends 'uint8' | 'ubinary' ? Uint8Array : Float32Array;

export interface Matrix<A = Float32Array> {
  data: A;
  /** Values per row of `data` (for 'binary' / 'ubinary': the model's dim / 8, rounded up). */
  dim: number;
  count: number;
}

/** Per-dimension { min, max } of `count` row-major vectors of `dim` values: `ranges` for int8 / uint8. */
export function quantizeRanges(data: ArrayLike<number>, dim: number, count?: number): { min: Float32Array; max: Float32Array };
/** sentence-transformers' quantize_embeddings on vectors you already have (row-major, `count` rows of `dim`). */
export function quantizeEmbeddings<P extends Precision>(
  data: ArrayLike<number>, dim: number, count: number, precision: P, ranges?: Ranges,
): { data: PrecisionArray<P>; dim: number };

export interface EmbedderInfo {
  device: 'webgpu' | 'cpu';
  adapter: string;
  deviceReason: string;
  /**
   * On the CPU with quantized weights, the integer kernel: 'simd128' (`i32x4.dot_i16x8_s`) or
   * 'relaxed' (`i32x4.relaxed_dot_i8x16_i7x16_add`, in the relaxed-SIMD build only). The
   * relaxed-SIMD build races the two as the first quantized CPU model on each thread loads
   * (~25 ms) and keeps the faster, unless `simd: 'relaxed'` asks for relaxed; the vectors are
   * the same bit for bit.
   * Absent on the GPU and for f32 / f16 weights.
   */
  kernel?: 'simd128' | 'relaxed';
  /** Why `kernel`: the race's times, or what asked for it. */
  kernelReason?: string;
  /**
   * On WebGPU, what the matmuls of more than 32 rows compute in: 'f16' where the weights are
   * reduced (f16, q8, q4), the GPU has the `shader-f16` feature (not a software adapter) and
   * the model's activations fit f16 (not Gemma 3 or the decoder LLMs); 16 products are summed
   * in f16, then in f32 (cosine to PyTorch 0.999997 for all-MiniLM-L6-v2 f16). Else 'f32'.
   * A call whose f16 pass gave NaN or Inf (an activation past f16's range) runs again in f32,
   * which then stays: this reads 'f32' from then on. Absent on the CPU.
   */
  arithmetic?: 'f16' | 'f32';
  /** What the weights are stored as (a q8 file says 'q8' on every device); never 'auto'. */
  dtype: Exclude<Dtype, 'auto'>;
  /** Identifies the weights and dtype that made the vectors. */
  digest: string;
  dim: number;
  maxTokens: number;
  model: string;
  warnings: LoadWarning[];
  /** How many workers run the model now (0: the calling thread). A worker that crashed is dropped. */
  workers: number;
  /**
   * How many workers share the forward pass of a call with one text (a search query): each
   * runs its share of the text's tokens and they trade rows once per layer, so one query uses
   * every core. 1 where the model's architecture is not split (only the BERT family is) or one
   * worker is left; 0 on the calling thread.
   */
  queryWorkers: number;
  /**
   * device 'auto' on a GPU (with workers): where a call with one short text runs. The load
   * times a 16-token query on the GPU and on a CPU copy of the model in workers, warm; 'cpu'
   * when the CPU was sooner (that copy then stays, in `workers` workers, for one-text calls of
   * up to `queryMaxTokens` tokens; batches stay on the GPU), 'webgpu' when the GPU was.
   * Absent with device 'webgpu' or 'cpu', with `queryDevice: 'webgpu'` or `workers: 0`, and
   * where the CPU copy would not fit the memory budget (`deviceReason` says which).
   */
  queryDevice?: 'webgpu' | 'cpu';
  /** The 16-token query's warm time in ms on each, as measured at load (with queryDevice). */
  queryTimes?: { webgpu: number; cpu: number };
  /** One-text calls of up to this many tokens go to queryDevice: 16 x the ratio of the two times, at most maxTokens (0 when queryDevice is 'webgpu'). */
  queryMaxTokens?: number;
  /** With workers: that each holds its own copy of the model, and how large the files are; else null. */
  workerMemoryNote: string | null;
  /**
   * Which wasm build runs the CPU path: 'relaxed-simd' (the default where the engine runs
   * relaxed SIMD right), 'simd128', or 'custom' when the `wasm` option named the module.
   */
  wasm: 'relaxed-simd' | 'simd128' | 'custom';
}

export interface MemoryUsage {
  /** This thread's wasm linear memory (shared by every model on it; it never shrinks). */
  wasmBytes: number;
  gpuBufferBytes: number;
  /** The workers' wasm memory together, as they last reported it. */
  workerWasmBytes: number;
}

/**
 * A hub id or a URL (fetched), a folder path (Node), or the files as bytes. Bytes are read
 * during the load (the weights a tensor at a time, never copied into wasm memory whole): leave
 * them unchanged until load() settles.
 */
export type ModelSource = string | URL | Map<string, Uint8Array> | { files: Record<string, Uint8Array> };

export class WembedError extends Error {
  /** IO, BAD_FILE, BAD_WEIGHTS, UNSUPPORTED, INPUT, TOKENIZER, BACKEND, FETCH, ABORTED, WASM_LOAD, DISPOSED, MODEL_MISMATCH, INTERNAL */
  code: string;
}

export class Embedder {
  static load(source: ModelSource, options?: LoadOptions): Promise<Embedder>;
  readonly info: EmbedderInfo;
  embed(texts: string | string[], options?: EmbedOptions & { output?: 'arrays'; precision?: 'float32' }): Promise<Float32Array[]>;
  embed(texts: string | string[], options: EmbedOptions & { output: 'matrix'; precision?: 'float32' }): Promise<Matrix>;
  embed<P extends Precision>(texts: string | string[], options: EmbedOptions & { output?: 'arrays'; precision: P }): Promise<PrecisionArray<P>[]>;
  embed<P extends Precision>(texts: string | string[], options: EmbedOptions & { output: 'matrix'; precision: P }): Promise<Matrix<PrecisionArray<P>>>;
  /** `text` cut into pieces of at most `maxTokens` tokens (capped at the model's limit) overlapping by `overlap`. */
  chunks(text: string, maxTokens?: number, overlap?: number): string[];
  memoryUsage(): MemoryUsage;
  /** Frees the model once queued calls finish; on workers, terminates them. */
  dispose(): void;
}

export type Storage = 'f32' | 'int8' | 'binary';

export interface IndexOptions {
  /** What the scan reads; scores are exact cosines in every case. Default 'int8'. */
  storage?: Storage;
  /** Tokens per chunk (default 128, capped at the model's limit). */
  chunkTokens?: number;
  /** Tokens shared by consecutive chunks (default 32). */
  chunkOverlap?: number;
}

export interface IndexDocument {
  id?: string;
  text: string;
  metadata?: Record<string, unknown>;
}

export interface SearchResult {
  /** The document's id. */
  id: string;
  /** Which chunk of the document (0-based). */
  chunk: number;
  /** Cosine similarity to the query. */
  score: number;
  /** The chunk's text. */
  text: string;
  metadata: Record<string, unknown>;
}

export interface SearchResults extends Array<SearchResult> {
  readonly timings: { embedMs: number; searchMs: number };
}

export interface SearchOptions {
  /** How many chunks (default 10); any number >= 1, Infinity included: beyond the index, all of it. */
  k?: number;
  /** Metadata equality ({ key: value }) or a predicate. */
  filter?: Record<string, unknown> | ((metadata: Record<string, unknown>, id: string) => boolean);
}

export class SemanticIndex {
  static create(embedder: Embedder, options?: IndexOptions): SemanticIndex;
  /** Throws code 'MODEL_MISMATCH' for an index of another model or dtype, 'BAD_FILE' for damaged bytes. */
  static deserialize(bytes: Uint8Array | ArrayBuffer, embedder: Embedder): SemanticIndex;
  /** IndexedDB (browser) or a file path (Node); null when nothing is saved under `name`. */
  static load(name: string, embedder: Embedder): Promise<SemanticIndex | null>;
  static delete(name: string): Promise<void>;
  readonly size: number;
  readonly chunkCount: number;
  /** `digest` identifies the weights that built the vectors (null for indexes of older versions). */
  readonly info: Required<IndexOptions> & { model: string; dtype: string; digest: string | null; documents: number; chunks: number };
  has(id: string): boolean;
  add(docs: string | IndexDocument | Array<string | IndexDocument>, options?: { onProgress?: (done: number, total: number) => void }): Promise<string[]>;
  /**
   * Documents with vectors computed elsewhere (sentence-transformers on a server, same model):
   * one vector each, not chunked; row-major Float32Array of docs.length * info.dim, or one array per document.
   */
  addVectors(docs: string | IndexDocument | Array<string | IndexDocument>, vectors: Float32Array | ArrayLike<number>[]): string[];
  remove(id: string): boolean;
  search(query: string, options?: SearchOptions): Promise<SearchResults>;
  serialize(): Uint8Array;
  save(name: string): Promise<void>;
  dispose(): void;
}

/** Whether the whole file set of `source` is cached (so it loads offline). */
export function isCached(source: ModelSource, options?: Pick<LoadOptions, 'hubBase' | 'revision' | 'cache' | 'cacheDir'>): Promise<boolean>;
export function clearCache(options?: { cache?: CacheStorageLike; cacheDir?: string }): Promise<boolean>;
