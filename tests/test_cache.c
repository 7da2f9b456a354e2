/* The on-disk program cache: miss then hit, corrupted, truncated and
 * foreign entries, a binary the driver rejects, an unwritable folder, the
 * byte budget, and two processes filling the same folder at once. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "testutil.h"

#include "common/common.h"
#include "runtime/runtime.h"

static char warnings[4096];

static void capture(void *user, clunet_log_level level, const char *msg)
{
	(void)user;
	if (level == CLUNET_LOG_WARNING)
		snprintf(warnings + strlen(warnings), sizeof(warnings) - strlen(warnings), "%s\n", msg);
}

static rt_ctx *open_ctx(const char *dir, uint64_t budget)
{
	clunet_context_options o;
	rt_ctx *rt = NULL;
	clunet_context_options_init(&o);
	o.cache_dir = dir;
	o.cache_budget_bytes = budget;
	o.log = capture;
	if (clunet_context_create(&o, &rt) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		exit(1);
	}
	return rt;
}

static int get_only(rt_ctx *rt, const char *opts)
{
	cl_program p;
	clunet_status st = rt_program_get(rt, "ewise.cl", opts, &p);
	if (st)
		printf("  program build failed: %s\n", clunet_last_error());
	return st == CLUNET_OK;
}

/* Builds and saves, as a forward does once its kernels have run. */
static int get(rt_ctx *rt, const char *opts)
{
	int ok = get_only(rt, opts);
	rt_cache_flush(rt);
	return ok;
}

/* The entry file for ewise.cl with these options in rt's folder. */
static char *entry_path(rt_ctx *rt, const char *opts)
{
	char *key = NULL, *path;
	if (rt_program_key(rt, "ewise.cl", opts, &key) != CLUNET_OK)
		return NULL;
	path = rt_cache_entry_path(rt, key);
	free(key);
	return path;
}

static long file_size(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static int count_files(const char *dir, const char *pattern)
{
	char cmd[4300], line[64];
	FILE *f;
	int n = 0;
	snprintf(cmd, sizeof(cmd), "ls '%s'/*/%s 2>/dev/null | wc -l", dir, pattern);
	f = popen(cmd, "r");
	if (f && fgets(line, sizeof(line), f))
		n = atoi(line);
	if (f)
		pclose(f);
	return n;
}

static void corrupt(const char *path, long at, unsigned char xor)
{
	int fd = open(path, O_RDWR);
	unsigned char c;
	if (fd < 0)
		return;
	if (at < 0)
		at += file_size(path);
	if (pread(fd, &c, 1, at) == 1) {
		c ^= xor;
		if (pwrite(fd, &c, 1, at) != 1)
			perror("pwrite");
	}
	close(fd);
}

#define OPTS "-cl-std=CL1.2"

static void test_miss_then_hit(const char *dir)
{
	rt_ctx *rt = open_ctx(dir, 0);
	CHECK(get_only(rt, OPTS), "first build");
	CHECK(rt->cache_saves == 0, "the binary is saved only after the kernels have run");
	rt_cache_flush(rt);
	CHECK(rt->cache_misses == 1 && rt->cache_hits == 0 && rt->cache_saves == 1,
	      "first load: %u misses, %u hits, %u saves (want 1, 0, 1)", rt->cache_misses,
	      rt->cache_hits, rt->cache_saves);
	CHECK(get(rt, OPTS) && rt->cache_misses == 1 && rt->cache_hits == 0,
	      "same process: the program is reused without touching the disk");
	rt_destroy(rt);
	rt = open_ctx(dir, 0);
	CHECK(get(rt, OPTS), "second build");
	CHECK(rt->cache_hits == 1 && rt->cache_misses == 0,
	      "second process: %u hits, %u misses (want 1, 0)", rt->cache_hits, rt->cache_misses);
	printf("  miss then hit: ok\n");
	rt_destroy(rt);
}

/* Damages the entry with `how`, then expects a miss, a rebuild that
 * overwrites the entry, and a hit after that. */
static void test_damaged(const char *dir, const char *what, void (*how)(const char *path))
{
	rt_ctx *rt = open_ctx(dir, 0);
	char *path = entry_path(rt, OPTS);
	CHECK(path != NULL, "%s: no entry to damage", what);
	if (!path) {
		rt_destroy(rt);
		return;
	}
	how(path);
	CHECK(get(rt, OPTS), "%s: build", what);
	CHECK(rt->cache_misses == 1 && rt->cache_hits == 0 && rt->cache_saves == 1,
	      "%s: %u misses, %u hits, %u saves (want 1, 0, 1)", what, rt->cache_misses,
	      rt->cache_hits, rt->cache_saves);
	rt_destroy(rt);
	rt = open_ctx(dir, 0);
	CHECK(get(rt, OPTS) && rt->cache_hits == 1, "%s: the rebuilt entry is a hit", what);
	printf("  %s: detected, rebuilt, then a hit\n", what);
	rt_destroy(rt);
	free(path);
}

static void flip_payload(const char *p) { corrupt(p, -10, 0x5a); }
static void flip_key(const char *p) { corrupt(p, 40, 0x01); }
static void flip_magic(const char *p) { corrupt(p, 0, 0xff); }
static void truncate_half(const char *p)
{
	if (truncate(p, file_size(p) / 2) != 0)
		perror("truncate");
}
static void truncate_header(const char *p)
{
	if (truncate(p, 10) != 0)
		perror("truncate");
}

/* A well-formed entry (right key, right checksum) whose payload is not a
 * program binary: the driver rejects it and the source build takes over. */
static void garbage_binary(const char *p)
{
	char *data;
	size_t size;
	uint32_t klen;
	if (cu_read_file(p, &data, &size) != CLUNET_OK)
		return;
	memcpy(&klen, data + 12, 4);
	{
		size_t off = 16 + klen;
		uint64_t plen = 64;
		unsigned char payload[64];
		FILE *f = fopen(p, "wb");
		for (int i = 0; i < 64; i++)
			payload[i] = (unsigned char)(i * 7 + 1);
		memcpy(data + off, &plen, 8);
		{
			uint64_t h = XXH3_64bits(payload, 64);
			memcpy(data + off + 8, &h, 8);
		}
		fwrite(data, 1, off + 16, f);
		fwrite(payload, 1, 64, f);
		fclose(f);
	}
	free(data);
}

static void test_unwritable(const char *dir)
{
	char blocker[4200], sub[4300];
	FILE *f;
	rt_ctx *rt;
	snprintf(blocker, sizeof(blocker), "%s/not-a-folder", dir);
	f = fopen(blocker, "w");
	fclose(f);
	snprintf(sub, sizeof(sub), "%s/cache", blocker);
	warnings[0] = 0;
	rt = open_ctx(sub, 0);
	CHECK(rt->cache_dir == NULL, "an unwritable cache folder turns the cache off");
	CHECK(strstr(warnings, "program cache off") != NULL, "one warning says so (got: %s)", warnings);
	CHECK(get(rt, OPTS), "programs still build without a cache");
	printf("  unwritable folder: warning '%.*s', builds without a cache\n",
	       (int)strcspn(warnings, "\n"), warnings);
	rt_destroy(rt);
}

static void test_budget(const char *dir)
{
	rt_ctx *rt = open_ctx(dir, 0);
	long one;
	char *first;
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	CHECK(get(rt, OPTS " -DA=1"), "budget: first program");
	first = entry_path(rt, OPTS " -DA=1");
	one = first ? file_size(first) : 0;
	rt_destroy(rt);
	if (first)
		utimensat(AT_FDCWD, first, old, 0); /* make it the least recently used */
	rt = open_ctx(dir, (uint64_t)(one + one / 2));
	CHECK(get(rt, OPTS " -DA=2"), "budget: second program");
	CHECK(first && file_size(first) < 0, "the least recently used entry was evicted");
	CHECK(count_files(dir, "*.bin") == 1, "one entry fits the budget (%d present)",
	      count_files(dir, "*.bin"));
	printf("  budget of %ld bytes: oldest entry evicted\n", one + one / 2);
	rt_destroy(rt);
	free(first);
}

static void test_two_processes(const char *dir)
{
	static const char *const opts[] = { OPTS " -DP=1", OPTS " -DP=2", OPTS " -DP=3" };
	pid_t kids[2];
	int ok = 1;
	rt_ctx *rt;
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			rt_ctx *c = open_ctx(dir, 0);
			int good = 1;
			for (int i = 0; i < 3; i++)
				good &= get(c, opts[(i + k) % 3]);
			rt_destroy(c);
			_exit(good ? 0 : 1);
		}
	}
	for (int k = 0; k < 2; k++) {
		int status = 0;
		waitpid(kids[k], &status, 0);
		ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	CHECK(ok, "two processes building into one cache folder both succeed");
	CHECK(count_files(dir, "*.tmp.*") == 0, "no temporary files are left behind");
	rt = open_ctx(dir, 0);
	for (int i = 0; i < 3; i++)
		CHECK(get(rt, opts[i]), "after the race: build %d", i);
	CHECK(rt->cache_hits == 3 && rt->cache_misses == 0,
	      "after the race every entry is valid: %u hits, %u misses", rt->cache_hits,
	      rt->cache_misses);
	printf("  two processes at once: both fine, 3 valid entries\n");
	rt_destroy(rt);
}

static void count_entry(void *user, const char *dev, const char *file, uint64_t bytes,
			int64_t mtime)
{
	(void)dev, (void)file, (void)bytes, (void)mtime;
	(*(int *)user)++;
}

static void test_list_clear(const char *dir)
{
	int n = 0;
	size_t removed = 0;
	char foreign[2][4300];
	/* files that are not clunet's must survive listing, eviction and clearing */
	snprintf(foreign[0], sizeof(foreign[0]), "%s/myproject", dir);
	mkdir(foreign[0], 0755);
	snprintf(foreign[0], sizeof(foreign[0]), "%s/myproject/firmware.bin", dir);
	snprintf(foreign[1], sizeof(foreign[1]), "%s/notes-0000000g/0123456789abcdef0123456789abcdef.bin", dir);
	{
		char sub[4300];
		snprintf(sub, sizeof(sub), "%s/notes-0000000g", dir);
		mkdir(sub, 0755);
	}
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(foreign[i], "w");
		fputs("not a cache entry", f);
		fclose(f);
	}
	CHECK(clunet_cache_list(dir, count_entry, &n) == CLUNET_OK && n == 3,
	      "list shows the 3 entries (got %d)", n);
	CHECK(clunet_cache_clear(dir, &removed) == CLUNET_OK && removed == 3,
	      "clear removes them (removed %zu): %s", removed, clunet_last_error());
	n = 0;
	clunet_cache_list(dir, count_entry, &n);
	CHECK(n == 0, "nothing left after clear (%d)", n);
	for (int i = 0; i < 2; i++)
		CHECK(file_size(foreign[i]) > 0, "clear left %s alone", foreign[i]);
}

static void test_no_cache(const char *dir)
{
	clunet_context_options o;
	rt_ctx *rt;
	clunet_context_options_init(&o);
	o.cache_dir = dir;
	o.no_cache = 1;
	CHECK(clunet_context_create(&o, &rt) == CLUNET_OK, "no-cache context");
	int n = 0;
	CHECK(get(rt, OPTS " -DNOCACHE=1"), "no-cache build");
	clunet_cache_list(dir, count_entry, &n);
	CHECK(n == 0, "no-cache writes nothing (%d entries)", n);
	rt_destroy(rt);
}

int main(void)
{
	char *dir = tu_tempdir("cache");
	char race[4200], budget[4200];
	printf("cache folder %s\n", dir);
	test_miss_then_hit(dir);
	test_damaged(dir, "corrupted payload", flip_payload);
	test_damaged(dir, "entry of another key", flip_key);
	test_damaged(dir, "bad magic", flip_magic);
	test_damaged(dir, "truncated entry", truncate_half);
	test_damaged(dir, "entry cut inside its header", truncate_header);
	test_damaged(dir, "binary rejected by the driver", garbage_binary);
	test_unwritable(dir);
	snprintf(budget, sizeof(budget), "%s/budget", dir);
	test_budget(budget);
	snprintf(race, sizeof(race), "%s/race", dir);
	test_two_processes(race);
	test_list_clear(race);
	test_no_cache(race);
	tu_rmtree(dir);
	free(dir);
	return tu_finish("cache");
}
