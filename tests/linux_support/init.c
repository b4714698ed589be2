/*
 * The initramfs's /init for ttvm's Linux tests: prints a marker on the console, then
 * reboots. ttvm ends the machine on the reboot's i8042 reset pulse with status 0, so a full
 * boot has a clear, deterministic end.
 *
 * No libc: built with `cc -static -nostdlib`, system calls by hand, so the test needs only
 * a C compiler (no static libc package).
 */
#define SYS_write 1
#define SYS_open 2
#define SYS_reboot 169
#define SYS_exit 60

static long syscall4(long n, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static void say(long fd, const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	syscall4(SYS_write, fd, (long)s, n, 0);
}

void _start(void)
{
	/* The kernel opened /dev/console as fds 0-2 if it could; open it again to be sure. */
	long fd = syscall4(SYS_open, (long)"/dev/console", 2 /* O_RDWR */, 0, 0);
	if (fd < 0)
		fd = 1;
	say(fd, "TTVM-INIT-OK: the initramfs init is running in user space\n");
	/* LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_RESTART */
	syscall4(SYS_reboot, 0xfee1deadL, 672274793L, 0x01234567L, 0);
	say(fd, "TTVM-INIT: reboot(2) returned\n");
	syscall4(SYS_exit, 1, 0, 0, 0);
	for (;;)
		;
}
