/*
 * libbpf's print callback takes a va_list, which Rust cannot receive
 * portably. This shim formats each message and hands the finished line to
 * a sink set from Rust (libbpf-oracle's log capture).
 *
 * It references no libbpf symbol: the Rust side passes
 * userbpf_oracle_print to libbpf_set_print itself.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*userbpf_oracle_sink)(int level, const char *msg, size_t len);

static userbpf_oracle_sink sink;

void userbpf_oracle_set_sink(userbpf_oracle_sink new_sink)
{
	sink = new_sink;
}

int userbpf_oracle_print(int level, const char *fmt, va_list args)
{
	char small[1024];
	char *buf = small;
	va_list copy;
	int len;

	if (!sink)
		return 0;
	va_copy(copy, args);
	len = vsnprintf(small, sizeof(small), fmt, args);
	if (len < 0) {
		va_end(copy);
		return len;
	}
	if ((size_t)len >= sizeof(small)) {
		buf = malloc((size_t)len + 1);
		if (!buf) {
			va_end(copy);
			return -1;
		}
		vsnprintf(buf, (size_t)len + 1, fmt, copy);
	}
	va_end(copy);
	sink(level, buf, (size_t)len);
	if (buf != small)
		free(buf);
	return len;
}
