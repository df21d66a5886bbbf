/* The path of a dentry from the global root, walked in the kernel; shared by
 * watcher.bpf.c and policy.bpf.c. Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_VFS_PATH_BPF_H
#define SWATCH_VFS_PATH_BPF_H

#define VFS_PATH_MAX 256 /* room for a path, NUL included; a power of two */
#define VFS_PATH_MASK (VFS_PATH_MAX - 1)
#define VFS_PATH_DEPTH 32 /* components (and mount crossings) walked at most */

/* A dentry's parent and name (struct dentry's d_parent, then d_name: a qstr, hash_len then
 * name), read at once: a bpf_probe_read_kernel() call costs more than the bytes it copies. */
struct vfs_dentry_head {
	struct dentry *parent;
	u64 hash_len; /* little-endian qstr: the hash, then the length in the upper half */
	const unsigned char *name;
};

/* A mount's parent, mountpoint and root (struct mount's mnt_parent, mnt_mountpoint, then the
 * embedded vfsmount's mnt_root), read at once. */
struct vfs_mount_head {
	struct mount *parent;
	struct dentry *mountpoint;
	struct dentry *root;
};

struct vfs_path_walk {
	struct dentry *d;
	struct mount *mnt;
	struct vfs_mount_head m; /* mnt's */
	char *buf;
	u32 pos;
	u32 trunc;
};

/* The fields are adjacent in every kernel this runs on (CO-RE offsets, constants to the
 * verifier, which keeps one branch); field by field otherwise. */
static __always_inline void vfs_dentry_head(struct dentry *d, struct vfs_dentry_head *h)
{
	u32 at = bpf_core_field_offset(struct dentry, d_parent);

	if (bpf_core_field_offset(struct dentry, d_name) == at + 8 &&
	    bpf_core_field_offset(struct qstr, hash_len) == 0 &&
	    bpf_core_field_offset(struct qstr, name) == 8) {
		if (bpf_probe_read_kernel(h, sizeof(*h), (void *)d + at))
			__builtin_memset(h, 0, sizeof(*h));
		return;
	}
	h->parent = BPF_CORE_READ(d, d_parent);
	h->hash_len = BPF_CORE_READ(d, d_name.hash_len);
	h->name = BPF_CORE_READ(d, d_name.name);
}

static __always_inline void vfs_mount_head(struct mount *mnt, struct vfs_mount_head *h)
{
	u32 at = bpf_core_field_offset(struct mount, mnt_parent);

	if (bpf_core_field_offset(struct mount, mnt_mountpoint) == at + 8 &&
	    bpf_core_field_offset(struct mount, mnt) == at + 16 &&
	    bpf_core_field_offset(struct vfsmount, mnt_root) == 0) {
		if (bpf_probe_read_kernel(h, sizeof(*h), (void *)mnt + at))
			__builtin_memset(h, 0, sizeof(*h));
		return;
	}
	h->parent = BPF_CORE_READ(mnt, mnt_parent);
	h->mountpoint = BPF_CORE_READ(mnt, mnt_mountpoint);
	h->root = BPF_CORE_READ(mnt, mnt.mnt_root);
}

/* One step from a dentry towards the global root (a bpf_loop callback, so the verifier
 * checks it once, not once per component). */
static long vfs_path_step(u64 i, void *ctx)
{
	struct vfs_path_walk *w = ctx;
	struct dentry *d = w->d;
	struct mount *mnt = w->mnt;
	struct vfs_dentry_head h;
	u32 len, pos = w->pos;

	if (d == w->m.root) {
		struct mount *up = w->m.parent;

		if (up == mnt)
			return 1;
		w->d = w->m.mountpoint;
		w->mnt = up;
		vfs_mount_head(up, &w->m);
		return 0;
	}
	vfs_dentry_head(d, &h);
	if (d == h.parent)
		return 1;
	len = h.hash_len >> 32;
	if (len + 1 > pos || pos > VFS_PATH_MAX - 1) {
		w->trunc = 1;
		return 1;
	}
	pos -= len;
	bpf_probe_read_kernel(&w->buf[pos & VFS_PATH_MASK], len & VFS_PATH_MASK, h.name);
	pos -= 1;
	w->buf[pos & VFS_PATH_MASK] = '/';
	w->pos = pos;
	w->d = h.parent;
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

	vfs_mount_head(w.mnt, &w.m);
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
	struct path p = {};

	BPF_CORE_READ_INTO(&p, f, f_path);
	return dentry_path(p.dentry, p.mnt, buf, trunc);
}

#endif /* SWATCH_VFS_PATH_BPF_H */
