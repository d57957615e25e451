/* Probes with semaphores (in .probes). */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

__extension__ unsigned short ubpf_sema_semaphore __attribute__((unused)) __attribute__((section(".probes")));

int site_sema(int v)
{
	if (ubpf_sema_semaphore)
		STAP_PROBE1(ubpf, sema, v);
	return ubpf_sema_semaphore;
}
