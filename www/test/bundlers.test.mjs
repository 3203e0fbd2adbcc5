// The package imports as is into browser builds: esbuild bundles it, Vite bundles it and emits
// the wasm file as an asset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readdir, mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const www = fileURLToPath(new URL('../', import.meta.url));

async function project() {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-bundle-'));
  await mkdir(join(dir, 'node_modules'));
  await symlink(www, join(dir, 'node_modules/wembed'));
  await writeFile(join(dir, 'main.js'), "import { Embedder } from 'wembed';\nwindow.Embedder = Embedder;\n");
  await writeFile(join(dir, 'index.html'), '<!doctype html><script type="module" src="./main.js"></script>\n');
  return dir;
}

test('esbuild bundles the package for the browser', async () => {
  const esbuild = await import('esbuild');
  const dir = await project();
  const result = await esbuild.build({
    entryPoints: [join(dir, 'main.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    outdir: join(dir, 'out'),
    logLevel: 'silent',
  });
  assert.deepEqual(result.errors, []);
});

test('Vite builds the package and emits the wasm', { timeout: 120_000 }, async () => {
  const { build } = await import('vite');
  const dir = await project();
  await build({ root: dir, logLevel: 'silent', build: { outDir: join(dir, 'dist') } });
  const assets = await readdir(join(dir, 'dist/assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `no .wasm among ${assets}`);
  assert.ok(assets.some((f) => f.endsWith('.js')));
});
