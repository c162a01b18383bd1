#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
//! An f32 matrix product for x86-64 CPUs with AVX2 and FMA, with the
//! [`Epilogue`] (bias, relu, gate) applied as each tile of C is stored.
//!
//! The layout is the one of BLIS (Van Zee and van de Geijn, 2015): C is
//! computed in tiles of [`MR`] rows by [`NR`] columns, each held in twelve
//! vector registers while the inner dimension streams through; B is
//! copied ("packed") in blocks of [`KC`] by [`NC`] into panels of `NR`
//! columns, A in blocks of [`MC`] by `KC` into panels of `MR` rows, so
//! that the kernel reads both with unit stride. A small A (the weights) is
//! packed whole, once per product and thread, however many blocks of
//! columns of C the product is cut into. A block of packed B (2 MiB) sits
//! in the L3 cache and one panel of it (32 KiB) nearer while the panels of
//! a block of A (240 KiB, in L2) go past it. The block sizes are constants
//! measured on one CPU (docs/BENCHMARKS.md); a BLIS-sized block of B
//! (NC = 4080) was slower there.
//!
//! Why not the `gemm` crate alone (it still does f64, and f32 on other
//! CPUs): it writes C, and then the bias, relu and gate are applied in a
//! second pass over memory that has left the cache; here they cost
//! nothing extra.
//!
//! Each element of C is summed in the same order whatever block of C a
//! call computes: in chunks of `KC` along the inner dimension, each chunk
//! by fused multiply-adds from its first index to its last, added to C
//! chunk after chunk. So splitting a product into blocks of rows or
//! columns across cores changes no bit of the result.

use crate::operand::{Epilogue, Out, Strided};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of a tile of C.
const MR: usize = 6;
/// Columns of a tile of C (two vectors of 8).
const NR: usize = 16;
/// The inner dimension is taken this many indices at a time.
const KC: usize = 512;
/// Rows of A packed at a time.
const MC: usize = 120;
/// Columns of B packed at a time.
const NC: usize = 1024;

/// A is packed whole, once per product and thread, when it has at most
/// this many elements (4 MiB); larger, a block of [`MC`] rows at a time.
const WHOLE_A: usize = 1 << 20;

/// Each thread's packing buffers, kept between calls.
struct Packed {
    a: Vec<f32>,
    b: Vec<f32>,
    /// What `a` holds when it holds all of an A: the product's id (see
    /// [`fused`]), A's address, strides and shape.
    a_is: Option<(u64, usize, isize, isize, usize, usize)>,
}

thread_local! {
    static PACKED: RefCell<Packed> = const { RefCell::new(Packed { a: Vec::new(), b: Vec::new(), a_is: None }) };
}

/// Whether this CPU runs [`fused`].
pub(crate) fn available() -> bool {
    if !cfg!(feature = "own-sgemm") {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C = epi(A B)` for A (m, k) and B (k, n), C written without being read
/// first, when the elements are f32 and this CPU has AVX2 and FMA
/// ([`available`]). Returns false, having done nothing, when not (the
/// product is then the `gemm` crate's). Generic so that the generic
/// product code can call it for any element type; the type test is a
/// constant the compiler folds away.
///
/// `product` names the product this call computes a block of: the calls
/// with the same non-zero `product` on one thread read the same A (the
/// same address, strides, shape and values), so A, when small enough, is
/// packed by the first of them only, however many blocks of columns the
/// product is cut into. 0: no such promise.
///
/// # Safety
/// `k > 0`; A and B are valid arrays of those shapes and strides; C has
/// room for m rows of `c.ld >= n` elements and no other thread touches its
/// rows `0..m`, columns `0..n` meanwhile; the epilogue's bias and gate,
/// when not null, cover C's rows and columns.
pub(crate) unsafe fn fused<T: 'static>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    c: Out<T>,
    epi: &Epilogue<T>,
    product: u64,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && available() {
        // T is f32: the casts change no pointer's meaning.
        let a = Strided { ptr: a.ptr.cast::<f32>(), rs: a.rs, cs: a.cs };
        let b = Strided { ptr: b.ptr.cast::<f32>(), rs: b.rs, cs: b.cs };
        let c = Out { ptr: c.ptr.cast::<f32>(), ld: c.ld };
        let epi = Epilogue {
            bias: epi.bias.cast::<f32>(),
            bias_stride: epi.bias_stride,
            relu: epi.relu,
            gate: epi.gate.cast::<f32>(),
            gate_ld: epi.gate_ld,
        };
        return PACKED.with_borrow_mut(|p| {
            let kc_max = k.min(KC);
            let whole = m * k <= WHOLE_A;
            let need_a = if whole { m.div_ceil(MR) * MR * k } else { m.min(MC).div_ceil(MR) * MR * kc_max };
            let need_b = n.min(NC).div_ceil(NR) * NR * kc_max;
            let key = (product, a.ptr as usize, a.rs, a.cs, m, k);
            // Room to start both on a cache line (16 values of 4 bytes).
            let grow = p.a.len() < need_a + 16;
            if grow {
                p.a.resize(need_a + 16, 0.0);
            }
            // (A moved buffer may start its line elsewhere: packed again.)
            let a_ready = whole && product != 0 && !grow && p.a_is == Some(key);
            p.a_is = None;
            if p.b.len() < need_b + 16 {
                p.b.resize(need_b + 16, 0.0);
            }
            let pack = if a_ready {
                PackA::Ready
            } else if whole {
                PackA::Whole
            } else {
                PackA::Blocks
            };
            // SAFETY: the caller's contract, the CPU has AVX2 and FMA, and
            // the buffers are large enough for every block, as sized above.
            unsafe {
                let (pa, pb) = (line_start(&mut p.a), line_start(&mut p.b));
                blocks([m, k, n], a, b, c, &epi, pack, [pa, pb])
            };
            if whole && product != 0 {
                p.a_is = Some(key);
            }
            true
        });
    }
    let _ = (m, k, n, a, b, c, epi, product);
    false
}

/// The first element of `v` at a 64-byte boundary (a cache line), so
/// that each row of 16 values of a packed panel of B is one line.
fn line_start(v: &mut [f32]) -> *mut f32 {
    let skip = v.as_ptr().align_offset(64).min(15);
    v[skip..].as_mut_ptr()
}

/// How [`blocks`] packs A.
#[derive(Clone, Copy, PartialEq)]
enum PackA {
    /// All of A is packed already: chunk `pc..` of the inner dimension at
    /// `pa + pc * m'` (m rounded up to panels of [`MR`]), its rows `ic..`
    /// at `ic * kc` into the chunk.
    Ready,
    /// All of A, in that layout, as the first block of columns goes by.
    Whole,
    /// [`MC`] rows at a time, at `pa`, for each block of columns again.
    Blocks,
}

/// The loops over blocks of [`fused`].
///
/// # Safety
/// As [`fused`], and the CPU has AVX2 and FMA; `pa` and `pb` have room
/// for A as `pack` says (when [`PackA::Ready`], holding it) and for a
/// packed block of B.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn blocks(
    [m, k, n]: [usize; 3],
    a: Strided<f32>,
    b: Strided<f32>,
    c: Out<f32>,
    epi: &Epilogue<f32>,
    pack: PackA,
    [pa, pb]: [*mut f32; 2],
) {
    let (rsa, csa, rsb, csb) = (a.rs, a.cs, b.rs, b.cs);
    let (a, b) = (a.ptr, b.ptr);
    let m_panels = m.div_ceil(MR) * MR;
    let mut jc = 0;
    while jc < n {
        let nc = (n - jc).min(NC);
        let mut pc = 0;
        while pc < k {
            let kc = (k - pc).min(KC);
            let (first, last) = (pc == 0, pc + kc == k);
            // SAFETY (this block): every offset stays inside A, B and C
            // (jc < n, pc < k, ic < m), and the packed blocks fit the
            // buffers (the caller's contract).
            unsafe {
                pack_b(kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, pb);
                let mut ic = 0;
                while ic < m {
                    let mc = (m - ic).min(MC);
                    let pa = match pack {
                        PackA::Blocks => pa,
                        _ => pa.add(pc * m_panels + ic * kc),
                    };
                    if pack == PackA::Blocks || (pack == PackA::Whole && jc == 0) {
                        pack_a(mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, pa);
                    }
                    let mut jr = 0;
                    while jr < nc {
                        let nr = (nc - jr).min(NR);
                        let bp = pb.add(jr * kc);
                        let mut ir = 0;
                        while ir < mc {
                            let mr = (mc - ir).min(MR);
                            let (row, col) = (ic + ir, jc + jr);
                            let tile = Tile {
                                c: c.at(row, col),
                                rows: mr,
                                cols: nr,
                                first,
                                last,
                                epi: epi.at(row, col),
                            };
                            kernel(kc, pa.add(ir * kc), bp, &tile);
                            ir += MR;
                        }
                        jr += NR;
                    }
                    ic += mc;
                }
            }
            pc += kc;
        }
        jc += nc;
    }
}

/// Rows `0..mc` and inner indices `0..kc` of A into panels of [`MR`] rows
/// (panel `p` at `out + p * MR * kc`, index `q` of it at `q * MR`), the
/// rows past `mc` of the last panel zero.
///
/// # Safety
/// A holds those rows and indices; `out` has room for the panels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_a(mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: *mut f32) {
    let mut i = 0;
    while i < mc {
        let rows = (mc - i).min(MR);
        // SAFETY: the caller's contract.
        unsafe {
            let o = out.add(i * kc);
            let a = a.offset(i as isize * rsa);
            if rows == MR && csa == 1 {
                let r: [*const f32; MR] = std::array::from_fn(|t| a.offset(t as isize * rsa));
                for q in 0..kc {
                    for (t, rt) in r.iter().enumerate() {
                        *o.add(q * MR + t) = *rt.add(q);
                    }
                }
            } else if rows == MR && rsa == 1 {
                for q in 0..kc {
                    std::ptr::copy_nonoverlapping(a.offset(q as isize * csa), o.add(q * MR), MR);
                }
            } else {
                for q in 0..kc {
                    for t in 0..MR {
                        *o.add(q * MR + t) =
                            if t < rows { *a.offset(t as isize * rsa + q as isize * csa) } else { 0.0 };
                    }
                }
            }
        }
        i += MR;
    }
}

/// Inner indices `0..kc` and columns `0..nc` of B into panels of [`NR`]
/// columns (panel `p` at `out + p * NR * kc`, index `q` of it at
/// `q * NR`), the columns past `nc` of the last panel zero.
///
/// # Safety
/// B holds those indices and columns; `out` has room for the panels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: *mut f32) {
    let full = nc / NR * NR;
    // SAFETY (all of it): the caller's contract.
    unsafe {
        if csb == 1 {
            // Row after row of B (read in order, which the hardware
            // prefetcher follows), each spread over the panels.
            for q in 0..kc {
                let src = b.offset(q as isize * rsb);
                let mut j = 0;
                while j < full {
                    let o = out.add(j * kc + q * NR);
                    _mm256_storeu_ps(o, _mm256_loadu_ps(src.add(j)));
                    _mm256_storeu_ps(o.add(8), _mm256_loadu_ps(src.add(j + 8)));
                    j += NR;
                }
            }
        } else {
            let mut j = 0;
            while j < full {
                let o = out.add(j * kc);
                for t in 0..NR {
                    let src = b.offset((j + t) as isize * csb);
                    for q in 0..kc {
                        *o.add(q * NR + t) = *src.offset(q as isize * rsb);
                    }
                }
                j += NR;
            }
        }
        if full < nc {
            let (o, cols) = (out.add(full * kc), nc - full);
            for q in 0..kc {
                for t in 0..NR {
                    *o.add(q * NR + t) =
                        if t < cols { *b.offset(q as isize * rsb + (full + t) as isize * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// Where and how one tile of C is stored.
struct Tile {
    /// The tile's element (0, 0) in C.
    c: Out<f32>,
    /// How many of the tile's [`MR`] rows and [`NR`] columns are in C.
    rows: usize,
    cols: usize,
    /// Whether this is the first chunk of the inner dimension (C is
    /// written, not added to) and the last (the epilogue is applied).
    first: bool,
    last: bool,
    /// The product's epilogue, moved to the tile's first row and column.
    epi: Epilogue<f32>,
}

/// One tile: `kc` rank-one updates of twelve accumulators from a panel of
/// A and one of B, then the store.
///
/// Not inlined: one call per tile costs nothing next to `kc` rank-one
/// updates, and on its own the loop keeps all twelve accumulators in
/// registers.
///
/// # Safety
/// `a` and `b` hold packed panels of `kc` indices; the tile is as
/// [`Tile`] says.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, t: &Tile) {
    // SAFETY: the caller's contract; the loops read `kc * MR` values of
    // the A panel and `kc * NR` of the B panel.
    unsafe {
        for i in 0..t.rows {
            _mm_prefetch::<_MM_HINT_T0>(t.c.ptr.add(i * t.c.ld) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(t.c.ptr.add(i * t.c.ld + NR - 1) as *const i8);
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        let mut step = || {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                row[1] = _mm256_fmadd_ps(x, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        };
        let mut q = kc;
        while q >= 4 {
            step();
            step();
            step();
            step();
            q -= 4;
        }
        while q > 0 {
            step();
            q -= 1;
        }
        store(&acc, t);
    }
}

/// Stores a tile's accumulators as [`Tile`] says.
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(acc: &[[__m256; 2]; MR], t: &Tile) {
    let zero = _mm256_setzero_ps();
    // SAFETY: the caller's contract: rows 0..t.rows and columns 0..t.cols
    // of the tile are in C (and in the gate, when there is one).
    unsafe {
        if t.rows == MR && t.cols == NR {
            for (i, row) in acc.iter().enumerate() {
                let cp = t.c.ptr.add(i * t.c.ld);
                let mut v = *row;
                for (h, vh) in v.iter_mut().enumerate() {
                    let p = cp.add(8 * h);
                    if !t.first {
                        *vh = _mm256_add_ps(_mm256_loadu_ps(p), *vh);
                    }
                    if t.last {
                        if !t.epi.bias.is_null() {
                            *vh = _mm256_add_ps(
                                *vh,
                                _mm256_broadcast_ss(&*t.epi.bias.offset(i as isize * t.epi.bias_stride)),
                            );
                        }
                        if t.epi.relu {
                            *vh = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(*vh, zero), *vh);
                        }
                        if !t.epi.gate.is_null() {
                            let g = _mm256_loadu_ps(t.epi.gate.add(i * t.epi.gate_ld + 8 * h));
                            *vh = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(g, zero), *vh);
                        }
                    }
                    _mm256_storeu_ps(p, *vh);
                }
            }
        } else {
            let mut tmp = [0f32; MR * NR];
            for (i, row) in acc.iter().enumerate() {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR), row[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR + 8), row[1]);
            }
            for i in 0..t.rows {
                for j in 0..t.cols {
                    let p = t.c.ptr.add(i * t.c.ld + j);
                    let mut v = tmp[i * NR + j];
                    if !t.first {
                        v += *p;
                    }
                    if t.last {
                        if !t.epi.bias.is_null() {
                            v += *t.epi.bias.offset(i as isize * t.epi.bias_stride);
                        }
                        if t.epi.relu && v <= 0.0 {
                            v = 0.0;
                        }
                        if !t.epi.gate.is_null()
                            && (*t.epi.gate.add(i * t.epi.gate_ld + j)).partial_cmp(&0.0)
                                != Some(std::cmp::Ordering::Greater)
                        {
                            v = 0.0;
                        }
                    }
                    *p = v;
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::testutil::random;
    use approx::assert_abs_diff_eq;
    use ndarray::{s, Array2, ArrayView2, Ix2};

    fn matrix(m: usize, n: usize, seed: u64) -> Array2<f32> {
        random(&[m, n], seed).into_dimensionality::<Ix2>().unwrap().mapv(|v| v as f32)
    }

    /// [`fused`] (product id `id`) into a buffer with row stride `n + 3` that starts as NaN
    /// (so a read of C before writing it would show), returned with the
    /// padding checked untouched.
    fn product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, store: Epilogue<f32>, id: u64) -> Array2<f32> {
        let ((m, k), n) = (a.dim(), b.ncols());
        let ldc = n + 3;
        let mut c = vec![f32::NAN; m * ldc];
        let (sa, sb) = (a.strides(), b.strides());
        // SAFETY: the views are valid arrays with these strides; C has m
        // rows of ldc >= n elements; the store's pointers are set up by
        // the callers for C's shape and row stride.
        let done = unsafe {
            let a = Strided { ptr: a.as_ptr(), rs: sa[0], cs: sa[1] };
            let b = Strided { ptr: b.as_ptr(), rs: sb[0], cs: sb[1] };
            fused([m, k, n], a, b, Out { ptr: c.as_mut_ptr(), ld: ldc }, &store, id)
        };
        assert!(done, "the caller checked that this CPU runs the own GEMM");
        let c = Array2::from_shape_vec((m, ldc), c).unwrap();
        assert!(c.slice(s![.., n..]).iter().all(|v| v.is_nan()), "the product wrote past column n");
        c.slice(s![.., ..n]).to_owned()
    }

    const PLAIN: Epilogue<f32> = Epilogue::NONE;

    /// Whether this CPU runs the own GEMM; if not, says so, and the test
    /// has nothing to check here.
    fn runs_here() -> bool {
        let yes = available();
        if !yes {
            eprintln!("skipped: this CPU lacks AVX2 or FMA, or the own-sgemm feature is off");
        }
        yes
    }

    /// Checks `c` against the product in f64, within the forward error
    /// bound of a sum of k products in f32: |error| <= k u sum |a b|
    /// (Higham, Accuracy and Stability, 3.1), u = 2^-24, doubled for
    /// slack in how the sum is grouped.
    fn check(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: &Array2<f32>) {
        let a64 = a.mapv(f64::from);
        let b64 = b.mapv(f64::from);
        let exact = a64.dot(&b64);
        let size = a64.mapv(f64::abs).dot(&b64.mapv(f64::abs));
        let k = a.ncols() as f64;
        for ((i, j), &v) in c.indexed_iter() {
            let bound = 2.0 * k * f64::from(f32::EPSILON) / 2.0 * size[[i, j]] + f64::MIN_POSITIVE;
            assert_abs_diff_eq!(f64::from(v), exact[[i, j]], epsilon = bound);
        }
    }

    #[test]
    fn matches_the_product_on_every_layout_and_edge() {
        if !runs_here() {
            return;
        }
        // Shapes with partial tiles in both directions (6 rows, 16
        // columns), and an inner dimension past one chunk (512).
        for (m, k, n) in [(1, 1, 1), (7, 3, 17), (13, 530, 40), (6, 512, 16)] {
            let a = matrix(m, k, 1);
            let b = matrix(k, n, 2);
            let at = matrix(k, m, 3);
            let bt = matrix(n, k, 4);
            let a_rev = a.slice(s![..;-1, ..;-1]);
            let b_rev = b.slice(s![..;-1, ..]);
            for av in [a.view(), at.t(), a_rev] {
                for bv in [b.view(), bt.t(), b_rev] {
                    check(av, bv, &product(av, bv, PLAIN, 0));
                }
            }
        }
    }

    #[test]
    fn blocks_past_every_block_size() {
        if !runs_here() {
            return;
        }
        // m > MC, k > 2 KC, n > NC: every loop takes more than one turn.
        let (m, k, n) = (MC + 7, 2 * KC + 9, NC + 21);
        let a = matrix(m, k, 5);
        let b = matrix(k, n, 6);
        check(a.view(), b.view(), &product(a.view(), b.view(), PLAIN, 0));
    }

    #[test]
    fn blocks_of_c_are_summed_alike() {
        if !runs_here() {
            return;
        }
        // The invariant the splitter relies on: rows and columns of C
        // computed in a call of their own get the same bits.
        let (m, k, n) = (20, 1100, 50);
        let a = matrix(m, k, 7);
        let b = matrix(k, n, 8);
        let whole = product(a.view(), b.view(), PLAIN, 0);
        let top = product(a.slice(s![..9, ..]), b.view(), PLAIN, 0);
        let right = product(a.view(), b.slice(s![.., 21..]), PLAIN, 0);
        assert_eq!(top, whole.slice(s![..9, ..]));
        assert_eq!(right, whole.slice(s![.., 21..]));
    }

    #[test]
    fn a_is_packed_once_per_product_and_never_reused_stale() {
        if !runs_here() {
            return;
        }
        let (m, k, n) = (13, 700, 40);
        let mut a = matrix(m, k, 13);
        let b = matrix(k, n, 14);
        let whole = product(a.view(), b.view(), PLAIN, 0);
        // Blocks of columns of one product (id 7): the second and third
        // calls use A as the first packed it, and get the same bits.
        let left = product(a.view(), b.slice(s![.., ..17]), PLAIN, 7);
        let right = product(a.view(), b.slice(s![.., 17..]), PLAIN, 7);
        assert_eq!(left, whole.slice(s![.., ..17]));
        assert_eq!(right, whole.slice(s![.., 17..]));
        // The same address with new values, as a new product (id 8): A is
        // packed again.
        a.mapv_inplace(|v| -2.0 * v);
        let again = product(a.view(), b.view(), PLAIN, 8);
        assert_eq!(again, whole.mapv(|v| -2.0 * v));
        // Same id and address, other strides or shape: packed again.
        let at = a.t().as_standard_layout().into_owned();
        assert_eq!(product(a.view(), b.view(), PLAIN, 9), again);
        assert_eq!(product(a.slice(s![..6, ..]), b.view(), PLAIN, 9), again.slice(s![..6, ..]));
        check(at.t(), b.view(), &product(at.t(), b.view(), PLAIN, 9));
    }

    #[test]
    fn the_store_applies_bias_relu_and_gate() {
        if !runs_here() {
            return;
        }
        let (m, k, n) = (9, 40, 21);
        let mut a = matrix(m, k, 9);
        a.row_mut(0).fill(0.0); // a zero row: relu of +0 plus a bias
        a[[1, 0]] = f32::NAN; // a NaN row: relu keeps NaN, the gate zeroes it
        let b = matrix(k, n, 10);
        // The bias every other element of a column (stride 2).
        let bias_store = matrix(2 * m, 1, 11);
        let mut gate = matrix(m, n, 12);
        gate[[2, 3]] = 0.0;
        gate[[4, 5]] = f32::NAN;
        gate[[1, 0]] = 1.0;
        gate[[1, 1]] = -1.0;
        // The gate laid out with C's row stride (n + 3).
        let mut gate_c = Array2::from_elem((m, n + 3), 1.0f32);
        gate_c.slice_mut(s![.., ..n]).assign(&gate);
        let plain = product(a.view(), b.view(), PLAIN, 0);
        for relu in [false, true] {
            for (with_bias, with_gate) in [(false, false), (true, false), (false, true), (true, true)] {
                let store = Epilogue {
                    bias: if with_bias { bias_store.as_ptr() } else { std::ptr::null() },
                    bias_stride: 2,
                    relu,
                    gate: if with_gate { gate_c.as_ptr() } else { std::ptr::null() },
                    gate_ld: n + 3,
                };
                let c = product(a.view(), b.view(), store, 0);
                for ((i, j), &v) in c.indexed_iter() {
                    let mut want = plain[[i, j]];
                    if with_bias {
                        want += bias_store[[2 * i, 0]];
                    }
                    if relu && want <= 0.0 {
                        want = 0.0;
                    }
                    if with_gate && gate[[i, j]].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                        want = 0.0;
                    }
                    // The same operations in the same order: same bits
                    // (zeros are +0, NaN stays NaN).
                    assert_eq!(
                        v.to_bits(),
                        want.to_bits(),
                        "at ({i}, {j}), relu {relu}, bias {with_bias}, gate {with_gate}"
                    );
                }
            }
        }
        assert!(plain[[1, 0]].is_nan());
    }
}
