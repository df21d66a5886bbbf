/* The path of a dentry from the global root, walked in the kernel; shared by
 * watcher.bpf.c and policy.bpf.c. Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_VFS_PATH_BPF_H
#define SWATCH_VFS_PATH_BPF_H

#define VFS_PATH_MAX 256 /* room for a path, NUL included; a power of two */
#define VFS_PATH_MASK (VFS_PATH_MAX - 1)
#define VFS_PATH_DEPTH 32 /* components (and mount crossings) walked at most */

struct vfs_path_walk {
	struct dentry *d;
	struct mount *mnt;
	char *buf;
	u32 pos;
	u32 trunc;
};

/* One step from a dentry towards the global root (a bpf_loop callback, so the verifier
 * checks it once, not once per component). */
static long vfs_path_step(u64 i, void *ctx)
{
	struct vfs_path_walk *w = ctx;
	struct dentry *d = w->d;
	struct mount *mnt = w->mnt;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	struct qstr q;
	u32 len, pos = w->pos;

	if (d == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt)
			return 1;
		w->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		return 0;
	}
	if (d == parent)
		return 1;
	q = BPF_CORE_READ(d, d_name);
	len = q.len;
	if (len + 1 > pos || pos > VFS_PATH_MAX - 1) {
		w->trunc = 1;
		return 1;
	}
	pos -= len;
	bpf_probe_read_kernel(&w->buf[pos & VFS_PATH_MASK], len & VFS_PATH_MASK, q.name);
	pos -= 1;
	w->buf[pos & VFS_PATH_MASK] = '/';
	w->pos = pos;
	w->d = parent;
	return 0;
}

/* The path of (dentry, vfsmount) from the global root, right-aligned in buf[0..VFS_PATH_MAX)
 * (buf must hold 2 * VFS_PATH_MAX bytes) and NUL-terminated at VFS_PATH_MAX - 1; returns the
 * index of its first byte. Sets *trunc when the path did not fit or was too deep. */
static __always_inline u32 dentry_path(struct dentry *d, struct vfsmount *vmnt, char *buf,
				       u32 *trunc)
{
	struct vfs_path_walk w = {
		.d = d,
		.mnt = container_of(vmnt, struct mount, mnt),
		.buf = buf,
		.pos = VFS_PATH_MAX - 1,
	};
	long steps;

	buf[VFS_PATH_MAX - 1] = 0;
	steps = bpf_loop(VFS_PATH_DEPTH, vfs_path_step, &w, 0);
	if (w.trunc || steps >= VFS_PATH_DEPTH)
		*trunc = 1;
	if (w.pos >= VFS_PATH_MAX - 1) {
		w.pos = VFS_PATH_MAX - 2;
		buf[VFS_PATH_MAX - 2] = '/';
	}
	return w.pos;
}

static __always_inline u32 file_path(struct file *f, char *buf, u32 *trunc)
{
	return dentry_path(BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), buf,
			   trunc);
}

#endif /* SWATCH_VFS_PATH_BPF_H */
