// The declarations match the code's API: test/types/api.ts, which uses all of it (and marks
// what must not compile with @ts-expect-error), compiles under `tsc --noEmit --strict` against
// src/index.d.ts; a file that misuses the API does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const www = fileURLToPath(new URL('../', import.meta.url));
const tsc = join(www, 'node_modules/typescript/bin/tsc');
const FLAGS = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom'];

const compile = (file) =>
  promisify(execFile)(process.execPath, [tsc, ...FLAGS, file], { cwd: www }).then(
    () => ({ ok: true, out: '' }),
    (e) => ({ ok: false, out: `${e.stdout}${e.stderr}` }),
  );

test('a TypeScript program using the whole API compiles with --strict against index.d.ts', async () => {
  const r = await compile(join(www, 'test/types/api.ts'));
  assert.ok(r.ok, r.out);
});

test('misuse of the API does not compile', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-types-'));
  const file = join(dir, 'misuse.ts');
  const index = JSON.stringify(join(www, 'src/index.js'));
  await writeFile(
    file,
    `import { Embedder } from ${index};\nconst e = await Embedder.load('x', { device: 'gpu' });\nexport const n: number = e.info.device;\n`,
  );
  const r = await compile(file);
  assert.equal(r.ok, false, 'a wrong device name and a string read as a number compiled');
  assert.match(r.out, /'"gpu"' is not assignable/);
  assert.match(r.out, /not assignable to type 'number'/);
});
