// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * procobsrv's kernel side on Linux, the counterpart of driver/ProcObsrv.sys: three BTF
 * tracepoints of the scheduler record each process fork, exec and exit into a ring buffer,
 * and user space (src/procobsrv/linux/ebpf_source.py) waits on that buffer's fd.
 *
 * Each record is built in a per-CPU scratch value (too large for the 512-byte stack), then
 * copied into the ring buffer with bpf_ringbuf_output. A failed copy is counted per kind
 * in the per-CPU `drops` map: user space reports exact losses from it.
 *
 * Only exec walks paths (its image and cwd). Fork and exit send the cgroup's id; its path
 * is walked and sent once per id, in a PO_CGROUP record ahead of the first event naming it.
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

/* -- settings: read-only globals (.rodata) that user space sets by name before load ----- */

/* Force a wake-up once this many bytes wait unconsumed (see wakeup_flag). */
const volatile __u64 wakeup_bytes = 1 << 20;
/* 0, or report only the processes whose parent is this tgid. */
const volatile __u32 parent_filter = 0;
/* 1: this kernel's sched_process_exit passes group_dead (6.16+); user space checks its BTF.
 * The verifier sees a constant and never visits the other branch of on_exit. */
const volatile __u32 exit_group_dead = 0;

/* -- state ----------------------------------------------------------------------------- */

#define DATA_CAP (PO_ARGS_CAP + 4 * PO_PATH_CAP)
#define SLACK (PO_NAME_MAX + 8)
#define EEXIST 17
/* processes whose exit was sent (see on_exit) */
#define EXITS_REMEMBERED 8192

/* ev.data[] and data are the same bytes: the header and its payload are contiguous */
#pragma clang diagnostic ignored "-Wgnu-variable-sized-type-not-at-end"
struct scratch {
	struct po_event ev;
	char data[DATA_CAP + SLACK];
	/* the path walk's state (bpf_loop callbacks read it from here, not from the stack) */
	__u64 names[PO_MAX_DEPTH]; /* from the last component up */
	__u32 lens[PO_MAX_DEPTH];  /* their lengths (0: unknown, kernfs) */
	__u64 node;      /* dentry or kernfs_node */
	__u64 mnt;       /* struct mount */
	__u64 mnt_parent, mnt_mountpoint, mnt_root; /* that mount's */
	__u64 root_node; /* the task's root: dentry */
	__u64 root_mnt;  /* and its vfsmount */
	__u64 top_ns;    /* the mount namespace of the mount tree's top the walk reached */
	__u64 depth;
	__u64 total;     /* bytes the collected components take ("/" + name each) */
	__u64 off;       /* where the next byte of ev.data goes */
	__u64 start;     /* where this path started */
	__u32 truncated; /* top components left out: the path is the deepest ones */
	__u32 tail_cut;  /* last components left out: the path is a prefix */
	__u32 kernfs;    /* walking a kernfs node (cgroup), not a dentry */
	__u32 done;      /* the walk reached a top: the path is whole */
	__u32 inside;    /* the walk passed the task's root */
	__u32 pseudo;    /* the file has no parent: a memfd or anonymous inode */
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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* user space sets the size before load */
} events SEC(".maps");

/* cgroup id -> 1 once its PO_CGROUP record is in the ring (forgotten ones are sent again) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PO_CGROUPS_REMEMBERED);
	__type(key, __u64);
	__type(value, __u8);
} cgroups_sent SEC(".maps");

struct exit_key {
	__u64 start_ns; /* with the pid: one process, even when pids are reused */
	__u32 pid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EXITS_REMEMBERED);
	__type(key, struct exit_key);
	__type(value, __u8);
} exits_sent SEC(".maps");

/* kernfs_node's parent was renamed __parent in 6.15: CO-RE picks whichever exists. */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* Failed writes, all CPUs and kinds, atomically: user space reads this word (found by name
 * in .bss) on every fetch without a syscall, and reads the per-CPU `drops` only when it moved. */
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

static __always_inline long remember(struct scratch *s, __u64 name, __u32 len)
{
	__u64 depth = s->depth;
	if (depth >= PO_MAX_DEPTH) {
		s->truncated = 1; /* the deepest PO_MAX_DEPTH components are kept */
		return 1;
	}
	s->names[depth & (PO_MAX_DEPTH - 1)] = name;
	s->lens[depth & (PO_MAX_DEPTH - 1)] = len;
	s->total += len + 1;
	s->depth = depth + 1;
	return 0;
}

/*
 * The walk reads each dentry's parent and name, and each mount's parent, mountpoint and
 * root, in one read apiece: the fields lie together in the kernel's structures (checked
 * below through CO-RE, with separate reads where a kernel would differ).
 */
struct dentry_step {
	struct dentry *parent;
	__u32 hash;
	__u32 len;
	const unsigned char *name;
};

struct mount_step {
	struct mount *parent;
	struct dentry *mountpoint;
	struct dentry *root; /* mnt.mnt_root */
};

static __always_inline void read_dentry(struct dentry_step *out, struct dentry *d)
{
	__u64 at = bpf_core_field_offset(struct dentry, d_parent);
	if (bpf_core_field_offset(struct dentry, d_name) == at + 8) {
		bpf_probe_read_kernel(out, sizeof(*out), (void *)d + at);
		return;
	}
	out->parent = BPF_CORE_READ(d, d_parent);
	out->len = BPF_CORE_READ(d, d_name.len);
	out->name = BPF_CORE_READ(d, d_name.name);
}

static __always_inline void read_mount(struct scratch *s, struct mount *mnt)
{
	struct mount_step m;
	__u64 at = bpf_core_field_offset(struct mount, mnt_parent);
	if (bpf_core_field_offset(struct mount, mnt_mountpoint) == at + 8 &&
	    bpf_core_field_offset(struct mount, mnt) == at + 16 &&
	    bpf_core_field_offset(struct vfsmount, mnt_root) == 0) {
		bpf_probe_read_kernel(&m, sizeof(m), (void *)mnt + at);
	} else {
		m.parent = BPF_CORE_READ(mnt, mnt_parent);
		m.mountpoint = BPF_CORE_READ(mnt, mnt_mountpoint);
		m.root = BPF_CORE_READ(mnt, mnt.mnt_root);
	}
	s->mnt = (__u64)mnt;
	s->mnt_parent = (__u64)m.parent;
	s->mnt_mountpoint = (__u64)m.mountpoint;
	s->mnt_root = (__u64)m.root;
}

/* One step up from s->node: remember its name, or cross to the mount below, or stop. */
static long walk_up(__u64 i, void *ctx)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	if (s->kernfs) {
		struct kernfs_node *kn = (void *)s->node;
		struct kernfs_node *parent = kernfs_parent(kn);
		if (!parent) {
			s->done = 1; /* the hierarchy's root: not part of the path */
			return 1;
		}
		s->node = (__u64)parent;
		return remember(s, (__u64)BPF_CORE_READ(kn, name), 0);
	}
	__u64 node = s->node;
	if (node == s->root_node && s->mnt + bpf_core_field_offset(struct mount, mnt) == s->root_mnt)
		s->inside = 1; /* the task's root: a chroot's; the walk goes on to the host's */
	if (node == s->mnt_root) {
		struct mount *mnt = (void *)s->mnt;
		if (s->mnt_parent == s->mnt) {
			s->top_ns = (__u64)BPF_CORE_READ(mnt, mnt_ns);
			s->done = 1; /* the root of the mount tree */
			return 1;
		}
		s->node = s->mnt_mountpoint;
		read_mount(s, (void *)s->mnt_parent);
		return 0;
	}
	struct dentry_step d;
	read_dentry(&d, (void *)node);
	if ((__u64)d.parent == node) {
		/* no parent and not a mount's root: a memfd's or anonymous inode's file, which the
		 * kernel names "/NAME (deleted)" */
		s->pseudo = s->done = 1;
		remember(s, (__u64)d.name, d.len);
		return 1;
	}
	s->node = (__u64)d.parent;
	return remember(s, (__u64)d.name, d.len);
}

/* Write component i from the top down ("/" + name) at s->off, leaving out the topmost
 * components while the rest would not fit in PO_PATH_CAP. */
static long write_down(__u64 i, void *ctx)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u64 depth = s->depth;
	if (i >= depth)
		return 1;
	__u64 k = (depth - 1 - i) & (PO_MAX_DEPTH - 1);
	if (s->total > PO_PATH_CAP) {
		s->total -= s->lens[k] + 1;
		s->truncated = 1;
		return 0;
	}
	__u64 off = s->off;
	if (off > DATA_CAP) {
		s->tail_cut = 1;
		return 1;
	}
	s->data[off] = '/';
	long n = bpf_probe_read_kernel_str(&s->data[off + 1], PO_NAME_MAX, (void *)s->names[k]);
	if (n <= 0) {
		s->tail_cut = 1;
		return 1;
	}
	__u64 used = off + (__u64)n - s->start; /* n counts the NUL: "/" + name */
	if (used > PO_PATH_CAP) {
		s->tail_cut = 1; /* kernfs names have no known length: the cap cuts the tail */
		return 1;
	}
	s->off = off + (__u64)n;
	return 0;
}

/* Append the path that the walk state describes; returns its length. */
static __always_inline __u16 append_path(struct scratch *s)
{
	s->depth = s->total = 0;
	s->truncated = s->tail_cut = s->done = s->inside = s->pseudo = 0;
	s->start = s->off;
	bpf_loop(PO_MAX_DEPTH + 16, walk_up, NULL, 0);
	bpf_loop(PO_MAX_DEPTH, write_down, NULL, 0);
	if (!s->done)
		s->truncated = 1; /* the loop ran out before a top: mounts on mounts */
	__u64 off = s->off;
	if (off == s->start && off <= DATA_CAP) { /* the root itself */
		s->data[off] = '/';
		s->off = ++off;
	}
	return (__u16)(s->off - s->start);
}

struct path_flags {
	__u32 truncated;
	__u32 deleted;
	__u32 outside;
};

/* Append the host's view of a file's path; flags say what the path does not show. */
static __always_inline __u16 append_file_path(struct scratch *s, struct task_struct *task,
					      struct path *path, struct path *root,
					      const struct path_flags *flags)
{
	struct dentry *d = path->dentry;
	s->kernfs = 0;
	s->node = (__u64)d;
	read_mount(s, (void *)path->mnt - bpf_core_field_offset(struct mount, mnt));
	s->root_node = (__u64)root->dentry;
	s->root_mnt = (__u64)root->mnt;
	s->top_ns = 0;
	__u16 len = append_path(s);
	if (s->truncated || s->tail_cut)
		s->ev.flags |= flags->truncated;
	/* d_unlinked(): unhashed, and not a root */
	if (s->pseudo || (!BPF_CORE_READ(d, d_hash.pprev) && BPF_CORE_READ(d, d_parent) != d))
		s->ev.flags |= flags->deleted;
	if (s->done && (!s->inside || s->top_ns != (__u64)task->nsproxy->mnt_ns))
		s->ev.flags |= flags->outside;
	return len;
}

/* -- records ---------------------------------------------------------------------------- */

static __always_inline int wanted(struct task_struct *task)
{
	return !parent_filter || parent_filter == task->real_parent->tgid;
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
static __always_inline int submit(struct scratch *s)
{
	__u64 size = sizeof(struct po_event) + s->off;
	if (size > sizeof(struct po_event) + DATA_CAP)
		return 0;
	__u64 flag = 0;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flag = BPF_RB_FORCE_WAKEUP;
	/* ev and data are adjacent in struct scratch: one copy sends the whole record */
	if (bpf_ringbuf_output(&events, &s->ev, size, flag) == 0)
		return 1;
	__u32 zero = 0;
	struct po_drops *d = bpf_map_lookup_elem(&drops, &zero);
	if (!d)
		return 0;
	__u32 kind = s->ev.kind;
	if (kind == PO_FORK)
		d->fork++;
	else if (kind == PO_EXEC)
		d->exec++;
	else if (kind == PO_EXIT)
		d->exit++;
	else
		d->cgroup++;
	__sync_fetch_and_add(&dropped, 1); /* after the per-kind count: user space reads it first */
	return 0;
}

_Static_assert(__builtin_offsetof(struct scratch, data) == sizeof(struct po_event),
	       "the payload must follow the header");

/* The task's cgroup path, once per cgroup id: a PO_CGROUP record ahead of the event (same
 * CPU, so earlier in the ring). Remembered only once written: a dropped one is sent again. */
static __always_inline void announce_cgroup(struct task_struct *task)
{
	struct kernfs_node *kn = task->cgroups->dfl_cgrp->kn;
	__u64 id = kn->id;
	if (bpf_map_lookup_elem(&cgroups_sent, &id))
		return;
	struct scratch *s = get_scratch();
	if (!s)
		return;
	__builtin_memset(&s->ev, 0, sizeof(s->ev));
	s->ev.kind = PO_CGROUP;
	s->ev.cgroup_id = id;
	s->ev.ts_ns = bpf_ktime_get_ns();
	s->off = 0;
	s->kernfs = 1;
	s->node = (__u64)kn;
	s->ev.cgroup_len = append_path(s);
	if (s->truncated)
		s->ev.flags |= PO_F_CGROUP_TRUNCATED;
	if (s->tail_cut)
		s->ev.flags |= PO_F_CGROUP_TAIL_CUT;
	if (submit(s)) {
		__u8 one = 1;
		bpf_map_update_elem(&cgroups_sent, &id, &one, BPF_ANY);
	}
}

/* A process's number in one pid namespace, and that namespace's inode (0: not read). */
struct upid_view {
	__u32 nr;
	__u32 inum;
};

#define UPID_DIRECT(k)                                          \
	case k:                                                 \
		out->nr = pid->numbers[k].nr;                   \
		out->inum = pid->numbers[k].ns->ns.inum;        \
		return

/*
 * numbers[level] of a struct pid: its number and namespace at that depth of the pid
 * namespace tree. numbers[] is a flexible array, which the verifier lets the program read
 * directly only at constant indexes: the depths that nested containers reach are read so
 * (no helper call), deeper ones through plain kernel reads.
 */
static __always_inline void read_upid(struct upid_view *out, struct pid *pid, __u32 level)
{
	switch (level) {
	UPID_DIRECT(0);
	UPID_DIRECT(1);
	UPID_DIRECT(2);
	UPID_DIRECT(3);
	}
	struct upid *up = (void *)pid + bpf_core_field_offset(struct pid, numbers) +
			  (__u64)level * bpf_core_type_size(struct upid);
	out->nr = BPF_CORE_READ(up, nr);
	out->inum = BPF_CORE_READ(up, ns, ns.inum);
}

/*
 * The process's tgid and its real parent's as its own pid namespace sees them (the kernel's
 * pid_nr_ns(): the parent has a number there if it is that deep and the namespace at that
 * depth is the process's), and the inodes of its pid and mount namespaces. Direct reads
 * of the task's pointers (tp_btf: the verifier turns them into fault-safe loads).
 */
static __noinline void read_namespaces(struct po_event *ev, struct task_struct *task)
{
	struct pid *pid = task->group_leader->thread_pid;
	if (!pid)
		return;
	__u32 level = pid->level;
	struct upid_view own = {}, there = {};
	read_upid(&own, pid, level);
	ev->ns_pid = own.nr;
	ev->pid_ns = own.inum;
	struct pid *parent = task->real_parent->group_leader->thread_pid;
	if (parent && parent->level >= level) {
		read_upid(&there, parent, level);
		if (there.inum == own.inum)
			ev->ns_ppid = there.nr;
	}
	ev->mnt_ns = task->nsproxy->mnt_ns->ns.inum; /* 0: nsproxy already released */
}

static __always_inline struct scratch *begin(__u32 kind, struct task_struct *task)
{
	announce_cgroup(task);
	struct scratch *s = get_scratch();
	if (!s)
		return NULL;
	struct po_event *ev = &s->ev;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->pid = task->tgid;
	ev->ppid = task->real_parent->tgid;
	const struct cred *cred = task->cred;
	ev->uid = cred->uid.val;
	ev->euid = cred->euid.val;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->start_ns = task->group_leader->start_time;
	ev->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), task->comm);
	read_namespaces(ev, task);
	s->off = 0;
	return s;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a new thread, not a new process */
	if (!wanted(child))
		return 0;
	struct scratch *s = begin(PO_FORK, child);
	if (!s)
		return 0;
	/* the forking task: child's real parent unless CLONE_PARENT made it the forker's */
	s->ev.creator = parent->tgid;
	submit(s);
	return 0;
}

static const struct path_flags image_flags = {
	PO_F_IMAGE_TRUNCATED, PO_F_IMAGE_DELETED, PO_F_IMAGE_OUTSIDE,
};
static const struct path_flags cwd_flags = { PO_F_CWD_TRUNCATED, PO_F_CWD_DELETED, 0 };

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!wanted(task))
		return 0;
	struct scratch *s = begin(PO_EXEC, task);
	if (!s)
		return 0;
	struct po_event *ev = &s->ev;

	/* argv, as the new program received it */
	struct mm_struct *mm = task->mm;
	__u64 arg_start = mm->arg_start;
	__u64 arg_end = mm->arg_end;
	__u64 size = arg_end > arg_start ? arg_end - arg_start : 0;
	ev->args_size = size;
	ev->argc = bprm->argc;
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
	struct fs_struct *fs = task->fs;
	struct path root = fs->root;
	struct path exe = bprm->file->f_path;
	ev->image_len = append_file_path(s, task, &exe, &root, &image_flags);

	/* a #! script: the script as given to execve (user space makes it absolute with cwd) */
	const char *filename = bprm->filename;
	const char *interp = bprm->interp;
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
	struct path pwd = fs->pwd;
	ev->cwd_len = append_file_path(s, task, &pwd, &root, &cwd_flags);
	submit(s);
	return 0;
}

/*
 * The whole process has ended with the thread that took signal->live to 0: the
 * tracepoint's group_dead says so where the kernel passes it. Older kernels pass only the
 * task: threads that die together (exit_group) can then all find live at 0, since each
 * reads it after its own decrement, so only the first to record the process in exits_sent
 * reports it (the hash's insert with BPF_NOEXIST is atomic).
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	if (exit_group_dead) {
		if (!(__u8)ctx[1])
			return 0; /* a thread ended; other threads of the process still run */
		if (!wanted(task))
			return 0;
	} else {
		if (task->signal->live.counter != 0)
			return 0;
		if (!wanted(task))
			return 0;
		struct exit_key key = {
			.start_ns = task->group_leader->start_time,
			.pid = task->tgid,
		};
		__u8 one = 1;
		if (bpf_map_update_elem(&exits_sent, &key, &one, BPF_NOEXIST) == -EEXIST)
			return 0;
	}
	struct scratch *s = begin(PO_EXIT, task);
	if (!s)
		return 0;
	s->ev.exit_status = task->exit_code;
	submit(s);
	return 0;
}
