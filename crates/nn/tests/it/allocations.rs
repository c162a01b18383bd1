//! How many heap allocations a training step makes, counted by a global
//! allocator: the per-step overhead on a small network (the W2 workload)
//! was once a third malloc and free. The allocator is this test binary's,
//! but its counter is per thread, so the other tests, each on a thread of
//! its own, are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tapegrad_nn::{fit, Adam, Architecture, Init, Model, TrainConfig};
use tapegrad_tensor::ndarray::Array2;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a plain
// thread-local cell that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn a_minibatch_step_makes_few_allocations() {
    // The W2 network and batch size on made-up data (the count does not
    // depend on the values).
    let m = 640;
    let x = Array2::from_shape_fn((3, m), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 8.0 - 1.0);
    let y = Array2::from_shape_fn((1, m), |(_, j)| (j % 3 == 0) as u8 as f32);
    let mut model = Model::<f32>::new(&Architecture::guide(3, &[20, 7, 5]), Init::HeNormal, 0).unwrap();
    let mut adam = Adam::new(1e-3).unwrap();
    let cfg = TrainConfig { epochs: 3, batch_size: Some(64), ..Default::default() };
    // Steps 11 to 30: after the first epoch has filled the pools.
    let (mut start, mut end) = (0, 0);
    fit(&mut model, &mut adam, x.view(), y.view(), &cfg, |p| {
        let now = ALLOCATIONS.with(Cell::get);
        match p.iteration {
            10 => start = now,
            30 => end = now,
            _ => {}
        }
    })
    .unwrap();
    let per_step = (end - start) as f64 / 20.0;
    // 60 at the time of writing (129 before the tape's boxes, the small
    // values and the optimizer's state were reused, and before affine's
    // three inputs fitted inline). The bound leaves room for a platform
    // or dependency that allocates a little differently, and fails if a
    // change brings the per-step allocations of arrays back.
    assert!(per_step <= 72.0, "{per_step} allocations per step");
}
