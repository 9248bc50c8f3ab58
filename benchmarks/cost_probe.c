/* cost_probe.c: the host-side numbers behind ksmbook/kernel/costs.py, measured here.
 *
 *   cc -O2 -o /tmp/cost_probe benchmarks/cost_probe.c && /tmp/cost_probe
 *
 * Medians of per-event clock_gettime(CLOCK_MONOTONIC) deltas: the timer itself, a
 * store that hits the TLB, a first-touch anonymous write fault (allocate + zero), a
 * read fault that maps the zero page, a COW write fault (page shared with a forked
 * child: allocate + copy 4 KiB + TLB flush), a write fault that reuses the page (the
 * child is gone), and the extra cost of a TLB miss: the same random pointer chase
 * over 256 MiB of 4 KiB pages and of 2 MiB THP pages (every access misses the data
 * caches in both; only the 4 KiB run also walks the page tables).
 *
 * VM exits are not measured: /dev/kvm on the machines this book was built on is
 * kvm_pvm (software virtualization without EPT), so costs.py cites the exit cost.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PS 4096
enum { N = 4096, R = 200000 };
static uint64_t s[R];

static inline uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ull + t.tv_nsec;
}
static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}
static double median(int n) { qsort(s, n, sizeof *s, cmp); return s[n / 2]; }
static char *anon(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
static void time_first_writes(const char *what, char *a)
{
	for (int i = 0; i < N; i++) { uint64_t t0 = now(); a[(size_t)i * PS] = 2; s[i] = now() - t0; }
	printf("%-26s %6.0f ns\n", what, median(N));
}

static void pointer_chase(int huge)
{
	size_t len = 256ul << 20, pages = len / PS, steps = 4 * len / PS;
	char *raw = anon(len + (2 << 20));
	char *r = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
	madvise(r, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(r, 0, len);
	size_t *perm = malloc(pages * sizeof *perm);
	for (size_t i = 0; i < pages; i++)
		perm[i] = i;
	srand(1);
	for (size_t i = pages - 1; i > 0; i--) {
		size_t j = ((size_t)rand() * RAND_MAX + rand()) % (i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < pages; i++)      /* same line in every page: only the page differs */
		*(char **)(r + perm[i] * PS + 128) = r + perm[(i + 1) % pages] * PS + 128;
	char **q = (char **)(r + perm[0] * PS + 128);
	for (size_t i = 0; i < pages; i++)
		q = (char **)*q;
	uint64_t t0 = now();
	for (size_t i = 0; i < steps; i++)
		q = (char **)*q;
	printf("%-26s %6.1f ns%s\n", huge ? "random access, 2 MiB THP" : "random access, 4 KiB",
	       (double)(now() - t0) / steps, q ? "" : "?");
	munmap(raw, len + (2 << 20));
	free(perm);
}

int main(void)
{
	volatile char *p = anon(PS);
	p[0] = 1;
	for (int i = 0; i < R; i++) { uint64_t t0 = now(); uint64_t t1 = now(); s[i] = t1 - t0; }
	printf("%-26s %6.0f ns\n", "timer pair", median(R));
	for (int i = 0; i < R; i++) {
		uint64_t t0 = now();
		p[64] = i;
		uint64_t t1 = now();
		s[i] = t1 - t0;
	}
	printf("%-26s %6.0f ns\n", "timed TLB-hit store", median(R));

	time_first_writes("anonymous write fault", anon((size_t)N * PS));
	char *z = anon((size_t)N * PS);
	volatile char sink = 0;
	for (int i = 0; i < N; i++) {
		uint64_t t0 = now();
		sink += z[(size_t)i * PS];
		s[i] = now() - t0;
	}
	printf("%-26s %6.0f ns\n", "zero-page read fault", median(N));

	char *a = anon((size_t)N * PS), *b = anon((size_t)N * PS);
	memset(a, 7, (size_t)N * PS);
	memset(b, 7, (size_t)N * PS);
	pid_t child = fork();
	if (child == 0) { pause(); _exit(0); }
	time_first_writes("COW write fault", a);      /* shared with the child: copy */
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	time_first_writes("reuse write fault", b);    /* ours alone again: reuse */

	pointer_chase(0);
	pointer_chase(1);
	return 0;
}
