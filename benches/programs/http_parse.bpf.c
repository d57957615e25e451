/*
 * Parse HTTP/1.x request lines: "METHOD SP PATH SP HTTP/D.D CRLF".
 * Input: u32 length at offset 0, u32 line count at 4 (unused here), the
 * text from offset 8. Every line is bounds-checked against the end, as a
 * packet parser must be.
 *
 * Each valid line yields a packed summary (FNV-1a hash of the path, path
 * length, number of '/', method id, version) folded into an FNV-style
 * accumulator; invalid lines are counted and skipped to the next '\n'.
 */
#include "bench.h"

#define FNV32_OFFSET 0x811c9dc5u
#define FNV32_PRIME 0x01000193u
#define FNV64_PRIME 0x100000001b3ull

/* Method id for the token [s, s + n), 0 if unknown. No string literals:
 * they would land in .rodata. */
static __always_inline u32 method_id(const u8 *s, u64 n)
{
	switch (n) {
	case 3:
		if (s[0] == 'G' && s[1] == 'E' && s[2] == 'T')
			return 1;
		if (s[0] == 'P' && s[1] == 'U' && s[2] == 'T')
			return 3;
		return 0;
	case 4:
		if (s[0] == 'P' && s[1] == 'O' && s[2] == 'S' && s[3] == 'T')
			return 2;
		if (s[0] == 'H' && s[1] == 'E' && s[2] == 'A' && s[3] == 'D')
			return 5;
		return 0;
	case 5:
		if (s[0] == 'P' && s[1] == 'A' && s[2] == 'T' && s[3] == 'C' &&
		    s[4] == 'H')
			return 7;
		return 0;
	case 6:
		if (s[0] == 'D' && s[1] == 'E' && s[2] == 'L' && s[3] == 'E' &&
		    s[4] == 'T' && s[5] == 'E')
			return 4;
		return 0;
	case 7:
		if (s[0] == 'O' && s[1] == 'P' && s[2] == 'T' && s[3] == 'I' &&
		    s[4] == 'O' && s[5] == 'N' && s[6] == 'S')
			return 6;
		return 0;
	}
	return 0;
}

static __always_inline int is_digit(u8 c)
{
	return c >= '0' && c <= '9';
}

/*
 * Parses the line at *pp; returns its summary, or 0 if it is malformed.
 * Leaves *pp after the line's '\n' (or at end).
 */
static __always_inline u64 parse_line(const u8 **pp, const u8 *end)
{
	const u8 *p = *pp;
	const u8 *tok = p;
	u32 method, hash = FNV32_OFFSET, slashes = 0, major, minor;
	u64 path_len;

	while (p < end && *p != ' ' && *p != '\n')
		p++;
	method = method_id(tok, (u64)(p - tok));
	if (!method || p >= end || *p != ' ')
		goto bad;
	p++;

	if (p >= end || *p != '/')
		goto bad;
	tok = p;
	while (p < end && *p != ' ' && *p != '\n') {
		slashes += *p == '/';
		hash = (hash ^ *p) * FNV32_PRIME;
		p++;
	}
	path_len = (u64)(p - tok);
	if (p >= end || *p != ' ')
		goto bad;
	p++;

	/* "HTTP/D.D\r\n" */
	if (end - p < 10)
		goto bad;
	if (p[0] != 'H' || p[1] != 'T' || p[2] != 'T' || p[3] != 'P' ||
	    p[4] != '/' || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]) ||
	    p[8] != '\r' || p[9] != '\n')
		goto bad;
	major = p[5] - '0';
	minor = p[7] - '0';
	*pp = p + 10;
	return ((u64)hash << 32) | ((path_len & 0xfff) << 20) |
	       ((u64)(slashes & 0xff) << 12) | ((u64)method << 8) |
	       (major << 4) | minor;

bad:
	while (p < end && *p != '\n')
		p++;
	if (p < end)
		p++;
	*pp = p;
	return 0;
}

u64 bpf_main(void *mem)
{
	u32 len = *(const u32 *)mem;
	const u8 *p = (const u8 *)mem + 8;
	const u8 *end = p + len;
	u64 acc = 0xcbf29ce484222325ull;
	u64 good = 0, bad = 0;

	while (p < end) {
		u64 summary = parse_line(&p, end);

		if (summary) {
			acc = (acc ^ summary) * FNV64_PRIME;
			good++;
		} else {
			bad++;
		}
	}
	return acc ^ (bad << 40) ^ good;
}
