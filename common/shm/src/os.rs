//! The operating-system edge: POSIX shared memory objects, mappings, the writer lock, futexes,
//! the monotonic clock and process liveness. Everything `unsafe` in keymash lives here or in the
//! raw-pointer accessors of [`Mapping`].

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::stat::Mode;

/// Who may open a segment besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permissions {
    /// 0600: the owning user only (the default; all keymash units run as one `keymash` user).
    #[default]
    OwnerOnly,
    /// 0660: the owner and the file's group (e.g. a shared `keymash` group).
    OwnerAndGroup,
}

impl Permissions {
    pub fn mode_bits(self) -> u32 {
        match self {
            Permissions::OwnerOnly => 0o600,
            Permissions::OwnerAndGroup => 0o660,
        }
    }

    fn mode(self) -> Mode {
        Mode::from_bits_truncate(self.mode_bits() as nix::libc::mode_t)
    }
}

/// Creates `/dev/shm/<shm_name>` exclusively (O_EXCL) and sets its mode with fchmod, so the umask
/// can neither widen nor narrow it.
pub(crate) fn create_exclusive(shm_name: &str, permissions: Permissions) -> Result<OwnedFd, Errno> {
    let fd = nix::sys::mman::shm_open(
        shm_name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        permissions.mode(),
    )?;
    nix::sys::stat::fchmod(&fd, permissions.mode())?;
    Ok(fd)
}

pub(crate) fn open_existing(shm_name: &str, writable: bool) -> Result<OwnedFd, Errno> {
    let access = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    nix::sys::mman::shm_open(shm_name, access | OFlag::O_CLOEXEC, Mode::empty())
}

pub(crate) fn unlink(shm_name: &str) -> Result<(), Errno> {
    nix::sys::mman::shm_unlink(shm_name)
}

/// Size and mode bits of an open segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileFacts {
    pub len: u64,
    /// Bytes the filesystem has actually allocated to the file (`st_blocks` x 512): less than
    /// `len` means holes, pages a later write would have to find room for.
    pub allocated: u64,
    pub mode: u32,
    /// Device and inode: which segment a name referred to when it was opened.
    pub identity: (u64, u64),
}

pub(crate) fn file_facts(fd: &impl AsFd) -> Result<FileFacts, Errno> {
    let stat = nix::sys::stat::fstat(fd)?;
    Ok(FileFacts {
        len: u64::try_from(stat.st_size).unwrap_or(0),
        allocated: u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512),
        mode: stat.st_mode & 0o7777,
        identity: (stat.st_dev, stat.st_ino),
    })
}

/// Device and inode the path refers to now; `None` if it no longer exists (or cannot be seen).
pub(crate) fn path_identity(path: &str) -> Option<(u64, u64)> {
    nix::sys::stat::stat(path)
        .ok()
        .map(|stat| (stat.st_dev, stat.st_ino))
}

pub(crate) fn set_len(fd: &impl AsFd, len: usize) -> Result<(), Errno> {
    let len = nix::libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    nix::unistd::ftruncate(fd, len)
}

/// Allocates every page of the first `len` bytes of `fd` now (posix_fallocate).
///
/// `ftruncate` alone makes a sparse file: tmpfs finds a page only when the mapping first touches
/// it, and when the tmpfs is full that touch is answered with SIGBUS, which kills the writer in
/// the middle of a frame (and its restart, into the same fault). Reserved up front, running out
/// is an `ENOSPC` here, at creation, where it can be reported. tmpfs implements fallocate; on a
/// filesystem that does not, glibc writes the blocks instead, with the same result.
pub(crate) fn reserve(fd: &impl AsFd, len: usize) -> Result<(), Errno> {
    let len = nix::libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    #[cfg(test)]
    if fault::take_reserve_failure() {
        return Err(Errno::ENOSPC);
    }
    nix::fcntl::posix_fallocate(fd, 0, len)
}

/// A filesystem's size in blocks, as statvfs(3) reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilesystemBlocks {
    /// `f_frsize`, the unit of the counts (on tmpfs: the page size); at least 1.
    pub(crate) block_size: u64,
    pub(crate) blocks: u64,
    pub(crate) free: u64,
    /// Free to an unprivileged writer (`f_bavail`).
    pub(crate) available: u64,
}

/// The filesystem holding `path`, as statvfs(3) sees it.
// `c_ulong` and `fsblkcnt_t` are u64 on 64-bit Linux but may be u32 elsewhere: the conversions
// are the portable spelling, not useless ones.
#[allow(clippy::useless_conversion)]
pub(crate) fn filesystem_blocks(path: &str) -> Result<FilesystemBlocks, Errno> {
    let vfs = nix::sys::statvfs::statvfs(path)?;
    Ok(FilesystemBlocks {
        block_size: u64::from(vfs.fragment_size()).max(1),
        blocks: u64::from(vfs.blocks()),
        free: u64::from(vfs.blocks_free()),
        available: u64::from(vfs.blocks_available()),
    })
}

/// Fault injection for the crate's unit tests: the cleanup after a failed reservation cannot be
/// reached on a roomy /dev/shm otherwise (the free-space check stops a create that would fail).
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    thread_local! {
        static FAIL_NEXT_RESERVE: Cell<bool> = const { Cell::new(false) };
    }

    /// The next [`super::reserve`] on this thread fails with ENOSPC.
    pub(crate) fn fail_next_reserve() {
        FAIL_NEXT_RESERVE.with(|f| f.set(true));
    }

    pub(super) fn take_reserve_failure() -> bool {
        FAIL_NEXT_RESERVE.with(|f| f.replace(false))
    }
}

/// The single-writer lock: an exclusive `flock` on the segment, held for the writer's lifetime.
/// The kernel drops it when the writer's process dies, however it dies, so a restarted writer can
/// always re-attach while two live writers never can.
pub(crate) type WriterLock = Flock<OwnedFd>;

/// Takes the writer lock without waiting; `Err(EWOULDBLOCK)` means another writer holds it.
pub(crate) fn lock_writer(fd: OwnedFd) -> Result<WriterLock, Errno> {
    Flock::lock(fd, FlockArg::LockExclusiveNonblock).map_err(|(_fd, errno)| errno)
}

/// A shared mapping of a whole segment.
///
/// Holds a raw pointer, never a reference: other processes change this memory at any time, so the
/// crate reads and writes it only through atomics (headers, stamps, metadata) or raw-pointer
/// copies validated by a seqlock (payloads and cell values).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, valid at the same address in every thread of this
// process until `Drop` unmaps it; all access goes through atomics or seqlock-validated copies,
// which are as thread-safe as they are process-safe.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out raw pointers and atomic references.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-write or read-only.
    pub(crate) fn map(fd: &impl AsFd, len: usize, writable: bool) -> Result<Mapping, Errno> {
        let length = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: we ask the kernel for a fresh mapping at an address of its choice (None), so no
        // existing Rust object is aliased or replaced; the fd refers to a shm object we opened.
        let ptr = unsafe { nix::sys::mman::mmap(None, length, prot, MapFlags::MAP_SHARED, fd, 0)? };
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Pointer to byte `offset`; `offset + size` must lie within the mapping.
    pub(crate) fn ptr_at(&self, offset: usize, size: usize) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len {
            return None;
        }
        // SAFETY: offset + size <= len, so the result stays inside the mapped allocation.
        Some(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// A shared reference to a structure of atomics at `offset`.
    ///
    /// Returns `None` if it would not fit or would be misaligned.
    pub(crate) fn atomics_at<T: AtomicsOnly>(&self, offset: usize) -> Option<&T> {
        let ptr = self.ptr_at(offset, size_of::<T>())?;
        if !(ptr as usize).is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: `ptr` is in bounds and aligned (checked above) and lives as long as `&self`
        // (the mapping is unmapped only in Drop). `T: AtomicsOnly` guarantees every bit pattern is
        // valid (zerocopy FromBytes) and that every byte sits inside an UnsafeCell (atomics), so
        // a shared reference does not claim the memory is immutable: concurrent modification by
        // another process is exactly what atomics permit. On a read-only mapping callers only
        // load; the std docs allow atomic loads of up to 64 bits from read-only memory.
        Some(unsafe { &*ptr.cast::<T>() })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every reference derived from the
        // mapping borrows `self`, so none outlives this call.
        let result = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
        // munmap fails only on invalid arguments, which we never pass; nothing to do otherwise.
        debug_assert!(result.is_ok(), "munmap failed: {result:?}");
    }
}

/// Marker for `#[repr(C)]` structures made only of atomics (so: `FromBytes`, `KnownLayout`, every
/// byte interior-mutable). Implemented for the segment and slot headers.
pub(crate) trait AtomicsOnly: zerocopy::FromBytes + zerocopy::KnownLayout {}
impl AtomicsOnly for crate::layout::SegmentHeader {}
impl AtomicsOnly for crate::layout::SlotHeader {}

/// Copies `len` bytes out of shared memory that another process may be writing concurrently.
///
/// The copy may observe a mix of old and new bytes; callers accept the result only if the
/// seqlock word shows no write overlapped the copy, and discard it otherwise.
///
/// # Safety
/// `src` must be valid for reads of `len` bytes (inside a live mapping) and `dst` valid for writes
/// of `len` bytes, and the two must not overlap.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller guarantees both ranges are valid and disjoint. The source may change
    // under us; that is a race the Rust memory model does not bless, and the standard seqlock
    // practice (crossbeam's AtomicCell, the kernel's seqcount) which we follow: no reference to the
    // source is ever created, the bytes land in private memory, and they are interpreted only
    // after the sequence check proves no writer touched them. A per-byte atomic copy would be
    // sound but several times slower for 460 kB frames, and Rust has no stable atomic memcpy.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Copies `len` bytes into shared memory read concurrently by other processes.
///
/// # Safety
/// As for [`copy_from_shared`], with `dst` inside a writable mapping whose single writer is us.
pub(crate) unsafe fn copy_to_shared(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: caller guarantees valid, disjoint ranges; readers validate with the seqlock.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Outcome of a futex wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken, or the word had already changed, or a signal arrived: re-check and maybe wait again.
    Retry,
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (FUTEX_WAIT, shared between processes).
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Duration,
) -> Result<FutexWait, Errno> {
    let ts = nix::libc::timespec {
        tv_sec: nix::libc::time_t::try_from(timeout.as_secs()).unwrap_or(nix::libc::time_t::MAX),
        tv_nsec: nix::libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT only reads the aligned 32-bit word (an AtomicU32 we borrow, so it stays
    // mapped for the call) and the timespec on our stack; the remaining arguments are ignored.
    // Not FUTEX_PRIVATE_FLAG: the word is shared with other processes through the mapping.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAIT,
            expected,
            &ts as *const nix::libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(FutexWait::Retry);
    }
    match Errno::last() {
        Errno::EAGAIN | Errno::EINTR => Ok(FutexWait::Retry),
        Errno::ETIMEDOUT => Ok(FutexWait::TimedOut),
        other => Err(other),
    }
}

/// Wakes every process sleeping on `word` (FUTEX_WAKE, shared). Returns how many were woken.
pub(crate) fn futex_wake_all(word: &AtomicU32) -> Result<usize, Errno> {
    // SAFETY: FUTEX_WAKE does not access memory at all; the address only identifies the queue.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(usize::try_from(rc).unwrap_or(0))
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the time base of heartbeats and capture timestamps, comparable
/// across processes on one machine.
pub fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            secs.saturating_mul(1_000_000_000).saturating_add(nanos)
        }
        // CLOCK_MONOTONIC cannot fail on Linux; 0 reads as "no heartbeat" rather than a lie.
        Err(_) => 0,
    }
}

/// Whether process `pid` exists (kill(pid, 0); EPERM means it exists but is someone else's).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

pub(crate) fn current_pid() -> u32 {
    u32::try_from(nix::unistd::getpid().as_raw()).unwrap_or(0)
}
