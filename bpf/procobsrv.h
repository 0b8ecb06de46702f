/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * The record layout shared by the kernel program (procobsrv.bpf.c) and user space
 * (src/procobsrv/linux/ebpf_abi.py, checked against this file by
 * tests/linux/test_ebpf_abi.py). Types only: no kernel headers, so that both sides
 * compile it (the BPF side gets __u32 & co. from vmlinux.h, user space from <linux/types.h>).
 */
#ifndef PROCOBSRV_H
#define PROCOBSRV_H

/* Capture limits, in bytes (documented in docs/ebpf.md). */
#define PO_ARGS_CAP 4096   /* argv: longer ones are cut here and flagged PO_F_ARGS_TRUNCATED */
#define PO_PATH_CAP 4096   /* each path (image, script, cwd, cgroup) */
#define PO_NAME_MAX 256    /* one path component, NUL included */
#define PO_MAX_DEPTH 64    /* path components followed (power of 2) */
#define PO_COMM_LEN 16
/* cgroup ids whose path the program remembers having sent (an LRU: user space keeps more) */
#define PO_CGROUPS_REMEMBERED 8192

/* po_event.kind */
enum po_kind {
	PO_FORK = 1, /* a new process (not a thread) */
	PO_EXEC = 2, /* it now runs another program */
	PO_EXIT = 3, /* the whole process ended (its last thread) */
	PO_CGROUP = 4, /* a cgroup's path, sent before the first event naming its id */
};

/* po_event.flags */
#define PO_F_ARGS_TRUNCATED   (1u << 0) /* argv longer than PO_ARGS_CAP */
#define PO_F_IMAGE_TRUNCATED  (1u << 1) /* a path longer than its cap or deeper than PO_MAX_DEPTH */
#define PO_F_SCRIPT_TRUNCATED (1u << 2)
#define PO_F_CWD_TRUNCATED    (1u << 3)
#define PO_F_CGROUP_TRUNCATED (1u << 4) /* deeper than PO_MAX_DEPTH: the top is left out */
#define PO_F_ARGS_FAULT       (1u << 5) /* argv could not be read */
#define PO_F_IMAGE_OUTSIDE    (1u << 6) /* the image is not under the process's root, or not
					   in its mount namespace (an fd from elsewhere, a memfd) */
#define PO_F_IMAGE_DELETED    (1u << 7) /* unlinked, or a file that never had a name (memfd) */
#define PO_F_CWD_DELETED      (1u << 8)
#define PO_F_CGROUP_TAIL_CUT  (1u << 9) /* longer than PO_PATH_CAP: the last components are
					   left out (kernfs names' lengths are not known ahead) */

/*
 * One record in the ring buffer: this fixed header, then `data` holding, back to back and
 * without NULs around them, argv (args_len bytes, NUL-separated as in /proc/PID/cmdline),
 * the image path, the script path, the cwd and the cgroup path. Each length may be 0
 * (not captured for this kind). The record's size is sizeof(struct po_event) + the sum.
 *
 * Paths are the host's view, as the host's /proc/PID/exe and cwd show them: resolved up to
 * the top of the process's mount tree, not stopped at its root (a chroot cannot rename its
 * image). A path cut by PO_PATH_CAP or PO_MAX_DEPTH keeps its last components and is
 * flagged *_TRUNCATED, except a cgroup path cut by PO_PATH_CAP, which keeps its first ones
 * (PO_F_CGROUP_TAIL_CUT). Only PO_CGROUP records carry a cgroup path (cgroup_len); events
 * carry only cgroup_id.
 */
struct po_event {
	__u32 kind;
	__u32 flags;
	__u32 pid;         /* tgid */
	__u32 ppid;        /* real parent's tgid */
	__u32 uid;         /* real uid */
	__u32 euid;        /* effective uid */
	__u64 ts_ns;       /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 start_ns;    /* the process's (group leader's) start_time, CLOCK_MONOTONIC */
	__u64 cgroup_id;   /* cgroup v2 id (the kernfs node id = the directory's inode) */
	__u32 exit_status; /* PO_EXIT: the wait status (code << 8 | core 0x80 | signal) */
	__u32 argc;        /* PO_EXEC: argc */
	__u32 args_size;   /* PO_EXEC: full size of the argv area (arg_end - arg_start) */
	__u16 args_len;
	__u16 image_len;
	__u16 script_len;
	__u16 cwd_len;
	__u16 cgroup_len;
	__u16 reserved;
	char comm[PO_COMM_LEN];
	__u32 creator;     /* PO_FORK: tgid of the process that forked (ppid differs after
			      clone(CLONE_PARENT)): the child runs its program */
	__u32 reserved2;
	/* The process as its own namespaces see it (0: not known, e.g. the task's namespaces
	 * were already released); PO_CGROUP records leave them 0. */
	__u32 ns_pid;      /* tgid in its own pid namespace (the one /proc/PID/ns/pid names) */
	__u32 ns_ppid;     /* real parent's tgid in that namespace, as getppid() there says:
			      0 when the parent lies outside it (a namespace's first process) */
	__u32 pid_ns;      /* inode of its pid namespace (stat /proc/PID/ns/pid: st_ino) */
	__u32 mnt_ns;      /* inode of its mount namespace (/proc/PID/ns/mnt) */
	char data[];
};

/* Failed ring buffer writes, per CPU (one entry): exact loss, per kind. */
struct po_drops {
	__u64 fork;
	__u64 exec;
	__u64 exit;
	__u64 cgroup; /* PO_CGROUP records: not events; the path is sent again with the next */
};

#endif /* PROCOBSRV_H */
