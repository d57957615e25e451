//! libbpf's `errstr()`, which its messages use: `-EINVAL` and friends.

/// The kernel's internal ENOTSUPP, which libbpf names too.
const ENOTSUPP: i32 = 524;

/// libbpf's `errstr()` (used in its messages): `-EINVAL` and friends for
/// errnos it names, else the number.
pub fn errstr(err: i32) -> String {
    let e = err.abs();
    let name = match e {
        libc::E2BIG => "E2BIG",
        libc::EACCES => "EACCES",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EAGAIN => "EAGAIN",
        libc::EALREADY => "EALREADY",
        libc::EBADF => "EBADF",
        libc::EBADFD => "EBADFD",
        libc::EBUSY => "EBUSY",
        libc::ECANCELED => "ECANCELED",
        libc::ECHILD => "ECHILD",
        libc::EDEADLK => "EDEADLK",
        libc::EDOM => "EDOM",
        libc::EEXIST => "EEXIST",
        libc::EFAULT => "EFAULT",
        libc::EFBIG => "EFBIG",
        libc::EILSEQ => "EILSEQ",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EINTR => "EINTR",
        libc::EINVAL => "EINVAL",
        libc::EIO => "EIO",
        libc::EISDIR => "EISDIR",
        libc::ELOOP => "ELOOP",
        libc::EMFILE => "EMFILE",
        libc::EMLINK => "EMLINK",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENFILE => "ENFILE",
        libc::ENODATA => "ENODATA",
        libc::ENODEV => "ENODEV",
        libc::ENOENT => "ENOENT",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOLINK => "ENOLINK",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTBLK => "ENOTBLK",
        libc::ENOTDIR => "ENOTDIR",
        ENOTSUPP => "ENOTSUPP",
        libc::ENOTTY => "ENOTTY",
        libc::ENXIO => "ENXIO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EPERM => "EPERM",
        libc::EPIPE => "EPIPE",
        libc::EPROTO => "EPROTO",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ERANGE => "ERANGE",
        libc::EROFS => "EROFS",
        libc::ESPIPE => "ESPIPE",
        libc::ESRCH => "ESRCH",
        libc::ETXTBSY => "ETXTBSY",
        libc::EUCLEAN => "EUCLEAN",
        libc::EXDEV => "EXDEV",
        _ => return format!("{}", -e),
    };
    format!("-{name}")
}
