/* The on-disk program cache.
 *
 * <root>/<device>-<8 hex of device identity>/<32 hex of key>.bin
 *
 * An entry is: magic "CLUNETPC", u32 format version, u32 key length, the key
 * string (echoed in full, so a hash collision or a file copied into the wrong
 * folder is a miss), u64 payload length, u64 XXH3-64 of the payload, payload.
 * Little-endian. Any mismatch is a miss, and the rebuilt program overwrites
 * the entry. Writes go to a temporary file in the same folder, then fsync and
 * rename: entries are content-addressed, so the last writer wins and no lock
 * is needed between processes. A folder that cannot be written turns the
 * cache off with one warning. A byte budget evicts the least recently used
 * entries (a hit refreshes the entry's mtime). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime.h"

#define MAGIC "CLUNETPC"
#define FORMAT_VERSION 1u

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

clunet_status clunet_cache_default_dir(char *buf, size_t cap)
{
	const char *env = getenv("CLUNET_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
		   *home = getenv("HOME");
	int n;
	if (!buf || !cap)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_cache_default_dir: no buffer");
	if (env && *env)
		n = snprintf(buf, cap, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, cap, "%s/clunet", xdg);
	else if (home && *home)
		n = snprintf(buf, cap, "%s/.cache/clunet", home);
	else
		return cu_fail(CLUNET_ERR_IO,
			       "no cache folder: set CLUNET_CACHE_DIR, XDG_CACHE_HOME or HOME");
	if (n < 0 || (size_t)n >= cap)
		return cu_fail(CLUNET_ERR_ARGUMENT, "cache folder path too long");
	return CLUNET_OK;
}

static void device_folder_name(const rt_ctx *rt, char *out, size_t cap)
{
	char ident[1024], clean[48];
	size_t k = 0;
	snprintf(ident, sizeof(ident), "%s|%s|%s|%s|%s|%s", rt->info.platform,
		 rt->info.platform_version, rt->info.name, rt->info.vendor, rt->info.version,
		 rt->info.driver);
	for (const char *s = rt->info.name; *s && k < sizeof(clean) - 1; s++) {
		char c = *s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.')
			clean[k++] = c;
		else if (k && clean[k - 1] != '_')
			clean[k++] = '_';
	}
	clean[k] = 0;
	snprintf(out, cap, "%s-%08x", k ? clean : "device",
		 (unsigned)XXH3_64bits(ident, strlen(ident)));
}

clunet_status rt_cache_init(rt_ctx *rt, const char *dir_option, int no_cache)
{
	char root[4096], folder[128];
	clunet_status st;
	rt->cache_root = cu_strdup("");
	if (!rt->cache_root)
		return CLUNET_ERR_HOST_MEMORY;
	if (no_cache)
		return CLUNET_OK;
	if (dir_option && *dir_option)
		snprintf(root, sizeof(root), "%s", dir_option);
	else if (clunet_cache_default_dir(root, sizeof(root)) != CLUNET_OK) {
		cu_logf(&rt->log, CLUNET_LOG_WARNING, "program cache off: %s", clunet_last_error());
		cu_clear_error();
		return CLUNET_OK;
	}
	device_folder_name(rt, folder, sizeof(folder));
	free(rt->cache_root);
	rt->cache_root = cu_strdup(root);
	rt->cache_dir = cu_path_join(root, folder);
	if (!rt->cache_root || !rt->cache_dir)
		return CLUNET_ERR_HOST_MEMORY;
	st = cu_mkdirs(rt->cache_dir);
	if (st == CLUNET_OK && access(rt->cache_dir, W_OK) != 0)
		st = cu_fail(CLUNET_ERR_IO, "%s: not writable", rt->cache_dir);
	if (st) {
		if (st == CLUNET_ERR_HOST_MEMORY)
			return st;
		cu_logf(&rt->log, CLUNET_LOG_WARNING, "program cache off: %s", clunet_last_error());
		cu_clear_error();
		free(rt->cache_dir);
		rt->cache_dir = NULL;
	}
	return CLUNET_OK;
}

char *rt_cache_entry_path(const rt_ctx *rt, const char *key)
{
	XXH128_hash_t h;
	char name[64];
	if (!rt->cache_dir)
		return NULL;
	h = XXH3_128bits(key, strlen(key));
	snprintf(name, sizeof(name), "%016llx%016llx.bin", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
	return cu_path_join(rt->cache_dir, name);
}

static void cache_debug(const rt_ctx *rt, const char *fmt, const char *path, const char *why)
{
	if (rt->log.debug_cache)
		cu_logf(&rt->log, CLUNET_LOG_DEBUG, fmt, path, why);
}

void rt_cache_load(rt_ctx *rt, const char *key, unsigned char **bin, size_t *len)
{
	char *path = rt_cache_entry_path(rt, key), *data = NULL, saved[2048];
	size_t size, klen = strlen(key), off;
	uint64_t plen;
	const unsigned char *p;

	*bin = NULL;
	*len = 0;
	if (!path)
		return;
	cu_error_save(saved, sizeof(saved)); /* a miss is not an error */
	if (cu_read_file(path, &data, &size) != CLUNET_OK) {
		cu_error_restore(saved);
		cache_debug(rt, "program cache: %s: %s", path, "no entry");
		goto out;
	}
	p = (const unsigned char *)data;
	off = 8 + 4 + 4;
	if (size < off || memcmp(p, MAGIC, 8) != 0 || get32(p + 8) != FORMAT_VERSION) {
		cache_debug(rt, "program cache: %s: %s", path, "bad magic or version");
		goto out;
	}
	if (get32(p + 12) != klen || size - off < klen || memcmp(p + off, key, klen) != 0) {
		cache_debug(rt, "program cache: %s: %s", path, "key mismatch");
		goto out;
	}
	off += klen;
	if (size - off < 16) {
		cache_debug(rt, "program cache: %s: %s", path, "truncated");
		goto out;
	}
	plen = get64(p + off);
	if (plen != size - off - 16) {
		cache_debug(rt, "program cache: %s: %s", path, "truncated or oversized payload");
		goto out;
	}
	if (XXH3_64bits(p + off + 16, (size_t)plen) != get64(p + off + 8)) {
		cache_debug(rt, "program cache: %s: %s", path, "checksum mismatch");
		goto out;
	}
	*bin = malloc((size_t)plen ? (size_t)plen : 1);
	if (*bin) {
		memcpy(*bin, p + off + 16, (size_t)plen);
		*len = (size_t)plen;
		utimensat(AT_FDCWD, path, NULL, 0); /* mark as recently used */
	}
out:
	free(data);
	free(path);
}

typedef struct entry_info {
	char *path;
	uint64_t bytes;
	int64_t mtime;
} entry_info;

static int cmp_mtime(const void *a, const void *b)
{
	const entry_info *x = a, *y = b;
	return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

typedef struct collect_ctx {
	entry_info *v;
	size_t n, cap;
	uint64_t total;
	const char *root;
} collect_ctx;

static void collect(void *user, const char *device_folder, const char *file, uint64_t bytes,
		    int64_t mtime)
{
	collect_ctx *c = user;
	char *dir;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		entry_info *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return;
		c->v = v;
		c->cap = cap;
	}
	dir = cu_path_join(c->root, device_folder);
	if (!dir)
		return;
	c->v[c->n].path = cu_path_join(dir, file);
	free(dir);
	if (!c->v[c->n].path)
		return;
	c->v[c->n].bytes = bytes;
	c->v[c->n].mtime = mtime;
	c->total += bytes;
	c->n++;
}

static void evict(rt_ctx *rt)
{
	collect_ctx c = { 0 };
	c.root = rt->cache_root;
	if (clunet_cache_list(rt->cache_root, collect, &c) != CLUNET_OK)
		return; /* the caller restores the message */
	if (c.total > rt->cache_budget) {
		qsort(c.v, c.n, sizeof(entry_info), cmp_mtime);
		for (size_t i = 0; i < c.n && c.total > rt->cache_budget; i++) {
			if (unlink(c.v[i].path) == 0) {
				c.total -= c.v[i].bytes;
				cache_debug(rt, "program cache: %s: %s", c.v[i].path,
					    "evicted (over budget)");
			}
		}
	}
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i].path);
	free(c.v);
}

void rt_cache_store(rt_ctx *rt, const char *key, const unsigned char *bin, size_t len)
{
	char *path = rt_cache_entry_path(rt, key), saved[2048];
	size_t klen = strlen(key), total = 8 + 4 + 4 + klen + 8 + 8 + len;
	unsigned char *buf;
	if (!path)
		return;
	cu_error_save(saved, sizeof(saved)); /* cache trouble is a warning */
	buf = malloc(total);
	if (!buf) {
		free(path);
		return;
	}
	memcpy(buf, MAGIC, 8);
	put32(buf + 8, FORMAT_VERSION);
	put32(buf + 12, (uint32_t)klen);
	memcpy(buf + 16, key, klen);
	put64(buf + 16 + klen, len);
	put64(buf + 24 + klen, XXH3_64bits(bin, len));
	memcpy(buf + 32 + klen, bin, len);
	if (cu_write_file_atomic(path, buf, total) != CLUNET_OK) {
		cu_logf(&rt->log, CLUNET_LOG_WARNING, "program cache off: %s", clunet_last_error());
		free(rt->cache_dir);
		rt->cache_dir = NULL;
	} else {
		rt->cache_saves++;
		cache_debug(rt, "program cache: %s: %s", path, "saved");
		evict(rt);
	}
	cu_error_restore(saved);
	free(buf);
	free(path);
}

/* Only what clunet wrote is listed, evicted or cleared, whatever else a
 * shared folder holds: device folders "<name>-<8 hex>", entries "<32 hex>.bin"
 * that start with the magic, and the temporary files of writers that died,
 * "<32 hex>.bin.tmp.<pid>.<time>". */
static int hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int is_device_folder(const char *name)
{
	size_t n = strlen(name);
	return n > 9 && name[n - 9] == '-' && hex_run(name + n - 8, 8);
}

static int is_entry_name(const char *name)
{
	return strlen(name) == 36 && hex_run(name, 32) && !strcmp(name + 32, ".bin");
}

static int is_temp_name(const char *name)
{
	return strlen(name) > 41 && hex_run(name, 32) && !strncmp(name + 32, ".bin.tmp.", 9);
}

static int has_magic(const char *path)
{
	char head[8];
	FILE *f = fopen(path, "rb");
	int ok = f && fread(head, 1, 8, f) == 8 && !memcmp(head, MAGIC, 8);
	if (f)
		fclose(f);
	return ok;
}

clunet_status clunet_cache_list(const char *dir, clunet_cache_entry_fn fn, void *user)
{
	char root[4096];
	DIR *d;
	struct dirent *e;
	if (dir)
		snprintf(root, sizeof(root), "%s", dir);
	else if (clunet_cache_default_dir(root, sizeof(root)) != CLUNET_OK)
		return CLUNET_ERR_IO;
	d = opendir(root);
	if (!d) {
		if (errno == ENOENT)
			return CLUNET_OK;
		return cu_fail(CLUNET_ERR_IO, "%s: cannot list: %s", root, strerror(errno));
	}
	while ((e = readdir(d)) != NULL) {
		char *sub;
		DIR *sd;
		struct dirent *f;
		if (e->d_name[0] == '.' || !is_device_folder(e->d_name))
			continue;
		sub = cu_path_join(root, e->d_name);
		if (!sub)
			break;
		sd = opendir(sub);
		if (sd) {
			while ((f = readdir(sd)) != NULL) {
				struct stat sb;
				char *p;
				if (!is_entry_name(f->d_name) && !is_temp_name(f->d_name))
					continue;
				p = cu_path_join(sub, f->d_name);
				if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && fn &&
				    (is_temp_name(f->d_name) || has_magic(p)))
					fn(user, e->d_name, f->d_name, (uint64_t)sb.st_size,
					   (int64_t)sb.st_mtime);
				free(p);
			}
			closedir(sd);
		}
		free(sub);
	}
	closedir(d);
	return CLUNET_OK;
}

typedef struct clear_ctx {
	const char *root;
	size_t removed;
	int failed;
} clear_ctx;

static void remove_entry(void *user, const char *device_folder, const char *file, uint64_t bytes,
			 int64_t mtime)
{
	clear_ctx *c = user;
	char *dir = cu_path_join(c->root, device_folder), *p = dir ? cu_path_join(dir, file) : NULL;
	(void)bytes;
	(void)mtime;
	if (p && unlink(p) == 0)
		c->removed++;
	else
		c->failed = 1;
	if (dir)
		rmdir(dir); /* succeeds once the folder is empty */
	free(p);
	free(dir);
}

clunet_status clunet_cache_clear(const char *dir, size_t *removed)
{
	char root[4096];
	clear_ctx c = { root, 0, 0 };
	clunet_status st;
	if (dir)
		snprintf(root, sizeof(root), "%s", dir);
	else if ((st = clunet_cache_default_dir(root, sizeof(root))) != CLUNET_OK)
		return st;
	st = clunet_cache_list(root, remove_entry, &c);
	if (removed)
		*removed = c.removed;
	if (st)
		return st;
	if (c.failed)
		return cu_fail(CLUNET_ERR_IO, "%s: some cache entries could not be removed", root);
	return CLUNET_OK;
}
