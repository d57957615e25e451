/*
 * CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: BPF
 * .text cannot carry a lookup table.
 * Input: u32 length at offset 0, the data from offset 8.
 */
#include "bench.h"

u64 bpf_main(void *mem)
{
	u32 len = *(const u32 *)mem;
	const u8 *data = (const u8 *)mem + 8;
	u32 crc = 0xffffffff;

	for (u32 i = 0; i < len; i++) {
		crc ^= data[i];
		for (u32 bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (0xedb88320 & -(crc & 1));
	}
	return ~crc;
}
