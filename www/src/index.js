// wembed: sentence embeddings in the browser (WebGPU or wasm) and in Node (wasm), equal to
// sentence-transformers. This layer finds, streams and caches the model files, queues calls
// and turns errors into WembedError; the numerics live in the wasm module (../pkg).

import initWasm, { WasmEmbedder } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule } from './common.js';

export { WembedError } from './common.js';
export { SemanticIndex } from './search.js';

const CACHE_NAME = 'wembed-models-v1';
const REQUIRED = ['config.json', 'tokenizer.json', 'model.safetensors'];
const OPTIONAL = ['modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'];
const DEFAULT_HUB = 'https://huggingface.co';

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

/**
 * Where a model's files come from:
 *  - { kind: 'url', base }   a URL prefix (a Hugging Face id resolves to one)
 *  - { kind: 'fs', dir }     a folder (Node)
 *  - { kind: 'bytes', files } file name -> Uint8Array, already in memory
 */
/** A `.gguf` file named by a URL or a path: its folder, and the file's name in it. */
function ggufSplit(path) {
  const m = /^(.*)\/([^/]+\.gguf)$/i.exec(path);
  return m ? { base: m[1] || '.', gguf: m[2] } : null;
}

function resolveSource(source, opts = {}) {
  const src = resolvePlain(source, opts);
  // A GGUF file: read it (as model.gguf) with the sentence-transformers files beside it.
  const where = src.kind === 'url' ? src.base : src.kind === 'fs' ? src.dir : null;
  const split = where && ggufSplit(where);
  if (split) return src.kind === 'url' ? { ...src, base: split.base, gguf: split.gguf } : { ...src, dir: split.base, gguf: split.gguf };
  return src;
}

function resolvePlain(source, opts) {
  if (source instanceof Map) return { kind: 'bytes', files: Object.fromEntries(source), label: 'in-memory model' };
  if (source instanceof URL) return { kind: 'url', base: source.href.replace(/\/+$/, ''), label: source.href };
  if (source && typeof source === 'object') {
    const files = source.files ?? source;
    return { kind: 'bytes', files, label: 'in-memory model' };
  }
  if (typeof source !== 'string' || source.length === 0) {
    throw new WembedError('INPUT', 'source must be a model id, a URL, a folder (Node) or { files }');
  }
  if (/^https?:\/\//i.test(source)) return { kind: 'url', base: source.replace(/\/+$/, ''), label: source };
  if (source.startsWith('file://') || source.startsWith('/') || source.startsWith('.') || /^[A-Za-z]:[\\/]/.test(source)) {
    if (!isNode) throw new WembedError('INPUT', `a local path (${source}) only works in Node; in a browser give a URL or a model id`);
    const dir = source.startsWith('file://') ? new URL(source).pathname : source;
    return { kind: 'fs', dir, label: dir };
  }
  if (/^[\w.-]+(\/[\w.-]+)?$/.test(source)) {
    const hub = (opts.hubBase ?? DEFAULT_HUB).replace(/\/+$/, '');
    const revision = encodeURIComponent(opts.revision ?? 'main');
    return { kind: 'url', base: `${hub}/${source}/resolve/${revision}`, label: source };
  }
  throw new WembedError('INPUT', `cannot tell what kind of source "${source}" is`);
}

async function openCache(enabled) {
  if (!enabled || typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // opaque origins and some private modes have no Cache API
  }
}

/** Fetches one file with progress; from the cache when it is there. Null if optional and absent. */
async function fetchFile(base, name, { optional, onProgress, cache, fetchImpl }) {
  const url = `${base}/${name}`;
  if (cache) {
    const hit = await cache.match(url);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (hit.headers.get('x-wembed-missing') === '1') return null;
      onProgress?.({ file: name, loaded: bytes.length, total: bytes.length, cached: true });
      return bytes;
    }
  }
  let response;
  try {
    response = await fetchImpl(url);
  } catch (e) {
    throw new WembedError('FETCH', `cannot fetch ${url} (${e.message}) and it is not cached`, { cause: e });
  }
  if (response.status === 404 && optional) {
    // Remember the absence too, so a cached model loads offline.
    await cache?.put(url, new Response(new Uint8Array(0), { headers: { 'x-wembed-missing': '1' } }));
    return null;
  }
  if (!response.ok) throw new WembedError('FETCH', `${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get('content-length')) || 0;
  const chunks = [];
  let loaded = 0;
  if (response.body && response.body.getReader) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      onProgress?.({ file: name, loaded, total: total || loaded, cached: false });
    }
  } else {
    const buf = new Uint8Array(await response.arrayBuffer());
    chunks.push(buf);
    loaded = buf.length;
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  onProgress?.({ file: name, loaded, total: loaded, cached: false });
  await cache?.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  return bytes;
}

async function readLocal(dir, name, optional, onProgress) {
  const { readFile } = await nodeModule('fs/promises');
  const { join } = await nodeModule('path');
  try {
    const bytes = new Uint8Array(await readFile(join(dir, name)));
    onProgress?.({ file: name, loaded: bytes.length, total: bytes.length, cached: false });
    return bytes;
  } catch (e) {
    if (e.code === 'ENOENT' && optional) return null;
    throw new WembedError('IO', `cannot read ${join(dir, name)}: ${e.message}`, { cause: e });
  }
}

/** The model's files as { name: Uint8Array }, fetched or read as the source says. */
async function gatherFiles(src, opts) {
  if (src.kind === 'bytes') return src.files;
  const cache = src.kind === 'url' ? await openCache(opts.cache !== false) : null;
  const fetchImpl = opts.fetch ?? globalThis.fetch;
  const get = (name, optional) =>
    src.kind === 'fs'
      ? readLocal(src.dir, name, optional, opts.onProgress)
      : fetchFile(src.base, name, { optional, onProgress: opts.onProgress, cache, fetchImpl });
  const files = {};
  const all = src.gguf
    ? [[src.gguf, false, 'model.gguf'], ...['tokenizer.json', ...OPTIONAL].map((n) => [n, true, n])]
    : [...REQUIRED.map((n) => [n, false, n]), ...OPTIONAL.map((n) => [n, true, n])];
  // All at once, but failures reported in list order, so the same missing folder always names
  // the same file.
  const settled = await Promise.allSettled(all.map(([n, optional]) => get(n, optional)));
  for (const [i, [, , as]] of all.entries()) {
    if (settled[i].status === 'rejected') throw settled[i].reason;
    if (settled[i].value) files[as] = settled[i].value;
  }
  // Module folders (1_Pooling/…) are named by modules.json.
  if (files['modules.json']) {
    let modules = [];
    try {
      modules = JSON.parse(new TextDecoder().decode(files['modules.json']));
    } catch {
      // the Rust side reports a malformed modules.json with its file name
    }
    for (const m of Array.isArray(modules) ? modules : []) {
      if (m && typeof m.path === 'string' && m.path) {
        const name = `${m.path}/config.json`;
        const bytes = await get(name, true);
        if (bytes) files[name] = bytes;
      }
    }
  }
  return files;
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

/** Whether every required file of `source` is in the browser cache (so it loads offline). */
export async function isCached(source, options = {}) {
  const src = resolveSource(source, options);
  if (src.kind !== 'url') return src.kind === 'bytes';
  const cache = await openCache(true);
  if (!cache) return false;
  for (const name of src.gguf ? [src.gguf] : REQUIRED) {
    if (!(await cache.match(`${src.base}/${name}`))) return false;
  }
  return true;
}

/** Deletes every cached model file. */
export async function clearCache() {
  if (typeof caches === 'undefined') return false;
  return caches.delete(CACHE_NAME);
}
