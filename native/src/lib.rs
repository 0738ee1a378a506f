//! tu-analytics' native Avro transcoder.
//!
//! Polars' Rust Avro reader is fast but refuses unions of several non-null branches (the published
//! Streaming API's `ParsedValue` and `CanMessageValues`). This module walks each Confluent-framed
//! record once against a program compiled from its writer schema (in Python, `_decode/_plan.py`)
//! and writes the same record in a reader-friendly layout:
//!
//! * a union of several non-null branches becomes `["null", {b1: ["null", T1], b2: ...}]`:
//!   one nullable field per branch, exactly one set;
//! * fields marked "drop" (the per-record unit strings of insight records) are not written; the
//!   first value seen per field is returned instead, so units are kept once, not per row;
//! * everything else is copied byte for byte.
//!
//! The walk also validates each record completely (varints, lengths, UTF-8, enum and union
//! indexes, no trailing bytes), so a bad record is found here, by its position, with no bisection.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

enum Node {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Fixed(usize),
    Enum(i64),
    Array(Box<Node>),
    Map(Box<Node>),
    Record(Vec<Field>),
    /// A union copied as is (at most one non-null branch).
    Union(Vec<Node>),
    /// A union of several non-null branches, written as a nullable record of nullable branches.
    Split(Vec<Node>),
}

struct Field {
    node: Node,
    slot: Option<usize>,
}

type Walk<T> = Result<T, ()>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Walk<i64> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(())?;
            self.pos += 1;
            z |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(())
    }

    fn take(&mut self, n: usize) -> Walk<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(())?;
        let out = self.buf.get(self.pos..end).ok_or(())?;
        self.pos = end;
        Ok(out)
    }

    fn len(&mut self) -> Walk<usize> {
        usize::try_from(self.varint()?).map_err(|_| ())
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn put_varint(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7F {
        out.push((z as u8 & 0x7F) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

struct Walker<'a, 's> {
    rd: Reader<'a>,
    out: &'s mut Vec<u8>,
    seen: &'s mut [Option<Vec<u8>>],
}

impl<'a, 's> Walker<'a, 's> {
    /// Copy the input from `start` to the current position.
    fn copy_from(&mut self, start: usize) {
        self.out.extend_from_slice(&self.rd.buf[start..self.rd.pos]);
    }

    fn walk(&mut self, node: &Node) -> Walk<()> {
        let start = self.rd.pos;
        match node {
            Node::Null => {}
            Node::Bool => {
                if self.rd.take(1)?[0] > 1 {
                    return Err(());
                }
                self.copy_from(start);
            }
            Node::Int => {
                i32::try_from(self.rd.varint()?).map_err(|_| ())?;
                self.copy_from(start);
            }
            Node::Long => {
                self.rd.varint()?;
                self.copy_from(start);
            }
            Node::Float => self.fixed(4, start)?,
            Node::Double => self.fixed(8, start)?,
            Node::Fixed(n) => self.fixed(*n, start)?,
            Node::Bytes => {
                let n = self.rd.len()?;
                self.fixed(n, start)?;
            }
            Node::Str => {
                self.string()?;
                self.copy_from(start);
            }
            Node::Enum(n) => {
                let i = self.rd.varint()?;
                if i < 0 || i >= *n {
                    return Err(());
                }
                self.copy_from(start);
            }
            Node::Array(item) => self.blocks(item, false)?,
            Node::Map(value) => self.blocks(value, true)?,
            Node::Record(fields) => {
                for f in fields {
                    match f.slot {
                        None => self.walk(&f.node)?,
                        Some(slot) => self.drop_string(&f.node, slot)?,
                    }
                }
            }
            Node::Union(branches) => {
                let b = self.branch(branches)?;
                self.copy_from(start);
                self.walk(b)?;
            }
            Node::Split(branches) => self.split(branches)?,
        }
        Ok(())
    }

    fn fixed(&mut self, n: usize, start: usize) -> Walk<()> {
        self.rd.take(n)?;
        self.copy_from(start);
        Ok(())
    }

    fn string(&mut self) -> Walk<&'a [u8]> {
        let n = self.rd.len()?;
        let s = self.rd.take(n)?;
        std::str::from_utf8(s).map_err(|_| ())?;
        Ok(s)
    }

    fn branch<'n>(&mut self, branches: &'n [Node]) -> Walk<&'n Node> {
        let i = self.rd.varint()?;
        usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or(())
    }

    /// Avro blocks: a count (negative: followed by a byte size), items, until a zero count.
    /// Written back as plain positive counts (the byte size may change with the items).
    fn blocks(&mut self, item: &Node, is_map: bool) -> Walk<()> {
        loop {
            let mut count = self.rd.varint()?;
            if count == 0 {
                self.out.push(0);
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or(())?;
                self.rd.varint()?;
            }
            // Every native-capable item takes at least one byte: a larger count is corrupt.
            if count as u64 > self.rd.remaining() as u64 {
                return Err(());
            }
            put_varint(self.out, count);
            for _ in 0..count {
                if is_map {
                    let start = self.rd.pos;
                    self.string()?;
                    self.copy_from(start);
                }
                self.walk(item)?;
            }
        }
    }

    fn split(&mut self, branches: &[Node]) -> Walk<()> {
        let i = self.rd.varint()?;
        let chosen = usize::try_from(i).ok().filter(|&i| i < branches.len()).ok_or(())?;
        if matches!(branches[chosen], Node::Null) {
            self.out.push(0);
            return Ok(());
        }
        self.out.push(2);
        for (j, b) in branches.iter().enumerate() {
            if matches!(b, Node::Null) {
                continue;
            }
            if j == chosen {
                self.out.push(2);
                self.walk(b)?;
            } else {
                self.out.push(0);
            }
        }
        Ok(())
    }

    /// A dropped string (or nullable string) field: validated, kept once in its slot.
    fn drop_string(&mut self, node: &Node, slot: usize) -> Walk<()> {
        let node = match node {
            Node::Union(branches) => self.branch(branches)?,
            other => other,
        };
        match node {
            Node::Null => Ok(()),
            Node::Str => {
                let s = self.string()?;
                if self.seen[slot].is_none() {
                    self.seen[slot] = Some(s.to_vec());
                }
                Ok(())
            }
            _ => Err(()),
        }
    }
}

fn compile(spec: &Bound<'_, PyAny>, slots: &mut usize) -> PyResult<Node> {
    let t = spec.downcast::<PyTuple>()?;
    let kind: String = t.get_item(0)?.extract()?;
    let arg = |i: usize| t.get_item(i);
    let nodes = |list: Bound<'_, PyAny>, slots: &mut usize| -> PyResult<Vec<Node>> {
        list.downcast::<PyList>()?.iter().map(|b| compile(&b, slots)).collect()
    };
    Ok(match kind.as_str() {
        "null" => Node::Null,
        "boolean" => Node::Bool,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::Str,
        "fixed" => Node::Fixed(arg(1)?.extract()?),
        "enum" => Node::Enum(arg(1)?.extract()?),
        "array" => Node::Array(Box::new(compile(&arg(1)?, slots)?)),
        "map" => Node::Map(Box::new(compile(&arg(1)?, slots)?)),
        "union" => Node::Union(nodes(arg(1)?, slots)?),
        "split" => Node::Split(nodes(arg(1)?, slots)?),
        "record" => {
            let mut fields = Vec::new();
            for f in arg(1)?.downcast::<PyList>()?.iter() {
                let f = f.downcast::<PyTuple>()?;
                let node = compile(&f.get_item(0)?, slots)?;
                let slot = if f.get_item(1)?.extract::<bool>()? {
                    *slots += 1;
                    Some(*slots - 1)
                } else {
                    None
                };
                fields.push(Field { node, slot });
            }
            Node::Record(fields)
        }
        other => return Err(PyValueError::new_err(format!("unknown node kind {other:?}"))),
    })
}

/// A writer schema compiled for `transcode`; `slots` dropped fields, numbered in walk order.
#[pyclass(frozen, module = "tu_analytics._native")]
struct Program {
    root: Node,
    #[pyo3(get)]
    slots: usize,
}

#[pymethods]
impl Program {
    #[new]
    fn new(spec: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut slots = 0;
        let root = compile(spec, &mut slots)?;
        Ok(Program { root, slots })
    }
}

type Transcoded = (Vec<u8>, Vec<usize>, Vec<Option<Vec<u8>>>);

fn run(prog: &Program, values: &[&[u8]], skip: usize, sentinel: &[u8]) -> Transcoded {
    let total: usize = values.iter().map(|v| v.len() + sentinel.len()).sum();
    let mut out = Vec::with_capacity(total + total / 4);
    let mut bad = Vec::new();
    let mut seen = vec![None; prog.slots];
    for (i, v) in values.iter().enumerate() {
        let mark = out.len();
        let ok = v.len() >= skip && {
            out.extend_from_slice(&v[..skip]);
            let mut w = Walker { rd: Reader { buf: v, pos: skip }, out: &mut out, seen: &mut seen };
            w.walk(&prog.root).is_ok() && w.rd.pos == v.len()
        };
        if ok {
            out.extend_from_slice(sentinel);
        } else {
            out.truncate(mark);
            bad.push(i);
        }
    }
    (out, bad, seen)
}

/// Each value's first `skip` bytes, its body transcoded, then `sentinel`; bad values are left
/// out. Returns (data, positions of bad values, first string seen per dropped-field slot).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn transcode<'py>(
    py: Python<'py>,
    prog: &Bound<'py, Program>,
    values: &Bound<'py, PyList>,
    skip: usize,
    sentinel: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Vec<usize>, Vec<Option<String>>)> {
    let held: Vec<Bound<'py, PyBytes>> = values
        .iter()
        .map(|v| v.downcast_into::<PyBytes>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let prog = prog.get();
    // Pure byte work: other threads (other chunks) run meanwhile.
    let (out, bad, seen) = py.allow_threads(|| run(prog, &slices, skip, sentinel));
    let seen = seen
        .into_iter()
        .map(|s| s.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect();
    Ok((PyBytes::new(py, &out), bad, seen))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Program>()?;
    m.add_function(wrap_pyfunction!(transcode, m)?)?;
    Ok(())
}
