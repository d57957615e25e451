/*
 * Hash an array of flow records (as a flow table or load balancer would):
 * a jhash-style 3-word mix of each 5-tuple, folded with the packet count.
 * Input: u32 N at offset 0, then N struct flow from offset 8.
 */
#include "bench.h"

struct flow {
	u32 saddr;
	u32 daddr;
	u16 sport;
	u16 dport;
	u32 proto;
	u64 packets;
};

#define JHASH_INITVAL 0xdeadbeef

static __always_inline u32 rol32(u32 w, u32 s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' lookup3 final mix of three words. */
static __always_inline u32 jhash_3words(u32 a, u32 b, u32 c, u32 initval)
{
	a += JHASH_INITVAL + 12 + initval;
	b += JHASH_INITVAL + 12 + initval;
	c += JHASH_INITVAL + 12 + initval;
	c ^= b;
	c -= rol32(b, 14);
	a ^= c;
	a -= rol32(c, 11);
	b ^= a;
	b -= rol32(a, 25);
	c ^= b;
	c -= rol32(b, 16);
	a ^= c;
	a -= rol32(c, 4);
	b ^= a;
	b -= rol32(a, 14);
	c ^= b;
	c -= rol32(b, 24);
	return c;
}

u64 bpf_main(void *mem)
{
	u32 n = *(const u32 *)mem;
	const struct flow *f = (const struct flow *)((const u8 *)mem + 8);
	u64 acc = 0;

	for (u32 i = 0; i < n; i++) {
		u32 ports = ((u32)f[i].sport << 16) | f[i].dport;
		u32 h = jhash_3words(f[i].saddr, f[i].daddr, ports, f[i].proto);

		acc = (acc ^ h ^ (f[i].packets << 32)) * 0x9e3779b97f4a7c15ull;
		acc ^= acc >> 29;
	}
	return acc;
}
