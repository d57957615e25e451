//! `BPF_MAP_TYPE_LPM_TRIE`: the kernel's `lpm_trie.c` in shared memory.
//!
//! Keys are `struct bpf_lpm_trie_key_u8`: `u32 prefixlen` then
//! `key_size - 4` data bytes (1 to 256), compared most significant bit
//! first. Creation requires `BPF_F_NO_PREALLOC` (`EINVAL` otherwise), as
//! the kernel. Lookup (both sides) returns the value of the longest stored
//! prefix that matches the key; update and delete act on the exact prefix.
//! Update: `BPF_EXIST` on a missing prefix gives `ENOENT`, `BPF_NOEXIST` on
//! a present one `EEXIST`, a full trie `ENOSPC` (the kernel's errno, not
//! `E2BIG`; replacing an existing prefix still works when full). A prefix
//! longer than the data gives `EINVAL`. `get_next_key` walks in the
//! kernel's post-order: more specific prefixes before the prefixes that
//! contain them; a missing or invalid key starts over from the leftmost.
//!
//! # Shared layout
//! The data area is a pool of `2 * max_entries + 1` nodes (a trie of `n`
//! entries needs at most `n - 1` intermediate nodes, plus one node for a
//! replacement in flight); the aux area holds a [`ShmLock`], the root, a
//! free list, a bump pointer for never-used nodes (so creation touches no
//! page) and the entry count. Node: two child links (node index + 1),
//! `prefixlen`, flags (intermediate), free-list link, the key data, the
//! value (8-aligned). Every operation runs under the lock; as in the
//! kernel, a change builds new nodes completely and then links them with
//! one store, so a holder killed at any point leaves a valid trie (at worst
//! a leaked node or an entry count off by one).
//!
//! # Difference from the kernel
//! The kernel frees nodes after an RCU grace period, so a program keeps
//! reading the value it looked up even if it is deleted meanwhile. Here a
//! deleted node goes to a free list and may be reused by a later update
//! while a program still holds its value pointer: the pointer stays valid
//! memory, but may show the new node's value.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::shm::ShmLock;

const LPM_DATA_SIZE_MAX: u32 = 256;
/// The kernel's `LPM_VAL_SIZE_MAX` (KMALLOC_MAX_SIZE - data - node).
const LPM_VAL_SIZE_MAX: u32 = (4 << 20) - LPM_DATA_SIZE_MAX - 48;
const FLAG_IM: u32 = 1;

/// The aux area.
#[repr(C)]
struct LpmAux {
    lock: ShmLock,
    /// Root node (index + 1, 0: empty). Under the lock.
    root: AtomicU32,
    /// Free list head (index + 1). Under the lock.
    free_head: AtomicU32,
    /// Nodes never used yet start here. Under the lock.
    bump: AtomicU32,
    /// Entries (non-intermediate nodes). Under the lock.
    n_entries: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<LpmAux>() <= MAP_AUX_SIZE);

/// A node's fixed part; the key data and value follow.
#[repr(C)]
struct NodeHead {
    /// Children (index + 1), by the bit after this node's prefix.
    child: [AtomicU32; 2],
    prefixlen: AtomicU32,
    flags: AtomicU32,
    /// Next free node (index + 1) while on the free list.
    next_free: AtomicU32,
    _pad: u32,
}

const NODE_HEAD: usize = std::mem::size_of::<NodeHead>();

struct Geometry {
    data_size: usize,
    value_size: usize,
    value_off: usize,
    node_size: usize,
    n_nodes: u32,
}

fn geometry(spec: &MapSpec) -> Result<Geometry, MapError> {
    use super::flags::*;
    let access = BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG;
    if spec.map_flags & BPF_F_NO_PREALLOC == 0
        || spec.map_flags & !(BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | access) != 0
        || (spec.map_flags & BPF_F_RDONLY != 0 && spec.map_flags & BPF_F_WRONLY != 0)
        || (spec.map_flags & BPF_F_RDONLY_PROG != 0 && spec.map_flags & BPF_F_WRONLY_PROG != 0)
        || spec.key_size < 4 + 1
        || spec.key_size > 4 + LPM_DATA_SIZE_MAX
        || spec.value_size < 1
        || spec.value_size > LPM_VAL_SIZE_MAX
    {
        return Err(MapError::Invalid("lpm trie attributes"));
    }
    let data_size = spec.key_size as usize - 4;
    let value_off = super::round_up8(NODE_HEAD + data_size);
    let node_size = super::round_up8(value_off + spec.value_size as usize);
    let n_nodes = spec
        .max_entries
        .checked_mul(2)
        .and_then(|n| n.checked_add(1))
        .ok_or(MapError::Full)?;
    Ok(Geometry {
        data_size,
        value_size: spec.value_size as usize,
        value_off,
        node_size,
        n_nodes,
    })
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    let g = geometry(spec)?;
    (g.n_nodes as usize)
        .checked_mul(g.node_size)
        .ok_or(MapError::Full)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    // All zero: empty root, empty free list, bump at 0, no entries.
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    let g = geometry(spec)?;
    if mem.data_size() < data_size(spec)? {
        return Err(MapError::NotAMap);
    }
    Ok(Box::new(LpmTrie {
        mem,
        g,
        max_entries: spec.max_entries,
    }))
}

/// Where a node hangs: the root or a child link.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Child(u32, usize),
}

/// A key, copied out of the caller's memory.
struct Key {
    prefixlen: u32,
    data: [u8; LPM_DATA_SIZE_MAX as usize],
}

/// An LPM trie mapped into this process.
pub struct LpmTrie {
    mem: Arc<MapMem>,
    g: Geometry,
    max_entries: u32,
}

impl std::fmt::Debug for LpmTrie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LpmTrie")
            .field("data_size", &self.g.data_size)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

fn extract_bit(data: &[u8], index: u32) -> usize {
    data.get((index / 8) as usize)
        .map_or(0, |b| ((b >> (7 - index % 8)) & 1) as usize)
}

impl LpmTrie {
    fn aux(&self) -> &LpmAux {
        // SAFETY: the aux area is 8-aligned, large enough, all-atomic.
        unsafe { &*(self.mem.aux() as *const LpmAux) }
    }

    fn max_prefixlen(&self) -> u32 {
        self.g.data_size as u32 * 8
    }

    /// Node `n` (index + 1); `None` for 0 or out of range.
    fn node(&self, n: u32) -> Option<&NodeHead> {
        if n == 0 || n > self.g.n_nodes {
            return None;
        }
        // SAFETY: n - 1 < n_nodes: inside the pool.
        Some(unsafe {
            &*(self.mem.data().add((n as usize - 1) * self.g.node_size) as *const NodeHead)
        })
    }

    fn node_ptr(&self, n: u32) -> *mut u8 {
        // SAFETY: callers pass n from `node()`-checked links.
        unsafe { self.mem.data().add((n as usize - 1) * self.g.node_size) }
    }

    fn data_of(&self, n: u32) -> &[u8] {
        // SAFETY: the key data follows the head; stable under the lock.
        unsafe { std::slice::from_raw_parts(self.node_ptr(n).add(NODE_HEAD), self.g.data_size) }
    }

    fn value_ptr(&self, n: u32) -> *mut u8 {
        // SAFETY: the value is inside the node.
        unsafe { self.node_ptr(n).add(self.g.value_off) }
    }

    fn child(&self, n: u32, bit: usize) -> u32 {
        self.node(n)
            .map_or(0, |h| h.child[bit & 1].load(Ordering::Relaxed))
    }

    fn prefixlen(&self, n: u32) -> u32 {
        self.node(n)
            .map_or(0, |h| h.prefixlen.load(Ordering::Relaxed))
    }

    fn is_im(&self, n: u32) -> bool {
        self.node(n)
            .is_some_and(|h| h.flags.load(Ordering::Relaxed) & FLAG_IM != 0)
    }

    fn get(&self, s: Slot) -> u32 {
        match s {
            Slot::Root => self.aux().root.load(Ordering::Relaxed),
            Slot::Child(n, b) => self.child(n, b),
        }
    }

    fn set(&self, s: Slot, v: u32) {
        match s {
            Slot::Root => self.aux().root.store(v, Ordering::Release),
            Slot::Child(n, b) => {
                if let Some(h) = self.node(n) {
                    h.child[b & 1].store(v, Ordering::Release);
                }
            }
        }
    }

    /// `longest_prefix_match`: bits of `key` that match node `n`, up to
    /// the shorter of the two prefixes.
    fn match_len(&self, n: u32, key: &Key) -> u32 {
        let limit = self.prefixlen(n).min(key.prefixlen);
        let nd = self.data_of(n);
        let mut len = 0u32;
        for (a, b) in nd.iter().zip(&key.data[..self.g.data_size]) {
            if len >= limit {
                break;
            }
            let diff = a ^ b;
            if diff != 0 {
                len += diff.leading_zeros();
                break;
            }
            len += 8;
        }
        len.min(limit)
    }

    /// Takes a node from the free list or the untouched pool.
    fn alloc(&self) -> Option<u32> {
        let aux = self.aux();
        let head = aux.free_head.load(Ordering::Relaxed);
        if let Some(h) = self.node(head) {
            aux.free_head
                .store(h.next_free.load(Ordering::Relaxed), Ordering::Relaxed);
            return Some(head);
        }
        let bump = aux.bump.load(Ordering::Relaxed);
        if bump >= self.g.n_nodes {
            return None;
        }
        aux.bump.store(bump + 1, Ordering::Relaxed);
        Some(bump + 1)
    }

    fn free(&self, n: u32) {
        let aux = self.aux();
        if let Some(h) = self.node(n) {
            h.next_free
                .store(aux.free_head.load(Ordering::Relaxed), Ordering::Relaxed);
            aux.free_head.store(n, Ordering::Relaxed);
        }
    }

    /// Fills node `n` (not linked yet).
    ///
    /// # Safety
    /// `value` is null or readable for `value_size` bytes.
    unsafe fn fill(&self, n: u32, prefixlen: u32, flags: u32, data: &[u8], value: *const u8) {
        let Some(h) = self.node(n) else { return };
        h.child[0].store(0, Ordering::Relaxed);
        h.child[1].store(0, Ordering::Relaxed);
        h.prefixlen.store(prefixlen, Ordering::Relaxed);
        h.flags.store(flags, Ordering::Relaxed);
        // SAFETY: the node is ours (unlinked); both copies stay inside it;
        // the caller vouches for `value`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.node_ptr(n).add(NODE_HEAD),
                self.g.data_size,
            );
            if value.is_null() {
                std::ptr::write_bytes(self.value_ptr(n), 0, self.g.value_size);
            } else {
                std::ptr::copy_nonoverlapping(value, self.value_ptr(n), self.g.value_size);
            }
        }
    }

    /// Copies a key from `key_size` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` is readable for `4 + data_size` bytes.
    unsafe fn read_key(&self, ptr: *const u8) -> Key {
        let mut k = Key {
            prefixlen: 0,
            data: [0; LPM_DATA_SIZE_MAX as usize],
        };
        // SAFETY: per the contract.
        unsafe {
            k.prefixlen = std::ptr::read_unaligned(ptr as *const u32);
            std::ptr::copy_nonoverlapping(ptr.add(4), k.data.as_mut_ptr(), self.g.data_size);
        }
        k
    }

    fn key_of(&self, key: &[u8]) -> Result<Key, MapError> {
        if key.len() < 4 + self.g.data_size {
            return Err(MapError::Invalid("key size"));
        }
        // SAFETY: length checked.
        Ok(unsafe { self.read_key(key.as_ptr()) })
    }

    /// `trie_lookup_elem` (under the lock): the longest matching entry.
    fn lookup_node(&self, key: &Key) -> Option<u32> {
        let mut found = None;
        let mut n = self.aux().root.load(Ordering::Acquire);
        let mut steps = 0;
        while self.node(n).is_some() && steps <= self.g.n_nodes {
            steps += 1;
            let m = self.match_len(n, key);
            if m == self.max_prefixlen() {
                return Some(n);
            }
            let plen = self.prefixlen(n);
            if m < plen {
                break;
            }
            if !self.is_im(n) {
                found = Some(n);
            }
            n = self.child(n, extract_bit(&key.data, plen));
        }
        found
    }

    /// `trie_update_elem`.
    ///
    /// # Safety
    /// `value` is readable for `value_size` bytes.
    unsafe fn update_key(&self, key: &Key, value: *const u8, flags: u64) -> Result<(), MapError> {
        if flags > super::flags::BPF_EXIST {
            return Err(MapError::Invalid("lpm update flags"));
        }
        if key.prefixlen > self.max_prefixlen() {
            return Err(MapError::Invalid("prefixlen longer than the key"));
        }
        let aux = self.aux();
        let _guard = aux.lock.lock();
        let data = &key.data[..self.g.data_size];
        let check_add = || -> Result<(), MapError> {
            if flags == super::flags::BPF_EXIST {
                return Err(MapError::NotFound);
            }
            if aux.n_entries.load(Ordering::Relaxed) >= self.max_entries {
                return Err(MapError::Io(libc::ENOSPC));
            }
            Ok(())
        };
        let mut slot = Slot::Root;
        let mut node;
        let mut matchlen = 0;
        let mut steps = 0;
        loop {
            node = self.get(slot);
            if self.node(node).is_none() || steps > self.g.n_nodes {
                node = 0;
                break;
            }
            steps += 1;
            matchlen = self.match_len(node, key);
            let plen = self.prefixlen(node);
            if plen != matchlen || plen == key.prefixlen {
                break;
            }
            slot = Slot::Child(node, extract_bit(data, plen));
        }
        if node == 0 {
            check_add()?;
            let new = self.alloc().ok_or(MapError::NoMemory)?;
            // SAFETY: forwarded contract.
            unsafe { self.fill(new, key.prefixlen, 0, data, value) };
            self.set(slot, new);
            aux.n_entries.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let plen = self.prefixlen(node);
        if plen == matchlen {
            // The exact prefix exists (as an entry or intermediate node).
            let im = self.is_im(node);
            if !im && flags == super::flags::BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            if im {
                check_add()?;
            }
            let new = self.alloc().ok_or(MapError::NoMemory)?;
            // SAFETY: forwarded contract.
            unsafe { self.fill(new, key.prefixlen, 0, data, value) };
            if let Some(h) = self.node(new) {
                h.child[0].store(self.child(node, 0), Ordering::Relaxed);
                h.child[1].store(self.child(node, 1), Ordering::Relaxed);
            }
            self.set(slot, new);
            if im {
                aux.n_entries.fetch_add(1, Ordering::Relaxed);
            }
            self.free(node);
            return Ok(());
        }
        check_add()?;
        let new = self.alloc().ok_or(MapError::NoMemory)?;
        // SAFETY: forwarded contract.
        unsafe { self.fill(new, key.prefixlen, 0, data, value) };
        if matchlen == key.prefixlen {
            // The new prefix contains the node: insert it above.
            let bit = extract_bit(self.data_of(node), matchlen);
            if let Some(h) = self.node(new) {
                h.child[bit].store(node, Ordering::Relaxed);
            }
            self.set(slot, new);
            aux.n_entries.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // They diverge: an intermediate node holds both.
        let Some(im) = self.alloc() else {
            self.free(new);
            return Err(MapError::NoMemory);
        };
        let mut node_data = [0u8; LPM_DATA_SIZE_MAX as usize];
        node_data[..self.g.data_size].copy_from_slice(self.data_of(node));
        // SAFETY: null value: zero-filled.
        unsafe {
            self.fill(
                im,
                matchlen,
                FLAG_IM,
                &node_data[..self.g.data_size],
                std::ptr::null(),
            )
        };
        if let Some(h) = self.node(im) {
            let (c0, c1) = if extract_bit(data, matchlen) == 1 {
                (node, new)
            } else {
                (new, node)
            };
            h.child[0].store(c0, Ordering::Relaxed);
            h.child[1].store(c1, Ordering::Relaxed);
        }
        self.set(slot, im);
        aux.n_entries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `trie_delete_elem`.
    fn delete_key(&self, key: &Key) -> Result<(), MapError> {
        if key.prefixlen > self.max_prefixlen() {
            return Err(MapError::Invalid("prefixlen longer than the key"));
        }
        let aux = self.aux();
        let _guard = aux.lock.lock();
        let data = &key.data[..self.g.data_size];
        let mut trim2 = Slot::Root;
        let mut trim = Slot::Root;
        let mut parent = 0u32;
        let mut node;
        let mut matchlen = 0;
        let mut steps = 0;
        loop {
            node = self.get(trim);
            if self.node(node).is_none() || steps > self.g.n_nodes {
                node = 0;
                break;
            }
            steps += 1;
            matchlen = self.match_len(node, key);
            let plen = self.prefixlen(node);
            if plen != matchlen || plen == key.prefixlen {
                break;
            }
            parent = node;
            trim2 = trim;
            trim = Slot::Child(node, extract_bit(data, plen));
        }
        if node == 0
            || self.prefixlen(node) != key.prefixlen
            || self.prefixlen(node) != matchlen
            || self.is_im(node)
        {
            return Err(MapError::NotFound);
        }
        let n = aux.n_entries.load(Ordering::Relaxed);
        aux.n_entries.store(n.saturating_sub(1), Ordering::Relaxed);
        let (c0, c1) = (self.child(node, 0), self.child(node, 1));
        if c0 != 0 && c1 != 0 {
            if let Some(h) = self.node(node) {
                h.flags.fetch_or(FLAG_IM, Ordering::Release);
            }
            return Ok(());
        }
        if parent != 0 && self.is_im(parent) && c0 == 0 && c1 == 0 {
            let sibling = if self.child(parent, 0) == node {
                self.child(parent, 1)
            } else {
                self.child(parent, 0)
            };
            self.set(trim2, sibling);
            self.free(parent);
            self.free(node);
            return Ok(());
        }
        self.set(trim, if c0 != 0 { c0 } else { c1 });
        self.free(node);
        Ok(())
    }

    /// `trie_get_next_key` (post-order): writes the next key into `out`
    /// (`4 + data_size` bytes) under the lock.
    fn next_key_into(&self, key: Option<&Key>, out: &mut [u8]) -> Result<(), MapError> {
        let _guard = self.aux().lock.lock();
        let n = self.next_node(key).ok_or(MapError::NotFound)?;
        out[..4].copy_from_slice(&self.prefixlen(n).to_ne_bytes());
        out[4..4 + self.g.data_size].copy_from_slice(self.data_of(n));
        Ok(())
    }

    /// The node after `key` in post-order (under the lock).
    fn next_node(&self, key: Option<&Key>) -> Option<u32> {
        let root = self.aux().root.load(Ordering::Acquire);
        self.node(root)?;
        let leftmost = |mut n: u32| -> Option<u32> {
            let mut next = None;
            let mut steps = 0;
            while self.node(n).is_some() && steps <= self.g.n_nodes {
                steps += 1;
                if self.is_im(n) {
                    n = self.child(n, 0);
                } else {
                    next = Some(n);
                    let c = self.child(n, 0);
                    n = if c != 0 { c } else { self.child(n, 1) };
                }
            }
            next
        };
        let Some(key) = key.filter(|k| k.prefixlen <= self.max_prefixlen()) else {
            return leftmost(root);
        };
        let data = &key.data[..self.g.data_size];
        let mut stack: Vec<u32> = Vec::new();
        let mut n = root;
        let mut matchlen = 0;
        while self.node(n).is_some() && stack.len() <= self.g.n_nodes as usize {
            stack.push(n);
            matchlen = self.match_len(n, key);
            let plen = self.prefixlen(n);
            if plen != matchlen || plen == key.prefixlen {
                break;
            }
            n = self.child(n, extract_bit(data, plen));
        }
        if self.node(n).is_none() || self.prefixlen(n) != matchlen || self.is_im(n) {
            return leftmost(root);
        }
        let mut node = n;
        while stack.len() > 1 {
            let parent = stack[stack.len() - 2];
            if self.child(parent, 0) == node {
                let right = self.child(parent, 1);
                if right != 0 {
                    return leftmost(right);
                }
            }
            if !self.is_im(parent) {
                return Some(parent);
            }
            node = parent;
            stack.pop();
        }
        None
    }

    /// Entries stored.
    pub fn len(&self) -> u32 {
        self.aux().n_entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MapOps for LpmTrie {
    fn lookup(&self, key: &[u8], value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        let k = self.key_of(key)?;
        let out = value
            .get_mut(..self.g.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        let _guard = self.aux().lock.lock();
        let n = self.lookup_node(&k).ok_or(MapError::NotFound)?;
        // SAFETY: the value is inside the node, stable under the lock.
        out.copy_from_slice(unsafe {
            std::slice::from_raw_parts(self.value_ptr(n), self.g.value_size)
        });
        Ok(())
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let k = self.key_of(key)?;
        let v = value
            .get(..self.g.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        // SAFETY: `v` has value_size bytes.
        unsafe { self.update_key(&k, v.as_ptr(), flags) }
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let k = self.key_of(key)?;
        self.delete_key(&k)
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        let k = match key {
            Some(k) => Some(self.key_of(k)?),
            None => None,
        };
        let out = next
            .get_mut(..4 + self.g.data_size)
            .ok_or(MapError::Invalid("key size"))?;
        self.next_key_into(k.as_ref(), out)
    }

    unsafe fn prog_lookup(&self, key: *const u8) -> *mut u8 {
        // SAFETY: the caller vouches for key_size bytes at `key`.
        let k = unsafe { self.read_key(key) };
        let _guard = self.aux().lock.lock();
        self.lookup_node(&k)
            .map_or(std::ptr::null_mut(), |n| self.value_ptr(n))
    }

    unsafe fn prog_update(&self, key: *const u8, value: *const u8, flags: u64) -> i64 {
        // SAFETY: the caller vouches for both pointers.
        let r = unsafe {
            let k = self.read_key(key);
            self.update_key(&k, value, flags)
        };
        r.map_or_else(|e| e.to_helper_ret(), |()| 0)
    }

    unsafe fn prog_delete(&self, key: *const u8) -> i64 {
        // SAFETY: the caller vouches for `key`.
        let k = unsafe { self.read_key(key) };
        self.delete_key(&k)
            .map_or_else(|e| e.to_helper_ret(), |()| 0)
    }

    fn prog_value_size(&self) -> u32 {
        self.g.value_size as u32
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
