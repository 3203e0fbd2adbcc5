// The CPU path in workers (issue 11), in Node (worker_threads) and in headless Chromium
// (module Web Workers): results equal to the calling thread's bit for bit and in input order
// with 2 and 3 workers, progress summed over the workers, errors with their codes across
// workers, a worker's panic, dispose, Node not kept alive by idle workers, and a page that
// keeps painting during a 1,000-text embed; one text's forward pass shared by the workers
// (src/split.rs), equal to the calling thread's; a call's texts cut into pieces of even work.
// all-MiniLM-L6-v2 against PyTorch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { Embedder, __testing } from '../src/index.js';
import { cutPieces } from '../src/pool.js';
import { hubServer, close, url } from './server.mjs';
import { cosine, rejectsWith, openPackagePage } from './util.mjs';

const www = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const TINY = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const PROMPTED = join(root, 'tests/fixtures/tiny/tokentypes-prompt');
const TINY_ID = 'tiny/mean-erf-norm';
const MINILM = join(root, 'assets/models/all-MiniLM-L6-v2');

/** Texts of 1 to 40 words in a scrambled order of lengths, each one distinct. */
const mixed = (n, seed = 1) =>
  Array.from({ length: n }, (_, i) => 'word '.repeat(1 + ((i * 7 + seed) % 40)) + `text ${i}`);

/** The largest difference between two lists of vectors (Infinity when their shapes differ). */
function maxDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  a.forEach((v, i) => {
    if (v.length !== b[i].length) d = Infinity;
    for (let j = 0; j < v.length; j++) d = Math.max(d, Math.abs(v[j] - b[i][j]));
  });
  return d;
}

/** The error a promise rejects with, as { code, message } (null when it resolves). */
const failure = (p) => p.then(() => null, (e) => ({ code: e.code, message: e.message }));

test('Node: 2 and 3 workers give the calling thread\'s vectors bit for bit, in input order', async () => {
  const texts = mixed(100);
  const here = await Embedder.load(TINY, { device: 'cpu', workers: 0 });
  assert.equal(here.info.workers, 0);
  const want = await here.embed(texts, { batchSize: 8 });
  for (const workers of [2, 3]) {
    const e = await Embedder.load(TINY, { device: 'cpu', workers });
    assert.equal(e.info.workers, workers);
    assert.match(e.info.workerMemoryNote, new RegExp(`each of the ${workers} workers holds its own copy`));
    assert.equal(e.info.digest, here.info.digest);
    const progress = [];
    const got = await e.embed(texts, { batchSize: 8, onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(maxDiff(got, want), 0, `${workers} workers`);
    assert.deepEqual(progress.at(-1), [100, 100]);
    assert.ok(progress.every(([d], i) => i === 0 || d >= progress[i - 1][0]), 'progress only grows');
    // Default batch size, the matrix form, and a single text.
    const matrix = await e.embed(texts, { output: 'matrix' });
    assert.equal(matrix.count, 100);
    assert.equal(maxDiff([matrix.data], [(await here.embed(texts, { output: 'matrix' })).data]), 0);
    assert.equal(maxDiff(await e.embed('one text'), await here.embed('one text')), 0);
    // chunks() stays synchronous and equal.
    const long = 'a sentence about something, '.repeat(30);
    assert.deepEqual(e.chunks(long, 8, 2), here.chunks(long, 8, 2));
    e.dispose();
  }
  // A prompt and options travel to the workers.
  const p0 = await Embedder.load(PROMPTED, { device: 'cpu', workers: 0 });
  const p2 = await Embedder.load(PROMPTED, { device: 'cpu', workers: 2 });
  const opts = { normalize: false, batchSize: 3 };
  assert.equal(maxDiff(await p2.embed(texts.slice(0, 20), opts), await p0.embed(texts.slice(0, 20), opts)), 0);
  p0.dispose();
  p2.dispose();
  here.dispose();
});

test("Node: workers 'auto' takes one per core (1 to 4), or the calling thread when none start; bad counts are INPUT", async () => {
  const { availableParallelism } = await import('node:os');
  const e = await Embedder.load(TINY, { device: 'cpu' });
  assert.equal(e.info.workers, Math.max(1, Math.min(4, availableParallelism())));
  assert.equal(e.info.device, 'cpu');
  e.dispose();
  const auto = await Embedder.load(TINY); // device 'auto' is the CPU in Node: workers too
  assert.ok(auto.info.workers >= 1, JSON.stringify(auto.info));
  auto.dispose();
  for (const bad of [-1, 1.5, 'two', 65]) {
    await rejectsWith(Embedder.load(TINY, { device: 'cpu', workers: bad }), 'INPUT', /workers/);
  }
  // Workers that cannot start: 'auto' runs on the calling thread and says so; a count fails.
  const workerUrl = join(tmpdir(), 'wembed-no-such-worker.js');
  const here = await Embedder.load(TINY, { device: 'cpu', workerUrl });
  assert.equal(here.info.workers, 0);
  assert.match(here.info.warnings.map((w) => w.warning).join(), /cannot start wembed's workers.*calling thread/);
  assert.equal((await here.embed(['still works'])).length, 1);
  here.dispose();
  await rejectsWith(Embedder.load(TINY, { device: 'cpu', workers: 2, workerUrl }), 'WASM_LOAD', /workerUrl/);
});

test('Node: all-MiniLM-L6-v2 on 2 workers matches PyTorch and the calling thread', async () => {
  const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));
  const texts = reference.sentences.map((s) => s.text);
  const here = await Embedder.load(MINILM, { device: 'cpu', dtype: 'f32', workers: 0 });
  const want = await here.embed(texts);
  here.dispose();
  const e = await Embedder.load(MINILM, { device: 'cpu', dtype: 'f32', workers: 2 });
  assert.equal(e.info.workers, 2);
  const got = await e.embed(texts);
  e.dispose();
  const d = maxDiff(got, want);
  assert.ok(d <= 1e-6, `2 workers differ from the calling thread by ${d}`);
  reference.sentences.forEach((s, i) => {
    const c = cosine(got[i], s.embedding);
    assert.ok(c >= 0.99999, `${JSON.stringify(s.text)}: cosine ${c}`);
  });
  console.log(`MiniLM on 2 workers: max difference to the calling thread ${d}`);
});

test('Node: errors cross the workers with their codes and messages; a panic drops its worker', async () => {
  const here = await Embedder.load(TINY, { device: 'cpu', workers: 0 });
  const e = await Embedder.load(TINY, { device: 'cpu', workers: 2 });
  const texts = mixed(30);
  const long = 'the dog runs '.repeat(50);
  const short = Array.from({ length: 30 }, (_, i) => `short text ${i}`);
  const cases = [
    [texts, { batchSize: 0 }],
    [[], { batchSize: 0 }],
    [texts, { promptName: 'query' }],
    [texts, { normalize: 'yes' }],
    // Values structured clone cannot carry to a worker: the same message all the same.
    [texts, { prompt: () => 'query: ' }],
    [texts, { normalize: Symbol('yes') }],
    [texts, { batchSize: 0, truncate: () => false }],
    // Every other text fits the tiny model's 24 tokens.
    [[...short.slice(0, 17), long, ...short.slice(17), long], { truncate: false, batchSize: 4 }],
  ];
  for (const [list, opts] of cases) {
    const want = await failure(here.embed(list, opts));
    assert.equal(want?.code, 'INPUT', JSON.stringify(opts));
    assert.deepEqual(await failure(e.embed(list, opts)), want, JSON.stringify(opts));
  }
  assert.match((await failure(e.embed(cases.at(-1)[0], cases.at(-1)[1]))).message, /text 17 /);
  const files = { 'config.json': new Uint8Array(2), 'tokenizer.json': () => {}, 'model.safetensors': new ArrayBuffer(4) };
  const loadWant = await failure(Embedder.load({ files }, { device: 'cpu', workers: 0 }));
  assert.equal(loadWant?.code, 'INPUT');
  assert.deepEqual(await failure(Embedder.load({ files }, { device: 'cpu', workers: 2 })), loadWant);
  // Still usable after errors.
  assert.equal(maxDiff(await e.embed(texts), await here.embed(texts)), 0);

  // A panic in one worker: the call is INTERNAL, the other worker carries on.
  await __testing.panicNextEmbed(e, 0);
  await rejectsWith(e.embed(mixed(16), { batchSize: 1 }), 'INTERNAL', /panicked: .*test panic/);
  assert.equal(e.info.workers, 1);
  assert.equal(maxDiff(await e.embed(texts), await here.embed(texts)), 0);
  // A panic in the last one: the model is gone, the next load works.
  await __testing.panicNextEmbed(e);
  await rejectsWith(e.embed(mixed(4), { batchSize: 1 }), 'INTERNAL', /panicked/);
  await rejectsWith(e.embed(['again']), 'INTERNAL', /load the model again/);
  const fresh = await Embedder.load(TINY, { device: 'cpu', workers: 2 });
  assert.equal(maxDiff(await fresh.embed(texts), await here.embed(texts)), 0);
  // The calling thread's instance was never touched.
  assert.equal((await here.embed(['still here'])).length, 1);
  fresh.dispose();
  here.dispose();
});

test('a call is cut into pieces of even work: few pieces share the long texts, many go longest first', () => {
  const check = (lengths, size, workers) => {
    const pieces = cutPieces(lengths, size, workers);
    assert.equal(pieces.length, Math.ceil(lengths.length / size));
    assert.deepEqual(pieces.flat().sort((a, b) => a - b), lengths.map((_, i) => i), 'every text once');
    assert.ok(pieces.every((p) => p.length >= 1 && p.length <= size), JSON.stringify(pieces.map((p) => p.length)));
    return pieces.map((p) => p.reduce((sum, i) => sum + lengths[i], 0));
  };
  // 16 paragraphs and 16 sentences, alternating, for 2 workers: 8 of each per piece.
  const mixedLengths = Array.from({ length: 32 }, (_, i) => (i % 2 ? 60 + i : 900 + i));
  const even = check(mixedLengths, 16, 2);
  assert.ok(Math.max(...even) - Math.min(...even) <= 60, `piece totals ${even}`);
  // 3 workers, 7 texts, pieces of 3: totals within the longest text of each other.
  const seven = check([500, 10, 400, 20, 300, 30, 200], 3, 3);
  assert.ok(Math.max(...seven) - Math.min(...seven) <= 500, `piece totals ${seven}`);
  // Many pieces: runs of the length order, longest first (the last pieces are the short ones).
  const many = Array.from({ length: 100 }, (_, i) => (i * 37) % 101);
  const pieces = cutPieces(many, 8, 2);
  const firstMin = Math.min(...pieces[0].map((i) => many[i]));
  const lastMax = Math.max(...pieces.at(-1).map((i) => many[i]));
  assert.ok(firstMin >= lastMax, `${firstMin} < ${lastMax}`);
  check(many, 8, 2);
  check([5], 32, 2);
});

test('Node: one text runs on every worker together (split forward) and gives the calling thread\'s vector', async () => {
  const query = 'how do i find documents that mean the same thing as my question?';
  const paragraph = 'Semantic search ranks documents by what a query means rather than by its words. '.repeat(8);
  for (const dtype of ['q8', 'f32']) {
    const here = await Embedder.load(MINILM, { device: 'cpu', dtype, workers: 0 });
    assert.equal(here.info.queryWorkers, 0);
    for (const workers of [2, 3]) {
      const e = await Embedder.load(MINILM, { device: 'cpu', dtype, workers });
      assert.equal(e.info.queryWorkers, workers);
      // The 16-token query and 'hi' are too short to be worth cutting (src/split.rs): whole.
      for (const [text, parts] of [[query, 1], [paragraph, workers], ['hi', 1], [paragraph.toUpperCase(), workers]]) {
        const progress = [];
        const got = await e.embed([text], { onProgress: (d, t) => progress.push([d, t]) });
        const what = `${dtype}, ${workers} workers, ${JSON.stringify(text.slice(0, 20))}`;
        assert.equal(__testing.lastSplitParts(e), parts, what);
        const d = maxDiff(got, await here.embed([text]));
        assert.ok(d <= 1e-6, `${what}: differs by ${d}`);
        assert.deepEqual(progress.at(-1), [1, 1]);
      }
      // Options travel; errors are the calling thread's, from one part, and the pool goes on.
      const opts = { normalize: false, truncateDim: 128, prompt: 'query: ' };
      assert.ok(maxDiff(await e.embed([paragraph], opts), await here.embed([paragraph], opts)) <= 1e-6);
      assert.equal(__testing.lastSplitParts(e), workers);
      for (const bad of [{ promptName: 'nope' }, { truncate: false }, { truncateDim: 1000 }]) {
        const text = bad.truncate === false ? 'word '.repeat(600) : paragraph;
        const want = await failure(here.embed([text], bad));
        assert.equal(want?.code, 'INPUT', JSON.stringify(bad));
        assert.deepEqual(await failure(e.embed([text], bad)), want, JSON.stringify(bad));
      }
      assert.ok(maxDiff(await e.embed([query]), await here.embed([query])) <= 1e-6);
      e.dispose();
    }
    here.dispose();
  }
  // A panic in one part: the call is INTERNAL (not a hang: the other part stops waiting for its
  // rows), that worker is dropped, and one text runs whole on the one left.
  const here = await Embedder.load(MINILM, { device: 'cpu', workers: 0 });
  const e = await Embedder.load(MINILM, { device: 'cpu', workers: 2 });
  await __testing.panicNextEmbed(e, 1);
  await rejectsWith(e.embed([paragraph]), 'INTERNAL', /panicked: .*test panic/);
  assert.equal(e.info.workers, 1);
  assert.equal(e.info.queryWorkers, 1);
  assert.equal(maxDiff(await e.embed([paragraph]), await here.embed([paragraph])), 0);
  e.dispose();
  here.dispose();
  // A decoder is not split: its one text runs on one worker.
  const decoder = await Embedder.load(join(root, 'tests/fixtures/tiny/qwen3-lasttoken'), { device: 'cpu', workers: 2 });
  assert.equal(decoder.info.queryWorkers, 1);
  const alone = await Embedder.load(join(root, 'tests/fixtures/tiny/qwen3-lasttoken'), { device: 'cpu', workers: 0 });
  assert.equal(maxDiff(await decoder.embed([paragraph]), await alone.embed([paragraph])), 0);
  decoder.dispose();
  alone.dispose();
});

test('Node: calls queue, inputs are read at the call, dispose ends the workers', async () => {
  const e = await Embedder.load(TINY, { device: 'cpu', workers: 2 });
  const texts = mixed(40);
  const want = await e.embed(texts);
  const calls = [e.embed(texts), e.embed(texts.slice(0, 3)), e.embed(texts, { batchSize: 2 })];
  texts[0] = 'changed';
  texts.length = 5;
  const [a, b, c] = await Promise.all(calls);
  assert.equal(maxDiff(a, want), 0);
  assert.equal(maxDiff(b, want.slice(0, 3)), 0);
  assert.equal(maxDiff(c, want), 0);
  const last = e.embed(['before dispose']);
  e.dispose();
  assert.equal((await last).length, 1);
  await rejectsWith(e.embed(['after dispose']), 'DISPOSED');
  assert.throws(() => e.chunks('x'), { code: 'DISPOSED' });
});

test('Node: idle workers do not keep the process alive', async () => {
  const index = pathToFileURL(join(www, 'src/index.js')).href;
  const script = `
    import { Embedder } from ${JSON.stringify(index)};
    const e = await Embedder.load(${JSON.stringify(TINY)}, { device: 'cpu', workers: 2 });
    const v = await e.embed(['not disposed', 'on purpose']);
    console.log(e.info.workers, v.length);`;
  const started = Date.now();
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 20000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  assert.equal(out.trim(), '2 2');
  assert.ok(Date.now() - started < 15000);
});

// ---- Chromium: module Web Workers started by the package in a page.

let app, hub, browser, page;

before(async () => {
  ({ app, browser, page } = await openPackagePage(www, { webgpu: false }));
  hub = await hubServer({ [TINY_ID]: TINY });
});

after(async () => {
  await browser?.close();
  if (app) await close(app);
  if (hub) await close(hub);
});

const pageArgs = () => ({ id: TINY_ID, hubBase: url(hub) });

test('Chromium: 2 and 3 workers give the calling thread\'s vectors bit for bit; errors and a panic across workers', async () => {
  const r = await page.evaluate(
    async ({ id, hubBase }) => {
      const { Embedder, __testing } = window.wembed;
      const texts = Array.from({ length: 100 }, (_, i) => 'word '.repeat(1 + ((i * 7 + 1) % 40)) + `text ${i}`);
      const fail = (p) => p.then(() => null, (e) => ({ code: e.code, message: e.message }));
      const here = await Embedder.load(id, { hubBase, device: 'cpu', workers: 0, cache: false });
      const want = await here.embed(texts, { batchSize: 8 });
      const diff = (a) => Math.max(...a.map((v, i) => Math.max(...v.map((x, j) => Math.abs(x - want[i][j])))));
      const out = { auto: null, runs: [] };
      // One text cut to the tiny model's 24 tokens: its forward pass is split in two.
      const one = 'word '.repeat(40) + 'one';
      const wantOne = await here.embed([one]);
      for (const workers of [2, 3]) {
        const e = await Embedder.load(id, { hubBase, device: 'cpu', workers, cache: false });
        const progress = [];
        const got = await e.embed(texts, { batchSize: 8, onProgress: (d) => progress.push(d) });
        const gotOne = await e.embed([one]);
        const oneDiff = Math.max(...gotOne[0].map((x, j) => Math.abs(x - wantOne[0][j])));
        const split = { queryWorkers: e.info.queryWorkers, parts: __testing.lastSplitParts(e) };
        out.runs.push({ workers: e.info.workers, device: e.info.device, diff: diff(got), last: progress.at(-1), split, oneDiff });
        e.dispose();
      }
      const auto = await Embedder.load(id, { hubBase, cache: false }); // no adapter here: auto is the CPU
      out.auto = { workers: auto.info.workers, device: auto.info.device, cores: navigator.hardwareConcurrency };
      auto.dispose();
      const missing = await Embedder.load(id, { hubBase, device: 'cpu', cache: false, workerUrl: '/no/such/worker.js' });
      out.missing = { workers: missing.info.workers, warnings: missing.info.warnings, diff: diff(await missing.embed(texts, { batchSize: 8 })) };
      missing.dispose();
      out.missingCount = await fail(Embedder.load(id, { hubBase, device: 'cpu', workers: 2, cache: false, workerUrl: '/no/such/worker.js' }));
      const e = await Embedder.load(id, { hubBase, device: 'cpu', workers: 2, cache: false });
      out.input = [await fail(e.embed(texts, { batchSize: 0 })), await fail(here.embed(texts, { batchSize: 0 }))];
      await __testing.panicNextEmbed(e, 1);
      out.panic = await fail(e.embed(texts, { batchSize: 1 }));
      out.afterPanic = { workers: e.info.workers, diff: diff(await e.embed(texts, { batchSize: 8 })) };
      await __testing.panicNextEmbed(e);
      out.lastPanic = await fail(e.embed(texts, { batchSize: 1 }));
      out.gone = await fail(e.embed(['again']));
      const fresh = await Embedder.load(id, { hubBase, device: 'cpu', workers: 2, cache: false });
      out.fresh = diff(await fresh.embed(texts, { batchSize: 8 }));
      const last = fresh.embed(['before dispose']);
      fresh.dispose();
      out.beforeDispose = (await last).length;
      out.disposed = await fail(fresh.embed(['after']));
      here.dispose();
      return out;
    },
    pageArgs(),
  );
  for (const [i, run] of r.runs.entries()) {
    const { oneDiff, ...rest } = run;
    assert.deepEqual(rest, { workers: i + 2, device: 'cpu', diff: 0, last: 100, split: { queryWorkers: i + 2, parts: 2 } });
    assert.ok(oneDiff <= 1e-6, `one text split over ${i + 2} workers differs by ${oneDiff}`);
  }
  assert.equal(r.auto.device, 'cpu');
  assert.equal(r.auto.workers, Math.max(1, Math.min(4, r.auto.cores)));
  // A worker script that does not load: 'auto' stays on the page's thread, a count fails.
  assert.equal(r.missing.workers, 0);
  assert.equal(r.missing.diff, 0);
  assert.match(r.missing.warnings.map((w) => w.warning).join(), /cannot start wembed's workers/);
  assert.equal(r.missingCount?.code, 'WASM_LOAD', JSON.stringify(r.missingCount));
  assert.equal(r.input[0]?.code, 'INPUT');
  assert.deepEqual(r.input[0], r.input[1]);
  assert.equal(r.panic?.code, 'INTERNAL', JSON.stringify(r.panic));
  assert.match(r.panic.message, /panicked: .*test panic/);
  assert.deepEqual(r.afterPanic, { workers: 1, diff: 0 });
  assert.equal(r.lastPanic?.code, 'INTERNAL');
  assert.equal(r.gone?.code, 'INTERNAL');
  assert.equal(r.fresh, 0);
  assert.equal(r.beforeDispose, 1);
  assert.equal(r.disposed?.code, 'DISPOSED');
});

test('Chromium: requestAnimationFrame keeps ticking during a 1,000-text embed on workers', async () => {
  const r = await page.evaluate(
    async ({ id, hubBase }) => {
      const { Embedder } = window.wembed;
      const e = await Embedder.load(id, { hubBase, device: 'cpu', workers: 2, cache: false });
      const texts = Array.from({ length: 1000 }, (_, i) => 'word '.repeat(1 + (i % 40)));
      let frames = 0;
      let running = true;
      let worst = 0;
      let last = performance.now();
      const frame = (t) => {
        frames += 1;
        worst = Math.max(worst, t - last);
        last = t;
        if (running) requestAnimationFrame(frame);
      };
      requestAnimationFrame(frame);
      const t0 = performance.now();
      // Small batches: more round trips to the workers, and a call long enough to count frames in.
      const out = await e.embed(texts, { batchSize: 2 });
      const ms = performance.now() - t0;
      running = false;
      e.dispose();
      return { frames, ms, worst, count: out.length, workers: e.info.workers };
    },
    pageArgs(),
  );
  assert.equal(r.count, 1000);
  assert.ok(r.ms > 100, `the embed took ${r.ms} ms: too short to tell`);
  // At 60 Hz a frame is due every 16.7 ms; a page frozen for the whole call gets none.
  assert.ok(r.frames >= Math.min(5, r.ms / 50), `${r.frames} frames in ${r.ms.toFixed(0)} ms`);
  console.log(`1,000 texts on 2 workers: ${r.ms.toFixed(0)} ms, ${r.frames} frames, longest gap ${r.worst.toFixed(0)} ms`);
});
