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
} st_file;

clunet_status st_open(const char *path, st_file **out);
/* The same checks over bytes in memory (kept by the caller until st_close);
 * `name` stands for the path in messages. */
clunet_status st_open_memory(const void *data, size_t size, const char *name, st_file **out);
void st_close(st_file *f);
st_tensor *st_find(const st_file *f, const char *name);

/* Writes tensors with dtypes and shapes as given (data is copied). */
clunet_status st_write(const char *path, const clunet_tensor *tensors, size_t n);

#endif
