//! The executor: walks a parsed tree over a data value, with Go `text/template` semantics
//! (`missingkey=error`) and the render limits.

use std::rc::Rc;
use std::time::Instant;

use super::fmt as gofmt;
use super::parse::{Arg, Cmd, Node, Number, Pipe, Tree};
use crate::funcs::{self, Budget, Func, Ty};
use crate::value::{ListKind, MapKind, Obj, Value};
use crate::{ErrorKind, Limits};

/// An execution error: byte offset into the template and a message free of data values.
#[derive(Debug, Clone)]
pub struct ExecError {
    /// Byte offset of the node being executed.
    pub pos: usize,
    /// What went wrong.
    pub msg: String,
    /// The class of error.
    pub kind: ErrorKind,
}

enum Ctl {
    Err(ExecError),
    Break,
    Continue,
}

impl From<ExecError> for Ctl {
    fn from(e: ExecError) -> Ctl {
        Ctl::Err(e)
    }
}

type R<T> = Result<T, ExecError>;

fn fail<T>(pos: usize, msg: impl Into<String>) -> R<T> {
    Err(ExecError {
        pos,
        msg: msg.into(),
        kind: ErrorKind::Exec,
    })
}

/// Executes a tree.
pub struct Exec<'a> {
    tree: &'a Tree,
    vars: Vec<(String, Value)>,
    out: Vec<u8>,
    depth: usize,
    budget: Budget,
    limits: &'a Limits,
}

/// Renders `tree` with `data` as dot.
pub fn execute(tree: &Tree, data: Value, limits: &Limits) -> R<Vec<u8>> {
    let mut ex = Exec {
        tree,
        vars: vec![("$".into(), data.clone())],
        out: Vec::new(),
        depth: 0,
        budget: Budget::new(limits, Instant::now()),
        limits,
    };
    match ex.walk(&data, &tree.main) {
        Ok(()) => Ok(ex.out),
        Err(Ctl::Err(e)) => Err(e),
        Err(_) => fail(0, "break or continue outside range"),
    }
}

impl Exec<'_> {
    fn step(&mut self, pos: usize) -> R<()> {
        self.budget
            .step()
            .map_err(|(kind, msg)| ExecError { pos, msg, kind })
    }

    fn write(&mut self, pos: usize, b: &[u8]) -> R<()> {
        if self.out.len() + b.len() > self.limits.max_output {
            return Err(ExecError {
                pos,
                msg: format!(
                    "output exceeds the limit of {} bytes",
                    self.limits.max_output
                ),
                kind: ErrorKind::Limit,
            });
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn walk(&mut self, dot: &Value, list: &[Node]) -> Result<(), Ctl> {
        // Every nested list (bodies of if/range/with/template) counts towards the depth limit,
        // so that no template can exhaust the stack.
        if self.depth >= self.limits.max_depth {
            return Err(ExecError {
                pos: 0,
                msg: format!(
                    "exceeded maximum template depth ({})",
                    self.limits.max_depth
                ),
                kind: ErrorKind::Limit,
            }
            .into());
        }
        self.depth += 1;
        let mut r = Ok(());
        for n in list {
            r = self.node(dot, n);
            if r.is_err() {
                break;
            }
        }
        self.depth -= 1;
        r
    }

    fn node(&mut self, dot: &Value, n: &Node) -> Result<(), Ctl> {
        match n {
            Node::Text(t) => {
                self.step(0)?;
                self.write(0, t)?;
            }
            Node::Action(p) => {
                self.step(p.pos)?;
                let v = self.pipeline(dot, p)?;
                if p.decl.is_empty() {
                    let b = match v {
                        Value::Nil => b"<no value>".to_vec(),
                        v => gofmt::to_string(&v),
                    };
                    self.write(p.pos, &b)?;
                }
            }
            Node::If {
                pos,
                with,
                pipe,
                list,
                else_list,
            } => {
                self.step(*pos)?;
                let mark = self.vars.len();
                let v = self.pipeline(dot, pipe)?;
                let r = if v.truthy() {
                    if *with {
                        self.walk(&v, list)
                    } else {
                        self.walk(dot, list)
                    }
                } else {
                    self.walk(dot, else_list)
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::Range {
                pos,
                pipe,
                list,
                else_list,
            } => {
                self.step(*pos)?;
                let mark = self.vars.len();
                let v = self.pipeline(dot, pipe)?;
                let r = self.range(*pos, dot, pipe, v, list, else_list);
                self.vars.truncate(mark);
                r?;
            }
            Node::Template { pos, name, pipe } => {
                self.step(*pos)?;
                let Some(body) = self.tree.defs.get(name).cloned() else {
                    return Err(fail::<()>(
                        *pos,
                        format!("no such template {:?}", String::from_utf8_lossy(name)),
                    )
                    .unwrap_err()
                    .into());
                };
                let new_dot = match pipe {
                    Some(p) => self.pipeline(dot, p)?,
                    None => Value::Nil,
                };
                if self.depth >= self.limits.max_depth {
                    return Err(ExecError {
                        pos: *pos,
                        msg: format!(
                            "exceeded maximum template depth ({})",
                            self.limits.max_depth
                        ),
                        kind: ErrorKind::Limit,
                    }
                    .into());
                }
                self.depth += 1;
                let saved = std::mem::replace(&mut self.vars, vec![("$".into(), new_dot.clone())]);
                let r = self.walk(&new_dot, &body);
                self.vars = saved;
                match r {
                    Ok(()) => {}
                    Err(Ctl::Err(e)) => return Err(Ctl::Err(e)),
                    Err(_) => {
                        return Err(fail::<()>(*pos, "break or continue outside range")
                            .unwrap_err()
                            .into());
                    }
                }
            }
            Node::Break(_) => return Err(Ctl::Break),
            Node::Continue(_) => return Err(Ctl::Continue),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn range(
        &mut self,
        pos: usize,
        dot: &Value,
        pipe: &Pipe,
        v: Value,
        list: &[Node],
        else_list: &[Node],
    ) -> Result<(), Ctl> {
        let items: Box<dyn Iterator<Item = (Value, Value)>> = match &v {
            Value::List(l, _) => {
                let l = l.clone();
                let n = l.len();
                Box::new((0..n).map(move |i| (Value::Int(i as i64), l[i].clone())))
            }
            Value::Map(m, _) => {
                let entries: Vec<(Value, Value)> = m
                    .borrow()
                    .iter()
                    .map(|(k, e)| (Value::str(k), e.clone()))
                    .collect();
                Box::new(entries.into_iter())
            }
            Value::Int(n) | Value::Int64(n) => {
                if pipe.decl.len() > 1 {
                    return Err(ExecError {
                        pos,
                        msg: "can't use an integer to iterate over more than one variable".into(),
                        kind: ErrorKind::Exec,
                    }
                    .into());
                }
                let int64 = matches!(v, Value::Int64(_));
                let mk = move |i: i64| {
                    if int64 {
                        Value::Int64(i)
                    } else {
                        Value::Int(i)
                    }
                };
                Box::new((0..(*n).max(0)).map(move |i| (mk(i), mk(i))))
            }
            Value::Nil => Box::new(std::iter::empty()),
            other => {
                return Err(ExecError {
                    pos,
                    msg: format!(
                        "range can't iterate over a value of type {}",
                        other.type_name()
                    ),
                    kind: ErrorKind::Exec,
                }
                .into());
            }
        };
        let mark = self.vars.len();
        let mut any = false;
        for (idx, elem) in items {
            any = true;
            self.step(pos)?;
            match pipe.decl.len() {
                0 => {}
                1 => self.set_var(pos, &pipe.decl[0], elem.clone(), pipe.assign)?,
                _ => {
                    self.set_var(pos, &pipe.decl[0], idx, pipe.assign)?;
                    self.set_var(pos, &pipe.decl[1], elem.clone(), pipe.assign)?;
                }
            }
            let r = self.walk(&elem, list);
            self.vars.truncate(mark);
            match r {
                Ok(()) | Err(Ctl::Continue) => {}
                Err(Ctl::Break) => break,
                Err(e) => return Err(e),
            }
        }
        if !any {
            return self.walk(dot, else_list);
        }
        Ok(())
    }

    fn set_var(&mut self, pos: usize, name: &str, v: Value, assign: bool) -> R<()> {
        if !assign {
            // Declared variables were pushed by the pipeline; update the newest one.
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return Ok(());
            }
        }
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => fail(pos, format!("undefined variable: {name}")),
        }
    }

    fn pipeline(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let mut fin: Option<Value> = None;
        for c in &p.cmds {
            self.step(c.pos)?;
            fin = Some(self.command(dot, c, fin)?);
        }
        let v = fin.unwrap_or(Value::Nil);
        for d in &p.decl {
            if p.assign {
                self.set_var(p.pos, d, v.clone(), true)?;
            } else {
                self.vars.push((d.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn var(&self, pos: usize, name: &str) -> R<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => fail(pos, format!("undefined variable: {name}")),
        }
    }

    fn not_a_function(&self, pos: usize, args: &[Arg], fin: &Option<Value>, what: &str) -> R<()> {
        if args.len() > 1 || fin.is_some() {
            return fail(pos, format!("can't give argument to non-function {what}"));
        }
        Ok(())
    }

    fn command(&mut self, dot: &Value, c: &Cmd, fin: Option<Value>) -> R<Value> {
        let pos = c.pos;
        match &c.args[0] {
            Arg::Field(names) => self.field_chain(dot, pos, dot.clone(), names, &c.args, fin),
            Arg::Chain(inner, names) => {
                if matches!(**inner, Arg::Nil) {
                    return fail(pos, "indirection through explicit nil");
                }
                let recv = self.arg(dot, inner, Ty::Any, pos)?;
                self.field_chain(dot, pos, recv, names, &c.args, fin)
            }
            Arg::Var(name, names) => {
                let v = self.var(pos, name)?;
                if names.is_empty() {
                    self.not_a_function(pos, &c.args, &fin, name)?;
                    return Ok(v);
                }
                self.field_chain(dot, pos, v, names, &c.args, fin)
            }
            Arg::Pipe(p) => {
                self.not_a_function(pos, &c.args, &fin, "(pipeline)")?;
                // Go keeps variables declared in a parenthesized pipeline in scope.
                self.pipeline(dot, p)
            }
            Arg::Ident(name) => self.call(dot, pos, name, &c.args[1..], fin),
            Arg::Nil => fail(pos, "nil is not a command"),
            Arg::Dot => {
                self.not_a_function(pos, &c.args, &fin, ".")?;
                Ok(dot.clone())
            }
            Arg::Bool(b) => {
                self.not_a_function(pos, &c.args, &fin, "bool")?;
                Ok(Value::Bool(*b))
            }
            Arg::Str(s) => {
                self.not_a_function(pos, &c.args, &fin, "string")?;
                Ok(Value::Str(s.clone()))
            }
            Arg::Number(n) => {
                self.not_a_function(pos, &c.args, &fin, &n.text)?;
                ideal(pos, n)
            }
        }
    }

    fn field_chain(
        &mut self,
        dot: &Value,
        pos: usize,
        mut recv: Value,
        names: &[String],
        args: &[Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let has_args = args.len() > 1 || fin.is_some();
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            recv = match &recv {
                Value::Map(m, _) => {
                    if last && has_args {
                        return fail(pos, format!("{name} is not a method but has arguments"));
                    }
                    let found = m.borrow().get(name.as_bytes()).cloned();
                    match found {
                        Some(v) => v,
                        None => {
                            return Err(ExecError {
                                pos,
                                msg: format!("map has no entry for key {name:?}"),
                                kind: ErrorKind::MissingKey,
                            });
                        }
                    }
                }
                Value::Obj(o) => {
                    let o = o.clone();
                    if last && has_args {
                        return self.method(dot, pos, &o, name, &args[1..], fin);
                    }
                    match obj_field(&o, name) {
                        Some(v) => v,
                        None => {
                            return fail(
                                pos,
                                format!("can't evaluate field {name} in type {}", o.type_name()),
                            );
                        }
                    }
                }
                Value::Nil if i == 0 => {
                    return Err(ExecError {
                        pos,
                        msg: format!("nil data; no entry for key {name:?}"),
                        kind: ErrorKind::MissingKey,
                    });
                }
                Value::Nil => {
                    return fail(pos, format!("nil pointer evaluating interface {{}}.{name}"));
                }
                other => {
                    return fail(
                        pos,
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    );
                }
            };
        }
        Ok(recv)
    }

    /// Calls a method with arguments on a library value (`$t.Format "2006"`).
    fn method(
        &mut self,
        dot: &Value,
        pos: usize,
        o: &Obj,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let mut vals = Vec::new();
        for a in args {
            vals.push(self.arg(dot, a, Ty::Any, pos)?);
        }
        vals.extend(fin);
        match funcs::method(o, name, &vals) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(ExecError {
                pos,
                msg: format!("error calling {name}: {}", e.msg),
                kind: e.kind,
            }),
            None => fail(
                pos,
                format!("can't evaluate field {name} in type {}", o.type_name()),
            ),
        }
    }

    /// Evaluates an operand passed to a parameter of type `ty`.
    fn arg(&mut self, dot: &Value, a: &Arg, ty: Ty, pos: usize) -> R<Value> {
        match a {
            Arg::Dot => validate(pos, dot.clone(), ty),
            Arg::Nil => match ty {
                Ty::Any | Ty::Reflect | Ty::List | Ty::Map => Ok(Value::Nil),
                _ => fail(pos, format!("cannot assign nil to {}", ty.name())),
            },
            Arg::Field(names) => {
                let v = self.field_chain(dot, pos, dot.clone(), names, &[], None)?;
                validate(pos, v, ty)
            }
            Arg::Var(name, names) => {
                let v = self.var(pos, name)?;
                let v = if names.is_empty() {
                    v
                } else {
                    self.field_chain(dot, pos, v, names, &[], None)?
                };
                validate(pos, v, ty)
            }
            Arg::Pipe(p) => {
                let v = self.pipeline(dot, p)?;
                validate(pos, v, ty)
            }
            Arg::Chain(inner, names) => {
                if matches!(**inner, Arg::Nil) {
                    return fail(pos, "indirection through explicit nil");
                }
                let recv = self.arg(dot, inner, Ty::Any, pos)?;
                let v = self.field_chain(dot, pos, recv, names, &[], None)?;
                validate(pos, v, ty)
            }
            Arg::Ident(name) => {
                let v = self.call(dot, pos, name, &[], None)?;
                validate(pos, v, ty)
            }
            Arg::Bool(b) => match ty {
                Ty::Bool | Ty::Any | Ty::Reflect => Ok(Value::Bool(*b)),
                _ => fail(pos, format!("expected {}; found {b}", ty.name())),
            },
            Arg::Str(s) => match ty {
                Ty::Str | Ty::Any | Ty::Reflect | Ty::HashAlgorithm => Ok(Value::Str(s.clone())),
                _ => fail(pos, format!("expected {}; found a string", ty.name())),
            },
            Arg::Number(n) => match ty {
                Ty::Int => match n.int {
                    Some(i) => Ok(Value::Int(i)),
                    None => fail(pos, format!("expected integer; found {}", n.text)),
                },
                Ty::Int64 => match n.int {
                    Some(i) => Ok(Value::Int64(i)),
                    None => fail(pos, format!("expected integer; found {}", n.text)),
                },
                Ty::Float => match n.float {
                    Some(f) => Ok(Value::Float(f)),
                    None => fail(pos, format!("expected float; found {}", n.text)),
                },
                Ty::Any | Ty::Reflect => ideal(pos, n),
                _ => fail(pos, format!("expected {}; found {}", ty.name(), n.text)),
            },
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        pos: usize,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let Some(f) = funcs::lookup(name) else {
            return fail(pos, format!("{name:?} is not a defined function"));
        };
        let Func {
            params,
            variadic,
            call,
        } = f;
        let n_in = args.len() + usize::from(fin.is_some());
        if let Some(vty) = variadic {
            let _ = vty;
            if n_in < params.len() {
                return fail(
                    pos,
                    format!(
                        "wrong number of args for {name}: want at least {} got {}",
                        params.len(),
                        n_in
                    ),
                );
            }
        } else if n_in != params.len() {
            return fail(
                pos,
                format!(
                    "wrong number of args for {name}: want {} got {}",
                    params.len(),
                    n_in
                ),
            );
        }
        let ty_at = |i: usize| params.get(i).copied().or(variadic).unwrap_or(Ty::Any);
        // and/or evaluate their operands lazily.
        if name == "and" || name == "or" {
            let mut v = Value::Nil;
            for a in args {
                v = self.arg(dot, a, Ty::Any, pos)?;
                if v.truthy() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut vals = Vec::with_capacity(n_in);
        for (i, a) in args.iter().enumerate() {
            vals.push(self.arg(dot, a, ty_at(i), pos)?);
        }
        if let Some(f) = fin {
            vals.push(validate(pos, f, ty_at(args.len()))?);
        }
        call(&mut self.budget, vals).map_err(|e| ExecError {
            pos,
            msg: format!("error calling {name}: {}", e.msg),
            kind: e.kind,
        })
    }
}

/// A field or zero-argument method of a library value.
fn obj_field(o: &Obj, name: &str) -> Option<Value> {
    funcs::method(o, name, &[]).and_then(Result::ok)
}

fn ideal(pos: usize, n: &Number) -> R<Value> {
    if n.is_float_literal() {
        return Ok(Value::Float(n.float.unwrap_or(0.0)));
    }
    match n.int {
        Some(i) => Ok(Value::Int(i)),
        None if n.uint_only => fail(pos, format!("{} overflows int", n.text)),
        None => Ok(Value::Float(n.float.unwrap_or(0.0))),
    }
}

fn validate(pos: usize, v: Value, ty: Ty) -> R<Value> {
    let ok = matches!(
        (ty, &v),
        (Ty::Any | Ty::Reflect, _)
            | (Ty::Str, Value::Str(_))
            | (Ty::Int, Value::Int(_))
            | (Ty::Int64, Value::Int64(_))
            | (Ty::Float, Value::Float(_))
            | (Ty::Bool, Value::Bool(_))
            | (Ty::List, Value::List(_, ListKind::Any) | Value::Nil)
            | (Ty::Strings, Value::List(_, ListKind::Strings) | Value::Nil)
            | (Ty::Map, Value::Map(_, MapKind::Any) | Value::Nil)
    ) || match (ty, &v) {
        (Ty::Time, Value::Obj(o)) => matches!(**o, Obj::Time(_)),
        (Ty::Cert, Value::Obj(o)) => matches!(**o, Obj::Cert { .. }),
        _ => false,
    };
    if ok {
        return Ok(v);
    }
    if let Value::Nil = v {
        return fail(pos, format!("invalid value; expected {}", ty.name()));
    }
    fail(
        pos,
        format!(
            "wrong type for value; expected {}; got {}",
            ty.name(),
            v.type_name()
        ),
    )
}

/// Wraps the provider data (`map[string]string`) as dot.
pub fn data_value(data: impl IntoIterator<Item = (String, Vec<u8>)>) -> Value {
    let m = data
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), Value::Str(Rc::from(v))))
        .collect();
    Value::Map(Rc::new(std::cell::RefCell::new(m)), MapKind::Strings)
}
