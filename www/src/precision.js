// Output precisions of embed(): sentence-transformers' `quantize_embeddings` (its `precision`
// argument of `encode`), so vectors quantized here equal those a server quantized with it.
//
// - 'int8' / 'uint8' (scalar): per dimension, `starts = min`, `steps = (max - min) / 255` over
//   `ranges` (calibration: a [2, dim] min/max pair, as sentence-transformers takes it), or over
//   the call's own vectors when no ranges are given (as sentence-transformers does; it warns
//   under 100 vectors, and so should you: a query alone has no range, pass the corpus's).
//   uint8 = trunc((v - start) / step), int8 = trunc((v - start) / step - 128): numpy's
//   `astype` truncates toward zero, so int8 is not uint8 - 128 at every value.
//   Two cases numpy leaves undefined are pinned here: a value outside its range is clamped to
//   the range (numpy's cast wraps around or saturates by platform), and a dimension whose
//   range is empty (min = max: 0/0 in numpy) maps to the range's start.
// - 'binary' / 'ubinary': one bit per value, `v > 0`, packed 8 to a byte with the first value
//   in the high bit (numpy's `packbits`); 'binary' subtracts 128 to fit an Int8Array. A row
//   whose length is not a multiple of 8 is padded with zero bits (sentence-transformers packs
//   the flattened matrix, which runs one row into the next there).
import { WembedError } from './common.js';

export const PRECISIONS = ['float32', 'int8', 'uint8', 'binary', 'ubinary'];

/** `ranges` read as { min, max } Float64Arrays of `dim` values; INPUT if malformed. */
function readRanges(ranges, dim) {
  let min;
  let max;
  if (Array.isArray(ranges) && ranges.length === 2) [min, max] = ranges;
  else if (ranges && typeof ranges === 'object') ({ min, max } = ranges);
  const ok = (a) => (Array.isArray(a) || ArrayBuffer.isView(a)) && a.length === dim && Array.from(a).every(Number.isFinite);
  if (!ok(min) || !ok(max)) {
    throw new WembedError('INPUT', `ranges: [min, max] (or { min, max }), two lists of ${dim} finite numbers (one per dimension)`);
  }
  for (let d = 0; d < dim; d++) {
    if (max[d] < min[d]) throw new WembedError('INPUT', `ranges: max < min at dimension ${d}`);
  }
  return { min: Float64Array.from(min), max: Float64Array.from(max) };
}

/**
 * Per-dimension [min, max] of `count` row-major vectors of `dim` values: the calibration
 * `ranges` of the int8 / uint8 precisions, from a corpus's float32 vectors.
 */
export function quantizeRanges(data, dim, count = data.length / dim) {
  const min = new Float32Array(dim).fill(Infinity);
  const max = new Float32Array(dim).fill(-Infinity);
  for (let r = 0; r < count; r++) {
    for (let d = 0; d < dim; d++) {
      const v = data[r * dim + d];
      if (v < min[d]) min[d] = v;
      if (v > max[d]) max[d] = v;
    }
  }
  return { min, max };
}

/**
 * `precision` and `ranges` checked for vectors of `dim` values (INPUT if wrong): a function
 * that quantizes `count` such row-major vectors, as quantizeEmbeddings does.
 */
export function precisionFor(precision = 'float32', ranges = undefined, dim) {
  if (!PRECISIONS.includes(precision)) {
    throw new WembedError('INPUT', `precision "${String(precision)}": choose ${PRECISIONS.join(', ')}`);
  }
  const scalar = precision === 'int8' || precision === 'uint8';
  if (ranges !== undefined && !scalar) throw new WembedError('INPUT', "ranges apply to the 'int8' and 'uint8' precisions only");
  const checked = ranges === undefined ? undefined : readRanges(ranges, dim);
  return (data, count) => quantize(data, dim, count, precision, checked);
}

/**
 * `count` row-major float vectors of `dim` values (`data`) in `precision` ('float32', 'int8',
 * 'uint8', 'binary', 'ubinary'), int8 / uint8 over `ranges` ([min, max] per dimension) or
 * over these vectors' own: { data (Int8Array, Uint8Array, or `data` itself for float32), dim
 * (values per row of data: dim / 8 rounded up for the binary precisions) }.
 */
export function quantizeEmbeddings(data, dim, count, precision, ranges) {
  if (!Number.isInteger(dim) || dim < 1 || !Number.isInteger(count) || count < 0 || !(data?.length >= dim * count)) {
    throw new WembedError('INPUT', 'quantizeEmbeddings(data, dim, count, precision, ranges): data holds count rows of dim numbers');
  }
  return precisionFor(precision, ranges, dim)(data, count);
}

function quantize(data, dim, count, precision, ranges) {
  if (precision === 'float32') return { data, dim };
  if (precision === 'binary' || precision === 'ubinary') {
    const bytes = Math.ceil(dim / 8);
    const out = new Uint8Array(count * bytes);
    for (let r = 0; r < count; r++) {
      for (let d = 0; d < dim; d++) {
        if (data[r * dim + d] > 0) out[r * bytes + (d >> 3)] |= 0x80 >> (d & 7);
      }
    }
    if (precision === 'ubinary') return { data: out, dim: bytes };
    const signed = new Int8Array(out.length);
    for (let i = 0; i < out.length; i++) signed[i] = out[i] - 128;
    return { data: signed, dim: bytes };
  }
  const { min, max } = ranges ?? quantizeRanges(data, dim, count);
  const out = precision === 'int8' ? new Int8Array(count * dim) : new Uint8Array(count * dim);
  const offset = precision === 'int8' ? 128 : 0;
  for (let d = 0; d < dim; d++) {
    // Math.fround: numpy computes (v - start) / step in float32 for float32 vectors and ranges.
    const start = Math.fround(min[d]);
    const step = Math.fround(Math.fround(Math.fround(max[d]) - start) / 255);
    for (let r = 0; r < count; r++) {
      const i = r * dim + d;
      let x = step > 0 ? Math.fround(Math.fround(data[i] - start) / step) : 0;
      x = Math.min(255, Math.max(0, x));
      out[i] = Math.trunc(Math.fround(x - offset));
    }
  }
  return { data: out, dim };
}
