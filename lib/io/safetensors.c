#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

/* A header larger than this is refused before it is parsed. */
#define ST_MAX_HEADER (256u << 20)

static int parse_dtype(const char *s, clunet_dtype *dt)
{
	static const struct { const char *name; clunet_dtype dt; } map[] = {
		{ "F32", CLUNET_F32 }, { "F64", CLUNET_F64 }, { "F16", CLUNET_F16 },
		{ "BF16", CLUNET_BF16 }, { "I64", CLUNET_I64 }, { "I32", CLUNET_I32 },
	};
	for (size_t i = 0; i < CU_ARRAY_LEN(map); i++) {
		if (strcmp(s, map[i].name) == 0) {
			*dt = map[i].dt;
			return 1;
		}
	}
	return 0;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out)
{
	double v;
	if (!cJSON_IsNumber(j))
		return 0;
	v = j->valuedouble;
	if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v)
		return 0;
	*out = (uint64_t)v;
	return 1;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

typedef struct span {
	uint64_t begin, end;
	const char *name;
} span;

static int cmp_span(const void *a, const void *b)
{
	const span *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static clunet_status parse_entry(st_file *f, const cJSON *item, st_tensor *t, size_t data_size,
				 uint64_t *begin, uint64_t *end)
{
	const char *name = item->string;
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
	const cJSON *d;
	size_t numel = 1, nbytes;
	int nd = 0;

	if (!cJSON_IsObject(item))
		return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': header entry is not an object",
			       f->path, name);
	if (!cJSON_IsString(dtype))
		return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': missing string 'dtype'", f->path,
			       name);
	if (!parse_dtype(dtype->valuestring, &t->dtype))
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: tensor '%s': unsupported dtype '%s' (expected F32, F16, BF16, "
			       "F64, I64 or I32)", f->path, name, dtype->valuestring);
	if (!cJSON_IsArray(shape))
		return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': missing array 'shape'", f->path,
			       name);
	cJSON_ArrayForEach(d, shape) {
		uint64_t v;
		if (nd >= CLUNET_MAX_DIMS)
			return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': more than %d dimensions",
				       f->path, name, CLUNET_MAX_DIMS);
		if (!json_uint(d, &v))
			return cu_fail(CLUNET_ERR_FORMAT,
				       "%s: tensor '%s': shape entry %d is not a non-negative integer",
				       f->path, name, nd);
		if (!cu_mul_size(numel, (size_t)v, &numel) || v > SIZE_MAX)
			return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': shape overflows",
				       f->path, name);
		t->shape[nd++] = (int64_t)v;
	}
	t->ndim = nd;
	t->numel = numel;
	if (!cu_mul_size(numel, cu_dtype_size(t->dtype), &nbytes))
		return cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s': size overflows", f->path, name);
	t->nbytes = nbytes;
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_uint(cJSON_GetArrayItem(offs, 0), begin) ||
	    !json_uint(cJSON_GetArrayItem(offs, 1), end))
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: tensor '%s': 'data_offsets' must be two non-negative integers",
			       f->path, name);
	if (*begin > *end || *end > data_size)
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
			       "(%zu bytes)", f->path, name, (unsigned long long)*begin,
			       (unsigned long long)*end, data_size);
	if (*end - *begin != nbytes)
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: tensor '%s': data_offsets span %llu bytes but dtype %s and shape "
			       "need %zu", f->path, name, (unsigned long long)(*end - *begin),
			       cu_dtype_name(t->dtype), nbytes);
	return CLUNET_OK;
}

static clunet_status parse_header(st_file *f, const char *json, size_t len, size_t data_off)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *item;
	size_t n = 0, names_len = 0, k = 0, data_size = f->size - data_off;
	span *spans = NULL;
	char *np;
	clunet_status st = CLUNET_OK;

	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return cu_fail(CLUNET_ERR_FORMAT, "%s: header is not a JSON object", f->path);
	}
	cJSON_ArrayForEach(item, root) {
		if (!item->string)
			continue;
		if (strcmp(item->string, "__metadata__") == 0) {
			const cJSON *py = cJSON_GetObjectItemCaseSensitive(item, "python_scalars");
			if (cJSON_IsString(py) && !f->python_scalars) {
				f->python_scalars = cu_strdup(py->valuestring);
				if (!f->python_scalars) {
					cJSON_Delete(root);
					return CLUNET_ERR_HOST_MEMORY;
				}
			}
			continue;
		}
		n++;
		names_len += strlen(item->string) + 1;
	}
	f->tensors = cu_calloc(n, sizeof(st_tensor));
	f->names = cu_malloc(names_len);
	spans = cu_calloc(n, sizeof(span));
	if (!f->tensors || !f->names || !spans) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	np = f->names;
	cJSON_ArrayForEach(item, root) {
		uint64_t b = 0, e = 0;
		st_tensor *t;
		if (!item->string || strcmp(item->string, "__metadata__") == 0)
			continue;
		t = &f->tensors[k];
		st = parse_entry(f, item, t, data_size, &b, &e);
		if (st)
			goto out;
		strcpy(np, item->string);
		t->name = np;
		np += strlen(np) + 1;
		t->data = (const unsigned char *)f->map + data_off + b;
		spans[k].begin = b;
		spans[k].end = e;
		spans[k].name = t->name;
		k++;
	}
	f->n = n;
	qsort(spans, n, sizeof(span), cmp_span);
	for (size_t i = 1; i < n; i++) {
		if (spans[i].begin < spans[i - 1].end) {
			st = cu_fail(CLUNET_ERR_FORMAT,
				     "%s: tensors '%s' and '%s' have overlapping data_offsets", f->path,
				     spans[i - 1].name, spans[i].name);
			goto out;
		}
	}
	qsort(f->tensors, n, sizeof(st_tensor), cmp_name);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(f->tensors[i].name, f->tensors[i - 1].name) == 0) {
			st = cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s' appears twice", f->path,
				     f->tensors[i].name);
			goto out;
		}
	}
out:
	free(spans);
	cJSON_Delete(root);
	return st;
}

/* Checks the 8-byte length and the header of f->map (f->size bytes). */
static clunet_status parse_file(st_file *f)
{
	unsigned char lenb[8];
	uint64_t hlen = 0;
	if (f->size < 8)
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: truncated: %zu bytes, shorter than the 8-byte header length",
			       f->path, f->size);
	memcpy(lenb, f->map, 8);
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | lenb[i];
	if (hlen > f->size - 8)
		return cu_fail(CLUNET_ERR_FORMAT,
			       "%s: header length %llu goes beyond the end of the file (%zu bytes)",
			       f->path, (unsigned long long)hlen, f->size);
	if (hlen > ST_MAX_HEADER || hlen < 2)
		return cu_fail(CLUNET_ERR_FORMAT, "%s: implausible header length %llu", f->path,
			       (unsigned long long)hlen);
	return parse_header(f, (const char *)f->map + 8, (size_t)hlen, 8 + (size_t)hlen);
}

static st_file *new_file(const char *path)
{
	st_file *f = cu_calloc(1, sizeof(st_file));
	if (!f)
		return NULL;
	f->path = cu_strdup(path);
	if (!f->path) {
		free(f);
		return NULL;
	}
	return f;
}

clunet_status st_open(const char *path, st_file **out)
{
	st_file *f = new_file(path);
	struct stat sb;
	int fd = -1;
	clunet_status st;

	*out = NULL;
	if (!f)
		return CLUNET_ERR_HOST_MEMORY;
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		st = cu_fail(CLUNET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		st = cu_fail(CLUNET_ERR_IO, "%s: not a regular file", path);
		goto fail;
	}
	f->size = (size_t)sb.st_size;
	if (f->size >= 8) {
		/* writable and private: weights used in place (zero-copy on CPU-class
		 * devices) may be rewritten by fuse_lora, copy-on-write, never the file */
		f->map = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (f->map == MAP_FAILED) {
			f->map = NULL;
			st = cu_fail(CLUNET_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
			goto fail;
		}
		f->owns_map = 1;
	}
	close(fd);
	fd = -1;
	st = parse_file(f);
	if (st)
		goto fail;
	*out = f;
	return CLUNET_OK;
fail:
	if (fd >= 0)
		close(fd);
	st_close(f);
	return st;
}

clunet_status st_open_memory(const void *data, size_t size, const char *name, st_file **out)
{
	st_file *f = new_file(name);
	clunet_status st;
	*out = NULL;
	if (!f)
		return CLUNET_ERR_HOST_MEMORY;
	f->map = (void *)data;
	f->size = size;
	st = parse_file(f);
	if (st) {
		st_close(f);
		return st;
	}
	*out = f;
	return CLUNET_OK;
}

void st_close(st_file *f)
{
	if (!f)
		return;
	if (f->map && f->owns_map)
		munmap(f->map, f->size);
	free(f->tensors);
	free(f->names);
	free(f->python_scalars);
	free(f->path);
	free(f);
}

st_tensor *st_find(const st_file *f, const char *name)
{
	st_tensor key = { .name = name };
	if (!f->n)
		return NULL;
	return bsearch(&key, f->tensors, f->n, sizeof(st_tensor), cmp_name);
}

clunet_status st_write(const char *path, const clunet_tensor *tensors, size_t n)
{
	cJSON *root = cJSON_CreateObject();
	char *hjson = NULL;
	unsigned char *buf = NULL;
	size_t off = 0, hlen, pad, total;
	clunet_status st = CLUNET_OK;

	if (!root)
		return cu_fail(CLUNET_ERR_HOST_MEMORY, "out of memory");
	{ /* tensors that stand for Python numbers, by name */
		size_t len = 1;
		char *list;
		for (size_t i = 0; i < n; i++)
			if (tensors[i].flags & CLUNET_TENSOR_PYTHON_NUMBER)
				len += strlen(tensors[i].name) + 1;
		if (len > 1 && (list = cu_calloc(1, len)) != NULL) {
			cJSON *meta = cJSON_CreateObject();
			for (size_t i = 0; i < n; i++)
				if (tensors[i].flags & CLUNET_TENSOR_PYTHON_NUMBER) {
					if (*list)
						strcat(list, ",");
					strcat(list, tensors[i].name);
				}
			cJSON_AddStringToObject(meta, "python_scalars", list);
			cJSON_AddItemToObject(root, "__metadata__", meta);
			free(list);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const clunet_tensor *t = &tensors[i];
		cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs;
		size_t numel = 1, nb;
		cJSON_AddItemToObject(root, t->name, e);
		cJSON_AddStringToObject(e, "dtype", cu_dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++) {
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
			numel *= (size_t)t->shape[d];
		}
		cJSON_AddItemToObject(e, "shape", shape);
		nb = numel * cu_dtype_size(t->dtype);
		offs = cJSON_CreateArray();
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
		cJSON_AddItemToObject(e, "data_offsets", offs);
		off += nb;
	}
	hjson = cJSON_PrintUnformatted(root);
	if (!hjson) {
		st = cu_fail(CLUNET_ERR_HOST_MEMORY, "out of memory");
		goto out;
	}
	hlen = strlen(hjson);
	pad = (8 - hlen % 8) % 8; /* keep the data 8-byte aligned, as the reference writer does */
	total = 8 + hlen + pad + off;
	buf = cu_malloc(total);
	if (!buf) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)(hlen + pad) >> (8 * i));
	memcpy(buf + 8, hjson, hlen);
	memset(buf + 8 + hlen, ' ', pad);
	off = 8 + hlen + pad;
	for (size_t i = 0; i < n; i++) {
		const clunet_tensor *t = &tensors[i];
		size_t numel = 1, nb;
		for (int d = 0; d < t->ndim; d++)
			numel *= (size_t)t->shape[d];
		nb = numel * cu_dtype_size(t->dtype);
		if (nb)
			memcpy(buf + off, t->data, nb);
		off += nb;
	}
	st = cu_write_file_atomic(path, buf, total);
out:
	free(buf);
	free(hjson);
	cJSON_Delete(root);
	return st;
}

/* Is name an entry of the comma-separated list? */
static int listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && *p == ' ')
			p++, len--;
		if (len == n && !strncmp(p, name, n))
			return 1;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

clunet_status clunet_tensors_read(const char *path, clunet_tensor **tensors, size_t *n)
{
	st_file *f;
	clunet_tensor *ts;
	clunet_status st;
	if (!path || !tensors || !n)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_read: NULL argument");
	st = st_open(path, &f);
	if (st)
		return st;
	ts = cu_calloc(f->n, sizeof(clunet_tensor));
	if (!ts) {
		st_close(f);
		return CLUNET_ERR_HOST_MEMORY;
	}
	for (size_t i = 0; i < f->n; i++) {
		const st_tensor *s = &f->tensors[i];
		void *data = cu_malloc(s->nbytes);
		char *name = cu_strdup(s->name);
		if (!data || !name) {
			free(data);
			free(name);
			clunet_tensors_free(ts, i);
			st_close(f);
			return CLUNET_ERR_HOST_MEMORY;
		}
		memcpy(data, s->data, s->nbytes);
		ts[i].name = name;
		ts[i].dtype = s->dtype;
		ts[i].ndim = s->ndim;
		memcpy(ts[i].shape, s->shape, sizeof(s->shape));
		ts[i].data = data;
		if (listed(f->python_scalars, s->name))
			ts[i].flags |= CLUNET_TENSOR_PYTHON_NUMBER;
	}
	*tensors = ts;
	*n = f->n;
	st_close(f);
	return CLUNET_OK;
}

void clunet_tensors_free(clunet_tensor *tensors, size_t n)
{
	if (!tensors)
		return;
	for (size_t i = 0; i < n; i++) {
		free((void *)tensors[i].name);
		free((void *)tensors[i].data);
	}
	free(tensors);
}

clunet_status clunet_tensors_write(const char *path, const clunet_tensor *tensors, size_t n)
{
	size_t total = 0;
	if (!path || (!tensors && n))
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: NULL argument");
	for (size_t i = 0; i < n; i++) {
		const clunet_tensor *t = &tensors[i];
		size_t bytes = cu_dtype_size(t->dtype);
		if (!t->name || t->ndim < 0 || t->ndim > CLUNET_MAX_DIMS || !bytes)
			return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: tensor %zu has no "
				       "name, a bad ndim or an unknown dtype", i);
		for (int d = 0; d < t->ndim; d++)
			if (t->shape[d] < 0 || !cu_mul_size(bytes, (size_t)t->shape[d], &bytes))
				return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: tensor '%s' "
					       "has a negative or overflowing shape", t->name);
		if (bytes && !t->data)
			return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: tensor '%s' has no "
				       "data", t->name);
		if (total + bytes < total)
			return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: too much data");
		total += bytes;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(tensors[k].name, t->name))
				return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tensors_write: tensor '%s' "
					       "appears twice", t->name);
	}
	return st_write(path, tensors, n);
}

/* ------------------------------------------------------------ sets */

static clunet_status set_add(st_set *s, st_file *f)
{
	st_file **grown = cu_realloc(s->files, (s->n + 1) * sizeof(st_file *));
	if (!grown) {
		st_close(f);
		return CLUNET_ERR_HOST_MEMORY;
	}
	s->files = grown;
	s->files[s->n++] = f;
	return CLUNET_OK;
}

clunet_status st_set_open_file(const char *path, st_set **out)
{
	st_set *s = cu_calloc(1, sizeof(st_set));
	st_file *f;
	clunet_status st;
	*out = NULL;
	if (!s || !(s->label = cu_strdup(path))) {
		free(s);
		return CLUNET_ERR_HOST_MEMORY;
	}
	st = st_open(path, &f);
	if (!st)
		st = set_add(s, f);
	if (st) {
		st_set_close(s);
		return st;
	}
	*out = s;
	return CLUNET_OK;
}

/* A shard must be a plain file name beside the index. */
static int plain_name(const char *n)
{
	return *n && !strchr(n, '/') && !strchr(n, '\\') && strcmp(n, ".") && strcmp(n, "..");
}

clunet_status st_set_open_index(const char *index_path, st_set **out)
{
	st_set *s = cu_calloc(1, sizeof(st_set));
	char *text = NULL, *dir = NULL, *slash;
	size_t size;
	cJSON *root = NULL, *map, *e;
	clunet_status st;

	*out = NULL;
	if (!s || !(s->label = cu_strdup(index_path)) || !(dir = cu_strdup(index_path))) {
		free(s ? s->label : NULL);
		free(s);
		free(dir);
		return CLUNET_ERR_HOST_MEMORY;
	}
	slash = strrchr(dir, '/');
	if (slash)
		slash[1] = 0;
	else
		strcpy(dir, "./");
	st = cu_read_file(index_path, &text, &size);
	if (st)
		goto out;
	root = cJSON_ParseWithLength(text, size);
	map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!cJSON_IsObject(map)) {
		st = cu_fail(CLUNET_ERR_FORMAT, "%s: expected a JSON object with a 'weight_map' object",
			     index_path);
		goto out;
	}
	cJSON_ArrayForEach(e, map) {
		const char *shard = cJSON_IsString(e) ? e->valuestring : NULL;
		int known = 0;
		char *path;
		st_file *f;
		if (!shard || !plain_name(shard)) {
			st = cu_fail(CLUNET_ERR_FORMAT, "%s: weight_map['%s'] must be the name of a file "
				     "beside the index", index_path, e->string);
			goto out;
		}
		for (size_t i = 0; i < s->n && !known; i++)
			known = !strcmp(strrchr(s->files[i]->path, '/') + 1, shard);
		if (known)
			continue;
		path = cu_path_join(dir, shard);
		if (!path) {
			st = CLUNET_ERR_HOST_MEMORY;
			goto out;
		}
		st = st_open(path, &f);
		free(path);
		if (!st)
			st = set_add(s, f);
		if (st)
			goto out;
	}
	/* every listed tensor is in the shard the map names, and in no other */
	cJSON_ArrayForEach(e, map) {
		const st_file *where = NULL;
		int copies = 0;
		for (size_t i = 0; i < s->n; i++) {
			if (st_find(s->files[i], e->string)) {
				copies++;
				where = s->files[i];
			}
		}
		if (copies > 1) {
			st = cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s' is in more than one shard",
				     index_path, e->string);
			goto out;
		}
		if (copies == 0 || strcmp(strrchr(where->path, '/') + 1, e->valuestring) != 0) {
			st = cu_fail(CLUNET_ERR_FORMAT, "%s: tensor '%s' is not in shard '%s', where "
				     "weight_map puts it", index_path, e->string, e->valuestring);
			goto out;
		}
	}
	if (s->n == 0)
		st = cu_fail(CLUNET_ERR_FORMAT, "%s: weight_map lists no tensors", index_path);
out:
	cJSON_Delete(root);
	free(text);
	free(dir);
	if (st) {
		st_set_close(s);
		return st;
	}
	*out = s;
	return CLUNET_OK;
}

st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file)
{
	for (size_t i = 0; i < s->n; i++) {
		st_tensor *t = st_find(s->files[i], name);
		if (t) {
			if (file)
				*file = s->files[i];
			return t;
		}
	}
	return NULL;
}

void st_set_close(st_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		st_close(s->files[i]);
	free(s->files);
	free(s->label);
	free(s);
}
