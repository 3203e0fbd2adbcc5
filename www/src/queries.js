// device 'auto' on a GPU: where a call with one short text (a search query) runs sooner.
//
// A WebGPU call pays a fixed cost whatever its size (recording and submitting its dispatches,
// waiting for the queue, mapping the result back): about a millisecond on a good adapter, tens
// to hundreds on a weak, busy or software one. A short query is a few dozen rows of matmul,
// which the CPU path does in milliseconds on the page's cores; a batch is the other way round.
// So the rule is measured, not guessed: at load the GPU model (on this thread) and a CPU copy
// (in workers, as device 'cpu' runs) each embed one 16-token query, warm; when the CPU's time
// is the shorter, the copy stays and takes one-text calls up to `maxTokens` tokens, else it is
// dropped and the GPU takes every call. Both figures go into `info` (queryTimes), so the choice
// can be read, not trusted.
//
// `maxTokens`: 16 x the ratio of the two times, at most the model's own limit. A single
// text's time on the GPU barely grows at these lengths (the fixed cost dominates); on the CPU
// it grows at most in proportion to its tokens (the weights are read once whatever the rows),
// so a text up to that length is still sooner on the CPU.
//
// The copy costs a second load (its workers start while this load waits) and its memory:
// f32 for an f16 or f32 GPU model (f16 has no CPU kernels; f32 keeps the query exact, cosine
// 0.9999997 to the f16 GPU's vectors), the file's own precision for q8 / q4. The rule is
// skipped where that copy would not fit the workers' memory budget, and the whole of it is
// skipped with `device: 'webgpu'` or `queryDevice: 'webgpu'` (every call on the GPU) or
// `workers: 0`.

import { WorkerPool, copiesThatFit } from './pool.js';

/** A short search query: 16 tokens with [CLS] and [SEP] in BERT's uncased WordPiece. */
export const PROBE = 'where can i find a quiet coffee shop that stays open late on sunday';
export const PROBE_TOKENS = 16;

/**
 * Milliseconds of one `call()`, warm: one call first (first-use costs), then the median of
 * three, or of fewer once 400 ms went by (a device that slow needs no more runs to lose).
 */
export async function timeCall(call) {
  await call();
  const times = [];
  const start = performance.now();
  while (times.length < 3 && (times.length === 0 || performance.now() - start < 400)) {
    const t = performance.now();
    await call();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** The CPU dtype of the copy for a GPU model stored as `gpuDtype` (see above). */
export function cpuDtypeFor(gpuDtype, asked) {
  if (gpuDtype === 'f16' || gpuDtype === 'f32') return 'f32';
  if (gpuDtype === 'q8' || gpuDtype === 'q4') return gpuDtype;
  return asked === 'f16' ? 'f32' : asked;
}

/**
 * Measures the query on `gpuQuery()` and on a CPU copy started as `load` says (WorkerPool.start's
 * second argument) in `count` workers. Returns { pool (null when the GPU won), device,
 * times: { webgpu, cpu }, maxTokens, reason }, or { skipped: why } where no copy could be
 * measured.
 */
export async function measureQueries({ gpuQuery, load, count, modelBytes, modelMaxTokens, dim }) {
  if ((await copiesThatFit(modelBytes)) < 1) {
    return { skipped: 'a CPU copy of the model for short queries would not fit the memory budget' };
  }
  const webgpu = await timeCall(gpuQuery);
  let pool;
  try {
    pool = await WorkerPool.start(count, load);
  } catch (e) {
    return { skipped: `the CPU copy for short queries did not start (${e?.message ?? e})` };
  }
  let cpu;
  try {
    cpu = await timeCall(() => pool.embed([PROBE], {}, undefined, dim));
  } catch (e) {
    pool.terminate();
    return { skipped: `the CPU copy for short queries failed (${e?.message ?? e})` };
  }
  const times = { webgpu: round(webgpu), cpu: round(cpu) };
  const measured = `a ${PROBE_TOKENS}-token query took ${times.webgpu} ms on the GPU and ${times.cpu} ms on the CPU (${pool.queryWorkers} worker${pool.queryWorkers === 1 ? '' : 's'}), measured at load`;
  if (cpu >= webgpu) {
    pool.terminate();
    return { pool: null, device: 'webgpu', times, maxTokens: 0, reason: `every call runs on the GPU: ${measured}` };
  }
  const maxTokens = Math.min(modelMaxTokens, Math.floor((PROBE_TOKENS * webgpu) / cpu));
  return {
    pool,
    device: 'cpu',
    times,
    maxTokens,
    reason: `one-text calls of up to ${maxTokens} tokens run on the CPU: ${measured}`,
  };
}

const round = (ms) => Math.round(ms * 100) / 100;
