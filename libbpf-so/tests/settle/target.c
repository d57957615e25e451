/* A running target: each input line makes it call uprobed_add 10 times. */
#include <stdio.h>

__attribute__((noinline)) int uprobed_add(int a, int b)
{
	asm volatile("");
	return a + b;
}

int main(void)
{
	char line[16];
	int sum = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		for (int i = 0; i < 10; i++)
			sum += uprobed_add(i, 100);
		printf("done %d\n", sum);
	}
	return 0;
}
