// wembed: sentence embeddings in the browser (WebGPU or wasm) and in Node (wasm), equal to
// sentence-transformers. This layer finds, streams and caches the model files, queues calls
// and turns errors into WembedError; the numerics live in the wasm module (../pkg).

import { WasmEmbedder, __testPanicNextEmbed } from '../pkg/wembed.js';
import { WembedError } from './common.js';
import { resolveSource, gatherFiles } from './files.js';
import { ensureWasm, runTask, fromWasm, currentGeneration, wasmMemoryBytes } from './runtime.js';

export { WembedError } from './common.js';
export { SemanticIndex } from './search.js';
export { isCached, clearCache } from './files.js';

const LOAD_OPTIONS = [
  'device', 'dtype', 'onProgress', 'hubBase', 'revision', 'cache', 'fetch', 'wasm',
  'signal', 'timeout', 'stallTimeout', 'maxFileBytes',
];
const EMBED_OPTIONS = ['normalize', 'batchSize', 'prompt', 'promptName', 'truncate', 'output', 'onProgress'];

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

/** A loaded sentence-embedding model. */
export class Embedder {
  #inner;
  #info;
  #generation;
  #queue = Promise.resolve();
  #disposed = false;

  constructor(inner, info, generation) {
    this.#inner = inner;
    this.#info = info;
    this.#generation = generation;
  }

  /**
   * Loads a model. `source`: a Hugging Face model id (resolved against `hubBase`), a URL
   * prefix, a folder (Node), a `.gguf` file's URL or path (with tokenizer.json and the
   * sentence-transformers files beside it when there are), or { files: { name: Uint8Array } }.
   * Options: device ('auto' | 'webgpu' | 'cpu'), dtype ('auto' default: f32 on the CPU, f16 on
   * WebGPU; 'f32' | 'f16' | 'q8' | 'q4'), onProgress({file, loaded, total, cached}), hubBase,
   * revision, cache (default true), fetch, signal (AbortSignal), timeout (ms), wasm (URL or
   * bytes of wembed_bg.wasm, for bundlers that do not copy it).
   */
  static async load(source, options) {
    const opts = readOptions(options, LOAD_OPTIONS, 'load');
    const src = resolveSource(source, opts);
    const device = opts.device ?? 'auto';
    if (!['auto', 'webgpu', 'cpu'].includes(device)) {
      throw new WembedError('INPUT', `device "${String(device)}": choose auto, webgpu or cpu`);
    }
    await ensureWasm(opts.wasm);
    const gathered = await gatherFiles(src, opts);
    const files = gathered.files ?? gathered;
    const warnings = gathered.warnings ?? [];
    const generation = currentGeneration();
    const inner = await runTask((wake) =>
      WasmEmbedder.load(files, { device, dtype: opts.dtype ?? 'auto', origin: src.label }, wake),
    );
    let info;
    try {
      info = { ...inner.info(), model: src.label, warnings };
    } catch (e) {
      throw fromWasm(e);
    }
    return new Embedder(inner, info, generation);
  }

  /**
   * { device: 'webgpu' | 'cpu', adapter, deviceReason, dtype (what the weights are stored as),
   * digest (identifies the weights and dtype), dim, maxTokens, model, warnings }.
   */
  get info() {
    return { ...this.#info, warnings: [...this.#info.warnings] };
  }

  /** Throws unless this embedder can still be used. */
  #live() {
    if (this.#disposed) throw disposedError();
    if (this.#generation !== currentGeneration()) throw crashedError();
  }

  /**
   * Embeds texts; one Float32Array per text (views into one buffer), or with
   * { output: 'matrix' } a { data, dim, count } row-major matrix.
   * Options: normalize, batchSize, prompt, promptName, truncate (default true), output,
   * onProgress(done, total).
   * `texts` and `options` are read before this returns. Calls are queued: concurrent calls
   * run one after another, never interleaved; a call made before dispose() still runs.
   */
  embed(texts, options) {
    let list;
    let opts;
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
    } catch (e) {
      return Promise.reject(e);
    }
    const { output, onProgress, ...rest } = opts;
    const inner = this.#inner;
    const run = async () => {
      if (this.#generation !== currentGeneration()) throw crashedError();
      const flat = await runTask((wake) => inner.embed(list, rest, onProgress, wake));
      const dim = this.#info.dim;
      if (output === 'matrix') return { data: flat, dim, count: list.length };
      return Array.from({ length: list.length }, (_, i) => flat.subarray(i * dim, (i + 1) * dim));
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
      return this.#inner.chunks(text, maxTokens, overlap);
    } catch (e) {
      throw fromWasm(e);
    }
  }

  /**
   * What the model holds now: { wasmBytes (the module's linear memory, shared by every model
   * in this thread; it never shrinks), gpuBufferBytes (this model's GPU buffers) }.
   */
  memoryUsage() {
    this.#live();
    return { wasmBytes: wasmMemoryBytes(), gpuBufferBytes: this.#inner.gpuBufferBytes() };
  }

  /** Frees the model's memory (wasm and GPU) once queued calls finish. Later calls fail with 'DISPOSED'. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    const inner = this.#inner;
    const generation = this.#generation;
    this.#queue.then(() => {
      if (generation === currentGeneration()) inner.free();
    });
  }
}

/**
 * Hooks for wembed's own tests; not part of the API.
 * panicNextEmbed(): the next embed() panics inside the wasm module after its first batch.
 */
export const __testing = {
  panicNextEmbed() {
    __testPanicNextEmbed();
  },
};
