// Node's model cache on disk (`cacheDir`, or WEMBED_CACHE_DIR): a second load of a hub id reads
// every file from the folder with the network gone, isCached and clearCache see the folder, a
// damaged entry is downloaded again, and without a folder Node caches nothing. Also a cache of
// the caller's own (`cache: { match, put, delete }`) on a real load of the wasm model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { gatherFiles, resolveSource, isCached, clearCache } from '../src/files.js';
import { Embedder } from '../src/index.js';
import { rejectsWith } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors', 'modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json', '1_Pooling/config.json'];
const model = Object.fromEntries(await Promise.all(FILES.map(async (f) => [f, new Uint8Array(await readFile(join(tiny, f)))])));
const HUB = 'https://hub.example';
const ID = 'someone/tiny';
const BASE = `${HUB}/${ID}/resolve/main`;

/** A fetch over `model` at BASE; `requests` lists every URL asked for. */
function hubFetch(requests = []) {
  const fetch = async (url) => {
    requests.push(String(url));
    const name = String(url).slice(BASE.length + 1);
    const bytes = String(url).startsWith(`${BASE}/`) && Object.hasOwn(model, name) ? model[name] : null;
    return bytes ? new Response(bytes, { headers: { 'content-length': String(bytes.length) } }) : new Response('not found', { status: 404 });
  };
  fetch.requests = requests;
  return fetch;
}
const offline = () => Promise.reject(new TypeError('offline'));
const source = () => resolveSource(ID, { hubBase: HUB });

test('cacheDir: a second load reads every file from disk, offline; clearCache empties the folder', async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'wembed-cache-'));
  const first = await gatherFiles(source(), { fetch: hubFetch(), cacheDir });
  assert.deepEqual(first.warnings, []);
  assert.ok((await readdir(cacheDir)).length > 0, 'nothing was written to the folder');
  assert.equal(await isCached(ID, { hubBase: HUB, cacheDir }), true);
  assert.equal(await isCached(ID, { hubBase: HUB }), false, 'no folder: nothing is cached in Node');
  const events = [];
  const again = await gatherFiles(source(), { fetch: offline, cacheDir, onProgress: (e) => events.push(e) });
  for (const f of FILES) assert.deepEqual(again[f], model[f], f);
  assert.ok(events.length === FILES.length && events.every((e) => e.cached), JSON.stringify(events));

  // The variable does what the option does.
  process.env.WEMBED_CACHE_DIR = cacheDir;
  try {
    assert.equal(await isCached(ID, { hubBase: HUB }), true);
  } finally {
    delete process.env.WEMBED_CACHE_DIR;
  }

  assert.equal(await clearCache({ cacheDir }), true);
  assert.equal(await isCached(ID, { hubBase: HUB, cacheDir }), false);
  await assert.rejects(gatherFiles(source(), { fetch: offline, cacheDir }), (e) => e.code === 'FETCH' && /offline/.test(e.message));
});

test('cacheDir: a damaged entry is not used; the files are downloaded again', async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'wembed-cache-'));
  await gatherFiles(source(), { fetch: hubFetch(), cacheDir });
  // Cut the large bodies (the weights, the tokenizer) in half: their sizes no longer match
  // the set's manifest, which stays readable (it is small).
  for (const d of await readdir(cacheDir)) {
    for (const f of (await readdir(join(cacheDir, d))).filter((n) => n.endsWith('.bin'))) {
      const p = join(cacheDir, d, f);
      const b = await readFile(p);
      if (b.length > 4096) await writeFile(p, b.subarray(0, b.length >> 1));
    }
  }
  assert.equal(await isCached(ID, { hubBase: HUB, cacheDir }), true, 'every entry is there, if damaged');
  const requests = [];
  const again = await gatherFiles(source(), { fetch: hubFetch(requests), cacheDir });
  assert.ok(requests.some((u) => u.endsWith('/model.safetensors')), 'the weights were fetched again');
  assert.deepEqual(again['model.safetensors'], model['model.safetensors']);
  await rejectsWith(gatherFiles(source(), { fetch: hubFetch(), cacheDir: 42 }), 'INPUT', /cacheDir/);
});

test("Embedder.load reads a hub model from cacheDir the second time, and from the caller's own cache", async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'wembed-cache-'));
  const text = 'a man is playing a guitar';
  const online = await Embedder.load(ID, { hubBase: HUB, fetch: hubFetch(), cacheDir, device: 'cpu', workers: 0 });
  const [want] = await online.embed(text);
  online.dispose();
  const cached = await Embedder.load(ID, { hubBase: HUB, fetch: offline, cacheDir, device: 'cpu', workers: 0 });
  assert.deepEqual(await cached.embed(text), [want]);
  cached.dispose();

  // A cache hook of the caller's own: anything with match, put and delete.
  const store = new Map();
  const hook = {
    match: async (key) => (store.has(key) ? new Response(store.get(key).body, { headers: store.get(key).headers }) : undefined),
    put: async (key, res) => void store.set(key, { body: new Uint8Array(await res.arrayBuffer()), headers: Object.fromEntries(res.headers) }),
    delete: async (key) => store.delete(key),
  };
  (await Embedder.load(ID, { hubBase: HUB, fetch: hubFetch(), cache: hook, device: 'cpu', workers: 0 })).dispose();
  assert.ok(store.size >= FILES.length, `the hook holds ${store.size} entries`);
  const fromHook = await Embedder.load(ID, { hubBase: HUB, fetch: offline, cache: hook, device: 'cpu', workers: 0 });
  assert.deepEqual(await fromHook.embed(text), [want]);
  fromHook.dispose();
});
