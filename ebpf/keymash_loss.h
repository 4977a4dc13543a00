/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * keymash_loss.h: the one written-down layout of the maps shared between the eBPF loss filter
 * (keymash_loss.bpf.c) and keymash-loss-controller (services/loss-controller/src/layout.rs,
 * which asserts the same sizes and offsets at compile time). Change both together.
 *
 * All fields are in host byte order; the filter converts the UDP port itself.
 */
#ifndef KEYMASH_LOSS_H
#define KEYMASH_LOSS_H

#include <linux/types.h>

/* Loss models. KEYMASH_MODEL_PASS disables dropping (the state of a freshly loaded map). */
#define KEYMASH_MODEL_PASS 0u
/* Independent drops with probability drop_fraction. */
#define KEYMASH_MODEL_BERNOULLI 1u
/* Two-state Markov chain with netem's `loss gemodel p r 1-h 1-k` meaning. */
#define KEYMASH_MODEL_GILBERT_ELLIOTT 2u

/* A probability as a fraction of 2^32; this value means "always" (a u32 cannot hold 2^32). */
#define KEYMASH_FRACTION_ALWAYS 0xffffffffu

/* Value of the single entry (key 0) of the config map (BPF_MAP_TYPE_ARRAY). */
struct keymash_loss_config {
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) after which the filter passes everything: the
	 * controller moves it forward on every refresh, so a dead controller stops all loss. */
	__u64 deadline_ns;
	/* UDP destination port of the video flow; 0 matches nothing. */
	__u16 port;
	__u16 reserved0;
	/* One of KEYMASH_MODEL_*. */
	__u32 model;
	/* Bernoulli: probability of dropping a packet. */
	__u32 drop_fraction;
	/* Gilbert-Elliott: probability of moving good -> bad per packet (netem p). */
	__u32 ge_p;
	/* Gilbert-Elliott: probability of moving bad -> good per packet (netem r). */
	__u32 ge_r;
	/* Gilbert-Elliott: probability of dropping a packet in the bad state (netem 1-h). */
	__u32 ge_loss_bad;
	/* Gilbert-Elliott: probability of dropping a packet in the good state (netem 1-k). */
	__u32 ge_loss_good;
	__u32 reserved1;
};

/* Value of the single entry (key 0) of the per-CPU counter map (BPF_MAP_TYPE_PERCPU_ARRAY). */
struct keymash_loss_counters {
	/* Packets of the video flow (UDP to the configured port) the filter saw. */
	__u64 seen;
	/* Of those, packets it dropped. */
	__u64 dropped;
	/* Of those, packets it passed because the deadline had expired (fail-safe in action). */
	__u64 passed_expired;
};

/* Value of the single entry (key 0) of the Gilbert-Elliott state map (BPF_MAP_TYPE_ARRAY). */
struct keymash_loss_ge_state {
	/* 0 = good, 1 = bad. */
	__u32 bad;
};

_Static_assert(sizeof(struct keymash_loss_config) == 40, "config layout changed: update layout.rs");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, port) == 8, "port offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, model) == 12, "model offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, drop_fraction) == 16, "drop offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, ge_p) == 20, "ge_p offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, ge_r) == 24, "ge_r offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, ge_loss_bad) == 28, "ge_loss_bad offset");
_Static_assert(__builtin_offsetof(struct keymash_loss_config, ge_loss_good) == 32, "ge_loss_good offset");
_Static_assert(sizeof(struct keymash_loss_counters) == 24, "counters layout changed: update layout.rs");
_Static_assert(sizeof(struct keymash_loss_ge_state) == 4, "ge state layout changed: update layout.rs");

#endif /* KEYMASH_LOSS_H */
