/* Externs libbpf resolves from the running kernel: .kconfig values,
 * typed ksyms, kfunc calls, and weak ones that do not exist (libbpf zeroes
 * or poisons them).
 *
 * Typeless ksyms (`extern const void sym __ksym`) get their address from
 * /proc/kallsyms in libbpf; our loader deliberately does not read it (a
 * kernel address means nothing to a userspace program), so a strong one
 * that exists would fail our relocation and only the missing weak one is
 * here: both sides load 0. */
#include "compat.h"

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern int CONFIG_USERBPF_NO_SUCH_OPTION __kconfig __weak;

struct rq {
	unsigned int nr_running;
} __core;

extern const struct rq runqueues __ksym;
extern const void userbpf_no_such_sym __ksym __weak;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void userbpf_no_such_kfunc(void) __ksym __weak;

__u64 out[8];

SEC("tp_btf/sched_switch")
int BPF_PROG(externs_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct rq *rq = bpf_this_cpu_ptr(&runqueues);

	out[0] = LINUX_KERNEL_VERSION;
	out[1] = LINUX_HAS_BPF_COOKIE | (CONFIG_BPF_SYSCALL << 1);
	out[2] = CONFIG_HZ + CONFIG_USERBPF_NO_SUCH_OPTION;
	out[3] = rq->nr_running;
	out[4] = (__u64)&userbpf_no_such_sym;
	bpf_rcu_read_lock();
	out[5] = next->pid;
	bpf_rcu_read_unlock();
	if (bpf_ksym_exists(userbpf_no_such_kfunc))
		userbpf_no_such_kfunc();
	return 0;
}
