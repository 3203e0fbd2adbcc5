// The npm tarball, not the source folder: what `npm pack` puts in it, and a fresh Node project
// with it installed (ESM import from node_modules, its workers and wasm found there, vectors
// equal to sentence-transformers; `require` gets a clear message). The bundler tests install
// the same tarball.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { cosine, installPackage } from './util.mjs';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');

test('the tarball holds the code, both wasm builds and the types, and nothing else', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-tarball-'));
  const tgz = await installPackage(dir);
  const { stdout } = await run('tar', ['-tzf', tgz]);
  const files = stdout.trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();
  for (const f of ['package.json', 'src/index.js', 'src/index.d.ts', 'src/worker.js', 'src/require.cjs', 'pkg/wembed.js', 'pkg/wembed_bg.wasm', 'pkg/wembed_relaxed_bg.wasm']) {
    assert.ok(files.includes(f), `${f} missing from ${files.join(' ')}`);
  }
  const stray = files.filter((f) => !/^(package\.json|README\.md|LICENSE.*|src\/[^/]+|pkg\/[^/]+)$/.test(f));
  assert.deepEqual(stray, [], 'files outside src/ and pkg/');
});

test('a fresh Node project imports the installed package and embeds as sentence-transformers does', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-node-project-'));
  await installPackage(dir);
  await writeFile(join(dir, 'package.json'), '{ "name": "app", "private": true, "type": "module" }\n');
  await writeFile(
    join(dir, 'main.js'),
    `import { Embedder } from 'wembed';
const [dir, ...texts] = process.argv.slice(2);
const e = await Embedder.load(dir, { device: 'cpu', dtype: 'f32' });
const vectors = await e.embed(texts);
console.log(JSON.stringify({ workers: e.info.workers, vectors: vectors.map((v) => Array.from(v)) }));
e.dispose();
`,
  );
  const reference = JSON.parse(await readFile(join(tiny, 'reference.json'), 'utf8'));
  const texts = reference.sentences.map((s) => s.text).filter((t) => t !== '');
  const { stdout } = await run(process.execPath, ['main.js', tiny, ...texts], { cwd: dir });
  const r = JSON.parse(stdout);
  assert.ok(r.workers >= 1, `the installed package ran no workers: ${r.workers}`);
  for (const [i, t] of texts.entries()) {
    const want = reference.sentences.find((s) => s.text === t).pooled;
    assert.ok(cosine(r.vectors[i], want) >= 0.99999, `${JSON.stringify(t)}: cosine ${cosine(r.vectors[i], want)}`);
  }
  // CommonJS: a message that says what to do, not ERR_REQUIRE_ESM.
  await assert.rejects(run(process.execPath, ['-e', "require('wembed')"], { cwd: dir }), (e) => {
    assert.match(e.stderr, /wembed is an ES module: use `import/);
    return true;
  });
});
