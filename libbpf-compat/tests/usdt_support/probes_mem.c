/* Built with -O0: arguments are read from the stack (-N(%rbp)). */
#include <stdint.h>
#include <sys/sdt.h>

void site_mem(int16_t s, int64_t l)
{
	STAP_PROBE2(ubpf, mem, s, l);
}
