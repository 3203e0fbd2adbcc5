// wembed: sentence embeddings in the browser (WebGPU or wasm) and in Node (wasm), equal to
// sentence-transformers. This layer finds, streams and caches the model files, queues calls
// and turns errors into WembedError; the numerics live in the wasm module (../pkg). On the CPU
// the model runs in workers (pool.js, worker.js) unless `workers: 0` asks for this thread.

import { WasmEmbedder, WasmChunker, __testPanicNextEmbed } from '../pkg/wembed.js';
import { WembedError, isNode, abortedError, checkSignal } from './common.js';
import { resolveSource, gatherFiles } from './files.js';
import { ensureWasm, runTask, fromWasm, currentGeneration, wasmMemoryBytes, wasmBuild, packagedWasm } from './runtime.js';
import { WorkerPool, workerCount, wasmForWorker } from './pool.js';
import { measureQueries, cpuDtypeFor, PROBE } from './queries.js';
import { precisionFor } from './precision.js';

export { WembedError } from './common.js';
export { SemanticIndex } from './search.js';
export { isCached, clearCache } from './files.js';
export { quantizeEmbeddings, quantizeRanges } from './precision.js';

const LOAD_OPTIONS = [
  'device', 'dtype', 'onProgress', 'hubBase', 'revision', 'cache', 'fetch', 'wasm',
  'signal', 'timeout', 'stallTimeout', 'maxFileBytes', 'workers', 'workerUrl', 'simd', 'cacheDir', 'queryDevice',
];
const EMBED_OPTIONS = [
  'normalize', 'batchSize', 'batchTokens', 'prompt', 'promptName', 'truncate', 'truncateDim', 'output', 'onProgress', 'signal',
  'precision', 'ranges',
];

/**
 * The known keys of a caller's options object, copied now into a plain object (`null` and
 * `undefined` values left out): what a getter, a Proxy or a later mutation does to the
 * caller's object cannot reach a call in flight.
 */
function readOptions(options, keys, what) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw new WembedError('INPUT', `${what} options must be an object`);
  const out = {};
  for (const key of keys) {
    let value;
    try {
      value = options[key];
    } catch (e) {
      throw new WembedError('INPUT', `${what} option \`${key}\` cannot be read: ${e?.message ?? e}`, { cause: e });
    }
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

/** `texts` copied now into a plain array of strings, or an INPUT error saying which is wrong. */
function readTexts(texts) {
  if (typeof texts === 'string') return [texts];
  let list = false;
  try {
    list = Array.isArray(texts);
  } catch {
    // a revoked Proxy
  }
  if (!list) throw new WembedError('INPUT', 'texts must be a string or an array of strings');
  try {
    const n = texts.length;
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`length ${String(n)}`);
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      const t = texts[i];
      if (typeof t !== 'string') {
        throw new WembedError('INPUT', `text ${i} is ${t === undefined ? 'missing' : `a ${typeof t}`}, not a string`);
      }
      out[i] = t;
    }
    return out;
  } catch (e) {
    if (e instanceof WembedError) throw e;
    throw new WembedError('INPUT', `texts cannot be read: ${e?.message ?? e}`, { cause: e });
  }
}

const disposedError = () => new WembedError('DISPOSED', 'this Embedder was disposed; load the model again');
const crashedError = () =>
  new WembedError('INTERNAL', 'wembed restarted its wasm module after an internal error; load the model again');
const poolGoneError = () =>
  new WembedError('INTERNAL', "every worker of this model crashed (an internal error in wembed's wasm module); load the model again");

/** Pools alive now, for the test hook that arms them all. */
const livePools = new Set();
/** Embedder -> its pool, for the test hook. */
const poolOf = new WeakMap();

/** Whether the page has a WebGPU adapter (device 'auto' then tries it on this thread). */
async function hasGpuAdapter() {
  if (isNode || !globalThis.navigator?.gpu) return false;
  try {
    return !!(await navigator.gpu.requestAdapter());
  } catch {
    return false;
  }
}

/** Test hook: device 'auto' takes a software WebGPU adapter (SwiftShader), so the query rule runs in tests. */
let autoTakesSoftwareGpu = false;

/** The workerUrl option as the workers need it: resolved against the page. */
const resolveWorkerUrl = (url) => (url === undefined || isNode ? url : new URL(String(url), globalThis.location?.href).href);

const totalBytes = (files) => Object.values(files).reduce((n, b) => n + (b?.byteLength ?? 0), 0);
const mib = (bytes) => `${(bytes / 1024 ** 2).toFixed(bytes < 1024 ** 2 ? 2 : 0)} MiB`;


/** A loaded sentence-embedding model. */
export class Embedder {
  #inner;
  #info;
  #generation;
  #queue = Promise.resolve();
  #disposed = false;
  /** On workers: the pool, and what chunks() builds its tokenizer from on first use. */
  #pool = null;
  #chunkFrom = null;
  #chunker = null;
  /** device 'auto' on a GPU, where the load measured the CPU faster on a short query (queries.js): { pool, maxTokens }. */
  #queries = null;

  constructor(inner, info, generation, pool, chunkFrom) {
    this.#inner = inner;
    this.#info = info;
    this.#generation = generation;
    if (pool) {
      this.#pool = pool;
      this.#chunkFrom = chunkFrom;
      livePools.add(pool);
      poolOf.set(this, pool);
    }
  }

  /**
   * Loads a model. `source`: a Hugging Face model id (resolved against `hubBase`), a URL
   * prefix, a folder (Node), a `.gguf` file's URL or path (with tokenizer.json and the
   * sentence-transformers files beside it when there are), or { files: { name: Uint8Array } }.
   * Options: device ('auto' | 'webgpu' | 'cpu'), dtype ('auto' default: q8 on the CPU, f16 on
   * WebGPU; 'f32' (exact) | 'f16' | 'q8' | 'q4'), onProgress({ phase: 'download', file, loaded,
   * total, cached }, then { phase: 'compile' }, { phase: 'ready' }), cacheDir (Node), hubBase,
   * revision, cache (default true), fetch, signal (AbortSignal), timeout (ms), wasm (URL or
   * bytes of wembed_bg.wasm, for bundlers that do not copy it), workers ('auto' default: the
   * CPU path runs in that many workers, each with its own copy of the weights; 0: on the
   * calling thread), workerUrl (where worker.js is, for bundlers that do not bundle it), simd
   * ('auto' default: relaxed SIMD where the engine runs it right, else SIMD128, and in the
   * relaxed build the faster of its two integer kernels, raced by the first quantized CPU model
   * on each thread; or 'simd128', or 'relaxed': which of the package's wasm builds runs),
   * queryDevice ('auto' default: where device 'auto' picks a GPU, a one-text call runs on a CPU
   * copy in workers when the load timed a short query sooner there; 'webgpu': every call on the
   * GPU, no copy, nothing timed).
   */
  static async load(source, options) {
    const opts = readOptions(options, LOAD_OPTIONS, 'load');
    // Progress in phases: 'download' on every file event ({ file, loaded, total, cached }, from
    // the network or the cache), 'compile' once the files are here and the model is being built
    // (quantized at load, uploaded to the GPU, copied into workers), then 'ready'.
    const user = typeof opts.onProgress === 'function' ? opts.onProgress : null;
    const phase = (name) => {
      if (!user) return;
      try {
        user({ phase: name });
      } catch (e) {
        throw new WembedError('INPUT', `onProgress threw: ${e?.message ?? e}`, { cause: e });
      }
    };
    if (user) opts.onProgress = (e) => user(e && typeof e === 'object' && 'loaded' in e ? { phase: 'download', ...e } : e);
    const embedder = await Embedder.#load(source, opts, phase);
    try {
      phase('ready');
    } catch (e) {
      embedder.dispose();
      throw e;
    }
    return embedder;
  }

  static async #load(source, opts, phase) {
    const src = resolveSource(source, opts);
    const device = opts.device ?? 'auto';
    if (!['auto', 'webgpu', 'cpu'].includes(device)) {
      throw new WembedError('INPUT', `device "${String(device)}": choose auto, webgpu or cpu`);
    }
    const workers = opts.workers ?? 'auto';
    if (workers !== 'auto') await workerCount(workers, 0); // checks the value before any download
    if (opts.workerUrl !== undefined && typeof opts.workerUrl !== 'string' && !(opts.workerUrl instanceof URL)) {
      throw new WembedError('INPUT', 'workerUrl must be a string or a URL');
    }
    const queryDevice = opts.queryDevice ?? 'auto';
    if (!['auto', 'webgpu'].includes(queryDevice)) {
      throw new WembedError('INPUT', `queryDevice "${String(queryDevice)}": choose auto or webgpu`);
    }
    if (opts.simd !== undefined && !['auto', 'simd128', 'relaxed'].includes(opts.simd)) {
      throw new WembedError('INPUT', `simd "${String(opts.simd)}": choose auto, simd128 or relaxed`);
    }
    await ensureWasm(opts.wasm, opts.simd);
    const gathered = await gatherFiles(src, opts);
    const files = gathered.files ?? gathered;
    const warnings = gathered.warnings ?? [];
    phase('compile');
    const dtype = opts.dtype ?? 'auto';
    const count = device === 'webgpu' ? 0 : await workerCount(workers, totalBytes(files));
    // 'auto' with an adapter tries the GPU here first (WebGPU stays on the calling thread).
    const here = count === 0 || (device === 'auto' && (await hasGpuAdapter()));
    let inner = null;
    let info = null;
    const generation = currentGeneration();
    if (here) {
      const asked = device === 'auto' && autoTakesSoftwareGpu ? 'webgpu' : device;
      inner = await runTask((wake) => WasmEmbedder.load(files, { device: asked, dtype, simd: opts.simd, origin: src.label }, wake));
      try {
        info = { ...inner.info(), model: src.label, warnings, workers: 0, workerMemoryNote: null };
      } catch (e) {
        throw fromWasm(e);
      }
      if (count === 0 || info.device !== 'cpu') {
        const embedder = new Embedder(inner, info, generation);
        if (device === 'auto' && queryDevice === 'auto' && info.device === 'webgpu' && count > 0) {
          try {
            await embedder.#routeQueries(files, count, { dtype, simd: opts.simd, wasm: opts.wasm, origin: src.label, url: opts.workerUrl });
          } catch (e) {
            embedder.dispose();
            throw e;
          }
        }
        return embedder;
      }
    }
    // The CPU path, in workers. A main-thread model that 'auto' already built stays for chunks().
    const workerUrl = resolveWorkerUrl(opts.workerUrl);
    let pool;
    try {
      pool = await WorkerPool.start(count, {
        files,
        options: { device: inner ? 'cpu' : device, dtype, simd: opts.simd, origin: src.label },
        wasm: await wasmForWorker(opts.wasm, opts.simd),
        url: workerUrl,
      });
    } catch (e) {
      // 'auto' asked for workers where it could; where none start (no Worker, a blocked
      // script), the calling thread, with a warning. A count asked for is an error.
      if (!e.workersDidNotStart || workers !== 'auto') throw e;
      warnings.push({ file: 'workers', warning: `${e.message}: the model runs on the calling thread` });
      inner ??= await runTask((wake) => WasmEmbedder.load(files, { device, dtype, simd: opts.simd, origin: src.label }, wake));
      try {
        info = { ...inner.info(), model: src.label, warnings, workers: 0, workerMemoryNote: null };
      } catch (err) {
        throw fromWasm(err);
      }
      return new Embedder(inner, info, generation);
    }
    const bytes = totalBytes(files);
    const poolInfo = {
      ...pool.info,
      ...(info ? { deviceReason: info.deviceReason } : {}),
      model: src.label,
      warnings,
      workers: count,
      // The workers' build: chosen for this load, whatever this thread's first load chose.
      wasm: opts.wasm === undefined ? packagedWasm(opts.simd).build : 'custom',
      workerMemoryNote:
        `each of the ${count} worker${count === 1 ? '' : 's'} holds its own copy of the model ` +
        `(its files are ${mib(bytes)}): without cross-origin isolation workers share no memory; ` +
        'this thread keeps only the tokenizer, for chunks()',
    };
    // chunks() runs here, on the tokenizer alone: the weights stay in the workers. (A GGUF
    // file holds its config and vocabulary in its header, so it is kept whole.)
    const small = Object.fromEntries(Object.entries(files).filter(([name]) => name !== 'model.safetensors'));
    let chunker = null;
    if (!inner) {
      try {
        chunker = new WasmChunker(small, src.label);
      } catch (e) {
        pool.terminate();
        throw fromWasm(e);
      }
    }
    const chunkFrom = { files: small, origin: src.label, inner, chunker, generation };
    return new Embedder(null, poolInfo, generation, pool, chunkFrom);
  }

  /**
   * device 'auto' on a GPU: times a short query here and on a CPU copy in `count` workers,
   * and keeps the copy for one-text calls where it was sooner (the rule: queries.js).
   */
  async #routeQueries(files, count, { dtype, simd, wasm, origin, url }) {
    const inner = this.#inner;
    const found = await measureQueries({
      gpuQuery: () => runTask((wake) => inner.embed([PROBE], {}, null, wake)),
      load: {
        files,
        options: { device: 'cpu', dtype: cpuDtypeFor(this.#info.dtype, dtype), simd, origin },
        wasm: await wasmForWorker(wasm, simd),
        url: resolveWorkerUrl(url),
      },
      count,
      modelBytes: totalBytes(files),
      modelMaxTokens: this.#info.maxTokens,
      dim: this.#info.dim,
    });
    const info = this.#info;
    if (found.skipped) {
      info.deviceReason += `; every call runs on the GPU: ${found.skipped}`;
      return;
    }
    info.deviceReason += `; ${found.reason}`;
    info.queryDevice = found.device;
    info.queryTimes = found.times;
    info.queryMaxTokens = found.maxTokens;
    if (!found.pool) return;
    this.#queries = { pool: found.pool, maxTokens: found.maxTokens };
    livePools.add(found.pool);
    poolOf.set(this, found.pool);
    info.workerMemoryNote =
      `each of the ${found.pool.size} worker${found.pool.size === 1 ? '' : 's'} that run short queries holds its own ` +
      `copy of the model on the CPU (its files are ${mib(totalBytes(files))}) beside the GPU's`;
  }

  /** Whether `texts` is one text that the CPU copy takes (see #routeQueries). */
  #isShortQuery(texts) {
    const q = this.#queries;
    if (!q || texts.length !== 1 || q.pool.size === 0) return false;
    const text = texts[0];
    // No token is longer than 32 characters in practice: longer texts skip the tokenizer.
    if (text.length > q.maxTokens * 32) return false;
    try {
      return this.#inner.chunks(text, q.maxTokens, 0).length <= 1;
    } catch {
      return false; // the GPU path reports what is wrong
    }
  }

  /**
   * { device: 'webgpu' | 'cpu', adapter, deviceReason, arithmetic (on WebGPU: 'f16' | 'f32',
   * the tiled matmuls'), dtype (what the weights are stored as),
   * digest (identifies the weights and dtype), dim, maxTokens, model, warnings, workers (how
   * many workers run the model now; 0: the calling thread), queryWorkers (how many share a
   * one-text call), workerMemoryNote }; with device 'auto' on a GPU also queryDevice,
   * queryTimes and queryMaxTokens (see #routeQueries).
   */
  get info() {
    const info = { ...this.#info, warnings: [...this.#info.warnings], wasm: this.#info.wasm ?? wasmBuild };
    if (info.queryTimes) info.queryTimes = { ...info.queryTimes };
    info.queryWorkers = 0;
    // A pass whose f16 arithmetic overflowed switches the GPU to f32 for good: ask it now.
    if (info.device === 'webgpu' && !this.#disposed) {
      try {
        info.arithmetic = this.#inner.info().arithmetic;
      } catch {
        // a replaced wasm instance: the value from load stands
      }
    }
    const pool = this.#pool ?? this.#queries?.pool;
    if (pool) {
      info.workers = pool.size;
      info.queryWorkers = pool.queryWorkers;
    }
    return info;
  }

  /** Throws unless this embedder can still be used. */
  #live() {
    if (this.#disposed) throw disposedError();
    if (this.#pool) {
      if (this.#pool.size === 0) throw poolGoneError();
    } else if (this.#generation !== currentGeneration()) {
      throw crashedError();
    }
  }

  /**
   * Embeds texts; one Float32Array per text (views into one buffer), or with
   * { output: 'matrix' } a { data, dim, count } row-major matrix.
   * Options: normalize, batchSize, batchTokens, prompt, promptName, truncate (default true),
   * truncateDim (keep the first n values: Matryoshka models; 1 to info.dim), signal
   * (AbortSignal: the call rejects with ABORTED, between batches; the embedder stays usable), output,
   * onProgress(done, total), precision ('float32' default; 'int8' | 'uint8' over `ranges` or the
   * call's own vectors, 'binary' | 'ubinary': sentence-transformers' quantize_embeddings, after
   * normalization and truncateDim; Int8Array / Uint8Array rows), ranges ([min, max] per dimension).
   * `texts` and `options` are read before this returns. Calls are queued: concurrent calls
   * run one after another, never interleaved; a call made before dispose() still runs.
   */
  embed(texts, options) {
    let list;
    let opts;
    let quantized;
    try {
      this.#live();
      list = readTexts(texts);
      opts = readOptions(options, EMBED_OPTIONS, 'embed');
      if (opts.output !== undefined && opts.output !== 'matrix' && opts.output !== 'arrays') {
        throw new WembedError('INPUT', `output "${String(opts.output)}": choose 'matrix' or 'arrays'`);
      }
      if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') {
        throw new WembedError('INPUT', 'onProgress must be a function');
      }
      checkSignal(opts.signal);
      const t = opts.truncateDim;
      if (t !== undefined && !(Number.isInteger(t) && t >= 1 && t <= this.#info.dim)) {
        throw new WembedError('INPUT', `truncateDim ${String(t)}: a whole number from 1 to ${this.#info.dim} (info.dim)`);
      }
      quantized = precisionFor(opts.precision, opts.ranges, t ?? this.#info.dim);
    } catch (e) {
      return Promise.reject(e);
    }
    const { output, onProgress, signal, precision, ranges, ...rest } = opts;
    const inner = this.#inner;
    const pool = this.#pool;
    const dim = rest.truncateDim ?? this.#info.dim;
    const run = async () => {
      if (signal?.aborted) throw abortedError('the embed call', signal);
      let flat;
      if (pool) {
        if (pool.size === 0) throw poolGoneError();
        flat = await pool.embed(list, rest, onProgress, dim, signal);
      } else if (this.#isShortQuery(list)) {
        flat = await this.#queries.pool.embed(list, rest, onProgress, dim, signal);
      } else {
        if (this.#generation !== currentGeneration()) throw crashedError();
        flat = await runTask((wake) => inner.embed(list, rest, onProgress, wake), signal);
      }
      const q = quantized(flat, list.length);
      if (output === 'matrix') return { data: q.data, dim: q.dim, count: list.length };
      return Array.from({ length: list.length }, (_, i) => q.data.subarray(i * q.dim, (i + 1) * q.dim));
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /**
   * `text` cut into pieces of at most `maxTokens` tokens (default 128, capped at what the
   * model takes with its default prompt) that overlap by `overlap` tokens (default 32):
   * slices of the text.
   */
  chunks(text, maxTokens = 128, overlap = 32) {
    this.#live();
    if (typeof text !== 'string') throw new WembedError('INPUT', 'text must be a string');
    for (const [name, v] of [['maxTokens', maxTokens], ['overlap', overlap]]) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new WembedError('INPUT', `${name} must be a whole number >= 0`);
      }
    }
    try {
      return this.#tokenizerModel().chunks(text, maxTokens, overlap);
    } catch (e) {
      throw fromWasm(e);
    }
  }

  /**
   * What chunks() tokenizes with: the model itself on the calling thread; on workers, a
   * WasmChunker on this thread (the tokenizer and sentence config, no weights), built at
   * load, since chunks() is synchronous and SemanticIndex.add relies on that.
   */
  #tokenizerModel() {
    if (!this.#pool) return this.#inner;
    const from = this.#chunkFrom;
    if (from.inner && from.generation === currentGeneration()) return from.inner;
    if (currentGeneration() < 0) {
      // This thread's instance crashed (another model's panic) and is replaced at the next
      // await; chunks() cannot wait for it.
      ensureWasm().catch(() => {});
      throw new WembedError('INTERNAL', "wembed's wasm module on this thread is restarting after an internal error; call chunks() again");
    }
    if (from.chunker && from.generation === currentGeneration()) return from.chunker;
    // This thread's instance was replaced after a crash: the tokenizer again, from the small files.
    from.generation = currentGeneration();
    from.inner = null;
    from.chunker = new WasmChunker(from.files, from.origin);
    return from.chunker;
  }

  /**
   * What the model holds now: { wasmBytes (the module's linear memory, shared by every model
   * in this thread; it never shrinks), gpuBufferBytes (this model's GPU buffers) }.
   */
  memoryUsage() {
    this.#live();
    if (this.#pool) return { wasmBytes: wasmMemoryBytes(), gpuBufferBytes: 0, workerWasmBytes: this.#pool.wasmBytes };
    const workerWasmBytes = this.#queries?.pool.wasmBytes ?? 0;
    return { wasmBytes: wasmMemoryBytes(), gpuBufferBytes: this.#inner.gpuBufferBytes(), workerWasmBytes };
  }

  /** Frees the model's memory (wasm and GPU) once queued calls finish. Later calls fail with 'DISPOSED'. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    const inner = this.#inner;
    const generation = this.#generation;
    const pool = this.#pool;
    const from = this.#chunkFrom;
    const queries = this.#queries;
    this.#queue.then(() => {
      if (queries) {
        queries.pool.terminate();
        livePools.delete(queries.pool);
      }
      if (pool) {
        pool.terminate();
        livePools.delete(pool);
        if (from.generation === currentGeneration()) {
          from.inner?.free();
          from.chunker?.free();
        }
        from.inner = null;
        from.chunker = null;
        from.files = null;
      } else if (generation === currentGeneration()) {
        inner.free();
      }
    });
  }
}

/**
 * Hooks for wembed's own tests; not part of the API.
 * panicNextEmbed(embedder?, worker?): the next embed() panics inside the wasm module after its
 * first batch: in `embedder`'s workers (all, or the one at index `worker`); without an
 * embedder, in the workers of every model that has some, or on this thread when none has. The flag
 * lives in each wasm instance, so a worker is armed by a message (ordered before the next
 * call's); the returned promise settles once the workers have it.
 */
export const __testing = {
  /** device 'auto' takes a software WebGPU adapter from now on (false: as shipped). */
  autoTakesSoftwareGpu(on) {
    autoTakesSoftwareGpu = !!on;
  },
  /** How many workers shared the forward pass of `embedder`'s last one-text call (0: none ran). */
  lastSplitParts(embedder) {
    return poolOf.get(embedder)?.lastSplitParts ?? 0;
  },
  panicNextEmbed(embedder, worker) {
    const pool = embedder === undefined ? null : poolOf.get(embedder);
    if (pool) return pool.panicNextEmbed(worker);
    const armed = [...livePools].filter((p) => p.size > 0);
    if (embedder === undefined && armed.length > 0) return Promise.all(armed.map((p) => p.panicNextEmbed()));
    __testPanicNextEmbed();
    return Promise.resolve();
  },
};
