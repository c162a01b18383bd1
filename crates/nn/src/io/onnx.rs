//! The ONNX export: the whole model as one graph, standardisation included,
//! built-in and formula activations written in ONNX operators (opset 17),
//! the output a probability. The few ONNX messages it needs are declared
//! here with prost's derive, field numbers as in `onnx.proto`.

use crate::activation::{Activation, SELU_ALPHA, SELU_SCALE};
use crate::error::NnError;
use crate::formula::{Formula, Step};
use crate::head::Head;
use crate::io::Standardization;
use crate::model::Model;
use prost::Message;
use tapegrad_tensor::Element;

/// The operator set the graph uses (every operator here is in it).
const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// `TensorProto.DataType`: FLOAT, DOUBLE.
const FLOAT: i32 = 1;
const DOUBLE: i32 = 11;
/// `AttributeProto.AttributeType`: INT.
const ATTR_INT: i32 = 2;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    /// `TypeProto`, whose only member here is `tensor_type` (a oneof of
    /// one: the same bytes as an optional field).
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// The graph being built: nodes in order, initialisers (the weights and
/// constants), fresh names.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    elem: i32,
    next: usize,
    /// Scalar constants already written, by their bits.
    constants: Vec<(u64, String)>,
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    /// One node with one output; returns the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{out}_node"),
            op_type: op.to_string(),
            attribute,
        });
        out
    }

    fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, Vec::new())
    }

    /// A tensor of the model's element type, row-major.
    fn tensor(&mut self, stem: &str, dims: &[usize], values: impl Iterator<Item = f64>) -> String {
        let name = self.fresh(stem);
        let raw_data = if self.elem == FLOAT {
            values.flat_map(|v| (v as f32).to_le_bytes()).collect()
        } else {
            values.flat_map(f64::to_le_bytes).collect()
        };
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: self.elem,
            name: name.clone(),
            raw_data,
        });
        name
    }

    /// A scalar constant (written once per value).
    fn constant(&mut self, v: f64) -> String {
        if let Some((_, name)) = self.constants.iter().find(|(bits, _)| *bits == v.to_bits()) {
            return name.clone();
        }
        let name = self.tensor("const", &[], std::iter::once(v));
        self.constants.push((v.to_bits(), name.clone()));
        name
    }

    /// `erf(x)`. onnxruntime has no float64 Erf kernel, so a float64
    /// model computes it in float32 (a relative error of about 6e-8, far
    /// below what a probability needs) and every runtime runs the file.
    fn erf(&mut self, x: &str) -> String {
        if self.elem == FLOAT {
            return self.op("Erf", &[x]);
        }
        let narrow = self.node("Cast", &[x], vec![Self::int_attr("to", FLOAT as i64)]);
        let erf = self.op("Erf", &[&narrow]);
        self.node("Cast", &[&erf], vec![Self::int_attr("to", DOUBLE as i64)])
    }

    /// `1 / (1 + e^-x)`. Some runtimes (tract) have no float64 Sigmoid:
    /// a float64 model writes it from Exp (which saturates to 0 and 1,
    /// never NaN).
    fn sigmoid(&mut self, x: &str) -> String {
        if self.elem == FLOAT {
            return self.op("Sigmoid", &[x]);
        }
        let neg = self.op("Neg", &[x]);
        let exp = self.op("Exp", &[&neg]);
        let one_plus = self.add_const(&exp, 1.0);
        self.op("Reciprocal", &[&one_plus])
    }

    /// `|x|`, as `max(x, -x)` in a float64 model (tract has no float64 Abs).
    fn abs(&mut self, x: &str) -> String {
        if self.elem == FLOAT {
            return self.op("Abs", &[x]);
        }
        let neg = self.op("Neg", &[x]);
        self.op("Max", &[x, &neg])
    }

    fn mul_const(&mut self, x: &str, k: f64) -> String {
        let k = self.constant(k);
        self.op("Mul", &[x, &k])
    }

    fn add_const(&mut self, x: &str, k: f64) -> String {
        let k = self.constant(k);
        self.op("Add", &[x, &k])
    }

    /// `max(x, 0) + log(1 + e^-|x|)`: softplus without overflow in any
    /// runtime (ONNX's Softplus is `log(exp(x) + 1)`, which overflows in
    /// float32 above 88).
    fn softplus(&mut self, x: &str) -> String {
        let relu = self.op("Relu", &[x]);
        let abs = self.abs(x);
        let neg = self.op("Neg", &[&abs]);
        let exp = self.op("Exp", &[&neg]);
        let one_plus = self.add_const(&exp, 1.0);
        let log = self.op("Log", &[&one_plus]);
        self.op("Add", &[&relu, &log])
    }

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto { name: name.into(), i, r#type: ATTR_INT }
    }

    /// `g(x)` for one of the model's activations.
    fn activation<T: Element>(&mut self, act: &Activation<T>, x: &str) -> Result<String, NnError> {
        use Activation as A;
        Ok(match act {
            A::Sigmoid => self.sigmoid(x),
            A::Relu => self.op("Relu", &[x]),
            A::Tanh => self.op("Tanh", &[x]),
            A::LeakyRelu(a) => {
                // Where rather than LeakyRelu, whose alpha is a float32
                // attribute.
                let zero = self.constant(0.0);
                let pos = self.op("Greater", &[x, &zero]);
                let neg = self.mul_const(x, *a);
                self.op("Where", &[&pos, x, &neg])
            }
            A::Elu(a) => self.elu(x, *a, 1.0),
            A::Selu => self.elu(x, SELU_ALPHA, SELU_SCALE),
            A::Softplus => self.softplus(x),
            A::Swish => {
                let s = self.sigmoid(x);
                self.op("Mul", &[x, &s])
            }
            A::Gelu => {
                let scaled = self.mul_const(x, std::f64::consts::FRAC_1_SQRT_2);
                let erf = self.erf(&scaled);
                let one_plus = self.add_const(&erf, 1.0);
                let half = self.mul_const(&one_plus, 0.5);
                self.op("Mul", &[x, &half])
            }
            A::GeluTanh => {
                let cube = self.op("Mul", &[x, x]);
                let cube = self.op("Mul", &[&cube, x]);
                let term = self.mul_const(&cube, 0.044715);
                let inner = self.op("Add", &[x, &term]);
                let inner = self.mul_const(&inner, (2.0 / std::f64::consts::PI).sqrt());
                let tanh = self.op("Tanh", &[&inner]);
                let one_plus = self.add_const(&tanh, 1.0);
                let half = self.mul_const(&one_plus, 0.5);
                self.op("Mul", &[x, &half])
            }
            A::Hardswish => {
                // x min(max(x + 3, 0), 6) / 6.
                let shifted = self.add_const(x, 3.0);
                let zero = self.constant(0.0);
                let six = self.constant(6.0);
                let lo = self.op("Max", &[&shifted, &zero]);
                let clipped = self.op("Min", &[&lo, &six]);
                let scaled = self.mul_const(&clipped, 1.0 / 6.0);
                self.op("Mul", &[x, &scaled])
            }
            A::Snake(a) => {
                let ax = self.mul_const(x, *a);
                let sin = self.op("Sin", &[&ax]);
                let sq = self.op("Mul", &[&sin, &sin]);
                let term = self.mul_const(&sq, 1.0 / a);
                self.op("Add", &[x, &term])
            }
            A::Squareplus(b) => {
                // (x + r) / 2 for x >= 0, b / (2 (r - x)) for x < 0, with
                // r = sqrt(x^2 + b): the same function, as tapegrad
                // computes it, without the cancellation of x + r.
                let sq = self.op("Mul", &[x, x]);
                let inner = self.add_const(&sq, *b);
                let r = self.op("Sqrt", &[&inner]);
                let sum = self.op("Add", &[x, &r]);
                let pos = self.mul_const(&sum, 0.5);
                let diff = self.op("Sub", &[&r, x]);
                let recip = self.op("Reciprocal", &[&diff]);
                let neg = self.mul_const(&recip, b / 2.0);
                let zero = self.constant(0.0);
                let is_neg = self.op("Less", &[x, &zero]);
                self.op("Where", &[&is_neg, &neg, &pos])
            }
            A::LogSigmoid => {
                let neg = self.op("Neg", &[x]);
                let sp = self.softplus(&neg);
                self.op("Neg", &[&sp])
            }
            A::Mish => {
                let sp = self.softplus(x);
                let tanh = self.op("Tanh", &[&sp]);
                self.op("Mul", &[x, &tanh])
            }
            A::Identity => self.op("Identity", &[x]),
            A::Formula(f) => self.formula(f, x)?,
            A::Softmax => self.node("Softmax", &[x], vec![Self::int_attr("axis", 1)]),
            A::Custom(name, _) => {
                return Err(NnError::Unsaveable(format!(
                    "activation '{name}' is a Rust closure and has no ONNX form; write it as a formula to export it"
                )));
            }
        })
    }

    /// `scale (x for x > 0, alpha (e^x - 1) otherwise)`, from Exp and
    /// Where: ONNX's Elu and Selu take float attributes, which would round
    /// a float64 model's constants to float32.
    fn elu(&mut self, x: &str, alpha: f64, scale: f64) -> String {
        let zero = self.constant(0.0);
        let pos = self.op("Greater", &[x, &zero]);
        // e^min(x, 0): no overflow on the side Where drops.
        let neg_part = self.op("Min", &[x, &zero]);
        let exp = self.op("Exp", &[&neg_part]);
        let em1 = self.add_const(&exp, -1.0);
        let neg = self.mul_const(&em1, alpha * scale);
        let posv = if scale == 1.0 { x.to_string() } else { self.mul_const(x, scale) };
        self.op("Where", &[&pos, &posv, &neg])
    }

    /// A formula, step by step: each step one or a few ONNX nodes.
    fn formula(&mut self, f: &Formula, x: &str) -> Result<String, NnError> {
        let unsupported =
            |what: &str| NnError::Unsaveable(format!("formula '{}': {what} has no ONNX form", f.source()));
        // Operands: a tensor's name, or a number not yet written.
        enum Operand {
            Name(String),
            Num(f64),
        }
        let mut stack: Vec<Operand> = Vec::new();
        let name = |g: &mut Graph, o: Operand| match o {
            Operand::Name(n) => n,
            Operand::Num(v) => g.constant(v),
        };
        for step in f.steps() {
            let out = match step {
                Step::X => Operand::Name(x.to_string()),
                Step::Num(v) => Operand::Num(v),
                Step::Neg => {
                    let a = stack.pop().expect("an operand");
                    let a = name(self, a);
                    Operand::Name(self.op("Neg", &[&a]))
                }
                Step::Bin(op) => {
                    let b = stack.pop().expect("an operand");
                    let a = stack.pop().expect("an operand");
                    let (a, b) = (name(self, a), name(self, b));
                    let onnx = match op {
                        '+' => "Add",
                        '-' => "Sub",
                        '*' => "Mul",
                        '/' => "Div",
                        _ => "Pow",
                    };
                    Operand::Name(self.op(onnx, &[&a, &b]))
                }
                Step::Cmp(cmp) => {
                    let b = stack.pop().expect("an operand");
                    let a = stack.pop().expect("an operand");
                    let (a, b) = (name(self, a), name(self, b));
                    let test = match cmp {
                        "<" => self.op("Less", &[&a, &b]),
                        "<=" => self.op("LessOrEqual", &[&a, &b]),
                        ">" => self.op("Greater", &[&a, &b]),
                        ">=" => self.op("GreaterOrEqual", &[&a, &b]),
                        "==" => self.op("Equal", &[&a, &b]),
                        _ => {
                            let eq = self.op("Equal", &[&a, &b]);
                            self.op("Not", &[&eq])
                        }
                    };
                    let to = self.elem as i64;
                    Operand::Name(self.node("Cast", &[&test], vec![Self::int_attr("to", to)]))
                }
                Step::Call(fname, arity) => {
                    let at = stack.len() - arity;
                    let args: Vec<String> =
                        stack.drain(at..).collect::<Vec<_>>().into_iter().map(|o| name(self, o)).collect();
                    let a = args[0].as_str();
                    Operand::Name(match fname {
                        "exp" => self.op("Exp", &[a]),
                        "log" => self.op("Log", &[a]),
                        "sqrt" => self.op("Sqrt", &[a]),
                        "abs" => self.abs(a),
                        "tanh" => self.op("Tanh", &[a]),
                        "sigmoid" => self.sigmoid(a),
                        "relu" => self.op("Relu", &[a]),
                        "softplus" => self.softplus(a),
                        "log_sigmoid" => {
                            let neg = self.op("Neg", &[a]);
                            let sp = self.softplus(&neg);
                            self.op("Neg", &[&sp])
                        }
                        "sin" => self.op("Sin", &[a]),
                        "cos" => self.op("Cos", &[a]),
                        "erf" => self.erf(a),
                        // The same functions as log1p and expm1, with less
                        // relative precision near 0 (ONNX has neither).
                        "log1p" => {
                            let p = self.add_const(a, 1.0);
                            self.op("Log", &[&p])
                        }
                        "expm1" => {
                            let e = self.op("Exp", &[a]);
                            self.add_const(&e, -1.0)
                        }
                        "square" => self.op("Mul", &[a, a]),
                        "recip" => self.op("Reciprocal", &[a]),
                        "max" => self.op("Max", &[a, &args[1]]),
                        "min" => self.op("Min", &[a, &args[1]]),
                        "pow" => self.op("Pow", &[a, &args[1]]),
                        "where" => {
                            // True where the condition is neither 0 nor NaN.
                            let zero = self.constant(0.0);
                            let eq = self.op("Equal", &[a, &zero]);
                            let nan = self.op("IsNaN", &[a]);
                            let either = self.op("Or", &[&eq, &nan]);
                            let truth = self.op("Not", &[&either]);
                            self.op("Where", &[&truth, &args[1], &args[2]])
                        }
                        other => return Err(unsupported(&format!("the function {other}"))),
                    })
                }
            };
            stack.push(out);
        }
        Ok(match stack.pop().expect("a formula has a value") {
            Operand::Name(n) => n,
            // A constant formula: its value in x's shape.
            Operand::Num(v) => {
                let c = self.constant(v);
                let shape = self.op("Shape", &[x]);
                self.op("Expand", &[&c, &shape])
            }
        })
    }
}

/// The model as an ONNX file (opset 17): input `x` of shape `[N,
/// features]` (one example per row, raw values: the standardisation is
/// in the graph), output `probability` (`[N, 1]` for a binary model, `[N,
/// K]` for a softmax one) or `output` (a regression model), in the
/// model's element type (float32 or float64). Each layer is `A W^T + b`
/// (`MatMul` and `Add`); the activations are written in ONNX operators; the
/// metadata holds the architecture, the activations and the
/// standardisation.
///
/// ```
/// use tapegrad_nn::{io, Architecture, Init, Model};
/// let model = Model::<f32>::new(&Architecture::guide(3, &[4]).with_hidden_activation("x * tanh(softplus(x))"), Init::HeNormal, 0).unwrap();
/// let bytes = io::to_onnx(&model, None).unwrap();
/// assert!(bytes.len() > 100);
/// // A closure has no ONNX form.
/// let mut m = Model::<f32>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
/// m.set_activation(1, tapegrad_nn::Activation::custom("cube", |z| z * z * z));
/// assert!(io::to_onnx(&m, None).unwrap_err().to_string().contains("no ONNX form"));
/// ```
///
/// # Errors
/// [`NnError::Unsaveable`] for a closure activation, or a standardisation
/// of another width than the model's input.
pub fn to_onnx<T: Element>(
    model: &Model<T>,
    standardization: Option<&Standardization>,
) -> Result<Vec<u8>, NnError> {
    let elem = if T::NAME == "f32" { FLOAT } else { DOUBLE };
    let mut g = Graph { nodes: Vec::new(), initializers: Vec::new(), elem, next: 0, constants: Vec::new() };
    let arch = model.architecture();
    let mut a = "x".to_string();
    if let Some(s) = standardization {
        if s.mean.len() != arch.input || s.std.len() != arch.input {
            return Err(NnError::Unsaveable(format!(
                "the standardisation has {} means and {} standard deviations, the model {} features",
                s.mean.len(),
                s.std.len(),
                arch.input
            )));
        }
        let mean = g.tensor("mean", &[s.mean.len()], s.mean.iter().copied());
        let std = g.tensor("std", &[s.std.len()], s.std.iter().copied());
        let centred = g.op("Sub", &[&a, &mean]);
        a = g.op("Div", &[&centred, &std]);
    }
    for (layer, act) in model.layers().zip(model.activations()) {
        let (rows, cols) = layer.w.dim();
        // W^T, so that one example per row multiplies as A W^T (MatMul and
        // Add rather than Gemm, whose alpha and beta some runtimes apply
        // in float32 only).
        let w = g.tensor("Wt", &[cols, rows], layer.w.t().iter().map(|v| v.as_f64()));
        let b = g.tensor("b", &[rows], layer.b.iter().map(|v| v.as_f64()));
        let product = g.op("MatMul", &[&a, &w]);
        let z = g.op("Add", &[&product, &b]);
        a = g.activation(act, &z)?;
    }
    let output = if model.head() == Head::Regression { "output" } else { "probability" };
    // The last value gets the graph output's name.
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![output.to_string()];
    }
    let tensor_type = |dims: Vec<Dimension>| {
        Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        })
    };
    let batch = || Dimension { dim_value: None, dim_param: Some("N".into()) };
    let fixed = |n: usize| Dimension { dim_value: Some(n as i64), dim_param: None };
    let graph = GraphProto {
        node: g.nodes,
        name: "tapegrad".into(),
        initializer: g.initializers,
        input: vec![ValueInfoProto {
            name: "x".into(),
            r#type: tensor_type(vec![batch(), fixed(arch.input)]),
        }],
        output: vec![ValueInfoProto {
            name: output.into(),
            r#type: tensor_type(vec![batch(), fixed(model.outputs())]),
        }],
    };
    let json = |v: serde_json::Value| v.to_string();
    let mut meta = vec![
        ("architecture", json(serde_json::to_value(arch).expect("serialises"))),
        ("activations", model.activations().iter().map(|a| a.name()).collect::<Vec<_>>().join(",")),
    ];
    if let Some(s) = standardization {
        meta.push(("standardization", json(serde_json::to_value(s).expect("serialises"))));
    }
    let proto = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "tapegrad".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "x: raw features, one example per row; the standardisation is in the graph".into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: k.into(), value: v })
            .collect(),
    };
    Ok(proto.encode_to_vec())
}
