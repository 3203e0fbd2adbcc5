// Failure paths in headless Chromium, where the real Cache API and IndexedDB live: a Cache that
// runs out of quota midway (the model loads, uncached, with a warning; nothing half-cached), an
// IndexedDB commit that aborts (save() rejects with IO instead of hanging), and a subset of the
// hostile hub (hostile-server.mjs) through the browser's own fetch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openPackagePage } from './util.mjs';
import { hubServer, close, url } from './server.mjs';
import { hostileHub } from './hostile-server.mjs';

const www = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const ID = 'org/tiny';

let app, hub, bad, browser, page;

before(async () => {
  ({ app, browser, page } = await openPackagePage(www, { webgpu: false, modules: { files: '/src/files.js' } }));
  hub = await hubServer({ [ID]: tiny });
  bad = await hostileHub({ tiny });
});

after(async () => {
  await browser?.close();
  if (app) await close(app);
  if (hub) await close(hub);
  await bad?.close();
});

test('a Cache that runs out of quota: the model loads, a warning, nothing half-cached', { timeout: 60_000 }, async () => {
  const result = await page.evaluate(
    async ({ id, hubBase }) => {
      const { gatherFiles, resolveSource, isCached, clearCache } = window.files;
      await clearCache();
      const put = Cache.prototype.put;
      let n = 0;
      Cache.prototype.put = function (...args) {
        n += 1;
        return n === 3 ? Promise.reject(new DOMException('the quota has been exceeded', 'QuotaExceededError')) : put.apply(this, args);
      };
      const events = [];
      let files;
      try {
        files = await gatherFiles(resolveSource(id, { hubBase }), { onProgress: (e) => events.push(e) });
      } finally {
        Cache.prototype.put = put;
      }
      const left = (await (await caches.open('wembed-models-v2')).keys()).length;
      const cachedAfterFailure = await isCached(id, { hubBase });
      await gatherFiles(resolveSource(id, { hubBase }), {});
      const cachedAfterSuccess = await isCached(id, { hubBase });
      const again = [];
      await gatherFiles(resolveSource(id, { hubBase }), { onProgress: (e) => again.push(e) });
      const embedder = await window.wembed.Embedder.load(id, { hubBase, device: 'cpu' });
      const [v] = await embedder.embed(['hello there']);
      embedder.dispose();
      return {
        names: Object.keys(files).sort(),
        warnings: files.warnings,
        progressWarnings: events.filter((e) => e.warning).length,
        left,
        cachedAfterFailure,
        cachedAfterSuccess,
        allCached: again.length > 0 && again.every((e) => e.cached),
        finite: Array.from(v).every(Number.isFinite),
      };
    },
    { id: ID, hubBase: url(hub) },
  );
  assert.ok(result.names.includes('model.safetensors') && result.names.includes('1_Pooling/config.json'), JSON.stringify(result.names));
  assert.equal(result.warnings.length, 1, JSON.stringify(result.warnings));
  assert.match(result.warnings[0].warning, /QuotaExceededError/);
  assert.equal(result.progressWarnings, 1);
  assert.equal(result.left, 0, 'no entry of a half-cached model is left');
  assert.equal(result.cachedAfterFailure, false);
  assert.equal(result.cachedAfterSuccess, true);
  assert.ok(result.allCached, 'the next load reads the whole set from the cache');
  assert.ok(result.finite);
});

test('an IndexedDB transaction that aborts at commit rejects save() with IO, not a pending Promise', { timeout: 60_000 }, async () => {
  const result = await page.evaluate(
    async ({ id, hubBase }) => {
      const { Embedder, SemanticIndex } = window.wembed;
      const embedder = await Embedder.load(id, { hubBase, device: 'cpu' });
      const index = SemanticIndex.create(embedder, { chunkTokens: 16, chunkOverlap: 4 });
      await index.add(['the quick brown fox', 'a man plays a guitar']);
      const settle = (p) =>
        Promise.race([
          p.then(() => 'saved', (e) => `${e.code}: ${e.message}`),
          new Promise((resolve) => setTimeout(() => resolve('still pending after 5 s'), 5000)),
        ]);
      // A quota failure at commit fires only `abort` (the put itself succeeded): do just that.
      const put = IDBObjectStore.prototype.put;
      IDBObjectStore.prototype.put = function (...args) {
        const req = put.apply(this, args);
        req.addEventListener('success', () => this.transaction.abort());
        return req;
      };
      let aborted;
      try {
        aborted = await settle(index.save('hostile'));
      } finally {
        IDBObjectStore.prototype.put = put;
      }
      const missing = await SemanticIndex.load('hostile', embedder);
      const saved = await settle(index.save('hostile'));
      const loaded = await SemanticIndex.load('hostile', embedder);
      const hits = await loaded.search('fox', { k: 1 });
      const [want] = await index.search('fox', { k: 1 });
      await SemanticIndex.delete('hostile');
      loaded.dispose();
      index.dispose();
      embedder.dispose();
      return { aborted, missing: missing === null, saved, hit: hits[0]?.text, want: want.text };
    },
    { id: ID, hubBase: url(hub) },
  );
  assert.match(result.aborted, /^IO: IndexedDB/, result.aborted);
  assert.ok(result.missing, 'an aborted save stores nothing');
  assert.equal(result.saved, 'saved');
  assert.equal(result.hit, result.want, 'the saved index answers as the one in memory');
});

test('a hostile hub through the browser\'s fetch: typed errors, within the timeouts', { timeout: 60_000 }, async () => {
  const CASES = [
    ['500-weights', ['FETCH']],
    ['404-config', ['FETCH']],
    ['html-config', ['BAD_FILE', 'FETCH']],
    ['truncate-weights', ['FETCH']],
    ['reset-tokenizer', ['FETCH']],
    ['stall-weights', ['FETCH']],
    ['silent-all', ['FETCH']],
    ['badgzip-config', ['FETCH']],
    ['commit-tokenizer', ['FETCH']],
  ];
  const results = await page.evaluate(
    async ({ cases, hubBase }) => {
      const out = [];
      for (const [id, codes] of cases) {
        const t0 = performance.now();
        const r = await Promise.race([
          window.wembed.Embedder.load(`tiny/${id}`, { hubBase, device: 'cpu', cache: false, timeout: 4000, stallTimeout: 700 }).then(
            (e) => (e.dispose(), 'loaded'),
            (e) => (e instanceof window.wembed.WembedError ? e.code : `raw ${e?.name}: ${e?.message}`),
          ),
          new Promise((resolve) => setTimeout(() => resolve('hung'), 8000)),
        ]);
        out.push({ id, codes, got: r, ms: performance.now() - t0 });
      }
      const ctl = new AbortController();
      setTimeout(() => ctl.abort(), 200);
      const aborted = await window.wembed.Embedder.load('tiny/silent-all', { hubBase, cache: false, signal: ctl.signal, stallTimeout: 60_000 }).then(
        () => 'loaded',
        (e) => e.code,
      );
      out.push({ id: 'silent-all, aborted', codes: ['ABORTED'], got: aborted, ms: 0 });
      return out;
    },
    { cases: CASES, hubBase: bad.url },
  );
  const wrong = results.filter((r) => !r.codes.includes(r.got) || r.ms > 6000);
  console.log(`hostile hub in Chromium: ${results.length} cases, ${wrong.length} wrong`);
  assert.deepEqual(wrong, []);
});
