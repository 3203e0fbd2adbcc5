//! Every shader parses and validates with naga (the WGSL front end wgpu uses), without a GPU;
//! and every Params struct in WGSL has the size its Rust mirror asserts. The matmul is
//! linear.wgsl followed by a weight-format file (linear_<format>.wgsl), linear_gemv.wgsl and
//! linear_direct.wgsl, validated as such.

use std::path::PathBuf;

fn shaders() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 6, "expected the kernels in {}", dir.display());
    // The modules pipelines are built from, as src/backend/gpu/kernels.rs composes them.
    let common = out.iter().find(|(n, _)| n == "linear.wgsl").expect("linear.wgsl").1.clone();
    let gemv = out.iter().find(|(n, _)| n == "linear_gemv.wgsl").expect("linear_gemv.wgsl").1.clone();
    let direct = out.iter().find(|(n, _)| n == "linear_direct.wgsl").expect("linear_direct.wgsl").1.clone();
    // attention_direct.wgsl and layer_norm_direct.wgsl are second entry points of
    // attention.wgsl and layer_norm.wgsl, appended to them.
    let attention_direct =
        out.iter().find(|(n, _)| n == "attention_direct.wgsl").expect("attention_direct.wgsl").1.clone();
    let layer_norm_direct =
        out.iter().find(|(n, _)| n == "layer_norm_direct.wgsl").expect("layer_norm_direct.wgsl").1.clone();
    // kquant.wgsl is the K-quant decoder appended to embed.wgsl and linear_kquant.wgsl (as
    // backend::gpu::kernels composes them), not a kernel of its own.
    let kquant = out.iter().find(|(n, _)| n == "kquant.wgsl").expect("kquant.wgsl").1.clone();
    // activate.wgsl, the fused activations, is appended to the matmuls and to glu.wgsl.
    let activate = out.iter().find(|(n, _)| n == "activate.wgsl").expect("activate.wgsl").1.clone();
    out.retain(|(n, _)| {
        ![
            "linear.wgsl",
            "linear_gemv.wgsl",
            "linear_direct.wgsl",
            "attention_direct.wgsl",
            "layer_norm_direct.wgsl",
            "kquant.wgsl",
            "activate.wgsl",
        ]
        .contains(&n.as_str())
    });
    // The f16 peak probe, as kernels::peak_fma_f16 builds it from the f32 one.
    let peak = out.iter().find(|(n, _)| n == "peak_fma.wgsl").expect("peak_fma.wgsl").1.clone();
    assert!(peak.contains("alias F = f32;"), "peak_fma.wgsl: its number type is the alias F");
    out.push(("peak_fma_f16".into(), format!("enable f16;\n{}", peak.replacen("alias F = f32;", "alias F = f16;", 1))));
    // linear.wgsl as written is the wide tile shape; kernels::narrow sets RM and RN to 1.
    let wide = "const RM: u32 = 2u;\nconst RN: u32 = 2u;";
    assert!(common.contains(wide), "linear.wgsl declares {wide:?}");
    let narrow = common.replacen(wide, "const RM: u32 = 1u;\nconst RN: u32 = 1u;", 1);
    let formats: Vec<_> = out.iter().filter(|(n, _)| n.starts_with("linear_")).cloned().collect();
    for (name, source) in formats {
        out.push((format!("{name} (narrow)"), source));
    }
    for (name, source) in &mut out {
        if name == "embed.wgsl" || name.starts_with("linear_kquant.wgsl") {
            *source = format!("{source}\n{kquant}");
        }
        if name.starts_with("linear_") {
            let shape = if name.ends_with("(narrow)") { &narrow } else { &common };
            *source = format!("{shape}\n{activate}\n{source}\n{gemv}\n{direct}");
        }
        if name == "glu.wgsl" {
            *source = format!("{source}\n{activate}");
        }
        if name == "attention.wgsl" {
            *source = format!("{source}\n{attention_direct}");
        }
        if name == "layer_norm.wgsl" {
            *source = format!("{source}\n{layer_norm_direct}");
        }
    }
    // The matmuls on reduced weights in f16 arithmetic, both shapes, as kernels::half builds
    // them.
    let f32_math = "alias T = f32;\nconst HALF: bool = false;";
    let f16_math = "alias T = f16;\nconst HALF: bool = true;";
    let halves: Vec<_> = out
        .iter()
        .filter(|(n, _)| n.starts_with("linear_") && !n.starts_with("linear_f32.wgsl"))
        .map(|(n, s)| {
            assert!(s.contains(f32_math), "linear.wgsl declares {f32_math:?}");
            (format!("{n} (f16 arithmetic)"), format!("enable f16;\n{}", s.replacen(f32_math, f16_math, 1)))
        })
        .collect();
    assert_eq!(halves.len(), 8, "f16, q8, q4 and the K-quants in both shapes");
    out.extend(halves);
    out
}

#[test]
fn every_shader_validates() {
    for (name, source) in shaders() {
        let module =
            naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        // What every WebGPU adapter has: core WGSL, where pack/unpack2x16float are builtins
        // (naga files them under a capability because some GL ES devices lack them).
        let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        // f16 arithmetic only where the shader says `enable f16;` (the device then has
        // shader-f16; the backend builds such a pipeline only there).
        if source.contains("enable f16;") {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        validator.validate(&module).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let entry = module.entry_points.iter().find(|e| e.name == "main");
        assert!(
            entry.is_some_and(|e| e.stage == naga::ShaderStage::Compute),
            "{name}: needs a compute entry point `main`"
        );
        // SwiftShader (Chromium's software WebGPU) allows 256 invocations per workgroup; the
        // matmul modules also have the few-row entry point `gemv` and the software adapters'
        // `direct`.
        for e in &module.entry_points {
            let [x, y, z] = e.workgroup_size;
            assert!(x * y * z <= 256, "{name} `{}`: workgroup of {} invocations", e.name, x * y * z);
        }
        if name.starts_with("linear_") {
            for entry in ["gemv", "direct"] {
                assert!(module.entry_points.iter().any(|e| e.name == entry), "{name}: no `{entry}` entry point");
            }
        }
        if name == "attention.wgsl" || name == "layer_norm.wgsl" {
            assert!(module.entry_points.iter().any(|e| e.name == "direct"), "{name}: no `direct` entry point");
        }
    }
}

#[test]
fn params_structs_have_the_sizes_rust_expects() {
    // Sizes asserted on the Rust side in src/backend/gpu/kernels.rs.
    let expected = [
        ("embed.wgsl", 32),
        ("rotary.wgsl", 16),
        ("glu.wgsl", 16),
        ("add.wgsl", 16),
        ("rms_norm.wgsl", 32),
        ("linear_f32.wgsl", 32),
        ("linear_f16.wgsl", 32),
        ("linear_q8.wgsl", 32),
        ("linear_q4.wgsl", 32),
        ("linear_kquant.wgsl", 32),
        ("layer_norm.wgsl", 16),
        ("attention.wgsl", 48),
        ("pool.wgsl", 32),
        ("normalize.wgsl", 16),
        ("peak_fma.wgsl", 16),
        ("peak_fma_f16", 16),
    ];
    for (name, source) in shaders() {
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let params = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params"));
        let (_, ty) = params.unwrap_or_else(|| panic!("{name}: no Params struct"));
        let size = ty.inner.size(module.to_ctx());
        let file = name.trim_end_matches(" (f16 arithmetic)").trim_end_matches(" (narrow)");
        let want = expected.iter().find(|(n, _)| *n == file).map(|(_, s)| *s);
        assert_eq!(Some(size), want, "{name}: Params is {size} bytes");
    }
}
