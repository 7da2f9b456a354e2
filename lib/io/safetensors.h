/* safetensors files: a bounds-checked reader over mmap, and a writer.
 * Format: 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets:[begin,end]} (offsets relative
 * to the byte after the header), then the data. Everything in the file is
 * untrusted: every offset, size and count is checked before use. */
#ifndef CLUNET_IO_SAFETENSORS_H
#define CLUNET_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "clunet.h"

typedef struct st_tensor {
	const char *name;
	clunet_dtype dtype;
	int ndim;
	int64_t shape[CLUNET_MAX_DIMS];
	size_t numel;
	size_t nbytes;
	const unsigned char *data; /* inside the mapping; not aligned */
	int used;                  /* set by consumers to find unused tensors */
} st_tensor;

typedef struct st_file {
	char *path;
	void *map;
	size_t size;
	int owns_map;       /* 0: st_open_memory over the caller's bytes */
	st_tensor *tensors; /* sorted by name */
	size_t n;
	char *names;        /* storage for tensor names */
	char *python_scalars; /* __metadata__["python_scalars"], or NULL */
} st_file;

clunet_status st_open(const char *path, st_file **out);
/* The same checks over bytes in memory (kept by the caller until st_close);
 * `name` stands for the path in messages. */
clunet_status st_open_memory(const void *data, size_t size, const char *name, st_file **out);
void st_close(st_file *f);
st_tensor *st_find(const st_file *f, const char *name);

/* Writes tensors with dtypes and shapes as given (data is copied). */
clunet_status st_write(const char *path, const clunet_tensor *tensors, size_t n);

/* A checkpoint's weights: one safetensors file, or the shards listed by a
 * diffusers "<name>.safetensors.index.json" (diffusers >= 0.29 writes these
 * for large models): {"weight_map": {tensor name: shard file name}}. */
typedef struct st_set {
	st_file **files;
	size_t n;
	char *label; /* the file or index path, for messages */
} st_set;

clunet_status st_set_open_file(const char *path, st_set **out);
clunet_status st_set_open_index(const char *index_path, st_set **out);
/* Finds a tensor in any file of the set; *file (if not NULL) gets its file. */
st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file);
void st_set_close(st_set *s);

#endif
