//! Activation formulas in `x`, parsed into tape ops: a new activation can be
//! tried from a string, without recompiling and without a derivative.
//!
//! Grammar (usual precedence; `^` binds tighter than unary minus and is
//! right-associative, so `-x^2` is `-(x^2)`):
//!
//! ```text
//! expr   := sum (cmp sum)?
//! cmp    := '<' | '<=' | '>' | '>=' | '==' | '!='
//! sum    := term (('+' | '-') term)*
//! term   := unary (('*' | '/') unary)*
//! unary  := '-' unary | power
//! power  := atom ('^' unary)?
//! atom   := number | 'x' | 'pi' | 'e' | name '(' expr (',' expr)* ')' | '(' expr ')'
//! name   := exp | log | sqrt | abs | tanh | sigmoid | relu | softplus | log_sigmoid | sin | cos | erf | log1p | expm1 | square | recip | max | min | pow | where
//! ```
//!
//! Every function takes one argument except `max(a, b)`, `min(a, b)`,
//! `pow(a, b)` (`a^b`) and `where(c, a, b)`, which is `a` where `c` is
//! neither 0 nor NaN and `b` elsewhere, with the gradient of the branch
//! taken. A comparison is 1 where it holds and 0 elsewhere, carries no
//! gradient, and does not chain (`(a < b) * (b < c)` for both): so
//! `where(x > 0, x, 0.1 * x)` is a leaky ReLU and `(x > 0) * x` a ReLU.
//! `max` and `min` split the gradient evenly at a tie, as
//! [`Tensor::maximum`] does.
//!
//! The `name` line is the function table of this module (one entry per
//! function: its name, its arguments and the tensor op it records), and a
//! test checks the two agree; [`Formula::functions`] lists the same names.
//!
//! Text: whitespace is any Unicode white space (so a no-break space pasted
//! from a web page is a space); any other character outside ASCII is an
//! error that names it and points at its column.
//!
//! Limits, each a [`FormulaError`] rather than a stack overflow or a
//! runaway tape: a formula has at most [`Formula::MAX_LEN`] characters, and
//! nests at most [`Formula::MAX_DEPTH`] levels deep, where each enclosing
//! parenthesis, function call, unary minus and `^` is one level.
//!
//! Constants fold when the formula is parsed: a sub-expression without `x`
//! (`2 * pi`, `log(2)`) is computed once, in f64, by the same tensor ops on
//! a one-element tensor (tapegrad's scalar lane), so the functions exist in
//! exactly one place.

use std::fmt;
use tapegrad_tensor::{ndarray, Element, Tape, Tensor};

/// Why a formula did not parse: a message and the place where it failed.
/// `Display` shows the formula (an excerpt of a long one) with a caret
/// under that place.
///
/// ```
/// let err = tapegrad_nn::Formula::parse("x * (1 +").unwrap_err();
/// assert_eq!(err.position, 8);
/// assert_eq!(err.column(), 9);
/// assert!(err.to_string().contains("^"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormulaError {
    /// The formula as given.
    pub formula: String,
    /// Byte offset of the failure (on a character boundary).
    pub position: usize,
    /// What was wrong there.
    pub message: String,
}

impl FormulaError {
    /// The 1-based column of the failure, counted in characters (not bytes),
    /// as an editor shows it.
    ///
    /// ```
    /// // A no-break space (U+00A0) is two bytes: '$' is at byte 6, column 5.
    /// let err = tapegrad_nn::Formula::parse("x\u{a0}*\u{a0}$").unwrap_err();
    /// assert_eq!((err.position, err.column()), (6, 5));
    /// ```
    pub fn column(&self) -> usize {
        self.formula.char_indices().take_while(|&(i, _)| i < self.position).count() + 1
    }
}

/// Characters of the formula shown on each side of the failure when the
/// formula is too long to show whole.
const EXCERPT: usize = 30;

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = self.column() - 1;
        let chars: Vec<char> = self.formula.chars().collect();
        let (from, to) = if chars.len() <= 2 * EXCERPT + 10 {
            (0, chars.len())
        } else {
            let from = col.saturating_sub(EXCERPT);
            (from, (col + EXCERPT).min(chars.len()))
        };
        let lead = if from > 0 { "..." } else { "" };
        let tail = if to < chars.len() { "..." } else { "" };
        let shown: String = chars[from..to].iter().collect();
        write!(
            f,
            "cannot parse activation formula at column {}: {}\n  {lead}{shown}{tail}\n  {}^",
            col + 1,
            self.message,
            " ".repeat(lead.len() + col - from)
        )
    }
}

impl std::error::Error for FormulaError {}

/// The function table: each line is one function a formula may call, its
/// name in formulas and the tensor op it records. Nothing else lists them:
/// the enum, the name list, the look-up and the recording are generated
/// here, so a function cannot be named without an op.
macro_rules! functions {
    ($($variant:ident $name:literal => |$($arg:ident),+| $op:expr,)*) => {
        /// A function a formula may call.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Function {
            $($variant,)*
        }

        impl Function {
            /// Every function, in the table's order.
            const ALL: &'static [Function] = &[$(Function::$variant),*];
            /// Their names in formulas, in the same order.
            const NAMES: &'static [&'static str] = &[$($name),*];

            fn name(self) -> &'static str {
                match self {
                    $(Function::$variant => $name,)*
                }
            }

            /// How many arguments it takes.
            fn arity(self) -> usize {
                match self {
                    $(Function::$variant => [$(stringify!($arg)),+].len(),)*
                }
            }

            /// Records it on its arguments, which the parser has counted.
            fn record<'t, T: Element>(self, args: &[Tensor<'t, T>]) -> Tensor<'t, T> {
                match (self, args) {
                    $((Function::$variant, &[$($arg),+]) => $op,)*
                    (f, args) => panic!("{} takes {} arguments, given {}", f.name(), f.arity(), args.len()),
                }
            }
        }
    };
}

functions! {
    Exp "exp" => |t| t.exp(),
    Log "log" => |t| t.log(),
    Sqrt "sqrt" => |t| t.sqrt(),
    Abs "abs" => |t| t.abs(),
    Tanh "tanh" => |t| t.tanh(),
    Sigmoid "sigmoid" => |t| t.sigmoid(),
    Relu "relu" => |t| t.relu(),
    Softplus "softplus" => |t| t.softplus(),
    LogSigmoid "log_sigmoid" => |t| t.log_sigmoid(),
    Sin "sin" => |t| t.sin(),
    Cos "cos" => |t| t.cos(),
    Erf "erf" => |t| t.erf(),
    Log1p "log1p" => |t| t.log1p(),
    Expm1 "expm1" => |t| t.expm1(),
    Square "square" => |t| t.square(),
    Recip "recip" => |t| t.recip(),
    Max "max" => |a, b| a.maximum(b),
    Min "min" => |a, b| a.minimum(b),
    Pow "pow" => |a, b| a.pow(b),
    Where "where" => |c, a, b| Tensor::where_(&truth(c), a, b),
}

/// A condition's value as a mask: true where it is neither 0 nor NaN.
fn truth<T: Element>(c: Tensor<'_, T>) -> ndarray::ArrayD<bool> {
    c.value().mapv(|v| v != T::zero() && !v.is_nan())
}

impl Function {
    fn from_name(name: &str) -> Option<Function> {
        Function::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// A binary operator of the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

/// A comparison operator of the grammar: 1 where it holds, 0 elsewhere,
/// with no gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    /// The operators, longest first (so `<=` is read before `<`).
    const TOKENS: [(&'static str, Cmp); 6] =
        [("<=", Cmp::Le), (">=", Cmp::Ge), ("==", Cmp::Eq), ("!=", Cmp::Ne), ("<", Cmp::Lt), (">", Cmp::Gt)];

    /// `a cmp b` as 1 or 0, a constant on `a`'s tape.
    fn record<'t, T: Element>(self, a: Tensor<'t, T>, b: Tensor<'t, T>) -> Tensor<'t, T> {
        let mask = match self {
            Cmp::Lt => a.lt(b),
            Cmp::Le => a.le(b),
            Cmp::Gt => a.gt(b),
            Cmp::Ge => a.ge(b),
            Cmp::Eq => a.eq(b),
            // NaN is unequal to everything, as in IEEE arithmetic.
            Cmp::Ne => a.eq(b).mapv(|m| !m),
        };
        a.tape().constant(mask.mapv(|m| if m { T::one() } else { T::zero() }))
    }
}

/// An operand while a formula is recorded: a number (a constant) or a
/// tensor. Numbers meet tensors through the scalar ops (`x * 2` records
/// one `mul_scalar`), not through broadcast tensors.
enum Val<'t, T: Element> {
    Num(f64),
    T(Tensor<'t, T>),
}

impl<'t, T: Element> Val<'t, T> {
    fn into_tensor(self, tape: &'t Tape<T>) -> Tensor<'t, T> {
        match self {
            Val::Num(c) => tape.scalar(T::cast(c)),
            Val::T(t) => t,
        }
    }
}

impl BinOp {
    fn record<'t, T: Element>(self, a: Val<'t, T>, b: Val<'t, T>, tape: &'t Tape<T>) -> Tensor<'t, T> {
        use BinOp::*;
        let c = |v: f64| T::cast(v);
        match (a, b) {
            (Val::T(a), Val::T(b)) => match self {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Div => a / b,
                Pow => a.pow(b),
            },
            (Val::T(a), Val::Num(k)) => match self {
                Add => a + c(k),
                Sub => a - c(k),
                Mul => a * c(k),
                // 1/k in f64, then rounded to T once.
                Div => a * c(1.0 / k),
                Pow => a.powf(c(k)),
            },
            (Val::Num(k), Val::T(b)) => match self {
                Add => b + c(k),
                Sub => -b + c(k),
                Mul => b * c(k),
                Div => b.powf(c(-1.0)) * c(k),
                // k^x = e^(x ln k)
                Pow => (b * c(k.ln())).exp(),
            },
            // Only while constants fold: both become one-element tensors.
            (a @ Val::Num(_), b @ Val::Num(_)) => {
                self.record(Val::T(a.into_tensor(tape)), Val::T(b.into_tensor(tape)), tape)
            }
        }
    }
}

/// One step of a formula in postfix order: operands first, then the
/// operation that takes them from the stack. A flat program (rather than a
/// tree) keeps recording, cloning, comparing and dropping free of
/// recursion, however long the formula.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Instr {
    X,
    Num(f64),
    Neg,
    Call(Function),
    Bin(BinOp),
    Cmp(Cmp),
}

impl Instr {
    /// How many operands it takes from the stack.
    fn arity(self) -> usize {
        match self {
            Instr::X | Instr::Num(_) => 0,
            Instr::Neg => 1,
            Instr::Call(f) => f.arity(),
            Instr::Bin(_) | Instr::Cmp(_) => 2,
        }
    }
}

/// Runs a postfix program on `x`'s tape. Programs come from the parser,
/// which emits every operand before its operation.
fn run<'t, T: Element>(program: &[Instr], x: Tensor<'t, T>) -> Val<'t, T> {
    let tape = x.tape();
    fn pop<'t, T: Element>(stack: &mut Vec<Val<'t, T>>) -> Val<'t, T> {
        stack.pop().expect("the parser emits operands before their operation")
    }
    let mut stack: Vec<Val<'t, T>> = Vec::new();
    for &ins in program {
        let v = match ins {
            Instr::X => Val::T(x),
            Instr::Num(c) => Val::Num(c),
            Instr::Neg => Val::T(-pop(&mut stack).into_tensor(tape)),
            Instr::Call(f) => {
                let at = stack.len() - f.arity();
                let args: Vec<Tensor<'t, T>> = stack.drain(at..).map(|a| a.into_tensor(tape)).collect();
                Val::T(f.record(&args))
            }
            Instr::Bin(op) => {
                let b = pop(&mut stack);
                let a = pop(&mut stack);
                Val::T(op.record(a, b, tape))
            }
            Instr::Cmp(cmp) => {
                let b = pop(&mut stack).into_tensor(tape);
                let a = pop(&mut stack).into_tensor(tape);
                Val::T(cmp.record(a, b))
            }
        };
        stack.push(v);
    }
    pop(&mut stack)
}

/// One step of a formula's postfix program, as another back end (the ONNX
/// export) reads it: operands come before the step that takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Step {
    /// The input.
    X,
    /// A constant.
    Num(f64),
    /// `-a`.
    Neg,
    /// A function of the table, by its name in formulas, and its arity.
    Call(&'static str, usize),
    /// `a op b`, op one of `+ - * / ^`.
    Bin(char),
    /// `a cmp b` as 1 or 0, cmp one of `< <= > >= == !=`.
    Cmp(&'static str),
}

/// A parsed activation formula in `x`, e.g. `x * sigmoid(1.702 * x)`.
///
/// ```
/// use tapegrad_nn::Formula;
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let f = Formula::parse("x * sigmoid(x)").unwrap();
/// let tape = Tape::<f64>::new();
/// let x = tape.var(arr1(&[0.0, 1.0]));
/// let y = f.apply(x);
/// assert_eq!(y.value()[0], 0.0);
/// assert!(tape.backward(y.sum())[x][0] == 0.5);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Formula {
    source: String,
    program: Vec<Instr>,
}

impl Formula {
    /// The longest formula accepted, in characters.
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// let long = "x+".repeat(Formula::MAX_LEN / 2) + "x";
    /// assert!(Formula::parse(&long).unwrap_err().message.contains("longer than"));
    /// ```
    pub const MAX_LEN: usize = 10_000;

    /// The deepest nesting accepted: each enclosing parenthesis, function
    /// call, unary minus and `^` is one level.
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// let at = |n: usize| "(".repeat(n) + "x" + &")".repeat(n);
    /// assert!(Formula::parse(&at(Formula::MAX_DEPTH)).is_ok());
    /// assert!(Formula::parse(&at(Formula::MAX_DEPTH + 1)).unwrap_err().message.contains("deep"));
    /// ```
    pub const MAX_DEPTH: usize = 100;

    /// Parses a formula.
    ///
    /// # Errors
    /// A [`FormulaError`] naming the position and the problem: a syntax
    /// error, an unknown name (the message lists the functions), a
    /// character outside ASCII that is not whitespace, or a formula over
    /// [`Formula::MAX_LEN`] characters or [`Formula::MAX_DEPTH`] levels.
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// assert!(Formula::parse("x^3 - 2*x").is_ok());
    /// assert!(Formula::parse("x\u{a0}* 2").is_ok()); // a no-break space is a space
    /// let err = Formula::parse("cosh(x)").unwrap_err();
    /// assert!(err.message.contains("unknown function") && err.message.contains("tanh, sigmoid"));
    /// ```
    pub fn parse(source: &str) -> Result<Formula, FormulaError> {
        let mut p = Parser {
            src: source,
            chars: source.char_indices().collect(),
            pos: 0,
            depth: 0,
            program: Vec::new(),
        };
        if p.chars.len() > Formula::MAX_LEN {
            p.pos = Formula::MAX_LEN;
            return Err(p.error(&format!(
                "the formula is longer than {} characters ({} characters)",
                Formula::MAX_LEN,
                p.chars.len()
            )));
        }
        p.expr()?;
        p.skip_ws();
        match p.peek() {
            None => {}
            Some(c) if c.is_ascii() => return Err(p.error("unexpected text after the end of the formula")),
            Some(c) => return Err(p.error(&non_ascii(c))),
        }
        Ok(Formula { source: source.to_string(), program: p.program })
    }

    /// The formula as written.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Formula::parse("relu(x)").unwrap().source(), "relu(x)");
    /// ```
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the functions a formula may call, in the grammar's
    /// order.
    ///
    /// ```
    /// let names = tapegrad_nn::Formula::functions();
    /// assert!(names.contains(&"log_sigmoid") && names.contains(&"erf") && names.contains(&"where"));
    /// ```
    pub fn functions() -> &'static [&'static str] {
        Function::NAMES
    }

    /// The postfix program, step by step.
    pub(crate) fn steps(&self) -> impl Iterator<Item = Step> + '_ {
        self.program.iter().map(|&ins| match ins {
            Instr::X => Step::X,
            Instr::Num(c) => Step::Num(c),
            Instr::Neg => Step::Neg,
            Instr::Call(f) => Step::Call(f.name(), f.arity()),
            Instr::Bin(op) => Step::Bin(match op {
                BinOp::Add => '+',
                BinOp::Sub => '-',
                BinOp::Mul => '*',
                BinOp::Div => '/',
                BinOp::Pow => '^',
            }),
            Instr::Cmp(c) => {
                Step::Cmp(Cmp::TOKENS.iter().find(|(_, k)| *k == c).expect("every comparison").0)
            }
        })
    }

    /// Records the formula on `x`'s tape, elementwise.
    ///
    /// A constant formula (`2`) gives its value at every element of `x`,
    /// with `x`'s shape, and gradient 0 for `x`, at infinities and NaN too:
    /// the constant is picked by `where` with a false mask rather than
    /// computed as `x * 0 + c` (NaN at infinity).
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f32>::new();
    /// let x = tape.var(arr1(&[1.0f32, f32::INFINITY]));
    /// let y = Formula::parse("2").unwrap().apply(x);
    /// assert_eq!(y.value().as_slice().unwrap(), &[2.0, 2.0]); // a constant keeps x's shape
    /// assert_eq!(tape.backward(y.sum())[x].as_slice().unwrap(), &[0.0, 0.0]);
    /// ```
    pub fn apply<'t, T: Element>(&self, x: Tensor<'t, T>) -> Tensor<'t, T> {
        match run(&self.program, x) {
            Val::T(t) => t,
            Val::Num(c) => Tensor::where_(&ndarray::arr0(false), x, x.tape().scalar(T::cast(c))),
        }
    }
}

/// The message for a character outside ASCII that is not whitespace.
fn non_ascii(c: char) -> String {
    format!(
        "unexpected '{c}' (U+{:04X}): apart from whitespace, formulas are ASCII (operators + - * / ^)",
        c as u32
    )
}

struct Parser<'a> {
    src: &'a str,
    /// The formula's characters with their byte offsets: the lexer steps
    /// by character, never into the middle of one.
    chars: Vec<(usize, char)>,
    /// Index into `chars`.
    pos: usize,
    /// Levels of nesting around `pos` (see [`Formula::MAX_DEPTH`]).
    depth: usize,
    program: Vec<Instr>,
}

impl Parser<'_> {
    /// Byte offset of character `i` (the end of the text past the last).
    fn byte(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.src.len(), |&(b, _)| b)
    }
    fn error(&self, message: &str) -> FormulaError {
        FormulaError {
            formula: self.src.to_string(),
            position: self.byte(self.pos),
            message: message.to_string(),
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Appends one step; when all its operands are constants, computes it
    /// at once on a one-element f64 tensor and appends the number instead.
    /// The last `arity` steps being numbers means they are its operands:
    /// each number is a whole operand.
    fn emit(&mut self, ins: Instr) {
        let n = self.program.len();
        let k = ins.arity();
        let constant = k > 0 && n >= k && self.program[n - k..].iter().all(|i| matches!(i, Instr::Num(_)));
        self.program.push(ins);
        if constant {
            let snippet = self.program.split_off(n - k);
            let tape = Tape::<f64>::new();
            // The snippet has no `x`: this leaf is never read.
            let unused_x = tape.scalar(f64::NAN);
            let value = run(&snippet, unused_x).into_tensor(&tape).item();
            self.program.push(Instr::Num(value));
        }
    }

    /// Parses `inner` one nesting level deeper, refusing to go past
    /// [`Formula::MAX_DEPTH`]. Every cycle of the recursive descent passes
    /// through here, so the parser's stack stays bounded.
    fn nested(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<(), FormulaError>,
    ) -> Result<(), FormulaError> {
        if self.depth == Formula::MAX_DEPTH {
            return Err(self.error(&format!(
                "the formula nests more than {} levels deep (each parenthesis, function call, unary minus and '^' is a level)",
                Formula::MAX_DEPTH
            )));
        }
        self.depth += 1;
        inner(self)?;
        self.depth -= 1;
        Ok(())
    }

    /// Whether the text at the cursor (after whitespace) starts with
    /// `token`; if so, steps over it.
    fn eat_str(&mut self, token: &str) -> bool {
        self.skip_ws();
        let n = token.chars().count();
        let ahead =
            self.chars.get(self.pos..self.pos + n).map(|cs| cs.iter().map(|&(_, c)| c).eq(token.chars()));
        if ahead == Some(true) {
            self.pos += n;
            true
        } else {
            false
        }
    }
    fn comparison(&mut self) -> Option<Cmp> {
        Cmp::TOKENS.iter().find(|(token, _)| self.eat_str(token)).map(|&(_, cmp)| cmp)
    }

    fn expr(&mut self) -> Result<(), FormulaError> {
        self.sum()?;
        if let Some(cmp) = self.comparison() {
            self.sum()?;
            self.emit(Instr::Cmp(cmp));
            let at = self.pos;
            if self.comparison().is_some() {
                self.pos = at;
                self.skip_ws();
                return Err(self.error("comparisons do not chain: write (a < b) * (b < c)"));
            }
        }
        Ok(())
    }
    fn sum(&mut self) -> Result<(), FormulaError> {
        self.term()?;
        loop {
            let op = if self.eat('+') {
                BinOp::Add
            } else if self.eat('-') {
                BinOp::Sub
            } else {
                return Ok(());
            };
            self.term()?;
            self.emit(Instr::Bin(op));
        }
    }
    fn term(&mut self) -> Result<(), FormulaError> {
        self.unary()?;
        loop {
            let op = if self.eat('*') {
                BinOp::Mul
            } else if self.eat('/') {
                BinOp::Div
            } else {
                return Ok(());
            };
            self.unary()?;
            self.emit(Instr::Bin(op));
        }
    }
    fn unary(&mut self) -> Result<(), FormulaError> {
        self.skip_ws();
        if self.peek() == Some('-') {
            self.operand_after_operator()?;
            self.emit(Instr::Neg);
            return Ok(());
        }
        self.power()
    }
    /// Steps over the operator at the cursor (`-` or `^`) and parses the
    /// unary expression after it, one level deeper.
    fn operand_after_operator(&mut self) -> Result<(), FormulaError> {
        self.nested(|p| {
            p.pos += 1;
            p.unary()
        })
    }
    fn power(&mut self) -> Result<(), FormulaError> {
        self.atom()?;
        self.skip_ws();
        if self.peek() == Some('^') {
            self.operand_after_operator()?;
            self.emit(Instr::Bin(BinOp::Pow));
        }
        Ok(())
    }
    fn atom(&mut self) -> Result<(), FormulaError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error("expected a number, x, a function or '(' but the formula ended")),
            Some('(') => self.nested(|p| {
                p.pos += 1;
                p.expr()?;
                if !p.eat(')') {
                    return Err(p.error("expected ')'"));
                }
                Ok(())
            }),
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let digits = |p: &mut Self, dot: bool| {
                    while p.peek().is_some_and(|c| c.is_ascii_digit() || (dot && c == '.')) {
                        p.pos += 1;
                    }
                };
                digits(self, true);
                // An exponent: 1e-3, 2.5E+2.
                if self.peek().is_some_and(|c| c == 'e' || c == 'E') {
                    let save = self.pos;
                    self.pos += 1;
                    if self.peek().is_some_and(|c| c == '+' || c == '-') {
                        self.pos += 1;
                    }
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        digits(self, false);
                    } else {
                        self.pos = save;
                    }
                }
                let text = &self.src[self.byte(start)..self.byte(self.pos)];
                match text.parse::<f64>() {
                    Ok(v) => {
                        self.emit(Instr::Num(v));
                        Ok(())
                    }
                    Err(_) => {
                        self.pos = start;
                        Err(self.error(&format!("'{text}' is not a number")))
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let name = &self.src[self.byte(start)..self.byte(self.pos)];
                match name {
                    "x" => {
                        self.emit(Instr::X);
                        return Ok(());
                    }
                    "pi" => {
                        self.emit(Instr::Num(std::f64::consts::PI));
                        return Ok(());
                    }
                    "e" => {
                        self.emit(Instr::Num(std::f64::consts::E));
                        return Ok(());
                    }
                    _ => {}
                }
                let Some(f) = Function::from_name(name) else {
                    self.pos = start;
                    return Err(self.error(&format!(
                        "unknown function or variable '{name}' (the variable is x; functions: {})",
                        Function::NAMES.join(", ")
                    )));
                };
                if !self.eat('(') {
                    return Err(self.error(&format!("expected '(' after {}", f.name())));
                }
                self.nested(|p| {
                    let mut given = 0;
                    loop {
                        p.expr()?;
                        given += 1;
                        if !p.eat(',') {
                            break;
                        }
                    }
                    if given != f.arity() {
                        return Err(p.error(&format!(
                            "{} takes {} argument{}, not {given}",
                            f.name(),
                            f.arity(),
                            if f.arity() == 1 { "" } else { "s" }
                        )));
                    }
                    if !p.eat(')') {
                        return Err(p.error("expected ')'"));
                    }
                    Ok(())
                })?;
                self.emit(Instr::Call(f));
                Ok(())
            }
            Some(c) if c.is_ascii() => Err(self.error(&format!("unexpected '{c}'"))),
            Some(c) => Err(self.error(&non_ascii(c))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapegrad_tensor::{gradcheck, ndarray::arr1, ndarray::ArrayD, ndarray::IxDyn};

    fn at(src: &str, v: f64) -> f64 {
        let tape = Tape::<f64>::new();
        Formula::parse(src).unwrap().apply(tape.var(arr1(&[v]))).item()
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(at("1 + 2 * x", 3.0), 7.0);
        assert_eq!(at("-x^2", 3.0), -9.0);
        assert_eq!(at("2^3^2", 0.0), 512.0);
        assert_eq!(at("x / 2 / 2", 8.0), 2.0);
        assert_eq!(at("(1 + x) * 2", 1.0), 4.0);
        assert_eq!(at("1e-1 * x", 10.0), 1.0);
        assert_eq!(at("x - 1 - 1", 3.0), 1.0);
        assert_eq!(at("1 - x", 3.0), -2.0);
        assert_eq!(at("6 / x", 3.0), 2.0);
        assert_eq!(at("x^x", 2.0), 4.0);
        // 2^x is recorded as exp(x ln 2): a rounding or two from 8.
        approx::assert_relative_eq!(at("2^x", 3.0), 8.0, max_relative = 1e-15);
    }

    #[test]
    fn errors_point_at_the_failure() {
        let e = Formula::parse("x * sigmoid(1.702 * x").unwrap_err();
        assert_eq!(e.position, 21);
        assert_eq!(e.message, "expected ')'");
        let e = Formula::parse("x $ 2").unwrap_err();
        assert_eq!(e.position, 2);
        let e = Formula::parse("foo(x)").unwrap_err();
        assert_eq!(e.position, 0);
        assert!(e.to_string().ends_with("\n  foo(x)\n  ^"), "{e}");
        assert!(Formula::parse("").is_err());
        assert!(Formula::parse("1..2").unwrap_err().message.contains("not a number"));
    }

    /// The `name := ...` line of the module doc, as a list.
    fn grammar_names() -> Vec<String> {
        let line = include_str!("formula.rs")
            .lines()
            .find_map(|l| l.strip_prefix("//! name   :="))
            .expect("the module doc has a `name :=` line");
        line.split('|').map(|n| n.trim().to_string()).collect()
    }

    #[test]
    fn grammar_doc_lists_the_function_table() {
        assert_eq!(grammar_names(), Function::NAMES);
        assert_eq!(Formula::functions(), Function::NAMES);
    }

    #[test]
    fn readme_lists_the_function_table() {
        let readme = include_str!("../../../README.md");
        let mut lines = readme.lines();
        lines.find(|l| l.ends_with("these functions:")).expect("the README's formula paragraph");
        let list = lines.next().unwrap().trim_end_matches('.').trim_matches('`');
        assert_eq!(list.split_whitespace().collect::<Vec<_>>(), Function::NAMES);
    }

    #[test]
    fn table_is_consistent_and_every_name_parses() {
        assert_eq!(Function::ALL.len(), Function::NAMES.len());
        for (&f, &name) in Function::ALL.iter().zip(Function::NAMES) {
            assert_eq!(f.name(), name);
            assert_eq!(Function::from_name(name), Some(f));
            let parsed = Formula::parse(&call_on(f, "x")).unwrap();
            let mut want = vec![Instr::X; f.arity()];
            want.push(Instr::Call(f));
            assert_eq!(parsed.program, want, "{name}");
        }
    }

    #[test]
    fn unknown_function_error_lists_every_function() {
        let e = Formula::parse("cosh(x)").unwrap_err();
        for name in Function::NAMES {
            assert!(e.message.contains(name), "{name} missing from: {}", e.message);
        }
    }

    /// `f` called on `arg` as each of its arguments: `max(x, x)`.
    fn call_on(f: Function, arg: &str) -> String {
        format!("{}({})", f.name(), vec![arg; f.arity()].join(", "))
    }

    /// A formula calling each function, and an independent reference for
    /// its value (std's f64 maths; Python's `math.erf` for erf, whose
    /// values at the test points are frozen here), by an exhaustive match:
    /// a function added to the table needs one here.
    fn case(f: Function) -> (&'static str, fn(f64) -> f64) {
        match f {
            Function::Exp => ("exp(x)", f64::exp),
            Function::Log => ("log(x)", f64::ln),
            Function::Sqrt => ("sqrt(x)", f64::sqrt),
            Function::Abs => ("abs(x)", f64::abs),
            Function::Tanh => ("tanh(x)", f64::tanh),
            Function::Sigmoid => ("sigmoid(x)", |v| 1.0 / (1.0 + (-v).exp())),
            Function::Relu => ("relu(x)", |v| v.max(0.0)),
            Function::Softplus => ("softplus(x)", |v| (1.0 + v.exp()).ln()),
            Function::LogSigmoid => ("log_sigmoid(x)", |v| -(1.0 + (-v).exp()).ln()),
            Function::Sin => ("sin(x)", f64::sin),
            Function::Cos => ("cos(x)", f64::cos),
            Function::Erf => ("erf(x)", |v| match v {
                // python3 -c "import math; print(repr(math.erf(0.3)), ...)"
                0.3 => 0.3286267594591274,
                1.7 => 0.9837904585907745,
                4.0 => 0.9999999845827421,
                _ => f64::NAN,
            }),
            Function::Log1p => ("log1p(x)", f64::ln_1p),
            Function::Expm1 => ("expm1(x)", f64::exp_m1),
            Function::Square => ("square(x)", |v| v * v),
            Function::Recip => ("recip(x)", |v| 1.0 / v),
            Function::Max => ("max(x, 1.7)", |v| v.max(1.7)),
            Function::Min => ("min(1.2, x)", |v| v.min(1.2)),
            Function::Pow => ("pow(x, 1.5)", |v| v.powf(1.5)),
            Function::Where => ("where(x > 1, x, 2 * x)", |v| if v > 1.0 { v } else { 2.0 * v }),
        }
    }

    #[test]
    fn every_function_records_its_op() {
        // Positive points (log and sqrt), away from relu's and abs's kink.
        let points = [0.3, 1.7, 4.0];
        for &f in Function::ALL {
            let (src, reference) = case(f);
            let formula = Formula::parse(src).unwrap();
            assert!(formula.program.contains(&Instr::Call(f)), "{src}");
            for &v in &points {
                // Independent formulas for the same value: a few roundings apart.
                approx::assert_relative_eq!(at(src, v), reference(v), max_relative = 1e-14);
            }
            // Away from the kinks of max (1.7), min (1.2) and where (1).
            let grid = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| 0.2 + 0.7 * (i[0] * 3 + i[1]) as f64);
            let report = gradcheck(|x| formula.apply(x[0]), &[grid]);
            assert!(report.passed(), "{}\n{report}", f.name());
        }
    }

    #[test]
    fn comparisons_are_masks_without_gradient_and_do_not_chain() {
        for (src, v, want) in [
            ("x > 1", 2.0, 1.0),
            ("x > 1", 1.0, 0.0),
            ("x >= 1", 1.0, 1.0),
            ("x < 1", 1.0, 0.0),
            ("x <= 1", 1.0, 1.0),
            ("x == 1", 1.0, 1.0),
            ("x != 1", 1.0, 0.0),
            ("x != 1", f64::NAN, 1.0),
            ("x > 1", f64::NAN, 0.0),
            ("(x > 0) * x", -2.0, 0.0),
            ("2 * x > x + 1", 3.0, 1.0),
        ] {
            assert_eq!(at(src, v), want, "{src} at {v}");
        }
        let tape = Tape::<f64>::new();
        let x = tape.var(arr1(&[2.0]));
        let y = Formula::parse("(x > 1) * x^2").unwrap().apply(x);
        assert_eq!(tape.backward(y.sum())[x][0], 4.0); // the mask's gradient is 0
        let e = Formula::parse("0 < x < 1").unwrap_err();
        assert!(e.message.contains("do not chain") && e.position == 6, "{e:?}");
        // A leaky ReLU by where, and pi and e as constants.
        assert_eq!(at("where(x > 0, x, 0.1 * x)", -2.0), -0.2);
        assert_eq!(at("pi * e", 1.0), std::f64::consts::PI * std::f64::consts::E);
    }

    #[test]
    fn a_call_with_the_wrong_number_of_arguments_says_how_many() {
        let e = Formula::parse("max(x)").unwrap_err();
        assert_eq!(e.message, "max takes 2 arguments, not 1");
        let e = Formula::parse("sin(x, 2)").unwrap_err();
        assert_eq!(e.message, "sin takes 1 argument, not 2");
        assert!(Formula::parse("where(x, 1)").unwrap_err().message.contains("where takes 3 arguments"));
    }

    #[test]
    fn constants_fold_through_the_tensor_ops() {
        let program = |s: &str| Formula::parse(s).unwrap().program;
        assert_eq!(program("2 * pi"), [Instr::Num(2.0 * std::f64::consts::PI)]);
        assert_eq!(program("x * (1 + 1)"), [Instr::X, Instr::Num(2.0), Instr::Bin(BinOp::Mul)]);
        assert_eq!(program("-(2^3) + x"), [Instr::Num(-8.0), Instr::X, Instr::Bin(BinOp::Add)]);
        assert_eq!(program("(2 > 1) + x"), [Instr::Num(1.0), Instr::X, Instr::Bin(BinOp::Add)]);
        // Left-associative: (x + 1) + 1 has no constant sub-expression.
        assert_eq!(program("x + 1 + 1").len(), 5);
        for &f in Function::ALL {
            let folded = program(&call_on(f, "0.5"));
            let tape = Tape::<f64>::new();
            let args = vec![tape.var(arr1(&[0.5])); f.arity()];
            let direct = f.record(&args).value()[0];
            // The folded number is the tensor op's value, bit for bit.
            assert_eq!(folded, [Instr::Num(direct)], "{}", f.name());
        }
    }

    #[test]
    fn constants_fold_in_f64_for_f32_models() {
        // 1/3 computed in f64, rounded to f32 once when recorded.
        let tape = Tape::<f32>::new();
        let y = Formula::parse("x * (1 / 3)").unwrap().apply(tape.var(arr1(&[3.0f32])));
        assert_eq!(y.item(), 3.0f32 * (1.0f64 / 3.0) as f32);
    }

    #[test]
    fn long_errors_show_an_excerpt_with_the_caret_under_the_failure() {
        let src = "x+".repeat(100) + "$" + &"+x".repeat(100);
        let e = Formula::parse(&src).unwrap_err();
        assert_eq!(e.column(), 201);
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].len() < 80 && lines[1].starts_with("  ...") && lines[1].ends_with("..."), "{text}");
        let caret = lines[2].find('^').unwrap();
        assert_eq!(lines[1].as_bytes()[caret], b'$', "{text}");
    }
}
