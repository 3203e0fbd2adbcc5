import assert from 'node:assert/strict';

import { WembedError } from '../src/index.js';

// Helpers shared by the npm package's tests.
export function cosine(a, b) {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** Awaits `promise` and checks it rejects with a WembedError of `code` (and message `pattern`). */
export async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof WembedError, `expected a WembedError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

/**
 * Debian's headless Chromium (playwright-core), quiet on a machine with no network;
 * `webgpu: true` adds the flag that gives pages WebGPU (SwiftShader here).
 */
export async function launchChromium({ webgpu = false } = {}) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
}

/**
 * Headless Chromium on a page of the package, served from `www` at /test.html: `window.wembed`
 * is the package (plus `window[name]` for each extra module in `modules`, name -> URL path).
 * Returns { app, browser, page }; the caller closes the browser and the app server.
 */
export async function openPackagePage(www, { webgpu = false, modules = {} } = {}) {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { appServer, url } = await import('./server.mjs');
  const html = join(await mkdtemp(join(tmpdir(), 'wembed-page-')), 'test.html');
  const extra = Object.entries(modules)
    .map(([name, path]) => `  window.${name} = await import('${path}');\n`)
    .join('');
  await writeFile(html, `<!doctype html><meta charset="utf-8"><title>wembed test</title>
<script type="module">
  window.wembed = await import('/src/index.js');
${extra}  window.ready = true;
</script>`);
  const app = await appServer(www, { '/test.html': html });
  const browser = await launchChromium({ webgpu });
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(`${url(app)}/test.html`);
  await page.waitForFunction(() => window.ready === true);
  return { app, browser, page };
}

let packed = null;
/**
 * The package as `npm i wembed` delivers it: `npm pack` of www/ (once per process; the wasm
 * builds must exist, as the test command makes them), extracted into `dir/node_modules/wembed`.
 * Returns the tarball's path.
 */
export async function installPackage(dir) {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { mkdtemp, mkdir } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const run = promisify(execFile);
  packed ??= (async () => {
    const www = fileURLToPath(new URL('../', import.meta.url));
    const out = await mkdtemp(join(tmpdir(), 'wembed-pack-'));
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: www });
    return join(out, JSON.parse(stdout)[0].filename);
  })();
  const tgz = await packed;
  await mkdir(join(dir, 'node_modules/wembed'), { recursive: true });
  await run('tar', ['-xzf', tgz, '-C', join(dir, 'node_modules/wembed'), '--strip-components=1']);
  return tgz;
}
