// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * procobsrv's kernel side on Linux, the counterpart of driver/ProcObsrv.sys: three BTF
 * tracepoints of the scheduler record each process fork, exec and exit into a ring buffer,
 * and user space (src/procobsrv/linux/ebpf.py) waits on that buffer's fd.
 *
 * Each record is built in a per-CPU scratch value (too large for the 512-byte stack), then
 * copied into the ring buffer with bpf_ringbuf_output. A failed copy is counted per kind
 * in the per-CPU `drops` map: user space reports exact losses from it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "procobsrv.h"

#ifndef SOURCES_SHA256
#error "SOURCES_SHA256 must be defined by the Makefile"
#endif

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Which sources built this object: checked by `make -C bpf check` and the tests. The
 * section is not one libbpf loads; it only travels in the file. */
const char sources_sha256[] SEC("procobsrv_sources") __attribute__((used)) = SOURCES_SHA256;

#define DATA_CAP (PO_ARGS_CAP + 4 * PO_PATH_CAP)
#define SLACK (PO_NAME_MAX + 8)

/* ev.data[] and data are the same bytes: the header and its payload are contiguous */
#pragma clang diagnostic ignored "-Wgnu-variable-sized-type-not-at-end"
struct scratch {
	struct po_event ev;
	char data[DATA_CAP + SLACK];
	/* the path walk's state (bpf_loop callbacks read it from here, not from the stack) */
	__u64 names[PO_MAX_DEPTH];
	__u64 node;      /* dentry or kernfs_node */
	__u64 mnt;       /* struct mount */
	__u64 root_node; /* the task's root: dentry */
	__u64 root_mnt;  /* and its vfsmount */
	__u64 depth;
	__u64 off;       /* where the next byte of ev.data goes */
	__u64 start;     /* where this path started */
	__u32 truncated;
	__u32 kernfs;    /* walking a kernfs node (cgroup), not a dentry */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct po_drops);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct po_settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* user space sets the size before load */
} events SEC(".maps");

/* kernfs_node's parent was renamed __parent in 6.15: CO-RE picks whichever exists. */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* Failed writes, all CPUs and kinds, atomically: user space reads this word through an
 * mmap of .bss on every fetch (no syscall) and reads the per-CPU `drops` only when it moved. */
__u64 dropped = 0;

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&heap, &zero);
}

/* -- paths ------------------------------------------------------------------------------ */

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/* One step up from s->node: remember its name, or cross to the mount below, or stop. */
static long walk_up(__u64 i, void *ctx)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u64 depth = s->depth;
	if (s->kernfs) {
		struct kernfs_node *kn = (void *)s->node;
		struct kernfs_node *parent = kernfs_parent(kn);
		if (!parent)
			return 1; /* the hierarchy's root: not part of the path */
		if (depth >= PO_MAX_DEPTH) {
			s->truncated = 1;
			return 1;
		}
		s->names[depth & (PO_MAX_DEPTH - 1)] = (__u64)BPF_CORE_READ(kn, name);
		s->depth = depth + 1;
		s->node = (__u64)parent;
		return 0;
	}
	struct dentry *d = (void *)s->node;
	struct mount *mnt = (void *)s->mnt;
	struct vfsmount *vfsmnt = &mnt->mnt;
	if (s->node == s->root_node && (__u64)vfsmnt == s->root_mnt)
		return 1; /* the task's root (a chroot or container stops here, as /proc/PID/exe) */
	if (d == BPF_CORE_READ(vfsmnt, mnt_root)) {
		struct mount *below = BPF_CORE_READ(mnt, mnt_parent);
		if (below == mnt)
			return 1; /* the root of the mount tree */
		s->node = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		s->mnt = (__u64)below;
		return 0;
	}
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (parent == d)
		return 1;
	if (depth >= PO_MAX_DEPTH) {
		s->truncated = 1;
		return 1;
	}
	s->names[depth & (PO_MAX_DEPTH - 1)] = (__u64)BPF_CORE_READ(d, d_name.name);
	s->depth = depth + 1;
	s->node = (__u64)parent;
	return 0;
}

/* Write component i from the top down ("/" + name) at s->off. */
static long write_down(__u64 i, void *ctx)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u64 depth = s->depth;
	if (i >= depth)
		return 1;
	__u64 off = s->off;
	if (off > DATA_CAP)
		return 1;
	const char *name = (const char *)s->names[(depth - 1 - i) & (PO_MAX_DEPTH - 1)];
	s->data[off] = '/';
	long n = bpf_probe_read_kernel_str(&s->data[off + 1], PO_NAME_MAX, name);
	if (n <= 0)
		return 1;
	__u64 used = off + (__u64)n - s->start; /* n counts the NUL: "/" + name */
	if (used > PO_PATH_CAP) {
		s->truncated = 1;
		return 1;
	}
	s->off = off + (__u64)n;
	return 0;
}

/* Append the path that the walk state describes; returns its length. */
static __always_inline __u16 append_path(struct scratch *s, __u32 flag)
{
	s->depth = 0;
	s->truncated = 0;
	s->start = s->off;
	bpf_loop(PO_MAX_DEPTH + 16, walk_up, NULL, 0);
	bpf_loop(PO_MAX_DEPTH, write_down, NULL, 0);
	__u64 off = s->off;
	if (off == s->start && off <= DATA_CAP) { /* the root itself */
		s->data[off] = '/';
		s->off = ++off;
	}
	if (s->truncated)
		s->ev.flags |= flag;
	return (__u16)(s->off - s->start);
}

static __always_inline __u16 append_file_path(struct scratch *s, struct path *path, struct path *root)
{
	s->kernfs = 0;
	s->node = (__u64)BPF_CORE_READ(path, dentry);
	s->mnt = (__u64)BPF_CORE_READ(path, mnt) - bpf_core_field_offset(struct mount, mnt);
	s->root_node = (__u64)BPF_CORE_READ(root, dentry);
	s->root_mnt = (__u64)BPF_CORE_READ(root, mnt);
	return append_path(s, 0);
}

static __always_inline void append_cgroup(struct scratch *s, struct task_struct *task)
{
	s->kernfs = 1;
	s->node = (__u64)BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	s->ev.cgroup_len = append_path(s, PO_F_CGROUP_TRUNCATED);
}

/* -- records ---------------------------------------------------------------------------- */

static __always_inline struct scratch *begin(__u32 kind, struct task_struct *task)
{
	struct scratch *s = get_scratch();
	if (!s)
		return NULL;
	struct po_event *ev = &s->ev;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->pid = BPF_CORE_READ(task, tgid);
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = BPF_CORE_READ(task, cred, uid.val);
	ev->euid = BPF_CORE_READ(task, cred, euid.val);
	ev->ts_ns = bpf_ktime_get_ns();
	ev->start_ns = BPF_CORE_READ(task, group_leader, start_time);
	ev->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), BPF_CORE_READ(task, comm));
	s->off = 0;
	return s;
}

static __always_inline int wanted(__u32 ppid)
{
	__u32 zero = 0;
	struct po_settings *cfg = bpf_map_lookup_elem(&settings, &zero);
	return !cfg || !cfg->parent_filter || cfg->parent_filter == ppid;
}

/*
 * Wake-up moderation (as the driver signals only when its queue goes from empty to
 * non-empty): with flags 0 the kernel wakes the consumer only when it had consumed
 * everything before this record (consumer_pos == the record's position, checked at commit,
 * race-free). While the consumer lingers (ProcessThreadMonitor's storm coalescing) nothing
 * wakes it; its next wait returns at once since the fd polls readable while data is
 * unconsumed. A backlog of wakeup_bytes forces a wake-up so that a lingering consumer is
 * not left behind by a burst.
 */
static __always_inline __u64 wakeup_flag(void)
{
	__u32 zero = 0;
	struct po_settings *cfg = bpf_map_lookup_elem(&settings, &zero);
	if (cfg && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg->wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return 0;
}

static __always_inline void submit(struct scratch *s)
{
	__u64 size = sizeof(struct po_event) + s->off;
	if (size > sizeof(struct po_event) + DATA_CAP)
		return;
	__u64 flag = wakeup_flag();
	/* ev and data are adjacent in struct scratch: one copy sends the whole record */
	if (bpf_ringbuf_output(&events, &s->ev, size, flag) == 0)
		return;
	__u32 zero = 0;
	struct po_drops *d = bpf_map_lookup_elem(&drops, &zero);
	if (!d)
		return;
	if (s->ev.kind == PO_FORK)
		d->fork++;
	else if (s->ev.kind == PO_EXEC)
		d->exec++;
	else
		d->exit++;
	__sync_fetch_and_add(&dropped, 1); /* after the per-kind count: user space reads it first */
}

_Static_assert(__builtin_offsetof(struct scratch, data) == sizeof(struct po_event),
	       "the payload must follow the header");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	if (!wanted(BPF_CORE_READ(child, real_parent, tgid)))
		return 0;
	struct scratch *s = begin(PO_FORK, child);
	if (!s)
		return 0;
	append_cgroup(s, child);
	submit(s);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!wanted(BPF_CORE_READ(task, real_parent, tgid)))
		return 0;
	struct scratch *s = begin(PO_EXEC, task);
	if (!s)
		return 0;
	struct po_event *ev = &s->ev;

	/* argv, as the new program received it */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 arg_start = BPF_CORE_READ(mm, arg_start);
	__u64 arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 size = arg_end > arg_start ? arg_end - arg_start : 0;
	ev->args_size = size;
	ev->argc = BPF_CORE_READ(bprm, argc);
	if (size > PO_ARGS_CAP) {
		size = PO_ARGS_CAP;
		ev->flags |= PO_F_ARGS_TRUNCATED;
	}
	if (size && bpf_probe_read_user(s->data, size, (void *)arg_start) != 0) {
		ev->flags |= PO_F_ARGS_FAULT;
		size = 0;
	}
	ev->args_len = size;
	s->off = size;

	/* the file the kernel runs (for a #! script: the interpreter), absolute */
	struct path root = BPF_CORE_READ(task, fs, root);
	struct path exe = BPF_CORE_READ(bprm, file, f_path);
	ev->image_len = append_file_path(s, &exe, &root);
	if (s->truncated)
		ev->flags |= PO_F_IMAGE_TRUNCATED;

	/* a #! script: the script as given to execve (user space makes it absolute with cwd) */
	const char *filename = BPF_CORE_READ(bprm, filename);
	const char *interp = BPF_CORE_READ(bprm, interp);
	if (filename != interp) {
		__u64 off = s->off;
		if (off <= PO_ARGS_CAP + PO_PATH_CAP) {
			long n = bpf_probe_read_kernel_str(&s->data[off], PO_PATH_CAP, filename);
			if (n > 1) {
				ev->script_len = n - 1;
				s->off = off + (__u64)(n - 1);
			}
		}
	}

	/* the working directory */
	struct path pwd = BPF_CORE_READ(task, fs, pwd);
	ev->cwd_len = append_file_path(s, &pwd, &root);
	if (s->truncated)
		ev->flags |= PO_F_CWD_TRUNCATED;

	append_cgroup(s, task);
	submit(s);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0; /* a thread ended; other threads of the process still run */
	if (!wanted(BPF_CORE_READ(task, real_parent, tgid)))
		return 0;
	struct scratch *s = begin(PO_EXIT, task);
	if (!s)
		return 0;
	s->ev.exit_status = BPF_CORE_READ(task, exit_code);
	append_cgroup(s, task);
	submit(s);
	return 0;
}
