//! Matrix products: the path choice by shape, strides and CPU, the
//! splitting across cores, and the epilogue (bias, relu, gate) of each.
//!
//! - a short inner dimension (k <= 32) or at most 4 rows of C, with B's
//!   rows contiguous, goes to the thin kernel `small_k`, which applies the
//!   whole epilogue as it stores (a GEMM would pack all of B to use it
//!   once or a few times);
//! - a tiny C (or at most 4 columns) with a long inner dimension goes to
//!   `dots`, one dot product per element;
//! - everything else is a general GEMM cut into blocks: the tiled GEMM
//!   (`tiled`, f32 and f64, on the micro-kernel of the CPU's instruction
//!   set, with the epilogue in its store), or on the `gemm` path the
//!   `gemm` crate, with the epilogue applied to each block by the core
//!   that computed it.
//!
//! [`Path`](crate::cpu::Path) says which of these a process may take; the
//! environment variable `TAPEGRAD_KERNELS` forces one, so the test suite
//! can run on every path a CPU has.

use crate::cpu::path;
use crate::operand::{Epilogue, Out, Strided};
use crate::par::{self, SendPtr};
use crate::{pool, thin, tiled, Element, Value};
use ndarray::{Array2, ArrayView2};

/// `A B` into a pooled, row-major buffer. Transposed operands are read
/// through their strides, never copied.
///
/// # Panics
/// When the inner sizes differ.
///
/// ```
/// use tapegrad_kernels::{ndarray::array, product::matmul};
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// assert_eq!(matmul(a.view(), a.t()), array![[5.0, 11.0], [11.0, 25.0]]);
/// ```
#[track_caller]
pub fn matmul<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    owned(product_value(a, b, None, false, None))
}

/// `act(A B + bias)` into a pooled, row-major buffer, with `bias` of shape
/// (m, 1) and `act` relu (`relu(z) = z` for `z > 0`, else `+0`; NaN kept)
/// or the identity, applied as the product is stored. Large products are
/// split across cores.
///
/// # Panics
/// When the inner sizes differ, or the bias is not (m, 1).
///
/// ```
/// use tapegrad_kernels::{ndarray::array, product::affine};
/// let w = array![[1.0, -2.0]];
/// let x = array![[1.0, 0.0], [1.0, 1.0]];
/// let b = array![[0.5]];
/// assert_eq!(affine(w.view(), x.view(), Some(b.view()), true), array![[0.0, 0.0]]);
/// assert_eq!(affine(w.view(), x.view(), Some(b.view()), false), array![[-0.5, -1.5]]);
/// ```
#[track_caller]
pub fn affine<T: Element>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView2<'_, T>>,
    relu: bool,
) -> Array2<T> {
    owned(product_value(a, b, bias, relu, None))
}

/// `(A B) * [gate > 0]`, the gate (the product's shape, row-major) applied
/// as each block of the product is stored: a backward rule's
/// `dX = (W^T dZ) * relu'(X)` in one pass.
///
/// # Panics
/// When the inner sizes differ or the gate does not hold m * n values.
///
/// ```
/// use tapegrad_kernels::{ndarray::array, product::matmul_gated};
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// let gate = [1.0, 0.0, -1.0, 2.0];
/// assert_eq!(matmul_gated(a.view(), a.view(), &gate), array![[7.0, 0.0], [0.0, 22.0]]);
/// ```
#[track_caller]
pub fn matmul_gated<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>, gate: &[T]) -> Array2<T> {
    owned(product_value(a, b, None, false, Some(gate)))
}

/// The 2-D array of a product.
fn owned<T: Element>(v: Value<T>) -> Array2<T> {
    v.into_dimensionality::<ndarray::Ix2>().expect("a product is 2-D").into_owned()
}

/// The one product behind [`matmul`], [`affine`] and [`matmul_gated`]
/// (`act(A B + bias) * [gate > 0]`, with each part optional), as the
/// dynamic-rank value the autodiff layer keeps, in a pooled buffer (a free
/// value of its length reused whole, when there is one): the shape
/// checks, then the product of the concrete element type.
///
/// # Panics
/// When the inner sizes differ, the bias is not (m, 1), or the gate does
/// not hold m * n values.
///
/// ```
/// use tapegrad_kernels::{ndarray::array, product::product_value};
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// let b = array![[0.5], [-1.0]];
/// let z = product_value(a.view(), a.view(), Some(b.view()), true, None);
/// assert_eq!(z, array![[7.5, 10.5], [14.0, 21.0]].into_dyn());
/// ```
#[track_caller]
pub fn product_value<T: Element>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView2<'_, T>>,
    relu: bool,
    gate: Option<&[T]>,
) -> Value<T> {
    check_shapes(&a, &b, bias.as_ref(), gate);
    use std::any::TypeId;
    // The kernels are compiled here, for f32 and f64, whatever the caller's
    // optimisation level: a generic call would compile them again in every
    // crate that multiplies (in test builds, at opt-level 1).
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (tested above), so each cast is from a type to
        // itself; the borrowed inputs are used only during the call, whose
        // result is owned.
        unsafe { cast::<Value<f32>, Value<T>>(product_f32(cast(a), cast(b), cast(bias), relu, cast(gate))) }
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: as above, T is f64.
        unsafe { cast::<Value<f64>, Value<T>>(product_f64(cast(a), cast(b), cast(bias), relu, cast(gate))) }
    } else {
        unreachable!("Element is sealed: f32 and f64 only")
    }
}

/// Reinterprets a value of a type as the same type spelled with another
/// element parameter.
///
/// # Safety
/// `A` and `B` must be the same type.
unsafe fn cast<A, B>(a: A) -> B {
    debug_assert_eq!(std::mem::size_of::<A>(), std::mem::size_of::<B>());
    // SAFETY: the caller's contract: A is B.
    unsafe { std::mem::transmute_copy(&std::mem::ManuallyDrop::new(a)) }
}

#[inline(never)]
fn product_f32(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    bias: Option<ArrayView2<'_, f32>>,
    relu: bool,
    gate: Option<&[f32]>,
) -> Value<f32> {
    product_of(a, b, bias, relu, gate)
}

#[inline(never)]
fn product_f64(
    a: ArrayView2<'_, f64>,
    b: ArrayView2<'_, f64>,
    bias: Option<ArrayView2<'_, f64>>,
    relu: bool,
    gate: Option<&[f64]>,
) -> Value<f64> {
    product_of(a, b, bias, relu, gate)
}

/// The product's panics on shapes that do not fit (at the caller's line).
#[track_caller]
fn check_shapes<T: Element>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    bias: Option<&ArrayView2<'_, T>>,
    gate: Option<&[T]>,
) {
    let ((m, k), n) = (a.dim(), b.ncols());
    if b.nrows() != k {
        panic!("matmul: shapes {:?} and {:?} are not (n, k) and (k, m)", a.shape(), b.shape());
    }
    if let Some(v) = bias
        && v.dim() != (m, 1)
    {
        panic!("affine: bias of shape {:?} for a product with {m} rows; expected ({m}, 1)", v.shape());
    }
    if let Some(g) = gate
        && g.len() != m * n
    {
        panic!("matmul_gated: gate of {} values for a product of shape [{m}, {n}]", g.len());
    }
}

/// The product on checked shapes.
fn product_of<T: Element>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView2<'_, T>>,
    relu: bool,
    gate: Option<&[T]>,
) -> Value<T> {
    let ((m, k), n) = (a.dim(), b.ncols());
    debug_assert_eq!(b.nrows(), k);
    let epi = Epilogue {
        bias: bias.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        bias_stride: bias.as_ref().map_or(0, |v| v.strides()[0]),
        relu,
        gate: gate.map_or(std::ptr::null(), <[T]>::as_ptr),
        gate_ld: n,
    };
    pool::value_with(&[m, n], |c| {
        // SAFETY: the views are valid (m, k) and (k, n) arrays with their
        // strides; the bias holds m values at its stride and the gate m *
        // n (checked above); `c` holds m * n elements, all of which `into`
        // writes.
        unsafe {
            let (sa, sb) = (a.strides(), b.strides());
            let sa = Strided { ptr: a.as_ptr(), rs: sa[0], cs: sa[1] };
            let sb = Strided { ptr: b.as_ptr(), rs: sb[0], cs: sb[1] };
            into([m, k, n], sa, sb, c.as_mut_ptr().cast::<T>(), &epi);
        }
    })
}

/// `C = epi(A B)` into `c`, row-major (m, n), on the path the shape,
/// strides and CPU choose.
///
/// # Safety
/// A and B are valid arrays of those shapes and strides; `c` has room for
/// m * n elements (it may be uninitialised: every element is written); the
/// epilogue's bias and gate cover C's rows and columns (gate row stride n).
unsafe fn into<T: Element>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    c: *mut T,
    epi: &Epilogue<T>,
) {
    let out = Out { ptr: c, ld: n };
    if m * n == 0 {
        return;
    }
    // SAFETY (every branch): the caller's contract, and each kernel's
    // stride requirement is tested before it is called.
    unsafe {
        if k == 0 {
            for i in 0..m * n {
                *c.add(i) = T::zero();
            }
            return epi.apply(out, m, n);
        }
        if (k <= 32 || m <= SMALL_K_ROWS) && b.cs == 1 && n >= 64 {
            // The thin kernel applies the whole epilogue as it stores.
            let cols = |j0: usize, j1: usize| {
                thin::small_k([m, k, j1 - j0], a, b.at(0, j0), &epi.at(0, j0), out.at(0, j0));
            };
            return par::split_sized(n, m * n, col_pieces(m, k, n), 8, &cols);
        }
        if (m * n <= 1024 || n <= 4) && k >= 64 && a.cs == 1 && b.rs == 1 {
            dots_split([m, k, n], a, b, c);
            return epi.apply(out, m, n);
        }
        gemm_blocks([m, k, n], a, b, out, epi);
    }
}

/// Products with at most this many rows go to `small_k` whatever their
/// inner dimension (as `W[L] A[L-1]` for a network's output layer): the
/// tiled GEMM would pack all of B to use each packed value this many
/// times at most.
const SMALL_K_ROWS: usize = 4;

/// Products with at least this many multiply-adds are split across cores;
/// below it, handing work to another core costs more than it saves.
const PARALLEL_MACS: usize = 1 << 16;

/// How many blocks of columns (each at least 8 wide) to split an (m, k)
/// by (k, n) product into.
fn col_pieces(m: usize, k: usize, n: usize) -> usize {
    par::pieces(m * n * k, PARALLEL_MACS).min(n / 8).max(1)
}

/// `dots` with the inner dimension split in two halves on two cores when
/// large, the halves added in a fixed order (so the result does not depend
/// on the number of cores).
///
/// # Safety
/// As [`thin::dots`].
unsafe fn dots_split<T: Element>([m, k, n]: [usize; 3], a: Strided<T>, b: Strided<T>, c: *mut T) {
    if m * n * k < 2 * PARALLEL_MACS || k < 2048 {
        // SAFETY: the caller's contract.
        return unsafe { thin::dots([m, k, n], a, b, c) };
    }
    let half = (k / 2) & !7;
    let mut hi = vec![T::zero(); m * n];
    let (cp, hp) = (SendPtr(c), SendPtr(hi.as_mut_ptr()));
    par::join(
        // SAFETY (both halves): A's rows and B's columns are read over
        // their first `half` or last `k - half` elements; each half writes
        // its own m * n buffer.
        || unsafe { thin::dots([m, half, n], a, b, cp.get()) },
        || unsafe { thin::dots([m, k - half, n], a.at(0, half), b.at(half, 0), hp.get()) },
    );
    for (i, h) in hi.iter().enumerate() {
        // SAFETY: C holds m * n elements, written above.
        unsafe { *c.add(i) = *c.add(i) + *h };
    }
}

/// Ids for [`tiled::fused`], one per product, never 0.
static NEXT_PRODUCT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Products are cut into blocks of about this many multiply-adds (at
/// most [`MAX_BLOCKS`]), handed out to the cores as they come free.
const BLOCK_MACS: usize = 1 << 24;
/// Near the end of a product, blocks shrink towards this many
/// multiply-adds (a fraction of a millisecond on one core).
const MIN_BLOCK_MACS: usize = 1 << 23;
/// The most blocks a product is cut into.
const MAX_BLOCKS: usize = 32;
/// The most pieces the inner dimension is cut into (each piece's product
/// goes to a buffer of its own until they are added).
const MAX_K_PIECES: usize = 8;

/// One block of a general product: `out = epi(A B)` for the block's
/// operands, on the tiled GEMM of the path's instruction set (the
/// epilogue in its store), or on the `gemm` path the `gemm` crate with
/// the epilogue as a pass after it. A piece of a split inner dimension
/// (`piece`) on the AVX2 path also goes to the `gemm` crate: its packing
/// of two operands whose inner dimension is contiguous ran dW = dZ A^T 5%
/// faster there (TAPEGRAD_KERNELS=avx2 against =gemm, alternating, on an
/// AMD EPYC of the Zen 5 family); with AVX-512 the tiled GEMM is faster.
///
/// # Safety
/// As [`tiled::fused`]; `k > 0`.
unsafe fn block<T: Element>(
    dims: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    out: Out<T>,
    epi: &Epilogue<T>,
    product: u64,
    piece: bool,
) {
    // SAFETY: the caller's contract; the path's instruction set runs on
    // this CPU (`cpu::path` chooses only such paths).
    unsafe {
        match path().isa() {
            Some(isa) if !(piece && isa == tiled::Isa::Avx2) => {
                tiled::fused((isa, isa.blocks::<T>()), dims, a, b, out, epi, product)
            }
            _ => {
                gemm_crate(dims, a, b, out);
                epi.apply(out, dims[0], dims[2]);
            }
        }
    }
}

/// `C = A B` with the `gemm` crate on one thread, C written without being
/// read.
///
/// # Safety
/// A and B are valid arrays of those shapes and strides; C has room for m
/// rows of `out.ld >= n` elements.
unsafe fn gemm_crate<T: Element>([m, k, n]: [usize; 3], a: Strided<T>, b: Strided<T>, out: Out<T>) {
    // SAFETY: forwarded from the caller. gemm takes (rows, columns, inner)
    // and column stride before row stride; with read_dst false it writes C
    // without reading it. It dispatches on T itself (f32 or f64).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.ptr,
            1,
            out.ld as isize,
            false,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `C = epi(A B)`, C row-major with `n` elements between rows. Large
/// products are cut into blocks that the cores take as they come free
/// ([`par::share_guided`]): blocks of columns of C (at least 512 wide
/// where there are enough, so that packing A again for each costs little),
/// or of rows when C is taller than wide; and when the inner dimension
/// dwarfs both sides of C (dW = dZ A^T over a full batch), pieces of the
/// inner dimension, each into a buffer of its own (cut into blocks of
/// rows), added in a fixed order. The last blocks of a product are
/// smaller (down to about [`MIN_BLOCK_MACS`]), so that one core does not
/// sit idle while the other finishes a large one. The pieces of the inner
/// dimension are set by the shapes alone, and a cut into rows or columns
/// changes no element's sum (both GEMMs block the inner dimension by k
/// alone), so no result depends on the number of threads.
///
/// # Safety
/// As [`into`], with `k > 0` and `out.ld == n`.
unsafe fn gemm_blocks<T: Element>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    out: Out<T>,
    epi: &Epilogue<T>,
) {
    // This product's id: its blocks of columns read the same A, which the
    // tiled GEMM then packs once per thread.
    let product = NEXT_PRODUCT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Rows r0..r1, columns c0..c1 of C over the inner indices p0..p1.
    // SAFETY (every call below): the offsets stay inside A, B and C, and
    // each block writes only its own rows and columns of its output.
    let run = |[r0, r1, c0, c1, p0, p1]: [usize; 6], o: Out<T>, e: &Epilogue<T>| unsafe {
        let piece = p1 - p0 < k;
        let e = e.at(r0, c0);
        block([r1 - r0, p1 - p0, c1 - c0], a.at(r0, p0), b.at(p0, c0), o.at(r0, c0), &e, product, piece);
    };
    let none = Epilogue::NONE;
    let macs = m * n * k;
    let by_size = (macs / BLOCK_MACS).min(MAX_BLOCKS);
    let k_pieces = by_size.min(MAX_K_PIECES).min(k / 256);
    if k >= 4 * m.max(n) && k_pieces >= 2 {
        // Piece 0 goes straight to C, the others to buffers of their own.
        let mut parts: Vec<Vec<T>> = (1..k_pieces).map(|_| pool::take::<T>(m * n)).collect();
        let outs: Vec<Out<T>> = std::iter::once(out)
            .chain(parts.iter_mut().map(|v| Out { ptr: v.as_mut_ptr(), ld: n }))
            .collect();
        // Whole pieces, handed to the cores as they come free: a block of
        // fewer rows would pack its piece of B (a transpose, when B is
        // A^T) again for less work.
        par::share_guided(k_pieces * m, 16, m, m, &|i0, i1| {
            let mut i = i0;
            while i < i1 {
                let (p, r0) = (i / m, i % m);
                let r1 = (i1 - p * m).min(m);
                let (p0, p1) = par::block_bounds(k, k_pieces, 8, p);
                run([r0, r1, 0, n, p0, p1], outs[p], &none);
                i = p * m + r1;
            }
        });
        par::rows(m, n * k_pieces, &|r0, r1| {
            // SAFETY: every buffer holds m * n elements, all written above;
            // this block reads and writes rows r0..r1 only.
            unsafe {
                let cb = std::slice::from_raw_parts_mut(out.ptr.add(r0 * n), (r1 - r0) * n);
                for part in &outs[1..] {
                    let pb = std::slice::from_raw_parts(part.ptr.add(r0 * n), (r1 - r0) * n);
                    for (x, &y) in cb.iter_mut().zip(pb) {
                        *x = *x + y;
                    }
                }
                epi.at(r0, 0).apply(out.at(r0, 0), r1 - r0, n);
            }
        });
        for mut v in parts {
            // SAFETY: every element was written by its piece's product.
            unsafe { v.set_len(m * n) };
            pool::give_back(v);
        }
    } else {
        let threads = par::pieces(macs, PARALLEL_MACS);
        if m >= n {
            let blocks = threads.max(by_size.min(m / 128)).min(m / 8).max(1);
            let min_rows = (MIN_BLOCK_MACS / (n * k)).max(16);
            par::share_guided(m, 8, m.div_ceil(blocks), min_rows, &|r0, r1| {
                run([r0, r1, 0, n, 0, k], out, epi);
            });
        } else {
            let blocks = threads.max(by_size.min(n / 512)).min(n / 8).max(1);
            let min_cols = (MIN_BLOCK_MACS / (m * k)).max(16);
            par::share_guided(n, 8, n.div_ceil(blocks), min_cols, &|c0, c1| {
                run([0, m, c0, c1, 0, k], out, epi);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::random;
    use ndarray::Array2;
    /// Every path of `affine` (the thin kernels whole and split across
    /// cores, the inner dimension split in halves, the gemm crate in row
    /// and column blocks) against a naive triple loop, with and without
    /// bias and relu, on row-major and transposed operands.
    #[test]
    fn every_product_path_matches_the_naive_product() {
        let shapes = [
            (20, 3, 19_600),   // small_k, split by columns
            (64, 3, 19_600),   // small_k, shared blocks of columns
            (5, 7, 100),       // small_k, one piece
            (1, 512, 3_000),   // small_k for one row, a long inner dimension
            (3, 200, 700),     // small_k for a few rows, single-row tiles
            (4, 100, 131),     // small_k for four rows, a partial tile
            (6, 4_100, 7),     // dots, inner dimension split in halves
            (3, 80, 2),        // dots, one piece
            (300, 260, 40),    // gemm, split by rows
            (40, 260, 300),    // gemm, split by columns
            (9, 33, 10),       // gemm, one block
            (7, 300, 9_000),   // gemm, split by columns, wide blocks
            (64, 300, 9_000),  // gemm, ten shared blocks of columns
            (40, 30_000, 30),  // gemm, inner dimension in two pieces
            (1_100, 160, 200), // gemm, shared blocks of rows
            (0, 3, 5),         // empty
            (4, 0, 3),         // empty inner dimension: bias only
        ];
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            let seed = 10 * i as u64;
            let a: Array2<f64> = random(&[m, k], seed).into_dimensionality().unwrap();
            let bt: Array2<f64> = random(&[n, k], seed + 1).into_dimensionality().unwrap();
            let b = bt.t().as_standard_layout().into_owned();
            let bias: Array2<f64> = random(&[m, 1], seed + 2).into_dimensionality().unwrap();
            let mut naive = Array2::<f64>::zeros((m, n));
            for r in 0..m {
                for c in 0..n {
                    naive[[r, c]] = (0..k).map(|p| a[[r, p]] * b[[p, c]]).sum::<f64>();
                }
            }
            for (bv, relu) in [(None, false), (Some(bias.view()), false), (Some(bias.view()), true)] {
                let mut want = naive.clone();
                if let Some(bv) = bv {
                    want += &bv;
                }
                if relu {
                    want.mapv_inplace(|z| z.max(0.0));
                }
                // Both layouts of B: rows contiguous, and columns contiguous
                // (a transposed view), which choose different kernels.
                for got in
                    [super::affine(a.view(), b.view(), bv, relu), super::affine(a.view(), bt.t(), bv, relu)]
                {
                    // Sums of up to 4,100 products in different orders:
                    // well inside 1e-12 relative for terms of size ~1.
                    approx::assert_relative_eq!(got, want, max_relative = 1e-12, epsilon = 1e-11);
                }
            }
            // A transposed left operand (dW-style products read A^T).
            let at = a.t().as_standard_layout().into_owned();
            let got = super::affine(at.t(), b.view(), None, false);
            approx::assert_relative_eq!(got, naive, max_relative = 1e-12, epsilon = 1e-11);
            // The f32 kernels, against the f64 product: sums of up to 4,100
            // products of f32 inputs (each rounded to 6e-8 relative) agree
            // to about 1e-5 relative; 1e-4 leaves room, a wrong tile or
            // block does not fit. (Sums of 30,000 terms would need a
            // looser bound; the f64 check above covers that path.)
            if m * n * k >= 10_000 && k <= 5_000 {
                let (a32, b32, bias32) =
                    (a.mapv(|v| v as f32), b.mapv(|v| v as f32), bias.mapv(|v| v as f32));
                let got = super::affine(a32.view(), b32.view(), Some(bias32.view()), true).mapv(f64::from);
                let want = (naive.clone() + &bias).mapv(|z| z.max(0.0));
                approx::assert_relative_eq!(got, want, max_relative = 1e-4, epsilon = 1e-4);
                let got =
                    super::affine(a32.view(), b32.t().as_standard_layout().t(), None, false).mapv(f64::from);
                approx::assert_relative_eq!(got, naive, max_relative = 1e-4, epsilon = 1e-4);
            }
        }
    }

    /// `(A B) * [gate > 0]` on every product path equals the product
    /// masked afterwards, bit for bit (the gate keeps or zeroes each
    /// element); and the gate must have the product's shape.
    #[test]
    fn gated_products_are_the_products_masked() {
        for (i, &(m, k, n)) in [
            (20, 3, 19_600),
            (64, 1, 300),
            (512, 1, 19_600),
            (1, 512, 3_000),
            (3, 200, 700),
            (6, 4_100, 7),
            (300, 260, 40),
            (40, 260, 300),
            (40, 30_000, 30),
        ]
        .iter()
        .enumerate()
        {
            let seed = 500 + 10 * i as u64;
            let a: Array2<f64> = random(&[m, k], seed).into_dimensionality().unwrap();
            let b: Array2<f64> = random(&[k, n], seed + 1).into_dimensionality().unwrap();
            let mut gate: Array2<f64> = random(&[m, n], seed + 2).into_dimensionality().unwrap();
            // A NaN gate is not positive: it zeroes its element.
            gate.iter_mut().step_by(7).for_each(|g| *g = f64::NAN);
            let mut want: Array2<f64> = super::matmul(a.view(), b.view());
            want.zip_mut_with(&gate, |w, &g| {
                if g.is_nan() || g <= 0.0 {
                    *w = 0.0
                }
            });
            assert_eq!(super::matmul_gated(a.view(), b.view(), gate.as_slice().unwrap()), want);
        }
        let a: Array2<f64> = random(&[3, 4], 1).into_dimensionality().unwrap();
        let r = std::panic::catch_unwind(|| super::matmul_gated(a.view(), a.t(), a.as_slice().unwrap()));
        assert!(r.is_err(), "a gate of the wrong length is refused");
    }

    /// In f32 the general products apply bias, ReLU and gate as each tile
    /// is stored (on CPUs with AVX2 and FMA): the same bits as the plain
    /// product finished afterwards, on the paths that cut C into blocks of
    /// columns and of rows, with partial tiles and an inner dimension of
    /// more than one chunk.
    #[test]
    fn f32_epilogues_are_the_plain_product_finished_after() {
        use ndarray::Ix2;
        let f32s = |shape: &[usize], seed| {
            random(shape, seed).into_dimensionality::<Ix2>().unwrap().mapv(|v| v as f32)
        };
        for (i, &(m, k, n)) in [(64, 300, 700), (700, 300, 64), (37, 530, 1100)].iter().enumerate() {
            let seed = 700 + 10 * i as u64;
            let (a, b, bias, gate) = (
                f32s(&[m, k], seed),
                f32s(&[k, n], seed + 1),
                f32s(&[m, 1], seed + 2),
                f32s(&[m, n], seed + 3),
            );
            let plain: Array2<f32> = super::matmul(a.view(), b.view());
            let biased = &plain + &bias;
            let relu = biased.mapv(|z| if z <= 0.0 { 0.0 } else { z });
            let mut masked = plain.clone();
            masked.zip_mut_with(&gate, |w, &g| {
                if g <= 0.0 {
                    *w = 0.0
                }
            });
            assert_eq!(super::affine(a.view(), b.view(), Some(bias.view()), false), biased);
            assert_eq!(super::affine(a.view(), b.view(), Some(bias.view()), true), relu);
            assert_eq!(super::matmul_gated(a.view(), b.view(), gate.as_slice().unwrap()), masked);
        }
    }

    /// Operands with unusual strides: reversed (negative strides, as a
    /// user's `slice_move(s![..;-1, ..])` gives) and broadcast (zero
    /// strides, as the gradient of a sum is), on every path, against the
    /// same product of standard-layout copies.
    #[test]
    fn products_read_negative_and_zero_strides() {
        use ndarray::s;
        for (i, &(m, k, n)) in
            [(20, 3, 200), (6, 4_100, 7), (300, 260, 40), (40, 260, 300), (9, 33, 10)].iter().enumerate()
        {
            let seed = 300 + 10 * i as u64;
            let a: Array2<f64> = random(&[m, k], seed).into_dimensionality().unwrap();
            let b: Array2<f64> = random(&[k, n], seed + 1).into_dimensionality().unwrap();
            let std = |v: ndarray::ArrayView2<'_, f64>| v.as_standard_layout().into_owned();
            let want = |x: &Array2<f64>, y: &Array2<f64>| super::affine(x.view(), y.view(), None, false);
            let close = |got: Array2<f64>, want: Array2<f64>| {
                approx::assert_relative_eq!(got, want, max_relative = 1e-12, epsilon = 1e-11)
            };
            // Reversed rows of A, reversed columns of B, both at once.
            let (ar, br) = (a.slice(s![..;-1, ..]), b.slice(s![.., ..;-1]));
            // A strided operand may take another kernel than its copy, so the
            // sums may be in another order: a few ulps of sums of up to
            // 4,100 terms of size ~1, well inside 1e-12.
            close(super::affine(ar, b.view(), None, false), want(&std(ar), &b));
            close(super::affine(a.view(), br, None, false), want(&a, &std(br)));
            close(super::affine(ar, br, None, false), want(&std(ar), &std(br)));
            // Broadcast operands: one row of A repeated, one value everywhere.
            let first = a.slice(s![0..1, ..]);
            let row = first.broadcast((m, k)).unwrap();
            close(super::affine(row, b.view(), None, false), want(&std(row), &b));
            let one = ndarray::arr2(&[[0.5]]);
            let ones = one.broadcast((k, n)).unwrap();
            close(super::affine(a.view(), ones, None, false), want(&a, &std(ones)));
        }
    }

    /// No result depends on how many threads run it: every product path,
    /// the elementwise kernels and the row sums give bit-identical results
    /// split across the workers and run on one thread.
    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        use crate::par::SERIAL;
        use crate::{elementwise, reduce};
        let run = || {
            let mut out: Vec<ndarray::ArrayD<f64>> = Vec::new();
            for (i, &(m, k, n)) in [
                (20, 3, 19_600),
                (6, 4_100, 7),
                (300, 260, 40),
                (40, 260, 300),
                (512, 200, 3),
                (40, 30_000, 30),
                (64, 3, 19_600),
            ]
            .iter()
            .enumerate()
            {
                let seed = 100 + 10 * i as u64;
                let w: Array2<f64> = random(&[m, k], seed).into_dimensionality().unwrap();
                let x: Array2<f64> = random(&[k, n], seed + 1).into_dimensionality().unwrap();
                let b: Array2<f64> = random(&[m, 1], seed + 2).into_dimensionality().unwrap();
                let z = super::affine(w.view(), x.view(), Some(b.view()), true);
                let dx = super::matmul_gated(w.t(), z.view(), x.as_slice().unwrap());
                let dw = super::matmul(z.view(), x.t());
                let zv = z.into_dyn().into_shared();
                let t = elementwise::map(&zv, f64::tanh);
                let s = elementwise::zip("test", &t, &b.clone().into_dyn().into_shared(), |p, q| p * q);
                let (r, rs) =
                    reduce::zip_row_sums(zv.as_slice().unwrap(), t.as_slice().unwrap(), m, n, |p, q| p - q);
                out.extend([
                    zv.into_owned(),
                    dx.into_dyn(),
                    dw.into_dyn(),
                    s.into_owned(),
                    r.into_owned(),
                    rs.into_owned(),
                ]);
                out.push(reduce::sum_to_shape(&t, &[m, 1]).into_owned());
            }
            out
        };
        let split = run();
        SERIAL.with(|s| s.set(true));
        let serial = run();
        SERIAL.with(|s| s.set(false));
        assert_eq!(split, serial);
    }
}
