/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * keymash loss filter: a tc classifier on the receiver's ingress that drops packets of the
 * keymash video flow (UDP to one port, IPv4 or IPv6, optionally behind one VLAN tag) at random,
 * with a probability and loss model held in a map that keymash-loss-controller refreshes.
 *
 * Everything that is not the video flow always passes (TC_ACT_OK): ssh, DHCP, ARP, the RTCP
 * feedback, other ports, truncated or unparsable packets. When the controller stops refreshing
 * the map (crash, hang, stop), the deadline in the map expires and the filter passes everything.
 *
 * Layout of the maps: keymash_loss.h. Built by services/loss-controller/build.rs with
 * `clang -O2 -g -target bpf`.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "keymash_loss.h"

/* IPv4 fragment offset bits and "more fragments" flag in frag_off (network order on the wire). */
#define KM_IP_MF 0x2000
#define KM_IP_OFFSET 0x1fff
/* IPv6 fragment header: offset lives in the upper 13 bits of frag_off. */
#define KM_IP6_OFFSET_MASK 0xfff8
#define KM_NEXTHDR_FRAGMENT 44

struct km_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct km_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keymash_loss_config);
} km_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keymash_loss_counters);
} km_counters SEC(".maps");

/*
 * Gilbert-Elliott state: ONE shared entry, not per-CPU. The video is one flow, which RSS (and
 * veth) keeps on one CPU at a time, so a single chain is what netem models. If packets of the
 * flow are ever classified on two CPUs at once, the plain load/store of an aligned u32 cannot
 * tear: the worst case is that one CPU's transition overwrites the other's, i.e. a transition
 * is lost or taken twice, and the state is always a valid 0 or 1. A per-CPU state would instead
 * run independent chains whose interleaving shortens the bursts the receiver sees.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keymash_loss_ge_state);
} km_ge_state SEC(".maps");

/*
 * Adds one to a counter. The empty asm makes the slot's address opaque, so clang cannot merge
 * the increments of different fields into one store through "counters + (8 or 16)": such
 * register-offset pointer arithmetic from two paths is rejected by the verifier for programs
 * loaded without CAP_PERFMON (its Spectre v1 sanitation), and loss-controller has only CAP_BPF
 * and CAP_NET_ADMIN.
 */
static __always_inline void km_count(__u64 *slot)
{
	asm volatile("" : "+r"(slot));
	*slot += 1;
}

/* True with probability fraction / 2^32, and always for KEYMASH_FRACTION_ALWAYS. */
static __always_inline int km_chance(__u32 fraction)
{
	if (fraction == KEYMASH_FRACTION_ALWAYS)
		return 1;
	return bpf_get_prandom_u32() < fraction;
}

/*
 * netem's loss_gilb_ell(): the loss decision uses the state the packet arrived in, after the
 * transition has been drawn; so the number of packets spent in the bad state is geometric with
 * mean 1/r, which is the mean burst length when 1-h = 1 and 1-k = 0.
 */
static __always_inline int km_gilbert_elliott_drops(const struct keymash_loss_config *cfg)
{
	__u32 key = 0;
	struct keymash_loss_ge_state *st = bpf_map_lookup_elem(&km_ge_state, &key);
	if (!st)
		return 0;
	__u32 bad = st->bad;
	if (!bad) {
		if (km_chance(cfg->ge_p))
			st->bad = 1;
		return km_chance(cfg->ge_loss_good);
	}
	if (km_chance(cfg->ge_r))
		st->bad = 0;
	return km_chance(cfg->ge_loss_bad);
}

/*
 * Reads the UDP destination port of an IPv4 or IPv6 packet whose network header starts at l3,
 * l3_off bytes into the frame. Returns 0 and sets *dest on success; -1 for anything else, for
 * truncated headers and for non-first fragments (which carry no ports). A first fragment counts
 * as the datagram: dropping it loses the datagram, as dropping it whole would. IPv6 extension
 * headers other than a fragment header are not chased (the video flow has none).
 *
 * The UDP header is read with bpf_skb_load_bytes, not through a packet pointer: its offset
 * depends on the IPv4 header length, and variable-offset packet pointer arithmetic needs
 * CAP_PERFMON (the verifier's Spectre v1 sanitation), which loss-controller does not get.
 */
static __always_inline int km_udp_dest(struct __sk_buff *skb, void *l3, void *end, __be16 proto,
				       __u32 l3_off, __be16 *dest)
{
	__u32 l4_off;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
			return -1;
		if (ip->frag_off & bpf_htons(KM_IP_OFFSET))
			return -1;
		l4_off = l3_off + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return -1;
		__u8 next = ip6->nexthdr;
		l4_off = l3_off + sizeof(*ip6);
		if (next == KM_NEXTHDR_FRAGMENT) {
			struct km_ipv6_frag_hdr *frag = (void *)(ip6 + 1);
			if ((void *)(frag + 1) > end)
				return -1;
			if (frag->frag_off & bpf_htons(KM_IP6_OFFSET_MASK))
				return -1;
			next = frag->nexthdr;
			l4_off += sizeof(*frag);
		}
		if (next != IPPROTO_UDP)
			return -1;
	} else {
		return -1;
	}
	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, l4_off, &udp, sizeof(udp)) < 0)
		return -1;
	*dest = udp.dest;
	return 0;
}

SEC("classifier")
int keymash_loss(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	__u32 l3_off = sizeof(*eth);
	/* One 802.1Q / 802.1ad tag in the packet (an offloaded tag is already out of the data). */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct km_vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return TC_ACT_OK;
		proto = vlan->encapsulated_proto;
		l3 = vlan + 1;
		l3_off += sizeof(*vlan);
	}

	__be16 dest;
	if (km_udp_dest(skb, l3, end, proto, l3_off, &dest) < 0)
		return TC_ACT_OK;

	__u32 key = 0;
	const struct keymash_loss_config *cfg = bpf_map_lookup_elem(&km_config, &key);
	if (!cfg || cfg->port == 0 || dest != bpf_htons(cfg->port))
		return TC_ACT_OK;

	struct keymash_loss_counters *counters = bpf_map_lookup_elem(&km_counters, &key);
	if (!counters)
		return TC_ACT_OK;
	km_count(&counters->seen);

	if (bpf_ktime_get_ns() > cfg->deadline_ns) {
		km_count(&counters->passed_expired);
		return TC_ACT_OK;
	}

	int drop = 0;
	if (cfg->model == KEYMASH_MODEL_BERNOULLI)
		drop = km_chance(cfg->drop_fraction);
	else if (cfg->model == KEYMASH_MODEL_GILBERT_ELLIOTT)
		drop = km_gilbert_elliott_drops(cfg);

	if (drop) {
		km_count(&counters->dropped);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
