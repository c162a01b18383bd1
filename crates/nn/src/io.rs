//! Model files: architecture (with its head), activations (names or
//! formulas), parameters and the input standardisation, as versioned JSON.
//! Files are written atomically; every way a file can be wrong on load is
//! a typed error.
//!
//! # Versions
//!
//! - **2** (written now): the architecture has a `head` field (`binary`,
//!   `softmax` or `regression`; see [`crate::Head`]), and the activation
//!   `gelu` is the exact GELU.
//! - **1**: no head (every model was binary), and `gelu` named the tanh
//!   approximation. Version-1 files still load: as binary models, with
//!   every activation named `gelu` read as `gelu_tanh`, so that an old
//!   model computes exactly what it computed when it was saved.

mod onnx;

pub use onnx::to_onnx;

use crate::error::NnError;
use crate::model::{Architecture, Model, Params};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tapegrad_tensor::ndarray::{Array2, ArrayD, ArrayView2};
use tapegrad_tensor::Element;

/// The `format` field of every tapegrad model file.
pub const FORMAT: &str = "tapegrad-model";
/// The format version this build writes; it reads every version from 1 to
/// this one (see [the versions](crate::io#versions)).
pub const VERSION: u32 = 2;

/// Per-feature standardisation `x' = (x - mean) / std`, fitted on training
/// rows and stored with the model so predictions see the same scaling.
///
/// ```
/// use tapegrad_nn::Standardization;
/// use tapegrad_tensor::ndarray::array;
/// let x = array![[1.0, 3.0], [10.0, 10.0]]; // 2 features (rows), 2 examples
/// let s = Standardization::fit(x.view(), &["a".into(), "b".into()]);
/// assert!(s.is_err()); // feature b has zero variance
/// let x = array![[1.0, 3.0], [10.0, 20.0]];
/// let s = Standardization::fit(x.view(), &["a".into(), "b".into()]).unwrap();
/// assert_eq!(s.mean, vec![2.0, 15.0]);
/// assert_eq!(s.apply(x.view()).unwrap(), array![[-1.0, 1.0], [-1.0, 1.0]]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Feature names, one per row of the inputs.
    pub features: Vec<String>,
    /// Per-feature mean of the training rows.
    pub mean: Vec<f64>,
    /// Per-feature population standard deviation (ddof = 0).
    pub std: Vec<f64>,
}

impl Standardization {
    /// Fits on `x` of shape `(features, examples)`.
    ///
    /// # Errors
    /// No examples, a name count that differs from the rows, or a feature
    /// with zero (or non-finite) variance, named.
    ///
    /// ```
    /// # use tapegrad_nn::Standardization;
    /// # use tapegrad_tensor::ndarray::Array2;
    /// assert!(Standardization::fit(Array2::<f64>::zeros((1, 0)).view(), &["a".into()]).is_err());
    /// ```
    pub fn fit(x: ArrayView2<'_, f64>, features: &[String]) -> Result<Self, NnError> {
        if features.len() != x.nrows() {
            return Err(NnError::DataShape(format!(
                "{} feature names for {} rows",
                features.len(),
                x.nrows()
            )));
        }
        if x.ncols() == 0 {
            return Err(NnError::DataShape("no examples to standardise".into()));
        }
        let mut mean = Vec::new();
        let mut std = Vec::new();
        for (row, name) in x.rows().into_iter().zip(features) {
            let mu = row.mean().expect("non-empty");
            let sd = row.mapv(|v| (v - mu) * (v - mu)).mean().expect("non-empty").sqrt();
            if !(sd > 0.0 && sd.is_finite()) {
                return Err(NnError::DataShape(format!(
                    "feature '{name}' has zero variance in the training rows (every value is {mu}); it cannot be standardised"
                )));
            }
            mean.push(mu);
            std.push(sd);
        }
        Ok(Standardization { features: features.to_vec(), mean, std })
    }

    /// Applies to `x` of shape `(features, examples)`.
    ///
    /// # Errors
    /// When `x` has a different number of features.
    ///
    /// ```
    /// # use tapegrad_nn::Standardization;
    /// # use tapegrad_tensor::ndarray::Array2;
    /// let s = Standardization { features: vec!["a".into()], mean: vec![1.0], std: vec![2.0] };
    /// assert!(s.apply(Array2::<f64>::zeros((2, 1)).view()).is_err());
    /// ```
    pub fn apply(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, NnError> {
        if x.nrows() != self.mean.len() {
            return Err(NnError::DataShape(format!(
                "the data has {} features, the standardisation {} ({})",
                x.nrows(),
                self.mean.len(),
                self.features.join(", ")
            )));
        }
        let mut out = x.to_owned();
        for (mut row, (&m, &s)) in out.rows_mut().into_iter().zip(self.mean.iter().zip(&self.std)) {
            row.mapv_inplace(|v| (v - m) / s);
        }
        Ok(out)
    }
}

#[derive(Serialize, Deserialize)]
struct Tensor2 {
    shape: [usize; 2],
    data: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct ModelFile {
    format: String,
    version: u32,
    dtype: String,
    architecture: Architecture,
    params: indexmap::IndexMap<String, Tensor2>,
    standardization: Option<Standardization>,
    #[serde(default)]
    metadata: serde_json::Value,
}

/// What a model file holds besides the model.
///
/// ```
/// let s = tapegrad_nn::SavedModel::<f64> { model: tapegrad_nn::Model::new(&tapegrad_nn::Architecture::guide(1, &[]), tapegrad_nn::Init::Zeros, 0).unwrap(), standardization: None, metadata: serde_json::Value::Null, dtype: "f64".into() };
/// assert!(s.standardization.is_none());
/// ```
#[derive(Debug)]
pub struct SavedModel<T: Element> {
    /// The model.
    pub model: Model<T>,
    /// The input standardisation, if saved.
    pub standardization: Option<Standardization>,
    /// Free-form metadata (e.g. the label rule and threshold).
    pub metadata: serde_json::Value,
    /// The element type the model was trained in, as written (`"f32"` or
    /// `"f64"`); the values are loaded as the caller's type.
    pub dtype: String,
}

/// Writes a model file atomically: to a temporary file in the same folder,
/// flushed to disk, then renamed over `path`, so a reader never sees a
/// half-written file.
///
/// # Errors
/// I/O errors, and models with closure activations (not saveable).
///
/// ```
/// use tapegrad_nn::{io, Architecture, Init, Model};
/// let dir = std::env::temp_dir().join(format!("tapegrad-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("model.json");
/// let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// io::save(&path, &model, None, serde_json::Value::Null).unwrap();
/// let back = io::load::<f64>(&path).unwrap();
/// assert_eq!(back.model.params(), model.params());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn save<T: Element>(
    path: &Path,
    model: &Model<T>,
    standardization: Option<&Standardization>,
    metadata: serde_json::Value,
) -> Result<(), NnError> {
    write_atomic(path, to_json(model, standardization, metadata)?.as_bytes())
}

/// The text of a model file, as [`save`] writes it (for callers that place
/// the file themselves).
///
/// # Errors
/// Models with closure activations (not saveable).
///
/// ```
/// use tapegrad_nn::{io, Architecture, Init, Model};
/// let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// let text = io::to_json(&model, None, serde_json::Value::Null).unwrap();
/// assert!(text.contains("\"format\""));
/// ```
pub fn to_json<T: Element>(
    model: &Model<T>,
    standardization: Option<&Standardization>,
    metadata: serde_json::Value,
) -> Result<String, NnError> {
    if let Some(crate::Activation::Custom(name, _)) =
        model.activations().iter().find(|a| matches!(a, crate::Activation::Custom(..)))
    {
        return Err(NnError::Unsaveable(format!(
            "activation '{name}' is a Rust closure; write it as a formula to save it"
        )));
    }
    let file = ModelFile {
        format: FORMAT.into(),
        version: VERSION,
        dtype: T::NAME.into(),
        architecture: model.architecture().clone(),
        params: model
            .params()
            .iter()
            .map(|(k, v)| {
                let (r, c) = v.dim();
                // Row-major, whatever the layout in memory.
                (k.clone(), Tensor2 { shape: [r, c], data: v.iter().map(|x| x.as_f64()).collect() })
            })
            .collect(),
        standardization: standardization.cloned(),
        metadata,
    };
    Ok(serde_json::to_string_pretty(&file).expect("model serialises"))
}

/// Writes `bytes` to `path` atomically (temporary file, sync, rename).
///
/// # Errors
/// The I/O error, with the path; the temporary file is removed.
///
/// ```
/// let p = std::env::temp_dir().join(format!("tapegrad-atomic-{}.txt", std::process::id()));
/// tapegrad_nn::io::write_atomic(&p, b"hello").unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"hello");
/// # std::fs::remove_file(&p).unwrap();
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    let io_err = |source| NnError::Io { path: path.to_path_buf(), source };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(())
}

/// Reads a model file of any version from 1 to [`VERSION`].
///
/// # Errors
/// One variant per problem: [`NnError::Io`] (missing, unreadable),
/// [`NnError::Corrupt`] (not JSON, truncated), [`NnError::WrongFormat`]
/// (another kind of JSON), [`NnError::UnsupportedVersion`] (0, or newer
/// than [`VERSION`]),
/// [`NnError::Mismatch`] (parameters that disagree with the architecture,
/// standardisation of the wrong size; an activation formula that does not parse, named with the file).
///
/// ```
/// let err = tapegrad_nn::io::load::<f64>(std::path::Path::new("/no/such/model.json")).unwrap_err();
/// assert!(matches!(err, tapegrad_nn::NnError::Io { .. }));
/// ```
pub fn load<T: Element>(path: &Path) -> Result<SavedModel<T>, NnError> {
    let p = || path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|source| NnError::Io { path: p(), source })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| NnError::Corrupt {
        path: p(),
        detail: if e.is_eof() { format!("the file ends early ({e})") } else { e.to_string() },
    })?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(NnError::WrongFormat { path: p(), found: format.to_string() });
    }
    // The version as written (a string or 999999999999 is shown as such,
    // never truncated or read as 0).
    let field = value.get("version");
    let version = match field.and_then(|v| v.as_u64()) {
        Some(v) if (1..=u64::from(VERSION)).contains(&v) => v,
        _ => {
            let found = field.map_or_else(|| "none".to_string(), |v| v.to_string());
            return Err(NnError::UnsupportedVersion { path: p(), found, supported: VERSION });
        }
    };
    let mut file: ModelFile =
        serde_json::from_value(value).map_err(|e| NnError::Mismatch { path: p(), detail: e.to_string() })?;
    if version == 1 {
        // Version 1 had no head (serde's default, binary, is right) and
        // its `gelu` was the tanh form.
        for layer in &mut file.architecture.layers {
            if layer.activation.trim() == "gelu" {
                layer.activation = "gelu_tanh".into();
            }
        }
    }
    let mismatch = |detail: String| NnError::Mismatch { path: p(), detail };
    // The values are read as T whatever was written, but an element type
    // that no tapegrad writes means the file is not what it claims.
    if !["f32", "f64"].contains(&file.dtype.as_str()) {
        return Err(mismatch(format!("unknown dtype '{}' (tapegrad writes f32 or f64)", file.dtype)));
    }
    let mut params = Params::new();
    for (name, t) in file.params {
        // Checked: a crafted shape's product can overflow.
        if t.shape[0].checked_mul(t.shape[1]) != Some(t.data.len()) {
            return Err(mismatch(format!(
                "parameter {name} has {} values for shape {:?}",
                t.data.len(),
                t.shape
            )));
        }
        if t.data.iter().any(|v| !v.is_finite()) {
            return Err(mismatch(format!("parameter {name} holds a non-finite value")));
        }
        let a = Array2::from_shape_vec((t.shape[0], t.shape[1]), t.data.into_iter().map(T::cast).collect())
            .expect("checked length");
        params.insert(name, a);
    }
    let model = Model::from_params(&file.architecture, params).map_err(|e| match e {
        NnError::DataShape(d) => mismatch(d),
        // One line that names the file, not the formula parser's caret.
        NnError::Activation(f) => mismatch(format!(
            "activation formula '{}' does not parse: {} (column {})",
            f.formula,
            f.message,
            f.column()
        )),
        other => other,
    })?;
    if let Some(s) = &file.standardization {
        let n = file.architecture.input;
        if s.mean.len() != n || s.std.len() != n || s.features.len() != n {
            return Err(mismatch(format!(
                "the standardisation covers {} features, the model has {n} inputs",
                s.mean.len()
            )));
        }
        if s.std.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
            return Err(mismatch("a standard deviation in the standardisation is not positive".into()));
        }
    }
    Ok(SavedModel {
        model,
        standardization: file.standardization,
        metadata: file.metadata,
        dtype: file.dtype,
    })
}

/// The model's weights as a safetensors file, named as PyTorch names the
/// parameters of the same network built as `torch.nn.Sequential(Linear,
/// activation, Linear, activation, ...)`: layer `l`'s `W[l]` is
/// `"{2(l-1)}.weight"` (shape `(n[l], n[l-1])`, as `Linear.weight`) and
/// `b[l]` is `"{2(l-1)}.bias"` (shape `(n[l],)`), in the model's element
/// type. The metadata holds `format` (`"tapegrad-safetensors"`), the
/// `architecture` and the `standardization` as JSON text (apply
/// `(x - mean) / std` per feature before the first layer), and
/// `activations`, the activation after each Linear, comma-separated.
///
/// ```
/// use tapegrad_nn::{io, Architecture, Init, Model};
/// let model = Model::<f32>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// let bytes = io::to_safetensors(&model, None).unwrap();
/// let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
/// assert_eq!(st.tensor("0.weight").unwrap().shape(), &[4, 3]);
/// assert_eq!(st.tensor("2.bias").unwrap().shape(), &[1]);
/// assert_eq!(st.tensor("2.bias").unwrap().dtype(), safetensors::Dtype::F32);
/// ```
///
/// # Errors
/// Models with closure activations (their function cannot be named).
pub fn to_safetensors<T: Element>(
    model: &Model<T>,
    standardization: Option<&Standardization>,
) -> Result<Vec<u8>, NnError> {
    use safetensors::tensor::{serialize, Dtype, TensorView};
    if let Some(crate::Activation::Custom(name, _)) =
        model.activations().iter().find(|a| matches!(a, crate::Activation::Custom(..)))
    {
        return Err(NnError::Unsaveable(format!(
            "activation '{name}' is a Rust closure; write it as a formula to export it"
        )));
    }
    let dtype = if T::NAME == "f32" { Dtype::F32 } else { Dtype::F64 };
    let bytes = |a: &Array2<T>| -> Vec<u8> {
        // Little-endian, row-major, whatever the layout in memory.
        a.iter()
            .flat_map(|&v| {
                if T::NAME == "f32" {
                    (v.as_f64() as f32).to_le_bytes().to_vec()
                } else {
                    v.as_f64().to_le_bytes().to_vec()
                }
            })
            .collect()
    };
    let mut buffers = Vec::new();
    for (l, layer) in model.layers().enumerate() {
        let (rows, cols) = layer.w.dim();
        buffers.push((format!("{}.weight", 2 * l), vec![rows, cols], bytes(layer.w)));
        buffers.push((format!("{}.bias", 2 * l), vec![rows], bytes(layer.b)));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| NnError::Unsaveable(format!("safetensors: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let json = |v: serde_json::Value| v.to_string();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "tapegrad-safetensors".to_string());
    meta.insert(
        "architecture".to_string(),
        json(serde_json::to_value(model.architecture()).expect("serialises")),
    );
    meta.insert(
        "activations".to_string(),
        model.activations().iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
    );
    if let Some(s) = standardization {
        meta.insert("standardization".to_string(), json(serde_json::to_value(s).expect("serialises")));
    }
    serialize(views, Some(meta)).map_err(|e| NnError::Unsaveable(format!("safetensors: {e}")))
}

/// One array of a numpy `.npz` file: numpy's name of its dtype as stored,
/// and its values converted to f64 (exactly, for every float32 and every
/// integer up to 2^53).
///
/// ```
/// use tapegrad_nn::io::NpyArray;
/// use tapegrad_tensor::ndarray::{arr2, IxDyn};
/// let a = NpyArray { dtype: "float64", values: arr2(&[[1.0, 2.0]]).into_dyn() };
/// assert_eq!(a.values.shape(), &[1, 2]);
/// assert!(a.is_float());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// `float64`, `float32`, `int64`, ..., `uint8` or `bool`.
    pub dtype: &'static str,
    /// The values, in the array's shape.
    pub values: ArrayD<f64>,
}

impl NpyArray {
    /// Whether the stored dtype is float32 or float64.
    ///
    /// ```
    /// use tapegrad_nn::io::NpyArray;
    /// use tapegrad_tensor::ndarray::ArrayD;
    /// assert!(!NpyArray { dtype: "int64", values: ArrayD::zeros(vec![2]) }.is_float());
    /// ```
    pub fn is_float(&self) -> bool {
        self.dtype.starts_with("float")
    }
}

/// The most bytes of values [`read_npz`] gives for one file, counted as
/// the f64 it returns (8 bytes a value, whatever the stored dtype): far
/// beyond any network a gradient check can afford, and a bound on the
/// memory a corrupt or hostile file can make it take (each array's header
/// is checked against this and against its own bytes before its data is
/// read; a compressed file cannot expand past it).
///
/// ```
/// assert_eq!(tapegrad_nn::io::NPZ_LIMIT, 1 << 28);
/// ```
pub const NPZ_LIMIT: u64 = 1 << 28;

/// The arrays of a numpy `.npz` file (written by `np.savez` or
/// `np.savez_compressed`), by name, in the file's order. Float, integer
/// and bool arrays of any rank are read, in either byte order and either
/// memory order.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("tapegrad-doc-npz-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use tapegrad_nn::io::read_npz;
/// // A .npz file that is not one is an error that names the file.
/// let path = dir.join("not.npz");
/// std::fs::write(&path, b"W1,b1\n").unwrap();
/// let e = read_npz(&path).unwrap_err().to_string();
/// assert!(e.contains("not.npz") && e.contains("not a .npz file"), "{e}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
/// [`NnError::Npz`] when the file cannot be read, is not a zip archive of
/// `.npy` arrays, is truncated or corrupt, holds an array of another dtype
/// (complex, string, object, float16) or two arrays of one name, or holds
/// more than [`NPZ_LIMIT`] bytes of values (as f64).
pub fn read_npz(path: &Path) -> Result<IndexMap<String, NpyArray>, NnError> {
    let bad = |detail: String| NnError::Npz { path: path.to_path_buf(), detail };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a .npz file (np.savez writes one): {e}")))?;
    let mut arrays = IndexMap::new();
    let mut left = NPZ_LIMIT;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(format!("corrupt archive: {e}")))?;
        let name = entry.name().to_string();
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let array = read_npy(&mut entry, &mut left).map_err(|e| bad(format!("array '{key}': {e}")))?;
        if arrays.insert(key.clone(), array).is_some() {
            return Err(bad(format!("two arrays are named '{key}'")));
        }
    }
    Ok(arrays)
}

/// One `.npy` array from `reader`. The header's shape is checked against
/// `left` (bytes of f64 values still allowed, reduced by this array's)
/// before any of the data is read; then exactly the bytes it declares are
/// read, and decoded straight into f64.
fn read_npy(reader: &mut impl std::io::Read, left: &mut u64) -> Result<NpyArray, String> {
    use std::io::Read;
    let header = ndarray_npy::npy::header::Header::from_reader(reader)
        .map_err(|e| format!("not a .npy array ({e})"))?;
    let descr = header.type_descriptor.as_string().map(String::as_str).unwrap_or("");
    // numpy's type strings: byte order ('<', '>', '|' or '='), kind, size.
    let big = descr.starts_with('>');
    let (dtype, size) = match descr.trim_start_matches(['<', '>', '|', '=']) {
        "f8" => ("float64", 8),
        "f4" => ("float32", 4),
        "i8" => ("int64", 8),
        "i4" => ("int32", 4),
        "i2" => ("int16", 2),
        "i1" => ("int8", 1),
        "u8" => ("uint64", 8),
        "u4" => ("uint32", 4),
        "u2" => ("uint16", 2),
        "u1" => ("uint8", 1),
        "b1" => ("bool", 1),
        _ => return Err(format!("dtype {} is not a float, integer or bool type", header.type_descriptor)),
    };
    let count = header.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
    let as_f64 = count.and_then(|n| n.checked_mul(8)).filter(|&b| b <= *left).ok_or_else(|| {
        format!(
            "its header gives shape {:?}: more than the {} MiB of values a file may hold here",
            header.shape,
            NPZ_LIMIT >> 20
        )
    })?;
    *left -= as_f64;
    let want = count.expect("checked") * size as u64;
    let mut bytes = Vec::new();
    reader.take(want + 1).read_to_end(&mut bytes).map_err(|e| format!("corrupt or truncated ({e})"))?;
    if bytes.len() as u64 != want {
        return Err(format!(
            "its header gives shape {:?} of {dtype} ({want} bytes), but {}{} bytes follow (truncated or corrupt)",
            header.shape,
            bytes.len().min(want as usize),
            if bytes.len() as u64 > want { " or more" } else { "" }
        ));
    }
    let word = |c: &[u8]| -> u64 {
        let mut b = [0u8; 8];
        if big {
            b[8 - c.len()..].copy_from_slice(c);
            u64::from_be_bytes(b)
        } else {
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        }
    };
    let decode = |w: u64| -> f64 {
        match dtype {
            "float64" => f64::from_bits(w),
            "float32" => f64::from(f32::from_bits(w as u32)),
            "int64" => w as i64 as f64,
            "int32" => f64::from(w as u32 as i32),
            "int16" => f64::from(w as u16 as i16),
            "int8" => f64::from(w as u8 as i8),
            "uint64" => w as f64,
            "bool" => f64::from(u8::from(w != 0)),
            _ => w as f64, // uint32, uint16, uint8: exact
        }
    };
    let values: Vec<f64> = bytes.chunks_exact(size).map(|c| decode(word(c))).collect();
    let shape = tapegrad_tensor::ndarray::IxDyn(&header.shape);
    let values = if header.layout.is_fortran() {
        ArrayD::from_shape_vec(tapegrad_tensor::ndarray::ShapeBuilder::f(shape), values)
    } else {
        ArrayD::from_shape_vec(shape, values)
    }
    .expect("one value per element");
    Ok(NpyArray { dtype, values })
}
