// SemanticIndex: search over your own documents, in the page, with no server. Documents are
// cut into token windows (with overlap), embedded by an Embedder, and their vectors kept in the
// wasm vector index (src/index.rs), which scans f32, int8 or sign bits and rescores its
// shortlist exactly. An index remembers the model and dtype that built it and refuses another.

import { WasmIndex } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule } from './common.js';

const FORMAT = 'WEMBSIX1';
const STORAGES = ['f32', 'int8', 'binary'];
const DB_NAME = 'wembed';
const DB_STORE = 'indexes';

/** The key an index stores to recognise the vectors of one model in one precision. */
function modelKey(info) {
  return `${info.model}|${info.dtype}`;
}

function matches(filter, metadata, id) {
  if (!filter) return true;
  if (typeof filter === 'function') return !!filter(metadata ?? {}, id);
  return Object.entries(filter).every(([k, v]) => (metadata ?? {})[k] === v);
}

export class SemanticIndex {
  #embedder;
  #inner;
  #options;
  /** id -> { metadata, labels: number[] } */
  #docs = new Map();
  /** label -> { id, chunk, text } */
  #chunks = new Map();
  #nextLabel = 0;
  #disposed = false;

  constructor(embedder, inner, options) {
    this.#embedder = embedder;
    this.#inner = inner;
    this.#options = options;
  }

  /**
   * An empty index over `embedder`'s vectors. Options: storage ('int8' default: recall@10
   * 1.000 against f32 at half the scan time; 'f32'; 'binary'), chunkTokens (128), chunkOverlap
   * (32).
   */
  static create(embedder, options = {}) {
    const storage = options.storage ?? 'int8';
    if (!STORAGES.includes(storage)) {
      throw new WembedError('INPUT', `storage "${storage}": choose ${STORAGES.join(', ')}`);
    }
    const chunkTokens = options.chunkTokens ?? 128;
    const chunkOverlap = options.chunkOverlap ?? 32;
    if (!(chunkTokens >= 1 && chunkOverlap >= 0 && chunkOverlap < chunkTokens)) {
      throw new WembedError('INPUT', 'chunkTokens must be >= 1 and chunkOverlap between 0 and chunkTokens - 1');
    }
    const info = embedder.info;
    let inner;
    try {
      inner = new WasmIndex(info.dim, storage, modelKey(info));
    } catch (e) {
      throw wrap(e);
    }
    return new SemanticIndex(embedder, inner, { storage, chunkTokens, chunkOverlap });
  }

  #live() {
    if (this.#disposed) throw new WembedError('DISPOSED', 'this SemanticIndex was disposed');
  }

  /** Documents in the index. */
  get size() {
    return this.#docs.size;
  }

  /** Chunks (vectors) in the index. */
  get chunkCount() {
    return this.#chunks.size;
  }

  /** { model, dtype, storage, chunkTokens, chunkOverlap, documents, chunks }. */
  get info() {
    const [model, dtype] = this.#inner.model().split('|');
    return { model, dtype, ...this.#options, documents: this.size, chunks: this.chunkCount };
  }

  has(id) {
    return this.#docs.has(String(id));
  }

  /**
   * Adds documents: strings, or { id, text, metadata }. A document whose id is already there
   * is replaced. Long texts are cut into chunks of `chunkTokens` tokens overlapping by
   * `chunkOverlap`. onProgress(done, total) counts chunks embedded. Returns the ids added.
   */
  async add(docs, { onProgress } = {}) {
    this.#live();
    const list = Array.isArray(docs) ? docs : [docs];
    const prepared = [];
    const seen = new Set();
    for (const [i, d] of list.entries()) {
      const doc = typeof d === 'string' ? { text: d } : d;
      if (!doc || typeof doc.text !== 'string') {
        throw new WembedError('INPUT', `document ${i} needs a text string`);
      }
      const id = String(doc.id ?? `doc-${this.#nextLabel + prepared.length}-${i}`);
      if (seen.has(id)) throw new WembedError('INPUT', `document id "${id}" appears twice in one add()`);
      seen.add(id);
      let pieces;
      try {
        pieces = this.#embedder.chunks(doc.text, this.#options.chunkTokens, this.#options.chunkOverlap);
      } catch (e) {
        throw wrap(e);
      }
      if (pieces.length === 0) throw new WembedError('INPUT', `document "${id}" has no text to index`);
      prepared.push({ id, metadata: doc.metadata ?? {}, pieces });
    }
    // Embed everything first: a failure leaves the index as it was.
    const texts = prepared.flatMap((p) => p.pieces);
    const { data } = await this.#embedder.embed(texts, { output: 'matrix', onProgress });
    const labels = new Uint32Array(texts.length);
    let row = 0;
    for (const p of prepared) {
      if (this.#docs.has(p.id)) this.remove(p.id);
      const docLabels = [];
      p.pieces.forEach((text, chunk) => {
        const label = this.#nextLabel++;
        labels[row++] = label;
        docLabels.push(label);
        this.#chunks.set(label, { id: p.id, chunk, text });
      });
      this.#docs.set(p.id, { metadata: p.metadata, labels: docLabels });
    }
    try {
      this.#inner.add(labels, data);
    } catch (e) {
      for (const p of prepared) this.#forget(p.id);
      throw wrap(e);
    }
    return prepared.map((p) => p.id);
  }

  #forget(id) {
    const doc = this.#docs.get(id);
    if (!doc) return null;
    for (const l of doc.labels) this.#chunks.delete(l);
    this.#docs.delete(id);
    return doc;
  }

  /** Removes a document and its chunks; false if there was none. */
  remove(id) {
    this.#live();
    const doc = this.#forget(String(id));
    if (!doc) return false;
    this.#inner.remove(Uint32Array.from(doc.labels));
    return true;
  }

  /**
   * The k chunks most similar to `query`, best first: [{ id, chunk, score, text, metadata }].
   * `filter`: { key: value } (metadata equality) or (metadata, id) => boolean.
   */
  async search(query, { k = 10, filter } = {}) {
    this.#live();
    if (typeof query !== 'string' || query.trim() === '') {
      throw new WembedError('INPUT', 'the query must be a non-empty string');
    }
    if (!(Number.isInteger(k) && k >= 1)) throw new WembedError('INPUT', 'k must be a whole number >= 1');
    if (this.#chunks.size === 0) return [];
    const started = performance.now();
    const [vector] = await this.#embedder.embed([query]);
    const embedded = performance.now();
    let allowed;
    if (filter) {
      allowed = [];
      for (const [id, doc] of this.#docs) {
        if (matches(filter, doc.metadata, id)) allowed.push(...doc.labels);
      }
      if (allowed.length === 0) return [];
    }
    let flat;
    try {
      flat = this.#inner.search(vector, k, allowed ? Uint32Array.from(allowed) : undefined);
    } catch (e) {
      throw wrap(e);
    }
    const results = [];
    for (let i = 0; i < flat.length; i += 2) {
      const c = this.#chunks.get(flat[i]);
      results.push({ id: c.id, chunk: c.chunk, score: flat[i + 1], text: c.text, metadata: this.#docs.get(c.id).metadata });
    }
    const done = performance.now();
    Object.defineProperty(results, 'timings', {
      value: { embedMs: embedded - started, searchMs: done - embedded },
      enumerable: false,
    });
    return results;
  }

  /** The whole index (documents, chunks, vectors, model) as bytes. */
  serialize() {
    this.#live();
    const header = {
      options: this.#options,
      nextLabel: this.#nextLabel,
      docs: [...this.#docs].map(([id, d]) => [id, d.metadata, d.labels]),
      chunks: [...this.#chunks].map(([label, c]) => [label, c.id, c.chunk, c.text]),
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const vectors = this.#inner.toBytes();
    const out = new Uint8Array(8 + 4 + json.length + vectors.length);
    out.set(new TextEncoder().encode(FORMAT), 0);
    new DataView(out.buffer).setUint32(8, json.length, true);
    out.set(json, 12);
    out.set(vectors, 12 + json.length);
    return out;
  }

  /**
   * An index from `serialize()` bytes, for `embedder`. Fails with code 'MODEL_MISMATCH' when
   * the index was built by another model or dtype, and 'BAD_FILE' when the bytes are damaged.
   */
  static deserialize(bytes, embedder) {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const bad = (why) => new WembedError('BAD_FILE', `not a readable wembed index (${why})`);
    if (data.length < 12 || new TextDecoder().decode(data.subarray(0, 8)) !== FORMAT) throw bad('no header');
    const len = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(8, true);
    if (12 + len > data.length) throw bad('truncated header');
    let header;
    try {
      header = JSON.parse(new TextDecoder().decode(data.subarray(12, 12 + len)));
    } catch {
      throw bad('unreadable header');
    }
    let inner;
    try {
      inner = WasmIndex.fromBytes(data.subarray(12 + len));
    } catch (e) {
      throw wrap(e);
    }
    const want = modelKey(embedder.info);
    if (inner.model() !== want) {
      const got = inner.model();
      inner.free();
      throw new WembedError(
        'MODEL_MISMATCH',
        `this index holds vectors of ${got.replace('|', ', dtype ')}; the embedder is ${want.replace('|', ', dtype ')}. ` +
          'Vectors of different models cannot be compared: rebuild the index with this embedder.',
      );
    }
    const index = new SemanticIndex(embedder, inner, header.options);
    index.#nextLabel = header.nextLabel;
    for (const [id, metadata, labels] of header.docs) index.#docs.set(id, { metadata, labels });
    for (const [label, id, chunk, text] of header.chunks) index.#chunks.set(label, { id, chunk, text });
    if (index.#chunks.size !== inner.len()) {
      inner.free();
      throw bad(`${index.#chunks.size} chunks but ${inner.len()} vectors`);
    }
    return index;
  }

  /** Saves the index: in IndexedDB under `name` in a browser, to the file `name` in Node. */
  async save(name) {
    const bytes = this.serialize();
    if (isNode) {
      const { writeFile } = await nodeModule('fs/promises');
      await writeFile(name, bytes);
      return;
    }
    await idb('readwrite', (store) => store.put(bytes, name));
  }

  /** An index saved with `save(name)`, or null if there is none. */
  static async load(name, embedder) {
    let bytes;
    if (isNode) {
      const { readFile } = await nodeModule('fs/promises');
      try {
        bytes = await readFile(name);
      } catch (e) {
        if (e.code === 'ENOENT') return null;
        throw new WembedError('IO', `cannot read ${name}: ${e.message}`, { cause: e });
      }
    } else {
      bytes = await idb('readonly', (store) => store.get(name));
      if (!bytes) return null;
    }
    return SemanticIndex.deserialize(bytes, embedder);
  }

  /** Deletes a saved index. */
  static async delete(name) {
    if (isNode) {
      const { rm } = await nodeModule('fs/promises');
      await rm(name, { force: true });
      return;
    }
    await idb('readwrite', (store) => store.delete(name));
  }

  /** Frees the index's wasm memory; later calls fail with code 'DISPOSED'. */
  dispose() {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#inner.free();
  }
}

/** Runs one request on the IndexedDB store of saved indexes. */
function idb(mode, request) {
  if (typeof indexedDB === 'undefined') {
    return Promise.reject(new WembedError('UNSUPPORTED', 'no IndexedDB here to save the index in'));
  }
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(DB_STORE);
    open.onerror = () => reject(new WembedError('IO', `IndexedDB: ${open.error}`));
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(DB_STORE, mode);
      const req = request(tx.objectStore(DB_STORE));
      tx.oncomplete = () => {
        db.close();
        resolve(req.result);
      };
      tx.onerror = () => {
        db.close();
        reject(new WembedError('IO', `IndexedDB: ${tx.error}`));
      };
    };
  });
}
