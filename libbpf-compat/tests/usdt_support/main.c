#include <stdint.h>
#include <stdio.h>
void site_regs(int8_t, uint16_t, int32_t, uint64_t);
void site_consts(void);
void site_noargs(void);
void site_twice_a(long);
void site_twice_b(long);
void site_global(void);
void site_static(void);
void site_mem(int16_t, int64_t);
int site_sema(int);
int main(int argc, char **argv)
{
	site_regs(-3, 65000, -70000, 1ULL << 40);
	site_consts();
	site_noargs();
	site_twice_a(argc);
	site_twice_b(argc + 1);
	site_global();
	site_static();
	site_mem(-2, -5000000000LL);
	printf("%d\n", site_sema(argc));
	return 0;
}
