//! libbpf's `btf_dump` (`btf_dump.c`): BTF types as compilable C
//! (`btf_dump__dump_type`, `btf_dump__emit_type_decl`) and typed data as
//! `{.field = value,...}` (`btf_dump__dump_type_data`), with libbpf 1.7's
//! output byte for byte, quirks included:
//!
//! - names are de-duplicated per dumper (`name___2`) in the order they are
//!   first emitted, type names and identifiers separately;
//! - a struct or union counts as zero (and is skipped in typed dumps) when
//!   its *first* member is zero (libbpf compares against `ENODATA`, not
//!   `-ENODATA`, and so stops at the first member);
//! - once a `char` array was dumped, single-byte integers print as
//!   characters for the rest of that `btf_dump__dump_type_data` call;
//! - a member that fails (data too short) leaves the nesting depth one
//!   level deeper, and array elements that fail are skipped silently.
//!
//! Output is collected per call and handed to the application's
//! `btf_dump_printf_fn_t` through `csrc/btf_dump.c` as `("%s", text)` with a
//! genuine `va_list`. Typed data is read only within `data[..data_sz]`:
//! where libbpf would read past the buffer (zero checks of nested members),
//! the bytes read as zero. Recursion is bounded, so malformed (cyclic) BTF
//! gives an error instead of the stack overflow libbpf would hit.

#![allow(non_snake_case)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

use userbpf_btf_core::{Btf, BtfKind, TypeRef, TypeView};

use crate::abi::FfiReturn;
use crate::btf_api::BtfHandle;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::opts::{read_opts, OptsStruct};
use crate::print;

/// `btf_dump_printf_fn_t`: `void (*)(void *ctx, const char *fmt, va_list args)`.
/// The `va_list` is a pointer at the ABI level; only the C shim calls it.
pub type DumpPrintfFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void);

extern "C" {
    fn userbpf_btf_dump_print_str(f: DumpPrintfFn, ctx: *mut c_void, text: *const c_char);
    fn userbpf_format_float(buf: *mut c_char, size: usize, data: *const c_void, sz: c_int)
        -> c_int;
}

const EINVAL: i32 = libc::EINVAL;
const E2BIG: i32 = libc::E2BIG;
const ENODATA: i32 = libc::ENODATA;
const ENOTSUP: i32 = libc::ENOTSUP;
const ELOOP: i32 = libc::ELOOP;
const ENOENT: i32 = libc::ENOENT;

/// Nesting limit for the recursive walks (libbpf has none and overflows
/// its stack on cyclic BTF); real types nest a few dozen levels.
const MAX_DEPTH: u32 = 256;

/// `struct btf_dump_opts` (1.x: only `sz`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BtfDumpOpts {
    sz: usize,
}

// SAFETY: repr(C), starts with sz, integers only.
unsafe impl OptsStruct for BtfDumpOpts {
    const NAME: &'static str = "btf_dump_opts";
}

/// `struct btf_dump_emit_type_decl_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BtfDumpEmitTypeDeclOpts {
    sz: usize,
    field_name: *const c_char,
    indent_level: c_int,
    strip_mods: u8,
}

// SAFETY: repr(C), starts with sz, integers and raw pointers, bool as u8.
unsafe impl OptsStruct for BtfDumpEmitTypeDeclOpts {
    const NAME: &'static str = "btf_dump_emit_type_decl_opts";
}

/// `struct btf_dump_type_data_opts` (libbpf 1.7: with `emit_strings`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BtfDumpTypeDataOpts {
    sz: usize,
    indent_str: *const c_char,
    indent_level: c_int,
    compact: u8,
    skip_names: u8,
    emit_zeroes: u8,
    emit_strings: u8,
}

// SAFETY: repr(C), starts with sz, integers and raw pointers, bools as u8.
unsafe impl OptsStruct for BtfDumpTypeDataOpts {
    const NAME: &'static str = "btf_dump_type_data_opts";
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Order {
    #[default]
    NotOrdered,
    Ordering,
    Ordered,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Emit {
    #[default]
    NotEmitted,
    Emitting,
    Emitted,
}

/// libbpf's `btf_dump_type_aux_state`.
#[derive(Clone, Copy, Debug, Default)]
struct TypeState {
    order: Order,
    emit: Emit,
    fwd_emitted: bool,
    name_resolved: bool,
    referenced: bool,
}

/// libbpf's `btf_dump_data`: the state of one typed data dump.
#[derive(Debug, Default)]
struct TypedDump {
    compact: bool,
    skip_names: bool,
    emit_zeroes: bool,
    emit_strings: bool,
    indent_lvl: u8,
    indent_str: Vec<u8>,
    depth: i32,
    is_array_member: bool,
    is_array_terminated: bool,
    is_array_char: bool,
}

/// libbpf's `struct btf_dump` (opaque to C).
#[derive(Debug)]
pub struct BtfDumpHandle {
    btf: *const BtfHandle,
    printf: DumpPrintfFn,
    ctx: *mut c_void,
    state: DumpState,
}

/// Everything that persists between calls.
#[derive(Debug, Default)]
struct DumpState {
    ptr_sz: u32,
    strip_mods: bool,
    skip_anon_defs: bool,
    last_id: u32,
    types: Vec<TypeState>,
    cached_names: Vec<Option<Vec<u8>>>,
    emit_queue: Vec<u32>,
    decl_stack: Vec<u32>,
    type_names: HashMap<Vec<u8>, usize>,
    ident_names: HashMap<Vec<u8>, usize>,
    typed: Option<TypedDump>,
    out: Vec<u8>,
}

/// One API call's view: the BTF and the dumper's state.
struct Dumper<'a> {
    btf: &'a Btf,
    d: &'a mut DumpState,
    depth: u32,
}

/// `pfx(lvl)`: `lvl` tabs, at most 13.
fn pfx(lvl: i32) -> &'static str {
    const TABS: &str = "\t\t\t\t\t\t\t\t\t\t\t\t\t";
    &TABS[..lvl.clamp(0, TABS.len() as i32) as usize]
}

/// C's `isprint` in the "C" locale, for a (signed) `char`.
fn isprint(c: u8) -> bool {
    (0x20..0x7f).contains(&c)
}

/// `roundup(x, y)` on C ints.
fn roundup(x: i32, y: i32) -> Option<i32> {
    if y == 0 {
        return None;
    }
    Some((x.wrapping_add(y - 1).wrapping_div(y)).wrapping_mul(y))
}

/// C's `%Lf` / `%lf` / `%f` through snprintf.
fn format_float(bytes: &[u8; 16], sz: c_int) -> Option<String> {
    let mut buf = vec![0u8; 64];
    loop {
        // SAFETY: buf is writable for its length; bytes holds 16 readable
        // bytes, at least `sz`.
        let n = unsafe {
            userbpf_format_float(
                buf.as_mut_ptr().cast(),
                buf.len(),
                bytes.as_ptr().cast(),
                sz,
            )
        };
        let n = usize::try_from(n).ok()?;
        if n < buf.len() {
            buf.truncate(n);
            return String::from_utf8(buf).ok();
        }
        buf = vec![0u8; n + 1];
    }
}

impl<'a> Dumper<'a> {
    fn out(&mut self, s: &str) {
        self.d.out.extend_from_slice(s.as_bytes());
    }

    fn out_bytes(&mut self, s: &[u8]) {
        self.d.out.extend_from_slice(s);
    }

    fn ty(&self, id: u32) -> Option<TypeRef<'a>> {
        self.btf.type_by_id(id)
    }

    /// `btf__name_by_offset`, `(null)` as glibc prints a NULL `%s`.
    fn name_of(&self, off: u32) -> &'a [u8] {
        match self.btf.str_by_offset(off) {
            Some(s) => s.to_bytes(),
            None => b"(null)",
        }
    }

    fn state(&mut self, id: u32) -> &mut TypeState {
        let i = id as usize;
        if i >= self.d.types.len() {
            self.d.types.resize(i + 1, TypeState::default());
            self.d.cached_names.resize(i + 1, None);
        }
        &mut self.d.types[i]
    }

    /// `btf__align_of`, with its warning, 0 when there is none.
    fn align_of(&self, id: u32) -> i32 {
        match self.btf.align_of(id) {
            Ok(a) => a as i32,
            Err(userbpf_btf_core::TypeError::NoAlignment { kind, .. }) => {
                print::warn(&format!("unsupported BTF_KIND:{}\n", kind.to_raw()));
                0
            }
            Err(_) => 0,
        }
    }

    fn resolve_size(&self, id: u32) -> i64 {
        match self.btf.resolve_size(id) {
            Ok(s) => i64::from(s),
            Err(e) => -i64::from(e.errno()),
        }
    }

    fn enter(&mut self) -> bool {
        self.depth += 1;
        self.depth <= MAX_DEPTH
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // -----------------------------------------------------------------
    // Setup.

    /// `btf_dump_resize`: per-type state for types added since the last
    /// call, and which of them other types refer to.
    fn resize(&mut self) -> Result<(), i32> {
        let last_id = self.btf.type_count().saturating_sub(1);
        if last_id <= self.d.last_id {
            return Ok(());
        }
        if self.d.last_id == 0 {
            let void = self.state(0);
            void.order = Order::Ordered;
            void.emit = Emit::Emitted;
        }
        self.state(last_id);
        self.mark_referenced(last_id)?;
        self.d.last_id = last_id;
        Ok(())
    }

    /// `btf_dump_mark_referenced`.
    fn mark_referenced(&mut self, last_id: u32) -> Result<(), i32> {
        for id in self.d.last_id + 1..=last_id {
            let Some(t) = self.ty(id) else {
                return Err(EINVAL);
            };
            let mut refs: Vec<u32> = Vec::new();
            match t.view() {
                TypeView::Int(_)
                | TypeView::Enum(_)
                | TypeView::Enum64(_)
                | TypeView::Fwd { .. }
                | TypeView::Float { .. } => {}
                TypeView::Volatile { target }
                | TypeView::Const { target }
                | TypeView::Restrict { target }
                | TypeView::Ptr { target }
                | TypeView::Typedef { target }
                | TypeView::Var { target, .. }
                | TypeView::DeclTag { target, .. }
                | TypeView::TypeTag { target } => refs.push(target),
                TypeView::Func { proto, .. } => refs.push(proto),
                TypeView::Array(a) => refs.extend([a.index_type, a.elem_type]),
                TypeView::Struct(c) | TypeView::Union(c) => {
                    refs.extend(c.raw_members.iter().map(|m| m.type_id))
                }
                TypeView::FuncProto(p) => refs.extend(p.params.iter().map(|p| p.type_id)),
                TypeView::Datasec(s) => refs.extend(s.vars.iter().map(|v| v.type_id)),
                TypeView::Void | TypeView::Unknown { .. } => return Err(EINVAL),
            }
            for r in refs {
                // libbpf writes past its array for forward references to
                // types that do not exist; those are simply ignored here.
                if r <= last_id {
                    self.state(r).referenced = true;
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------
    // Names.

    /// `btf_dump_name_dups`: how many times `name` has been seen, this one
    /// included.
    fn name_dups(map: &mut HashMap<Vec<u8>, usize>, name: &[u8]) -> usize {
        let count = map.entry(name.to_vec()).or_insert(0);
        *count += 1;
        *count
    }

    /// `btf_dump_resolve_name`.
    fn resolve_name(&mut self, id: u32, idents: bool) -> Vec<u8> {
        let Some(t) = self.ty(id) else {
            return Vec::new();
        };
        if t.name_off() == 0 {
            return Vec::new();
        }
        let orig = self.name_of(t.name_off());
        let i = id as usize;
        self.state(id);
        if self.d.types[i].name_resolved {
            return self.d.cached_names[i]
                .clone()
                .unwrap_or_else(|| orig.to_vec());
        }
        let kind = t.kind();
        if kind == BtfKind::Fwd || (kind == BtfKind::Enum && t.vlen() == 0) {
            self.d.types[i].name_resolved = true;
            return orig.to_vec();
        }
        let map = match idents {
            true => &mut self.d.ident_names,
            false => &mut self.d.type_names,
        };
        let dups = Dumper::name_dups(map, orig);
        if dups > 1 {
            let mut name = orig.to_vec();
            name.extend_from_slice(format!("___{dups}").as_bytes());
            // libbpf formats into a char[256].
            name.truncate(255);
            self.d.cached_names[i] = Some(name);
        }
        self.d.types[i].name_resolved = true;
        self.d.cached_names[i]
            .clone()
            .unwrap_or_else(|| orig.to_vec())
    }

    fn type_name(&mut self, id: u32) -> Vec<u8> {
        self.resolve_name(id, false)
    }

    fn ident_name(&mut self, id: u32) -> Vec<u8> {
        self.resolve_name(id, true)
    }

    // -----------------------------------------------------------------
    // Ordering (btf_dump__dump_type, pass 1).

    /// `btf_dump_order_type`: `Ok(true)` for a strong link.
    fn order_type(&mut self, id: u32, through_ptr: bool) -> Result<bool, i32> {
        if !self.enter() {
            self.leave();
            print::warn(&format!("unsatisfiable type cycle, id:[{id}]\n"));
            return Err(ELOOP);
        }
        let r = self.order_type_inner(id, through_ptr);
        self.leave();
        r
    }

    fn order_type_inner(&mut self, id: u32, through_ptr: bool) -> Result<bool, i32> {
        // (libbpf reads the state first; an id past the last type is an
        // error here rather than a read out of bounds.)
        let t = self.ty(id).ok_or(EINVAL)?;
        let order = self.state(id).order;
        if order == Order::Ordered {
            return Ok(true);
        }
        if order == Order::Ordering {
            if t.is_composite() && through_ptr && t.name_off() != 0 {
                return Ok(false);
            }
            print::warn(&format!("unsatisfiable type cycle, id:[{id}]\n"));
            return Err(ELOOP);
        }
        let set = |this: &mut Self, order| this.state(id).order = order;
        match t.view() {
            TypeView::Int(_) | TypeView::Float { .. } => {
                set(self, Order::Ordered);
                Ok(false)
            }
            TypeView::Ptr { target } => {
                let r = self.order_type(target, true);
                set(self, Order::Ordered);
                r
            }
            TypeView::Array(a) => self.order_type(a.elem_type, false),
            TypeView::Struct(c) | TypeView::Union(c) => {
                if through_ptr && t.name_off() != 0 {
                    return Ok(false);
                }
                set(self, Order::Ordering);
                for m in c.raw_members {
                    self.order_type(m.type_id, false)?;
                }
                if t.name_off() != 0 {
                    self.d.emit_queue.push(id);
                }
                set(self, Order::Ordered);
                Ok(true)
            }
            TypeView::Enum(_) | TypeView::Enum64(_) | TypeView::Fwd { .. } => {
                if t.name_off() != 0 || !self.state(id).referenced {
                    self.d.emit_queue.push(id);
                }
                set(self, Order::Ordered);
                Ok(true)
            }
            TypeView::Typedef { target } => {
                let strong = self.order_type(target, through_ptr)?;
                if through_ptr && !strong {
                    return Ok(false);
                }
                self.d.emit_queue.push(id);
                set(self, Order::Ordered);
                Ok(true)
            }
            TypeView::Volatile { target }
            | TypeView::Const { target }
            | TypeView::Restrict { target }
            | TypeView::TypeTag { target } => self.order_type(target, through_ptr),
            TypeView::FuncProto(p) => {
                let mut strong = self.order_type(p.return_type, through_ptr)?;
                for param in p.params {
                    strong |= self.order_type(param.type_id, through_ptr)?;
                }
                Ok(strong)
            }
            TypeView::Func { .. }
            | TypeView::Var { .. }
            | TypeView::Datasec(_)
            | TypeView::DeclTag { .. } => {
                set(self, Order::Ordered);
                Ok(false)
            }
            TypeView::Void | TypeView::Unknown { .. } => Err(EINVAL),
        }
    }

    // -----------------------------------------------------------------
    // Emitting definitions (btf_dump__dump_type, pass 2).

    fn is_blacklisted(&self, id: u32) -> bool {
        let Some(t) = self.ty(id) else {
            return false;
        };
        t.name_off() != 0 && self.name_of(t.name_off()) == b"__builtin_va_list"
    }

    /// `btf_dump_emit_type`.
    fn emit_type(&mut self, id: u32, cont_id: u32) {
        if !self.enter() {
            self.leave();
            print::warn(&format!("type nesting too deep, id:[{id}]\n"));
            return;
        }
        self.emit_type_inner(id, cont_id);
        self.leave();
    }

    fn emit_type_inner(&mut self, id: u32, cont_id: u32) {
        let top_level_def = cont_id == 0;
        let Some(t) = self.ty(id) else {
            return;
        };
        let st = *self.state(id);
        if st.emit == Emit::Emitted {
            return;
        }
        if st.emit == Emit::Emitting {
            if st.fwd_emitted {
                return;
            }
            match t.kind() {
                BtfKind::Struct | BtfKind::Union => {
                    if id == cont_id {
                        return;
                    }
                    if t.name_off() == 0 {
                        print::warn(&format!("anonymous struct/union loop, id:[{id}]\n"));
                        return;
                    }
                    self.emit_struct_fwd(id, &t);
                    self.out(";\n\n");
                    self.state(id).fwd_emitted = true;
                }
                BtfKind::Typedef => {
                    if !self.is_blacklisted(id) {
                        self.emit_typedef_def(id, &t, 0);
                        self.out(";\n\n");
                    }
                    self.state(id).fwd_emitted = true;
                }
                _ => {}
            }
            return;
        }
        match t.view() {
            TypeView::Int(_) => {
                self.emit_missing_aliases(id);
                self.state(id).emit = Emit::Emitted;
            }
            TypeView::Enum(_) | TypeView::Enum64(_) => {
                if top_level_def {
                    self.emit_enum_def(id, &t, 0);
                    self.out(";\n\n");
                }
                self.state(id).emit = Emit::Emitted;
            }
            TypeView::Ptr { target }
            | TypeView::Volatile { target }
            | TypeView::Const { target }
            | TypeView::Restrict { target }
            | TypeView::TypeTag { target } => self.emit_type(target, cont_id),
            TypeView::Array(a) => self.emit_type(a.elem_type, cont_id),
            TypeView::Fwd { .. } => {
                self.emit_fwd_def(id, &t);
                self.out(";\n\n");
                self.state(id).emit = Emit::Emitted;
            }
            TypeView::Typedef { target } => {
                self.state(id).emit = Emit::Emitting;
                self.emit_type(target, id);
                if !self.state(id).fwd_emitted && !self.is_blacklisted(id) {
                    self.emit_typedef_def(id, &t, 0);
                    self.out(";\n\n");
                }
                self.state(id).emit = Emit::Emitted;
            }
            TypeView::Struct(c) | TypeView::Union(c) => {
                self.state(id).emit = Emit::Emitting;
                if top_level_def || t.name_off() == 0 {
                    let new_cont = if t.name_off() == 0 { cont_id } else { id };
                    for m in c.raw_members {
                        self.emit_type(m.type_id, new_cont);
                    }
                } else if !self.state(id).fwd_emitted && id != cont_id {
                    self.emit_struct_fwd(id, &t);
                    self.out(";\n\n");
                    self.state(id).fwd_emitted = true;
                }
                if top_level_def {
                    self.emit_struct_def(id, &t, 0);
                    self.out(";\n\n");
                    self.state(id).emit = Emit::Emitted;
                } else {
                    self.state(id).emit = Emit::NotEmitted;
                }
            }
            TypeView::FuncProto(p) => {
                self.emit_type(p.return_type, cont_id);
                for param in p.params {
                    self.emit_type(param.type_id, cont_id);
                }
            }
            _ => {}
        }
    }

    /// `btf_is_struct_packed`.
    fn is_struct_packed(&self, t: &TypeRef<'_>) -> bool {
        let (TypeView::Struct(c) | TypeView::Union(c)) = t.view() else {
            return false;
        };
        let mut max_align = 1;
        for m in c.members() {
            let align = self.align_of(m.type_id());
            if align != 0 && m.bitfield_size() == 0 && m.raw.offset % (8 * align as u32) != 0 {
                return true;
            }
            max_align = max_align.max(align);
        }
        !t.raw().size_or_type.is_multiple_of(max_align as u32)
    }

    /// `btf_dump_emit_bit_padding`.
    fn emit_bit_padding(
        &mut self,
        cur_off: i32,
        next_off: i32,
        next_align: i32,
        in_bitfield: bool,
        lvl: i32,
    ) {
        let pads: [(&str, i32); 4] = [
            ("long", self.d.ptr_sz as i32 * 8),
            ("int", 32),
            ("short", 16),
            ("char", 8),
        ];
        let mut cur_off = cur_off;
        if cur_off >= next_off {
            return;
        }
        let (mut pad_type, mut pad_bits, mut new_off) = ("", 0, 0);
        for &(name, bits) in &pads {
            pad_bits = bits;
            pad_type = name;
            new_off = roundup(cur_off, pad_bits).unwrap_or(cur_off);
            if new_off <= next_off {
                break;
            }
        }
        if new_off > cur_off && new_off <= next_off {
            // libbpf divides by zero here for a member without alignment.
            let aligned = roundup(cur_off, next_align.wrapping_mul(8));
            if in_bitfield
                || (new_off == next_off && aligned != Some(new_off))
                || (new_off != next_off
                    && next_off.wrapping_sub(new_off) <= new_off.wrapping_sub(cur_off))
            {
                let bits = if in_bitfield {
                    new_off.wrapping_sub(cur_off)
                } else {
                    0
                };
                self.out(&format!("\n{}{pad_type}: {bits};", pfx(lvl)));
            }
            cur_off = new_off;
        }
        while cur_off != next_off {
            let bits = next_off.wrapping_sub(cur_off).min(pad_bits);
            if bits == pad_bits {
                self.out(&format!("\n{}{pad_type}: {pad_bits};", pfx(lvl)));
                cur_off = cur_off.wrapping_add(bits);
                continue;
            }
            let mut found = false;
            for &(name, width) in pads.iter().rev() {
                pad_type = name;
                pad_bits = width;
                if pad_bits < bits {
                    continue;
                }
                self.out(&format!("\n{}{pad_type}: {bits};", pfx(lvl)));
                cur_off = cur_off.wrapping_add(bits);
                found = true;
                break;
            }
            if !found || bits <= 0 {
                break;
            }
        }
    }

    /// `btf_dump_emit_struct_fwd`.
    fn emit_struct_fwd(&mut self, id: u32, t: &TypeRef<'_>) {
        let kw = if t.kind() == BtfKind::Struct {
            "struct"
        } else {
            "union"
        };
        let sep = if t.name_off() != 0 { " " } else { "" };
        let name = self.type_name(id);
        self.out(kw);
        self.out(sep);
        self.out_bytes(&name);
    }

    /// `btf_dump_emit_struct_def`.
    fn emit_struct_def(&mut self, id: u32, t: &TypeRef<'_>, lvl: i32) {
        let (TypeView::Struct(c) | TypeView::Union(c)) = t.view() else {
            return;
        };
        let is_struct = t.kind() == BtfKind::Struct;
        let align = self.align_of(id);
        let packed = is_struct && self.is_struct_packed(t);
        let kw = if is_struct { "struct" } else { "union" };
        let sep = if t.name_off() != 0 { " " } else { "" };
        let name = self.type_name(id);
        self.out(kw);
        self.out(sep);
        self.out_bytes(&name);
        self.out(" {");
        let mut off: i32 = 0;
        let mut prev_bitfield = false;
        for m in c.members() {
            let fname = self.name_of(m.name_off());
            let mut m_sz = m.bitfield_size() as i32;
            let m_off = m.bit_offset() as i32;
            let m_align = if packed {
                1
            } else {
                self.align_of(m.type_id())
            };
            let in_bitfield = prev_bitfield && m_sz != 0;
            self.emit_bit_padding(off, m_off, m_align, in_bitfield, lvl.saturating_add(1));
            self.out("\n");
            self.out(pfx(lvl.saturating_add(1)));
            self.emit_type_decl(m.type_id(), fname, lvl.saturating_add(1));
            if m_sz != 0 {
                self.out(&format!(": {m_sz}"));
                off = m_off.wrapping_add(m_sz);
                prev_bitfield = true;
            } else {
                m_sz = self.resolve_size(m.type_id()).max(0) as i32;
                off = m_off.wrapping_add(m_sz.wrapping_mul(8));
                prev_bitfield = false;
            }
            self.out(";");
        }
        let size = t.raw().size_or_type;
        if is_struct {
            self.emit_bit_padding(
                off,
                size.wrapping_mul(8) as i32,
                align,
                false,
                lvl.saturating_add(1),
            );
        }
        if !c.is_empty() || size != 0 {
            self.out("\n");
            self.out(pfx(lvl));
            self.out("}");
        } else {
            self.out("}");
        }
        if packed {
            self.out(" __attribute__((packed))");
        }
    }

    /// `btf_dump_emit_missing_aliases`: GCC's `__PolyX_t`.
    fn emit_missing_aliases(&mut self, id: u32) {
        const MISSING: [(&[u8], &str); 4] = [
            (b"__Poly8_t", "unsigned char"),
            (b"__Poly16_t", "unsigned short"),
            (b"__Poly64_t", "unsigned long long"),
            (b"__Poly128_t", "unsigned __int128"),
        ];
        let name = self.type_name(id);
        if let Some((_, alias)) = MISSING.iter().find(|(n, _)| *n == name.as_slice()) {
            self.out(&format!("typedef {alias} "));
            self.out_bytes(&name);
            self.out(";\n\n");
        }
    }

    fn emit_enum_fwd(&mut self, id: u32) {
        let name = self.type_name(id);
        self.out("enum ");
        self.out_bytes(&name);
    }

    /// `btf_dump_emit_enum_def`.
    fn emit_enum_def(&mut self, id: u32, t: &TypeRef<'_>, lvl: i32) {
        let sep = if t.name_off() != 0 { " " } else { "" };
        let name = self.type_name(id);
        self.out("enum");
        self.out(sep);
        self.out_bytes(&name);
        if t.vlen() == 0 {
            return;
        }
        self.out(" {");
        let is_signed = t.kind_flag();
        let mut needs_word_mode = true;
        match t.view() {
            TypeView::Enum(e) => {
                for v in e.values {
                    let vname = self.name_of(v.name_off);
                    let dups = Dumper::name_dups(&mut self.d.ident_names, vname);
                    let value = match is_signed {
                        true => v.val.to_string(),
                        false => (v.val as u32).to_string(),
                    };
                    self.out("\n");
                    self.out(pfx(lvl.saturating_add(1)));
                    self.out_bytes(vname);
                    if dups > 1 {
                        self.out(&format!("___{dups}"));
                    }
                    self.out(&format!(" = {value},"));
                }
            }
            TypeView::Enum64(e) => {
                for v in e.values {
                    let vname = self.name_of(v.name_off);
                    let dups = Dumper::name_dups(&mut self.d.ident_names, vname);
                    let value = match is_signed {
                        true => format!("{}LL", v.value() as i64),
                        false => format!("{}ULL", v.value()),
                    };
                    self.out("\n");
                    self.out(pfx(lvl.saturating_add(1)));
                    self.out_bytes(vname);
                    if dups > 1 {
                        self.out(&format!("___{dups}"));
                    }
                    self.out(&format!(" = {value},"));
                    if v.val_hi32 != 0 {
                        needs_word_mode = false;
                    }
                }
            }
            _ => {}
        }
        self.out("\n");
        self.out(pfx(lvl));
        self.out("}");
        let size = t.raw().size_or_type;
        if size == 1 {
            self.out(" __attribute__((mode(byte)))");
        } else if size == 8 && self.d.ptr_sz == 8 && needs_word_mode {
            self.out(" __attribute__((mode(word)))");
        }
    }

    /// `btf_dump_emit_fwd_def`.
    fn emit_fwd_def(&mut self, id: u32, t: &TypeRef<'_>) {
        let name = self.type_name(id);
        self.out(if t.kind_flag() { "union " } else { "struct " });
        self.out_bytes(&name);
    }

    /// `btf_dump_emit_typedef_def`.
    fn emit_typedef_def(&mut self, id: u32, t: &TypeRef<'_>, lvl: i32) {
        let name = self.ident_name(id);
        let target = t.raw().size_or_type;
        if target == 0 && name == b"__gnuc_va_list" {
            self.out("typedef __builtin_va_list __gnuc_va_list");
            return;
        }
        self.out("typedef ");
        self.emit_type_decl(target, &name, lvl);
    }

    // -----------------------------------------------------------------
    // Declarations.

    /// `btf_dump_emit_type_decl`: pushes the chain of `id` (modifiers,
    /// pointers, arrays, prototypes) up to a named type, then emits it.
    fn emit_type_decl(&mut self, id: u32, fname: &[u8], lvl: i32) {
        if !self.enter() {
            self.leave();
            print::warn(&format!("type nesting too deep, id:[{id}]\n"));
            return;
        }
        let stack_start = self.d.decl_stack.len();
        let mut id = id;
        // No valid chain is longer than the number of types.
        for _ in 0..=self.btf.type_count() {
            let t = self.ty(id);
            let is_mod = t.as_ref().is_some_and(|t| t.is_modifier());
            if !(self.d.strip_mods && is_mod) {
                self.d.decl_stack.push(id);
            }
            if id == 0 {
                break;
            }
            let Some(t) = t else {
                break;
            };
            match t.view() {
                TypeView::Ptr { target }
                | TypeView::Volatile { target }
                | TypeView::Const { target }
                | TypeView::Restrict { target }
                | TypeView::TypeTag { target } => id = target,
                TypeView::FuncProto(p) => id = p.return_type,
                TypeView::Array(a) => id = a.elem_type,
                TypeView::Int(_)
                | TypeView::Enum(_)
                | TypeView::Enum64(_)
                | TypeView::Fwd { .. }
                | TypeView::Struct(_)
                | TypeView::Union(_)
                | TypeView::Typedef { .. }
                | TypeView::Float { .. } => break,
                _ => {
                    print::warn(&format!(
                        "unexpected type in decl chain, kind:{}, id:[{id}]\n",
                        t.kind().to_raw()
                    ));
                    break;
                }
            }
        }
        let mut cnt = self.d.decl_stack.len() - stack_start;
        self.emit_type_chain(stack_start, &mut cnt, fname, lvl);
        self.d.decl_stack.truncate(stack_start);
        self.leave();
    }

    /// `btf_dump_emit_mods`: const/volatile/restrict on top of the view.
    fn emit_mods(&mut self, start: usize, cnt: &mut usize) {
        while *cnt > 0 {
            let id = self.d.decl_stack[start + *cnt - 1];
            let word = match self.ty(id).map(|t| t.kind()) {
                Some(BtfKind::Volatile) => "volatile ",
                Some(BtfKind::Const) => "const ",
                Some(BtfKind::Restrict) => "restrict ",
                _ => return,
            };
            self.out(word);
            *cnt -= 1;
        }
    }

    /// `btf_dump_drop_mods`.
    fn drop_mods(&mut self, start: usize, cnt: &mut usize) {
        while *cnt > 0 {
            let id = self.d.decl_stack[start + *cnt - 1];
            if !self.ty(id).is_some_and(|t| t.is_modifier()) {
                return;
            }
            *cnt -= 1;
        }
    }

    fn emit_name(&mut self, name: &[u8], last_was_ptr: bool) {
        if !name.is_empty() && !last_was_ptr {
            self.out(" ");
        }
        self.out_bytes(name);
    }

    /// `btf_dump_emit_type_chain` over the view `decl_stack[start..start +
    /// cnt]`, popping from its end.
    fn emit_type_chain(&mut self, start: usize, cnt: &mut usize, fname: &[u8], lvl: i32) {
        if !self.enter() {
            self.leave();
            return;
        }
        self.emit_type_chain_inner(start, cnt, fname, lvl);
        self.leave();
    }

    fn emit_type_chain_inner(&mut self, start: usize, cnt: &mut usize, fname: &[u8], lvl: i32) {
        let mut last_was_ptr = true;
        while *cnt > 0 {
            *cnt -= 1;
            let id = self.d.decl_stack[start + *cnt];
            if id == 0 {
                self.emit_mods(start, cnt);
                self.out("void");
                last_was_ptr = false;
                continue;
            }
            let Some(t) = self.ty(id) else {
                return;
            };
            let kind = t.kind();
            match t.view() {
                TypeView::Int(_) | TypeView::Float { .. } => {
                    self.emit_mods(start, cnt);
                    let name = self.name_of(t.name_off());
                    self.out_bytes(name);
                }
                TypeView::Struct(_) | TypeView::Union(_) => {
                    self.emit_mods(start, cnt);
                    if t.name_off() == 0 && !self.d.skip_anon_defs {
                        self.emit_struct_def(id, &t, lvl);
                    } else {
                        self.emit_struct_fwd(id, &t);
                    }
                }
                TypeView::Enum(_) | TypeView::Enum64(_) => {
                    self.emit_mods(start, cnt);
                    if t.name_off() == 0 && !self.d.skip_anon_defs {
                        self.emit_enum_def(id, &t, lvl);
                    } else {
                        self.emit_enum_fwd(id);
                    }
                }
                TypeView::Fwd { .. } => {
                    self.emit_mods(start, cnt);
                    self.emit_fwd_def(id, &t);
                }
                TypeView::Typedef { .. } => {
                    self.emit_mods(start, cnt);
                    let name = self.ident_name(id);
                    self.out_bytes(&name);
                }
                TypeView::Ptr { .. } => self.out(if last_was_ptr { "*" } else { " *" }),
                TypeView::Volatile { .. } => self.out(" volatile"),
                TypeView::Const { .. } => self.out(" const"),
                TypeView::Restrict { .. } => self.out(" restrict"),
                TypeView::TypeTag { .. } => {
                    self.emit_mods(start, cnt);
                    let name = self.name_of(t.name_off());
                    match t.kind_flag() {
                        true => {
                            self.out(" __attribute__((");
                            self.out_bytes(name);
                            self.out("))");
                        }
                        false => {
                            self.out(" __attribute__((btf_type_tag(\"");
                            self.out_bytes(name);
                            self.out("\")))");
                        }
                    }
                }
                TypeView::Array(a) => {
                    self.drop_mods(start, cnt);
                    if *cnt == 0 {
                        self.emit_name(fname, last_was_ptr);
                        self.out(&format!("[{}]", a.nelems));
                        return;
                    }
                    let next_id = self.d.decl_stack[start + *cnt - 1];
                    let multidim = self.ty(next_id).is_some_and(|n| n.kind() == BtfKind::Array);
                    if !fname.is_empty() && !last_was_ptr {
                        self.out(" ");
                    }
                    if !multidim {
                        self.out("(");
                    }
                    self.emit_type_chain(start, cnt, fname, lvl);
                    if !multidim {
                        self.out(")");
                    }
                    self.out(&format!("[{}]", a.nelems));
                    return;
                }
                TypeView::FuncProto(p) => {
                    self.drop_mods(start, cnt);
                    if *cnt > 0 {
                        self.out(" (");
                        self.emit_type_chain(start, cnt, fname, lvl);
                        self.out(")");
                    } else {
                        self.emit_name(fname, last_was_ptr);
                    }
                    self.out("(");
                    let params = p.params;
                    if params.is_empty() || (params.len() == 1 && params[0].type_id == 0) {
                        self.out("void)");
                        return;
                    }
                    for (i, param) in params.iter().enumerate() {
                        if i > 0 {
                            self.out(", ");
                        }
                        if i == params.len() - 1 && param.type_id == 0 {
                            self.out("...");
                            break;
                        }
                        let name = self.name_of(param.name_off);
                        self.emit_type_decl(param.type_id, name, lvl);
                    }
                    self.out(")");
                    return;
                }
                _ => {
                    print::warn(&format!(
                        "unexpected type in decl chain, kind:{}, id:[{id}]\n",
                        kind.to_raw()
                    ));
                    return;
                }
            }
            last_was_ptr = kind == BtfKind::Ptr;
        }
        self.emit_name(fname, last_was_ptr);
    }

    /// `btf_dump_emit_type_cast`: `(type name)`.
    fn emit_type_cast(&mut self, id: u32, top_level: bool) {
        if self.d.typed.as_ref().is_some_and(|t| t.is_array_member) {
            return;
        }
        let Some(t) = self.ty(id) else {
            return;
        };
        if matches!(t.kind(), BtfKind::Var | BtfKind::Datasec) {
            return;
        }
        if top_level {
            self.out("(");
        }
        self.d.skip_anon_defs = true;
        self.d.strip_mods = true;
        self.emit_type_decl(id, b"", 0);
        self.d.strip_mods = false;
        self.d.skip_anon_defs = false;
        if top_level {
            self.out(")");
        }
    }
}

/// A typed dump in progress: the data (read only within bounds) and its
/// address (alignment decides how libbpf reads some values).
struct Data<'b> {
    bytes: &'b [u8],
    addr: usize,
}

impl Data<'_> {
    /// `n` bytes at `off`, zero where they fall outside the buffer.
    fn read(&self, off: usize, n: usize) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate().take(n.min(16)) {
            *b = off
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
        out
    }

    fn u64_at(&self, off: usize, n: usize) -> u64 {
        let b = self.read(off, n);
        let mut v = [0u8; 8];
        v[..n.min(8)].copy_from_slice(&b[..n.min(8)]);
        u64::from_ne_bytes(v)
    }

    fn byte(&self, off: usize) -> u8 {
        self.read(off, 1)[0]
    }

    /// Whether `off + n` is past the end (`data + n > data_end`).
    fn overflows(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_none_or(|end| end > self.bytes.len())
    }
}

impl Dumper<'_> {
    fn typed(&mut self) -> &mut TypedDump {
        self.d.typed.get_or_insert_with(TypedDump::default)
    }

    /// `btf_dump_data_newline`.
    fn newline(&mut self) -> &'static str {
        let t = self.typed();
        if t.compact || t.depth == 0 {
            ""
        } else {
            "\n"
        }
    }

    /// `btf_dump_data_delim`.
    fn delim(&mut self) -> &'static str {
        if self.typed().depth == 0 {
            ""
        } else {
            ","
        }
    }

    /// `btf_dump_data_pfx`.
    fn data_pfx(&mut self) {
        let t = self.typed();
        if t.compact {
            return;
        }
        let lvl = i32::from(t.indent_lvl) + t.depth;
        let indent = t.indent_str.clone();
        for _ in 0..lvl.max(0) {
            self.out_bytes(&indent);
        }
    }

    /// `btf_dump_type_values`: a value, then the delimiter and newline.
    fn values(&mut self, text: impl AsRef<[u8]>) {
        let delim = self.delim();
        let newline = self.newline();
        self.out_bytes(text.as_ref());
        self.out(delim);
        self.out(newline);
    }

    fn is_aligned(&self, id: u32, data: &Data<'_>, off: usize) -> bool {
        let align = self.align_of(id);
        align != 0 && data.addr.wrapping_add(off).is_multiple_of(align as usize)
    }

    /// `btf_dump_get_bitfield_value`.
    fn bitfield_value(
        &self,
        size: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> Result<u64, i32> {
        let start_bit = bits_offset % 8;
        let nr_bytes = (u32::from(start_bit) + u32::from(bit_sz)).div_ceil(8) as u8;
        if data.overflows(off, usize::from(nr_bytes)) {
            return Err(E2BIG);
        }
        if size > 8 {
            print::warn(&format!("unexpected bitfield size {size}\n"));
            return Err(EINVAL);
        }
        if bit_sz == 0 {
            // The zero-width read of an unaligned enum shifts by 64: libbpf
            // as GCC builds it yields 0.
            return Ok(0);
        }
        let num = data.u64_at(off, size as usize);
        let nr_copy_bits = bit_sz.wrapping_add(bits_offset);
        let left = 64u16.wrapping_sub(u16::from(nr_copy_bits));
        let right = 64u16.wrapping_sub(u16::from(bit_sz));
        // x86-64 masks 64-bit shift counts to 6 bits.
        Ok(num
            .wrapping_shl(u32::from(left))
            .wrapping_shr(u32::from(right)))
    }

    /// `btf_dump_base_type_check_zero`.
    fn base_type_check_zero(&self, t: &TypeRef<'_>, id: u32, data: &Data<'_>, off: usize) -> i32 {
        let nr_bytes = match t.kind() {
            BtfKind::Ptr => self.d.ptr_sz as i64,
            _ => i64::from(t.raw().size_or_type as i32),
        };
        if !(1..=16).contains(&nr_bytes) {
            print::warn(&format!("unexpected size {nr_bytes} for id [{id}]\n"));
            return -EINVAL;
        }
        match data.read(off, nr_bytes as usize).iter().all(|&b| b == 0) {
            true => -ENODATA,
            false => 0,
        }
    }

    /// `btf_dump_get_enum_value`.
    fn enum_value(
        &self,
        t: &TypeRef<'_>,
        data: &Data<'_>,
        off: usize,
        id: u32,
    ) -> Result<i64, i32> {
        let size = t.raw().size_or_type;
        if !self.is_aligned(id, data, off) {
            return self.bitfield_value(size, data, off, 0, 0).map(|v| v as i64);
        }
        let signed = t.kind_flag();
        let raw = data.u64_at(off, 8);
        Ok(match size {
            8 => raw as i64,
            4 if signed => i64::from(raw as u32 as i32),
            4 => i64::from(raw as u32),
            2 if signed => i64::from(raw as u16 as i16),
            2 => i64::from(raw as u16),
            1 if signed => i64::from(raw as u8 as i8),
            1 => i64::from(raw as u8),
            _ => {
                print::warn(&format!("unexpected size {size} for enum, id:[{id}]\n"));
                return Err(EINVAL);
            }
        })
    }

    /// `btf_dump_type_data_check_overflow`: the type's size, or an error.
    fn check_overflow(
        &self,
        id: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> Result<i64, i32> {
        if bit_sz != 0 {
            let nr_bytes = (u32::from(bits_offset) + u32::from(bit_sz)).div_ceil(8) as u8;
            return match data.overflows(off, usize::from(nr_bytes)) {
                true => Err(E2BIG),
                false => Ok(i64::from(nr_bytes)),
            };
        }
        let size = self.resolve_size(id);
        if !(0..i64::from(i32::MAX)).contains(&size) {
            print::warn(&format!(
                "unexpected size [{}] for id [{id}]\n",
                size as u64
            ));
            return Err(EINVAL);
        }
        let Some(t) = self.btf.skip_mods_and_typedefs(id) else {
            print::warn(&format!(
                "unexpected error skipping mods/typedefs for id [{id}]\n"
            ));
            return Err(EINVAL);
        };
        if matches!(
            t.kind(),
            BtfKind::Int | BtfKind::Float | BtfKind::Ptr | BtfKind::Enum | BtfKind::Enum64
        ) && data.overflows(off + usize::from(bits_offset / 8), size as usize)
        {
            return Err(E2BIG);
        }
        Ok(size)
    }

    /// `btf_dump_type_data_check_zero`: `-ENODATA` for data not worth
    /// showing.
    fn check_zero(
        &mut self,
        id: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> i32 {
        if !self.enter() {
            self.leave();
            return -ELOOP;
        }
        let r = self.check_zero_inner(id, data, off, bits_offset, bit_sz);
        self.leave();
        r
    }

    fn check_zero_inner(
        &mut self,
        id: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> i32 {
        let typed = self.typed();
        if typed.emit_zeroes || typed.depth == 0 || (typed.is_array_member && !typed.is_array_char)
        {
            return 0;
        }
        let Some(t) = self.btf.skip_mods_and_typedefs(id) else {
            return 0;
        };
        match t.view() {
            TypeView::Int(_) if bit_sz != 0 => {
                match self.bitfield_value(t.raw().size_or_type, data, off, bits_offset, bit_sz) {
                    Ok(0) => -ENODATA,
                    Ok(_) => 0,
                    Err(e) => -e,
                }
            }
            TypeView::Int(_) | TypeView::Float { .. } | TypeView::Ptr { .. } => {
                self.base_type_check_zero(&t, id, data, off)
            }
            TypeView::Array(a) => {
                let elem_id = a.elem_type;
                let elem_size = self.resolve_size(elem_id) as u32;
                let ischar = self
                    .btf
                    .skip_mods_and_typedefs(elem_id)
                    .is_some_and(|e| e.kind() == BtfKind::Int)
                    && elem_size == 1;
                let mut past_end_result = None;
                for i in 0..a.nelems {
                    let i: u32 = i;
                    if i == 0 && ischar && data.byte(off) == 0 {
                        return -ENODATA;
                    }
                    let elem_off = off.wrapping_add(i.wrapping_mul(elem_size) as usize);
                    // Every element wholly past the buffer reads as zeros:
                    // they all answer alike, so answer once.
                    let past_end = elem_off >= data.bytes.len();
                    if let (true, Some(r)) = (past_end, past_end_result) {
                        return r;
                    }
                    let err = self.check_zero(elem_id, data, elem_off, bits_offset, 0);
                    if err != -ENODATA {
                        return err;
                    }
                    if past_end {
                        past_end_result = Some(-ENODATA);
                    }
                }
                -ENODATA
            }
            TypeView::Struct(c) | TypeView::Union(c) => {
                for m in c.members() {
                    let moffset = m.bit_offset();
                    let err = self.check_zero(
                        m.type_id(),
                        data,
                        off.wrapping_add((moffset / 8) as usize),
                        (moffset % 8) as u8,
                        m.bitfield_size() as u8,
                    );
                    // libbpf compares with ENODATA, not -ENODATA: the first
                    // member decides.
                    if err != ENODATA {
                        return err;
                    }
                }
                -ENODATA
            }
            TypeView::Enum(_) | TypeView::Enum64(_) => match self.enum_value(&t, data, off, id) {
                Ok(0) => -ENODATA,
                Ok(_) => 0,
                Err(e) => -e,
            },
            _ => 0,
        }
    }

    /// `btf_dump_dump_type_data`: the size dumped, or `-errno`.
    fn dump_data(
        &mut self,
        fname: Option<&[u8]>,
        id: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> i64 {
        if !self.enter() {
            self.leave();
            return -i64::from(ELOOP);
        }
        let r = self.dump_data_inner(fname, id, data, off, bits_offset, bit_sz);
        self.leave();
        r
    }

    fn dump_data_inner(
        &mut self,
        fname: Option<&[u8]>,
        id: u32,
        data: &Data<'_>,
        off: usize,
        bits_offset: u8,
        bit_sz: u8,
    ) -> i64 {
        let size = match self.check_overflow(id, data, off, bits_offset, bit_sz) {
            Ok(size) => size,
            Err(e) => return -i64::from(e),
        };
        let err = self.check_zero(id, data, off, bits_offset, bit_sz);
        if err != 0 {
            return if err == -ENODATA {
                size
            } else {
                i64::from(err)
            };
        }
        self.data_pfx();
        if !self.typed().skip_names {
            if let Some(name) = fname.filter(|n| !n.is_empty()) {
                self.out(".");
                self.out_bytes(name);
                self.out(" = ");
            }
            self.emit_type_cast(id, true);
        }
        let Some(t) = self.btf.skip_mods_and_typedefs(id) else {
            return -i64::from(EINVAL);
        };
        let err = match t.view() {
            TypeView::Void
            | TypeView::Fwd { .. }
            | TypeView::Func { .. }
            | TypeView::FuncProto(_)
            | TypeView::DeclTag { .. } => {
                self.out(&format!("<unsupported kind:{}>", t.kind().to_raw()));
                -ENOTSUP
            }
            TypeView::Int(_) if bit_sz != 0 => {
                match self.bitfield_value(t.raw().size_or_type, data, off, bits_offset, bit_sz) {
                    Ok(v) => {
                        self.values(format!("0x{v:x}"));
                        0
                    }
                    Err(e) => -e,
                }
            }
            TypeView::Int(info) => self.int_data(&t, info.encoding, id, data, off),
            TypeView::Float { size } => self.float_data(size, id, data, off),
            TypeView::Ptr { .. } => self.ptr_data(id, data, off),
            TypeView::Array(_) => self.array_data(&t, id, data, off),
            TypeView::Struct(_) | TypeView::Union(_) => self.struct_data(&t, data, off),
            TypeView::Enum(_) | TypeView::Enum64(_) => {
                if bit_sz != 0 {
                    match self.bitfield_value(t.raw().size_or_type, data, off, bits_offset, bit_sz)
                    {
                        Ok(v) => {
                            // libbpf re-reads the value from an aligned s64.
                            let value = v.to_ne_bytes();
                            let stack = Data {
                                bytes: &value,
                                addr: 0,
                            };
                            self.enum_data(&t, id, &stack, 0)
                        }
                        Err(e) => -e,
                    }
                } else {
                    self.enum_data(&t, id, data, off)
                }
            }
            TypeView::Var { .. } => self.var_data(&t, data, off),
            TypeView::Datasec(_) => self.datasec_data(&t, data, off),
            _ => {
                let kind = t.raw().kind_raw();
                print::warn(&format!("unexpected kind [{kind}] for id [{id}]\n"));
                return -i64::from(EINVAL);
            }
        };
        if err < 0 {
            return i64::from(err);
        }
        size
    }

    /// `btf_dump_int_data`.
    fn int_data(
        &mut self,
        t: &TypeRef<'_>,
        encoding: u8,
        id: u32,
        data: &Data<'_>,
        off: usize,
    ) -> i32 {
        let sign = encoding & userbpf_btf_core::BTF_INT_SIGNED != 0;
        let sz = t.raw().size_or_type;
        if sz == 0 || sz > 16 {
            print::warn(&format!("unexpected size {} for id [{id}]\n", sz as i32));
            return -EINVAL;
        }
        let raw = data.u64_at(off, 8);
        let text = match sz {
            16 => {
                let lsi = data.u64_at(off, 8);
                let msi = data.u64_at(off + 8, 8);
                match msi {
                    0 => format!("0x{lsi:x}"),
                    _ => format!("0x{msi:x}{lsi:016x}"),
                }
            }
            8 if sign => (raw as i64).to_string(),
            8 => raw.to_string(),
            4 if sign => (raw as u32 as i32).to_string(),
            4 => (raw as u32).to_string(),
            2 if sign => (raw as u16 as i16).to_string(),
            2 => (raw as u16).to_string(),
            1 => {
                let c = raw as u8;
                let typed = self.typed();
                if typed.is_array_char {
                    if typed.is_array_terminated {
                        return 0;
                    }
                    if c == 0 {
                        typed.is_array_terminated = true;
                        self.values("'\\0'");
                        return 0;
                    }
                    if isprint(c) {
                        self.values(format!("'{}'", c as char));
                        return 0;
                    }
                }
                match sign {
                    true => (c as i8).to_string(),
                    false => c.to_string(),
                }
            }
            _ => {
                print::warn(&format!("unexpected sz {sz} for id [{id}]\n"));
                return -EINVAL;
            }
        };
        self.values(text);
        0
    }

    /// `btf_dump_float_data`.
    fn float_data(&mut self, sz: u32, id: u32, data: &Data<'_>, off: usize) -> i32 {
        let text = match sz {
            4 | 8 | 16 => format_float(&data.read(off, sz as usize), sz as c_int),
            _ => None,
        };
        match text {
            Some(text) => {
                self.values(text);
                0
            }
            None => {
                print::warn(&format!("unexpected size {} for id [{id}]\n", sz as i32));
                -EINVAL
            }
        }
    }

    /// `btf_dump_ptr_data`.
    fn ptr_data(&mut self, id: u32, data: &Data<'_>, off: usize) -> i32 {
        let ptr_sz = self.d.ptr_sz;
        let text = if self.is_aligned(id, data, off) && ptr_sz as usize == size_of::<usize>() {
            // glibc's %p.
            match data.u64_at(off, size_of::<usize>()) {
                0 => "(nil)".to_string(),
                p => format!("0x{p:x}"),
            }
        } else if ptr_sz == 4 {
            format!("0x{:x}", data.u64_at(off, 4) as u32)
        } else {
            format!("0x{:x}", data.u64_at(off, 8))
        };
        self.values(text);
        0
    }

    /// `btf_dump_enum_data`.
    fn enum_data(&mut self, t: &TypeRef<'_>, id: u32, data: &Data<'_>, off: usize) -> i32 {
        let value = match self.enum_value(t, data, off, id) {
            Ok(v) => v,
            Err(e) => return -e,
        };
        let is_signed = t.kind_flag();
        match t.view() {
            TypeView::Enum(e) => {
                if let Some(v) = e.values.iter().find(|v| i64::from(v.val) == value) {
                    let name = self.name_of(v.name_off);
                    self.values(name);
                    return 0;
                }
                // libbpf's `is_signed ? "%d" : "%u" "%s%s"`: the delimiter
                // and newline only follow unsigned values.
                match is_signed {
                    true => self.out(&(value as i32).to_string()),
                    false => self.values((value as u32).to_string()),
                }
            }
            TypeView::Enum64(e) => {
                if let Some(v) = e.values.iter().find(|v| v.value() == value as u64) {
                    let name = self.name_of(v.name_off);
                    self.values(name);
                    return 0;
                }
                // As above: no delimiter after a signed value.
                match is_signed {
                    true => self.out(&format!("{value}LL")),
                    false => self.values(format!("{}ULL", value as u64)),
                }
            }
            _ => {}
        }
        0
    }

    /// `btf_dump_var_data`: `[static |extern ](type) name = value`.
    fn var_data(&mut self, v: &TypeRef<'_>, data: &Data<'_>, off: usize) -> i32 {
        let TypeView::Var { target, linkage } = v.view() else {
            return -EINVAL;
        };
        self.out(match linkage {
            0 => "static ",
            2 => "extern ",
            _ => "",
        });
        self.emit_type_cast(target, false);
        let name = self.name_of(v.name_off());
        self.out(" ");
        self.out_bytes(name);
        self.out(" = ");
        self.dump_data(None, target, data, off, 0, 0) as i32
    }

    /// `btf_dump_string_data` (`emit_strings`): 0 if printed as a string.
    fn string_data(&mut self, nelems: u32, data: &Data<'_>, off: usize) -> i32 {
        let mut len = None;
        for i in 0..nelems as usize {
            if data.overflows(off + i, 1) {
                return -E2BIG;
            }
            if data.byte(off + i) == 0 {
                len = Some(i);
                break;
            }
        }
        let Some(len) = len else {
            return -EINVAL;
        };
        self.data_pfx();
        self.out("\"");
        for i in 0..len {
            let c = data.byte(off + i);
            if isprint(c) {
                self.out_bytes(&[c]);
            } else {
                self.out(&format!("\\x{c:02x}"));
            }
        }
        self.out("\"");
        0
    }

    /// `btf_dump_array_data`.
    fn array_data(&mut self, t: &TypeRef<'_>, id: u32, data: &Data<'_>, off: usize) -> i32 {
        let TypeView::Array(a) = t.view() else {
            return -EINVAL;
        };
        let elem_id = a.elem_type;
        let elem_is_int = self
            .btf
            .skip_mods_and_typedefs(elem_id)
            .is_some_and(|e| e.kind() == BtfKind::Int);
        let elem_size = self.resolve_size(elem_id);
        if elem_size <= 0 {
            print::warn(&format!(
                "unexpected elem size {elem_size} for array type [{id}]\n"
            ));
            return -EINVAL;
        }
        if elem_is_int && elem_size == 1 {
            if self.typed().emit_strings && self.string_data(a.nelems, data, off) == 0 {
                return 0;
            }
            self.typed().is_array_char = true;
        }
        self.typed().depth += 1;
        let newline = self.newline();
        self.out("[");
        self.out(newline);
        let typed = self.typed();
        let was_member = std::mem::replace(&mut typed.is_array_member, true);
        let was_terminated = std::mem::replace(&mut typed.is_array_terminated, false);
        let mut elem_off = off;
        for _ in 0..a.nelems {
            if self.typed().is_array_terminated {
                break;
            }
            self.dump_data(None, elem_id, data, elem_off, 0, 0);
            elem_off = elem_off.wrapping_add(elem_size as usize);
        }
        let typed = self.typed();
        typed.is_array_member = was_member;
        typed.is_array_terminated = was_terminated;
        typed.depth -= 1;
        self.data_pfx();
        self.values("]");
        0
    }

    /// `btf_dump_struct_data`.
    fn struct_data(&mut self, t: &TypeRef<'_>, data: &Data<'_>, off: usize) -> i32 {
        let (TypeView::Struct(c) | TypeView::Union(c)) = t.view() else {
            return -EINVAL;
        };
        self.typed().depth += 1;
        let newline = self.newline();
        self.out("{");
        self.out(newline);
        let mut err = 0i64;
        for m in c.members() {
            let name = self.name_of(m.name_off());
            let moffset = m.bit_offset();
            err = self.dump_data(
                Some(name),
                m.type_id(),
                data,
                off.wrapping_add((moffset / 8) as usize),
                (moffset % 8) as u8,
                m.bitfield_size() as u8,
            );
            if err < 0 {
                // libbpf leaves the depth raised.
                return err as i32;
            }
        }
        self.typed().depth -= 1;
        self.data_pfx();
        self.values("}");
        err as i32
    }

    /// `btf_dump_datasec_data`.
    fn datasec_data(&mut self, t: &TypeRef<'_>, data: &Data<'_>, off: usize) -> i32 {
        let TypeView::Datasec(s) = t.view() else {
            return -EINVAL;
        };
        let mut text = b"SEC(\"".to_vec();
        text.extend_from_slice(self.name_of(t.name_off()));
        text.extend_from_slice(b"\") ");
        self.values(text);
        for v in s.vars {
            let err = self.dump_data(
                None,
                v.type_id,
                data,
                off.wrapping_add(v.offset as usize),
                0,
                0,
            );
            if err < 0 {
                return err as i32;
            }
            self.out(";");
        }
        0
    }
}

impl BtfDumpHandle {
    /// Runs `f` on this call's [`Dumper`], then hands the output to the
    /// application's printf callback.
    ///
    /// # Safety
    /// `self.btf` must be a live handle.
    unsafe fn with<R>(&mut self, f: impl FnOnce(&mut Dumper<'_>) -> R) -> Result<R, AbiError> {
        // SAFETY: the BTF outlives the dumper (libbpf's contract).
        let Some(btf) = (unsafe { self.btf.as_ref() }) else {
            return Err(AbiError::Errno(EINVAL));
        };
        let mut dumper = Dumper {
            btf: btf.btf(),
            d: &mut self.state,
            depth: 0,
        };
        let r = f(&mut dumper);
        self.flush();
        Ok(r)
    }

    fn flush(&mut self) {
        if self.state.out.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.state.out);
        let text = CString::new(text).unwrap_or_else(|e| {
            let mut bytes = e.into_vec();
            bytes.retain(|&b| b != 0);
            CString::new(bytes).unwrap_or_default()
        });
        // SAFETY: printf is the application's btf_dump_printf_fn_t; text
        // is NUL-terminated and outlives the call.
        unsafe { userbpf_btf_dump_print_str(self.printf, self.ctx, text.as_ptr()) };
    }
}

fn ret<R: FfiReturn>(result: Result<R, AbiError>) -> R {
    result.unwrap_or_else(|e| R::from_error(&e))
}

/// `-e` with errno, or the value (libbpf's `libbpf_err`).
fn int_result(r: Result<i32, i32>) -> c_int {
    ret(r.map_err(AbiError::Errno))
}

ffi_fn! {
    /// `struct btf_dump *btf_dump__new(const struct btf *btf, btf_dump_printf_fn_t printf_fn, void *ctx, const struct btf_dump_opts *opts)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle that outlives the dumper; `opts`
    /// NULL or a valid opts struct.
    pub unsafe fn btf_dump__new(
        btf: *const BtfHandle,
        printf_fn: Option<DumpPrintfFn>,
        ctx: *mut c_void,
        opts: *const BtfDumpOpts,
    ) -> *mut BtfDumpHandle {
        // SAFETY: caller contract.
        if let Err(e) = unsafe { read_opts(opts) } {
            return ret(Err(e));
        }
        let Some(printf) = printf_fn else {
            return ret(Err(AbiError::Errno(EINVAL)));
        };
        // SAFETY: NULL or live (caller contract).
        let Some(h) = (unsafe { btf.as_ref() }) else {
            return ret(Err(AbiError::Errno(EINVAL)));
        };
        let ptr_sz = match h.btf().pointer_size() {
            Some(size) if size != 0 => size,
            _ => size_of::<usize>() as u32,
        };
        let mut dump = Box::new(BtfDumpHandle {
            btf,
            printf,
            ctx,
            state: DumpState {
                ptr_sz,
                ..DumpState::default()
            },
        });
        // SAFETY: btf is live (checked above).
        match unsafe { dump.with(|d| d.resize()) } {
            Ok(Ok(())) => Box::into_raw(dump),
            Ok(Err(e)) => ret(Err(AbiError::Errno(e))),
            Err(e) => ret(Err(e)),
        }
    }
}

ffi_fn! {
    /// `void btf_dump__free(struct btf_dump *d)`
    ///
    /// # Safety
    /// `d` must be NULL, an `ERR_PTR` or a live dumper not used afterwards.
    pub unsafe fn btf_dump__free(d: *mut BtfDumpHandle) {
        if d.is_null() || d as usize >= 4095usize.wrapping_neg() {
            return;
        }
        // SAFETY: from Box::into_raw (caller contract).
        drop(unsafe { Box::from_raw(d) });
    }
}

ffi_fn! {
    /// `int btf_dump__dump_type(struct btf_dump *d, __u32 id)`: the type
    /// and every type it needs that was not emitted yet, as C.
    ///
    /// # Safety
    /// `d` must be NULL or a live dumper.
    pub unsafe fn btf_dump__dump_type(d: *mut BtfDumpHandle, id: u32) -> c_int {
        // SAFETY: NULL or live (caller contract).
        let Some(d) = (unsafe { d.as_mut() }) else {
            return int_result(Err(EINVAL));
        };
        // SAFETY: the dumper's BTF is live (caller contract).
        let r = unsafe {
            d.with(|d| {
                if id >= d.btf.type_count() {
                    return Err(EINVAL);
                }
                d.resize()?;
                d.d.emit_queue.clear();
                d.order_type(id, false)?;
                let queue = std::mem::take(&mut d.d.emit_queue);
                for &qid in &queue {
                    d.emit_type(qid, 0);
                }
                d.d.emit_queue = queue;
                Ok(0)
            })
        };
        ret(r.map(int_result))
    }
}

ffi_fn! {
    /// `int btf_dump__emit_type_decl(struct btf_dump *d, __u32 id, const struct btf_dump_emit_type_decl_opts *opts)`
    ///
    /// # Safety
    /// `d` must be NULL or a live dumper; `opts` NULL or a valid opts struct
    /// whose `field_name` is NULL or NUL-terminated.
    pub unsafe fn btf_dump__emit_type_decl(
        d: *mut BtfDumpHandle,
        id: u32,
        opts: *const BtfDumpEmitTypeDeclOpts,
    ) -> c_int {
        // SAFETY: NULL or live (caller contract).
        let Some(d) = (unsafe { d.as_mut() }) else {
            return int_result(Err(EINVAL));
        };
        // SAFETY: caller contract.
        let opts = match unsafe { read_opts(opts) } {
            Ok(o) => o,
            Err(e) => return ret(Err(e)),
        };
        let (fname, lvl, strip) = match opts {
            Some(o) => {
                let fname = match o.field_name.is_null() {
                    true => Vec::new(),
                    // SAFETY: NUL-terminated (caller contract).
                    false => unsafe { CStr::from_ptr(o.field_name) }.to_bytes().to_vec(),
                };
                (fname, o.indent_level, o.strip_mods != 0)
            }
            None => (Vec::new(), 0, false),
        };
        // SAFETY: the dumper's BTF is live (caller contract).
        let r = unsafe {
            d.with(|d| {
                d.resize()?;
                if d.ty(id).is_none() {
                    return Err(EINVAL);
                }
                d.d.strip_mods = strip;
                d.emit_type_decl(id, &fname, lvl);
                d.d.strip_mods = false;
                Ok(0)
            })
        };
        ret(r.map(int_result))
    }
}

ffi_fn! {
    /// `int btf_dump__dump_type_data(struct btf_dump *d, __u32 id, const void *data, size_t data_sz, const struct btf_dump_type_data_opts *opts)`:
    /// the number of bytes dumped (the type's size), or `-errno`.
    ///
    /// # Safety
    /// `d` must be NULL or a live dumper; `data` NULL or valid for
    /// `data_sz` bytes; `opts` NULL or a valid opts struct whose
    /// `indent_str` is NULL or NUL-terminated.
    pub unsafe fn btf_dump__dump_type_data(
        d: *mut BtfDumpHandle,
        id: u32,
        data: *const c_void,
        data_sz: usize,
        opts: *const BtfDumpTypeDataOpts,
    ) -> c_int {
        // SAFETY: NULL or live (caller contract).
        let Some(d) = (unsafe { d.as_mut() }) else {
            return int_result(Err(EINVAL));
        };
        // SAFETY: caller contract.
        let opts = match unsafe { read_opts(opts) } {
            Ok(o) => o,
            Err(e) => return ret(Err(e)),
        };
        let mut typed = TypedDump {
            indent_str: b"\t".to_vec(),
            ..TypedDump::default()
        };
        if let Some(o) = opts {
            typed.indent_lvl = o.indent_level as u8;
            if !o.indent_str.is_null() {
                // SAFETY: NUL-terminated (caller contract).
                let s = unsafe { CStr::from_ptr(o.indent_str) }.to_bytes();
                // libbpf_strlcpy into a char[32].
                typed.indent_str = s[..s.len().min(31)].to_vec();
            }
            typed.compact = o.compact != 0;
            typed.skip_names = o.skip_names != 0;
            typed.emit_zeroes = o.emit_zeroes != 0;
            typed.emit_strings = o.emit_strings != 0;
        }
        let bytes: &[u8] = match data.is_null() {
            true => &[],
            // SAFETY: data is valid for data_sz bytes (caller contract).
            false => unsafe { std::slice::from_raw_parts(data.cast::<u8>(), data_sz) },
        };
        let data = Data {
            bytes,
            addr: data as usize,
        };
        // SAFETY: the dumper's BTF is live (caller contract).
        let r = unsafe {
            d.with(|d| {
                if d.ty(id).is_none() {
                    return Err(ENOENT);
                }
                d.d.typed = Some(typed);
                let r = d.dump_data(None, id, &data, 0, 0, 0);
                d.d.typed = None;
                match r {
                    r if r < 0 => Err((-r) as i32),
                    r => Ok(r as i32),
                }
            })
        };
        ret(r.map(int_result))
    }
}
