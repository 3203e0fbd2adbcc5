// What the benches need to drive transformers.js on wembed's model files, written once.
import { readdir, mkdir, symlink, mkdtemp } from 'node:fs/promises';
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
