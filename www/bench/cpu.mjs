// The CPU-path bench where users run it: wembed's wasm build beside onnxruntime-web (the
// engine transformers.js runs on) in Node, and beside transformers.js itself in headless
// Chromium, in one run, on the same texts. Usage: scripts/bench-cpu.sh (sets up the peers in
// assets/bench-js; `--quick` runs fewer texts, `--only node|browser` one half).
//
// Corpora:
// - short: the 512 distinct sentences of the STS-B test split (~13 tokens);
// - long: 512 paragraphs of 100-250 tokens from the license texts of the npm package
//   spdx-license-list 6.12.0 (real English prose as documents are; file order, duplicates
//   dropped).
// Each row: sentences/s at batch 32 (length-sorted, as every peer is fastest), sentences/s at
// batch 1 (the first 128 short / 32 long texts, one call each), the p50 latency of one
// 16-token query over 30 calls back to back and over 30 calls each after 50 ms of idle, the worst cosine to the fp32 vectors (onnxruntime-web fp32 in
// Node, which equals PyTorch), and the threads or workers used. Rows run one after another;
// the machine should be otherwise idle. Each onnxruntime-web row runs in a child process of
// its own (`--ort-row`) that exits when the row is done: a released onnxruntime-web session
// leaves its thread pool spinning (1,228 ms of CPU in 2 s of idle, measured 2026-12-02), and
// the thread count of its first session holds for the process, so in one process its rows
// slowed every later row and its "1 thread" rows ran on the first row's thread count.
import { spawn } from 'node:child_process';
import { readFile, readdir, mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder } from '../src/index.js';
import { cosine, launchChromium } from '../test/util.mjs';
import { appServer, hubServer, close, url } from '../test/server.mjs';
import { bertFeeds, onnxGraphs, stsbSentences, transformersJsFolder } from './peers.mjs';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
// `--ort-row CORPUS DTYPE THREADS`: this process is a child that measures one onnxruntime-web row.
const ORT_ROW = args.includes('--ort-row') ? args.slice(args.indexOf('--ort-row') + 1, args.indexOf('--ort-row') + 4) : null;
const root = fileURLToPath(new URL('../../', import.meta.url));
const www = join(root, 'www');
const peers = join(root, 'assets/bench-js/node_modules');
const MODEL = join(root, 'assets/models/all-MiniLM-L6-v2');
const CORES = availableParallelism();
const N = QUICK ? 128 : 512;
const QUERY = 'How do I keep the tomatoes in my garden healthy in hot summers?';

const { AutoTokenizer, env } = await import(join(peers, '@huggingface/transformers/dist/transformers.node.mjs'));
env.allowRemoteModels = false;
env.localModelPath = join(root, 'assets/models');
const tokenizer = await AutoTokenizer.from_pretrained('all-MiniLM-L6-v2');
const tokens = (t) => tokenizer.encode(t).length;

async function longCorpus() {
  const dir = join(peers, 'spdx-license-list/licenses');
  const seen = new Set();
  for (const f of (await readdir(dir)).sort()) {
    const text = JSON.parse(await readFile(join(dir, f), 'utf8')).licenseText ?? '';
    for (const p of text.split(/\n\s*\n/)) {
      const s = p.replace(/\s+/g, ' ').trim();
      if (seen.size >= N || seen.has(s)) continue;
      const n = tokens(s);
      if (n >= 100 && n <= 250) seen.add(s);
    }
  }
  if (seen.size < N) throw new Error(`only ${seen.size} paragraphs of 100-250 tokens`);
  return [...seen];
}

const corpora = [
  { name: 'short', texts: await stsbSentences(root, N), b1: QUICK ? 32 : 128 },
  { name: 'long', texts: await longCorpus(), b1: QUICK ? 8 : 32 },
];
for (const c of corpora) {
  const lens = c.texts.map(tokens);
  c.meanTokens = lens.reduce((a, b) => a + b, 0) / lens.length;
  c.order = c.texts.map((_, i) => i).sort((a, b) => lens[a] - lens[b]);
}
if (tokens(QUERY) !== 16) throw new Error(`the query has ${tokens(QUERY)} tokens, not 16`);

/**
 * The measurements every row makes, given `embed(texts) -> vectors` (arrays of numbers):
 * batch 32 over the length-sorted corpus, batch 1 over its first texts, the query's p50.
 * Runs as is in Node and, as source text, in the page.
 */
async function measure(embed, corpus) {
  const now = () => performance.now();
  const { texts, order, b1 } = corpus;
  const out = new Array(texts.length);
  // Warm-up: one whole unmeasured pass, so every row is timed on optimized code. A wasm
  // engine first runs a module in its baseline compiler and optimizes hot functions in the
  // background; after a few texts only, a fresh worker ran its batches at a third of its later
  // speed, and the row measured V8 more than the system (2026-12-02).
  for (let c = 0; c < order.length; c += 32) await embed(order.slice(c, c + 32).map((i) => texts[i]));
  let t = now();
  for (let c = 0; c < order.length; c += 32) {
    const idx = order.slice(c, c + 32);
    const vs = await embed(idx.map((i) => texts[i]));
    idx.forEach((i, k) => (out[i] = vs[k]));
  }
  const batch32 = texts.length / ((now() - t) / 1000);
  t = now();
  for (let i = 0; i < b1; i++) await embed([texts[i]]);
  const batch1 = b1 / ((now() - t) / 1000);
  // The query twice: back to back (the thread never idles between calls), and each call after
  // 50 ms of idle, as a query typed into a search box comes. On this machine's cores (virtual
  // ones), a core that idled even 1 ms ran the next few ms slower: one 8-token text on
  // wembed's calling thread took 4.3 ms back to back and 6.1-7.5 ms after 1-3 ms of idle
  // (Node, 2026-12-07). A worker idles between its calls by design, a loop on the calling
  // thread never does; after idle, every system starts as a worker does.
  const p50 = async (gap) => {
    const times = [];
    for (let i = 0; i < 33; i++) {
      if (gap) await new Promise((resolve) => setTimeout(resolve, gap));
      t = now();
      await embed([corpus.query]);
      if (i >= 3) times.push(now() - t);
    }
    times.sort((a, b) => a - b);
    return times[times.length >> 1];
  };
  const queryMs = await p50(0);
  const idleQueryMs = await p50(50);
  return { batch32, batch1, queryMs, idleQueryMs, vectors: out };
}

const rows = [];
const reference = {};
function record(corpus, system, dtype, parallel, r) {
  const worst = reference[corpus.name]
    ? Math.min(...r.vectors.map((v, i) => cosine(v, reference[corpus.name][i])))
    : 1;
  rows.push({ corpus: corpus.name, system, dtype, parallel, ...r, worst });
  console.error(`${corpus.name}: ${system} ${dtype} (${parallel}): ${r.batch32.toFixed(1)} / ${r.batch1.toFixed(1)} sent/s, query ${r.queryMs.toFixed(1)} ms (after idle ${r.idleQueryMs.toFixed(1)})`);
}

// --- Node: onnxruntime-web (padded batches, mean pooling over the mask, L2) and wembed ---
const ortIds = new Map();
function ortEmbedder(ort, session) {
  return async (texts) => {
    const ids = texts.map((t) => {
      if (!ortIds.has(t)) ortIds.set(t, tokenizer.encode(t));
      return ortIds.get(t);
    });
    const { last_hidden_state: h } = await session.run(bertFeeds(ort, ids));
    const [, len, dim] = h.dims;
    return ids.map((row, r) => {
      const v = new Float64Array(dim);
      for (let c = 0; c < row.length; c++) for (let d = 0; d < dim; d++) v[d] += h.data[(r * len + c) * dim + d];
      const norm = Math.hypot(...v);
      return Array.from(v, (x) => x / norm);
    });
  };
}

const graphs = await onnxGraphs(join(root, 'assets/onnx'));

/** The child's side of `ortRows`: one row, printed as JSON on stdout, then exit. */
async function ortRowHere(corpusName, dtype, threads) {
  const ort = await import(join(peers, 'onnxruntime-web/dist/ort.node.min.mjs'));
  ort.env.wasm.numThreads = threads;
  const corpus = corpora.find((c) => c.name === corpusName);
  corpus.query = QUERY;
  const session = await ort.InferenceSession.create(graphs[dtype], { executionProviders: ['wasm'] });
  const r = await measure(ortEmbedder(ort, session), corpus);
  const json = JSON.stringify({ ...r, version: ort.env.versions.web });
  // Exit only once the pipe has taken everything: a plain process.exit truncated it.
  process.stdout.write(json, () => process.exit(0));
}

/** One onnxruntime-web row, measured in a child process that exits afterwards. */
async function ortRows(corpus, dtype, threads) {
  const argv = [fileURLToPath(import.meta.url), '--ort-row', corpus.name, dtype, String(threads)];
  if (QUICK) argv.push('--quick');
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const chunks = [];
  child.stdout.on('data', (c) => chunks.push(c));
  const code = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`onnxruntime-web row ${corpus.name} ${dtype} ${threads} threads: child exited with ${code}`);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function wembedRow(corpus, dtype, workers) {
  const e = await Embedder.load(MODEL, { device: 'cpu', dtype, workers });
  const r = await measure(async (texts) => (await e.embed(texts, { batchSize: 32 })).map((v) => Array.from(v)), corpus);
  e.dispose();
  return r;
}

if (ORT_ROW) {
  await ortRowHere(ORT_ROW[0], ORT_ROW[1], Number(ORT_ROW[2]));
  await new Promise(() => {}); // ortRowHere exits
}

for (const corpus of corpora) {
  corpus.query = QUERY;
  // The reference first: fp32 on all cores (its own row, with a cosine of 1 by definition).
  const fp32 = await ortRows(corpus, 'fp32', CORES);
  reference[corpus.name] = fp32.vectors;
  if (ONLY === 'browser') continue;
  const ortName = `onnxruntime-web ${fp32.version} (Node, wasm)`;
  record(corpus, ortName, 'fp32', `${CORES} threads`, fp32);
  record(corpus, ortName, 'fp32', '1 thread', await ortRows(corpus, 'fp32', 1));
  record(corpus, ortName, 'int8 (= transformers.js q8)', '1 thread', await ortRows(corpus, 'int8', 1));
  record(corpus, ortName, 'int8 (= transformers.js q8)', `${CORES} threads`, await ortRows(corpus, 'int8', CORES));
  for (const [dtype, workers] of [['q8', 1], ['q8', 'auto'], ['f32', 1], ['f32', 'auto']]) {
    const label = workers === 1 ? '1 worker' : `workers auto (${Math.min(4, CORES)})`;
    record(corpus, 'wembed (Node, wasm SIMD128)', dtype, label, await wembedRow(corpus, dtype, workers));
  }
}

// --- Chromium: transformers.js and wembed on the same page, isolated or not ---
const PAGE = `<!doctype html><meta charset="utf-8"><title>wembed cpu bench</title>
<script type="module">
  window.wembed = await import('/src/index.js');
  window.transformers = await import('/tjs/transformers.min.js');
  window.measure = ${measure.toString()};
  window.ready = true;
</script>`;

async function browserRows() {
  const models = await transformersJsFolder(MODEL, 'all-MiniLM-L6-v2', graphs);
  const hub = await hubServer({ 'all-MiniLM-L6-v2': MODEL });
  const html = join(await mkdtemp(join(tmpdir(), 'wembed-bench-page-')), 'bench.html');
  await writeFile(html, PAGE);
  const mounts = {
    '/tjs/': join(peers, '@huggingface/transformers/dist'),
    '/ort/': join(peers, 'onnxruntime-web/dist'),
    '/models/': models,
  };
  for (const isolated of [false, true]) {
    const headers = isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
    const app = await appServer(www, { '/bench.html': html }, { mounts, headers });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
      await page.goto(`${url(app)}/bench.html`);
      await page.waitForFunction(() => window.ready === true, null, { timeout: 60_000 });
      const where = isolated ? 'Chromium, cross-origin isolated' : 'Chromium, not isolated';
      const configs = isolated
        ? [
            { kind: 'tjs', dtype: 'q8', threads: null },
            { kind: 'tjs', dtype: 'q8', threads: CORES },
          ]
        : [
            { kind: 'wembed', dtype: 'auto', workers: 'auto' },
            { kind: 'wembed', dtype: 'q8', workers: 'auto' },
            { kind: 'wembed', dtype: 'q8', workers: 'auto', simd: 'simd128' },
            { kind: 'wembed', dtype: 'q8', workers: 1 },
            { kind: 'tjs', dtype: 'q8', threads: null },
          ];
      for (const corpus of corpora) {
        for (const cfg of configs) {
          // A fresh page per row: each wembed row its own wasm build, each transformers.js row
          // its own thread count (onnxruntime-web fixes both at its first session).
          await page.reload();
          await page.waitForFunction(() => window.ready === true, null, { timeout: 60_000 });
          const r = await page.evaluate(
            async ({ cfg, corpus, hubBase }) => {
              const c = { ...corpus };
              if (cfg.kind === 'wembed') {
                const e = await window.wembed.Embedder.load('all-MiniLM-L6-v2', {
                  device: 'cpu', dtype: cfg.dtype, workers: cfg.workers, hubBase, simd: cfg.simd,
                });
                const r = await window.measure(async (t) => (await e.embed(t, { batchSize: 32 })).map((v) => Array.from(v)), c);
                const info = e.info;
                e.dispose();
                const dtype = cfg.dtype === 'auto' ? `default (${info.dtype})` : info.dtype;
                // The build, and the integer kernel that won its race (or was asked for).
                const kernel = info.kernel && info.wasm === 'relaxed-simd' ? ` (${info.kernel} kernel)` : '';
                return { ...r, label: `${dtype}, ${info.wasm}${kernel}`, parallel: `${info.workers} worker${info.workers === 1 ? '' : 's'}` };
              }
              const { pipeline, env } = window.transformers;
              env.allowRemoteModels = false;
              env.allowLocalModels = true;
              env.localModelPath = '/models/';
              env.backends.onnx.wasm.wasmPaths = '/ort/';
              if (cfg.threads) env.backends.onnx.wasm.numThreads = cfg.threads;
              const extractor = await pipeline('feature-extraction', 'all-MiniLM-L6-v2', { device: 'wasm', dtype: cfg.dtype });
              const embed = async (t) => (await extractor(t, { pooling: 'mean', normalize: true })).tolist();
              const r = await window.measure(embed, c);
              const threads = env.backends.onnx.wasm.numThreads ?? 1;
              await extractor.dispose();
              return { ...r, label: cfg.dtype, parallel: `${crossOriginIsolated ? threads : 1} thread${(crossOriginIsolated ? threads : 1) === 1 ? '' : 's'}${cfg.threads ? ' (numThreads set)' : ' (its default)'}` };
            },
            { cfg, corpus: { texts: corpus.texts, order: corpus.order, b1: corpus.b1, query: QUERY }, hubBase: url(hub) },
          );
          const system = cfg.kind === 'wembed' ? `wembed (${where})` : `transformers.js 4.3.2, wasm (${where})`;
          record(corpus, system, r.label, r.parallel, r);
        }
      }
    } finally {
      await browser.close();
      await close(app);
    }
  }
  await close(hub);
}

if (ONLY !== 'node') await browserRows();

console.log(`\nall-MiniLM-L6-v2, ${CORES} cores, Node ${process.versions.node}, Chromium (headless); worst cosine to onnxruntime-web fp32 (= PyTorch)`);
for (const corpus of corpora) {
  console.log(`\n${corpus.name}: ${corpus.texts.length} texts, mean ${corpus.meanTokens.toFixed(0)} tokens; batch 1 over the first ${corpus.b1}; query: 16 tokens\n`);
  console.log('| system | dtype | threads / workers | batch 32 (sent/s) | batch 1 (sent/s) | 16-token query p50 (ms) | query after 50 ms idle, p50 (ms) | worst cosine |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows.filter((r) => r.corpus === corpus.name)) {
    console.log(`| ${r.system} | ${r.dtype} | ${r.parallel} | ${r.batch32.toFixed(1)} | ${r.batch1.toFixed(1)} | ${r.queryMs.toFixed(1)} | ${r.idleQueryMs.toFixed(1)} | ${r.worst.toFixed(4)} |`);
  }
}
