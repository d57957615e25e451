/*
 * The va_list half of libbpf_set_print (stable Rust cannot build a va_list).
 *
 * userbpf_print_str() hands an already formatted message to a
 * libbpf_print_fn_t as a genuine va_list ("%s", msg), and
 * userbpf_default_print is the printer libbpf_set_print() returns until an
 * application installs its own: stderr, levels <= LIBBPF_LOG_LEVEL (info by
 * default), like libbpf's __base_pr. Nothing here is exported from
 * libbpf.so (hidden visibility, and the version script has `local: *`).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

enum { USERBPF_WARN = 0, USERBPF_INFO = 1, USERBPF_DEBUG = 2 };

typedef int (*userbpf_print_fn_t)(int level, const char *fmt, va_list ap);

static int call_print(userbpf_print_fn_t fn, int level, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = fn(level, fmt, ap);
	va_end(ap);
	return ret;
}

__attribute__((visibility("hidden")))
int userbpf_print_str(userbpf_print_fn_t fn, int level, const char *msg)
{
	return call_print(fn, level, "%s", msg);
}

static int min_level(void)
{
	static int warned;
	const char *env = getenv("LIBBPF_LOG_LEVEL");

	if (!env || strcasecmp(env, "info") == 0)
		return USERBPF_INFO;
	if (strcasecmp(env, "warn") == 0)
		return USERBPF_WARN;
	if (strcasecmp(env, "debug") == 0)
		return USERBPF_DEBUG;
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "libbpf: unrecognized 'LIBBPF_LOG_LEVEL' envvar value: '%s', "
			"should be one of 'warn', 'debug', or 'info'.\n", env);
	return USERBPF_INFO;
}

__attribute__((visibility("hidden")))
int userbpf_default_print(int level, const char *fmt, va_list ap)
{
	if (level > min_level())
		return 0;
	return vfprintf(stderr, fmt, ap);
}

__attribute__((visibility("hidden")))
userbpf_print_fn_t userbpf_default_printer(void)
{
	return userbpf_default_print;
}
