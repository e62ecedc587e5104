//! Fault injection: make one hostcall of a guest answer a chosen status in a chosen phase.
//!
//! The `proxy-wasm-host` crate links its host functions itself (no hook to wrap them), so the
//! guest is rewritten instead: every call of the named import goes to a stub appended to the
//! module. The stub first asks the host whether a fault is armed, by reading the property
//! [`ORACLE`] (path bytes written to scratch memory below the stack pointer), and the host
//! answers from the stream state with the phase it knows ([`Invocation::callback`]): the
//! armed status, or `EMPTY` for "call through". So one rewritten module per hostcall serves
//! every phase and status.
//!
//! [`Invocation::callback`]: proxy_wasm_host::abi::v0_2_1::Invocation

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context as _};
use proxy_wasm_host::abi::v0_2_1::types::Status;
use proxy_wasm_host::abi::v0_2_1::Callback;
use wasm_encoder::reencode::{self, utils, Reencode};
use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType};
use wasmparser::{Parser, Payload, TypeRef};

/// The property a rewritten guest reads to learn whether its fault is armed (16 bytes).
pub const ORACLE: &[u8; 16] = b"fleetgate-faults";
const ORACLE_IMPORT: &str = "proxy_get_property";
const EMPTY: i32 = Status::Empty as i32;

/// A fault: in `phase`, the rewritten hostcall answers `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub phase: Callback,
    pub status: Status,
}

/// Shared by a host and every stream state it lends: the armed fault and how often it fired.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<Mutex<(Option<Fault>, u64)>>);

impl FaultSwitch {
    /// Arm a fault (or disarm with `None`).
    pub fn arm(&self, fault: Option<Fault>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 = fault;
    }

    /// How many hostcalls the armed faults failed so far.
    pub fn fired(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// The oracle's answer during `callback`.
    pub(crate) fn answer(&self, callback: Option<Callback>) -> Status {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0 {
            Some(f) if Some(f.phase) == callback => {
                state.1 += 1;
                f.status
            }
            _ => Status::Empty,
        }
    }
}

/// The import layout of a module: function imports in order, defined functions, types.
struct Layout {
    imports: Vec<(String, u32)>,
    defined: u32,
    params: Vec<usize>,
}

fn layout(wasm: &[u8]) -> anyhow::Result<Layout> {
    let mut l = Layout {
        imports: Vec::new(),
        defined: 0,
        params: Vec::new(),
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::TypeSection(types) => {
                for ty in types.into_iter_err_on_gc_types() {
                    l.params.push(ty?.params().len());
                }
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import?;
                    if let TypeRef::Func(ty) = import.ty {
                        l.imports.push((import.name.to_string(), ty));
                    }
                }
            }
            Payload::FunctionSection(f) => l.defined = f.count(),
            Payload::GlobalSection(globals) => {
                let sp = globals.into_iter().next().context("no globals")??;
                if !sp.ty.mutable || sp.ty.content_type != wasmparser::ValType::I32 {
                    bail!("global 0 is not a stack pointer");
                }
            }
            _ => {}
        }
    }
    Ok(l)
}

/// The `env.proxy_*` functions a module imports, in import order.
pub fn hostcalls(wasm: &[u8]) -> anyhow::Result<Vec<String>> {
    let l = layout(wasm)?;
    Ok(l.imports
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.starts_with("proxy_"))
        .collect())
}

/// `wasm` with every call of import `name` going through a fault stub.
pub fn with_faulty_import(wasm: &[u8], name: &str) -> anyhow::Result<Vec<u8>> {
    let l = layout(wasm)?;
    let index_of = |n: &str| l.imports.iter().position(|(i, _)| i == n);
    let target = index_of(name).with_context(|| format!("the guest does not import {name}"))?;
    let oracle = index_of(ORACLE_IMPORT).context("the guest does not import the oracle")?;
    let stub_type = l.imports[target].1;
    let params = l.params[stub_type as usize] as u32;
    let mut r = Redirect {
        target: target as u32,
        stub: l.imports.len() as u32 + l.defined,
        stub_type,
        body: stub(params, oracle as u32, target as u32),
    };
    let mut module = wasm_encoder::Module::new();
    r.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| anyhow::anyhow!("re-encoding: {e:?}"))?;
    Ok(module.finish())
}

/// The stub: ask the oracle; an armed status is the answer, else call the real import.
fn stub(params: u32, oracle: u32, target: u32) -> Function {
    let (base, status) = (params, params + 1);
    let mut f = Function::new([(2, ValType::I32)]);
    let word = |i: usize| i64::from_le_bytes(ORACLE[i..i + 8].try_into().expect("8 bytes"));
    let store = |offset| {
        Instruction::I64Store(MemArg {
            offset,
            align: 3,
            memory_index: 0,
        })
    };
    let mut code = vec![
        // Scratch memory below the stack pointer: free, and the stub's own frame anyway.
        Instruction::GlobalGet(0),
        Instruction::I32Const(64),
        Instruction::I32Sub,
        Instruction::LocalSet(base),
        Instruction::LocalGet(base),
        Instruction::I64Const(word(0)),
        store(0),
        Instruction::LocalGet(base),
        Instruction::I64Const(word(8)),
        store(8),
        Instruction::LocalGet(base),
        Instruction::I32Const(ORACLE.len() as i32),
        Instruction::LocalGet(base),
        Instruction::I32Const(16),
        Instruction::I32Add,
        Instruction::LocalGet(base),
        Instruction::I32Const(24),
        Instruction::I32Add,
        Instruction::Call(oracle),
        Instruction::LocalTee(status),
        Instruction::I32Const(EMPTY),
        Instruction::I32Ne,
        Instruction::If(BlockType::Empty),
        Instruction::LocalGet(status),
        Instruction::Return,
        Instruction::End,
    ];
    code.extend((0..params).map(Instruction::LocalGet));
    code.extend([Instruction::Call(target), Instruction::End]);
    for i in &code {
        f.instruction(i);
    }
    f
}

/// Re-encodes a module with calls of `target` sent to the appended `stub`.
struct Redirect {
    target: u32,
    stub: u32,
    stub_type: u32,
    body: Function,
}

impl Reencode for Redirect {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(if func == self.target { self.stub } else { func })
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.stub_type);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        utils::parse_code_section(self, code, section)?;
        code.function(&self.body);
        Ok(())
    }
}
