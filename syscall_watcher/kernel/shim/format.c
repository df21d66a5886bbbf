/* The batch formatter: walks a batch of records (any ring's: the tracer's events, the
 * enforcer's denials) and writes each as a human line (human.c) or a JSON line (json.c),
 * holding a new program's EXEC line while its start-up is folded into it. Also the views
 * both writers read a record through. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "format.h"

void sw_view_syscall(const struct sw_syscall_event *ev, struct sw_sc_view *v)
{
	size_t off = 0, max = sizeof(ev->data);

	memset(v, 0, sizeof(*v));
	v->ev = ev;
	if (ev->path_len && off + ev->path_len <= max) {
		v->path = (const char *)ev->data + off;
		off += ev->path_len;
	}
	if (ev->path2_len && off + ev->path2_len <= max) {
		v->path2 = (const char *)ev->data + off;
		off += ev->path2_len;
	}
	if (ev->fdname_len && off + ev->fdname_len <= max) {
		v->fdname = (const char *)ev->data + off;
		off += ev->fdname_len;
	}
	if (ev->addr_len && off + ev->addr_len <= max) {
		v->addr = ev->data + off;
		v->family = sw_fmt_sockaddr(v->addr, ev->addr_len, v->addrbuf, sizeof(v->addrbuf));
	}
}

/* User strings are read head-first (bpf_probe_read_user_str): a cut loses their end. */
int sw_path_cut(const struct sw_syscall_event *ev, int flag)
{
	return ev->flags & flag ? SW_CUT_END : SW_CUT_NONE;
}

/* fd names are walked from the file up to the root (vfs_path.bpf.h): a cut loses
 * the components nearest the root, so the path shown is the tail of the real one. */
int sw_fdname_cut(const struct sw_syscall_event *ev)
{
	return ev->flags & SW_F_FDNAME_TRUNC ? SW_CUT_HEAD : SW_CUT_NONE;
}

/* Is this record shown at all (-e / the profile's record types, --failed)? A denial always is. */
static int record_shown(const struct sw_event_hdr *h)
{
	if (h->type == SWP_EV_DENIAL)
		return 1;
	if (h->type >= SW_EV_TYPES || !(sw_opts.show_types & (1u << h->type)))
		return 0;
	if (h->type == SW_EV_SYSCALL) {
		const struct sw_syscall_event *ev = (const void *)h;

		if (ev->nr >= SW_MAX_SYSCALLS || (sw_sc[ev->nr].flags & SW_FMT_HIDDEN))
			return 0;
		return !sw_opts.failed_only || sw_is_err(ev->ret);
	}
	if (h->type == SW_EV_URING) {
		const struct sw_syscall_event *ev = (const void *)h;

		if (ev->nr >= SW_URING_OPS || (sw_uring[ev->nr].flags & SW_FMT_HIDDEN))
			return 0;
		return !sw_opts.failed_only || sw_is_err(ev->ret);
	}
	return !sw_opts.failed_only;
}

enum { SU_NO, SU_LIB, SU_LOCALE, SU_OTHER };

/* What a path is to a new image's start-up: a shared library, a locale/gconv file, another
 * file of the dynamic loader (/etc/ld.so.cache, /etc/ld.so.preload), or none of these. */
static int startup_kind(const char *path, size_t n)
{
	char p[SW_PATH_MAX + 1];
	size_t len = strnlen(path, n < SW_PATH_MAX ? n : SW_PATH_MAX);
	const char *base, *so;

	memcpy(p, path, len);
	p[len] = 0;
	if (len == 0 || p[0] != '/')
		return SU_NO;
	if (strncmp(p, "/etc/ld.so.", 11) == 0)
		return SU_OTHER;
	if (strncmp(p, "/usr/lib/locale/", 16) == 0 || strcmp(p, "/usr/lib/locale") == 0 ||
	    strncmp(p, "/usr/share/locale/", 18) == 0 || strcmp(p, "/etc/locale.alias") == 0 ||
	    strstr(p, "/gconv/"))
		return SU_LOCALE;
	base = strrchr(p, '/') + 1;
	for (so = strstr(base, ".so"); so; so = strstr(so + 1, ".so"))
		if (so[3] == 0 || so[3] == '.')
			return SU_LIB;
	return SU_NO;
}

#define SW_HELD 64
static struct sw_held sw_held[SW_HELD];

void sw_fmt_forget_held(void) { memset(sw_held, 0, sizeof(sw_held)); }

static struct sw_held *held_of(uint32_t pid)
{
	for (int i = 0; i < SW_HELD; i++)
		if (sw_held[i].pid == pid)
			return &sw_held[i];
	return NULL;
}

static void release(struct sw_out *o, struct sw_held *held, int color)
{
	sw_human_record(o, &held->ev.hdr, color, held);
	held->pid = 0;
}

/* Hold an EXEC record for start-up folding (the oldest held line goes out if all are taken). */
static void hold(struct sw_out *o, const struct sw_exec_event *ev, int color)
{
	struct sw_held *slot = held_of(ev->hdr.pid);
	size_t size = ev->hdr.size < sizeof(slot->ev) ? ev->hdr.size : sizeof(slot->ev);

	if (slot) {
		release(o, slot, color); /* exec'd again before doing anything else */
	} else {
		slot = held_of(0);
		if (!slot) {
			slot = &sw_held[0];
			for (int i = 1; i < SW_HELD; i++)
				if (sw_held[i].ev.hdr.ktime_ns < slot->ev.hdr.ktime_ns)
					slot = &sw_held[i];
			release(o, slot, color);
		}
	}
	memset(slot, 0, offsetof(struct sw_held, ev));
	memcpy(&slot->ev, ev, size);
	slot->pid = ev->hdr.pid;
}

/* A record of a process whose EXEC line is held: fold it if it is start-up work
 * (returns 1), else write the held line out first (returns 0). */
static int fold(struct sw_out *o, struct sw_held *held, const struct sw_event_hdr *h, int color)
{
	if (h->type == SW_EV_SYSCALL) {
		const struct sw_syscall_event *ev = (const void *)h;
		int verb = sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0].verb;
		struct sw_sc_view v;
		int kind = SU_NO;

		sw_view_syscall(ev, &v);
		if (verb == SW_VERB_OPEN && v.path)
			kind = startup_kind(v.path, ev->path_len);
		else if (v.fdname)
			kind = startup_kind(v.fdname, ev->fdname_len);
		else if (v.path)
			kind = startup_kind(v.path, ev->path_len);
		if (kind != SU_NO) {
			if (verb == SW_VERB_OPEN && !sw_is_err(ev->ret)) {
				held->libs += kind == SU_LIB;
				held->locale += kind == SU_LOCALE;
			}
			held->folded++;
			return 1;
		}
	}
	release(o, held, color);
	return 0;
}

static void format_one(struct sw_out *o, const struct sw_event_hdr *h, int mode, int color)
{
	if (!record_shown(h))
		return;
	if (mode == SW_OUT_JSON) {
		sw_json_record(o, h);
		return;
	}
	if (sw_opts.fold_startup) {
		struct sw_held *held = held_of(h->pid);

		if (held && fold(o, held, h, color))
			return;
		if (h->type == SW_EV_EXEC) {
			hold(o, (const void *)h, color);
			return;
		}
	}
	sw_human_record(o, h, color, NULL);
}

size_t sw_format(const char *recs, size_t len, size_t *pos, int mode, int color, char *out,
		 size_t cap)
{
	struct sw_out o = {out, out + cap};

	/* room for two lines: a held EXEC line may go out before the record's own */
	while (*pos + sizeof(struct sw_event_hdr) <= len &&
	       (size_t)(o.end - o.p) >= 2 * SW_MAX_LINE) {
		const struct sw_event_hdr *h = (const void *)(recs + *pos);
		size_t size = h->size;

		if (size < sizeof(*h) || *pos + size > len)
			break;
		*pos += (size + 7) & ~(size_t)7;
		sw_step_before(h); /* --agent: a fork puts its child in its step */
		format_one(&o, h, mode, color);
		sw_step_after(h);
	}
	return o.p - out;
}

size_t sw_fmt_release_held(uint64_t now_ns, uint64_t max_age_ns, int color, char *out,
			   size_t cap)
{
	struct sw_out o = {out, out + cap};

	for (int i = 0; i < SW_HELD && (size_t)(o.end - o.p) >= SW_MAX_LINE; i++) {
		struct sw_held *held = &sw_held[i];

		if (held->pid && (!max_age_ns || now_ns - held->ev.hdr.ktime_ns >= max_age_ns ||
				  now_ns < held->ev.hdr.ktime_ns))
			release(&o, held, color);
	}
	return o.p - out;
}

/* --------------------------------------------------------------- denials */

void sw_view_denial(const struct swp_denial *d, struct sw_denial_view *v)
{
	const char *a, *b;

	memset(v, 0, sizeof(*v));
	v->d = d;
	v->target = v->buf;
	switch (d->target_kind) {
	case SWP_TGT_PATH:
		/* walked from the file up (vfs_path.bpf.h): a cut path lost its head */
		v->target = d->target;
		v->target_len = strnlen(d->target, sizeof(d->target));
		v->cut = d->trunc ? SW_CUT_HEAD : SW_CUT_NONE;
		break;
	case SWP_TGT_ADDR:
		if (!sw_fmt_sockaddr((const uint8_t *)d->target,
				     d->target_len < sizeof(d->target) ? d->target_len : sizeof(d->target),
				     v->buf, sizeof(v->buf)))
			snprintf(v->buf, sizeof(v->buf), "?");
		break;
	case SWP_TGT_PID:
		snprintf(v->buf, sizeof(v->buf), "pid %lld signal %lld", (long long)d->aux,
			 (long long)d->aux2);
		break;
	case SWP_TGT_SOCKET:
		a = d->aux >= 0 ? sw_name(SW_NAMES_FAMILY, (unsigned)d->aux) : NULL;
		b = sw_name(SW_NAMES_SOCKTYPE, (unsigned)(d->aux2 & 0xf));
		if (a && b)
			snprintf(v->buf, sizeof(v->buf), "%s %s", a, b);
		else if (a)
			snprintf(v->buf, sizeof(v->buf), "%s type %lld", a, (long long)d->aux2);
		else if (b)
			snprintf(v->buf, sizeof(v->buf), "family %lld %s", (long long)d->aux, b);
		else
			snprintf(v->buf, sizeof(v->buf), "family %lld type %lld", (long long)d->aux,
				 (long long)d->aux2);
		break;
	default:
		break;
	}
	if (v->target == v->buf)
		v->target_len = strlen(v->buf);
	if (d->rule == SWP_RULE_BLOCK) {
		v->rule = "block";
	} else if (d->rule == SWP_RULE_UNCHECKED) {
		v->rule = "unchecked path"; /* unreadable or too long to compare: denied */
	} else if ((v->rule = sw_policy_rule(d->rule)) == NULL) {
		snprintf(v->rule_buf, sizeof(v->rule_buf), "rule %u", d->rule);
		v->rule = v->rule_buf;
	}
	if (d->nr != 0xffffffffu) {
		if (d->nr < SW_MAX_SYSCALLS && sw_sc[d->nr].name[0]) {
			v->syscall = sw_sc[d->nr].name;
		} else if ((d->nr & SWP_NR_URING) && (d->nr & 0xffff) < SW_URING_OPS &&
			   sw_uring[d->nr & 0xffff].name[0]) {
			/* an io_uring submission: io_uring:openat */
			const char *n = sw_uring[d->nr & 0xffff].name;
			size_t k = snprintf(v->syscall_buf, sizeof(v->syscall_buf), "io_uring:");

			for (; *n && k + 1 < sizeof(v->syscall_buf); n++)
				v->syscall_buf[k++] = (*n >= 'A' && *n <= 'Z') ? *n + 32 : *n;
			v->syscall_buf[k] = 0;
			v->syscall = v->syscall_buf;
		} else {
			snprintf(v->syscall_buf, sizeof(v->syscall_buf), "%u", d->nr);
			v->syscall = v->syscall_buf;
		}
	}
}
