//! A per-thread pool of large buffers, so a training loop reuses the same
//! memory every iteration instead of asking the allocator for fresh
//! multi-megabyte blocks (which glibc maps and unmaps each time, paying a
//! page fault per 4 KiB on every use).
//!
//! Buffers come back from [`Tape::clear`](crate::Tape::clear) and from
//! dropped [`Gradients`](crate::Gradients); the forward kernels (`map`,
//! `zip`, `matmul`) take from here first. Tiny values (at most
//! [`SMALL_LEN`] elements) are kept whole, array and reference count, so an
//! op on tiny tensors makes no allocation and no shape (W4, on (1, 1)
//! tensors, spent a fifth of its instructions in malloc and free before
//! this; one-element values now skip arrays altogether, see `repr.rs`).
//! The empty boxes the tape keeps array values in come back too (a step
//! of W2 made thirty of them). Only values nothing else references come
//! back, so a value a user still holds is never reused.

use crate::{Element, Value};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;

/// Hashes a buffer length with one multiplication (Fibonacci hashing)
/// instead of SipHash, which cost more than the look-up it served.
#[derive(Default)]
pub struct LenHasher(u64);

impl Hasher for LenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Buffers shorter than this are not pooled (shorter ones are small values,
/// kept whole). Mid-sized buffers are pooled too: glibc's thread cache
/// stops at about 1 KiB, and W2's (20, 64) values spent a fifth of its
/// instructions in malloc and free.
pub(crate) const MIN_LEN: usize = SMALL_LEN + 1;
/// At most this many bytes are kept per thread and element type.
const MAX_BYTES: usize = 512 << 20;
/// At most this many buffers are kept per length.
const MAX_PER_LEN: usize = 64;

/// Values of at most this many elements are kept whole (buffer, reference
/// count and shape), so an op on tiny tensors reuses a value instead of
/// making two heap allocations and a shape.
pub(crate) const SMALL_LEN: usize = 16;
/// At most this many small values are kept per thread and element type
/// (a few MB at most).
const SMALL_MAX: usize = 1 << 14;

/// At most this many empty boxes are kept per thread and element type.
const MAX_BOXES: usize = 1 << 12;

/// How many of the most recently freed small values `fill_small` looks
/// through for one of the shape it needs.
const SMALL_WINDOW: usize = 8;

/// Free buffers by length, and free small values.
#[derive(Default)]
pub struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>, BuildHasherDefault<LenHasher>>,
    bytes: usize,
    /// Oldest first; when full, the oldest is dropped for the newest, so
    /// the values at the back (the ones `fill_small` looks at) stay recent.
    small: VecDeque<Value<T>>,
    /// Empty boxes the tape holds values in (see [`boxed`]). The boxes
    /// themselves are the point (each is an allocation saved), hence the
    /// vector of boxes.
    #[allow(clippy::vec_box)]
    boxes: Vec<Box<MaybeUninit<Value<T>>>>,
}

thread_local! {
    static POOL_F32: RefCell<Pool<f32>> = RefCell::new(Pool::default());
    static POOL_F64: RefCell<Pool<f64>> = RefCell::new(Pool::default());
}

/// The per-type kernels behind [`Element`]: the buffer pool and GEMM
/// (implemented for f32 and f64).
pub trait Pooled: Sized + 'static {
    /// Runs `f` with this thread's pool for `Self`.
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> R;

    /// `C = A B` with the `gemm` crate (on one thread), for `A` (m, k) and `B` (k, n) given by
    /// pointer and element strides, into `c`, row-major with row stride
    /// `ldc`.
    ///
    /// # Safety
    /// The pointers and strides must describe valid arrays of those shapes;
    /// `c` must have room for `m * n` elements (it may be uninitialised:
    /// gemm is told not to read C).
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        ldc: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
    );

    /// Four dot products of `x` with `ys[t]` over `len` elements (a
    /// multiple of 8), each as eight lane sums `s_l = sum_q x[8q+l] y[8q+l]`
    /// by fused multiply-adds, folded as `((s0 + s4) + (s1 + s5)) + ((s2 +
    /// s6) + (s3 + s7))`: written with AVX2 intrinsics, because LLVM
    /// vectorised the portable loop for f32 across the four columns, with
    /// a shuffle per multiply-add.
    ///
    /// # Safety
    /// `x` and each `ys[t]` hold `len` elements; the CPU has AVX2 and FMA.
    unsafe fn dot4_fma(x: *const Self, ys: [*const Self; 4], len: usize) -> [Self; 4];
}

macro_rules! pooled {
    ($t:ty, $pool:ident, $gemm:path, $dot4:path) => {
        impl Pooled for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Pool<$t>) -> R) -> R {
                $pool.with(|p| f(&mut p.borrow_mut()))
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                ldc: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                c: *mut $t,
            ) {
                // SAFETY: forwarded from the caller. gemm takes (rows,
                // columns, inner) and column stride before row stride; with
                // read_dst false it writes C without reading it.
                unsafe {
                    $gemm(
                        m,
                        n,
                        k,
                        c,
                        1,
                        ldc as isize,
                        false,
                        a,
                        csa,
                        rsa,
                        b,
                        csb,
                        rsb,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            }
            unsafe fn dot4_fma(x: *const $t, ys: [*const $t; 4], len: usize) -> [$t; 4] {
                // SAFETY: forwarded from the caller.
                unsafe { $dot4(x, ys, len) }
            }
        }
    };
}
pooled!(f32, POOL_F32, gemm::gemm::<f32>, crate::kernels::dot4_f32);
pooled!(f64, POOL_F64, gemm::gemm::<f64>, crate::kernels::dot4_f64);

/// An empty vector with room for `len` elements, reused if one is free.
#[inline]
pub(crate) fn take<T: Element>(len: usize) -> Vec<T> {
    if len < MIN_LEN {
        return Vec::with_capacity(len);
    }
    T::with_pool(|p| {
        let v = p.free.get_mut(&len).and_then(|l| l.pop());
        match v {
            Some(mut v) => {
                p.bytes -= v.capacity() * std::mem::size_of::<T>();
                v.clear();
                v
            }
            None => fresh(len),
        }
    })
}

/// Buffers of at least this many bytes are asked to live on huge pages.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const HUGE_BYTES: usize = 4 << 20;

/// A new, untouched vector with room for `len` elements. A large one is
/// marked for transparent huge pages before any of it is touched, so the
/// kernel backs it with 2 MiB pages where it can, as numpy does for its
/// large arrays: the buffer is faulted in with one fault per 2 MiB instead
/// of one per 4 KiB, and passes over it need fewer TLB entries. Advice
/// only: where the kernel declines, nothing changes.
fn fresh<T>(len: usize) -> Vec<T> {
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut v = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes >= HUGE_BYTES {
            // SAFETY: sysconf only reads a system setting.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
            let start = v.as_mut_ptr() as usize;
            let (lo, hi) = (start.next_multiple_of(page), (start + bytes) / page * page);
            // SAFETY: madvise only gives advice about whole pages inside
            // this vector's own buffer; it changes neither their contents
            // nor the mapping. A refusal (an error return) changes nothing.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

/// How many free buffers of length `len` this thread's pool holds.
#[cfg(test)]
pub(crate) fn free_count<T: Element>(len: usize) -> usize {
    T::with_pool(|p| p.free.get(&len).map_or(0, Vec::len))
}

/// A copy of `view` in standard (row-major) layout, in a pooled buffer.
pub(crate) fn to_value<T: Element>(view: ndarray::ArrayViewD<'_, T>) -> Value<T> {
    if view.len() <= SMALL_LEN {
        if let Some(s) = view.as_slice() {
            if let Some(v) = fill_small(view.shape(), |o| o.copy_from_slice(s)) {
                return v;
            }
        }
    }
    let mut v = take(view.len());
    if let Some(s) = view.as_slice() {
        v.extend_from_slice(s);
    } else if view.strides().iter().all(|&s| s == 0) {
        // A broadcast scalar.
        v.resize(view.len(), view.iter().next().copied().unwrap_or(T::zero()));
    } else if view.ndim() == 2 {
        for row in view.outer_iter() {
            match row.as_slice() {
                Some(s) => v.extend_from_slice(s),
                None if row.strides()[0] == 0 && !row.is_empty() => v.resize(v.len() + row.len(), row[0]),
                None => v.extend(row.iter().copied()),
            }
        }
    } else {
        v.extend(view.iter().copied());
    }
    value_from(view.raw_dim(), v)
}

/// A row-major value of shape `dim` over `v`, which must hold exactly
/// `dim`'s number of elements (asserted: every caller
/// fills a buffer of that length). Skips ndarray's shape validation, a
/// large share of the cost of an op on a tiny tensor.
#[inline]
pub(crate) fn value_from<T: Element>(dim: ndarray::IxDyn, v: Vec<T>) -> Value<T> {
    assert!(v.len() == ndarray::Dimension::size(&dim), "value_from: length mismatch");
    // SAFETY: a standard-layout array of `dim` over exactly its number of
    // elements (asserted above) is valid.
    unsafe { ndarray::Array::from_shape_vec_unchecked(dim, v) }.into_shared()
}

/// A small value of shape `shape` filled by `fill` (which writes every
/// element of the row-major slice it is given), made from a free value if
/// one of the last few freed has that shape and is in standard layout;
/// `None` otherwise.
#[inline(always)]
pub(crate) fn fill_small<T: Element>(shape: &[usize], fill: impl FnOnce(&mut [T])) -> Option<Value<T>> {
    let mut out = T::with_pool(|p| {
        let n = p.small.len();
        let i = (n.saturating_sub(SMALL_WINDOW)..n)
            .rev()
            .find(|&i| crate::shape::same(p.small[i].shape(), shape))?;
        p.small.swap_remove_back(i)
    })?;
    fill(out.as_slice_mut()?);
    Some(out)
}

/// Gives a value's buffer back to the pool when nothing else shares it.
pub(crate) fn recycle<T: Element>(v: Value<T>) {
    if v.len() >= MIN_LEN || v.len() <= SMALL_LEN {
        T::with_pool(|p| p.recycle(v));
    }
}

/// Gives a buffer taken by [`take`] back to this thread's pool, for a
/// kernel's own temporaries.
pub(crate) fn give_back<T: Element>(v: Vec<T>) {
    T::with_pool(|p| p.give(v));
}

/// `v` in a box, reusing an empty one if this thread's pool has one: the
/// tape holds every array value and gradient boxed (see `repr.rs`), and
/// W2's steps made thirty such boxes each, a malloc and a free apiece.
#[inline]
pub(crate) fn boxed<T: Element>(v: Value<T>) -> Box<Value<T>> {
    match T::with_pool(|p| p.boxes.pop()) {
        Some(mut b) => {
            b.write(v);
            // SAFETY: just initialised.
            unsafe { b.assume_init() }
        }
        None => Box::new(v),
    }
}

/// [`recycle`] for boxed values (from [`boxed`] or not), with one look-up
/// of the thread's pool; the empty boxes are kept too.
pub(crate) fn recycle_boxes<T: Element>(values: impl Iterator<Item = Box<Value<T>>>) {
    T::with_pool(|p| {
        for b in values {
            let raw = Box::into_raw(b);
            // SAFETY: `raw` is a live, initialised box, read exactly once;
            // the box is then owned as uninitialised memory of the same
            // layout, so the value is neither dropped twice nor leaked.
            let (v, shell) = unsafe { (raw.read(), Box::from_raw(raw.cast::<MaybeUninit<Value<T>>>())) };
            if p.boxes.len() < MAX_BOXES {
                p.boxes.push(shell);
            }
            p.recycle(v);
        }
    });
}

impl<T: Element> Pool<T> {
    fn recycle(&mut self, v: Value<T>) {
        if v.len() <= SMALL_LEN {
            if v.is_unique() {
                if self.small.len() >= SMALL_MAX {
                    self.small.pop_front();
                }
                self.small.push_back(v);
            }
        } else if v.len() >= MIN_LEN {
            if let Ok(owned) = v.try_into_owned_nocopy() {
                let (vec, _) = owned.into_raw_vec_and_offset();
                self.give(vec);
            }
        }
    }

    fn give(&mut self, vec: Vec<T>) {
        let len = vec.len();
        let bytes = vec.capacity() * std::mem::size_of::<T>();
        if len < MIN_LEN || self.bytes + bytes > MAX_BYTES {
            return;
        }
        let list = self.free.entry(len).or_default();
        if list.len() < MAX_PER_LEN {
            self.bytes += bytes;
            list.push(vec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_reused_and_hold_the_new_value() {
        let b = boxed(Value::<f64>::from_elem(ndarray::IxDyn(&[3, 40]), 1.5));
        let addr = std::ptr::from_ref::<Value<f64>>(&b) as usize;
        recycle_boxes(std::iter::once(b));
        // The value went to the buffer pool, the box to the box list.
        assert!(free_count::<f64>(120) >= 1);
        let again = boxed(Value::<f64>::from_elem(ndarray::IxDyn(&[2]), 7.0));
        assert_eq!(std::ptr::from_ref::<Value<f64>>(&again) as usize, addr);
        assert_eq!(again.as_slice(), Some(&[7.0, 7.0][..]));
        // A value still shared elsewhere is not reused; its box is.
        let shared = Value::<f64>::from_elem(ndarray::IxDyn(&[4, 40]), 2.0);
        let before = free_count::<f64>(160);
        recycle_boxes(std::iter::once(Box::new(shared.clone())));
        assert_eq!(free_count::<f64>(160), before);
        assert_eq!(shared.sum(), 320.0);
    }

    #[test]
    fn a_full_small_list_keeps_the_newest_values() {
        // Fill the list with values of a shape nobody asks for, then free
        // one of another shape: it is found (the oldest was dropped for
        // it, not the newest refused).
        f32::with_pool(|p| {
            while p.small.len() < SMALL_MAX {
                p.small.push_back(Value::from_elem(ndarray::IxDyn(&[1, 3]), 0.0));
            }
        });
        recycle(Value::<f32>::from_elem(ndarray::IxDyn(&[5, 1]), 0.0));
        let got = fill_small::<f32>(&[5, 1], |o| o.fill(2.0)).expect("the newest small value is kept");
        assert_eq!(got.as_slice(), Some(&[2.0; 5][..]));
        assert_eq!(f32::with_pool(|p| p.small.len()), SMALL_MAX - 1);
        f32::with_pool(|p| p.small.clear());
    }

    /// A new buffer of 4 MiB or more is advised onto huge pages before it
    /// is touched: the kernel marks the advised range of the mapping
    /// (`hg` in its `VmFlags` in /proc/self/smaps). Checked only where the
    /// kernel offers transparent huge pages at all.
    #[test]
    #[cfg(target_os = "linux")]
    fn large_new_buffers_are_advised_onto_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if thp.is_empty() || thp.contains("[never]") {
            return;
        }
        // The size and flags of the mapping that holds the page at `addr`.
        let mapping_at = |addr: usize| -> (usize, String) {
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            let mut inside = None;
            for line in smaps.lines() {
                let range = line.split_whitespace().next().unwrap_or("");
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
                        inside = (lo..hi).contains(&addr).then_some(hi - lo);
                        continue;
                    }
                }
                if let (Some(size), true) = (inside, line.starts_with("VmFlags:")) {
                    return (size, line.to_string());
                }
            }
            panic!("no mapping holds {addr:#x}");
        };
        let page_in = |v: &Vec<f32>| (v.as_ptr() as usize).next_multiple_of(4096) + 4096;
        let big = super::fresh::<f32>(super::HUGE_BYTES / 4 + 1000);
        assert!(big.capacity() >= super::HUGE_BYTES / 4 + 1000);
        let (_, flags) = mapping_at(page_in(&big));
        assert!(flags.contains(" hg"), "{flags}");
        // Below the threshold nothing is advised. Checked when glibc maps
        // the 1 MiB buffer on its own (as in a fresh process), so that the
        // flags are its own: once other tests have freed large blocks,
        // glibc may serve it from a heap range an earlier large buffer had
        // advised, and the advice stays with the range.
        let small = super::fresh::<f32>(1 << 18);
        let (size, flags) = mapping_at(page_in(&small));
        if size <= (1 << 20) + (64 << 10) {
            assert!(!flags.contains(" hg"), "{flags}");
        }
    }
}
