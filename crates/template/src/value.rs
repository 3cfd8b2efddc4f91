//! Template values: the subset of Go's dynamic types that templates over provider data and the
//! function library produce. Strings are byte strings, as in Go.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A Go byte string.
pub type Bytes = Rc<[u8]>;

/// The element type of a map, which decides what a missing key yields (`index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `map[string]string` (the provider data ESO passes).
    Strings,
    /// `map[string]interface{}` (dict, fromJson, ...).
    Any,
}

/// The element type of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `[]interface{}`.
    Any,
    /// `[]string`.
    Strings,
    /// `[]int`.
    Ints,
}

/// A shared, mutable map: Go maps are references, and sprig's `set` mutates them.
pub type MapRef = Rc<RefCell<BTreeMap<Vec<u8>, Value>>>;

/// A template value.
#[derive(Clone, Debug)]
pub enum Value {
    /// Go's nil interface.
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `int64`.
    Int64(i64),
    /// `uint8` (indexing a string yields a byte).
    Byte(u8),
    /// `float64`.
    Float(f64),
    /// `string` (bytes, not necessarily UTF-8).
    Str(Bytes),
    /// A slice.
    List(Rc<Vec<Value>>, ListKind),
    /// A string-keyed map, iterated in sorted key order.
    Map(MapRef, MapKind),
    /// A Go value of a library type (`time.Time`, `*semver.Version`, sprig's certificate).
    Obj(Rc<Obj>),
}

/// Values of Go library types that functions return and accept.
#[derive(Clone, Debug)]
pub enum Obj {
    /// `time.Time`.
    Time(crate::funcs::time::GoTime),
    /// `*semver.Version` (Masterminds semver v3).
    Version(crate::funcs::semver::Version),
    /// sprig's `certificate` struct: PEM certificate and key.
    Cert {
        /// The `Cert` field.
        cert: Bytes,
        /// The `Key` field.
        key: Bytes,
    },
}

impl Obj {
    /// Go's type name, as `%T` prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Obj::Time(_) => "time.Time",
            Obj::Version(_) => "*semver.Version",
            Obj::Cert { .. } => "sprig.certificate",
        }
    }

    /// How `%v` prints the value (`String()` where the type has one).
    pub fn display(&self) -> Vec<u8> {
        match self {
            Obj::Time(t) => t.string().into_bytes(),
            Obj::Version(v) => v.string().into_bytes(),
            Obj::Cert { cert, key } => [&b"{"[..], cert, b" ", key, b"}"].concat(),
        }
    }
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<[u8]>) -> Value {
        Value::Str(Rc::from(s.as_ref()))
    }

    /// A `[]interface{}` value.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v), ListKind::Any)
    }

    /// A `[]string` value.
    pub fn strings(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v), ListKind::Strings)
    }

    /// A `map[string]interface{}` value.
    pub fn map(m: BTreeMap<Vec<u8>, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)), MapKind::Any)
    }

    /// Go's truth: the zero value of a type is false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::Int64(i) => *i != 0,
            Value::Byte(b) => *b != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l, _) => !l.is_empty(),
            Value::Map(m, _) => !m.borrow().is_empty(),
            Value::Obj(_) => true,
        }
    }

    /// Go's type name, as `%T` prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Int64(_) => "int64",
            Value::Byte(_) => "uint8",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_, ListKind::Any) => "[]interface {}",
            Value::List(_, ListKind::Strings) => "[]string",
            Value::List(_, ListKind::Ints) => "[]int",
            Value::Map(_, MapKind::Any) => "map[string]interface {}",
            Value::Map(_, MapKind::Strings) => "map[string]string",
            Value::Obj(o) => o.type_name(),
        }
    }

    /// Go's reflect kind name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Int64(_) => "int64",
            Value::Byte(_) => "uint8",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(..) => "slice",
            Value::Map(..) => "map",
            Value::Obj(o) => match **o {
                Obj::Version(_) => "ptr",
                _ => "struct",
            },
        }
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any integer type.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Int64(i) => Some(*i),
            Value::Byte(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}

/// Values nest without bound (`$l = list $l` in a loop); dropping them iteratively keeps a deep
/// value from overflowing the stack.
impl Drop for Value {
    fn drop(&mut self) {
        let mut stack = Vec::new();
        take_children(self, &mut stack);
        while let Some(mut v) = stack.pop() {
            take_children(&mut v, &mut stack);
        }
    }
}

fn take_children(v: &mut Value, stack: &mut Vec<Value>) {
    match v {
        Value::List(l, _) => {
            if let Some(items) = Rc::get_mut(l) {
                stack.append(items);
            }
        }
        Value::Map(m, _) => {
            if let Some(cell) = Rc::get_mut(m) {
                stack.extend(std::mem::take(cell.get_mut()).into_values());
            }
        }
        _ => {}
    }
}
