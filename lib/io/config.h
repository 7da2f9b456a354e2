/* config.json access with errors that name the file, the key and what was
 * expected. A key that is absent takes the default; keys nobody asks for
 * (newer diffusers versions add some) are ignored. */
#ifndef CLUNET_IO_CONFIG_H
#define CLUNET_IO_CONFIG_H

#include <cjson/cJSON.h>

#include "clunet.h"

typedef struct cfg {
	cJSON *root;
	char *path;
} cfg;

clunet_status cfg_load(const char *path, cfg *out);
/* The same from text in memory; `path` names it in messages. */
clunet_status cfg_parse(const char *text, size_t size, const char *path, cfg *out);
void cfg_free(cfg *c);

/* The value under key, or NULL when absent. */
const cJSON *cfg_get(const cfg *c, const char *key);
/* Absent or JSON null. */
int cfg_is_null(const cfg *c, const char *key);

clunet_status cfg_int(const cfg *c, const char *key, long def, long *out);
/* Like cfg_int, but null (or absent with def_null) gives *is_null = 1. */
clunet_status cfg_int_or_null(const cfg *c, const char *key, long def, int def_null, long *out,
			      int *is_null);
clunet_status cfg_num(const cfg *c, const char *key, double def, double *out);
clunet_status cfg_bool(const cfg *c, const char *key, int def, int *out);
/* String (or null when def may be NULL); *out points into the JSON tree. */
clunet_status cfg_str(const cfg *c, const char *key, const char *def, const char **out);
/* A string that must be one of `allowed` (NULL-terminated); *index gets its
 * position. null/absent gives def_index (-1 allowed to mean "None"). */
clunet_status cfg_enum(const cfg *c, const char *key, const char *const *allowed, int def_index,
		       int *index);
/* A list of strings; at most max entries. */
clunet_status cfg_str_list(const cfg *c, const char *key, const char **out, int max, int *n);
/* A list of integers, or one integer repeated `n_if_scalar` times. */
clunet_status cfg_int_list(const cfg *c, const char *key, long *out, int max, int *n,
			   int n_if_scalar);
/* Fails with "config.json: key 'key': message". */
clunet_status cfg_error(const cfg *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
