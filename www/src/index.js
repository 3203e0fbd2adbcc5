// wembed: sentence embeddings in the browser (WebGPU or wasm) and in Node (wasm), equal to
// sentence-transformers. This layer finds, streams and caches the model files, queues calls
// and turns errors into WembedError; the numerics live in the wasm module (../pkg).

import initWasm, { WasmEmbedder } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule } from './common.js';
import { resolveSource, gatherFiles } from './files.js';

export { WembedError } from './common.js';
export { SemanticIndex } from './search.js';
export { isCached, clearCache } from './files.js';

let wasmReady = null;
/** Loads the wasm module once: from `wasm` (a URL or bytes) if given, else from beside this file. */
function ensureWasm(wasm) {
  if (wasm && !wasmReady) {
    wasmReady = initWasm({ module_or_path: wasm });
  }
  if (!wasmReady) {
    wasmReady = (async () => {
      // Vite and Node resolve this as is; with esbuild, serve pkg/wembed_bg.wasm and pass its
      // URL as the `wasm` option.
      const url = new URL('../pkg/wembed_bg.wasm', import.meta.url);
      if (isNode) {
        const { readFile } = await nodeModule('fs/promises');
        await initWasm({ module_or_path: await readFile(url) });
      } else {
        await initWasm({ module_or_path: url });
      }
    })().catch((e) => {
      wasmReady = null;
      throw new WembedError('WASM_LOAD', `cannot load wembed's wasm module: ${e.message}`, { cause: e });
    });
  }
  return wasmReady;
}

/** A loaded sentence-embedding model. */
export class Embedder {
  #inner;
  #info;
  #queue = Promise.resolve();
  #disposed = false;

  constructor(inner, info) {
    this.#inner = inner;
    this.#info = info;
  }

  /**
   * Loads a model. `source`: a Hugging Face model id (resolved against `hubBase`), a URL
   * prefix, a folder (Node), a `.gguf` file's URL or path (with tokenizer.json and the
   * sentence-transformers files beside it when there are), or { files: { name: Uint8Array } }.
   * Options: device ('auto' | 'webgpu' | 'cpu'), dtype ('auto' default: f32 on the CPU, f16 on
   * WebGPU; 'f32' | 'f16' | 'q8' | 'q4'), onProgress({file, loaded,
   * total, cached}), hubBase, revision, cache (default true), fetch, wasm (URL or bytes of
   * wembed_bg.wasm, for bundlers that do not copy it).
   */
  static async load(source, options = {}) {
    const src = resolveSource(source, options);
    const device = options.device ?? 'auto';
    if (!['auto', 'webgpu', 'cpu'].includes(device)) {
      throw new WembedError('INPUT', `device "${device}": choose auto, webgpu or cpu`);
    }
    await ensureWasm(options.wasm);
    const files = await gatherFiles(src, options);
    let inner;
    try {
      inner = await WasmEmbedder.load(files, { device, dtype: options.dtype ?? 'auto', origin: src.label });
    } catch (e) {
      throw wrap(e);
    }
    const info = { ...inner.info(), model: src.label };
    return new Embedder(inner, info);
  }

  /** { device: 'webgpu' | 'cpu', adapter, deviceReason, dtype, dim, maxTokens, model }. */
  get info() {
    return { ...this.#info };
  }

  /**
   * Embeds texts; one Float32Array per text (views into one buffer), or with
   * { output: 'matrix' } a { data, dim, count } row-major matrix.
   * Options: normalize, batchSize, prompt, promptName, truncate (default true), output,
   * onProgress(done, total).
   * Calls are queued: concurrent calls run one after another, never interleaved.
   */
  embed(texts, options = {}) {
    const run = async () => {
      if (this.#disposed) throw new WembedError('DISPOSED', 'this Embedder was disposed; load the model again');
      const list = typeof texts === 'string' ? [texts] : texts;
      if (!Array.isArray(list)) throw new WembedError('INPUT', 'texts must be a string or an array of strings');
      const { output, onProgress, ...rest } = options;
      let flat;
      try {
        flat = await this.#inner.embed(list, rest, onProgress);
      } catch (e) {
        const err = wrap(e);
        if (err.code === 'INTERNAL') this.#disposed = true;
        throw err;
      }
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
   * model takes) that overlap by `overlap` tokens (default 32): slices of the text.
   */
  chunks(text, maxTokens = 128, overlap = 32) {
    if (this.#disposed) throw new WembedError('DISPOSED', 'this Embedder was disposed; load the model again');
    if (typeof text !== 'string') throw new WembedError('INPUT', 'text must be a string');
    try {
      return this.#inner.chunks(text, maxTokens, overlap);
    } catch (e) {
      throw wrap(e);
    }
  }

  /** Frees the model's memory (wasm and GPU). Later calls fail with code 'DISPOSED'. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    const inner = this.#inner;
    this.#queue.then(() => inner.free());
  }
}

