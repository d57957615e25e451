/*
 * The C half of btf_dump (stable Rust can build neither a va_list nor a
 * long double):
 *
 * - userbpf_btf_dump_print_str() hands already formatted text to a
 *   btf_dump_printf_fn_t as a genuine va_list ("%s", text);
 * - userbpf_format_float() formats a 4-, 8- or 16-byte floating-point
 *   value with printf's "%f", "%lf" or "%Lf", as libbpf's typed data dumper
 *   prints them.
 *
 * Nothing here is exported from libbpf.so (hidden visibility, and the
 * version script has `local: *`).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef void (*userbpf_btf_dump_printf_fn_t)(void *ctx, const char *fmt, va_list args);

static void call_dump_printf(userbpf_btf_dump_printf_fn_t fn, void *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fn(ctx, fmt, ap);
	va_end(ap);
}

__attribute__((visibility("hidden")))
void userbpf_btf_dump_print_str(userbpf_btf_dump_printf_fn_t fn, void *ctx, const char *text)
{
	call_dump_printf(fn, ctx, "%s", text);
}

/* snprintf()'s result: the length of the full text (which fits if it is
 * below size), or -1 for an unsupported size. */
__attribute__((visibility("hidden")))
int userbpf_format_float(char *buf, size_t size, const void *data, int sz)
{
	long double ld;
	double d;
	float f;

	switch (sz) {
	case 16:
		memcpy(&ld, data, sizeof(ld) < 16 ? sizeof(ld) : 16);
		return snprintf(buf, size, "%Lf", ld);
	case 8:
		memcpy(&d, data, sizeof(d));
		return snprintf(buf, size, "%lf", d);
	case 4:
		memcpy(&f, data, sizeof(f));
		return snprintf(buf, size, "%f", f);
	default:
		return -1;
	}
}
