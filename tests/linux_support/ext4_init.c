/*
 * /init for ttvm's Linux file-system workload (issue 20): loads Debian's virtio and ext4
 * modules from /m, mounts /dev/vda (an ext4 image the test made with mkfs.ext4 -d) on
 * /mnt, announces `TTVM-EXT4: mounted` (the line a recording starts at), then reads every
 * file of /mnt/data, writes /mnt/out/copyN from what it read, fsyncs, reads one copy back,
 * unmounts and reboots. User-mode work is kept to system calls and a few words per file
 * (each user instruction is a #DB round trip under the exact engine); the kernel does the
 * copying. No libc, as init.c.
 */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_fsync 74
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_umount2 166
#define SYS_reboot 169
#define SYS_exit 60
#define SYS_finit_module 313

#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_TRUNC 01000

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

static void finish(void)
{
	sc(SYS_reboot, 0xfee1deadL, 672274793L, 0x01234567L, 0, 0);
	sc(SYS_exit, 1, 0, 0, 0, 0);
	for (;;)
		;
}

static const char *modules[] = {
	"/m/virtio.ko", "/m/virtio_ring.ko", "/m/virtio_pci_legacy_dev.ko", "/m/virtio_pci_modern_dev.ko",
	"/m/virtio_pci.ko", "/m/virtio_blk.ko", "/m/crc16.ko", "/m/mbcache.ko", "/m/jbd2.ko",
	"/m/crc32c_generic.ko", "/m/ext4.ko", 0,
};

#define FILES 4
#define CHUNK 65536
static unsigned char buf[CHUNK] __attribute__((aligned(4096)));

/* Names built without a formatter: "/mnt/data/fN" and "/mnt/out/copyN". */
static char data_name[] = "/mnt/data/f0";
static char copy_name[] = "/mnt/out/copy0";

void _start(void)
{
	long fd = sc(SYS_open, (long)"/dev/console", O_RDWR, 0, 0, 0);
	if (fd >= 0)
		out = fd;
	for (int i = 0; modules[i]; i++) {
		long m = sc(SYS_open, (long)modules[i], 0, 0, 0, 0);
		long r = m < 0 ? m : sc(SYS_finit_module, m, (long)"", 0, 0, 0);
		if (r != 0) {
			say("TTVM-EXT4: insmod FAILED: ");
			say(modules[i]);
			say("\n");
			finish();
		}
		sc(SYS_close, m, 0, 0, 0, 0);
	}
	sc(SYS_mkdir, (long)"/dev", 0755, 0, 0, 0);
	sc(SYS_mount, (long)"devtmpfs", (long)"/dev", (long)"devtmpfs", 0, 0);
	sc(SYS_mkdir, (long)"/mnt", 0755, 0, 0, 0);
	if (sc(SYS_mount, (long)"/dev/vda", (long)"/mnt", (long)"ext4", 0, 0) != 0) {
		say("TTVM-EXT4: mounting /dev/vda FAILED\n");
		finish();
	}
	say("TTVM-EXT4: mounted\n");
	sc(SYS_mkdir, (long)"/mnt/out", 0755, 0, 0, 0);
	for (int f = 0; f < FILES; f++) {
		data_name[sizeof data_name - 2] = (char)('0' + f);
		copy_name[sizeof copy_name - 2] = (char)('0' + f);
		long in = sc(SYS_open, (long)data_name, 0, 0, 0, 0);
		long cp = sc(SYS_open, (long)copy_name, O_WRONLY | O_CREAT | O_TRUNC, 0644, 0, 0);
		if (in < 0 || cp < 0) {
			say("TTVM-EXT4: open FAILED\n");
			finish();
		}
		unsigned long first = 0, total = 0;
		for (;;) {
			long n = sc(SYS_read, in, (long)buf, CHUNK, 0, 0);
			if (n <= 0)
				break;
			if (total == 0)
				first = *(unsigned long *)buf;
			total += n;
			/* The copy is the data with its first word replaced by the file's number. */
			if (total == (unsigned long)n)
				*(unsigned long *)buf = 0x7474766d00000000UL | f;
			sc(SYS_write, cp, (long)buf, n, 0, 0);
		}
		sc(SYS_fsync, cp, 0, 0, 0, 0);
		sc(SYS_close, cp, 0, 0, 0, 0);
		sc(SYS_close, in, 0, 0, 0, 0);
		say("TTVM-EXT4: ");
		say(data_name);
		say(" first=");
		say_hex(first);
		say(" bytes=");
		say_hex(total);
		say("\n");
	}
	long back = sc(SYS_open, (long)"/mnt/out/copy0", 0, 0, 0, 0);
	long n = back < 0 ? back : sc(SYS_read, back, (long)buf, CHUNK, 0, 0);
	say("TTVM-EXT4: copy0 first=");
	say_hex(n > 0 ? *(unsigned long *)buf : 0);
	say("\n");
	sc(SYS_close, back, 0, 0, 0, 0);
	say(sc(SYS_umount2, (long)"/mnt", 0, 0, 0, 0) == 0 ? "TTVM-EXT4: unmounted\n" : "TTVM-EXT4: umount FAILED\n");
	finish();
}
