/* The arguments of a syscall, read from its registers (raw_tp/sys_enter's args[0]). One reader
 * for every swatch BPF object. Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_SYSCALL_ARGS_BPF_H
#define SWATCH_SYSCALL_ARGS_BPF_H

/* libbpf 1.1 stops at the fifth syscall argument (no PT_REGS_PARM6_CORE_SYSCALL). */
#if defined(__TARGET_ARCH_x86)
#define SW_SYSCALL_ARG6(r) BPF_CORE_READ(r, r9)
#elif defined(__TARGET_ARCH_arm64)
#define SW_SYSCALL_ARG6(r) BPF_CORE_READ((struct user_pt_regs *)(r), regs[5])
#else
#error "swatch: add the sixth syscall argument register for this architecture"
#endif

#define SW_SYSCALL_ARGS 6

/* Argument i (0 to 5); 0 for any other i. */
static __always_inline u64 syscall_arg(struct pt_regs *regs, u32 i)
{
	switch (i) {
	case 0: return PT_REGS_PARM1_CORE_SYSCALL(regs);
	case 1: return PT_REGS_PARM2_CORE_SYSCALL(regs);
	case 2: return PT_REGS_PARM3_CORE_SYSCALL(regs);
	case 3: return PT_REGS_PARM4_CORE_SYSCALL(regs);
	case 4: return PT_REGS_PARM5_CORE_SYSCALL(regs);
	case 5: return SW_SYSCALL_ARG6(regs);
	default: return 0;
	}
}

/* All six, into args[0..5]. */
static __always_inline void syscall_args(struct pt_regs *regs, u64 *args)
{
	args[0] = syscall_arg(regs, 0);
	args[1] = syscall_arg(regs, 1);
	args[2] = syscall_arg(regs, 2);
	args[3] = syscall_arg(regs, 3);
	args[4] = syscall_arg(regs, 4);
	args[5] = syscall_arg(regs, 5);
}

/* The same from a typed kernel pointer (tp_btf programs): plain loads, no helper calls. */
#if defined(__TARGET_ARCH_x86)
#define SW_SYSCALL_ARG6_BTF(r) ((r)->r9)
#elif defined(__TARGET_ARCH_arm64)
#define SW_SYSCALL_ARG6_BTF(r) ((r)->regs[5])
#endif

static __always_inline void syscall_args_btf(struct pt_regs *regs, u64 *args)
{
	args[0] = PT_REGS_PARM1_SYSCALL(regs);
	args[1] = PT_REGS_PARM2_SYSCALL(regs);
	args[2] = PT_REGS_PARM3_SYSCALL(regs);
	args[3] = PT_REGS_PARM4_SYSCALL(regs);
	args[4] = PT_REGS_PARM5_SYSCALL(regs);
	args[5] = SW_SYSCALL_ARG6_BTF(regs);
}

#endif /* SWATCH_SYSCALL_ARGS_BPF_H */
