//! The Go `text/template` engine: lexer and parser (`parse`), executor (`exec`) and Go's `fmt`
//! formatting of values (`fmt`).

pub mod exec;
pub mod fmt;
pub mod parse;
