/*
 * ksmbook live worker: one scenario process on the real kernel.
 *
 * Why a C program and not a forked Python interpreter: KSM counts every
 * anonymous page of every mergeable VMA.  Under prctl(PR_SET_MEMORY_MERGE)
 * a Python process would offer its whole heap to ksmd and the counters would
 * no longer be those of the scenario.  This worker's only KSM-relevant memory
 * is the regions the controller asks it to map.
 *
 * Rules that keep it that way:
 *   - no malloc and no stdio after start (they could create new private
 *     VMAs that prctl mode would make mergeable); all buffers are static;
 *   - every region gets MADV_NOHUGEPAGE right after mmap, so that a region
 *     holds transparent huge pages only after a scenario's hugepage step (the
 *     simulator's runner does the same);
 *   - after PR_SET_MEMORY_MERGE the worker clears VM_MERGEABLE (with
 *     MADV_UNMERGEABLE) on every VMA that is not a scenario region.
 *
 * Protocol: one command per SOCK_SEQPACKET message on the channel fd (argv[1]),
 * one reply per command:  "ok [value]", "err <errno>" or "sig <signo> <addr>".
 * Numbers are parsed with strtoul(base 0), so 0x.. hex is accepted.
 *
 *   mmap <length> <shared>          -> ok <address>
 *   fill <addr> <length> <byte>     memset, one page at a time in order
 *   unique <addr> <count> <tag> <first_index> <page_size>
 *                                   each page: zeroed, then the u64
 *                                   (tag << 32 | index) little-endian at 0
 *   poke <addr> <byte>              one byte
 *   read <addr> <count> <page_size> read one byte of each page
 *   madvise <addr> <length> <advice>
 *   mprotect <addr> <length> <prot>
 *   munmap <addr> <length>
 *   prctl <value>                   PR_SET_MEMORY_MERGE, then unmerge others
 *   unmerge_others                  clear VM_MERGEABLE outside the regions
 *   fork   (+ one fd by SCM_RIGHTS) -> ok <child pid>; the child speaks
 *                                   "ok <its pid>" first on the new fd
 *   exit                            _exit(0), no reply
 *   ping                            -> ok <pid>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#endif
#ifndef MADV_UNMERGEABLE
#define MADV_UNMERGEABLE 13
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif

#define MAX_REGIONS 4096
#define MAX_ARGS 8

static int chan = -1;
static int pending_fd = -1;            /* fd received with the last message */
static char inbuf[512];
static char outbuf[128];
static char mapsbuf[1 << 17];

/* Every range ever handed out as a scenario region (never shrunk: an
 * unmapped range simply no longer appears in /proc/self/maps). */
static struct { unsigned long start, end; } regions[MAX_REGIONS];
static int nregions;

static sigjmp_buf fault_env;
static volatile sig_atomic_t fault_signo;
static volatile unsigned long fault_addr;

static void on_fault(int signo, siginfo_t *info, void *ctx)
{
	(void)ctx;
	fault_signo = signo;
	fault_addr = (unsigned long)info->si_addr;
	siglongjmp(fault_env, 1);
}

/* ---- tiny formatting helpers (no stdio) ---- */

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_ulong(char *p, unsigned long v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static void reply(const char *word, int has_value, unsigned long value)
{
	char *p = put_str(outbuf, word);

	if (has_value) {
		*p++ = ' ';
		p = put_ulong(p, value);
	}
	if (send(chan, outbuf, (size_t)(p - outbuf), MSG_NOSIGNAL) < 0)
		_exit(3);
}

static void reply_ok(void) { reply("ok", 0, 0); }
static void reply_val(unsigned long v) { reply("ok", 1, v); }
static void reply_err(int e) { reply("err", 1, (unsigned long)e); }

static void reply_sig(void)
{
	char *p = put_str(outbuf, "sig ");

	p = put_ulong(p, (unsigned long)fault_signo);
	*p++ = ' ';
	p = put_ulong(p, fault_addr);
	if (send(chan, outbuf, (size_t)(p - outbuf), MSG_NOSIGNAL) < 0)
		_exit(3);
}

/* ---- channel ---- */

/* Receive one command; an fd sent with it lands in pending_fd.
 * Returns the message length, 0 on EOF (controller gone). */
static ssize_t recv_command(void)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { inbuf, sizeof(inbuf) - 1 };
	struct msghdr msg = { 0 };
	struct cmsghdr *c;
	ssize_t n;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	do {
		n = recvmsg(chan, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return 0;
	inbuf[n] = '\0';
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy((void *)&pending_fd, CMSG_DATA(c), sizeof(int));
	}
	return n;
}

static __attribute__((noinline)) int split(char *s, char **argv)
{
	int argc = 0;

	while (*s && argc < MAX_ARGS) {
		while (*s == ' ' || *s == '\n')
			*s++ = '\0';
		if (!*s)
			break;
		argv[argc++] = s;
		while (*s && *s != ' ' && *s != '\n')
			s++;
	}
	return argc;
}

static unsigned long num(const char *s)
{
	return strtoul(s, NULL, 0);
}

/* ---- prctl hygiene ---- */

/* MADV_UNMERGEABLE on [start, end) minus every region range (regions are
 * not sorted: the kernel hands out mmap addresses top-down). */
static void unmerge_outside_regions(unsigned long start, unsigned long end,
				    int from)
{
	int i;

	if (start >= end)
		return;
	for (i = from; i < nregions; i++) {
		unsigned long rs = regions[i].start, re = regions[i].end;

		if (re <= start || rs >= end)
			continue;
		unmerge_outside_regions(start, rs, i + 1);
		unmerge_outside_regions(re, end, i + 1);
		return;
	}
	madvise((void *)start, end - start, MADV_UNMERGEABLE);
}

/*
 * PR_SET_MEMORY_MERGE marks every compatible VMA VM_MERGEABLE: stack,
 * .data, .bss, heap.  Those would give ksmd rmap_items the simulated
 * process does not have, so take the flag off again everywhere outside
 * the scenario regions.
 */
static int unmerge_others(void)
{
	ssize_t len = 0, n;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	char *line, *end;

	if (fd < 0)
		return errno;
	while ((n = read(fd, mapsbuf + len, sizeof(mapsbuf) - 1 - (size_t)len)) > 0)
		len += n;
	close(fd);
	mapsbuf[len] = '\0';
	for (line = mapsbuf; line < mapsbuf + len; line = end + 1) {
		char *dash;
		unsigned long s, e;

		end = strchr(line, '\n');
		if (!end)
			end = mapsbuf + len;
		s = strtoul(line, &dash, 16);
		e = strtoul(dash + 1, NULL, 16);
		unmerge_outside_regions(s, e, 0);
	}
	return 0;
}

/* ---- commands ---- */

static void cmd_mmap(char **a)
{
	unsigned long len = num(a[1]);
	int flags = MAP_ANONYMOUS | (num(a[2]) ? MAP_SHARED : MAP_PRIVATE);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);

	if (p == MAP_FAILED) {
		reply_err(errno);
		return;
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	if (nregions < MAX_REGIONS) {
		regions[nregions].start = (unsigned long)p;
		regions[nregions].end = (unsigned long)p + len;
		nregions++;
	}
	reply_val((unsigned long)p);
}

static void cmd_unique(char **a)
{
	unsigned char *base = (unsigned char *)num(a[1]);
	unsigned long count = num(a[2]), tag = num(a[3]);
	unsigned long first = num(a[4]), psz = num(a[5]), i;

	for (i = 0; i < count; i++) {
		unsigned char *pg = base + i * psz;
		uint64_t v = ((uint64_t)tag << 32) | (uint64_t)(first + i);
		int b;

		memset(pg, 0, psz);
		for (b = 0; b < 8; b++)          /* little-endian, explicitly */
			pg[b] = (unsigned char)(v >> (8 * b));
	}
	reply_ok();
}

/* memset one page at a time, in address order: a SIGSEGV at page k then leaves
 * exactly pages before k written, whatever strategy libc's memset uses. */
static void cmd_fill(char **a)
{
	unsigned char *p = (unsigned char *)num(a[1]);
	unsigned long len = num(a[2]), psz = (unsigned long)sysconf(_SC_PAGESIZE), n;

	while (len) {
		n = len < psz ? len : psz;
		memset(p, (int)num(a[3]), n);
		p += n;
		len -= n;
	}
	reply_ok();
}

static void cmd_read(char **a)
{
	volatile unsigned char *base = (volatile unsigned char *)num(a[1]);
	unsigned long count = num(a[2]), psz = num(a[3]), i;
	unsigned char sink = 0;

	for (i = 0; i < count; i++)
		sink ^= base[i * psz];
	(void)sink;
	reply_ok();
}

static void cmd_fork(void)
{
	int newfd = pending_fd;
	pid_t pid;

	pending_fd = -1;
	if (newfd < 0) {
		reply_err(EBADF);
		return;
	}
	pid = fork();
	if (pid < 0) {
		close(newfd);
		reply_err(errno);
		return;
	}
	if (pid == 0) {                  /* child: switch to its own channel */
		close(chan);
		chan = newfd;
		reply_val((unsigned long)getpid());
		return;
	}
	close(newfd);
	reply_val((unsigned long)pid);
}

static void dispatch(int argc, char **a)
{
	const char *c = a[0];

#define NEED(n) do { if (argc < (n)) { reply_err(EINVAL); return; } } while (0)
#define SYS(call) do { if ((call) < 0) reply_err(errno); else reply_ok(); } while (0)
	if (!strcmp(c, "mmap")) {
		NEED(3); cmd_mmap(a);
	} else if (!strcmp(c, "fill")) {
		NEED(4); cmd_fill(a);
	} else if (!strcmp(c, "unique")) {
		NEED(6); cmd_unique(a);
	} else if (!strcmp(c, "poke")) {
		NEED(3); *(volatile unsigned char *)num(a[1]) = (unsigned char)num(a[2]); reply_ok();
	} else if (!strcmp(c, "read")) {
		NEED(4); cmd_read(a);
	} else if (!strcmp(c, "madvise")) {
		NEED(4); SYS(madvise((void *)num(a[1]), num(a[2]), (int)num(a[3])));
	} else if (!strcmp(c, "mprotect")) {
		NEED(4); SYS(mprotect((void *)num(a[1]), num(a[2]), (int)num(a[3])));
	} else if (!strcmp(c, "munmap")) {
		NEED(3); SYS(munmap((void *)num(a[1]), num(a[2])));
	} else if (!strcmp(c, "prctl")) {
		NEED(2);
		if (prctl(PR_SET_MEMORY_MERGE, num(a[1]), 0, 0, 0) < 0)
			reply_err(errno);
		else if (num(a[1])) {
			int e = unmerge_others();
			if (e) reply_err(e); else reply_ok();
		} else
			reply_ok();
	} else if (!strcmp(c, "unmerge_others")) {
		int e = unmerge_others();
		if (e) reply_err(e); else reply_ok();
	} else if (!strcmp(c, "fork")) {
		cmd_fork();
	} else if (!strcmp(c, "exit")) {
		_exit(0);
	} else if (!strcmp(c, "ping")) {
		reply_val((unsigned long)getpid());
	} else {
		reply_err(ENOSYS);
	}
#undef NEED
#undef SYS
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	char *args[MAX_ARGS];

	if (argc < 2)
		return 2;
	chan = (int)strtol(argv[1], NULL, 10);

	/* Forked children are reaped by the kernel: an exited scenario
	 * process must vanish, not linger as our zombie. */
	signal(SIGCHLD, SIG_IGN);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	for (;;) {
		volatile int n;

		if (recv_command() == 0)
			_exit(0);              /* controller closed the channel */
		n = split(inbuf, args);
		if (n == 0) {
			reply_err(EINVAL);
			continue;
		}
		if (sigsetjmp(fault_env, 1)) {
			reply_sig();           /* e.g. a write to a PROT_READ page */
			continue;
		}
		dispatch(n, args);
	}
}
