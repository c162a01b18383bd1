//! Activation formulas in `x`, parsed into tape ops: a new activation can be
//! tried from a string, without recompiling and without a derivative.
//!
//! Grammar (usual precedence; `^` binds tighter than unary minus and is
//! right-associative, so `-x^2` is `-(x^2)`):
//!
//! ```text
//! expr   := term (('+' | '-') term)*
//! term   := unary (('*' | '/') unary)*
//! unary  := '-' unary | power
//! power  := atom ('^' unary)?
//! atom   := number | 'x' | 'pi' | 'e' | name '(' expr ')' | '(' expr ')'
//! name   := exp | log | sqrt | abs | tanh | sigmoid | relu | softplus | log_sigmoid
//! ```

use std::fmt;
use tapegrad_tensor::{Element, Tensor};

/// Why a formula did not parse: a message and the byte offset where it
/// failed. `Display` shows the formula with a caret under that place.
///
/// ```
/// let err = tapegrad_nn::Formula::parse("x * (1 +").unwrap_err();
/// assert_eq!(err.position, 8);
/// assert!(err.to_string().contains("^"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormulaError {
    /// The formula as given.
    pub formula: String,
    /// Byte offset of the failure.
    pub position: usize,
    /// What was wrong there.
    pub message: String,
}

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot parse activation formula at column {}: {}\n  {}\n  {}^",
            self.position + 1,
            self.message,
            self.formula,
            " ".repeat(self.formula[..self.position.min(self.formula.len())].chars().count())
        )
    }
}

impl std::error::Error for FormulaError {}

/// The unary functions a formula may call; each maps to a tensor op.
const FUNCTIONS: [&str; 9] =
    ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "softplus", "log_sigmoid"];

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    X,
    Num(f64),
    Neg(Box<Expr>),
    Call(&'static str, Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
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
    expr: Expr,
}

/// A value during evaluation: a plain number (constants fold) or a tensor.
enum Val<'t, T: Element> {
    Num(f64),
    T(Tensor<'t, T>),
}

impl Formula {
    /// Parses a formula.
    ///
    /// # Errors
    /// A [`FormulaError`] naming the position and the problem.
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// assert!(Formula::parse("x^3 - 2*x").is_ok());
    /// assert!(Formula::parse("cosh(x)").unwrap_err().message.contains("unknown function"));
    /// ```
    pub fn parse(source: &str) -> Result<Formula, FormulaError> {
        let mut p = Parser { src: source, pos: 0 };
        let expr = p.expr()?;
        p.skip_ws();
        if p.pos < source.len() {
            return Err(p.error("unexpected text after the end of the formula"));
        }
        Ok(Formula { source: source.to_string(), expr })
    }

    /// The formula as written.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Formula::parse("relu(x)").unwrap().source(), "relu(x)");
    /// ```
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Records the formula on `x`'s tape, elementwise.
    ///
    /// ```
    /// use tapegrad_nn::Formula;
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f32>::new();
    /// let y = Formula::parse("2").unwrap().apply(tape.var(arr1(&[1.0f32, 5.0])));
    /// assert_eq!(y.value().as_slice().unwrap(), &[2.0, 2.0]); // a constant keeps x's shape
    /// ```
    pub fn apply<'t, T: Element>(&self, x: Tensor<'t, T>) -> Tensor<'t, T> {
        match eval(&self.expr, x) {
            Val::T(t) => t,
            Val::Num(c) => x * T::zero() + T::cast(c),
        }
    }
}

fn eval<'t, T: Element>(e: &Expr, x: Tensor<'t, T>) -> Val<'t, T> {
    use Val::{Num, T as Tn};
    match e {
        Expr::X => Tn(x),
        Expr::Num(v) => Num(*v),
        Expr::Neg(a) => match eval(a, x) {
            Num(v) => Num(-v),
            Tn(t) => Tn(-t),
        },
        Expr::Call(name, a) => match eval(a, x) {
            Num(v) => Num(call_scalar(name, v)),
            Tn(t) => Tn(call(name, t)),
        },
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, x), eval(b, x));
            let c = |v: f64| T::cast(v);
            match (op, a, b) {
                (_, Num(a), Num(b)) => Num(match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    '/' => a / b,
                    _ => a.powf(b),
                }),
                ('+', Tn(a), Num(b)) | ('+', Num(b), Tn(a)) => Tn(a + c(b)),
                ('*', Tn(a), Num(b)) | ('*', Num(b), Tn(a)) => Tn(a * c(b)),
                ('-', Tn(a), Num(b)) => Tn(a - c(b)),
                ('-', Num(a), Tn(b)) => Tn(-b + c(a)),
                ('/', Tn(a), Num(b)) => Tn(a * c(1.0 / b)),
                ('/', Num(a), Tn(b)) => Tn(b.powf(c(-1.0)) * c(a)),
                ('^', Tn(a), Num(b)) => Tn(a.powf(c(b))),
                // a^x = e^(x ln a)
                ('^', Num(a), Tn(b)) => Tn((b * c(a.ln())).exp()),
                (_, Num(a), Tn(b)) => unreachable!("operator {op} on {a} and {b:?}"),
                (_, Tn(a), Num(b)) => unreachable!("operator {op} on {a:?} and {b}"),
                ('+', Tn(a), Tn(b)) => Tn(a + b),
                ('-', Tn(a), Tn(b)) => Tn(a - b),
                ('*', Tn(a), Tn(b)) => Tn(a * b),
                ('/', Tn(a), Tn(b)) => Tn(a / b),
                (_, Tn(a), Tn(b)) => Tn(a.pow(b)),
            }
        }
    }
}

fn call<'t, T: Element>(name: &str, t: Tensor<'t, T>) -> Tensor<'t, T> {
    match name {
        "exp" => t.exp(),
        "log" => t.log(),
        "sqrt" => t.sqrt(),
        "abs" => t.abs(),
        "tanh" => t.tanh(),
        "sigmoid" => t.sigmoid(),
        "relu" => t.relu(),
        "softplus" => t.softplus(),
        _ => t.log_sigmoid(),
    }
}

fn call_scalar(name: &str, v: f64) -> f64 {
    match name {
        "exp" => v.exp(),
        "log" => v.ln(),
        "sqrt" => v.sqrt(),
        "abs" => v.abs(),
        "tanh" => v.tanh(),
        "sigmoid" => 1.0 / (1.0 + (-v).exp()),
        "relu" => v.max(0.0),
        "softplus" => v.max(0.0) + (-v.abs()).exp().ln_1p(),
        _ => -((-v).max(0.0) + (-v.abs()).exp().ln_1p()),
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> FormulaError {
        FormulaError { formula: self.src.to_string(), position: self.pos, message: message.to_string() }
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }
    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Result<Expr, FormulaError> {
        let mut lhs = self.term()?;
        loop {
            let op = if self.eat('+') {
                '+'
            } else if self.eat('-') {
                '-'
            } else {
                return Ok(lhs);
            };
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(self.term()?));
        }
    }
    fn term(&mut self) -> Result<Expr, FormulaError> {
        let mut lhs = self.unary()?;
        loop {
            let op = if self.eat('*') {
                '*'
            } else if self.eat('/') {
                '/'
            } else {
                return Ok(lhs);
            };
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(self.unary()?));
        }
    }
    fn unary(&mut self) -> Result<Expr, FormulaError> {
        if self.eat('-') {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.power()
    }
    fn power(&mut self) -> Result<Expr, FormulaError> {
        let base = self.atom()?;
        if self.eat('^') {
            return Ok(Expr::Bin('^', Box::new(base), Box::new(self.unary()?)));
        }
        Ok(base)
    }
    fn atom(&mut self) -> Result<Expr, FormulaError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error("expected a number, x, a function or '(' but the formula ended")),
            Some('(') => {
                self.pos += 1;
                let e = self.expr()?;
                if !self.eat(')') {
                    return Err(self.error("expected ')'"));
                }
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.pos += 1;
                }
                // An exponent: 1e-3, 2.5E+2.
                if self.peek().is_some_and(|c| c == 'e' || c == 'E') {
                    let save = self.pos;
                    self.pos += 1;
                    if self.peek().is_some_and(|c| c == '+' || c == '-') {
                        self.pos += 1;
                    }
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                            self.pos += 1;
                        }
                    } else {
                        self.pos = save;
                    }
                }
                let text = &self.src[start..self.pos];
                text.parse::<f64>().map(Expr::Num).map_err(|_| {
                    self.pos = start;
                    self.error(&format!("'{text}' is not a number"))
                })
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let name = &self.src[start..self.pos];
                match name {
                    "x" => return Ok(Expr::X),
                    "pi" => return Ok(Expr::Num(std::f64::consts::PI)),
                    "e" => return Ok(Expr::Num(std::f64::consts::E)),
                    _ => {}
                }
                let Some(&f) = FUNCTIONS.iter().find(|&&f| f == name) else {
                    self.pos = start;
                    return Err(self.error(&format!(
                        "unknown function or variable '{name}' (the variable is x; functions: {})",
                        FUNCTIONS.join(", ")
                    )));
                };
                if !self.eat('(') {
                    return Err(self.error(&format!("expected '(' after {f}")));
                }
                let arg = self.expr()?;
                if !self.eat(')') {
                    return Err(self.error("expected ')'"));
                }
                Ok(Expr::Call(f, Box::new(arg)))
            }
            Some(c) => Err(self.error(&format!("unexpected '{c}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapegrad_tensor::{ndarray::arr1, Tape};

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
}
