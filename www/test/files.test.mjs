// Where model files come from, tried against hostile input in Node: module paths that climb out
// of the model folder, a hub that lies, stalls or never answers (hostile-server.mjs, on
// 127.0.0.1), aborts and timeouts, and a cache that fills up (an in-memory stand-in for the
// Cache API, which Node lacks). None of this needs the wasm module.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, cp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { gatherFiles, resolveSource, isCached, clearCache, modulePath } from '../src/files.js';
import { WembedError } from '../src/common.js';
import { hostileHub } from './hostile-server.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors', 'modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json', '1_Pooling/config.json'];

/** Awaits `promise`, which must reject with a WembedError of `code` whose message matches. */
async function fails(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof WembedError, `expected a WembedError, got ${e?.stack ?? e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

/** A fetch over an in-memory folder (name -> bytes); `requests` lists every URL asked for. */
function memoryFetch(base, files, { requests = [], respond } = {}) {
  const fetch = async (url) => {
    requests.push(String(url));
    const custom = respond?.(String(url));
    if (custom) return custom;
    const name = String(url).startsWith(`${base}/`) ? String(url).slice(base.length + 1) : null;
    const bytes = name !== null && Object.hasOwn(files, name) ? files[name] : null;
    return bytes ? new Response(bytes, { headers: { 'content-length': String(bytes.length) } }) : new Response('not found', { status: 404 });
  };
  fetch.requests = requests;
  return fetch;
}

/** A CacheStorage stand-in: entries in a Map; `failPut(url, n)` true makes the n-th put throw. */
function memoryCaches({ failPut } = {}) {
  const store = new Map();
  let puts = 0;
  const cache = {
    async match(req) {
      const r = store.get(String(req));
      return r ? r.clone() : undefined;
    },
    async put(req, res) {
      puts += 1;
      if (failPut?.(String(req), puts)) throw new DOMException('the quota has been exceeded', 'QuotaExceededError');
      store.set(String(req), new Response(await res.arrayBuffer(), { headers: res.headers }));
    },
    async delete(req) {
      return store.delete(String(req));
    },
  };
  return {
    store,
    cache,
    open: async () => cache,
    delete: async () => {
      const had = store.size > 0;
      store.clear();
      return had;
    },
  };
}

async function folder(dir) {
  const out = {};
  for (const f of FILES) out[f] = new Uint8Array(await readFile(join(dir, f)));
  return out;
}

let hub;
let model;
const HUB_ID = 'org/model';
before(async () => {
  hub = await hostileHub({ tiny });
  model = await folder(tiny);
});
after(() => hub?.close());

const BAD_PATHS = [
  '..',
  '../secret',
  '../../../../etc',
  '1_Pooling/../../secret',
  './1_Pooling',
  '/etc',
  '/tmp/x',
  '//evil.example/x',
  'https://evil.example/x',
  'file:///etc',
  'C:/Windows',
  'c:\\windows',
  '..\\secret',
  '1_Pooling\\..\\..',
  'a\0b',
  'a//b',
  '1_Pooling/',
  '%2e%2e',
  '.%2E/secret',
  '1_Pooling?x=1',
  '1_Pooling#frag',
  'a\nb',
  7,
  null,
  ['1_Pooling'],
];

test('module paths from modules.json stay inside the model folder', () => {
  for (const p of BAD_PATHS) {
    assert.throws(
      () => modulePath(p),
      (e) => e instanceof WembedError && e.code === 'BAD_FILE' && /modules\.json/.test(e.message) && e.message.includes(JSON.stringify(p)),
      `path ${JSON.stringify(p)}`,
    );
  }
  for (const p of ['1_Pooling', '2_Normalize', '2_Dense', 'a/b/c', 'Pooling-1.v2']) assert.equal(modulePath(p), p);
  assert.equal(modulePath(''), null);
});

test('the Node loader never reads a module config outside the folder', async () => {
  const top = await mkdtemp(join(tmpdir(), 'wembed-confine-'));
  const dir = join(top, 'model');
  await cp(tiny, dir, { recursive: true });
  await mkdir(join(top, 'secret'));
  await writeFile(join(top, 'secret', 'config.json'), '{"secret": true}');
  for (const p of ['../secret', join(top, 'secret'), '1_Pooling/../../secret', '..\\secret']) {
    const modules = [{ idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' }, { idx: 1, name: '1', path: p, type: 'sentence_transformers.models.Pooling' }];
    await writeFile(join(dir, 'modules.json'), JSON.stringify(modules));
    const events = [];
    await fails(gatherFiles(resolveSource(dir), { onProgress: (e) => events.push(e) }), 'BAD_FILE', /modules\.json/);
    assert.ok(!events.some((e) => e.file.includes('secret')), `read ${JSON.stringify(events.map((e) => e.file))}`);
  }
});

test('the URL loader never asks for a module config outside the prefix', async () => {
  const base = 'https://hub.example/org/model/resolve/main';
  for (const p of BAD_PATHS) {
    const modules = new TextEncoder().encode(JSON.stringify([{ path: '' }, { path: p }]));
    const fetch = memoryFetch(base, { ...model, 'modules.json': modules });
    await fails(gatherFiles(resolveSource(new URL(`${base}/`)), { fetch, cache: false }), 'BAD_FILE', /modules\.json/);
    for (const u of fetch.requests) assert.ok(new URL(u).href.startsWith(`${base}/`), `path ${JSON.stringify(p)} fetched ${u}`);
  }
  // A forged list of thousands of modules is refused, not fetched one by one.
  const many = new TextEncoder().encode(JSON.stringify(Array.from({ length: 5000 }, (_, i) => ({ path: `m${i}` }))));
  const fetch = memoryFetch(base, { ...model, 'modules.json': many });
  await fails(gatherFiles(resolveSource(base), { fetch, cache: false }), 'BAD_FILE', /5000 modules/);
  assert.ok(fetch.requests.length < 20);
});

/** gatherFiles for hub id `tiny/{behaviour}-{target}`, timed. */
async function fromHub(id, opts = {}) {
  return gatherFiles(resolveSource(`tiny/${id}`, { hubBase: hub.url }), { cache: false, ...opts });
}

test('a hub that fails, lies or stalls gives FETCH, and soon', async () => {
  const quick = { stallTimeout: 400, timeout: 5000 };
  const cases = [
    ['500-weights', /HTTP 500/],
    ['500-modules', /HTTP 500/], // an optional file that fails is still a failure, not "absent"
    ['truncate-weights', /model\.safetensors/],
    ['truncate-tokenizer', /tokenizer\.json/],
    ['reset-weights', /model\.safetensors/],
    ['badgzip-config', /config\.json/],
    ['stall-weights', /stalled/],
    ['silent-config', /stalled/],
    ['silent-pooling', /stalled/],
    ['commit-tokenizer', /changed on the server/],
  ];
  for (const [id, pattern] of cases) {
    const t0 = performance.now();
    await fails(fromHub(id, quick), 'FETCH', pattern);
    const ms = performance.now() - t0;
    assert.ok(ms < 3000, `${id} took ${ms.toFixed(0)} ms`);
  }
  await fails(fromHub('silent-all', { timeout: 300, stallTimeout: 60_000 }), 'FETCH', /timed out after 300 ms/);
});

test('a gzip body is judged by its decoded bytes, a chunked one by maxFileBytes', async () => {
  const gz = await fromHub('gzip-all');
  for (const f of FILES) assert.deepEqual(gz[f], model[f], f);
  const chunked = await fromHub('chunked-weights');
  assert.deepEqual(chunked['model.safetensors'], model['model.safetensors']);
  await fails(fromHub('chunked-weights', { maxFileBytes: 50_000 }), 'FETCH', /maxFileBytes \(50000\)/);
  await fails(fromHub('ok-weights', { maxFileBytes: 50_000 }), 'FETCH', /100576 bytes, more than maxFileBytes/);
});

test('a body longer or shorter than its content-length is a FETCH error', async () => {
  const base = 'https://hub.example/m';
  const lying = (name, bytes, length) =>
    memoryFetch(base, model, {
      respond: (u) => (u === `${base}/${name}` ? new Response(bytes, { headers: { 'content-length': String(length) } }) : null),
    });
  const w = model['model.safetensors'];
  await fails(gatherFiles(resolveSource(base), { fetch: lying('model.safetensors', w, 1000), cache: false }), 'FETCH', /more than its content-length of 1000/);
  await fails(gatherFiles(resolveSource(base), { fetch: lying('config.json', w.subarray(0, 10), 662), cache: false }), 'FETCH', /ended after 10 of its 662 bytes/);
  // With a content-encoding, content-length counts compressed bytes: not compared.
  const gzipped = memoryFetch(base, model, {
    respond: (u) => (u === `${base}/config.json` ? new Response(model['config.json'], { headers: { 'content-length': '100', 'content-encoding': 'gzip' } }) : null),
  });
  assert.deepEqual((await gatherFiles(resolveSource(base), { fetch: gzipped, cache: false }))['config.json'], model['config.json']);
  // A fetch that throws synchronously, or returns something that is not a Response.
  await fails(gatherFiles(resolveSource(base), { fetch: () => { throw new TypeError('boom'); }, cache: false }), 'FETCH', /boom/);
  await fails(gatherFiles(resolveSource(base), { fetch: async () => 42, cache: false }), 'FETCH', /not a Response/);
});

test('a load stops when its signal aborts (ABORTED) or its timeout passes (FETCH)', async () => {
  const ctl = new AbortController();
  const pending = fromHub('silent-all', { signal: ctl.signal });
  setTimeout(() => ctl.abort(new Error('the user left')), 100);
  const t0 = performance.now();
  await fails(pending, 'ABORTED', /aborted: the user left/);
  assert.ok(performance.now() - t0 < 2000);

  const stalled = new AbortController();
  const midway = fromHub('stall-weights', { signal: stalled.signal });
  setTimeout(() => stalled.abort(), 150);
  await fails(midway, 'ABORTED', /aborted/);

  const before = hub.requests.length;
  await fails(fromHub('ok-all', { signal: AbortSignal.abort() }), 'ABORTED');
  assert.equal(hub.requests.length, before, 'an aborted signal sends no request');
  await fails(gatherFiles(resolveSource(tiny), { signal: AbortSignal.abort() }), 'ABORTED');
  await fails(fromHub('stall-weights', { timeout: 250 }), 'FETCH', /timed out/);
  // An AbortSignal.timeout is the user's signal: ABORTED too, with its reason.
  await fails(fromHub('silent-all', { signal: AbortSignal.timeout(100) }), 'ABORTED', /timeout|timed out/i);
});

test('load options of the wrong type are INPUT errors', async () => {
  const src = resolveSource(tiny);
  for (const opts of [{ timeout: 'soon' }, { timeout: -1 }, { timeout: 0 }, { stallTimeout: NaN }, { maxFileBytes: '3' }, { signal: 5 }, { signal: {} }, { onProgress: 'yes' }]) {
    await fails(gatherFiles(src, opts), 'INPUT', new RegExp(Object.keys(opts)[0]));
  }
  await fails(gatherFiles(resolveSource('https://x.example/m'), { cache: 5, fetch: memoryFetch('https://x.example/m', model) }), 'INPUT', /cache/);
  const ok = await gatherFiles(src, { timeout: null, signal: null, onProgress: null, stallTimeout: undefined });
  assert.deepEqual(Object.keys(ok).sort(), [...FILES].sort());
  assert.deepEqual(ok.warnings, []);
});

test('a progress callback that throws ends the load with INPUT', async () => {
  await fails(gatherFiles(resolveSource(tiny), { onProgress: () => { throw new Error('bad callback'); } }), 'INPUT', /bad callback/);
});

const BASE = 'https://hub.example/org/model/resolve/main';

test('a downloaded set is cached whole and read back whole, offline', async () => {
  const caches = memoryCaches();
  const fetch = memoryFetch(BASE, model);
  const first = await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example' }), { fetch, cache: caches });
  assert.deepEqual(first.warnings, []);
  assert.equal(await isCached(HUB_ID, { hubBase: 'https://hub.example', cache: caches }), true);
  const offline = () => Promise.reject(new TypeError('offline'));
  const events = [];
  const again = await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example' }), { fetch: offline, cache: caches, onProgress: (e) => events.push(e) });
  for (const f of FILES) assert.deepEqual(again[f], model[f], f);
  assert.ok(events.length === FILES.length && events.every((e) => e.cached), JSON.stringify(events));
  assert.equal(await clearCache({ cache: caches }), true);
  assert.equal(await isCached(HUB_ID, { hubBase: 'https://hub.example', cache: caches }), false);
  await fails(gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example' }), { fetch: offline, cache: caches }), 'FETCH', /offline/);
});

test('a full cache is a warning: the model loads and nothing is half-cached', async () => {
  for (const nth of [1, 2, 3, 8]) {
    const caches = memoryCaches({ failPut: (_, n) => n === nth });
    const events = [];
    const files = await gatherFiles(resolveSource(BASE), { fetch: memoryFetch(BASE, model), cache: caches, onProgress: (e) => events.push(e) });
    for (const f of FILES) assert.deepEqual(files[f], model[f], `put ${nth}: ${f}`);
    assert.equal(files.warnings.length, 1, `put ${nth}`);
    assert.match(files.warnings[0].warning, /QuotaExceededError/);
    assert.equal(typeof files.warnings[0].file, 'string');
    assert.ok(events.some((e) => e.warning === files.warnings[0].warning), 'the warning went through onProgress');
    assert.ok(!Object.keys(files).includes('warnings'), 'warnings is not a file');
    assert.equal(caches.store.size, 0, `put ${nth}: ${[...caches.store.keys()]}`);
    assert.equal(await isCached(BASE, { cache: caches }), false);
  }
  // A Cache whose every call throws: still a load, with a warning.
  const broken = { match: async () => { throw new Error('disk gone'); }, put: async () => { throw new Error('disk gone'); }, delete: async () => false };
  const files = await gatherFiles(resolveSource(BASE), { fetch: memoryFetch(BASE, model), cache: broken });
  assert.deepEqual(files['model.safetensors'], model['model.safetensors']);
  assert.ok(files.warnings.length >= 1 && files.warnings.every((w) => /disk gone/.test(w.warning)));
});

test('files of two downloads never mix, and a cached absence ends with its set', async () => {
  const caches = memoryCaches();
  const { 'modules.json': _m, '1_Pooling/config.json': _p, ...withoutModules } = model;
  await gatherFiles(resolveSource(BASE), { fetch: memoryFetch(BASE, withoutModules), cache: caches });
  const keys = [...caches.store.keys()];
  assert.ok(keys.some((k) => k.includes('manifest')));
  // The server gets a modules.json (a new revision of main); the cached set is evicted in part.
  caches.store.delete(keys.find((k) => k.includes('model.safetensors')));
  assert.equal(await isCached(BASE, { cache: caches }), false, 'a set without its weights is not cached');
  const fetch = memoryFetch(BASE, model);
  const files = await gatherFiles(resolveSource(BASE), { fetch, cache: caches });
  assert.deepEqual(files['modules.json'], model['modules.json'], 'the old "missing" marker did not outlive its set');
  assert.deepEqual(files['1_Pooling/config.json'], model['1_Pooling/config.json']);
  assert.ok(fetch.requests.some((u) => u.endsWith('/config.json')), 'the whole set came from the network');

  // An entry of another set (a crash between two writes) makes the set unusable.
  const tokenizerKey = [...caches.store.keys()].find((k) => k.includes('tokenizer.json'));
  caches.store.set(tokenizerKey, new Response(new TextEncoder().encode('{}'), { headers: { 'x-wembed-set': 'another' } }));
  assert.equal(await isCached(BASE, { cache: caches }), false);
  const fresh = await gatherFiles(resolveSource(BASE), { fetch: memoryFetch(BASE, model), cache: caches });
  assert.deepEqual(fresh['tokenizer.json'], model['tokenizer.json']);
  // A damaged manifest is no manifest.
  caches.store.set([...caches.store.keys()].find((k) => k.includes('manifest')), new Response('{not json'));
  assert.equal(await isCached(BASE, { cache: caches }), false);

  // Two revisions are two prefixes, so two sets.
  const both = memoryCaches();
  const v1 = { ...model, 'config.json': new TextEncoder().encode('{"v":1}') };
  await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example', revision: 'v1' }), { fetch: memoryFetch('https://hub.example/org/model/resolve/v1', v1), cache: both });
  await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example', revision: 'v2' }), { fetch: memoryFetch('https://hub.example/org/model/resolve/v2', model), cache: both });
  const offline = () => Promise.reject(new TypeError('offline'));
  const a = await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example', revision: 'v1' }), { fetch: offline, cache: both });
  const b = await gatherFiles(resolveSource(HUB_ID, { hubBase: 'https://hub.example', revision: 'v2' }), { fetch: offline, cache: both });
  assert.deepEqual(a['config.json'], v1['config.json']);
  assert.deepEqual(b['config.json'], model['config.json']);
});

test('two GGUF files of one folder are cached as two models', async () => {
  const dir = 'https://hub.example/gguf';
  const q4 = new Uint8Array([1, 2, 3]);
  const q8 = new Uint8Array([4, 5, 6, 7]);
  const caches = memoryCaches();
  const fetch = memoryFetch(dir, { 'a-q4.gguf': q4, 'a-q8.gguf': q8, 'tokenizer.json': model['tokenizer.json'] });
  await gatherFiles(resolveSource(`${dir}/a-q4.gguf`), { fetch, cache: caches });
  await gatherFiles(resolveSource(`${dir}/a-q8.gguf`), { fetch, cache: caches });
  const offline = () => Promise.reject(new TypeError('offline'));
  const a = await gatherFiles(resolveSource(`${dir}/a-q4.gguf`), { fetch: offline, cache: caches });
  const b = await gatherFiles(resolveSource(`${dir}/a-q8.gguf`), { fetch: offline, cache: caches });
  assert.deepEqual(a['model.gguf'], q4);
  assert.deepEqual(b['model.gguf'], q8);
  assert.deepEqual(Object.keys(a).sort(), ['model.gguf', 'tokenizer.json']);
});

// A folder written by `wembed pack --dtype q8 tests/fixtures/tiny/dense-tanh` (tests/cli.rs checks
// that it still is what the command writes): its files and manifest.json.
const PACK = join(root, 'tests/fixtures/pack/dense-tanh-q8');
const PACK_FILES = [
  '1_Pooling/config.json',
  '2_Dense/config.json',
  '2_Dense/model.safetensors',
  '3_Dense/config.json',
  '3_Dense/model.safetensors',
  'config.json',
  'config_sentence_transformers.json',
  'model.safetensors',
  'modules.json',
  'sentence_bert_config.json',
  'tokenizer.json',
];

async function readPack() {
  const out = {};
  for (const f of [...PACK_FILES, 'manifest.json']) out[f] = new Uint8Array(await readFile(join(PACK, f)));
  return out;
}

/** A copy of `bytes` with the byte in the middle changed. */
function flipped(bytes) {
  const copy = bytes.slice();
  copy[copy.length >> 1] ^= 0x01;
  return copy;
}

async function writeFolder(files) {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-pack-'));
  for (const [name, bytes] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), bytes);
  }
  return dir;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a pack loads checked against its manifest, from a folder and a URL', async () => {
  const pack = await readPack();
  const manifest = JSON.parse(new TextDecoder().decode(pack['manifest.json']));
  assert.equal(manifest.format, 'wembed-pack');
  assert.deepEqual(Object.keys(manifest.files).sort(), PACK_FILES);
  const base = 'https://cdn.example/packs/tiny';
  const caches = memoryCaches();
  const fetch = memoryFetch(base, pack);
  const fromUrl = await gatherFiles(resolveSource(base), { fetch, cache: caches });
  assert.ok(fetch.requests.includes(`${base}/manifest.json`));
  const fromDir = await gatherFiles(resolveSource(PACK));
  for (const files of [fromUrl, fromDir]) {
    assert.deepEqual(Object.keys(files).sort(), PACK_FILES, 'manifest.json is not a model file');
    for (const f of PACK_FILES) assert.deepEqual(files[f], pack[f], f);
    assert.deepEqual(files.warnings, []);
  }
  assert.equal(await isCached(base, { cache: caches }), true);
});

test('a pack with one byte changed, a file cut, added or missing is BAD_FILE naming it', async () => {
  const pack = await readPack();
  const base = 'https://cdn.example/packs/tiny';
  const both = async (files, pattern) => {
    const caches = memoryCaches();
    await fails(gatherFiles(resolveSource(base), { fetch: memoryFetch(base, files), cache: caches }), 'BAD_FILE', pattern);
    assert.equal(caches.store.size, 0, 'nothing of a bad pack is cached');
    await fails(gatherFiles(resolveSource(await writeFolder(files))), 'BAD_FILE', pattern);
  };
  for (const name of PACK_FILES) {
    await both({ ...pack, [name]: flipped(pack[name]) }, new RegExp(`^${escapeRe(name)} has SHA-256 [0-9a-f]{64} where manifest\\.json says`));
  }
  await both({ ...pack, 'model.safetensors': pack['model.safetensors'].subarray(1) }, /^model\.safetensors is \d+ bytes where manifest\.json says \d+/);
  const { 'sentence_bert_config.json': _dropped, ...missing } = pack;
  await both(missing, /^sentence_bert_config\.json is listed in manifest\.json but missing/);
  const manifest = JSON.parse(new TextDecoder().decode(pack['manifest.json']));
  delete manifest.files['2_Dense/config.json'];
  await both({ ...pack, 'manifest.json': new TextEncoder().encode(JSON.stringify(manifest)) }, /^2_Dense\/config\.json is not listed in manifest\.json/);
  // A manifest that says wembed-pack but cannot be read stops the load; another kind of
  // manifest.json is not ours, and the folder loads as one without.
  for (const [text, pattern] of [
    ['{"format": "wembed-pack", "version": 1, "files": {', /^manifest\.json: not valid JSON/],
    ['{"format": "wembed-pack", "version": 2, "files": {}}', /^manifest\.json: wembed-pack version 2/],
    ['{"format": "wembed-pack", "version": 1, "files": {"config.json": {"size": 1, "sha256": "AB"}}}', /"config\.json" is not \{ size, sha256/],
  ]) {
    await both({ ...pack, 'manifest.json': new TextEncoder().encode(text) }, pattern);
  }
  const other = { ...pack, 'manifest.json': new TextEncoder().encode('{"name": "a web app", "icons": []}'), 'model.safetensors': flipped(pack['model.safetensors']) };
  const files = await gatherFiles(resolveSource(base), { fetch: memoryFetch(base, other), cache: false });
  assert.deepEqual(files['model.safetensors'], other['model.safetensors']);
});
