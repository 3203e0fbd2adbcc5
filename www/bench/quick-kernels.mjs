// Kernel-development loop (not the bench of record: that is cpu.mjs): wembed on one worker in
// Node beside onnxruntime-web int8 on one thread, 128 short STS-B sentences at batch 32 and a
// 16-token query, alternating rounds. Usage: node [--experimental-wasm-relaxed-simd]
// www/bench/quick-kernels.mjs [f32|q8 ...] [--simd relaxed]
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Embedder } from '../src/index.js';
import { bertFeeds, onnxGraphs, stsbSentences } from './peers.mjs';

const args = process.argv.slice(2);
const simd = args.includes('--simd') ? args[args.indexOf('--simd') + 1] : undefined;
const dtypes = args.filter((a) => ['f32', 'q8', 'q4', 'f16'].includes(a));
const root = fileURLToPath(new URL('../../', import.meta.url));
const peers = join(root, 'assets/bench-js/node_modules');
const ort = await import(join(peers, 'onnxruntime-web/dist/ort.node.min.mjs'));
const { AutoTokenizer, env } = await import(join(peers, '@huggingface/transformers/dist/transformers.node.mjs'));
env.allowRemoteModels = false;
env.localModelPath = join(root, 'assets/models');
const tokenizer = await AutoTokenizer.from_pretrained('all-MiniLM-L6-v2');
const texts = (await stsbSentences(root, 128)).sort((a, b) => tokenizer.encode(a).length - tokenizer.encode(b).length);
const QUERY = 'How do I keep the tomatoes in my garden healthy in hot summers?';

// Both sides run on this thread: CPU time (user + system) leaves out the time a shared
// machine's other tenants take, which wall time does not.
async function time(fn) {
  const t = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1000;
}
async function measure(embed) {
  await embed(texts.slice(0, 32));
  let best = Infinity;
  for (let r = 0; r < 4; r++) {
    best = Math.min(best, await time(async () => { for (let i = 0; i < texts.length; i += 32) await embed(texts.slice(i, i + 32)); }));
  }
  const q = [];
  for (let r = 0; r < 21; r++) q.push(await time(() => embed([QUERY])));
  q.sort((a, b) => a - b);
  return `${(texts.length / best * 1000).toFixed(1)} sent/s, query ${q[10].toFixed(1)} ms (CPU time)`;
}

const graphs = await onnxGraphs(join(root, 'assets/onnx'));
ort.env.wasm.numThreads = 1;
const session = await ort.InferenceSession.create(graphs.int8, { executionProviders: ['wasm'] });
const ortEmbed = (batch) => session.run(bertFeeds(ort, batch.map((t) => tokenizer.encode(t))));
for (const dtype of args.includes('--browser') ? [] : dtypes.length ? dtypes : ['q8']) {
  const e = await Embedder.load(join(root, 'assets/models/all-MiniLM-L6-v2'), { device: 'cpu', dtype, workers: 0, simd });
  console.log(`wembed ${dtype} ${simd ?? 'simd128'} main thread: ${await measure((b) => e.embed(b, { batchSize: 32 }))}`);
  console.log(`ort-web int8 1 thread: ${await measure(ortEmbed)}`);
  e.dispose();
}

// --browser: the same wembed rows on one worker in headless Chromium (its V8 lowers relaxed
// SIMD differently from Node 20's), wall time, best of 4.
if (args.includes('--browser')) {
  const { launchChromium } = await import('../test/util.mjs');
  const { appServer, hubServer, close, url } = await import('../test/server.mjs');
  const hub = await hubServer({ 'all-MiniLM-L6-v2': join(root, 'assets/models/all-MiniLM-L6-v2') });
  const app = await appServer(join(root, 'www'), {});
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
    await page.goto(`${url(app)}/src/index.js`);
    for (const s of ['simd128', 'relaxed']) {
      for (const dtype of dtypes.length ? dtypes : ['q8']) {
        const r = await page.evaluate(async ({ s, dtype, texts, QUERY, hubBase }) => {
          const { Embedder } = await import('/src/index.js');
          const e = await Embedder.load('all-MiniLM-L6-v2', { device: 'cpu', dtype, workers: 1, hubBase, simd: s });
          const t = async (fn) => { const t0 = performance.now(); await fn(); return performance.now() - t0; };
          await e.embed(texts.slice(0, 32));
          let best = Infinity;
          for (let r = 0; r < 4; r++) best = Math.min(best, await t(async () => { for (let i = 0; i < texts.length; i += 32) await e.embed(texts.slice(i, i + 32), { batchSize: 32 }); }));
          const q = [];
          for (let r = 0; r < 21; r++) q.push(await t(() => e.embed([QUERY])));
          q.sort((a, b) => a - b);
          const wasm = e.info.wasm;
          e.dispose();
          return `${(texts.length / best * 1000).toFixed(1)} sent/s, query ${q[10].toFixed(1)} ms (${wasm})`;
        }, { s, dtype, texts, QUERY, hubBase: url(hub) });
        console.log(`Chromium wembed ${dtype} ${s} 1 worker: ${r}`);
      }
    }
  } finally {
    await browser.close();
    await close(app);
    await close(hub);
  }
}
