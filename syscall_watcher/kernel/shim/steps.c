/* Steps (`--agent`): which step each process belongs to, kept where records are formatted,
 * so every JSON record of a step's process carries "step":N with no Python call per record.
 *
 * The consumer (syscall_watcher/tls/steps.py) numbers the steps and, in time order with the
 * records (the merge of the TLS lines into the trace), opens a step for an agent process when
 * an LLM response names tool calls and closes it at the agent's next LLM request. Here, a
 * process forked while a step is open for its parent (or its grandparent) joins that step; a
 * child of a step's process stays in its parent's step. The records of step processes that
 * say what a step did (exec, exit, opens, reads and writes of files, connects, deletes,
 * renames, ...) are also copied as JSON lines to a side buffer the consumer reads to sum
 * each step up, with every other traced process's connects (what "seen before" means) and the
 * exit of an agent whose step is open. */
#include <stdlib.h>
#include <string.h>

#include "format.h"

#define SW_STEP_SLOTS 16384 /* power of two; at most 3/4 used (live + removed) */
#define SW_STEP_AGENTS 64
#define SW_STEP_SIDE_MAX (64u << 20)

struct sw_step_slot {
	uint32_t pid;  /* 0: never used */
	uint32_t step; /* 0 with pid != 0: removed */
};

static struct sw_step_slot sw_members[SW_STEP_SLOTS];
static unsigned sw_members_used; /* slots with pid != 0 (live or removed) */
static struct sw_step_slot sw_agents[SW_STEP_AGENTS]; /* agent pid -> its open step */
static int sw_steps_on;
static char *sw_side;
static size_t sw_side_len, sw_side_cap;
static uint64_t sw_side_lost;    /* action lines not kept (side buffer at its bound) */
static uint64_t sw_members_lost; /* processes that could not be put in their step */

static unsigned slot_of(uint32_t pid)
{
	return (pid * 2654435761u) & (SW_STEP_SLOTS - 1);
}

uint32_t sw_step_of(uint32_t pid)
{
	if (!sw_steps_on || !pid)
		return 0;
	for (unsigned i = slot_of(pid), n = 0; n < SW_STEP_SLOTS;
	     i = (i + 1) & (SW_STEP_SLOTS - 1), n++) {
		if (sw_members[i].pid == pid)
			return sw_members[i].step;
		if (!sw_members[i].pid)
			return 0;
	}
	return 0;
}

/* Rebuild the table without its removed slots. */
static void compact(void)
{
	static struct sw_step_slot live[SW_STEP_SLOTS];
	unsigned n = 0;

	for (unsigned i = 0; i < SW_STEP_SLOTS; i++)
		if (sw_members[i].pid && sw_members[i].step)
			live[n++] = sw_members[i];
	memset(sw_members, 0, sizeof(sw_members));
	sw_members_used = 0;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = slot_of(live[k].pid);

		while (sw_members[i].pid)
			i = (i + 1) & (SW_STEP_SLOTS - 1);
		sw_members[i] = live[k];
		sw_members_used++;
	}
}

static void set_member(uint32_t pid, uint32_t step)
{
	unsigned i = slot_of(pid), free_slot = SW_STEP_SLOTS;

	for (unsigned n = 0; n < SW_STEP_SLOTS; i = (i + 1) & (SW_STEP_SLOTS - 1), n++) {
		if (sw_members[i].pid == pid) {
			sw_members[i].step = step;
			return;
		}
		if (!sw_members[i].pid)
			break;
		if (!sw_members[i].step && free_slot == SW_STEP_SLOTS)
			free_slot = i; /* a removed slot: reusable */
	}
	if (!step)
		return; /* not a member: nothing to remove */
	if (free_slot != SW_STEP_SLOTS) {
		sw_members[free_slot].pid = pid;
		sw_members[free_slot].step = step;
		return;
	}
	if (sw_members_used + 1 > SW_STEP_SLOTS / 4 * 3) {
		compact();
		if (sw_members_used + 1 > SW_STEP_SLOTS / 4 * 3) {
			sw_members_lost++;
			return;
		}
		i = slot_of(pid);
		while (sw_members[i].pid)
			i = (i + 1) & (SW_STEP_SLOTS - 1);
	}
	sw_members[i].pid = pid;
	sw_members[i].step = step;
	sw_members_used++;
}

static uint32_t open_step_of(uint32_t agent)
{
	for (int i = 0; i < SW_STEP_AGENTS; i++)
		if (sw_agents[i].pid == agent && agent)
			return sw_agents[i].step;
	return 0;
}

void sw_step_reset(int on)
{
	memset(sw_members, 0, sizeof(sw_members));
	memset(sw_agents, 0, sizeof(sw_agents));
	sw_members_used = 0;
	sw_side_len = 0;
	sw_side_lost = sw_members_lost = 0;
	sw_steps_on = on;
}

int sw_step_open(uint32_t agent, uint32_t step)
{
	int free_slot = -1;

	for (int i = 0; i < SW_STEP_AGENTS; i++) {
		if (sw_agents[i].pid == agent) {
			sw_agents[i].step = step;
			if (!step)
				sw_agents[i].pid = 0;
			return 0;
		}
		if (!sw_agents[i].pid && free_slot < 0)
			free_slot = i;
	}
	if (!step)
		return 0;
	if (free_slot < 0)
		return -1;
	sw_agents[free_slot].pid = agent;
	sw_agents[free_slot].step = step;
	return 0;
}

/* Room for one more line in the side buffer (grown up to its bound); 0 if none. */
static int side_room(void)
{
	size_t want = sw_side_len + 2 * SW_MAX_LINE;
	char *p;

	if (want <= sw_side_cap)
		return 1;
	if (want > SW_STEP_SIDE_MAX)
		return 0;
	want = want < 2 * sw_side_cap ? 2 * sw_side_cap : want;
	if (want > SW_STEP_SIDE_MAX)
		want = SW_STEP_SIDE_MAX;
	p = realloc(sw_side, want);
	if (!p)
		return 0;
	sw_side = p;
	sw_side_cap = want;
	return 1;
}

/* Point o at the side buffer's free room; 0 (the record counted lost) when there is none. */
static int side_open(struct sw_out *o)
{
	if (!side_room()) {
		sw_side_lost++;
		return 0;
	}
	o->p = sw_side + sw_side_len;
	o->end = sw_side + sw_side_cap;
	return 1;
}

static void side_json(const struct sw_event_hdr *h)
{
	struct sw_out o;

	if (!side_open(&o))
		return;
	sw_json_record(&o, h);
	sw_side_len = o.p - sw_side;
}

static void side_spawn(const struct sw_event_hdr *h, uint32_t child, uint32_t step)
{
	struct sw_out o;

	if (!side_open(&o))
		return;
	sw_puts(&o, "{\"spawn\":");
	sw_put_u64(&o, child);
	sw_puts(&o, ",\"parent\":");
	sw_put_u64(&o, h->pid);
	sw_puts(&o, ",\"step\":");
	sw_put_u64(&o, step);
	sw_puts(&o, ",\"time_ns\":");
	sw_put_i64(&o, (int64_t)h->ktime_ns + sw_clock_offset);
	sw_puts(&o, "}\n");
	sw_side_len = o.p - sw_side;
}

/* Does a syscall (or io_uring operation) of this verb say what a step did? */
static int action_verb(int verb)
{
	switch (verb) {
	case SW_VERB_OPEN:
	case SW_VERB_READ:
	case SW_VERB_WRITE:
	case SW_VERB_CONNECT:
	case SW_VERB_DELETE:
	case SW_VERB_RENAME:
	case SW_VERB_MKDIR:
	case SW_VERB_RMDIR:
	case SW_VERB_LINK:
	case SW_VERB_CHMOD:
		return 1;
	default:
		return 0;
	}
}

/* Before a record is formatted: a fork puts the child in its step. */
void sw_step_before(const struct sw_event_hdr *h)
{
	uint32_t step;

	if (!sw_steps_on || h->type != SW_EV_FORK)
		return;
	step = open_step_of(h->pid);
	if (!step)
		step = sw_step_of(h->pid);
	if (!step)
		step = open_step_of(h->ppid);
	set_member(((const struct sw_fork_event *)h)->child_pid, step);
	if (step)
		side_spawn(h, ((const struct sw_fork_event *)h)->child_pid, step);
}

/* After it is formatted: a step process's actions to the side buffer; an exit ends its
 * membership (a reused pid inherits nothing). */
void sw_step_after(const struct sw_event_hdr *h)
{
	const struct sw_syscall_event *ev = (const void *)h;
	uint32_t step;

	if (!sw_steps_on)
		return;
	if (!(step = sw_step_of(h->pid))) {
		/* an agent with an open step exits: no request will close that step (serve sums
		 * it up once its processes are gone too); its pid may be reused */
		if (h->type == SW_EV_EXIT && open_step_of(h->pid)) {
			side_json(h);
			return;
		}
		/* everyone's connects: a step's address is "new" only if nothing before it
		 * (the agent included) connected there */
		if ((h->type == SW_EV_SYSCALL && ev->nr < SW_MAX_SYSCALLS &&
		     sw_sc[ev->nr].verb == SW_VERB_CONNECT) ||
		    (h->type == SW_EV_URING && ev->nr < SW_URING_OPS &&
		     sw_uring[ev->nr].verb == SW_VERB_CONNECT))
			side_json(h);
		return;
	}
	switch (h->type) {
	case SW_EV_EXEC:
		side_json(h);
		break;
	case SW_EV_EXIT:
		side_json(h);
		set_member(h->pid, 0);
		break;
	case SW_EV_SYSCALL:
		if (ev->nr < SW_MAX_SYSCALLS && action_verb(sw_sc[ev->nr].verb))
			side_json(h);
		break;
	case SW_EV_URING:
		if (ev->nr < SW_URING_OPS && action_verb(sw_uring[ev->nr].verb))
			side_json(h);
		break;
	case SWP_EV_DENIAL:
		side_json(h);
		break;
	default:
		break;
	}
}

size_t sw_step_side(const char **data)
{
	*data = sw_side;
	return sw_side_len;
}

void sw_step_side_clear(void) { sw_side_len = 0; }

uint64_t sw_step_lost(int which)
{
	return which ? sw_members_lost : sw_side_lost;
}
