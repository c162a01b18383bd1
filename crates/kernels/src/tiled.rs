//! The tiled GEMM: `C = epi(A B)` for f32 and f64, with the [`Epilogue`]
//! (bias, relu, gate) applied as each tile of C is stored, on the
//! micro-kernel the CPU runs best ([`Isa`]): AVX-512, AVX2 with FMA, or
//! a portable one.
//!
//! The layout is the one of BLIS (Van Zee and van de Geijn, 2015): C is
//! computed in tiles of `MR` rows by `NR` columns held in vector registers
//! while the inner dimension streams through; B is copied ("packed") in
//! blocks of `kc` by `nc` into panels of `NR` columns, A in blocks of `mc`
//! by `kc` into panels of `MR` rows, so that the micro-kernel reads both
//! with unit stride. A small A (the weights) is packed whole, once per
//! product and thread, however many blocks of columns of C the product is
//! cut into. The block sizes come from the CPU's caches
//! ([`Blocks::for_tiles`]): a panel of B stays near the core (levels 1
//! and 2) while the panels of a block of A (in level 2) go past it, and a
//! block of B sits in level 3.
//!
//! Each micro-kernel is written once, by a macro, for the two element
//! types; the loops over blocks and the packing are generic and compiled
//! again inside each instruction set's target features.
//!
//! Why not the `gemm` crate (it is still the `gemm` path, see
//! [`crate::cpu::Path`]): it writes C, and then the bias, relu and gate
//! are applied in a second pass over memory that has left the cache; here
//! they cost nothing extra.
//!
//! Each element of C is summed in the same order whatever block of C a
//! call computes: in chunks of `kc` along the inner dimension, each chunk
//! by (fused, on the SIMD kernels) multiply-adds from its first index to
//! its last, added to C chunk after chunk. So splitting a product into
//! blocks of rows or columns across cores changes no bit of the result,
//! and neither do `mc` and `nc`.

use crate::cache::Blocks;
pub(crate) use crate::cpu::Isa;
use crate::operand::{Epilogue, Out, Strided};
use crate::Element;
use std::any::TypeId;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::RefCell;

/// A is packed whole, once per product and thread, when it takes at most
/// this many bytes; larger, a block of `mc` rows at a time.
const WHOLE_A_BYTES: usize = 4 << 20;

/// Each thread's packing buffers, kept between calls (in units of 8
/// bytes, for either element type).
struct Packed {
    a: Vec<u64>,
    b: Vec<u64>,
    /// What `a` holds when it holds all of an A: the product's id (see
    /// [`fused`]), the kernel and chunk length it was packed for, A's
    /// address, strides and shape.
    a_is: Option<PackedA>,
}

/// What identifies a packed A: the product's id, the kernel and chunk
/// length it was packed for, A's address, strides and shape.
type PackedA = (u64, Isa, usize, usize, isize, isize, usize, usize);

thread_local! {
    static PACKED: RefCell<Packed> = const { RefCell::new(Packed { a: Vec::new(), b: Vec::new(), a_is: None }) };
}

/// `C = epi(A B)` for A (m, k) and B (k, n), C written without being read
/// first, on the micro-kernel of `isa` with block sizes `blocks`.
///
/// `product` names the product this call computes a block of: the calls
/// with the same non-zero `product` on one thread read the same A (the
/// same address, strides, shape and values), so A, when small enough, is
/// packed by the first of them only, however many blocks of columns the
/// product is cut into. 0: no such promise.
///
/// # Safety
/// `isa.runs_here()`; `k > 0`; A and B are valid arrays of those shapes
/// and strides; C has room for m rows of `c.ld >= n` elements and no other
/// thread touches its rows `0..m`, columns `0..n` meanwhile; the
/// epilogue's bias and gate, when not null, cover C's rows and columns.
pub(crate) unsafe fn fused<T: Element>(
    (isa, blocks): (Isa, Blocks),
    [m, k, n]: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    c: Out<T>,
    epi: &Epilogue<T>,
    product: u64,
) {
    debug_assert!(isa.runs_here() && k > 0);
    let size = std::mem::size_of::<T>();
    let (mr, nr) = isa.tile(size);
    let Blocks { mc, kc, nc } = blocks;
    PACKED.with_borrow_mut(|p| {
        let kc_max = k.min(kc);
        let whole = m * k * size <= WHOLE_A_BYTES;
        let need_a = if whole { m.div_ceil(mr) * mr * k } else { m.min(mc).div_ceil(mr) * mr * kc_max };
        let need_b = n.min(nc).div_ceil(nr) * nr * kc_max;
        let key = (product, isa, kc, a.ptr as usize, a.rs, a.cs, m, k);
        // In units of 8 bytes, with room to start on a cache line.
        let words = |elements: usize| (elements * size).div_ceil(8) + 8;
        let grow = p.a.len() < words(need_a);
        if grow {
            p.a.resize(words(need_a), 0);
        }
        // (A moved buffer may start its line elsewhere: packed again.)
        let a_ready = whole && product != 0 && !grow && p.a_is == Some(key);
        p.a_is = None;
        if p.b.len() < words(need_b) {
            p.b.resize(words(need_b), 0);
        }
        let pack = if a_ready {
            PackA::Ready
        } else if whole {
            PackA::Whole
        } else {
            PackA::Blocks
        };
        let (pa, pb) = (line_start(&mut p.a).cast::<T>(), line_start(&mut p.b).cast::<T>());
        let job = Job { dims: [m, k, n], a, b, c, epi: *epi, pack, pa, pb, blocks };
        // SAFETY: the caller's contract (the CPU runs `isa`), and the
        // buffers are large enough for every block, as sized above. The
        // type tests choose the instantiation of T's own type.
        unsafe {
            if TypeId::of::<T>() == TypeId::of::<f32>() {
                run_f32(isa, &*(&job as *const Job<T>).cast::<Job<f32>>());
            } else {
                debug_assert!(TypeId::of::<T>() == TypeId::of::<f64>(), "Element is sealed");
                run_f64(isa, &*(&job as *const Job<T>).cast::<Job<f64>>());
            }
        }
        if whole && product != 0 {
            p.a_is = Some(key);
        }
    });
}

/// The first element of `v` at a 64-byte boundary (a cache line).
fn line_start(v: &mut [u64]) -> *mut u64 {
    let skip = v.as_ptr().align_offset(64).min(7);
    v[skip..].as_mut_ptr()
}

/// How [`blocks`] packs A.
#[derive(Clone, Copy, PartialEq)]
enum PackA {
    /// All of A is packed already: chunk `pc..` of the inner dimension at
    /// `pa + pc * m'` (m rounded up to panels of `MR`), its rows `ic..` at
    /// `ic * kc` into the chunk.
    Ready,
    /// All of A, in that layout, as the first block of columns goes by.
    Whole,
    /// `mc` rows at a time, at `pa`, for each block of columns again.
    Blocks,
}

/// One call of the loops over blocks.
struct Job<T> {
    dims: [usize; 3],
    a: Strided<T>,
    b: Strided<T>,
    c: Out<T>,
    epi: Epilogue<T>,
    pack: PackA,
    /// The packing buffers, each at a cache line, with room for A as
    /// `pack` says (when [`PackA::Ready`], holding it) and for a packed
    /// block of B.
    pa: *mut T,
    pb: *mut T,
    blocks: Blocks,
}

/// A micro-kernel: `kc` rank-one updates of a tile from a panel of A and
/// one of B, then the store.
type Kernel<T> = unsafe fn(usize, *const T, *const T, &Tile<T>);

/// Runs a job of f32 on the loops compiled for `isa`.
///
/// # Safety
/// As [`fused`].
unsafe fn run_f32(isa: Isa, job: &Job<f32>) {
    // SAFETY: the caller's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => blocks_avx512_f32(job),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => blocks_avx2_f32(job),
            _ => blocks::<f32, 4, 8>(job, portable::<f32, 4, 8>),
        }
    }
}

/// Runs a job of f64 on the loops compiled for `isa`.
///
/// # Safety
/// As [`fused`].
unsafe fn run_f64(isa: Isa, job: &Job<f64>) {
    // SAFETY: the caller's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => blocks_avx512_f64(job),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => blocks_avx2_f64(job),
            _ => blocks::<f64, 4, 4>(job, portable::<f64, 4, 4>),
        }
    }
}

/// The loops over blocks, compiled inside an instruction set's target
/// features (each `blocks_*` below), so that the packing is vectorised
/// for it too.
///
/// # Safety
/// As [`fused`]; `MR` and `NR` are the tile of `kernel`, which the CPU
/// runs.
#[inline(always)]
unsafe fn blocks<T: Element, const MR: usize, const NR: usize>(job: &Job<T>, kernel: Kernel<T>) {
    let Job {
        dims: [m, k, n],
        a,
        b,
        c,
        ref epi,
        pack,
        pa,
        pb,
        blocks: Blocks { mc, kc: kc_max, nc: nc_max },
    } = *job;
    let (rsa, csa, rsb, csb) = (a.rs, a.cs, b.rs, b.cs);
    let (a, b) = (a.ptr, b.ptr);
    let m_panels = m.div_ceil(MR) * MR;
    let mut jc = 0;
    while jc < n {
        let nc = (n - jc).min(nc_max);
        let mut pc = 0;
        while pc < k {
            let kc = (k - pc).min(kc_max);
            let (first, last) = (pc == 0, pc + kc == k);
            // SAFETY (this block): every offset stays inside A, B and C
            // (jc < n, pc < k, ic < m), and the packed blocks fit the
            // buffers (the caller's contract).
            unsafe {
                pack_b::<T, NR>(kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, pb);
                let mut ic = 0;
                while ic < m {
                    let mc = (m - ic).min(mc);
                    let pa = match pack {
                        PackA::Blocks => pa,
                        _ => pa.add(pc * m_panels + ic * kc),
                    };
                    if pack == PackA::Blocks || (pack == PackA::Whole && jc == 0) {
                        pack_a::<T, MR>(
                            mc,
                            kc,
                            a.offset(ic as isize * rsa + pc as isize * csa),
                            rsa,
                            csa,
                            pa,
                        );
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

/// Rows `0..mc` and inner indices `0..kc` of A into panels of `MR` rows
/// (panel `p` at `out + p * MR * kc`, index `q` of it at `q * MR`), the
/// rows past `mc` of the last panel zero.
///
/// # Safety
/// A holds those rows and indices; `out` has room for the panels.
#[inline(always)]
unsafe fn pack_a<T: Element, const MR: usize>(
    mc: usize,
    kc: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    out: *mut T,
) {
    let mut i = 0;
    while i < mc {
        let rows = (mc - i).min(MR);
        // SAFETY: the caller's contract.
        unsafe {
            let o = out.add(i * kc);
            let a = a.offset(i as isize * rsa);
            if rows == MR && csa == 1 {
                let r: [*const T; MR] = std::array::from_fn(|t| a.offset(t as isize * rsa));
                transpose::<T, MR>(kc, &r, o);
            } else if rows == MR && rsa == 1 {
                for q in 0..kc {
                    std::ptr::copy_nonoverlapping(a.offset(q as isize * csa), o.add(q * MR), MR);
                }
            } else {
                for q in 0..kc {
                    for t in 0..MR {
                        *o.add(q * MR + t) =
                            if t < rows { *a.offset(t as isize * rsa + q as isize * csa) } else { T::zero() };
                    }
                }
            }
        }
        i += MR;
    }
}

/// Inner indices `0..kc` and columns `0..nc` of B into panels of `NR`
/// columns (panel `p` at `out + p * NR * kc`, index `q` of it at
/// `q * NR`), the columns past `nc` of the last panel zero.
///
/// # Safety
/// B holds those indices and columns; `out` has room for the panels.
#[inline(always)]
unsafe fn pack_b<T: Element, const NR: usize>(
    kc: usize,
    nc: usize,
    b: *const T,
    rsb: isize,
    csb: isize,
    out: *mut T,
) {
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
                    std::ptr::copy_nonoverlapping(src.add(j), out.add(j * kc + q * NR), NR);
                    j += NR;
                }
            }
        } else if rsb == 1 {
            // Columns of B contiguous (B is a transposed array): a
            // transpose of each panel.
            let mut j = 0;
            while j < full {
                let cols: [*const T; NR] = std::array::from_fn(|t| b.offset((j + t) as isize * csb));
                transpose::<T, NR>(kc, &cols, out.add(j * kc));
                j += NR;
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
                    *o.add(q * NR + t) = if t < cols {
                        *b.offset(q as isize * rsb + (full + t) as isize * csb)
                    } else {
                        T::zero()
                    };
                }
            }
        }
    }
}

/// `out[q * W + t] = src[t][q]` for `q < kc`, `t < W`: `W` contiguous
/// runs of `kc` values interleaved, as a panel packs them. Eight indices
/// at a time: eight values read from each run (whole vectors), then
/// written out index by index, so that no store is scattered.
///
/// # Safety
/// Each `src[t]` holds `kc` values; `out` has room for `kc * W`.
#[inline(always)]
unsafe fn transpose<T: Element, const W: usize>(kc: usize, src: &[*const T; W], out: *mut T) {
    const B: usize = 8;
    let mut q = 0;
    // SAFETY (all of it): the caller's contract.
    unsafe {
        while q + B <= kc {
            let mut blk = [[T::zero(); B]; W];
            for (row, &s) in blk.iter_mut().zip(src) {
                std::ptr::copy_nonoverlapping(s.add(q), row.as_mut_ptr(), B);
            }
            for i in 0..B {
                let o = out.add((q + i) * W);
                for (t, row) in blk.iter().enumerate() {
                    *o.add(t) = row[i];
                }
            }
            q += B;
        }
        while q < kc {
            for (t, &s) in src.iter().enumerate() {
                *out.add(q * W + t) = *s.add(q);
            }
            q += 1;
        }
    }
}

/// Where and how one tile of C is stored.
struct Tile<T> {
    /// The tile's element (0, 0) in C.
    c: Out<T>,
    /// How many of the tile's rows and columns are in C.
    rows: usize,
    cols: usize,
    /// Whether this is the first chunk of the inner dimension (C is
    /// written, not added to) and the last (the epilogue is applied).
    first: bool,
    last: bool,
    /// The product's epilogue, moved to the tile's first row and column.
    epi: Epilogue<T>,
}

/// Stores a tile's sums element by element (a tile at the edge of C, or
/// the portable kernel's): the same operations, in the same order, as the
/// vector stores.
///
/// # Safety
/// Rows `0..t.rows` and columns `0..t.cols` of the tile are in C (and in
/// the gate, when there is one); `sums` has at least `t.rows` rows.
#[inline(always)]
unsafe fn store_scalar<T: Element, const NR: usize>(sums: &[[T; NR]], t: &Tile<T>) {
    // SAFETY: the caller's contract.
    unsafe {
        for (i, row) in sums.iter().enumerate().take(t.rows) {
            for (j, &s) in row.iter().enumerate().take(t.cols) {
                let p = t.c.ptr.add(i * t.c.ld + j);
                let mut v = s;
                if !t.first {
                    v = *p + v;
                }
                if t.last {
                    if !t.epi.bias.is_null() {
                        v = v + *t.epi.bias.offset(i as isize * t.epi.bias_stride);
                    }
                    if t.epi.relu && v <= T::zero() {
                        v = T::zero();
                    }
                    if !t.epi.gate.is_null()
                        && (*t.epi.gate.add(i * t.epi.gate_ld + j)).partial_cmp(&T::zero())
                            != Some(std::cmp::Ordering::Greater)
                    {
                        v = T::zero();
                    }
                }
                *p = v;
            }
        }
    }
}

/// The portable micro-kernel: plain multiplies and adds on arrays the
/// compiler keeps in vector registers of the target's baseline.
///
/// # Safety
/// As [`Kernel`]: `a` and `b` hold packed panels of `kc` indices; the
/// tile is as [`Tile`] says.
#[inline(never)]
unsafe fn portable<T: Element, const MR: usize, const NR: usize>(
    kc: usize,
    a: *const T,
    b: *const T,
    t: &Tile<T>,
) {
    let mut acc = [[T::zero(); NR]; MR];
    // SAFETY: the caller's contract; the loop reads `kc * MR` values of
    // the A panel and `kc * NR` of the B panel.
    unsafe {
        let a = std::slice::from_raw_parts(a, kc * MR);
        let b = std::slice::from_raw_parts(b, kc * NR);
        for (aq, bq) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for (row, &x) in acc.iter_mut().zip(aq) {
                for (s, &y) in row.iter_mut().zip(bq) {
                    *s = *s + x * y;
                }
            }
        }
        store_scalar(&acc, t);
    }
}

/// A SIMD micro-kernel for one instruction set and element type: a tile
/// of `MR` rows by two vectors, `kc` fused multiply-adds of each
/// accumulator (the rows of A broadcast, the vectors of B loaded), then
/// the store with the epilogue, by vectors for a whole tile and by
/// [`store_scalar`] at the edges of C.
///
/// Not inlined: one call per tile costs nothing next to `kc` rank-one
/// updates, and on its own the loop keeps every accumulator in a register.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_kernel {
    ($name:ident, $feat:literal, $t:ty, $v:ty, mr $mr:literal, lanes $l:literal,
     $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident, $add:ident, $relu:ident, $gate:ident) => {
        /// # Safety
        /// As [`Kernel`], and the CPU has the kernel's features.
        #[target_feature(enable = $feat)]
        #[inline(never)]
        unsafe fn $name(kc: usize, a: *const $t, b: *const $t, t: &Tile<$t>) {
            const MR: usize = $mr;
            const L: usize = $l;
            // SAFETY: the caller's contract; the loops read `kc * MR`
            // values of the A panel and `kc * 2 L` of the B panel, and
            // store only the tile's rows and columns that are in C.
            unsafe {
                // C and the gate are read only at the end: their lines
                // arrive while the sums run.
                let gate = if t.last { t.epi.gate } else { std::ptr::null() };
                for i in 0..t.rows {
                    _mm_prefetch::<_MM_HINT_T0>(t.c.ptr.add(i * t.c.ld) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(t.c.ptr.add(i * t.c.ld + 2 * L - 1) as *const i8);
                    if !gate.is_null() {
                        _mm_prefetch::<_MM_HINT_T0>(gate.add(i * t.epi.gate_ld) as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(gate.add(i * t.epi.gate_ld + 2 * L - 1) as *const i8);
                    }
                }
                let mut acc = [[$zero(); 2]; MR];
                let (mut a, mut b) = (a, b);
                let mut step = || {
                    let b0 = $load(b);
                    let b1 = $load(b.add(L));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let x = $splat(*a.add(i));
                        row[0] = $fma(x, b0, row[0]);
                        row[1] = $fma(x, b1, row[1]);
                    }
                    a = a.add(MR);
                    b = b.add(2 * L);
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
                if t.rows == MR && t.cols == 2 * L {
                    for (i, row) in acc.iter().enumerate() {
                        let cp = t.c.ptr.add(i * t.c.ld);
                        for (h, &s) in row.iter().enumerate() {
                            let p = cp.add(L * h);
                            let mut v = s;
                            if !t.first {
                                v = $add($load(p), v);
                            }
                            if t.last {
                                if !t.epi.bias.is_null() {
                                    v = $add(v, $splat(*t.epi.bias.offset(i as isize * t.epi.bias_stride)));
                                }
                                if t.epi.relu {
                                    v = $relu(v);
                                }
                                if !t.epi.gate.is_null() {
                                    v = $gate($load(t.epi.gate.add(i * t.epi.gate_ld + L * h)), v);
                                }
                            }
                            $store(p, v);
                        }
                    }
                } else {
                    let mut sums = [[<$t>::default(); 2 * L]; MR];
                    for (row, s) in acc.iter().zip(sums.iter_mut()) {
                        $store(s.as_mut_ptr(), row[0]);
                        $store(s.as_mut_ptr().add(L), row[1]);
                    }
                    store_scalar(&sums, t);
                }
            }
        }
    };
}

/// The loops over blocks for one instruction set and element type,
/// compiled with its features.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_blocks {
    ($name:ident, $feat:literal, $t:ty, $kernel:ident, mr $mr:literal, nr $nr:literal) => {
        /// # Safety
        /// As [`fused`], and the CPU has the kernel's features.
        #[target_feature(enable = $feat)]
        unsafe fn $name(job: &Job<$t>) {
            // SAFETY: forwarded from the caller.
            unsafe { blocks::<$t, $mr, $nr>(job, $kernel) }
        }
    };
}

// The vector operations the kernels need beyond the intrinsics' own
// names: loads and broadcasts from pointers, and the epilogue's relu
// (`v <= 0` gives +0, NaN kept) and gate (`v` where `g > 0`, else +0;
// NaN is not positive).
#[cfg(target_arch = "x86_64")]
mod ops {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn relu256(v: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, _mm256_setzero_ps()), v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn gate256(g: __m256, v: __m256) -> __m256 {
        _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(g, _mm256_setzero_ps()), v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn relu256d(v: __m256d) -> __m256d {
        _mm256_andnot_pd(_mm256_cmp_pd::<_CMP_LE_OQ>(v, _mm256_setzero_pd()), v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn gate256d(g: __m256d, v: __m256d) -> __m256d {
        _mm256_and_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(g, _mm256_setzero_pd()), v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn relu512(v: __m512) -> __m512 {
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(v, _mm512_setzero_ps()), v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn gate512(g: __m512, v: __m512) -> __m512 {
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(g, _mm512_setzero_ps()), v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn relu512d(v: __m512d) -> __m512d {
        _mm512_maskz_mov_pd(_mm512_cmp_pd_mask::<_CMP_NLE_UQ>(v, _mm512_setzero_pd()), v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn gate512d(g: __m512d, v: __m512d) -> __m512d {
        _mm512_maskz_mov_pd(_mm512_cmp_pd_mask::<_CMP_GT_OQ>(g, _mm512_setzero_pd()), v)
    }
}
#[cfg(target_arch = "x86_64")]
use ops::*;

#[cfg(target_arch = "x86_64")]
simd_kernel!(kernel_avx2_f32, "avx2,fma", f32, __m256, mr 6, lanes 8,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
    relu256, gate256);
#[cfg(target_arch = "x86_64")]
simd_kernel!(kernel_avx2_f64, "avx2,fma", f64, __m256d, mr 6, lanes 4,
    _mm256_setzero_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
    relu256d, gate256d);
#[cfg(target_arch = "x86_64")]
simd_kernel!(kernel_avx512_f32, "avx512f,avx2,fma", f32, __m512, mr 12, lanes 16,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
    relu512, gate512);
#[cfg(target_arch = "x86_64")]
simd_kernel!(kernel_avx512_f64, "avx512f,avx2,fma", f64, __m512d, mr 12, lanes 8,
    _mm512_setzero_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
    relu512d, gate512d);

#[cfg(target_arch = "x86_64")]
simd_blocks!(blocks_avx2_f32, "avx2,fma", f32, kernel_avx2_f32, mr 6, nr 16);
#[cfg(target_arch = "x86_64")]
simd_blocks!(blocks_avx2_f64, "avx2,fma", f64, kernel_avx2_f64, mr 6, nr 8);
#[cfg(target_arch = "x86_64")]
simd_blocks!(blocks_avx512_f32, "avx512f,avx2,fma", f32, kernel_avx512_f32, mr 12, nr 32);
#[cfg(target_arch = "x86_64")]
simd_blocks!(blocks_avx512_f64, "avx512f,avx2,fma", f64, kernel_avx512_f64, mr 12, nr 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random;
    use approx::assert_abs_diff_eq;
    use ndarray::{s, Array2, ArrayView2, Ix2};

    fn matrix<T: Element>(m: usize, n: usize, seed: u64) -> Array2<T> {
        random(&[m, n], seed).into_dimensionality::<Ix2>().unwrap().mapv(T::cast)
    }

    /// Every instruction set, each with a message when this CPU lacks it
    /// (its tests are then skipped, never failed).
    fn isas() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|isa| {
                let yes = isa.runs_here();
                if !yes {
                    eprintln!("skipped: this CPU does not run the {isa:?} kernels");
                }
                yes
            })
            .collect()
    }

    /// [`fused`] on `isa` with `blocks` (product id `id`) into a buffer with
    /// row stride `n + 3` that starts as NaN (so a read of C before writing
    /// it would show), returned with the padding checked untouched.
    fn product_on<T: Element>(
        isa: Isa,
        blocks: Blocks,
        a: ArrayView2<'_, T>,
        b: ArrayView2<'_, T>,
        store: Epilogue<T>,
        id: u64,
    ) -> Array2<T> {
        let ((m, k), n) = (a.dim(), b.ncols());
        let ldc = n + 3;
        let mut c = vec![T::nan(); m * ldc];
        let (sa, sb) = (a.strides(), b.strides());
        // SAFETY: the CPU runs `isa` (the callers take it from `isas`); the
        // views are valid arrays with these strides; C has m rows of ldc >= n
        // elements; the store's pointers are set up by the callers for C's
        // shape and row stride.
        unsafe {
            let a = Strided { ptr: a.as_ptr(), rs: sa[0], cs: sa[1] };
            let b = Strided { ptr: b.as_ptr(), rs: sb[0], cs: sb[1] };
            fused((isa, blocks), [m, k, n], a, b, Out { ptr: c.as_mut_ptr(), ld: ldc }, &store, id)
        };
        let c = Array2::from_shape_vec((m, ldc), c).unwrap();
        assert!(c.slice(s![.., n..]).iter().all(|v| v.is_nan()), "the product wrote past column n");
        c.slice(s![.., ..n]).to_owned()
    }

    fn product<T: Element>(
        isa: Isa,
        a: ArrayView2<'_, T>,
        b: ArrayView2<'_, T>,
        store: Epilogue<T>,
        id: u64,
    ) -> Array2<T> {
        product_on(isa, isa.blocks::<T>(), a, b, store, id)
    }

    /// Checks `c` against the product in f64, within the forward error
    /// bound of a sum of k products in T: |error| <= k u sum |a b|
    /// (Higham, Accuracy and Stability, 3.1), u half of T's epsilon,
    /// doubled for slack in how the sum is grouped. A wrong tile, index or
    /// block is off by a whole term, far outside it.
    fn check<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>, c: &Array2<T>) {
        let a64 = a.mapv(T::as_f64);
        let b64 = b.mapv(T::as_f64);
        let exact = a64.dot(&b64);
        let size = a64.mapv(f64::abs).dot(&b64.mapv(f64::abs));
        let k = a.ncols() as f64;
        for ((i, j), &v) in c.indexed_iter() {
            let bound = 2.0 * k * T::epsilon().as_f64() / 2.0 * size[[i, j]] + f64::MIN_POSITIVE;
            assert_abs_diff_eq!(v.as_f64(), exact[[i, j]], epsilon = bound);
        }
    }

    fn matches_the_product_on_every_layout_and_edge_for<T: Element>(isa: Isa) {
        let (mr, nr) = isa.tile(std::mem::size_of::<T>());
        let kc = isa.blocks::<T>().kc;
        // Shapes with partial tiles in both directions, a whole tile, and an
        // inner dimension past one chunk.
        for (m, k, n) in [(1, 1, 1), (mr + 1, 3, nr + 1), (2 * mr + 1, kc + 18, 2 * nr + 8), (mr, kc, nr)] {
            let a = matrix::<T>(m, k, 1);
            let b = matrix::<T>(k, n, 2);
            let at = matrix::<T>(k, m, 3);
            let bt = matrix::<T>(n, k, 4);
            let a_rev = a.slice(s![..;-1, ..;-1]);
            let b_rev = b.slice(s![..;-1, ..]);
            for av in [a.view(), at.t(), a_rev] {
                for bv in [b.view(), bt.t(), b_rev] {
                    check(av, bv, &product(isa, av, bv, Epilogue::NONE, 0));
                }
            }
        }
    }

    #[test]
    fn matches_the_product_on_every_layout_and_edge() {
        for isa in isas() {
            matches_the_product_on_every_layout_and_edge_for::<f32>(isa);
            matches_the_product_on_every_layout_and_edge_for::<f64>(isa);
        }
    }

    fn blockings_change_no_bit_for<T: Element>(isa: Isa) {
        let (mr, nr) = isa.tile(std::mem::size_of::<T>());
        let own = isa.blocks::<T>();
        // m > mc, k > 2 kc, n > nc for the smallest blocks: every loop takes
        // more than one turn, and the last block of each is partial.
        let small = Blocks { mc: mr, kc: 128, nc: nr };
        let (m, k, n) = (3 * mr + 5, 2 * 128 + 9, 5 * nr + 3);
        let a = matrix::<T>(m, k, 5);
        let b = matrix::<T>(k, n, 6);
        let c = product_on(isa, small, a.view(), b.view(), Epilogue::NONE, 0);
        check(a.view(), b.view(), &c);
        // Other mc and nc (kc, which sets the order of the sums, kept): the
        // same bits, as the splitting across cores relies on.
        for blocks in [
            Blocks { mc: 2 * mr, ..small },
            Blocks { nc: 3 * nr, ..small },
            Blocks { mc: own.mc, nc: own.nc, ..small },
        ] {
            assert_eq!(
                product_on(isa, blocks, a.view(), b.view(), Epilogue::NONE, 0),
                c,
                "{isa:?} {blocks:?}"
            );
        }
        // The CPU's own blocks, with another kc: within the bound.
        check(a.view(), b.view(), &product_on(isa, own, a.view(), b.view(), Epilogue::NONE, 0));
        // A too large to be packed whole: packed a block of rows at a time.
        let big_m = WHOLE_A_BYTES / std::mem::size_of::<T>() / 300 + 1;
        let a = matrix::<T>(big_m, 300, 15);
        let b = matrix::<T>(300, nr + 1, 16);
        let c = product(isa, a.view(), b.view(), Epilogue::NONE, 0);
        check(a.view(), b.view(), &c);
        let blocks = Blocks { mc: mr * 3, ..isa.blocks::<T>() };
        assert_eq!(product_on(isa, blocks, a.view(), b.view(), Epilogue::NONE, 0), c);
    }

    #[test]
    fn blockings_of_one_kernel_change_no_bit() {
        for isa in isas() {
            blockings_change_no_bit_for::<f32>(isa);
            blockings_change_no_bit_for::<f64>(isa);
        }
    }

    fn blocks_of_c_are_summed_alike_for<T: Element>(isa: Isa) {
        // The invariant the splitter relies on: rows and columns of C
        // computed in a call of their own get the same bits.
        let (m, k, n) = (30, 1100, 70);
        let a = matrix::<T>(m, k, 7);
        let b = matrix::<T>(k, n, 8);
        let whole = product(isa, a.view(), b.view(), Epilogue::NONE, 0);
        let top = product(isa, a.slice(s![..9, ..]), b.view(), Epilogue::NONE, 0);
        let right = product(isa, a.view(), b.slice(s![.., 21..]), Epilogue::NONE, 0);
        assert_eq!(top, whole.slice(s![..9, ..]));
        assert_eq!(right, whole.slice(s![.., 21..]));
    }

    #[test]
    fn blocks_of_c_are_summed_alike() {
        for isa in isas() {
            blocks_of_c_are_summed_alike_for::<f32>(isa);
            blocks_of_c_are_summed_alike_for::<f64>(isa);
        }
    }

    fn a_is_packed_once_for<T: Element>(isa: Isa) {
        let (m, k, n) = (13, 700, 40);
        let mut a = matrix::<T>(m, k, 13);
        let b = matrix::<T>(k, n, 14);
        let whole = product(isa, a.view(), b.view(), Epilogue::NONE, 0);
        // Blocks of columns of one product (id 7): the second and third
        // calls use A as the first packed it, and get the same bits.
        let left = product(isa, a.view(), b.slice(s![.., ..17]), Epilogue::NONE, 7);
        let right = product(isa, a.view(), b.slice(s![.., 17..]), Epilogue::NONE, 7);
        assert_eq!(left, whole.slice(s![.., ..17]));
        assert_eq!(right, whole.slice(s![.., 17..]));
        // The same address with new values, as a new product (id 8): A is
        // packed again.
        a.mapv_inplace(|v| T::cast(-2.0) * v);
        let again = product(isa, a.view(), b.view(), Epilogue::NONE, 8);
        assert_eq!(again, whole.mapv(|v| T::cast(-2.0) * v));
        // Same id and address, other strides, shape or chunk length: packed
        // again.
        let at = a.t().as_standard_layout().into_owned();
        assert_eq!(product(isa, a.view(), b.view(), Epilogue::NONE, 9), again);
        assert_eq!(product(isa, a.slice(s![..6, ..]), b.view(), Epilogue::NONE, 9), again.slice(s![..6, ..]));
        check(at.t(), b.view(), &product(isa, at.t(), b.view(), Epilogue::NONE, 9));
        let short = Blocks { kc: 128, ..isa.blocks::<T>() };
        check(a.view(), b.view(), &product_on(isa, short, a.view(), b.view(), Epilogue::NONE, 9));
    }

    #[test]
    fn a_is_packed_once_per_product_and_never_reused_stale() {
        for isa in isas() {
            a_is_packed_once_for::<f32>(isa);
            a_is_packed_once_for::<f64>(isa);
        }
    }

    fn the_store_applies_bias_relu_and_gate_for<T: Element>(isa: Isa) {
        let (mr, nr) = isa.tile(std::mem::size_of::<T>());
        // Whole tiles and partial ones (the vector and the scalar stores).
        let (m, k, n) = (mr + 3, 40, 2 * nr + 5);
        let mut a = matrix::<T>(m, k, 9);
        a.row_mut(0).fill(T::zero()); // a zero row: relu of +0 plus a bias
        a[[1, 0]] = T::nan(); // a NaN row: relu keeps NaN, the gate zeroes it
        let b = matrix::<T>(k, n, 10);
        // The bias every other element of a column (stride 2).
        let bias_store = matrix::<T>(2 * m, 1, 11);
        let mut gate = matrix::<T>(m, n, 12);
        gate[[2, 3]] = T::zero();
        gate[[4, 5]] = T::nan();
        gate[[1, 0]] = T::one();
        gate[[1, 1]] = -T::one();
        gate[[m - 1, n - 1]] = T::nan();
        // The gate laid out with C's row stride (n + 3).
        let mut gate_c = Array2::from_elem((m, n + 3), T::one());
        gate_c.slice_mut(s![.., ..n]).assign(&gate);
        let plain = product(isa, a.view(), b.view(), Epilogue::NONE, 0);
        for relu in [false, true] {
            for (with_bias, with_gate) in [(false, false), (true, false), (false, true), (true, true)] {
                let store = Epilogue {
                    bias: if with_bias { bias_store.as_ptr() } else { std::ptr::null() },
                    bias_stride: 2,
                    relu,
                    gate: if with_gate { gate_c.as_ptr() } else { std::ptr::null() },
                    gate_ld: n + 3,
                };
                let c = product(isa, a.view(), b.view(), store, 0);
                for ((i, j), &v) in c.indexed_iter() {
                    let mut want = plain[[i, j]];
                    if with_bias {
                        want = want + bias_store[[2 * i, 0]];
                    }
                    if relu && want <= T::zero() {
                        want = T::zero();
                    }
                    if with_gate && gate[[i, j]].partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater)
                    {
                        want = T::zero();
                    }
                    // The same operations in the same order: same bits
                    // (zeros are +0, NaN stays NaN).
                    assert_eq!(
                        v.as_f64().to_bits(),
                        want.as_f64().to_bits(),
                        "{isa:?} at ({i}, {j}), relu {relu}, bias {with_bias}, gate {with_gate}"
                    );
                    assert!(!(v == T::zero() && v.is_sign_negative()), "a -0 at ({i}, {j})");
                }
            }
        }
        assert!(plain[[1, 0]].is_nan());
    }

    #[test]
    fn the_store_applies_bias_relu_and_gate() {
        for isa in isas() {
            the_store_applies_bias_relu_and_gate_for::<f32>(isa);
            the_store_applies_bias_relu_and_gate_for::<f64>(isa);
        }
    }
}
