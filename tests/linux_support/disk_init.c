/*
 * /init for ttvm's Linux disk test: loads Debian's virtio modules from /m (in the order
 * modules.dep needs), mounts devtmpfs, reads sector 0 of /dev/vda and prints the sum of its
 * bytes, writes a marker into sector 1, fsyncs, and reboots (ttvm ends the machine on the
 * reset with status 0). No libc, as init.c.
 */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_fsync 74
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_reboot 169
#define SYS_exit 60
#define SYS_finit_module 313

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

static void say_hex(unsigned long v)
{
	char b[19];
	b[0] = '0';
	b[1] = 'x';
	for (int i = 0; i < 16; i++)
		b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	b[18] = 0;
	say(b);
}

static const char *modules[] = {
	"/m/virtio.ko", "/m/virtio_ring.ko", "/m/virtio_pci_legacy_dev.ko",
	"/m/virtio_pci_modern_dev.ko", "/m/virtio_pci.ko", "/m/virtio_blk.ko", 0,
};

static void finish(void)
{
	sc(SYS_reboot, 0xfee1deadL, 672274793L, 0x01234567L, 0, 0);
	sc(SYS_exit, 1, 0, 0, 0, 0);
	for (;;)
		;
}

void _start(void)
{
	long fd = sc(SYS_open, (long)"/dev/console", 2, 0, 0, 0);
	if (fd >= 0)
		out = fd;
	say("TTVM-DISK: init running\n");
	for (int i = 0; modules[i]; i++) {
		long m = sc(SYS_open, (long)modules[i], 0, 0, 0, 0);
		long r = m < 0 ? m : sc(SYS_finit_module, m, (long)"", 0, 0, 0);
		say("TTVM-DISK: insmod ");
		say(modules[i]);
		say(r == 0 ? " ok\n" : " FAILED\n");
		if (m >= 0)
			sc(SYS_close, m, 0, 0, 0, 0);
	}
	sc(SYS_mkdir, (long)"/dev", 0755, 0, 0, 0);
	sc(SYS_mount, (long)"devtmpfs", (long)"/dev", (long)"devtmpfs", 0, 0);
	long d = sc(SYS_open, (long)"/dev/vda", 2 /* O_RDWR */, 0, 0, 0);
	if (d < 0) {
		say("TTVM-DISK: cannot open /dev/vda\n");
		finish();
	}
	static unsigned char buf[512];
	if (sc(SYS_pread64, d, (long)buf, 512, 0, 0) != 512) {
		say("TTVM-DISK: read failed\n");
		finish();
	}
	unsigned long sum = 0;
	for (int i = 0; i < 512; i++)
		sum += buf[i];
	say("TTVM-DISK: sector 0 sum=");
	say_hex(sum);
	say("\n");
	for (int i = 0; i < 512; i++)
		buf[i] = "TTVM was here. "[i % 15];
	long w = sc(SYS_pwrite64, d, (long)buf, 512, 512, 0);
	long s = sc(SYS_fsync, d, 0, 0, 0, 0);
	say(w == 512 && s == 0 ? "TTVM-DISK: wrote sector 1\n" : "TTVM-DISK: write failed\n");
	finish();
}
