// SemanticIndex: search over your own documents, in the page, with no server. Documents are
// cut into token windows (with overlap), embedded by an Embedder, and their vectors kept in the
// wasm vector index (src/index.rs), which scans f32, int8 or sign bits and rescores its
// shortlist exactly. An index remembers the model that built it (the digest of its weights and
// the dtype used, where the Embedder reports one) and refuses another. Saved bytes come from
// outside: every field of a header is checked before it is believed.

import { WasmIndex } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule } from './common.js';

const FORMAT = 'WEMBSIX1';
const STORAGES = ['f32', 'int8', 'binary'];
const DB_NAME = 'wembed';
const DB_STORE = 'indexes';

// Labels are u32 in the wasm index.
const MAX_LABEL = 2 ** 32 - 1;
// What wasm's u32 parameters can take without wrapping; chunk sizes are capped by the model.
const MAX_U31 = 2 ** 31 - 1;

/**
 * What an index stores to recognise the vectors of one model: the Embedder's label and dtype
 * (for messages), and the digest of config, tokenizer, weights and dtype where there is one,
 * which is what identity is judged by: two models both labelled "in-memory model" differ,
 * the same file loaded from a folder and from a URL does not.
 */
function modelKey(info) {
  return JSON.stringify({ model: String(info.model), dtype: String(info.dtype), digest: typeof info.digest === 'string' ? info.digest : null });
}

/** A stored key (JSON, or the older "model|dtype"), or null when it is not one. */
function parseKey(key) {
  if (typeof key !== 'string') return null;
  if (key.startsWith('{')) {
    try {
      const k = JSON.parse(key);
      if (k && typeof k.model === 'string' && typeof k.dtype === 'string' && (k.digest === null || typeof k.digest === 'string')) return k;
    } catch {
      // not a key
    }
    return null;
  }
  const at = key.lastIndexOf('|');
  return at < 0 ? null : { model: key.slice(0, at), dtype: key.slice(at + 1), digest: null };
}

function sameModel(a, b) {
  if (a.digest && b.digest) return a.digest === b.digest;
  return a.model === b.model && a.dtype === b.dtype;
}

const describe = (k) => `${k.model}, dtype ${k.dtype}${k.digest ? ` (weights ${k.digest.slice(0, 12)})` : ''}`;

function matches(filter, metadata, id) {
  if (!filter) return true;
  if (typeof filter === 'function') return !!filter(metadata, id);
  return Object.entries(filter).every(([k, v]) => metadata[k] === v);
}

function isEmbedder(e) {
  return !!e && typeof e === 'object' && typeof e.embed === 'function' && typeof e.chunks === 'function';
}

/**
 * `value` as metadata an index can keep and save: a deep copy (so later changes by the caller
 * do not reach the index) of plain objects, arrays, strings, finite numbers, booleans and
 * null. Anything JSON would drop, change or refuse is an INPUT error naming where it is;
 * `undefined` object fields are left out, as JSON does.
 */
function plainCopy(value, what) {
  const bad = (path, why) => new WembedError('INPUT', `${what}${path}: ${why}; metadata holds plain objects, arrays, strings, finite numbers, booleans and null`);
  const open = new Set();
  const walk = (v, path) => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw bad(path, `is ${v}, which a saved index cannot hold`);
      return v;
    }
    if (typeof v !== 'object') throw bad(path, `is a ${typeof v}`);
    if (open.has(v)) throw bad(path, 'refers back to an object that contains it (a cycle)');
    open.add(v);
    let out;
    if (Array.isArray(v)) {
      out = [];
      for (let i = 0; i < v.length; i++) out.push(walk(v[i], `${path}[${i}]`));
    } else {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw bad(path, `is a ${v.constructor?.name ?? 'class instance'}, not a plain object`);
      out = {};
      for (const k of Object.keys(v)) {
        const x = v[k];
        if (x === undefined) continue;
        Object.defineProperty(out, k, { value: walk(x, `${path}.${k}`), enumerable: true, writable: true, configurable: true });
      }
    }
    open.delete(v);
    return out;
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('', 'is not an object');
  try {
    return walk(value, '');
  } catch (e) {
    if (e instanceof WembedError) throw e;
    // a getter that throws, a Proxy that refuses, nesting deep enough to overflow the stack
    throw new WembedError('INPUT', `${what} could not be read: ${e?.message ?? e}`, { cause: e });
  }
}

/** A saved header, checked field by field: { options, nextLabel, docs, chunks } as Maps. */
function readHeader(header, bad) {
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not an object');
  const { options, nextLabel, docs, chunks } = header;
  if (!options || typeof options !== 'object') throw bad('the header has no options');
  const { storage, chunkTokens, chunkOverlap } = options;
  if (!STORAGES.includes(storage)) throw bad(`storage ${JSON.stringify(storage)}`);
  if (!(Number.isInteger(chunkTokens) && chunkTokens >= 1 && Number.isInteger(chunkOverlap) && chunkOverlap >= 0 && chunkOverlap < chunkTokens)) {
    throw bad('chunkTokens and chunkOverlap are not sizes');
  }
  if (!(Number.isInteger(nextLabel) && nextLabel >= 0 && nextLabel <= MAX_LABEL + 1)) throw bad('nextLabel is not a label');
  if (!Array.isArray(docs) || !Array.isArray(chunks)) throw bad('docs and chunks must be lists');
  const chunkMap = new Map();
  for (const c of chunks) {
    if (!Array.isArray(c) || c.length !== 4) throw bad('a chunk is not [label, id, chunk, text]');
    const [label, id, chunk, text] = c;
    if (!(Number.isInteger(label) && label >= 0 && label <= MAX_LABEL)) throw bad(`chunk label ${JSON.stringify(label)}`);
    if (label >= nextLabel) throw bad(`chunk label ${label} is not below nextLabel ${nextLabel}`);
    if (typeof id !== 'string' || !(Number.isInteger(chunk) && chunk >= 0) || typeof text !== 'string') throw bad(`chunk ${label} is malformed`);
    if (chunkMap.has(label)) throw bad(`chunk label ${label} appears twice`);
    chunkMap.set(label, { id, chunk, text });
  }
  const docMap = new Map();
  const owned = new Set();
  for (const d of docs) {
    if (!Array.isArray(d) || d.length !== 3) throw bad('a document is not [id, metadata, labels]');
    const [id, metadata, labels] = d;
    if (typeof id !== 'string') throw bad('a document id is not a string');
    if (docMap.has(id)) throw bad(`document ${JSON.stringify(id)} appears twice`);
    if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw bad(`document ${JSON.stringify(id)} has no metadata object`);
    if (!Array.isArray(labels) || labels.length === 0) throw bad(`document ${JSON.stringify(id)} has no chunks`);
    for (const l of labels) {
      const c = chunkMap.get(l);
      if (!c) throw bad(`document ${JSON.stringify(id)} names chunk ${JSON.stringify(l)}, which is not there`);
      if (c.id !== id || owned.has(l)) throw bad(`chunk ${l} is claimed by document ${JSON.stringify(id)} but belongs to ${JSON.stringify(c.id)}`);
      owned.add(l);
    }
    docMap.set(id, { metadata, labels: [...labels] });
  }
  for (const [l, c] of chunkMap) {
    if (!owned.has(l)) throw bad(`chunk ${l} names document ${JSON.stringify(c.id)}, which ${docMap.has(c.id) ? 'does not list it' : 'is not there'}`);
  }
  return { options: { storage, chunkTokens, chunkOverlap }, nextLabel, docMap, chunkMap };
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
  #nextAuto = 0;
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
  static create(embedder, options) {
    if (!isEmbedder(embedder)) throw new WembedError('INPUT', 'SemanticIndex.create needs an Embedder');
    options = options ?? {};
    const storage = options.storage ?? 'int8';
    if (!STORAGES.includes(storage)) {
      throw new WembedError('INPUT', `storage "${storage}": choose ${STORAGES.join(', ')}`);
    }
    const chunkTokens = options.chunkTokens ?? 128;
    const chunkOverlap = options.chunkOverlap ?? 32;
    if (!(Number.isInteger(chunkTokens) && chunkTokens >= 1 && Number.isInteger(chunkOverlap) && chunkOverlap >= 0 && chunkOverlap < chunkTokens)) {
      throw new WembedError('INPUT', 'chunkTokens must be a whole number >= 1 and chunkOverlap a whole number between 0 and chunkTokens - 1');
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

  /** { model, dtype, digest, storage, chunkTokens, chunkOverlap, documents, chunks }. */
  get info() {
    const { model, dtype, digest } = parseKey(this.#inner.model()) ?? { model: this.#inner.model(), dtype: '', digest: null };
    return { model, dtype, digest, ...this.#options, documents: this.size, chunks: this.chunkCount };
  }

  has(id) {
    return this.#docs.has(String(id));
  }

  /**
   * Adds documents: strings, or { id, text, metadata }. A document whose id is already there
   * is replaced; a document without an id gets one no other document has. Long texts are cut
   * into chunks of `chunkTokens` tokens overlapping by `chunkOverlap`. onProgress(done, total)
   * counts chunks embedded. Everything is read before the first await (later changes to
   * `docs` do not matter), and a failure leaves the index as it was. Returns the ids added.
   */
  async add(docs, options) {
    this.#live();
    const { onProgress } = options ?? {};
    const { prepared, named } = this.#readDocs(docs, 'add()', (text) =>
      this.#embedder.chunks(text, Math.min(this.#options.chunkTokens, MAX_U31), Math.min(this.#options.chunkOverlap, MAX_U31 - 1)),
    );
    const texts = prepared.flatMap((p) => p.pieces);
    this.#checkLabels(texts.length);
    // Embed everything first: a failure leaves the index as it was.
    const { data } = await this.#embedder.embed(texts, { output: 'matrix', onProgress });
    this.#live(); // disposed while embedding
    return this.#insert(prepared, named, data);
  }

  /**
   * Adds documents with vectors computed elsewhere, e.g. by sentence-transformers on a server
   * with the same model (wembed's vectors equal its own, so queries embedded here search them):
   * `docs` as for add(), one vector each, not chunked; `vectors` row-major (a Float32Array of
   * docs.length · info.dim values, or one array per document). Returns the ids added.
   */
  addVectors(docs, vectors) {
    this.#live();
    const { prepared, named } = this.#readDocs(docs, 'addVectors()', (text) => [text]);
    const dim = this.#inner.dim();
    let data;
    try {
      const rows = ArrayBuffer.isView(vectors) ? null : Array.from(vectors ?? [], (v) => Array.from(v));
      data = rows ? Float32Array.from(rows.flat()) : Float32Array.from(vectors);
      if (rows && rows.some((r) => r.length !== dim)) throw new Error(`each vector must have ${dim} values (info.dim)`);
    } catch (e) {
      throw new WembedError('INPUT', `vectors: ${e?.message ?? e}`, { cause: e });
    }
    if (data.length !== prepared.length * dim) {
      throw new WembedError('INPUT', `vectors: ${prepared.length} documents need ${prepared.length * dim} values (${dim} each), not ${data.length}`);
    }
    if (!data.every(Number.isFinite)) throw new WembedError('INPUT', 'vectors: every value must be a finite number');
    this.#checkLabels(prepared.length);
    return this.#insert(prepared, named, data);
  }

  /** Reads `docs` (as add() takes them) into { id, metadata, pieces } with `split(text)`. */
  #readDocs(docs, call, split) {
    const prepared = [];
    const named = new Set();
    try {
      const list = Array.isArray(docs) ? docs : [docs];
      for (let i = 0; i < list.length; i++) {
        const d = list[i];
        const doc = typeof d === 'string' ? { text: d } : d;
        const text = doc && typeof doc === 'object' ? doc.text : undefined;
        if (typeof text !== 'string') throw new WembedError('INPUT', `document ${i} needs a text string`);
        const given = doc.id ?? null;
        if (given !== null && typeof given !== 'string' && !(typeof given === 'number' && Number.isFinite(given))) {
          throw new WembedError('INPUT', `document ${i}: an id must be a string or a number`);
        }
        const id = given === null ? null : String(given);
        if (id !== null) {
          if (named.has(id)) throw new WembedError('INPUT', `document id "${id}" appears twice in one ${call}`);
          named.add(id);
        }
        const what = `document ${id === null ? i : JSON.stringify(id)} metadata`;
        const metadata = doc.metadata == null ? {} : plainCopy(doc.metadata, what);
        let pieces;
        try {
          pieces = split(text);
        } catch (e) {
          throw wrap(e);
        }
        if (pieces.length === 0) throw new WembedError('INPUT', `document ${id === null ? i : `"${id}"`} has no text to index`);
        prepared.push({ id, metadata, pieces });
      }
    } catch (e) {
      if (e instanceof WembedError) throw e;
      throw new WembedError('INPUT', `the documents could not be read: ${e?.message ?? e}`, { cause: e });
    }
    return { prepared, named };
  }

  #checkLabels(n) {
    if (this.#nextLabel + n > MAX_LABEL + 1) {
      throw new WembedError('INPUT', `this index has used all ${MAX_LABEL + 1} labels; build a new one`);
    }
  }

  /** Puts the prepared documents' chunks, with their vectors (`data`, row-major), in the index. */
  #insert(prepared, named, data) {
    const texts = prepared.flatMap((p) => p.pieces);
    const labels = new Uint32Array(texts.length);
    for (let i = 0; i < labels.length; i++) labels[i] = this.#nextLabel + i;
    try {
      this.#inner.add(labels, data);
    } catch (e) {
      throw wrap(e);
    }
    this.#nextLabel += texts.length;
    // Automatic ids now, after the await, so that two add() calls at once cannot take the same
    // one, and never an id in use: an automatic id replaces nothing.
    for (const p of prepared) if (p.id === null) p.id = this.#freshId(named);
    let row = 0;
    for (const p of prepared) {
      if (this.#docs.has(p.id)) this.remove(p.id);
      const docLabels = [];
      p.pieces.forEach((text, chunk) => {
        const label = labels[row++];
        docLabels.push(label);
        this.#chunks.set(label, { id: p.id, chunk, text });
      });
      this.#docs.set(p.id, { metadata: p.metadata, labels: docLabels });
    }
    return prepared.map((p) => p.id);
  }

  #freshId(taken) {
    let id;
    do id = `doc-${this.#nextAuto++}`;
    while (this.#docs.has(id) || taken.has(id));
    taken.add(id);
    return id;
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
   * `k` (default 10) may be anything >= 1, Infinity included: beyond the index it is all of it.
   * `filter`: { key: value } (metadata equality) or (metadata, id) => boolean.
   */
  async search(query, options) {
    this.#live();
    const { k: given, filter } = options ?? {};
    const k = given ?? 10;
    if (typeof query !== 'string' || query.trim() === '') {
      throw new WembedError('INPUT', 'the query must be a non-empty string');
    }
    if (!(typeof k === 'number' && k >= 1 && (Number.isInteger(k) || k === Infinity))) {
      throw new WembedError('INPUT', 'k must be a whole number >= 1 (or Infinity)');
    }
    if (filter != null && typeof filter !== 'function' && (typeof filter !== 'object' || Array.isArray(filter))) {
      throw new WembedError('INPUT', 'filter must be an object of metadata values or a function');
    }
    const timed = (results, started, embedded) => {
      const done = performance.now();
      Object.defineProperty(results, 'timings', {
        value: { embedMs: embedded - started, searchMs: done - embedded },
        enumerable: false,
      });
      return results;
    };
    const started = performance.now();
    if (this.#chunks.size === 0) return timed([], started, started);
    const [vector] = await this.#embedder.embed([query]);
    this.#live(); // disposed while embedding
    const embedded = performance.now();
    let allowed;
    if (filter) {
      allowed = [];
      try {
        for (const [id, doc] of this.#docs) {
          if (matches(filter, doc.metadata, id)) allowed.push(...doc.labels);
        }
      } catch (e) {
        throw new WembedError('INPUT', `the filter threw: ${e?.message ?? e}`, { cause: e });
      }
      if (allowed.length === 0) return timed([], started, embedded);
    }
    // wasm takes k as a u32: never more than there is to return.
    const limit = Math.min(k, allowed ? allowed.length : this.#chunks.size);
    let flat;
    try {
      flat = this.#inner.search(vector, limit, allowed ? Uint32Array.from(allowed) : undefined);
    } catch (e) {
      throw wrap(e);
    }
    const results = [];
    for (let i = 0; i < flat.length; i += 2) {
      const c = this.#chunks.get(flat[i]);
      if (!c) throw new WembedError('INTERNAL', `the vector index returned label ${flat[i]}, which names no chunk`);
      results.push({ id: c.id, chunk: c.chunk, score: flat[i + 1], text: c.text, metadata: this.#docs.get(c.id).metadata });
    }
    return timed(results, started, embedded);
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
   * the index was built by another model or dtype (or holds vectors of another width), and
   * 'BAD_FILE' when the bytes are damaged or forged.
   */
  static deserialize(bytes, embedder) {
    if (!isEmbedder(embedder)) throw new WembedError('INPUT', 'SemanticIndex.deserialize needs an Embedder');
    let data;
    if (bytes instanceof Uint8Array) data = bytes;
    else if (bytes instanceof ArrayBuffer) data = new Uint8Array(bytes);
    else if (ArrayBuffer.isView(bytes)) data = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    else throw new WembedError('INPUT', 'an index is read from a Uint8Array or an ArrayBuffer');
    const bad = (why) => new WembedError('BAD_FILE', `not a readable wembed index (${why}); is it truncated or corrupt?`);
    if (data.length < 12 || new TextDecoder().decode(data.subarray(0, 8)) !== FORMAT) throw bad('no header');
    const len = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(8, true);
    if (12 + len > data.length) throw bad('truncated header');
    let parsed;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(12, 12 + len)));
    } catch {
      throw bad('unreadable header');
    }
    const header = readHeader(parsed, bad);
    let inner;
    try {
      inner = WasmIndex.fromBytes(data.subarray(12 + len));
    } catch (e) {
      // Everything read here is bytes: what the vector index calls bad input is a bad file.
      const err = wrap(e);
      throw err.code === 'INPUT' ? new WembedError('BAD_FILE', `not a readable wembed index (${err.message})`, { cause: err }) : err;
    }
    try {
      const got = parseKey(inner.model());
      if (!got) throw bad('the vectors name no model');
      const info = embedder.info;
      const want = parseKey(modelKey(info));
      if (!sameModel(got, want)) {
        throw new WembedError(
          'MODEL_MISMATCH',
          `this index holds vectors of ${describe(got)}; the embedder is ${describe(want)}. ` +
            'Vectors of different models cannot be compared: rebuild the index with this embedder.',
        );
      }
      if (inner.dim() !== info.dim) {
        throw new WembedError(
          'MODEL_MISMATCH',
          `this index holds ${inner.dim()}-dimensional vectors; the embedder makes ${info.dim}-dimensional ones: rebuild the index with this embedder`,
        );
      }
      if (inner.storage() !== header.options.storage) throw bad(`the header says ${header.options.storage}, the vectors ${inner.storage()}`);
      if (header.chunkMap.size !== inner.len()) throw bad(`${header.chunkMap.size} chunks but ${inner.len()} vectors`);
      if (inner.len() > 0) {
        // Every vector's label must name one chunk: ask for all of them (a search for any
        // vector with k = all returns every label once).
        const probe = new Float32Array(inner.dim());
        probe[0] = 1;
        const flat = inner.search(probe, inner.len(), undefined);
        const seen = new Set();
        for (let i = 0; i < flat.length; i += 2) {
          if (!header.chunkMap.has(flat[i]) || seen.has(flat[i])) throw bad(`vector label ${flat[i]} names no chunk, or names one twice`);
          seen.add(flat[i]);
        }
        if (seen.size !== header.chunkMap.size) throw bad(`${seen.size} of ${header.chunkMap.size} chunks have a vector`);
      }
    } catch (e) {
      inner.free();
      throw e instanceof WembedError ? e : wrap(e);
    }
    const index = new SemanticIndex(embedder, inner, header.options);
    index.#nextLabel = header.nextLabel;
    index.#docs = header.docMap;
    index.#chunks = header.chunkMap;
    return index;
  }

  /** Saves the index: in IndexedDB under `name` in a browser, to the file `name` in Node. */
  async save(name) {
    checkName(name);
    const bytes = this.serialize();
    if (isNode) {
      const { writeFile } = await nodeModule('fs/promises');
      try {
        await writeFile(name, bytes);
      } catch (e) {
        throw new WembedError('IO', `cannot write ${name}: ${e.message}`, { cause: e });
      }
      return;
    }
    await idb('readwrite', (store) => store.put(bytes, name));
  }

  /** An index saved with `save(name)`, or null if there is none. */
  static async load(name, embedder) {
    checkName(name);
    if (!isEmbedder(embedder)) throw new WembedError('INPUT', 'SemanticIndex.load needs an Embedder');
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
      if (bytes === undefined) return null;
      if (!(bytes instanceof Uint8Array || bytes instanceof ArrayBuffer)) {
        throw new WembedError('BAD_FILE', `IndexedDB holds ${Object.prototype.toString.call(bytes)} under "${name}", not a saved index`);
      }
    }
    return SemanticIndex.deserialize(bytes, embedder);
  }

  /** Deletes a saved index. */
  static async delete(name) {
    checkName(name);
    if (isNode) {
      const { rm } = await nodeModule('fs/promises');
      try {
        await rm(name, { force: true });
      } catch (e) {
        throw new WembedError('IO', `cannot delete ${name}: ${e.message}`, { cause: e });
      }
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

function checkName(name) {
  if (typeof name !== 'string' || name === '') throw new WembedError('INPUT', 'an index is saved under a non-empty string (a name, or a file path in Node)');
}

/**
 * Runs one request on the IndexedDB store of saved indexes. Settles on every path: a quota
 * failure at commit fires only `abort`, another tab holding an older version open fires
 * `blocked`; each is an IO error, never a Promise left pending.
 */
function idb(mode, request) {
  if (typeof indexedDB === 'undefined') {
    return Promise.reject(new WembedError('UNSUPPORTED', 'no IndexedDB here to save the index in'));
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    let db = null;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      try {
        db?.close();
      } catch {
        // already closed
      }
      fn(value);
    };
    const fail = (what, err) => finish(reject, new WembedError('IO', `IndexedDB ${what}: ${err?.name ?? ''} ${err?.message ?? err ?? ''}`.trim(), { cause: err }));
    let open;
    try {
      open = indexedDB.open(DB_NAME, 1);
    } catch (e) {
      fail('cannot be opened', e);
      return;
    }
    open.onupgradeneeded = () => open.result.createObjectStore(DB_STORE);
    open.onerror = () => fail('cannot be opened', open.error);
    open.onblocked = () => fail('is blocked', { message: 'another tab holds an older version of the database open; close it and try again' });
    open.onsuccess = () => {
      db = open.result;
      if (settled) {
        db.close(); // blocked, then unblocked after we gave up
        return;
      }
      db.onversionchange = () => db.close();
      let tx;
      let req;
      try {
        tx = db.transaction(DB_STORE, mode);
        req = request(tx.objectStore(DB_STORE));
      } catch (e) {
        fail('refused the request', e);
        return;
      }
      tx.oncomplete = () => finish(resolve, req.result);
      tx.onerror = () => fail('failed', tx.error ?? req.error);
      // A quota failure at commit fires only this.
      tx.onabort = () => fail('aborted the transaction', tx.error ?? { message: 'aborted' });
    };
  });
}
