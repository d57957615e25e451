//! The consumer side of the kernel's event buffers: a `BPF_MAP_TYPE_RINGBUF`
//! map mapped as libbpf's `ringbuf.c` maps it, and a per-CPU
//! `PERF_COUNT_SW_BPF_OUTPUT` perf event ring read as libbpf's
//! `perf_event_read_simple` reads it. Waiting is the caller's (epoll on the
//! map fd or the perf event fds).

use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use userbpf_libbpf_compat::backend::kernel::sys;
use userbpf_runtime::shm::PAGE_SIZE;

/// `BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`, `BPF_RINGBUF_HDR_SZ`.
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SZ: u64 = 8;

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Which step of mapping a kernel ring failed (for libbpf's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMapError {
    ConsumerPage(i32),
    TooBig,
    DataPages(i32),
}

/// One kernel `RINGBUF` map, mapped: the consumer page read-write, the
/// producer page and the data twice (so a record that wraps reads
/// contiguously) read-only.
pub struct KernelRing {
    consumer: *mut c_void,
    producer: *mut c_void,
    data: *const u8,
    mask: u64,
    data_len: usize,
}

impl std::fmt::Debug for KernelRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRing")
            .field("size", &(self.mask + 1))
            .finish()
    }
}

impl Drop for KernelRing {
    fn drop(&mut self) {
        // SAFETY: the two mappings `open` made, of these sizes.
        unsafe {
            libc::munmap(self.consumer, PAGE_SIZE);
            libc::munmap(self.producer, PAGE_SIZE + self.data_len);
        }
    }
}

impl KernelRing {
    /// Maps ring buffer map `fd` of `max_entries` data bytes.
    pub fn open(fd: RawFd, max_entries: u32) -> Result<KernelRing, RingMapError> {
        // SAFETY: a new shared mapping of the map's consumer page; the
        // kernel checks the fd and the size.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(RingMapError::ConsumerPage(last_errno()));
        }
        let data_len = 2 * max_entries as u64;
        let Ok(len) = usize::try_from(PAGE_SIZE as u64 + data_len) else {
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(consumer, PAGE_SIZE) };
            return Err(RingMapError::TooBig);
        };
        // SAFETY: a new read-only shared mapping of the producer page and
        // the doubly mapped data, as the kernel lays them out.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                PAGE_SIZE as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = last_errno();
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(consumer, PAGE_SIZE) };
            return Err(RingMapError::DataPages(e));
        }
        Ok(KernelRing {
            consumer,
            producer,
            // SAFETY: within the mapping (one page in).
            data: unsafe { producer.cast::<u8>().add(PAGE_SIZE) },
            mask: u64::from(max_entries).wrapping_sub(1),
            data_len: len - PAGE_SIZE,
        })
    }

    fn consumer_word(&self) -> &AtomicU64 {
        // SAFETY: the first word of the mapped consumer page, 8-aligned and
        // live while `self` is; the kernel and we access it atomically.
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    fn producer_word(&self) -> &AtomicU64 {
        // SAFETY: as consumer_word, for the (read-only) producer page.
        unsafe { &*self.producer.cast::<AtomicU64>() }
    }

    /// `ring__consumer_pos`: acquire load.
    pub fn consumer_pos(&self) -> u64 {
        self.consumer_word().load(Ordering::Acquire)
    }

    /// `ring__producer_pos`: acquire load (pairs with the kernel's release
    /// store in `__bpf_ringbuf_reserve`).
    pub fn producer_pos(&self) -> u64 {
        self.producer_word().load(Ordering::Acquire)
    }

    pub fn avail_data_size(&self) -> u64 {
        let cons = self.consumer_pos();
        self.producer_pos().wrapping_sub(cons)
    }

    pub fn size(&self) -> u64 {
        self.mask.wrapping_add(1)
    }

    /// libbpf's `ringbuf_process_ring`: calls `cb` for each committed
    /// record, stops at a BUSY one, skips discarded ones, stores the
    /// consumer position (release) after each record; records consumed
    /// (stopping once `n` were), or the first negative callback value
    /// (after storing the position past its record).
    pub fn process(&self, n: u64, mut cb: impl FnMut(&[u8]) -> c_int) -> i64 {
        let mut cnt: i64 = 0;
        let mut cons = self.consumer_pos();
        loop {
            let mut got_new_data = false;
            let prod = self.producer_pos();
            while cons < prod {
                let off = (cons & self.mask) as usize;
                // SAFETY: the record header lies in the data mapping (the
                // kernel keeps records 8-aligned inside the ring, and the
                // data is mapped twice).
                let len_word = unsafe { &*self.data.add(off).cast::<AtomicU32>() };
                let len = len_word.load(Ordering::Acquire);
                if len & BUSY_BIT != 0 {
                    return cnt;
                }
                got_new_data = true;
                let plain = len & !(BUSY_BIT | DISCARD_BIT);
                cons += (u64::from(plain) + HDR_SZ).next_multiple_of(8);
                if len & DISCARD_BIT == 0 {
                    // SAFETY: `plain` bytes after the header, contiguous
                    // thanks to the double mapping.
                    let sample = unsafe {
                        std::slice::from_raw_parts(
                            self.data.add(off + HDR_SZ as usize),
                            plain as usize,
                        )
                    };
                    let r = cb(sample);
                    if r < 0 {
                        self.consumer_word().store(cons, Ordering::Release);
                        return i64::from(r);
                    }
                    cnt += 1;
                }
                self.consumer_word().store(cons, Ordering::Release);
                if cnt as u64 >= n {
                    return cnt;
                }
            }
            if !got_new_data {
                return cnt;
            }
        }
    }
}

/// One CPU's perf event ring (libbpf's `struct perf_cpu_buf`): the
/// `PERF_COUNT_SW_BPF_OUTPUT` event, its mapping (control page plus
/// `mmap_size` data bytes) and the copy buffer for records that wrap.
pub struct KernelPerfBuf {
    fd: OwnedFd,
    base: *mut c_void,
    mmap_size: usize,
    copy: std::cell::RefCell<Vec<u8>>,
}

impl std::fmt::Debug for KernelPerfBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPerfBuf")
            .field("fd", &self.fd)
            .finish()
    }
}

impl Drop for KernelPerfBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping `open` made, of this size.
        unsafe { libc::munmap(self.base, self.mmap_size + PAGE_SIZE) };
        let _ = sys::perf_ioctl(self.fd.as_raw_fd(), sys::perf_ioc::DISABLE, 0);
    }
}

/// Which step of opening a perf ring failed (for libbpf's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfOpenError {
    Open(i32),
    Mmap(i32),
    Enable(i32),
}

/// `struct perf_event_mmap_page`: `data_head` and `data_tail` offsets.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

impl KernelPerfBuf {
    /// libbpf's `perf_buffer__open_cpu_buf`: `perf_event_open(attr, -1,
    /// cpu, -1, PERF_FLAG_FD_CLOEXEC)`, mapped with `1 + page_cnt` pages,
    /// enabled.
    ///
    /// # Safety
    /// `attr` points at a valid `struct perf_event_attr` (its `size` field
    /// saying how much of it there is).
    pub unsafe fn open(
        attr: *const c_void,
        cpu: c_int,
        mmap_size: usize,
    ) -> Result<KernelPerfBuf, PerfOpenError> {
        // SAFETY: caller contract for attr.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr,
                -1 as c_int,
                cpu,
                -1 as c_int,
                sys::perf::FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        if raw < 0 {
            return Err(PerfOpenError::Open(last_errno()));
        }
        // SAFETY: a new fd from the kernel, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: a new shared mapping of the event's ring.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_size + PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(PerfOpenError::Mmap(last_errno()));
        }
        let buf = KernelPerfBuf {
            fd,
            base,
            mmap_size,
            copy: Default::default(),
        };
        sys::perf_ioctl(buf.fd.as_raw_fd(), sys::perf_ioc::ENABLE, 0)
            .map_err(PerfOpenError::Enable)?;
        Ok(buf)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The mapping (`perf_buffer__buffer`).
    pub fn base(&self) -> *mut c_void {
        self.base
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: an 8-aligned word of the mapped control page, live while
        // `self` is.
        unsafe { &*self.base.cast::<u8>().add(off).cast::<AtomicU64>() }
    }

    /// Whether records wait.
    pub fn ready(&self) -> bool {
        self.word(DATA_HEAD).load(Ordering::Acquire) != self.word(DATA_TAIL).load(Ordering::Relaxed)
    }

    /// libbpf's `perf_event_read_simple`: `f` gets each record (header
    /// included; one that wraps is copied out first) until it returns
    /// something other than `cont`; that record is consumed too. The new
    /// tail is stored (release) at the end. Returns `f`'s last value, or
    /// `cont` if the ring ran dry, or `error` if a copy buffer could not be
    /// made.
    pub fn read_simple(
        &self,
        cont: c_int,
        error: c_int,
        mut f: impl FnMut(&[u8]) -> c_int,
    ) -> c_int {
        let head = self.word(DATA_HEAD).load(Ordering::Acquire);
        let mut tail = self.word(DATA_TAIL).load(Ordering::Relaxed);
        // SAFETY: the data starts one page into the mapping.
        let base = unsafe { self.base.cast::<u8>().add(PAGE_SIZE) };
        let mut ret = cont;
        while head != tail {
            let off = (tail & (self.mmap_size as u64 - 1)) as usize;
            // SAFETY: the 8-byte header of the record at `off`, inside the
            // data area (records are 8-aligned, so a header never wraps).
            let hdr = unsafe { std::slice::from_raw_parts(base.add(off), 8) };
            let size = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
            if size == 0 {
                break;
            }
            let mut copy = self.copy.borrow_mut();
            let rec: &[u8] = if off + size > self.mmap_size {
                let first = self.mmap_size - off;
                let have = copy.len();
                if have < size {
                    if copy.try_reserve(size - have).is_err() {
                        ret = error;
                        break;
                    }
                    copy.resize(size, 0);
                }
                // SAFETY: the two pieces of the record: the end of the data
                // area and its start.
                unsafe {
                    std::ptr::copy_nonoverlapping(base.add(off), copy.as_mut_ptr(), first);
                    std::ptr::copy_nonoverlapping(base, copy.as_mut_ptr().add(first), size - first);
                }
                &copy[..size]
            } else {
                // SAFETY: the whole record lies inside the data area.
                unsafe { std::slice::from_raw_parts(base.add(off), size) }
            };
            ret = f(rec);
            drop(copy);
            tail += size as u64;
            if ret != cont {
                break;
            }
        }
        self.word(DATA_TAIL).store(tail, Ordering::Release);
        ret
    }
}

/// The `perf_event_attr` of `perf_buffer__new`: software BPF output,
/// raw samples, a wake-up every `sample_period` samples.
pub fn bpf_output_attr(sample_period: u32) -> sys::PerfEventAttr {
    sys::PerfEventAttr {
        type_: sys::perf::TYPE_SOFTWARE,
        size: std::mem::size_of::<sys::PerfEventAttr>() as u32,
        config: sys::perf::COUNT_SW_BPF_OUTPUT,
        sample_type: sys::perf::SAMPLE_RAW,
        wakeup_events: sample_period,
        ..Default::default()
    }
}

/// A kernel `USER_RINGBUF` map, mapped as libbpf's `user_ringbuf_map`
/// maps it (consumer page read-only, producer page and twice the data
/// read-write), with its own epoll instance watching the map fd for
/// `EPOLLOUT` (the kernel's notification after a drain).
pub struct KernelUserRing {
    consumer: *mut c_void,
    producer: *mut c_void,
    data: *mut u8,
    mask: u64,
    data_len: usize,
    epoll: OwnedFd,
}

impl std::fmt::Debug for KernelUserRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelUserRing")
            .field("size", &(self.mask + 1))
            .finish()
    }
}

impl Drop for KernelUserRing {
    fn drop(&mut self) {
        // SAFETY: the two mappings `open` made, of these sizes.
        unsafe {
            libc::munmap(self.consumer, PAGE_SIZE);
            libc::munmap(self.producer, PAGE_SIZE + self.data_len);
        }
    }
}

/// Which step of setting up a kernel user ring failed (libbpf's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRingError {
    Epoll(i32),
    ConsumerPage(i32),
    TooBig,
    DataPages(i32),
    EpollAdd(i32),
}

impl KernelUserRing {
    /// libbpf's `user_ring_buffer__new` after the map type check.
    pub fn open(fd: RawFd, max_entries: u32) -> Result<KernelUserRing, UserRingError> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(UserRingError::Epoll(last_errno()));
        }
        // SAFETY: a fresh fd nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: a new read-only shared mapping of the consumer page.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(UserRingError::ConsumerPage(last_errno()));
        }
        let Ok(len) = usize::try_from(PAGE_SIZE as u64 + 2 * u64::from(max_entries)) else {
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(consumer, PAGE_SIZE) };
            return Err(UserRingError::TooBig);
        };
        // SAFETY: a new shared mapping of the producer page and the doubly
        // mapped data, which user space writes.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                PAGE_SIZE as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = last_errno();
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(consumer, PAGE_SIZE) };
            return Err(UserRingError::DataPages(e));
        }
        let ring = KernelUserRing {
            consumer,
            producer,
            // SAFETY: one page into the mapping.
            data: unsafe { producer.cast::<u8>().add(PAGE_SIZE) },
            mask: u64::from(max_entries).wrapping_sub(1),
            data_len: len - PAGE_SIZE,
            epoll,
        };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLOUT as u32,
            u64: 0,
        };
        // SAFETY: our epoll fd, the caller's map fd, a valid event.
        if unsafe { libc::epoll_ctl(ring.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0
        {
            return Err(UserRingError::EpollAdd(last_errno()));
        }
        Ok(ring)
    }

    fn consumer_word(&self) -> &AtomicU64 {
        // SAFETY: the first word of the mapped consumer page, live while
        // `self` is.
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    fn producer_word(&self) -> &AtomicU64 {
        // SAFETY: as consumer_word, for the producer page.
        unsafe { &*self.producer.cast::<AtomicU64>() }
    }

    /// `user_ring_buffer__reserve`: the sample, or `E2BIG` / `ENOSPC`.
    pub fn reserve(&self, size: u32) -> Result<*mut u8, i32> {
        if size & (BUSY_BIT | DISCARD_BIT) != 0 {
            return Err(libc::E2BIG);
        }
        let cons = self.consumer_word().load(Ordering::Acquire);
        let prod = self.producer_word().load(Ordering::Acquire);
        let max = self.mask.wrapping_add(1);
        let avail = max.wrapping_sub(prod.wrapping_sub(cons)) as u32;
        let total = (u64::from(size) + HDR_SZ).next_multiple_of(8) as u32;
        if u64::from(total) > max {
            return Err(libc::E2BIG);
        }
        if avail < total {
            return Err(libc::ENOSPC);
        }
        let off = (prod & self.mask) as usize;
        // SAFETY: the 8-byte header at the producer position, inside the
        // writable data mapping; the kernel does not read it until the
        // producer position moves past it.
        unsafe {
            let hdr = self.data.add(off);
            hdr.cast::<u32>().write(size | BUSY_BIT);
            hdr.add(4).cast::<u32>().write(0);
        }
        self.producer_word()
            .store(prod + u64::from(total), Ordering::Release);
        // SAFETY: the sample follows its header (contiguous thanks to the
        // double mapping).
        Ok(unsafe { self.data.add(((prod + HDR_SZ) & self.mask) as usize) })
    }

    /// `user_ring_buffer__reserve_blocking`: retries while `ENOSPC`,
    /// sleeping in `epoll_wait` on the map fd (the kernel notifies after a
    /// drain), until `timeout_ms` (-1: forever) runs out; then one last try.
    pub fn reserve_blocking(&self, size: u32, timeout_ms: c_int) -> Result<*mut u8, i32> {
        let start = std::time::Instant::now();
        let mut remaining = timeout_ms;
        loop {
            match self.reserve(size) {
                Err(libc::ENOSPC) => {}
                r => return r,
            }
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: our epoll fd and one event slot.
            let cnt = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), &mut ev, 1, remaining) };
            if cnt < 0 {
                return Err(last_errno());
            }
            if timeout_ms == -1 {
                continue;
            }
            let elapsed = start.elapsed().as_millis().min(c_int::MAX as u128) as c_int;
            remaining = timeout_ms - elapsed;
            if remaining <= 0 {
                break;
            }
        }
        self.reserve(size)
    }

    /// `user_ringbuf_commit`: clears the busy bit (sets the discard bit),
    /// acquire-release.
    ///
    /// # Safety
    /// `sample` a reservation of this ring not committed yet.
    pub unsafe fn commit(&self, sample: *mut u8, discard: bool) {
        // SAFETY: caller contract: sample lies in the data mapping.
        let rel = unsafe { sample.offset_from(self.data) } as u64;
        let hdr_off = (self.mask + 1 + rel - HDR_SZ) & self.mask;
        // SAFETY: the sample's header, an aligned u32 in the mapping.
        let len = unsafe { &*self.data.add(hdr_off as usize).cast::<AtomicU32>() };
        let mut new_len = len.load(Ordering::Relaxed) & !BUSY_BIT;
        if discard {
            new_len |= DISCARD_BIT;
        }
        len.swap(new_len, Ordering::AcqRel);
    }
}
