//! The guide's L-layer network: `Z[l] = W[l] A[l-1] + b[l]`,
//! `A[l] = g[l](Z[l])`, one column per example.

use crate::activation::Activation;
use crate::error::NnError;
use crate::head::Head;
use crate::init::Init;
use indexmap::IndexMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tapegrad_tensor::ndarray::{Array1, Array2, ArrayView2, Axis};
use tapegrad_tensor::{Element, Tape, Tensor};

/// Parameters by name (`W1`, `b1`, ..., `WL`, `bL`), in insertion order.
pub type Params<T> = IndexMap<String, Array2<T>>;

/// The two parameters of layer `l` in `Z[l] = W[l] A[l-1] + b[l]`: the
/// weights `W[l]`, of shape `(n[l], n[l-1])`, and the bias `b[l]`, of shape
/// `(n[l], 1)`.
///
/// `P` is what holds a parameter: an array in [`Model::layers`], a mutable
/// one in [`Model::layers_mut`], a tensor on the tape in
/// [`Forward::layers`], a name in [`Layer::names`]. Whatever applies to
/// weights only (L2 regularisation) or to biases only (the gradient
/// check's jitter) picks the field; no decision is made on a name. The
/// names `W{l}` and `b{l}` exist for [`Params`] and model files.
///
/// ```
/// use tapegrad_nn::{Architecture, Init, Layer, Model};
/// let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// let first = model.layers().next().unwrap();
/// assert_eq!((first.w.dim(), first.b.dim()), ((4, 3), (4, 1)));
/// assert_eq!(Layer::names(1), Layer { w: "W1".to_string(), b: "b1".to_string() });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer<P> {
    /// The weights `W[l]`.
    pub w: P,
    /// The bias `b[l]`.
    pub b: P,
}

impl Layer<String> {
    /// The names of layer `l`'s parameters (1-based) in [`Params`] and in
    /// model files: `W{l}` and `b{l}`. The one place these names are made.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Layer::names(2).b, "b2");
    /// ```
    pub fn names(l: usize) -> Self {
        Layer { w: format!("W{l}"), b: format!("b{l}") }
    }
}

/// How [`Model::record`] records a hidden or output ReLU layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReluLayers {
    /// As one fused op (`affine_relu`): fewer passes over memory, the same
    /// numbers, but `Z[l]` is not on the tape (the layer's entry in
    /// [`Forward::z`] is then `A[l]`). For training and evaluation.
    Fused,
    /// As `affine` then `relu`, so that `Z[l]` and `dZ[l]` can be read.
    Separate,
}

/// What [`Model::record`] records for a sigmoid or softmax output layer
/// (other output activations are always applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputMode {
    /// `A[L] = sigmoid(Z[L])` or `softmax(Z[L])`, the probabilities.
    Probabilities,
    /// Only the logits: the last entry of [`Forward::a`] is then `Z[L]`.
    /// For the loss, which reads the logits of a sigmoid or softmax
    /// output (see [`crate::Loss::cost`]).
    Logits,
}

/// One layer of an [`Architecture`]: its number of units and the name (or
/// formula) of its activation.
///
/// ```
/// let l = tapegrad_nn::LayerSpec { units: 5, activation: "relu".into() };
/// assert_eq!(l.units, 5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// `n[l]`, the number of units.
    pub units: usize,
    /// A name or formula understood by [`Activation::parse`].
    pub activation: String,
}

/// The shape of a network: input size, layers and head.
///
/// ```
/// use tapegrad_nn::{Architecture, Head};
/// let a = Architecture::guide(3, &[20, 7, 5]);
/// assert_eq!(a.sizes(), vec![3, 20, 7, 5, 1]);
/// assert_eq!(a.layers[3].activation, "sigmoid");
/// assert_eq!(a.head, Head::Binary);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    /// `n[0]`, the number of input features.
    pub input: usize,
    /// Layers 1..=L.
    pub layers: Vec<LayerSpec>,
    /// What the output layer computes and which cost trains it; absent
    /// from old model files, which are all binary.
    #[serde(default)]
    pub head: Head,
}

impl Architecture {
    /// The guide's binary classifier: ReLU hidden layers of the given sizes
    /// and one sigmoid output unit. `hidden = &[]` is logistic regression.
    ///
    /// ```
    /// let lr = tapegrad_nn::Architecture::guide(3, &[]);
    /// assert_eq!(lr.sizes(), vec![3, 1]);
    /// ```
    pub fn guide(input: usize, hidden: &[usize]) -> Self {
        let mut layers: Vec<LayerSpec> =
            hidden.iter().map(|&u| LayerSpec { units: u, activation: "relu".into() }).collect();
        layers.push(LayerSpec { units: 1, activation: "sigmoid".into() });
        Architecture { input, layers, head: Head::Binary }
    }

    /// A multi-class classifier: ReLU hidden layers of the given sizes and
    /// a [`Head::Softmax`] output of `classes` units (classes are rows,
    /// examples columns). `hidden = &[]` is multinomial logistic
    /// regression.
    ///
    /// ```
    /// let a = tapegrad_nn::Architecture::softmax(3, &[], 3);
    /// assert_eq!(a.sizes(), vec![3, 3]);
    /// assert_eq!(a.layers[0].activation, "softmax");
    /// ```
    pub fn softmax(input: usize, hidden: &[usize], classes: usize) -> Self {
        Self::guide(input, hidden).with_output(Head::Softmax, classes)
    }

    /// A regression network: ReLU hidden layers of the given sizes and a
    /// [`Head::Regression`] output of `outputs` identity units. `hidden =
    /// &[]` is linear least squares.
    ///
    /// ```
    /// let a = tapegrad_nn::Architecture::regression(2, &[4], 1);
    /// assert_eq!(a.layers[1].activation, "identity");
    /// ```
    pub fn regression(input: usize, hidden: &[usize], outputs: usize) -> Self {
        Self::guide(input, hidden).with_output(Head::Regression, outputs)
    }

    /// The same architecture with another head and output size (the
    /// output activation is the head's: `sigmoid`, `softmax` or
    /// `identity`).
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Head};
    /// let a = Architecture::guide(3, &[4]).with_output(Head::Softmax, 5);
    /// assert_eq!(a, Architecture::softmax(3, &[4], 5));
    /// ```
    pub fn with_output(mut self, head: Head, units: usize) -> Self {
        if let Some(last) = self.layers.last_mut() {
            last.units = units;
            last.activation = match head {
                Head::Binary => "sigmoid",
                Head::Softmax => "softmax",
                Head::Regression => "identity",
            }
            .into();
        }
        self.head = head;
        self
    }

    /// The same architecture with every hidden layer's activation replaced.
    ///
    /// ```
    /// let a = tapegrad_nn::Architecture::guide(3, &[4]).with_hidden_activation("tanh");
    /// assert_eq!(a.layers[0].activation, "tanh");
    /// ```
    pub fn with_hidden_activation(mut self, activation: &str) -> Self {
        let n = self.layers.len();
        for l in &mut self.layers[..n.saturating_sub(1)] {
            l.activation = activation.to_string();
        }
        self
    }

    /// `[n[0], n[1], ..., n[L]]`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Architecture::guide(2, &[3]).sizes(), vec![2, 3, 1]);
    /// ```
    pub fn sizes(&self) -> Vec<usize> {
        std::iter::once(self.input).chain(self.layers.iter().map(|l| l.units)).collect()
    }

    /// Checks sizes and the head, and parses the activations.
    ///
    /// # Errors
    /// A zero size, no layers, an activation that does not parse, or an
    /// output layer that does not fit the head: a binary head has one
    /// unit, a softmax head at least two with the activation `softmax`, a
    /// regression head the activation `identity`.
    ///
    /// ```
    /// use tapegrad_nn::Architecture;
    /// assert!(Architecture::guide(0, &[3]).activations::<f64>().is_err());
    /// ```
    pub fn activations<T: Element>(&self) -> Result<Vec<Activation<T>>, NnError> {
        let bad = |value: String, reason: &str| NnError::InvalidHyperParameter {
            name: "architecture",
            value,
            reason: reason.to_string(),
        };
        if self.input == 0 {
            return Err(bad("input size 0".into(), "needs at least one input feature"));
        }
        if self.layers.is_empty() {
            return Err(bad("no layers".into(), "needs at least the output layer"));
        }
        if let Some(l) = self.layers.iter().position(|l| l.units == 0) {
            return Err(bad(format!("layer {} of 0 units", l + 1), "every layer needs at least one unit"));
        }
        let last = self.layers.len() - 1;
        let out = &self.layers[last];
        let head_error = |reason: &str| NnError::InvalidHyperParameter {
            name: "output layer",
            value: format!("{} unit(s), activation '{}', {} head", out.units, out.activation, self.head),
            reason: reason.to_string(),
        };
        let output = match self.head {
            Head::Binary if out.units != 1 => {
                return Err(head_error("a binary head has one output unit (a softmax head has K)"))
            }
            Head::Binary => Activation::parse(&out.activation)?,
            Head::Softmax if out.units < 2 || out.activation.trim() != "softmax" => {
                return Err(head_error("a softmax head has at least 2 units and the activation 'softmax'"))
            }
            Head::Softmax => Activation::Softmax,
            Head::Regression => match Activation::<T>::parse(&out.activation)? {
                Activation::Identity => Activation::Identity,
                _ => return Err(head_error("a regression head has the activation 'identity'")),
            },
        };
        let mut acts = self.layers[..last]
            .iter()
            .map(|l| Activation::parse(&l.activation).map_err(NnError::from))
            .collect::<Result<Vec<_>, _>>()?;
        acts.push(output);
        Ok(acts)
    }
}

/// An L-layer network in the guide's layout, in `f32` or `f64`.
///
/// ```
/// use tapegrad_nn::{Architecture, Init, Model};
/// let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// assert_eq!(model.params().keys().collect::<Vec<_>>(), ["W1", "b1", "W2", "b2"]);
/// assert_eq!(model.params()["W1"].dim(), (4, 3));
/// assert_eq!(model.params()["b2"].dim(), (1, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Model<T: Element> {
    arch: Architecture,
    activations: Vec<Activation<T>>,
    params: Params<T>,
}

/// The tensors of one forward pass: parameters, pre-activations `Z[l]` and
/// activations `A[l]`, so that every intermediate gradient can be read
/// (`dZ[l]`, `dA[l]`) and compared with the guide's.
///
/// ```
/// use tapegrad_nn::{Architecture, Init, Model};
/// use tapegrad_tensor::{ndarray::Array2, Tape};
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 1).unwrap();
/// let tape = Tape::new();
/// let fwd = model.forward(&tape, tape.constant(Array2::<f64>::zeros((2, 5))), None);
/// assert_eq!(fwd.z.len(), 2);
/// assert_eq!(fwd.layers[1].w.shape(), vec![1, 3]);
/// assert_eq!(fwd.output().shape(), vec![1, 5]);
/// ```
pub struct Forward<'t, T: Element> {
    /// The parameters as leaves on the tape, by name.
    pub params: IndexMap<String, Tensor<'t, T>>,
    /// The same leaves by layer (index `l - 1`).
    pub layers: Vec<Layer<Tensor<'t, T>>>,
    /// `Z[1]..Z[L]` (index `l - 1`).
    pub z: Vec<Tensor<'t, T>>,
    /// `A[0] = X, A[1], ..., A[L]` (index `l`).
    pub a: Vec<Tensor<'t, T>>,
}

impl<'t, T: Element> Forward<'t, T> {
    /// `A[L]`, the network's output.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// # use tapegrad_tensor::{ndarray::Array2, Tape};
    /// # let model = Model::<f64>::new(&Architecture::guide(2, &[]), Init::Zeros, 0).unwrap();
    /// # let tape = Tape::new();
    /// let fwd = model.forward(&tape, tape.constant(Array2::<f64>::zeros((2, 1))), None);
    /// assert_eq!(fwd.output().item(), 0.5); // sigmoid(0)
    /// ```
    pub fn output(&self) -> Tensor<'t, T> {
        *self.a.last().expect("at least one layer")
    }

    /// `Z[L]`, the output layer's pre-activation (the logits for a sigmoid
    /// output).
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// # use tapegrad_tensor::{ndarray::Array2, Tape};
    /// # let model = Model::<f64>::new(&Architecture::guide(2, &[]), Init::Zeros, 0).unwrap();
    /// # let tape = Tape::new();
    /// let fwd = model.forward(&tape, tape.constant(Array2::<f64>::zeros((2, 1))), None);
    /// assert_eq!(fwd.logits().item(), 0.0);
    /// ```
    pub fn logits(&self) -> Tensor<'t, T> {
        *self.z.last().expect("at least one layer")
    }
}

/// Inverted dropout for training: each hidden unit is kept with
/// probability `keep` and scaled by `1 / keep`, so evaluation needs no
/// rescaling. Masks come from a seeded stream.
///
/// ```
/// let d = tapegrad_nn::Dropout::new(0.2, 7).unwrap();
/// assert_eq!(d.rate(), 0.2);
/// assert!(tapegrad_nn::Dropout::new(1.0, 7).is_err());
/// ```
#[derive(Clone)]
pub struct Dropout {
    rate: f64,
    rng: ChaCha8Rng,
}

impl Dropout {
    /// Drops units with probability `rate` in `[0, 1)`.
    ///
    /// # Errors
    /// When `rate` is outside `[0, 1)`.
    ///
    /// ```
    /// assert!(tapegrad_nn::Dropout::new(0.5, 0).is_ok());
    /// ```
    pub fn new(rate: f64, seed: u64) -> Result<Self, NnError> {
        Self::check_rate(rate)?;
        Ok(Self::seeded(rate, seed))
    }

    /// The one check of a dropout rate (also used by
    /// [`crate::TrainConfig::validate`]).
    pub(crate) fn check_rate(rate: f64) -> Result<(), NnError> {
        if !(0.0..1.0).contains(&rate) {
            return Err(NnError::InvalidHyperParameter {
                name: "dropout rate",
                value: rate.to_string(),
                reason: "must be in [0, 1)".into(),
            });
        }
        Ok(())
    }

    /// Dropout at a rate already checked by [`Dropout::check_rate`].
    pub(crate) fn seeded(rate: f64, seed: u64) -> Self {
        Dropout { rate, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The drop probability.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Dropout::new(0.1, 0).unwrap().rate(), 0.1);
    /// ```
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Draws the next mask into `out`, in row-major order, exactly as
    /// [`Dropout::apply`] draws one for an activation of `out`'s shape: a
    /// replayed step takes its masks as arguments, drawn from the same
    /// stream in the same order as the eager step would draw them.
    pub(crate) fn fill<T: Element>(&mut self, out: &mut tapegrad_tensor::ndarray::ArrayViewMutD<'_, T>) {
        use rand::RngExt;
        let keep = 1.0 - self.rate;
        let scale = T::cast(1.0 / keep);
        for v in out.iter_mut() {
            *v = if self.rng.random::<f64>() < keep { scale } else { T::zero() };
        }
    }

    fn apply<'t, T: Element>(&mut self, a: Tensor<'t, T>) -> Tensor<'t, T> {
        use rand::RngExt;
        if self.rate == 0.0 {
            return a;
        }
        let keep = 1.0 - self.rate;
        let shape = a.shape();
        let scale = T::cast(1.0 / keep);
        let rng = &mut self.rng;
        let mask = tapegrad_tensor::ndarray::ArrayD::from_shape_simple_fn(shape, || {
            if rng.random::<f64>() < keep {
                scale
            } else {
                T::zero()
            }
        });
        a * a.tape().constant(mask)
    }
}

impl<T: Element> Model<T> {
    /// A model with freshly drawn weights (seeded) and zero biases.
    ///
    /// # Errors
    /// When the architecture is invalid (see [`Architecture::activations`]).
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// let a = Model::<f32>::new(&Architecture::guide(3, &[5]), Init::HeNormal, 42).unwrap();
    /// let b = Model::<f32>::new(&Architecture::guide(3, &[5]), Init::HeNormal, 42).unwrap();
    /// assert_eq!(a.params(), b.params());
    /// ```
    pub fn new(arch: &Architecture, init: Init, seed: u64) -> Result<Self, NnError> {
        let activations = arch.activations()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sizes = arch.sizes();
        let mut params = Params::new();
        for l in 1..sizes.len() {
            let names = Layer::names(l);
            params.insert(names.w, init.sample(sizes[l], sizes[l - 1], &mut rng).mapv(T::cast));
            params.insert(names.b, Array2::zeros((sizes[l], 1)));
        }
        Ok(Model { arch: arch.clone(), activations, params })
    }

    /// A model from an architecture and its parameters (for example, the
    /// shared initial weights of a benchmark).
    ///
    /// # Errors
    /// When a parameter is missing, extra or of the wrong shape, or the
    /// architecture is invalid.
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Model, Params};
    /// use tapegrad_tensor::ndarray::Array2;
    /// let mut p = Params::<f64>::new();
    /// p.insert("W1".into(), Array2::zeros((1, 2)));
    /// p.insert("b1".into(), Array2::zeros((1, 1)));
    /// assert!(Model::from_params(&Architecture::guide(2, &[]), p).is_ok());
    /// ```
    pub fn from_params(arch: &Architecture, params: Params<T>) -> Result<Self, NnError> {
        let activations = arch.activations()?;
        let sizes = arch.sizes();
        let mut ordered = Params::new();
        for l in 1..sizes.len() {
            let names = Layer::names(l);
            for (name, shape) in [(names.w, (sizes[l], sizes[l - 1])), (names.b, (sizes[l], 1))] {
                let p = params
                    .get(&name)
                    .ok_or_else(|| NnError::DataShape(format!("parameter {name} is missing")))?;
                if p.dim() != shape {
                    return Err(NnError::DataShape(format!(
                        "parameter {name} has shape {:?}, the architecture needs {shape:?}",
                        p.dim()
                    )));
                }
                ordered.insert(name, p.clone());
            }
        }
        if params.len() != ordered.len() {
            let extra: Vec<&String> = params.keys().filter(|k| !ordered.contains_key(*k)).collect();
            return Err(NnError::DataShape(format!("unexpected parameters {extra:?}")));
        }
        Ok(Model { arch: arch.clone(), activations, params: ordered })
    }

    /// Replaces layer `l`'s activation (1-based), e.g. with a closure.
    ///
    /// # Panics
    /// When `l` is not in `1..=L`, or is the output layer of a softmax or
    /// regression model (whose output activation is the head's).
    ///
    /// ```
    /// use tapegrad_nn::{Activation, Architecture, Init, Model};
    /// let mut m = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
    /// m.set_activation(1, Activation::custom("cube", |z| z * z * z));
    /// assert_eq!(m.architecture().layers[0].activation, "cube");
    /// ```
    #[track_caller]
    pub fn set_activation(&mut self, l: usize, activation: Activation<T>) {
        assert!((1..=self.activations.len()).contains(&l), "set_activation: no layer {l}");
        assert!(
            l < self.activations.len() || self.arch.head == Head::Binary,
            "set_activation: the output activation of a {} head is the head's",
            self.arch.head
        );
        self.arch.layers[l - 1].activation = activation.name();
        self.activations[l - 1] = activation;
    }

    /// The architecture.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// assert_eq!(m.architecture().input, 3);
    /// ```
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The head (see [`Head`]).
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Head, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::softmax(3, &[2], 4), Init::HeNormal, 0).unwrap();
    /// assert_eq!(m.head(), Head::Softmax);
    /// ```
    pub fn head(&self) -> Head {
        self.arch.head
    }

    /// The number of output units `n[L]` (1 for a binary head, `K` for a
    /// softmax head).
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::softmax(3, &[2], 4), Init::HeNormal, 0).unwrap();
    /// assert_eq!(m.outputs(), 4);
    /// ```
    pub fn outputs(&self) -> usize {
        self.arch.layers.last().map_or(0, |l| l.units)
    }

    /// The labels `y` for `m` examples as this model's cost reads them
    /// (see [`Head::targets`]).
    pub(crate) fn targets(&self, y: ArrayView2<'_, T>, m: usize) -> Result<Array2<T>, NnError> {
        self.arch.head.targets(y, self.outputs(), m)
    }

    /// The activations, one per layer.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// assert!(m.activations()[1].is_sigmoid());
    /// ```
    pub fn activations(&self) -> &[Activation<T>] {
        &self.activations
    }

    /// The parameters by name.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// assert_eq!(m.params().len(), 4);
    /// ```
    pub fn params(&self) -> &Params<T> {
        &self.params
    }

    /// The parameters by name, to update in place (names, order and shapes
    /// must be kept: [`Model::layers`] reads them in order).
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let mut m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// m.params_mut()["b1"].fill(1.0);
    /// assert_eq!(m.params()["b1"][[0, 0]], 1.0);
    /// ```
    pub fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }

    /// The parameters by layer, `1..=L`.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// let dims: Vec<_> = m.layers().map(|l| l.w.dim()).collect();
    /// assert_eq!(dims, [(2, 3), (1, 2)]);
    /// ```
    pub fn layers(&self) -> impl Iterator<Item = Layer<&Array2<T>>> + '_ {
        // The parameters are stored W1, b1, ..., WL, bL (see `from_params`).
        let mut it = self.params.values();
        std::iter::from_fn(move || Some(Layer { w: it.next()?, b: it.next()? }))
    }

    /// The parameters by layer, to update in place (shapes must be kept).
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let mut m = Model::<f64>::new(&Architecture::guide(3, &[2]), Init::HeNormal, 0).unwrap();
    /// for layer in m.layers_mut() {
    ///     layer.b.fill(0.5);
    /// }
    /// assert_eq!(m.params()["b2"][[0, 0]], 0.5);
    /// ```
    pub fn layers_mut(&mut self) -> impl Iterator<Item = Layer<&mut Array2<T>>> + '_ {
        let mut it = self.params.values_mut();
        std::iter::from_fn(move || Some(Layer { w: it.next()?, b: it.next()? }))
    }

    /// The number of layers `L`.
    ///
    /// ```
    /// # use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[4, 2]), Init::HeNormal, 0).unwrap();
    /// assert_eq!(m.num_layers(), 3);
    /// ```
    pub fn num_layers(&self) -> usize {
        self.activations.len()
    }

    /// Records the forward pass on `tape` for inputs `x` of shape
    /// `(n[0], m)`, with the parameters as leaves that require gradients.
    /// With `dropout`, hidden activations are dropped (training mode).
    ///
    /// # Panics
    /// When `x` does not have `n[0]` rows (a programming error: check
    /// outside data first, as [`crate::fit`] does).
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// use tapegrad_tensor::{ndarray::Array2, Tape};
    /// let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
    /// let tape = Tape::new();
    /// let fwd = model.forward(&tape, tape.constant(Array2::<f64>::ones((3, 8))), None);
    /// let grads = tape.backward(fwd.output().mean());
    /// assert_eq!(grads[fwd.params["W1"]].shape(), &[4, 3]);
    /// ```
    pub fn forward<'t>(
        &self,
        tape: &'t Tape<T>,
        x: Tensor<'t, T>,
        dropout: Option<&mut Dropout>,
    ) -> Forward<'t, T> {
        self.record(tape, x, dropout, ReluLayers::Separate, OutputMode::Probabilities)
    }

    /// The forward pass, with ReLU layers recorded as `relu` says and a
    /// sigmoid or softmax output as `output` says (see [`ReluLayers`] and
    /// [`OutputMode`]). With `dropout`, hidden activations are dropped.
    pub(crate) fn record<'t>(
        &self,
        tape: &'t Tape<T>,
        x: Tensor<'t, T>,
        mut dropout: Option<&mut Dropout>,
        relu: ReluLayers,
        output: OutputMode,
    ) -> Forward<'t, T> {
        let params: Vec<Tensor<'t, T>> = self.params.values().map(|v| tape.var(v)).collect();
        let hidden = |_: usize, a: Tensor<'t, T>| match dropout.as_deref_mut() {
            Some(d) => d.apply(a),
            None => a,
        };
        self.record_with(x, &params, hidden, relu, output)
    }

    /// [`Model::record`] with the parameters given as tensors (in the
    /// order of [`Model::params`]) and `hidden(l, A[l])` applied to each
    /// hidden layer's activation: how a replayed step ([`crate::fit`])
    /// records the model, with its parameters and dropout masks as the
    /// plan's arguments.
    pub(crate) fn record_with<'t>(
        &self,
        x: Tensor<'t, T>,
        params: &[Tensor<'t, T>],
        mut hidden: impl FnMut(usize, Tensor<'t, T>) -> Tensor<'t, T>,
        relu: ReluLayers,
        output: OutputMode,
    ) -> Forward<'t, T> {
        let params: IndexMap<String, Tensor<'t, T>> =
            self.params.keys().cloned().zip(params.iter().copied()).collect();
        let mut it = params.values().copied();
        let layers: Vec<Layer<Tensor<'t, T>>> =
            std::iter::from_fn(|| Some(Layer { w: it.next()?, b: it.next()? })).collect();
        let mut z = Vec::with_capacity(self.num_layers());
        let mut a = vec![x];
        let last = self.num_layers();
        for (i, (act, &Layer { w, b })) in self.activations.iter().zip(&layers).enumerate() {
            let l = i + 1;
            let (zl, mut al) = if relu == ReluLayers::Fused && matches!(act, Activation::Relu) {
                let al = w.affine_relu(a[i], b);
                (al, al)
            } else if output == OutputMode::Logits
                && l == last
                && matches!(act, Activation::Sigmoid | Activation::Softmax)
            {
                let zl = w.affine(a[i], b);
                (zl, zl)
            } else {
                let zl = w.affine(a[i], b);
                (zl, act.apply(zl))
            };
            if l < last {
                al = hidden(l, al);
            }
            z.push(zl);
            a.push(al);
        }
        Forward { params, layers, z, a }
    }

    /// The outputs `A[L]`, of shape `(n[L], m)`, for inputs of shape
    /// `(n[0], m)`, computed without recording gradients (evaluation
    /// mode, no dropout): probabilities for a binary head, one column of
    /// class probabilities per example for a softmax head, values for a
    /// regression head.
    ///
    /// # Errors
    /// When `x` does not have `n[0]` rows.
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// use tapegrad_tensor::ndarray::Array2;
    /// let model = Model::<f64>::new(&Architecture::softmax(3, &[], 4), Init::Zeros, 0).unwrap();
    /// let p = model.predict(Array2::zeros((3, 2)).view()).unwrap();
    /// assert_eq!(p, Array2::from_elem((4, 2), 0.25));
    /// ```
    pub fn predict(&self, x: ArrayView2<'_, T>) -> Result<Array2<T>, NnError> {
        self.check_input(x.nrows())?;
        let tape = Tape::new();
        let out = tape.no_grad(|| {
            let x = tape.constant(x.to_owned());
            self.record(&tape, x, None, ReluLayers::Fused, OutputMode::Probabilities).output().value()
        });
        Ok(out.into_dimensionality::<tapegrad_tensor::ndarray::Ix2>().expect("2-D output").into_owned())
    }

    /// Probabilities `A[L]` of a binary head, one per example, for inputs
    /// of shape `(n[0], m)` (see [`Model::predict`]).
    ///
    /// # Errors
    /// When `x` does not have `n[0]` rows, or the head is not binary
    /// ([`NnError::WrongHead`]: use [`Model::predict`]).
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// use tapegrad_tensor::ndarray::Array2;
    /// let model = Model::<f64>::new(&Architecture::guide(3, &[]), Init::Zeros, 0).unwrap();
    /// let p = model.predict_proba(Array2::zeros((3, 2)).view()).unwrap();
    /// assert_eq!(p.to_vec(), vec![0.5, 0.5]);
    /// ```
    pub fn predict_proba(&self, x: ArrayView2<'_, T>) -> Result<Array1<T>, NnError> {
        if self.head() != Head::Binary {
            return Err(NnError::WrongHead {
                op: "predict_proba",
                needs: "binary",
                found: self.head(),
                hint: "; use predict for the outputs of every example",
            });
        }
        Ok(self.predict(x)?.index_axis(Axis(0), 0).to_owned())
    }

    /// The predicted class of each example: the row of the largest
    /// probability for a softmax head (the first at a tie), and
    /// `A[L] >= 0.5` for a binary head.
    ///
    /// # Errors
    /// When `x` does not have `n[0]` rows, or the head is regression
    /// ([`NnError::WrongHead`]).
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// use tapegrad_tensor::ndarray::array;
    /// let mut model = Model::<f64>::new(&Architecture::softmax(1, &[], 3), Init::Zeros, 0).unwrap();
    /// model.params_mut()["W1"].assign(&array![[-1.0], [0.0], [1.0]]);
    /// assert_eq!(model.predict_classes(array![[-2.0, 0.5]].view()).unwrap(), vec![0, 2]);
    /// ```
    pub fn predict_classes(&self, x: ArrayView2<'_, T>) -> Result<Vec<usize>, NnError> {
        let out = match self.head() {
            Head::Regression => {
                return Err(NnError::WrongHead {
                    op: "predict_classes",
                    needs: "binary or softmax",
                    found: Head::Regression,
                    hint: "",
                })
            }
            _ => self.predict(x)?,
        };
        Ok(match self.head() {
            Head::Softmax => {
                let tape = Tape::<T>::new();
                tape.constant(out).argmax(0).iter().copied().collect()
            }
            _ => out.iter().map(|&p| usize::from(p >= T::cast(0.5))).collect(),
        })
    }

    /// Checks that data has the model's number of input features.
    pub(crate) fn check_input(&self, rows: usize) -> Result<(), NnError> {
        if rows != self.arch.input {
            return Err(NnError::DataShape(format!(
                "the data has {rows} features (rows), the model expects {}",
                self.arch.input
            )));
        }
        Ok(())
    }
}

impl<T: Element> Model<T> {
    /// The same model in another element type (activations re-parsed from
    /// their names).
    ///
    /// # Errors
    /// When an activation is a closure, which cannot change type.
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Model};
    /// let m = Model::<f32>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
    /// let m64 = m.cast::<f64>().unwrap();
    /// assert_eq!(m64.params()["W1"][[0, 0]], m.params()["W1"][[0, 0]] as f64);
    /// ```
    pub fn cast<U: Element>(&self) -> Result<Model<U>, NnError> {
        if let Some(Activation::Custom(name, _)) =
            self.activations.iter().find(|a| matches!(a, Activation::Custom(..)))
        {
            return Err(NnError::Unsaveable(format!(
                "activation '{name}' is a Rust closure for one element type; write it as a formula to convert the model"
            )));
        }
        let params = self.params.iter().map(|(k, v)| (k.clone(), v.mapv(|x| U::cast(x.as_f64())))).collect();
        Model::from_params(&self.arch, params)
    }
}
