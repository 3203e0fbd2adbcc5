#!/usr/bin/env python3
"""onnxruntime side of `wembed bench`: runs the same model on the same token ids.

The ONNX graph is written here from the model's safetensors with the `onnx` package (no torch):
the plain BERT graph torch.onnx.export would give (Gather, MatMul, LayerNormalization, Erf GELU,
Softmax attention), which onnxruntime then optimizes at ORT_ENABLE_ALL. It is cached under
assets/onnx/.

With --int8 the same graph is also run after onnxruntime's dynamic int8 quantization
(quantize_dynamic, per-tensor weight scales): the recipe of transformers.js' q8 models, whose
all-MiniLM-L6-v2 gives the same worst cosine (0.877) on this project's fixtures.

Input: a JSON file {"ids": [[...], ...]} (already tokenized and truncated by wembed).
Output (stdout): JSON with sentences/s at batch 1 and 32 and the path of an .npy of embeddings
(and the same for int8).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def build_onnx(model_dir: Path, out: Path):
    cfg = json.loads((model_dir / "config.json").read_text())
    w = load_file(str(model_dir / "model.safetensors"))
    if "bert.embeddings.word_embeddings.weight" in w:
        w = {k[5:]: v for k, v in w.items() if k.startswith("bert.")}
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = H // heads
    eps = cfg.get("layer_norm_eps", 1e-12)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), name))
        return name

    def const_i64(name, vals):
        inits.append(numpy_helper.from_array(np.array(vals, dtype=np.int64), name))
        return name

    def node(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], **kw))
        return out

    def linear(x, prefix, out):
        wt = init(prefix + ".weight_t", w[prefix + ".weight"].T)
        b = init(prefix + ".bias", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, wt], out + "_mm"), b], out)

    def layer_norm(x, prefix, out):
        return node("LayerNormalization", [x, init(prefix + ".weight", w[prefix + ".weight"]),
                                           init(prefix + ".bias", w[prefix + ".bias"])], out, axis=-1, epsilon=eps)

    e = "embeddings"
    word = node("Gather", [init("word", w[f"{e}.word_embeddings.weight"]), "input_ids"], "word_e")
    types = node("Gather", [init("types", w[f"{e}.token_type_embeddings.weight"]), "token_type_ids"], "type_e")
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [shape, const_i64("one", 1)], "seq_len")
    rng = node("Range", [const_i64("zero", 0), seq, const_i64("step", 1)], "positions")
    pos = node("Gather", [init("pos", w[f"{e}.position_embeddings.weight"]), rng], "pos_e")
    x = node("Add", [node("Add", [word, types], "wt_e"), pos], "emb_sum")
    x = layer_norm(x, f"{e}.LayerNorm", "emb")

    maskf = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "f_one"))
    inits.append(numpy_helper.from_array(np.array(-3.4028234663852886e38, np.float32), "f_min"))
    bias = node("Mul", [node("Sub", ["f_one", maskf], "inv_mask"), "f_min"], "mask_bias2d")
    bias = node("Unsqueeze", [bias, const_i64("axes12", [1, 2])], "mask_bias")
    heads_shape = const_i64("heads_shape", [0, 0, heads, hd])
    merged_shape = const_i64("merged_shape", [0, 0, H])
    inits.append(numpy_helper.from_array(np.array(1.0 / np.sqrt(hd), np.float32), "scale"))
    inits.append(numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"))
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def split(name, perm):
            t = linear(x, f"{p}.attention.self.{name}", f"l{i}_{name}")
            t = node("Reshape", [t, heads_shape], f"l{i}_{name}_r")
            return node("Transpose", [t], f"l{i}_{name}_t", perm=perm)

        q, k, v = split("query", [0, 2, 1, 3]), split("key", [0, 2, 3, 1]), split("value", [0, 2, 1, 3])
        s = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), "scale"], f"l{i}_qk_s")
        s = node("Softmax", [node("Add", [s, bias], f"l{i}_scores")], f"l{i}_probs", axis=-1)
        c = node("Transpose", [node("MatMul", [s, v], f"l{i}_ctx")], f"l{i}_ctx_t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, merged_shape], f"l{i}_ctx_m")
        a = linear(c, f"{p}.attention.output.dense", f"l{i}_attn")
        x1 = layer_norm(node("Add", [a, x], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_x1")
        h = linear(x1, f"{p}.intermediate.dense", f"l{i}_inter")
        erf = node("Erf", [node("Div", [h, "sqrt2"], f"l{i}_hs")], f"l{i}_erf")
        g = node("Mul", [node("Mul", [h, "half"], f"l{i}_hh"), node("Add", [erf, "f_one"], f"l{i}_erf1")], f"l{i}_gelu")
        o = linear(g, f"{p}.output.dense", f"l{i}_out")
        x = layer_norm(node("Add", [o, x1], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_x")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ["input_ids", "attention_mask", "token_type_ids"]]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", H])
    graph = helper.make_graph(nodes, "bert", inputs, [output], inits)
    # IR 9: what onnxruntime-web (the engine of transformers.js) reads; onnx 1.23 writes 14.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


def pool(hidden, mask):
    m = mask[:, :, None].astype(np.float32)
    v = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


def run_batch(sess, seqs):
    n, s = len(seqs), max(len(x) for x in seqs)
    ids = np.zeros((n, s), np.int64)
    mask = np.zeros((n, s), np.int64)
    for i, x in enumerate(seqs):
        ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    (hidden,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return pool(hidden, mask)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", required=True, help=".npy file for the batch-32 embeddings")
    ap.add_argument("--int8", action="store_true", help="also run the dynamically int8-quantized graph")
    a = ap.parse_args()
    model_dir = Path(a.model)
    st = (model_dir / "model.safetensors").stat()
    onnx_path = Path("assets/onnx") / f"{model_dir.name}-{st.st_size}-{int(st.st_mtime)}-ir9.onnx"
    if not onnx_path.exists():
        build_onnx(model_dir, onnx_path)
    result = {"onnxruntime": ort.__version__, "threads": a.threads}
    seqs = json.loads(Path(a.ids).read_text())["ids"]
    result.update(measure(onnx_path, seqs, a, a.out, ""))
    if a.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        int8_path = onnx_path.with_suffix(".int8.onnx")
        if not int8_path.exists():
            quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=False)
        result.update(measure(int8_path, seqs, a, a.out.replace(".npy", "-int8.npy"), "int8_"))
    json.dump(result, sys.stdout)


def measure(onnx_path, seqs, a, out_path, prefix):
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    run_batch(sess, seqs[:8])  # warm-up
    b1 = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for x in seqs:
            run_batch(sess, [x])
        b1.append(time.perf_counter() - t)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    b32 = []
    for _ in range(a.repeats):
        out = np.zeros((len(seqs), sess.get_outputs()[0].shape[2]), np.float32)
        t = time.perf_counter()
        for c in range(0, len(order), 32):
            idx = order[c : c + 32]
            out[idx] = run_batch(sess, [seqs[i] for i in idx])
        b32.append(time.perf_counter() - t)
    np.save(out_path, out)
    return {
        prefix + "batch1_per_s": len(seqs) / min(b1),
        prefix + "batch32_per_s": len(seqs) / min(b32),
        prefix + "embeddings": out_path,
    }


if __name__ == "__main__":
    main()
