//! Matrix product and transpose. Transposes are views of the same buffer,
//! so `a.t().matmul(b)` multiplies without copying `a`.

use super::{Fusion, Grads, Op};
use crate::backend::{ArrayBackend, Backend};
use crate::par::{self, SendPtr};
use crate::{pool, Element, Tensor, Value};
use ndarray::{Array2, ArrayView2, Ix2};
use smallvec::smallvec;

/// `a @ b` for 2-D `a` (n, k) and `b` (k, m); da = g b^T, db = a^T g.
pub(crate) struct MatMul;
impl<T: Element> Op<T> for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let (a, b) = (x[0], x[1]);
        if a.ndim() != 2 || b.ndim() != 2 || a.shape()[1] != b.shape()[0] {
            panic!("matmul: shapes {:?} and {:?} are not (n, k) and (k, m)", a.shape(), b.shape());
        }
        let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
        let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
        matmul(a2, b2).into_dyn().into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // d(AB) = dA B + A dB
        let mut out: Option<Value<T>> = None;
        if let Some(da) = dx[0] {
            out = Some(self.forward(&[da, xs[1]]));
        }
        if let Some(db) = dx[1] {
            let t = self.forward(&[xs[0], db]);
            out = Some(match out {
                Some(o) => super::zip("matmul", &o, &t, |a, b| a + b),
                None => t,
            });
        }
        out.expect("called with a tangent")
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![need[0].then(|| b.matmul(g, &b.t(x[1]))), need[1].then(|| b.matmul(&b.t(x[0]), g)),]
    }
    fn gateable_input(&self, k: usize) -> bool {
        k < 2
    }
    fn backward_fused(
        &self,
        x: &[&Value<T>],
        _: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        let b = &ArrayBackend;
        let product = |l: &Value<T>, r: &Value<T>, gate: Option<&Value<T>>| match gate {
            Some(gate) => b.matmul_gated(l, r, gate),
            None => b.matmul(l, r),
        };
        smallvec![
            need[0].then(|| product(g, &b.t(x[1]), fusion.gate(0))),
            need[1].then(|| product(&b.t(x[0]), g, fusion.gate(1))),
        ]
    }
}

/// `A B` into a pooled, row-major buffer. Transposed operands are read
/// through their strides, never copied.
pub(crate) fn matmul<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    affine(a, b, None, false)
}

/// `(A B) * [gate > 0]` for 2-D values, the gate applied to each block of
/// the product as it is stored (see [`Fusion`]).
///
/// # Panics
/// When the gate does not have the product's shape in standard layout.
pub(crate) fn matmul_gated<T: Element>(a: &Value<T>, b: &Value<T>, gate: &Value<T>) -> Value<T> {
    let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
    let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
    let gate = match gate.as_slice() {
        Some(s) if gate.shape() == [a2.nrows(), b2.ncols()] => s,
        _ => panic!(
            "matmul_gated: gate of shape {:?} for a product of shape {:?}",
            gate.shape(),
            [a2.nrows(), b2.ncols()]
        ),
    };
    affine_gated(a2, b2, None, false, Some(gate)).into_dyn().into_shared()
}

/// `act(A B + bias)` into a pooled, row-major buffer, with `bias` of shape
/// (m, 1) and `act` relu or the identity. Thin products run on the
/// kernels of [`crate::kernels`] with bias and relu applied as each tile
/// is stored; others on the `gemm` crate, with bias and relu applied to
/// each block of C by the core that computed it. Large products are split
/// across cores (see [`crate::par`]).
pub(crate) fn affine<T: Element>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView2<'_, T>>,
    relu: bool,
) -> Array2<T> {
    affine_gated(a, b, bias, relu, None)
}

/// [`affine`], with the result multiplied by `[gate > 0]` when `gate` (m
/// * n values, row-major) is given.
fn affine_gated<T: Element>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView2<'_, T>>,
    relu: bool,
    gate: Option<&[T]>,
) -> Array2<T> {
    let ((m, k), n) = (a.dim(), b.ncols());
    let mut c = crate::pool::take::<T>(m * n);
    let (sa, sb) = (a.strides(), b.strides());
    let (bp, bs) = bias.as_ref().map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.strides()[0]));
    let gp = SendPtr(gate.map_or(std::ptr::null(), |g| {
        assert_eq!(g.len(), m * n, "affine: gate length");
        g.as_ptr()
    }) as *mut T);
    let epi = Epilogue { bias: SendPtr(bp as *mut T), stride: bs, relu, gate: gp };
    // The thin kernels apply bias and relu as they store; the gate after
    // (a test per element in small_k's store made W1 1.5 times slower).
    let gate_only = Epilogue { bias: SendPtr(std::ptr::null_mut()), stride: 0, relu: false, gate: gp };
    if m * n == 0 || k == 0 {
        c.resize(m * n, T::zero());
        let mut c = Array2::from_shape_vec((m, n), c).expect("m * n elements");
        if m * n > 0 {
            // SAFETY: C is (m, n) row-major with row stride n.
            unsafe { epi.apply(c.as_mut_ptr(), 0, m, n, n, 0) };
        }
        return c;
    }
    if k <= 32 && sb[1] == 1 && n >= 64 {
        let (ap, bp2, cp) =
            (SendPtr(a.as_ptr() as *mut T), SendPtr(b.as_ptr() as *mut T), SendPtr(c.as_mut_ptr()));
        // Columns j0..j1 of C.
        let cols = |j0: usize, j1: usize| {
            let (ap, bp2, cp) = (ap, bp2, cp);
            // SAFETY: the views are valid (m, k) and (k, n) arrays with
            // these element strides and B's rows are contiguous; bias (if
            // any) holds m values at stride bs; this call writes columns
            // j0..j1 of every row of C (row stride n, capacity m * n).
            unsafe {
                crate::kernels::small_k(
                    m,
                    k,
                    j1 - j0,
                    ap.0,
                    sa[0],
                    sa[1],
                    bp2.0.add(j0),
                    sb[0],
                    epi.bias.get(),
                    bs,
                    relu,
                    cp.0.add(j0),
                    n,
                );
                gate_only.apply(cp.0.add(j0), 0, m, j1 - j0, n, j0);
            }
        };
        par::split_sized(n, m * n, col_pieces(m, k, n), 8, &cols);
        // SAFETY: every element of C was written above.
        unsafe { c.set_len(m * n) };
        return Array2::from_shape_vec((m, n), c).expect("m * n elements");
    }
    if (m * n <= 1024 || n <= 4) && k >= 64 && sa[1] == 1 && sb[0] == 1 {
        // SAFETY: A's rows and B's columns are contiguous; dots writes all
        // m * n elements of C, which has capacity m * n.
        unsafe {
            dots_split(m, k, n, a.as_ptr(), sa[0], b.as_ptr(), sb[1], c.as_mut_ptr());
            c.set_len(m * n);
            epi.apply(c.as_mut_ptr(), 0, m, n, n, 0);
        }
    } else {
        gemm_blocks(a, b, &mut c, epi);
    }
    Array2::from_shape_vec((m, n), c).expect("m * n elements")
}

/// What is applied to each block of C once it is computed: `act(C + bias)`.
#[derive(Clone, Copy)]
struct Epilogue<T> {
    /// Null for no bias; else m values at `stride`.
    bias: SendPtr<T>,
    stride: isize,
    relu: bool,
    /// Null for no gate; else an (m, n) array in standard layout, and
    /// elements of C where it is not positive are set to zero.
    gate: SendPtr<T>,
}

impl<T: Element> Epilogue<T> {
    /// This epilogue for the block of C whose corner is row `r0` and
    /// column `c0` (C's row stride `ldc`): row `r` and column `j` of the
    /// block are row `r0 + r` and column `c0 + j` of C.
    ///
    /// # Safety
    /// The corner is inside C.
    unsafe fn at(&self, r0: usize, c0: usize, ldc: usize) -> Self {
        // SAFETY: the caller's contract: the offsets stay inside the bias
        // (one value per row of C) and the gate (C's shape).
        unsafe {
            let bias = if self.bias.0.is_null() {
                self.bias
            } else {
                SendPtr(self.bias.0.offset(r0 as isize * self.stride))
            };
            let gate =
                if self.gate.0.is_null() { self.gate } else { SendPtr(self.gate.0.add(r0 * ldc + c0)) };
            Epilogue { bias, stride: self.stride, relu: self.relu, gate }
        }
    }

    /// Applies the epilogue to rows `r0..r1` and `w` columns of the block
    /// at `c` (row `r` at `c + r * ldc`).
    ///
    /// # Safety
    /// The block is inside C, and bias (if any) holds rows `r0..r1`.
    unsafe fn apply(&self, c: *mut T, r0: usize, r1: usize, w: usize, ldc: usize, c0: usize) {
        let gated = !self.gate.0.is_null();
        if self.bias.0.is_null() && !self.relu && !gated {
            return;
        }
        let act = |z: T| if self.relu && z <= T::zero() { T::zero() } else { z };
        for r in r0..r1 {
            // SAFETY: the caller's contract.
            let (row, bi) = unsafe {
                let bi = if self.bias.0.is_null() {
                    T::zero()
                } else {
                    *self.bias.0.offset(r as isize * self.stride)
                };
                (std::slice::from_raw_parts_mut(c.add(r * ldc), w), bi)
            };
            if gated {
                // SAFETY: the gate has C's shape and layout (row stride
                // ldc), and the block starts at column c0.
                let gate = unsafe { std::slice::from_raw_parts(self.gate.0.add(r * ldc + c0), w) };
                for (v, &g) in row.iter_mut().zip(gate) {
                    *v = if g > T::zero() { act(*v + bi) } else { T::zero() };
                }
            } else {
                for v in row {
                    *v = act(*v + bi);
                }
            }
        }
    }
}

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
/// As [`crate::kernels::dots`].
#[allow(clippy::too_many_arguments)]
unsafe fn dots_split<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    rsa: isize,
    b: *const T,
    csb: isize,
    c: *mut T,
) {
    if m * n * k < 2 * PARALLEL_MACS || k < 2048 {
        // SAFETY: the caller's contract.
        return unsafe { crate::kernels::dots(m, k, n, a, rsa, b, csb, c) };
    }
    let half = (k / 2) & !7;
    let mut hi = vec![T::zero(); m * n];
    let (ap, bp, cp, hp) = (SendPtr(a as *mut T), SendPtr(b as *mut T), SendPtr(c), SendPtr(hi.as_mut_ptr()));
    par::join(
        // SAFETY (both halves): A's rows and B's columns are read over
        // their first `half` or last `k - half` elements; each half writes
        // its own m * n buffer.
        || unsafe { crate::kernels::dots(m, half, n, ap.get(), rsa, bp.get(), csb, cp.get()) },
        || unsafe {
            crate::kernels::dots(m, k - half, n, ap.get().add(half), rsa, bp.get().add(half), csb, hp.get())
        },
    );
    for (i, h) in hi.iter().enumerate() {
        // SAFETY: C holds m * n elements, written above.
        unsafe { *c.add(i) = *c.add(i) + *h };
    }
}

/// Ids for [`crate::sgemm::fused`], one per product, never 0.
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

/// `C = act(A B + bias)` with the `gemm` crate into `c` (capacity m * n,
/// set to length m * n on return). Large products are cut into blocks
/// that the cores take as they come free ([`par::share_guided`]): blocks
/// of columns of C (at least 512 wide where there are enough, so that
/// packing A again for each costs little), or of rows when C is taller
/// than wide; and when the inner dimension dwarfs both sides of C (dW =
/// dZ A^T over a full batch), pieces of the inner dimension, each into a
/// buffer of its own (cut into blocks of rows), added in a fixed order.
/// The last blocks of a product are smaller (down to about
/// [`MIN_BLOCK_MACS`]), so that one core does not sit idle while the other
/// finishes a large one. The pieces of the inner dimension are set by the
/// shapes alone, and a cut into rows or columns changes no element's sum
/// (gemm's depth blocking depends on k only), so no result depends on the
/// number of threads.
fn gemm_blocks<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>, c: &mut Vec<T>, epi: Epilogue<T>) {
    let ((m, k), n) = (a.dim(), b.ncols());
    let (sa, sb) = (a.strides(), b.strides());
    let cp = SendPtr(c.as_mut_ptr());
    let (ap, bp) = (SendPtr(a.as_ptr() as *mut T), SendPtr(b.as_ptr() as *mut T));
    // This product's id: its blocks of columns read the same A, which the
    // fused kernel then packs once per thread.
    let product = NEXT_PRODUCT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // One block: rows r0..r1 and columns c0..c1 of C, over the inner
    // indices p0..p1, written to `out` (row stride n), whose element
    // (r0, c0) is at `out + r0 * n + c0`, with `epi` (given for all of C)
    // applied as each tile is stored where there is a kernel for that
    // (`sgemm::fused`: f32 on AVX2 and FMA), else after the gemm crate's product; with no
    // epilogue, by the gemm crate.
    let block = move |r0: usize,
                      r1: usize,
                      c0: usize,
                      c1: usize,
                      p0: usize,
                      p1: usize,
                      out: SendPtr<T>,
                      epi: Option<&Epilogue<T>>| {
        let (ap, bp) = (ap, bp);
        // SAFETY: the views are valid (m, k) and (k, n) arrays with these
        // element strides, so the offsets stay inside them; `out` has room
        // for m * n elements and this block writes only its own rows
        // r0..r1 and columns c0..c1 of it (row stride n), without reading
        // them (gemm is told not to read C); p1 > p0; the epilogue moved to
        // the block's corner reads the bias's rows and the gate's elements
        // of the block.
        unsafe {
            let a0 = ap.0.offset(r0 as isize * sa[0] + p0 as isize * sa[1]);
            let b0 = bp.0.offset(p0 as isize * sb[0] + c0 as isize * sb[1]);
            let o = out.0.add(r0 * n + c0);
            let (rows, depth, cols) = (r1 - r0, p1 - p0, c1 - c0);
            let Some(epi) = epi else {
                return T::gemm(rows, depth, cols, n, a0, sa[0], sa[1], b0, sb[0], sb[1], o);
            };
            let e = epi.at(r0, c0, n);
            let fused = crate::sgemm::fused(
                rows,
                depth,
                cols,
                n,
                a0,
                sa[0],
                sa[1],
                b0,
                sb[0],
                sb[1],
                o,
                e.bias.get(),
                e.stride,
                e.relu,
                e.gate.get(),
                product,
            );
            if !fused {
                T::gemm(rows, depth, cols, n, a0, sa[0], sa[1], b0, sb[0], sb[1], o);
                e.apply(o, 0, rows, cols, n, 0);
            }
        }
    };
    let macs = m * n * k;
    let by_size = (macs / BLOCK_MACS).min(MAX_BLOCKS);
    let k_pieces = by_size.min(MAX_K_PIECES).min(k / 256);
    if k >= 4 * m.max(n) && k_pieces >= 2 {
        // Piece 0 goes straight to C, the others to buffers of their own.
        let mut parts: Vec<Vec<T>> = (1..k_pieces).map(|_| pool::take::<T>(m * n)).collect();
        let outs: Vec<SendPtr<T>> =
            std::iter::once(cp).chain(parts.iter_mut().map(|v| SendPtr(v.as_mut_ptr()))).collect();
        // Rows of every piece, piece after piece, in chunks that shrink
        // towards the end of the list (to at least 32 rows: each block
        // packs its piece of B again).
        let piece_rows = (MIN_BLOCK_MACS / (n * k.div_ceil(k_pieces))).max(32);
        par::share_guided(k_pieces * m, 16, m, piece_rows, &|i0, i1| {
            let mut i = i0;
            while i < i1 {
                let (p, r0) = (i / m, i % m);
                let r1 = (i1 - p * m).min(m);
                let (p0, p1) = par::block_bounds(k, k_pieces, 8, p);
                block(r0, r1, 0, n, p0, p1, outs[p], None);
                i = p * m + r1;
            }
        });
        par::rows(m, n * k_pieces, &|r0, r1| {
            // SAFETY: every buffer holds m * n elements, all written above;
            // this block reads and writes rows r0..r1 only.
            unsafe {
                let cb = std::slice::from_raw_parts_mut(cp.get().add(r0 * n), (r1 - r0) * n);
                for part in &outs[1..] {
                    let pb = std::slice::from_raw_parts(part.get().add(r0 * n), (r1 - r0) * n);
                    for (x, &y) in cb.iter_mut().zip(pb) {
                        *x = *x + y;
                    }
                }
                epi.apply(cp.get(), r0, r1, n, n, 0);
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
                block(r0, r1, 0, n, 0, k, cp, Some(&epi));
            });
        } else {
            let blocks = threads.max(by_size.min(n / 512)).min(n / 8).max(1);
            let min_cols = (MIN_BLOCK_MACS / (m * k)).max(16);
            par::share_guided(n, 8, n.div_ceil(blocks), min_cols, &|c0, c1| {
                block(0, m, c0, c1, 0, k, cp, Some(&epi));
            });
        }
    }
    // SAFETY: every element of C was written above.
    unsafe { c.set_len(m * n) };
}

/// `act(W X + b)` with `b` of shape (n, 1) and `act` the identity or relu,
/// in one pass; see [`Tensor::affine`].
/// `RELU` is a type parameter, not a field, so the op is zero-sized and
/// recording it allocates nothing.
pub(crate) struct Affine<const RELU: bool>;
impl<T: Element, const RELU: bool> Op<T> for Affine<RELU> {
    fn name(&self) -> &'static str {
        if RELU {
            "affine_relu"
        } else {
            "affine"
        }
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let (w, a, b) = (x[0], x[1], x[2]);
        if w.ndim() != 2 || a.ndim() != 2 || w.shape()[1] != a.shape()[0] {
            panic!(
                "{}: shapes {:?} and {:?} are not (n, k) and (k, m)",
                Op::<T>::name(self),
                w.shape(),
                a.shape()
            );
        }
        if b.shape() != [w.shape()[0], 1] {
            panic!(
                "{}: bias of shape {:?} for weights of shape {:?}; expected ({}, 1)",
                Op::<T>::name(self),
                b.shape(),
                w.shape(),
                w.shape()[0]
            );
        }
        let w2 = w.view().into_dimensionality::<Ix2>().expect("2-D");
        let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
        let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
        affine(w2, a2, Some(b2), RELU).into_dyn().into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // dZ = dW X + W dX + db; with relu, dY = dZ * [Y > 0].
        let lin = Affine::<false>;
        let zero_b = || Value::zeros(xs[2].raw_dim());
        let mut dz: Option<Value<T>> = None;
        if let Some(dw) = dx[0] {
            let b0 = dx[2].cloned().unwrap_or_else(zero_b);
            dz = Some(lin.forward(&[dw, xs[1], &b0]));
        }
        if let Some(dxx) = dx[1] {
            let b0 = if dz.is_none() { dx[2].cloned().unwrap_or_else(zero_b) } else { zero_b() };
            let t = lin.forward(&[xs[0], dxx, &b0]);
            dz = Some(match dz {
                Some(o) => super::zip("affine", &o, &t, |a, b| a + b),
                None => t,
            });
        }
        let dz = match dz {
            Some(d) => d,
            None => {
                let db = dx[2].expect("called with a tangent");
                pool::to_value(db.broadcast(y.raw_dim()).expect("bias broadcasts").view())
            }
        };
        if RELU {
            super::zip("affine_relu", &dz, y, |d, y| if y > T::zero() { d } else { T::zero() })
        } else {
            dz
        }
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        self.rule(b, x, y, g, need, false, None)
    }
    fn gated_output(&self) -> bool {
        RELU
    }
    fn gateable_input(&self, k: usize) -> bool {
        k == 1
    }
    fn backward_fused(
        &self,
        x: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        self.rule(&ArrayBackend, x, y, g, need, fusion.pregated, fusion.gate(1))
    }
}

impl<const RELU: bool> Affine<RELU> {
    /// The backward rule; `pregated`: `g` is `dZ` already (see
    /// [`Fusion`]); `gate_x`: return `dX` multiplied by `[gate_x > 0]`.
    #[allow(clippy::too_many_arguments)]
    fn rule<T: Element, B: Backend<T>>(
        &self,
        b: &B,
        x: &[&B::V],
        y: &B::V,
        g: &B::V,
        need: &[bool],
        pregated: bool,
        gate_x: Option<&B::V>,
    ) -> Grads<B::V> {
        // dZ = g * relu'(Z); relu'(Z) = [Z > 0] = [Y > 0], read from the
        // output. db = row sums of dZ, summed as dZ is written.
        let bias = need[2].then(|| b.shape(x[2]));
        let fresh = RELU && !pregated;
        let (dz, db) = if fresh {
            b.fuse2_row_sums(
                g,
                y,
                |g, y| if y > T::zero() { g } else { T::zero() },
                |b| b.mul(g, &b.map_const(y, |v| if v > T::zero() { T::one() } else { T::zero() })),
                bias.as_deref(),
            )
        } else {
            (g.clone(), bias.map(|s| b.sum_to(g, &s)))
        };
        let grads = smallvec![
            need[0].then(|| b.matmul(&dz, &b.t(x[1]))),
            need[1].then(|| match gate_x {
                Some(gate) => b.matmul_gated(&b.t(x[0]), &dz, gate),
                None => b.matmul(&b.t(x[0]), &dz),
            }),
            db,
        ];
        if fresh {
            // dZ is a fresh (n, m) buffer: back to the pool, or W3 maps
            // 120 MB of new pages every iteration.
            b.release(dz);
        }
        grads
    }
}

/// Reverses the axes (for 2-D, the matrix transpose); da = g^T.
pub(crate) struct Transpose;
impl<T: Element> Op<T> for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        // Shares the buffer: only the strides change.
        x[0].clone().reversed_axes()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        super::unary_grad(need, || b.t(g))
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// Matrix product of 2-D tensors: `(n, k) @ (k, m) -> (n, m)`.
    /// Gradients: `dA = G B^T`, `dB = A^T G`, computed on transposed views
    /// without copies. Multiplication runs on the `gemm` crate's kernels.
    ///
    /// # Panics
    /// When either operand is not 2-D or the inner sizes differ; the message
    /// names both shapes.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// let x = tape.constant(array![[1.0], [1.0]]);
    /// assert_eq!(w.matmul(x).value(), array![[3.0], [7.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn matmul(self, other: Tensor<'t, T>) -> Self {
        self.tape.record(MatMul, &[&self, &other])
    }

    /// The guide's linear step `Z = W X + b` (self is `W`, (n, k); `x` is
    /// (k, m); `b` is (n, 1)), computed in one pass with the bias added as
    /// the product is stored. Same value and gradients as
    /// `w.matmul(x) + b`: `dW = G X^T`, `dX = W^T G`, `db = row sums of G`.
    ///
    /// # Panics
    /// When the shapes are not (n, k), (k, m) and (n, 1).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0]]);
    /// let x = tape.constant(array![[1.0, 0.0], [1.0, -1.0]]);
    /// let b = tape.var(array![[0.5]]);
    /// assert_eq!(w.affine(x, b).value(), array![[3.5, -1.5]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn affine(self, x: Tensor<'t, T>, b: Tensor<'t, T>) -> Self {
        self.tape.record(Affine::<false>, &[&self, &x, &b])
    }

    /// A ReLU layer `A = relu(W X + b)` in one pass: the product, the bias
    /// and the ReLU are applied as each tile of the output is stored, and
    /// the pre-activation is never materialised. Same value and gradients
    /// as `w.matmul(x) + b` then `.relu()`: with `dZ = G * [A > 0]`
    /// (relu'(0) = 0, and `A > 0` exactly when `Z > 0`), `dW = dZ X^T`,
    /// `dX = W^T dZ`, `db = row sums of dZ`.
    ///
    /// # Panics
    /// When the shapes are not (n, k), (k, m) and (n, 1).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0]]);
    /// let x = tape.constant(array![[1.0, 0.0], [1.0, -1.0]]);
    /// let b = tape.var(array![[0.5]]);
    /// assert_eq!(w.affine_relu(x, b).value(), array![[3.5, 0.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn affine_relu(self, x: Tensor<'t, T>, b: Tensor<'t, T>) -> Self {
        self.tape.record(Affine::<true>, &[&self, &x, &b])
    }

    /// The transpose (axes reversed), sharing the buffer; `dA = G^T`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0]]);
    /// assert_eq!(x.t().shape(), vec![3, 1]);
    /// ```
    #[track_caller]
    pub fn t(self) -> Self {
        self.tape.record(Transpose, &[&self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{random, Domain};

    #[test]
    #[should_panic(expected = "matmul: shapes [3, 4] and [3, 4] are not (n, k) and (k, m)")]
    fn matmul_shape_mismatch_names_both_shapes() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        let _ = a.matmul(a);
    }

    /// The fused layer and the composed one agree: values and every
    /// gradient, on shapes that take each kernel path.
    #[test]
    fn fused_affine_relu_matches_composition() {
        for (n, k, m) in [(20, 3, 300), (7, 20, 65), (3, 40, 9), (4, 70, 100), (1, 5, 64)] {
            let tape = crate::Tape::<f64>::new();
            let w = tape.var(random(&[n, k], Domain::Normal, 1));
            let x = tape.var(random(&[k, m], Domain::Normal, 2));
            let b = tape.var(random(&[n, 1], Domain::Normal, 3));
            let fused = w.affine_relu(x, b);
            let composed = (w.matmul(x) + b).relu();
            approx::assert_relative_eq!(
                fused.value(),
                composed.value(),
                max_relative = 1e-13,
                epsilon = 1e-13
            );
            let u = tape.constant(random(&[n, m], Domain::Normal, 4));
            let (gf, gc) = (tape.backward((fused * u).sum()), tape.backward((composed * u).sum()));
            for p in [w, x, b] {
                // Different summation orders: a few ulps of each sum.
                approx::assert_relative_eq!(gf[p], gc[p], max_relative = 1e-12, epsilon = 1e-12);
            }
        }
    }

    /// Every path of `affine` (the thin kernels whole and split across
    /// cores, the inner dimension split in halves, the gemm crate in row
    /// and column blocks) against a naive triple loop, with and without
    /// bias and relu, on row-major and transposed operands.
    #[test]
    fn every_product_path_matches_the_naive_product() {
        use ndarray::Array2;
        let shapes = [
            (20, 3, 19_600),   // small_k, split by columns
            (64, 3, 19_600),   // small_k, shared blocks of columns
            (5, 7, 100),       // small_k, one piece
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
            let a: Array2<f64> = random(&[m, k], Domain::Normal, seed).into_dimensionality().unwrap();
            let bt: Array2<f64> = random(&[n, k], Domain::Normal, seed + 1).into_dimensionality().unwrap();
            let b = bt.t().as_standard_layout().into_owned();
            let bias: Array2<f64> = random(&[m, 1], Domain::Normal, seed + 2).into_dimensionality().unwrap();
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
        use ndarray::Array2;
        for (i, &(m, k, n)) in
            [(20, 3, 19_600), (64, 1, 300), (6, 4_100, 7), (300, 260, 40), (40, 260, 300), (40, 30_000, 30)]
                .iter()
                .enumerate()
        {
            let seed = 500 + 10 * i as u64;
            let a = random(&[m, k], Domain::Normal, seed).into_shared();
            let b = random(&[k, n], Domain::Normal, seed + 1).into_shared();
            let gate = random(&[m, n], Domain::Normal, seed + 2).into_shared();
            let a2 = a.view().into_dimensionality().unwrap();
            let b2 = b.view().into_dimensionality().unwrap();
            let mut want: Array2<f64> = super::matmul(a2, b2);
            want.zip_mut_with(&gate.view().into_dimensionality::<ndarray::Ix2>().unwrap(), |w, &g| {
                if g <= 0.0 {
                    *w = 0.0
                }
            });
            assert_eq!(super::matmul_gated(&a, &b, &gate), want.into_dyn().into_shared());
        }
        let a = random(&[3, 4], Domain::Normal, 1).into_shared();
        let r = std::panic::catch_unwind(|| super::matmul_gated(&a, &a.t().to_owned().into_shared(), &a));
        assert!(r.is_err(), "a gate of the wrong shape is refused");
    }

    /// In f32 the general products apply bias, ReLU and gate as each tile
    /// is stored (on CPUs with AVX2 and FMA): the same bits as the plain
    /// product finished afterwards, on the paths that cut C into blocks of
    /// columns and of rows, with partial tiles and an inner dimension of
    /// more than one chunk.
    #[test]
    fn f32_epilogues_are_the_plain_product_finished_after() {
        use ndarray::{Array2, Ix2};
        let f32s = |shape: &[usize], seed| {
            random(shape, Domain::Normal, seed).into_dimensionality::<Ix2>().unwrap().mapv(|v| v as f32)
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
            let (av, bv, gv) =
                (a.into_dyn().into_shared(), b.into_dyn().into_shared(), gate.into_dyn().into_shared());
            assert_eq!(super::matmul_gated(&av, &bv, &gv), masked.into_dyn().into_shared());
        }
    }

    /// A guide-style network with gemm-sized and thin layers, ReLU layers
    /// feeding `affine`, `affine_relu` and `matmul` (from either side):
    /// `backward_for` applies every ReLU gate in the op that computes the
    /// gradient, and its gradients are those of `backward`, bit for bit.
    /// A ReLU output that is asked for, or used twice, is left unfused and
    /// its gradient is the full one.
    #[test]
    fn backward_for_fuses_relu_gates_and_changes_no_gradient() {
        use crate::backward::GATES_FUSED;
        let tape = crate::Tape::<f64>::new();
        let p = |shape: &[usize], seed| tape.var(random(shape, Domain::Normal, seed));
        let x = tape.constant(random(&[3, 300], Domain::Normal, 1));
        let (w1, b1, w2, b2) = (p(&[64, 3], 2), p(&[64, 1], 3), p(&[48, 64], 4), p(&[48, 1], 5));
        let (w3, b3, v, w4, b4) =
            (p(&[5, 48], 6), p(&[5, 1], 7), p(&[300, 2], 8), p(&[1, 5], 9), p(&[1, 1], 10));
        let h1 = w1.affine_relu(x, b1); // small_k forward; dX not needed
        let h2 = w2.affine_relu(h1, b2); // gemm: dX = W^T dZ gated by h1
        let h3 = w3.affine_relu(h2, b3); // gated by h2
        let out = w4.affine(h3, b4); // k = 1 outer product gated by h3
        let side = h2.matmul(v); // matmul, the ReLU output on the left
        let side2 = w3.matmul(w2.affine_relu(h1, b2)); // and on the right
        let loss = (out * out).sum() + side.tanh().sum() + side2.sigmoid().sum();
        let params = [w1, b1, w2, b2, w3, b3, v, w4, b4];
        let full = tape.backward(loss);
        let fused_before = GATES_FUSED.with(|c| c.get());
        let g = tape.backward_for(loss, &params);
        // h1 is used twice (no gate for it); h2 by affine_relu and matmul
        // is used twice too; h3 by affine, and the second h2 by matmul.
        assert_eq!(GATES_FUSED.with(|c| c.get()) - fused_before, 2);
        for t in params {
            assert_eq!(g[t], full[t]);
        }
        assert!(g.get(h3).is_none());
        // A chain without fan-out: every gate fuses.
        let chain = w4.affine(w3.affine_relu(w2.affine_relu(h1, b2), b3), b4).sum();
        let (full, before) = (tape.backward(chain), GATES_FUSED.with(|c| c.get()));
        let g = tape.backward_for(chain, &params);
        assert_eq!(GATES_FUSED.with(|c| c.get()) - before, 2);
        for t in params {
            assert_eq!(g.get(t), full.get(t));
        }
        // Asking for a ReLU output keeps its gradient whole (no gate).
        let h = w2.affine_relu(h1, b2);
        let y = w4.affine(w3.affine_relu(h, b3), b4).sum();
        let (full, before) = (tape.backward(y), GATES_FUSED.with(|c| c.get()));
        let g = tape.backward_for(y, &[h, w2]);
        assert_eq!(GATES_FUSED.with(|c| c.get()) - before, 1);
        assert_eq!(g[h], full[h]);
        assert_eq!(g[w2], full[w2]);
    }

    /// The (n, m) dZ that affine_relu's backward makes goes back to the
    /// pool when the rule is done with it (W3 mapped 120 MB of fresh pages
    /// per iteration before).
    #[test]
    fn affine_relu_backward_gives_its_temporary_back() {
        let tape = crate::Tape::<f64>::new();
        let w = tape.var(random(&[4, 3], Domain::Normal, 1));
        let x = tape.var(random(&[3, 50], Domain::Normal, 2));
        let b = tape.var(random(&[4, 1], Domain::Normal, 3));
        let y = w.affine_relu(x, b).sum();
        let before = crate::pool::free_count::<f64>(200);
        let g = tape.backward(y);
        assert_eq!(crate::pool::free_count::<f64>(200), before + 1);
        assert_eq!(g[x].shape(), &[3, 50]);
    }

    /// Operands with unusual strides: reversed (negative strides, as a
    /// user's `slice_move(s![..;-1, ..])` gives) and broadcast (zero
    /// strides, as the gradient of a sum is), on every path, against the
    /// same product of standard-layout copies.
    #[test]
    fn products_read_negative_and_zero_strides() {
        use ndarray::{s, Array2};
        for (i, &(m, k, n)) in
            [(20, 3, 200), (6, 4_100, 7), (300, 260, 40), (40, 260, 300), (9, 33, 10)].iter().enumerate()
        {
            let seed = 300 + 10 * i as u64;
            let a: Array2<f64> = random(&[m, k], Domain::Normal, seed).into_dimensionality().unwrap();
            let b: Array2<f64> = random(&[k, n], Domain::Normal, seed + 1).into_dimensionality().unwrap();
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

    /// No result depends on how many threads run it: every product path and
    /// the elementwise kernels give bit-identical results split across the
    /// workers and run on one thread.
    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        use crate::par::SERIAL;
        let run = || {
            let tape = crate::Tape::<f64>::new();
            let mut out = Vec::new();
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
                let w = tape.var(random(&[m, k], Domain::Normal, seed));
                let x = tape.var(random(&[k, n], Domain::Normal, seed + 1));
                let b = tape.var(random(&[m, 1], Domain::Normal, seed + 2));
                let y = (w.affine_relu(x, b).tanh() * x.t().matmul(w.t()).t().sum()).sigmoid();
                let g = tape.backward((y * y).sum());
                out.extend([y.value(), g[w].clone(), g[x].clone(), g[b].clone()]);
            }
            out
        };
        let split = run();
        SERIAL.with(|s| s.set(true));
        let serial = run();
        SERIAL.with(|s| s.set(false));
        assert_eq!(split, serial);
    }

    #[test]
    #[should_panic(expected = "affine: bias of shape [3] for weights of shape [2, 3]; expected (2, 1)")]
    fn affine_bias_shape_is_checked() {
        let tape = crate::Tape::<f64>::new();
        let w = tape.var(ndarray::Array2::<f64>::zeros((2, 3)));
        let x = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        let _ = w.affine(x, tape.var(ndarray::Array1::<f64>::zeros(3)));
    }

    #[test]
    fn transpose_shares_the_buffer() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        assert_eq!(a.value().as_ptr(), a.t().value().as_ptr());
    }
}
