//! What this CPU runs: the kernel path of the process, chosen once from
//! the CPU's features and the environment.

use crate::sgemm;
use std::sync::OnceLock;

/// Which kernels the products (and the thin kernels' instruction set) may
/// use, chosen once per process from the environment variable
/// `TAPEGRAD_KERNELS`:
///
/// - unset, empty or `auto`: [`Path::Auto`];
/// - `gemm`: [`Path::Gemm`];
/// - `baseline`: [`Path::Baseline`].
///
/// Any other value is treated as `auto`. Results may differ in the last
/// bits between paths (fused multiply-adds round once, a multiply and an
/// add twice), never between runs on one path.
///
/// ```
/// use tapegrad_kernels::cpu::{path, Path};
/// assert!(matches!(path(), Path::Auto | Path::Gemm | Path::Baseline));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The fastest kernels this CPU runs: for large f32 products the own
    /// GEMM (x86-64 with AVX2 and FMA, and the `own-sgemm` feature, on by
    /// default), else the `gemm` crate; the thin kernels with AVX2 and FMA
    /// where the CPU has them.
    Auto,
    /// Every large product on the `gemm` crate; the thin kernels as in
    /// [`Path::Auto`].
    Gemm,
    /// The `gemm` crate for large products and the portable (non-FMA)
    /// build of the thin kernels: what a CPU without AVX2 and FMA runs.
    Baseline,
}

impl Path {
    /// Whether the thin kernels run their AVX2+FMA build.
    pub(crate) fn fma(self) -> bool {
        self != Path::Baseline && cpu_has_avx2_fma()
    }

    /// Whether large f32 products run on the own GEMM.
    pub(crate) fn own_sgemm(self) -> bool {
        self == Path::Auto && sgemm::available()
    }
}

fn cpu_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The path of this process (see [`Path`]), read once.
///
/// ```
/// let p = tapegrad_kernels::cpu::path();
/// assert_eq!(p, tapegrad_kernels::cpu::path());
/// ```
pub fn path() -> Path {
    static PATH: OnceLock<Path> = OnceLock::new();
    *PATH.get_or_init(|| match std::env::var("TAPEGRAD_KERNELS").as_deref().map(str::trim) {
        Ok("gemm") => Path::Gemm,
        Ok("baseline") => Path::Baseline,
        _ => Path::Auto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path follows `TAPEGRAD_KERNELS` (CI runs the suite once per
    /// value), and a path never claims kernels the CPU lacks.
    #[test]
    fn the_path_follows_the_environment_and_the_cpu() {
        let want = match std::env::var("TAPEGRAD_KERNELS").as_deref().map(str::trim) {
            Ok("gemm") => Path::Gemm,
            Ok("baseline") => Path::Baseline,
            _ => Path::Auto,
        };
        let p = path();
        assert_eq!(p, want);
        eprintln!("kernel path: {p:?}; thin kernels with FMA: {}; own f32 GEMM: {}", p.fma(), p.own_sgemm());
        // The thin kernels use FMA exactly when the CPU has it and the
        // baseline was not asked for; the own GEMM only on the auto path.
        assert_eq!(p.fma(), p != Path::Baseline && cpu_has_avx2_fma());
        assert_eq!(p.own_sgemm(), p == Path::Auto && sgemm::available());
    }
}
