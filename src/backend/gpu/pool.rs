//! GPU buffers and their lifetimes: every buffer the backend holds is [`Tracked`] (its bytes
//! counted, an id the bind-group cache keys on, its death reported so cached bind groups that
//! name it are dropped), activations come from a [`BufferPool`] by size class, and readback
//! staging buffers are kept for the next read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the backend's buffers report to: the bytes alive now, fresh ids, and the ids of the
/// buffers dropped since the bind-group cache last looked.
#[derive(Default)]
pub(super) struct Ledger {
    pub live: AtomicU64,
    next_id: AtomicU64,
    dropped: Mutex<Vec<u64>>,
}

impl Ledger {
    /// Ids of the buffers dropped since the last call.
    pub fn take_dropped(&self) -> Vec<u64> {
        self.dropped.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default()
    }
}

/// A GPU buffer whose bytes count in the ledger until it is dropped.
pub(super) struct Tracked {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    ledger: std::sync::Arc<Ledger>,
}

impl Tracked {
    pub fn new(buffer: wgpu::Buffer, ledger: &std::sync::Arc<Ledger>) -> Tracked {
        ledger.live.fetch_add(buffer.size(), Ordering::Relaxed);
        let id = ledger.next_id.fetch_add(1, Ordering::Relaxed);
        Tracked { buffer, id, ledger: ledger.clone() }
    }

    /// This buffer bound as `size` bytes from its start (0: all of it).
    pub fn binding(&self, size: u64) -> Binding {
        Binding { buffer: self.buffer.clone(), id: self.id, size }
    }
}

impl std::ops::Deref for Tracked {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.ledger.live.fetch_sub(self.buffer.size(), Ordering::Relaxed);
        if let Ok(mut d) = self.ledger.dropped.lock() {
            d.push(self.id);
        }
    }
}

/// A buffer as a dispatch binds it: the handle (a cheap clone), the id the bind-group cache
/// keys on, and how many bytes from the start to bind (0: all).
#[derive(Clone)]
pub(super) struct Binding {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    pub size: u64,
}

/// Free storage buffers by size class: four classes per power of two (at most 25% over what
/// a tensor needs), at least 256 bytes. Reusing one inside the same command encoder is safe:
/// wgpu orders the dispatches that touch it. A free buffer unused for [`POOL_KEEP_WAVES`]
/// submits is dropped, so a long call's large buffers do not stay after it. Taking the last
/// buffer given back (a stack per class) hands the same buffers to the same sequence of
/// shapes, wave after wave: what makes cached bind groups hit.
pub(super) struct BufferPool {
    /// class -> (buffer, the submit it was last given back in).
    free: HashMap<u64, Vec<(Tracked, u64)>>,
    /// Submits so far.
    epoch: u64,
    ledger: std::sync::Arc<Ledger>,
}

const POOL_KEEP_WAVES: u64 = 2;

impl BufferPool {
    pub fn new(ledger: &std::sync::Arc<Ledger>) -> BufferPool {
        BufferPool { free: HashMap::new(), epoch: 0, ledger: ledger.clone() }
    }

    fn size_class(bytes: u64) -> u64 {
        let bytes = bytes.max(256);
        let step = (bytes.next_power_of_two() / 8).max(256);
        bytes.next_multiple_of(step)
    }

    pub fn take(&mut self, device: &wgpu::Device, bytes: u64) -> Tracked {
        let class = Self::size_class(bytes);
        if let Some((b, _)) = self.free.get_mut(&class).and_then(|v| v.pop()) {
            return b;
        }
        self.create(device, class)
    }

    /// As [`BufferPool::take`], for a buffer filled with `queue.write_buffer`: that write lands
    /// before any command of the coming submit runs, so a buffer given back during this wave
    /// (an activation this wave's dispatches still write) would be overwritten after it. Only
    /// buffers given back in an earlier submit are reused here.
    pub fn take_for_queue_write(&mut self, device: &wgpu::Device, bytes: u64) -> Tracked {
        let class = Self::size_class(bytes);
        let epoch = self.epoch;
        if let Some(list) = self.free.get_mut(&class)
            && let Some(i) = list.iter().rposition(|(_, given_back)| *given_back < epoch)
        {
            return list.remove(i).0;
        }
        self.create(device, class)
    }

    fn create(&self, device: &wgpu::Device, class: u64) -> Tracked {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wembed activations"),
            size: class,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Tracked::new(buffer, &self.ledger)
    }

    pub fn give_back(&mut self, buffer: Tracked) {
        let epoch = self.epoch;
        self.free.entry(buffer.size()).or_default().push((buffer, epoch));
    }

    /// Called at each submit: drops the buffers nobody took for a while.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        let oldest = self.epoch.saturating_sub(POOL_KEEP_WAVES);
        for list in self.free.values_mut() {
            list.retain(|(_, used)| *used >= oldest);
        }
        self.free.retain(|_, list| !list.is_empty());
    }
}

/// Mappable buffers for readback, kept between reads instead of created per read. Several
/// can be out at once (in the browser a read's mapping may still be pending when the next
/// read is submitted), so this is a short list, not one buffer.
pub(super) struct StagingBuffers {
    free: Mutex<Vec<Tracked>>,
}

/// Staging buffers kept for later reads; more are dropped.
const STAGING_KEPT: usize = 4;

impl StagingBuffers {
    pub fn new() -> StagingBuffers {
        StagingBuffers { free: Mutex::new(Vec::new()) }
    }

    /// The smallest kept buffer of at least `bytes`, or a new one (sized up to a power of two,
    /// so the next, slightly larger read fits it too).
    pub fn take(&self, device: &wgpu::Device, ledger: &std::sync::Arc<Ledger>, bytes: u64) -> Tracked {
        if let Ok(mut free) = self.free.lock() {
            let best = free.iter().enumerate().filter(|(_, b)| b.size() >= bytes).min_by_key(|(_, b)| b.size());
            if let Some((i, _)) = best {
                return free.swap_remove(i);
            }
        }
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wembed readback"),
            size: bytes.max(256).next_power_of_two(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Tracked::new(buffer, ledger)
    }

    /// Keeps an unmapped buffer for a later read; beyond [`STAGING_KEPT`] the smallest goes.
    pub fn give_back(&self, buffer: Tracked) {
        if let Ok(mut free) = self.free.lock() {
            free.push(buffer);
            if free.len() > STAGING_KEPT {
                free.sort_by_key(|b| std::cmp::Reverse(b.size()));
                free.truncate(STAGING_KEPT);
            }
        }
    }
}
