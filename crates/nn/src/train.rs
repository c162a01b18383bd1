//! Training: mini-batches, the optimizer loop, progress reports, early
//! stopping, and a clear error when the cost stops being finite.

use crate::error::NnError;
use crate::loss::Loss;
use crate::model::{Dropout, Model, OutputMode, Params, ReluLayers};
use crate::optim::{clip_grad_norm, Optimizer, Schedule};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tapegrad_tensor::ndarray::{Array2, ArrayView2, Axis, Ix2};
use tapegrad_tensor::{Arg, Element, IntoValue, Plan, PlanError, Tape, Value};

/// What to train for and how.
///
/// ```
/// let cfg = tapegrad_nn::TrainConfig { epochs: 5, batch_size: Some(64), ..Default::default() };
/// assert_eq!(cfg.seed, 0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data (>= 1).
    pub epochs: usize,
    /// Examples per update; `None` is the full batch (the guide's loop).
    /// The last batch of an epoch may be smaller; it is kept.
    pub batch_size: Option<usize>,
    /// Seed of the shuffles, dropout masks and validation split.
    pub seed: u64,
    /// The cost.
    pub loss: Loss,
    /// Dropout rate on hidden layers during training, in `[0, 1)`.
    pub dropout: f64,
    /// Clip gradients to this global L2 norm.
    pub clip_norm: Option<f64>,
    /// The learning rate over the run, from the optimizer's initial rate
    /// (see [`Schedule`]: cosine annealing ends with the run).
    pub schedule: Schedule,
    /// Stop when the validation cost has not improved for a while.
    pub early_stopping: Option<EarlyStopping>,
    /// Stop after this many updates, even mid-epoch.
    pub max_iterations: Option<usize>,
    /// Trace non-finite values (see `Tape::trace_nonfinite`): when the cost
    /// turns NaN or infinite, the error names the first op that produced
    /// one, and its source line. Off by default (tracing checks every
    /// value).
    pub trace_nonfinite: bool,
    /// Record every step anew instead of replaying it. By default each
    /// batch shape's step is recorded once and replayed
    /// ([`tapegrad_tensor::Plan`]): the same values and gradients, bit for
    /// bit, without the cost of recording. Tracing non-finite values
    /// always runs eagerly.
    pub eager: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: None,
            seed: 0,
            loss: Loss::default(),
            dropout: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
            early_stopping: None,
            max_iterations: None,
            trace_nonfinite: false,
            eager: false,
        }
    }
}

impl TrainConfig {
    /// Checks every hyper-parameter that does not depend on the data:
    /// `epochs >= 1`, `max_iterations` and `batch_size` not 0, `dropout`
    /// in `[0, 1)`, `clip_norm` positive and finite, and for early stopping
    /// a validation fraction in `(0, 1)` and a patience of at least 1.
    /// [`fit`] calls it first; call it yourself to fail before loading
    /// data. Whether the validation split leaves examples on both sides
    /// depends on the data, and is checked by [`fit`].
    ///
    /// # Errors
    /// [`NnError::InvalidHyperParameter`] naming the first bad value.
    ///
    /// ```
    /// use tapegrad_nn::TrainConfig;
    /// assert!(TrainConfig::default().validate().is_ok());
    /// let e = TrainConfig { dropout: 1.5, ..Default::default() }.validate().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid dropout rate 1.5: must be in [0, 1)");
    /// ```
    pub fn validate(&self) -> Result<(), NnError> {
        if self.epochs == 0 {
            return Err(invalid("number of epochs", "0".into(), "must be at least 1"));
        }
        if self.max_iterations == Some(0) {
            return Err(invalid("number of iterations", "0".into(), "must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(invalid("batch size", "0".into(), "must be at least 1"));
        }
        Dropout::check_rate(self.dropout)?;
        if let Some(c) = self.clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(invalid("gradient clipping norm", c.to_string(), "must be a positive finite number"));
        }
        if let Some(es) = self.early_stopping {
            let f = es.validation_fraction;
            if !(f > 0.0 && f < 1.0) {
                return Err(invalid("validation fraction", f.to_string(), "must be in (0, 1)"));
            }
            if es.patience == 0 {
                return Err(invalid("early-stopping patience", "0".into(), "must be at least 1 epoch"));
            }
        }
        Ok(())
    }
}

/// Early stopping on a validation split taken (seeded) from the training
/// data: stop after `patience` epochs without a lower validation cost and
/// restore the best parameters.
///
/// ```
/// let es = tapegrad_nn::EarlyStopping { validation_fraction: 0.2, patience: 5 };
/// assert_eq!(es.patience, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The share of training examples held out, in `(0, 1)`.
    pub validation_fraction: f64,
    /// Epochs to wait for an improvement.
    pub patience: usize,
}

/// A progress report, sent after every update.
///
/// ```
/// let p = tapegrad_nn::Progress { epoch: 1, epochs: 2, iteration: 3, cost: 0.5, epoch_cost: None };
/// assert!(p.epoch_cost.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// The current epoch, 1-based.
    pub epoch: usize,
    /// The number of epochs.
    pub epochs: usize,
    /// Updates so far, 1-based.
    pub iteration: usize,
    /// The cost of the last batch (computed before its update).
    pub cost: f64,
    /// Set on the last update of an epoch: the epoch's mean cost.
    pub epoch_cost: Option<f64>,
}

/// The costs recorded by [`fit`].
///
/// ```
/// let h = tapegrad_nn::History::default();
/// assert!(h.iteration_costs.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The cost of each update's batch, computed before the update (as the
    /// guide's loop records it).
    pub iteration_costs: Vec<f64>,
    /// The example-weighted mean of each epoch's batch costs.
    pub epoch_costs: Vec<f64>,
    /// The validation cost after each epoch (with early stopping).
    pub validation_costs: Vec<f64>,
    /// The epoch (1-based) whose parameters were kept.
    pub best_epoch: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// How many updates were replayed from a compiled step rather than
    /// recorded (see [`TrainConfig::eager`]).
    pub replayed: usize,
    /// Why a batch shape's step could not be replayed and ran eagerly
    /// (a step that reads a value while it is recorded, say), if one
    /// could not.
    pub replay_refused: Option<String>,
}

fn invalid(name: &'static str, value: String, reason: &str) -> NnError {
    NnError::InvalidHyperParameter { name, value, reason: reason.into() }
}

/// Trains `model` on inputs `x` `(n[0], m)` and labels `y`, calling
/// `on_progress` after every update. The labels are those of the model's
/// head (see [`crate::Head::targets`]): `(1, m)` of 0s and 1s for a binary
/// head, class indices `(1, m)` or one-hot `(K, m)` for a softmax head,
/// `(n[L], m)` targets for regression.
///
/// # Errors
/// Invalid hyper-parameters (see [`TrainConfig::validate`]; a
/// positive-class weight needs a binary head), data shapes or labels, and
/// [`NnError::NonFinite`] when the cost turns NaN or infinite (the model
/// keeps the parameters of the update before).
///
/// ```
/// use tapegrad_nn::{fit, Adam, Architecture, Init, Model, TrainConfig};
/// use tapegrad_tensor::ndarray::array;
/// // The guide's network on a tiny array: rain when humid and warm.
/// let x = array![[0.1, 0.9, 0.8, 0.2, 0.7, 0.3], [0.2, 0.9, 0.7, 0.1, 0.9, 0.8]];
/// let y = array![[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]];
/// let mut model = Model::<f64>::new(&Architecture::guide(2, &[4]), Init::HeNormal, 0).unwrap();
/// let cfg = TrainConfig { epochs: 300, ..Default::default() };
/// let history = fit(&mut model, &mut Adam::new(0.05).unwrap(), x.view(), y.view(), &cfg, |_| {}).unwrap();
/// assert!(history.epoch_costs.last().unwrap() < &0.1);
/// ```
pub fn fit<T: Element>(
    model: &mut Model<T>,
    optimizer: &mut dyn Optimizer<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    cfg: &TrainConfig,
    mut on_progress: impl FnMut(&Progress),
) -> Result<History, NnError> {
    model.check_input(x.nrows())?;
    let m_all = x.ncols();
    let y: Array2<T> = model.targets(y, m_all)?;
    if m_all == 0 {
        return Err(NnError::DataShape("no training examples".into()));
    }
    cfg.validate()?;
    cfg.loss.check_head(model.head())?;
    let mut dropout = (cfg.dropout > 0.0).then(|| Dropout::seeded(cfg.dropout, cfg.seed ^ 0xd0));
    let base_lr = optimizer.learning_rate();

    // The validation split, drawn once.
    let mut cols: Vec<usize> = (0..m_all).collect();
    let mut val_cols = Vec::new();
    if let Some(es) = cfg.early_stopping {
        cols.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed));
        let n_val = ((m_all as f64) * es.validation_fraction).round() as usize;
        if n_val == 0 || n_val == m_all {
            return Err(invalid(
                "validation fraction",
                es.validation_fraction.to_string(),
                "leaves no examples on one side",
            ));
        }
        val_cols = cols.split_off(m_all - n_val);
        cols.sort_unstable();
        val_cols.sort_unstable();
    }
    let m = cols.len();
    let batch = cfg.batch_size.unwrap_or(m).min(m);
    // Shared values: the full batch goes on the tape each iteration
    // without a copy.
    let (xt, yt): (Value<T>, Value<T>) = if val_cols.is_empty() {
        (x.to_owned().into_value(), y.to_owned().into_value())
    } else {
        (x.select(Axis(1), &cols).into_value(), y.select(Axis(1), &cols).into_value())
    };
    let (xv, yv) = (x.select(Axis(1), &val_cols), y.select(Axis(1), &val_cols));

    let mut history = History::default();
    let spec = model.clone();
    let mut replay =
        (!cfg.eager && !cfg.trace_nonfinite).then(|| Replay::new(&spec, &cfg.loss, dropout.is_some()));
    let mut tape = Tape::<T>::new();
    tape.trace_nonfinite(cfg.trace_nonfinite);
    let mut order: Vec<usize> = (0..m).collect();
    let mut g = Params::<T>::new();
    let mut best: Option<(f64, Params<T>)> = None;
    let mut since_best = 0;
    let mut iteration = 0;
    let mut out_of_iterations = false;
    // The schedule follows whichever ends the run: the epochs, stepping
    // once an epoch, or the updates, stepping every update.
    let n_batches = m.div_ceil(batch);
    let by_updates = cfg.max_iterations.filter(|&n| n < cfg.epochs.saturating_mul(n_batches));
    // Room for the run's costs up front (up to a bound), so that a step
    // allocates nothing.
    let updates = by_updates.unwrap_or(cfg.epochs.saturating_mul(n_batches));
    history.iteration_costs.reserve(updates.min(1 << 20));
    history.epoch_costs.reserve(cfg.epochs.min(1 << 16));
    if cfg.early_stopping.is_some() {
        history.validation_costs.reserve(cfg.epochs.min(1 << 16));
    }
    for epoch in 0..cfg.epochs {
        if out_of_iterations {
            break;
        }
        let progress = epoch as f64 / cfg.epochs as f64;
        optimizer.set_learning_rate(cfg.schedule.learning_rate(base_lr, epoch, progress));
        let full_batch = batch == m;
        if !full_batch {
            // A fresh seeded shuffle of 0..m each epoch (refilled, not
            // sorted: sorting the last epoch's order cost W2 3% of its time).
            for (i, o) in order.iter_mut().enumerate() {
                *o = i;
            }
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64)));
        }
        let mut epoch_sum = 0.0;
        let mut seen = 0;
        let batch_at = |idx: &[usize]| {
            if full_batch {
                (xt.clone(), yt.clone())
            } else {
                (gather_columns(&xt, idx), gather_columns(&yt, idx))
            }
        };
        for k in 0..n_batches {
            if let Some(n) = by_updates {
                let progress = iteration as f64 / n as f64;
                optimizer.set_learning_rate(cfg.schedule.learning_rate(base_lr, epoch, progress));
            }
            let idx = &order[k * batch..((k + 1) * batch).min(m)];
            let replayed = match replay.as_mut() {
                Some(r) => r.step(model, &xt, &yt, idx, full_batch, dropout.as_mut(), &mut g, &mut history),
                None => None,
            };
            let c = match replayed {
                Some(c) => c,
                None => eager_step(&mut tape, model, cfg, batch_at(idx), dropout.as_mut(), &mut g),
            };
            iteration += 1;
            if !c.is_finite() {
                if replayed.is_some() || !cfg.trace_nonfinite {
                    // Record the step again with tracing, to name the op.
                    tape.trace_nonfinite(true);
                    let (xb, yb) = batch_at(idx);
                    tape.clear();
                    let fwd = model.record(
                        &tape,
                        tape.constant(xb),
                        dropout.as_mut(),
                        ReluLayers::Fused,
                        OutputMode::Logits,
                    );
                    let _ = cfg.loss.cost(model, &fwd, tape.constant(yb));
                }
                return Err(NnError::NonFinite {
                    iteration,
                    epoch: epoch + 1,
                    cost: c,
                    learning_rate: optimizer.learning_rate(),
                    trace: tape.nonfinite().map(|r| r.to_string()),
                });
            }
            if let Some(max) = cfg.clip_norm {
                clip_grad_norm(&mut g, max);
            }
            optimizer.step(model.params_mut(), &g);
            history.iteration_costs.push(c);
            epoch_sum += c * idx.len() as f64;
            seen += idx.len();
            out_of_iterations = cfg.max_iterations.is_some_and(|n| iteration >= n);
            let epoch_cost = (k + 1 == n_batches || out_of_iterations).then(|| epoch_sum / seen as f64);
            on_progress(&Progress { epoch: epoch + 1, epochs: cfg.epochs, iteration, cost: c, epoch_cost });
            if out_of_iterations {
                break;
            }
        }
        history.epoch_costs.push(epoch_sum / seen as f64);
        history.best_epoch = epoch + 1;
        if let Some(es) = cfg.early_stopping {
            let v = cost_on_targets(model, &cfg.loss, xv.view(), yv.view());
            history.validation_costs.push(v);
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, model.params().clone()));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= es.patience {
                    history.stopped_early = true;
                    break;
                }
            }
        }
    }
    if let Some((_, params)) = best {
        history.best_epoch = history
            .validation_costs
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or(1, |(i, _)| i + 1);
        *model.params_mut() = params;
    }
    optimizer.set_learning_rate(base_lr);
    Ok(history)
}

/// One step recorded anew on `tape`: the cost of the batch `(x, y)` and,
/// when it is finite, the parameters' gradients in `g`.
fn eager_step<T: Element>(
    tape: &mut Tape<T>,
    model: &Model<T>,
    cfg: &TrainConfig,
    (xb, yb): (Value<T>, Value<T>),
    dropout: Option<&mut Dropout>,
    g: &mut Params<T>,
) -> f64 {
    tape.clear();
    // The loss reads only the logits of a sigmoid output: skip the sigmoid.
    let x = tape.constant(xb);
    let fwd = model.record(tape, x, dropout, ReluLayers::Fused, OutputMode::Logits);
    let cost = cfg.loss.cost(model, &fwd, tape.constant(yb));
    let c = cost.item().as_f64();
    if !c.is_finite() {
        return c;
    }
    // Only the parameters' gradients are read: the others go back to the
    // pool as soon as they are used, and ReLU gates fuse.
    let wrt: Vec<_> = fwd.params.values().copied().collect();
    let grads = tape.backward_for(cost, &wrt);
    for (i, (name, t)) in fwd.params.iter().enumerate() {
        copy_grad(g, i, name, grads[*t].view());
    }
    c
}

/// Copies a parameter's gradient into the array of the step before (no
/// allocation once the table is filled).
fn copy_grad<T: Element>(
    g: &mut Params<T>,
    i: usize,
    name: &str,
    v: tapegrad_tensor::ndarray::ArrayViewD<'_, T>,
) {
    let v = v.into_dimensionality::<Ix2>().expect("2-D parameter");
    match g.get_index_mut(i) {
        Some((k, old)) if k == name && old.dim() == v.dim() => old.assign(&v),
        _ => {
            g.insert(name.to_string(), v.to_owned());
        }
    }
}

/// The replayed steps of one [`fit`]: a plan per batch size, compiled on
/// the first batch of that size. A plan's arguments are the batch's
/// inputs and labels, the dropout masks of the hidden layers (drawn before
/// each run from the same stream, in the same order, as an eager step
/// draws them) and the parameters.
struct Replay<'f, T: Element> {
    spec: &'f Model<T>,
    loss: &'f Loss,
    /// The rows of each hidden layer's mask (none without dropout).
    mask_rows: Vec<usize>,
    /// By batch size; `None`: refused, run eagerly.
    plans: Vec<(usize, Option<Plan<'f, T>>)>,
}

impl<'f, T: Element> Replay<'f, T> {
    fn new(spec: &'f Model<T>, loss: &'f Loss, dropout: bool) -> Self {
        let rows: Vec<usize> = spec.params().values().step_by(2).map(|w| w.nrows()).collect();
        let mask_rows = if dropout { rows[..rows.len() - 1].to_vec() } else { Vec::new() };
        Replay { spec, loss, mask_rows, plans: Vec::new() }
    }

    /// The plan of a step, recorded on its first batch (`x`, `y`), its
    /// masks and the current parameters, so that its first run checks
    /// itself against that recording.
    fn compile(
        &self,
        model: &Model<T>,
        (x, y): (Value<T>, Value<T>),
        dropout: Option<&mut Dropout>,
    ) -> Result<Plan<'f, T>, PlanError> {
        let (spec, loss, masks) = (self.spec, self.loss, self.mask_rows.len());
        let batch = x.shape()[1];
        let mut args = vec![Arg::input(x), Arg::input(y)];
        if let Some(d) = dropout {
            for &n in &self.mask_rows {
                let mut mask = Array2::<T>::zeros((n, batch)).into_dyn();
                d.fill(&mut mask.view_mut());
                args.push(Arg::input(mask));
            }
        }
        args.extend(model.params().values().map(|p| Arg::param(p.clone())));
        Plan::compile(args, move |_, a| {
            let (x, y, masks, params) = (a[0], a[1], &a[2..2 + masks], &a[2 + masks..]);
            let hidden = |l: usize, al| if masks.is_empty() { al } else { al * masks[l - 1] };
            let fwd = spec.record_with(x, params, hidden, ReluLayers::Fused, OutputMode::Logits);
            loss.cost(spec, &fwd, y)
        })
    }

    /// Replays the step on the batch `idx` (the whole set when
    /// `full_batch`), leaving the parameters' gradients in `g`; returns its
    /// cost, or `None` when this batch size's step is refused (the dropout
    /// stream is then where it was, for the eager step to draw from).
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        model: &Model<T>,
        xt: &Value<T>,
        yt: &Value<T>,
        idx: &[usize],
        full_batch: bool,
        dropout: Option<&mut Dropout>,
        g: &mut Params<T>,
        history: &mut History,
    ) -> Option<f64> {
        let n = idx.len();
        let first = dropout.as_ref().map(|d| (*d).clone());
        let masks = self.mask_rows.len();
        let mut dropout = dropout;
        let (at, params) = match self.plans.iter().position(|(b, _)| *b == n) {
            Some(at) => {
                let plan = self.plans[at].1.as_mut()?;
                if full_batch {
                    plan.set(0, xt.clone()).expect("the recorded shape");
                    plan.set(1, yt.clone()).expect("the recorded shape");
                } else {
                    plan.write(0, |v| gather_into(xt, idx, v)).expect("argument 0");
                    plan.write(1, |v| gather_into(yt, idx, v)).expect("argument 1");
                }
                if let Some(d) = dropout.as_deref_mut() {
                    for k in 0..masks {
                        plan.write(2 + k, |v| d.fill(v)).expect("a mask argument");
                    }
                }
                (at, true)
            }
            None => {
                // Recorded on this step's own arguments: its first run
                // replays them and checks itself against the recording.
                let batch = if full_batch {
                    (xt.clone(), yt.clone())
                } else {
                    (gather_columns(xt, idx), gather_columns(yt, idx))
                };
                let plan = self.compile(model, batch, dropout.as_deref_mut());
                if let Err(e) = &plan {
                    history.replay_refused.get_or_insert_with(|| e.to_string());
                }
                self.plans.push((n, plan.ok()));
                (self.plans.len() - 1, false)
            }
        };
        let c = match self.plans[at].1.as_mut() {
            Some(plan) => Self::run(plan, model, masks, g, history, params),
            None => None,
        };
        if c.is_none() {
            // Refused: this batch size runs eagerly, drawing its own masks.
            self.plans[at].1 = None;
            if let (Some(d), Some(first)) = (dropout, first) {
                *d = first;
            }
        }
        c
    }

    /// Runs `plan` (with the model's parameters copied in first when
    /// `params`) and copies the gradients into `g`.
    fn run(
        plan: &mut Plan<'f, T>,
        model: &Model<T>,
        masks: usize,
        g: &mut Params<T>,
        history: &mut History,
        params: bool,
    ) -> Option<f64> {
        let off = 2 + masks;
        if params {
            for (i, p) in model.params().values().enumerate() {
                plan.write(off + i, |v| v.assign(p)).expect("a parameter argument");
            }
        }
        let c = match plan.run() {
            Ok(c) => c.as_f64(),
            Err(e) => {
                history.replay_refused.get_or_insert_with(|| e.to_string());
                return None;
            }
        };
        if c.is_finite() {
            for (i, name) in model.params().keys().enumerate() {
                let v = plan.grad(off + i).expect("every parameter reaches the cost");
                copy_grad(g, i, name, v);
            }
        }
        history.replayed += 1;
        Some(c)
    }
}

/// Writes the columns `idx` of a 2-D value into `out`, in that order: a
/// mini-batch gathered into a plan's argument, with no allocation.
fn gather_into<T: Element>(
    x: &Value<T>,
    idx: &[usize],
    out: &mut tapegrad_tensor::ndarray::ArrayViewMutD<'_, T>,
) {
    let x = x.view().into_dimensionality::<Ix2>().expect("2-D data");
    let mut out = out.view_mut().into_dimensionality::<Ix2>().expect("2-D argument");
    for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
        match (row.as_slice(), o.as_slice_mut()) {
            (Some(r), Some(o)) => {
                for (o, &j) in o.iter_mut().zip(idx) {
                    *o = r[j];
                }
            }
            _ => {
                for (o, &j) in o.iter_mut().zip(idx) {
                    *o = row[j];
                }
            }
        }
    }
}

/// The cost of `model` on a data set, without recording gradients. The
/// labels are in any form [`fit`] takes.
///
/// # Panics
/// When `x` or `y` does not fit the model (checked by the callers).
///
/// ```
/// use tapegrad_nn::{cost_of, Architecture, Init, Loss, Model};
/// use tapegrad_tensor::ndarray::{array, Array2};
/// let model = Model::<f64>::new(&Architecture::guide(1, &[]), Init::Zeros, 0).unwrap();
/// let c = cost_of(&model, &Loss::default(), Array2::zeros((1, 3)).view(), Array2::ones((1, 3)).view());
/// assert!((c - 2f64.ln()).abs() < 1e-15);
/// // Three classes, all logits 0: ln 3 per example, class indices or one-hot alike.
/// let model = Model::<f64>::new(&Architecture::softmax(1, &[], 3), Init::Zeros, 0).unwrap();
/// let c = cost_of(&model, &Loss::default(), Array2::zeros((1, 2)).view(), array![[2.0, 0.0]].view());
/// assert!((c - 3f64.ln()).abs() < 1e-15);
/// ```
#[track_caller]
pub fn cost_of<T: Element>(model: &Model<T>, loss: &Loss, x: ArrayView2<'_, T>, y: ArrayView2<'_, T>) -> f64 {
    let targets = match model.targets(y, x.ncols()) {
        Ok(t) => t,
        Err(e) => panic!("cost_of: {e}"),
    };
    cost_on_targets(model, loss, x, targets.view())
}

/// [`cost_of`] for labels already in the form the cost reads.
pub(crate) fn cost_on_targets<T: Element>(
    model: &Model<T>,
    loss: &Loss,
    x: ArrayView2<'_, T>,
    targets: ArrayView2<'_, T>,
) -> f64 {
    let tape = Tape::new();
    tape.no_grad(|| {
        let x = tape.constant(x.to_owned());
        let fwd = model.record(&tape, x, None, ReluLayers::Fused, OutputMode::Logits);
        loss.cost(model, &fwd, tape.constant(targets.to_owned())).item().as_f64()
    })
}

/// The columns `idx` of a 2-D value, in that order: a mini-batch in the
/// guide's column-per-example layout, copied row by row.
fn gather_columns<T: Element>(x: &Value<T>, idx: &[usize]) -> Value<T> {
    let x = x.view().into_dimensionality::<Ix2>().expect("2-D data");
    let mut out = Vec::with_capacity(x.nrows() * idx.len());
    for row in x.rows() {
        match row.as_slice() {
            Some(r) => out.extend(idx.iter().map(|&j| r[j])),
            None => out.extend(idx.iter().map(|&j| row[j])),
        }
    }
    tapegrad_tensor::ndarray::Array2::from_shape_vec((x.nrows(), idx.len()), out)
        .expect("rows x batch")
        .into_value()
}
