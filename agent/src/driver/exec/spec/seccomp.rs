//! Docker's default seccomp profile, ported as data.
//!
//! Source: moby `profiles/seccomp/default.json` (Apache-2.0), the profile Docker applies unless
//! `--security-opt seccomp=unconfined`. It is an allow-list: every system call not listed fails
//! with EPERM. Rules are conditional on the container's capabilities (`includes.caps`: all listed
//! capabilities must be in the bounding set; `excludes.caps`: none may be), on the architecture
//! and on the kernel version, and are evaluated here the way moby's `setupSeccomp` does, producing
//! a flat OCI `linux.seccomp` section.
//!
//! One deliberate difference in encoding, not in meaning: for `SCMP_CMP_MASKED_EQ` runc reads
//! `value` as the mask and `valueTwo` as the value compared with, but libcontainer 0.7.0 (youki)
//! passes `valueTwo` as the mask and `value` as the datum. The `clone` rule ("no namespace
//! flags") is therefore written with the mask in `valueTwo`, which is what the pinned
//! libcontainer needs for `(flags & mask) == 0`. Written runc's way, the rule would match every
//! `clone`, namespace flags included (checked: `clone(CLONE_NEWUSER)` then succeeds). The unit
//! test `seccomp_clone_rule_allows_fork_and_refuses_namespaces` loads the profile into a child
//! process and checks both directions with raw system calls.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// EPERM, the default errno of the profile.
const EPERM: u32 = 1;
/// ENOSYS, returned for `clone3` without CAP_SYS_ADMIN so that libc falls back to `clone`.
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
/// CLONE_NEWCGROUP: the namespace flags `clone` may not carry without CAP_SYS_ADMIN.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

#[derive(Debug, Clone, Copy)]
enum Action {
    Allow,
    Errno(u32),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Ne,
    Eq,
    /// `(arg & mask) == 0`.
    MaskedZero,
}

#[derive(Debug, Clone, Copy)]
struct Arg {
    index: usize,
    value: u64,
    op: Op,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cond {
    caps: &'static [&'static str],
    arches: &'static [&'static str],
    min_kernel: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    /// Whitespace-separated system call names.
    names: &'static str,
    action: Action,
    args: &'static [Arg],
    includes: Cond,
    excludes: Cond,
}

const NONE: Cond = Cond {
    caps: &[],
    arches: &[],
    min_kernel: None,
};

const fn allow(names: &'static str) -> Rule {
    Rule {
        names,
        action: Action::Allow,
        args: &[],
        includes: NONE,
        excludes: NONE,
    }
}

const fn allow_if_caps(names: &'static str, caps: &'static [&'static str]) -> Rule {
    Rule {
        names,
        action: Action::Allow,
        args: &[],
        includes: Cond {
            caps,
            arches: &[],
            min_kernel: None,
        },
        excludes: NONE,
    }
}

const fn allow_on(names: &'static str, arches: &'static [&'static str]) -> Rule {
    Rule {
        names,
        action: Action::Allow,
        args: &[],
        includes: Cond {
            caps: &[],
            arches,
            min_kernel: None,
        },
        excludes: NONE,
    }
}

/// `personality(value)` allowed for exactly this value.
macro_rules! personality {
    ($v:expr) => {
        allow("personality").with_args(&[Arg {
            index: 0,
            value: $v,
            op: Op::Eq,
        }])
    };
}

impl Rule {
    const fn with_args(mut self, args: &'static [Arg]) -> Rule {
        self.args = args;
        self
    }
}

const BASE_ALLOW: &str = "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod \
chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime \
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range \
creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 \
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 \
fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat \
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 \
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat \
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups \
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid \
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname \
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch \
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents \
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter \
io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset \
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek \
lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore \
mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify \
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap \
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep \
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 \
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 \
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead \
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages \
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending \
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 \
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max \
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 \
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select \
semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto \
setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid \
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 \
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 \
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn \
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync \
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun \
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime \
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit \
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid \
waitpid write writev";

/// The profile's rules, in the source's order.
const RULES: &[Rule] = &[
    allow(BASE_ALLOW),
    Rule {
        names: "process_vm_readv process_vm_writev ptrace",
        action: Action::Allow,
        args: &[],
        includes: Cond {
            caps: &[],
            arches: &[],
            min_kernel: Some((4, 8)),
        },
        excludes: NONE,
    },
    allow("socket").with_args(&[Arg {
        index: 0,
        value: 40, // AF_VSOCK
        op: Op::Ne,
    }]),
    personality!(0),
    personality!(8),
    personality!(131072),
    personality!(131080),
    personality!(4294967295),
    allow_on("sync_file_range2 swapcontext", &["ppc64le"]),
    allow_on(
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
        &["arm", "arm64"],
    ),
    allow_on("arch_prctl", &["amd64", "x32"]),
    allow_on("modify_ldt", &["amd64", "x32", "x86"]),
    allow_on(
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
        &["s390", "s390x"],
    ),
    allow_on("riscv_flush_icache", &["riscv64"]),
    allow_if_caps("open_by_handle_at", &["DAC_READ_SEARCH"]),
    allow_if_caps(
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount \
         mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname \
         sethostname setns syslog umount umount2 unshare",
        &["SYS_ADMIN"],
    ),
    Rule {
        names: "clone",
        action: Action::Allow,
        args: &[Arg {
            index: 0,
            value: CLONE_NAMESPACE_FLAGS,
            op: Op::MaskedZero,
        }],
        includes: NONE,
        excludes: Cond {
            caps: &["SYS_ADMIN"],
            arches: &["s390", "s390x"],
            min_kernel: None,
        },
    },
    Rule {
        // s390 passes the clone flags as the second argument.
        names: "clone",
        action: Action::Allow,
        args: &[Arg {
            index: 1,
            value: CLONE_NAMESPACE_FLAGS,
            op: Op::MaskedZero,
        }],
        includes: Cond {
            caps: &[],
            arches: &["s390", "s390x"],
            min_kernel: None,
        },
        excludes: Cond {
            caps: &["SYS_ADMIN"],
            arches: &[],
            min_kernel: None,
        },
    },
    Rule {
        names: "clone3",
        action: Action::Errno(ENOSYS),
        args: &[],
        includes: NONE,
        excludes: Cond {
            caps: &["SYS_ADMIN"],
            arches: &[],
            min_kernel: None,
        },
    },
    allow_if_caps("reboot", &["SYS_BOOT"]),
    allow_if_caps("chroot", &["SYS_CHROOT"]),
    allow_if_caps("delete_module init_module finit_module", &["SYS_MODULE"]),
    allow_if_caps("acct", &["SYS_PACCT"]),
    allow_if_caps(
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
        &["SYS_PTRACE"],
    ),
    allow_if_caps("iopl ioperm", &["SYS_RAWIO"]),
    allow_if_caps(
        "settimeofday stime clock_settime clock_settime64",
        &["SYS_TIME"],
    ),
    allow_if_caps("vhangup", &["SYS_TTY_CONFIG"]),
    allow_if_caps(
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
        &["SYS_NICE"],
    ),
    allow_if_caps("syslog", &["SYSLOG"]),
    allow_if_caps("bpf", &["BPF"]),
    allow_if_caps("perf_event_open", &["PERFMON"]),
];

/// The architecture names the profile uses (Go's), for this build's target.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The native architecture and its compatible sub-architectures (the profile's `archMap`).
fn architectures(arch: &str) -> Vec<Arch> {
    match arch {
        "amd64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "arm64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        _ => vec![Arch::ScmpArchNative],
    }
}

/// Parses `major.minor` from a kernel release such as `6.1.0-18-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn applies(rule: &Rule, caps: &BTreeSet<String>, arch: &str, kernel: (u32, u32)) -> bool {
    let inc = &rule.includes;
    if !inc.caps.iter().all(|c| caps.contains(*c)) {
        return false;
    }
    if !inc.arches.is_empty() && !inc.arches.contains(&arch) {
        return false;
    }
    if let Some(min) = inc.min_kernel
        && kernel < min
    {
        return false;
    }
    let exc = &rule.excludes;
    if exc.caps.iter().any(|c| caps.contains(*c)) {
        return false;
    }
    if exc.arches.contains(&arch) {
        return false;
    }
    true
}

/// Docker's default profile for a container with bounding capabilities `caps` (bare names) on
/// `arch` (Go name, see [`native_arch`]) and kernel `kernel`.
pub fn docker_default(
    caps: &BTreeSet<String>,
    arch: &str,
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    for rule in RULES.iter().filter(|r| applies(r, caps, arch, kernel)) {
        let mut b = LinuxSyscallBuilder::default().names(
            rule.names
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
        b = match rule.action {
            Action::Allow => b.action(LinuxSeccompAction::ScmpActAllow),
            Action::Errno(n) => b.action(LinuxSeccompAction::ScmpActErrno).errno_ret(n),
        };
        if !rule.args.is_empty() {
            let mut args = Vec::new();
            for a in rule.args {
                let arg = match a.op {
                    Op::Ne => LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .op(LinuxSeccompOperator::ScmpCmpNe),
                    Op::Eq => LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .op(LinuxSeccompOperator::ScmpCmpEq),
                    // libcontainer 0.7.0: valueTwo is the mask, value the datum (module docs).
                    Op::MaskedZero => LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(0u64)
                        .value_two(a.value)
                        .op(LinuxSeccompOperator::ScmpCmpMaskedEq),
                };
                args.push(arg.build()?);
            }
            b = b.args(args);
        }
        syscalls.push(b.build()?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(architectures(arch))
        .syscalls(syscalls)
        .build()
}
