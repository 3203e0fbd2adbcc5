//! How much each block format loses on a real model's matmul weights: relative RMS error
//! ‖W − deq(q(W))‖ / ‖W‖ over every 2-D weight under `encoder.` (a development aid, not a
//! test). Usage: cargo run --release --example quant_error [MODEL_DIR]
use wembed::quant::*;
use wembed::weights::WeightFile;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or("assets/models/all-MiniLM-L6-v2".into());
    let bytes = std::fs::read(format!("{dir}/model.safetensors")).expect("model.safetensors");
    let file = WeightFile::parse(&bytes, "model.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut sq, mut e8, mut e40, mut e41) = (0f64, 0f64, 0f64, 0f64);
    for (name, view) in st.tensors() {
        if view.shape().len() != 2 || !name.contains("encoder.") {
            continue;
        }
        let t = file.root().get(&name, view.shape()).unwrap();
        let cols = t.shape[1];
        for row in t.data.chunks_exact(cols) {
            let mut deq = vec![0.0; cols];
            let err = |deq: &[f32]| row.iter().zip(deq).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
            sq += row.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
            dequantize_q8_0(&quantize_q8_0(row), &mut deq);
            e8 += err(&deq);
            dequantize_q4_0(&quantize_q4_0(row), &mut deq);
            e40 += err(&deq);
            dequantize_q4_1(&quantize_q4_1(row), &mut deq);
            e41 += err(&deq);
        }
    }
    for (name, e) in [("q8_0", e8), ("q4_0 (symmetric)", e40), ("q4_1 (scale + min)", e41)] {
        println!("{name:20} relative RMS error {:.5}", (e / sq).sqrt());
    }
}
