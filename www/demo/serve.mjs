// Serves the demo on localhost: the page (www/demo), the package (www/src, www/pkg) and the
// models (assets/demo/models, made by scripts/build-demo.sh). Usage: node www/demo/serve.mjs
// [PORT] (default 8080, or $PORT). Also imported by the demo's browser test.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const www = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.txt': 'text/plain',
};

async function resolve(path) {
  if (path === '/' || path === '/demo') return { redirect: '/demo/' };
  let file;
  if (path.startsWith('/models/')) file = join(root, 'assets/demo', path);
  else if (path === '/demo/corpus.json') file = join(root, 'assets/demo/corpus.json');
  else if (/^\/(demo|src|pkg)\//.test(path)) file = join(www, path.endsWith('/') ? `${path}index.html` : path);
  if (!file || !normalize(file).startsWith(root)) return null;
  try {
    return (await stat(file)).isFile() ? { file } : null;
  } catch {
    return null;
  }
}

/** Starts the server; resolves to it once it listens. */
export function serve(port = 8080, host = '127.0.0.1') {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const found = await resolve(path);
    if (found?.redirect) return res.writeHead(302, { location: found.redirect }).end();
    if (!found) return res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    const body = await readFile(found.file);
    res.writeHead(200, {
      'content-type': TYPES[extname(found.file)] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-cache',
    });
    res.end(body);
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
  const server = await serve(port);
  console.log(`wembed demo: http://localhost:${server.address().port}/demo/  (Ctrl-C stops it)`);
}
