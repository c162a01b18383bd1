//! The element types a tensor may hold: `f32` and `f64`.

use std::fmt::{Debug, Display};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type for tensors: implemented for `f32` and `f64`
/// only (the trait is sealed). Kernels that differ by type (the tiled
/// GEMM's micro-kernels, the AVX2 dot products, the buffer pools) are chosen inside this
/// crate by a type test the compiler folds away, so the trait carries no
/// kernel methods.
///
/// Every tensor type in tapegrad is generic over its element, so a model can
/// be trained in `f32` for speed and checked in `f64` for accuracy with the
/// same code.
///
/// ```
/// use tapegrad_kernels::Element;
/// fn half<T: Element>(x: T) -> T { x * T::cast(0.5) }
/// assert_eq!(half(3.0f32), 1.5);
/// assert_eq!(<f64 as Element>::NAME, "f64");
/// ```
pub trait Element:
    num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Debug
    + Display
    + Default
    + std::iter::Sum
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// The type's name, `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Converts an `f64` to this type (rounding to nearest for `f32`).
    ///
    /// ```
    /// use tapegrad_kernels::Element;
    /// assert_eq!(f32::cast(0.25), 0.25f32);
    /// ```
    fn cast(v: f64) -> Self;

    /// Widens this value to `f64` (exact for both types).
    ///
    /// ```
    /// use tapegrad_kernels::Element;
    /// assert_eq!(0.5f32.as_f64(), 0.5);
    /// ```
    fn as_f64(self) -> f64;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn cast(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn cast(v: f64) -> Self {
        v
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}
