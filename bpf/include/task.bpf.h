/* The current task's open files. Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_TASK_BPF_H
#define SWATCH_TASK_BPF_H

/* The file open as fd in the current task, NULL if none. */
static __always_inline struct file *current_fd_file(u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* The same for tracing programs (tp_btf): the table through the task's typed pointer, plain
 * loads, so the slot's read is the one bpf_probe_read_kernel() call (five above). */
static __always_inline struct file *current_fd_file_btf(u64 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;

	if (!files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

#endif /* SWATCH_TASK_BPF_H */
