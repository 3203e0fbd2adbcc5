//! The arithmetic peak probe `wembed gpu-bench` measures kernels against: a long FMA loop
//! (shaders/peak_fma.wgsl, and its f16 twin where the device has `shader-f16`), timed by the
//! wall clock around a submit and its wait, grown until one run lasts long enough that the
//! submit's own latency does not count.

use super::kernels::{Kernel, PeakParams};
use super::record::Work;
use super::{Backend, Gpu, clock, seconds_since};
use crate::error::Result;

/// Workgroups of 256 threads per probe dispatch: about a million threads, more than any GPU
/// keeps resident, so every core is busy.
const PROBE_GROUPS: u32 = 4096;
/// FLOPs per thread per loop step: eight vec4 FMAs.
const FLOPS_PER_STEP: f64 = 64.0;

impl Gpu {
    /// Whether the device has f16 arithmetic (`shader-f16`), which the f16 peak probe needs.
    pub fn has_shader_f16(&self) -> bool {
        self.pipelines.shader_f16()
    }

    /// GFLOP/s of the FMA loop in f32 (or f16), its run grown until it lasts `seconds`. None
    /// where the device has no f16 arithmetic (for `f16`) or there is no clock (wasm).
    pub async fn peak_fma_gflops(&self, f16: bool, seconds: f64) -> Result<Option<f64>> {
        let kernel = if f16 { Kernel::PeakFmaF16 } else { Kernel::PeakFma };
        if self.pipelines.get(kernel).is_none() || clock().is_none() {
            return Ok(None);
        }
        let out = self.tensor(1, 256)?;
        let mut iterations = 16u32;
        loop {
            let flops = PROBE_GROUPS as f64 * 256.0 * iterations as f64 * FLOPS_PER_STEP;
            let started = clock();
            {
                let mut state = self.state()?;
                let params = PeakParams { iterations, _pad: [0; 3] };
                let work = Work { flops, bytes: 0.0 };
                let grid = (PROBE_GROUPS, 1);
                self.dispatch(&mut state, kernel, bytemuck::bytes_of(&params), &[out.binding()], grid, work)?;
            }
            self.read(&out).await?;
            let elapsed = seconds_since(started);
            if elapsed >= seconds || iterations >= 1 << 24 {
                return Ok(Some(flops / elapsed.max(1e-9) / 1e9));
            }
            // Aim past the target: a run that falls short by noise does not cost another one.
            let grow = (1.5 * seconds / elapsed.max(1e-6)).clamp(2.0, 256.0);
            iterations = ((iterations as f64 * grow) as u32).min(1 << 24);
        }
    }
}
