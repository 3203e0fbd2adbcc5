// The package, installed from its npm tarball, imports as is into browser builds: esbuild bundles it, Vite bundles it and emits
// the wasm file and the worker script as assets, Vite's dev server serves it, webpack 5 bundles it. Each bundled page then runs in headless
// Chromium: it starts its workers and embeds, equal to the calling thread bit for bit.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readdir, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { appServer, hubServer, close, url } from './server.mjs';
import { installPackage } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const TINY_ID = 'tiny/mean-erf-norm';

let browser = null;
let hub = null;
const servers = [];

after(async () => {
  await browser?.close();
  for (const s of servers) await close(s);
  if (hub) await close(hub);
});

/**
 * Opens the bundled page served from `dir` (its index.html) and embeds there with 2 workers
 * and with none; `extra` are load options the bundle needs (esbuild: wasm and workerUrl).
 */
async function runBundled(dir, extra, origin = null) {
  hub ??= await hubServer({ [TINY_ID]: join(root, 'tests/fixtures/tiny/mean-erf-norm') });
  browser ??= await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
  if (!origin) {
    const app = await appServer(dir, {});
    servers.push(app);
    origin = url(app);
  }
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${origin}/index.html`);
  await page.waitForFunction(() => typeof window.Embedder === 'function', null, { timeout: 20000 });
  const r = await page.evaluate(
    async ({ id, hubBase, extra }) => {
      const texts = Array.from({ length: 40 }, (_, i) => 'word '.repeat(1 + ((i * 7) % 30)) + `text ${i}`);
      const run = async (workers) => {
        const e = await window.Embedder.load(id, { hubBase, device: 'cpu', workers, cache: false, ...extra });
        const vectors = await e.embed(texts, { batchSize: 4 });
        const info = e.info;
        e.dispose();
        return { workers: info.workers, vectors: vectors.map((v) => Array.from(v)) };
      };
      try {
        return { pool: await run(2), here: await run(0) };
      } catch (e) {
        return { error: `${e.code}: ${e.message}` };
      }
    },
    { id: TINY_ID, hubBase: url(hub), extra },
  );
  await page.close();
  assert.equal(r.error, undefined, `${r.error} ${errors.join('; ')}`);
  assert.equal(r.pool.workers, 2);
  assert.equal(r.here.workers, 0);
  assert.deepEqual(r.pool.vectors, r.here.vectors);
}

/** A fresh project with the npm tarball installed (not a link to the source folder). */
async function project() {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-bundle-'));
  await installPackage(dir);
  await writeFile(join(dir, 'main.js'), "import { Embedder } from 'wembed';\nwindow.Embedder = Embedder;\n");
  await writeFile(join(dir, 'index.html'), '<!doctype html><script type="module" src="./main.js"></script>\n');
  return dir;
}

test('esbuild bundles the package for the browser; the page starts workers and embeds', { timeout: 120_000 }, async () => {
  const esbuild = await import('esbuild');
  const dir = await project();
  // esbuild leaves new URL('./worker.js', import.meta.url) alone: the worker is a second entry
  // point, and the page names it (workerUrl) and the wasm (wasm), as the README says.
  const result = await esbuild.build({
    entryPoints: { main: join(dir, 'main.js'), worker: join(dir, 'node_modules/wembed/src/worker.js') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    outdir: join(dir, 'out'),
    logLevel: 'silent',
  });
  assert.deepEqual(result.errors, []);
  await copyFile(join(dir, 'node_modules/wembed/pkg/wembed_bg.wasm'), join(dir, 'out/wembed_bg.wasm'));
  await writeFile(join(dir, 'out/index.html'), '<!doctype html><script type="module" src="./main.js"></script>\n');
  await runBundled(join(dir, 'out'), { wasm: '/wembed_bg.wasm', workerUrl: '/worker.js' });
});

test('Vite builds the package with its worker and wasm; the page starts workers and embeds', { timeout: 120_000 }, async () => {
  const { build } = await import('vite');
  const dir = await project();
  await build({ root: dir, logLevel: 'silent', build: { outDir: join(dir, 'dist') } });
  const assets = await readdir(join(dir, 'dist/assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `no .wasm among ${assets}`);
  assert.ok(assets.some((f) => /^worker-.*\.js$/.test(f)), `no worker script among ${assets}`);
  // No options: Vite resolved both the worker and the wasm.
  await runBundled(join(dir, 'dist'), {});
});

test("Vite's dev server serves the package with optimizeDeps.exclude; the page starts workers and embeds", { timeout: 120_000 }, async () => {
  // The dev server pre-bundles dependencies with esbuild into node_modules/.vite/deps, where
  // the package's new URL('../pkg/...', import.meta.url) no longer points at its wasm (the
  // server answered index.html: measured 2026-12-07, Vite 7). Excluding the package from the
  // pre-bundling, as the README says, serves it from its own folder.
  const { createServer } = await import('vite');
  const dir = await project();
  const server = await createServer({
    root: dir,
    logLevel: 'silent',
    optimizeDeps: { exclude: ['wembed'] },
    server: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  await server.listen();
  try {
    const { port } = server.httpServer.address();
    await runBundled(dir, {}, `http://127.0.0.1:${port}`);
  } finally {
    await server.close();
  }
});

test('webpack 5 builds the package with its worker and wasm; the page starts workers and embeds', { timeout: 120_000 }, async () => {
  const { default: webpack } = await import('webpack');
  const dir = await project();
  const stats = await new Promise((resolve, reject) =>
    webpack(
      {
        mode: 'production',
        context: dir,
        entry: './main.js',
        output: { path: join(dir, 'dist'), publicPath: '/' },
        performance: { hints: false },
      },
      (err, s) => (err ? reject(err) : resolve(s)),
    ),
  );
  assert.ok(!stats.hasErrors(), stats.toString({ all: false, errors: true }));
  const out = await readdir(join(dir, 'dist'));
  assert.ok(out.some((f) => f.endsWith('.wasm')), `no .wasm among ${out}`);
  await writeFile(join(dir, 'dist/index.html'), '<!doctype html><script src="./main.js"></script>\n');
  // No options: webpack resolved both the worker (new URL + new Worker) and the wasm.
  await runBundled(join(dir, 'dist'), {});
});

