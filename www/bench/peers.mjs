// What the benches need to drive the peers on wembed's model files and corpora, written once.
import { readdir, readFile, mkdir, symlink, mkdtemp } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The ONNX graphs of `scripts/bench.sh`'s export in `onnxDir`: fp32 and its dynamic int8
 * (onnxruntime's quantize_dynamic, what transformers.js' hub files call q8).
 */
export async function onnxGraphs(onnxDir) {
  const fp32 = (await readdir(onnxDir)).find((f) => f.endsWith('-ir9.onnx'));
  if (!fp32) throw new Error(`no ONNX graph in ${onnxDir}: scripts/bench.sh writes it`);
  return { fp32: join(onnxDir, fp32), int8: join(onnxDir, fp32.replace(/\.onnx$/, '.int8.onnx')) };
}

/**
 * A temporary folder in transformers.js' local layout for the model folder `model`: its files
 * plus onnx/model.onnx (fp32) and, when given, onnx/model_quantized.onnx (int8), as its hub
 * files are. Returns the folder that holds the model (its `localModelPath`).
 */
export async function transformersJsFolder(model, name, graphs) {
  const dir = await mkdtemp(join(tmpdir(), 'wembed-bench-models-'));
  const m = join(dir, name);
  await mkdir(join(m, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt']) {
    if (existsSync(join(model, f))) await symlink(join(model, f), join(m, f));
  }
  await symlink(graphs.fp32, join(m, 'onnx/model.onnx'));
  if (graphs.int8) await symlink(graphs.int8, join(m, 'onnx/model_quantized.onnx'));
  return dir;
}

/** The first `n` distinct sentences of the STS-B test split (assets/data/stsbenchmark.tsv.gz). */
export async function stsbSentences(root, n) {
  const tsv = gunzipSync(await readFile(join(root, 'assets/data/stsbenchmark.tsv.gz'))).toString('utf8');
  const seen = new Set();
  for (const line of tsv.split('\n')) {
    const f = line.split('\t');
    if (f[0] !== 'test') continue;
    for (const s of [f[6], f[7]]) if (s && seen.size < n) seen.add(s);
  }
  return [...seen];
}

/**
 * onnxruntime's feeds for a BERT graph: the token-id rows `ids` padded into `[rows, longest]`
 * int64 tensors with their attention mask and zero token types.
 */
export function bertFeeds(ort, ids) {
  const n = ids.length;
  const len = Math.max(...ids.map((x) => x.length));
  const input = new BigInt64Array(n * len);
  const mask = new BigInt64Array(n * len);
  ids.forEach((row, r) => row.forEach((id, c) => {
    input[r * len + c] = BigInt(id);
    mask[r * len + c] = 1n;
  }));
  return {
    input_ids: new ort.Tensor('int64', input, [n, len]),
    attention_mask: new ort.Tensor('int64', mask, [n, len]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(n * len), [n, len]),
  };
}
