// Where a model's files come from and how they arrive: a Hugging Face id or URL (fetched,
// cached in the Cache API), a folder (Node), or bytes already in memory. Everything read here
// comes from outside: names are confined to the model's folder, downloads are bounded in size
// and time, and a cache that fails is a warning, never a failed or half-cached load.

import { WembedError, isNode, nodeModule, checkSignal } from './common.js';
import { diskCacheDir, diskCacheStorage } from './diskcache.js';

// v2: one manifest per model names the set of files that belong together (v1 kept loose files).
const CACHE_NAME = 'wembed-models-v2';
const OLD_CACHES = ['wembed-models-v1'];
const REQUIRED = ['config.json', 'tokenizer.json', 'model.safetensors'];
const OPTIONAL = ['modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'];
const DEFAULT_HUB = 'https://huggingface.co';
// No total timeout by default: a 400 MB model on a slow line may take many minutes, and the
// stall timeout already bounds every wait (headers, each chunk of a body).
const DEFAULT_TIMEOUT = Infinity;
const DEFAULT_STALL = 30_000;
// More than wasm32 can hold; a body without content-length stops here, not at out-of-memory.
const DEFAULT_MAX_FILE = 4 * 1024 ** 3;
// What `wembed pack` writes beside a model's files: each file's size and SHA-256.
const PACK_MANIFEST = 'manifest.json';
// sentence-transformers models have two to five modules; a forged list should not mean
// thousands of requests.
const MAX_MODULES = 64;

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

export function resolveSource(source, opts) {
  const src = resolvePlain(source, opts ?? {});
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
    const dir = source.startsWith('file://') ? decodeURIComponent(new URL(source).pathname) : source;
    return { kind: 'fs', dir, label: dir };
  }
  if (/^[\w.-]+(\/[\w.-]+)?$/.test(source)) {
    const hub = (opts.hubBase ?? DEFAULT_HUB).replace(/\/+$/, '');
    const revision = encodeURIComponent(opts.revision ?? 'main');
    return { kind: 'url', base: `${hub}/${source}/resolve/${revision}`, label: source };
  }
  throw new WembedError('INPUT', `cannot tell what kind of source "${source}" is`);
}

/**
 * A module folder named by modules.json, checked to stay inside the model's folder or URL
 * prefix; null for the transformer itself (path ""). Throws BAD_FILE naming the path.
 */
export function modulePath(path) {
  const bad = (why) =>
    new WembedError(
      'BAD_FILE',
      `modules.json: module path ${JSON.stringify(path)} ${why}; a module path must be a folder inside the model's folder, like "1_Pooling"`,
    );
  if (typeof path !== 'string') throw bad('is not a string');
  if (path === '') return null;
  // "%" because a URL decodes %2e%2e as "..", "?" and "#" because they end a URL's path.
  if (/[\\\0-\x1f\x7f%?#]/.test(path)) throw bad('holds a backslash, a control character, "%", "?" or "#"');
  if (path.includes(':')) throw bad('holds ":" (a scheme or a drive)');
  if (path.startsWith('/')) throw bad('is absolute');
  const segments = path.split('/');
  if (segments.some((s) => s === '')) throw bad('has an empty segment');
  if (segments.some((s) => s === '.' || s === '..')) throw bad('climbs with "." or ".."');
  return path;
}

/**
 * The module folders of a modules.json, checked, each with whether it is a Dense module; []
 * when it does not parse (Rust reports that).
 */
function moduleEntries(bytes) {
  let modules;
  try {
    modules = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return [];
  }
  if (!Array.isArray(modules)) return [];
  if (modules.length > MAX_MODULES) {
    throw new WembedError('BAD_FILE', `modules.json lists ${modules.length} modules; at most ${MAX_MODULES} are read`);
  }
  const entries = new Map();
  for (const m of modules) {
    if (!m || typeof m !== 'object' || !('path' in m)) continue;
    const p = modulePath(m.path);
    const dense = typeof m.type === 'string' && /(^|\.)Dense$/.test(m.type);
    if (p) entries.set(p, (entries.get(p) ?? false) || dense);
  }
  return [...entries].map(([path, dense]) => ({ path, dense }));
}

/**
 * The files the modules of a modules.json bring, as [name, optional]: each module folder's
 * config.json (optional) and a Dense module's weights, `N_Dense/model.safetensors` (required:
 * Rust runs the module and needs them).
 */
function moduleFiles(bytes) {
  return moduleEntries(bytes).flatMap(({ path, dense }) => [
    [`${path}/config.json`, true],
    ...(dense ? [[`${path}/model.safetensors`, false]] : []),
  ]);
}

// ---- packs (wembed pack) -----------------------------------------------------------------

/**
 * The files of a `wembed pack` manifest as a Map name -> { size, sha256 }; null when there is
 * none or it is some other manifest.json. One that says wembed-pack but cannot be read is
 * BAD_FILE: a pack whose files could not be checked is not loaded unchecked.
 */
function packManifest(bytes) {
  if (!bytes) return null;
  const bad = (why) => new WembedError('BAD_FILE', `${PACK_MANIFEST}: ${why}; write the pack again with \`wembed pack\``);
  let m;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw bad(`not valid JSON (${e.message})`);
  }
  if (!m || typeof m !== 'object' || m.format !== 'wembed-pack') return null;
  if (m.version !== 1) throw bad(`wembed-pack version ${JSON.stringify(m.version)}, and this package reads version 1`);
  if (!m.files || typeof m.files !== 'object' || Array.isArray(m.files)) throw bad('no "files" object');
  const files = new Map();
  for (const [name, e] of Object.entries(m.files)) {
    if (!e || !Number.isSafeInteger(e.size) || e.size < 0 || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) {
      throw bad(`the entry of ${JSON.stringify(name)} is not { size, sha256 (64 lowercase hex digits) }`);
    }
    files.set(name, e);
  }
  return files;
}

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * Checks the files of a pack (name on the server -> bytes, or null when absent) against its
 * manifest; throws BAD_FILE naming the first one whose size or SHA-256 differs, that is not
 * listed, or that is listed but missing. Without Web Crypto (a page served over plain http has
 * no crypto.subtle) only the sizes are checked, and a warning says so.
 */
async function verifyPack(manifest, files, control, warn) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    warn({ file: PACK_MANIFEST, warning: 'no Web Crypto here (not a secure context?): the sizes of the pack\'s files were checked, not their SHA-256' });
  }
  for (const [name, bytes] of Object.entries(files)) {
    const want = manifest.get(name);
    const bad = (why) => new WembedError('BAD_FILE', `${name} ${why}; the pack is damaged or was changed after \`wembed pack\``);
    if (!bytes) {
      if (want) throw bad(`is listed in ${PACK_MANIFEST} but missing`);
      continue;
    }
    if (!want) throw bad(`is not listed in ${PACK_MANIFEST}`);
    if (bytes.length !== want.size) throw bad(`is ${bytes.length} bytes where ${PACK_MANIFEST} says ${want.size}`);
    if (subtle) {
      const got = hex(await control.guard(subtle.digest('SHA-256', bytes), name));
      if (got !== want.sha256) throw bad(`has SHA-256 ${got} where ${PACK_MANIFEST} says ${want.sha256}`);
    }
  }
}

// ---- options -----------------------------------------------------------------------------

function positive(opts, key, fallback) {
  const v = opts[key] ?? fallback;
  if (typeof v !== 'number' || !(v > 0)) {
    throw new WembedError('INPUT', `option \`${key}\` must be a positive number (or Infinity)`);
  }
  return v;
}

/**
 * One load's limits: the user's AbortSignal, a total timeout and a stall timeout, as one
 * signal for every fetch and read. `failure()` is the WembedError that stopped the load.
 */
function loadControl(opts, label) {
  const timeout = positive(opts, 'timeout', DEFAULT_TIMEOUT);
  const stall = positive(opts, 'stallTimeout', DEFAULT_STALL);
  const maxFileBytes = positive(opts, 'maxFileBytes', DEFAULT_MAX_FILE);
  const user = checkSignal(opts.signal);
  if (opts.onProgress != null && typeof opts.onProgress !== 'function') {
    throw new WembedError('INPUT', 'option `onProgress` must be a function');
  }
  const ctl = new AbortController();
  let failure = null;
  const stop = (err) => {
    if (failure) return;
    failure = err;
    ctl.abort(err);
  };
  const onUser = () => {
    const why = user.reason instanceof Error ? `: ${user.reason.message}` : user.reason !== undefined ? `: ${String(user.reason)}` : '';
    stop(new WembedError('ABORTED', `loading ${label} was aborted${why}`, { cause: user.reason }));
  };
  if (user?.aborted) onUser();
  else user?.addEventListener('abort', onUser, { once: true });
  const timer = Number.isFinite(timeout)
    ? setTimeout(() => stop(new WembedError('FETCH', `loading ${label} timed out after ${timeout} ms (option \`timeout\`)`)), timeout)
    : null;
  const onProgress = opts.onProgress
    ? (event) => {
        try {
          opts.onProgress(event);
        } catch (e) {
          throw new WembedError('INPUT', `onProgress threw: ${e?.message ?? e}`, { cause: e });
        }
      }
    : () => {};
  return {
    signal: ctl.signal,
    stall,
    maxFileBytes,
    onProgress,
    stop,
    failure: () => failure,
    /**
     * `promise`, or the load's failure if that comes first, or a FETCH error when `stallMs`
     * pass first (then `onStall` runs, to cancel what was waited on).
     */
    guard(promise, what, { stallMs = Infinity, onStall } = {}) {
      return new Promise((resolve, reject) => {
        if (failure) {
          promise.catch(() => {});
          reject(failure);
          return;
        }
        const stallTimer = Number.isFinite(stallMs)
          ? setTimeout(() => {
              onStall?.();
              reject(new WembedError('FETCH', `${what}: nothing arrived for ${stallMs} ms (option \`stallTimeout\`); the server stalled`));
            }, stallMs)
          : null;
        const onAbort = () => reject(failure);
        ctl.signal.addEventListener('abort', onAbort, { once: true });
        promise
          .then(resolve, reject)
          .finally(() => {
            clearTimeout(stallTimer);
            ctl.signal.removeEventListener('abort', onAbort);
          });
      });
    },
    done() {
      clearTimeout(timer);
      user?.removeEventListener('abort', onUser);
    },
  };
}

// ---- the cache ---------------------------------------------------------------------------

/**
 * The CacheStorage of a load without a `cache` object: the Cache API where there is one; in
 * Node, a folder when `cacheDir` (or WEMBED_CACHE_DIR) names one; else none.
 */
async function defaultStorage(cacheDir) {
  if (globalThis.caches) return globalThis.caches;
  const dir = isNode ? diskCacheDir(cacheDir) : null;
  return dir ? diskCacheStorage(dir) : null;
}

/**
 * The Cache to use: `option` false (none), true/absent (the Cache API, when there is one; a
 * folder on disk in Node with `cacheDir`), a CacheStorage (`open(name)`, like
 * `globalThis.caches`), or a Cache (match/put/delete).
 */
async function openCache(option, cacheDir) {
  if (option === false) return null;
  if (cacheDir !== undefined && cacheDir !== null && (typeof cacheDir !== 'string' || cacheDir === '')) {
    throw new WembedError('INPUT', 'option `cacheDir` must be a folder path (a non-empty string)');
  }
  let storage = await defaultStorage(cacheDir);
  if (option && typeof option === 'object') {
    if (typeof option.open === 'function') storage = option;
    else if (['match', 'put', 'delete'].every((f) => typeof option[f] === 'function')) return option;
    else throw new WembedError('INPUT', 'option `cache` must be true, false, a CacheStorage (open) or a Cache (match, put, delete)');
  } else if (option !== undefined && option !== null && option !== true) {
    throw new WembedError('INPUT', 'option `cache` must be true, false, a CacheStorage or a Cache');
  }
  if (!storage) return null;
  try {
    return await storage.open(CACHE_NAME);
  } catch {
    return null; // opaque origins and some private modes have no Cache API
  }
}

/**
 * Where one model's files live in the cache. Each model (a folder's safetensors model, or one
 * GGUF file of it) has its own entries and a manifest naming the set they belong to, so files
 * of two downloads (two revisions of `main`) never mix, and a file recorded as missing is
 * missing only in that set.
 */
function cacheKeys(src) {
  const tag = encodeURIComponent(src.gguf ?? 'model.safetensors');
  return {
    manifest: `${src.base}/?wembed-manifest=${tag}`,
    file: (name) => `${src.base}/${name}?wembed-model=${tag}`,
  };
}

/** The manifest of a cached set, or null when there is none or it is unreadable. */
async function readManifest(cache, keys) {
  const hit = await cache.match(keys.manifest);
  if (!hit) return null;
  let m;
  try {
    m = JSON.parse(await hit.text());
  } catch {
    return null;
  }
  if (!m || m.version !== 1 || typeof m.set !== 'string' || !m.files || typeof m.files !== 'object') return null;
  for (const [name, size] of Object.entries(m.files)) {
    if (!(size === null || (Number.isInteger(size) && size >= 0))) return null;
    try {
      modulePath(name); // the same rule as the names it was written with
    } catch {
      return null;
    }
  }
  return m;
}

/** The whole cached set of a model, or null unless every file of one set is there. */
async function readSet(cache, keys, control) {
  const manifest = await control.guard(readManifest(cache, keys), 'the cache');
  if (!manifest) return null;
  const files = {};
  for (const [name, size] of Object.entries(manifest.files)) {
    if (size === null) continue; // absent from the model, as of this set
    const hit = await control.guard(cache.match(keys.file(name)), 'the cache');
    if (!hit || hit.headers.get('x-wembed-set') !== manifest.set) return null;
    const bytes = new Uint8Array(await control.guard(hit.arrayBuffer(), 'the cache'));
    if (bytes.length !== size) return null;
    files[name] = bytes;
  }
  for (const [name, bytes] of Object.entries(files)) {
    control.onProgress({ file: name, loaded: bytes.length, total: bytes.length, cached: true });
  }
  return files;
}

/**
 * Stores a downloaded set (name -> bytes, or null for an optional file that is absent). A
 * failed put (a full quota) drops the model's entries and returns a warning: the load goes on.
 */
async function storeSet(cache, keys, fetched, commit) {
  const set = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const names = Object.keys(fetched);
  let current = null;
  try {
    await cache.delete(keys.manifest);
    for (const name of names) {
      if (!fetched[name]) continue;
      current = name;
      await cache.put(
        keys.file(name),
        new Response(fetched[name], { headers: { 'content-type': 'application/octet-stream', 'x-wembed-set': set } }),
      );
    }
    current = null;
    const files = Object.fromEntries(names.map((n) => [n, fetched[n] ? fetched[n].length : null]));
    await cache.put(
      keys.manifest,
      new Response(JSON.stringify({ version: 1, set, commit, files }), { headers: { 'content-type': 'application/json' } }),
    );
    return null;
  } catch (e) {
    // Half a set is no set: nothing of this model stays.
    await Promise.allSettled([keys.manifest, ...names.map(keys.file)].map(async (k) => cache.delete(k)));
    const why = e && e.name ? `${e.name}: ${e.message}` : String(e);
    return {
      file: current ?? 'cache',
      warning: `the model loaded but could not be cached (${why}), so it needs the network next time`,
    };
  }
}

// ---- downloads ---------------------------------------------------------------------------

/** Fetches one file, bounded in size and time. Null if optional and absent (404). */
async function fetchFile(base, name, { optional, fetchImpl, control }) {
  const url = `${base}/${name}`;
  const { signal, stall, maxFileBytes, onProgress } = control;
  let response;
  try {
    response = await control.guard(Promise.resolve().then(() => fetchImpl(url, { signal })), url, { stallMs: stall });
  } catch (e) {
    if (control.failure()) throw control.failure();
    if (e instanceof WembedError) throw e;
    throw new WembedError('FETCH', `cannot fetch ${url} (${e?.message ?? e}) and it is not cached`, { cause: e });
  }
  if (!response || typeof response.status !== 'number' || !response.headers || typeof response.headers.get !== 'function') {
    throw new WembedError('FETCH', `${url}: the fetch function gave ${typeof response}, not a Response`);
  }
  const drop = () => {
    try {
      response.body?.cancel?.().catch(() => {});
    } catch {
      // already locked or gone
    }
  };
  if (response.status === 404 && optional) {
    drop();
    return { bytes: null, commit: response.headers.get('x-repo-commit') };
  }
  if (!response.ok) {
    drop();
    throw new WembedError('FETCH', `${url}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  // content-length counts the bytes on the wire: compressed ones under a content-encoding, and
  // a cross-origin response may hide its content-encoding, so only then is it the file's size.
  const header = response.headers.get('content-length');
  const declared = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
  const exact = declared !== null && !response.headers.has('content-encoding') && response.type !== 'cors' && response.type !== 'opaque';
  if (declared !== null && exact && declared > maxFileBytes) {
    drop();
    throw new WembedError('FETCH', `${url} is ${declared} bytes, more than maxFileBytes (${maxFileBytes})`);
  }
  const total = declared ?? 0;
  const chunks = [];
  let loaded = 0;
  try {
    if (response.body && response.body.getReader) {
      const reader = response.body.getReader();
      const cancel = () => reader.cancel().catch(() => {});
      try {
        for (;;) {
          const { done, value } = await control.guard(reader.read(), url, { stallMs: stall, onStall: cancel });
          if (done) break;
          loaded += value.length;
          if (loaded > maxFileBytes) {
            throw new WembedError('FETCH', `${url} is longer than maxFileBytes (${maxFileBytes}); stopped at ${loaded} bytes`);
          }
          if (exact && loaded > declared) {
            throw new WembedError('FETCH', `${url} sent more than its content-length of ${declared} bytes`);
          }
          chunks.push(value);
          onProgress({ file: name, loaded, total: Math.max(total, loaded), cached: false });
        }
      } catch (e) {
        cancel();
        throw e;
      }
    } else {
      const buf = new Uint8Array(await control.guard(response.arrayBuffer(), url));
      if (buf.length > maxFileBytes) throw new WembedError('FETCH', `${url} is longer than maxFileBytes (${maxFileBytes})`);
      if (exact && buf.length > declared) throw new WembedError('FETCH', `${url} sent more than its content-length of ${declared} bytes`);
      chunks.push(buf);
      loaded = buf.length;
    }
  } catch (e) {
    if (control.failure()) throw control.failure();
    if (e instanceof WembedError) throw e;
    // undici's "terminated", a bad gzip stream, a reset connection
    throw new WembedError('FETCH', `${url}: the download failed after ${loaded} bytes (${e?.message ?? e})`, { cause: e });
  }
  if (exact && loaded < declared) {
    throw new WembedError('FETCH', `${url} ended after ${loaded} of its ${declared} bytes (a truncated download)`);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  onProgress({ file: name, loaded, total: loaded, cached: false });
  return { bytes, commit: response.headers.get('x-repo-commit') };
}

async function readLocal(dir, name, optional, control) {
  const { readFile, stat } = await nodeModule('fs/promises');
  const { resolve, sep } = await nodeModule('path');
  const root = resolve(dir);
  const path = resolve(root, name);
  if (!path.startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new WembedError('BAD_FILE', `${name} is outside the model folder ${root}`);
  }
  try {
    const size = (await control.guard(stat(path), path)).size;
    if (size > control.maxFileBytes) {
      throw new WembedError('IO', `${path} is ${size} bytes, more than maxFileBytes (${control.maxFileBytes})`);
    }
    const bytes = new Uint8Array(await control.guard(readFile(path, { signal: control.signal }), path));
    control.onProgress({ file: name, loaded: bytes.length, total: bytes.length, cached: false });
    return bytes;
  } catch (e) {
    if (control.failure()) throw control.failure();
    if (e instanceof WembedError) throw e;
    if (e.code === 'ENOENT' && optional) return null;
    throw new WembedError('IO', `cannot read ${path}: ${e.message}`, { cause: e });
  }
}

/** Settles every promise; throws the first failure in list order, else returns the values. */
async function inOrder(promises) {
  const settled = await Promise.allSettled(promises);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return settled.map((s) => s.value);
}

/**
 * The model's files as { name: Uint8Array }, fetched or read as the source says. The object
 * also carries a non-enumerable `warnings` array ({ file, warning }: e.g. a cache that was
 * full), each also reported through onProgress. Options: signal (AbortSignal: code ABORTED),
 * timeout (ms for the whole gathering, default none: code FETCH), stallTimeout (ms without
 * data, default 30 s: FETCH), maxFileBytes (default 4 GiB: FETCH), cache (false, a
 * CacheStorage or a Cache), fetch, onProgress. A folder or URL prefix with a `wembed pack`
 * manifest.json has every file checked against it (size and SHA-256: BAD_FILE naming the file).
 */
export async function gatherFiles(src, opts) {
  opts = opts ?? {};
  const control = loadControl(opts, src.label ?? 'the model');
  const warnings = [];
  const warn = (w) => {
    warnings.push(w);
    control.onProgress(w);
  };
  try {
    const files = await gather(src, opts, control, warn);
    Object.defineProperty(files, 'warnings', { value: warnings, enumerable: false });
    return files;
  } finally {
    control.done();
  }
}

async function gather(src, opts, control, warn) {
  if (control.failure()) throw control.failure();
  if (src.kind === 'bytes') {
    if (!src.files || typeof src.files !== 'object') {
      throw new WembedError('INPUT', '{ files } must map file names to Uint8Arrays');
    }
    let files;
    try {
      files = { ...src.files };
    } catch (e) {
      throw new WembedError('INPUT', `the files could not be read: ${e?.message ?? e}`, { cause: e });
    }
    if (files['modules.json'] instanceof Uint8Array) moduleEntries(files['modules.json']);
    return files;
  }
  const all = src.gguf
    ? [[src.gguf, false, 'model.gguf'], ...['tokenizer.json', ...OPTIONAL].map((n) => [n, true, n])]
    : [...REQUIRED.map((n) => [n, false, n]), ...OPTIONAL.map((n) => [n, true, n])];

  if (src.kind === 'fs') {
    const get = (name, optional) => readLocal(src.dir, name, optional, control);
    // All at once, but failures reported in list order, so the same missing folder always
    // names the same file.
    const [manifestBytes, ...values] = await inOrder([get(PACK_MANIFEST, true), ...all.map(([n, optional]) => get(n, optional))]);
    const read = {}; // name in the folder -> bytes or null (absent)
    all.forEach(([n], i) => (read[n] = values[i]));
    if (read['modules.json']) {
      for (const [name, optional] of moduleFiles(read['modules.json'])) read[name] = await get(name, optional);
    }
    const manifest = packManifest(manifestBytes);
    if (manifest) await verifyPack(manifest, read, control, warn);
    const files = {};
    for (const [name, bytes] of Object.entries(read)) {
      if (bytes) files[name === src.gguf ? 'model.gguf' : name] = bytes;
    }
    return files;
  }

  const cache = await openCache(opts.cache, opts.cacheDir);
  const keys = cacheKeys(src);
  if (cache) {
    let hit = null;
    try {
      hit = await readSet(cache, keys, control);
    } catch (e) {
      if (control.failure()) throw control.failure();
      warn({ file: 'cache', warning: `the cache could not be read (${e?.name ?? ''} ${e?.message ?? e}); downloading` });
    }
    if (hit) {
      if (src.gguf && hit[src.gguf]) {
        hit['model.gguf'] = hit[src.gguf];
        delete hit[src.gguf];
      }
      return hit;
    }
  }

  const fetchImpl = opts.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new WembedError('UNSUPPORTED', 'no fetch here: pass the `fetch` option');
  const get = (name, optional) =>
    fetchFile(src.base, name, { optional, fetchImpl, control }).catch((e) => {
      // One failure ends the load: stop the other downloads instead of finishing them.
      control.stop(control.failure() ?? e);
      throw e;
    });
  const fetched = {}; // name on the server -> bytes or null (absent)
  const commits = new Set();
  const take = (name, r) => {
    fetched[name] = r.bytes;
    if (r.commit) commits.add(r.commit);
  };
  // A pack's manifest comes with the files (a 404 is a folder that is not a pack).
  const [manifestResult, ...results] = await inOrder([get(PACK_MANIFEST, true), ...all.map(([n, optional]) => get(n, optional))]);
  if (manifestResult.commit) commits.add(manifestResult.commit);
  all.forEach(([n], i) => take(n, results[i]));
  if (fetched['modules.json']) {
    for (const [name, optional] of moduleFiles(fetched['modules.json'])) take(name, await get(name, optional));
  }
  if (commits.size > 1) {
    throw new WembedError(
      'FETCH',
      `the model changed on the server while it downloaded (commits ${[...commits].join(', ')}); load it again, or pin a revision`,
    );
  }
  const manifest = packManifest(manifestResult.bytes);
  if (manifest) await verifyPack(manifest, fetched, control, warn);
  if (cache) {
    const w = await control.guard(storeSet(cache, keys, fetched, [...commits][0] ?? null), 'the cache');
    if (w) warn(w);
  }
  const files = {};
  for (const [name, bytes] of Object.entries(fetched)) {
    if (bytes) files[name === src.gguf ? 'model.gguf' : name] = bytes;
  }
  return files;
}

/** Whether the whole file set of `source` is in the cache (so it loads offline). */
export async function isCached(source, options) {
  options = options ?? {};
  const src = resolveSource(source, options);
  if (src.kind !== 'url') return src.kind === 'bytes';
  const cache = await openCache(options.cache, options.cacheDir);
  if (!cache) return false;
  const keys = cacheKeys(src);
  try {
    const manifest = await readManifest(cache, keys);
    if (!manifest) return false;
    for (const [name, size] of Object.entries(manifest.files)) {
      if (size === null) continue;
      const hit = await cache.match(keys.file(name));
      if (!hit || hit.headers.get('x-wembed-set') !== manifest.set) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Deletes every cached model file (in `options.cache`, a CacheStorage, when given; in Node, in
 * `options.cacheDir` or WEMBED_CACHE_DIR).
 */
export async function clearCache(options) {
  const given = options?.cache;
  const storage = given && typeof given.open === 'function' && typeof given.delete === 'function' ? given : await defaultStorage(options?.cacheDir);
  if (!storage) return false;
  const [now, ...old] = await Promise.all([CACHE_NAME, ...OLD_CACHES].map((n) => storage.delete(n)));
  return now || old.some(Boolean);
}
