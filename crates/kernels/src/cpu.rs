//! What this CPU runs: the kernel path of the process, chosen once from
//! the CPU's features and the environment, and the caches the block sizes
//! of the tiled GEMM come from.

use std::sync::OnceLock;

pub use crate::cache::{caches, Blocks, Caches};

/// Which kernels the products (and the thin kernels' instruction set)
/// use. The process takes the fastest path its CPU runs unless the
/// environment variable `TAPEGRAD_KERNELS` (read once) asks for another:
///
/// - unset, empty or `auto`: the fastest ([`Path::best`]);
/// - `avx512`, `avx2`, `baseline`, `gemm`: that path, when the CPU runs
///   it; a path the CPU cannot run falls back to the fastest it can.
///
/// Any other value is treated as `auto`. Results may differ in the last
/// bits between paths (fused multiply-adds round once, a multiply and an
/// add twice; the chunks of the inner dimension follow the caches), never
/// between runs on one path and machine.
///
/// ```
/// use tapegrad_kernels::cpu::{path, Path};
/// assert!(path().runs_here());
/// assert!(Path::Baseline.runs_here());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The tiled GEMM on AVX-512F micro-kernels, f32 and f64; the thin
    /// kernels with AVX2 and FMA.
    Avx512,
    /// The tiled GEMM on AVX2+FMA micro-kernels, f32 and f64; the thin
    /// kernels with AVX2 and FMA.
    Avx2,
    /// The tiled GEMM on its portable micro-kernel and the portable
    /// (non-FMA) build of the thin kernels: what a CPU without AVX2 and
    /// FMA runs.
    Baseline,
    /// Every large product on the `gemm` crate (its own runtime choice of
    /// kernel), the epilogue as a pass after it; the thin kernels as on
    /// the fastest path. For comparison.
    Gemm,
}

impl Path {
    /// The fastest path this CPU runs.
    ///
    /// ```
    /// assert_ne!(tapegrad_kernels::cpu::Path::best(), tapegrad_kernels::cpu::Path::Gemm);
    /// ```
    pub fn best() -> Path {
        [Path::Avx512, Path::Avx2].into_iter().find(|p| p.runs_here()).unwrap_or(Path::Baseline)
    }

    /// Whether this CPU runs the path.
    ///
    /// ```
    /// assert!(tapegrad_kernels::cpu::Path::Gemm.runs_here());
    /// ```
    pub fn runs_here(self) -> bool {
        match self.isa() {
            Some(isa) => isa.runs_here(),
            None => true,
        }
    }

    /// The name `TAPEGRAD_KERNELS` gives the path.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::cpu::Path::Avx2.name(), "avx2");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
            Path::Baseline => "baseline",
            Path::Gemm => "gemm",
        }
    }

    /// The path `TAPEGRAD_KERNELS` names (see [`Path`]); `None` for
    /// unset, empty, `auto` or anything else.
    ///
    /// ```
    /// use tapegrad_kernels::cpu::Path;
    /// assert_eq!(Path::named(" avx512 "), Some(Path::Avx512));
    /// assert_eq!(Path::named("auto"), None);
    /// ```
    pub fn named(name: &str) -> Option<Path> {
        [Path::Avx512, Path::Avx2, Path::Baseline, Path::Gemm].into_iter().find(|p| p.name() == name.trim())
    }

    /// The tiled GEMM's instruction set on this path (none: the `gemm`
    /// crate).
    pub(crate) fn isa(self) -> Option<Isa> {
        match self {
            Path::Avx512 => Some(Isa::Avx512),
            Path::Avx2 => Some(Isa::Avx2),
            Path::Baseline => Some(Isa::Portable),
            Path::Gemm => None,
        }
    }

    /// Whether the thin kernels run their AVX2+FMA build.
    pub(crate) fn fma(self) -> bool {
        self != Path::Baseline && Isa::Avx2.runs_here()
    }
}

/// The path of this process (see [`Path`]), chosen once.
///
/// ```
/// let p = tapegrad_kernels::cpu::path();
/// assert_eq!(p, tapegrad_kernels::cpu::path());
/// ```
pub fn path() -> Path {
    static PATH: OnceLock<Path> = OnceLock::new();
    *PATH.get_or_init(|| requested().filter(|p| p.runs_here()).unwrap_or_else(Path::best))
}

/// The path `TAPEGRAD_KERNELS` asks for, if any.
fn requested() -> Option<Path> {
    std::env::var("TAPEGRAD_KERNELS").ok().as_deref().and_then(Path::named)
}

/// What the products of this process run on: the path, and the tiled
/// GEMM's tiles and block sizes for each element type (from the caches
/// of this CPU).
///
/// ```
/// let k = tapegrad_kernels::cpu::kernel();
/// println!("{k}"); // e.g. "avx512: f32 12x32 tiles, blocks mc 252 kc 512 nc 2048; ..."
/// assert_eq!(k.path, tapegrad_kernels::cpu::path());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The path.
    pub path: Path,
    /// The caches the blocks come from.
    pub caches: Caches,
    /// The f32 tile (rows, columns); (0, 0) on the `gemm` path.
    pub tile_f32: (usize, usize),
    /// The f32 block sizes.
    pub blocks_f32: Blocks,
    /// The f64 tile (rows, columns); (0, 0) on the `gemm` path.
    pub tile_f64: (usize, usize),
    /// The f64 block sizes.
    pub blocks_f64: Blocks,
}

/// The kernels of this process (see [`Kernel`]).
pub fn kernel() -> Kernel {
    let path = path();
    let isa = path.isa().unwrap_or(Isa::Portable);
    let on = |t: (usize, usize)| if path.isa().is_some() { t } else { (0, 0) };
    Kernel {
        path,
        caches: crate::cache::caches(),
        tile_f32: on(isa.tile(4)),
        blocks_f32: isa.blocks::<f32>(),
        tile_f64: on(isa.tile(8)),
        blocks_f64: isa.blocks::<f64>(),
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.name())?;
        if self.path.isa().is_none() {
            return write!(f, " (the gemm crate's kernels)");
        }
        for (ty, (mr, nr), b) in
            [("f32", self.tile_f32, self.blocks_f32), ("f64", self.tile_f64, self.blocks_f64)]
        {
            write!(
                f,
                "{} {ty} {mr}x{nr} tiles, blocks mc {} kc {} nc {}",
                if ty == "f32" { ":" } else { ";" },
                b.mc,
                b.kc,
                b.nc
            )?;
        }
        let c = &self.caches;
        write!(
            f,
            "; caches L1d {} KiB, L2 {} KiB, L3 {} KiB per core{}",
            c.l1d >> 10,
            c.l2 >> 10,
            c.l3_per_core >> 10,
            if c.read { "" } else { " (not read: defaults)" }
        )
    }
}

/// The instruction set of a micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Isa {
    /// AVX-512F: tiles of 12 rows by two 512-bit vectors.
    Avx512,
    /// AVX2 and FMA: tiles of 6 rows by two 256-bit vectors.
    Avx2,
    /// Plain Rust (the compiler vectorises it for the target's baseline):
    /// tiles of 4 rows by 8 (f32) or 4 (f64) columns, no fused
    /// multiply-add.
    Portable,
}

impl Isa {
    /// Whether this CPU runs the tiled GEMM's kernels of this instruction set.
    pub(crate) fn runs_here(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::Avx2.runs_here() && std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The tile (rows, columns) of this instruction set's kernel for
    /// elements of `size` bytes.
    pub(crate) fn tile(self, size: usize) -> (usize, usize) {
        let lanes = |bits: usize| 2 * bits / 8 / size;
        match self {
            Isa::Avx512 => (12, lanes(512)),
            Isa::Avx2 => (6, lanes(256)),
            Isa::Portable => (4, 32 / size),
        }
    }

    /// This instruction set's block sizes for elements of type `T`, from
    /// the CPU's caches.
    pub(crate) fn blocks<T>(self) -> Blocks {
        let size = std::mem::size_of::<T>();
        let (mr, nr) = self.tile(size);
        Blocks::for_tiles(&caches(), mr, nr, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path follows `TAPEGRAD_KERNELS` (CI runs the suite once per
    /// path), and never takes kernels the CPU lacks: a path this CPU
    /// cannot run is skipped for the fastest, with a message.
    #[test]
    fn the_path_follows_the_environment_and_the_cpu() {
        let p = path();
        eprintln!("kernels: {}", kernel());
        assert!(p.runs_here());
        match requested() {
            Some(want) if want.runs_here() => assert_eq!(p, want),
            Some(want) => {
                eprintln!("skipped: TAPEGRAD_KERNELS={} asks for kernels this CPU lacks", want.name());
                assert_eq!(p, Path::best());
            }
            None => assert_eq!(p, Path::best()),
        }
        assert_eq!(p.fma(), p != Path::Baseline && Isa::Avx2.runs_here());
        // The paths are ordered: one that runs implies the ones below it.
        assert!(!Path::Avx512.runs_here() || Path::Avx2.runs_here());
        for q in [Path::Avx512, Path::Avx2, Path::Baseline, Path::Gemm] {
            assert_eq!(Path::named(q.name()), Some(q));
        }
        assert_eq!(Path::named("fastest"), None);
    }
}
