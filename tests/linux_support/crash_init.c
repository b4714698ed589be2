/*
 * /init for ttvm's Linux crash test (issue 19): a small user program that crashes the
 * kernel through a real kernel path. It mounts proc, announces itself on the console (the
 * line `ttvm run --record-from-output` starts recording at), runs a short user-mode loop
 * (so the recording has user instructions, a stack and a page fault to step through), and
 * writes 'c' to /proc/sysrq-trigger: sysrq_handle_crash() panics the kernel
 * ("Kernel panic - not syncing: sysrq triggered crash"). No libc, as init.c.
 */
#define SYS_write 1
#define SYS_open 2
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_exit 60

static long sc(long n, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static long out = 1;

static void say(const char *s)
{
	/* volatile: -O2 would otherwise turn the loop into a call to strlen, which is absent. */
	volatile long n = 0;
	while (s[n])
		n++;
	sc(SYS_write, out, (long)s, n, 0, 0);
}

/* A page of BSS the loop writes first: its first touch is a user page fault. */
static volatile unsigned char scratch[4096] __attribute__((aligned(4096)));

/* Where the checksum goes (volatile: the loop is not optimised away). */
static volatile unsigned long result;

/* A short user-mode computation the recording steps through instruction by instruction. */
static __attribute__((noipa)) unsigned long checksum(void)
{
	unsigned long sum = 0;
	for (int i = 0; i < 64; i++) {
		scratch[i * 61 % 4096] = (unsigned char)(i * 7 + 1);
		sum = sum * 31 + scratch[i * 61 % 4096];
	}
	return sum;
}

/* The write system call that crashes the kernel; a real debugger session ends here when
 * it goes back from the panic. */
static __attribute__((noipa)) long crash_the_kernel(long fd)
{
	static const char c = 'c';
	return sc(SYS_write, fd, (long)&c, 1, 0, 0);
}

void _start(void)
{
	long fd = sc(SYS_open, (long)"/dev/console", 2, 0, 0, 0);
	if (fd >= 0)
		out = fd;
	sc(SYS_mkdir, (long)"/proc", 0555, 0, 0, 0);
	if (sc(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0) != 0)
		say("TTVM-CRASH: mounting /proc FAILED\n");
	say("TTVM-CRASH: init is running; crashing the kernel through /proc/sysrq-trigger\n");
	result = checksum();
	long t = sc(SYS_open, (long)"/proc/sysrq-trigger", 1 /* O_WRONLY */, 0, 0, 0);
	if (t < 0) {
		say("TTVM-CRASH: cannot open /proc/sysrq-trigger\n");
		sc(SYS_exit, 1, 0, 0, 0, 0);
	}
	crash_the_kernel(t);
	say("TTVM-CRASH: the kernel survived the sysrq crash\n");
	sc(SYS_exit, 1, 0, 0, 0, 0);
	for (;;)
		;
}
