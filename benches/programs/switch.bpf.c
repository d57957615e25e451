/*
 * "switch": XOR of a 64-case switch over N values.
 * Input: s32 N at offset 0, then N s32 values in [0, 64].
 * The cases map 0..63 to a fixed permutation of 0..63; anything else is the
 * default. BPF has no jump tables, so clang emits a compare tree.
 */
#include "bench.h"

static __always_inline u32 permute(s32 v)
{
	switch (v) {
	case 0:
		return 31;
	case 1:
		return 27;
	case 2:
		return 2;
	case 3:
		return 13;
	case 4:
		return 5;
	case 5:
		return 24;
	case 6:
		return 15;
	case 7:
		return 0;
	case 8:
		return 23;
	case 9:
		return 34;
	case 10:
		return 63;
	case 11:
		return 33;
	case 12:
		return 36;
	case 13:
		return 4;
	case 14:
		return 32;
	case 15:
		return 62;
	case 16:
		return 10;
	case 17:
		return 59;
	case 18:
		return 35;
	case 19:
		return 6;
	case 20:
		return 45;
	case 21:
		return 44;
	case 22:
		return 53;
	case 23:
		return 28;
	case 24:
		return 8;
	case 25:
		return 11;
	case 26:
		return 1;
	case 27:
		return 7;
	case 28:
		return 20;
	case 29:
		return 51;
	case 30:
		return 56;
	case 31:
		return 9;
	case 32:
		return 17;
	case 33:
		return 16;
	case 34:
		return 49;
	case 35:
		return 3;
	case 36:
		return 47;
	case 37:
		return 21;
	case 38:
		return 29;
	case 39:
		return 42;
	case 40:
		return 25;
	case 41:
		return 38;
	case 42:
		return 43;
	case 43:
		return 40;
	case 44:
		return 58;
	case 45:
		return 57;
	case 46:
		return 46;
	case 47:
		return 14;
	case 48:
		return 22;
	case 49:
		return 48;
	case 50:
		return 50;
	case 51:
		return 61;
	case 52:
		return 19;
	case 53:
		return 30;
	case 54:
		return 41;
	case 55:
		return 60;
	case 56:
		return 52;
	case 57:
		return 55;
	case 58:
		return 37;
	case 59:
		return 12;
	case 60:
		return 26;
	case 61:
		return 39;
	case 62:
		return 54;
	case 63:
		return 18;
	default:
		return 114514;
	}
}

u64 bpf_main(void *mem)
{
	const s32 *p = mem;
	s32 n = p[0];
	u64 h = 0;

	for (s32 i = 1; i <= n; i++)
		h ^= permute(p[i]);
	return h;
}
