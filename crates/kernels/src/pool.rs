//! A per-thread pool of large buffers, so a training loop reuses the same
//! memory every iteration instead of asking the allocator for fresh
//! multi-megabyte blocks (which glibc maps and unmaps each time, paying a
//! page fault per 4 KiB on every use).
//!
//! Buffers come back when the autodiff layer clears its tape or drops its
//! gradients; the kernels (`map`, `zip`, the products) take from here
//! first. Tiny values (at most
//! [`SMALL_LEN`] elements) are kept whole, array and reference count, so an
//! op on tiny tensors makes no allocation and no shape. The empty boxes a
//! tape keeps array values in come back too. Only values nothing else
//! references come back, so a value a user still holds is never reused.

use crate::{Element, Value};
use ndarray::IxDyn;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;

/// Hashes a buffer length with one multiplication (Fibonacci hashing)
/// instead of SipHash, which costs more than the look-up it serves.
#[derive(Default)]
struct LenHasher(u64);

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
/// stops at about 1 KiB.
const MIN_LEN: usize = SMALL_LEN + 1;
/// At most this many bytes are kept per thread and element type.
const MAX_BYTES: usize = 512 << 20;
/// At most this many buffers are kept per length.
const MAX_PER_LEN: usize = 64;

/// Values of at most this many elements are kept whole (buffer, reference
/// count and shape), so an op on tiny tensors reuses a value instead of
/// making two heap allocations and a shape.
pub const SMALL_LEN: usize = 16;
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
struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>, BuildHasherDefault<LenHasher>>,
    /// Free values of more than [`SMALL_LEN`] elements kept whole (array
    /// and reference count), by length: [`value_with`] reshapes one
    /// instead of making a new reference count.
    whole: HashMap<usize, Vec<Value<T>>, BuildHasherDefault<LenHasher>>,
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

/// Runs `f` with this thread's pool for `T` (the type test folds away).
#[inline(always)]
fn with_pool<T: Element, R>(f: impl FnOnce(&mut Pool<T>) -> R) -> R {
    fn of<T: 'static, U: 'static, R>(p: &mut Pool<U>, f: impl FnOnce(&mut Pool<T>) -> R) -> R {
        f((p as &mut dyn Any).downcast_mut::<Pool<T>>().expect("the pool of this element type"))
    }
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        POOL_F32.with(|p| of(&mut p.borrow_mut(), f))
    } else {
        POOL_F64.with(|p| of(&mut p.borrow_mut(), f))
    }
}

/// An empty vector with room for `len` elements, reused if one is free.
///
/// ```
/// let v = tapegrad_kernels::pool::take::<f32>(1000);
/// assert!(v.is_empty() && v.capacity() >= 1000);
/// ```
#[inline]
pub fn take<T: Element>(len: usize) -> Vec<T> {
    if len < MIN_LEN {
        return Vec::with_capacity(len);
    }
    with_pool::<T, _>(|p| {
        if let Some(mut v) = p.free.get_mut(&len).and_then(|l| l.pop()) {
            p.bytes -= v.capacity() * std::mem::size_of::<T>();
            v.clear();
            return v;
        }
        if let Some(v) = p.take_whole(len)
            && let Ok(owned) = v.try_into_owned_nocopy()
        {
            let (mut v, _) = owned.into_raw_vec_and_offset();
            v.clear();
            return v;
        }
        fresh(len)
    })
}

/// A new value of shape `shape` in standard layout, written by `fill`
/// (which must write every element of the slice it is given, in
/// row-major order): made from a free value of that many elements, kept
/// whole, when there is one (no allocation at all), else from a pooled or
/// new buffer.
///
/// ```
/// use tapegrad_kernels::{pool, ndarray::IxDyn, Value};
/// let v = pool::value_with::<f32>(&[2, 20], |o| for x in o.iter_mut() { x.write(1.5); });
/// assert_eq!(v.shape(), &[2, 20]);
/// assert_eq!(v.sum(), 60.0);
/// let ptr = v.as_ptr();
/// pool::recycle(v);
/// // The same array comes back, in another shape of the same length.
/// let w = pool::value_with::<f32>(&[40], |o| for x in o.iter_mut() { x.write(0.0); });
/// assert_eq!(w.as_ptr(), ptr);
/// ```
#[inline]
pub fn value_with<T: Element>(shape: &[usize], fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Value<T> {
    let len: usize = shape.iter().product();
    let mut fill = Some(fill);
    if len <= SMALL_LEN {
        let small = fill_small(shape, |o| (fill.take().expect("called once"))(as_uninit(o)));
        if let Some(v) = small {
            return v;
        }
    } else if let Some(mut v) = with_pool::<T, _>(|p| p.take_whole(len)) {
        (fill.take().expect("not called yet"))(as_uninit(
            v.as_slice_mut().expect("a whole value is standard"),
        ));
        return v.into_shape_with_order(IxDyn(shape)).expect("the same length");
    }
    let mut v = take::<T>(len);
    (fill.take().expect("not called yet"))(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` elements (its contract).
    unsafe { v.set_len(len) };
    value_from(IxDyn(shape), v)
}

/// An initialised slice seen as one to write into.
fn as_uninit<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and writing only
    // initialised values into an initialised slice keeps it initialised.
    unsafe { &mut *(std::ptr::from_mut(s) as *mut [MaybeUninit<T>]) }
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

/// How many free buffers of length `len` this thread's pool holds, alone
/// or in whole values (for tests that a kernel or a rule gives its
/// temporaries back).
///
/// ```
/// use tapegrad_kernels::pool;
/// let before = pool::free_count::<f32>(300);
/// let mut v = pool::take::<f32>(300);
/// v.resize(300, 0.0);
/// pool::give_back(v);
/// assert_eq!(pool::free_count::<f32>(300), before + 1);
/// ```
pub fn free_count<T: Element>(len: usize) -> usize {
    with_pool::<T, _>(|p| p.free.get(&len).map_or(0, Vec::len) + p.whole.get(&len).map_or(0, Vec::len))
}

/// A copy of `view` in standard (row-major) layout, in a pooled buffer.
///
/// ```
/// use tapegrad_kernels::ndarray::array;
/// let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// let t = tapegrad_kernels::pool::to_value(a.t());
/// assert!(t.is_standard_layout());
/// assert_eq!(t, a.t());
/// ```
pub fn to_value<T: Element>(view: ndarray::ArrayViewD<'_, T>) -> Value<T> {
    value_with(view.shape(), |out| {
        if let Some(s) = view.as_slice() {
            put(out, s.iter().copied());
        } else if view.strides().iter().all(|&s| s == 0) {
            // A broadcast scalar.
            let v = view.iter().next().copied().unwrap_or(T::zero());
            put(out, std::iter::repeat(v));
        } else if view.ndim() == 2 && view.shape()[1] > 0 {
            for (row, o) in view.outer_iter().zip(out.chunks_mut(view.shape()[1])) {
                match row.as_slice() {
                    Some(s) => put(o, s.iter().copied()),
                    None if row.strides()[0] == 0 => put(o, std::iter::repeat(row[0])),
                    None => put(o, row.iter().copied()),
                }
            }
        } else {
            put(out, view.iter().copied());
        }
    })
}

/// Writes `from` into `out`, element by element (a loop the compiler
/// sees whole, for each kind of iterator).
#[inline(always)]
fn put<T: Copy>(out: &mut [MaybeUninit<T>], from: impl Iterator<Item = T>) {
    for (o, v) in out.iter_mut().zip(from) {
        o.write(v);
    }
}

/// A row-major value of shape `dim` over `v`, which must hold exactly
/// `dim`'s number of elements (asserted: every caller
/// fills a buffer of that length). Skips ndarray's shape validation, a
/// large share of the cost of an op on a tiny tensor.
///
/// ```
/// use tapegrad_kernels::ndarray::IxDyn;
/// let v = tapegrad_kernels::pool::value_from(IxDyn(&[2, 2]), vec![1.0f64, 2.0, 3.0, 4.0]);
/// assert_eq!(v[[1, 0]], 3.0);
/// ```
#[inline]
pub fn value_from<T: Element>(dim: ndarray::IxDyn, v: Vec<T>) -> Value<T> {
    assert!(v.len() == ndarray::Dimension::size(&dim), "value_from: length mismatch");
    // SAFETY: a standard-layout array of `dim` over exactly its number of
    // elements (asserted above) is valid.
    unsafe { ndarray::Array::from_shape_vec_unchecked(dim, v) }.into_shared()
}

/// A small value of shape `shape` filled by `fill` (which writes every
/// element of the row-major slice it is given), made from a free value if
/// one of the last few freed has that shape and is in standard layout;
/// `None` otherwise.
///
/// ```
/// use tapegrad_kernels::{pool, ndarray::IxDyn, Value};
/// pool::recycle(Value::<f64>::zeros(IxDyn(&[1, 3])));
/// let v = pool::fill_small::<f64>(&[1, 3], |o| o.fill(2.0)).expect("the value just freed");
/// assert_eq!(v.sum(), 6.0);
/// ```
#[inline(always)]
pub fn fill_small<T: Element>(shape: &[usize], fill: impl FnOnce(&mut [T])) -> Option<Value<T>> {
    let mut out = with_pool::<T, _>(|p| {
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
///
/// ```
/// use tapegrad_kernels::{pool, ndarray::IxDyn, Value};
/// let v = Value::<f32>::zeros(IxDyn(&[100]));
/// let kept = v.clone();
/// pool::recycle(v); // shared with `kept`: not reused
/// assert_eq!(kept.len(), 100);
/// ```
pub fn recycle<T: Element>(v: Value<T>) {
    if v.len() >= MIN_LEN || v.len() <= SMALL_LEN {
        with_pool::<T, _>(|p| p.recycle(v));
    }
}

/// Gives a buffer taken by [`take`] back to this thread's pool, for a
/// kernel's own temporaries.
///
/// ```
/// use tapegrad_kernels::pool;
/// let mut v = pool::take::<f64>(500);
/// v.resize(500, 0.0);
/// pool::give_back(v);
/// assert!(pool::take::<f64>(500).capacity() >= 500);
/// ```
pub fn give_back<T: Element>(v: Vec<T>) {
    with_pool::<T, _>(|p| p.give(v));
}

/// `v` in a box, reusing an empty one if this thread's pool has one (a
/// tape holds every array value and gradient boxed).
///
/// ```
/// use tapegrad_kernels::{pool, ndarray::IxDyn, Value};
/// let b = pool::boxed(Value::<f64>::ones(IxDyn(&[2])));
/// assert_eq!(b.sum(), 2.0);
/// pool::recycle_boxes(std::iter::once(b));
/// ```
#[inline]
pub fn boxed<T: Element>(v: Value<T>) -> Box<Value<T>> {
    match with_pool::<T, _>(|p| p.boxes.pop()) {
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
///
/// ```
/// use tapegrad_kernels::{pool, ndarray::IxDyn, Value};
/// let boxes = vec![Box::new(Value::<f32>::zeros(IxDyn(&[64])))];
/// pool::recycle_boxes(boxes.into_iter());
/// ```
pub fn recycle_boxes<T: Element>(values: impl Iterator<Item = Box<Value<T>>>) {
    with_pool::<T, _>(|p| {
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
            if v.is_unique() && v.is_standard_layout() {
                // Whole, when it is all of its buffer.
                let len = v.len();
                let bytes = len * std::mem::size_of::<T>();
                if self.bytes + bytes <= MAX_BYTES {
                    let list = self.whole.entry(len).or_default();
                    if list.len() < MAX_PER_LEN {
                        self.bytes += bytes;
                        list.push(v);
                        return;
                    }
                }
            }
            if let Ok(owned) = v.try_into_owned_nocopy() {
                let (vec, _) = owned.into_raw_vec_and_offset();
                self.give(vec);
            }
        }
    }

    /// A free whole value of `len` elements.
    fn take_whole(&mut self, len: usize) -> Option<Value<T>> {
        let v = self.whole.get_mut(&len)?.pop()?;
        self.bytes -= len * std::mem::size_of::<T>();
        Some(v)
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
        with_pool::<f32, _>(|p| {
            while p.small.len() < SMALL_MAX {
                p.small.push_back(Value::from_elem(ndarray::IxDyn(&[1, 3]), 0.0));
            }
        });
        recycle(Value::<f32>::from_elem(ndarray::IxDyn(&[5, 1]), 0.0));
        let got = fill_small::<f32>(&[5, 1], |o| o.fill(2.0)).expect("the newest small value is kept");
        assert_eq!(got.as_slice(), Some(&[2.0; 5][..]));
        assert_eq!(with_pool::<f32, _>(|p| p.small.len()), SMALL_MAX - 1);
        with_pool::<f32, _>(|p| p.small.clear());
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
                if let Some((lo, hi)) = range.split_once('-')
                    && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr).then_some(hi - lo);
                    continue;
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
