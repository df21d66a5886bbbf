/* The formatter's tables, filled from Python before a stream starts: syscall and errno
 * names, the clock, the output options, cgroup labels, and the names a denial record is
 * written with (operations, tiers, actions, socket families and types, the policy). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

struct sw_sc_fmt sw_sc[SW_MAX_SYSCALLS];
struct sw_sc_fmt sw_uring[SW_URING_OPS];
char sw_errname[4096][16];
int64_t sw_clock_offset;
int sw_utc_offset;
struct sw_fmt_opts sw_opts = {.show_types = 0x3e};
uint64_t sw_last_ktime;

const char *const sw_verb_name[SW_VERBS] = {
	"SYSCALL", "OPEN", "READ", "WRITE", "CLOSE", "SOCKET", "CONNECT", "BIND", "LISTEN",
	"ACCEPT", "SPAWN", "DELETE", "RENAME", "MKDIR", "RMDIR", "CHDIR", "STAT", "EXEC",
	"LINK", "KILL", "CHMOD", "DUP",
};

const char *const sw_fd_kind[9] = {
	"", "file", "tcp", "udp", "unix", "pipe", "socket", "anon", "bad",
};

const char *const sw_fd_label[9] = {
	"", "", "TCP", "UDP", "UNIX", "pipe", "socket", "", "bad fd",
};

void sw_fmt_set_options(const struct sw_fmt_opts *opts)
{
	sw_opts = *opts;
	sw_fmt_forget_held();
	sw_last_ktime = 0;
}

void sw_fmt_reset(void)
{
	memset(sw_sc, 0, sizeof(sw_sc));
	memset(sw_uring, 0, sizeof(sw_uring));
	memset(sw_errname, 0, sizeof(sw_errname));
	sw_fmt_forget_held();
	sw_last_ktime = 0;
}

void sw_fmt_set_syscall(uint32_t nr, const char *name, uint8_t verb, uint8_t flags)
{
	if (nr >= SW_MAX_SYSCALLS)
		return;
	snprintf(sw_sc[nr].name, sizeof(sw_sc[nr].name), "%s", name);
	sw_sc[nr].verb = verb < SW_VERBS ? verb : SW_VERB_GENERIC;
	sw_sc[nr].flags = flags;
}

void sw_fmt_set_uring_op(uint32_t op, const char *name, uint8_t verb, uint8_t flags)
{
	if (op >= SW_URING_OPS)
		return;
	snprintf(sw_uring[op].name, sizeof(sw_uring[op].name), "%s", name);
	sw_uring[op].verb = verb < SW_VERBS ? verb : SW_VERB_GENERIC;
	sw_uring[op].flags = flags;
}

void sw_fmt_set_errno(int err, const char *name)
{
	if (err > 0 && err < 4096)
		snprintf(sw_errname[err], sizeof(sw_errname[err]), "%s", name);
}

void sw_fmt_set_clock(int64_t offset_ns, int utc_offset_s)
{
	sw_clock_offset = offset_ns;
	sw_utc_offset = utc_offset_s;
}

/* ------------------------------------------------------------- cgroup labels */

/* Open addressing on the cgroup id (never 0), grown at half full: any number of labels
 * (a container has a cgroup per sub-cgroup, a host may run hundreds of containers). */
struct sw_label {
	uint64_t id;            /* 0: free */
	char *label;
	struct sw_kubernetes k8s; /* pod NULL: not in a pod */
};

static struct sw_label *sw_labels;
static size_t sw_labels_cap;    /* a power of two, or 0 */
static size_t sw_labels_used;

static size_t sw_label_slot(const struct sw_label *tab, size_t cap, uint64_t id)
{
	size_t i = (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 17) & (cap - 1);

	while (tab[i].id && tab[i].id != id)
		i = (i + 1) & (cap - 1);
	return i;
}

static int sw_labels_grow(void)
{
	size_t cap = sw_labels_cap ? 2 * sw_labels_cap : 64;
	struct sw_label *tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < sw_labels_cap; i++)
		if (sw_labels[i].id)
			tab[sw_label_slot(tab, cap, sw_labels[i].id)] = sw_labels[i];
	free(sw_labels);
	sw_labels = tab;
	sw_labels_cap = cap;
	return 0;
}

int sw_fmt_set_cgroup_label(uint64_t id, const char *label)
{
	struct sw_label *slot;
	char *copy;

	if (id == 0)
		return -EINVAL;
	if (2 * (sw_labels_used + 1) > sw_labels_cap && sw_labels_grow() < 0)
		return -ENOMEM;
	copy = strdup(label);
	if (!copy)
		return -ENOMEM;
	slot = &sw_labels[sw_label_slot(sw_labels, sw_labels_cap, id)];
	if (slot->id) {
		free(slot->label);
	} else {
		slot->id = id;
		sw_labels_used++;
	}
	slot->label = copy;
	return 0;
}

static struct sw_label *sw_label_find(uint64_t id)
{
	if (!sw_labels_used || id == 0)
		return NULL;
	struct sw_label *slot = &sw_labels[sw_label_slot(sw_labels, sw_labels_cap, id)];

	return slot->id ? slot : NULL;
}

int sw_fmt_set_cgroup_kubernetes(uint64_t id, const char *namespace_, const char *pod,
				 const char *container)
{
	struct sw_label *slot = sw_label_find(id);
	struct sw_kubernetes k8s = {strdup(namespace_), strdup(pod), strdup(container)};

	if (!slot || !k8s.namespace_ || !k8s.pod || !k8s.container) {
		free(k8s.namespace_);
		free(k8s.pod);
		free(k8s.container);
		return slot ? -ENOMEM : -ENOENT;
	}
	free(slot->k8s.namespace_);
	free(slot->k8s.pod);
	free(slot->k8s.container);
	slot->k8s = k8s;
	return 0;
}

size_t sw_fmt_cgroup_labels(void) { return sw_labels_used; }

const char *sw_cgroup_label(uint64_t id)
{
	struct sw_label *slot = sw_label_find(id);

	return slot ? slot->label : NULL;
}

const struct sw_kubernetes *sw_cgroup_kubernetes(uint64_t id)
{
	struct sw_label *slot = sw_label_find(id);

	return slot && slot->k8s.pod ? &slot->k8s : NULL;
}

/* ------------------------------------------------------------ denial names */

#define SW_NAME_IDS 64
#define SW_NAME_LEN 24
static char sw_names[SW_NAME_TABLES][SW_NAME_IDS][SW_NAME_LEN];
static char sw_policy[64];
static char sw_rules[SWP_MAX_PATHS][SWP_PATH_MAX];

int sw_fmt_set_name(int table, unsigned id, const char *name)
{
	if (table < 0 || table >= SW_NAME_TABLES || id >= SW_NAME_IDS ||
	    strlen(name) >= SW_NAME_LEN)
		return -EINVAL;
	snprintf(sw_names[table][id], SW_NAME_LEN, "%s", name);
	return 0;
}

const char *sw_name(int table, unsigned id)
{
	if (table < 0 || table >= SW_NAME_TABLES || id >= SW_NAME_IDS || !sw_names[table][id][0])
		return NULL;
	return sw_names[table][id];
}

void sw_fmt_set_policy(const char *name)
{
	snprintf(sw_policy, sizeof(sw_policy), "%s", name);
	memset(sw_rules, 0, sizeof(sw_rules));
}

int sw_fmt_set_policy_rule(unsigned i, const char *path)
{
	if (i >= SWP_MAX_PATHS || strlen(path) >= SWP_PATH_MAX)
		return -EINVAL;
	snprintf(sw_rules[i], SWP_PATH_MAX, "%s", path);
	return 0;
}

const char *sw_policy_name(void) { return sw_policy; }

const char *sw_policy_rule(unsigned i) { return i < SWP_MAX_PATHS && sw_rules[i][0] ? sw_rules[i] : NULL; }
