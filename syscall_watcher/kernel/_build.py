"""cffi (API mode) build of ``syscall_watcher.kernel._libbpf``: the system libbpf plus our C shim
(``_shim.h``, sources in ``shim/``).

The event structs come from ``bpf/include/common.h``, ``bpf/watcher.h`` and ``bpf/policy.h``, the
headers the BPF programs include; cffi checks every field offset against the compiler's, so a
layout mismatch fails the build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BPF_DIR = ROOT / "bpf"

# The C shim (see _shim.h): the ring consumer and the batch formatter's files.
SHIM_SOURCES = sorted((HERE / "shim").glob("*.c"))

LIBBPF_CDEF = """
typedef uint8_t __u8;
typedef uint32_t __u32;
typedef uint64_t __u64;
struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct ring_buffer;

struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);

struct btf;
struct btf *btf__load_vmlinux_btf(void);
int btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
void btf__free(struct btf *btf);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
struct bpf_uprobe_opts {
    size_t sz;
    size_t ref_ctr_offset;
    __u64 bpf_cookie;
    bool retprobe;
    const char *func_name;
    ...;
};
struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *prog, int pid,
                                                 const char *binary_path, size_t func_offset,
                                                 const struct bpf_uprobe_opts *opts);

int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__destroy(struct bpf_link *link);
int bpf_link__fd(const struct bpf_link *link);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__pin(struct bpf_map *map, const char *path);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
bool bpf_map__is_internal(const struct bpf_map *map);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);

int bpf_obj_get(const char *pathname);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int libbpf_num_possible_cpus(void);

int bpf_map__type(const struct bpf_map *map);
struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    char name[16];
    ...;
};
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
struct bpf_link_info {
    __u32 type;
    __u32 id;
    __u32 prog_id;
    ...;
};
struct bpf_prog_info {
    __u32 id;
    char name[16];
    __u64 run_time_ns;
    __u64 run_cnt;
    ...;
};
int bpf_prog_get_fd_by_id(__u32 id);
#define BPF_STATS_RUN_TIME ...
int bpf_enable_stats(int type);

typedef int... __fsword_t;
struct statfs {
    __fsword_t f_type;
    ...;
};
int statfs(const char *path, struct statfs *buf);
"""


def _cdef_section(path: Path) -> str:
    """The part of a header between the SW_CDEF markers, in a form cffi's parser accepts."""
    text = path.read_text()
    m = re.search(r"/\* SW_CDEF_BEGIN \*/(.*)/\* SW_CDEF_END \*/", text, re.S)
    if not m:
        raise RuntimeError(f"{path}: no SW_CDEF_BEGIN/END section")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return body


def _expand_array_macros(cdef: str) -> str:
    """cffi accepts ``#define NAME 123`` but not ``x[3 * NAME]``: let it see ``x[...]``."""
    return re.sub(r"\[([^\]]*[A-Z_][^\]]*)\]", "[...]", cdef)


ffibuilder = FFI()
ffibuilder.cdef(
    LIBBPF_CDEF
    + _expand_array_macros(_cdef_section(BPF_DIR / "include" / "common.h"))
    + _expand_array_macros(_cdef_section(BPF_DIR / "watcher.h"))
    + _expand_array_macros(_cdef_section(BPF_DIR / "policy.h"))
    + _expand_array_macros(_cdef_section(BPF_DIR / "tls.h"))
    + _cdef_section(HERE / "_shim.h")
)
ffibuilder.set_source(
    "syscall_watcher.kernel._libbpf",
    "#include <sys/vfs.h>\n#include <bpf/libbpf.h>\n#include <bpf/bpf.h>\n#include <bpf/btf.h>\n"
    '#include "watcher.h"\n#include "policy.h"\n#include "tls.h"\n#include "_shim.h"\n',
    libraries=["bpf"],
    # setuptools insists on paths relative to setup.py's directory (the build's cwd)
    include_dirs=[os.path.relpath(BPF_DIR), os.path.relpath(BPF_DIR / "include"),
                  os.path.relpath(HERE)],
    sources=[os.path.relpath(p) for p in SHIM_SOURCES],
    # an undeclared libbpf function would be called as returning int: a pointer it returns
    # cut to 32 bits (btf__load_vmlinux_btf's, from a thread's heap, crashed)
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function",
                        "-Werror=implicit-function-declaration", "-Werror=int-conversion"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=False)
