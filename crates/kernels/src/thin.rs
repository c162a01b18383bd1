//! Matrix-product kernels for the shapes the guide's network produces,
//! where a general GEMM spends more time packing than multiplying:
//!
//! - `small_k`: `C = A B` with a short inner dimension (k <= 32) or few
//!   rows, and the rows of `B` contiguous, e.g. `W[l] A[l-1]` with `A` of
//!   shape (n[l-1], m), or the output layer's `W[L] A[L-1]`: C is computed
//!   in blocks of columns whose rows of B stay in the level-1 cache, each
//!   row of C written along its length, the bias, relu and gate applied
//!   as it is stored;
//! - `dots`: `C = A B` with a tiny output (m n <= 1024), a long inner
//!   dimension, the rows of `A` and the columns of `B` contiguous, e.g.
//!   `dW = dZ A^T`: one dot product per element.
//!
//! Both are compiled twice, for AVX2+FMA (chosen at run time when the CPU
//! has them) and for the baseline target.

// Index loops over fixed-size register tiles are the clearest form here.
#![allow(clippy::needless_range_loop)]

use crate::operand::{Epilogue, Out, Strided};
use crate::reduce::fold8;
use crate::Element;

#[inline(always)]
fn fmadd<T: Element, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        c + a * b
    }
}

/// The most bytes of B a column block of `small_k` spans (its `k` rows),
/// as a share of the level-1 data cache: the block stays there while every
/// row of C goes by.
fn small_k_block_bytes() -> usize {
    crate::cache::caches().l1d / 2
}

/// # Safety
/// `a` is an (m, k) array with element strides `(rsa, csa)`; `b` is (k, n)
/// with row stride `rsb` and contiguous rows; `c` is (m, n), row-major
/// with row stride `ldc` >= n.
/// `bias`, when not null, points to m values (stride `sbias`) added to the
/// rows of C; with `RELU`, C is `max(AB + bias, 0)` (NaN kept); with
/// `GATE`, C is `+0` where the epilogue's gate is not positive (NaN
/// included), as [`Epilogue`] says.
#[inline(always)]
unsafe fn small_k_body<T: Element, const FMA: bool, const RELU: bool, const GATE: bool>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    epi: &Epilogue<T>,
    c: Out<T>,
) {
    let (a, rsa, csa, b, rsb) = (a.ptr, a.rs, a.cs, b.ptr, b.rs);
    let (bias, sbias, c, ldc) = (epi.bias, epi.bias_stride, c.ptr, c.ld);
    let (gate, gld) = (epi.gate, epi.gate_ld);
    // Blocks of columns whose k rows of B stay in the level-1 cache; in
    // each, the rows of C one after the other, so that each row of C is
    // written along its length (whole cache lines, in order). Register
    // tiles of 4 rows x 8 columns of C, accumulated over all of k from the
    // bias and stored once; B's rows are read in place (no packing).
    let width = (small_k_block_bytes() / (k * std::mem::size_of::<T>()).max(1)).max(32) / 8 * 8;
    // SAFETY (whole body): offsets stay inside the arrays described above.
    unsafe {
        let at = |i: usize, p: usize| *a.offset(i as isize * rsa + p as isize * csa);
        let brow = |p: usize, j: usize| b.offset(p as isize * rsb).add(j);
        let b0 = |i: usize| if bias.is_null() { T::zero() } else { *bias.offset(i as isize * sbias) };
        let act = |v: T, g: T| {
            let v = if RELU && v <= T::zero() { T::zero() } else { v };
            // Kept where the gate is positive; +0 where not, NaN included.
            if !GATE || g > T::zero() {
                v
            } else {
                T::zero()
            }
        };
        // A tile's gate values, read before any of its stores: C and the
        // gate could alias as far as the compiler knows, and reading them
        // between the stores keeps it from storing whole vectors.
        let gates = |i: usize, j: usize| {
            if GATE {
                *(gate.add(i * gld + j) as *const [T; 8])
            } else {
                [T::one(); 8]
            }
        };
        let mut j0 = 0;
        while j0 < n {
            let j1 = (j0 + width).min(n);
            let tiles = j0 + (j1 - j0) / 8 * 8;
            let mut i = 0;
            while i < m {
                let rows = 4.min(m - i);
                if rows == 4 {
                    let mut j = j0;
                    while j < tiles {
                        let mut acc = [[T::zero(); 8]; 4];
                        for (r, row) in acc.iter_mut().enumerate() {
                            *row = [b0(i + r); 8];
                        }
                        for p in 0..k {
                            let bp = &*(brow(p, j) as *const [T; 8]);
                            for (r, row) in acc.iter_mut().enumerate() {
                                let av = at(i + r, p);
                                for l in 0..8 {
                                    row[l] = fmadd::<T, FMA>(av, bp[l], row[l]);
                                }
                            }
                        }
                        for (r, row) in acc.iter().enumerate() {
                            let (out, g) = (c.add((i + r) * ldc + j), gates(i + r, j));
                            for l in 0..8 {
                                *out.add(l) = act(row[l], g[l]);
                            }
                        }
                        j += 8;
                    }
                } else {
                    for r in i..i + rows {
                        let mut j = j0;
                        // Single rows in tiles of 32 columns: four times the
                        // work per element of A read.
                        while j + 32 <= tiles {
                            let mut row = [b0(r); 32];
                            for p in 0..k {
                                let bp = &*(brow(p, j) as *const [T; 32]);
                                let av = at(r, p);
                                for l in 0..32 {
                                    row[l] = fmadd::<T, FMA>(av, bp[l], row[l]);
                                }
                            }
                            let out = c.add(r * ldc + j);
                            let g: [[T; 8]; 4] = std::array::from_fn(|h| gates(r, j + 8 * h));
                            for l in 0..32 {
                                *out.add(l) = act(row[l], g[l / 8][l % 8]);
                            }
                            j += 32;
                        }
                        while j < tiles {
                            let mut row = [b0(r); 8];
                            for p in 0..k {
                                let bp = &*(brow(p, j) as *const [T; 8]);
                                let av = at(r, p);
                                for l in 0..8 {
                                    row[l] = fmadd::<T, FMA>(av, bp[l], row[l]);
                                }
                            }
                            let (out, g) = (c.add(r * ldc + j), gates(r, j));
                            for l in 0..8 {
                                *out.add(l) = act(row[l], g[l]);
                            }
                            j += 8;
                        }
                    }
                }
                for r in i..i + rows {
                    for jj in tiles..j1 {
                        let mut s = b0(r);
                        for p in 0..k {
                            s = fmadd::<T, FMA>(at(r, p), *brow(p, jj), s);
                        }
                        let g = if GATE { *gate.add(r * gld + jj) } else { T::one() };
                        *c.add(r * ldc + jj) = act(s, g);
                    }
                }
                i += rows;
            }
            j0 = j1;
        }
    }
}

/// Length of the chunks of the inner dimension in `dots`, so that the
/// chunks of A's rows and B's columns stay in cache while every output
/// element takes its share.
const K_CHUNK: usize = 512;

/// # Safety
/// `a` is (m, k) with contiguous rows (row stride `rsa`); `b` is (k, n)
/// with contiguous columns (column stride `csb`); `c` has room for m * n
/// elements, row-major.
#[inline(always)]
unsafe fn dots_body<T: Element, const FMA: bool>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    c: *mut T,
) {
    let (a, rsa, b, csb) = (a.ptr, a.rs, b.ptr, b.cs);
    // SAFETY (whole body): offsets stay inside the arrays described above.
    unsafe {
        for idx in 0..m * n {
            *c.add(idx) = T::zero();
        }
        let mut k0 = 0;
        while k0 < k {
            let w = K_CHUNK.min(k - k0);
            let split = w - w % 8;
            for i in 0..m {
                let ar = std::slice::from_raw_parts(a.offset(i as isize * rsa).add(k0), w);
                // Up to four columns of B at once: each chunk of A's row is
                // loaded once for four dot products, and the 4 x 8 partial
                // sums are independent chains the CPU can overlap.
                let mut j = 0;
                while j < n {
                    let cols = 4.min(n - j);
                    let bc: [&[T]; 4] = std::array::from_fn(|t| {
                        let jj = j + t.min(cols - 1);
                        std::slice::from_raw_parts(b.offset(jj as isize * csb).add(k0), w)
                    });
                    // Eight lane sums per column, folded in a fixed order;
                    // with FMA by the intrinsics of `dot4_fma` (same sums).
                    let sums: [T; 4] = if FMA {
                        dot4_fma::<T>(ar.as_ptr(), std::array::from_fn(|t| bc[t].as_ptr()), split)
                    } else {
                        let mut acc = [[T::zero(); 8]; 4];
                        let mut p = 0;
                        while p < split {
                            let x = &*(ar.as_ptr().add(p) as *const [T; 8]);
                            for t in 0..4 {
                                let y = &*(bc[t].as_ptr().add(p) as *const [T; 8]);
                                for l in 0..8 {
                                    acc[t][l] = fmadd::<T, FMA>(x[l], y[l], acc[t][l]);
                                }
                            }
                            p += 8;
                        }
                        acc.map(fold8)
                    };
                    for (t, &s) in sums.iter().enumerate().take(cols) {
                        let mut s = s;
                        for q in split..w {
                            s = fmadd::<T, FMA>(ar[q], bc[t][q], s);
                        }
                        let cij = c.add(i * n + j + t);
                        *cij = *cij + s;
                    }
                    j += cols;
                }
            }
            k0 += w;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_k_avx2<T: Element, const RELU: bool, const GATE: bool>(
    dims: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    epi: &Epilogue<T>,
    c: Out<T>,
) {
    // SAFETY: forwarded from the caller.
    unsafe { small_k_body::<T, true, RELU, GATE>(dims, a, b, epi, c) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<T: Element>(dims: [usize; 3], a: Strided<T>, b: Strided<T>, c: *mut T) {
    // SAFETY: forwarded from the caller.
    unsafe { dots_body::<T, true>(dims, a, b, c) }
}

/// Whether the AVX2+FMA versions run: the CPU has both, and the
/// baseline path was not asked for ([`crate::cpu::Path`]).
fn has_fma() -> bool {
    crate::cpu::path().fma()
}

/// `C = act(A B + bias) * [gate > 0]` for a short inner dimension, with
/// the epilogue `epi` applied as each tile is stored; see the module docs.
///
/// # Safety
/// As [`small_k_body`] for `a`, `b` (contiguous rows: `b.cs == 1`) and
/// `c`, and the epilogue's bias covers C's rows.
pub(crate) unsafe fn small_k<T: Element>(
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    epi: &Epilogue<T>,
    c: Out<T>,
) {
    debug_assert_eq!(b.cs, 1, "small_k reads B's rows as slices");
    let dims = [m, k, n];
    // SAFETY (both branches): the caller's contract; the AVX2 versions run
    // only on a CPU that has AVX2 and FMA.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if has_fma() {
            return match (epi.relu, !epi.gate.is_null()) {
                (true, true) => small_k_avx2::<T, true, true>(dims, a, b, epi, c),
                (true, false) => small_k_avx2::<T, true, false>(dims, a, b, epi, c),
                (false, true) => small_k_avx2::<T, false, true>(dims, a, b, epi, c),
                (false, false) => small_k_avx2::<T, false, false>(dims, a, b, epi, c),
            };
        }
        match (epi.relu, !epi.gate.is_null()) {
            (true, true) => small_k_body::<T, false, true, true>(dims, a, b, epi, c),
            (true, false) => small_k_body::<T, false, true, false>(dims, a, b, epi, c),
            (false, true) => small_k_body::<T, false, false, true>(dims, a, b, epi, c),
            (false, false) => small_k_body::<T, false, false, false>(dims, a, b, epi, c),
        }
    }
}

/// `C = A B` by one dot product per element, for a tiny C and a long inner
/// dimension; see the module docs. C is written row-major with `n`
/// elements between rows.
///
/// # Safety
/// As [`dots_body`]: A's rows and B's columns are contiguous (`a.cs == 1`,
/// `b.rs == 1`).
pub(crate) unsafe fn dots<T: Element>([m, k, n]: [usize; 3], a: Strided<T>, b: Strided<T>, c: *mut T) {
    debug_assert!(a.cs == 1 && b.rs == 1, "dots reads A's rows and B's columns as slices");
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the rest is the caller's.
        return unsafe { dots_avx2([m, k, n], a, b, c) };
    }
    // SAFETY: the caller's.
    unsafe { dots_body::<T, false>([m, k, n], a, b, c) }
}

/// Four dot products of `x` with `ys[t]` over `len` elements (a multiple
/// of 8), each as eight lane sums `s_l = sum_q x[8q+l] y[8q+l]` by fused
/// multiply-adds, folded by [`fold8`]: written with AVX2 intrinsics,
/// because LLVM vectorised the portable loop for f32 across the four
/// columns, with a shuffle per multiply-add. Chosen by type (the test
/// folds away).
///
/// # Safety
/// `x` and each `ys[t]` hold `len` elements; the CPU has AVX2 and FMA.
#[inline(always)]
unsafe fn dot4_fma<T: Element>(x: *const T, ys: [*const T; 4], len: usize) -> [T; 4] {
    use std::any::TypeId;
    // SAFETY (both branches): T is the type tested, so the casts change no
    // pointer's meaning and the result is the same type; the rest is the
    // caller's contract.
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            let r = dot4_f32(x.cast(), ys.map(|y| y.cast()), len);
            std::mem::transmute_copy::<[f32; 4], [T; 4]>(&r)
        } else {
            let r = dot4_f64(x.cast(), ys.map(|y| y.cast()), len);
            std::mem::transmute_copy::<[f64; 4], [T; 4]>(&r)
        }
    }
}

/// [`dot4_fma`] for one element type: `$lanes` per vector, `8 / $lanes`
/// vectors per column.
macro_rules! dot4 {
    ($name:ident, $t:ty, $lanes:expr, $zero:ident, $loadu:ident, $storeu:ident, $fmadd:ident) => {
        /// See [`dot4_fma`].
        ///
        /// # Safety
        /// As there.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(x: *const $t, ys: [*const $t; 4], len: usize) -> [$t; 4] {
            use std::arch::x86_64::*;
            const V: usize = 8 / $lanes;
            // SAFETY: x and ys[t] hold len elements (the caller's contract).
            unsafe {
                let mut acc = [[$zero(); V]; 4];
                let mut p = 0;
                while p < len {
                    for v in 0..V {
                        let xv = $loadu(x.add(p + v * $lanes));
                        for (t, y) in ys.iter().enumerate() {
                            acc[t][v] = $fmadd(xv, $loadu(y.add(p + v * $lanes)), acc[t][v]);
                        }
                    }
                    p += 8;
                }
                std::array::from_fn(|t| {
                    let mut s = [0.0 as $t; 8];
                    for v in 0..V {
                        $storeu(s.as_mut_ptr().add(v * $lanes), acc[t][v]);
                    }
                    fold8(s)
                })
            }
        }

        /// Never called: there is no AVX2 off x86-64.
        ///
        /// # Safety
        /// Never safe to call.
        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn $name(_: *const $t, _: [*const $t; 4], _: usize) -> [$t; 4] {
            unreachable!("dot4_fma needs AVX2 and FMA")
        }
    };
}
dot4!(dot4_f32, f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps);
dot4!(dot4_f64, f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd);
