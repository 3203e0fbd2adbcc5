// A model cache on disk for Node, where there is no Cache API: the same CacheStorage / Cache
// shape (open, delete; match, put, delete) that files.js uses in browsers, so a second load of
// a hub id or URL reads its files from disk. Each entry is two files named by the SHA-256 of
// its key: the body (`.bin`) and { key, headers } (`.json`), each written to a temporary name
// and renamed, so a crash mid-write leaves no half entry that reads as whole (files.js also
// checks every file's size against the set's manifest).
import { nodeModule } from './common.js';

/** The folder a `cacheDir` option or the WEMBED_CACHE_DIR variable names; null if neither. */
export function diskCacheDir(option) {
  if (option !== undefined && option !== null) return String(option);
  return globalThis.process?.env?.WEMBED_CACHE_DIR || null;
}

/** A CacheStorage over the folder `root` (created on first write). */
export async function diskCacheStorage(root) {
  const fs = await nodeModule('fs/promises');
  const path = await nodeModule('path');
  const { createHash, randomBytes } = await nodeModule('crypto');
  const hash = (s) => createHash('sha256').update(s).digest('hex');
  const folder = (name) => path.join(root, hash(name).slice(0, 16));
  const write = async (file, data) => {
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  };
  const readOrNull = (file) => fs.readFile(file).catch((e) => (e.code === 'ENOENT' ? null : Promise.reject(e)));

  const cache = (dir) => ({
    async match(key) {
      const h = hash(String(key));
      const meta = await readOrNull(path.join(dir, `${h}.json`));
      if (!meta) return undefined;
      let m;
      try {
        m = JSON.parse(meta.toString('utf8'));
      } catch {
        return undefined;
      }
      if (m?.key !== String(key)) return undefined;
      const body = await readOrNull(path.join(dir, `${h}.bin`));
      return body ? new Response(body, { headers: m.headers ?? {} }) : undefined;
    },
    async put(key, response) {
      const h = hash(String(key));
      const body = new Uint8Array(await response.arrayBuffer());
      await fs.mkdir(dir, { recursive: true });
      // The body first: a metadata file never points at a body that is not there yet.
      await write(path.join(dir, `${h}.bin`), body);
      await write(path.join(dir, `${h}.json`), JSON.stringify({ key: String(key), headers: Object.fromEntries(response.headers) }));
    },
    async delete(key) {
      const h = hash(String(key));
      const had = (await readOrNull(path.join(dir, `${h}.json`))) !== null;
      await Promise.all([`${h}.json`, `${h}.bin`].map((f) => fs.rm(path.join(dir, f), { force: true })));
      return had;
    },
  });

  return {
    async open(name) {
      return cache(folder(name));
    },
    async delete(name) {
      const dir = folder(name);
      const had = await fs.stat(dir).then(() => true, () => false);
      await fs.rm(dir, { recursive: true, force: true });
      return had;
    },
  };
}
