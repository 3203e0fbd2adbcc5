//! Development aid: which 4-bit scheme keeps all-MiniLM-L6-v2 within the bar? Fake-quantizes
//! chosen matmul weights (quantize, dequantize back to f32), embeds the fixture sentences on the
//! CPU and prints the worst and mean cosine to the PyTorch fixtures.
//! Usage: cargo run --release --example q4_search -- SCHEME GROUPS...

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use wembed::quant::*;
use wembed::weights::WeightFile;
use wembed::{Cpu, EmbedOptions, Embedder, ModelFiles};

#[derive(Deserialize)]
struct Sent {
    text: String,
    embedding: Vec<f32>,
}
#[derive(Deserialize)]
struct Ref {
    sentences: Vec<Sent>,
}

fn fake(scheme: &str, row: &[f32], imp: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0.0; row.len()];
    match scheme {
        "q8" => dequantize_q8_0(&quantize_q8_0(row), &mut out),
        "q4_0" => dequantize_q4_0(&quantize_q4_0(row), &mut out),
        "q4_1" => dequantize_q4_1(&quantize_q4_1(row), &mut out),
        "q4_1s" => dequantize_q4_1(&quantize_q4_1_search(row, imp), &mut out),
        "q4_0s" => dequantize_q4_0(&quantize_q4_0_search(row, imp), &mut out),
        _ => panic!("scheme {scheme}"),
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = "assets/models/all-MiniLM-L6-v2";
    let bytes = std::fs::read(format!("{dir}/model.safetensors")).unwrap();
    let file = WeightFile::parse(&bytes, "model.safetensors").unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // spec: "scheme:group,group" ... groups: qkv attn_out inter out emb layerN restrict
    let mut rules: Vec<(String, Vec<String>)> = vec![];
    for a in &args {
        let (s, g) = a.split_once(':').unwrap();
        rules.push((s.into(), g.split(',').map(String::from).collect()));
    }
    let weighted = std::env::var("WEIGHTED").is_ok();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        if view.dtype() != Dtype::F32 {
            continue;
        }
        let mut data = file.root().get(&name, &shape).unwrap().data;
        let group = if name.contains("attention.self") {
            "qkv"
        } else if name.contains("attention.output.dense") {
            "attn_out"
        } else if name.contains("intermediate.dense") {
            "inter"
        } else if name.contains("output.dense") {
            "out"
        } else if name.contains("word_embeddings") {
            "emb"
        } else {
            "-"
        };
        let layer = name.split('.').nth(2).unwrap_or("");
        if shape.len() == 2 && name.ends_with(".weight") {
            for (scheme, groups) in &rules {
                let hit = groups.iter().any(|g| g == group || g == "all" && group != "emb" && group != "-")
                    && groups.iter().filter(|g| g.starts_with('L')).all(|g| &g[1..] != layer)
                    && (!groups.iter().any(|g| g.starts_with('@'))
                        || groups.iter().any(|g| g.strip_prefix('@') == Some(layer)));
                if hit {
                    // Importance of input columns: LayerNorm output ≈ gamma^2 + beta^2.
                    let imp = if weighted && (group == "qkv" || group == "inter") {
                        let l: usize = layer.parse().unwrap();
                        let ln = if group == "qkv" {
                            if l == 0 {
                                "embeddings.LayerNorm".to_string()
                            } else {
                                format!("encoder.layer.{}.output.LayerNorm", l - 1)
                            }
                        } else {
                            format!("encoder.layer.{l}.attention.output.LayerNorm")
                        };
                        let g = file.root().get(&format!("{ln}.weight"), &[shape[1]]).unwrap().data;
                        let b = file.root().get(&format!("{ln}.bias"), &[shape[1]]).unwrap().data;
                        Some(g.iter().zip(&b).map(|(g, b)| g * g + b * b).collect::<Vec<f32>>())
                    } else {
                        None
                    };
                    let cols = shape[1];
                    data = data.chunks(cols).flat_map(|r| fake(scheme, r, imp.as_deref()).into_iter()).collect();
                    break;
                }
            }
        }
        tensors.push((name, shape, data));
    }
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, d)| (n, s, bytemuck::cast_slice(&d).to_vec())).collect();
    let views: Vec<(String, TensorView)> =
        raw.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    let out = safetensors::serialize(views, None).unwrap();
    let mut files = ModelFiles::from_dir(dir).unwrap();
    files.insert("model.safetensors", out);
    let e = Embedder::load(Cpu::new(), &files).unwrap();
    let r: Ref = serde_json::from_slice(&std::fs::read("tests/fixtures/minilm.json").unwrap()).unwrap();
    let texts: Vec<&str> = r.sentences.iter().map(|s| s.text.as_str()).collect();
    let got = e.embed(&texts, &EmbedOptions::default()).unwrap();
    let cos: Vec<f64> = got.iter().zip(&r.sentences).map(|(a, s)| wembed::eval::cosine(a, &s.embedding)).collect();
    let (wi, worst) = cos.iter().enumerate().fold((0, 1.0f64), |b, (i, &c)| if c < b.1 { (i, c) } else { b });
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    println!(
        "{:50} worst {worst:.5} ({:.30?}) mean {mean:.5}",
        args.join(" "),
        texts[wi].chars().take(30).collect::<String>()
    );
    if std::env::var("STSB").is_ok() {
        let pairs = wembed::eval::read_stsb_english("assets/data/stsbenchmark.tsv.gz".as_ref(), "test").unwrap();
        let a: Vec<&str> = pairs.iter().map(|p| p.s1.as_str()).collect();
        let b: Vec<&str> = pairs.iter().map(|p| p.s2.as_str()).collect();
        let ea = e.embed(&a, &EmbedOptions::default()).unwrap();
        let eb = e.embed(&b, &EmbedOptions::default()).unwrap();
        let sims: Vec<f64> = ea.iter().zip(&eb).map(|(x, y)| wembed::eval::cosine(x, y)).collect();
        let gold: Vec<f64> = pairs.iter().map(|p| p.score).collect();
        println!("   STS-B {:.4}", wembed::eval::spearman(&sims, &gold) * 100.0);
    }
}
