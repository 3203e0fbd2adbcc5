// A hub that misbehaves on purpose, on 127.0.0.1 only, written on raw sockets so that it can
// lie about content-length, cut a body, stall or never answer. Paths are the hub's
// ({id}/resolve/{revision}/{file}) with the model id saying what to do:
//   {model}/{behaviour}-{target}   e.g. tiny/truncate-weights, tiny/silent-all, tiny/ok-all
// `model` names a folder given to hostileHub; `target` the file that misbehaves (or `all`).
import { createServer } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

export const TARGETS = {
  config: 'config.json',
  tokenizer: 'tokenizer.json',
  weights: 'model.safetensors',
  modules: 'modules.json',
  pooling: '1_Pooling/config.json',
  sbert: 'sentence_bert_config.json',
  st: 'config_sentence_transformers.json',
};

export const BEHAVIOURS = {
  ok: 'the file as it is',
  500: 'HTTP 500',
  404: 'HTTP 404',
  html: 'an HTML page with status 200',
  truncate: 'content-length of the whole file, half of it sent, then the connection closed',
  long: 'content-length of half the file, the whole file sent',
  chunked: 'chunked transfer encoding, no content-length',
  stall: 'headers and half the body, then nothing (the connection stays open)',
  silent: 'the connection accepted, nothing ever sent',
  gzip: 'gzip content-encoding, content-length of the compressed bytes',
  badgzip: 'gzip content-encoding over bytes that are not gzip',
  reset: 'headers and a little of the body, then the connection reset',
  commit: 'an x-repo-commit header that differs from the other files',
};

const HTML = '<!doctype html><html><head><title>Sign in</title></head><body><form>Please sign in to continue</form></body></html>';

/** Starts the hub: `models` maps a name to a folder. Returns { server, url, requests, close }. */
export async function hostileHub(models) {
  const sockets = new Set();
  const requests = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    const onData = (chunk) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const [line, ...fields] = head.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(fields.map((f) => [f.slice(0, f.indexOf(':')).toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]));
      respond(socket, line.split(' ')[1] ?? '/', headers).catch(() => socket.destroy());
    };
    socket.on('data', onData);
  });

  async function respond(socket, target, headers) {
    requests.push(target);
    const send = (status, extra, body) => {
      const lines = [`HTTP/1.1 ${status}`, 'connection: close', 'access-control-allow-origin: *', 'access-control-expose-headers: x-repo-commit', ...extra];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
      if (body) socket.write(body);
    };
    const m = /^\/([^/]+)\/([a-z0-9]+)-([a-z]+)\/resolve\/[^/]+\/(.+)$/.exec(decodeURIComponent(target.split('?')[0]));
    const folder = m && models[m[1]];
    if (!folder) return void (send('404 Not Found', ['content-length: 9'], 'not found'), socket.end());
    const [, , behaviour, which, file] = m;
    const path = normalize(join(folder, file));
    let bytes;
    try {
      if (!path.startsWith(folder.endsWith(sep) ? folder : folder + sep)) throw new Error('outside');
      bytes = await readFile(path);
    } catch {
      return void (send('404 Not Found', ['content-length: 9'], 'not found'), socket.end());
    }
    const mode = which === 'all' || TARGETS[which] === file ? behaviour : 'ok';
    const half = bytes.subarray(0, bytes.length >> 1);
    const type = 'content-type: application/octet-stream';
    const commit = `x-repo-commit: ${mode === 'commit' ? 'b'.repeat(40) : 'a'.repeat(40)}`;
    switch (mode) {
      case 'ok':
      case 'commit':
        send('200 OK', [type, commit, `content-length: ${bytes.length}`], bytes);
        return void socket.end();
      case '500':
        send('500 Internal Server Error', ['content-length: 5'], 'oops!');
        return void socket.end();
      case '404':
        send('404 Not Found', ['content-length: 9'], 'not found');
        return void socket.end();
      case 'html':
        send('200 OK', ['content-type: text/html; charset=utf-8', `content-length: ${Buffer.byteLength(HTML)}`], HTML);
        return void socket.end();
      case 'truncate':
        send('200 OK', [type, `content-length: ${bytes.length}`], half);
        return void socket.end();
      case 'long':
        send('200 OK', [type, `content-length: ${half.length}`], bytes);
        return void socket.end();
      case 'chunked':
        send('200 OK', [type, 'transfer-encoding: chunked']);
        for (let at = 0; at < bytes.length; at += 4096) {
          const piece = bytes.subarray(at, at + 4096);
          socket.write(`${piece.length.toString(16)}\r\n`);
          socket.write(piece);
          socket.write('\r\n');
        }
        socket.write('0\r\n\r\n');
        return void socket.end();
      case 'stall':
        send('200 OK', [type, `content-length: ${bytes.length}`], half);
        return; // and nothing more
      case 'silent':
        return;
      case 'gzip': {
        const z = headers['accept-encoding']?.includes('gzip') ? gzipSync(bytes) : null;
        send('200 OK', [type, ...(z ? ['content-encoding: gzip'] : []), `content-length: ${(z ?? bytes).length}`], z ?? bytes);
        return void socket.end();
      }
      case 'badgzip': {
        const junk = Buffer.from(bytes.subarray(0, 256)).map((b) => b ^ 0x5a);
        send('200 OK', [type, 'content-encoding: gzip', `content-length: ${junk.length}`], junk);
        return void socket.end();
      }
      case 'reset':
        send('200 OK', [type, `content-length: ${bytes.length}`], bytes.subarray(0, 64));
        setTimeout(() => socket.resetAndDestroy(), 20);
        return;
      default:
        send('400 Bad Request', ['content-length: 3'], 'bad');
        return void socket.end();
    }
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    server,
    url,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
