/* Numbers from the kernel's C headers that vmlinux.h cannot carry (it has the types, not the
 * #defines): one copy for every swatch BPF object. */
#ifndef SWATCH_DEFS_BPF_H
#define SWATCH_DEFS_BPF_H

/* errno, signals */
#define EPERM 1
#define ENOENT 2
#define SIGKILL 9

/* inode modes */
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFIFO 0010000

/* sockets */
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* open(2), the *at(2) calls */
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000

/* mmap(2), mprotect(2), and the mapping's vm_flags */
#define PROT_WRITE 0x2
#define MAP_SHARED 0x1          /* MAP_SHARED_VALIDATE (0x3) has it too; MAP_PRIVATE (0x2) not */
#define VM_MAYWRITE 0x20
#define VM_MAYSHARE 0x80

/* permission masks of the security hooks, struct file's f_mode */
#define MAY_WRITE 2
#define MAY_READ 4
#define FMODE_WRITE 2

#endif /* SWATCH_DEFS_BPF_H */
