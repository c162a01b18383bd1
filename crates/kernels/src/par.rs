//! Large loops split across cores.
//!
//! The calling thread always does one piece of the work itself; the other
//! pieces go to a pool of `cores - 1` worker threads (rayon's, built once).
//! So a training loop never has more busy threads than cores, and the
//! piece the caller keeps is the one already in its cache.
//!
//! [`split`] cuts a loop into one piece per thread; [`share`] cuts it
//! into more blocks than threads and hands them out as threads come
//! free, for passes over large arrays ([`split_sized`]) on cores that may
//! run at different speeds; [`share_guided`] does the same with blocks
//! that shrink near the end, for large products.
//!
//! A split is made by size alone and elementwise loops give the same
//! elements however they are split; the reductions split this way (`dots`
//! and large products over the inner dimension) cut by the shapes alone
//! and add the pieces in a fixed order, so no result depends on the number
//! of cores.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The variable that sets how many threads split loops use (the caller
/// included); unset, 0 or not a number: one per core.
const THREADS_VAR: &str = "TAPEGRAD_THREADS";

/// The worker threads: one fewer than the threads wanted (none for one).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::env::var(THREADS_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if cores < 2 {
            return None;
        }
        // If threads cannot be started, everything runs on the caller.
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores - 1)
            .thread_name(|i| format!("tapegrad-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// How many threads work on a split loop: the caller and the workers.
pub(crate) fn threads() -> usize {
    pool().map_or(1, |p| p.current_num_threads() + 1)
}

/// Runs `a` on the calling thread and `b` on a worker, and returns when
/// both are done (both on the caller when there are no workers).
pub(crate) fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    match pool() {
        Some(p) => p.in_place_scope(|s| {
            s.spawn(|_| b());
            a();
        }),
        None => {
            a();
            b();
        }
    }
}

/// A raw pointer that may cross to another core: each worker writes only
/// its own disjoint part of the buffer behind it, and the join returns
/// before the buffer is used.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: see the type's doc; users uphold the disjointness.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer. A method, so that a closure captures the whole
    /// `SendPtr` (which may cross cores) rather than its field.
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Elementwise loops over at least this many elements are split in two
/// (recursively): below it, handing work to another core costs more than
/// it saves.
const MIN_ELEMS: usize = 1 << 15;

/// How many pieces to cut `work` (elements or multiply-adds) into: one per
/// thread, but none smaller than `min`.
#[inline]
pub(crate) fn pieces(work: usize, min: usize) -> usize {
    #[cfg(test)]
    if SERIAL.with(std::cell::Cell::get) {
        return 1;
    }
    if work < 2 * min {
        return 1;
    }
    threads().min(work / min).max(1)
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run every split loop on the calling thread alone.
    pub(crate) static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `f(i0, i1)` on `pieces` consecutive blocks covering `0..len`,
/// each starting at a multiple of `align`: the first on the calling
/// thread, the others on the workers.
pub(crate) fn split(len: usize, pieces: usize, align: usize, f: &(impl Fn(usize, usize) + Sync)) {
    match pool() {
        Some(pool) if pieces > 1 => pool.in_place_scope(|s| {
            for p in 1..pieces {
                let (i0, i1) = block_bounds(len, pieces, align, p);
                if i0 < i1 {
                    s.spawn(move |_| f(i0, i1));
                }
            }
            let (_, first_end) = block_bounds(len, pieces, align, 0);
            if first_end > 0 {
                f(0, first_end);
            }
        }),
        _ => f(0, len),
    }
}

/// The bounds of block `p` of `blocks` consecutive blocks covering
/// `0..len`, each starting at a multiple of `align` (the last ends at
/// `len`).
#[inline]
pub(crate) fn block_bounds(len: usize, blocks: usize, align: usize, p: usize) -> (usize, usize) {
    let align = align.max(1);
    let bound = |q: usize| if q >= blocks { len } else { len * q / blocks / align * align };
    (bound(p), bound(p + 1))
}

/// Calls `f(p)` for each block `p` in `0..blocks`, handing the blocks out
/// one at a time to whichever thread is free, the caller included. A core
/// that runs slower (a virtual core shared with another guest, say) takes
/// fewer blocks instead of holding up the others. Which thread runs a
/// block never changes what it computes.
pub(crate) fn share(blocks: usize, f: &(impl Fn(usize) + Sync)) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || loop {
        let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if p >= blocks {
            break;
        }
        f(p);
    };
    on_every_thread(blocks, &work);
}

/// Calls `f(i0, i1)` on consecutive chunks covering `0..len`, handed out
/// one at a time to whichever thread is free, the caller included. While
/// much remains, chunks are `max` long; near the end they shrink to a
/// quarter of what remains, down to `min`, so that the threads finish
/// close together instead of one waiting for the other's last large chunk
/// (guided self-scheduling). Chunk bounds are multiples of `align` (but
/// the last ends at `len`) and depend only on `len`, `align`, `max` and
/// `min`: never on the number of threads or on timing. `min` is at most
/// `max`; with `max` half of `len`, there are two chunks, as [`split`]
/// would make.
pub(crate) fn share_guided(
    len: usize,
    align: usize,
    max: usize,
    min: usize,
    f: &(impl Fn(usize, usize) + Sync),
) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let align = align.max(1);
    let max = max.max(1);
    let min = min.clamp(1, max);
    let next = AtomicUsize::new(0);
    let chunks = (len / min).max(1);
    let work = || {
        let mut cur = next.load(Relaxed);
        loop {
            if cur >= len {
                break;
            }
            let want = ((len - cur) / 4).clamp(min, max);
            let mut end = (cur + want).next_multiple_of(align);
            if end + min / 2 > len {
                // No chunk shorter than half of `min` at the end.
                end = len;
            }
            match next.compare_exchange_weak(cur, end, Relaxed, Relaxed) {
                Ok(_) => {
                    f(cur, end);
                    cur = next.load(Relaxed);
                }
                Err(now) => cur = now,
            }
        }
    };
    on_every_thread(chunks, &work);
}

/// Runs `work` (a loop that takes jobs from a shared counter until none
/// are left) on the calling thread and on as many workers as there are
/// `jobs` beyond the caller's first.
fn on_every_thread(jobs: usize, work: &(impl Fn() + Sync)) {
    #[cfg(test)]
    if SERIAL.with(std::cell::Cell::get) {
        return work();
    }
    match pool() {
        Some(pool) if jobs > 1 => pool.in_place_scope(|s| {
            for _ in 0..pool.current_num_threads().min(jobs - 1) {
                s.spawn(|_| work());
            }
            work();
        }),
        _ => work(),
    }
}

/// Loops over at least this many elements are cut into
/// [`BLOCKS_PER_THREAD`] blocks per thread and handed out by [`share`]
/// instead of one fixed piece per thread: a pass over a large array waits
/// for the slower core otherwise. Smaller loops keep one piece per thread.
const SHARE_ELEMS: usize = 1 << 20;
/// Blocks per thread for a large loop.
const BLOCKS_PER_THREAD: usize = 4;

/// [`split`] for a loop over `elems` elements in all: above
/// [`SHARE_ELEMS`], `pieces` threads share `BLOCKS_PER_THREAD` times as
/// many blocks, each starting at a multiple of `align`.
pub(crate) fn split_sized(
    len: usize,
    elems: usize,
    pieces: usize,
    align: usize,
    f: &(impl Fn(usize, usize) + Sync),
) {
    if elems < SHARE_ELEMS || pieces < 2 {
        return split(len, pieces, align, f);
    }
    let blocks = pieces * BLOCKS_PER_THREAD;
    share(blocks, &|p| {
        let (i0, i1) = block_bounds(len, blocks, align, p);
        if i0 < i1 {
            f(i0, i1);
        }
    });
}

/// Writes every element of `out`: `f(start, block)` writes elements
/// `start..start + block.len()`, every one of them. Large fills are split
/// across cores.
#[inline]
pub(crate) fn fill<T: Send>(out: &mut [MaybeUninit<T>], f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) {
    let len = out.len();
    if len < 2 * MIN_ELEMS {
        f(0, out);
        return;
    }
    let out = SendPtr(out.as_mut_ptr());
    split_sized(len, len, pieces(len, MIN_ELEMS), 8, &|i0, i1| {
        // SAFETY: blocks are disjoint and inside `out`.
        let block = unsafe { std::slice::from_raw_parts_mut(out.get().add(i0), i1 - i0) };
        f(i0, block)
    });
}

/// Runs `f(row0, row1)` over blocks of the rows `0..n`, split across cores
/// when `n * row_len` is at least two [`MIN_ELEMS`].
pub(crate) fn rows(n: usize, row_len: usize, f: &(impl Fn(usize, usize) + Sync)) {
    split_sized(n, n * row_len, pieces(n * row_len, MIN_ELEMS).min(n.max(1)), 1, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_writes_every_element_once_in_order() {
        for len in [0, 1, 7, MIN_ELEMS * 2 - 1, MIN_ELEMS * 2, MIN_ELEMS * 5 + 3, SHARE_ELEMS + 13] {
            let mut v: Vec<u64> = Vec::with_capacity(len);
            fill(&mut v.spare_capacity_mut()[..len], |s, out| {
                for (i, o) in out.iter_mut().enumerate() {
                    o.write((s + i) as u64);
                }
            });
            // SAFETY: `fill` wrote every element (asserted by the values).
            unsafe { v.set_len(len) };
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64), "len {len}");
        }
    }

    #[test]
    fn share_runs_each_block_once_and_bounds_tile_the_range() {
        use std::sync::atomic::{AtomicU32, Ordering};
        for blocks in [1, 2, 3, 7, 32] {
            let seen: Vec<AtomicU32> = (0..blocks).map(|_| AtomicU32::new(0)).collect();
            share(blocks, &|p| {
                seen[p].fetch_add(1, Ordering::Relaxed);
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "{blocks} blocks");
            let mut end = 0;
            for p in 0..blocks {
                let (i0, i1) = block_bounds(19_600, blocks, 64, p);
                assert_eq!(i0, end, "block {p} of {blocks} starts where the last ended");
                assert!(i0 % 64 == 0 && i1 > i0);
                end = i1;
            }
            assert_eq!(end, 19_600);
        }
    }

    #[test]
    fn guided_chunks_tile_the_range_and_shrink_at_the_end() {
        use std::sync::Mutex;
        for (len, align, max, min) in [
            (0, 8, 10, 2),
            (1, 8, 10, 2),
            (19_600, 8, 613, 32),
            (512, 16, 512, 32),
            (100, 8, 50, 50),
            (4096, 16, 64, 512),
        ] {
            let chunks = Mutex::new(Vec::new());
            share_guided(len, align, max, min, &|i0, i1| chunks.lock().unwrap().push((i0, i1)));
            let mut chunks = chunks.into_inner().unwrap();
            chunks.sort_unstable();
            // The same chunks on the calling thread alone: they do not
            // depend on the number of threads or on timing.
            let serial = Mutex::new(Vec::new());
            SERIAL.with(|s| s.set(true));
            share_guided(len, align, max, min, &|i0, i1| serial.lock().unwrap().push((i0, i1)));
            SERIAL.with(|s| s.set(false));
            assert_eq!(chunks, serial.into_inner().unwrap(), "len {len}");
            let mut end = 0;
            for &(i0, i1) in &chunks {
                assert_eq!(i0, end, "len {len}: chunks tile the range");
                assert!(i1 > i0 && i0 % align == 0, "len {len}: chunk {i0}..{i1}");
                // At most `max` rounded up to `align`, or the last with what was left.
                assert!(i1 - i0 <= max + align + min.min(max) / 2, "len {len}: chunk {i0}..{i1} too long");
                end = i1;
            }
            assert_eq!(end, len);
            if len == 19_600 {
                // Full chunks first, then shrinking ones, none tiny.
                let sizes: Vec<usize> = chunks.iter().map(|c| c.1 - c.0).collect();
                assert!(sizes.windows(2).all(|w| w[1] <= w[0] + align), "{sizes:?}");
                assert!(sizes[0] >= 613 && *sizes.last().unwrap() <= 64, "{sizes:?}");
                assert!(sizes.iter().all(|&s| s >= 16), "{sizes:?}");
            }
            if (len, max) == (100, 50) {
                assert_eq!(chunks.len(), 2, "two halves, as split makes: {chunks:?}");
            }
        }
    }

    #[test]
    fn rows_covers_each_row_once() {
        use std::sync::atomic::{AtomicU32, Ordering};
        for (n, row_len) in [(0, 10), (1, MIN_ELEMS * 4), (5, MIN_ELEMS), (512, 19_600)] {
            let seen: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            rows(n, row_len, &|r0, r1| {
                for s in &seen[r0..r1] {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "n {n}");
        }
    }
}
