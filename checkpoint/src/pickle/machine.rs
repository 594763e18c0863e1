//! The pickle virtual machine: an iterative loop over opcodes that only ever builds values.
//!
//! Nothing is imported or called. What the callables of `REDUCE`/`NEWOBJ`/`INST`/`OBJ` and
//! the targets of `BUILD` and persistent ids mean is decided by a [`Hooks`] implementation
//! (see `crate::torch`), which interprets a short list of known names as data and leaves
//! every other class an inert [`Object`](super::Object).
//!
//! The machine never recurses, so nesting depth cannot overflow the native stack; the mark
//! depth, stack size, memo, node count and container lengths are bounded by [`Limits`].
//! Every opcode is charged to the read's [`Budget`] as work, and every value, container
//! element and memo entry as memory, before it is kept: a short program of duplicating
//! opcodes cannot build more than the budget.

use super::cost;
use super::decode::{long_to_i64, raw_unicode_escape, string_literal};
use super::memo::Memo;
use super::opcodes::*;
use super::value::{Graph, Node, Object, Value};
use crate::error::{Error, Result, clip};
use crate::limits::{Budget, Limits};

/// Opcodes executed between two charges of the work budget (charging each one would cost
/// an atomic operation per opcode).
const STEP_BATCH: u64 = 4096;

/// Why a hook refused its input.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The operands make no sense for the callable or target.
    Malformed(String),
    /// The graph reached [`Limits::max_objects`].
    GraphFull,
    /// A limit, the budget or a consistency check refused it with its own error.
    Refused(Error),
}

impl From<Error> for Fault {
    fn from(error: Error) -> Self {
        Fault::Refused(error)
    }
}

impl From<String> for Fault {
    fn from(reason: String) -> Self {
        Fault::Malformed(reason)
    }
}

/// How a callable was invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`/`NEWOBJ_EX`/`OBJ`/`INST`: `cls.__new__(cls, *args)` or a class call.
    New,
}

/// What gives meaning to the parts of a pickle that would run code in Python.
pub(crate) trait Hooks {
    /// `PERSID`/`BINPERSID`: resolve a persistent id (a storage, in torch files). Whatever
    /// it keeps is charged to `budget`.
    fn persistent_load(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        pid: Value,
    ) -> Result<Value, Fault>;
    /// Apply `callable` to `args` as data, charging what it builds to `budget`.
    fn call(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        callable: Value,
        args: Value,
        kind: CallKind,
    ) -> Result<Value, Fault>;
    /// `BUILD`: give `target` its `state`, charging what it keeps to `budget`.
    fn build(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        target: Value,
        state: Value,
    ) -> Result<(), Fault>;
}

/// The result of running one pickle.
#[derive(Debug)]
pub(crate) struct Run {
    pub value: Value,
    /// Bytes consumed, `STOP` included.
    pub consumed: usize,
}

/// Appends `items` to a container, paying for its growth first and keeping it within
/// [`Limits::max_container_len`].
fn extend<T>(
    container: &mut Vec<T>,
    items: Vec<T>,
    budget: &Budget,
    limits: &Limits,
) -> Result<()> {
    let len = container.len().saturating_add(items.len()) as u64;
    if len > limits.max_container_len {
        return Err(Error::limit(
            "container length",
            limits.max_container_len,
            len,
        ));
    }
    cost::grow(container, items.len(), budget, "pickle containers")?;
    container.extend(items);
    Ok(())
}

/// Runs the pickle at the start of `data` until its `STOP`.
///
/// `base_offset` is where `data` starts in its file, so errors name file offsets; `what`
/// names the pickle in truncation errors. What the program builds and does is charged to
/// `budget`.
pub(crate) fn run(
    data: &[u8],
    base_offset: u64,
    what: &str,
    graph: &mut Graph,
    hooks: &mut dyn Hooks,
    limits: &Limits,
    budget: &Budget,
) -> Result<Run> {
    let mut machine = Machine {
        input: Input {
            data,
            pos: 0,
            base: base_offset,
            what,
        },
        graph,
        hooks,
        limits,
        budget,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::default(),
        op_offset: 0,
        unpaid_steps: 0,
    };
    let value = machine.execute()?;
    budget.charge_steps("pickle opcodes", machine.unpaid_steps)?;
    Ok(Run {
        value,
        consumed: machine.input.pos,
    })
}

struct Input<'d> {
    data: &'d [u8],
    pos: usize,
    base: u64,
    what: &'d str,
}

impl<'d> Input<'d> {
    fn offset(&self, pos: usize) -> u64 {
        self.base.saturating_add(pos as u64)
    }

    fn truncated(&self) -> Error {
        Error::Truncated {
            what: self.what.to_string(),
            offset: self.offset(self.data.len()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'d [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Bytes up to the next `\n`, which is consumed but not returned.
    fn line(&mut self) -> Result<&'d [u8]> {
        let rest = self.data.get(self.pos..).ok_or_else(|| self.truncated())?;
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.truncated())?;
        let line = self.take(len)?;
        self.pos = self.pos.saturating_add(1);
        Ok(line)
    }
}

struct Machine<'d, 'g> {
    input: Input<'d>,
    graph: &'g mut Graph,
    hooks: &'g mut dyn Hooks,
    limits: &'g Limits,
    budget: &'g Budget,
    stack: Vec<Value>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: Memo,
    /// Offset of the opcode being executed, for errors.
    op_offset: usize,
    /// Opcodes executed since the work budget was last charged.
    unpaid_steps: u64,
}

impl Machine<'_, '_> {
    fn malformed(&self, reason: impl Into<String>) -> Error {
        Error::Pickle {
            offset: self.input.offset(self.op_offset),
            reason: reason.into(),
        }
    }

    fn fault(&self, fault: Fault) -> Error {
        match fault {
            Fault::Malformed(reason) => self.malformed(reason),
            Fault::GraphFull => Error::limit(
                "pickle objects",
                self.limits.max_objects,
                self.limits.max_objects.saturating_add(1),
            ),
            Fault::Refused(error) => error,
        }
    }

    /// Counts one opcode, charging the work budget once per batch.
    fn step(&mut self) -> Result<()> {
        self.unpaid_steps = self.unpaid_steps.saturating_add(1);
        if self.unpaid_steps >= STEP_BATCH {
            self.budget
                .charge_steps("pickle opcodes", self.unpaid_steps)?;
            self.unpaid_steps = 0;
        }
        Ok(())
    }

    fn alloc(&mut self, node: Node) -> Result<Value> {
        let cost = cost::node(&node, self.graph.len());
        self.budget.charge_memory("pickle values", cost)?;
        self.graph
            .alloc(node)
            .ok_or_else(|| self.fault(Fault::GraphFull))
    }

    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, value: Value) -> Result<()> {
        if self.stack.len() as u64 >= self.limits.max_stack {
            return Err(Error::limit(
                "pickle stack",
                self.limits.max_stack,
                self.limits.max_stack.saturating_add(1),
            ));
        }
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<Value> {
        if self.stack.len() <= self.base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let start = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        if start > self.stack.len() {
            return Err(self.malformed("MARK past the stack"));
        }
        Ok(self.stack.split_off(start))
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len as u64 > self.limits.max_container_len {
            return Err(Error::limit(
                "container length",
                self.limits.max_container_len,
                len as u64,
            ));
        }
        Ok(())
    }

    fn len_from_u64(&self, n: u64) -> Result<usize> {
        usize::try_from(n).map_err(|_| self.input.truncated())
    }

    /// Checks that `bytes` more fit in the memory budget before they are copied out of the
    /// program: the copy is paid for when its value is kept, which is too late to refuse
    /// a string of hundreds of megabytes.
    fn room_for(&self, bytes: usize) -> Result<()> {
        self.budget.check_memory("pickle values", bytes as u64)
    }

    fn utf8(&self, bytes: &[u8]) -> Result<Box<str>> {
        self.room_for(bytes.len())?;
        std::str::from_utf8(bytes)
            .map(Box::from)
            .map_err(|e| self.malformed(format!("invalid UTF-8 in a string: {e}")))
    }

    fn push_node(&mut self, node: Node) -> Result<()> {
        let value = self.alloc(node)?;
        self.push(value)
    }

    fn push_str_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let text = self.utf8(bytes)?;
        self.push_node(Node::Str(text))
    }

    /// Python 2 `str` payloads: UTF-8 when valid, else Latin-1 (every byte a code point).
    fn push_py2_string(&mut self, bytes: &[u8]) -> Result<()> {
        // Latin-1 bytes above 0x7f take two bytes of UTF-8.
        self.room_for(bytes.len().saturating_mul(2))?;
        let text: Box<str> = match std::str::from_utf8(bytes) {
            Ok(s) => s.into(),
            Err(_) => bytes
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into(),
        };
        self.push_node(Node::Str(text))
    }

    fn push_long(&mut self, bytes: &[u8]) -> Result<()> {
        match long_to_i64(bytes) {
            Some(i) => self.push(Value::Int(i)),
            None => {
                self.room_for(bytes.len())?;
                self.push_node(Node::BigInt(bytes.into()))
            }
        }
    }

    fn text_int(&self, line: &[u8]) -> Result<i64> {
        let text = std::str::from_utf8(line).map_err(|_| self.malformed("non-ASCII integer"))?;
        let text = text.trim().trim_end_matches('L');
        text.parse::<i64>()
            .map_err(|_| self.malformed(format!("bad or oversized integer {:?}", clip(text))))
    }

    fn memo_index(&self, line: &[u8]) -> Result<u64> {
        let index = self.text_int(line)?;
        u64::try_from(index).map_err(|_| self.malformed("negative memo index"))
    }

    fn memo_get(&mut self, index: u64) -> Result<()> {
        let value = self
            .memo
            .get(index)
            .ok_or_else(|| self.malformed(format!("memo entry {index} is missing")))?;
        self.push(value)
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let value = self.top()?;
        self.memo
            .put(index, value, self.limits.max_memo, self.budget)
    }

    fn global(&mut self, module: &[u8], name: &[u8]) -> Result<Value> {
        self.room_for(module.len().saturating_add(name.len()))?;
        let module = self.utf8(module)?;
        let name = self.utf8(name)?;
        self.alloc(Node::Global { module, name })
    }

    fn call(&mut self, callable: Value, args: Value, kind: CallKind) -> Result<()> {
        let value = self
            .hooks
            .call(self.graph, self.budget, callable, args, kind)
            .map_err(|f| self.fault(f))?;
        self.push(value)
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value> {
        self.check_len(items.len())?;
        self.alloc(Node::Tuple(items))
    }

    fn append(&mut self, target: Value, items: Vec<Value>) -> Result<()> {
        let len = match target {
            Value::Ref(id) => match self.graph.node_mut(id) {
                Some(Node::List(list))
                | Some(Node::Object(Object {
                    list_items: list, ..
                })) => Some(extend(list, items, self.budget, self.limits)),
                _ => None,
            },
            _ => None,
        };
        match len {
            Some(done) => done,
            None => Err(self.malformed(format!("APPEND to {}", self.describe(target)))),
        }
    }

    fn set_items(&mut self, target: Value, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let entries = match target {
            Value::Ref(id) => match self.graph.node_mut(id) {
                Some(Node::Dict(entries)) => Some(entries),
                Some(Node::Object(object)) => Some(&mut object.dict_items),
                _ => None,
            },
            _ => None,
        };
        let (budget, limits) = (self.budget, self.limits);
        let len = entries.map(|entries| {
            let mut iter = items.into_iter();
            let pairs = std::iter::from_fn(|| match (iter.next(), iter.next()) {
                (Some(k), Some(v)) => Some((k, v)),
                _ => None,
            });
            extend(entries, pairs.collect(), budget, limits)
        });
        match len {
            Some(done) => done,
            None => Err(self.malformed(format!("SETITEM on {}", self.describe(target)))),
        }
    }

    fn add_items(&mut self, target: Value, new: Vec<Value>) -> Result<()> {
        let len = match target {
            Value::Ref(id) => match self.graph.node_mut(id) {
                Some(Node::Set {
                    items,
                    frozen: false,
                }) => Some(extend(items, new, self.budget, self.limits)),
                _ => None,
            },
            _ => None,
        };
        match len {
            Some(done) => done,
            None => Err(self.malformed(format!("ADDITEMS on {}", self.describe(target)))),
        }
    }

    /// What a value is, for messages, never longer than a short quote.
    fn describe(&self, value: Value) -> String {
        clip(&self.graph.describe(value))
    }

    fn execute(&mut self) -> Result<Value> {
        loop {
            self.op_offset = self.input.pos;
            self.step()?;
            let op = self.input.u8()?;
            match op {
                PROTO => {
                    let version = self.input.u8()?;
                    if version > HIGHEST_PROTOCOL {
                        return Err(self.malformed(format!("pickle protocol {version}")));
                    }
                }
                FRAME => {
                    // Frames only group opcodes for buffered readers; the content follows.
                    self.input.u64()?;
                }
                STOP => return self.pop(),

                MARK => {
                    if self.marks.len() as u64 >= self.limits.max_depth {
                        return Err(Error::limit(
                            "pickle nesting depth",
                            self.limits.max_depth,
                            self.limits.max_depth.saturating_add(1),
                        ));
                    }
                    self.marks.push(self.stack.len());
                }
                POP => {
                    if self.stack.len() > self.base() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    let top = self.top()?;
                    self.push(top)?;
                }

                NONE => self.push(Value::None)?,
                NEWTRUE => self.push(Value::Bool(true))?,
                NEWFALSE => self.push(Value::Bool(false))?,
                BININT => {
                    let v = self.input.i32()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                BININT1 => {
                    let v = self.input.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                BININT2 => {
                    let v = self.input.u16()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                LONG1 => {
                    let n = usize::from(self.input.u8()?);
                    let bytes = self.input.take(n)?;
                    self.push_long(bytes)?;
                }
                LONG4 => {
                    let n = self.input.i32()?;
                    let n =
                        usize::try_from(n).map_err(|_| self.malformed("negative LONG4 length"))?;
                    let bytes = self.input.take(n)?;
                    self.push_long(bytes)?;
                }
                INT => {
                    let line = self.input.line()?;
                    match line {
                        b"00" => self.push(Value::Bool(false))?,
                        b"01" => self.push(Value::Bool(true))?,
                        _ => {
                            let v = self.text_int(line)?;
                            self.push(Value::Int(v))?;
                        }
                    }
                }
                LONG => {
                    let line = self.input.line()?;
                    let v = self.text_int(line)?;
                    self.push(Value::Int(v))?;
                }
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.input.array()?);
                    self.push(Value::Float(v))?;
                }
                FLOAT => {
                    let line = self.input.line()?;
                    let v = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or_else(|| self.malformed("bad FLOAT literal"))?;
                    self.push(Value::Float(v))?;
                }

                BINUNICODE => {
                    let n = self.input.u32()?;
                    let n = self.len_from_u64(u64::from(n))?;
                    let bytes = self.input.take(n)?;
                    self.push_str_bytes(bytes)?;
                }
                SHORT_BINUNICODE => {
                    let n = usize::from(self.input.u8()?);
                    let bytes = self.input.take(n)?;
                    self.push_str_bytes(bytes)?;
                }
                BINUNICODE8 => {
                    let n = self.input.u64()?;
                    let n = self.len_from_u64(n)?;
                    let bytes = self.input.take(n)?;
                    self.push_str_bytes(bytes)?;
                }
                UNICODE => {
                    let line = self.input.line()?;
                    self.room_for(line.len().saturating_mul(2))?;
                    let text = raw_unicode_escape(line)
                        .ok_or_else(|| self.malformed("bad raw-unicode-escape string"))?;
                    self.push_node(Node::Str(text.into()))?;
                }
                BINSTRING => {
                    let n = self.input.i32()?;
                    let n = usize::try_from(n)
                        .map_err(|_| self.malformed("negative BINSTRING length"))?;
                    let bytes = self.input.take(n)?;
                    self.push_py2_string(bytes)?;
                }
                SHORT_BINSTRING => {
                    let n = usize::from(self.input.u8()?);
                    let bytes = self.input.take(n)?;
                    self.push_py2_string(bytes)?;
                }
                STRING => {
                    let line = self.input.line()?;
                    self.room_for(line.len())?;
                    let bytes =
                        string_literal(line).ok_or_else(|| self.malformed("bad STRING literal"))?;
                    self.push_py2_string(&bytes)?;
                }
                BINBYTES => {
                    let n = self.input.u32()?;
                    let n = self.len_from_u64(u64::from(n))?;
                    let bytes = self.input.take(n)?;
                    self.room_for(n)?;
                    self.push_node(Node::Bytes(bytes.into()))?;
                }
                SHORT_BINBYTES => {
                    let n = usize::from(self.input.u8()?);
                    let bytes = self.input.take(n)?;
                    self.room_for(n)?;
                    self.push_node(Node::Bytes(bytes.into()))?;
                }
                BINBYTES8 | BYTEARRAY8 => {
                    let n = self.input.u64()?;
                    let n = self.len_from_u64(n)?;
                    let bytes = self.input.take(n)?;
                    self.room_for(n)?;
                    self.push_node(Node::Bytes(bytes.into()))?;
                }

                EMPTY_LIST => self.push_node(Node::List(Vec::new()))?,
                EMPTY_TUPLE => self.push_node(Node::Tuple(Vec::new()))?,
                EMPTY_DICT => self.push_node(Node::Dict(Vec::new()))?,
                EMPTY_SET => self.push_node(Node::Set {
                    items: Vec::new(),
                    frozen: false,
                })?,
                LIST => {
                    let items = self.pop_mark()?;
                    self.check_len(items.len())?;
                    self.push_node(Node::List(items))?;
                }
                TUPLE => {
                    let items = self.pop_mark()?;
                    let tuple = self.tuple(items)?;
                    self.push(tuple)?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1) + 1;
                    if self.stack.len() < self.base().saturating_add(n) {
                        return Err(self.malformed("stack underflow"));
                    }
                    let start = self.stack.len().saturating_sub(n);
                    let items = self.stack.split_off(start);
                    let tuple = self.tuple(items)?;
                    self.push(tuple)?;
                }
                DICT => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err(self.malformed("DICT with an odd number of values"));
                    }
                    self.check_len(items.len() / 2)?;
                    let mut entries = Vec::with_capacity(items.len() / 2);
                    let mut iter = items.into_iter();
                    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                        entries.push((k, v));
                    }
                    self.push_node(Node::Dict(entries))?;
                }
                FROZENSET => {
                    let items = self.pop_mark()?;
                    self.check_len(items.len())?;
                    self.push_node(Node::Set {
                        items,
                        frozen: true,
                    })?;
                }
                APPEND => {
                    let value = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![value])?;
                }
                APPENDS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?;
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![key, value])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                ADDITEMS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.add_items(target, items)?;
                }

                GET => {
                    let line = self.input.line()?;
                    let index = self.memo_index(line)?;
                    self.memo_get(index)?;
                }
                BINGET => {
                    let index = self.input.u8()?;
                    self.memo_get(u64::from(index))?;
                }
                LONG_BINGET => {
                    let index = self.input.u32()?;
                    self.memo_get(u64::from(index))?;
                }
                PUT => {
                    let line = self.input.line()?;
                    let index = self.memo_index(line)?;
                    self.memo_put(index)?;
                }
                BINPUT => {
                    let index = self.input.u8()?;
                    self.memo_put(u64::from(index))?;
                }
                LONG_BINPUT => {
                    let index = self.input.u32()?;
                    self.memo_put(u64::from(index))?;
                }
                MEMOIZE => {
                    let index = self.memo.count;
                    self.memo_put(index)?;
                }

                GLOBAL => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    let global = self.global(module, name)?;
                    self.push(global)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.graph.str(module), self.graph.str(name))
                    else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    self.room_for(module.len().saturating_add(name.len()))?;
                    let node = Node::Global {
                        module: module.into(),
                        name: name.into(),
                    };
                    self.push_node(node)?;
                }
                REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args, CallKind::Reduce)?;
                }
                NEWOBJ => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.call(class, args, CallKind::New)?;
                }
                NEWOBJ_EX => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.call(class, args, CallKind::New)?;
                }
                INST => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    let items = self.pop_mark()?;
                    let class = self.global(module, name)?;
                    let args = self.tuple(items)?;
                    self.call(class, args, CallKind::New)?;
                }
                OBJ => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.malformed("OBJ without a class"));
                    }
                    let class = items.remove(0);
                    let args = self.tuple(items)?;
                    self.call(class, args, CallKind::New)?;
                }
                BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.hooks
                        .build(self.graph, self.budget, target, state)
                        .map_err(|f| self.fault(f))?;
                }
                BINPERSID => {
                    let pid = self.pop()?;
                    let value = self
                        .hooks
                        .persistent_load(self.graph, self.budget, pid)
                        .map_err(|f| self.fault(f))?;
                    self.push(value)?;
                }
                PERSID => {
                    let line = self.input.line()?;
                    let text = self.utf8(line)?;
                    let pid = self.alloc(Node::Str(text))?;
                    let value = self
                        .hooks
                        .persistent_load(self.graph, self.budget, pid)
                        .map_err(|f| self.fault(f))?;
                    self.push(value)?;
                }
                READONLY_BUFFER => {
                    // Marks the buffer on top read-only: nothing to do for plain data.
                    self.top()?;
                }
                // The extension registry and out-of-band buffers need context a file
                // cannot carry safely; refuse them like unknown opcodes.
                EXT1 | EXT2 | EXT4 | NEXT_BUFFER => {
                    return Err(Error::UnsupportedOpcode {
                        opcode: op,
                        offset: self.input.offset(self.op_offset),
                    });
                }
                _ => {
                    return Err(Error::UnsupportedOpcode {
                        opcode: op,
                        offset: self.input.offset(self.op_offset),
                    });
                }
            }
        }
    }
}
