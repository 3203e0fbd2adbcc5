//! Recording a wave (everything between two submits): one command encoder, one compute pass
//! for all its dispatches (a pass per dispatch only when profiling, for the timestamps),
//! params packed into uniform buffers bound with dynamic offsets, and the group-0 bind groups
//! cached by the buffers they name. The only per-dispatch work left is a hash lookup, the
//! params bytes and the three pass commands.

use std::collections::{HashMap, HashSet};

use super::kernels::{Kernel, PARAMS_BINDING};
use super::pool::{Binding, Ledger, Tracked};
use super::{Gpu, HostTimes, MAX_TIMED_PASSES, MetaBuffers, clock, seconds_since};
use crate::error::{Error, Result};

/// Params of the dispatches recorded since the last submit, packed at the device's uniform
/// offset alignment into fixed-size chunks, each with its bind group (made once, bound with a
/// dynamic offset). Each submit starts again from the first chunk, so the chunks are as many
/// as the largest wave needs, and no more.
pub(super) struct ParamsArena {
    align: u64,
    chunks: Vec<ParamsChunk>,
    /// The chunk being filled.
    current: usize,
}

struct ParamsChunk {
    buffer: Tracked,
    bind_group: wgpu::BindGroup,
    staged: Vec<u8>,
}

const PARAMS_CHUNK: u64 = 64 * 1024;

impl ParamsArena {
    pub fn new(align: u64) -> ParamsArena {
        ParamsArena { align, chunks: vec![], current: 0 }
    }

    /// Places `bytes` (at most [`PARAMS_BINDING`]); returns the chunk and the offset to bind.
    fn push(&mut self, gpu: &Gpu, bytes: &[u8]) -> (usize, u32) {
        let fits =
            |staged: &Vec<u8>| (staged.len() as u64).next_multiple_of(self.align) + PARAMS_BINDING <= PARAMS_CHUNK;
        if self.chunks.get(self.current).is_some_and(|c| !fits(&c.staged)) {
            self.current += 1;
        }
        if self.current >= self.chunks.len() {
            let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wembed params"),
                size: PARAMS_CHUNK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("wembed params"),
                layout: gpu.pipelines.params_layout(),
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &buffer,
                        offset: 0,
                        size: std::num::NonZeroU64::new(PARAMS_BINDING),
                    }),
                }],
            });
            let buffer = Tracked::new(buffer, &gpu.ledger);
            self.chunks.push(ParamsChunk { buffer, bind_group, staged: Vec::new() });
            self.current = self.chunks.len() - 1;
        }
        let chunk = &mut self.chunks[self.current];
        let offset = (chunk.staged.len() as u64).next_multiple_of(self.align);
        chunk.staged.resize(offset as usize, 0);
        chunk.staged.extend_from_slice(bytes);
        // The bound window is PARAMS_BINDING bytes: pad a smaller Params out to it.
        chunk.staged.resize(offset as usize + PARAMS_BINDING as usize, 0);
        (self.current, offset as u32)
    }

    /// Writes the staged params (before the submit that uses them) and starts over.
    fn flush(&mut self, queue: &wgpu::Queue) {
        for chunk in &mut self.chunks {
            if !chunk.staged.is_empty() {
                queue.write_buffer(&chunk.buffer, 0, &chunk.staged);
                chunk.staged.clear();
            }
        }
        self.current = 0;
    }
}

/// The most storage bindings a kernel has.
const MAX_BINDINGS: usize = 6;
/// Bind groups kept; past this the cache starts over (shapes that keep changing).
const MAX_CACHED_BIND_GROUPS: usize = 4096;

/// A group-0 bind group by kernel and the (buffer id, bound bytes) of each binding.
type BindKey = (Kernel, [(u64, u64); MAX_BINDINGS]);

/// Group-0 bind groups by the buffers they name. The pool hands the same buffers to the same
/// shapes call after call, so a model's dispatches find theirs after the first call. An entry
/// goes when one of its buffers is dropped (else it would keep the buffer alive).
#[derive(Default)]
pub(super) struct BindGroups {
    cache: HashMap<BindKey, wgpu::BindGroup>,
}

impl BindGroups {
    /// Drops the entries that name a buffer dropped since the last call.
    fn forget_dropped(&mut self, ledger: &Ledger) {
        let dropped = ledger.take_dropped();
        if dropped.is_empty() || self.cache.is_empty() {
            return;
        }
        let dropped: HashSet<u64> = dropped.into_iter().collect();
        self.cache.retain(|(_, ids), _| !ids.iter().any(|(id, _)| dropped.contains(id)));
    }
}

/// Everything recorded since the last submit, and what persists between submits.
pub(super) struct State {
    pub encoder: Option<wgpu::CommandEncoder>,
    /// The wave's compute pass, open while dispatches follow one another.
    pub pass: Option<wgpu::ComputePass<'static>>,
    pub params: ParamsArena,
    pub bind_groups: BindGroups,
    pub meta: Option<MetaBuffers>,
    /// Buffers the wave's commands or queued writes still use: given back to the pool at the
    /// submit (a batch layout written with `write_buffer` must not be overwritten by the next
    /// batch of the same wave, which a pooled buffer given back at once would be).
    pub retired: Vec<Tracked>,
    /// Kernel and estimated work of each timed pass since the last submit (when profiling).
    pub timed: Vec<(Kernel, Work)>,
    pub host: HostTimes,
}

impl State {
    pub fn new(align: u64) -> State {
        State {
            encoder: None,
            pass: None,
            params: ParamsArena::new(align),
            bind_groups: BindGroups::default(),
            meta: None,
            retired: vec![],
            timed: vec![],
            host: HostTimes::default(),
        }
    }

    /// The wave's encoder, its compute pass ended (for copies and query resolves).
    pub fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wembed") })
        })
    }
}

/// What a dispatch computes and moves at the least (its FLOPs and the bytes it must read and
/// write), for the profile's GFLOP/s and GB/s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl Gpu {
    /// Records one dispatch of `kernel` with `params` and the storage `buffers` in binding order.
    /// The embedder keeps batches under [`super::Backend::max_batch_tokens`], so the grid fits
    /// the adapter's limit per dimension; a dispatch that would not is a bug, reported as one.
    pub(super) fn dispatch(
        &self,
        state: &mut State,
        kernel: Kernel,
        params: &[u8],
        buffers: &[Binding],
        groups: (u32, u32),
        work: Work,
    ) -> Result<()> {
        let started = clock();
        let limit = self.limits.max_compute_workgroups_per_dimension;
        if groups.0 > limit || groups.1 > limit {
            return Err(Error::Backend(format!(
                "{}: {} x {} workgroups, over the adapter's limit of {limit} per dimension",
                kernel.name(),
                groups.0,
                groups.1
            )));
        }
        if buffers.len() > MAX_BINDINGS || params.len() as u64 > PARAMS_BINDING {
            return Err(Error::Backend(format!("{}: more bindings or params than the backend allows", kernel.name())));
        }
        let (pipeline, layout) = self
            .pipelines
            .get(kernel)
            .ok_or_else(|| Error::Backend(format!("kernel `{}` is not available on this adapter", kernel.name())))?;
        let (chunk, offset) = state.params.push(self, params);
        // Bind a whole buffer where the adapter allows, so a pooled buffer is one key whatever
        // the tensor in it; past the binding limit, only the tensor's bytes.
        let max_binding = self.limits.max_storage_buffer_binding_size;
        let bound = |b: &Binding| if b.size == 0 || b.buffer.size() <= max_binding { 0 } else { b.size };
        let mut key: BindKey = (kernel, [(u64::MAX, 0); MAX_BINDINGS]);
        for (slot, b) in key.1.iter_mut().zip(buffers) {
            *slot = (b.id, bound(b));
        }
        state.bind_groups.forget_dropped(&self.ledger);
        if state.bind_groups.cache.len() >= MAX_CACHED_BIND_GROUPS {
            state.bind_groups.cache.clear();
        }
        let bind_group = state
            .bind_groups
            .cache
            .entry(key)
            .or_insert_with(|| {
                let entries: Vec<_> = buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: match std::num::NonZeroU64::new(bound(b)) {
                            Some(size) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &b.buffer,
                                offset: 0,
                                size: Some(size),
                            }),
                            None => b.buffer.as_entire_binding(),
                        },
                    })
                    .collect();
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(kernel.name()),
                    layout,
                    entries: &entries,
                })
            })
            .clone();
        let params_group = state.params.chunks[chunk].bind_group.clone();
        let timed = match &self.profiler {
            Some(p) if (state.timed.len() as u32) < MAX_TIMED_PASSES => Some(p),
            _ => None,
        };
        let mut own_pass;
        let pass = match timed {
            // Timestamps around each dispatch: one pass each (timestamps inside a pass need a
            // native-only feature).
            Some(p) => {
                let i = 2 * state.timed.len() as u32;
                state.timed.push((kernel, work));
                let timestamp_writes = Some(wgpu::ComputePassTimestampWrites {
                    query_set: &p.queries,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                });
                own_pass = state
                    .encoder(&self.device)
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.name()), timestamp_writes })
                    .forget_lifetime();
                &mut own_pass
            }
            None => {
                if state.pass.is_none() {
                    let pass = state
                        .encoder(&self.device)
                        .begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("wembed"),
                            timestamp_writes: None,
                        })
                        .forget_lifetime();
                    state.pass = Some(pass);
                }
                state.pass.as_mut().expect("opened just above")
            }
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_bind_group(1, &params_group, &[offset]);
        pass.dispatch_workgroups(groups.0.max(1), groups.1.max(1), 1);
        state.host.dispatches += 1;
        state.host.record_s += seconds_since(started);
        Ok(())
    }

    /// Ends the wave: finishes the encoder, writes the params, submits, and gives the wave's
    /// retired buffers back to the pool.
    pub(super) fn submit(&self, state: &mut State) {
        let started = clock();
        state.encoder(&self.device);
        let commands = state.encoder.take().map(|e| e.finish());
        state.host.finish_s += seconds_since(started);
        let started = clock();
        state.params.flush(&self.queue);
        if let Some(m) = state.meta.take() {
            state.retired.extend([m.toks, m.seqs, m.tiles]);
        }
        self.queue.submit(commands);
        state.host.submit_s += seconds_since(started);
        state.host.submits += 1;
        if let Ok(mut pool) = self.pool.lock() {
            pool.next_epoch();
            for b in state.retired.drain(..) {
                pool.give_back(b);
            }
        }
    }
}
