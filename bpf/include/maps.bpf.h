/* Map helpers every swatch BPF object uses (as libbpf-tools' maps.bpf.h). Include after
 * vmlinux.h and the libbpf headers. */
#ifndef SWATCH_MAPS_BPF_H
#define SWATCH_MAPS_BPF_H

/* The key of a one-entry array map. */
static const u32 zero = 0;

/* The entry at key, created from init if absent (NULL only if the map is full). */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *init)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* Add one to a counter: `field` of the one entry (of type T) of the array map `map`. */
#define count_one(map, T, field)                                          \
	({                                                                \
		T *c__ = bpf_map_lookup_elem(map, &zero);                  \
		if (c__)                                                  \
			__sync_fetch_and_add(&c__->field, 1);             \
	})

#endif /* SWATCH_MAPS_BPF_H */
