// Two localhost servers for the browser tests: `app` serves the package and a test page;
// `hub` serves model folders with a Hugging Face hub's paths ({id}/resolve/{revision}/{file}).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html', '.json': 'application/json' };

function listen(handler, headers = {}) {
  return new Promise((resolve) => {
    const server = createServer(async (req, res) => {
      try {
        const found = await handler(decodeURIComponent(new URL(req.url, 'http://x').pathname));
        if (!found) {
          res.writeHead(404, { 'access-control-allow-origin': '*' }).end('not found');
          return;
        }
        const body = await readFile(found);
        res.writeHead(200, {
          'content-type': TYPES[extname(found)] ?? 'application/octet-stream',
          'content-length': body.length,
          'access-control-allow-origin': '*',
          ...headers,
        });
        res.end(body);
      } catch {
        res.writeHead(404, { 'access-control-allow-origin': '*' }).end('not found');
      }
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function file(path) {
  try {
    return (await stat(path)).isFile() ? path : null;
  } catch {
    return null;
  }
}

/**
 * Serves `root` (the package folder) at /, plus `pages` (path -> html), `mounts` (URL prefix
 * such as '/peer/' -> folder) and extra response `headers` (e.g. COOP/COEP for a
 * cross-origin-isolated page).
 */
export function appServer(root, pages, { mounts = {}, headers = {} } = {}) {
  const under = (dir, rest) => {
    const p = normalize(join(dir, rest));
    return p.startsWith(dir) ? file(p) : null;
  };
  return listen(async (path) => {
    if (pages[path]) return pages[path];
    for (const [prefix, dir] of Object.entries(mounts)) {
      if (path.startsWith(prefix)) return under(dir, path.slice(prefix.length));
    }
    return under(root, path);
  }, headers);
}

/** Serves models: `models` maps a model id to its folder; `hide` lists files answered 404. */
export function hubServer(models, { hide = [] } = {}) {
  return listen(async (path) => {
    const m = path.match(/^\/(.+)\/resolve\/[^/]+\/(.+)$/);
    if (!m || !models[m[1]] || hide.includes(m[2])) return null;
    const p = normalize(join(models[m[1]], m[2]));
    return p.startsWith(models[m[1]]) ? file(p) : null;
  });
}

/** Stops a server now, keep-alive connections included (a browser may hold some open). */
export const close = (server) =>
  new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
export const url = (server) => `http://127.0.0.1:${server.address().port}`;
