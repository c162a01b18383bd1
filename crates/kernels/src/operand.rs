//! The operands of a matrix product as the kernels see them: an input read
//! through element strides ([`Strided`]), the output ([`Out`]), and what is
//! applied to each element of the output as it is stored ([`Epilogue`]).
//! Every product path (the thin kernels, the tiled GEMM, the `gemm`
//! crate with a pass after it) takes these three, so the store step is
//! written down once.

use crate::Element;

/// A 2-D input of a product: its first element and its element strides
/// (any sign, zero included). The shape travels with the call.
#[derive(Clone, Copy)]
pub(crate) struct Strided<T> {
    pub(crate) ptr: *const T,
    /// Elements between rows.
    pub(crate) rs: isize,
    /// Elements between columns.
    pub(crate) cs: isize,
}

impl<T> Strided<T> {
    /// The operand from element `(r, c)` on.
    ///
    /// # Safety
    /// The element is inside the array.
    #[inline]
    pub(crate) unsafe fn at(self, r: usize, c: usize) -> Self {
        // SAFETY: the caller's contract.
        let ptr = unsafe { self.ptr.offset(r as isize * self.rs + c as isize * self.cs) };
        Strided { ptr, ..self }
    }
}

/// The output of a product: row-major, `ld` elements between rows.
#[derive(Clone, Copy)]
pub(crate) struct Out<T> {
    pub(crate) ptr: *mut T,
    pub(crate) ld: usize,
}

impl<T> Out<T> {
    /// The output from element `(r, c)` on.
    ///
    /// # Safety
    /// The element is inside the output.
    #[inline]
    pub(crate) unsafe fn at(self, r: usize, c: usize) -> Self {
        // SAFETY: the caller's contract.
        Out { ptr: unsafe { self.ptr.add(r * self.ld + c) }, ld: self.ld }
    }
}

/// What is applied to each element of C as it is stored, after the last
/// chunk of the inner dimension: `c = act(c + bias[r])`, with `act` relu
/// (`z <= 0` becomes `+0`, NaN stays NaN) or the identity; then `c = +0`
/// where `gate[r, j]` is not positive (NaN included).
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<T> {
    /// Null, or one value per row of C, row `r` at `bias + r * bias_stride`.
    pub(crate) bias: *const T,
    pub(crate) bias_stride: isize,
    pub(crate) relu: bool,
    /// Null, or an array with C's rows and columns, `gate_ld` elements
    /// between rows.
    pub(crate) gate: *const T,
    pub(crate) gate_ld: usize,
}

// SAFETY: the pointers are only read, and only while the product that
// holds the epilogue runs (its callers keep the arrays alive); the
// threads of a split product read them concurrently, never write them.
unsafe impl<T> Send for Epilogue<T> {}
unsafe impl<T> Sync for Epilogue<T> {}
// SAFETY: as for `Epilogue`; each thread writes disjoint blocks of an
// output and reads disjoint or shared parts of an input.
unsafe impl<T> Send for Strided<T> {}
unsafe impl<T> Sync for Strided<T> {}
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

impl<T: Element> Epilogue<T> {
    /// Nothing: C is the plain product.
    pub(crate) const NONE: Self =
        Epilogue { bias: std::ptr::null(), bias_stride: 0, relu: false, gate: std::ptr::null(), gate_ld: 0 };

    /// Whether the epilogue changes anything.
    #[inline]
    pub(crate) fn is_none(&self) -> bool {
        self.bias.is_null() && !self.relu && self.gate.is_null()
    }

    /// This epilogue for the block of C whose corner is row `r0`, column
    /// `c0`.
    ///
    /// # Safety
    /// The corner is inside C (and so inside the bias and the gate).
    #[inline]
    pub(crate) unsafe fn at(&self, r0: usize, c0: usize) -> Self {
        // SAFETY: the caller's contract.
        unsafe {
            let bias = if self.bias.is_null() {
                self.bias
            } else {
                self.bias.offset(r0 as isize * self.bias_stride)
            };
            let gate = if self.gate.is_null() { self.gate } else { self.gate.add(r0 * self.gate_ld + c0) };
            Epilogue { bias, gate, ..*self }
        }
    }

    /// Applies the epilogue, as a pass of its own, to the `rows` by `cols`
    /// block of C at `c` (this epilogue moved to the block's corner).
    ///
    /// # Safety
    /// The block is inside C, the bias and the gate.
    pub(crate) unsafe fn apply(&self, c: Out<T>, rows: usize, cols: usize) {
        if self.is_none() {
            return;
        }
        let act = |z: T| if self.relu && z <= T::zero() { T::zero() } else { z };
        for r in 0..rows {
            // SAFETY: the caller's contract.
            let (row, bi) = unsafe {
                let bi = if self.bias.is_null() {
                    T::zero()
                } else {
                    *self.bias.offset(r as isize * self.bias_stride)
                };
                (std::slice::from_raw_parts_mut(c.ptr.add(r * c.ld), cols), bi)
            };
            if self.gate.is_null() {
                for v in row {
                    *v = act(*v + bi);
                }
            } else {
                // SAFETY: the gate has C's rows and columns (the caller's
                // contract).
                let gate = unsafe { std::slice::from_raw_parts(self.gate.add(r * self.gate_ld), cols) };
                for (v, &g) in row.iter_mut().zip(gate) {
                    *v = if g > T::zero() { act(*v + bi) } else { T::zero() };
                }
            }
        }
    }
}
