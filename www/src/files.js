// Where a model's files come from and how they arrive: a Hugging Face id or URL (fetched,
// cached in the Cache API), a folder (Node), or bytes already in memory.

import { WembedError, isNode, nodeModule } from './common.js';

const CACHE_NAME = 'wembed-models-v1';
const REQUIRED = ['config.json', 'tokenizer.json', 'model.safetensors'];
const OPTIONAL = ['modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'];
const DEFAULT_HUB = 'https://huggingface.co';

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

export function resolveSource(source, opts = {}) {
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
export async function gatherFiles(src, opts) {
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
