//! The CPU's data caches, read once at run time (CPUID on x86-64), and the
//! block sizes of the tiled GEMM derived from them, as BLIS and OpenBLAS
//! derive theirs.

use std::sync::OnceLock;

/// The data caches one core sees, in bytes.
///
/// ```
/// let c = tapegrad_kernels::cpu::caches();
/// assert!(c.l1d > 0 && c.l2 >= c.l1d && c.l3_per_core > 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    /// The level-1 data cache of one core.
    pub l1d: usize,
    /// The level-2 cache of one core (its share, when cores share it).
    pub l2: usize,
    /// The level-3 cache's size divided by the cores that share it (the
    /// level-2 size when there is none).
    pub l3_per_core: usize,
    /// Whether the sizes were read from the CPU (else they are
    /// [`Caches::DEFAULT`]).
    pub read: bool,
}

impl Caches {
    /// What is assumed when the CPU does not say: 32 KiB, 512 KiB and
    /// 2 MiB, at or below the caches of every x86-64 core of the last ten
    /// years, so that blocks sized for them still fit.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::cpu::Caches::DEFAULT.l1d, 32 << 10);
    /// ```
    pub const DEFAULT: Caches = Caches { l1d: 32 << 10, l2: 512 << 10, l3_per_core: 2 << 20, read: false };
}

/// The caches of this CPU, read once; [`Caches::DEFAULT`] where they
/// cannot be read (or look implausible: a level-1 cache under 8 KiB or
/// over 1 MiB, a level-2 cache smaller than it).
///
/// ```
/// let c = tapegrad_kernels::cpu::caches();
/// assert_eq!(c, tapegrad_kernels::cpu::caches());
/// ```
pub fn caches() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(|| {
        let c = read().unwrap_or(Caches::DEFAULT);
        let plausible = (8 << 10..=1 << 20).contains(&c.l1d) && c.l2 >= c.l1d && c.l3_per_core > 0;
        if plausible {
            c
        } else {
            Caches::DEFAULT
        }
    })
}

/// The caches from CPUID's deterministic cache parameters (leaf 4 on
/// Intel, 0x8000001D on AMD and Hygon), which give each cache's level,
/// type, geometry and how many logical processors share it.
#[cfg(target_arch = "x86_64")]
fn read() -> Option<Caches> {
    use std::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};
    #[allow(unused_unsafe)] // CPUID is safe to call on every x86-64 CPU.
    let cpuid = |leaf: u32, sub: u32| -> CpuidResult { unsafe { __cpuid_count(leaf, sub) } };
    #[allow(unused_unsafe)]
    let v0 = unsafe { __cpuid(0) };
    let vendor: Vec<u8> = [v0.ebx, v0.edx, v0.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
    let leaf = match &vendor[..] {
        b"GenuineIntel" if v0.eax >= 4 => 4,
        b"AuthenticAMD" | b"HygonGenuine" => {
            let ext = cpuid(0x8000_0000, 0).eax;
            // Bit 22 of 0x80000001 ECX (topology extensions) says whether
            // leaf 0x8000001D is there.
            if ext < 0x8000_001D || cpuid(0x8000_0001, 0).ecx & (1 << 22) == 0 {
                return None;
            }
            0x8000_001D
        }
        _ => return None,
    };
    let (mut l1d, mut l2, mut l3) = (None, None, None);
    for sub in 0..16 {
        let r = cpuid(leaf, sub);
        let kind = r.eax & 0x1f;
        if kind == 0 {
            break;
        }
        // 1: data, 3: unified; 2 (instructions) is not ours.
        if kind == 2 {
            continue;
        }
        let level = (r.eax >> 5) & 0x7;
        let sharing = ((r.eax >> 14) & 0xfff) as usize + 1;
        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
        let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
        let line = (r.ebx & 0xfff) as usize + 1;
        let sets = r.ecx as usize + 1;
        let size = ways * partitions * line * sets;
        match level {
            1 => l1d = Some(size),
            2 => l2 = Some((size, sharing)),
            3 => l3 = Some((size, sharing)),
            _ => {}
        }
    }
    // The logical processors of one core share its level-2 cache, so
    // its whole size is the core's; a level-3 cache is split among the
    // cores (logical processors per core: those that share level 2).
    let (l2, per_core) = l2?;
    let l3_per_core = match l3 {
        Some((size, sharing)) => size / (sharing / per_core).max(1),
        None => l2,
    };
    Some(Caches { l1d: l1d?, l2, l3_per_core, read: true })
}

#[cfg(not(target_arch = "x86_64"))]
fn read() -> Option<Caches> {
    None
}

/// The block sizes of the tiled GEMM for one micro-kernel: the inner
/// dimension is taken `kc` indices at a time, A packed `mc` rows at a
/// time, B `nc` columns at a time.
///
/// ```
/// let b = tapegrad_kernels::cpu::kernel().blocks_f32;
/// assert!(b.mc > 0 && b.kc > 0 && b.nc > 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    /// Rows of A packed at a time (a multiple of the tile's rows).
    pub mc: usize,
    /// Indices of the inner dimension per chunk.
    pub kc: usize,
    /// Columns of B packed at a time (a multiple of the tile's columns).
    pub nc: usize,
}

impl Blocks {
    /// The blocks for tiles of `mr` by `nr` elements of `size` bytes on
    /// these caches, after the analytical model of BLIS (Low et al.,
    /// "Analytical modeling is enough for high-performance BLIS", 2016),
    /// in this GEMM's loop order (a panel of B stays while the panels of
    /// a block of A go past it):
    ///
    /// - `kc`: a panel of B (`kc` by `nr`) fills twice the level-1 data
    ///   cache, rounded up to a multiple of 256 indices, 256 or 512. Each
    ///   chunk of the inner dimension reads and writes C again, so chunks
    ///   are long, and a layer of 512 inputs is not cut in two. The panel
    ///   may outgrow level 1: a tile reads its panels of A and B at a rate
    ///   level 2 sustains (the measurements per CPU are in
    ///   docs/BENCHMARKS.md). A longer chunk halves the rows of a block of
    ///   A, sized for level 2;
    /// - `mc`: a block of A (`mc` by `kc`) fills half the level-2 cache,
    ///   at least one tile, a multiple of `mr`;
    /// - `nc`: a block of B (`kc` by `nc`) fills the core's share of the
    ///   level-3 cache, but no more than four times the level-2 cache (a
    ///   virtual machine shows the whole level 3 shared by its few cores,
    ///   while other machines' cores use it too), between 256 and 8,192
    ///   columns, a multiple of `nr`.
    ///
    /// On caches of 32 KiB, 512 KiB and 2 MiB per core this gives, for 6
    /// by 16 f32 tiles, kc 512, mc 126 and nc 1,024, where constants
    /// measured on such a CPU (an AMD EPYC of the Zen 3 family) were 512,
    /// 120 and 1,024.
    ///
    /// ```
    /// use tapegrad_kernels::cpu::{Blocks, Caches};
    /// let b = Blocks::for_tiles(&Caches::DEFAULT, 6, 16, 4);
    /// assert_eq!(b, Blocks { mc: 126, kc: 512, nc: 1024 });
    /// ```
    pub fn for_tiles(c: &Caches, mr: usize, nr: usize, size: usize) -> Blocks {
        let kc = (2 * c.l1d / (nr * size)).div_ceil(256).clamp(1, 2) * 256;
        let mc = (c.l2 / 2 / (kc * size) / mr).max(1) * mr;
        let nc = (c.l3_per_core.min(4 * c.l2) / (kc * size)).clamp(256, 8192) / nr * nr;
        Blocks { mc, kc, nc: nc.max(nr) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caches_are_read_or_defaulted_and_plausible() {
        let c = caches();
        eprintln!("caches: {c:?}");
        assert!(c.l1d >= 8 << 10 && c.l2 >= c.l1d && c.l3_per_core > 0);
        if !c.read {
            assert_eq!(c, Caches::DEFAULT);
        }
    }

    #[test]
    fn blocks_follow_the_caches_within_their_bounds() {
        // AVX2 f32 tiles on the default caches: the measured constants.
        assert_eq!(Blocks::for_tiles(&Caches::DEFAULT, 6, 16, 4), Blocks { mc: 126, kc: 512, nc: 1024 });
        // AVX-512 f32 tiles on level-1 caches of 32 and 48 KiB (AMD Zen 4,
        // Zen 5; Intel Sapphire Rapids): a 512-index chunk, which measured
        // fastest on each; a 16 KiB level-1 cache halves it.
        let zen5 = Caches { l1d: 48 << 10, l2: 1 << 20, l3_per_core: 16 << 20, read: true };
        let zen4 = Caches { l1d: 32 << 10, ..zen5 };
        let small = Caches { l1d: 16 << 10, ..zen5 };
        assert_eq!(Blocks::for_tiles(&zen4, 12, 32, 4).kc, 512);
        assert_eq!(Blocks::for_tiles(&small, 12, 32, 4).kc, 256);
        let b = Blocks::for_tiles(&zen5, 12, 32, 4);
        assert_eq!(b.kc, 512);
        assert_eq!(b.mc % 12, 0);
        assert!(b.mc * b.kc * 4 <= 512 << 10);
        assert_eq!(b.nc % 32, 0);
        // Tiny or huge caches stay inside the bounds.
        for c in [
            Caches { l1d: 1, l2: 1, l3_per_core: 1, read: true },
            Caches { l1d: 1 << 30, l2: 1 << 40, l3_per_core: 1 << 50, read: true },
        ] {
            for (mr, nr, size) in [(6, 16, 4), (6, 8, 8), (12, 32, 4), (12, 16, 8), (4, 8, 8)] {
                let b = Blocks::for_tiles(&c, mr, nr, size);
                assert!((128..=1024).contains(&b.kc) && b.kc.is_multiple_of(8), "{b:?}");
                assert!(b.mc >= mr && b.mc.is_multiple_of(mr), "{b:?}");
                assert!(b.nc >= nr && b.nc.is_multiple_of(nr) && b.nc <= 8192, "{b:?}");
            }
        }
    }
}
