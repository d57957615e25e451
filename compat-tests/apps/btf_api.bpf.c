// SPDX-License-Identifier: MIT OR Apache-2.0
/* Types for btf_dump__dump_type_data, and a bare tp_btf program whose
 * target user space sets with bpf_program__set_attach_target. */
#include "app.bpf.h"

enum app_color { APP_RED = 1, APP_GREEN = 2, APP_BLUE = 40 };

struct app_point {
	s32 x;
	s32 y;
};

struct app_sample {
	u32 id;
	enum app_color color;
	char name[8];
	struct app_point pts[2];
	u64 flags : 3;
	u64 mask : 61;
	void *ptr;
	union {
		u32 as_u32;
		u8 bytes[4];
	} u;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct app_sample);
} samples SEC(".maps");

SEC("raw_tp")
int fill(u64 *ctx)
{
	u32 key = 0;
	struct app_sample *s = bpf_map_lookup_elem(&samples, &key);

	if (!s)
		return -ENOENT;
	s->id = ctx[0];
	s->color = APP_BLUE;
	s->pts[1].x = -7;
	s->flags = 5;
	s->mask = 0x123;
	s->u.as_u32 = 0x01020304;
	return 0;
}

/* target set from user space; loaded, never attached */
SEC("tp_btf")
int on_switch(u64 *ctx)
{
	return 0;
}
